// binary_gemm.cpp's "neon" backend: bits_core.h's NEON pack and 2 x 4 XOR / vcnt tiles run by
// that file's drivers (run_bits, the epilogues).  Included by binary_gemm.cpp inside its
// anonymous namespace, on AArch64 only (NEON is baseline there: no run-time check).
#pragma once

void pack_neon(const float* x, int64_t ldx, int64_t r0, int64_t r1, int64_t K, u64* out, int64_t W) {
  for (int64_t r = r0; r < r1; ++r) beex_bits::neon::pack_row(x + r * ldx, nullptr, K, out + r * W);
}
void tile_int_neon(const u64* A, int64_t lda, const u64* B, int64_t ldb, int64_t W, int64_t i0, int64_t i1,
                   int64_t j0, int64_t j1, const IntEpilogue& e) {
  beex_bits::neon::tile(A, lda, B, ldb, W, i0, i1, j0, j1, e);
}
void tile_float_neon(const u64* A, int64_t lda, const u64* B, int64_t ldb, int64_t W, int64_t i0, int64_t i1,
                     int64_t j0, int64_t j1, const FloatEpilogue& e) {
  beex_bits::neon::tile(A, lda, B, ldb, W, i0, i1, j0, j1, e);
}
void matmul_neon(const u64* A, const u64* B, int64_t M, int64_t N, int64_t W, const IntEpilogue& e) {
  run_bits(pack_neon, tile_int_neon, nullptr, 0, A, B, M, N, W, e);
}
void linear_neon(const float* x, int64_t M, int64_t K, const u64* B, int64_t N, int64_t W, const FloatEpilogue& e) {
  run_bits(pack_neon, tile_float_neon, x, K, nullptr, B, M, N, W, e);
}
const Backend kNeon{"neon", pack_neon, matmul_neon, linear_neon};
