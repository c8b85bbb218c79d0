"""The names a Ray cluster uses to place beexbench's work (no Ray import: the ``worker`` command and
the tests read them too).

A node that may measure target T advertises the custom resource ``beexbench_target_<T>`` and one unit
of ``beexbench_measure``. A measurement task asks for one unit of each, so it lands only on a node
that advertises its target, and at most one measurement runs on a node at a time: latency and energy
figures never share a node with another measurement. Training tasks ask for CPUs only and may pack.
"""
from __future__ import annotations

import re

TARGET_PREFIX = "beexbench_target_"
MEASURE = "beexbench_measure"


def target_resource(target: str) -> str:
    """The custom resource naming ``target`` (letters, digits, ``_`` and ``-`` kept; anything
    else, which a shell or Ray's JSON flag could mangle, becomes ``_``)."""
    return TARGET_PREFIX + re.sub(r"[^A-Za-z0-9_-]", "_", target)


def node_resources(targets: list[str]) -> dict[str, float]:
    """What a node measuring ``targets`` advertises: each target once, and one measurement slot."""
    return {**{target_resource(t): 1.0 for t in targets}, MEASURE: 1.0}


def advertised_targets(resources: dict[str, float]) -> list[str]:
    """The targets a node's resources name (as sanitised; for messages)."""
    return sorted(k[len(TARGET_PREFIX):] for k in resources if k.startswith(TARGET_PREFIX))
