"""Importing any module registers nothing: every registry (models, tasks, targets, exit rules,
FFNs, losses, estimators) is filled on its first lookup, from its built-ins and entry points,
so what is registered never depends on what happened to be imported first."""
from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = r"""
import gc, importlib, json, pkgutil
import beexbench, baselines
from beexbench._registry import Registry
failed = []
for pkg in (beexbench, baselines):
    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        if m.name.endswith("__main__"):
            continue  # runs the CLI
        try:
            importlib.import_module(m.name)
        except Exception as exc:
            failed.append(f"{m.name}: {exc!r}")
registries = {r.kind: sorted(r._entries) for r in gc.get_objects() if isinstance(r, Registry)}
print(json.dumps({"failed": failed, "registries": registries}))
"""


def test_importing_every_module_registers_nothing():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["failed"] == []
    assert {"model", "task", "target"} <= set(found["registries"])  # the walk reached them
    assert {kind: names for kind, names in found["registries"].items() if names} == {}


def test_registering_a_built_in_name_before_any_lookup_is_refused():
    """A registration made before the first lookup must not shadow a built-in of the same name."""
    import pytest

    from beexbench._registry import Registry
    from beexbench.errors import BeexError

    registry = Registry("thing", builtins={"cpu-count": "os:cpu_count"})
    with pytest.raises(BeexError, match="'cpu-count' is registered twice"):
        registry.register("cpu-count")(print)
    import os

    assert registry.get("cpu-count") is os.cpu_count
