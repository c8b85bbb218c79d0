"""The test split's headline quality, as a record states it: accuracy with its Wilson interval
(classification) or Pearson r with its Fisher-z interval, Spearman rho and errors (regression).
Used by :mod:`beexbench.runner.measure` and the static-depth reference (:mod:`.static_depth`)."""
from __future__ import annotations

import math
from typing import Any

import torch

from ..results.metrics import Accuracy, Quality, RegressionQuality
from ..results.samples import MAX_SAMPLES, Samples, split_digest
from ..training.metrics import Problem, check_labels, pearson, spearman


def wilson_ci(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion."""
    if n == 0:
        return (math.nan, math.nan)
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (centre - half, centre + half)


def accuracy_record(correct: int, n: int, split: str, note: str) -> Accuracy:
    lo, hi = wilson_ci(correct, n)
    return Accuracy(value=correct / n if n else math.nan, metric="accuracy", correct=correct, n=n, ci95=(lo, hi),
                    ci_method="wilson", split=split, note=note)


def fisher_ci(r: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% interval of a Pearson correlation by Fisher's z transform."""
    if n < 4 or math.isnan(r):
        return (math.nan, math.nan)
    centre, half = math.atanh(max(min(r, 1 - 1e-12), -1 + 1e-12)), z / math.sqrt(n - 3)
    return (math.tanh(centre - half), math.tanh(centre + half))


def regression_record(outputs: torch.Tensor, labels: torch.Tensor, label_std: float, split: str, note: str) -> RegressionQuality:
    """Pearson r (the headline), Spearman rho, and errors: MSE in units of the train labels'
    variance (what the model was trained on), RMSE and MAE back on the label scale."""
    pred, y = outputs[:, 0].double(), labels.double()
    r, n = pearson(pred, y), len(y)
    err = pred - y
    mse = float((err**2).mean()) if n else math.nan
    values: dict[str, Any] = dict(value=r, ci95=fisher_ci(r, n), spearman=spearman(pred, y), undefined=None)
    if math.isnan(r):  # a constant prediction (the majority floor) has no correlation: say so, never a number
        why = "constant prediction" if n >= 2 and float(pred.std()) == 0 else "fewer than two samples or constant labels"
        values = dict(value=None, ci95=(None, None), spearman=None, undefined=f"Pearson r is undefined ({why})")
    return RegressionQuality(metric="pearson_r", n=n, ci_method="fisher_z", mse_label_var=mse, rmse=math.sqrt(mse) * label_std,
                             mae=float(err.abs().mean()) * label_std if n else math.nan, split=split, note=note, **values)


def quality_record(outputs: torch.Tensor, labels: torch.Tensor, label_std: float, split: str, note: str,
                   problem: Problem) -> Quality:
    """The task's headline quality: accuracy (classification) or Pearson r (regression)."""
    check_labels(labels, problem)
    if problem == "regression":
        return regression_record(outputs, labels, label_std, split, note)
    return accuracy_record(int((outputs.argmax(-1) == labels).sum()), len(labels), split, note)


def samples_record(logits: torch.Tensor, blocks: torch.Tensor, test, problem: str) -> Samples | None:
    """Each test sample's answer, label and exit block (``metrics.samples``: the paired tests read
    it); None when the split is too large to store per sample (the record then says nothing
    per sample, and paired tests fall back to unpaired ones, labelled)."""
    n = len(test.labels)
    if n == 0 or n > MAX_SAMPLES:
        return None
    regression = problem == "regression"
    pred = logits.reshape(n, -1)[:, 0] if regression else logits.argmax(-1)
    digest = split_digest(test.input_ids, test.attention_mask.sum(1), test.labels)
    return Samples.pack(pred.detach().cpu().numpy(), test.labels.cpu().numpy(), blocks.cpu().numpy(),
                        digest=digest, regression=regression)
