// Native inference of the packed BEExformer engine (beexbench.engine.packed).
//
// One set of loops, two entry points, both computing the reference numerics of
// beexbench/models/canonical.py bit for bit (the packed module path computes those with torch
// ops): every quantity that feeds a sign (LayerNorm statistics and affine, |q| and |k| means,
// softmax max / exp / sum / scale, the P v sums, sigmoid / tanh / GELU and the shifts) is
// computed with the same operations in the same order by every variant below (sums in 16
// lanes, element i in lane i % 16, then lane k += lane k + 8, + 4, + 2, + 1; the P v sums over
// the keys one after the other; Cephes' exp), so exits, predictions and logits do not depend
// on the host, the instruction set or the thread count.
//
// * ``infer``: the whole early-exit inference in one call (token embedding in any
//   PackedEmbedding format, position embedding, embedding LayerNorm, every block, the
//   exit heads and the exit rule: FractionalEntropy, AbsoluteEntropy or no early exit)
//   with hand-written loops over per-thread buffers that are reused across calls (no
//   ATen op inside but, rarely, ATen's gelu: see gelu_ffn).  Each row runs on its own,
//   over its real tokens only (padding positions are masked keys and masked in pooling, so
//   they change nothing) and stops at
//   its exit block: rows leave as they exit with no compaction to do.  Rows run in
//   parallel (at::parallel_for) when B > 1 and torch has several threads; batch 1 stays
//   on the calling thread.  The loops are compiled three times (AVX-512 VPOPCNTDQ, AVX2,
//   portable) by re-including this file under ``#pragma GCC target`` (GCC on x86-64;
//   elsewhere the portable loops alone) and the variant is picked at run time from the
//   CPU (``engine_isa`` reads or overrides it).  CFLAGS has -ffp-contract=off so no FMA
//   changes the rounding.
// * ``step``: one block and its exit head for a batch [B, L, d] (the same loops, row by row
//   over each row's real tokens), the exit rule in Python: the per-block path for any other
//   exit rule.
//
// Ops (namespace beexbench_engine_native):
//   infer(ids[B,L] int64, mask[B,L] bool, fparams f32[], words int64[], meta int64[],
//         tok_codes, tok_scale, float ln_eps, int rule, float a, float b, int min_exit, bool lower)
//        -> (logits[B,C] f32, exit_block[B] int64)
//        ln_eps: the encoder's LayerNorm eps (embedding and blocks; 1e-5 unless BERT's
//        layer_norm_eps); the exit heads' LayerNorms use 1e-5 (kHeadEps).
//        rule 0: no early exit; 1: fractional entropy (a = delta, b = eps);
//        2: absolute entropy (a = threshold).  Layout of meta: see parse_model (built by
//        beexbench/engine/_fused.py::whole_tensors); packed weights are stored word-major
//        ([W][out], the transpose of weight_packed).
//   engine_isa(str "auto" | "avx512" | "avx2" | "portable" | "") -> str (the variant in use)
//   step(h[B,L,d] f32, mask[B,L] bool, fparams, words, meta, tok_codes, tok_scale, float ln_eps,
//        int block) -> (h'[B,L,d] (zeros at padding), logits[B,C] or [0] when the block has no head)
//        the model as for infer; block: 0-based
//   frac_entropy(logits, prev_logits, prev_entropy, has_prev, float delta, float eps,
//                bool check, bool lower, bool last) -> (done, answer, entropy)

#ifndef BEEX_ENGINE_BODY

#include <ATen/ATen.h>
#include <torch/library.h>

#include <cmath>
#include <tuple>
#include <vector>

namespace {

using at::Tensor;

// beexbench.models.exits.FractionalEntropy.step, op for op.
std::tuple<Tensor, Tensor, Tensor> frac_entropy(const Tensor& logits, const Tensor& prev_logits,
                                                const Tensor& prev_entropy, bool has_prev, double delta,
                                                double eps, bool check, bool lower, bool last) {
  Tensor logp = at::log_softmax(logits.to(at::kFloat), -1);
  Tensor h = logp.exp().mul(logp).sum(-1).neg();
  Tensor done = at::full_like(h, last ? 1 : 0, h.options().dtype(at::kBool));
  Tensor answer = logits;
  if (has_prev && check) {
    Tensor r = prev_entropy.sub(h).div(prev_entropy.clamp_min(eps));
    done = done.__or__(r.lt(delta));
    if (lower) answer = at::where(r.lt(0).unsqueeze(-1), prev_logits, logits);
  }
  return {done, answer, h};
}

}  // namespace

// ===========================================================================
// The whole-model path (``infer``).
// ===========================================================================
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

// The SIMD variants are compiled under #pragma GCC target (GCC only; clang and other
// compilers build the portable loops alone).
#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(BEEX_FORCE_PORTABLE)
#define BEEX_X86 1
#include <immintrin.h>
#else
#define BEEX_X86 0
#endif
#if defined(__aarch64__) && defined(__GNUC__) && !defined(BEEX_FORCE_PORTABLE)
#define BEEX_NEON 1
#include "../kernels/bits_core.h"  // the "neon" set's loops (ATen-free; tests/arm64 checks them under qemu)
#else
#define BEEX_NEON 0
#endif

#if defined(__GNUC__) || defined(__clang__)
#define BEEX_INLINE inline __attribute__((always_inline))
#else
#define BEEX_INLINE inline
#endif

namespace beex_whole {

using u64 = uint64_t;

struct Lin {            // y = float(K - 2 popcount(bits(x + shift) ^ w)) * alpha + bias
  const u64* wt;        // [W][out], word-major
  int64_t W, in, out;
  const float* alpha;   // [out]
  const float* bias;    // [out] or null
  const float* shift;   // [in] or null
};

struct Blk {
  Lin lin[8];  // q k v o, then w1 w2 (w3 w4 for the SLFN)
  const float *ln1w, *ln1b, *ln2w, *ln2b;
};

struct Head {
  bool has;
  const float *nw, *nb, *ow, *ob;  // norm w, b [d]; out w [C, d], b [C]
};

// the exit heads' LayerNorm eps: torch's default, whatever the encoder's (models/encoder.py ExitHead)
constexpr float kHeadEps = 1e-5f;

struct Model {
  int64_t d, H, dh, nblocks, ffn, dff, C, max_len, tok_bits, V, tok_words;
  float eps;  // the encoder's LayerNorm eps (embedding and blocks), as float: ATen adds it in float
  const float* pos;  // [max_len, d]
  const float *enw, *enb;
  const void* tok_codes;
  const float* tok_scale;
  std::vector<Blk> blocks;
  std::vector<Head> heads;
};

struct Rule {
  int64_t kind;    // 0 final, 1 fractional entropy, 2 absolute entropy
  float a;         // delta or threshold (compared in float, as torch compares with a Python scalar)
  float eps;
  int64_t min_exit;
  bool lower;
};

// Per-thread buffers, grown on demand and reused (no allocation after warm-up).
struct Work {
  std::vector<float> h, h1, q, k, v, ctx, att, f1, f2, a, c, aq, ak, sc, logits, prev, pooled, normed, tmp;
  std::vector<u64> xb, qb, kb, hb;
  std::vector<int64_t> pc, tok, pos, gi;  // gi, gx, gy: the GELU elements handed to ATen (gelu_ffn)
  std::vector<float> gx, gy;
};

template <class T>
BEEX_INLINE T* grow(std::vector<T>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  return v.data();
}

using RowFn = void (*)(const Model&, const Rule&, const int64_t* ids, const bool* mask, int64_t L, float* logits,
                       int64_t* block, Work& w);
using StepFn = void (*)(const Model&, int64_t b, const float* h_in, const bool* mask, int64_t L, float* h_out,
                        float* logits, Work& w);

// y = gelu(x) for n floats by ATen's gelu kernel, the float model's own (the one ATen op of the
// whole-model path, for the few elements gelu_ffn cannot settle itself).
void aten_gelu(const float* x, int64_t n, float* y);

}  // namespace beex_whole

#define BEEX_ENGINE_BODY 1
#if BEEX_X86
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vpopcntdq,avx512bw,avx512vl,avx512dq,avx2,fma,popcnt,bmi,bmi2")
#define BEEX_ISA 2
namespace beex_whole {
namespace isa_avx512 {
#include "_engine.cpp"
}  // namespace isa_avx512
}  // namespace beex_whole
#undef BEEX_ISA
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx2,fma,popcnt,bmi,bmi2")
#define BEEX_ISA 1
namespace beex_whole {
namespace isa_avx2 {
#include "_engine.cpp"
}  // namespace isa_avx2
}  // namespace beex_whole
#undef BEEX_ISA
#pragma GCC pop_options
#endif
#if BEEX_NEON  // AArch64: the portable loops with NEON token rows, bit packing and products
#define BEEX_ISA 3
namespace beex_whole {
namespace isa_neon {
#include "_engine.cpp"
}  // namespace isa_neon
}  // namespace beex_whole
#undef BEEX_ISA
#endif
#define BEEX_ISA 0
namespace beex_whole {
namespace isa_portable {
#include "_engine.cpp"
}  // namespace isa_portable
}  // namespace beex_whole
#undef BEEX_ISA

