"""Exact operation cost per exit depth: :class:`DepthCost` (the delta sweep's cost_fn)."""
from __future__ import annotations

from fractions import Fraction
from typing import Mapping

import torch

from beexbench.errors import BeexError
from beexbench.profilers._op_handle_sets import handles_for
from beexbench.profilers._op_handles import CONVENTION, Handle
from beexbench.profilers._ops_record import BUCKETS, COUNTER, OpsRecord, make_record
from beexbench.profilers._ops_tally import Tally, layout, tally
from beexbench.profilers._ops_trace import module_of


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

    def __init__(self, coefficients: dict[tuple, tuple[Fraction, Fraction, Fraction]], template: Tally,
                 exits: list[int], n_blocks: int, max_len: int, lengths: list[int], name: str = "") -> None:
        self._coef, self._template = coefficients, template
        self.exits, self.n_blocks, self.max_len, self.lengths, self.name = exits, n_blocks, max_len, lengths, name
        self._groups_at = {i: self._groups_until(i) for i in exits}
        self._tables: dict[str | None, torch.Tensor] = {}

    @classmethod
    def measure(cls, adapter, max_len: int | None = None, handles: Mapping[str, Handle] | None = None) -> "DepthCost":
        """Measure ``adapter``'s cost per exit; ``handles`` add to (or replace) the op
        handles of this analysis (see :func:`~beexbench.profilers.ops.count_ops`)."""
        module = module_of(adapter)
        _, _, exits, n_blocks = layout(adapter, module)
        table = handles_for(adapter, module, handles)
        if max_len is None:
            max_len = int(getattr(getattr(adapter, "spec", None), "max_len", 0) or getattr(module, "max_len", 0))
        lengths = _lengths(int(max_len))
        tallies = [tally(adapter, L, table) for L in lengths]
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
        values = self._template.with_values(flat)
        return make_record(values, seq_len, self._groups_at[int(exit_block)], int(exit_block))

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
