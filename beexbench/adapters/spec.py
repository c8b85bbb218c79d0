"""The typed model settings: one frozen :class:`ModelSpec` tree, validated once when it is made.

``ModelSpec`` has seven sections: ``encoder`` (:class:`~beexbench.models.encoder.EncoderConfig`),
``train`` (:class:`~beexbench.training.config.TrainConfig`), ``loss`` (:class:`LossSpec`),
``exit`` (:class:`ExitSpec`), ``calibration`` (:class:`CalibrationSpec`), ``backbone``
(:class:`BackboneSpec`: ``scratch`` or a pretrained encoder to start from, optionally through
another model's fine-tuned network) and ``distill`` (:class:`DistillSpec`: a teacher to learn
from, none by default); a config recorded before a section existed has its defaults. The allowed names
(estimator, ffn, attention probabilities, loss kind, exit rule, schedule, bits) are ``Literal``
types on those fields; the estimator, ffn, loss kind and exit rule are checked against their
registries instead (``SIGN_ESTIMATORS``, ``FFNS``, ``EXIT_LOSSES``, ``EXIT_RULES`` in
:mod:`beexbench.models`), whose built-ins are the Literal's names, so a registered plugin's name
is accepted too; ranges are checked here. Making a ModelSpec (``ModelSpec(...)``,
:meth:`ModelSpec.from_dict`, :meth:`ModelSpec.merged`) reports every problem at once, one line
each, as a :class:`~beexbench.errors.ConfigError` - before any data is loaded or any model built.

Where each default lives (one place each, most general first):

1. the field defaults of the seven section dataclasses: the paper-size reference model
   (d_model 128, 4 heads, 6 blocks, d_ff 256, 6 epochs, lr 1e-3), trained with the final exit's
   loss and no early exit - ``ModelSpec()``;
2. each registered model's class declares only what differs from its parent, as the nested dict
   ``defaults`` (and ``regression_defaults`` for regression tasks):
   :meth:`beexbench.adapters.base.ModelAdapter.default_spec` is the model's registered spec
   (timm's default-config idea);
3. a run's explicit choices, each a partial ModelSpec merged over (2) by the runner: the task's
   recipe, the suite's ``[model]`` table, then ``[model_overrides.NAME]``, then the seed
   (``train.seed``). The built-in suites set the size they can afford (default: d_model 64 /
   4 epochs, smoke 32 / 2, paper 128 / 8): they choose, they never redefine a default.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Union

from ..errors import BeexError, ConfigError
from ..models.encoder import EncoderConfig
from ..models.exits import EXIT_RULES, RULE_NAMES, RULES, ExitRule, rule_class, rules_for  # noqa: F401 (re-exported)
from ..models.ffn import FFNS
from ..models.losses import EXIT_LOSSES, LOSSES
from ..models.quantizers import SIGN_ESTIMATORS
from ..training.config import TrainConfig
from ..validate import bounded

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
    ``grid = None``: the model fills it in (pabee-style: patience 1 .. n_blocks - 1)."""

    param: str | None = None
    grid: tuple[float, ...] | None = ()
    tolerance: float = 0.005


SCRATCH = "scratch"  # the backbone name of a network trained from its random initialisation


@dataclass(frozen=True)
class BackboneSpec:
    """What the encoder starts from: ``"scratch"`` (random init, today's models), a registered
    pretrained backbone (``beexbench.backbones.sources.BACKBONES``, e.g. ``"minilm-l6"``) or
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


def make_rule(exit: ExitSpec | dict[str, Any], problem: str | None = "classification") -> ExitRule:
    """The exit rule ``exit.rule`` built from the parameters it takes (the others are ignored).
    ``problem``: refuse a rule that is not defined for that kind of task (None: any)."""
    spec = exit if isinstance(exit, dict) else dataclasses.asdict(exit)
    kind = spec.get("rule", "final")
    cls = rule_class(kind)
    if problem is not None and problem not in cls.problems:
        fits = rules_for(problem)
        raise BeexError(f"exit rule '{kind}' is not defined for {problem} tasks: use one of {', '.join(fits)}")
    kwargs = {k: v for k, v in spec.items() if k in rule_params(kind) and v is not None}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise BeexError(f"bad parameters for exit rule '{kind}': {exc}") from None


def rule_params(kind: str) -> tuple[str, ...]:
    return tuple(p for p in inspect.signature(rule_class(kind).__init__).parameters if p in EXIT_PARAMS)


# -- checks --------------------------------------------------------------------------------
Check = Callable[[str, Any], list]


def _num(low=None, high=None, *, above=False, below=False, integer=False, optional=False) -> Check:
    return lambda where, v: bounded(where, v, low, high, above=above, below=below, integer=integer, optional=optional)


def _grid(where: str, value: Any) -> list[str]:
    ok = value is None or (isinstance(value, (list, tuple)) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value))
    return [] if ok else [f"'{where}' must be a list of finite numbers, got {list(value) if isinstance(value, tuple) else value!r}"]


def _named(registry) -> Check:
    """A name ``registry`` knows: a built-in, an entry point or one registered at run time."""
    def check(where: str, value: Any) -> list[str]:
        if isinstance(value, str) and value in registry:
            return []
        return [f"'{where}' is {value!r}: use one of {', '.join(registry.names(sort=False))}"]
    return check


def _backbone_name(where: str, value: Any) -> list[str]:
    """``scratch``, a registered backbone or ``hf:<something>`` (the files are checked at build)."""
    from ..backbones.sources import BACKBONES

    if isinstance(value, str) and (value == SCRATCH or value in BACKBONES or (value.startswith("hf:") and value[3:].strip())):
        return []
    return [(f"'{where}' is {value!r}: use scratch, {', '.join(sorted(BACKBONES))} or hf:<folder with config.json, "
             "model.safetensors and vocab.txt>")]


def _sha256(where: str, value: Any) -> list[str]:
    if value is None or (isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)):
        return []
    return [f"'{where}' must be the weights file's sha256 (64 lowercase hex digits), got {value!r}"]


def _model_name(where: str, value: Any) -> list[str]:
    """A model's name (or None); whether it is registered is checked when the run builds it."""
    return [] if value is None or (isinstance(value, str) and value.strip()) else [f"'{where}' must be a model name, got {value!r}"]