namespace beex_whole {

void aten_gelu(const float* x, int64_t n, float* y) {
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  at::Tensor out = at::from_blob(y, {n}, f32);
  at::gelu_out(out, at::from_blob(const_cast<float*>(x), {n}, f32), "none");
}

bool has_avx512() {
#if BEEX_X86
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512dq");
#else
  return false;
#endif
}

bool has_avx2() {
#if BEEX_X86
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

std::atomic<int> g_isa{-1};  // -1: not chosen yet

int auto_isa() { return has_avx512() ? 2 : has_avx2() ? 1 : BEEX_NEON ? 3 : 0; }

const char* isa_name(int isa) { return isa == 3 ? "neon" : isa == 2 ? "avx512" : isa == 1 ? "avx2" : "portable"; }

RowFn row_fn() {
  int isa = g_isa.load(std::memory_order_relaxed);
  if (isa < 0) {
    isa = auto_isa();
    g_isa.store(isa, std::memory_order_relaxed);
  }
#if BEEX_X86
  if (isa == 2) return &isa_avx512::run_row;
  if (isa == 1) return &isa_avx2::run_row;
#endif
#if BEEX_NEON
  if (isa == 3) return &isa_neon::run_row;
#endif
  return &isa_portable::run_row;
}

StepFn step_fn() {
  row_fn();  // chooses the variant on first use
#if BEEX_X86
  const int isa = g_isa.load(std::memory_order_relaxed);
  if (isa == 2) return &isa_avx512::step_row;
  if (isa == 1) return &isa_avx2::step_row;
#endif
#if BEEX_NEON
  if (g_isa.load(std::memory_order_relaxed) == 3) return &isa_neon::step_row;
#endif
  return &isa_portable::step_row;
}

std::string engine_isa(const std::string& want) {
  if (want == "auto") {
    g_isa.store(auto_isa());
  } else if (want == "avx512") {
    TORCH_CHECK(has_avx512(), "engine_isa: this CPU lacks AVX-512 VPOPCNTDQ");
    g_isa.store(2);
  } else if (want == "avx2") {
    TORCH_CHECK(has_avx2(), "engine_isa: this CPU lacks AVX2");
    g_isa.store(1);
  } else if (want == "neon") {
    TORCH_CHECK(BEEX_NEON, "engine_isa: NEON is an AArch64 instruction set");
    g_isa.store(3);
  } else if (want == "portable") {
    g_isa.store(0);
  } else {
    TORCH_CHECK(want.empty(), "engine_isa: one of auto, avx512, avx2, portable (or empty to ask), not '", want, "'");
  }
  row_fn();
  return isa_name(g_isa.load());
}

// meta (int64): [1, d, H, n_blocks, ffn, d_ff, C, max_len, tok_bits, V, pos, emb_norm w, emb_norm b]
// then per block: each linear (4 attention + 4 SLFN or 2 GELU) as
// [w_off, W, in, out, alpha_off, bias_off, shift_off] (offsets into words / fparams, -1 = none),
// [ln1w, ln1b, ln2w, ln2b], [has_head, norm w, norm b, out w, out b].
void parse_model(Model& M, const at::Tensor& fparams, const at::Tensor& words, const at::Tensor& meta,
                 const at::Tensor& codes, const at::Tensor& scale) {
  const int64_t* m = meta.data_ptr<int64_t>();
  const int64_t nm = meta.numel();
  const float* F = fparams.data_ptr<float>();
  const int64_t nf = fparams.numel();
  const u64* Wd = reinterpret_cast<const u64*>(words.data_ptr<int64_t>());
  const int64_t nw = words.numel();
  TORCH_CHECK(nm >= 13 && m[0] == 1, "infer: bad model layout");
  M.d = m[1]; M.H = m[2]; M.nblocks = m[3]; M.ffn = m[4]; M.dff = m[5]; M.C = m[6]; M.max_len = m[7];
  M.tok_bits = m[8]; M.V = m[9];
  TORCH_CHECK(M.d > 0 && M.H > 0 && M.d % M.H == 0 && M.nblocks > 0 && (M.ffn == 0 || M.ffn == 1) && M.dff > 0 &&
                  M.C > 0 && M.max_len > 0 && M.V > 0,
              "infer: bad model dimensions");
  M.dh = M.d / M.H;
  const int64_t nlin = M.ffn == 0 ? 8 : 6;
  TORCH_CHECK(nm == 13 + M.nblocks * (nlin * 7 + 4 + 5), "infer: bad model layout length");
  auto fp = [&](int64_t off, int64_t n) -> const float* {
    if (off < 0) return nullptr;
    TORCH_CHECK(off + n <= nf, "infer: float offset out of range");
    return F + off;
  };
  M.pos = fp(m[10], M.max_len * M.d);
  M.enw = fp(m[11], M.d);
  M.enb = fp(m[12], M.d);
  TORCH_CHECK(M.pos && M.enw && M.enb, "infer: missing embedding tensors");
  // token table
  const int64_t d = M.d;
  if (M.tok_bits == 32) {
    TORCH_CHECK(codes.scalar_type() == at::kFloat && codes.dim() == 2 && codes.size(0) == M.V && codes.size(1) == d,
                "infer: 32-bit token table must be float32 [V, d]");
  } else if (M.tok_bits == 8) {
    TORCH_CHECK(codes.scalar_type() == at::kChar && codes.dim() == 2 && codes.size(0) == M.V && codes.size(1) == d,
                "infer: 8-bit token codes must be int8 [V, d]");
  } else if (M.tok_bits == 4) {
    TORCH_CHECK(codes.scalar_type() == at::kByte && codes.dim() == 2 && codes.size(0) == M.V &&
                    codes.size(1) == (d + 1) / 2,
                "infer: 4-bit token codes must be uint8 [V, ceil(d/2)]");
  } else if (M.tok_bits == 1) {
    TORCH_CHECK(codes.scalar_type() == at::kLong && codes.dim() == 2 && codes.size(0) == M.V &&
                    codes.size(1) == (d + 63) / 64,
                "infer: 1-bit token codes must be int64 [V, ceil(d/64)]");
  } else {
    TORCH_CHECK(false, "infer: token format ", M.tok_bits, " bits is not one of 32, 8, 4, 1");
  }
  TORCH_CHECK(codes.is_contiguous(), "infer: token codes must be contiguous");
  M.tok_codes = codes.data_ptr();
  if (M.tok_bits != 32) {
    TORCH_CHECK(scale.scalar_type() == at::kFloat && scale.numel() == M.V && scale.is_contiguous(),
                "infer: token scale must be float32 [V]");
    M.tok_scale = scale.data_ptr<float>();
  } else {
    M.tok_scale = nullptr;
  }
  M.blocks.resize(static_cast<size_t>(M.nblocks));
  M.heads.resize(static_cast<size_t>(M.nblocks));
  const int64_t* c = m + 13;
  for (int64_t b = 0; b < M.nblocks; ++b) {
    Blk& B = M.blocks[b];
    for (int64_t i = 0; i < nlin; ++i, c += 7) {
      Lin& L = B.lin[i];
      L.W = c[1]; L.in = c[2]; L.out = c[3];
      const int64_t want_in = (i < 4) ? d : (M.ffn == 0 ? ((i % 2 == 0) ? d : M.dff) : (i == 4 ? d : M.dff));
      const int64_t want_out = (i < 4) ? d : (M.ffn == 0 ? ((i % 2 == 0) ? M.dff : d) : (i == 4 ? M.dff : d));
      TORCH_CHECK(L.in == want_in && L.out == want_out && L.W == (L.in + 63) / 64, "infer: bad linear shape");
      TORCH_CHECK(c[0] >= 0 && c[0] + L.W * L.out <= nw, "infer: word offset out of range");
      L.wt = Wd + c[0];
      L.alpha = fp(c[4], L.out);
      TORCH_CHECK(L.alpha, "infer: missing alpha");
      L.bias = fp(c[5], L.out);
      L.shift = fp(c[6], L.in);
    }
    B.ln1w = fp(c[0], d); B.ln1b = fp(c[1], d); B.ln2w = fp(c[2], d); B.ln2b = fp(c[3], d);
    TORCH_CHECK(B.ln1w && B.ln1b && B.ln2w && B.ln2b, "infer: missing LayerNorm tensors");
    c += 4;
    Head& Hd = M.heads[b];
    Hd.has = c[0] != 0;
    if (Hd.has) {
      Hd.nw = fp(c[1], d); Hd.nb = fp(c[2], d); Hd.ow = fp(c[3], M.C * d); Hd.ob = fp(c[4], M.C);
      TORCH_CHECK(Hd.nw && Hd.nb && Hd.ow && Hd.ob, "infer: missing head tensors");
    }
    c += 5;
  }
  TORCH_CHECK(M.heads.back().has, "infer: the last block needs an exit head");
}

std::tuple<at::Tensor, at::Tensor> infer(const at::Tensor& ids, const at::Tensor& mask, const at::Tensor& fparams,
                                         const at::Tensor& words, const at::Tensor& meta, const at::Tensor& codes,
                                         const at::Tensor& scale, double ln_eps, int64_t rule, double a, double b,
                                         int64_t min_exit, bool lower) {
  TORCH_CHECK(ids.device().is_cpu() && ids.scalar_type() == at::kLong && ids.dim() == 2 && ids.is_contiguous(),
              "infer: ids must be contiguous CPU int64 [B, L]");
  TORCH_CHECK(mask.scalar_type() == at::kBool && mask.sizes() == ids.sizes() && mask.is_contiguous(),
              "infer: mask must be contiguous bool, shaped as ids");
  TORCH_CHECK(fparams.scalar_type() == at::kFloat && fparams.is_contiguous() && words.scalar_type() == at::kLong &&
                  words.is_contiguous() && meta.scalar_type() == at::kLong && meta.is_contiguous(),
              "infer: fparams f32, words int64, meta int64, contiguous");
  TORCH_CHECK(rule >= 0 && rule <= 2, "infer: rule must be 0 (final), 1 (fractional entropy) or 2 (absolute entropy)");
  TORCH_CHECK(ln_eps > 0, "infer: ln_eps must be positive");
  thread_local Model M;
  parse_model(M, fparams, words, meta, codes, scale);
  M.eps = static_cast<float>(ln_eps);
  const int64_t B = ids.size(0), L = ids.size(1);
  TORCH_CHECK(B > 0, "infer: empty batch");
  TORCH_CHECK(L <= M.max_len, "sequence length ", L, " exceeds the model's max_len ", M.max_len);
  const int64_t* id = ids.data_ptr<int64_t>();
  for (int64_t i = 0; i < B * L; ++i)
    TORCH_CHECK(id[i] >= 0 && id[i] < M.V, "infer: token id ", id[i], " out of range for a vocabulary of ", M.V);
  Rule R{rule, static_cast<float>(a), static_cast<float>(b), min_exit, lower};
  at::Tensor logits = at::empty({B, M.C}, fparams.options());
  at::Tensor blocks = at::empty({B}, ids.options());
  float* lo = logits.data_ptr<float>();
  int64_t* bo = blocks.data_ptr<int64_t>();
  const bool* mk = mask.data_ptr<bool>();
  RowFn fn = row_fn();
  if (B == 1 || at::get_num_threads() == 1 || at::in_parallel_region()) {
    thread_local Work w;
    for (int64_t r = 0; r < B; ++r) fn(M, R, id + r * L, mk + r * L, L, lo + r * M.C, bo + r, w);
  } else {
    const Model& Mr = M;
    at::parallel_for(0, B, 1, [&](int64_t r0, int64_t r1) {
      thread_local Work w;
      for (int64_t r = r0; r < r1; ++r) fn(Mr, R, id + r * L, mk + r * L, L, lo + r * Mr.C, bo + r, w);
    });
  }
  return {logits, blocks};
}

std::tuple<at::Tensor, at::Tensor> step(const at::Tensor& h, const at::Tensor& mask, const at::Tensor& fparams,
                                        const at::Tensor& words, const at::Tensor& meta, const at::Tensor& codes,
                                        const at::Tensor& scale, double ln_eps, int64_t block) {
  TORCH_CHECK(fparams.scalar_type() == at::kFloat && fparams.is_contiguous() && words.scalar_type() == at::kLong &&
                  words.is_contiguous() && meta.scalar_type() == at::kLong && meta.is_contiguous(),
              "step: fparams f32, words int64, meta int64, contiguous");
  TORCH_CHECK(ln_eps > 0, "step: ln_eps must be positive");
  thread_local Model M;
  parse_model(M, fparams, words, meta, codes, scale);
  M.eps = static_cast<float>(ln_eps);
  TORCH_CHECK(block >= 0 && block < M.nblocks, "step: block ", block, " out of range");
  TORCH_CHECK(h.device().is_cpu() && h.scalar_type() == at::kFloat && h.dim() == 3 && h.size(2) == M.d,
              "step: h must be CPU float32 [B, L, d]");
  TORCH_CHECK(mask.scalar_type() == at::kBool && mask.dim() == 2 && mask.size(0) == h.size(0) &&
                  mask.size(1) == h.size(1),
              "step: mask must be bool [B, L]");
  const at::Tensor hc = h.contiguous(), mc = mask.contiguous();
  const int64_t B = h.size(0), L = h.size(1), d = M.d;
  const bool has_head = M.heads[block].has;
  at::Tensor out = at::empty({B, L, d}, hc.options());
  at::Tensor logits = at::empty({has_head ? B : 0, has_head ? M.C : 0}, hc.options());
  const float* hi = hc.data_ptr<float>();
  float* ho = out.data_ptr<float>();
  float* lo = has_head ? logits.data_ptr<float>() : nullptr;
  thread_local std::vector<float> no_logits;
  const bool* mk = mc.data_ptr<bool>();
  StepFn fn = step_fn();
  const Model& Mr = M;
  auto rows = [&](int64_t r0, int64_t r1, Work& w) {
    for (int64_t r = r0; r < r1; ++r) {
      float* lr = lo ? lo + r * Mr.C : grow(no_logits, Mr.C);
      fn(Mr, block, hi + r * L * d, mk + r * L, L, ho + r * L * d, lr, w);
    }
  };
  if (B == 1 || at::get_num_threads() == 1 || at::in_parallel_region()) {
    thread_local Work w;
    rows(0, B, w);
  } else {
    at::parallel_for(0, B, 1, [&](int64_t r0, int64_t r1) {
      thread_local Work w;
      thread_local std::vector<float> scratch;
      for (int64_t r = r0; r < r1; ++r) {
        float* lr = lo ? lo + r * Mr.C : grow(scratch, Mr.C);
        fn(Mr, block, hi + r * L * d, mk + r * L, L, ho + r * L * d, lr, w);
      }
    });
  }
  return {out, logits};
}

}  // namespace beex_whole

TORCH_LIBRARY(beexbench_engine_native, m) {
  m.def("step(Tensor h, Tensor mask, Tensor fparams, Tensor words, Tensor meta, Tensor tok_codes, "
        "Tensor tok_scale, float ln_eps, int block) -> (Tensor, Tensor)",
        &beex_whole::step);
  m.def("frac_entropy(Tensor logits, Tensor prev_logits, Tensor prev_entropy, bool has_prev, float delta, "
        "float eps, bool check, bool lower, bool last) -> (Tensor, Tensor, Tensor)",
        &frac_entropy);
  m.def("infer(Tensor ids, Tensor mask, Tensor fparams, Tensor words, Tensor meta, Tensor tok_codes, "
        "Tensor tok_scale, float ln_eps, int rule, float a, float b, int min_exit, bool lower) -> (Tensor, Tensor)",
        &beex_whole::infer);
  m.def("engine_isa(str want) -> str", &beex_whole::engine_isa);
}

#else  // BEEX_ENGINE_BODY: the per-ISA loops, compiled once per BEEX_ISA (see above)
#ifndef BEEX_HOT
#define BEEX_HOT static  // (define as static __attribute__((noinline)) to profile the parts)
#endif
// Compiled once per instruction set (BEEX_ISA 2: AVX-512 VPOPCNTDQ, 1: AVX2, 0: portable)
// inside namespace beex_whole::isa_*, under that set's #pragma GCC target.

BEEX_INLINE int64_t popcnt(u64 x) { return __builtin_popcountll(x); }

#if BEEX_ISA == 2
BEEX_INLINE __mmask16 tail16(int64_t r) {
  return r >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << r) - 1u);
}

