// Per-host roofline microbenchmark (beexbench/profilers/roofline.py): the peak throughput of this
// core's instruction paths, each a register-resident loop with enough independent accumulator
// chains to hide the instruction's latency, plus a streaming read for the memory slope.
//
// Plain C ABI (ctypes), no torch headers; built and checksum-verified by beexbench/_native_build.py.
// One build runs everywhere: SIMD paths use function-level target attributes and are picked at
// run time from CPUID + XCR0 (and, for AMX, the Linux arch_prctl(ARCH_REQ_XCOMP_PERM) request).
//
// Every loop leaves a checksum (the sum of all accumulator lanes, over all threads) that the tests
// recompute in Python for a few iterations.  Operands built from the two run-time integers p, q:
//   fp32 FMA:  lane e starts at e (its index over chains x lanes); acc = acc * p + q per iteration
//   bf16:      lane e starts at e; acc += (pairs per lane) * bf16(p) * bf16(q) per iteration
//   int8:      lane e starts at e; acc += (bytes per lane) * uint8(p) * int8(q) per iteration (int32)
//   popcount:  64-bit word e = rotl(p, e % 64); acc += popcount(word ^ q) per iteration
//   mem-read:  a buffer of p bytes (whole 64-bit words w = 0..W-1 holding w), summed per pass
// An "iteration" is one instruction per chain (an AMX iteration: one tile product per C tile).
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define RF_X86 1
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#else
#define RF_X86 0
#endif
#if RF_X86 && ((defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && __GNUC__ >= 11))
#define RF_NEW_ISA 1  // the compiler knows avx-vnni, avx512-bf16 and AMX
#else
#define RF_NEW_ISA 0
#endif

namespace {
using u64 = uint64_t;
enum Path { FMA512, FMA256, FMA_SCALAR, BF16_512, BF16_AMX, I8_512, I8_256, I8_AMX, POP512, POP256, POP_SCALAR,
            MEM_READ, N_PATHS };
const char* kNames[N_PATHS] = {"fp32-fma-avx512", "fp32-fma-avx2", "fp32-scalar", "bf16-avx512", "bf16-amx",
                               "int8-avx512-vnni", "int8-avx-vnni", "int8-amx", "popcount-avx512",
                               "popcount-avx2", "popcount-scalar", "mem-read"};
// ops per iteration per thread (FLOP for fp32/bf16 at 2 per MAC, MACs for int8, bits for popcount)
const double kOps[N_PATHS] = {12 * 16 * 2, 10 * 8 * 2, 8 * 2, 12 * 32 * 2, 4 * 16 * 16 * 32 * 2, 12 * 64, 12 * 32,
                              4 * 16 * 16 * 64, 8 * 512, 4 * 256, 6 * 64, 0};

inline u64 rotl(u64 x, int r) { return r ? (x << r) | (x >> (64 - r)) : x; }
inline u64 word(u64 p, int e) { return rotl(p, e & 63); }

// ---------------------------------------------------------------- CPU features
struct Cpu {
  bool x86 = false, popcnt = false, avx2 = false, fma = false, avx512f = false, vpopcntdq = false, vnni512 = false,
       bf16_512 = false, avxvnni = false, amx_tile = false, amx_bf16 = false, amx_int8 = false, os_avx = false,
       os_avx512 = false, os_amx = false;
};

Cpu detect() {
  Cpu c;
#if RF_X86
  c.x86 = true;
  unsigned a, b, cx, d;
  if (!__get_cpuid(1, &a, &b, &cx, &d)) return c;
  c.popcnt = cx & (1u << 23);
  c.fma = cx & (1u << 12);
  bool osxsave = cx & (1u << 27);
  u64 xcr0 = 0;
  if (osxsave) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    xcr0 = (u64(hi) << 32) | lo;
  }
  c.os_avx = (xcr0 & 0x6) == 0x6;
  c.os_avx512 = c.os_avx && (xcr0 & 0xE0) == 0xE0;
  c.os_amx = (xcr0 & 0x60000) == 0x60000;
  if (__get_cpuid_count(7, 0, &a, &b, &cx, &d)) {
    unsigned max_sub = a;
    c.avx2 = b & (1u << 5);
    c.avx512f = b & (1u << 16);
    c.vnni512 = cx & (1u << 11);
    c.vpopcntdq = cx & (1u << 14);
    c.amx_bf16 = d & (1u << 22);
    c.amx_tile = d & (1u << 24);
    c.amx_int8 = d & (1u << 25);
    if (max_sub >= 1 && __get_cpuid_count(7, 1, &a, &b, &cx, &d)) {
      c.avxvnni = a & (1u << 4);
      c.bf16_512 = a & (1u << 5);
    }
  }
#endif
  return c;
}

