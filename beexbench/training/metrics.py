"""What "loss" and "quality" mean for a task, in one place.

The task's declared problem (``TaskCard.problem``, carried as ``TaskSpec.problem``:
:data:`Problem`) decides; the runner passes it down (:func:`metric_of`, :func:`score` and
:func:`per_sample_loss` take it as ``problem``). The labels follow one convention that
:func:`check_labels` enforces where the runner makes them (``runner.run.prepare_task``):
classification labels are int64 class indices, regression labels are floats. So a caller that
was handed only labels can still tell the problem (:func:`problem_of`) and never disagree with
the declaration - but code that knows the task should pass ``problem``.

Classification: outputs ``[N, C]`` logits, per-sample cross-entropy, quality = accuracy.
Regression: float labels *standardized with the train split's mean and std* (see
:func:`standardize`), outputs ``[N, 1]``, per-sample squared error (so the loss is in units of
the label variance), quality = Pearson r (GLUE's STS-B convention; it is unchanged by the
standardization). Every loss, validation selection, calibration sweep and measurement calls
these functions, so the two problems cannot drift apart.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from ..errors import BeexError

Problem = Literal["classification", "regression"]
PROBLEMS: tuple[str, ...] = ("classification", "regression")
METRIC = {"classification": "accuracy", "regression": "pearson_r"}  # the headline metric's name


def problem_of(labels: torch.Tensor) -> Problem:
    """The problem that labels made by the runner stand for (float: regression). Only for code
    that is handed labels without the task; :func:`check_labels` keeps the two in agreement."""
    return "regression" if labels.is_floating_point() else "classification"


def check_labels(labels: torch.Tensor, problem: str, where: str = "the labels") -> None:
    """Refuse labels that do not follow ``problem``'s convention (one-line BeexError)."""
    if problem not in PROBLEMS:
        raise BeexError(f"{where}: problem {problem!r} is not one of {', '.join(PROBLEMS)}")
    if problem_of(labels) != problem:
        want = "floating-point scores" if problem == "regression" else "integer class indices"
        raise BeexError(f"{where}: a {problem} task needs {want} as labels, not {labels.dtype}: "
                        "fix the task's labels or its declared problem")


def _resolve(labels: torch.Tensor, problem: str | None) -> str:
    return problem_of(labels) if problem is None else problem


def is_regression(labels: torch.Tensor) -> bool:
    """Kept for callers without the task; prefer ``problem == "regression"``."""
    return problem_of(labels) == "regression"


def metric_of(problem: str) -> str:
    """The headline metric of a problem: ``accuracy`` or ``pearson_r``."""
    return METRIC[problem]


def metric_name(labels: torch.Tensor, problem: str | None = None) -> str:
    """The headline metric for these labels (``problem``, when given, decides)."""
    return metric_of(_resolve(labels, problem))


def per_sample_loss(outputs: torch.Tensor, labels: torch.Tensor, problem: str | None = None) -> torch.Tensor:
    """[N] loss: squared error of the single output (regression) or cross-entropy."""
    if _resolve(labels, problem) == "regression":
        if outputs.shape[-1] != 1:
            raise ValueError(f"a regression model has one output, this one has {outputs.shape[-1]}")
        return (outputs[:, 0].float() - labels.float()) ** 2
    return F.cross_entropy(outputs, labels, reduction="none")


def pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    """Pearson correlation; NaN when either side is constant (or n < 2)."""
    x, y = x.double().flatten(), y.double().flatten()
    if x.numel() < 2:
        return math.nan
    x, y = x - x.mean(), y - y.mean()
    den = float(x.norm() * y.norm())
    return float((x * y).sum()) / den if den > 0 else math.nan


def spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    return pearson(_ranks(x.double().flatten()), _ranks(y.double().flatten()))


def _ranks(v: torch.Tensor) -> torch.Tensor:
    order = torch.argsort(v, stable=True)
    ranks = torch.empty_like(v)
    ranks[order] = torch.arange(len(v), dtype=v.dtype)
    # average the ranks of tied values
    uniq, inverse = torch.unique(v, return_inverse=True)
    sums = torch.zeros(len(uniq), dtype=v.dtype).index_add_(0, inverse, ranks)
    counts = torch.bincount(inverse, minlength=len(uniq)).to(v.dtype)
    return (sums / counts)[inverse]


def score(outputs: torch.Tensor, labels: torch.Tensor, problem: str | None = None) -> float:
    """Higher is better: accuracy, or Pearson r of the single output with the labels
    (a constant prediction scores 0, not NaN, so model selection can rank it)."""
    if _resolve(labels, problem) == "regression":
        r = pearson(outputs[:, 0], labels)
        return 0.0 if math.isnan(r) else r
    return float((outputs.argmax(-1) == labels).float().mean()) if len(labels) else math.nan


def standardize(labels: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """Regression labels in units of the train split's standard deviation."""
    return ((labels.double() - mean) / std).float()


def label_stats(train_labels: torch.Tensor) -> tuple[float, float]:
    """(mean, std) of the train labels; std 1 when they are constant."""
    values = train_labels.double()
    std = float(values.std()) if len(values) > 1 else 0.0
    return float(values.mean()), (std if std > 0 else 1.0)