// masked loads / stores that are plain ones for a full mask (store-to-load forwarding
// works for those, not for masked accesses)
BEEX_INLINE __m512 load16(const float* p, __mmask16 m) {
  return m == 0xFFFF ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(m, p);
}
BEEX_INLINE void store16(float* p, __mmask16 m, __m512 v) {
  if (m == 0xFFFF) _mm512_storeu_ps(p, v);
  else _mm512_mask_storeu_ps(p, m, v);
}

// horizontal sum / max of 16 lanes (GCC 12's _mm512_reduce_* trip -Wuninitialized in its header)
BEEX_INLINE float hsum512(__m512 v) {
  __m512 t = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0x4E));
  t = _mm512_add_ps(t, _mm512_shuffle_f32x4(t, t, 0xB1));
  __m128 x = _mm512_castps512_ps128(t);
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  x = _mm_add_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}

BEEX_INLINE float hmax512(__m512 v) {
  __m512 t = _mm512_max_ps(v, _mm512_shuffle_f32x4(v, v, 0x4E));
  t = _mm512_max_ps(t, _mm512_shuffle_f32x4(t, t, 0xB1));
  __m128 x = _mm512_castps512_ps128(t);
  x = _mm_max_ps(x, _mm_movehl_ps(x, x));
  x = _mm_max_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}
#endif

// exp(x) for float: Cephes' expf (range reduction by ln 2, degree-5 polynomial), about
// 1 ulp; branch-free so the loops around it vectorise.  Inputs are clamped to
// [-87.3, 88.7] (below: a result under 1e-38, where softmax and sigmoid are 0 anyway).
BEEX_INLINE float fexp(float x) {
  x = x < -87.3f ? -87.3f : x;
  x = x > 88.7f ? 88.7f : x;
  const float fx = x * 1.44269504088896341f + 0.5f;
  int32_t n = static_cast<int32_t>(fx);
  n -= (static_cast<float>(n) > fx) ? 1 : 0;  // floor
  const float nf = static_cast<float>(n);
  float r = x - nf * 0.693359375f;
  r = r - nf * -2.12194440e-4f;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * (r * r) + r;
  y = y + 1.0f;
  // 2^n in two factors so n = 128 (x near 88.7) does not overflow the exponent field
  const int32_t n1 = n >> 1, n2 = n - n1;
  float s1, s2;
  const int32_t e1 = (n1 + 127) << 23, e2 = (n2 + 127) << 23;
  std::memcpy(&s1, &e1, 4);
  std::memcpy(&s2, &e2, 4);
  return y * s1 * s2;
}

// tanh: Cephes' tanhf (odd polynomial below 0.625, 1 - 2 / (exp(2|x|) + 1) above).
BEEX_INLINE float ftanh(float x) {
  const float ax = x < 0 ? -x : x;
  const float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = p * z * x + x;
  const float e = fexp(2.0f * (ax > 44.0f ? 44.0f : ax));
  float big = 1.0f - 2.0f / (e + 1.0f);
  big = x < 0 ? -big : big;
  return ax < 0.625f ? small : big;
}

BEEX_INLINE float fsigmoid(float x) { return 1.0f / (1.0f + fexp(-x)); }

// The erf GELU x/2 (1 + erf(x/sqrt 2)) with Abramowitz-Stegun 7.1.26's erf (|error| < 1.5e-7)
// and fexp: branch-free, so the loop over a row vectorises.
BEEX_INLINE float fgelu(float x) {
  const float z = x * 0.70710678118654752440f;
  const float az = z < 0 ? -z : z;
  const float t = 1.0f / (1.0f + 0.3275911f * az);
  float r = 1.061405429f;
  r = r * t - 1.453152027f;
  r = r * t + 1.421413741f;
  r = r * t - 0.284496736f;
  r = r * t + 0.254829592f;
  const float e = 1.0f - r * t * fexp(-(z * z));
  return x * 0.5f * (1.0f + (z < 0 ? -e : e));
}

// sum of n floats with 16 partial sums (vectorises without reassociation flags)
BEEX_INLINE float sum16(const float* x, int64_t n) {
  float acc[16];
  for (int k = 0; k < 16; ++k) acc[k] = 0.0f;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int k = 0; k < 16; ++k) acc[k] += x[i + k];
  for (int k = 0; i < n; ++i, ++k) acc[k] += x[i];
  for (int s = 8; s >= 1; s /= 2)
    for (int k = 0; k < s; ++k) acc[k] += acc[k + s];
  return acc[0];
}

BEEX_INLINE float dot16(const float* x, const float* y, int64_t n) {
  float acc[16];
  for (int k = 0; k < 16; ++k) acc[k] = 0.0f;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int k = 0; k < 16; ++k) acc[k] += x[i + k] * y[i + k];
  for (int k = 0; i < n; ++i, ++k) acc[k] += x[i] * y[i];
  for (int s = 8; s >= 1; s /= 2)
    for (int k = 0; k < s; ++k) acc[k] += acc[k + s];
  return acc[0];
}

BEEX_INLINE float max16(const float* x, int64_t n) {
  float acc[16];
  for (int k = 0; k < 16; ++k) acc[k] = x[0];
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int k = 0; k < 16; ++k) acc[k] = x[i + k] > acc[k] ? x[i + k] : acc[k];
  for (int k = 0; i < n; ++i, ++k) acc[k] = x[i] > acc[k] ? x[i] : acc[k];
  for (int s = 8; s >= 1; s /= 2)
    for (int k = 0; k < s; ++k) acc[k] = acc[k + s] > acc[k] ? acc[k + s] : acc[k];
  return acc[0];
}

// LayerNorm of one row, in place allowed: y = (x * rstd + (-mean * rstd)) * g + b, rstd = 1 / sqrt(var + eps)
// with eps in float, as ATen's CPU kernel adds it (the encoder's eps, Model::eps; 1e-5 in the exit heads)
BEEX_HOT void layer_norm(const float* x, int64_t d, const float* g, const float* b, float* y, float eps) {
#if BEEX_ISA == 2
  __m512 acc = _mm512_setzero_ps();
  for (int64_t c0 = 0; c0 < d; c0 += 16) acc = _mm512_add_ps(acc, load16(x + c0, tail16(d - c0)));
  const float mean = hsum512(acc) / static_cast<float>(d);
  const __m512 mv = _mm512_set1_ps(mean);
  acc = _mm512_setzero_ps();
  for (int64_t c0 = 0; c0 < d; c0 += 16) {
    const __mmask16 m = tail16(d - c0);
    const __m512 t = _mm512_maskz_sub_ps(m, load16(x + c0, m), mv);
    acc = _mm512_add_ps(acc, _mm512_mul_ps(t, t));
  }
  const float var = hsum512(acc) / static_cast<float>(d);
  const float rstd = 1.0f / std::sqrt(var + eps);
  const __m512 rv = _mm512_set1_ps(rstd), nb = _mm512_set1_ps(-mean * rstd);
  for (int64_t c0 = 0; c0 < d; c0 += 16) {
    const __mmask16 m = tail16(d - c0);
    const __m512 t = _mm512_add_ps(_mm512_mul_ps(load16(x + c0, m), rv), nb);
    store16(y + c0, m, _mm512_add_ps(_mm512_mul_ps(t, load16(g + c0, m)),
                                                   load16(b + c0, m)));
  }
#else
  const float mean = sum16(x, d) / static_cast<float>(d);
  float acc[16];
  for (int k = 0; k < 16; ++k) acc[k] = 0.0f;
  int64_t i = 0;
  for (; i + 16 <= d; i += 16)
    for (int k = 0; k < 16; ++k) {
      const float t = x[i + k] - mean;
      acc[k] += t * t;
    }
  for (int k = 0; i < d; ++i, ++k) {
    const float t = x[i] - mean;
    acc[k] += t * t;
  }
  for (int s = 8; s >= 1; s /= 2)
    for (int k = 0; k < s; ++k) acc[k] += acc[k + s];
  const float var = acc[0] / static_cast<float>(d);
  const float rstd = 1.0f / std::sqrt(var + eps);
  const float nb = -mean * rstd;
  for (int64_t j = 0; j < d; ++j) y[j] = (x[j] * rstd + nb) * g[j] + b[j];
#endif
}

