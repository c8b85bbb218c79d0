// The arm64 check's harness (tests/arm64/check.py): reads cases (inputs) from argv[1], runs every
// kernel of beexbench/kernels/bits_core.h on each, once per path (the portable reference, and
// NEON where compiled for AArch64), and writes the raw outputs to argv[2] for check.py to compare
// bit for bit with the x86 torch ops' outputs. No ATen: cross-compiled with aarch64-linux-gnu-g++
// -static and run under qemu-aarch64-static.
//
// Input: int64 n_cases, then per case int64 kind + int64 header[6] + its arrays (see check.py).
// Output: per case, per path: int64 path (0 ref, 1 neon), int64 n_bytes, the bytes.
#include "bits_core.h"

#include <cstdio>
#include <cstdlib>
#include <vector>

using beex_bits::u64;

namespace {

FILE* in_f;
FILE* out_f;

template <class T>
std::vector<T> read(int64_t n) {
  std::vector<T> v(static_cast<size_t>(n > 0 ? n : 0));
  if (n > 0 && std::fread(v.data(), sizeof(T), v.size(), in_f) != v.size()) {
    std::fprintf(stderr, "harness: input truncated\n");
    std::exit(3);
  }
  return v;
}

template <class T>
void emit(int64_t path, const std::vector<T>& v) {
  const int64_t head[2] = {path, static_cast<int64_t>(v.size() * sizeof(T))};
  std::fwrite(head, sizeof(int64_t), 2, out_f);
  std::fwrite(v.data(), sizeof(T), v.size(), out_f);
}

struct IntEpi {  // binary_gemm.cpp's IntEpilogue
  int32_t* out;
  int64_t ldo, K;
  void operator()(int64_t i, int64_t j, int64_t pc) const { out[i * ldo + j] = static_cast<int32_t>(K - 2 * pc); }
};
struct FloatEpi {  // binary_gemm.cpp's FloatEpilogue
  float* out;
  int64_t ldo, K;
  const float *alpha, *bias;
  void operator()(int64_t i, int64_t j, int64_t pc) const {
    float v = static_cast<float>(K - 2 * pc) * alpha[j];
    if (bias) v += bias[j];
    out[i * ldo + j] = v;
  }
};

// the reference tile: every output on its own
template <class Epi>
void tile_ref(const u64* A, const u64* B, int64_t M, int64_t N, int64_t W, const Epi& e) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) e(i, j, beex_bits::ref::xor_pop(A + i * W, B + j * W, W));
}

#define BEEX_PATHS(BODY)              \
  {                                   \
    namespace P = beex_bits::ref;     \
    const int64_t path = 0;           \
    auto tile = [&](auto... a) { tile_ref(a...); }; \
    BODY                              \
  }                                   \
  BEEX_NEON_PATH(BODY)

#if BEEX_HAVE_NEON
#define BEEX_NEON_PATH(BODY)          \
  {                                   \
    namespace P = beex_bits::neon;    \
    const int64_t path = 1;           \
    auto tile = [&](const u64* A, const u64* B, int64_t M, int64_t N, int64_t W, const auto& e) { \
      beex_bits::neon::tile(A, W, B, W, W, 0, M, 0, N, e);                                       \
    };                                \
    BODY                              \
  }
#else
#define BEEX_NEON_PATH(BODY)
#endif

