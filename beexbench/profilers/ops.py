"""Operation counts per sample: MACs split by precision, FLOPs, BOPs, OPs (SPEC section 4).

The counter is fvcore's jit-trace analysis run with beexbench's own table of op handles
(:mod:`beexbench.profilers._op_handles`, extensible with :func:`register_op_handle`).
Every MAC is attributed to the module that ran it and put into a precision bucket read
from ``adapter.precision().products``:

* ``fp32``   32-bit x 32-bit products;
* ``w1a32``  1-bit weights x fp32 activations (FLOPs, but reported apart);
* ``binary`` 1-bit x 1-bit products: BOPs (XNOR-popcount), not FLOPs;
* ``int8``   8-bit x 8-bit products (FLOPs, reported apart).

Ops the handles do not know, nodes they cannot count and modules the trace never
reached are stored in ``OpsRecord.uncounted`` (the tests require it to be empty for every
built-in model). :data:`CONVENTION` states the cost per op and is copied into every record.

    rec = count_ops(adapter, seq_len=32)          # one sample, every block and head
    cost = DepthCost.measure(adapter)             # exact polynomial cost per exit block
    cost.macs(exit_block, lengths)                # per-sample MACs (the delta sweep's cost_fn)
"""
from __future__ import annotations

import warnings
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from fvcore.nn.jit_analysis import JitModelAnalysis
from torch import nn

from beexbench.errors import BeexError
from beexbench.profilers._op_handles import (
    CONVENTION,
    SHAPE_OPS,
    Uncountable,
    check_cost,
    op_handles,
    register_op_handle,
)

__all__ = ["BUCKETS", "CONVENTION", "COUNTER", "DepthCost", "OpsRecord", "bucket_of", "count_ops", "register_op_handle"]

BUCKETS = ("fp32", "w1a32", "binary", "int8")
COUNTER = "fvcore+beexbench-handles"
BOPS_PER_OP = 64  # OPs = FLOPs + BOPs / 64 (literature convention)


def bucket_of(bits: tuple[int, int]) -> str:
    """Precision bucket of a product from its (input bits, weight bits)."""
    a, w = int(bits[0]), int(bits[1])
    if a == 1 and w == 1:
        return "binary"
    if a == 32 and w == 32:
        return "fp32"
    if a == 32 and w == 1:
        return "w1a32"
    if a == 8 and w == 8:
        return "int8"
    return f"w{w}a{a}"


@dataclass(frozen=True)
class OpsRecord:
    """Operation counts of ONE sample of ``seq_len`` tokens. Units: MACs, FLOPs, BOPs, OPs."""

    seq_len: int
    macs: dict[str, int]  # by precision bucket (fp32, w1a32, binary, int8, ...)
    flops: int  # 2 * (every non-binary MAC) + elementwise FLOPs
    bops: int  # binary MACs
    ops: float  # flops + bops / 64 (literature convention)
    elementwise_flops: int
    by_module: dict[str, dict[str, int]]  # embed, block.N, head.N -> macs_<bucket>, elementwise_flops
    uncounted: dict[str, int]  # op or module the counter could not see -> occurrences
    convention: str = CONVENTION
    counter: str = COUNTER
    exit_block: int | None = None  # None: every block and head ran
    products: dict[str, dict[str, Any]] = field(default_factory=dict)  # module -> bucket, bits, macs
    op_calls: dict[str, int] = field(default_factory=dict)  # counted op -> calls (0-cost ones too)
    folded_flops: int = 0  # parameter-only work folded into the deployed weights (not in flops)
    notes: tuple[str, ...] = ()

    @property
    def total_macs(self) -> int:
        return sum(self.macs.values())

    def to_dict(self) -> dict:
        d = asdict(self)
        d["notes"] = list(self.notes)
        d["units"] = {"macs": "MAC", "flops": "FLOP", "bops": "BOP", "ops": "OP (FLOP + BOP/64)"}
        return d