// bits of (x + shift) >= 0 (NaN -> 0), element t in word t / 64, bit t % 64; shift may be null
BEEX_HOT void pack_bits(const float* x, const float* shift, int64_t K, u64* out) {
#if BEEX_ISA == 3
  beex_bits::neon::pack_row(x, shift, K, out);
  return;
#endif
  const int64_t W = (K + 63) / 64;
  for (int64_t w = 0; w < W; ++w) {
    const int64_t base = w * 64;
    const int64_t n = std::min<int64_t>(64, K - base);
    u64 bits = 0;
    int64_t t = 0;
#if BEEX_ISA == 2
    const __m512 zero = _mm512_setzero_ps();
    for (; t + 16 <= n; t += 16) {
      __m512 v = _mm512_loadu_ps(x + base + t);
      if (shift) v = _mm512_add_ps(v, _mm512_loadu_ps(shift + base + t));
      bits |= static_cast<u64>(_mm512_cmp_ps_mask(v, zero, _CMP_GE_OQ)) << t;
    }
    if (t < n) {
      const __mmask16 k = static_cast<__mmask16>((1u << (n - t)) - 1u);
      __m512 v = _mm512_maskz_loadu_ps(k, x + base + t);
      if (shift) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, shift + base + t));
      bits |= static_cast<u64>(_mm512_mask_cmp_ps_mask(k, v, zero, _CMP_GE_OQ)) << t;
      t = n;
    }
#elif BEEX_ISA == 1
    const __m256 zero = _mm256_setzero_ps();
    for (; t + 8 <= n; t += 8) {
      __m256 v = _mm256_loadu_ps(x + base + t);
      if (shift) v = _mm256_add_ps(v, _mm256_loadu_ps(shift + base + t));
      bits |= static_cast<u64>(static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_GE_OQ)))) << t;
    }
#endif
    for (; t < n; ++t) {
      const float v = shift ? x[base + t] + shift[base + t] : x[base + t];
      bits |= static_cast<u64>(v >= 0.0f) << t;
    }
    out[w] = bits;
  }
}

#if BEEX_ISA == 2
// exp on 16 lanes: fexp's arithmetic, lane for lane
BEEX_INLINE __m512 fexp512(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.7f));
  const __m512 fx = _mm512_add_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _mm512_set1_ps(0.5f));
  const __m512 nf = _mm512_roundscale_ps(fx, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_sub_ps(x, _mm512_mul_ps(nf, _mm512_set1_ps(0.693359375f)));
  r = _mm512_sub_ps(r, _mm512_mul_ps(nf, _mm512_set1_ps(-2.12194440e-4f)));
  __m512 y = _mm512_set1_ps(1.9875691500e-4f);
  y = _mm512_add_ps(_mm512_mul_ps(y, r), _mm512_set1_ps(1.3981999507e-3f));
  y = _mm512_add_ps(_mm512_mul_ps(y, r), _mm512_set1_ps(8.3334519073e-3f));
  y = _mm512_add_ps(_mm512_mul_ps(y, r), _mm512_set1_ps(4.1665795894e-2f));
  y = _mm512_add_ps(_mm512_mul_ps(y, r), _mm512_set1_ps(1.6666665459e-1f));
  y = _mm512_add_ps(_mm512_mul_ps(y, r), _mm512_set1_ps(5.0000001201e-1f));
  y = _mm512_add_ps(_mm512_mul_ps(y, _mm512_mul_ps(r, r)), r);
  y = _mm512_add_ps(y, _mm512_set1_ps(1.0f));
  const __m512i n = _mm512_cvtps_epi32(nf);
  const __m512i n1 = _mm512_srai_epi32(n, 1);
  const __m512i n2 = _mm512_sub_epi32(n, n1);
  const __m512i bias = _mm512_set1_epi32(127);
  const __m512 s1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n1, bias), 23));
  const __m512 s2 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n2, bias), 23));
  return _mm512_mul_ps(_mm512_mul_ps(y, s1), s2);
}

BEEX_INLINE __m512 fsigmoid512(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.0f);
  return _mm512_div_ps(one, _mm512_add_ps(one, fexp512(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}

// ftanh's arithmetic on 16 lanes
BEEX_INLINE __m512 ftanh512(__m512 x) {
  const __m512 ax = _mm512_abs_ps(x);
  const __m512 z = _mm512_mul_ps(x, x);
  __m512 p = _mm512_set1_ps(-5.70498872745e-3f);
  p = _mm512_add_ps(_mm512_mul_ps(p, z), _mm512_set1_ps(2.06390887954e-2f));
  p = _mm512_sub_ps(_mm512_mul_ps(p, z), _mm512_set1_ps(5.37397155531e-2f));
  p = _mm512_add_ps(_mm512_mul_ps(p, z), _mm512_set1_ps(1.33314422036e-1f));
  p = _mm512_sub_ps(_mm512_mul_ps(p, z), _mm512_set1_ps(3.33332819422e-1f));
  const __m512 small = _mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(p, z), x), x);
  const __m512 e = fexp512(_mm512_mul_ps(_mm512_set1_ps(2.0f), _mm512_min_ps(ax, _mm512_set1_ps(44.0f))));
  __m512 big = _mm512_sub_ps(_mm512_set1_ps(1.0f), _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, _mm512_set1_ps(1.0f))));
  const __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
  big = _mm512_mask_sub_ps(big, neg, _mm512_setzero_ps(), big);
  const __mmask16 sm = _mm512_cmp_ps_mask(ax, _mm512_set1_ps(0.625f), _CMP_LT_OQ);
  return _mm512_mask_mov_ps(big, sm, small);
}

// The packed linear on packed input rows xb [n][W]: a register tile of 4 rows x 32 outputs
// (16 int64 popcount sums in registers over the words; each weight vector loaded once for the
// four rows), then per row and 16 outputs float(K - 2 pc) * alpha + bias, as the kernels'
// epilogue (integer sums: the tile's order cannot change a result). ACT 0: the floats into
// y [n][N]; ACT 1 / 2: only the bits of sigmoid / tanh(y) + next_shift >= 0 into
// yb [n][ceil(N/64)], the next linear's input.
template <int ACT>
BEEX_INLINE void plinear512_out(const Lin& L, int64_t j0, __m512i p0, __m512i p1, float* yi, const float* next_shift,
                                u64* ybi) {
  const int64_t N = L.out;
  const __mmask16 m = tail16(N - j0);
  const __m512i kv = _mm512_set1_epi64(L.in);
  const __m512i s0 = _mm512_sub_epi64(kv, _mm512_add_epi64(p0, p0));
  const __m512i s1 = _mm512_sub_epi64(kv, _mm512_add_epi64(p1, p1));
  const __m512 s = _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtepi64_ps(s0)), _mm512_cvtepi64_ps(s1), 1);
  __m512 out = _mm512_mul_ps(s, load16(L.alpha + j0, m));
  if (L.bias) out = _mm512_add_ps(out, load16(L.bias + j0, m));
  if (ACT == 0) {
    store16(yi + j0, m, out);
  } else {
    __m512 act = ACT == 1 ? fsigmoid512(out) : ftanh512(out);
    if (next_shift) act = _mm512_add_ps(act, load16(next_shift + j0, m));
    ybi[j0 >> 6] |= static_cast<u64>(_mm512_mask_cmp_ps_mask(m, act, _mm512_setzero_ps(), _CMP_GE_OQ)) << (j0 & 63);
  }
}

template <int ACT>
BEEX_HOT void plinear512(const u64* xb, int64_t n, const Lin& L, float* y, const float* next_shift, u64* yb) {
  const int64_t W = L.W, N = L.out, WN = (N + 63) / 64;
  if (ACT != 0)
    for (int64_t t = 0; t < n * WN; ++t) yb[t] = 0;
  for (int64_t i0 = 0; i0 < n; i0 += 4) {
    const int64_t rows = std::min<int64_t>(4, n - i0);
    // rows past n repeat the last row (their sums are computed and dropped)
    const u64* a0 = xb + i0 * W;
    const u64* a1 = xb + (i0 + std::min<int64_t>(1, rows - 1)) * W;
    const u64* a2 = xb + (i0 + std::min<int64_t>(2, rows - 1)) * W;
    const u64* a3 = xb + (i0 + std::min<int64_t>(3, rows - 1)) * W;
    for (int64_t j0 = 0; j0 < N; j0 += 32) {
      const __mmask16 mlo = tail16(N - j0), mhi = N - j0 > 16 ? tail16(N - j0 - 16) : 0;  // (tail16 wants r > 0)
      const __mmask8 m0 = static_cast<__mmask8>(mlo & 0xFF), m1 = static_cast<__mmask8>(mlo >> 8);
      const __mmask8 m2 = static_cast<__mmask8>(mhi & 0xFF), m3 = static_cast<__mmask8>(mhi >> 8);
      // 16 named accumulators (an array indexed at run time in the epilogue would live on the stack)
      __m512i c00 = _mm512_setzero_si512(), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00,
              c13 = c00, c20 = c00, c21 = c00, c22 = c00, c23 = c00, c30 = c00, c31 = c00, c32 = c00, c33 = c00;
      const u64* wr = L.wt + j0;
      for (int64_t w = 0; w < W; ++w, wr += N) {
        const __m512i w0 = _mm512_maskz_loadu_epi64(m0, wr), w1 = _mm512_maskz_loadu_epi64(m1, wr + 8);
        const __m512i w2 = _mm512_maskz_loadu_epi64(m2, wr + 16), w3 = _mm512_maskz_loadu_epi64(m3, wr + 24);
#define BEEX_ROW4(A, C0, C1, C2, C3)                                                  \
  {                                                                                   \
    const __m512i av = _mm512_set1_epi64(static_cast<long long>(A[w]));               \
    C0 = _mm512_add_epi64(C0, _mm512_popcnt_epi64(_mm512_xor_si512(av, w0)));        \
    C1 = _mm512_add_epi64(C1, _mm512_popcnt_epi64(_mm512_xor_si512(av, w1)));        \
    C2 = _mm512_add_epi64(C2, _mm512_popcnt_epi64(_mm512_xor_si512(av, w2)));        \
    C3 = _mm512_add_epi64(C3, _mm512_popcnt_epi64(_mm512_xor_si512(av, w3)));        \
  }
        BEEX_ROW4(a0, c00, c01, c02, c03)
        BEEX_ROW4(a1, c10, c11, c12, c13)
        BEEX_ROW4(a2, c20, c21, c22, c23)
        BEEX_ROW4(a3, c30, c31, c32, c33)
#undef BEEX_ROW4
      }
      const bool two = j0 + 16 < N;
      auto out = [&](int64_t r, __m512i p0, __m512i p1, __m512i p2, __m512i p3) {
        float* yi = y ? y + (i0 + r) * N : nullptr;
        u64* ybi = yb ? yb + (i0 + r) * WN : nullptr;
        plinear512_out<ACT>(L, j0, p0, p1, yi, next_shift, ybi);
        if (two) plinear512_out<ACT>(L, j0 + 16, p2, p3, yi, next_shift, ybi);
      };
      out(0, c00, c01, c02, c03);
      if (rows > 1) out(1, c10, c11, c12, c13);
      if (rows > 2) out(2, c20, c21, c22, c23);
      if (rows > 3) out(3, c30, c31, c32, c33);
    }
  }
}
#endif

