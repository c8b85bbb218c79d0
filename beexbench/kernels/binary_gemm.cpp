// Packed-bit binary matrix products for beexbench (BEExformer binarized layers).
//
// Bit layout: element k of a row lives in word k / 64, bit k % 64 (LSB first).
// A bit is 1 where x >= 0 (sign maps 0, and -0.0, to +1; NaN maps to -1).
// Padding bits of the last word are always 0 in both operands, so they add
// nothing to popcount(a XOR b) and  dot = K - 2 * popcount(a XOR b).
//
// One build runs everywhere: the SIMD paths use function-level target
// attributes and are picked at run time with __builtin_cpu_supports, so the
// object code never needs -march=native.
//
// Ops (namespace beexbench_kernels, reached as torch.ops.beexbench_kernels.*):
//   pack_rows(Tensor x[N,K] float32)                  -> Tensor uint64 [N, ceil(K/64)]
//   binary_matmul(Tensor a[M,W], Tensor b[N,W], int K) -> Tensor int32 [M, N]
//   binary_linear(Tensor x[M,K] f32, Tensor w[N,W], Tensor alpha[N] f32,
//                 Tensor? bias[N] f32, int K, Tensor? layout) -> Tensor float32 [M, N]
//   binary_layout(Tensor w[N,W], int K)               -> Tensor int32: w as the backend reads it
//                 (avx512-vpopcnt's column panel; empty for the others), built once per layer
//                 and passed to binary_linear as `layout` so a call skips its re-layout
//   binary_qk_batched(Tensor q[G,M,K] f32, Tensor k[G,N,K] f32)
//                                                     -> Tensor float32 [G, M, N] (exact +-1 dots)
//   backend() -> str ; available_backends() -> str (comma separated)
//   set_backend(str) -> str  ("auto" | "avx512-vpopcnt" | "avx512-vnni" | "avx2" | "portable")
//   time_product(x, w, alpha, bias?, K, reps, layout?) -> float (seconds per call, timed in C++)
//
// Backends, best first ("auto" takes the first this CPU runs; all are exact):
//   avx512-vpopcnt  register-blocked XOR + VPOPCNTD tile, lanes = output columns
//   avx2            nibble-LUT VPSHUFB popcount
//   avx512-vnni     VPDPBUSD on +-1 int8 panels unpacked per call from the 1-bit weights;
//                   selectable, never "auto": on AMD Zen 4 (issue 30) it ran ~5x below
//                   avx512-vpopcnt and ~1.8x below avx2 at 128x512x512, 1 thread
//   portable        scalar POPCNT

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#if (defined(__x86_64__) || defined(_M_X64) || defined(__i386__)) && !defined(BEEX_FORCE_PORTABLE)
#define BEEX_X86 1
#include <immintrin.h>
#else
#define BEEX_X86 0
#endif
#if defined(__aarch64__) && !defined(BEEX_FORCE_PORTABLE)
#define BEEX_NEON 1
#include "bits_core.h"  // the "neon" backend's kernels (ATen-free; tests/arm64 checks them under qemu)
#else
#define BEEX_NEON 0
#endif

#if defined(__GNUC__) || defined(__clang__)
#define BEEX_INLINE inline __attribute__((always_inline))
#else
#define BEEX_INLINE inline
#endif

#if BEEX_X86
#define BEEX_AVX2 __attribute__((target("avx2,popcnt,bmi,bmi2")))
#define BEEX_AVX512 \
  __attribute__((target("avx512f,avx512vpopcntdq,avx512vl,avx512bw,avx512dq,avx2,popcnt,bmi,bmi2")))
// what both AVX-512 backends share (activation packing): no VPOPCNTDQ, no VNNI
#define BEEX_AVX512BASE __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,popcnt,bmi,bmi2")))
#define BEEX_VNNI __attribute__((target("avx512f,avx512vnni,avx512vl,avx512bw,avx512dq,avx2,popcnt,bmi,bmi2")))
#endif

namespace {

using u64 = uint64_t;

// ---------------------------------------------------------------------------
// Epilogues: how a tile of popcounts becomes output.
// ---------------------------------------------------------------------------
struct IntEpilogue {
  int32_t* out;
  int64_t ldo;
  int64_t K;
  BEEX_INLINE void operator()(int64_t i, int64_t j, int64_t pc) const {
    out[i * ldo + j] = static_cast<int32_t>(K - 2 * pc);
  }
  IntEpilogue shifted(int64_t i0, int64_t j0) const { return {out + i0 * ldo + j0, ldo, K}; }
#if BEEX_X86
  // sixteen finished dot products (int32) for columns j..j+15
  BEEX_AVX512BASE BEEX_INLINE void store_dot16(int64_t i, int64_t j, __m512i d, __mmask16 m) const {
    _mm512_mask_storeu_epi32(out + i * ldo + j, m, d);
  }
  // four popcounts (int32) for columns j..j+3
  BEEX_AVX2 BEEX_INLINE void store4(int64_t i, int64_t j, __m128i pc) const {
    const __m128i d = _mm_sub_epi32(_mm_set1_epi32(static_cast<int>(K)), _mm_add_epi32(pc, pc));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i * ldo + j), d);
  }
#endif
};

struct FloatEpilogue {
  float* out;
  int64_t ldo;
  int64_t K;
  const float* alpha;
  const float* bias;  // may be null
  BEEX_INLINE void operator()(int64_t i, int64_t j, int64_t pc) const {
    float d = static_cast<float>(K - 2 * pc);
    float v = d * alpha[j];
    if (bias) v += bias[j];
    out[i * ldo + j] = v;
  }
  FloatEpilogue shifted(int64_t i0, int64_t j0) const {
    return {out + i0 * ldo + j0, ldo, K, alpha + j0, bias ? bias + j0 : nullptr};
  }
#if BEEX_X86
  // same arithmetic as operator(), sixteen finished dot products (int32), lanes outside m not stored
  BEEX_AVX512BASE BEEX_INLINE void store_dot16(int64_t i, int64_t j, __m512i d, __mmask16 m) const {
    __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(d), _mm512_maskz_loadu_ps(m, alpha + j));
    if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, bias + j));
    _mm512_mask_storeu_ps(out + i * ldo + j, m, v);
  }
  // same arithmetic as operator(): float(K - 2 pc) * alpha (+ bias), no FMA
  BEEX_AVX2 BEEX_INLINE void store4(int64_t i, int64_t j, __m128i pc) const {
    const __m128i d = _mm_sub_epi32(_mm_set1_epi32(static_cast<int>(K)), _mm_add_epi32(pc, pc));
    __m128 v = _mm_mul_ps(_mm_cvtepi32_ps(d), _mm_loadu_ps(alpha + j));
    if (bias) v = _mm_add_ps(v, _mm_loadu_ps(bias + j));
    _mm_storeu_ps(out + i * ldo + j, v);
  }
#endif
};

// ---------------------------------------------------------------------------
// Scalar popcount micro-kernel: MR rows of A against NR rows of B.
// Written once, always inlined into per-target wrappers so that under
// target("popcnt") __builtin_popcountll becomes the POPCNT instruction.
// ---------------------------------------------------------------------------
template <int MR, int NR>
BEEX_INLINE void micro_scalar(const u64* A, int64_t lda, const u64* B, int64_t ldb,
                              int64_t W, int64_t* res) {
  int64_t acc[MR][NR];
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NR; ++c) acc[r][c] = 0;
  for (int64_t w = 0; w < W; ++w) {
    u64 a[MR], b[NR];
    for (int r = 0; r < MR; ++r) a[r] = A[r * lda + w];
    for (int c = 0; c < NR; ++c) b[c] = B[c * ldb + w];
    for (int r = 0; r < MR; ++r)
      for (int c = 0; c < NR; ++c) acc[r][c] += __builtin_popcountll(a[r] ^ b[c]);
  }
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NR; ++c) res[r * NR + c] = acc[r][c];
}

constexpr int kMR = 2;
constexpr int kNR = 4;

