"""A third-party package adds a task through the ``beexbench.tasks`` entry-point group, without
touching beexbench: a tiny package on a tmp path with a .dist-info (the same as ``pip install``-ing
it) is listed by the real CLI and loads, builds and caches like a catalog task."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PLUGIN = textwrap.dedent('''
    """Test plugin: tasks published through the beexbench.tasks entry-point group."""
    import pandas as pd

    from beexbench.data import define_task

    GOOD = ["great", "lovely", "superb", "fine", "moving"]
    BAD = ["awful", "dull", "boring", "weak", "bland"]


    @define_task("plugin_reviews", label_names=("bad", "good"), description="Plugin task: synthetic reviews.",
                 source="beex_task_plugin (synthetic)", vocab_size=120,
                 model_recipe={"encoder": {"token_dropout": 0.1}})
    def plugin_reviews(cache_dir, progress):
        rows = [(f"the film was {(GOOD if i % 2 else BAD)[i % 5]} take {i}", "good" if i % 2 else "bad")
                for i in range(60)]
        return pd.DataFrame(rows, columns=["text", "label"])


    NOT_A_TASK = 42
''')

ENTRY_POINTS = textwrap.dedent("""
    [beexbench.tasks]
    plugin_reviews = beex_task_plugin:plugin_reviews
    plugin_reviews_again = beex_task_plugin:plugin_reviews
    plugin_not_a_task = beex_task_plugin:NOT_A_TASK
    plugin_broken = beex_task_plugin_broken:task
""")


def _plugin(root: Path, entry_points: str) -> Path:
    root.mkdir()
    (root / "beex_task_plugin.py").write_text(PLUGIN)
    (root / "beex_task_plugin_broken.py").write_text("raise RuntimeError('this task plugin is broken')\n")
    info = root / "beex_task_plugin-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: beex-task-plugin\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(entry_points)
    return root


@pytest.fixture(scope="module")
def plugins(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("task-plugin")
    good = "\n".join(ENTRY_POINTS.strip().splitlines()[:3]) + "\n"  # the two working entries
    return {"good": _plugin(base / "good", good), "all": _plugin(base / "all", ENTRY_POINTS)}


def _run(args: list[str], plugin: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "BEEXBENCH_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join(p for p in (str(plugin), os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=300)


def test_plugin_task_is_listed_and_loads_through_the_cli(plugins, tmp_path):
    cli = ["-c", "from beexbench.cli import main; main()"]
    listed = _run([*cli, "list", "tasks", "--format", "json"], plugins["good"], tmp_path)
    assert listed.returncode == 0, listed.stderr
    tasks = {t["name"]: t for t in json.loads(listed.stdout)["tasks"]}
    assert list(tasks)[0] == "rotten_tomatoes" and "trec" in tasks  # the catalog is still there, first
    assert tasks["plugin_reviews"]["description"] == "Plugin task: synthetic reviews."
    assert tasks["plugin_reviews"]["origin"] == "beex_task_plugin (synthetic)"
    assert "plugin_reviews_again" in tasks

    info = _run([*cli, "info", "plugin_reviews", "--format", "json"], plugins["good"], tmp_path)
    assert info.returncode == 0, info.stderr
    card = json.loads(info.stdout)
    assert card["name"] == "plugin_reviews" and card["label_names"] == ["bad", "good"]
    assert card["num_examples"] == 60 and card["split_sizes"] == {"train": 48, "val": 6, "test": 6}
    assert (tmp_path / "cache" / "tasks" / "plugin_reviews" / "v1" / "MANIFEST.json").is_file()


def test_a_broken_task_plugin_is_listed_as_broken_and_the_others_still_are(plugins, tmp_path):
    cli = ["-c", "from beexbench.cli import main; main()"]
    listed = _run([*cli, "list", "tasks", "--format", "json"], plugins["all"], tmp_path)
    assert listed.returncode == 0, listed.stderr
    tasks = {t["name"]: t for t in json.loads(listed.stdout)["tasks"]}
    assert list(tasks)[0] == "rotten_tomatoes" and tasks["trec"]["description"] and tasks["plugin_reviews"]["origin"]
    for name, expected in (("plugin_broken", "[broken: cannot load 'plugin_broken' from beex_task_plugin_broken:task"),
                           ("plugin_not_a_task", "[broken: task 'plugin_not_a_task' from beex_task_plugin:NOT_A_TASK")):
        row = tasks[name]
        assert row["description"].startswith(expected) and "\n" not in row["description"], row
        assert row["origin"] == "entry-point:beex-task-plugin"
    assert "RuntimeError: this task plugin is broken" in tasks["plugin_broken"]["description"]
    text = _run([*cli, "list", "tasks"], plugins["all"], tmp_path)  # the table, too
    assert text.returncode == 0 and "plugin_broken" in text.stdout and "broken" in text.stdout, text.stderr


_API = textwrap.dedent("""
    import sys
    from beexbench.data import list_tasks, load_task
    from beexbench.data.registry import TASKS, get_spec
    from beexbench.data.tasks import model_recipe
    from beexbench.errors import BeexError

    names = list_tasks()
    assert names[:6] == ["rotten_tomatoes", "sms_spam", "trec", "bbc_news", "tweet_sentiment",
                         "movie_sentiment_score"], names
    assert {"plugin_reviews", "plugin_reviews_again", "plugin_not_a_task", "plugin_broken"} <= set(names)
    assert TASKS.entry("plugin_reviews").origin == "entry-point:beex-task-plugin"
    assert "beex_task_plugin" not in sys.modules  # listing imports no plugin

    data = load_task("plugin_reviews", cache_dir=sys.argv[1])
    assert data.card.num_examples == 60 and data.num_labels == 2 and set(data.test["label"]) == {0, 1}
    again = load_task("plugin_reviews", cache_dir=sys.argv[1], limit=8)  # 8 + 6 + 6: the 20 rows a task needs
    assert again.card.limit == 8 and len(again.train) == 8
    assert model_recipe("plugin_reviews") == {"encoder": {"token_dropout": 0.1}}

    # one definition under a second entry-point name is its own task, with its own cache
    assert get_spec("plugin_reviews_again").name == "plugin_reviews_again"
    assert load_task("plugin_reviews_again", cache_dir=sys.argv[1]).card.name == "plugin_reviews_again"

    for name, expected in (("plugin_not_a_task", "is not a beexbench TaskDefinition (got int)"),
                           ("plugin_broken", "RuntimeError: this task plugin is broken")):
        try:
            get_spec(name)
        except BeexError as exc:
            msg = str(exc)
            assert expected in msg and "\\n" not in msg and "entry-point:beex-task-plugin" in msg, msg
        else:
            raise AssertionError(name)
    assert get_spec("trec").name == "trec"  # a broken plugin does not hide the others
    print("ok")
""")


def test_plugin_tasks_through_the_python_api(plugins, tmp_path):
    out = _run(["-c", _API, str(tmp_path / "c")], plugins["all"], tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "c" / "tasks").iterdir()) == ["plugin_reviews", "plugin_reviews_again"]


def test_plugin_task_is_absent_without_the_package():
    from beexbench.data import list_tasks

    assert "plugin_reviews" not in list_tasks()