#if RF_X86
int amx_permission(char* why, int len) {  // once per process; 0 = granted
  static int state = -1;
  static int err = 0;
  if (state < 0) {
    long rc = syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */);
    err = rc == 0 ? 0 : errno;
    state = rc == 0 ? 0 : 1;
  }
  if (state) snprintf(why, len, "arch_prctl(ARCH_REQ_XCOMP_PERM) refused: %s", strerror(err));
  return state;
}
#endif

int unavailable(int path, char* why, int len) {
  const Cpu c = detect();
  auto no = [&](const char* what) { snprintf(why, len, "%s", what); return 1; };
  if (path < 0 || path >= N_PATHS) return no("unknown path");
  if (path == FMA_SCALAR || path == MEM_READ) return 0;
  if (!c.x86) return no("not x86-64");
  if (path == POP_SCALAR) return c.popcnt ? 0 : no("no popcnt");
  if (!c.os_avx) return no("the OS has not enabled AVX state (XCR0)");
  if (path == FMA256) return !c.avx2 ? no("no avx2") : !c.fma ? no("no fma") : 0;
  if (path == POP256) return c.avx2 ? 0 : no("no avx2");
  if (path == I8_256) {
    if (!c.avxvnni) return no("no avx_vnni");
    return RF_NEW_ISA ? 0 : no("compiler lacks avx-vnni support");
  }
  if (path == FMA512 || path == BF16_512 || path == I8_512 || path == POP512) {
    if (!c.avx512f) return no("no avx512f");
    if (!c.os_avx512) return no("the OS has not enabled AVX-512 state (XCR0)");
    if (path == POP512 && !c.vpopcntdq) return no("no avx512_vpopcntdq");
    if (path == I8_512 && !c.vnni512) return no("no avx512_vnni");
    if (path == BF16_512 && !c.bf16_512) return no("no avx512_bf16");
    if (path == BF16_512 && !RF_NEW_ISA) return no("compiler lacks avx512-bf16 support");
    return 0;
  }
  // AMX
  if (!c.amx_tile) return no("no amx-tile");
  if (path == BF16_AMX && !c.amx_bf16) return no("no amx-bf16");
  if (path == I8_AMX && !c.amx_int8) return no("no amx-int8");
  if (!c.os_amx) return no("the OS has not enabled AMX tile state (XCR0)");
  if (!RF_NEW_ISA) return no("compiler lacks AMX support");
#if RF_X86
  return amx_permission(why, len);
#else
  return no("not x86-64");
#endif
}

#define RF_KEEP(v) __asm__ volatile("" : "+x"(v))  // the compiler may not hoist work on v out of the loop

// ---------------------------------------------------------------- portable paths
double fma_scalar(long long n, long long p, long long q) {
  float acc[8], m = float(p), k = float(q);
  for (int e = 0; e < 8; ++e) acc[e] = float(e);
  for (long long i = 0; i < n; ++i)
    for (int e = 0; e < 8; ++e) acc[e] = acc[e] * m + k;  // mul + add: built without contraction
  double s = 0;
  for (float v : acc) s += v;
  return s;
}

double mem_read(long long n, const u64* buf, size_t words) {
  double s = 0;
  for (long long pass = 0; pass < n; ++pass) {
    u64 a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    size_t w = 0;
#if RF_X86
    __m128i v0 = _mm_setzero_si128(), v1 = v0, v2 = v0, v3 = v0;
    for (; w + 8 <= words; w += 8) {  // SSE2: baseline x86-64, enough to saturate memory
      v0 = _mm_add_epi64(v0, _mm_load_si128((const __m128i*)(buf + w)));
      v1 = _mm_add_epi64(v1, _mm_load_si128((const __m128i*)(buf + w + 2)));
      v2 = _mm_add_epi64(v2, _mm_load_si128((const __m128i*)(buf + w + 4)));
      v3 = _mm_add_epi64(v3, _mm_load_si128((const __m128i*)(buf + w + 6)));
    }
    alignas(16) u64 t[2];
    _mm_store_si128((__m128i*)t, _mm_add_epi64(_mm_add_epi64(v0, v1), _mm_add_epi64(v2, v3)));
    a0 = t[0] + t[1];
#endif
    for (; w + 4 <= words; w += 4) a0 += buf[w], a1 += buf[w + 1], a2 += buf[w + 2], a3 += buf[w + 3];
    for (; w < words; ++w) a0 += buf[w];
    s += double(a0 + a1 + a2 + a3);
  }
  return s;
}

