"""The operation counter's tally: a trace's counts grouped by embed / block.N / head.N (the
blocks and heads the adapter declares, ``adapter.exit_layout()``) and its MACs put into the
precision buckets the modules declare (``adapter.precision()``)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Mapping

from torch import nn

from beexbench.adapters.protocols import exit_layout_of
from beexbench.errors import BeexError
from beexbench.profilers._op_handles import Handle
from beexbench.profilers._ops_record import BUCKETS, bucket_of
from beexbench.profilers._ops_trace import module_of, trace


@dataclass
class Tally:
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

    def with_values(self, flat: dict[tuple, int]) -> "Tally":
        groups = {g: Counter() for g in self.groups}
        products = dict(self.products)
        for key, v in flat.items():
            if key[0] == "g":
                groups[key[1]][key[2]] = v
            else:
                b, bits, g, _ = products[key[1]]
                products[key[1]] = (b, bits, g, v)
        return Tally(groups, products, self.uncounted, self.notes)


def layout(adapter, module: nn.Module) -> tuple[dict[str, str], str, list[int], int]:
    """(module-name prefix -> group, rest group, exit blocks, final block) of ``module``
    (``adapter.module()``), as the adapter declares it (``adapter.exit_layout()``).

    A layout with block modules is grouped into embed (everything outside the blocks and
    heads), block.N and head.N; a model that declares no blocks has one exit and is grouped
    per top-level child."""
    declared = exit_layout_of(adapter)  # none declared (protocols.Exits): one block, one exit
    if not declared.blocks:
        prefixes = {n: n for n, _ in module.named_children()}
        return prefixes, "(root)", [1], 1
    who = adapter.name or type(adapter).__name__
    if len(declared.blocks) != declared.n_blocks or (declared.heads and len(declared.heads) != len(declared.exit_blocks)):
        raise BeexError(f"{who}: exit_layout() gives {len(declared.blocks)} block and {len(declared.heads)} head "
                        f"modules for {declared.n_blocks} blocks with exits after {list(declared.exit_blocks)}")
    names = {id(m): n for n, m in module.named_modules()}

    def name_of(part: nn.Module, what: str) -> str:
        if id(part) not in names:
            raise BeexError(f"{who}: the {what} module in exit_layout() is not part of its module()")
        return names[id(part)]

    prefixes = {name_of(b, f"block {i}"): f"block.{i}" for i, b in enumerate(declared.blocks, 1)}
    for block, head in zip(declared.exit_blocks, declared.heads):
        prefixes[name_of(head, f"head after block {block}")] = f"head.{block}"
    return prefixes, "embed", list(declared.exit_blocks), declared.n_blocks


def _group_of(name: str, prefixes: dict[str, str], rest: str) -> str:
    best = ""
    for p in prefixes:
        if (name == p or name.startswith(p + ".")) and len(p) > len(best):
            best = p
    return prefixes[best] if best else rest


def _sum(c: Counter, prefix: str) -> int:
    return sum(v for k, v in c.items() if k.startswith(prefix))



def tally(adapter, seq_len: int, handles: Mapping[str, Handle]) -> Tally:
    """Trace one sample of ``seq_len`` tokens with ``handles`` and group its counts."""
    module = module_of(adapter)
    precision = adapter.precision()
    prefixes, rest, _, _ = layout(adapter, module)
    traced = trace(adapter, seq_len, handles)
    per_module, wrapper, why = traced.per_module, traced.wrapper, traced.why

    def counts(name: str) -> Counter:
        return per_module.get(f"model.{name}" if name else "model", Counter())

    notes: list[str] = []
    uncounted = Counter(traced.unsupported)
    root = per_module.get("", Counter())
    for key, v in root.items():
        if key.startswith("uncounted:"):
            op = key.split(":", 1)[1]
            uncounted[op] += v
            notes.append(f"{op}: {why.get(op, 'not countable')}")
    for name in sorted(traced.uncalled):
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
    return Tally(groups, products, uncounted, notes)

