"""Hugging Face datasets as tasks (``hf:`` dataset specs; needs ``pip install datasets``).

GLUE/SuperGLUE configs map their sentence columns to ``text``/``text_b``; the dataset's own
splits are used when labelled (see :func:`load_hf_dataset`).  Nothing here is cached.
"""
from __future__ import annotations

import pandas as pd

from beexbench.errors import BeexError
from beexbench.progress import NULL_PROGRESS

from .assemble import assemble_task
from .card import TaskData
from .clean import require_columns
from .splits import SPLIT_SEED, strata_for, stratified_split

__all__ = ["GLUE_COLUMNS", "CONFIG_COLLECTIONS", "load_hf_dataset"]

# GLUE / SuperGLUE configs: (text column, text_b column or None, problem)
GLUE_COLUMNS: dict[str, tuple[str, str | None, str]] = {
    "cola": ("sentence", None, "classification"),
    "sst2": ("sentence", None, "classification"),
    "mrpc": ("sentence1", "sentence2", "classification"),
    "qqp": ("question1", "question2", "classification"),
    "stsb": ("sentence1", "sentence2", "regression"),
    "mnli": ("premise", "hypothesis", "classification"),
    "mnli_matched": ("premise", "hypothesis", "classification"),
    "mnli_mismatched": ("premise", "hypothesis", "classification"),
    "qnli": ("question", "sentence", "classification"),
    "rte": ("sentence1", "sentence2", "classification"),
    "wnli": ("sentence1", "sentence2", "classification"),
    "ax": ("premise", "hypothesis", "classification"),
    "boolq": ("passage", "question", "classification"),
    "cb": ("premise", "hypothesis", "classification"),
}
CONFIG_COLLECTIONS = {"glue", "super_glue", "nyu-mll/glue", "aps/super_glue"}


def _hf_frame(split_ds, text: str, text_b: str | None, label: str, where: str) -> pd.DataFrame:
    df = split_ds.to_pandas()
    require_columns(df, {"text": text, "label": label, "text_b": text_b}, where)
    cols = {"text": df[text], "label": df[label]}
    if text_b:
        cols["text_b"] = df[text_b]
    return pd.DataFrame(cols)


def _has_labels(df: pd.DataFrame, problem: str) -> bool:
    if len(df) == 0:
        return False
    lab = df["label"]
    if problem == "classification" and pd.api.types.is_numeric_dtype(lab):
        return bool((lab >= 0).all())
    return not lab.isna().any()


def load_hf_dataset(
    name: str,
    config: str | None = None,
    text_column: str | None = None,
    label_column: str = "label",
    text_b_column: str | None = None,
    *,
    problem: str | None = None,
    vocab_size: int = 8000,
    max_len_cap: int = 256,
    revision: str | None = None,
    progress=NULL_PROGRESS,
) -> TaskData:
    """Load a Hugging Face dataset (needs ``pip install datasets`` and internet).

    GLUE/SuperGLUE configs map their sentence columns to ``text``/``text_b``
    automatically.  Splits: the dataset's own train/validation/test are used
    when all three are labelled; when the test split is unlabelled (GLUE),
    the validation split becomes our test split and val is a stratified 10%
    of train (seed 1234); a dataset with only train is split 80/10/10.
    """
    try:
        import datasets  # noqa: F401
    except ImportError:
        raise BeexError(f"loading hf:{name} needs the datasets library: pip install datasets") from None
    from datasets import load_dataset

    known = GLUE_COLUMNS.get(config or "") if name in CONFIG_COLLECTIONS or name.endswith("glue") else None
    if known:
        text_column = text_column or known[0]
        text_b_column = text_b_column if text_b_column is not None else known[1]
        problem = problem or known[2]
    text_column = text_column or "text"
    problem = problem or "classification"
    label_name = f"hf:{name}" + (f"/{config}" if config else "")
    with progress.task(f"Loading {label_name}", total=None):
        try:
            dsd = load_dataset(name, config, revision=revision)
        except Exception as exc:  # network, auth, unknown dataset/config
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BeexError(f"could not load {label_name}: {first[:300]}") from None

    splits = list(dsd.keys())
    feature = None
    try:
        feature = dsd[splits[0]].features.get(label_column)
    except Exception:
        pass
    label_names = tuple(getattr(feature, "names", None) or ())
    if getattr(feature, "dtype", None) in ("float32", "float64") and not label_names:
        problem = "regression"

    def frame(split: str) -> pd.DataFrame:
        return _hf_frame(dsd[split], text_column, text_b_column, label_column,
                         f"{label_name} split {split!r}")

    val_key = next((k for k in ("validation", "validation_matched", "valid", "dev") if k in dsd), None)
    if "train" not in dsd:
        raise BeexError(f"{label_name} has no 'train' split (has: {', '.join(splits)})")
    train = frame("train")
    test = frame("test") if "test" in dsd else None
    if test is not None and not _has_labels(test, problem):
        test = None
    val = frame(val_key) if val_key else None
    if val is not None and not _has_labels(val, problem):
        val = None

    stratified: tuple[str, ...] = ()
    if val is not None and test is not None:
        parts = {"train": train, "val": val, "test": test}
    elif val is not None or test is not None:
        held_out = test if test is not None else val
        train = train[train["label"].notna()].reset_index(drop=True)
        if problem == "classification" and pd.api.types.is_numeric_dtype(train["label"]):
            train = train[train["label"] >= 0].reset_index(drop=True)
        strata = strata_for(train["label"].astype(str) if problem != "regression"
                            else train["label"].to_numpy(), problem)
        idx_tr, idx_val = stratified_split(strata, (0.9, 0.1), SPLIT_SEED)
        parts = {"train": train.iloc[idx_tr].reset_index(drop=True),
                 "val": train.iloc[idx_val].reset_index(drop=True), "test": held_out}
        stratified = ("train", "val")
    else:
        return assemble_task(
            train, name=label_name, description=f"Hugging Face dataset {label_name}",
            source=label_name, license_note="see the dataset card on huggingface.co",
            problem=problem, label_names=label_names,
            text_fields=("text", "text_b") if text_b_column else ("text",),
            vocab_size=vocab_size, max_len_cap=max_len_cap, progress=progress,
        )
    return assemble_task(
        name=label_name, description=f"Hugging Face dataset {label_name}", source=label_name,
        license_note="see the dataset card on huggingface.co", problem=problem,
        label_names=label_names, text_fields=("text", "text_b") if text_b_column else ("text",),
        vocab_size=vocab_size, max_len_cap=max_len_cap, splits=parts, stratified=stratified,
        progress=progress,
    )