# -- tracing --------------------------------------------------------------------------
class _Forward(nn.Module):
    """Runs ``adapter.forward`` so the trace sees exactly what the adapter runs."""

    def __init__(self, adapter) -> None:
        super().__init__()
        self.model = adapter.module()
        self._adapter = adapter

    def forward(self, ids: torch.Tensor, mask: torch.Tensor):
        return tuple(self._adapter.forward(ids, mask))

    def state_dict(self, *args, **kwargs):
        # The tracer turns the state dict into graph inputs and accepts only plain
        # tensors; quantized modules also store dtypes, scales and packed-parameter
        # objects there. Those stay constants of the graph (so their ops fold).
        # (The tracer calls this on us as a child, with a shared ``destination``: edit in place.)
        sd = super().state_dict(*args, **kwargs)
        for key in [k for k, v in sd.items() if not isinstance(v, torch.Tensor) or v.is_quantized]:
            del sd[key]
        return sd


class _Int8DynamicLinear(torch.autograd.Function):
    """Stand-in for ``quantized::linear_dynamic`` during tracing (fvcore's tracer cannot
    capture packed-parameter objects); counted by the ``PythonOp._Int8DynamicLinear`` handle."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        return F.linear(x, weight, bias)


class _Int8LinearStandIn(nn.Module):
    def __init__(self, qlinear: nn.Module) -> None:
        super().__init__()
        self.register_buffer("weight", qlinear.weight().dequantize())
        bias = qlinear.bias()
        self.register_buffer("bias", None if bias is None else bias.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Int8DynamicLinear.apply(x, self.weight, self.bias)


@contextmanager
def _traceable(module: nn.Module) -> Iterator[None]:
    """Temporarily replace dynamic-quantized int8 Linear modules by traceable stand-ins
    (same names, same shapes); restored on exit."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    swapped = []
    for name, mod in list(module.named_modules()):
        if isinstance(mod, DynamicLinear) and mod.weight().dtype == torch.qint8:
            parent_name, _, attr = name.rpartition(".")
            parent = module.get_submodule(parent_name) if parent_name else module
            swapped.append((parent, attr, mod))
            setattr(parent, attr, _Int8LinearStandIn(mod))
    try:
        yield
    finally:
        for parent, attr, mod in swapped:
            setattr(parent, attr, mod)


