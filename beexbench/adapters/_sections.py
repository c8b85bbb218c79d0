"""The sections of a :class:`~beexbench.adapters.spec.ModelSpec` besides the encoder's and the
training's (:class:`LossSpec`, :class:`ExitSpec`, :class:`CalibrationSpec`, :class:`BackboneSpec`,
:class:`DistillSpec`: each a frozen dataclass whose field defaults are the reference model's) and,
beside them, the value check of every field that has one (``CHECKS``; every other field is
checked against its type annotation). :mod:`beexbench.adapters.spec` builds the tree from these
and re-exports them: import them from there."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from ..models.encoder import EncoderConfig
from ..models.exits import EXIT_RULES, RULE_NAMES
from ..models.ffn import FFNS
from ..models.losses import EXIT_LOSSES, LOSSES
from ..models.quantizers import SIGN_ESTIMATORS
from ..training.calibrate import OBJECTIVES
from ..training.config import TrainConfig
from ._fieldchecks import Check, grid, model_name, named, num, sha256

ANSWERS = ("lower_entropy", "current")


@dataclass(frozen=True)
class LossSpec:
    """How the exits are trained together (``beexbench.models.losses``)."""

    kind: Literal[LOSSES] = "final"
    delta: float = 0.1
    tau: float = 0.05
    floor: float = 0.3
    min_exit: int = 2


@dataclass(frozen=True)
class ExitSpec:
    """The exit rule at inference; parameters a rule does not take stay None (and are ignored,
    so a variant can switch rules without clearing its parent's parameters)."""

    rule: Literal[RULE_NAMES] = "final"
    delta: float | None = None
    min_exit: int | None = None
    answer: Literal[ANSWERS] | None = None
    threshold: float | None = None
    patience: int | None = None
    agree_within: float | None = None


EXIT_PARAMS = tuple(f.name for f in dataclasses.fields(ExitSpec) if f.name != "rule")


@dataclass(frozen=True)
class CalibrationSpec:
    """Values of one exit parameter tried on the validation split; an empty grid = none.
    ``grid = None``: the model fills it in (pabee-style: patience 1 .. n_blocks - 1). ``objective``
    (``beexbench.training.calibrate.OBJECTIVES``): the cheapest value within ``tolerance`` of the
    no-exit score, or ``"accuracy-seeking"``: the best validation score (ties to the cheaper)."""

    param: str | None = None
    grid: tuple[float, ...] | None = ()
    tolerance: float = 0.005
    objective: Literal[OBJECTIVES] = "cheapest-within-tolerance"


SCRATCH = "scratch"  # the backbone name of a network trained from its random initialisation


@dataclass(frozen=True)
class BackboneSpec:
    """What the encoder starts from: ``"scratch"`` (random init, today's models), a registered
    pretrained backbone (the registry ``beexbench.backbones.sources.BACKBONES``, e.g. ``"minilm-l6"``) or
    ``"hf:<local dir>"`` (a BERT-format folder). Only the name's form is checked here; the files
    are resolved when the model is built (:class:`~beexbench.adapters.encoder_adapter.EncoderAdapter`),
    which takes the architecture from the checkpoint's config.json and records the weights'
    ``sha256``. A spec with ``sha256`` set describes a network already initialised from those
    weights (a recorded config): rebuilding it from the spec alone does not read the backbone
    again; a fresh build checks that the resolved weights have that sha256 (a pin)."""

    name: str = SCRATCH
    sha256: str | None = None
    # a model of the run (e.g. "fp32") whose network, trained on the same task and seed, this one
    # starts from instead of the backbone's weights: BiBERT / BiT / BinaryBERT binarize a
    # fine-tuned full-precision model, not the pretrained one (the runner trains that model first)
    init_from: str | None = None
    # "pretrained": the checkpoint's FFN (BERT's GELU FFN) with its weights; "own": the model's
    # own FFN kind (e.g. BEExformer's SLFN, which has no pretrained weights: seeded init)
    ffn: Literal["pretrained", "own"] = "pretrained"


@dataclass(frozen=True)
class DistillSpec:
    """Knowledge distillation from a teacher: another model of the run, trained on the same task
    and seed (the runner trains it first; ``beexbench.training.distill``). ``teacher = None``: none.
    The training loss is the model's own loss + ``logits`` x T^2 x KL(teacher || student) at
    temperature T on every exit (each exit learns from the teacher's exit after the same block,
    or from its last when the teacher has one exit; MSE for regression) + ``hidden`` x the mean
    squared error between the two networks' hidden states after every block (non-pad tokens;
    the same depth and width needed)."""

    teacher: str | None = None
    logits: float = 1.0
    hidden: float = 0.0
    temperature: float = 1.0


SECTIONS: dict[str, type] = {"encoder": EncoderConfig, "train": TrainConfig, "loss": LossSpec, "exit": ExitSpec,
                             "calibration": CalibrationSpec, "backbone": BackboneSpec, "distill": DistillSpec}


# -- checks --------------------------------------------------------------------------------
def _backbone_name(where: str, value: Any) -> list[str]:
    """``scratch``, a registered backbone or ``hf:<something>`` (the files are checked at build)."""
    from ..backbones.sources import BACKBONES

    if isinstance(value, str) and (value == SCRATCH or value in BACKBONES or (value.startswith("hf:") and value[3:].strip())):
        return []
    return [(f"'{where}' is {value!r}: use scratch, {', '.join(BACKBONES.names())} or hf:<folder with config.json, "
             "model.safetensors and vocab.txt>")]


def _param(where: str, value: Any) -> list[str]:
    return [] if value is None or value in EXIT_PARAMS else [f"'{where}' is {value!r}: use one of {', '.join(EXIT_PARAMS)}"]


# value checks by section and field; every other field is checked against its type annotation
CHECKS: dict[type, dict[str, Check]] = {
    EncoderConfig: {**{k: num(1, integer=True) for k in ("d_model", "n_heads", "n_blocks", "d_ff")},
                    "dropout": num(0, 1, below=True), "token_dropout": num(0, 1, below=True),
                    "estimator": named(SIGN_ESTIMATORS), "ffn": named(FFNS),
                    "type_vocab_size": num(1, integer=True, optional=True),
                    "layer_norm_eps": num(0, above=True, optional=True)},
    TrainConfig: {"epochs": num(1, integer=True), "batch_size": num(1, integer=True), "lr": num(0, above=True),
                  "weight_decay": num(0), "warmup_ratio": num(0, 1), "clip_norm": num(0, optional=True),
                  "patience": num(0, integer=True), "length_buckets": num(0, integer=True),
                  "max_train_examples": num(1, integer=True, optional=True)},
    LossSpec: {"kind": named(EXIT_LOSSES), "tau": num(0, above=True), "delta": num(), "floor": num(0, 1),
               "min_exit": num(1, integer=True)},
    ExitSpec: {"rule": named(EXIT_RULES), "delta": num(optional=True), "min_exit": num(1, integer=True, optional=True),
               "threshold": num(optional=True), "patience": num(1, integer=True, optional=True),
               "agree_within": num(0, optional=True)},
    CalibrationSpec: {"param": _param, "grid": grid, "tolerance": num(0)},
    BackboneSpec: {"name": _backbone_name, "sha256": sha256, "init_from": model_name},
    DistillSpec: {"teacher": model_name, "logits": num(0), "hidden": num(0), "temperature": num(0, above=True)},
}
