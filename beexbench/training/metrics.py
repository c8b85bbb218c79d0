"""What "loss" and "quality" mean for a task, decided by its labels in one place.

Classification: int64 class indices, outputs ``[N, C]`` logits, per-sample cross-entropy,
quality = accuracy. Regression: float labels *standardized with the train split's mean and
std* (see :func:`standardize`), outputs ``[N, 1]``, per-sample squared error (so the loss
is in units of the label variance), quality = Pearson r (GLUE's STS-B convention; it is
unchanged by the standardization). Every loss, validation selection, calibration sweep and
measurement calls these functions, so the two problems cannot drift apart.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

PROBLEMS = ("classification", "regression")


def is_regression(labels: torch.Tensor) -> bool:
    return labels.is_floating_point()


def metric_name(labels: torch.Tensor) -> str:
    return "pearson_r" if is_regression(labels) else "accuracy"


def per_sample_loss(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[N] loss: squared error of the single output (regression) or cross-entropy."""
    if is_regression(labels):
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


def score(outputs: torch.Tensor, labels: torch.Tensor) -> float:
    """Higher is better: accuracy, or Pearson r of the single output with the labels
    (a constant prediction scores 0, not NaN, so model selection can rank it)."""
    if is_regression(labels):
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
