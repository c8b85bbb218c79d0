"""One registration route per kind (issue 27): models, executors and backbones are entries of
:class:`beexbench._registry.Registry`, built-ins and plugins alike; executors take typed options;
beexformer's variants are data; one dependency walker plans what a model needs first."""
from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from beexbench.adapters.base import ModelAdapter
from beexbench.adapters.registry import ENTRY_POINT_GROUP, get_adapter_class
from beexbench.backbones import sources as bs
from beexbench.config import tomllib  # tomllib, or tomli before Python 3.11
from beexbench.errors import BeexError, UnknownNameError
from beexbench.runner.executors import EXECUTORS, get_executor, takes_options
from beexbench.runner.models import walk_needs

REPO = Path(__file__).resolve().parents[1]


def _pyproject_models() -> dict[str, str]:
    doc = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return doc["project"]["entry-points"][ENTRY_POINT_GROUP]


# -- models: one route (an entry point), built-in or plugin ----------------------------------------
def test_every_model_class_in_the_tree_is_an_entry_point_of_pyproject():
    """Each model class of beexbench that names itself (``name``: beexformer, its variants, the
    packed deployments) is declared in pyproject.toml under that name, as the baselines (named by
    their entry point) are: the plugin route, for built-ins too. Every entry resolves to its class."""
    declared = _pyproject_models()
    named = {}
    for path in sorted((REPO / "beexbench").rglob("*.py")):
        module_name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        if module_name.endswith("__main__") or "class " not in path.read_text(encoding="utf-8"):
            continue
        module = importlib.import_module(module_name)
        for attr, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, ModelAdapter) and obj.__module__ == module_name
                    and isinstance(vars(obj).get("name"), str) and vars(obj)["name"]):
                named[obj.name] = f"{module_name}:{attr}"
    assert {n: t for n, t in declared.items() if t.startswith("beexbench.")} == named
    assert {"beexformer", "beexformer-a5", "beexformer-no-ee", "beexformer-packed"} <= set(named)
    for name, target in declared.items():
        module_name, _, attr = target.partition(":")
        cls = getattr(importlib.import_module(module_name), attr)
        assert inspect.isclass(cls) and issubclass(cls, ModelAdapter)
        assert get_adapter_class(name).name == name and issubclass(get_adapter_class(name), cls)
    assert {"fp32", "majority", "int8-ort"} <= set(declared)


def test_the_installed_entry_points_are_pyprojects():
    """A stale install (pyproject.toml changed, `pip install -e .` not re-run) fails here, by name."""
    installed = {ep.name: ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)
                 if getattr(ep.dist, "name", None) == "beexbench"}
    assert installed == _pyproject_models(), "re-run `pip install -e .` (the installed entry points are stale)"


def test_beexformer_variants_are_data_with_their_old_classes():
    from beexbench.adapters import beexformer as bf

    assert len(bf.VARIANTS) == 11
    base = bf.BEExformer.default_spec()
    for class_name, variant in bf.VARIANTS.items():
        cls = get_adapter_class(variant.name)
        assert cls is getattr(bf, class_name) and cls.__qualname__ == class_name and cls.__bases__ == (bf.BEExformer,)
        assert str(cls.role) == "ablation of beexformer" and cls.__doc__ == variant.doc
        assert cls.default_spec() == base.merged(variant.defaults)
    # hand-written: what the old classes declared
    assert get_adapter_class("beexformer-no-ee").derived_from == "beexformer"
    assert get_adapter_class("beexformer-ffn").derived_from is None
    assert get_adapter_class("beexformer-no-ee").default_spec().exit.rule == "final"
    assert get_adapter_class("beexformer-ste").default_spec().encoder.estimator == "ste"
    assert get_adapter_class("beexformer-w1a32").default_spec().encoder.act_bits == 32
    assert get_adapter_class("beexformer-kd").default_spec().distill.teacher == "fp32"
    assert get_adapter_class("beexformer-slfn-ffn").default_spec().backbone.ffn == "own"
    # regression: beexformer's own regression defaults reach every variant
    assert get_adapter_class("beexformer-ffn").default_spec("regression").exit.rule == "prediction-change"