class _Analysis(JitModelAnalysis):
    """fvcore's analysis with beexbench's handle table. Each handle's cost is tagged
    ``<category>:<op>``; work on parameters/constants only is tagged ``folded:<op>``."""

    def __init__(self, model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        super().__init__(model, inputs)
        # fvcore's default ignore list drops arithmetic (clamp, max, masked_fill, relu...)
        # silently; ours only skips pure shape/copy ops.
        self._ignored_ops = set(SHAPE_OPS)
        self._n_data = len(inputs)
        self._data_values: set[int] | None = None
        self.why: dict[str, str] = {}
        self.set_op_handle(**{name: self._wrap(name, fn) for name, fn in op_handles().items()})
        self.unsupported_ops_warnings(False)
        self.uncalled_modules_warnings(False)
        self.tracer_warnings("none")

    def _depends_on_data(self, value) -> bool:
        if self._data_values is None:  # one pass over the (flat, inlined) traced graph
            graph = value.node().owningBlock()  # the traced graph's (only) block
            data = {v.unique() for v in list(graph.inputs())[: self._n_data]}
            for node in graph.nodes():
                if any(v.unique() in data for v in node.inputs()):
                    data.update(v.unique() for v in node.outputs())
            self._data_values = data
        return value.unique() in self._data_values

    def _wrap(self, name: str, fn):
        simple = name.split("::", 1)[-1]

        def handle(inputs, outputs) -> Counter:
            try:
                cost = check_cost(name, fn(inputs, outputs))
            except Uncountable as exc:
                self.why[name] = str(exc)
                return Counter({f"uncounted:{name}": 1})
            out = Counter({f"call:{simple}": 1})
            folded = not any(self._depends_on_data(v) for v in inputs)
            for category, n in cost.items():
                out[f"folded:{simple}" if folded else f"{category}:{simple}"] += n
            return out

        return handle


@dataclass
class _Tally:
    """Integer counts of one trace, grouped; every entry is a polynomial in seq_len."""

    groups: dict[str, Counter]  # group -> macs:<bucket>, elementwise, folded, call:<op>
    products: dict[str, tuple[str, tuple[int, int], str, int]]  # module -> bucket, bits, group, macs
    uncounted: Counter
    notes: list[str]

    def flat(self) -> dict[tuple, int]:
        out: dict[tuple, int] = {}
        for g, c in self.groups.items():
            for k, v in c.items():
                out[("g", g, k)] = v
        for name, (_, _, _, macs) in self.products.items():
            out[("p", name)] = macs
        return out

    def with_values(self, flat: dict[tuple, int]) -> "_Tally":
        groups = {g: Counter() for g in self.groups}
        products = dict(self.products)
        for key, v in flat.items():
            if key[0] == "g":
                groups[key[1]][key[2]] = v
            else:
                b, bits, g, _ = products[key[1]]
                products[key[1]] = (b, bits, g, v)
        return _Tally(groups, products, self.uncounted, self.notes)


def _layout(module: nn.Module) -> tuple[dict[str, str], str, list[int], int]:
    """(module-name prefix -> group, rest group, exit blocks, final block).

    EarlyExitEncoder-like modules (``blocks`` + ``head_for``) are grouped into embed,
    block.N and head.N; any other module has one exit and groups per top-level child."""
    names = {id(m): n for n, m in module.named_modules()}
    blocks = getattr(module, "blocks", None)
    head_for = getattr(module, "head_for", None)
    if isinstance(blocks, nn.ModuleList) and callable(head_for) and len(blocks):
        prefixes = {names[id(b)]: f"block.{i}" for i, b in enumerate(blocks, 1)}
        exits = []
        for i in range(1, len(blocks) + 1):
            head = head_for(i)
            if head is not None:
                prefixes[names[id(head)]] = f"head.{i}"
                exits.append(i)
        return prefixes, "embed", exits, len(blocks)
    prefixes = {n: n for n, _ in module.named_children()}
    return prefixes, "(root)", [1], 1


def _group_of(name: str, prefixes: dict[str, str], rest: str) -> str:
    best = ""
    for p in prefixes:
        if (name == p or name.startswith(p + ".")) and len(p) > len(best):
            best = p
    return prefixes[best] if best else rest


def _sum(c: Counter, prefix: str) -> int:
    return sum(v for k, v in c.items() if k.startswith(prefix))


def _example(adapter, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    spec = getattr(adapter, "spec", None)
    max_len = getattr(spec, "max_len", None)
    if seq_len < 1 or (max_len is not None and seq_len > max_len):
        raise BeexError(f"seq_len {seq_len} is outside 1..{max_len} for this model")
    vocab = max(int(getattr(spec, "vocab_size", 2)), 2)
    try:
        device = next(adapter.module().parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    ids = (torch.arange(seq_len, device=device) % (vocab - 1) + 1).unsqueeze(0)
    return ids, torch.ones(1, seq_len, dtype=torch.bool, device=device)


def _module_of(adapter) -> nn.Module:
    try:
        return adapter.module()
    except NotImplementedError as exc:
        raise BeexError(f"cannot count operations of '{getattr(adapter, 'name', adapter)}': {exc}") from None


def _tally(adapter, seq_len: int) -> _Tally:
    module = _module_of(adapter)
    precision = adapter.precision()
    prefixes, rest, _, _ = _layout(module)
    wrapper = _Forward(adapter)
    modes = {m: m.training for m in module.modules()}
    threads = torch.get_num_threads()
    module.eval()
    torch.set_num_threads(1)  # the trace runs tiny kernels: threads only add contention
    try:
        with warnings.catch_warnings(), torch.no_grad(), _traceable(module):
            warnings.simplefilter("ignore")
            example = _example(adapter, seq_len)
            # one warm-up call first: the trace then sees the steady inference path, with
            # whatever a deployed model stores (e.g. cached sign(W) and alpha) in place
            wrapper(*example)
            analysis = _Analysis(wrapper, example)
            per_module = analysis.by_module_and_operator()
            unsupported = analysis.unsupported_ops()
            uncalled = analysis.uncalled_modules()
    finally:
        torch.set_num_threads(threads)
        for m, training in modes.items():
            m.train(training)

    def counts(name: str) -> Counter:
        return per_module.get(f"model.{name}" if name else "model", Counter())

    notes: list[str] = []
    uncounted = Counter(dict(unsupported))
    root = per_module.get("", Counter())
    for key, v in root.items():
        if key.startswith("uncounted:"):
            op = key.split(":", 1)[1]
            uncounted[op] += v
            notes.append(f"{op}: {analysis.why.get(op, 'not countable')}")
    for name in sorted(uncalled):
        if not (name.startswith("model.") or name == "model"):
            continue
        sub = wrapper.get_submodule(name)
        if next(sub.parameters(), None) is None and next(sub.buffers(), None) is None:
            # a parameter-less function module whose result is cached or not needed at
            # inference (e.g. the weight binarizer): the trace holds everything that ran
            continue
        uncounted[f"module:{name[6:] or '(root)'} (never called)"] += 1

    # products, attributed to the module that declares their precision
    products: dict[str, tuple[str, tuple[int, int], str, int]] = {}
    declared_macs: dict[str, int] = {}  # MACs whose precision the module declares
    for name, bits in precision.products.items():
        bits = (int(bits[0]), int(bits[1]))
        c = counts(name)
        declared_macs[name] = _sum(c, "mac:")
        fixed = {k.split(":", 1)[0][4:] for k in c if k.startswith("mac@")}
        if fixed - {bucket_of(bits)}:
            notes.append(f"{name}: declared {bits} but runs {sorted(fixed)} products; those are counted as the op's precision")
        products[name] = (bucket_of(bits), bits, _group_of(name, prefixes, rest), declared_macs[name] + _sum(c, "mac@"))

    # groups: explicit prefixes, the rest is everything else under the wrapper
    groups: dict[str, Counter] = {}
    raw = {g: Counter() for g in [rest, *prefixes.values()]}
    for prefix, g in prefixes.items():
        raw[g] += counts(prefix)
    covered = Counter()
    for g in prefixes.values():
        covered.update(raw[g])
    raw[rest] = Counter({k: v - covered.get(k, 0) for k, v in root.items() if v - covered.get(k, 0) > 0})
    for g, c in raw.items():
        out = Counter({f"macs:{b}": 0 for b in BUCKETS})
        out["elementwise"] = _sum(c, "flop:")
        out["folded"] = _sum(c, "folded:")
        for key, v in c.items():
            if key.startswith("call:"):
                out[key] += v
            elif key.startswith("mac@"):
                out[f"macs:{key[4:].split(':', 1)[0]}"] += v
        declared = 0
        for name, (bucket, _, pg, _) in products.items():
            if pg == g:
                out[f"macs:{bucket}"] += declared_macs[name]
                declared += declared_macs[name]
        unattributed = _sum(c, "mac:") - declared
        if unattributed < 0:
            raise BeexError(f"products declared in group {g} overlap (nested product modules?); cannot attribute MACs")
        if unattributed:
            out["macs:fp32"] += unattributed
            notes.append(f"{g}: {unattributed} MACs outside any declared product module, counted as fp32")
        groups[g] = out
    return _Tally(groups, products, uncounted, notes)


def _record(tally: _Tally, seq_len: int, groups: list[str], exit_block: int | None) -> OpsRecord:
    keep = set(groups)
    macs: Counter = Counter({b: 0 for b in BUCKETS})
    elementwise = folded = 0
    calls: Counter = Counter()
    by_module: dict[str, dict[str, int]] = {}
    for g in groups:
        c = tally.groups[g]
        row = {}
        for key, v in c.items():
            if key.startswith("macs:"):
                macs[key[5:]] += v
                row[f"macs_{key[5:]}"] = int(v)
            elif key.startswith("call:"):
                calls[key[5:]] += v
        row["elementwise_flops"] = int(c["elementwise"])
        by_module[g] = row
        elementwise += c["elementwise"]
        folded += c["folded"]
    bops = int(macs["binary"])
    flops = 2 * sum(int(v) for b, v in macs.items() if b != "binary") + int(elementwise)
    products = {
        name: {"bucket": b, "bits": list(bits), "macs": int(m), "group": g}
        for name, (b, bits, g, m) in tally.products.items()
        if g in keep
    }
    return OpsRecord(
        seq_len=int(seq_len),
        macs={k: int(v) for k, v in macs.items()},
        flops=flops,
        bops=bops,
        ops=flops + bops / BOPS_PER_OP,
        elementwise_flops=int(elementwise),
        by_module=by_module,
        uncounted=dict(tally.uncounted),
        exit_block=exit_block,
        products=products,
        op_calls={k: int(v) for k, v in sorted(calls.items())},
        folded_flops=int(folded),
        notes=tuple(dict.fromkeys(tally.notes)),
    )


def count_ops(adapter, seq_len: int) -> OpsRecord:
    """Operation counts of one sample of ``seq_len`` real tokens, every block and every
    exit head run (``adapter.forward``), eval mode."""
    tally = _tally(adapter, seq_len)
    return _record(tally, seq_len, list(tally.groups), None)


# -- cost per exit depth ----------------------------------------------------------------
def _fit(xs: list[int], ys: list[int]) -> tuple[Fraction, Fraction, Fraction]:
    """Exact (c0, c1, c2) of the degree <= 2 polynomial through three points (Lagrange)."""
    c = [Fraction(0)] * 3
    for i, (xi, yi) in enumerate(zip(xs, ys)):
        others = [x for j, x in enumerate(xs) if j != i]
        denom = Fraction(1)
        for x in others:
            denom *= xi - x
        a, b = others
        # (x - a)(x - b) = x^2 - (a + b) x + a b
        c[0] += Fraction(yi) * a * b / denom
        c[1] -= Fraction(yi) * (a + b) / denom
        c[2] += Fraction(yi) / denom
    return c[0], c[1], c[2]


def _eval(coef: tuple[Fraction, Fraction, Fraction], x: int) -> Fraction:
    return coef[0] + coef[1] * x + coef[2] * x * x


def _lengths(max_len: int) -> list[int]:
    if max_len < 4:
        raise BeexError(f"DepthCost needs max_len >= 4 (3 lengths to fit, 1 to verify); got {max_len}")
    if max_len >= 8:
        return [2, 3, 5, 8]
    return [1, 2, 3, 4]


class DepthCost:
    """Exact cost of exiting at block ``i``: embedding + blocks 1..i + every head of blocks
    1..i (the exit rule evaluates each of them), for a sample of any length.

    Each count is a polynomial of degree <= 2 in the sequence length (projections and
    FFN linear in L, QK^T and A.V quadratic): it is measured at three lengths, solved
    exactly and verified at a fourth (a mismatch raises)."""

    def __init__(self, coefficients: dict[tuple, tuple[Fraction, Fraction, Fraction]], template: _Tally,
                 exits: list[int], n_blocks: int, max_len: int, lengths: list[int], name: str = "") -> None:
        self._coef, self._template = coefficients, template
        self.exits, self.n_blocks, self.max_len, self.lengths, self.name = exits, n_blocks, max_len, lengths, name
        self._groups_at = {i: self._groups_until(i) for i in exits}
        self._tables: dict[str | None, torch.Tensor] = {}

    @classmethod
    def measure(cls, adapter, max_len: int | None = None) -> "DepthCost":
        module = _module_of(adapter)
        _, _, exits, n_blocks = _layout(module)
        if max_len is None:
            max_len = int(getattr(getattr(adapter, "spec", None), "max_len", 0) or getattr(module, "max_len", 0))
        lengths = _lengths(int(max_len))
        tallies = [_tally(adapter, L) for L in lengths]
        flats = [t.flat() for t in tallies]
        keys = set().union(*flats)
        coef: dict[tuple, tuple[Fraction, Fraction, Fraction]] = {}
        for key in keys:
            ys = [f.get(key, 0) for f in flats]
            coef[key] = _fit(lengths[:3], ys[:3])
            if _eval(coef[key], lengths[3]) != ys[3]:
                raise BeexError(
                    f"cost of {key} is not a polynomial of degree <= 2 in seq_len "
                    f"(values {ys} at lengths {lengths}); per-length counting is needed for this model"
                )
        template = tallies[-1]
        for t in tallies[:-1]:
            template.uncounted.update(t.uncounted)
        return cls(coef, template, exits, n_blocks, int(max_len), lengths, getattr(adapter, "name", ""))

    def _groups_until(self, exit_block: int) -> list[str]:
        groups = []
        for g in self._template.groups:
            kind, _, n = g.partition(".")
            if kind in ("block", "head") and n.isdigit():
                if int(n) <= exit_block:
                    groups.append(g)
            else:  # embed (or every group of a single-exit model)
                groups.append(g)
        return groups

    def _check_block(self, exit_block: int) -> None:
        if exit_block not in self._groups_at:
            raise BeexError(f"no exit after block {exit_block}: this model exits at blocks {self.exits}")

    def record(self, exit_block: int, seq_len: int) -> OpsRecord:
        """The OpsRecord of one sample of ``seq_len`` tokens that exits after ``exit_block``."""
        self._check_block(int(exit_block))
        if not 0 <= seq_len <= self.max_len:
            raise BeexError(f"seq_len {seq_len} is outside 0..{self.max_len}")
        flat = {}
        for key, c in self._coef.items():
            v = _eval(c, seq_len)
            if v.denominator != 1:
                raise BeexError(f"non-integer count {v} for {key} at seq_len {seq_len}")
            flat[key] = int(v)
        tally = self._template.with_values(flat)
        return _record(tally, seq_len, self._groups_at[int(exit_block)], int(exit_block))

    def _table(self, bucket: str | None) -> torch.Tensor:
        """[n_blocks + 1, 3] float64 coefficients of cumulative MACs per exit block."""
        if bucket not in self._tables:
            table = torch.full((self.n_blocks + 1, 3), float("nan"), dtype=torch.float64)
            for i, groups in self._groups_at.items():
                total = [Fraction(0)] * 3
                for key, c in self._coef.items():
                    if key[0] == "g" and key[1] in groups and key[2].startswith("macs:"):
                        if bucket is None or key[2] == f"macs:{bucket}":
                            total = [t + ci for t, ci in zip(total, c)]
                table[i] = torch.tensor([float(t) for t in total], dtype=torch.float64)
            self._tables[bucket] = table
        return self._tables[bucket]

    def macs(self, exit_block: torch.Tensor, lengths: torch.Tensor, bucket: str | None = None) -> torch.Tensor:
        """Per-sample MACs (float64; all buckets, or only ``bucket``) of samples that exited
        after ``exit_block`` (1-based block numbers) with ``lengths`` real tokens."""
        eb = torch.as_tensor(exit_block).long().cpu()
        L = torch.as_tensor(lengths).to(torch.float64).cpu()
        if eb.shape != L.shape:
            raise ValueError(f"exit_block {tuple(eb.shape)} and lengths {tuple(L.shape)} differ in shape")
        bad = sorted({int(b) for b in eb.unique()} - set(self._groups_at))
        if bad:
            raise BeexError(f"no exit after block(s) {bad}: this model exits at blocks {self.exits}")
        if L.numel() and (L.min() < 0 or L.max() > self.max_len):
            raise BeexError(f"lengths must lie in 0..{self.max_len}")
        c = self._table(bucket)[eb]
        return c[..., 0] + c[..., 1] * L + c[..., 2] * L * L

    def to_dict(self) -> dict:
        def poly(groups: list[str], qty: str) -> list[str]:
            total = [Fraction(0)] * 3
            for key, c in self._coef.items():
                if key[0] == "g" and key[1] in groups and key[2] == qty:
                    total = [t + ci for t, ci in zip(total, c)]
            return [str(t) for t in total]

        per_exit = {}
        for i, groups in self._groups_at.items():
            per_exit[str(i)] = {
                q.replace(":", "_"): poly(groups, q)
                for q in [f"macs:{b}" for b in BUCKETS] + ["elementwise"]
            }
        return {
            "model": self.name,
            "exits": list(self.exits),
            "n_blocks": self.n_blocks,
            "max_len": self.max_len,
            "fit_lengths": self.lengths[:3],
            "verified_at": self.lengths[3],
            "polynomial": "c0 + c1*L + c2*L^2, L = real tokens of the sample",
            "per_exit_coefficients": per_exit,
            "uncounted": dict(self._template.uncounted),
            "convention": CONVENTION,
            "counter": COUNTER,
        }
