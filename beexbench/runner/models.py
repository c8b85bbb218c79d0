"""Checkpoint store: train a model once per (task, model, config, seed), reuse it after."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from ..adapters.base import ModelAdapter, TaskSpec
from ..adapters.protocols import Derived, NeedsTrainedInputs
from .._io import atomic_write_text, safe_child, safe_name
from ..adapters.checkpoint import META
from ..adapters.registry import create_model, get_adapter_class, load_model, with_seed
from ..adapters.spec import SCRATCH
from ..config import RunConfig
from ..data import cache_root
from ..errors import BeexError, TrainingDiverged
from ..progress import NULL_PROGRESS, Progress
from ..training.batches import EncodedSplit


STORE_MANIFEST = "STORE.json"
STORE_FORMAT = "beexbench-model-store"
STORE_VERSION = 3  # bump when checkpoint layout or model code changes what a checkpoint means
# 2: the shared encoder's initialisation and the training recipes of issue 13
# 3: packed format 2 (token rows stored as inference reads them) and the ONNX Runtime deployments (issue 16)


def model_store(cfg: RunConfig) -> Path:
    """The checkpoint store: ``--models-from`` (read-only), ``--models-dir``, or the cache."""
    if cfg.models_from:
        return check_store(Path(cfg.models_from))
    store = Path(cfg.models_dir) if cfg.models_dir else Path(cache_root()) / f"models-v{STORE_VERSION}"
    if (store / STORE_MANIFEST).is_file():
        check_store(store)
    return store


def _write_manifest(store: Path) -> None:
    from .. import __version__

    if not (store / STORE_MANIFEST).is_file():
        doc = {"format": STORE_FORMAT, "store_version": STORE_VERSION, "beexbench_version": __version__}
        atomic_write_text(store / STORE_MANIFEST, json.dumps(doc, indent=2))


def check_store(store: Path) -> Path:
    """Refuse a folder that is not a model store, or one made by an incompatible version."""
    path = store / STORE_MANIFEST
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BeexError(f"{store} is not a beexbench model store (no {STORE_MANIFEST}): create one with `beexbench train --out DIR`") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BeexError(f"{path} is corrupt: re-create the store with `beexbench train --out DIR`") from None
    if doc.get("format") != STORE_FORMAT or doc.get("store_version") != STORE_VERSION:
        raise BeexError(
            f"model store {store} was made by beexbench {doc.get('beexbench_version')} (store version "
            f"{doc.get('store_version')}); this beexbench {_version()} reads store version {STORE_VERSION}: "
            "retrain it with `beexbench train --out DIR` or install the matching beexbench"
        )
    return store


def _version() -> str:
    from .. import __version__

    return __version__


def overrides_for(name: str, cfg: RunConfig, seed: int, recipe: dict | None = None) -> dict[str, Any]:
    """What a run gives model ``name``, as its adapter declares it takes them: for a model whose
    settings are a ModelSpec (``uses_model_spec``), the task's ``recipe`` (settings chosen on its
    validation split for an encoder trained from scratch: not applied to a model on a pretrained
    backbone) under the suite-wide ``model`` settings; then the per-model overrides; then the
    seed where the model takes it (``train.seed``)."""
    cls = get_adapter_class(name)
    own = cfg.model_overrides.get(name, {})
    if not cls.uses_model_spec:
        return with_seed(cls, _deep_merge({}, own), seed)
    out = _deep_merge(cfg.model, own)
    if _backbone_name(cls, out) == SCRATCH:
        out = _deep_merge(json.loads(json.dumps(recipe or {})), out)
    return with_seed(cls, out, seed)


def _backbone_name(cls: type, overrides: dict[str, Any]) -> str:
    """The backbone a model's settings name: the run's, else the model's registered default."""
    given = (overrides.get("backbone") or {}).get("name")
    return given if isinstance(given, str) else cls.default_spec().backbone.name


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``top``'s sections merged in key by key (``top`` wins)."""
    out = dict(base)
    for key, value in top.items():
        out[key] = {**out[key], **value} if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def trained_from(name: str, cfg: RunConfig, seed: int, recipe: dict | None, problem: str) -> dict[str, str]:
    """The models of the run that model ``name`` is made from, by use: ``{"derived from": source}``
    for a derived model (``derived_from``), else its trained inputs (``trained_inputs``: a network
    to start from, a teacher) for the settings the run gives it. One edge list of the "train what
    a model needs first" graph, for the checkpoint plan, ``obtain_model`` and the executors' units."""
    cls = get_adapter_class(name)
    if issubclass(cls, Derived):
        return {"derived from": cls.derived_from}
    if not cls.uses_model_spec or not issubclass(cls, NeedsTrainedInputs):
        return {}
    return dict(cls.trained_inputs(overrides_for(name, cfg, seed, recipe), problem))


