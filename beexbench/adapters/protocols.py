"""The optional parts of the model contract: what some models are, probed with ``isinstance`` /
``issubclass`` (never with the model's name), never a default hook on the core.

=========================== ================================================================
``Exits``                   declares where its exits sit: ``exit_layout()`` (the operation
                            counter groups by block and head; without it: one block, one exit)
``EarlyExit(Exits)``        also deploys an exit rule: ``exit_rule()`` and ``rule_variants()``
                            (the runner's exit measurements and the calibration sweep on test)
``Derived``                 made from another trained model without training: ``derived_from``
                            (the source's registry name) and ``derive(source, val, cost_fn)``;
                            ``Deployment(Derived)``: the helper base of a deployment (below)
``NeedsTrainedInputs``      trained with the help of other trained models of the run:
                            ``trained_inputs(config, problem)`` and ``take_trained(models)``
=========================== ================================================================

Each is an abstract base with a ``__subclasshook__``: a model either inherits it (the mixin's
defaults then apply, for example ``EarlyExit.rule_variants``) or simply defines the methods (a
third party's plugin on the bare :class:`~beexbench.adapters.base.ModelAdapter`, such as
tests/plugin_pkg's ``example-bare-exits``), and the checks below see it either way.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from .base import ExitLayout

if TYPE_CHECKING:
    from ..models.exits import ExitRule
    from .spec import ModelSpec
    from ..training.batches import EncodedSplit
    from ..training.calibrate import CostFn
    from .base import ModelAdapter


def _defines(klass: type, *names: str) -> bool:
    return all(callable(getattr(klass, n, None)) for n in names)


class Exits(ABC):
    """A model that declares after which blocks its exits sit (and its block and head modules)."""

    @classmethod
    def __subclasshook__(cls, klass: type) -> Any:
        if cls is Exits:
            return _defines(klass, "exit_layout") or NotImplemented
        return NotImplemented

    @abstractmethod
    def exit_layout(self) -> ExitLayout:
        """After which blocks its exits sit (see :class:`~beexbench.adapters.base.ExitLayout`)."""


class EarlyExit(Exits):
    """A model whose ``predict`` applies an exit rule: rows leave the batch at the exit the rule
    picks. The runner measures its exits, re-scores its calibration sweep on test, and the report
    places it on the accuracy/cost curve by exit."""

    @classmethod
    def __subclasshook__(cls, klass: type) -> Any:
        if cls is EarlyExit:
            return _defines(klass, "exit_layout", "exit_rule", "rule_variants") or NotImplemented
        return NotImplemented

    @abstractmethod
    def exit_rule(self) -> "ExitRule | None":
        """The exit rule ``predict`` deploys; None: no rule (one answer, no exits to report)."""

    def rule_variants(self, param: str, values: list) -> "list[ExitRule]":
        """The deployed rule with ``param`` set to each of ``values`` (the calibration sweep,
        re-scored on test by the runner)."""
        from .spec import make_rule

        rule = self.exit_rule()
        if rule is None:
            raise TypeError(f"{type(self).__name__} has no exit rule to vary")
        return [make_rule({**rule.to_dict(), param: v}, self.spec.problem) for v in values]  # type: ignore[attr-defined]


class Derived(ABC):
    """A model made from another trained model without training (post-training quantization,
    packing, an exported graph, switching exits off): the runner trains (or reuses) the model
    named ``derived_from`` once, for the same task and seed, and calls ``derive`` on it.

    A *deployment* (the trained network run another way: quantized, packed, exported) holds its
    source rather than inheriting from it. It subclasses only the generic machinery it runs with
    (``EncoderAdapter`` or ``SpecEncoderBase``, and :class:`Deployment`), never the model it
    deploys; it says what it deploys as data, ``derived_from`` (a registry name), and its
    registered settings (``default_spec``) are that model's, looked up in the registry
    (``Deployment.source_class()``); it keeps the adapter instance it was made from in
    ``self.source``: the trained one ``derive`` was given, or the one its ``fit`` (trained directly,
    not derived) trained before deriving from it; None when loaded from its own saved files. A
    variant that is the same network under another exit rule (``beexformer-no-ee``,
    ``fp32-no-ee``) may stay a subclass of its source: it is that model with other defaults,
    saved and loaded as it is. ``tests/test_model_contract_slim.py`` checks this for every
    registered model."""

    derived_from: ClassVar[str]

    @classmethod
    def __subclasshook__(cls, klass: type) -> Any:
        if cls is Derived:
            source = getattr(klass, "derived_from", None)
            return (isinstance(source, str) and bool(source) and _defines(klass, "derive")) or NotImplemented
        return NotImplemented

    @classmethod
    @abstractmethod
    def derive(cls, source: "ModelAdapter", val: "EncodedSplit", cost_fn: "CostFn | None" = None) -> "ModelAdapter":
        """This model made from a trained ``derived_from`` model, calibrated on ``val`` only."""


class Deployment(Derived):
    """Helper base of a deployment (see :class:`Derived`): ``source`` (the trained adapter it was
    made from), the class of the model it deploys (``source_class()``, from the registry by
    ``derived_from``) and that model's registered settings as its own (``default_spec``). List it
    before the generic base (``class Int8Dynamic(Deployment, EncoderAdapter)``), so its
    ``default_spec`` is the one found."""

    source: "ModelAdapter | None" = None

    @classmethod
    def source_class(cls) -> "type[ModelAdapter]":
        """The registered class of the model this deploys (``derived_from``)."""
        from .registry import get_adapter_class

        return get_adapter_class(cls.derived_from)

    @classmethod
    def default_spec(cls, problem: str = "classification") -> "ModelSpec":
        """The deployed model's registered settings: this is that network, deployed another way."""
        return cls.source_class().default_spec(problem)  # type: ignore[attr-defined]


class NeedsTrainedInputs(ABC):
    """A model trained with the help of other trained models of the run (a fine-tuned network to
    start from, a teacher to distil): the runner trains (or loads) them first, for the same task
    and seed, and hands them over with ``take_trained`` before ``fit``."""

    @classmethod
    def __subclasshook__(cls, klass: type) -> Any:
        if cls is NeedsTrainedInputs:
            return _defines(klass, "trained_inputs", "take_trained") or NotImplemented
        return NotImplemented

    @classmethod
    @abstractmethod
    def trained_inputs(cls, config: dict[str, Any], problem: str) -> dict[str, str]:
        """The models of the run it needs, by use (``{"init": "fp32", "teacher": "fp32"}``)."""

    @abstractmethod
    def take_trained(self, models: "dict[str, ModelAdapter]") -> None:
        """Receive the trained models :meth:`trained_inputs` named, before ``fit``."""


def derived_source(cls: type) -> str | None:
    """The model ``cls`` is derived from (:class:`Derived`), or None when it is trained itself."""
    return cls.derived_from if issubclass(cls, Derived) else None


def exit_layout_of(model: Any) -> ExitLayout:
    """The exits ``model`` declares (:class:`Exits`); without a declaration: one block, one exit."""
    return model.exit_layout() if isinstance(model, Exits) else ExitLayout()


def exit_rule_of(model: Any) -> "ExitRule | None":
    """The exit rule ``model`` deploys (:class:`EarlyExit`), or None."""
    return model.exit_rule() if isinstance(model, EarlyExit) else None


def has_early_exit(model: Any) -> bool:
    """Whether ``model`` has more than one exit (it declares them: :class:`Exits`)."""
    return len(exit_layout_of(model).exit_blocks) > 1
