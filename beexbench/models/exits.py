"""Exit rules. Blocks are numbered from 1; "exit at block i" means blocks 1..i ran.

A rule is a small object with ``start(batch)`` and ``step(block, logits, state, last)``
that returns which rows are done, the logits each done row answers with, and the new
state. The same object drives real early-exit inference (rows that are done leave the
batch) and the offline simulation over all exits' logits used for the delta sweep.

The rules are the entries of :data:`EXIT_RULES`, a :class:`~beexbench._registry.Registry` of
:class:`ExitRule` subclasses whose constructor takes keyword parameters named like the fields of
``ExitSpec`` (``delta``, ``min_exit``, ``answer``, ``threshold``, ``patience``, ``agree_within``).
The built-ins are added on the registry's first lookup (importing this module registers
nothing); another rule comes in through the ``beexbench.exit_rules`` entry-point group or
``register_exit_rule("name", cls)``, and its name is then a valid ``exit.rule`` of a ModelSpec.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping

import torch

from .._registry import Registry
from ._registration import registrar
from ..errors import BeexError

_BUILTIN_RULES = {name: f"beexbench.models.exits:{cls}" for name, cls in (
    ("final", "ExitRule"), ("fractional-entropy", "FractionalEntropy"), ("absolute-entropy", "AbsoluteEntropy"),
    ("patience", "Patience"), ("prediction-change", "PredictionChange"), ("static", "Static"))}
RULE_NAMES = tuple(_BUILTIN_RULES)  # the built-in names (ExitSpec.rule's Literal type)
RULE_ENTRY_POINT_GROUP = "beexbench.exit_rules"
EXIT_RULES: Registry[type["ExitRule"]] = Registry("exit rule", entry_point_group=RULE_ENTRY_POINT_GROUP,
                                                  builtins=_BUILTIN_RULES)
register_exit_rule = registrar(EXIT_RULES)


def prediction_change(outputs: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """|y_i - y_{i-1}| of single-output (regression) exits, [b, 1] -> [b]."""
    return (outputs[:, 0] - previous[:, 0]).abs()


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of softmax(logits) along the last dim."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def fractional_entropy_reduction(prev_entropy: torch.Tensor, current: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """BEExformer's fractional entropy reduction r_i = (H_{i-1} - H_i) / max(H_{i-1}, eps).

    The one definition, used by the exit rule (:class:`FractionalEntropy`, through
    :func:`fractional_entropy_step`), the soft-routing loss
    (:func:`beexbench.models.losses.exit_weights`) and the packed engine, whose module
    path runs the rule's ``step`` and whose fused path runs the C++ equivalent in
    ``beexbench/engine/_engine.cpp`` (``frac_entropy``), the same ops in the same order::

        Tensor r = prev_entropy.sub(h).div(prev_entropy.clamp_min(eps));

    with ``h`` = :func:`entropy` (``logp = log_softmax(logits.float(), -1)``,
    ``h = logp.exp().mul(logp).sum(-1).neg()``), so both give bit-identical results
    (tests/test_packed.py checks the C++ op against :func:`fractional_entropy_step`).
    """
    return (prev_entropy - current) / prev_entropy.clamp_min(eps)


def fractional_entropy_step(logits: torch.Tensor, prev_logits: torch.Tensor | None, prev_entropy: torch.Tensor | None,
                            delta: float, eps: float, check: bool, lower: bool, last: bool):
    """One exit of the fractional-entropy rule: ``(done [b], answer [b, C], entropy [b])``.

    Done where ``last`` or, when ``check`` (block >= min_exit) and a previous exit exists,
    r_i < ``delta`` (:func:`fractional_entropy_reduction`); with ``lower``, rows whose
    entropy rose (r_i < 0) answer with ``prev_logits``. Same arguments and results as the
    packed engine's C++ op ``frac_entropy`` (``has_prev`` there is ``prev_entropy is not None``)."""
    h = entropy(logits)
    done = torch.full_like(h, last, dtype=torch.bool)
    answer = logits
    if prev_entropy is not None and check:
        r = fractional_entropy_reduction(prev_entropy, h, eps)
        done = done | (r < delta)
        if lower:
            answer = torch.where((r < 0).unsqueeze(-1), prev_logits, logits)
    return done, answer, h


@dataclass(frozen=True)
class ExitState:
    prev_logits: torch.Tensor | None = None  # [b, C]
    prev_entropy: torch.Tensor | None = None  # [b]
    streak: torch.Tensor | None = None  # [b] (patience)

    def select(self, keep: torch.Tensor) -> "ExitState":
        pick = lambda t: None if t is None else t[keep]  # noqa: E731
        return ExitState(pick(self.prev_logits), pick(self.prev_entropy), pick(self.streak))


