"""Typed quality and exit sections of a result record: ``metrics.accuracy`` and
``metrics.accuracy_no_exit`` (:data:`Quality`: :class:`Accuracy` for classification,
:class:`RegressionQuality` for regression) and ``metrics.exits`` (:class:`Exits`, with its
:class:`Calibration` and :class:`SweepRow` rows). Keys and meanings: docs/RESULTS.md."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping, Union

from .codec import Context, Section, absent_if_none, construct, decode, legacy, pointer

Metric = Literal["accuracy", "pearson_r"]
METRICS: tuple[str, ...] = ("accuracy", "pearson_r")  # the headline metric's name, by problem


@dataclass(frozen=True, kw_only=True)
class Accuracy(Section):
    """Classification quality: the share of correct test predictions and its 95% Wilson interval."""

    value: float  # correct / n
    metric: Literal["accuracy"] = legacy("accuracy", since=2)
    correct: int
    n: int
    ci95: tuple[float, float]
    ci_method: str  # "wilson"
    split: str  # "test"
    note: str  # which predictions: the deployed exit rule, or the final exit

    undefined = None  # accuracy always exists

    @classmethod
    def _accepts(cls, doc: dict) -> bool:
        return doc.get("metric", "accuracy") == "accuracy"


@dataclass(frozen=True, kw_only=True)
class RegressionQuality(Section):
    """Regression quality: Pearson r (the headline) with its Fisher-z interval, Spearman rho,
    MSE in units of the train labels' variance, RMSE and MAE on the label scale. Where r does
    not exist (a constant prediction) ``value``, ``ci95`` and ``spearman`` are None and
    ``undefined`` says why."""

    value: float | None
    metric: Literal["pearson_r"]
    n: int
    ci95: tuple[float | None, float | None]
    ci_method: str  # "fisher_z"
    spearman: float | None
    mse_label_var: float
    rmse: float
    mae: float
    split: str
    note: str
    undefined: str | None = absent_if_none()  # why there is no value

    def __post_init__(self) -> None:
        if (self.value is None) != (self.undefined is not None):
            raise ValueError("a Pearson r is null exactly when 'undefined' says why")

    @classmethod
    def _accepts(cls, doc: dict) -> bool:
        return doc.get("metric") == "pearson_r"


Quality = Union[Accuracy, RegressionQuality]


@dataclass(frozen=True, kw_only=True)
class SweepRow(Section):
    """One exit-rule setting of a sweep: the rule's settings, its score (keyed by the metric's
    name in the file), mean exit block, exit histogram and (when costed) mean MACs per sample."""

    rule: Mapping[str, Any]  # ExitRule.to_dict(): "rule" and the rule's parameters
    metric: Metric
    score: float
    mean_exit_block: float
    exit_histogram: tuple[int, ...]
    mean_macs: float | None = None

    _FIXED = ("mean_exit_block", "exit_histogram", "mean_macs")

    def get(self, key: str, default: Any = None) -> Any:
        """A rule setting, or the score by its metric's name (as the row reads in the file)."""
        return self.score if key == self.metric else self.rule.get(key, default)

    @classmethod
    def _decode(cls, doc: dict, ptr: str, ctx: Context) -> "SweepRow":
        scores = [m for m in METRICS if m in doc]
        if len(scores) != 1:
            raise ctx.fail(ptr, f"needs exactly one score key of {', '.join(METRICS)}")
        (metric,) = scores
        hints = {"score": float, "mean_exit_block": float, "exit_histogram": tuple[int, ...], "mean_macs": float}
        kwargs: dict[str, Any] = {"metric": metric, "score": decode(float, doc[metric], pointer(ptr, metric), ctx)}
        for key in cls._FIXED:
            if key in doc:
                kwargs[key] = decode(hints[key], doc[key], pointer(ptr, key), ctx)
            elif key != "mean_macs":
                raise ctx.fail(pointer(ptr, key), "is missing")
        kwargs["rule"] = {k: v for k, v in doc.items() if k not in (metric, *cls._FIXED)}
        return construct(cls, kwargs, ptr, ctx, order=doc)

    def _encode(self) -> dict[str, Any]:
        out = {**self.rule, self.metric: self.score, "mean_exit_block": self.mean_exit_block,
               "exit_histogram": list(self.exit_histogram)}
        if self.mean_macs is not None:
            out["mean_macs"] = self.mean_macs
        return out


@dataclass(frozen=True, kw_only=True)
class Calibration(Section):
    """The exit rule's parameter chosen on the validation split: the sweep over its grid and
    the value picked (the cheapest within ``tolerance`` of the no-exit score)."""

    split: str | None = absent_if_none()  # "val" (a plugin may leave it out)
    param: str
    metric: Metric = legacy("accuracy", since=2)
    reference_accuracy: float | None = absent_if_none()  # the no-exit score, in ``metric``
    tolerance: float | None = absent_if_none()
    chosen: float
    deployed_accuracy: float | None = absent_if_none()
    sweep: tuple[SweepRow, ...]

    def __post_init__(self) -> None:
        missing = [i for i, row in enumerate(self.sweep) if self.param not in row.rule]
        if missing:
            raise ValueError(f"sweep row {missing[0]} has no value of the calibrated parameter {self.param!r}")


@dataclass(frozen=True, kw_only=True)
class Exits(Section):
    """Where test samples exit and what each exit scores (in ``metric``), the deployed rule,
    and with a calibrated rule its validation calibration and the same sweep on test."""

    n_exits: int
    n_blocks: int
    metric: Metric = legacy("accuracy", since=2)
    rule: Mapping[str, Any] | None  # ExitRule.to_dict() of the deployed rule
    histogram: tuple[int, ...]  # test samples leaving after each block
    accuracy_at_taken_exit: tuple[float | None, ...]  # None: no sample (regression: < 2) exited there
    accuracy_if_all_exit_at: tuple[float, ...]
    mean_exit_block: float
    mean_abs_change_per_exit: tuple[float | None, ...] | None = absent_if_none()  # regression; None first
    mean_entropy_per_exit: tuple[float, ...] | None = absent_if_none()  # classification
    calibration: Calibration | None = absent_if_none()
    test_sweep: tuple[SweepRow, ...] | None = absent_if_none()

    def __post_init__(self) -> None:
        signal = "mean_abs_change_per_exit" if self.metric == "pearson_r" else "mean_entropy_per_exit"
        if getattr(self, signal) is None:
            raise ValueError(f"exits in {self.metric} need {signal}")
