"""Optional helper base: everything a model built on :class:`EarlyExitEncoder` needs.

A variant only declares ``defaults`` (a nested dict merged over its parent's)::

    @register_model("beexformer-ste")
    class BEExformerSTE(BEExformer):
        defaults = {"encoder": {"estimator": "ste"}}

and, where its exit rule needs class probabilities, ``regression_defaults``: what changes
for a regression task (merged right after the same class's ``defaults``).
"""
from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import BeexError
from ..models.attention import ATTENTION_PROBS, MatMul
from ..models.encoder import BinaryEmbedding, EarlyExitEncoder, EncoderConfig
from ..models.exits import AbsoluteEntropy, ExitDecision, ExitRule, FractionalEntropy, Patience, PredictionChange
from ..models.ffn import FFN_KINDS
from ..models.layers import QuantLinear
from ..models.losses import LOSSES, exit_loss
from ..models.quantizers import ESTIMATORS
from ..progress import NULL_PROGRESS, Progress
from ..training.batches import EncodedSplit
from ..training.calibrate import CostFn, all_exit_logits, choose, sweep
from ..training.config import TrainConfig, build_dataclass, merge
from ..training.loop import SCHEDULES, train
from ..training.metrics import metric_name, score
from ..validate import bounded, one_of
from .base import FitReport, ModelAdapter, Precision, TaskSpec
from .checkpoint import read_checkpoint, write_checkpoint

RULES = {"final": ExitRule, "fractional-entropy": FractionalEntropy, "absolute-entropy": AbsoluteEntropy,
         "patience": Patience, "prediction-change": PredictionChange}

BASE_DEFAULTS: dict[str, Any] = {
    "encoder": EncoderConfig().to_dict(),
    "train": TrainConfig().__dict__,
    "loss": {"kind": "final", "delta": 0.1, "tau": 0.05, "floor": 0.3, "min_exit": 2},
    # exit rule at inference; parameters a rule does not take stay None
    "exit": {"rule": "final", "delta": None, "min_exit": None, "answer": None, "threshold": None, "patience": None,
             "agree_within": None},
    # candidate parameter values tried on the validation split; {} = no calibration
    "calibration": {"param": None, "grid": [], "tolerance": 0.005},
}


def make_rule(spec: dict[str, Any], problem: str = "classification") -> ExitRule:
    """Build the rule ``spec["rule"]`` from the parameters it takes (the others are ignored,
    so a variant can switch rules without clearing its parent's parameters)."""
    kind = spec.get("rule", "final")
    if kind not in RULES:
        raise BeexError(f"unknown exit rule '{kind}': use one of {', '.join(RULES)}")
    if problem not in RULES[kind].problems:
        fits = [k for k, r in RULES.items() if problem in r.problems]
        raise BeexError(f"exit rule '{kind}' is not defined for {problem} tasks: use one of {', '.join(fits)}")
    takes = inspect.signature(RULES[kind].__init__).parameters
    kwargs = {k: v for k, v in spec.items() if k in takes and k != "self" and v is not None}
    try:
        return RULES[kind](**kwargs)
    except TypeError as exc:
        raise BeexError(f"bad parameters for exit rule '{kind}': {exc}") from None


def _merged_defaults(cls: type, problem: str = "classification") -> dict[str, Any]:
    """``defaults`` along the class hierarchy, base first; for regression each class's
    ``regression_defaults`` amend its own ``defaults`` (so a subclass's choices still win)."""
    out = BASE_DEFAULTS
    layers = ("defaults", "regression_defaults") if problem == "regression" else ("defaults",)
    for klass in reversed(cls.__mro__):
        for layer in layers:
            own = klass.__dict__.get(layer)
            if own:
                out = merge(out, own, where="model")
    return out


def encoder_problems(enc: EncoderConfig) -> list[str]:
    """Out-of-range or unknown encoder settings, one line each (built models check the rest)."""
    w = "model.encoder."
    sizes = {key: bounded(w + key, getattr(enc, key), 1, integer=True) for key in ("d_model", "n_heads", "n_blocks", "d_ff")}
    if not sizes["d_model"] + sizes["n_heads"] and enc.d_model % enc.n_heads:
        sizes["n_heads"] = [f"'{w}d_model' ({enc.d_model}) must be divisible by '{w}n_heads' ({enc.n_heads})"]
    rates = [p for key in ("dropout", "token_dropout") if hasattr(enc, key)
             for p in bounded(w + key, getattr(enc, key), 0, 1, below=True)]
    return sum(sizes.values(), []) + rates + one_of(w + "estimator", enc.estimator, ESTIMATORS) + one_of(w + "ffn", enc.ffn, FFN_KINDS) \
        + one_of(w + "attention_probs", enc.attention_probs, ATTENTION_PROBS)


