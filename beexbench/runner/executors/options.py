"""Each executor's options, typed: a frozen dataclass per executor (its class's ``options``),
checked one way for every executor - an unknown option refused with the closest names, each
value against its annotation (:mod:`beexbench.adapters._fieldchecks`, as a model's settings are),
then the dataclass's own range checks - before anything connects or runs."""
from __future__ import annotations

import dataclasses
import difflib
import math
from typing import Any, Mapping

from ...adapters._fieldchecks import type_hints, type_problems
from ...errors import BeexError

MAX_NODE_WAIT_S = 7 * 24 * 3600.0


@dataclasses.dataclass(frozen=True)
class LocalOptions:
    """The local executor takes no options."""


@dataclasses.dataclass(frozen=True)
class RayOptions:
    """``address``: the cluster's HOST:PORT, ``ray://...``, ``auto`` or ``local`` (None: $RAY_ADDRESS,
    else auto); ``max_retries``: Ray's retries of a task whose worker or node was lost;
    ``node_wait_s``: how long a cell waits for a node that can run it; ``train_cpus``: the CPUs
    (and torch threads) of each training task."""

    address: str | None = None
    max_retries: int = 3
    node_wait_s: float = 120.0
    train_cpus: int = 1

    def __post_init__(self) -> None:
        if self.train_cpus < 1:
            raise BeexError(f"--train-cpus must be 1 or more (a training task takes whole CPUs), not {self.train_cpus}")
        if not (math.isfinite(self.node_wait_s) and 0 < self.node_wait_s <= MAX_NODE_WAIT_S):
            raise BeexError(f"--node-wait must be a number of seconds above 0 and at most {MAX_NODE_WAIT_S:.0f} (a week), "
                            f"not {self.node_wait_s!r}")
        if self.max_retries < 0:
            raise BeexError(f"max_retries must be 0 or more, not {self.max_retries}")


def option_names(options: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(options))


def build_options(options: type, given: Mapping[str, Any], executor: str) -> Any:
    """``options`` (an executor's dataclass) from ``given``, checked: one line per problem."""
    takes = option_names(options)
    for key in given:
        if key not in takes:
            close = difflib.get_close_matches(key, takes, n=3, cutoff=0.5)
            hint = (f"did you mean {', '.join(close)}?" if close
                    else f"it takes {', '.join(takes)}" if takes else "it takes none")
            raise BeexError(f"executor '{executor}' has no option '{key}': {hint}")
    hints = type_hints(options)
    problems = [p for key, value in given.items() for p in type_problems(f"{executor}.{key}", hints[key], value)]
    if problems:
        raise BeexError("; ".join(problems))
    return options(**given)


def as_kwargs(options: Any) -> dict[str, Any]:
    """An options object as the keyword arguments of its executor's constructor."""
    return {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
