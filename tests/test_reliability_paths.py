"""Issue 15, escapes: every name that becomes a path (run id, suite name, model name, task and
dataset name, cell file, model store key) lands inside its root, whatever the name."""
from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from beexbench._io import safe_child, safe_name
from beexbench._registry import Entry
from beexbench.adapters.base import TaskSpec
from beexbench.adapters.registry import ADAPTERS
from beexbench.cli import main
from beexbench.config import load_config
from beexbench.errors import BeexError
from beexbench.results.schema import CellKey, CellRecord
from beexbench.results.store import RunDir, load_records, new_run_id
from beexbench.runner import run_suite
from beexbench.runner.models import checkpoint_dir
from conftest import write_tiny_csv, write_tiny_suite
from records import sample_metrics

TOKEN = f"beex-escape-{os.getpid()}"  # every escape attempt names this, so a file that got out is findable

HOSTILE = [
    "", ".", "..", "...", "../x", "../../" + TOKEN, "a/../../" + TOKEN, "/tmp/" + TOKEN, "//tmp/" + TOKEN,
    "..\\..\\" + TOKEN, "C:\\" + TOKEN, "~", "~/" + TOKEN, "$HOME", "a\0b", "\0", "x" * 300, "é" * 200,
    "\u2215tmp\u2215" + TOKEN,  # division slash
    "\uff0e\uff0e", "\uff0e\uff0e\u2215" + TOKEN,  # fullwidth dots
    "\u2024\u2024/" + TOKEN,  # one-dot leaders
    "\u202e" + TOKEN, "line\nbreak", " ", "-rf", ".hidden", "x.", "con", "nul", "%2e%2e%2f" + TOKEN,
    "....//" + TOKEN, "\ud800", "dir with space", "dir-with-space", "a+0123456789abcdef",
]
_ALPHABET = "ab./\\\0~ -_+=:é\u2215\uff0e\u2024\u00a0\u200b\U0001F600"


def _random_names(n: int = 150, seed: int = 15) -> list[str]:
    rnd = random.Random(seed)
    return ["".join(rnd.choice(_ALPHABET) for _ in range(rnd.choice([1, 2, 3, 8, 40, 300]))) for _ in range(n)]


NAMES = HOSTILE + _random_names()


def _inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


def _everything_under(folder: Path) -> list[Path]:
    return [Path(d) / n for d, dirs, files in os.walk(folder) for n in dirs + files]


def _assert_nothing_escaped(tmp_path: Path, roots: list[Path], before_parent: set[str]) -> None:
    assert set(os.listdir(tmp_path.parent)) == before_parent, "something was written next to the test folder"
    for p in _everything_under(tmp_path):
        assert any(_inside(p, r) or r.is_relative_to(p) for r in roots) or p.name in ("tiny.csv", "tiny.toml"), p
    assert not Path("/tmp", TOKEN).exists() and not (Path.home() / TOKEN).exists()


# --------------------------------------------------------------------------- #
# the helpers
# --------------------------------------------------------------------------- #
def test_safe_name_is_one_plain_component_and_one_to_one():
    mapped = {n: safe_name(n) for n in NAMES}
    for name, safe in mapped.items():
        assert safe and safe not in (".", "..") and "/" not in safe and "\0" not in safe, (name, safe)
        assert len(os.fsencode(safe)) <= 120 and safe.isascii(), (name, safe)
        assert safe_child("/r", safe) == Path("/r", safe)
    assert len(set(mapped.values())) == len(mapped)  # two names never share a file
    assert safe_name("rotten_tomatoes") == "rotten_tomatoes" and safe_name("fp32-no-ee") == "fp32-no-ee"


def test_safe_child_refuses_what_is_not_one_name_inside_root(tmp_path):
    for bad in ("..", ".", "", "a/b", "../x", "/etc", "a\0b", "x" * 300, "\ud800"):
        with pytest.raises(BeexError, match="--run-id .* is not a plain file name"):
            safe_child(tmp_path, bad, what="--run-id")
    (tmp_path / "link").symlink_to(tmp_path.parent)
    with pytest.raises(BeexError, match="outside"):
        safe_child(tmp_path, "link", "x")
    assert safe_child(tmp_path, "\uff0e\uff0e") == tmp_path / "\uff0e\uff0e"  # a look-alike is just a name


