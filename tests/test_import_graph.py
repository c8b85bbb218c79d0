"""No import cycle among the modules of beexbench/ and baselines/, counting every import that can
run: at module level and inside functions (a deferred import still makes the two modules depend on
each other; it only hides the circle from Python until the function runs). Imports under
``if TYPE_CHECKING:`` never run and are not counted. Built from the source with ast, so it fails
on a new cycle and names its edges with their line numbers. Also: no import runs back up from a
lower layer to the one above it (issue 27's "done means")."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = ("beexbench", "baselines")

# Edges left in a cycle on purpose, each with why and what removes it. The test fails while one is
# listed but gone (or no longer closes a cycle), so this list only shrinks.
ALLOWED_CYCLE_EDGES: set[tuple[str, str]] = set()  # (the worker's dict round trip through runner.isolate: gone, issue 27)

# (lower layer, the layer above it it must not import); a module belongs to a layer by name prefix
LAYERS = (("beexbench.results", "beexbench.report"), ("beexbench.models", "beexbench.adapters"),
          ("beexbench.adapters.spec", "beexbench.validate"), ("beexbench.adapters._sections", "beexbench.validate"),
          ("beexbench.adapters._fieldchecks", "beexbench.validate"))
# Known upward imports, each with why; the test fails while one is listed but gone.
ALLOWED_UPWARD: set[tuple[str, str]] = set()


def modules(repo: Path = REPO, roots: tuple[str, ...] = ROOTS) -> dict[str, Path]:
    out = {}
    for root in roots:
        for path in (repo / root).rglob("*.py"):
            name = ".".join(path.relative_to(repo).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``): never run."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skip


def imported(module: str, path: Path, node: ast.AST, known: dict[str, Path]) -> set[str]:
    """The known modules one import statement loads (the deepest known module of each name)."""
    if isinstance(node, ast.Import):
        out = set()
        for alias in node.names:
            parts = alias.name.split(".")
            found = next((".".join(parts[:i]) for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in known), None)
            out |= {found} if found else set()
        return out
    if not isinstance(node, ast.ImportFrom):
        return set()
    base = node.module or ""
    if node.level:  # relative: from the module's package, one level up per extra dot
        package = (module if path.name == "__init__.py" else module.rsplit(".", 1)[0]).split(".")
        base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
    return {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names} & set(known)


def graph(repo: Path = REPO, roots: tuple[str, ...] = ROOTS) -> tuple[dict[str, set[str]], dict[tuple[str, str], list[int]]]:
    """(module -> the modules it imports anywhere, (module, imported) -> the lines that import it)."""
    known = modules(repo, roots)
    edges: dict[str, set[str]] = {m: set() for m in known}
    lines: dict[tuple[str, str], list[int]] = {}
    for module, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_only(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            for target in imported(module, path, node, known) - {module}:
                edges[module].add(target)
                lines.setdefault((module, target), []).append(node.lineno)
    return edges, lines


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every group of modules that import each other round a circle (strongly connected
    components of two or more modules), each sorted; iterative Tarjan."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return sorted(found)


def describe(group: list[str], edges: dict[str, set[str]], lines: dict[tuple[str, str], list[int]]) -> str:
    inside = [f"{a} -> {b} (line {', '.join(map(str, lines.get((a, b), [])))})"
              for a in group for b in sorted(edges[a]) if b in group]
    return "; ".join(inside)


def without(edges: dict[str, set[str]], dropped: set[tuple[str, str]]) -> dict[str, set[str]]:
    return {a: {b for b in bs if (a, b) not in dropped} for a, bs in edges.items()}


def test_the_walker_finds_every_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"c"}, "e": set()}) == [["a", "b"], ["c", "d"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_imports_inside_functions_count_and_type_checking_ones_do_not(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from .sub import b\n    return b\n")
    (pkg / "sub" / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .. import c\n"
                                      "def g():\n    import pkg.a\n")
    (pkg / "c.py").write_text("from .sub.b import g\n")
    edges, lines = graph(tmp_path, ("pkg",))
    assert edges["pkg.a"] == {"pkg.sub.b"} and lines[("pkg.a", "pkg.sub.b")] == [2]
    assert edges["pkg.sub.b"] == {"pkg.a"} and edges["pkg.c"] == {"pkg.sub.b"}
    assert cycles(edges) == [["pkg.a", "pkg.sub.b"]]


def test_no_import_cycle_even_through_function_level_imports():
    edges, lines = graph()
    assert "beexbench.adapters._sections" in edges["beexbench.adapters.spec"]  # relative imports resolved ...
    assert "beexbench.backbones.sources" in edges["beexbench.adapters._sections"]  # ... and those inside functions
    found = cycles(without(edges, ALLOWED_CYCLE_EDGES))
    assert not found, "import cycles: " + " | ".join(describe(g, edges, lines) for g in found)
    circles = cycles(edges)
    stale = [(a, b) for a, b in ALLOWED_CYCLE_EDGES
             if b not in edges.get(a, ()) or not any(a in g and b in g for g in circles)]
    assert not stale, f"no longer in a cycle: remove from ALLOWED_CYCLE_EDGES: {stale}"


def test_no_import_runs_up_a_layer():
    edges, lines = graph()
    upward = {(a, b) for a, bs in edges.items() for b in bs for low, high in LAYERS
              if (a == low or a.startswith(low + ".")) and (b == high or b.startswith(high + "."))}
    new = sorted(upward - ALLOWED_UPWARD)
    assert not new, "imports from a lower layer up: " + "; ".join(f"{a} -> {b} (line {lines[(a, b)]})" for a, b in new)
    stale = sorted(ALLOWED_UPWARD - upward)
    assert not stale, f"gone: remove from ALLOWED_UPWARD: {stale}"
    assert edges["beexbench._checks"] == set()  # the shared value check sits below everything