// y[n, out] = packed W1A1 linear of x[n, in] (xb: n * W words, pc: out int64 scratch)
BEEX_HOT void plinear(const float* x, int64_t n, const Lin& L, float* y, u64* xb, int64_t* pc) {
  const int64_t K = L.in, W = L.W, N = L.out;
  for (int64_t i = 0; i < n; ++i) pack_bits(x + i * K, L.shift, K, xb + i * W);
  const float* alpha = L.alpha;
  const float* bias = L.bias;
#if BEEX_ISA == 2
  (void)alpha, (void)bias, (void)N, (void)pc;
  plinear512<0>(xb, n, L, y, nullptr, nullptr);
  return;
#elif BEEX_ISA == 1
  // 8 outputs at a time, popcounts by nibble table (vpshufb) and vpsadbw, in registers
  const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2,
                                       3, 2, 3, 3, 4);
  const __m256i low = _mm256_set1_epi8(0x0F);
  const __m256i idx = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  const __m256i kv = _mm256_set1_epi32(static_cast<int>(K));
  const int64_t N8 = N & ~int64_t(7);
  auto pop4 = [&](__m256i v) {
    const __m256i c = _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_and_si256(v, low)),
                                      _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(v, 4), low)));
    return _mm256_sad_epu8(c, _mm256_setzero_si256());
  };
  for (int64_t i = 0; i < n; ++i) {
    const u64* a = xb + i * W;
    float* yi = y + i * N;
    for (int64_t j0 = 0; j0 < N8; j0 += 8) {
      __m256i p0 = _mm256_setzero_si256(), p1 = _mm256_setzero_si256();
      for (int64_t w = 0; w < W; ++w) {
        const __m256i av = _mm256_set1_epi64x(static_cast<long long>(a[w]));
        const u64* wr = L.wt + w * N + j0;
        p0 = _mm256_add_epi64(p0, pop4(_mm256_xor_si256(av, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wr)))));
        p1 = _mm256_add_epi64(p1, pop4(_mm256_xor_si256(av, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wr + 4)))));
      }
      const __m256i pc8 = _mm256_set_m128i(_mm256_castsi256_si128(_mm256_permutevar8x32_epi32(p1, idx)),
                                           _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(p0, idx)));
      const __m256 sv = _mm256_cvtepi32_ps(_mm256_sub_epi32(kv, _mm256_add_epi32(pc8, pc8)));
      __m256 out = _mm256_mul_ps(sv, _mm256_loadu_ps(alpha + j0));
      if (bias) out = _mm256_add_ps(out, _mm256_loadu_ps(bias + j0));
      _mm256_storeu_ps(yi + j0, out);
    }
    for (int64_t j = N8; j < N; ++j) {
      int64_t p = 0;
      for (int64_t w = 0; w < W; ++w) p += popcnt(a[w] ^ L.wt[w * N + j]);
      const float v = static_cast<float>(K - 2 * p) * alpha[j];
      yi[j] = bias ? v + bias[j] : v;
    }
  }
  (void)pc;
  return;
#elif BEEX_ISA == 3
  for (int64_t i = 0; i < n; ++i) {  // int32 counts in pc, as below
    beex_bits::neon::counts_word_major(xb + i * W, L.wt, W, N, reinterpret_cast<int32_t*>(pc));
    beex_bits::neon::epilogue(reinterpret_cast<int32_t*>(pc), N, K, alpha, bias, y + i * N);
  }
  return;
#endif
  // int32 counts: the int -> float conversion of the epilogue then vectorises
  int32_t* pc32 = reinterpret_cast<int32_t*>(pc);
  const int32_t K32 = static_cast<int32_t>(K);
  for (int64_t i = 0; i < n; ++i) {
    const u64* a = xb + i * W;
    {
      const u64 a0 = a[0];
      const u64* wr = L.wt;
      for (int64_t j = 0; j < N; ++j) pc32[j] = static_cast<int32_t>(popcnt(a0 ^ wr[j]));
    }
    for (int64_t w = 1; w < W; ++w) {
      const u64 aw = a[w];
      const u64* wr = L.wt + w * N;
      for (int64_t j = 0; j < N; ++j) pc32[j] += static_cast<int32_t>(popcnt(aw ^ wr[j]));
    }
    float* yi = y + i * N;
    if (bias) {
      for (int64_t j = 0; j < N; ++j) yi[j] = static_cast<float>(K32 - 2 * pc32[j]) * alpha[j] + bias[j];
    } else {
      for (int64_t j = 0; j < N; ++j) yi[j] = static_cast<float>(K32 - 2 * pc32[j]) * alpha[j];
    }
  }
}

#if BEEX_ISA == 2

// mean |x| over dh elements and the sign bits of x (x >= 0)
BEEX_HOT void absmean_bits(const float* x, int64_t dh, float* mean, u64* bits) {
  const int64_t W = (dh + 63) / 64;
  for (int64_t t = 0; t < W; ++t) bits[t] = 0;
  __m512 acc = _mm512_setzero_ps();
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t c0 = 0; c0 < dh; c0 += 16) {
    const __mmask16 m = tail16(dh - c0);
    const __m512 v = load16(x + c0, m);
    acc = _mm512_add_ps(acc, _mm512_abs_ps(v));
    bits[c0 >> 6] |= static_cast<u64>(_mm512_mask_cmp_ps_mask(m, v, zero, _CMP_GE_OQ)) << (c0 & 63);
  }
  *mean = hsum512(acc) / static_cast<float>(dh);
}

