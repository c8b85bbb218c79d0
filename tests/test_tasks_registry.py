"""The task registry (generic Registry, ``beexbench.tasks`` entry points, the catalog as lazy
built-in entries) and the shape of beexbench.data: no import cycle, and importing any of its
modules registers nothing."""
from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

import beexbench.data as data_pkg
from beexbench.data import catalog, define_task, list_tasks, register_task, unregister_task
from beexbench.data.definition import TaskDefinition
from beexbench.data.registry import BUILTIN_TASKS, TASKS, get_spec
from beexbench.data.tasks import model_recipe
from beexbench.errors import BeexError, UnknownNameError

DATA_DIR = Path(data_pkg.__file__).parent


# --------------------------------------------------------------------------- #
# Import graph
# --------------------------------------------------------------------------- #
def _module_name(path: Path, package: str) -> str:
    return package if path.stem == "__init__" else f"{package}.{path.stem}"


def import_graph(package_dir: Path, package: str) -> dict[str, set[str]]:
    """``module -> modules of the same package it imports``, from every import statement in the
    file (top level, inside functions or ``if TYPE_CHECKING`` alike), relative or absolute."""
    modules = {_module_name(p, package): p for p in sorted(package_dir.glob("*.py"))}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    if not base:
                        continue
                    base_name = ".".join(base)
                else:
                    base_name = ""
                head = ".".join(p for p in (base_name, node.module or "") if p)
                targets = [head] + [f"{head}.{a.name}" for a in node.names]
            for t in targets:
                if t in modules and t != mod and t != package:  # the parent package is not an edge
                    graph[mod].add(t)
                elif t == package and mod != package and isinstance(node, ast.ImportFrom) and node.module:
                    graph[mod].add(t)  # `from beexbench.data import x` inside a submodule
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_the_cycle_check_finds_a_lazy_cycle(tmp_path):
    """The check can fail: a cycle closed by an import inside a function is found."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import helper\n")
    (pkg / "b.py").write_text("def helper():\n    from . import a\n    return a\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    graph = import_graph(pkg, "pkg")
    assert graph["pkg.c"] == {"pkg.a"}
    assert find_cycle(graph) in (["pkg.a", "pkg.b", "pkg.a"], ["pkg.b", "pkg.a", "pkg.b"])


def test_data_package_has_no_import_cycle():
    graph = import_graph(DATA_DIR, "beexbench.data")
    # the registry reaches the catalog by "module:attr" strings, resolved on first use: count them as edges
    graph["beexbench.data.registry"] |= {t.partition(":")[0] for t in BUILTIN_TASKS.values()}
    # the walker sees the edges it should (a walker that saw nothing would pass vacuously)
    assert "beexbench.data.registry" in graph["beexbench.data.tasks"]
    assert "beexbench.data.definition" in graph["beexbench.data.catalog"]
    assert "beexbench.data.hub" in graph["beexbench.data.local"]
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_no_data_module_is_over_350_lines():
    long = {p.name: n for p in DATA_DIR.glob("*.py") if (n := len(p.read_text().splitlines())) > 350}
    assert not long, long


_ISOLATED = textwrap.dedent("""
    import importlib, sys, types
    from pathlib import Path

    data_dir = Path(sys.argv[1])
    names = sorted(p.stem for p in data_dir.glob("*.py") if p.stem != "__init__")

    def fresh():
        for k in [k for k in sys.modules if k == "beexbench" or k.startswith("beexbench.")]:
            del sys.modules[k]
        # beexbench.data as a bare package: its __init__ does not run, so each module is
        # imported first, with only what it imports itself
        import beexbench
        stub = types.ModuleType("beexbench.data")
        stub.__path__ = [str(data_dir)]
        sys.modules["beexbench.data"] = stub
        beexbench.data = stub

    def nothing_registered(after):
        reg = sys.modules.get("beexbench.data.registry")
        if reg is not None:
            assert reg.TASKS._entries == {} and not reg.TASKS._entry_points_loaded, after

    for name in names:
        fresh()
        importlib.import_module("beexbench.data." + name)
        nothing_registered(name)
    for k in [k for k in sys.modules if k == "beexbench" or k.startswith("beexbench.")]:
        del sys.modules[k]
    import beexbench.data, beexbench.data.catalog
    nothing_registered("beexbench.data")

    fresh()
    from beexbench.data.registry import list_tasks, get_spec
    assert list_tasks()[0] == "rotten_tomatoes"
    assert "beexbench.data.catalog" not in sys.modules, "listing names imported the catalog"
    assert get_spec("trec").label_names[0] == "ABBR"
    assert "beexbench.data.catalog" in sys.modules
    print("ok", len(names))