// Tile [i0,i1) x [j0,j1) of the product, scalar micro-kernels.
template <class Epi>
BEEX_INLINE void tile_scalar(const u64* A, int64_t lda, const u64* B, int64_t ldb,
                             int64_t W, int64_t i0, int64_t i1, int64_t j0, int64_t j1,
                             const Epi& epi) {
  int64_t res[kMR * kNR];
  int64_t j = j0;
  for (; j + kNR <= j1; j += kNR) {
    const u64* Bj = B + j * ldb;
    int64_t i = i0;
    for (; i + kMR <= i1; i += kMR) {
      micro_scalar<kMR, kNR>(A + i * lda, lda, Bj, ldb, W, res);
      for (int r = 0; r < kMR; ++r)
        for (int c = 0; c < kNR; ++c) epi(i + r, j + c, res[r * kNR + c]);
    }
    for (; i < i1; ++i) {
      micro_scalar<1, kNR>(A + i * lda, lda, Bj, ldb, W, res);
      for (int c = 0; c < kNR; ++c) epi(i, j + c, res[c]);
    }
  }
  for (; j < j1; ++j) {
    const u64* Bj = B + j * ldb;
    int64_t i = i0;
    for (; i + kMR <= i1; i += kMR) {
      micro_scalar<kMR, 1>(A + i * lda, lda, Bj, ldb, W, res);
      for (int r = 0; r < kMR; ++r) epi(i + r, j, res[r]);
    }
    for (; i < i1; ++i) {
      micro_scalar<1, 1>(A + i * lda, lda, Bj, ldb, W, res);
      epi(i, j, res[0]);
    }
  }
}

// ---------------------------------------------------------------------------
// Activation packing.
// ---------------------------------------------------------------------------
BEEX_INLINE void pack_row_scalar(const float* x, int64_t K, u64* out, int64_t W) {
  for (int64_t w = 0; w < W; ++w) {
    const int64_t base = w * 64;
    const int64_t n = std::min<int64_t>(64, K - base);
    u64 bits = 0;
    for (int64_t t = 0; t < n; ++t) bits |= static_cast<u64>(x[base + t] >= 0.0f) << t;
    out[w] = bits;
  }
}

// ---------------------------------------------------------------------------
// Parallel helpers (no intrinsics in here: lambdas do not inherit target
// attributes, so they only ever call named per-target functions).
// ---------------------------------------------------------------------------
// Rows of A per cache block inside a chunk: keep the block within ~16 KiB of
// L1 while all B rows of the chunk stream past it.
inline int64_t block_rows(int64_t row_bytes) {
  return std::max<int64_t>(2, (16384 / std::max<int64_t>(row_bytes, 1)) & ~int64_t(1));
}
constexpr int64_t kSerialWork = 1 << 15;  // word-pairs below which threading does not pay

inline int64_t words_for(int64_t K) { return (K + 63) / 64; }

// Split the [M, N] output into one chunk per thread along the longer
// dimension (in micro-tile units), so a call opens a single parallel region.
// Each chunk prepares (packs / re-lays out) the operand rows it needs itself:
// the shorter operand is prepared redundantly by every thread, which is cheap
// next to the product.  f(i0, i1, j0, j1).
template <class F>
void for_chunks(int64_t M, int64_t N, int64_t W, const F& f, int64_t unit_n = 4, int64_t unit_m = 2) {
  const int64_t T = at::get_num_threads();
  if (T <= 1 || M * N * W <= kSerialWork || at::in_parallel_region()) {
    f(int64_t(0), M, int64_t(0), N);
    return;
  }
  const bool split_n = (N + unit_n - 1) / unit_n >= (M + unit_m - 1) / unit_m;
  const int64_t len = split_n ? N : M;
  const int64_t unit = split_n ? unit_n : unit_m;
  const int64_t units = (len + unit - 1) / unit;
  const int64_t chunks = std::min<int64_t>(T, units);
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t lo = std::min(len, (units * c / chunks) * unit);
      const int64_t hi = std::min(len, (units * (c + 1) / chunks) * unit);
      if (lo >= hi) continue;
      if (split_n) f(int64_t(0), M, lo, hi);
      else f(lo, hi, int64_t(0), N);
    }
  });
}

// f(r0, r1) over rows; cost_per_row in words.
template <class F>
void for_rows(int64_t R, int64_t cost_per_row, const F& f) {
  if (R * cost_per_row <= kSerialWork || at::get_num_threads() == 1) {
    f(int64_t(0), R);
    return;
  }
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(cost_per_row, 1));
  at::parallel_for(0, R, grain, f);
}

template <class T>
std::unique_ptr<T[]> scratch(int64_t n) {  // uninitialised scratch
  return std::unique_ptr<T[]>(new T[static_cast<size_t>(std::max<int64_t>(n, 1))]);
}

// ---------------------------------------------------------------------------
// Backend table.
// ---------------------------------------------------------------------------
using PackFn = void (*)(const float* x, int64_t ldx, int64_t r0, int64_t r1, int64_t K,
                        u64* out, int64_t W);
using MatmulFn = void (*)(const u64* A, const u64* B, int64_t M, int64_t N, int64_t W,
                          const IntEpilogue& epi);
using LinearFn = void (*)(const float* x, int64_t M, int64_t K, const u64* B, int64_t N,
                          int64_t W, const FloatEpilogue& epi);

struct Backend {
  const char* name;
  PackFn pack;
  MatmulFn matmul;
  LinearFn linear;
};

// Rows [i0, i0 + m) of A as bits: A's own (x == nullptr), or the floats x [.., K] packed
// by `pack` into buf (W words a row).
inline const u64* a_rows(PackFn pack, const float* x, int64_t K, const u64* A, int64_t i0, int64_t m, int64_t W,
                         std::unique_ptr<u64[]>& buf) {
  if (!x) return A + i0 * W;
  buf = scratch<u64>(m * W);
  pack(x + i0 * K, K, 0, m, K, buf.get(), W);
  return buf.get();
}

// Generic driver for backends that work on the bit-packed words directly.
// A rows come as bits (x == nullptr) or are packed here from floats x.
template <class TileFn, class Epi>
void run_bits(PackFn pack, TileFn tile, const float* x, int64_t K, const u64* A, const u64* B,
              int64_t M, int64_t N, int64_t W, const Epi& epi) {
  for_chunks(M, N, W, [&](int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
    const int64_t m = i1 - i0, n = j1 - j0;
    std::unique_ptr<u64[]> Abuf;
    const u64* Ap = a_rows(pack, x, K, A, i0, m, W, Abuf);
    const Epi e = epi.shifted(i0, j0);
    const int64_t bm = block_rows(W * 8);
    for (int64_t b0 = 0; b0 < m; b0 += bm)
      tile(Ap, W, B + j0 * W, W, W, b0, std::min(m, b0 + bm), int64_t(0), n, e);
  });
}

// ---- portable --------------------------------------------------------------
void pack_portable(const float* x, int64_t ldx, int64_t r0, int64_t r1, int64_t K, u64* out,
                   int64_t W) {
  for (int64_t r = r0; r < r1; ++r) pack_row_scalar(x + r * ldx, K, out + r * W, W);
}
void tile_int_portable(const u64* A, int64_t lda, const u64* B, int64_t ldb, int64_t W,
                       int64_t i0, int64_t i1, int64_t j0, int64_t j1, const IntEpilogue& e) {
  tile_scalar(A, lda, B, ldb, W, i0, i1, j0, j1, e);
}
void tile_float_portable(const u64* A, int64_t lda, const u64* B, int64_t ldb, int64_t W,
                         int64_t i0, int64_t i1, int64_t j0, int64_t j1,
                         const FloatEpilogue& e) {
  tile_scalar(A, lda, B, ldb, W, i0, i1, j0, j1, e);
}
void matmul_portable(const u64* A, const u64* B, int64_t M, int64_t N, int64_t W,
                     const IntEpilogue& e) {
  run_bits(pack_portable, tile_int_portable, nullptr, 0, A, B, M, N, W, e);
}
void linear_portable(const float* x, int64_t M, int64_t K, const u64* B, int64_t N, int64_t W,
                     const FloatEpilogue& e) {
  run_bits(pack_portable, tile_float_portable, x, K, nullptr, B, M, N, W, e);
}