double pop_scalar_portable(long long n, u64 p, u64 q) {
  u64 a[6], acc[6] = {0};  // 6 chains: operands and accumulators all fit the 15 free registers
  for (int e = 0; e < 6; ++e) a[e] = word(p, e);
  for (long long i = 0; i < n; ++i) {
    __asm__ volatile("" : "+r"(q));
    for (int e = 0; e < 6; ++e) acc[e] += __builtin_popcountll(a[e] ^ q);
  }
  double s = 0;
  for (u64 v : acc) s += double(v);
  return s;
}

#if RF_X86
// ---------------------------------------------------------------- x86 SIMD paths
__attribute__((target("popcnt"))) double pop_scalar(long long n, u64 p, u64 q) { return pop_scalar_portable(n, p, q); }

// the accumulators' lanes summed: stored with memcpy (no type punning through pointers)
template <class T, int C, class V>
double lanes_sum(const V* acc) {
  constexpr int L = sizeof(V) / sizeof(T);
  T lanes[L];
  double s = 0;
  for (int c = 0; c < C; ++c) {
    memcpy(lanes, &acc[c], sizeof(V));
    for (int l = 0; l < L; ++l) s += double(lanes[l]);
  }
  return s;
}

__attribute__((target("avx512f"))) double fma512(long long n, long long p, long long q) {
  __m512 acc[12], m = _mm512_set1_ps(float(p)), k = _mm512_set1_ps(float(q));
  const __m512 step = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (int c = 0; c < 12; ++c) acc[c] = _mm512_add_ps(step, _mm512_set1_ps(float(16 * c)));
  for (long long i = 0; i < n; ++i)
    for (int c = 0; c < 12; ++c) acc[c] = _mm512_fmadd_ps(acc[c], m, k);
  return lanes_sum<float, 12>(acc);
}

__attribute__((target("avx2,fma"))) double fma256(long long n, long long p, long long q) {
  __m256 acc[10], m = _mm256_set1_ps(float(p)), k = _mm256_set1_ps(float(q));
  const __m256 step = _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7);
  for (int c = 0; c < 10; ++c) acc[c] = _mm256_add_ps(step, _mm256_set1_ps(float(8 * c)));
  for (long long i = 0; i < n; ++i)
    for (int c = 0; c < 10; ++c) acc[c] = _mm256_fmadd_ps(acc[c], m, k);
  return lanes_sum<float, 10>(acc);
}

__attribute__((target("avx512f"))) __m512i iota32(int c) {
  return _mm512_add_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                          _mm512_set1_epi32(16 * c));
}

#if RF_NEW_ISA
inline uint16_t bf16_bits(long long v) {
  float f = float(v);
  uint32_t b;
  memcpy(&b, &f, 4);
  return uint16_t(b >> 16);  // exact for the small integers the tests use
}

__attribute__((target("avx512f,avx512bf16"))) double bf16_512(long long n, long long p, long long q) {
  __m512 acc[12];
  __m512i a = _mm512_set1_epi16(short(bf16_bits(p))), b = _mm512_set1_epi16(short(bf16_bits(q)));
  for (int c = 0; c < 12; ++c) acc[c] = _mm512_cvtepi32_ps(iota32(c));
  for (long long i = 0; i < n; ++i) {
    __asm__ volatile("" : "+v"(a), "+v"(b));
    for (int c = 0; c < 12; ++c) acc[c] = _mm512_dpbf16_ps(acc[c], (__m512bh)a, (__m512bh)b);
  }
  return lanes_sum<float, 12>(acc);
}

__attribute__((target("avxvnni"))) double i8_256(long long n, long long p, long long q) {
  __m256i acc[12], a = _mm256_set1_epi8(char(p)), b = _mm256_set1_epi8(char(q));
  for (int c = 0; c < 12; ++c) acc[c] = _mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(8 * c));
  for (long long i = 0; i < n; ++i) {
    RF_KEEP(a);
    RF_KEEP(b);
    for (int c = 0; c < 12; ++c) acc[c] = _mm256_dpbusd_avx_epi32(acc[c], a, b);
  }
  return lanes_sum<int32_t, 12>(acc);
}

