"""Tasks and data: the built-in catalog, user datasets and tokenization.

Quick use::

    from beexbench.data import load_task, encode
    data = load_task("rotten_tomatoes")           # fetched + cached on first use
    ids, mask = encode(data.tokenizer, data.train["text"], max_len=data.card.max_len)

See :mod:`beexbench.data.tasks` (loading by name), :mod:`beexbench.data.registry`
(registered tasks: the catalog, the ``beexbench.tasks`` entry points, :func:`register_task`),
:mod:`beexbench.data.cache` (cache layout), :mod:`beexbench.data.catalog` (the built-in tasks),
:mod:`beexbench.data.local` (CSV/JSONL/Parquet files and ``csv:``/``hf:`` spec strings) and
:mod:`beexbench.data.hub` (Hugging Face datasets).
"""
from .local import load_hf_dataset, load_local_dataset, parse_dataset_spec
from .sources import WheelSource, cache_root, fetch_wheel, read_member
from .splits import SPLIT_FRACTIONS, SPLIT_SEED, stratified_split, stratified_subsample
from .tasks import (
    DEFAULT_TASK,
    SPLITS,
    TaskCard,
    TaskData,
    TaskDefinition,
    assemble_task,
    define_task,
    list_tasks,
    load_task,
    register_task,
    task_info,
    unregister_task,
)
from .tokenize import (
    CLS_ID,
    MASK_ID,
    PAD_ID,
    SEP_ID,
    SPECIAL_TOKENS,
    UNK_ID,
    choose_max_len,
    encode,
    token_lengths,
    train_wordpiece,
)

__all__ = [
    "TaskCard", "TaskData", "load_task", "list_tasks", "register_task", "task_info",
    "DEFAULT_TASK", "SPLITS", "assemble_task", "TaskDefinition", "define_task", "unregister_task",
    "encode", "train_wordpiece", "token_lengths", "choose_max_len",
    "SPECIAL_TOKENS", "PAD_ID", "UNK_ID", "CLS_ID", "SEP_ID", "MASK_ID",
    "load_local_dataset", "load_hf_dataset", "parse_dataset_spec",
    "WheelSource", "cache_root", "fetch_wheel", "read_member",
    "SPLIT_SEED", "SPLIT_FRACTIONS", "stratified_split", "stratified_subsample",
]
