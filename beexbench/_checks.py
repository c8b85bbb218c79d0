"""Value checks shared by every validation pass, below all of them: :func:`bounded` is used by
the run's validation (:mod:`beexbench.validate`, which re-exports it) and by the model settings
(:mod:`beexbench.adapters.spec`). It imports nothing of beexbench, so neither of those reaches
up into the other through it."""
from __future__ import annotations

import math
from typing import Any


def bounded(where: str, value: Any, low: float | None = None, high: float | None = None, *, above: bool = False,
            below: bool = False, integer: bool = False, optional: bool = False) -> list[str]:
    """[] when ``value`` is a finite number (an integer when ``integer``) with ``low <= value``
    (``<`` when ``above``) and ``value <= high`` (``<`` when ``below``); else one problem line."""
    if value is None and optional:
        return []
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = number and math.isfinite(value) and (isinstance(value, int) or not integer)
    ok = ok and (low is None or (value > low if above else value >= low))
    ok = ok and (high is None or (value < high if below else value <= high))
    if ok:
        return []
    limits = ([f"{'>' if above else '>='} {low}"] if low is not None else []) + \
             ([f"{'<' if below else '<='} {high}"] if high is not None else [])
    kind = "an integer" if integer else "a finite number"
    return [f"'{where}' must be {' '.join([kind, ' and '.join(limits)]).strip()}, got {value!r}"]