def _param(where: str, value: Any) -> list[str]:
    return [] if value is None or value in EXIT_PARAMS else [f"'{where}' is {value!r}: use one of {', '.join(EXIT_PARAMS)}"]


# value checks by section and field; every other field is checked against its type annotation
CHECKS: dict[type, dict[str, Check]] = {
    EncoderConfig: {**{k: _num(1, integer=True) for k in ("d_model", "n_heads", "n_blocks", "d_ff")},
                    "dropout": _num(0, 1, below=True), "token_dropout": _num(0, 1, below=True),
                    "estimator": _named(SIGN_ESTIMATORS), "ffn": _named(FFNS),
                    "type_vocab_size": _num(1, integer=True, optional=True),
                    "layer_norm_eps": _num(0, above=True, optional=True)},
    TrainConfig: {"epochs": _num(1, integer=True), "batch_size": _num(1, integer=True), "lr": _num(0, above=True),
                  "weight_decay": _num(0), "warmup_ratio": _num(0, 1), "clip_norm": _num(0, optional=True),
                  "patience": _num(0, integer=True), "length_buckets": _num(0, integer=True),
                  "max_train_examples": _num(1, integer=True, optional=True)},
    LossSpec: {"kind": _named(EXIT_LOSSES), "tau": _num(0, above=True), "delta": _num(), "floor": _num(0, 1),
               "min_exit": _num(1, integer=True)},
    ExitSpec: {"rule": _named(EXIT_RULES), "delta": _num(optional=True), "min_exit": _num(1, integer=True, optional=True),
               "threshold": _num(optional=True), "patience": _num(1, integer=True, optional=True),
               "agree_within": _num(0, optional=True)},
    CalibrationSpec: {"param": _param, "grid": _grid, "tolerance": _num(0)},
    BackboneSpec: {"name": _backbone_name, "sha256": _sha256, "init_from": _model_name},
    DistillSpec: {"teacher": _model_name, "logits": _num(0), "hidden": _num(0), "temperature": _num(0, above=True)},
}


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _fits(hint: Any, value: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_fits(h, value) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is Literal:  # 1 is not True, 1.0 is not 1
        return any(value == a and type(value) is type(a) for a in typing.get_args(hint))
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint if origin is None else origin)


def _literals(hint: Any) -> tuple | None:
    if typing.get_origin(hint) is Literal:
        return typing.get_args(hint)
    if typing.get_origin(hint) in (Union, types.UnionType):
        found = [a for h in typing.get_args(hint) for a in (_literals(h) or ())]
        return tuple(found) or None
    return None


def _type_problems(where: str, hint: Any, value: Any) -> list[str]:
    if _fits(hint, value):
        return []
    options = _literals(hint)
    if options is not None:
        return [f"'{where}' is {value!r}: use one of {', '.join(map(str, options))}"]
    names = [getattr(h, "__name__", str(h)) for h in typing.get_args(hint) if h is not type(None)] or [hint.__name__]
    return [f"'{where}' must be {' or '.join(names)}, got {type(value).__name__} ({value!r})"]


def section_problems(section: Any, where: str) -> list[str]:
    """Every problem of one section, field by field, then those between its fields."""
    checks, hints = CHECKS.get(type(section), {}), _hints(type(section))
    out: dict[str, list[str]] = {}
    for f in dataclasses.fields(section):
        value, w = getattr(section, f.name), f"{where}.{f.name}"
        out[f.name] = checks[f.name](w, value) if f.name in checks else _type_problems(w, hints[f.name], value)
    found = [p for ps in out.values() for p in ps]
    if isinstance(section, EncoderConfig) and not out["d_model"] + out["n_heads"] and section.d_model % section.n_heads:
        found.append(f"'{where}.d_model' ({section.d_model}) must be divisible by '{where}.n_heads' ({section.n_heads})")
    if isinstance(section, ExitSpec) and not found:
        try:
            needed = [p for p, v in inspect.signature(rule_class(section.rule).__init__).parameters.items()
                      if p in EXIT_PARAMS and v.default is inspect.Parameter.empty and getattr(section, p) is None]
            found += [f"'{where}.{p}' must be set: exit rule '{section.rule}' needs it" for p in needed]
            if not found:
                make_rule(section, None)
        except BeexError as exc:
            found.append(str(exc))
    return found


