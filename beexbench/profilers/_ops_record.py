"""The operation counter's record: precision buckets, :class:`OpsRecord` and how one is
made from a tally of a trace (:mod:`._ops_tally`)."""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from beexbench.profilers._op_handles import CONVENTION

if TYPE_CHECKING:
    from beexbench.profilers._ops_tally import Tally

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




def make_record(tally: Tally, seq_len: int, groups: list[str], exit_block: int | None) -> OpsRecord:
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