#if BEEX_X86
// ---- AVX2 ----------------------------------------------------------------------
// Popcount by nibble lookup (VPSHUFB).  Both operands are first re-laid out
// "nibble split": per 2-word (128-bit) chunk, one 32-byte vector holding the
// 16 low nibbles then the 16 high nibbles of those bytes, one nibble per byte.
// Since nibble(a XOR b) = nibble(a) XOR nibble(b), each 2-word pair costs one
// XOR + VPSHUFB + ADD in the inner loop (no shifting or masking there).
// Byte counters gain <= 4 per vector, so they are flushed (VPSADBW) every 63
// vectors.  Padding words/bits are zero in both operands and add nothing.
BEEX_AVX2 void pack_avx2(const float* x, int64_t ldx, int64_t r0, int64_t r1, int64_t K,
                         u64* out, int64_t W) {
  const __m256 zero = _mm256_setzero_ps();
  const int64_t Wfull = K / 64;
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * ldx;
    u64* o = out + r * W;
    for (int64_t w = 0; w < Wfull; ++w) {
      const float* p = xr + w * 64;
      u64 bits = 0;
      for (int g = 0; g < 8; ++g) {
        __m256 v = _mm256_loadu_ps(p + 8 * g);
        u64 m = static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_GE_OQ)));
        bits |= m << (8 * g);
      }
      o[w] = bits;
    }
    if (Wfull < W) {  // tail word: scalar, leaves padding bits at 0
      const int64_t base = Wfull * 64;
      u64 bits = 0;
      for (int64_t t = 0; base + t < K; ++t) bits |= static_cast<u64>(xr[base + t] >= 0.0f) << t;
      o[Wfull] = bits;
    }
  }
}

inline int64_t split_chunks(int64_t W) { return (W + 1) / 2; }  // 32-byte vectors per row
inline int64_t split_ld(int64_t W) { return split_chunks(W) * 32; }  // bytes per split row

BEEX_AVX2 void split_rows_avx2(const u64* bits, int64_t W, int64_t r0, int64_t r1,
                               uint8_t* out) {
  const __m128i m = _mm_set1_epi8(0x0f);
  const int64_t C = split_chunks(W), ld = C * 32;
  for (int64_t r = r0; r < r1; ++r) {
    const u64* b = bits + r * W;
    uint8_t* o = out + r * ld;
    for (int64_t c = 0; c < C; ++c) {
      const __m128i v = 2 * c + 2 <= W
                            ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2 * c))
                            : _mm_cvtsi64_si128(static_cast<long long>(b[2 * c]));
      const __m128i lo = _mm_and_si128(v, m);
      const __m128i hi = _mm_and_si128(_mm_srli_epi16(v, 4), m);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + 32 * c), _mm256_set_m128i(hi, lo));
    }
  }
}

// Four vectors of 4 x u64 -> one vector {sum(a), sum(b), sum(c), sum(d)}.
BEEX_AVX2 BEEX_INLINE __m256i hsum4_epi64(__m256i a, __m256i b, __m256i c, __m256i d) {
  __m256i ab = _mm256_add_epi64(_mm256_unpacklo_epi64(a, b), _mm256_unpackhi_epi64(a, b));
  __m256i cd = _mm256_add_epi64(_mm256_unpacklo_epi64(c, d), _mm256_unpackhi_epi64(c, d));
  return _mm256_add_epi64(_mm256_permute2x128_si256(ab, cd, 0x20),
                          _mm256_permute2x128_si256(ab, cd, 0x31));
}
BEEX_AVX2 BEEX_INLINE int64_t hsum1_epi64(__m256i a) {
  __m128i s = _mm_add_epi64(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
  return _mm_cvtsi128_si64(s) + _mm_extract_epi64(s, 1);
}

// Byte counters for vectors [c0, c1) (at most 63, so bytes cannot overflow).
template <int MR, int NR>
BEEX_AVX2 BEEX_INLINE void accum_bytes_avx2(const uint8_t* A, const uint8_t* B, int64_t ld,
                                            int64_t c0, int64_t c1, __m256i (&acc)[MR][NR]) {
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,  //
                                       0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  for (int r = 0; r < MR; ++r)
    for (int k = 0; k < NR; ++k) acc[r][k] = _mm256_setzero_si256();
  for (int64_t off = c0 * 32; off < c1 * 32; off += 32) {
    __m256i a[MR];
    for (int r = 0; r < MR; ++r)
      a[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(A + r * ld + off));
    for (int k = 0; k < NR; ++k) {
      const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(B + k * ld + off));
      for (int r = 0; r < MR; ++r)
        acc[r][k] = _mm256_add_epi8(acc[r][k], _mm256_shuffle_epi8(lut, _mm256_xor_si256(a[r], b)));
    }
  }
}

// tot[r][k]: 4 x u64 partial popcounts of A row r against B row k.
// CC > 0: the number of vectors per row is the compile-time constant CC
// (fully unrolled inner loop for the common small K); CC == 0: runtime C.
template <int MR, int NR, int CC = 0>
BEEX_AVX2 BEEX_INLINE void accum_split_avx2(const uint8_t* A, const uint8_t* B, int64_t ld,
                                            int64_t C_rt, __m256i (&tot)[MR][NR]) {
  const int64_t C = CC > 0 ? CC : C_rt;
  const __m256i z = _mm256_setzero_si256();
  __m256i acc[MR][NR];
  accum_bytes_avx2<MR, NR>(A, B, ld, 0, std::min<int64_t>(C, 63), acc);
  for (int r = 0; r < MR; ++r)
    for (int k = 0; k < NR; ++k) tot[r][k] = _mm256_sad_epu8(acc[r][k], z);
  for (int64_t c0 = 63; c0 < C; c0 += 63) {  // only for K > 63 * 128
    accum_bytes_avx2<MR, NR>(A, B, ld, c0, std::min<int64_t>(C, c0 + 63), acc);
    for (int r = 0; r < MR; ++r)
      for (int k = 0; k < NR; ++k) tot[r][k] = _mm256_add_epi64(tot[r][k], _mm256_sad_epu8(acc[r][k], z));
  }
}

// 4 x (4 x u64 partial sums) -> 4 x int32 totals
template <int NR>
BEEX_AVX2 BEEX_INLINE __m128i reduce4_epi32(const __m256i (&t)[NR], int q) {
  const __m256i s = hsum4_epi64(t[q], t[q + 1], t[q + 2], t[q + 3]);
  return _mm256_castsi256_si128(
      _mm256_permutevar8x32_epi32(s, _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7)));
}

