"""The options of a dataset spec string (``csv:PATH?text=COL&label=COL&...``): which ones each kind
takes and the values each may hold. One function, :func:`option_problems`, serves the validation
pass (every problem, one line each, before any work) and the loader (:func:`checked_options`), so
an option the validation accepts is one the loader honours - never one it ignores."""
from __future__ import annotations

from beexbench.errors import BeexError

__all__ = ["LOCAL_KEYS", "HF_KEYS", "VOCAB_SIZE_RANGE", "MAX_LEN_CAP_RANGE", "TRUE_WORDS", "FALSE_WORDS",
           "option_problems", "checked_options"]

LOCAL_KEYS = frozenset({"text", "label", "text_b", "name", "problem", "sep", "vocab_size", "max_len_cap",
                        "dedupe", "labels", "missing"})
HF_KEYS = frozenset({"text", "label", "text_b", "config", "problem", "vocab_size", "max_len_cap", "revision"})
# below 100 the tokenizer cannot honour the size (its characters and special tokens alone fill it);
# above 1,000,000 an embedding table of the model trained from scratch is gigabytes
VOCAB_SIZE_RANGE = (100, 1_000_000)
# max_len is chosen from the training texts, then clipped to [16, max_len_cap]: a cap under 16 would
# be ignored; over 8192 a scratch model's attention (and position table) does not fit a benchmark
MAX_LEN_CAP_RANGE = (16, 8192)
TRUE_WORDS = ("1", "true", "yes")
FALSE_WORDS = ("0", "false", "no")
_NAMED = ("text", "label", "text_b", "name", "config", "revision", "labels")  # must not be blank


def option_problems(spec: str, kind: str, opts: dict[str, str]) -> list[str]:
    """Every problem of ``opts`` (the options of the dataset spec ``spec`` of ``kind``), one line each."""
    allowed = HF_KEYS if kind == "hf" else LOCAL_KEYS
    where = f"in dataset {spec!r}"
    out = [f"unknown option {k!r} {where}: allowed: {', '.join(sorted(allowed))}" for k in sorted(set(opts) - allowed)]
    out += [f"option {k!r} {where} is empty: give a value or leave the option out"
            for k in _NAMED if k in opts and not opts[k].strip()]
    for key, (low, high) in (("vocab_size", VOCAB_SIZE_RANGE), ("max_len_cap", MAX_LEN_CAP_RANGE)):
        value = opts.get(key)
        if value is not None and not (value.isascii() and value.isdigit() and low <= int(value) <= high):
            out.append(f"{key} {where} must be an integer from {low:,} to {high:,}, got {value!r}")
    if "problem" in opts and opts["problem"] not in ("classification", "regression"):
        out.append(f"'problem' {where} is {opts['problem']!r}: use one of classification, regression")
    if "missing" in opts and opts["missing"].lower() not in ("refuse", "drop"):
        out.append(f"'missing' {where} is {opts['missing']!r}: use one of refuse, drop")
    if "dedupe" in opts and opts["dedupe"].lower() not in TRUE_WORDS + FALSE_WORDS:
        out.append(f"'dedupe' {where} is {opts['dedupe']!r}: use one of {', '.join(TRUE_WORDS + FALSE_WORDS)}")
    if "sep" in opts and (len(opts["sep"]) != 1 or opts["sep"] in "\"\r\n"):
        out.append(f"'sep' {where} must be one character (not a quote or a line break), got {opts['sep']!r}")
    if opts.get("labels", "").strip():
        names = [n.strip() for n in opts["labels"].split(",")]
        if any(not n for n in names):
            out.append(f"'labels' {where} has an empty name: give the class names, comma-separated")
        elif len(set(names)) != len(names):
            out.append(f"'labels' {where} names a class more than once: give each once")
        elif len(names) < 2 and opts.get("problem") != "regression":
            out.append(f"'labels' {where} names one class; a classification task needs at least two")
    return out


def checked_options(spec: str, kind: str, opts: dict[str, str]) -> dict[str, int]:
    """The integer options of ``opts`` (vocab_size, max_len_cap) once every option is in range;
    raises :class:`BeexError` with every problem, ``; ``-joined, otherwise."""
    problems = option_problems(spec, kind, opts)
    if problems:
        raise BeexError("; ".join(problems))
    return {k: int(opts[k]) for k in ("vocab_size", "max_len_cap") if k in opts}