def walk_needs(name: str, needs: Callable[[str], Iterable[str]],
               on_cycle: Callable[[tuple[str, ...]], None] | None = None, chain: tuple[str, ...] = ()) -> list[str]:
    """``name`` and everything it needs (``needs(model)``: the models it is made from), needs
    first, each once (depth-first, in the order ``needs`` gives). A model met again along its own
    chain calls ``on_cycle(chain)`` (the chain from ``name`` to it, it last), which may raise;
    without one the walk stops there (what needs itself then fails where it is obtained).
    ``chain``: the models that led to ``name`` (a walk resumed below them)."""
    order: list[str] = []

    def visit(model: str, path: tuple[str, ...]) -> None:
        if model in path:
            if on_cycle is not None:
                on_cycle(path + (model,))
            return
        if model in order:
            return
        for need in needs(model):
            visit(need, path + (model,))
        order.append(model)

    visit(name, tuple(chain))
    return order


def _trained_from_itself(chain: tuple[str, ...]) -> None:
    raise BeexError(f"model {chain[-1]} is trained from itself ({' -> '.join(chain)}): "
                    "fix model.backbone.init_from / model.distill.teacher")


def build_seeded(name: str, overrides: dict[str, Any], spec: TaskSpec, seed: int) -> ModelAdapter:
    """A fresh model whose initial weights depend on ``seed`` only: not on what ran earlier
    in the process (other cells, an interrupted run resumed in a new process). The same as
    ``create_model(name, spec, overrides, seed=seed)``: what a user builds is what a run trains."""
    return create_model(name, spec, overrides, seed=seed)


def checkpoint_dir(store: Path, name: str, spec: TaskSpec, overrides: dict, seed: int, limit: int | None,
                   inputs: dict[str, str] | None = None) -> Path:
    """``inputs``: the checkpoint folders of the trained models this one is trained from, by use
    (:meth:`protocols.NeedsTrainedInputs.trained_inputs`): a different teacher or starting network is another model."""
    doc = {"model": name, "task": spec.to_dict(), "overrides": overrides, "limit": limit}
    if inputs:  # only then: the folders of models without trained inputs are what they were
        doc["inputs"] = inputs
    ident = json.dumps(doc, sort_keys=True)
    digest = hashlib.sha256(ident.encode()).hexdigest()[:10]
    # task and model names come from datasets (name=) and plugins: mapped to safe names, kept inside the store
    return safe_child(store, safe_name(spec.task), safe_name(name), f"{digest}-seed{seed}", what="checkpoint folder")


