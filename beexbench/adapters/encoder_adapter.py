"""Optional helper base: everything a model built on :class:`EarlyExitEncoder` needs.

Its settings are a :class:`~beexbench.adapters.spec.ModelSpec`. A variant only declares
``defaults`` (a nested dict merged over its parent's, see ``ModelAdapter.default_spec``)::

    class BEExformerSTE(BEExformer):
        name = "beexformer-ste"
        defaults = {"encoder": {"estimator": "ste"}}

and, where its exit rule needs class probabilities, ``regression_defaults``: what changes
for a regression task (merged right after the same class's ``defaults``).

Every model here can start from a pretrained BERT-format encoder instead of a random one:
``backbone.name`` = a registered backbone or ``hf:<dir>`` (:mod:`beexbench.backbones`). A fresh
build (:meth:`EncoderAdapter.build`, what ``create_model`` and the runner call) resolves the
files, takes the architecture from the checkpoint's config.json over the model's own encoder
settings (its precision, exits and dropout stay its own; an architecture setting the run changed
from the model's registered default that contradicts the checkpoint is an error), checks that the
task was encoded for the backbone (vocabulary size, max_len within its positions), builds the
encoder and loads the weights (exit heads keep their seeded init; a binarized model starts from
the pretrained latent weights). The spec it keeps records the resolved architecture and the
weights' sha256, so a checkpoint (or a derived model) is rebuilt from the spec alone, without the
backbone's files. (Those steps, and copying another trained model's network in, are
:mod:`beexbench.adapters._encoder_init`.)
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import BeexError
from ..models.attention import MatMul
from ..models.encoder import BinaryEmbedding, EarlyExitEncoder, EncoderConfig
from ..models.exits import ExitDecision, ExitRule
from ..models.layers import QuantLinear
from ..models.losses import exit_loss
from ..progress import NULL_PROGRESS, Progress
from ..training.batches import EncodedSplit
from ..training.calibrate import CostFn, all_exit_logits, choose, sweep
from ..training.config import TrainConfig
from ..training.distill import Distiller
from ..training.loop import train
from ..training.metrics import metric_name, score
from ._encoder_init import BACKBONE_ARCHITECTURE, how_trained, on_backbone, start_from  # noqa: F401 (re-exported)
from .base import ExitLayout, FitReport, ModelAdapter, Precision, TaskSpec, expect_spec
from .checkpoint import read_checkpoint, write_checkpoint
from .protocols import EarlyExit, NeedsTrainedInputs
from .spec import RULES, SCRATCH, ModelSpec, make_rule  # noqa: F401  (make_rule and RULES: re-exported)

# the backbone files a fresh build (EncoderAdapter.build) resolved, for the encoder that build makes
_PRETRAINED: contextvars.ContextVar[Any] = contextvars.ContextVar("beexbench_pretrained_backbone", default=None)


class SpecEncoderBase(ModelAdapter, EarlyExit):
    """What every adapter whose settings are a :class:`ModelSpec` and whose module is an
    early-exit encoder (called for every exit's logits, ``infer(ids, mask, rule)``) shares:
    the float :class:`EncoderAdapter` and beexformer's packed deployment."""

    # a variant made from another trained model names it (it is then a ``protocols.Derived``:
    # ``derive`` below packs or re-calibrates that model); None: trained itself
    derived_from: ClassVar[str | None] = None
    source: ModelAdapter | None = None  # the trained model a derived one was made from (protocols.Derived)

    def _take_settings(self, settings: ModelSpec, spec: TaskSpec) -> None:
        refusal = self.problem_refusal(spec.problem)
        if refusal:
            raise BeexError(f"{refusal} ('{spec.task}'): pick another model or task")
        self.model_spec = expect_spec(type(self), settings)
        self.spec = spec
        self.rule = make_rule(self.model_spec.exit, spec.problem)
        # how this network was trained, as records state it (a deployment's settings are its source's)
        self.training_note = how_trained(self.model_spec) or type(self).training_note

    @property
    def config(self) -> dict[str, Any]:  # type: ignore[override]
        """The settings as plain nested dicts (checkpoints and records hold this)."""
        return self.model_spec.to_dict()

    @config.setter
    def config(self, value: dict[str, Any]) -> None:  # a whole new config: checked as a ModelSpec
        self.model_spec = ModelSpec.from_dict(value)

    @classmethod
    def build(cls, settings: ModelSpec, spec: TaskSpec) -> "SpecEncoderBase":
        return cls(expect_spec(cls, settings), spec)

    @classmethod
    def check_task(cls, config: dict[str, Any], problem: str) -> TaskSpec:
        """On a backbone: a task encoded with the backbone's vocabulary (its files are resolved:
        a missing one is a problem the check reports)."""
        model_spec = cls.resolve_spec(config, problem)
        if model_spec.backbone.name == SCRATCH:
            return super().check_task(config, problem)
        from ..backbones.bert import bert_sizes
        from ..backbones.sources import resolve_backbone

        sizes = bert_sizes(resolve_backbone(model_spec.backbone.name).config)
        return TaskSpec("config-check", 1 if problem == "regression" else 2, vocab_size=sizes["vocab_size"],
                        max_len=min(8, sizes["max_position_embeddings"]), problem=problem)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        return self.model(input_ids, attention_mask)

    def predict(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> ExitDecision:
        return self.model.infer(input_ids, attention_mask, self.rule)

    def module(self) -> nn.Module:
        return self.model

    def exit_layout(self) -> ExitLayout:
        return ExitLayout.of_encoder(self.model)

    def exit_rule(self) -> ExitRule:
        return self.rule

    def rule_variants(self, param: str, values: list) -> list[ExitRule]:
        return [make_rule(dataclasses.replace(self.model_spec.exit, **{param: v}), self.spec.problem) for v in values]


class EncoderAdapter(SpecEncoderBase, NeedsTrainedInputs):
    problems = ("classification", "regression")

    def __init__(self, settings: ModelSpec, spec: TaskSpec) -> None:
        """The network ``settings`` describes. On a backbone: a spec without the weights' sha256 is
        resolved and the weights loaded here (as :meth:`build` does); one with it (a recorded
        config: a checkpoint, a derived model) is only the architecture, its weights come later."""
        self._take_settings(settings, spec)
        bb = self.model_spec.backbone
        files = None
        if bb.name != SCRATCH:
            files = _PRETRAINED.get()
            if bb.sha256 is None:
                files, self.model_spec = on_backbone(type(self), self.model_spec, spec)
            elif files is not None and files.sha256 != bb.sha256:
                files = None
        self.model = EarlyExitEncoder(
            self.encoder_config, vocab_size=spec.vocab_size, max_len=spec.max_len, num_labels=spec.num_labels
        )
        self.backbone: dict[str, Any] | None = None  # what was loaded, when this network was built on a backbone
        if files is not None:
            from ..backbones.bert import load_bert_weights

            report = load_bert_weights(self.model, files.weights, ffn=bb.ffn == "pretrained")
            self.backbone = {"name": bb.name, "sha256": files.sha256, "filled": len(report.filled),
                             "kept": list(report.kept), "ignored": list(report.ignored),
                             "unknown": list(report.unknown), "position_rows": list(report.position_rows)}
        self.model.eval()
        self.fit_report: FitReport | None = None
        self.teacher: ModelAdapter | None = None  # set by take_trained for distillation; never saved

    @classmethod
    def build(cls, settings: ModelSpec, spec: TaskSpec) -> EncoderAdapter:
        """A fresh model; on a backbone, its architecture and weights (see the module's doc):
        the architecture is settled before the class's own ``__init__`` sees the spec."""
        model_spec = expect_spec(cls, settings)
        if model_spec.backbone.name == SCRATCH:
            return cls(model_spec, spec)
        files, resolved = on_backbone(cls, model_spec, spec)
        token = _PRETRAINED.set(files)
        try:
            return cls(resolved, spec)
        finally:
            _PRETRAINED.reset(token)

    @classmethod
    def around(cls, network: nn.Module, settings: ModelSpec, spec: TaskSpec, backbone: dict | None = None) -> "EncoderAdapter":
        """This model with ``network`` as its module (that object, not a copy), e.g. the source a
        deployment trained directly trains: no network of its own is made, the global RNG is untouched."""
        if cls.__init__ is EncoderAdapter.__init__:
            out = cls.__new__(cls)
            out._take_settings(settings, spec)
        else:  # a class with an __init__ of its own: run it, its network's draws undone
            token = _PRETRAINED.set(None)
            try:
                with torch.random.fork_rng(devices=[]):
                    out = cls(settings, spec)
            finally:
                _PRETRAINED.reset(token)
        out.model, out.backbone, out.fit_report, out.teacher = network, backbone, None, None
        return out

    @property
    def encoder_config(self) -> EncoderConfig:
        return self.model_spec.encoder

    @property
    def train_config(self) -> TrainConfig:
        return self.model_spec.train

    # -- trained inputs: a fine-tuned network to start from, a teacher ----------------------
    @classmethod
    def trained_inputs(cls, config: dict[str, Any], problem: str) -> dict[str, str]:
        spec = cls.resolve_spec(config, problem)
        wanted = {"init": spec.backbone.init_from, "teacher": spec.distill.teacher}
        return {use: name for use, name in wanted.items() if name}

    def take_trained(self, models: dict[str, ModelAdapter]) -> None:
        unknown = set(models) - {"init", "teacher"}
        if unknown:
            raise TypeError(f"{type(self).__name__} takes trained models for init and teacher, not {sorted(unknown)}")
        for use, source in models.items():
            if not isinstance(source, EncoderAdapter) or source.spec != self.spec:
                raise BeexError(f"{self.name} needs its {use} model '{source.name}' on the shared encoder, trained for "
                                f"{self.spec.task} with the same encoding: pick a model built like {self.name}")
        if "init" in models:
            start_from(self, models["init"])
        self.teacher = models.get("teacher")

    # -- contract -------------------------------------------------------------------

    def loss(self, exit_logits: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        lc = self.model_spec.loss
        kind = lc.kind if len(exit_logits) > 1 else "final"
        return exit_loss(kind, exit_logits, labels, delta=lc.delta, tau=lc.tau, floor=lc.floor, min_exit=lc.min_exit)

    def fit(self, train_split: EncodedSplit, val: EncodedSplit, progress: Progress = NULL_PROGRESS, cost_fn: CostFn | None = None) -> FitReport:
        calibrated = bool(self.model_spec.calibration.grid)
        per_epoch: list[dict] = []

        def select(model: nn.Module) -> float:
            # an early-exit model is selected by what it deploys: the exit rule, calibrated on
            # val at every epoch, scored on val (the final exit alone would pick another epoch)
            per_epoch.append(self._calibration(val, cost_fn))
            return per_epoch[-1]["deployed_accuracy"]

        distill = self.model_spec.distill
        if distill.teacher and self.teacher is None:
            raise BeexError(f"{self.name} distils from '{distill.teacher}' (model.distill.teacher), which was not "
                            "given: train it through the runner (`beexbench run` / `beexbench train`)")
        with contextlib.ExitStack() as stack:
            distiller = None
            if self.teacher is not None:
                distiller = stack.enter_context(Distiller(
                    self.teacher.module(), self.model, logits=distill.logits, hidden=distill.hidden,
                    temperature=distill.temperature, regression=self.spec.problem == "regression"))
            log = train(self.model, self.loss, train_split, val, self.train_config, description=f"train {self.name}",
                        progress=progress, select=select if calibrated else None,
                        selected_by=f"deployed rule ({self.rule.name}, calibrated on val)" if calibrated else "final exit",
                        distill=distiller)
        self.teacher = None  # the teacher's network is its own checkpoint: not kept with this one
        # the restored best epoch's calibration, as computed when that epoch was scored
        calibration = self._use(per_epoch[log["best_epoch"] - 1]) if calibrated else None
        self.fit_report = FitReport(**log, calibration=calibration)
        return self.fit_report

    def _calibration(self, val: EncodedSplit, cost_fn=None) -> dict:
        """Sweep the exit rule's parameter on the validation split and pick the setting the
        calibration's objective names (default: the cheapest within ``tolerance`` of the no-exit score)."""
        cal = self.model_spec.calibration
        self.model.eval()
        logits = all_exit_logits(self.model, val)
        lengths = val.attention_mask.sum(1)
        reference = score(logits[-1], val.labels)
        rules = self.rule_variants(cal.param, list(cal.grid))
        rows = sweep(rules, logits, val.labels, lengths, cost_fn, self.model.exit_blocks)
        metric = metric_name(val.labels)
        best = choose(rows, reference, cal.tolerance, metric, cal.objective)
        return {"split": "val", "param": cal.param, "metric": metric, "reference_accuracy": reference,
                "tolerance": cal.tolerance, "chosen": cal.grid[best], "deployed_accuracy": rows[best][metric],
                "sweep": rows}

    def calibrate(self, val: EncodedSplit, cost_fn=None) -> dict:
        """Calibrate the exit rule on the validation split (see :meth:`_calibration`) and use it."""
        return self._use(self._calibration(val, cost_fn))

    def _use(self, result: dict) -> dict:
        """Deploy the parameter a calibration chose."""
        self.model_spec = self.model_spec.merged({"exit": {result["param"]: result["chosen"]}})
        self.rule = make_rule(self.model_spec.exit, self.spec.problem)
        return result

    @classmethod
    def derive(cls, source: ModelAdapter, val: EncodedSplit, cost_fn: CostFn | None = None) -> "EncoderAdapter":
        """The same trained network with this variant's exit rule (and its calibration)."""
        own = cls.default_spec(source.spec.problem)
        trained = ModelSpec.from_dict(source.config)  # the source's settings, as it records them
        out = cls(dataclasses.replace(trained, exit=own.exit, calibration=own.calibration), source.spec)
        out.model.load_state_dict(source.module().state_dict())
        out.model.eval()
        out.backbone = getattr(source, "backbone", None)
        out.source = source
        report = source.fit_report.to_dict() if source.fit_report else None
        calibration = out.calibrate(val, cost_fn) if out.model_spec.calibration.grid else None
        if report is not None:
            report["calibration"] = calibration
            out.fit_report = FitReport(**report)
        return out

    def set_rule(self, rule: ExitRule) -> None:
        self.rule = rule

    def save(self, directory: Path) -> Path:
        meta = {
            "config": self.config,
            "task": self.spec.to_dict(),
            "fit": self.fit_report.to_dict() if self.fit_report else None,
        }
        if getattr(self, "backbone", None):  # only on a backbone: a scratch model's checkpoint is as before
            meta["backbone"] = self.backbone
        return write_checkpoint(Path(directory), self.name, self.model.state_dict(), json.loads(json.dumps(meta)))

    @classmethod
    def load(cls, directory: Path) -> "EncoderAdapter":
        tensors, doc = read_checkpoint(Path(directory), cls.name)
        try:
            adapter = cls(ModelSpec.from_dict(doc["config"]), TaskSpec(**doc["task"]))
            adapter.model.load_state_dict(tensors, strict=True)
        except (KeyError, TypeError, RuntimeError, BeexError) as exc:
            raise BeexError(f"checkpoint {directory} does not match model '{cls.name}' ({str(exc).splitlines()[0]}): retrain it") from None
        adapter.fit_report = FitReport.from_dict(doc.get("fit"))
        adapter.backbone = doc.get("backbone")
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