def _calibration_problems(spec: "ModelSpec", where: str) -> list[str]:
    """The calibration sweeps a parameter the exit rule takes."""
    cal, w = spec.calibration, f"{where}.calibration"
    if cal.grid == () or cal.param is None:
        return [f"'{w}.grid' is given but '{w}.param' is not: name the exit parameter it sweeps"] if cal.grid else []
    takes = rule_params(spec.exit.rule)
    if cal.param not in takes:
        options = f"use one of {', '.join(takes)}" if takes else f"set '{w}.grid' to [] (no calibration)"
        return [f"'{w}.param' is '{cal.param}', which exit rule '{spec.exit.rule}' does not take: {options}"]
    return []


def _field_value(hint: Any, value: Any) -> Any:
    """A list given for a tuple field (the calibration grid) is stored as a tuple (frozen)."""
    return tuple(value) if isinstance(value, list) and "tuple" in str(hint) else value


# -- the tree ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """A model's complete settings, checked when made (every problem at once)."""

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: LossSpec = field(default_factory=LossSpec)
    exit: ExitSpec = field(default_factory=ExitSpec)
    calibration: CalibrationSpec = field(default_factory=CalibrationSpec)
    backbone: BackboneSpec = field(default_factory=BackboneSpec)
    distill: DistillSpec = field(default_factory=DistillSpec)

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ConfigError(problems)

    def problems(self, task_problem: str | None = None, where: str = "model") -> list[str]:
        """Every problem of this spec (one line each); with ``task_problem``, also what does not
        fit that kind of task (an entropy rule on a regression task)."""
        out = []
        for name, cls in SECTIONS.items():
            section = getattr(self, name)
            if not isinstance(section, cls):
                out.append(f"'{where}.{name}' must be a {cls.__name__}, got {type(section).__name__}")
            else:
                out += section_problems(section, f"{where}.{name}")
        if not out:
            out += _calibration_problems(self, where)
        if not out and task_problem is not None:
            try:
                make_rule(self.exit, task_problem)
            except BeexError as exc:
                out.append(str(exc))
        return out

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """As recorded in checkpoints and result records (``config``): nested plain dicts."""
        return {name: {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(getattr(self, name)).items()}
                for name in SECTIONS}

    @classmethod
    def from_dict(cls, doc: dict[str, Any], where: str = "model") -> "ModelSpec":
        """A spec from nested dicts (sections or fields left out keep their defaults)."""
        if not isinstance(doc, dict):
            raise ConfigError([f"'{where}' must be a table of sections ({', '.join(SECTIONS)}), got {type(doc).__name__}"])
        problems = [f"unknown key '{where}.{k}': known keys are {', '.join(sorted(SECTIONS))}" for k in doc if k not in SECTIONS]
        sections: dict[str, Any] = {}
        for name, section_cls in SECTIONS.items():
            values, w = doc.get(name, {}), f"{where}.{name}"
            if not isinstance(values, dict):
                problems.append(f"'{w}' must be a table of settings, got {type(values).__name__} ({values!r})")
                continue
            known = _hints(section_cls)
            problems += [f"unknown key '{w}.{k}': known keys are {', '.join(sorted(known))}" for k in values if k not in known]
            sections[name] = section_cls(**{k: _field_value(known[k], v) for k, v in values.items() if k in known})
        try:
            spec = cls(**sections)
        except ConfigError as exc:
            problems += exc.problems
        if problems:
            raise ConfigError(problems)
        return spec

    def merged(self, overrides: "dict[str, Any] | ModelSpec | None", where: str = "model") -> "ModelSpec":
        """This spec with ``overrides`` (nested dicts or dotted keys, a partial ModelSpec) merged in;
        every unknown key and bad value at once. A whole ``ModelSpec`` replaces this one."""
        if isinstance(overrides, ModelSpec):
            return overrides
        if not overrides:
            return self
        problems: list[str] = []
        doc = merge_collecting(self.to_dict(), overrides, where, problems)
        try:
            spec = ModelSpec.from_dict(doc, where)
        except ConfigError as exc:
            problems += exc.problems
        if problems:
            raise ConfigError(problems)
        return spec


def merge_collecting(base: dict, overrides: dict, where: str, problems: list[str]) -> dict:
    """``training.config.merge`` that notes every unknown key in ``problems`` (and skips it)
    instead of stopping at the first."""
    out = dict(base)
    for key, value in overrides.items():
        head, _, rest = str(key).partition(".")
        if head not in out:
            problems.append(f"unknown key '{where}.{head}': known keys are {', '.join(sorted(out))}")
            continue
        value = {rest: value} if rest else value
        if isinstance(out[head], dict) and isinstance(value, dict):
            out[head] = merge_collecting(out[head], value, f"{where}.{head}", problems)
        else:
            out[head] = value
    return out
