"""``bow-linear``, the second reference floor: TF-IDF of the token-id unigrams and bigrams of
each text, then logistic regression (classification) or ridge regression (regression), fitted
with scikit-learn (settings chosen on val) and run as a torch module.

``bow-linear``'s module (for one text of ``L`` real tokens, ``P = 2L - 1`` n-grams):

1. n-gram keys: a unigram is its token id ``t``, a bigram ``(a, b)`` is ``(a + 1)·V + b``
   (``V`` the vocabulary size), so every key is unique;
2. each key is looked up by binary search (``torch.searchsorted``) in the sorted table of
   the n-grams scikit-learn kept (its vocabulary, in the same sorted order as its columns);
   an unknown n-gram, or one that touches padding, goes to an extra column with idf 0;
3. the term frequency of each position's n-gram is the number of positions with the same
   column (a ``P × P`` comparison); the feature value is ``tf·idf`` (or ``(1 + ln tf)·idf``
   with sublinear tf), each of its ``tf`` occurrences carrying ``1/tf`` of it;
4. l2 normalisation (Σ over features of value² = Σ over positions of value²/tf), then the
   linear model: Σ_positions (value/tf/norm)·coef[column] + intercept.

This is the sparse computation of scikit-learn's ``TfidfVectorizer`` + ``decision_function``:
it costs what a deployed bag-of-words model costs (P·K multiply-accumulates for K outputs),
not a dense product over the whole vocabulary. The tests check it against scikit-learn's own
``decision_function`` on held-out data.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from beexbench.adapters.base import FitReport, TaskSpec
from beexbench.errors import BeexError
from beexbench.progress import NULL_PROGRESS, Progress
from beexbench.training.batches import EncodedSplit
from beexbench.training.metrics import metric_name, score

from ._floor import ABSENT_LOGIT, _Floor, _sklearn_version

INT32_MAX = 2**31 - 1


# -- bow-linear ----------------------------------------------------------------------------
def ngram_keys(input_ids: torch.Tensor, attention_mask: torch.Tensor, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, P] keys of every unigram and bigram position (P = 2L - 1) and whether each is real
    text (a bigram needs both tokens). Unigram key = t, bigram key = (a + 1)·V + b."""
    uni = input_ids
    bi = (input_ids[:, :-1] + 1) * vocab_size + input_ids[:, 1:]
    ok = torch.cat([attention_mask, attention_mask[:, :-1] & attention_mask[:, 1:]], 1)
    return torch.cat([uni, bi], 1), ok


def text_ngrams(ids: torch.Tensor, mask: torch.Tensor, vocab_size: int) -> list[list[int]]:
    """The same n-gram keys per row, as Python lists: scikit-learn's analyzer input."""
    keys, ok = ngram_keys(ids.long(), mask.bool(), vocab_size)
    return [row[m].tolist() for row, m in zip(keys, ok)]


def _identity(doc):
    return doc


