"""Reference floors: what a model must beat to be worth its cost.

* ``majority``   answers the most frequent train label (regression: the train mean);
* ``bow-linear`` TF-IDF of the token-id unigrams and bigrams of each text, then logistic
                 regression (classification) or ridge regression (regression)
                 (:mod:`baselines.bow_linear`, re-exported here).

Both are fitted with scikit-learn on the task's train split (``bow-linear`` picks its
settings on the validation split, never on test) and then run as ordinary torch modules,
so the size, latency and operation profilers measure them like every other model. The
n-grams are over the ids of the project's own tokenizer: the same input every other
model sees.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from beexbench.adapters.base import FitReport, TaskSpec
from beexbench.progress import NULL_PROGRESS, Progress
from beexbench.training.batches import EncodedSplit
from beexbench.training.metrics import metric_name, score

from ._floor import ABSENT_LOGIT, _Floor
from .bow_linear import BowLinear, BowLinearModule, ngram_keys, text_ngrams


# -- majority ------------------------------------------------------------------------------
class ConstantModule(nn.Module):
    """The same logits for every input (no products, no parameters to train)."""

    def __init__(self, n_out: int) -> None:
        super().__init__()
        self.register_buffer("logits", torch.zeros(n_out))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(input_ids.shape[0], -1).clone()


class Majority(_Floor):
    """Reference floor: the most frequent train label (regression: the train mean), scikit-learn's dummy model."""

    def __init__(self, config: dict[str, Any], spec: TaskSpec) -> None:
        super().__init__(config, spec)
        self.net = ConstantModule(self.n_out)

    def module(self) -> nn.Module:
        return self.net

    def fit(self, train: EncodedSplit, val: EncodedSplit, progress: Progress = NULL_PROGRESS, cost_fn=None) -> FitReport:
        from sklearn.dummy import DummyClassifier, DummyRegressor

        start = time.perf_counter()
        x = np.zeros((len(train), 1))
        y = train.labels.numpy()
        if self.regression:
            model = DummyRegressor(strategy="mean").fit(x, y)
            logits = torch.tensor([float(np.ravel(model.constant_)[0])])
            note = "constant prediction: Pearson r is undefined (its selection score counts as 0)"
        else:
            model = DummyClassifier(strategy="prior").fit(x, y)
            # log of the train class frequencies (softmax = the prior); a class the train split
            # lacks gets a finite logit far below every present one
            logits = torch.full((self.n_out,), ABSENT_LOGIT)
            logits[torch.as_tensor(model.classes_, dtype=torch.long)] = torch.tensor(np.log(model.class_prior_), dtype=torch.float32)
            note = f"answers class {int(model.classes_[int(np.argmax(model.class_prior_))])} (most frequent in train)"
        self.net.logits.copy_(logits)
        val_out = self.forward(val.input_ids, val.attention_mask)[0]
        self.fit_report = FitReport(epochs=0, steps=0, seconds=time.perf_counter() - start, best_epoch=0,
                                    val_accuracy=score(val_out, val.labels), val_metric=metric_name(val.labels),
                                    history=({"fit": "sklearn.dummy", "note": note},),
                                    selected_by="closed form (no choice made on val)")
        return self.fit_report

    @classmethod
    def load(cls, directory: Path) -> "Majority":
        return cls._restore(directory, lambda adapter, doc, tensors: None)


__all__ = ["BowLinear", "BowLinearModule", "Majority", "ngram_keys", "text_ngrams"]