def train_problems(tc: TrainConfig) -> list[str]:
    """Out-of-range or unknown training settings, one line each."""
    w = "model.train."
    return (bounded(w + "epochs", tc.epochs, 1, integer=True) + bounded(w + "batch_size", tc.batch_size, 1, integer=True)
            + bounded(w + "lr", tc.lr, 0, above=True) + bounded(w + "weight_decay", tc.weight_decay, 0)
            + bounded(w + "warmup_ratio", tc.warmup_ratio, 0, 1) + bounded(w + "clip_norm", tc.clip_norm, 0, optional=True)
            + bounded(w + "patience", tc.patience, 0, integer=True)
            + bounded(w + "length_buckets", tc.length_buckets, 0, integer=True)
            + bounded(w + "max_train_examples", tc.max_train_examples, 1, integer=True, optional=True)
            + one_of(w + "schedule", tc.schedule, SCHEDULES))


def loss_problems(loss: dict[str, Any]) -> list[str]:
    w = "model.loss."
    return (one_of(w + "kind", loss.get("kind"), LOSSES) + bounded(w + "tau", loss.get("tau"), 0, above=True)
            + bounded(w + "delta", loss.get("delta")) + bounded(w + "floor", loss.get("floor"), 0, 1)
            + bounded(w + "min_exit", loss.get("min_exit"), 1, integer=True))


def _section_problems(config: dict[str, Any], problem: str) -> list[str]:
    """Every problem of a merged encoder-model config, section by section."""
    out: list[str] = []
    for cls, key, check in ((EncoderConfig, "encoder", encoder_problems), (TrainConfig, "train", train_problems)):
        try:
            out += check(build_dataclass(cls, config[key], where=f"model.{key}"))
        except BeexError as exc:
            out.append(str(exc))
    out += loss_problems(config["loss"])
    try:
        make_rule(config["exit"], problem)
    except BeexError as exc:
        out.append(str(exc))
    return out


