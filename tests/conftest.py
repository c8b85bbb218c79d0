"""Shared fixtures: a tiny offline task and a tiny suite, so end-to-end tests need no network."""
from __future__ import annotations

import beexbench  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)

import random
from pathlib import Path

import pytest

GOOD = ["good", "great", "fine", "superb", "lovely", "moving", "sharp"]
BAD = ["bad", "dull", "awful", "weak", "boring", "messy", "flat"]
FILL = ["the", "film", "plot", "was", "a", "really", "story", "cast", "and", "quite", "movie", "its"]


def write_tiny_csv(path: Path, n: int = 240, seed: int = 0) -> Path:
    rnd = random.Random(seed)
    lines = ["text,label"]
    for i in range(n):
        label = i % 2
        words = rnd.sample(FILL, 5) + [rnd.choice(GOOD if label else BAD)] + rnd.sample(FILL, 3)
        rnd.shuffle(words)
        lines.append(f"{' '.join(words)} {i},{'pos' if label else 'neg'}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_tiny_suite(directory: Path, models=("beexformer", "fp32"), target: str = "cpu", epochs: int = 1,
                     floors: bool = False, isolate: bool = False) -> Path:
    """A tiny offline suite; the reference floors (on by default in real runs) only when asked,
    so tests that count cells count the models they name; latency measured in the test's own
    process unless ``isolate`` (a fresh process per thread setting costs seconds per cell)."""
    csv = write_tiny_csv(directory / "tiny.csv")
    suite = directory / "tiny.toml"
    suite.write_text(f"""
suite = "tiny"
models = {list(models)!r}
tasks = ["csv:{csv}?text=text&label=label&name=tiny"]
target = "{target}"
seeds = [0]
energy = false
floors = {str(floors).lower()}
results_dir = "{directory / 'results'}"
models_dir = "{directory / 'models'}"

[model.encoder]
d_model = 16
n_heads = 2
n_blocks = 3
d_ff = 16

[model.train]
epochs = {epochs}
batch_size = 32

[latency]
warmup = 1
min_iters = 3
min_seconds = 0.05
max_seconds = 1.0
batch_sizes = [1, 4]
seq_lens = [4, 8]
samples = 8
isolate = {str(isolate).lower()}
""".replace("'", '"'))
    return suite


def create_with_inputs(name: str, spec, overrides: dict):
    """``create_model`` plus the trained models it declares it needs (a teacher, a network to start
    from: ``trained_inputs``), each built the same way, untrained, handed over as the runner does."""
    from beexbench.adapters.protocols import NeedsTrainedInputs
    from beexbench.adapters.registry import create_model

    adapter = create_model(name, spec, overrides)
    if overrides and isinstance(adapter, NeedsTrainedInputs):  # the optional protocol (adapters.protocols)
        inputs = adapter.trained_inputs(overrides, spec.problem)
        adapter.take_trained({use: create_with_inputs(source, spec, overrides) for use, source in inputs.items()})
    return adapter


@pytest.fixture
def tiny_suite(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("BEEXBENCH_CACHE", str(tmp_path / "cache"))
    return write_tiny_suite(tmp_path, floors=True)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one intra-op thread is fastest, and robust on a busy machine (a module that
    changes threads elsewhere gets its count back). Use: ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_configure(config):
    config.addinivalue_line("markers", "network: needs PyPI (set BEEXBENCH_NETWORK_TESTS=1)")
    import torch

    # the tests' models are tiny: one thread is faster and immune to a busy machine's
    # thread-synchronisation stalls (targets still set their own threads when measuring)
    torch.set_num_threads(1)


def cli_status(capsys, argv: list[str]) -> tuple[int, str]:
    """``beexbench ARGV`` in this process: its exit status and its stderr, stripped."""
    from beexbench.cli import main

    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err.strip()


def runnable(names) -> list:
    """Model names as pytest parameters, each skipped with its own one-line reason where it cannot
    run on this machine (``unavailable()``: a missing optional extra such as ``[openvino]``)."""
    from beexbench.adapters.registry import get_adapter_class

    return [pytest.param(n, marks=pytest.mark.skipif(bool(why := get_adapter_class(n).unavailable()), reason=why or ""))
            for n in names]