template <int CC, class Epi>
BEEX_AVX2 BEEX_INLINE void tile_split_avx2_cc(const uint8_t* A, const uint8_t* B, int64_t ld,
                                           int64_t C, int64_t i0, int64_t i1, int64_t j0,
                                           int64_t j1, const Epi& epi_in) {
#ifndef BEEX_AVX2_MR
#define BEEX_AVX2_MR 1
#define BEEX_AVX2_NR 4
#endif
  constexpr int MR = BEEX_AVX2_MR, NR = BEEX_AVX2_NR;  // NR: multiple of 4
  const Epi epi = epi_in;  // local copy: its fields stay in registers
  int64_t j = j0;
  for (; j + NR <= j1; j += NR) {
    const uint8_t* Bj = B + j * ld;
    int64_t i = i0;
    for (; i + MR <= i1; i += MR) {
      __m256i tot[MR][NR];
      accum_split_avx2<MR, NR, CC>(A + i * ld, Bj, ld, C, tot);
      for (int r = 0; r < MR; ++r)
        for (int q = 0; q < NR; q += 4) epi.store4(i + r, j + q, reduce4_epi32(tot[r], q));
    }
    for (; i < i1; ++i) {
      __m256i tot[1][NR];
      accum_split_avx2<1, NR, CC>(A + i * ld, Bj, ld, C, tot);
      for (int q = 0; q < NR; q += 4) epi.store4(i, j + q, reduce4_epi32(tot[0], q));
    }
  }
  for (; j + 4 <= j1; j += 4) {  // NR > 4: leftover groups of four columns
    const uint8_t* Bj = B + j * ld;
    for (int64_t i = i0; i < i1; ++i) {
      __m256i tot[1][4];
      accum_split_avx2<1, 4, CC>(A + i * ld, Bj, ld, C, tot);
      epi.store4(i, j, reduce4_epi32(tot[0], 0));
    }
  }
  for (; j < j1; ++j) {
    const uint8_t* Bj = B + j * ld;
    int64_t i = i0;
    for (; i + MR <= i1; i += MR) {
      __m256i tot[MR][1];
      accum_split_avx2<MR, 1, CC>(A + i * ld, Bj, ld, C, tot);
      for (int r = 0; r < MR; ++r) epi(i + r, j, hsum1_epi64(tot[r][0]));
    }
    for (; i < i1; ++i) {
      __m256i tot[1][1];
      accum_split_avx2<1, 1, CC>(A + i * ld, Bj, ld, C, tot);
      epi(i, j, hsum1_epi64(tot[0][0]));
    }
  }
}
template <class Epi>
BEEX_AVX2 BEEX_INLINE void tile_split_avx2(const uint8_t* A, const uint8_t* B, int64_t ld,
                                           int64_t C, int64_t i0, int64_t i1, int64_t j0,
                                           int64_t j1, const Epi& epi) {
  switch (C) {  // K <= 128, 256, 384, 512: unrolled
    case 1: tile_split_avx2_cc<1>(A, B, ld, C, i0, i1, j0, j1, epi); break;
    case 2: tile_split_avx2_cc<2>(A, B, ld, C, i0, i1, j0, j1, epi); break;
    case 3: tile_split_avx2_cc<3>(A, B, ld, C, i0, i1, j0, j1, epi); break;
    case 4: tile_split_avx2_cc<4>(A, B, ld, C, i0, i1, j0, j1, epi); break;
    default: tile_split_avx2_cc<0>(A, B, ld, C, i0, i1, j0, j1, epi); break;
  }
}
BEEX_AVX2 void tile_split_int_avx2(const uint8_t* A, const uint8_t* B, int64_t ld, int64_t C,
                                   int64_t i0, int64_t i1, int64_t j0, int64_t j1,
                                   const IntEpilogue& e) {
  tile_split_avx2(A, B, ld, C, i0, i1, j0, j1, e);
}
BEEX_AVX2 void tile_split_float_avx2(const uint8_t* A, const uint8_t* B, int64_t ld, int64_t C,
                                     int64_t i0, int64_t i1, int64_t j0, int64_t j1,
                                     const FloatEpilogue& e) {
  tile_split_avx2(A, B, ld, C, i0, i1, j0, j1, e);
}

// A rows are either given as bits (x == nullptr) or packed here from floats.
template <class Epi, class TileFn>
void run_avx2(TileFn tile, const float* x, int64_t K, const u64* A, const u64* B, int64_t M,
              int64_t N, int64_t W, const Epi& epi) {
  const int64_t C = split_chunks(W), ld = split_ld(W);
  for_chunks(M, N, W, [&](int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
    const int64_t m = i1 - i0, n = j1 - j0;
    auto As = scratch<uint8_t>(m * ld);
    auto Bs = scratch<uint8_t>(n * ld);
    if (x) {
      auto bits = scratch<u64>(m * W);
      pack_avx2(x + i0 * K, K, 0, m, K, bits.get(), W);
      split_rows_avx2(bits.get(), W, 0, m, As.get());
    } else {
      split_rows_avx2(A + i0 * W, W, 0, m, As.get());
    }
    split_rows_avx2(B + j0 * W, W, 0, n, Bs.get());
    const Epi e = epi.shifted(i0, j0);
    const int64_t bm = block_rows(ld);
    for (int64_t b0 = 0; b0 < m; b0 += bm)
      tile(As.get(), Bs.get(), ld, C, b0, std::min(m, b0 + bm), int64_t(0), n, e);
  });
}
void matmul_avx2(const u64* A, const u64* B, int64_t M, int64_t N, int64_t W,
                 const IntEpilogue& e) {
  run_avx2(tile_split_int_avx2, nullptr, 0, A, B, M, N, W, e);
}
void linear_avx2(const float* x, int64_t M, int64_t K, const u64* B, int64_t N, int64_t W,
                 const FloatEpilogue& e) {
  run_avx2(tile_split_float_avx2, x, K, nullptr, B, M, N, W, e);
}

// ---- AVX-512F + VPOPCNTDQ -------------------------------------------------------
BEEX_AVX512BASE void pack_avx512(const float* x, int64_t ldx, int64_t r0, int64_t r1, int64_t K,
                             u64* out, int64_t W) {
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * ldx;
    u64* o = out + r * W;
    for (int64_t w = 0; w < W; ++w) {
      const int64_t base = w * 64;
      const int64_t n = std::min<int64_t>(64, K - base);
      u64 bits = 0;
      for (int g = 0; g < 4; ++g) {
        const int64_t left = n - 16 * g;
        if (left <= 0) break;
        __mmask16 lm = left >= 16 ? static_cast<__mmask16>(0xFFFF)
                                  : static_cast<__mmask16>((1u << left) - 1u);
        __m512 v = _mm512_maskz_loadu_ps(lm, xr + base + 16 * g);
        // masked compare: lanes outside lm give 0, so padding bits stay 0
        __mmask16 m = _mm512_mask_cmp_ps_mask(lm, v, zero, _CMP_GE_OQ);
        bits |= static_cast<u64>(static_cast<uint16_t>(m)) << (16 * g);
      }
      o[w] = bits;
    }
  }
}

// Register-blocked XOR-popcount tile; SIMD lanes are 16 output columns, 32 bits of K
// per step.  B is first re-laid out per call as a "column panel": block b holds
// columns 16b..16b+15, half-word h (bits 32h..32h+31 of K) of column 16b+l at
// P[(b * H + h) * 16 + l], H = 2 W (columns past the chunk are zero).  The kernel
// then streams K 32 bits at a time: MR broadcast half-words of A against NR panel
// vectors into MR x NR int32 accumulators, with no horizontal reduction - lane l of
// acc[r][c] is already the popcount of output (i + r, j + 16c + l).  Per step: NR
// loads + MR broadcasts for MR * NR (XOR, VPOPCNTD, ADD) triples, and the epilogue
// handles 16 outputs per vector.
constexpr int kMR512 = 4;
constexpr int kNR512 = 4;