# -- executors ------------------------------------------------------------------------------------
def test_executors_are_registry_entries_with_typed_options():
    assert EXECUTORS.names() == ["local", "ray"]
    assert EXECUTORS.entry("local").origin == "builtin" and takes_options("local") == ()
    assert takes_options("ray") == ("address", "max_retries", "node_wait_s", "train_cpus")
    ray = get_executor("ray", address="10.0.0.1:6379", node_wait_s=3, train_cpus=2)
    assert (ray.address, ray.node_wait_s, ray.train_cpus, ray.max_retries) == ("10.0.0.1:6379", 3, 2, 3)
    with pytest.raises(UnknownNameError, match="unknown executor 'rya': did you mean ray"):
        get_executor("rya")
    with pytest.raises(BeexError, match="executor 'local' has no option 'address': it takes none"):
        get_executor("local", address="x")
    with pytest.raises(BeexError, match="executor 'ray' has no option 'train_cpu': did you mean train_cpus"):
        get_executor("ray", train_cpu=2)
    with pytest.raises(BeexError, match=r"'ray.train_cpus' must be int, got str"):
        get_executor("ray", train_cpus="2")
    with pytest.raises(BeexError, match="--node-wait must be a number of seconds above 0"):
        get_executor("ray", node_wait_s=float("nan"))
    with pytest.raises(BeexError, match="max_retries must be 0 or more, not -1"):
        get_executor("ray", max_retries=-1)


