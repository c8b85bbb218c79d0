"""``metrics.static_depth``: an early-exit model judged against static depth (issue 28).

From the same trained network and heads, "always exit at block k" for every exit block k: the
test score with its interval, the mean MACs per sample and the batch-1 latency in the model's own
runtime (the static curve). Beside it the deployed rule's point and a verdict in words:

* ``"degenerate"``: at least 95% of the test samples leave at one block: the rule is a k-block model;
* ``"adaptive"``: the rule's point lies above the static curve at equal mean cost (the curve
  linearly interpolated at the rule's mean MACs), it answers at least as many samples right as the
  static depth of nearest-not-lower cost (``p_value``: exact McNemar test of the two, paired by
  sample) and significantly more than the static depth of nearest-not-higher cost (``p_value_cheaper``
  < 0.05), so that a flat curve's noise is not called adaptive;
* ``"static"``: otherwise, "no better than static depth k" (``compared_k``).

For regression the paired test is the exact sign test of which prediction is closer to the label
(McNemar's test on "closer" instead of "correct"). The section is filled by code of the tree
(``beexbench.runner.static_depth``), so its declaration has no ``measure``; a record written
before it has no ``metrics.static_depth`` and reads as before (its columns are empty).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .codec import Section
from .columns import Column, MetricDeclaration
from .quality import Metric

VERDICTS = ("adaptive", "static", "degenerate")
DEGENERATE_SHARE = 0.95  # at least this share of test samples at one block: the rule is a fixed depth
ALPHA = 0.05  # the paired tests' level


@dataclass(frozen=True, kw_only=True)
class StaticPoint(Section):
    """Every test sample exits at block ``k``: its score (``accuracy``: accuracy or Pearson r) with
    its 95% interval (Wilson / Fisher z), mean MACs per sample (all precisions) and batch-1 latency."""

    k: int
    accuracy: float | None  # None: undefined (a constant regression prediction)
    accuracy_lo: float | None
    accuracy_hi: float | None
    mean_macs: float
    latency_ms: float | None  # median, batch 1, the deployment's own runtime; None: not measured (``latency_note``)
    latency_note: str


@dataclass(frozen=True, kw_only=True)
class CalibrationMark(Section):
    """The test point of the δ a calibration objective picks on the validation sweep."""

    objective: str  # beexbench.training.calibrate.OBJECTIVES
    value: float  # the calibrated parameter's value (δ)
    val_accuracy: float
    accuracy: float  # on test
    mean_macs: float | None
    deployed: bool  # the δ the model deploys


@dataclass(frozen=True, kw_only=True)
class StaticDepth(Section):
    """The static curve, the deployed rule's point, the verdict and the exit-depth spread."""

    metric: Metric
    points: tuple[StaticPoint, ...]
    rule_accuracy: float | None
    rule_mean_macs: float
    static_at_rule_cost: float | None  # the static curve interpolated at the rule's mean MACs
    margin: float | None  # rule_accuracy - static_at_rule_cost
    verdict: Literal[VERDICTS]
    verdict_text: str
    compared_k: int  # the static depth the paired test (p_value) compares with: nearest-not-lower cost
    discordant: tuple[int, int]  # (rule right & static k wrong, rule wrong & static k right); regression: closer
    p_value: float | None  # exact two-sided McNemar (binomial on the discordant pairs); None: no pair differs
    cheaper_k: int | None  # nearest-not-higher cost static depth (None: the rule is cheaper than every one)
    p_value_cheaper: float | None
    modal_block: int
    modal_share: float
    exit_entropy_bits: float
    latency_budget: str  # the reduced timing budget of the static latencies, as a label
    calibration: tuple[CalibrationMark, ...] = ()  # each objective's δ on the test sweep (empty: no calibration)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict is one of {', '.join(VERDICTS)}")
        if not self.points:
            raise ValueError("a static curve needs at least one depth")


DECLARATION = MetricDeclaration(
    key="static_depth", section=StaticDepth, measure=None,
    columns=(
        Column("static_verdict", lambda s: s.verdict, seeds="first_text", empty="", numeric=False),
        Column("static_verdict_text", lambda s: s.verdict_text, seeds="first_text", empty="", numeric=False),
        Column("static_margin", lambda s: s.margin, unit="fraction"),
        Column("static_p_value", lambda s: s.p_value, unit="probability", seeds="list", numeric=False),
        Column("static_modal_block", lambda s: s.modal_block, unit="block", seeds="join", numeric=False),
        Column("static_modal_share", lambda s: s.modal_share, unit="fraction", fmt=".1f", scale=100),
        Column("static_exit_entropy_bits", lambda s: s.exit_entropy_bits, unit="bit", fmt=".2f"),
        # the whole section of every seed (the report's static-depth table and figure read it)
        Column("static_depth", lambda s: s.to_dict(), seeds="per_seed", empty=[], numeric=False),
    ),
)

__all__ = ["ALPHA", "CalibrationMark", "DECLARATION", "DEGENERATE_SHARE", "StaticDepth", "StaticPoint", "VERDICTS"]