// 16 x 16 transpose of 32-bit elements: r[l] element q -> r[q] element l.
BEEX_AVX512BASE BEEX_INLINE void transpose16x16_epi32(__m512i (&r)[16]) {
  __m512i a[16], b[16];
  for (int p = 0; p < 8; ++p) {  // per 128-bit lane L: rows 2p, 2p+1 of elements 4L, 4L+1 | 4L+2, 4L+3
    a[2 * p] = _mm512_unpacklo_epi32(r[2 * p], r[2 * p + 1]);
    a[2 * p + 1] = _mm512_unpackhi_epi32(r[2 * p], r[2 * p + 1]);
  }
  for (int p = 0; p < 4; ++p) {  // b[4p+s] lane L: element 4L+s of rows 4p..4p+3
    b[4 * p + 0] = _mm512_unpacklo_epi64(a[4 * p], a[4 * p + 2]);
    b[4 * p + 1] = _mm512_unpackhi_epi64(a[4 * p], a[4 * p + 2]);
    b[4 * p + 2] = _mm512_unpacklo_epi64(a[4 * p + 1], a[4 * p + 3]);
    b[4 * p + 3] = _mm512_unpackhi_epi64(a[4 * p + 1], a[4 * p + 3]);
  }
  for (int s = 0; s < 4; ++s) {  // 4 x 4 transpose of 128-bit lanes of b[s], b[4+s], b[8+s], b[12+s]
    const __m512i c0 = _mm512_shuffle_i32x4(b[s], b[4 + s], _MM_SHUFFLE(1, 0, 1, 0));
    const __m512i c1 = _mm512_shuffle_i32x4(b[s], b[4 + s], _MM_SHUFFLE(3, 2, 3, 2));
    const __m512i c2 = _mm512_shuffle_i32x4(b[8 + s], b[12 + s], _MM_SHUFFLE(1, 0, 1, 0));
    const __m512i c3 = _mm512_shuffle_i32x4(b[8 + s], b[12 + s], _MM_SHUFFLE(3, 2, 3, 2));
    r[s] = _mm512_shuffle_i32x4(c0, c2, _MM_SHUFFLE(2, 0, 2, 0));       // element 0*4 + s
    r[4 + s] = _mm512_shuffle_i32x4(c0, c2, _MM_SHUFFLE(3, 1, 3, 1));   // element 1*4 + s
    r[8 + s] = _mm512_shuffle_i32x4(c1, c3, _MM_SHUFFLE(2, 0, 2, 0));   // element 2*4 + s
    r[12 + s] = _mm512_shuffle_i32x4(c1, c3, _MM_SHUFFLE(3, 1, 3, 1));  // element 3*4 + s
  }
}

// Column panel of n rows of B (W words = 2 W half-words each, contiguous).
BEEX_AVX512 void panel_avx512(const u64* B, int64_t n, int64_t W, uint32_t* P) {
  const int64_t H = 2 * W;
  for (int64_t b = 0; b * 16 < n; ++b) {
    const int64_t cols = std::min<int64_t>(16, n - 16 * b);
    uint32_t* pb = P + b * H * 16;
    for (int64_t h = 0; h < H; h += 16) {
      const int64_t left = std::min<int64_t>(16, H - h);
      const __mmask16 m = static_cast<__mmask16>((1u << left) - 1u);
      __m512i r[16];
      for (int l = 0; l < 16; ++l)
        r[l] = l < cols ? _mm512_maskz_loadu_epi32(m, reinterpret_cast<const uint32_t*>(B + (16 * b + l) * W) + h)
                        : _mm512_setzero_si512();
      transpose16x16_epi32(r);
      for (int t = 0; t < left; ++t) _mm512_storeu_si512(pb + (h + t) * 16, r[t]);
    }
  }
}

// The accumulation loop is its own (not inlined) function: inlined next to the float
// epilogue, GCC 12 rotates the accumulators through extra register moves every step.
template <int MR, int NR>
BEEX_AVX512 __attribute__((noinline)) void cols_accum_avx512(const uint32_t* Ai, int64_t lda, const uint32_t* P,
                                                             int64_t H, __m512i (&out)[MR][NR]) {
  __m512i acc[MR][NR];  // local, so that they live in registers
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NR; ++c) acc[r][c] = _mm512_setzero_si512();
  for (int64_t h = 0; h < H; ++h) {
    __m512i b[NR];
    for (int c = 0; c < NR; ++c) b[c] = _mm512_loadu_si512(P + (c * H + h) * 16);
    for (int r = 0; r < MR; ++r) {
      const __m512i a = _mm512_set1_epi32(static_cast<int>(Ai[r * lda + h]));
      for (int c = 0; c < NR; ++c)
        acc[r][c] = _mm512_add_epi32(acc[r][c], _mm512_popcnt_epi32(_mm512_xor_si512(a, b[c])));
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NR; ++c) out[r][c] = acc[r][c];
}

template <int MR, int NR, class Epi>
BEEX_AVX512 BEEX_INLINE void cols_block_avx512(const uint32_t* A, int64_t lda, const uint32_t* P, int64_t H,
                                               int64_t K, int64_t i, int64_t j, int64_t n, const Epi& epi) {
  __m512i acc[MR][NR];
  cols_accum_avx512<MR, NR>(A + i * lda, lda, P, H, acc);
  const __m512i kv = _mm512_set1_epi32(static_cast<int>(K));
  for (int c = 0; c < NR; ++c) {
    const int64_t left = n - (j + 16 * c);
    if (left <= 0) break;
    const __mmask16 m = left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1u);
    for (int r = 0; r < MR; ++r)
      epi.store_dot16(i + r, j + 16 * c, _mm512_sub_epi32(kv, _mm512_add_epi32(acc[r][c], acc[r][c])), m);
  }
}

// rows [i, i + rem), rem < MR: one block of exactly rem rows
template <int R, int NR, class Epi>
BEEX_AVX512 BEEX_INLINE void cols_tail_avx512(const uint32_t* A, int64_t lda, const uint32_t* P, int64_t H,
                                              int64_t K, int64_t i, int64_t rem, int64_t j, int64_t n,
                                              const Epi& epi) {
  if constexpr (R > 0) {
    if (rem == R) cols_block_avx512<R, NR>(A, lda, P, H, K, i, j, n, epi);
    else cols_tail_avx512<R - 1, NR>(A, lda, P, H, K, i, rem, j, n, epi);
  }
}

template <class Epi>
BEEX_AVX512 BEEX_INLINE void tile_cols_avx512_impl(const u64* A64, int64_t W, const uint32_t* P, int64_t m,
                                                   int64_t n, const Epi& epi) {
  const uint32_t* A = reinterpret_cast<const uint32_t*>(A64);
  const int64_t H = 2 * W, lda = 2 * W, K = epi.K, nb = (n + 15) / 16;
  int64_t b = 0;
  for (; b + kNR512 <= nb; b += kNR512) {  // NR column blocks: the panel slice stays in L1
    const uint32_t* Pb = P + b * H * 16;
    int64_t i = 0;
    for (; i + kMR512 <= m; i += kMR512) cols_block_avx512<kMR512, kNR512>(A, lda, Pb, H, K, i, 16 * b, n, epi);
    cols_tail_avx512<kMR512 - 1, kNR512>(A, lda, Pb, H, K, i, m - i, 16 * b, n, epi);
  }
  for (; b < nb; ++b) {
    const uint32_t* Pb = P + b * H * 16;
    int64_t i = 0;
    for (; i + kMR512 <= m; i += kMR512) cols_block_avx512<kMR512, 1>(A, lda, Pb, H, K, i, 16 * b, n, epi);
    cols_tail_avx512<kMR512 - 1, 1>(A, lda, Pb, H, K, i, m - i, 16 * b, n, epi);
  }
}
BEEX_AVX512 void tile_cols_int_avx512(const u64* A, int64_t W, const uint32_t* P, int64_t m, int64_t n,
                                      const IntEpilogue& e) {
  tile_cols_avx512_impl(A, W, P, m, n, e);
}
BEEX_AVX512 void tile_cols_float_avx512(const u64* A, int64_t W, const uint32_t* P, int64_t m, int64_t n,
                                        const FloatEpilogue& e) {
  tile_cols_avx512_impl(A, W, P, m, n, e);
}