struct alignas(64) TileConfig {
  uint8_t palette, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

// C tiles 0-3 (16 x 16 x 32-bit) += A tiles 4-5 x B tiles 6-7: a 2x2 block, 4 independent products
template <bool BF16>
__attribute__((target("amx-tile,amx-int8,amx-bf16"))) double amx(long long n, long long p, long long q) {
  TileConfig cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.palette = 1;
  for (int t = 0; t < 8; ++t) cfg.colsb[t] = 64, cfg.rows[t] = 16;
  alignas(64) int32_t ci[4][256];
  alignas(64) float cf[4][256];
  alignas(64) uint8_t ab[1024], bb[1024];
  for (int t = 0; t < 4; ++t)
    for (int e = 0; e < 256; ++e) ci[t][e] = 256 * t + e, cf[t][e] = float(256 * t + e);
  for (int e = 0; e < 1024; e += 2) {
    uint16_t x = BF16 ? bf16_bits(p) : uint16_t(uint8_t(p) | uint8_t(p) << 8);
    uint16_t y = BF16 ? bf16_bits(q) : uint16_t(uint8_t(q) | uint8_t(q) << 8);
    memcpy(ab + e, &x, 2), memcpy(bb + e, &y, 2);
  }
  void* c0 = BF16 ? (void*)cf : (void*)ci;
  _tile_loadconfig(&cfg);
  _tile_loadd(0, (char*)c0, 64);
  _tile_loadd(1, (char*)c0 + 1024, 64);
  _tile_loadd(2, (char*)c0 + 2048, 64);
  _tile_loadd(3, (char*)c0 + 3072, 64);
  _tile_loadd(4, ab, 64);
  _tile_loadd(5, ab, 64);
  _tile_loadd(6, bb, 64);
  _tile_loadd(7, bb, 64);
  for (long long i = 0; i < n; ++i) {
    if (BF16) {
      _tile_dpbf16ps(0, 4, 6); _tile_dpbf16ps(1, 4, 7); _tile_dpbf16ps(2, 5, 6); _tile_dpbf16ps(3, 5, 7);
    } else {
      _tile_dpbusd(0, 4, 6); _tile_dpbusd(1, 4, 7); _tile_dpbusd(2, 5, 6); _tile_dpbusd(3, 5, 7);
    }
  }
  _tile_stored(0, (char*)c0, 64);
  _tile_stored(1, (char*)c0 + 1024, 64);
  _tile_stored(2, (char*)c0 + 2048, 64);
  _tile_stored(3, (char*)c0 + 3072, 64);
  _tile_release();
  double s = 0;
  for (int t = 0; t < 4; ++t)
    for (int e = 0; e < 256; ++e) s += BF16 ? double(cf[t][e]) : double(ci[t][e]);
  return s;
}
#endif  // RF_NEW_ISA

__attribute__((target("avx512f,avx512vnni"))) double i8_512(long long n, long long p, long long q) {
  __m512i acc[12], a = _mm512_set1_epi8(char(p)), b = _mm512_set1_epi8(char(q));
  for (int c = 0; c < 12; ++c) acc[c] = iota32(c);
  for (long long i = 0; i < n; ++i) {
    __asm__ volatile("" : "+v"(a), "+v"(b));
    for (int c = 0; c < 12; ++c) acc[c] = _mm512_dpbusd_epi32(acc[c], a, b);
  }
  return lanes_sum<int32_t, 12>(acc);
}

__attribute__((target("avx512f,avx512vpopcntdq"))) double pop512(long long n, u64 p, u64 q) {
  __m512i a[8], acc[8], b = _mm512_set1_epi64((long long)q);
  alignas(64) u64 w[8];
  for (int c = 0; c < 8; ++c) {
    for (int l = 0; l < 8; ++l) w[l] = word(p, 8 * c + l);
    a[c] = _mm512_load_si512(w);
    acc[c] = _mm512_setzero_si512();
  }
  for (long long i = 0; i < n; ++i) {
    __asm__ volatile("" : "+v"(b));
    for (int c = 0; c < 8; ++c) acc[c] = _mm512_add_epi64(acc[c], _mm512_popcnt_epi64(_mm512_xor_si512(a[c], b)));
  }
  return lanes_sum<u64, 8>(acc);
}

// AVX2 has no vector popcount: the nibble-LUT vpshufb method, byte counts flushed with vpsadbw
__attribute__((target("avx2"))) double pop256(long long n, u64 p, u64 q) {
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2,
                                       2, 3, 2, 3, 3, 4);
  const __m256i low = _mm256_set1_epi8(0x0f);
  __m256i a[4], b = _mm256_set1_epi64x((long long)q), total = _mm256_setzero_si256();
  for (int c = 0; c < 4; ++c)
    a[c] = _mm256_setr_epi64x((long long)word(p, 4 * c), (long long)word(p, 4 * c + 1), (long long)word(p, 4 * c + 2),
                              (long long)word(p, 4 * c + 3));
  for (long long done = 0; done < n;) {
    const long long m = std::min<long long>(31, n - done);  // 31 x 8 bits per byte lane < 256
    __m256i cnt[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
    for (long long i = 0; i < m; ++i) {
      RF_KEEP(b);
      for (int c = 0; c < 4; ++c) {
        const __m256i x = _mm256_xor_si256(a[c], b);
        const __m256i lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(x, low));
        const __m256i hi = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(x, 4), low));
        cnt[c] = _mm256_add_epi8(cnt[c], _mm256_add_epi8(lo, hi));
      }
    }
    for (int c = 0; c < 4; ++c) total = _mm256_add_epi64(total, _mm256_sad_epu8(cnt[c], _mm256_setzero_si256()));
    done += m;
  }
  return lanes_sum<u64, 1>(&total);
}
#endif  // RF_X86

