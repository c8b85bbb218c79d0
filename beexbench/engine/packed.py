"""The packed-bit BEExformer inference engine and its deployable format.

A small inference-only module tree, with the same module names as the trained
:class:`~beexbench.models.encoder.EarlyExitEncoder` (so counters and reports line up):

* ``tok`` / ``pos`` / ``emb_norm``: fp32 embeddings and LayerNorm;
* ``blocks.i.attn.{q,k,v,o}``, ``blocks.i.ffn.w*``: :class:`PackedLinear` - the signs of
  the weight, 64 to a word, a per-row fp32 ``alpha``, the fp32 bias, and the learnable
  input shift folded into the packing threshold: bit = (x + shift >= 0), the add computed
  exactly as the float model does it, so the bits are the float model's signs;
* ``blocks.i.attn.qk``: :class:`PackedQK` - sign(q) . sign(k)^T for every head of every
  sample in one packed-bit kernel call; the per-token scales mean|q|, mean|k| and the
  1/sqrt(d_head), softmax and A.V stay fp32 (``blocks.i.attn.av``);
* ``heads.i``: fp32 exit heads (masked mean pool, LayerNorm, Linear); the exit rule is the
  trained model's (:mod:`beexbench.models.exits`).

Nothing here imports the training code (no autograd Functions, no QuantLinear): a packed
model is built from a trained network's ``state_dict`` (:func:`pack_encoder`) or read from
its files (:func:`read_packed`).  Every op mirrors the float model op for op, so in eval
mode the engine returns the float model's logits (the +-1 products are exact integers in
both) and therefore its predictions and exit blocks.

Files (a checkpoint folder, see :func:`write_packed`)::

    packed.safetensors   per binarized layer: weight_packed (int64 view of uint64 words,
                         [out, ceil(in/64)]), alpha [out], bias [out], shift [in]
    weights.safetensors  the fp32 rest: embeddings, LayerNorms, exit heads
    checkpoint.json      the header: beexbench checkpoint envelope (adapter, version,
                         sha256 of weights.safetensors) + "packed": format, version, bit
                         layout, sha256 of packed.safetensors, every layer's shape, the
                         architecture and the exit rule
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .. import kernels
from ..errors import BeexError
from ..models.exits import ExitDecision, ExitRule, FractionalEntropy
from ..models.encoder import ExitHead, all_exits, early_exit_infer  # the fp32 head is shared as is

PACKED_FORMAT = "beexbench-packed"
PACKED_VERSION = 1
PACKED_FILE = "packed.safetensors"
BIT_LAYOUT = ("element k of a row is bit k % 64 of word k // 64 (LSB first); bit = 1 where "
              "x + shift >= 0 (sign(0) = +1); padding bits 0; words are uint64 stored as int64 views")
FFN_LAYERS = {"slfn": ("w1", "w2", "w3", "w4"), "gelu": ("w1", "w2")}
# the encoder options the engine implements (BEExformer's W1A1 configuration)
REQUIRED = {"weight_bits": 1, "act_bits": 1, "binary_qk": True, "attention_probs": "softmax",
            "binary_embedding": False, "learnable_act_scale": False}


# -- traceable ops (for the operation counter) -------------------------------------------
# The counter traces the model with torch.jit.trace; a kernel called through these
# dispatcher ops is one node whatever backend runs (native or the PyTorch fallback), and
# the handles registered below count it like the float model's sign + matmul.
_LIB = torch.library.Library("beexbench_engine", "DEF")
_LIB.define("binary_linear(Tensor x, Tensor w, Tensor alpha, Tensor? bias, int K) -> Tensor")
_LIB.define("binary_qk(Tensor q, Tensor k) -> Tensor")
_LIB.impl("binary_linear", lambda x, w, alpha, bias, K: kernels.binary_linear(x, w, alpha, bias, K), "CPU")
_LIB.impl("binary_qk", lambda q, k: kernels.binary_qk_batched(q, k), "CPU")


def _register_op_handles() -> None:
    from ..profilers._op_handles import numel, register_op_handle, shape

    def linear(inputs, outputs):
        # the float model: sign(x + s) (1 FLOP per input element: the comparison),
        # sign(x) @ sign(W)^T (MACs at the declared (1, 1) precision), * alpha, + bias
        k = shape(inputs[0])[-1]
        out = numel(outputs[0])
        has_bias = inputs[3].type().kind() != "NoneType"
        return {"mac": out * k, "flop": numel(inputs[0]) + out * (2 if has_bias else 1)}

    def qk(inputs, outputs):
        # sign(q), sign(k) (1 FLOP per element each) and the +-1 product
        return {"mac": numel(outputs[0]) * shape(inputs[0])[-1], "flop": numel(inputs[0]) + numel(inputs[1])}

    register_op_handle("beexbench_engine::binary_linear", linear)
    register_op_handle("beexbench_engine::binary_qk", qk)


_register_op_handles()


def _register_flop_formulas() -> None:
    """torch.utils.flop_counter formulas (2 per MAC, as it counts mm) for the packed
    products, so torch's own counter sees them too."""
    try:
        from torch.utils.flop_counter import register_flop_formula
    except ImportError:  # pragma: no cover - older torch
        return

    def linear_flops(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
        m = 1
        for v in x_shape[:-1]:
            m *= v
        return 2 * m * w_shape[0] * x_shape[-1]

    def qk_flops(q_shape, k_shape, *args, out_shape=None, **kwargs) -> int:
        g, m, k = q_shape
        return 2 * g * m * k_shape[1] * k

    # (the native kernels are registered catch-all, which dispatch modes do not see: the
    # counter sees the module path only through these ops, i.e. while tracing)
    targets = [(torch.ops.beexbench_engine.binary_linear, linear_flops), (torch.ops.beexbench_engine.binary_qk, qk_flops)]
    for op, fn in targets:
        try:
            register_flop_formula(op)(fn)
        except Exception:  # noqa: BLE001 - counting aid only; never break inference
            pass


_register_flop_formulas()


def _plain(x: torch.Tensor) -> torch.Tensor:
    # the kernels are inference-only: the packed products are constants for autograd
    return x.detach() if x.requires_grad else x


# -- modules ---------------------------------------------------------------------------
class PackedLinear(nn.Module):
    """y = (bits(x + shift) . bits(W)) * alpha + bias on packed words.

    Buffers ``weight_packed`` (int64 view of uint64 [out, ceil(in/64)]), ``bias`` [out],
    ``shift`` [in]; ``alpha`` [out] is a plain tensor attribute (the size profiler counts
    it as the 1-bit weight's scale, not as an extra buffer)."""

    weight_bits = 1  # declared like QuantLinear: a 1-bit weight (logical [out, in]) ...
    act_bits = 1  # ... times a 1-bit activation

    def __init__(self, in_features: int, out_features: int, bias: bool = True, shift: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.register_buffer("weight_packed", torch.zeros(out_features, kernels.words_for(in_features), dtype=torch.int64))
        self.alpha = torch.ones(out_features)
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        self.register_buffer("shift", torch.zeros(in_features) if shift else None)

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        self.alpha = fn(self.alpha)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _plain(x)
        if self.shift is not None:
            x = x + self.shift  # the float model's ActivationBinarizer add, then bit = (x >= 0)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        if torch.jit.is_tracing():
            y = torch.ops.beexbench_engine.binary_linear(x2, self.weight_packed, self.alpha, self.bias, self.in_features)
        else:
            y = kernels.binary_linear(x2, self.weight_packed, self.alpha, self.bias, self.in_features)
        return y.view(*lead, self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, shift={self.shift is not None}, packed W1A1")


class PackedQK(nn.Module):
    """sign(q) . sign(k)^T for [B, H, L, d] queries and keys: one kernel call for all
    B x H heads (float32 of exact integers, as the float model's +-1 matmul)."""

    bits = 1

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        b, h, lq, lk = q.shape[0], q.shape[1], q.shape[2], k.shape[2]
        # flatten, not reshape(b * h, ...): a traced size product would count as a FLOP
        q3, k3 = _plain(q).flatten(0, 1), _plain(k).flatten(0, 1)
        if torch.jit.is_tracing():
            s = torch.ops.beexbench_engine.binary_qk(q3, k3)
        else:
            s = kernels.binary_qk_batched(q3, k3)
        return s.view(b, h, lq, lk)


class FloatMatMul(nn.Module):
    """``a @ b`` in fp32 (A.V), a module so counters attribute it."""

    bits = 32

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, b)


class PackedAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, shift: bool) -> None:
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.q, self.k, self.v, self.o = (PackedLinear(d_model, d_model, True, shift) for _ in range(4))
        self.qk = PackedQK()
        self.av = FloatMatMul()

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, l, _ = h.shape
        H, dh = self.n_heads, self.d_head
        q = self.q(h).view(b, l, H, dh).transpose(1, 2)
        k = self.k(h).view(b, l, H, dh).transpose(1, 2)
        v = self.v(h).view(b, l, H, dh).transpose(1, 2)
        aq, ak = q.abs().mean(-1, keepdim=True), k.abs().mean(-1, keepdim=True)
        scores = self.qk(q, k) * (aq * ak.transpose(-1, -2))
        scores = scores / math.sqrt(dh)
        p = torch.softmax(scores.masked_fill(~mask[:, None, None, :], float("-inf")), dim=-1)
        ctx = self.av(p, v)
        return self.o(ctx.transpose(1, 2).reshape(b, l, -1))


class PackedSLFN(nn.Module):
    """(sigmoid(h W1) W2) * (tanh(h W3) W4), every W packed."""

    def __init__(self, d_model: int, d_ff: int, shift: bool) -> None:
        super().__init__()
        self.w1 = PackedLinear(d_model, d_ff, True, shift)
        self.w2 = PackedLinear(d_ff, d_model, True, shift)
        self.w3 = PackedLinear(d_model, d_ff, True, shift)
        self.w4 = PackedLinear(d_ff, d_model, True, shift)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.w2(torch.sigmoid(self.w1(h))) * self.w4(torch.tanh(self.w3(h)))


class PackedGeluFFN(nn.Module):
    def __init__(self, d_model: int, d_ff: int, shift: bool) -> None:
        super().__init__()
        self.w1 = PackedLinear(d_model, d_ff, True, shift)
        self.w2 = PackedLinear(d_ff, d_model, True, shift)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.w2(nn.functional.gelu(self.w1(h)))


class PackedBlock(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_ff: int, ffn: str, shift: bool) -> None:
        super().__init__()
        self.attn = PackedAttention(d_model, n_heads, shift)
        self.ln1 = nn.LayerNorm(d_model)
        self.ffn = PackedSLFN(d_model, d_ff, shift) if ffn == "slfn" else PackedGeluFFN(d_model, d_ff, shift)
        self.ln2 = nn.LayerNorm(d_model)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.ln1(h + self.attn(h, mask))
        return self.ln2(h + self.ffn(h))


def check_config(enc: dict[str, Any]) -> None:
    bad = {k: enc.get(k) for k, v in REQUIRED.items() if enc.get(k) != v}
    if enc.get("ffn") not in FFN_LAYERS:
        bad["ffn"] = enc.get("ffn")
    if bad:
        raise BeexError(
            f"the packed engine runs BEExformer's W1A1 configuration ({REQUIRED}, ffn in {sorted(FFN_LAYERS)}); "
            f"this model has {bad}: measure it with its own adapter")


class PackedEncoder(nn.Module):
    """Packed-bit BEExformer: ``forward`` gives every exit's logits, ``infer`` early-exits."""

    def __init__(self, enc: dict[str, Any], *, vocab_size: int, max_len: int, num_labels: int) -> None:
        super().__init__()
        check_config(enc)
        self.enc = dict(enc)
        d, shift = int(enc["d_model"]), bool(enc["learnable_shift"])
        if d % int(enc["n_heads"]):
            raise BeexError(f"d_model={d} must be divisible by n_heads={enc['n_heads']}")
        self.max_len, self.num_labels, self.n_blocks = int(max_len), int(num_labels), int(enc["n_blocks"])
        self.tok = nn.Embedding(vocab_size, d, padding_idx=0)
        self.pos = nn.Embedding(max_len, d)
        self.emb_norm = nn.LayerNorm(d)
        self.blocks = nn.ModuleList(
            PackedBlock(d, int(enc["n_heads"]), int(enc["d_ff"]), enc["ffn"], shift) for _ in range(self.n_blocks))
        n_heads = self.n_blocks if enc["exit_heads"] else 1
        self.heads = nn.ModuleList(ExitHead(d, num_labels) for _ in range(n_heads))
        self._fast = None  # compiled inference path (see _fastpath), built on first use

    # -- layout (same as EarlyExitEncoder: the counters group by blocks / head_for) ---
    @property
    def n_exits(self) -> int:
        return len(self.heads)

    @property
    def exit_blocks(self) -> list[int]:
        return list(range(1, self.n_blocks + 1)) if self.enc["exit_heads"] else [self.n_blocks]

    def head_for(self, block: int) -> nn.Module | None:
        if self.enc["exit_heads"]:
            return self.heads[block - 1]
        return self.heads[0] if block == self.n_blocks else None

    def packed_linears(self) -> dict[str, PackedLinear]:
        return {n: m for n, m in self.named_modules() if isinstance(m, PackedLinear)}

    # -- inference ---------------------------------------------------------------------
    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.shape[1] > self.max_len:
            raise ValueError(f"sequence length {ids.shape[1]} exceeds the model's max_len {self.max_len}")
        pos = torch.arange(ids.shape[1], device=ids.device)
        return self.emb_norm(self.tok(ids) + self.pos(pos))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        """Logits of every exit, [n_exits] x [B, C] (all blocks run)."""
        return all_exits(self, ids, mask)

    def infer(self, ids: torch.Tensor, mask: torch.Tensor, rule: ExitRule) -> ExitDecision:
        """Early-exit inference; rows that exit leave the batch (as EarlyExitEncoder.infer).

        Runs the fused C++ steps (one call per block and its head, the fractional-entropy
        rule too) while the native kernels are active, else the module path; both compute
        the float model's values op for op."""
        from . import _native

        ops = _native.ops() if ids.device.type == "cpu" else None
        if ops is None:
            return self.infer_modules(ids, mask, rule)
        with torch.no_grad():
            return self._infer_fused(ops, ids, mask, rule)

    def _flat(self) -> tuple[list[list[torch.Tensor]], list[list[torch.Tensor]], int]:
        """Per block: its tensors in the fused step's order, and its head's (or [])."""
        if self._fast is None:
            none = torch.empty(0)

            def lin(m: PackedLinear) -> list[torch.Tensor]:
                return [m.weight_packed, m.alpha, none if m.bias is None else m.bias,
                        none if m.shift is None else m.shift]

            blocks, heads = [], []
            for i, blk in enumerate(self.blocks, start=1):
                t = []
                for m in (blk.attn.q, blk.attn.k, blk.attn.v, blk.attn.o):
                    t += lin(m)
                t += [blk.ln1.weight.detach(), blk.ln1.bias.detach()]
                for name in FFN_LAYERS[self.enc["ffn"]]:
                    t += lin(getattr(blk.ffn, name))
                t += [blk.ln2.weight.detach(), blk.ln2.bias.detach()]
                blocks.append(t)
                head = self.head_for(i)
                heads.append([] if head is None else [head.norm.weight.detach(), head.norm.bias.detach(),
                                                      head.out.weight.detach(), head.out.bias.detach()])
            self._fast = (blocks, heads, 0 if self.enc["ffn"] == "slfn" else 1)
        return self._fast

    def _infer_fused(self, ops, ids: torch.Tensor, mask: torch.Tensor, rule: ExitRule) -> ExitDecision:
        blocks_t, heads_t, ffn = self._flat()
        n = ids.shape[0]
        if n == 0:
            raise ValueError("empty batch")
        h = self.embed(ids)
        neg = ~mask[:, None, None, :]
        m = mask.unsqueeze(-1).to(h.dtype)
        msum = m.sum(1).clamp_min(1.0)
        rows = torch.arange(n)
        logits_out = torch.empty(n, self.num_labels)
        blocks_out = torch.empty(n, dtype=torch.long)
        frac = type(rule) is FractionalEntropy
        state = None if frac else rule.start(n)
        prev_l = prev_h = None
        last_block = len(self.blocks)
        n_heads = self.blocks[0].attn.n_heads
        for i in range(1, last_block + 1):
            h, logits = ops.step(h, neg, m, msum, blocks_t[i - 1], heads_t[i - 1], n_heads, ffn)
            if not heads_t[i - 1]:
                continue
            last = i == last_block
            if frac:
                has = prev_h is not None
                done, answer, ent = ops.frac_entropy(
                    logits, prev_l if has else logits, prev_h if has else logits, has, rule.delta, rule.eps,
                    i >= rule.min_exit, rule.answer == "lower_entropy", last)
                prev_l, prev_h = logits, ent
            else:
                done, answer, state = rule.step(i, logits, state, last=last)
            if n == 1:  # batch 1: no row bookkeeping
                if bool(done):
                    return ExitDecision(answer, torch.full((1,), i, dtype=torch.long))
                continue
            if done.any():
                logits_out[rows[done]] = answer[done]
                blocks_out[rows[done]] = i
                keep = ~done
                if not keep.any():
                    break
                h, neg, m, msum, rows = h[keep], neg[keep], m[keep], msum[keep], rows[keep]
                if frac:
                    prev_l, prev_h = prev_l[keep], prev_h[keep]
                else:
                    state = state.select(keep)
        return ExitDecision(logits_out, blocks_out)

    def infer_modules(self, ids: torch.Tensor, mask: torch.Tensor, rule: ExitRule) -> ExitDecision:
        """Early exit through the module tree (any kernel backend)."""
        return early_exit_infer(self, ids, mask, rule)

    # -- tensors -------------------------------------------------------------------------
    def packed_tensors(self) -> dict[str, torch.Tensor]:
        out = {}
        for name, lin in self.packed_linears().items():
            out[f"{name}.weight_packed"] = lin.weight_packed
            out[f"{name}.alpha"] = lin.alpha
            if lin.bias is not None:
                out[f"{name}.bias"] = lin.bias
            if lin.shift is not None:
                out[f"{name}.shift"] = lin.shift
        return out

    def fp32_tensors(self) -> dict[str, torch.Tensor]:
        packed = set(self.packed_linears())
        return {k: v for k, v in self.state_dict().items() if k.rpartition(".")[0] not in packed}

    def load_tensors(self, packed: dict[str, torch.Tensor], fp32: dict[str, torch.Tensor]) -> None:
        """Load exactly (strict: every tensor present, right dtype and shape)."""
        want = self.packed_tensors()
        missing = sorted(set(want) - set(packed))
        extra = sorted(set(packed) - set(want))
        if missing or extra:
            raise BeexError(f"packed tensors do not match the architecture (missing {missing[:3]}, unexpected {extra[:3]})")
        for key, t in want.items():
            src = packed[key]
            if src.dtype != t.dtype or src.shape != t.shape:
                raise BeexError(f"packed tensor {key}: {src.dtype} {tuple(src.shape)}, expected {t.dtype} {tuple(t.shape)}")
        try:
            self.load_state_dict({**fp32, **{k: v for k, v in packed.items() if not k.endswith(".alpha")}}, strict=True)
        except RuntimeError as exc:
            raise BeexError(f"fp32 tensors do not match the architecture ({str(exc).splitlines()[0]})") from None
        for name, lin in self.packed_linears().items():
            lin.alpha = packed[f"{name}.alpha"].clone()
        self._fast = None


# -- packing ----------------------------------------------------------------------------
def _linear_names(enc: dict[str, Any]) -> list[str]:
    names = []
    for i in range(int(enc["n_blocks"])):
        names += [f"blocks.{i}.attn.{p}" for p in "qkvo"]
        names += [f"blocks.{i}.ffn.{w}" for w in FFN_LAYERS[enc["ffn"]]]
    return names


@torch.no_grad()
def pack_encoder(state: dict[str, torch.Tensor], enc: dict[str, Any], *, vocab_size: int, max_len: int,
                 num_labels: int) -> PackedEncoder:
    """Pack a trained BEExformer network from its ``state_dict`` (EarlyExitEncoder names):
    bits = sign(W) (W >= 0), alpha = mean|W| per row computed as the float model does,
    the bias and the input shift copied; the rest copied as fp32."""
    check_config(enc)
    model = PackedEncoder(enc, vocab_size=vocab_size, max_len=max_len, num_labels=num_labels)
    names = set(_linear_names(enc))
    packed: dict[str, torch.Tensor] = {}
    fp32: dict[str, torch.Tensor] = {}
    used = set()
    for name in names:
        w = state[f"{name}.weight"].detach().float().contiguous()
        used.add(f"{name}.weight")
        packed[f"{name}.weight_packed"] = kernels.pack_rows(w).view(torch.int64).clone()
        packed[f"{name}.alpha"] = w.abs().mean(dim=-1)  # row_scale, the same op as the float model
        if f"{name}.bias" in state:
            packed[f"{name}.bias"] = state[f"{name}.bias"].detach().float().clone()
            used.add(f"{name}.bias")
        key = f"{name}.input_quantizer.shift"
        if key in state:
            packed[f"{name}.shift"] = state[key].detach().float().clone()
            used.add(key)
    for key, t in state.items():
        if key not in used:
            fp32[key] = t.detach().float().clone()
    model.load_tensors(packed, fp32)
    return model.eval()


# -- files --------------------------------------------------------------------------------
def write_packed(directory: Path, adapter: str, model: PackedEncoder, meta: dict[str, Any]) -> Path:
    """Write ``packed.safetensors`` + ``weights.safetensors`` + ``checkpoint.json`` (last)."""
    from .._io import sha256_file
    from ..adapters.checkpoint import META, write_checkpoint

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / META).unlink(missing_ok=True)
    tmp = directory / f".{PACKED_FILE}.tmp"
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.packed_tensors().items()}
    save_file(tensors, str(tmp), metadata={"format": PACKED_FORMAT, "version": str(PACKED_VERSION)})
    os.replace(tmp, directory / PACKED_FILE)
    header = {
        "format": PACKED_FORMAT,
        "version": PACKED_VERSION,
        "file": PACKED_FILE,
        "sha256": sha256_file(directory / PACKED_FILE),
        "bit_layout": BIT_LAYOUT,
        "architecture": {"encoder": model.enc, "vocab_size": model.tok.num_embeddings, "max_len": model.max_len,
                         "num_labels": model.num_labels},
        "layers": {n: {"in": m.in_features, "out": m.out_features, "words": m.weight_packed.shape[1],
                       "bias": m.bias is not None, "shift": m.shift is not None}
                   for n, m in model.packed_linears().items()},
    }
    return write_checkpoint(directory, adapter, model.fp32_tensors(), {**json.loads(json.dumps(meta)), "packed": header})