// A rows come as bits (x == nullptr) or are packed here from floats; each chunk
// builds the column panel of its own B rows, or reads its slice of `laid`, the panel of
// all N rows built once (binary_layout; chunks start at multiples of 64 columns).
// (Little-endian x86: half-word h of a row's u64 words is bits 32h..32h+31 of K, in
// both operands alike.)
template <class Epi, class TileFn>
void run_cols_avx512(TileFn tile, const float* x, int64_t K, const u64* A, const u64* B, int64_t M,
                     int64_t N, int64_t W, const Epi& epi, const uint32_t* laid = nullptr) {
  for_chunks(M, N, W, [&](int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
    const int64_t m = i1 - i0, n = j1 - j0;
    std::unique_ptr<u64[]> Abuf;
    const u64* Ap = a_rows(pack_avx512, x, K, A, i0, m, W, Abuf);
    std::unique_ptr<uint32_t[]> P;
    const uint32_t* Pp = laid ? laid + (j0 / 16) * 2 * W * 16 : nullptr;
    if (!laid) {
      P = scratch<uint32_t>((n + 15) / 16 * 16 * 2 * W);
      panel_avx512(B + j0 * W, n, W, P.get());
      Pp = P.get();
    }
    tile(Ap, W, Pp, m, n, epi.shifted(i0, j0));
  }, 16 * kNR512, kMR512);
}
void matmul_avx512(const u64* A, const u64* B, int64_t M, int64_t N, int64_t W,
                   const IntEpilogue& e) {
  run_cols_avx512(tile_cols_int_avx512, nullptr, e.K, A, B, M, N, W, e);
}
void linear_avx512(const float* x, int64_t M, int64_t K, const u64* B, int64_t N, int64_t W,
                   const FloatEpilogue& e) {
  run_cols_avx512(tile_cols_float_avx512, x, K, nullptr, B, M, N, W, e);
}
// the linear on a panel of all N rows of B built once (binary_layout)
void linear_avx512_laid(const float* x, int64_t M, int64_t K, const u64* B, int64_t N, int64_t W,
                        const uint32_t* laid, const FloatEpilogue& e) {
  run_cols_avx512(tile_cols_float_avx512, x, K, nullptr, B, M, N, W, e, laid);
}

// ---- AVX512-VNNI on unpacked +-1 tiles --------------------------------------------
// Weights stay 1-bit in memory; each call unpacks its B rows into an int8 +-1 panel
// (block b: columns 16b..16b+15; k-quad q of column 16b+l at byte ((b*Q + q)*16 + l)*4,
// Q = 16 W quads per column) and the activations into u8 bits {0, 1}.  VPDPBUSD sums
// u8 * s8 products into int32 exactly (no saturation), so with S = sum_k bit(a_k) * b_k
// and colsum_j = sum_k b_jk = 2 popcount(B_j) - K:  dot = 2 S - colsum_j  (+-1 products
// are exact in int32).  Padding: activation bytes past K are 0, so the -1 bytes that
// padding bits of B unpack to add nothing.  SIMD lanes are 16 output columns.
constexpr int kMRvnni = 4;
constexpr int kNRvnni = 4;

// +-1 int8 panel and column sums of n rows of B (W words each); cs gets ceil(n/16)*16 entries.
BEEX_VNNI void panel_vnni(const u64* B, int64_t n, int64_t W, int64_t K, int8_t* P, int32_t* cs) {
  const __m512i plus = _mm512_set1_epi8(1), minus = _mm512_set1_epi8(-1);
  const int64_t Q = 16 * W;
  for (int64_t b = 0; b * 16 < n; ++b) {
    const int64_t cols = std::min<int64_t>(16, n - 16 * b);
    for (int l = 0; l < 16; ++l) {
      int64_t pc = 0;
      if (l < cols)
        for (int64_t w = 0; w < W; ++w) pc += _mm_popcnt_u64(B[(16 * b + l) * W + w]);
      cs[16 * b + l] = l < cols ? static_cast<int32_t>(2 * pc - K) : 0;
    }
    int8_t* pb = P + b * Q * 64;
    for (int64_t w = 0; w < W; ++w) {
      __m512i r[16];
      for (int l = 0; l < 16; ++l)
        r[l] = l < cols ? _mm512_mask_blend_epi8(static_cast<__mmask64>(B[(16 * b + l) * W + w]), minus, plus)
                        : _mm512_setzero_si512();
      transpose16x16_epi32(r);
      for (int q = 0; q < 16; ++q) _mm512_storeu_si512(pb + (w * 16 + q) * 64, r[q]);
    }
  }
}

// Activation bits -> u8 {0, 1}, 64 bytes per word.
BEEX_VNNI void unpack_bits_vnni(const u64* A, int64_t m, int64_t W, uint8_t* out) {
  const __m512i one = _mm512_set1_epi8(1);
  for (int64_t t = 0; t < m * W; ++t)
    _mm512_storeu_si512(out + t * 64, _mm512_maskz_mov_epi8(static_cast<__mmask64>(A[t]), one));
}

template <int MR, int NR>  // not inlined: see cols_accum_avx512
BEEX_VNNI __attribute__((noinline)) void vnni_accum(const uint8_t* Ai, int64_t lda, const int8_t* P, int64_t Q,
                                                    int64_t Qk, __m512i (&out)[MR][NR]) {
  __m512i acc[MR][NR];  // local, so that they live in registers
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NR; ++c) acc[r][c] = _mm512_setzero_si512();
  for (int64_t q = 0; q < Qk; ++q) {
    __m512i b[NR];
    for (int c = 0; c < NR; ++c) b[c] = _mm512_loadu_si512(P + (c * Q + q) * 64);
    for (int r = 0; r < MR; ++r) {
      int32_t aq;
      std::memcpy(&aq, Ai + r * lda + 4 * q, 4);
      const __m512i a = _mm512_set1_epi32(aq);
      for (int c = 0; c < NR; ++c) acc[r][c] = _mm512_dpbusd_epi32(acc[r][c], a, b[c]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NR; ++c) out[r][c] = acc[r][c];
}

template <int MR, int NR, class Epi>
BEEX_VNNI BEEX_INLINE void vnni_block(const uint8_t* A, int64_t lda, const int8_t* P, int64_t Q, int64_t Qk,
                                      const int32_t* cs, int64_t i, int64_t j, int64_t n, const Epi& epi) {
  __m512i acc[MR][NR];
  vnni_accum<MR, NR>(A + i * lda, lda, P, Q, Qk, acc);
  for (int c = 0; c < NR; ++c) {
    const int64_t jj = j + 16 * c, left = n - jj;
    if (left <= 0) break;
    const __mmask16 m = left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1u);
    const __m512i colsum = _mm512_loadu_si512(cs + jj);
    for (int r = 0; r < MR; ++r)
      epi.store_dot16(i + r, jj, _mm512_sub_epi32(_mm512_add_epi32(acc[r][c], acc[r][c]), colsum), m);
  }
}

template <int R, int NR, class Epi>
BEEX_VNNI BEEX_INLINE void vnni_tail(const uint8_t* A, int64_t lda, const int8_t* P, int64_t Q, int64_t Qk,
                                     const int32_t* cs, int64_t i, int64_t rem, int64_t j, int64_t n,
                                     const Epi& epi) {
  if constexpr (R > 0) {
    if (rem == R) vnni_block<R, NR>(A, lda, P, Q, Qk, cs, i, j, n, epi);
    else vnni_tail<R - 1, NR>(A, lda, P, Q, Qk, cs, i, rem, j, n, epi);
  }
}

template <class Epi>
BEEX_VNNI BEEX_INLINE void tile_vnni_impl(const uint8_t* A, int64_t lda, const int8_t* P, int64_t W, int64_t K,
                                          const int32_t* cs, int64_t m, int64_t n, const Epi& epi) {
  const int64_t Q = 16 * W, Qk = (K + 3) / 4, nb = (n + 15) / 16;
  int64_t b = 0;
  for (; b + kNRvnni <= nb; b += kNRvnni) {
    const int8_t* Pb = P + b * Q * 64;
    int64_t i = 0;
    for (; i + kMRvnni <= m; i += kMRvnni)
      vnni_block<kMRvnni, kNRvnni>(A, lda, Pb, Q, Qk, cs, i, 16 * b, n, epi);
    vnni_tail<kMRvnni - 1, kNRvnni>(A, lda, Pb, Q, Qk, cs, i, m - i, 16 * b, n, epi);
  }
  for (; b < nb; ++b) {
    const int8_t* Pb = P + b * Q * 64;
    int64_t i = 0;
    for (; i + kMRvnni <= m; i += kMRvnni) vnni_block<kMRvnni, 1>(A, lda, Pb, Q, Qk, cs, i, 16 * b, n, epi);
    vnni_tail<kMRvnni - 1, 1>(A, lda, Pb, Q, Qk, cs, i, m - i, 16 * b, n, epi);
  }
}
BEEX_VNNI void tile_vnni_int(const uint8_t* A, int64_t lda, const int8_t* P, int64_t W, int64_t K,
                             const int32_t* cs, int64_t m, int64_t n, const IntEpilogue& e) {
  tile_vnni_impl(A, lda, P, W, K, cs, m, n, e);
}
BEEX_VNNI void tile_vnni_float(const uint8_t* A, int64_t lda, const int8_t* P, int64_t W, int64_t K,
                               const int32_t* cs, int64_t m, int64_t n, const FloatEpilogue& e) {
  tile_vnni_impl(A, lda, P, W, K, cs, m, n, e);
}