def test_an_unknown_executor_on_the_command_line_names_the_closest(capsys, tmp_path):
    from beexbench.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["run", "--suite", "smoke", "--executor", "rya", "--results", str(tmp_path / "r")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown executor 'rya': did you mean ray?") and "\n" not in err
    assert not (tmp_path / "r").exists()


PLUGIN = {
    "beex_exec_plugin/__init__.py": '''
import dataclasses

@dataclasses.dataclass(frozen=True)
class EchoOptions:
    greeting: str = "hello"
    times: int = 1

class Echo:
    name = "echo"
    options = EchoOptions
    def __init__(self, greeting="hello", times=1):
        self.said = greeting * times
    def check_targets(self, targets): pass
    def run(self, plans, ctx): return iter(())
    def close(self): pass

class NotAnExecutor:
    pass
''',
    "beex_exec_plugin-0.1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: beex-exec-plugin\nVersion: 0.1.0\n",
    "beex_exec_plugin-0.1.0.dist-info/entry_points.txt":
        "[beexbench.executors]\necho = beex_exec_plugin:Echo\nbroken = beex_exec_plugin:NotAnExecutor\n",
}


def test_a_package_adds_an_executor_through_the_entry_point_group(tmp_path):
    for rel, text in PLUGIN.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)}
    script = """
import json
from beexbench.errors import BeexError
from beexbench.runner.executors import EXECUTORS, get_executor
out = {"names": EXECUTORS.names(), "origin": EXECUTORS.entry("echo").origin,
       "said": get_executor("echo", greeting="hi", times=2).said}
for bad in ({"name": "echo", "tims": 2}, {"name": "echo", "times": "2"}, {"name": "broken"}):
    try:
        get_executor(bad.pop("name"), **bad)
    except BeexError as exc:
        out.setdefault("errors", []).append(str(exc))
print(json.dumps(out))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["names"] == ["broken", "echo", "local", "ray"]
    assert got["origin"] == "entry-point:beex-exec-plugin" and got["said"] == "hihi"
    assert got["errors"] == [
        "executor 'echo' has no option 'tims': did you mean times?",
        "'echo.times' must be int, got str ('2')",
        "executor 'broken' (entry-point:beex-exec-plugin) is not a beexbench executor: it needs check_targets, run and "
        "close, and `options`, a dataclass of what it takes",
    ]
    listed = subprocess.run([sys.executable, "-c", "from beexbench.cli import main; main()", "list", "executors",
                             "--format", "json"], capture_output=True, text=True, env=env, timeout=120)
    assert listed.returncode == 0, listed.stderr
    rows = {r["name"]: r for r in json.loads(listed.stdout)["executors"]}
    assert rows["echo"]["description"] == "options: greeting, times" and rows["broken"]["description"].startswith("[broken:")


# -- backbones ------------------------------------------------------------------------------------
@pytest.fixture
def registered():
    added: list[str] = []

    def register(name, obj):
        bs.BACKBONES.register(name)(obj)
        added.append(name)

    yield register
    for name in added:
        bs.BACKBONES.unregister(name)


def test_backbones_are_registry_entries_checked_on_first_use(registered):
    from beexbench.adapters.spec import ModelSpec

    assert bs.backbone_names() == ["minilm-l6"] and bs.BACKBONES.get("minilm-l6") is bs.MINILM_L6
    registered("mini-copy", bs.MINILM_L6)  # registered under another name: named as registered (its cache folder)
    assert bs.BACKBONES.get("mini-copy").name == "mini-copy" and bs.BACKBONES.get("mini-copy").members == bs.MINILM_L6.members
    # the model settings read the same registry: the new name is accepted, a typo is refused with the list
    assert ModelSpec.from_dict({"backbone": {"name": "mini-copy"}}).problems() == []
    with pytest.raises(BeexError, match="'model.backbone.name' is 'minilm-l7': use scratch, mini-copy, minilm-l6 or hf:<folder"):
        ModelSpec.from_dict({"backbone": {"name": "minilm-l7"}})
    with pytest.raises(BeexError, match="unknown backbone 'minilm-l7': did you mean minilm-l6"):
        bs.resolve_backbone("minilm-l7")
    registered("not-pinned", dataclasses.replace(bs.MINILM_L6, members={"config.json": "0" * 64}))
    registered("not-a-source", {"name": "x"})
    registered("hf:sneaky", bs.MINILM_L6)
    for name in ("not-pinned", "not-a-source"):
        with pytest.raises(BeexError, match=f"backbone '{name}' .registered at run time. is not a BackboneSource pinning"):
            bs.BACKBONES.get(name)
    with pytest.raises(BeexError, match="cannot start with hf:"):
        bs.BACKBONES.get("hf:sneaky")


def test_no_module_reads_a_backbone_dict():
    """Every user of the backbones goes through the registry (no ``sorted(BACKBONES)``, no
    ``BACKBONES[...]`` / ``.items()`` dict use in the package)."""
    bad = []
    for path in (REPO / "beexbench").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Subscript) and ast.unparse(node.value) == "BACKBONES":
                bad.append(f"{path.name}:{node.lineno}")
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("sorted", "dict", "list") and \
                    any(ast.unparse(a) == "BACKBONES" for a in node.args):
                bad.append(f"{path.name}:{node.lineno}")
    assert bad == []


# -- the one dependency walker ---------------------------------------------------------------------
def test_the_walker_orders_needs_first_and_reports_a_cycle_with_its_chain():
    graph = {"a": ["b", "c"], "b": ["c", "d"], "c": ["d"], "d": []}
    assert walk_needs("a", graph.__getitem__) == ["d", "c", "b", "a"]
    cyclic = {"a": ["b"], "b": ["c"], "c": ["a"]}
    assert walk_needs("a", cyclic.__getitem__) == ["c", "b", "a"]  # no on_cycle: the walk stops there
    seen = []
    walk_needs("a", cyclic.__getitem__, seen.append)
    assert seen == [("a", "b", "c", "a")]


def test_the_local_and_ray_plans_use_the_same_walker(tmp_path, monkeypatch):
    """The checkpoint plan (local executor, ``obtain_model``) and the Ray units read one graph: a
    cycle is the same chain in both, stopping the units' walk and failing the checkpoint plan."""
    from beexbench.adapters.base import TaskSpec
    from beexbench.config import load_config
    from beexbench.runner import models
    from beexbench.runner.executors.units import closure

    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "cache"))
    cfg = load_config("smoke", models_dir=str(tmp_path / "store"))
    cfg.model_overrides["fp32"] = {"distill": {"teacher": "beexformer-kd"}}
    calls = []
    real = models.walk_needs
    monkeypatch.setattr(models, "walk_needs", lambda *a, **k: (calls.append(a[0]), real(*a, **k))[1])
    import beexbench.runner.executors.units as units

    monkeypatch.setattr(units, "walk_needs", models.walk_needs)
    assert closure("beexformer-kd", cfg, "rotten_tomatoes", 0, "classification") == ["fp32", "beexformer-kd"]
    with pytest.raises(BeexError, match=r"model beexformer-kd is trained from itself \(beexformer-kd -> fp32 -> "
                                        r"beexformer-kd\)"):
        models._checkpoint_plan("beexformer-kd", TaskSpec("t", 2, 40, 8), cfg, 0, None)
    assert calls == ["beexformer-kd", "beexformer-kd"]
