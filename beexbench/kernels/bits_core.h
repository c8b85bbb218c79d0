// The packed-bit kernels' arithmetic as plain C++ (no ATen): the portable reference and the
// AArch64 NEON path, so both can be compiled without torch (tests/arm64/harness.cpp, cross-
// compiled for aarch64 and run under qemu-aarch64-static) and included by the torch ops
// (binary_gemm.cpp's "neon" backend, _engine.cpp's "neon" instruction set) on aarch64.
//
// Bit layout as binary_gemm.cpp: element k of a row is bit k % 64 of word k / 64, set where
// x >= 0 (-0.0 -> 1, NaN -> 0); padding bits are 0 in both operands, so
// dot = K - 2 * popcount(a XOR b).  Every NEON routine computes exactly what its reference does:
// integer popcounts, and the same float operations in the same order (builds use
// -ffp-contract=off, so no multiply-add is fused).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#if defined(__aarch64__) && !defined(BEEX_FORCE_PORTABLE)
#define BEEX_HAVE_NEON 1
#include <arm_neon.h>
#else
#define BEEX_HAVE_NEON 0
#endif

namespace beex_bits {

using u64 = uint64_t;

// ---------------------------------------------------------------------------------------------
// Portable reference.
// ---------------------------------------------------------------------------------------------
namespace ref {

// bits of (x + shift) >= 0 into W = ceil(K / 64) words; shift may be null
inline void pack_row(const float* x, const float* shift, int64_t K, u64* out) {
  const int64_t W = (K + 63) / 64;
  for (int64_t w = 0; w < W; ++w) {
    const int64_t base = w * 64, n = std::min<int64_t>(64, K - base);
    u64 bits = 0;
    for (int64_t t = 0; t < n; ++t) {
      const float v = shift ? x[base + t] + shift[base + t] : x[base + t];
      bits |= static_cast<u64>(v >= 0.0f) << t;
    }
    out[w] = bits;
  }
}

inline int64_t xor_pop(const u64* a, const u64* b, int64_t W) {
  int64_t p = 0;
  for (int64_t w = 0; w < W; ++w) p += __builtin_popcountll(a[w] ^ b[w]);
  return p;
}

// the engine's layout: weights word-major wt[W][N]; pc[j] = popcount(a XOR column j)
inline void counts_word_major(const u64* a, const u64* wt, int64_t W, int64_t N, int32_t* pc) {
  for (int64_t j = 0; j < N; ++j) pc[j] = 0;
  for (int64_t w = 0; w < W; ++w)
    for (int64_t j = 0; j < N; ++j) pc[j] += static_cast<int32_t>(__builtin_popcountll(a[w] ^ wt[w * N + j]));
}

// y[j] = float(K - 2 pc[j]) * alpha[j] (+ bias[j])
inline void epilogue(const int32_t* pc, int64_t N, int64_t K, const float* alpha, const float* bias, float* y) {
  for (int64_t j = 0; j < N; ++j) {
    const float v = static_cast<float>(static_cast<int32_t>(K) - 2 * pc[j]) * alpha[j];
    y[j] = bias ? v + bias[j] : v;
  }
}

// one token row of a PackedEmbedding plus its position row: bits 32 (float codes), 8 (int8
// codes * scale), 4 (two codes a byte, low nibble first, (nib - 8) * scale), 1 (sign * scale)
inline void token_row(int64_t bits, const void* codes, const float* scale, int64_t r, int64_t d, const float* pos,
                      float* row) {
  if (bits == 32) {
    const float* e = static_cast<const float*>(codes) + r * d;
    for (int64_t c = 0; c < d; ++c) row[c] = e[c] + pos[c];
  } else if (bits == 8) {
    const int8_t* e = static_cast<const int8_t*>(codes) + r * d;
    const float s = scale[r];
    for (int64_t c = 0; c < d; ++c) row[c] = static_cast<float>(e[c]) * s + pos[c];
  } else if (bits == 4) {
    const uint8_t* e = static_cast<const uint8_t*>(codes) + r * ((d + 1) / 2);
    const float s = scale[r];
    for (int64_t c = 0; c < d; ++c) {
      const int nib = (e[c >> 1] >> ((c & 1) * 4)) & 0xF;
      row[c] = static_cast<float>(nib - 8) * s + pos[c];
    }
  } else {
    const u64* e = static_cast<const u64*>(codes) + r * ((d + 63) / 64);
    const float s = scale[r];
    for (int64_t c = 0; c < d; ++c) {
      const float sign = ((e[c >> 6] >> (c & 63)) & 1) ? 1.0f : -1.0f;
      row[c] = sign * s + pos[c];
    }
  }
}

}  // namespace ref

#if BEEX_HAVE_NEON
// ---------------------------------------------------------------------------------------------
// AArch64 NEON (baseline on every AArch64 core: no run-time check needed).
// ---------------------------------------------------------------------------------------------
namespace neon {

// 16 compare masks (lanes 0/all-ones) -> 16 bits, lane i -> bit i
inline uint32_t movemask16(uint32x4_t m0, uint32x4_t m1, uint32x4_t m2, uint32x4_t m3) {
  static const uint8_t kw[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
  const uint16x8_t h0 = vcombine_u16(vmovn_u32(m0), vmovn_u32(m1));
  const uint16x8_t h1 = vcombine_u16(vmovn_u32(m2), vmovn_u32(m3));
  const uint8x16_t b = vandq_u8(vcombine_u8(vmovn_u16(h0), vmovn_u16(h1)), vld1q_u8(kw));
  return static_cast<uint32_t>(vaddv_u8(vget_low_u8(b))) | (static_cast<uint32_t>(vaddv_u8(vget_high_u8(b))) << 8);
}

inline uint32x4_t ge0(const float* x, const float* shift, int64_t t) {
  float32x4_t v = vld1q_f32(x + t);
  if (shift) v = vaddq_f32(v, vld1q_f32(shift + t));
  return vcgeq_f32(v, vdupq_n_f32(0.0f));  // false for NaN, as x >= 0.0f
}

inline void pack_row(const float* x, const float* shift, int64_t K, u64* out) {
  const int64_t W = (K + 63) / 64;
  for (int64_t w = 0; w < W; ++w) {
    const int64_t base = w * 64, n = std::min<int64_t>(64, K - base);
    const float* xb = x + base;
    const float* sb = shift ? shift + base : nullptr;
    u64 bits = 0;
    int64_t t = 0;
    for (; t + 16 <= n; t += 16)
      bits |= static_cast<u64>(movemask16(ge0(xb, sb, t), ge0(xb, sb, t + 4), ge0(xb, sb, t + 8), ge0(xb, sb, t + 12)))
              << t;
    for (; t < n; ++t) {
      const float v = sb ? xb[t] + sb[t] : xb[t];
      bits |= static_cast<u64>(v >= 0.0f) << t;
    }
    out[w] = bits;
  }
}

// popcount(a XOR b) over W words: bytes counted by vcntq_u8, summed in byte lanes for up to 31
// two-word steps (31 * 8 < 256), then widened pairwise into 16-bit (vpadalq_u8) and 32-bit lanes
struct PopAcc {
  uint32x4_t acc32 = vdupq_n_u32(0);
  uint8x16_t acc8 = vdupq_n_u8(0);
  int steps = 0;
  inline void add(uint64x2_t x) {
    acc8 = vaddq_u8(acc8, vcntq_u8(vreinterpretq_u8_u64(x)));
    if (++steps == 31) flush();
  }
  inline void flush() {
    acc32 = vpadalq_u16(acc32, vpaddlq_u8(acc8));
    acc8 = vdupq_n_u8(0);
    steps = 0;
  }
  inline int64_t total() {
    flush();
    return static_cast<int64_t>(vaddvq_u32(acc32));
  }
};

inline int64_t pop_word(u64 x) { return static_cast<int64_t>(vaddv_u8(vcnt_u8(vcreate_u8(x)))); }

// MR rows of A (stride lda) against NR rows of B (stride ldb): res[r * NR + c]
template <int MR, int NR>
inline void micro(const u64* A, int64_t lda, const u64* B, int64_t ldb, int64_t W, int64_t* res) {
  PopAcc acc[MR][NR];
  int64_t w = 0;
  for (; w + 2 <= W; w += 2) {
    uint64x2_t a[MR], b[NR];
    for (int r = 0; r < MR; ++r) a[r] = vld1q_u64(A + r * lda + w);
    for (int c = 0; c < NR; ++c) b[c] = vld1q_u64(B + c * ldb + w);
    for (int r = 0; r < MR; ++r)
      for (int c = 0; c < NR; ++c) acc[r][c].add(veorq_u64(a[r], b[c]));
  }
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NR; ++c)
      res[r * NR + c] = acc[r][c].total() + (w < W ? pop_word(A[r * lda + w] ^ B[c * ldb + w]) : 0);
}

inline int64_t xor_pop(const u64* a, const u64* b, int64_t W) {
  int64_t r;
  micro<1, 1>(a, 0, b, 0, W, &r);
  return r;
}

// Tile [i0,i1) x [j0,j1) of A B^T, epi(i, j, popcount) per output: 2 x 4 micro-tiles, then edges
template <class Epi>
inline void tile(const u64* A, int64_t lda, const u64* B, int64_t ldb, int64_t W, int64_t i0, int64_t i1, int64_t j0,
                 int64_t j1, const Epi& epi) {
  constexpr int MR = 2, NR = 4;
  int64_t res[MR * NR];
  int64_t j = j0;
  for (; j + NR <= j1; j += NR) {
    const u64* Bj = B + j * ldb;
    int64_t i = i0;
    for (; i + MR <= i1; i += MR) {
      micro<MR, NR>(A + i * lda, lda, Bj, ldb, W, res);
      for (int r = 0; r < MR; ++r)
        for (int c = 0; c < NR; ++c) epi(i + r, j + c, res[r * NR + c]);
    }
    for (; i < i1; ++i) {
      micro<1, NR>(A + i * lda, lda, Bj, ldb, W, res);
      for (int c = 0; c < NR; ++c) epi(i, j + c, res[c]);
    }
  }
  for (; j < j1; ++j)
    for (int64_t i = i0; i < i1; ++i) epi(i, j, xor_pop(A + i * lda, B + j * ldb, W));
}

// the engine's layout (word-major weights wt[W][N]): 8 columns at a time, the row's word
// broadcast, byte counts summed over up to 31 words before widening
inline void counts_word_major(const u64* a, const u64* wt, int64_t W, int64_t N, int32_t* pc) {
  const int64_t N8 = N & ~int64_t(7);
  for (int64_t j0 = 0; j0 < N8; j0 += 8) {
    uint32x4_t acc32[4];
    for (int k = 0; k < 4; ++k) acc32[k] = vdupq_n_u32(0);
    for (int64_t w0 = 0; w0 < W; w0 += 31) {
      const int64_t w1 = std::min<int64_t>(W, w0 + 31);
      uint8x16_t acc8[4];
      for (int k = 0; k < 4; ++k) acc8[k] = vdupq_n_u8(0);
      for (int64_t w = w0; w < w1; ++w) {
        const uint64x2_t av = vdupq_n_u64(a[w]);
        const u64* wr = wt + w * N + j0;
        for (int k = 0; k < 4; ++k)
          acc8[k] = vaddq_u8(acc8[k], vcntq_u8(vreinterpretq_u8_u64(veorq_u64(av, vld1q_u64(wr + 2 * k)))));
      }
      for (int k = 0; k < 4; ++k) acc32[k] = vpadalq_u16(acc32[k], vpaddlq_u8(acc8[k]));
    }
    for (int k = 0; k < 4; ++k)  // 4 x u32 lanes per 2 columns -> 2 counts
      vst1_s32(pc + j0 + 2 * k, vreinterpret_s32_u32(vmovn_u64(vpaddlq_u32(acc32[k]))));
  }
  for (int64_t j = N8; j < N; ++j) {
    int64_t p = 0;
    for (int64_t w = 0; w < W; ++w) p += pop_word(a[w] ^ wt[w * N + j]);
    pc[j] = static_cast<int32_t>(p);
  }
}

inline void epilogue(const int32_t* pc, int64_t N, int64_t K, const float* alpha, const float* bias, float* y) {
  const int32x4_t kv = vdupq_n_s32(static_cast<int32_t>(K));
  int64_t j = 0;
  for (; j + 4 <= N; j += 4) {
    const int32x4_t p = vld1q_s32(pc + j);
    float32x4_t v = vmulq_f32(vcvtq_f32_s32(vsubq_s32(kv, vaddq_s32(p, p))), vld1q_f32(alpha + j));
    if (bias) v = vaddq_f32(v, vld1q_f32(bias + j));
    vst1q_f32(y + j, v);
  }
  ref::epilogue(pc + j, N - j, K, alpha + j, bias ? bias + j : nullptr, y + j);
}

inline void token_row(int64_t bits, const void* codes, const float* scale, int64_t r, int64_t d, const float* pos,
                      float* row) {
  int64_t c = 0;
  if (bits == 32) {
    const float* e = static_cast<const float*>(codes) + r * d;
    for (; c + 4 <= d; c += 4) vst1q_f32(row + c, vaddq_f32(vld1q_f32(e + c), vld1q_f32(pos + c)));
    for (; c < d; ++c) row[c] = e[c] + pos[c];
    return;
  }
  const float s = scale[r];
  const float32x4_t sv = vdupq_n_f32(s);
  // 16 int8 codes -> row[c..c+16) = float(code) * s + pos
  auto store16 = [&](int8x16_t q, int64_t at) {
    const int16x8_t lo = vmovl_s8(vget_low_s8(q)), hi = vmovl_s8(vget_high_s8(q));
    const int32x4_t w[4] = {vmovl_s16(vget_low_s16(lo)), vmovl_s16(vget_high_s16(lo)), vmovl_s16(vget_low_s16(hi)),
                            vmovl_s16(vget_high_s16(hi))};
    for (int k = 0; k < 4; ++k)
      vst1q_f32(row + at + 4 * k, vaddq_f32(vmulq_f32(vcvtq_f32_s32(w[k]), sv), vld1q_f32(pos + at + 4 * k)));
  };
  if (bits == 8) {
    const int8_t* e = static_cast<const int8_t*>(codes) + r * d;
    for (; c + 16 <= d; c += 16) store16(vld1q_s8(e + c), c);
    for (; c < d; ++c) row[c] = static_cast<float>(e[c]) * s + pos[c];
  } else if (bits == 4) {
    const uint8_t* e = static_cast<const uint8_t*>(codes) + r * ((d + 1) / 2);
    const uint8x8_t low = vdup_n_u8(0x0F), eight = vdup_n_u8(8);
    for (; c + 16 <= d; c += 16) {  // 8 bytes -> 16 nibbles in order (low nibble first)
      const uint8x8_t b = vld1_u8(e + c / 2);
      const uint8x8x2_t z = vzip_u8(vand_u8(b, low), vshr_n_u8(b, 4));
      const int8x16_t q = vreinterpretq_s8_u8(vsubq_u8(vcombine_u8(z.val[0], z.val[1]), vcombine_u8(eight, eight)));
      store16(q, c);
    }
    for (; c < d; ++c) {
      const int nib = (e[c >> 1] >> ((c & 1) * 4)) & 0xF;
      row[c] = static_cast<float>(nib - 8) * s + pos[c];
    }
  } else {
    const u64* e = static_cast<const u64*>(codes) + r * ((d + 63) / 64);
    const float32x4_t neg = vdupq_n_f32(-s);  // sign * s is exactly s or -s
    static const uint32_t kb[4] = {1, 2, 4, 8};
    const uint32x4_t bitv = vld1q_u32(kb);
    for (; c + 4 <= d; c += 4) {
      const uint32_t nib = static_cast<uint32_t>((e[c >> 6] >> (c & 63)) & 0xF);
      const uint32x4_t on = vtstq_u32(vdupq_n_u32(nib), bitv);
      vst1q_f32(row + c, vaddq_f32(vbslq_f32(on, sv, neg), vld1q_f32(pos + c)));
    }
    for (; c < d; ++c) {
      const float sign = ((e[c >> 6] >> (c & 63)) & 1) ? 1.0f : -1.0f;
      row[c] = sign * s + pos[c];
    }
  }
}

}  // namespace neon
#endif  // BEEX_HAVE_NEON

}  // namespace beex_bits