template <class Epi, class TileFn>
void run_vnni(TileFn tile, const float* x, int64_t K, const u64* A, const u64* B, int64_t M, int64_t N,
              int64_t W, const Epi& epi) {
  for_chunks(M, N, W, [&](int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
    const int64_t m = i1 - i0, n = j1 - j0, nb = (n + 15) / 16;
    std::unique_ptr<u64[]> Abuf;
    const u64* Ap = a_rows(pack_avx512, x, K, A, i0, m, W, Abuf);
    auto Au = scratch<uint8_t>(m * W * 64);
    unpack_bits_vnni(Ap, m, W, Au.get());
    auto P = scratch<int8_t>(nb * 16 * W * 64);
    auto cs = scratch<int32_t>(nb * 16);
    panel_vnni(B + j0 * W, n, W, K, P.get(), cs.get());
    tile(Au.get(), W * 64, P.get(), W, K, cs.get(), m, n, epi.shifted(i0, j0));
  }, 16 * kNRvnni, kMRvnni);
}
void matmul_vnni(const u64* A, const u64* B, int64_t M, int64_t N, int64_t W, const IntEpilogue& e) {
  run_vnni(tile_vnni_int, nullptr, e.K, A, B, M, N, W, e);
}
void linear_vnni(const float* x, int64_t M, int64_t K, const u64* B, int64_t N, int64_t W,
                 const FloatEpilogue& e) {
  run_vnni(tile_vnni_float, x, K, nullptr, B, M, N, W, e);
}
#endif  // BEEX_X86
#if BEEX_NEON
#include "neon_backend.h"  // kNeon
#endif

const Backend kPortable{"portable", pack_portable, matmul_portable, linear_portable};
#if BEEX_X86
const Backend kAvx2{"avx2", pack_avx2, matmul_avx2, linear_avx2};
const Backend kAvx512{"avx512-vpopcnt", pack_avx512, matmul_avx512, linear_avx512};
const Backend kVnni{"avx512-vnni", pack_avx512, matmul_vnni, linear_vnni};
#endif

bool cpu_has_avx512_vpopcnt() {
#if BEEX_X86 && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq");
#else
  return false;
#endif
}
bool cpu_has_avx512_vnni() {
#if BEEX_X86 && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vnni") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("popcnt");
#else
  return false;
#endif
}
bool cpu_has_avx2() {
#if BEEX_X86 && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
#else
  return false;
#endif
}

std::vector<const Backend*> available() {
  std::vector<const Backend*> v;
#if BEEX_X86
  if (cpu_has_avx512_vpopcnt()) v.push_back(&kAvx512);
  if (cpu_has_avx2()) v.push_back(&kAvx2);
  if (cpu_has_avx512_vnni()) v.push_back(&kVnni);  // exact, but slower than avx2 where measured
#endif
#if BEEX_NEON
  v.push_back(&kNeon);
#endif
  v.push_back(&kPortable);
  return v;
}

const Backend*& current_backend() {
  static const Backend* b = available().front();
  return b;
}

// ---------------------------------------------------------------------------
// Ops.
// ---------------------------------------------------------------------------
void check_packed(const at::Tensor& t, const char* what) {
  TORCH_CHECK(t.dim() == 2, what, " must be 2-D [rows, words], got ", t.dim(), "-D");
  TORCH_CHECK(t.scalar_type() == at::kUInt64 || t.scalar_type() == at::kLong, what,
              " must be uint64 (or an int64 view of it), got ", t.scalar_type());
  TORCH_CHECK(t.device().is_cpu(), what, " must be on the CPU");
}

const u64* packed_ptr(const at::Tensor& t) {
  return reinterpret_cast<const u64*>(t.data_ptr());
}

at::Tensor pack_rows(const at::Tensor& x_in) {
  TORCH_CHECK(x_in.dim() == 2, "pack_rows expects a 2-D [N, K] tensor, got ", x_in.dim(), "-D");
  TORCH_CHECK(x_in.device().is_cpu(), "pack_rows expects a CPU tensor");
  TORCH_CHECK(at::isFloatingType(x_in.scalar_type()), "pack_rows expects a floating tensor, got ",
              x_in.scalar_type());
  at::Tensor x = x_in.to(at::kFloat).contiguous();
  const int64_t N = x.size(0), K = x.size(1);
  const int64_t W = words_for(K);
  at::Tensor out = at::empty({N, W}, x.options().dtype(at::kUInt64));
  if (N == 0 || W == 0) return out;
  const Backend* be = current_backend();
  const float* xp = x.data_ptr<float>();
  u64* op = reinterpret_cast<u64*>(out.data_ptr());
  for_rows(N, W, [&](int64_t r0, int64_t r1) { be->pack(xp, K, r0, r1, K, op, W); });
  return out;
}

at::Tensor binary_matmul(const at::Tensor& a_in, const at::Tensor& b_in, int64_t K) {
  check_packed(a_in, "a_packed");
  check_packed(b_in, "b_packed");
  TORCH_CHECK(K >= 1, "K must be >= 1, got ", K);
  const int64_t W = words_for(K);
  TORCH_CHECK(a_in.size(1) == W && b_in.size(1) == W, "packed operands need ceil(K/64)=", W,
              " words per row for K=", K, ", got ", a_in.size(1), " and ", b_in.size(1));
  at::Tensor a = a_in.contiguous(), b = b_in.contiguous();
  const int64_t M = a.size(0), N = b.size(0);
  at::Tensor out = at::empty({M, N}, a.options().dtype(at::kInt));
  if (M == 0 || N == 0) return out;
  IntEpilogue epi{out.data_ptr<int32_t>(), N, K};
  current_backend()->matmul(packed_ptr(a), packed_ptr(b), M, N, W, epi);
  return out;
}

// The layout a backend reads its weights in, built once per layer (binary_layout) and passed
// back to binary_linear: avx512-vpopcnt's column panel of all N rows ([ceil(N/16), 2W, 16]
// int32: uint32 half-words), an empty tensor for the other backends (none to cache).
bool uses_panel() {
#if BEEX_X86
  return current_backend() == &kAvx512;
#else
  return false;
#endif
}

at::Tensor binary_layout(const at::Tensor& w_in, int64_t K) {
  check_packed(w_in, "w_packed");
  TORCH_CHECK(K >= 1, "K must be >= 1, got ", K);
  const int64_t W = words_for(K), N = w_in.size(0);
  TORCH_CHECK(w_in.size(1) == W, "w_packed needs ceil(K/64)=", W, " words per row, got ", w_in.size(1));
  if (!uses_panel() || N == 0) return at::empty({0}, w_in.options().dtype(at::kInt));
  at::Tensor w = w_in.contiguous();
  at::Tensor out = at::empty({(N + 15) / 16, 2 * W, 16}, w.options().dtype(at::kInt));
#if BEEX_X86
  panel_avx512(packed_ptr(w), N, W, reinterpret_cast<uint32_t*>(out.data_ptr<int32_t>()));
#endif
  return out;
}

