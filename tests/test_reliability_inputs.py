"""Issue 26: validation before any work covers what the third round found unchecked - ``--limit``
(the dataset rules hold for what is used), every dataset option's range, seeds' range, run ids
that hide characters, config paths that are folders or not text, ``--results`` that is a file,
the Ray-only flags under the local executor and ``--node-wait nan`` - each one line, exit 2,
before anything is loaded or written; a UTF-8 byte-order mark is accepted; and a run whose
second task fails its data checks after cells were written exits 1 (cells ran), not 2.

Exit statuses come from the real console script, as a subprocess."""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from beexbench.config import load_config
from beexbench.data import load_task
from beexbench.data.assemble import MIN_LIMIT, MIN_ROWS
from beexbench.data.options import MAX_LEN_CAP_RANGE, VOCAB_SIZE_RANGE
from beexbench.errors import BeexError
from beexbench.validate import SEED_LIMIT, validate
from conftest import write_tiny_csv, write_tiny_suite


def _command() -> list[str]:
    script = Path(sys.executable).with_name("beexbench")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "beexbench.cli"]


def beexbench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "BEEXBENCH_CACHE": str(tmp_path / "cache")}
    return subprocess.run([*_command(), *args], capture_output=True, text=True, env=env, timeout=300)


def one_error(out: subprocess.CompletedProcess) -> str:
    """The single ``error:`` line of a usage error (status 2, no traceback)."""
    assert "Traceback" not in out.stderr, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (out.returncode, out.stderr)
    return lines[0]


def tiny(tmp_path: Path, **kw) -> Path:
    return write_tiny_suite(tmp_path, models=("majority",), **kw)


def classes_csv(path: Path, classes: str, n: int) -> Path:
    """``n`` rows whose labels cycle through the letters of ``classes``."""
    k = len(classes)
    path.write_text("text,label\n" + "".join(f"row {i} says {classes[i % k]},{classes[i % k]}\n" for i in range(n)))
    return path


# -- defect 7: --limit ----------------------------------------------------------------
def test_limit_one_is_refused_before_any_work(tmp_path):
    """The issue's reproduction: --limit 1 trained on one example of one class and scored 1.0."""
    line = one_error(beexbench(tmp_path, "run", "--config", str(tiny(tmp_path)), "--limit", "1"))
    assert line == (f"error: 'limit' (--limit) is 1: it is examples per split, and a task needs at least {MIN_ROWS} rows "
                    f"over its train, val and test splits: give at least {MIN_LIMIT}, or no limit")
    assert not (tmp_path / "results").exists() and not (tmp_path / "models").exists()
    assert not (tmp_path / "cache").exists()  # nothing loaded


@pytest.mark.parametrize("limit, refused", [(0, True), (1, True), (6, True), (7, False), (400, False)])
def test_limit_below_what_gives_min_rows_is_a_validation_problem(limit, refused):
    assert MIN_LIMIT == 7  # 3 splits x 7 >= 20 rows; 3 x 6 < 20
    problems = [p for p in validate(load_config("smoke", limit=limit)) if "'limit'" in p]
    assert bool(problems) == refused, problems


def test_the_dataset_rules_apply_to_the_limited_splits(tmp_path):
    # 30 rows split 24/3/3: --limit 7 keeps 7 + 3 + 3 = 13 rows, under the 20 a task needs
    small = write_tiny_csv(tmp_path / "small.csv", n=30)
    with pytest.raises(BeexError, match=r"--limit 7 leaves dataset 'small' 13 rows \(train 7, val 3, test 3\)"):
        load_task(f"csv:{small}?text=text&label=label", limit=7)
    assert len(load_task(f"csv:{small}?text=text&label=label").train) == 24  # unlimited it is fine
    # a limit under the classes of a split drops a class: 10 classes, 7 rows per split
    ten = classes_csv(tmp_path / "ten.csv", "abcdefghij", n=300)
    with pytest.raises(BeexError, match=r"--limit 7 drops class '.' from dataset 'ten'\'s train split \(3 of 10 classes "
                                        r"lost\): raise --limit to at least 10, or drop it"):
        load_task(f"csv:{ten}?text=text&label=label", limit=7)
    kept = load_task(f"csv:{ten}?text=text&label=label", limit=10)
    assert all(set(kept.split(k)["label"]) == set(range(10)) for k in ("train", "val", "test"))
    assert kept.card.split_sizes == {"train": 10, "val": 10, "test": 10}