void run_case() {
  const auto hk = read<int64_t>(7);
  const int64_t kind = hk[0], a = hk[1], b = hk[2], c = hk[3], f1 = hk[4], f2 = hk[5];
  if (kind == 1) {  // pack: N rows of K floats (+ shift[K])
    const int64_t N = a, K = b, W = (K + 63) / 64;
    auto x = read<float>(N * K);
    auto sh = read<float>(f1 ? K : 0);
    BEEX_PATHS({
      (void)tile;
      std::vector<u64> out(N * W);
      for (int64_t r = 0; r < N; ++r) P::pack_row(x.data() + r * K, f1 ? sh.data() : nullptr, K, out.data() + r * W);
      emit(path, out);
    })
  } else if (kind == 2) {  // binary matmul: A[M, W], B[N, W] -> int32 [M, N]
    const int64_t M = a, N = b, K = c, W = (K + 63) / 64;
    auto A = read<u64>(M * W);
    auto B = read<u64>(N * W);
    BEEX_PATHS({
      std::vector<int32_t> out(M * N);
      tile(A.data(), B.data(), M, N, W, IntEpi{out.data(), N, K});
      emit(path, out);
    })
  } else if (kind == 3) {  // binary linear: x[M, K] f32, B[N, W], alpha[N], bias[N]? -> f32 [M, N]
    const int64_t M = a, N = b, K = c, W = (K + 63) / 64;
    auto x = read<float>(M * K);
    auto B = read<u64>(N * W);
    auto al = read<float>(N);
    auto bi = read<float>(f1 ? N : 0);
    BEEX_PATHS({
      std::vector<u64> xb(M * W);
      for (int64_t r = 0; r < M; ++r) P::pack_row(x.data() + r * K, nullptr, K, xb.data() + r * W);
      std::vector<float> out(M * N);
      tile(xb.data(), B.data(), M, N, W, FloatEpi{out.data(), N, K, al.data(), f1 ? bi.data() : nullptr});
      emit(path, out);
    })
  } else if (kind == 4) {  // the engine's plinear: x[n, K] (+ shift[K]), wt[W][N], alpha, bias? -> f32 [n, N]
    const int64_t n = a, N = b, K = c, W = (K + 63) / 64;
    auto x = read<float>(n * K);
    auto sh = read<float>(f1 ? K : 0);
    auto wt = read<u64>(W * N);
    auto al = read<float>(N);
    auto bi = read<float>(f2 ? N : 0);
    BEEX_PATHS({
      (void)tile;
      std::vector<u64> xb(W);
      std::vector<int32_t> pc(N);
      std::vector<float> out(n * N);
      for (int64_t i = 0; i < n; ++i) {
        P::pack_row(x.data() + i * K, f1 ? sh.data() : nullptr, K, xb.data());
        P::counts_word_major(xb.data(), wt.data(), W, N, pc.data());
        P::epilogue(pc.data(), N, K, al.data(), f2 ? bi.data() : nullptr, out.data() + i * N);
      }
      emit(path, out);
    })
  } else if (kind == 5) {  // token rows: bits, V, d, n rows; codes (bytes), scale[V], ids[n], pos[n, d]
    const int64_t bits = a, V = b, d = c, n = f1, code_bytes = f2;
    auto codes = read<uint8_t>(code_bytes);
    auto scale = read<float>(V);
    auto ids = read<int64_t>(n);
    auto pos = read<float>(n * d);
    BEEX_PATHS({
      (void)tile;
      std::vector<float> out(n * d);
      for (int64_t t = 0; t < n; ++t)
        P::token_row(bits, codes.data(), scale.data(), ids[t], d, pos.data() + t * d, out.data() + t * d);
      emit(path, out);
    })
  } else {
    std::fprintf(stderr, "harness: unknown case kind %lld\n", static_cast<long long>(kind));
    std::exit(3);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: harness CASES OUT\n");
    return 2;
  }
  in_f = std::fopen(argv[1], "rb");
  out_f = std::fopen(argv[2], "wb");
  if (!in_f || !out_f) {
    std::fprintf(stderr, "harness: cannot open %s or %s\n", argv[1], argv[2]);
    return 2;
  }
  const int64_t n = read<int64_t>(1)[0];
  for (int64_t i = 0; i < n; ++i) run_case();
  std::fclose(out_f);
  std::printf("harness: %lld cases, paths: portable%s\n", static_cast<long long>(n), BEEX_HAVE_NEON ? ", neon" : "");
  return 0;
}