double run_one(int path, long long n, long long p, long long q, const u64* buf, size_t words) {
  switch (path) {
    case FMA_SCALAR: return fma_scalar(n, p, q);
    case MEM_READ: return mem_read(n, buf, words);
#if RF_X86
    case POP_SCALAR: return pop_scalar(n, u64(p), u64(q));
    case FMA512: return fma512(n, p, q);
    case FMA256: return fma256(n, p, q);
    case I8_512: return i8_512(n, p, q);
    case POP512: return pop512(n, u64(p), u64(q));
    case POP256: return pop256(n, u64(p), u64(q));
#if RF_NEW_ISA
    case BF16_512: return bf16_512(n, p, q);
    case I8_256: return i8_256(n, p, q);
    case BF16_AMX: return amx<true>(n, p, q);
    case I8_AMX: return amx<false>(n, p, q);
#endif
#else
    case POP_SCALAR: return pop_scalar_portable(n, u64(p), u64(q));
#endif
    default: return 0;
  }
}
}  // namespace

extern "C" {
int rf_path_count() { return N_PATHS; }
const char* rf_path_name(int path) { return path >= 0 && path < N_PATHS ? kNames[path] : ""; }
// 0 when the path runs here, else 1 with the reason written to why
int rf_unavailable(int path, char* why, int len) { return unavailable(path, why, len); }
// ops of one iteration on one thread (mem-read: the bytes one pass reads, given p bytes asked for)
double rf_ops_per_iter(int path, long long p) {
  if (path == MEM_READ) return double((p / 8) * 8);
  return path >= 0 && path < N_PATHS ? kOps[path] : 0.0;
}
// Run `iters` iterations on `threads` threads (each its own copy of the loop), released together;
// returns the wall seconds from release to the last thread's end (< 0: path unavailable or bad
// arguments), and the sum of every thread's checksum in *checksum.
double rf_run(int path, int threads, long long iters, long long p, long long q, double* checksum) {
  char why[160];
  if (threads < 1 || threads > 4096 || iters < 1 || unavailable(path, why, sizeof why)) return -1.0;
  if (path == MEM_READ && (p < 64 || p > (1LL << 34))) return -1.0;
  const size_t words = path == MEM_READ ? size_t(p / 8) : 0;
  std::vector<double> sums(threads, 0.0);
  std::vector<std::vector<u64>> bufs(threads);  // freed after the clock stops
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      std::vector<u64>& buf = bufs[t];
      if (path == MEM_READ) {  // written by this thread (its own memory node); 16-byte aligned storage
        buf.resize(words + 1);
        for (size_t w = 0; w < words; ++w) buf[w] = w;
      }
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) {
      }
      sums[t] = run_one(path, iters, p, q, buf.data(), words);
    });
  while (ready.load() < threads) std::this_thread::yield();
  const auto t0 = std::chrono::steady_clock::now();
  go.store(true, std::memory_order_release);
  for (auto& th : pool) th.join();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double s = 0;
  for (double v : sums) s += v;
  *checksum = s;
  return secs;
}
}