class BowLinearModule(nn.Module):
    """TF-IDF of unigram + bigram keys, l2-normalised, then a linear model (see the module doc)."""

    def __init__(self, vocab_size: int, n_features: int, n_outputs: int, n_classes: int, sublinear_tf: bool) -> None:
        super().__init__()
        self.vocab_size, self.sublinear_tf, self.n_features = int(vocab_size), bool(sublinear_tf), int(n_features)
        key_dtype = torch.int32 if (vocab_size + 1) * vocab_size < INT32_MAX else torch.int64
        sentinel = torch.iinfo(key_dtype).max  # never a key: the column of every unknown n-gram
        self.register_buffer("keys", torch.full((n_features + 1,), sentinel, dtype=key_dtype))
        self.idf = nn.Parameter(torch.zeros(n_features + 1), requires_grad=False)
        self.head = _LinearHead(n_features + 1, n_outputs, n_classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        keys, ok = ngram_keys(input_ids.to(self.keys.dtype), attention_mask, self.vocab_size)
        pos = torch.searchsorted(self.keys, keys)  # <= n_features: the sentinel is larger than any key
        found = self.keys.index_select(0, pos.reshape(-1)).reshape(pos.shape) == keys
        col = torch.where(found & ok, pos, self.n_features)
        tf = (col.unsqueeze(2) == col.unsqueeze(1)).sum(-1).to(self.idf.dtype)  # positions sharing the n-gram
        idf = self.idf.index_select(0, col.reshape(-1)).reshape(col.shape)
        value = (torch.log(tf) + 1 if self.sublinear_tf else tf) * idf  # the n-gram's feature value
        share = value / tf  # each of its tf occurrences carries 1/tf of it
        norm = torch.sqrt((share * value).sum(-1, keepdim=True))
        return self.head(share / norm.clamp_min(1e-12), col)


class _LinearHead(nn.Module):
    """Σ_positions weight·coef[column] + intercept, then the outputs placed on the class columns
    (binary logistic regression has one output: the first class's logit is 0)."""

    def __init__(self, n_rows: int, n_outputs: int, n_classes: int) -> None:
        super().__init__()
        self.coef = nn.Parameter(torch.zeros(n_rows, n_outputs), requires_grad=False)
        self.intercept = nn.Parameter(torch.zeros(n_outputs), requires_grad=False)
        # class column -> source: 0..K-1 an output, K a zero logit, K+1 an absent class
        if n_classes == n_outputs:
            source = torch.arange(n_classes, dtype=torch.int32)
        elif n_outputs == 1 and n_classes == 2:  # binary: class 0's logit is 0, class 1's the decision
            source = torch.tensor([1, 0], dtype=torch.int32)
        else:
            source = torch.full((n_classes,), n_outputs + 1, dtype=torch.int32)
        self.register_buffer("class_source", source)

    def forward(self, weight: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
        rows = self.coef.index_select(0, col.reshape(-1)).reshape(*col.shape, -1)  # [B, P, K]
        z = torch.bmm(weight.unsqueeze(1), rows).squeeze(1) + self.intercept  # [B, K]
        fill = torch.full_like(z[:, :1], ABSENT_LOGIT)
        return torch.cat([z, torch.zeros_like(fill), fill], 1).index_select(1, self.class_source)


class BowLinear(_Floor):
    """Reference floor: TF-IDF of token uni+bigrams with logistic regression (ridge for regression), scikit-learn, settings chosen on val."""

    defaults = {
        "grid": {
            "sublinear_tf": [False, True],
            "min_df": [1, 2],
            "C": [1.0, 4.0, 16.0, 64.0],  # logistic regression (classification)
            "alpha": [0.3, 1.0, 3.0, 10.0],  # ridge (regression)
        },
        "max_iter": 2000,
    }

    def __init__(self, config: dict[str, Any], spec: TaskSpec, n_features: int = 0, n_outputs: int | None = None,
                 sublinear_tf: bool = False) -> None:
        super().__init__(config, spec)
        if n_outputs is None:
            n_outputs = 1 if self.regression or spec.num_labels == 2 else spec.num_labels
        self.net = BowLinearModule(spec.vocab_size, n_features, n_outputs, self.n_out, sublinear_tf)
        self.selected: dict[str, Any] = {}

    def module(self) -> nn.Module:
        return self.net

    def product_modules(self) -> tuple[str, ...]:
        return ("head",)

    def _vectorizer(self, sublinear_tf: bool, min_df: int):
        from sklearn.feature_extraction.text import TfidfVectorizer

        return TfidfVectorizer(analyzer=_identity, sublinear_tf=sublinear_tf, min_df=min_df, norm="l2",
                               use_idf=True, smooth_idf=True, dtype=np.float64)

    def _estimator(self, value: float):
        if self.regression:
            from sklearn.linear_model import Ridge

            return Ridge(alpha=value, random_state=0)
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=value, max_iter=int(self.config["max_iter"]))

    def fit(self, train: EncodedSplit, val: EncodedSplit, progress: Progress = NULL_PROGRESS, cost_fn=None) -> FitReport:
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from threadpoolctl import threadpool_limits

        start = time.perf_counter()
        V = self.spec.vocab_size
        docs_train = text_ngrams(train.input_ids, train.attention_mask, V)
        docs_val = text_ngrams(val.input_ids, val.attention_mask, V)
        y = train.labels.numpy()
        if not self.regression and len(np.unique(y)) < 2:
            raise BeexError(f"bow-linear needs at least two classes in the train split, got {np.unique(y).tolist()}")
        grid = self.config["grid"]
        param = "alpha" if self.regression else "C"
        history, best = [], None
        # one thread: scikit-learn's OpenMP loss threads stall on a busy machine (20x slower
        # measured with a training job beside it), and these fits are small
        with warnings.catch_warnings(), threadpool_limits(limits=1):
            warnings.simplefilter("ignore", ConvergenceWarning)
            for sub in grid["sublinear_tf"]:
                for min_df in grid["min_df"]:
                    vec = self._vectorizer(bool(sub), int(min_df))
                    try:
                        x_train = vec.fit_transform(docs_train)
                    except ValueError:  # no n-gram survives min_df
                        history.append({"sublinear_tf": bool(sub), "min_df": int(min_df), "skipped": "no n-gram kept"})
                        continue
                    x_val = vec.transform(docs_val)
                    for value in grid[param]:
                        est = self._estimator(float(value)).fit(x_train, y)
                        val_score = score(self._outputs(est, x_val), val.labels)
                        history.append({"sublinear_tf": bool(sub), "min_df": int(min_df), param: float(value),
                                        metric_name(val.labels): val_score, "n_features": int(x_train.shape[1])})
                        if best is None or val_score > best[0]:  # ties: the earlier (smaller, more regularised) setting
                            best = (val_score, vec, est, history[-1])
        if best is None:
            raise BeexError("bow-linear: no setting of the grid kept any n-gram of the train split")
        val_score, vec, est, row = best
        self._load_sklearn(vec, est)
        self.selected = dict(row)
        self.fit_report = FitReport(epochs=0, steps=0, seconds=time.perf_counter() - start, best_epoch=0,
                                    val_accuracy=val_score, val_metric=metric_name(val.labels),
                                    selected_by="grid over sublinear_tf, min_df and C (alpha) on val",
                                    history=tuple(history) + ({"selected_on": "val", "selected": row,
                                                               "fit": f"scikit-learn {_sklearn_version()}"},))
        return self.fit_report

    def _outputs(self, est, x) -> torch.Tensor:
        """scikit-learn's decision as the module's outputs: [N, 1] (regression) or [N, C] logits."""
        z = torch.as_tensor(np.asarray(est.predict(x) if self.regression else est.decision_function(x)), dtype=torch.float64)
        z = z.reshape(len(z), -1)
        if self.regression:
            return z
        out = torch.full((len(z), self.n_out), ABSENT_LOGIT, dtype=torch.float64)
        classes = torch.as_tensor(est.classes_, dtype=torch.long)
        if len(classes) == 2:
            out[:, classes[0]] = 0.0
            out[:, classes[1]] = z[:, 0]
        else:
            out[:, classes] = z
        return out

    def _load_sklearn(self, vec, est) -> None:
        """Copy a fitted vectorizer + linear model into the torch module."""
        items = sorted(vec.vocabulary_.items())
        keys = [k for k, _ in items]
        if [c for _, c in items] != list(range(len(items))):
            raise BeexError("bow-linear: scikit-learn's columns are not in key order")  # sklearn sorts its features
        coef = np.atleast_2d(est.coef_)  # [K, D]
        intercept = np.atleast_1d(est.intercept_)
        n_out = coef.shape[0]
        net = BowLinearModule(self.spec.vocab_size, len(keys), n_out, self.n_out, bool(vec.sublinear_tf))
        with torch.no_grad():
            net.keys[:-1] = torch.tensor(keys, dtype=net.keys.dtype)
            net.idf[:-1] = torch.as_tensor(vec.idf_, dtype=torch.float32)
            net.head.coef[:-1] = torch.as_tensor(coef.T, dtype=torch.float32)
            net.head.intercept.copy_(torch.as_tensor(intercept, dtype=torch.float32))
            if not self.regression:
                classes = [int(c) for c in est.classes_]
                source = torch.full((self.n_out,), n_out + 1, dtype=torch.int32)  # absent from train
                if n_out == 1:  # binary: the first class's logit is 0, the second's the decision
                    source[classes[0]], source[classes[1]] = n_out, 0
                else:
                    source[classes] = torch.arange(n_out, dtype=torch.int32)
                net.head.class_source.copy_(source)
        self.net = net.eval()

    def _meta(self) -> dict:
        return {**super()._meta(), "n_features": self.net.n_features, "n_outputs": int(self.net.head.coef.shape[1]),
                "sublinear_tf": self.net.sublinear_tf, "selected": self.selected}

    @classmethod
    def load(cls, directory: Path) -> "BowLinear":
        def make(adapter, doc, tensors):
            adapter.net = BowLinearModule(adapter.spec.vocab_size, int(doc["n_features"]), int(doc["n_outputs"]),
                                          adapter.n_out, bool(doc["sublinear_tf"]))
            adapter.selected = dict(doc.get("selected") or {})

        return cls._restore(directory, make)