at::Tensor binary_linear(const at::Tensor& x_in, const at::Tensor& w_in, const at::Tensor& alpha_in,
                         const c10::optional<at::Tensor>& bias_in, int64_t K,
                         const c10::optional<at::Tensor>& layout_in) {
  TORCH_CHECK(x_in.dim() == 2, "x must be 2-D [M, K], got ", x_in.dim(), "-D");
  TORCH_CHECK(at::isFloatingType(x_in.scalar_type()), "x must be floating point");
  TORCH_CHECK(K >= 1, "K must be >= 1, got ", K);
  TORCH_CHECK(x_in.size(1) == K, "x has ", x_in.size(1), " features, expected K=", K);
  TORCH_CHECK(x_in.size(0) > 0, "empty batch");
  TORCH_CHECK(x_in.device().is_cpu(), "x must be on the CPU");
  check_packed(w_in, "w_packed");
  const int64_t W = words_for(K);
  TORCH_CHECK(w_in.size(1) == W, "w_packed needs ceil(K/64)=", W, " words per row, got ",
              w_in.size(1));
  const int64_t M = x_in.size(0), N = w_in.size(0);
  TORCH_CHECK(N > 0, "w_packed has no rows");
  TORCH_CHECK(alpha_in.dim() == 1 && alpha_in.size(0) == N && alpha_in.device().is_cpu() &&
                  at::isFloatingType(alpha_in.scalar_type()),
              "alpha must be a floating CPU tensor of shape [", N, "]");
  at::Tensor x = x_in.to(at::kFloat).contiguous();
  at::Tensor w = w_in.contiguous();
  at::Tensor alpha = alpha_in.to(at::kFloat).contiguous();
  at::Tensor bias;
  if (bias_in.has_value() && bias_in->defined()) {
    TORCH_CHECK(bias_in->dim() == 1 && bias_in->size(0) == N && bias_in->device().is_cpu() &&
                    at::isFloatingType(bias_in->scalar_type()),
                "bias must be a floating CPU tensor of shape [", N, "]");
    bias = bias_in->to(at::kFloat).contiguous();
  }
  at::Tensor out = at::empty({M, N}, x.options().dtype(at::kFloat));
  FloatEpilogue epi{out.data_ptr<float>(), N, K, alpha.data_ptr<float>(),
                    bias.defined() ? bias.data_ptr<float>() : nullptr};
  // a layout from binary_layout: used where the backend reads one (else ignored: same results)
  const bool laid = layout_in.has_value() && layout_in->defined() && layout_in->numel() > 0;
  if (laid)
    TORCH_CHECK(layout_in->dim() == 3 && layout_in->size(0) == (N + 15) / 16 && layout_in->size(1) == 2 * W &&
                    layout_in->size(2) == 16 && layout_in->scalar_type() == at::kInt &&
                    layout_in->is_contiguous() && layout_in->device().is_cpu(),
                "layout must be binary_layout(w_packed, K) of these weights: int32 [", (N + 15) / 16, ", ", 2 * W,
                ", 16], got ", layout_in->sizes());
#if BEEX_X86
  if (laid && uses_panel())
    linear_avx512_laid(x.data_ptr<float>(), M, K, packed_ptr(w), N, W,
                       reinterpret_cast<const uint32_t*>(layout_in->data_ptr<int32_t>()), epi);
  else
#endif
    current_backend()->linear(x.data_ptr<float>(), M, K, packed_ptr(w), N, W, epi);
  if (x_in.scalar_type() != at::kFloat) out = out.to(x_in.scalar_type());
  return out;
}

// Batched +-1 products for attention scores: out[g] = sign(q[g]) @ sign(k[g]).T as
// float32 (exact integers), every group's keys packed in one pass, the queries packed
// inside the linear driver (alpha = 1, no bias: float(K - 2 pc) * 1.0f is exact).
at::Tensor binary_qk_batched(const at::Tensor& q_in, const at::Tensor& k_in) {
  TORCH_CHECK(q_in.dim() == 3 && k_in.dim() == 3, "binary_qk_batched expects q [G, M, K] and k [G, N, K]");
  TORCH_CHECK(q_in.size(0) == k_in.size(0) && q_in.size(2) == k_in.size(2),
              "binary_qk_batched: q ", q_in.sizes(), " and k ", k_in.sizes(), " do not match");
  TORCH_CHECK(q_in.device().is_cpu() && k_in.device().is_cpu(), "binary_qk_batched runs on the CPU");
  TORCH_CHECK(at::isFloatingType(q_in.scalar_type()) && at::isFloatingType(k_in.scalar_type()),
              "binary_qk_batched expects floating tensors");
  at::Tensor q = q_in.to(at::kFloat).contiguous(), k = k_in.to(at::kFloat).contiguous();
  const int64_t G = q.size(0), M = q.size(1), N = k.size(1), K = q.size(2);
  TORCH_CHECK(K >= 1, "binary_qk_batched: K is 0");
  at::Tensor out = at::empty({G, M, N}, q.options());
  if (G == 0 || M == 0 || N == 0) return out;
  const int64_t W = words_for(K);
  const Backend* be = current_backend();
  std::vector<u64> kp(static_cast<size_t>(G * N * W));
  std::vector<float> ones(static_cast<size_t>(N), 1.0f);
  const float* kptr = k.data_ptr<float>();
  const float* qptr = q.data_ptr<float>();
  float* optr = out.data_ptr<float>();
  be->pack(kptr, K, 0, G * N, K, kp.data(), W);
  auto run = [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      FloatEpilogue epi{optr + g * M * N, N, K, ones.data(), nullptr};
      be->linear(qptr + g * M * K, M, K, kp.data() + g * N * W, N, W, epi);
    }
  };
  if (G > 1 && G * M * N * W > kSerialWork && at::get_num_threads() > 1 && !at::in_parallel_region())
    at::parallel_for(0, G, 1, run);
  else
    run(0, G);
  return out;
}

// Seconds per call of `reps` back-to-back calls made from C++ (no Python or dispatcher in
// the loop): binary_matmul when x is packed (uint64/int64), binary_linear otherwise.
double time_product(const at::Tensor& x, const at::Tensor& w, const at::Tensor& alpha,
                    const c10::optional<at::Tensor>& bias, int64_t K, int64_t reps,
                    const c10::optional<at::Tensor>& layout) {
  TORCH_CHECK(reps >= 1 && reps <= 100000000, "reps must be in [1, 1e8], got ", reps);
  const bool packed = x.scalar_type() == at::kUInt64 || x.scalar_type() == at::kLong;
  auto one = [&] { return packed ? binary_matmul(x, w, K) : binary_linear(x, w, alpha, bias, K, layout); };
  one();
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t r = 0; r < reps; ++r) one();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / static_cast<double>(reps);
}

std::string backend_name() { return current_backend()->name; }

std::string available_backends() {
  std::string s;
  for (const Backend* b : available()) {
    if (!s.empty()) s += ",";
    s += b->name;
  }
  return s;
}

std::string set_backend(const std::string& name) {
  auto av = available();
  if (name == "auto") {
    current_backend() = av.front();
    return current_backend()->name;
  }
  for (const Backend* b : av) {
    if (name == b->name) {
      current_backend() = b;
      return b->name;
    }
  }
  TORCH_CHECK(false, "kernel backend '", name, "' is not available on this CPU (available: ",
              available_backends(), ")");
}

}  // namespace

TORCH_LIBRARY(beexbench_kernels, m) {
  m.def("pack_rows(Tensor x) -> Tensor", &pack_rows);
  m.def("binary_matmul(Tensor a, Tensor b, int K) -> Tensor", &binary_matmul);
  m.def("binary_layout(Tensor w, int K) -> Tensor", &binary_layout);
  m.def("binary_linear(Tensor x, Tensor w, Tensor alpha, Tensor? bias, int K, Tensor? layout=None) -> Tensor",
        &binary_linear);
  m.def("binary_qk_batched(Tensor q, Tensor k) -> Tensor", &binary_qk_batched);
  m.def("time_product(Tensor x, Tensor w, Tensor alpha, Tensor? bias, int K, int reps, Tensor? layout=None) -> float",
        &time_product);
  m.def("backend() -> str", &backend_name);
  m.def("available_backends() -> str", &available_backends);
  m.def("set_backend(str name) -> str", &set_backend);
}