def obtain_model(
    name: str,
    spec: TaskSpec,
    train: EncodedSplit,
    val: EncodedSplit,
    cfg: RunConfig,
    seed: int,
    *,
    recipe: dict | None = None,
    cost_fn_factory=None,
    progress: Progress = NULL_PROGRESS,
) -> tuple[ModelAdapter, Path, bool]:
    """Load the checkpoint for this cell, or train (or derive) and save it; ``recipe`` is the
    task's model settings (:func:`beexbench.data.tasks.model_recipe`). A model trained from
    other trained models (:meth:`protocols.NeedsTrainedInputs.trained_inputs`: a fine-tuned network to start
    from, a teacher) has them obtained first, the same way, for the same task and seed.
    Returns (model, checkpoint dir, whether any training happened for it now)."""
    directory, inputs = _checkpoint_plan(name, spec, cfg, seed, recipe)
    if (directory / META).is_file():
        adapter = load_model(directory)
        if adapter.spec != spec:
            raise BeexError(f"checkpoint {directory} was trained for {adapter.spec}, not {spec}: delete it and retrain")
        bad = nonfinite_weight(adapter)
        if bad:  # cached by a beexbench that did not check: refuse it rather than measure garbage
            raise TrainingDiverged(f"checkpoint {directory} holds a non-finite weight ({bad}): delete it and retrain")
        return adapter, directory, False
    if cfg.models_from:
        raise BeexError(
            f"no checkpoint for {name} on {spec.task} (seed {seed}) in --models-from {cfg.models_from}: "
            "train it there with `beexbench train` using the same suite/config"
        )
    cls = get_adapter_class(name)
    if issubclass(cls, Derived):
        source, _, trained = obtain_model(cls.derived_from, spec, train, val, cfg, seed, recipe=recipe,
                                          cost_fn_factory=cost_fn_factory, progress=progress)
        progress.log(f"deriving {name} from the trained {cls.derived_from}")
        adapter = cls.derive(source, val, cost_fn_factory(source) if cost_fn_factory else None)
    else:
        trained = True
        given = {}
        for use, source_name in inputs.items():
            given[use], _, _ = obtain_model(source_name, spec, train, val, cfg, seed, recipe=recipe,
                                            cost_fn_factory=cost_fn_factory, progress=progress)
        adapter = build_seeded(name, overrides_for(name, cfg, seed, recipe), spec, seed)
        if given:
            progress.log(f"training {name} from the trained " + ", ".join(f"{m} ({use})" for use, m in inputs.items()))
            adapter.take_trained(given)
        cost_fn = cost_fn_factory(adapter) if cost_fn_factory else None
        adapter.fit(train, val, progress=progress, cost_fn=cost_fn)
    bad = nonfinite_weight(adapter)
    if bad:  # fails the cell; never cached, so no later run reuses it
        raise TrainingDiverged(f"training diverged: {name}'s weight {bad} is not finite (nothing was cached): "
                               "lower model.train.lr or check the task's labels")
    return _store(adapter, directory, cfg, trained)


def _checkpoint_plan(name: str, spec: TaskSpec, cfg: RunConfig, seed: int, recipe: dict | None,
                     chain: tuple[str, ...] = ()) -> tuple[Path, dict[str, str]]:
    """Model ``name``'s checkpoint folder and the models it is made from, by use
    (:func:`trained_from`). The folder depends on the folders of those models (their settings and
    inputs, recursively: another teacher or source is another model); a model that needs itself
    through the chain (``chain``: the models that led here) is a one-line error."""
    made_from: dict[str, dict[str, str]] = {}

    def needs(model: str) -> list[str]:
        made_from[model] = trained_from(model, cfg, seed, recipe, spec.problem)
        return list(made_from[model].values())

    folders: dict[str, Path] = {}
    for model in walk_needs(name, needs, _trained_from_itself, chain):  # needs first: their folders are known
        inputs = {use: f"{m}/{folders[m].name}" for use, m in made_from[model].items()}
        folders[model] = checkpoint_dir(model_store(cfg), model, spec, overrides_for(model, cfg, seed, recipe), seed,
                                        cfg.limit, inputs)
    return folders[name], made_from[name]


def nonfinite_weight(adapter: ModelAdapter) -> str | None:
    """The name of the first weight or buffer holding a NaN or an infinity, or None."""
    for key, tensor in adapter.module().state_dict().items():
        if torch.is_tensor(tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return key
    return None


def _store(adapter: ModelAdapter, directory: Path, cfg: RunConfig, trained: bool) -> tuple[ModelAdapter, Path, bool]:
    """Save into the store atomically (a temp folder renamed into place, removed on any failure)."""
    import shutil

    directory.parent.mkdir(parents=True, exist_ok=True)
    _write_manifest(model_store(cfg))
    tmp = directory.with_name(directory.name + f".tmp{os.getpid()}")
    try:
        adapter.save(tmp)
        if directory.exists():  # another process finished first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
            return load_model(directory), directory, False
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return adapter, directory, trained