def read_packed(directory: Path, adapter: str) -> tuple[PackedEncoder, dict[str, Any]]:
    """Read and verify a packed checkpoint: adapter name, both checksums, the format
    header and every tensor's shape; refuse anything else with a BeexError."""
    from .._io import sha256_file
    from ..adapters.checkpoint import read_checkpoint

    directory = Path(directory)
    fp32, doc = read_checkpoint(directory, adapter)
    header = doc.get("packed")
    if not isinstance(header, dict) or header.get("format") != PACKED_FORMAT:
        raise BeexError(f"checkpoint {directory} has no packed-format header: it is not a {adapter} checkpoint; re-derive it")
    if header.get("version") != PACKED_VERSION:
        raise BeexError(f"packed checkpoint {directory} has format version {header.get('version')}, this beexbench "
                        f"reads {PACKED_VERSION}: re-derive it from the trained beexformer")
    path = directory / PACKED_FILE
    if not path.is_file() or sha256_file(path) != header.get("sha256"):
        raise BeexError(f"packed checkpoint {directory} is tampered or incomplete ({PACKED_FILE} checksum mismatch): delete it and re-derive")
    try:
        packed = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise BeexError(f"cannot read {path} ({exc}): delete it and re-derive") from None
    arch = header.get("architecture") or {}
    try:
        model = PackedEncoder(arch["encoder"], vocab_size=int(arch["vocab_size"]), max_len=int(arch["max_len"]),
                              num_labels=int(arch["num_labels"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise BeexError(f"packed checkpoint {directory} has a bad architecture header ({exc}): re-derive it") from None
    layers = header.get("layers") or {}
    for name, lin in model.packed_linears().items():
        info = layers.get(name)
        if not info or info.get("in") != lin.in_features or info.get("out") != lin.out_features:
            raise BeexError(f"packed checkpoint {directory}: layer {name} is missing or has another shape in the header")
    model.load_tensors(packed, fp32)
    return model.eval(), doc