# -- defect 8: every dataset option's range, and seeds ---------------------------------
@pytest.mark.parametrize("option, needle", [
    ("vocab_size=0", f"vocab_size in dataset '{{spec}}' must be an integer from {VOCAB_SIZE_RANGE[0]:,} to "
                     f"{VOCAB_SIZE_RANGE[1]:,}, got '0'"),
    ("vocab_size=10000000", "vocab_size"), ("vocab_size=-5", "vocab_size"), ("vocab_size=%C2%B2", "vocab_size"),
    ("max_len_cap=0", f"max_len_cap in dataset '{{spec}}' must be an integer from {MAX_LEN_CAP_RANGE[0]:,}"),
    ("max_len_cap=15", "max_len_cap"), ("max_len_cap=100000", "max_len_cap"),
    ("dedupe=ture", "'dedupe'"), ("missing=skip", "'missing'"), ("sep=;;", "'sep'"), ("problem=ranking", "'problem'"),
    ("labels=a,,b", "'labels'"), ("labels=a,a", "'labels'"), ("labels=a", "'labels'"), ("name=", "'name'"),
    ("text=", "'text'"),
])
def test_every_dataset_option_is_range_checked_in_validation_and_at_load(tmp_path, option, needle):
    csv = write_tiny_csv(tmp_path / "d.csv")
    spec = f"csv:{csv}?text=text&label=label&{option}"
    problems = [p for p in validate(load_config("smoke", tasks=[spec])) if spec in p]
    assert len(problems) == 1 and needle.format(spec=spec) in problems[0], problems
    with pytest.raises(BeexError) as err:  # the loader refuses it the same way, never ignores it
        load_task(spec)
    assert needle.format(spec=spec) in str(err.value)


def test_options_in_range_are_honoured(tmp_path):
    csv = write_tiny_csv(tmp_path / "d.csv")
    spec = f"csv:{csv}?text=text&label=label&vocab_size=100&max_len_cap=16&dedupe=no"
    assert validate(load_config("smoke", tasks=[spec])) == []
    data = load_task(spec)
    assert data.tokenizer.get_vocab_size() == 100 and data.card.max_len == 16


@pytest.mark.parametrize("seed, ok", [(0, True), (SEED_LIMIT - 1, True), (SEED_LIMIT, False), (-1, False),
                                      (10**30, False)])
def test_seeds_out_of_range_are_refused_in_validation(seed, ok):
    problems = [p for p in validate(load_config("smoke", seeds=[seed])) if "'seeds'" in p]
    assert (problems == []) == ok, problems
    if not ok:
        assert problems == [f"'seeds' (--seeds) must be integers from 0 to {SEED_LIMIT - 1} (what numpy and scikit-learn "
                            f"seed with), got {seed}"]


def test_a_huge_seed_is_a_usage_error_not_a_failed_cell(tmp_path):
    out = beexbench(tmp_path, "run", "--config", str(tiny(tmp_path)), "--seeds", str(2**64))
    assert "'seeds' (--seeds) must be integers from 0 to 4294967295" in one_error(out)
    assert not (tmp_path / "results").exists()


# -- defect 12: config paths and --results -----------------------------------------------
def test_config_that_is_a_folder_or_binary_is_one_line(tmp_path):
    folder = tmp_path / "suite.toml"
    folder.mkdir()
    assert one_error(beexbench(tmp_path, "run", "--config", str(folder))) == \
        f"error: config file {folder} is a folder: name a TOML suite file (e.g. {folder}/suite.toml)"
    binary = tmp_path / "model.bin"
    binary.write_bytes(b"\x00\x01\xff\xfe" * 64)
    assert one_error(beexbench(tmp_path, "run", "--config", str(binary))) == \
        f"error: config file {binary} is not UTF-8 text (byte 2): name a TOML suite file"
    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)  # not read (it would wait for a writer): refused as not a regular file
    assert "is not a regular file" in one_error(beexbench(tmp_path, "train", "--config", str(fifo)))


def test_results_that_is_a_file_is_one_line(tmp_path):
    suite = tiny(tmp_path)
    results = tmp_path / "results.txt"
    results.write_text("not a folder\n")
    line = one_error(beexbench(tmp_path, "run", "--config", str(suite), "--results", str(results)))
    assert line == f"error: 'results_dir' (--results) {results} is not a folder: name a folder (it is made when missing)"
    inside = one_error(beexbench(tmp_path, "run", "--config", str(suite), "--results", str(results / "sub")))
    assert f"is inside {results}, which is not a folder" in inside
    assert results.read_text() == "not a folder\n" and not (tmp_path / "models").exists()


# -- defect 13: smaller ---------------------------------------------------------------------
@pytest.mark.parametrize("run_id", ["a\u202eb", "run\nid", "tab\there", "zero\u200bwidth", "bell\x07"])
def test_run_ids_with_control_or_invisible_characters_are_refused(tmp_path, run_id):
    line = one_error(beexbench(tmp_path, "run", "--config", str(tiny(tmp_path)), "--run-id", run_id))
    assert line.startswith("error: run id ") and "control or invisible character" in line
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("flags, needle", [
    (["--node-wait", "5"], "error: --node-wait is for --executor ray, and this run uses --executor local"),
    (["--train-cpus", "2", "--node-wait", "5"], "error: --node-wait, --train-cpus are for --executor ray"),
    (["--ray-address", "10.0.0.1:6379"], "error: --ray-address is for --executor ray"),
    (["--executor", "ray", "--node-wait", "nan"], "error: --node-wait must be a number of seconds above 0"),
    (["--executor", "ray", "--node-wait", "inf"], "error: --node-wait must be a number of seconds above 0"),
])
def test_ray_only_flags_and_bad_node_waits_are_usage_errors(tmp_path, flags, needle):
    line = one_error(beexbench(tmp_path, "run", "--config", str(tiny(tmp_path)), *flags))
    assert line.startswith(needle), line
    assert not (tmp_path / "results").exists()