""")


def test_each_data_module_imports_alone_in_a_fresh_interpreter():
    out = subprocess.run([sys.executable, "-c", _ISOLATED, str(DATA_DIR)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["ok", str(len(list(DATA_DIR.glob("*.py"))) - 1)]


# --------------------------------------------------------------------------- #
# Registry behaviour
# --------------------------------------------------------------------------- #
def test_builtin_table_is_the_catalog():
    assert list(BUILTIN_TASKS) == [d.name for d in catalog.CATALOG]
    for d in catalog.CATALOG:
        assert isinstance(d, TaskDefinition) and BUILTIN_TASKS[d.name] == f"beexbench.data.catalog:{d.name}"
        assert get_spec(d.name) is d and TASKS.entry(d.name).origin == "builtin"
    assert list_tasks()[: len(BUILTIN_TASKS)] == list(BUILTIN_TASKS)
    assert model_recipe("rotten_tomatoes") == {"encoder": {"token_dropout": 0.4}}
    assert model_recipe("csv:x.csv") == {}


def _rows(cache_dir, progress):
    return pd.DataFrame({"text": [f"word{i} {'good' if i % 2 else 'bad'}" for i in range(40)],
                         "label": ["pos" if i % 2 else "neg" for i in range(40)]})


@pytest.fixture
def scratch():
    names = []
    yield names
    for n in names:
        unregister_task(n)


def test_register_task_direct_and_as_decorator(scratch):
    scratch += ["reg-direct", "reg-deco"]
    assert register_task("reg-direct", _rows, label_names=("neg", "pos"), model_recipe={"a": 1}) is _rows

    @register_task("reg-deco", problem="regression", vocab_size="300")
    def build(cache_dir, progress):
        return _rows(cache_dir, progress)

    assert build.__name__ == "build"  # the decorator hands the builder back
    d = get_spec("reg-direct")
    assert d.builder is _rows and d.label_names == ("neg", "pos") and d.model_recipe == {"a": 1}
    assert get_spec("reg-deco").vocab_size == 300 and get_spec("reg-deco").problem == "regression"
    assert list_tasks()[-2:] == ["reg-direct", "reg-deco"]


def test_register_task_refusals_and_replace(scratch):
    scratch.append("reg-twice")
    register_task("reg-twice", _rows, description="first")
    with pytest.raises(ValueError, match="already registered"):
        register_task("reg-twice", _rows)
    with pytest.raises(ValueError, match="already registered"):
        register_task("trec", _rows)  # a catalog name, even before the catalog is imported
    register_task("reg-twice", _rows, description="second", replace=True)
    assert get_spec("reg-twice").description == "second"
    with pytest.raises(ValueError, match="problem must be"):
        register_task("reg-bad", _rows, problem="ranking")
    with pytest.raises(ValueError, match="may not contain"):
        register_task("csv:bad", _rows)
    with pytest.raises(ValueError, match="may not contain"):
        define_task("a/b", _rows)
    assert "reg-bad" not in list_tasks()


def test_unregister_and_unknown_name():
    register_task("reg-gone", _rows)
    unregister_task("reg-gone")
    unregister_task("reg-gone")  # twice is fine
    with pytest.raises(UnknownNameError) as ei:
        get_spec("reg-gone")
    with pytest.raises(UnknownNameError) as ei:
        get_spec("sms_spm")
    assert str(ei.value).startswith("unknown task 'sms_spm'; did you mean 'sms_spam'? known tasks: rotten_tomatoes,")
    assert str(ei.value).endswith("(or a dataset spec like csv:PATH?text=COL&label=COL, hf:glue/sst2)")


def test_define_task_registers_nothing_and_normalizes():
    d = define_task("not-registered", _rows, label_names=["a", "b"], text_fields=["text", "text_b"],
                    vocab_size="123")
    assert d.label_names == ("a", "b") and d.text_fields == ("text", "text_b") and d.vocab_size == 123
    assert "not-registered" not in list_tasks()
    with pytest.raises(TypeError, match="builder must be callable"):
        TaskDefinition("x", builder=None)


def test_an_entry_that_is_not_a_definition_is_one_beexerror(monkeypatch):
    from beexbench._registry import Entry

    monkeypatch.setitem(TASKS._entries, "reg-odd", Entry("reg-odd", "beexbench.data.catalog:SCATTERTEXT",
                                                          origin="entry-point:odd"))
    with pytest.raises(BeexError, match=r"task 'reg-odd' from beexbench.data.catalog:SCATTERTEXT "
                                        r"\(entry-point:odd\) is not a beexbench TaskDefinition"):
        get_spec("reg-odd")