class ExitRule:
    name = "final"
    description = "no early exit: every sample runs every block"
    problems: tuple[str, ...] = ("classification", "regression")  # the tasks it is defined for

    def start(self, batch: int) -> ExitState:
        return ExitState()

    def step(self, block: int, logits: torch.Tensor, state: ExitState, last: bool):
        done = torch.full((logits.shape[0],), last, dtype=torch.bool, device=logits.device)
        return done, logits, state

    def to_dict(self) -> dict:
        return {"rule": self.name}


class FractionalEntropy(ExitRule):
    """BEExformer's rule (A7): exit at the first block i >= min_exit whose fractional
    entropy reduction r_i = (H_{i-1} - H_i) / max(H_{i-1}, eps) falls below delta.
    When entropy rose (r_i < 0), ``answer="lower_entropy"`` returns block i-1's
    prediction, ``answer="current"`` block i's (A8)."""

    name = "fractional-entropy"
    problems = ("classification",)

    def __init__(self, delta: float, min_exit: int = 2, answer: str = "lower_entropy", eps: float = 1e-6):
        if min_exit < 2:
            raise ValueError("min_exit must be >= 2: r_i needs the previous exit's entropy")
        if answer not in ("lower_entropy", "current"):
            raise ValueError("answer must be 'lower_entropy' or 'current'")
        self.delta, self.min_exit, self.answer, self.eps = float(delta), int(min_exit), answer, eps

    @property
    def description(self) -> str:
        return f"fractional entropy reduction < {self.delta:g} from block {self.min_exit}, answer={self.answer}"

    def step(self, block, logits, state, last):
        done, answer, h = fractional_entropy_step(
            logits, state.prev_logits, state.prev_entropy, self.delta, self.eps, block >= self.min_exit,
            self.answer == "lower_entropy", last)
        return done, answer, ExitState(prev_logits=logits, prev_entropy=h)

    def to_dict(self) -> dict:
        return {"rule": self.name, "delta": self.delta, "min_exit": self.min_exit, "answer": self.answer}


class AbsoluteEntropy(ExitRule):
    """DeeBERT-style: exit at the first block whose entropy is below a fixed threshold."""

    name = "absolute-entropy"
    problems = ("classification",)

    def __init__(self, threshold: float, min_exit: int = 1):
        self.threshold, self.min_exit = float(threshold), int(min_exit)

    @property
    def description(self) -> str:
        return f"entropy < {self.threshold:g} nats from block {self.min_exit}"

    def step(self, block, logits, state, last):
        done = entropy(logits) < self.threshold
        if block < self.min_exit:
            done = torch.zeros_like(done)
        return done | last, logits, state

    def to_dict(self) -> dict:
        return {"rule": self.name, "threshold": self.threshold, "min_exit": self.min_exit}


class Patience(ExitRule):
    """PABEE-style: exit once ``patience`` consecutive exits after the first agree: the
    same class (classification) or, for a single regression output, predictions within
    ``agree_within`` of the previous exit's (PABEE's regression rule)."""

    name = "patience"

    def __init__(self, patience: int, agree_within: float = 0.1):
        if patience < 1:
            raise ValueError("patience must be >= 1")
        self.patience, self.agree_within = int(patience), float(agree_within)

    @property
    def description(self) -> str:
        return f"{self.patience} consecutive agreeing exits"

    def step(self, block, logits, state, last):
        regression = logits.shape[-1] == 1
        if state.prev_logits is None:
            streak = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        else:
            if regression:
                agree = prediction_change(logits, state.prev_logits) < self.agree_within
            else:
                agree = logits.argmax(-1) == state.prev_logits.argmax(-1)
            streak = torch.where(agree, state.streak + 1, torch.zeros_like(state.streak))
        done = (streak >= self.patience) | last
        return done, logits, ExitState(prev_logits=logits, streak=streak)

    def to_dict(self) -> dict:
        return {"rule": self.name, "patience": self.patience, "agree_within": self.agree_within}


