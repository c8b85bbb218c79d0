// Fused inference steps of the packed BEExformer engine (beexbench.engine.packed).
//
// One call runs a whole encoder block and its exit head (and optionally the
// fractional-entropy exit rule) from C++, so batch-1 inference is not dominated by
// Python's per-op overhead.  Every step is the same ATen op, on the same layout, as
// the float model (beexbench.models.*) and the Python engine, so results are
// identical; the binary products call the packed-bit kernels of beexbench.kernels
// through the dispatcher (beexbench_kernels::binary_linear / binary_qk_batched),
// which must be loaded first.
//
// Ops (namespace beexbench_engine_native):
//   step(h[B,L,d], neg_mask[B,1,1,L] bool, m[B,L,1] f32, msum[B,1] f32, Tensor[] block,
//        Tensor[] head, int n_heads, int ffn) -> (h', logits[B,C])
//   block tensors: q,k,v,o then the FFN linears, each (w_packed, alpha, bias, shift),
//                  ln1 (w, b) after the attention linears, ln2 (w, b) last:
//                  [q4 k4 v4 o4 ln1w ln1b ffn4... ln2w ln2b]; ffn 0 = SLFN, 1 = GELU FFN
//   head tensors:  norm w, norm b, out w, out b (empty list: no head after this block)
//   frac_entropy(logits, prev_logits, prev_entropy, has_prev, float delta, float eps,
//                bool check, bool lower, bool last) -> (done, answer, entropy)

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <cmath>
#include <tuple>
#include <vector>

namespace {

using at::Tensor;

const c10::TypedOperatorHandle<Tensor(const Tensor&, const Tensor&, const Tensor&,
                                      const c10::optional<Tensor>&, int64_t)>&
linear_op() {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("beexbench_kernels::binary_linear", "")
                       .typed<Tensor(const Tensor&, const Tensor&, const Tensor&,
                                     const c10::optional<Tensor>&, int64_t)>();
  return op;
}

const c10::TypedOperatorHandle<Tensor(const Tensor&, const Tensor&)>& qk_op() {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("beexbench_kernels::binary_qk_batched", "")
                       .typed<Tensor(const Tensor&, const Tensor&)>();
  return op;
}

// x2 [M, K]; t[i..i+3] = w_packed, alpha, bias, shift (shift may be undefined)
Tensor packed_linear(const Tensor& x2, const std::vector<Tensor>& t, size_t i) {
  const Tensor& shift = t[i + 3];
  Tensor xs = shift.defined() && shift.numel() ? x2.add(shift) : x2;
  c10::optional<Tensor> bias;
  if (t[i + 2].defined() && t[i + 2].numel()) bias = t[i + 2];
  return linear_op().call(xs, t[i], t[i + 1], bias, x2.size(1));
}

Tensor block(const Tensor& h, const Tensor& neg_mask, const std::vector<Tensor>& t, int64_t H,
             int64_t ffn) {
  const int64_t B = h.size(0), L = h.size(1), d = h.size(2), dh = d / H;
  const Tensor x2 = h.reshape({B * L, d});
  Tensor q = packed_linear(x2, t, 0).view({B, L, H, dh}).transpose(1, 2);
  Tensor k = packed_linear(x2, t, 4).view({B, L, H, dh}).transpose(1, 2);
  Tensor v = packed_linear(x2, t, 8).view({B, L, H, dh}).transpose(1, 2);
  Tensor aq = q.abs().mean(-1, true);
  Tensor ak = k.abs().mean(-1, true);
  Tensor s = qk_op().call(q.reshape({B * H, L, dh}), k.reshape({B * H, L, dh})).view({B, H, L, L});
  Tensor scores = s.mul(aq.mul(ak.transpose(-1, -2)));
  scores = scores.div(std::sqrt(static_cast<double>(dh)));
  Tensor p = at::softmax(scores.masked_fill(neg_mask, -std::numeric_limits<double>::infinity()), -1);
  Tensor ctx = at::matmul(p, v);
  Tensor attn = packed_linear(ctx.transpose(1, 2).reshape({B * L, d}), t, 12).view({B, L, d});
  Tensor h1 = at::layer_norm(h.add(attn), {d}, t[16], t[17], 1e-5, false);
  const Tensor y2 = h1.reshape({B * L, d});
  Tensor f;
  if (ffn == 0) {
    Tensor select = packed_linear(at::sigmoid(packed_linear(y2, t, 18)), t, 22);
    Tensor learn = packed_linear(at::tanh(packed_linear(y2, t, 26)), t, 30);
    f = select.mul(learn);
  } else {
    f = packed_linear(at::gelu(packed_linear(y2, t, 18)), t, 22);
  }
  const size_t ln2 = ffn == 0 ? 34 : 26;
  return at::layer_norm(h1.add(f.view({B, L, d})), {d}, t[ln2], t[ln2 + 1], 1e-5, false);
}

std::tuple<Tensor, Tensor> step(const Tensor& h, const Tensor& neg_mask, const Tensor& m,
                                const Tensor& msum, std::vector<Tensor> t, std::vector<Tensor> head,
                                int64_t n_heads, int64_t ffn) {
  TORCH_CHECK(h.dim() == 3 && h.scalar_type() == at::kFloat, "step: h must be float32 [B, L, d]");
  TORCH_CHECK(t.size() == (ffn == 0 ? 36u : 28u), "step: wrong number of block tensors");
  Tensor out = block(h, neg_mask, t, n_heads, ffn);
  Tensor logits;
  if (!head.empty()) {
    TORCH_CHECK(head.size() == 4, "step: head needs (norm w, norm b, out w, out b)");
    Tensor pooled = out.mul(m).sum(1).div(msum);
    Tensor normed = at::layer_norm(pooled, {out.size(2)}, head[0], head[1], 1e-5, false);
    logits = at::linear(normed, head[2], head[3]);
  } else {
    logits = at::empty({0}, h.options());
  }
  return {out, logits};
}

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

TORCH_LIBRARY(beexbench_engine_native, m) {
  m.def("step(Tensor h, Tensor neg_mask, Tensor m, Tensor msum, Tensor[] block, Tensor[] head, int n_heads, "
        "int ffn) -> (Tensor, Tensor)",
        &step);
  m.def("frac_entropy(Tensor logits, Tensor prev_logits, Tensor prev_entropy, bool has_prev, float delta, "
        "float eps, bool check, bool lower, bool last) -> (Tensor, Tensor, Tensor)",
        &frac_entropy);
}
