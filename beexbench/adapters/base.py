"""The model interface every benchmarked model implements (built-in or plugged in).

Eight methods, as small as lm-evaluation-harness's model interface:

* ``build(settings, spec)``   - a fresh, untrained model for a task shape: ``settings`` is the
                                 resolved :class:`~beexbench.adapters.spec.ModelSpec` (the
                                 registry and the runner resolve a run's overrides once,
                                 :meth:`ModelAdapter.resolve_settings`), or the settings dict of a
                                 model with settings of its own (``uses_model_spec = False``);
* ``fit(train, val, ...)``   - train (or quantize, or calibrate) it;
* ``forward(ids, mask)``      - every exit's logits (all blocks run);
* ``predict(ids, mask)``      - deployment inference: answer logits and the exit block
                                 each sample took (rows that exit leave the batch);
* ``save(dir)`` / ``load(dir)`` - a safetensors + JSON checkpoint (never pickle);
* ``precision()``             - the bits of every parameter and every product, which the
                                 size and operation counters read;
* ``module()``                - the ``nn.Module`` the counters and profilers run.

and what its consumers read, declared here with defaults: ``role`` (subject, ablation of X,
deployment of X, baseline, full-precision reference or reference floor:
:mod:`beexbench.adapters.roles`), ``uses_model_spec`` (its settings are a
:class:`~beexbench.adapters.spec.ModelSpec`, ``defaults`` over the field defaults, see
:meth:`ModelAdapter.default_spec`: the runner then applies the suite's ``[model]`` settings, the
task's recipe and the seed at ``train.seed``), ``devices``, ``problems``, ``training_note``,
``op_handles()`` (none) and ``deployable_files()`` (the checkpoint).

What only some models are is an optional protocol (:mod:`beexbench.adapters.protocols`), probed
with ``isinstance`` / ``issubclass``, never by the model's name: ``Exits`` / ``EarlyExit`` (an exit
layout, a deployed exit rule and its variants), ``Derived`` (``derived_from`` / ``derive``: made
from another trained model without training) and ``NeedsTrainedInputs`` (``trained_inputs`` /
``take_trained``: a fine-tuned network to start from, a teacher to distil). A model inherits the
protocol's base or just defines its methods.

:class:`beexbench.adapters.encoder_adapter.EncoderAdapter` is an optional helper base that
implements all of them for models built on the shared encoder.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from ..errors import BeexError, ConfigError
from ..models.exits import ExitDecision
from ..progress import NULL_PROGRESS, Progress
from ..training.batches import EncodedSplit
from ..training.calibrate import CostFn
from ..training.config import merge
from .roles import BASELINE, REFERENCE_FLOOR, Role
from .spec import ModelSpec


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


@dataclass(frozen=True, eq=False)
class ExitLayout:
    """Where a model's exits are: ``exit_blocks`` (1-based, ascending) are the blocks an exit head
    follows, out of ``n_blocks``. ``blocks`` and ``heads`` are the modules of blocks 1..n and of
    the head after each exit block, for profilers that cost a model per depth (empty: the model
    is not made of blocks - one exit, after its one "block")."""

    n_blocks: int = 1
    exit_blocks: tuple[int, ...] = (1,)
    blocks: tuple[torch.nn.Module, ...] = ()
    heads: tuple[torch.nn.Module, ...] = ()

    @classmethod
    def of_encoder(cls, module: torch.nn.Module) -> "ExitLayout":
        """The layout of an encoder with ``blocks``, ``exit_blocks`` and ``head_for(block)``."""
        exits = tuple(module.exit_blocks)
        return cls(len(module.blocks), exits, tuple(module.blocks), tuple(module.head_for(b) for b in exits))

    def head_for(self, block: int) -> torch.nn.Module | None:
        """The exit head after ``block`` (1-based), or None when that block has none."""
        return self.heads[self.exit_blocks.index(block)] if block in self.exit_blocks and self.heads else None


class ModelAdapter(ABC):
    name: ClassVar[str] = ""  # registry name; set by the registry when built by name
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")  # device types it runs on
    problems: ClassVar[tuple[str, ...]] = ("classification",)  # task kinds it can be built for
    # False where ``fit`` is closed-form or a solver outside torch (scikit-learn): the module's
    # parameters are not trained by gradient steps, so the gradient contract test does not apply.
    fit_by_gradient: ClassVar[bool] = True
    # What the model is in a benchmark (see beexbench.adapters.roles); recorded with every cell.
    role: ClassVar[Role] = BASELINE
    training_note: ClassVar[str] = "trained from scratch on the task's train split; no distillation"
    # Its settings are a ModelSpec: ``defaults`` (and ``regression_defaults``) are nested dicts
    # merged over the parent class's, and the runner applies the suite's [model] settings, the
    # task's recipe and the seed (train.seed). False: settings of its own (``defaults`` is then
    # whatever the model reads), only the run's per-model overrides apply and no seed is set.
    uses_model_spec: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = {}
    regression_defaults: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("reference_floor") and "role" not in cls.__dict__:  # the flag before roles existed
            cls.role = REFERENCE_FLOOR

    spec: TaskSpec
    config: dict[str, Any]
    fit_report: FitReport | None = None

    @classmethod
    @abstractmethod
    def build(cls, settings: "ModelSpec | dict[str, Any]", spec: TaskSpec) -> "ModelAdapter":
        """A fresh, untrained model: ``settings`` is what :meth:`resolve_settings` gives (a whole
        ModelSpec, or a model's own settings dict); converting a run's overrides is not its job."""

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
    def unavailable(cls) -> str | None:
        """Why this model cannot run on this machine (a missing optional dependency, one line
        naming the extra that installs it), or None when it can."""
        return None

    @classmethod
    def problem_refusal(cls, problem: str) -> str | None:
        """Why this model cannot be built for a ``problem`` task, or None when it can."""
        if problem in cls.problems:
            return None
        return f"{cls.name or cls.__name__} is built for {' and '.join(cls.problems)} tasks, not {problem}"

    # Settings ---------------------------------------------------------------------
    @classmethod
    def default_spec(cls, problem: str = "classification") -> ModelSpec:
        """The settings this model is registered with (timm's default config): the ModelSpec
        field defaults, then ``defaults`` of each class along the hierarchy, base first; for a
        regression task each class's ``regression_defaults`` right after its own ``defaults``."""
        if not cls.uses_model_spec:
            raise TypeError(f"{cls.__name__} has settings of its own (uses_model_spec = False), not a ModelSpec")
        doc = ModelSpec().to_dict()
        layers = ("defaults", "regression_defaults") if problem == "regression" else ("defaults",)
        for klass in reversed(cls.__mro__):
            for layer in layers:
                own = klass.__dict__.get(layer)
                if own:
                    doc = merge(doc, own, where="model")
        return ModelSpec.from_dict(doc)

    @classmethod
    def resolve_spec(cls, overrides: "dict[str, Any] | ModelSpec | None", problem: str = "classification") -> ModelSpec:
        """The registered spec with a run's ``overrides`` (a partial ModelSpec) merged in."""
        return cls.default_spec(problem).merged(overrides)

    @classmethod
    def resolve_settings(cls, overrides: "dict[str, Any] | ModelSpec | None",
                         problem: str = "classification") -> "ModelSpec | dict[str, Any]":
        """What :meth:`build` takes for a run's ``overrides``, converted once here (the registry's
        ``create_model`` and the config check call it): the resolved ModelSpec (:meth:`resolve_spec`)
        of a ModelSpec model; a model with settings of its own gets its overrides as a dict."""
        return cls.resolve_spec(overrides, problem) if cls.uses_model_spec else dict(overrides or {})

    @classmethod
    def config_problems(cls, config: dict[str, Any], problem: str = "classification") -> list[str]:
        """Every problem with ``config`` (the overrides a run gives this model), one line each,
        found before any data is loaded: [] when it is fine. A ModelSpec model's settings are
        checked by the spec (all at once); when they are fine (or for settings of its own), the
        model is built for a tiny task shape (the global RNG is left as it was) and what that
        raises is reported."""
        if cls.uses_model_spec:
            try:
                found = cls.resolve_spec(config, problem).problems(problem)
            except ConfigError as exc:
                found = exc.problems
            except BeexError as exc:
                found = [str(exc)]
            if found:
                return found
        try:
            spec = cls.check_task(config, problem)
            with torch.random.fork_rng(devices=[]):
                cls.build(cls.resolve_settings(config, problem), spec)
        except Exception as exc:  # a plugin's build may raise anything: report it, do not crash
            return [str(exc).splitlines()[0] if str(exc) else type(exc).__name__]
        return []

    @classmethod
    def check_task(cls, config: dict[str, Any], problem: str) -> TaskSpec:
        """The tiny task :meth:`config_problems` builds the model for (a model whose inputs must
        have a given vocabulary, such as one on a pretrained backbone, says so here)."""
        return TaskSpec("config-check", 1 if problem == "regression" else 2, vocab_size=16, max_len=8, problem=problem)

    def op_handles(self) -> dict:
        """Operation-counter handles (op name -> handle) for ops this model runs that the counter's
        base set does not know (``beexbench.profilers``); default: none."""
        return {}

    def deployable_files(self, directory: Path) -> list[Path]:
        """The files a deployment ships (for size on disk); default: the checkpoint."""
        return sorted(p for p in Path(directory).iterdir() if p.is_file())


def expect_spec(cls: type, settings: Any) -> ModelSpec:
    """``settings`` when it is a :class:`ModelSpec`; a TypeError naming the fix otherwise (a dict
    of overrides is resolved once, by whoever builds the model: ``cls.resolve_spec(overrides, problem)``)."""
    if not isinstance(settings, ModelSpec):
        raise TypeError(f"{getattr(cls, 'name', '') or cls.__name__} is built from a ModelSpec, not a "
                        f"{type(settings).__name__}: resolve a run's overrides first with "
                        f"{cls.__name__}.resolve_spec(overrides, problem) (create_model does), or read a "
                        "recorded config with ModelSpec.from_dict(config)")
    return settings