class PredictionChange(ExitRule):
    """BEExformer's rule carried over to regression, where there is no entropy: exit at the
    first block i >= min_exit whose prediction moved less than delta from block i-1's,
    |y_i - y_{i-1}| < delta, in units of the train labels' standard deviation (the model
    predicts standardized labels)."""

    name = "prediction-change"
    problems = ("regression",)

    def __init__(self, delta: float, min_exit: int = 2):
        if min_exit < 2:
            raise ValueError("min_exit must be >= 2: the change needs the previous exit's prediction")
        self.delta, self.min_exit = float(delta), int(min_exit)

    @property
    def description(self) -> str:
        return f"prediction change < {self.delta:g} label std from block {self.min_exit}"

    def step(self, block, logits, state, last):
        if logits.shape[-1] != 1:
            raise ValueError("the prediction-change rule is for single-output regression models")
        done = torch.full((logits.shape[0],), last, dtype=torch.bool, device=logits.device)
        if state.prev_logits is not None and block >= self.min_exit:
            done = done | (prediction_change(logits, state.prev_logits) < self.delta)
        return done, logits, ExitState(prev_logits=logits)

    def to_dict(self) -> dict:
        return {"rule": self.name, "delta": self.delta, "min_exit": self.min_exit}


class Static(ExitRule):
    """Static depth: every sample exits at the first exit at or after block ``min_exit`` (with an
    exit after every block: exactly block ``min_exit``), whatever its logits say. The reference an
    adaptive rule is judged against (beexbench.runner.static_depth): the same trained network and
    heads, run to a fixed depth in the deployment's own runtime."""

    name = "static"

    def __init__(self, min_exit: int):
        if int(min_exit) < 1:
            raise ValueError("min_exit (the static depth) must be >= 1")
        self.min_exit = int(min_exit)

    @property
    def description(self) -> str:
        return f"always exit at block {self.min_exit} (static depth)"

    def step(self, block, logits, state, last):
        done = torch.full((logits.shape[0],), last or block >= self.min_exit, dtype=torch.bool, device=logits.device)
        return done, logits, state

    def to_dict(self) -> dict:
        return {"rule": self.name, "min_exit": self.min_exit}


def rule_class(name: str) -> type[ExitRule]:
    """The :class:`ExitRule` subclass registered as ``name`` (:data:`EXIT_RULES`); a
    :class:`~beexbench.errors.BeexError` (one line) when it is unknown, fails to load or is not one."""
    if name not in EXIT_RULES:
        raise BeexError(f"unknown exit rule '{name}': use one of {', '.join(EXIT_RULES.names(sort=False))}")
    cls = EXIT_RULES.get(name)
    if not (isinstance(cls, type) and issubclass(cls, ExitRule)):
        raise BeexError(f"exit rule '{name}' ({EXIT_RULES.entry(name).origin}) is not an ExitRule subclass")
    return cls


def rules_for(problem: str) -> list[str]:
    """The registered exit rules defined for ``problem`` tasks (a plugin that fails to load is left out)."""
    fits = []
    for name in EXIT_RULES.names(sort=False):
        try:
            if problem in rule_class(name).problems:
                fits.append(name)
        except BeexError:
            pass
    return fits


class _RuleTable(Mapping):
    """:data:`EXIT_RULES` read as a mapping name -> ExitRule subclass (built-ins first)."""

    def __getitem__(self, name: str) -> type[ExitRule]:
        if name not in EXIT_RULES:
            raise KeyError(name)
        return rule_class(name)

    def __iter__(self) -> Iterator[str]:
        return iter(EXIT_RULES.names(sort=False))

    def __len__(self) -> int:
        return len(EXIT_RULES.names())


RULES: Mapping[str, type[ExitRule]] = _RuleTable()


@dataclass(frozen=True)
class ExitDecision:
    logits: torch.Tensor  # [N, C] answer logits
    exit_block: torch.Tensor  # [N] number of blocks run (1-based)


def simulate(rule: ExitRule, exit_logits: list[torch.Tensor] | torch.Tensor,
             exit_blocks: list[int] | None = None) -> ExitDecision:
    """Apply ``rule`` offline to every exit's logits ([n_exits, N, C]) of a full forward.
    ``exit_blocks[i]`` is the block exit i follows (default: exit i follows block i + 1).
    Equivalent to real early-exit inference because samples do not interact."""
    stacked = torch.stack(list(exit_logits)) if isinstance(exit_logits, (list, tuple)) else exit_logits
    n_exits, n = stacked.shape[:2]
    exit_blocks = exit_blocks or list(range(1, n_exits + 1))
    out = torch.empty_like(stacked[0])
    blocks = torch.zeros(n, dtype=torch.long)
    pending = torch.ones(n, dtype=torch.bool)
    state = rule.start(n)
    for i in range(n_exits):
        done, answer, state = rule.step(exit_blocks[i], stacked[i], state, last=i == n_exits - 1)
        newly = done & pending
        out[newly] = answer[newly]
        blocks[newly] = exit_blocks[i]
        pending &= ~done
        if not pending.any():
            break
    return ExitDecision(out, blocks)