# --------------------------------------------------------------------------- #
# every place a name becomes a path, fed every hostile name
# --------------------------------------------------------------------------- #
def test_hostile_names_never_land_outside_the_roots(tmp_path):
    results, store = tmp_path / "results", tmp_path / "models"
    before = set(os.listdir(tmp_path.parent))
    spec = TaskSpec(task="t", num_labels=2, vocab_size=30, max_len=8)
    cells = RunDir(results / "run")
    for i, name in enumerate(NAMES):
        try:  # run id from the user: refused, or a folder inside results
            run = RunDir.under(results, name)
            with run.lock():
                run.write_run({"run_id": name})
            assert _inside(run.path, results)
        except BeexError as exc:
            assert "\n" not in str(exc)
        run = RunDir.under(results, new_run_id(name))  # suite name: always mapped inside
        assert _inside(run.path, results)
        key = CellKey(model=name, task=f"csv:/d/{name}?name={name}", target=name, seed=i, setting=name)
        path = cells.write_cell(CellRecord(key=key, run_id="run", metrics=sample_metrics()))  # cell file
        assert path.parent == cells.cells_dir and cells.has_cell(key)
        ckpt = checkpoint_dir(store, name, TaskSpec(**{**spec.to_dict(), "task": name}), {}, i, None)  # store key
        ckpt.mkdir(parents=True)
        assert _inside(ckpt, store) and ckpt.relative_to(store).parts[1] == safe_name(name)
    assert len(list(cells.cells_dir.iterdir())) == len(NAMES)  # no two keys shared a file
    assert {r.key.model for r in load_records([cells.path])} == set(NAMES)
    _assert_nothing_escaped(tmp_path, [results, store], before)


@pytest.fixture
def hostile_plugin(monkeypatch):
    """A plugin whose model name climbs out of the folders (the majority floor under it)."""
    name = "../../" + TOKEN + "-model"
    ADAPTERS.names()  # load the entry points first, so ours is not shadowed
    monkeypatch.setitem(ADAPTERS._entries, name, Entry(name, "baselines.floors:Majority", {}, "entry-point:evil"))
    return name


def test_dataset_and_plugin_names_stay_inside_in_a_real_run(tmp_path, monkeypatch, hostile_plugin):
    """Reproduction: a dataset name= (relative or absolute) and a plugin model name with ../
    wrote outside the model store and the results folder."""
    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "cache"))
    before = set(os.listdir(tmp_path.parent))
    csv = write_tiny_csv(tmp_path / "data.csv")
    tasks = [f"csv:{csv}?text=text&label=label&name=../../{TOKEN}-data",
             f"csv:{csv}?text=text&label=label&name=/tmp/{TOKEN}-abs"]
    cfg = load_config(config_file=write_tiny_suite(tmp_path, models=("majority",)), tasks=tasks,
                      models=[hostile_plugin], run_id="hostile")
    summary = run_suite(cfg)
    assert len(summary.written) == 2 and not summary.failed, summary.failed
    ckpts = sorted(p.parent for p in (tmp_path / "models").rglob("checkpoint.json"))
    assert len(ckpts) == 2 and all(_inside(p, tmp_path / "models") for p in ckpts)
    assert {r.key.model for r in load_records([summary.run_dir])} == {hostile_plugin}
    roots = [tmp_path / "results", tmp_path / "models", tmp_path / "cache", tmp_path / "data.csv"]
    _assert_nothing_escaped(tmp_path, roots, before)


@pytest.mark.parametrize("run_id", ["../../" + TOKEN, "/tmp/" + TOKEN, "..", "a/b"])
def test_a_run_id_out_of_the_results_folder_is_a_one_line_error(tmp_path, capsys, monkeypatch, run_id):
    """Reproduction: --run-id ../../x wrote the run outside the results folder."""
    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "cache"))
    before = set(os.listdir(tmp_path.parent))
    suite = write_tiny_suite(tmp_path, models=("majority",))
    try:
        main(["run", "--config", str(suite), "--run-id", run_id])
        code = 0
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and "run id" in err and "not a plain file name" in err and "\n" not in err, err
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").iterdir())
    assert not (tmp_path / "cache").exists()  # refused by the validation pass, before any data is loaded
    _assert_nothing_escaped(tmp_path, [tmp_path / "results", tmp_path / "cache"], before)