class EncoderAdapter(ModelAdapter):
    defaults: ClassVar[dict[str, Any]] = {}
    regression_defaults: ClassVar[dict[str, Any]] = {}
    problems = ("classification", "regression")

    def __init__(self, config: dict[str, Any], spec: TaskSpec) -> None:
        refusal = self.problem_refusal(spec.problem)
        if refusal:
            raise BeexError(f"{refusal} ('{spec.task}'): pick another model or task")
        self.config, self.spec = config, spec
        self.encoder_config = build_dataclass(EncoderConfig, config["encoder"], where="model.encoder")
        self.train_config = build_dataclass(TrainConfig, config["train"], where="model.train")
        self.rule = make_rule(config["exit"], spec.problem)
        self.model = EarlyExitEncoder(
            self.encoder_config, vocab_size=spec.vocab_size, max_len=spec.max_len, num_labels=spec.num_labels
        )
        self.model.eval()
        self.fit_report: FitReport | None = None

    @property
    def supports_early_exit(self) -> bool:  # type: ignore[override]
        return self.encoder_config.exit_heads and self.model.n_exits > 1

    # -- contract -------------------------------------------------------------------
    @classmethod
    def build(cls, config: dict[str, Any], spec: TaskSpec) -> "EncoderAdapter":
        return cls(merge(_merged_defaults(cls, spec.problem), config, where="model"), spec)

    @classmethod
    def config_problems(cls, config: dict[str, Any], problem: str = "classification") -> list[str]:
        """Every setting checked without data (all reported at once); when they are all
        fine, the model is built for a tiny task shape, which checks what the class adds."""
        try:
            merged = merge(_merged_defaults(cls, problem), config, where="model")
        except BeexError as exc:
            return [str(exc)]
        return _section_problems(merged, problem) or super().config_problems(config, problem)

    def loss(self, exit_logits: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        lc = self.config["loss"]
        kind = lc["kind"] if len(exit_logits) > 1 else "final"
        return exit_loss(kind, exit_logits, labels, delta=lc["delta"], tau=lc["tau"], floor=lc["floor"], min_exit=lc["min_exit"])

    def fit(self, train_split: EncodedSplit, val: EncodedSplit, progress: Progress = NULL_PROGRESS, cost_fn: CostFn | None = None) -> FitReport:
        calibrated = bool(self.config["calibration"]["grid"])
        per_epoch: list[dict] = []

        def select(model: nn.Module) -> float:
            # an early-exit model is selected by what it deploys: the exit rule, calibrated on
            # val at every epoch, scored on val (the final exit alone would pick another epoch)
            per_epoch.append(self._calibration(val, cost_fn))
            return per_epoch[-1]["deployed_accuracy"]

        log = train(self.model, self.loss, train_split, val, self.train_config, description=f"train {self.name}",
                    progress=progress, select=select if calibrated else None,
                    selected_by=f"deployed rule ({self.rule.name}, calibrated on val)" if calibrated else "final exit")
        # the restored best epoch's calibration, as computed when that epoch was scored
        calibration = self._use(per_epoch[log["best_epoch"] - 1]) if calibrated else None
        self.fit_report = FitReport(**log, calibration=calibration)
        return self.fit_report

    def _calibration(self, val: EncodedSplit, cost_fn=None) -> dict:
        """Sweep the exit rule's parameter on the validation split and pick the cheapest
        setting within ``tolerance`` of the no-exit score (accuracy, or Pearson r)."""
        cal = self.config["calibration"]
        self.model.eval()
        logits = all_exit_logits(self.model, val)
        lengths = val.attention_mask.sum(1)
        reference = score(logits[-1], val.labels)
        rules = [make_rule({**self.config["exit"], cal["param"]: v}, self.spec.problem) for v in cal["grid"]]
        rows = sweep(rules, logits, val.labels, lengths, cost_fn, self.model.exit_blocks)
        metric = metric_name(val.labels)
        best = choose(rows, reference, cal["tolerance"], metric)
        return {"split": "val", "param": cal["param"], "metric": metric, "reference_accuracy": reference,
                "tolerance": cal["tolerance"], "chosen": cal["grid"][best], "deployed_accuracy": rows[best][metric],
                "sweep": rows}

    def calibrate(self, val: EncodedSplit, cost_fn=None) -> dict:
        """Calibrate the exit rule on the validation split (see :meth:`_calibration`) and use it."""
        return self._use(self._calibration(val, cost_fn))

    def _use(self, result: dict) -> dict:
        """Deploy the parameter a calibration chose."""
        self.config = merge(self.config, {"exit": {result["param"]: result["chosen"]}})
        self.rule = make_rule(self.config["exit"], self.spec.problem)
        return result

    @classmethod
    def derive(cls, source: ModelAdapter, val: EncodedSplit, cost_fn: CostFn | None = None) -> "EncoderAdapter":
        """The same trained network with this variant's exit rule (and its calibration)."""
        own = _merged_defaults(cls, source.spec.problem)
        config = merge(source.config, {"exit": own["exit"], "calibration": own["calibration"]}, where="model")
        out = cls(config, source.spec)
        out.model.load_state_dict(source.module().state_dict())
        out.model.eval()
        report = source.fit_report.to_dict() if source.fit_report else None
        calibration = out.calibrate(val, cost_fn) if config["calibration"]["grid"] else None
        if report is not None:
            report["calibration"] = calibration
            out.fit_report = FitReport(**report)
        return out

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        return self.model(input_ids, attention_mask)

    def predict(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> ExitDecision:
        return self.model.infer(input_ids, attention_mask, self.rule)

    def module(self) -> nn.Module:
        return self.model

    def set_rule(self, rule: ExitRule) -> None:
        self.rule = rule

    def save(self, directory: Path) -> Path:
        meta = {
            "config": self.config,
            "task": self.spec.to_dict(),
            "fit": self.fit_report.to_dict() if self.fit_report else None,
        }
        return write_checkpoint(Path(directory), self.name, self.model.state_dict(), json.loads(json.dumps(meta)))

    @classmethod
    def load(cls, directory: Path) -> "EncoderAdapter":
        tensors, doc = read_checkpoint(Path(directory), cls.name)
        try:
            adapter = cls(doc["config"], TaskSpec(**doc["task"]))
            adapter.model.load_state_dict(tensors, strict=True)
        except (KeyError, TypeError, RuntimeError, BeexError) as exc:
            raise BeexError(f"checkpoint {directory} does not match model '{cls.name}' ({str(exc).splitlines()[0]}): retrain it") from None
        adapter.fit_report = FitReport.from_dict(doc.get("fit"))
        adapter.model.eval()
        return adapter

    def precision(self) -> Precision:
        return module_precision(self.model)


def module_precision(model: nn.Module) -> Precision:
    """Read the precision each module declares (QuantLinear, MatMul, BinaryEmbedding)."""
    params: dict[str, int] = {name: 32 for name, _ in model.named_parameters()}
    products: dict[str, tuple[int, int]] = {}
    for mname, mod in model.named_modules():
        prefix = f"{mname}." if mname else ""
        if isinstance(mod, QuantLinear):
            params[f"{prefix}weight"] = mod.weight_bits
            products[mname] = (mod.act_bits, mod.weight_bits)
        elif isinstance(mod, nn.Linear):
            products[mname] = (32, 32)
        elif isinstance(mod, MatMul):
            products[mname] = (mod.bits, mod.bits)
        elif isinstance(mod, BinaryEmbedding):
            params[f"{prefix}weight"] = 1
    return Precision(params=params, products=products)
