"""``--fail-on accuracy:-1pp,latency:+10%,size:+5%``: what counts as a regression.

A threshold names a metric and the change beyond which a *significant* change fails the gate:
accuracy in percentage points (a drop: ``-1pp``), latency and size in percent of the base
(a growth: ``+10%``). A change fails when its test says it is real (the corrected p below alpha,
or an exact size ratio) **and** its point estimate is beyond the threshold, the asv /
pytest-benchmark rule; a change inside the threshold, or not distinguishable from none, passes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import BeexError
from .deltas import METRICS, Delta

_ITEM = re.compile(r"^(?P<metric>[a-z]+):(?P<sign>[+-])(?P<num>\d+(?:\.\d+)?)(?P<unit>pp|%)$")
_UNIT = {"accuracy": "pp", "latency": "%", "size": "%"}


@dataclass(frozen=True)
class Threshold:
    metric: str
    limit: float  # accuracy: change in fraction (negative: a drop); latency/size: ratio (e.g. 1.10)

    def breached(self, d: Delta, alpha: float) -> bool:
        if d.metric != self.metric or not d.significant(alpha):
            return False
        if self.metric == "accuracy":
            return d.change < self.limit if self.limit < 0 else d.change > self.limit
        return d.change > self.limit if self.limit >= 1 else d.change < self.limit

    def shown(self) -> str:
        if self.metric == "accuracy":
            return f"accuracy:{self.limit * 100:+g}pp"
        return f"{self.metric}:{(self.limit - 1) * 100:+g}%"


def parse_fail_on(text: str | None) -> tuple[Threshold, ...]:
    """The thresholds of ``text`` (comma-separated); a bad item is a one-line error naming it."""
    if not text:
        return ()
    out: dict[str, Threshold] = {}
    for item in (s.strip() for s in text.split(",")):
        m = _ITEM.match(item)
        if not m:
            raise BeexError(f"--fail-on: cannot read {item!r}: write metric:±N followed by pp or %, e.g. "
                            "accuracy:-1pp,latency:+10%,size:+5%")
        metric, unit = m["metric"], m["unit"]
        if metric not in METRICS:
            raise BeexError(f"--fail-on: unknown metric {metric!r}: use one of {', '.join(METRICS)}")
        if unit != _UNIT[metric]:
            raise BeexError(f"--fail-on: {metric} is compared in {_UNIT[metric]}, not {unit} ({item!r})")
        if metric in out:
            raise BeexError(f"--fail-on: {metric} is named twice")
        num = float(m["num"]) * (-1 if m["sign"] == "-" else 1)
        if num == 0:
            raise BeexError(f"--fail-on: {item!r} is zero: name the change that should fail")
        out[metric] = Threshold(metric, num / 100 if unit == "pp" else 1 + num / 100)
    return tuple(out.values())
