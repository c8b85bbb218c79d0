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
is accepted too; ranges are checked here, by the value check each field declares beside its
section (``CHECKS`` in ``_sections.py``, built from the generic checks of ``_fieldchecks.py``).
Making a ModelSpec (``ModelSpec(...)``, :meth:`ModelSpec.from_dict`, :meth:`ModelSpec.merged`)
reports every problem at once, one line each, as a :class:`~beexbench.errors.ConfigError` -
before any data is loaded or any model built.

Where each default lives (one place each, most general first):

1. the field defaults of the seven section dataclasses: the 128-wide reference size, chosen here and
   not taken from the paper (d_model 128, 4 heads, 6 blocks, d_ff 256, 6 epochs, lr 1e-3), trained with the final exit's
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
import inspect
from dataclasses import dataclass, field
from typing import Any

from ..errors import BeexError, ConfigError
from ..models.encoder import EncoderConfig
from ..models.exits import EXIT_RULES, RULE_NAMES, RULES, ExitRule, rule_class, rules_for  # noqa: F401 (re-exported)
from ..training.config import TrainConfig
from ._fieldchecks import type_hints, type_problems
from ._sections import (  # noqa: F401 (the sections and their checks, re-exported: import them from here)
    ANSWERS,
    CHECKS,
    EXIT_PARAMS,
    SCRATCH,
    SECTIONS,
    BackboneSpec,
    CalibrationSpec,
    DistillSpec,
    ExitSpec,
    LossSpec,
)


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
def section_problems(section: Any, where: str) -> list[str]:
    """Every problem of one section, field by field, then those between its fields."""
    checks, hints = CHECKS.get(type(section), {}), type_hints(type(section))
    out: dict[str, list[str]] = {}
    for f in dataclasses.fields(section):
        value, w = getattr(section, f.name), f"{where}.{f.name}"
        out[f.name] = checks[f.name](w, value) if f.name in checks else type_problems(w, hints[f.name], value)
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
            known = type_hints(section_cls)
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