// softmax(sign(q) sign(k)^T * |q| |k| / sqrt(dh)) v for every head
BEEX_HOT void attend(const Model& M, Work& w, int64_t n, const float* q, const float* k, const float* v, float* ctx,
                     const float* aq, const float* ak, float* sc, const u64* qb, const u64* kb) {
  const int64_t d = M.d, H = M.H, dh = M.dh, Wh = (dh + 63) / 64;
  const float sq = static_cast<float>(std::sqrt(static_cast<double>(dh)));
  int ex = 0;
  const bool pow2 = std::frexp(sq, &ex) == 0.5f;  // x / sq == x * (1 / sq) exactly
  const __m512 sqv = _mm512_set1_ps(pow2 ? 1.0f / sq : sq);
  const __m512i dhv = _mm512_set1_epi64(dh);
  const __m512 zero = _mm512_setzero_ps();
  const int64_t ldp = (n + 15) / 16 * 16;  // sc holds [n][ldp] probabilities
  for (int64_t hd = 0; hd < H; ++hd) {
    const float* akh = ak + hd * n;
    const u64* kbh = kb + hd * n * Wh;
    const float* vh = v + hd * dh;
    // softmax rows in groups of four, each step for the whole group before the next (scores and
    // max, exp and sum, scale): four independent chains in flight (each row's arithmetic as one alone)
    for (int64_t g0 = 0; g0 < n; g0 += 4) {
      const int64_t g1 = std::min<int64_t>(n, g0 + 4);
      float mx[4], inv[4];
      for (int64_t i = g0; i < g1; ++i) {
        float* pi = sc + i * ldp;  // this row's probabilities
        const u64* qi = qb + (hd * n + i) * Wh;
        const __m512 aqv = _mm512_set1_ps(aq[hd * n + i]);
        const __m512i q0 = _mm512_set1_epi64(static_cast<long long>(qi[0]));
        __m512 maxv = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
        for (int64_t j0 = 0; j0 < n; j0 += 16) {
          const __mmask16 m = tail16(n - j0);
          __m512 s;
          if (Wh == 1) {
            const __m512i k0 = _mm512_maskz_loadu_epi64(static_cast<__mmask8>(m & 0xFF), kbh + j0);
            const __m512i k1 = _mm512_maskz_loadu_epi64(static_cast<__mmask8>(m >> 8), kbh + j0 + 8);
            const __m512i s0 = _mm512_sub_epi64(dhv, _mm512_slli_epi64(_mm512_popcnt_epi64(_mm512_xor_si512(k0, q0)), 1));
            const __m512i s1 = _mm512_sub_epi64(dhv, _mm512_slli_epi64(_mm512_popcnt_epi64(_mm512_xor_si512(k1, q0)), 1));
            s = _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtepi64_ps(s0)), _mm512_cvtepi64_ps(s1), 1);
          } else {
            alignas(64) float tmp[16] = {0};
            const int64_t r = std::min<int64_t>(16, n - j0);
            for (int64_t t = 0; t < r; ++t) {
              int64_t p = 0;
              for (int64_t x = 0; x < Wh; ++x) p += popcnt(qi[x] ^ kbh[(j0 + t) * Wh + x]);
              tmp[t] = static_cast<float>(dh - 2 * p);
            }
            s = _mm512_load_ps(tmp);
          }
          __m512 x = _mm512_mul_ps(s, _mm512_mul_ps(aqv, _mm512_maskz_loadu_ps(m, akh + j0)));
          x = pow2 ? _mm512_mul_ps(x, sqv) : _mm512_div_ps(x, sqv);
          _mm512_storeu_ps(pi + j0, x);  // whole rows of ldp: full stores, so the loads below forward
          maxv = _mm512_mask_max_ps(maxv, m, maxv, x);
        }
        mx[i - g0] = hmax512(maxv);
      }
      for (int64_t i = g0; i < g1; ++i) {
        float* pi = sc + i * ldp;
        const __m512 mxv = _mm512_set1_ps(mx[i - g0]);
        __m512 sumv = zero;
        for (int64_t j0 = 0; j0 < n; j0 += 16) {
          const __mmask16 m = tail16(n - j0);
          const __m512 e = _mm512_maskz_mov_ps(m, fexp512(_mm512_sub_ps(_mm512_loadu_ps(pi + j0), mxv)));
          _mm512_storeu_ps(pi + j0, e);
          sumv = _mm512_add_ps(sumv, e);
        }
        inv[i - g0] = 1.0f / hsum512(sumv);
      }
      for (int64_t i = g0; i < g1; ++i) {
        float* pi = sc + i * ldp;
        const __m512 invv = _mm512_set1_ps(inv[i - g0]);
        for (int64_t j0 = 0; j0 < n; j0 += 16) _mm512_storeu_ps(pi + j0, _mm512_mul_ps(_mm512_loadu_ps(pi + j0), invv));
      }
    }
    // ctx = P v, four query rows at a time (each v row loaded once for the four)
    for (int64_t i0 = 0; i0 < n; i0 += 4) {
      const int64_t rows = std::min<int64_t>(4, n - i0);
      const float* p0 = sc + i0 * ldp;
      const float* p1 = rows > 1 ? p0 + ldp : p0;
      const float* p2 = rows > 2 ? p0 + 2 * ldp : p0;
      const float* p3 = rows > 3 ? p0 + 3 * ldp : p0;
      for (int64_t c0 = 0; c0 < dh; c0 += 16) {
        const __mmask16 m = tail16(dh - c0);
        __m512 a0 = zero, a1 = zero, a2 = zero, a3 = zero;
        const float* vc = vh + c0;
        for (int64_t j = 0; j < n; ++j) {
          const __m512 vj = load16(vc + j * d, m);
          a0 = _mm512_add_ps(a0, _mm512_mul_ps(_mm512_set1_ps(p0[j]), vj));
          a1 = _mm512_add_ps(a1, _mm512_mul_ps(_mm512_set1_ps(p1[j]), vj));
          a2 = _mm512_add_ps(a2, _mm512_mul_ps(_mm512_set1_ps(p2[j]), vj));
          a3 = _mm512_add_ps(a3, _mm512_mul_ps(_mm512_set1_ps(p3[j]), vj));
        }
        float* ci = ctx + i0 * d + hd * dh + c0;
        store16(ci, m, a0);
        if (rows > 1) store16(ci + d, m, a1);
        if (rows > 2) store16(ci + 2 * d, m, a2);
        if (rows > 3) store16(ci + 3 * d, m, a3);
      }
    }
  }
}
#elif BEEX_ISA == 1
// exp on 8 lanes: fexp's arithmetic, lane for lane
BEEX_INLINE __m256 fexp256(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.7f));
  const __m256 fx = _mm256_add_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _mm256_set1_ps(0.5f));
  const __m256 nf = _mm256_round_ps(fx, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_sub_ps(x, _mm256_mul_ps(nf, _mm256_set1_ps(0.693359375f)));
  r = _mm256_sub_ps(r, _mm256_mul_ps(nf, _mm256_set1_ps(-2.12194440e-4f)));
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_add_ps(_mm256_mul_ps(y, r), _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_add_ps(_mm256_mul_ps(y, r), _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_add_ps(_mm256_mul_ps(y, r), _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_add_ps(_mm256_mul_ps(y, r), _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_add_ps(_mm256_mul_ps(y, r), _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_add_ps(_mm256_mul_ps(y, _mm256_mul_ps(r, r)), r);
  y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
  const __m256i n = _mm256_cvtps_epi32(nf);
  const __m256i n1 = _mm256_srai_epi32(n, 1);
  const __m256i n2 = _mm256_sub_epi32(n, n1);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
  return _mm256_mul_ps(_mm256_mul_ps(y, s1), s2);
}

// lanes [0, r) set (r clamped to 0..8)
BEEX_INLINE __m256i tail8(int64_t r) {
  alignas(32) static const int32_t bits[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
  const int64_t c = r < 0 ? 0 : (r > 8 ? 8 : r);
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bits + 8 - c));
}

BEEX_INLINE float hsum256(__m256 v) {
  __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  x = _mm_add_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}

BEEX_INLINE float hmax256(__m256 v) {
  __m128 x = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_max_ps(x, _mm_movehl_ps(x, x));
  x = _mm_max_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}

// mean |x| over dh elements and the sign bits of x (x >= 0); the sum in 16 lanes (two registers:
// element c in lane c % 16) and the same tree as sum16 / hsum512, so every ISA rounds alike
BEEX_HOT void absmean_bits(const float* x, int64_t dh, float* mean, u64* bits) {
  const int64_t W = (dh + 63) / 64;
  for (int64_t t = 0; t < W; ++t) bits[t] = 0;
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  const __m256 zero = _mm256_setzero_ps();
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (int64_t c0 = 0; c0 < dh; c0 += 8) {
    const __m256i m = tail8(dh - c0);
    const __m256 v = _mm256_maskload_ps(x + c0, m);
    if ((c0 & 8) == 0) acc0 = _mm256_add_ps(acc0, _mm256_and_ps(v, absmask));
    else acc1 = _mm256_add_ps(acc1, _mm256_and_ps(v, absmask));
    const unsigned b = static_cast<unsigned>(_mm256_movemask_ps(_mm256_and_ps(_mm256_cmp_ps(v, zero, _CMP_GE_OQ),
                                                                             _mm256_castsi256_ps(m))));
    bits[c0 >> 6] |= static_cast<u64>(b) << (c0 & 63);
  }
  *mean = hsum256(_mm256_add_ps(acc0, acc1)) / static_cast<float>(dh);
}

// softmax(sign(q) sign(k)^T * |q| |k| / sqrt(dh)) v for every head, in the AVX-512 loops' order
// (the exp sum in 16 lanes, then ctx = sum_j p_j v_j over j one after the other)
BEEX_HOT void attend(const Model& M, Work& w, int64_t n, const float* q, const float* k, const float* v, float* ctx,
                     const float* aq, const float* ak, float* sc, const u64* qb, const u64* kb) {
  const int64_t d = M.d, H = M.H, dh = M.dh, Wh = (dh + 63) / 64;
  const float sq = static_cast<float>(std::sqrt(static_cast<double>(dh)));
  const __m256 zero = _mm256_setzero_ps();
  const int64_t ldp = (n + 15) / 16 * 16;  // sc holds [n][ldp] probabilities
  for (int64_t hd = 0; hd < H; ++hd) {
    const float* akh = ak + hd * n;
    const u64* kbh = kb + hd * n * Wh;
    const float* vh = v + hd * dh;
    for (int64_t i = 0; i < n; ++i) {
      float* pi = sc + i * ldp;
      const u64* qi = qb + (hd * n + i) * Wh;
      const float aqi = aq[hd * n + i];
      if (Wh == 1) {
        const u64 q0 = qi[0];
        for (int64_t j = 0; j < n; ++j)
          pi[j] = static_cast<float>(dh - 2 * popcnt(q0 ^ kbh[j])) * (aqi * akh[j]) / sq;
      } else {
        for (int64_t j = 0; j < n; ++j) {
          int64_t p = 0;
          for (int64_t x = 0; x < Wh; ++x) p += popcnt(qi[x] ^ kbh[j * Wh + x]);
          pi[j] = static_cast<float>(dh - 2 * p) * (aqi * akh[j]) / sq;
        }
      }
      __m256 maxv = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
      for (int64_t j0 = 0; j0 < n; j0 += 8) {
        const __m256i m = tail8(n - j0);
        maxv = _mm256_blendv_ps(maxv, _mm256_max_ps(maxv, _mm256_maskload_ps(pi + j0, m)), _mm256_castsi256_ps(m));
      }
      const __m256 mxv = _mm256_set1_ps(hmax256(maxv));
      __m256 s0 = zero, s1 = zero;  // lanes 0-7 and 8-15 of the 16-lane sum
      for (int64_t j0 = 0; j0 < n; j0 += 8) {
        const __m256i m = tail8(n - j0);
        const __m256 e = _mm256_and_ps(fexp256(_mm256_sub_ps(_mm256_maskload_ps(pi + j0, m), mxv)),
                                       _mm256_castsi256_ps(m));
        _mm256_storeu_ps(pi + j0, e);  // whole rows of ldp floats: zeros past n
        if ((j0 & 8) == 0) s0 = _mm256_add_ps(s0, e);
        else s1 = _mm256_add_ps(s1, e);
      }
      const __m256 invv = _mm256_set1_ps(1.0f / hsum256(_mm256_add_ps(s0, s1)));
      for (int64_t j0 = 0; j0 < n; j0 += 8) _mm256_storeu_ps(pi + j0, _mm256_mul_ps(_mm256_loadu_ps(pi + j0), invv));
    }
    // ctx = P v, four query rows at a time (each v row loaded once for the four)
    for (int64_t i0 = 0; i0 < n; i0 += 4) {
      const int64_t rows = std::min<int64_t>(4, n - i0);
      const float* p0 = sc + i0 * ldp;
      const float* p1 = rows > 1 ? p0 + ldp : p0;
      const float* p2 = rows > 2 ? p0 + 2 * ldp : p0;
      const float* p3 = rows > 3 ? p0 + 3 * ldp : p0;
      for (int64_t c0 = 0; c0 < dh; c0 += 8) {
        const __m256i m = tail8(dh - c0);
        __m256 a0 = zero, a1 = zero, a2 = zero, a3 = zero;
        const float* vc = vh + c0;
        for (int64_t j = 0; j < n; ++j) {
          const __m256 vj = _mm256_maskload_ps(vc + j * d, m);
          a0 = _mm256_add_ps(a0, _mm256_mul_ps(_mm256_set1_ps(p0[j]), vj));
          a1 = _mm256_add_ps(a1, _mm256_mul_ps(_mm256_set1_ps(p1[j]), vj));
          a2 = _mm256_add_ps(a2, _mm256_mul_ps(_mm256_set1_ps(p2[j]), vj));
          a3 = _mm256_add_ps(a3, _mm256_mul_ps(_mm256_set1_ps(p3[j]), vj));
        }
        float* ci = ctx + i0 * d + hd * dh + c0;
        _mm256_maskstore_ps(ci, m, a0);
        if (rows > 1) _mm256_maskstore_ps(ci + d, m, a1);
        if (rows > 2) _mm256_maskstore_ps(ci + 2 * d, m, a2);
        if (rows > 3) _mm256_maskstore_ps(ci + 3 * d, m, a3);
      }
    }
  }
}
#else
// mean |x| over dh elements and the sign bits of x (x >= 0)
BEEX_HOT void absmean_bits(const float* x, int64_t dh, float* mean, u64* bits) {
  float acc[16];
  for (int t = 0; t < 16; ++t) acc[t] = 0.0f;
  for (int64_t c = 0; c < dh; ++c) acc[c & 15] += std::fabs(x[c]);
  for (int t = 8; t >= 1; t /= 2)
    for (int u = 0; u < t; ++u) acc[u] += acc[u + t];
  *mean = acc[0] / static_cast<float>(dh);
  pack_bits(x, nullptr, dh, bits);
}

// softmax(sign(q) sign(k)^T * |q| |k| / sqrt(dh)) v for every head, in the AVX-512 loops' order
// (the exp sum in 16 lanes, then ctx = sum_j p_j v_j over j one after the other)
BEEX_HOT void attend(const Model& M, Work& w, int64_t n, const float* q, const float* k, const float* v, float* ctx,
                     const float* aq, const float* ak, float* sc, const u64* qb, const u64* kb) {
  const int64_t d = M.d, H = M.H, dh = M.dh, Wh = (dh + 63) / 64;
  const float sq = static_cast<float>(std::sqrt(static_cast<double>(dh)));
  for (int64_t hd = 0; hd < H; ++hd) {
    const float* akh = ak + hd * n;
    const u64* kbh = kb + hd * n * Wh;
    for (int64_t i = 0; i < n; ++i) {
      const u64* qi = qb + (hd * n + i) * Wh;
      const float aqi = aq[hd * n + i];
      if (Wh == 1) {
        const u64 q0 = qi[0];
        for (int64_t j = 0; j < n; ++j) {
          const float s = static_cast<float>(dh - 2 * popcnt(q0 ^ kbh[j]));
          sc[j] = s * (aqi * akh[j]) / sq;
        }
      } else {
        for (int64_t j = 0; j < n; ++j) {
          int64_t p = 0;
          for (int64_t x = 0; x < Wh; ++x) p += popcnt(qi[x] ^ kbh[j * Wh + x]);
          sc[j] = static_cast<float>(dh - 2 * p) * (aqi * akh[j]) / sq;
        }
      }
      const float mx = max16(sc, n);
      for (int64_t j = 0; j < n; ++j) sc[j] = fexp(sc[j] - mx);
      const float inv = 1.0f / sum16(sc, n);
      for (int64_t j = 0; j < n; ++j) sc[j] = sc[j] * inv;
      // ctx_i = sum_j p_j v_j, 16 columns at a time in registers, j one after the other
      float* ci = ctx + i * d + hd * dh;
      const float* vh = v + hd * dh;
      for (int64_t c0 = 0; c0 < dh; c0 += 16) {
        const int64_t rem = std::min<int64_t>(16, dh - c0);
        float acc[16];
        for (int x = 0; x < 16; ++x) acc[x] = 0.0f;
        if (rem == 16) {
          for (int64_t j = 0; j < n; ++j) {
            const float p0 = sc[j];
            const float* v0 = vh + j * d + c0;
            for (int x = 0; x < 16; ++x) acc[x] += p0 * v0[x];
          }
        } else {
          for (int64_t j = 0; j < n; ++j) {
            const float p0 = sc[j];
            const float* v0 = vh + j * d + c0;
            for (int64_t x = 0; x < rem; ++x) acc[x] += p0 * v0[x];
          }
        }
        for (int64_t x = 0; x < rem; ++x) ci[c0 + x] = acc[x];
      }
    }
  }
}

#endif

// The GELU FFN's activation, in place on a [n, dff], for the next layer, which reads only the
// bits of gelu(x) + shift >= 0. The float model's F.gelu is the erf GELU (BERT's; not the tanh
// approximation) with the erf of its kernel: oneDNN's or ATen's vectorised approximation, not
// libm's. Where GELU is tiny (x below about -5, GELU -0 or a negative of order 1e-7 depending
// on that erf's last bit) and the shift is 0 (a BERT backbone before fine-tuning), or wherever
// gelu(x) + shift is that close to 0, the bit depends on those last bits. So fgelu gives every
// element, and those whose bit two erfs good to 1e-6 could disagree on are recomputed by ATen's
// kernel: the float model's bits, with no ATen call at all for a typical trained model.
// ATen's kernel on the ``nd`` doubtful inputs gathered in w.gy, padded with zeros to a multiple of
// 64 elements so that every element takes the kernel's vectorised body (as in the float model's
// [B, L, d_ff] tensor); returns the outputs, in the inputs' order (in w.gy).
const float* gelu_doubtful(int64_t nd, Work& w) {
  const int64_t padded = (nd + 63) / 64 * 64;
  float* xin = grow(w.gx, padded);
  const float* keep = w.gy.data();
  for (int64_t k = 0; k < nd; ++k) xin[k] = keep[k];
  for (int64_t k = nd; k < padded; ++k) xin[k] = 0.0f;
  float* yout = grow(w.gy, padded);
  aten_gelu(xin, padded, yout);
  return yout;
}

BEEX_HOT void gelu_ffn(float* a, int64_t n, int64_t dff, const float* shift, Work& w) {
  const int64_t N = n * dff;
  int64_t* gi = grow(w.gi, N);
  int64_t nd = 0;
  float* x0 = grow(w.gx, dff);
  for (int64_t r = 0; r < n; ++r) {
    float* row = a + r * dff;
    std::memcpy(x0, row, sizeof(float) * dff);
    // GELU and "is any bit in doubt" in one vectorisable pass (an or-reduction, no branch)
    int doubt = 0;
    if (shift) {
      for (int64_t c = 0; c < dff; ++c) {
        const float x = x0[c], g = fgelu(x), v = g + shift[c];
        row[c] = g;
        doubt |= std::fabs(v) <= 1e-5f * (std::fabs(x) + std::fabs(g)) + 1e-30f;
      }
    } else {
      for (int64_t c = 0; c < dff; ++c) {
        const float x = x0[c], g = fgelu(x);
        row[c] = g;
        doubt |= std::fabs(g) <= 1e-5f * (std::fabs(x) + std::fabs(g)) + 1e-30f;
      }
    }
    if (!doubt) continue;
    float* keep = grow(w.gy, N);  // the inputs of the doubtful elements, in gi's order
    for (int64_t c = 0; c < dff; ++c) {
      const float g = row[c], v = shift ? g + shift[c] : g;
      if (std::fabs(v) <= 1e-5f * (std::fabs(x0[c]) + std::fabs(g)) + 1e-30f) {
        keep[nd] = x0[c];
        gi[nd++] = r * dff + c;
      }
    }
  }
  if (nd == 0) return;
  const float* yout = gelu_doubtful(nd, w);
  for (int64_t k = 0; k < nd; ++k) a[gi[k]] = yout[k];
}

#if BEEX_ISA == 2
// fgelu's arithmetic on 16 lanes (fexp512 is fexp lane for lane)
BEEX_INLINE __m512 fgelu512(__m512 x) {
  const __m512 z = _mm512_mul_ps(x, _mm512_set1_ps(0.70710678118654752440f));
  const __m512 az = _mm512_abs_ps(z);
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512 t = _mm512_div_ps(one, _mm512_add_ps(one, _mm512_mul_ps(_mm512_set1_ps(0.3275911f), az)));
  __m512 r = _mm512_set1_ps(1.061405429f);
  r = _mm512_sub_ps(_mm512_mul_ps(r, t), _mm512_set1_ps(1.453152027f));
  r = _mm512_add_ps(_mm512_mul_ps(r, t), _mm512_set1_ps(1.421413741f));
  r = _mm512_sub_ps(_mm512_mul_ps(r, t), _mm512_set1_ps(0.284496736f));
  r = _mm512_add_ps(_mm512_mul_ps(r, t), _mm512_set1_ps(0.254829592f));
  const __m512 ez = fexp512(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(z, z)));
  const __m512 e = _mm512_sub_ps(one, _mm512_mul_ps(_mm512_mul_ps(r, t), ez));
  const __mmask16 neg = _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_LT_OQ);
  const __m512 se = _mm512_mask_sub_ps(e, neg, _mm512_setzero_ps(), e);
  return _mm512_mul_ps(_mm512_mul_ps(x, _mm512_set1_ps(0.5f)), _mm512_add_ps(one, se));
}

// gelu_ffn and the next linear's pack_bits in one pass: the bits of gelu(a) + shift >= 0 of
// a [n, dff] straight into xb [n][ceil(dff/64)] (a is left as it is), the elements in doubt
// (gelu_ffn's test, element for element) set from ATen's kernel as gelu_ffn sets them.
constexpr int64_t kDoubtChunks = 512;  // gelu_bits keeps per-16 doubt masks for d_ff up to 8192

BEEX_HOT void gelu_bits(const float* a, int64_t n, int64_t dff, const float* shift, u64* xb, Work& w) {
  const int64_t Wd = (dff + 63) / 64;
  int64_t* gi = grow(w.gi, n * dff);
  int64_t nd = 0;
  const __m512 tiny = _mm512_set1_ps(1e-30f), rel = _mm512_set1_ps(1e-5f), zero = _mm512_setzero_ps();
  for (int64_t r = 0; r < n; ++r) {
    const float* row = a + r * dff;
    u64* br = xb + r * Wd;
    for (int64_t t = 0; t < Wd; ++t) br[t] = 0;
    __mmask16 any = 0;
    __mmask16 dm[kDoubtChunks];  // each 16 elements' doubt mask, kept for the gather below
    const bool masks = dff <= 16 * kDoubtChunks;
    for (int64_t c0 = 0; c0 < dff; c0 += 16) {
      const __mmask16 m = tail16(dff - c0);
      const __m512 x = load16(row + c0, m);
      const __m512 g = fgelu512(x);
      const __m512 v = shift ? _mm512_add_ps(g, load16(shift + c0, m)) : g;
      const __m512 lim = _mm512_add_ps(_mm512_mul_ps(rel, _mm512_add_ps(_mm512_abs_ps(x), _mm512_abs_ps(g))), tiny);
      const __mmask16 doubt = _mm512_mask_cmp_ps_mask(m, _mm512_abs_ps(v), lim, _CMP_LE_OQ);
      any |= doubt;
      if (masks) dm[c0 >> 4] = doubt;
      br[c0 >> 6] |= static_cast<u64>(_mm512_mask_cmp_ps_mask(m, v, zero, _CMP_GE_OQ)) << (c0 & 63);
    }
    if (!any) continue;
    float* keep = grow(w.gy, n * dff);  // the inputs of the doubtful elements, in gi's order
    if (masks) {  // only the elements the vector pass found in doubt (a scalar GELU over the whole row cost
                  // a trained MiniLM block as much as the rest of it)
      for (int64_t j = 0; j < (dff + 15) / 16; ++j)
        for (unsigned bits = dm[j]; bits; bits &= bits - 1) {
          const int64_t c = j * 16 + __builtin_ctz(bits);
          keep[nd] = row[c];
          gi[nd++] = r * dff + c;
        }
      continue;
    }
    for (int64_t c = 0; c < dff; ++c) {
      const float x = row[c], g = fgelu(x), v = shift ? g + shift[c] : g;
      if (std::fabs(v) <= 1e-5f * (std::fabs(x) + std::fabs(g)) + 1e-30f) {
        keep[nd] = x;
        gi[nd++] = r * dff + c;
      }
    }
  }
  if (nd == 0) return;
  const float* yout = gelu_doubtful(nd, w);
  for (int64_t k = 0; k < nd; ++k) {
    const int64_t r = gi[k] / dff, c = gi[k] % dff;
    const float v = shift ? yout[k] + shift[c] : yout[k];
    u64& word = xb[r * Wd + (c >> 6)];
    const u64 bit = u64(1) << (c & 63);
    word = v >= 0.0f ? (word | bit) : (word & ~bit);
  }
}
#endif

// one encoder block on w.h [n, d], result back in w.h
BEEX_HOT void block(const Model& M, const Blk& B, Work& w, int64_t n) {
  const int64_t d = M.d, H = M.H, dh = M.dh, Wh = (dh + 63) / 64, dff = M.dff;
  const int64_t wmax = (std::max(d, dff) + 63) / 64;
  float* h = grow(w.h, n * d);
  float* q = grow(w.q, n * d);
  float* k = grow(w.k, n * d);
  float* v = grow(w.v, n * d);
  float* ctx = grow(w.ctx, n * d);
  float* att = grow(w.att, n * d);
  float* h1 = grow(w.h1, n * d);
  float* aq = grow(w.aq, H * n);
  float* ak = grow(w.ak, H * n);
  float* sc = grow(w.sc, n * ((n + 15) / 16 * 16));
  u64* xb = grow(w.xb, n * wmax);
  u64* qb = grow(w.qb, H * n * Wh);
  u64* kb = grow(w.kb, H * n * Wh);
  int64_t* pc = grow(w.pc, std::max(d, dff));
  plinear(h, n, B.lin[0], q, xb, pc);
  plinear(h, n, B.lin[1], k, xb, pc);
  plinear(h, n, B.lin[2], v, xb, pc);
  for (int64_t i = 0; i < n; ++i) {  // row by row: q and k read in memory order
    for (int64_t hd = 0; hd < H; ++hd) {
      absmean_bits(q + i * d + hd * dh, dh, aq + hd * n + i, qb + (hd * n + i) * Wh);
      absmean_bits(k + i * d + hd * dh, dh, ak + hd * n + i, kb + (hd * n + i) * Wh);
    }
  }
  attend(M, w, n, q, k, v, ctx, aq, ak, sc, qb, kb);
  plinear(ctx, n, B.lin[3], att, xb, pc);
  for (int64_t i = 0; i < n * d; ++i) h1[i] = h[i] + att[i];
  for (int64_t i = 0; i < n; ++i) layer_norm(h1 + i * d, d, B.ln1w, B.ln1b, h1 + i * d, M.eps);
  float* a = grow(w.a, n * dff);
  float* f1 = grow(w.f1, n * d);
  if (M.ffn == 0) {
    float* f2 = grow(w.f2, n * d);
#if BEEX_ISA == 2
    // hidden layers as bits only: sigmoid / tanh and the next shift in the epilogue
    (void)a;
    const int64_t Wd = (d + 63) / 64;
    u64* hb = grow(w.hb, n * ((dff + 63) / 64));
    for (int64_t i = 0; i < n; ++i) pack_bits(h1 + i * d, B.lin[4].shift, d, xb + i * Wd);
    plinear512<1>(xb, n, B.lin[4], nullptr, B.lin[5].shift, hb);
    plinear512<0>(hb, n, B.lin[5], f1, nullptr, nullptr);
    for (int64_t i = 0; i < n; ++i) pack_bits(h1 + i * d, B.lin[6].shift, d, xb + i * Wd);
    plinear512<2>(xb, n, B.lin[6], nullptr, B.lin[7].shift, hb);
    plinear512<0>(hb, n, B.lin[7], f2, nullptr, nullptr);
#else
    float* c = grow(w.c, n * dff);
    plinear(h1, n, B.lin[4], a, xb, pc);
    for (int64_t i = 0; i < n * dff; ++i) a[i] = fsigmoid(a[i]);
    plinear(a, n, B.lin[5], f1, xb, pc);
    plinear(h1, n, B.lin[6], c, xb, pc);
    for (int64_t i = 0; i < n * dff; ++i) c[i] = ftanh(c[i]);
    plinear(c, n, B.lin[7], f2, xb, pc);
#endif
    for (int64_t i = 0; i < n * d; ++i) h[i] = h1[i] + f1[i] * f2[i];
  } else {
    plinear(h1, n, B.lin[4], a, xb, pc);
#if BEEX_ISA == 2
    gelu_bits(a, n, dff, B.lin[5].shift, xb, w);  // GELU and the packing of its bits in one pass
    plinear512<0>(xb, n, B.lin[5], f1, nullptr, nullptr);
#else
    gelu_ffn(a, n, dff, B.lin[5].shift, w);
    plinear(a, n, B.lin[5], f1, xb, pc);
#endif
    for (int64_t i = 0; i < n * d; ++i) h[i] = h1[i] + f1[i];
  }
  for (int64_t i = 0; i < n; ++i) layer_norm(h + i * d, d, B.ln2w, B.ln2b, h + i * d, M.eps);
}

// masked mean-pool (over the n real tokens), LayerNorm, Linear -> logits [C]
BEEX_HOT void head(const Model& M, const Head& Hd, Work& w, int64_t n, float* logits) {
  const int64_t d = M.d;
  const float* h = w.h.data();
  float* pooled = grow(w.pooled, d);
  float* normed = grow(w.normed, d);
  for (int64_t c = 0; c < d; ++c) pooled[c] = 0.0f;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < d; ++c) pooled[c] += h[i * d + c];
  const float cnt = n > 0 ? static_cast<float>(n) : 1.0f;
  for (int64_t c = 0; c < d; ++c) pooled[c] = pooled[c] / cnt;
  layer_norm(pooled, d, Hd.nw, Hd.nb, normed, kHeadEps);
  for (int64_t c = 0; c < M.C; ++c) logits[c] = dot16(normed, Hd.ow + c * d, d) + Hd.ob[c];
}

// Shannon entropy of softmax(logits), as models.exits.entropy (log_softmax, then -sum p log p)
BEEX_INLINE float entropy(const float* l, int64_t C) {
  float mx = l[0];
  for (int64_t c = 1; c < C; ++c) mx = l[c] > mx ? l[c] : mx;
  float s = 0.0f;
  for (int64_t c = 0; c < C; ++c) s += std::exp(l[c] - mx);
  const float lse = std::log(s);
  float hsum = 0.0f;
  for (int64_t c = 0; c < C; ++c) {
    const float lp = (l[c] - mx) - lse;
    hsum += std::exp(lp) * lp;
  }
  return -hsum;
}

// the whole early-exit inference of one row
void run_row(const Model& M, const Rule& R, const int64_t* ids, const bool* mask, int64_t L, float* out,
             int64_t* out_block, Work& w) {
  const int64_t d = M.d, C = M.C;
  int64_t* tok = grow(w.tok, L);
  int64_t* pos = grow(w.pos, L);
  int64_t n = 0;
  for (int64_t j = 0; j < L; ++j)
    if (mask[j]) {
      tok[n] = ids[j];
      pos[n] = j;
      ++n;
    }
  float* h = grow(w.h, std::max<int64_t>(n, 1) * d);
  for (int64_t t = 0; t < n; ++t) {
    float* row = h + t * d;
    const int64_t r = tok[t];
    const float* pr = M.pos + pos[t] * d;
#if BEEX_ISA == 3
    beex_bits::neon::token_row(M.tok_bits, M.tok_codes, M.tok_scale, r, d, pr, row);
#else
    if (M.tok_bits == 32) {
      const float* e = static_cast<const float*>(M.tok_codes) + r * d;
      for (int64_t c = 0; c < d; ++c) row[c] = e[c] + pr[c];
    } else if (M.tok_bits == 8) {
      const int8_t* e = static_cast<const int8_t*>(M.tok_codes) + r * d;
      const float s = M.tok_scale[r];
      for (int64_t c = 0; c < d; ++c) row[c] = static_cast<float>(e[c]) * s + pr[c];
    } else if (M.tok_bits == 4) {
      const uint8_t* e = static_cast<const uint8_t*>(M.tok_codes) + r * ((d + 1) / 2);
      const float s = M.tok_scale[r];
      for (int64_t c = 0; c < d; ++c) {
        const int nib = (e[c >> 1] >> ((c & 1) * 4)) & 0xF;
        row[c] = static_cast<float>(nib - 8) * s + pr[c];
      }
    } else {
      const u64* e = static_cast<const u64*>(M.tok_codes) + r * ((d + 63) / 64);
      const float s = M.tok_scale[r];
      for (int64_t c = 0; c < d; ++c) {
        const float sign = ((e[c >> 6] >> (c & 63)) & 1) ? 1.0f : -1.0f;
        row[c] = sign * s + pr[c];
      }
    }
#endif
    layer_norm(row, d, M.enw, M.enb, row, M.eps);
  }
  float* logits = grow(w.logits, C);
  float* prev = grow(w.prev, C);
  bool has_prev = false;
  float prev_h = 0.0f;
  for (int64_t b = 0; b < M.nblocks; ++b) {
    block(M, M.blocks[b], w, n);
    const Head& Hd = M.heads[b];
    if (!Hd.has) continue;
    head(M, Hd, w, n, logits);
    const int64_t blk = b + 1;
    const bool last = blk == M.nblocks;
    bool done = last;
    const float* answer = logits;
    if (R.kind == 1) {
      const float ent = entropy(logits, C);
      if (has_prev && blk >= R.min_exit) {
        const float den = prev_h > R.eps ? prev_h : R.eps;
        const float r = (prev_h - ent) / den;
        done = done || r < R.a;
        if (R.lower && r < 0.0f) answer = prev;
      }
      if (!done) {
        std::memcpy(prev, logits, sizeof(float) * C);
        prev_h = ent;
        has_prev = true;
      }
    } else if (R.kind == 2) {
      if (blk >= R.min_exit) done = done || entropy(logits, C) < R.a;
    }
    if (done) {
      std::memcpy(out, answer, sizeof(float) * C);
      *out_block = blk;
      return;
    }
  }
}
// the per-block path: block b (and its exit head) for one row, over its real tokens (mask) of
// h_in [L, d], back into h_out [L, d] at their positions (zeros at padding)
void step_row(const Model& M, int64_t b, const float* h_in, const bool* mask, int64_t L, float* h_out,
              float* logits, Work& w) {
  const int64_t d = M.d;
  int64_t* pos = grow(w.pos, L);
  int64_t n = 0;
  for (int64_t j = 0; j < L; ++j)
    if (mask[j]) pos[n++] = j;
  float* h = grow(w.h, std::max<int64_t>(n, 1) * d);
  for (int64_t t = 0; t < n; ++t) std::memcpy(h + t * d, h_in + pos[t] * d, sizeof(float) * d);
  block(M, M.blocks[b], w, n);
  const float* out = w.h.data();
  std::memset(h_out, 0, sizeof(float) * L * d);
  for (int64_t t = 0; t < n; ++t) std::memcpy(h_out + pos[t] * d, out + t * d, sizeof(float) * d);
  if (M.heads[b].has) head(M, M.heads[b], w, n, logits);
}
#endif