def test_a_byte_order_mark_is_accepted_in_configs_and_jsonl(tmp_path):
    suite = tiny(tmp_path)
    suite.write_bytes(b"\xef\xbb\xbf" + suite.read_bytes())
    assert load_config(None, suite).suite == "tiny"
    rows = [json.dumps({"text": f"row {i} is {'good' if i % 2 else 'bad'}", "label": i % 2}) for i in range(40)]
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_bytes(b"\xef\xbb\xbf" + "\n".join(rows).encode() + b"\n")
    data = load_task(f"jsonl:{jsonl}?text=text&label=label")
    assert data.card.num_examples == 40 and data.num_labels == 2


def test_data_checks_failing_after_cells_ran_exit_1_and_resume_finishes(tmp_path):
    """The second task passes validation (its file exists) but fails its data checks once the first
    task's cell is written: its cell fails, the run exits 1 (cells ran), and --resume re-runs it."""
    suite = tiny(tmp_path)
    good = tmp_path / "tiny.csv"  # written by write_tiny_suite
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nonly,pos\nthree,neg\nrows,pos\n")
    tasks = f"csv:{good}?text=text&label=label&name=tiny,csv:{bad}?text=text&label=label&name=bad"
    out = beexbench(tmp_path, "run", "--config", str(suite), "--tasks", tasks, "--run-id", "r", "--format", "json")
    assert out.returncode == 1, out.stderr
    summary = json.loads(out.stdout[out.stdout.index("{"):])
    (failed,) = summary["failed"]
    assert failed["cell"].startswith("majority__") and "bad.csv" in failed["cell"]
    assert "dataset 'bad' has 3 usable rows" in failed["error"]
    assert len(summary["written"]) == 2
    last = [line for line in out.stderr.splitlines() if line.strip()][-1]
    assert last.startswith(f"error: 1 cell(s) failed: {failed['cell']}") and "--resume" in last
    write_tiny_csv(bad)  # the data fixed: resume runs only the failed cell
    again = beexbench(tmp_path, "run", "--resume", str(tmp_path / "results" / "r"), "--format", "json")
    assert again.returncode == 0, again.stderr
    done = json.loads(again.stdout[again.stdout.index("{"):])
    assert done["written"] == [failed["cell"]] and len(done["skipped"]) == 1


def test_data_checks_failing_before_any_cell_is_still_a_usage_error(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nonly,pos\nthree,neg\nrows,pos\n")
    out = beexbench(tmp_path, "run", "--config", str(tiny(tmp_path)), "--tasks", f"csv:{bad}?text=text&label=label")
    assert "dataset 'bad' has 3 usable rows" in one_error(out)
    results = tmp_path / "results"
    assert not results.exists() or not any(results.iterdir())  # the run folder it made is removed


def _server(answer: bytes | None) -> tuple[socket.socket, int]:
    """A TCP port that accepts and answers ``answer`` (None: never answers), in a thread."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)

    def serve():
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                if answer is not None:
                    conn.sendall(answer)
                    conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def test_a_port_that_is_not_a_ray_cluster_is_refused_before_ray_starts(tmp_path):
    """The issue: an address that accepts connections but is no Ray cluster printed Ray's log lines
    for half a minute (or more) first; now it is one line, and Ray never tries to connect."""
    pytest.importorskip("ray", reason="the address check runs once Ray is importable")
    server, port = _server(b"SSH-2.0-OpenSSH_9.6\r\n")
    with server:
        out = beexbench(tmp_path, "run", "--config", str(tiny(tmp_path)), "--executor", "ray",
                        "--ray-address", f"127.0.0.1:{port}")
    assert one_error(out) == (f"error: cannot reach the Ray cluster at 127.0.0.1:{port} (port {port} answers, but not as "
                              "a Ray cluster (a gRPC server) does): pass the address `ray start --head` printed "
                              "(--ray-address HOST:PORT), and check its port is open")
    assert not (tmp_path / "results").exists()


def test_the_address_check_wants_an_http2_answer():
    from beexbench.runner.executors.reach import reachable as _reachable

    silent, port = _server(None)
    with silent:
        assert _reachable(f"127.0.0.1:{port}", timeout_s=0.3) == f"nothing answered on port {port} within 0.3 s"
    settings = bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # an empty HTTP/2 SETTINGS frame: what a gRPC server sends first
    grpc, port = _server(settings)
    with grpc:
        assert _reachable(f"127.0.0.1:{port}", timeout_s=5) is None
    closed, port = _server(b"")
    with closed:
        assert "not as a Ray cluster" in _reachable(f"127.0.0.1:{port}", timeout_s=5)
