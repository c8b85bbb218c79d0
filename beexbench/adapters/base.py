"""The model interface every benchmarked model implements (built-in or plugged in).

Seven methods, as small as lm-evaluation-harness's model interface:

* ``build(config, spec)``     - a fresh, untrained model for a task shape;
* ``fit(train, val, ...)``   - train (or quantize, or calibrate) it;
* ``forward(ids, mask)``      - every exit's logits (all blocks run);
* ``predict(ids, mask)``      - deployment inference: answer logits and the exit block
                                 each sample took (rows that exit leave the batch);
* ``save(dir)`` / ``load(dir)`` - a safetensors + JSON checkpoint (never pickle);
* ``precision()``             - the bits of every parameter and every product, which the
                                 size and operation counters read;
* ``module()``                - the ``nn.Module`` the counters and profilers run.

:class:`beexbench.adapters.encoder_adapter.EncoderAdapter` is an optional helper base that
implements all of them for models built on the shared encoder.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from ..errors import BeexError
from ..models.exits import ExitDecision
from ..progress import NULL_PROGRESS, Progress
from ..training.batches import EncodedSplit
from ..training.calibrate import CostFn


@dataclass(frozen=True)
class TaskSpec:
    """The shape of the task a model is built for."""

    task: str
    num_labels: int  # classes, or 1 for regression
    vocab_size: int
    max_len: int
    tokenizer_sha256: str = ""
    problem: str = "classification"  # or "regression"
    # regression: the train labels' mean and std; the model predicts (label - mean) / std
    label_mean: float = 0.0
    label_std: float = 1.0

    def to_dict(self) -> dict:
        """As stored in checkpoints; classification specs leave out the regression fields
        (so checkpoints written before regression existed keep their identity)."""
        d = asdict(self)
        if self.problem == "classification":
            for key in ("problem", "label_mean", "label_std"):
                d.pop(key)
        return d


@dataclass(frozen=True)
class Precision:
    """Declared storage bits of every parameter, and operand bits of every product.

    ``params``: parameter name -> bits at deployment (1 binarized weight, 8 int8, 32 fp32).
    ``products``: module name -> (bits of input operand, bits of weight/second operand)
    for every Linear and matrix product the model runs.
    """

    params: dict[str, int]
    products: dict[str, tuple[int, int]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class FitReport:
    epochs: int
    steps: int
    seconds: float
    best_epoch: int
    val_accuracy: float  # the best validation score, in the metric ``val_metric`` names
    history: tuple[dict, ...] = ()
    calibration: dict | None = None
    val_metric: str = "accuracy"  # or "pearson_r" (regression)
    selected_by: str = "final exit"  # what picked the best epoch on val: the final exit or the deployed rule
    stopped_early: bool = False  # training stopped before ``train.epochs`` (no gain for ``train.patience`` epochs)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict | None) -> "FitReport | None":
        """As stored in a checkpoint's JSON (None when it has no training record)."""
        if not doc:
            return None
        try:
            return cls(**{**doc, "history": tuple(doc.get("history") or ())})
        except TypeError as exc:
            raise BeexError(f"a checkpoint's training record does not match this beexbench ({exc}): retrain the model") from None


class ModelAdapter(ABC):
    name: ClassVar[str] = ""  # registry name; set by the registry when built by name
    supports_early_exit: ClassVar[bool] = False
    # A model made from another trained model without training (post-training quantization,
    # packing, switching exits off) names it here and implements ``derive``; the runner then
    # trains (or reuses) that model's checkpoint once and derives this one from it.
    derived_from: ClassVar[str | None] = None
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")  # device types it runs on
    problems: ClassVar[tuple[str, ...]] = ("classification",)  # task kinds it can be built for
    # False where ``fit`` is closed-form or a solver outside torch (scikit-learn): the module's
    # parameters are not trained by gradient steps, so the gradient contract test does not apply.
    fit_by_gradient: ClassVar[bool] = True
    # A reference floor (``majority``, ``bow-linear``): added to every run's tasks, shown in
    # reports as a reference line and row, never as a candidate on the Pareto fronts.
    reference_floor: ClassVar[bool] = False

    spec: TaskSpec
    config: dict[str, Any]
    fit_report: FitReport | None = None

    @classmethod
    @abstractmethod
    def build(cls, config: dict[str, Any], spec: TaskSpec) -> "ModelAdapter": ...

    @abstractmethod
    def fit(
        self, train: EncodedSplit, val: EncodedSplit, progress: Progress = NULL_PROGRESS, cost_fn: CostFn | None = None
    ) -> FitReport:
        """Train on ``train``, select and calibrate on ``val`` only. ``cost_fn(exit_block,
        lengths)`` gives per-sample MACs, for calibrating exit rules against real cost."""

    @abstractmethod
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]: ...

    @abstractmethod
    def predict(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> ExitDecision: ...

    @abstractmethod
    def save(self, directory: Path) -> Path: ...

    @classmethod
    @abstractmethod
    def load(cls, directory: Path) -> "ModelAdapter": ...

    @abstractmethod
    def precision(self) -> Precision: ...

    @abstractmethod
    def module(self) -> torch.nn.Module:
        """The nn.Module that the operation counter and the profilers run."""

    @classmethod
    def problem_refusal(cls, problem: str) -> str | None:
        """Why this model cannot be built for a ``problem`` task, or None when it can."""
        if problem in cls.problems:
            return None
        return f"{cls.name or cls.__name__} is built for {' and '.join(cls.problems)} tasks, not {problem}"

    # Optional hooks with sensible defaults ---------------------------------------
    @classmethod
    def config_problems(cls, config: dict[str, Any], problem: str = "classification") -> list[str]:
        """Every problem with ``config`` (the overrides a run gives this model), one line each,
        found before any data is loaded: [] when it is fine. Default: build the model for a
        tiny task shape (the global RNG is left as it was) and report what that raises."""
        spec = TaskSpec("config-check", 1 if problem == "regression" else 2, vocab_size=16, max_len=8, problem=problem)
        try:
            with torch.random.fork_rng(devices=[]):
                cls.build(config, spec)
        except Exception as exc:  # a plugin's build may raise anything: report it, do not crash
            return [str(exc).splitlines()[0] if str(exc) else type(exc).__name__]
        return []

    @classmethod
    def derive(cls, source: "ModelAdapter", val: EncodedSplit, cost_fn: CostFn | None = None) -> "ModelAdapter":
        """This model made from a trained ``derived_from`` model, calibrated on ``val`` only."""
        raise TypeError(f"{cls.__name__} declares no derived_from model")  # only called when declared

    def deployable_files(self, directory: Path) -> list[Path]:
        """The files a deployment ships (for size on disk); default: the checkpoint."""
        return sorted(p for p in Path(directory).iterdir() if p.is_file())
