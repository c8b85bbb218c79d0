"""What a backbone folder may hold, checked before anything is allocated (issue 26).

A ``hf:`` folder is untrusted input: its ``config.json`` decides how large a network validation
builds. So, before any model exists:

* ``config.json`` and ``tokenizer_config.json`` are read only up to :data:`MAX_CONFIG_BYTES`
  (the size is checked before reading), parsed as strict JSON (no ``NaN`` / ``Infinity``, no
  duplicate keys, no nesting deep enough to exhaust the parser) and must be objects;
* every architecture number is an integer within :data:`LIMITS`, ``layer_norm_eps`` a number in
  (0, :data:`MAX_LAYER_NORM_EPS`), and the parameters they imply at most :data:`MAX_PARAMETERS`
  (:func:`check_bert_config`);
* the same numbers must be the weights file's own tensor shapes, read from the safetensors header
  alone (at most :data:`MAX_HEADER_BYTES`, every tensor's byte range inside the file), no tensor
  loaded (:func:`safetensors_shapes`, :func:`check_against_weights`);
* ``vocab.txt`` is at most :data:`MAX_VOCAB_BYTES` of UTF-8 text with no NUL, holds at most
  ``vocab_size`` tokens, has ``[PAD]`` on its first line and ``[UNK]``, ``[CLS]``, ``[SEP]``
  (:func:`load_vocab`).

Every refusal is a one-line :class:`~beexbench.errors.BeexError` naming the file and the key.
"""
from __future__ import annotations

import json
import math
import os
import re
import stat
from pathlib import Path
from typing import Any

from beexbench.errors import BeexError

# the largest value accepted for each architecture number of a BERT config.json (BERT-large:
# 24 layers, 1024 wide, 16 heads, FFN 4096, 30522 tokens, 512 positions, 2 token types)
LIMITS = {
    "num_hidden_layers": 128,
    "hidden_size": 8192,
    "num_attention_heads": 256,
    "intermediate_size": 65536,
    "vocab_size": 1 << 20,
    "max_position_embeddings": 1 << 16,
    "type_vocab_size": 1024,
}
MAX_LAYER_NORM_EPS = 1.0
MAX_PARAMETERS = 1_000_000_000  # the encoder the config describes (BERT-large: 0.34e9)
MAX_CONFIG_BYTES = 1 << 20
MAX_VOCAB_BYTES = 16 << 20
MAX_HEADER_BYTES = 16 << 20
MAX_TENSORS = 100_000
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                "U16": 2, "U32": 4, "U64": 8, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
_MODEL_TYPES = ("bert",)


# --------------------------------------------------------------------------- #
# Bounded reading
# --------------------------------------------------------------------------- #
def read_bounded(path: Path, limit: int, name: str) -> bytes:
    """The bytes of regular file ``path``, refused (before reading) when larger than ``limit``."""
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise BeexError(f"{name}: {path} is not a regular file")
            if st.st_size > limit:
                raise BeexError(f"{name}: {path} is {st.st_size:,} bytes, more than the {limit:,} allowed; "
                                f"not a backbone file")
            data = fh.read(limit + 1)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise BeexError(f"{name}: cannot read {path} ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise BeexError(f"{name}: {path} grew past {limit:,} bytes while read; not a backbone file")
    return data


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def _constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def parse_json(data: bytes | str) -> Any:
    """Strict JSON: no NaN / Infinity or numbers that overflow to them, no duplicate keys; a
    document nested too deep for the parser is a ValueError like any other bad JSON."""
    if isinstance(data, bytes):
        data = data.decode("utf-8-sig")
    try:
        return json.loads(data, object_pairs_hook=_no_duplicates, parse_float=_finite, parse_constant=_constant)
    except RecursionError:
        raise ValueError("nested too deep") from None


def read_json(path: Path, name: str, *, required: bool, limit: int = MAX_CONFIG_BYTES) -> Any:
    """``path`` parsed with :func:`parse_json`, at most ``limit`` bytes; None if absent and optional."""
    try:
        data = read_bounded(path, limit, name)
    except FileNotFoundError:
        if required:
            raise BeexError(f"{name}: {path} is missing") from None
        return None
    try:
        return parse_json(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BeexError(f"{name}: {path} is not readable JSON ({str(exc).splitlines()[0][:200]}); "
                        f"fix or replace it") from None


# --------------------------------------------------------------------------- #
# config.json
# --------------------------------------------------------------------------- #
def _int(cfg: dict[str, Any], key: str, where: str) -> int:
    v = cfg.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise BeexError(f"{where}: '{key}' must be a positive integer, got {v!r}")
    if v > LIMITS[key]:
        raise BeexError(f"{where}: '{key}' is {v}, more than the {LIMITS[key]:,} beexbench allows")
    return v


def parameters(cfg: dict[str, Any]) -> int:
    """The encoder's parameters a (checked) BERT config implies: embeddings and blocks."""
    d, f, n = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    embeddings = (cfg["vocab_size"] + cfg["max_position_embeddings"] + cfg["type_vocab_size"] + 2) * d
    return embeddings + n * (4 * d * d + 2 * d * f + 9 * d + f)


def check_bert_config(cfg: Any, where: str) -> None:
    """A BERT ``config.json`` that the shared encoder computes, every number within bounds."""
    if not isinstance(cfg, dict):
        raise BeexError(f"{where}: a BERT config.json is a JSON object, got {type(cfg).__name__}")
    if cfg.get("model_type") not in _MODEL_TYPES:
        raise BeexError(f"{where}: model_type is {cfg.get('model_type')!r}; only BERT checkpoints "
                        f"(model_type {', '.join(map(repr, _MODEL_TYPES))}) map onto the shared encoder")
    for key in LIMITS:
        _int(cfg, key, where)
    act = cfg.get("hidden_act", "gelu")
    if act != "gelu":
        raise BeexError(f"{where}: hidden_act is {act!r}; the shared encoder's FFN is exact (erf) GELU, 'gelu'")
    pos_type = cfg.get("position_embedding_type", "absolute")
    if pos_type != "absolute":
        raise BeexError(f"{where}: position_embedding_type is {pos_type!r}; the shared encoder has absolute positions only")
    if cfg.get("is_decoder") or cfg.get("add_cross_attention"):
        raise BeexError(f"{where}: a decoder / cross-attention BERT does not map onto the shared encoder (an encoder only)")
    pad = cfg.get("pad_token_id", 0)
    if pad != 0 or isinstance(pad, bool):
        raise BeexError(f"{where}: pad_token_id is {pad!r}; the shared encoder pads with id 0")
    eps = cfg.get("layer_norm_eps", 1e-12)
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not 0 < eps < MAX_LAYER_NORM_EPS:
        raise BeexError(f"{where}: 'layer_norm_eps' must be a number above 0 and below {MAX_LAYER_NORM_EPS:g}, got {eps!r}")
    if cfg["hidden_size"] % cfg["num_attention_heads"]:
        raise BeexError(f"{where}: hidden_size {cfg['hidden_size']} is not divisible by "
                        f"num_attention_heads {cfg['num_attention_heads']}")
    n = parameters(cfg)
    if n > MAX_PARAMETERS:
        raise BeexError(f"{where}: its sizes make an encoder of {n:,} parameters, more than the "
                        f"{MAX_PARAMETERS:,} beexbench allows")


# --------------------------------------------------------------------------- #
# The safetensors header
# --------------------------------------------------------------------------- #
def safetensors_shapes(path: Path, name: str) -> dict[str, tuple[int, ...]]:
    """``{tensor: shape}`` from ``path``'s header alone (no tensor is read), every entry checked:
    a known dtype, a shape of non-negative integers, a byte range inside the file that holds
    exactly that shape."""
    def bad(why: str) -> BeexError:
        return BeexError(f"{name}: {path} is not a readable safetensors file ({why})")

    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(8)
            if len(head) < 8:
                raise bad("shorter than its 8-byte header length")
            n = int.from_bytes(head, "little")
            if n > min(MAX_HEADER_BYTES, size - 8):
                raise bad(f"a header of {n:,} bytes in a file of {size:,}")
            raw = fh.read(n)
    except OSError as exc:
        raise BeexError(f"{name}: cannot read {path} ({exc.strerror or exc})") from None
    try:
        header = parse_json(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad(f"its header is not JSON: {str(exc)[:200]}") from None
    if not isinstance(header, dict) or len(header) > MAX_TENSORS + 1:
        raise bad(f"its header is not an object of at most {MAX_TENSORS:,} tensors")
    data_len, shapes = size - 8 - n, {}
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        if not isinstance(entry, dict):
            raise bad(f"tensor '{key}' is not described by an object")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in _DTYPE_BYTES:
            raise bad(f"tensor '{key}' has dtype {dtype!r}")
        if not isinstance(shape, list) or len(shape) > 8 or not all(_count(s) for s in shape):
            raise bad(f"tensor '{key}' has shape {str(shape)[:80]}")
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(_count(o) for o in offsets)
                or not offsets[0] <= offsets[1] <= data_len):
            raise bad(f"tensor '{key}' has data_offsets {str(offsets)[:80]} outside its {data_len:,} data bytes")
        elements = math.prod(shape)
        if elements * _DTYPE_BYTES[dtype] != offsets[1] - offsets[0]:
            raise bad(f"tensor '{key}' of shape {tuple(shape)} does not fill its {offsets[1] - offsets[0]:,} bytes")
        shapes[key] = tuple(shape)
    return shapes


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def check_against_weights(cfg: dict[str, Any], shapes: dict[str, tuple[int, ...]], where: str, weights: Path) -> None:
    """Every architecture number of checked ``cfg`` is one of the weights' own shapes: the
    embeddings' (vocabulary, positions, token types by width), the layer count, each layer's
    query (width by width) and FFN input (FFN width by width)."""
    prefix = "bert." if any(k.startswith("bert.") for k in shapes) else ""
    own = {k[len(prefix):]: s for k, s in shapes.items() if k.startswith(prefix)}
    d = cfg["hidden_size"]

    def expect(tensor: str, key: str, want: tuple[int, ...]) -> None:
        got = own.get(tensor)
        if got is None:
            raise BeexError(f"{where}: '{key}' cannot be checked: {weights} has no tensor '{prefix}{tensor}'; "
                            f"not a BERT checkpoint")
        if got != want:
            raise BeexError(f"{where}: '{key}' is {cfg[key]} (hidden_size {d}), so '{prefix}{tensor}' should be "
                            f"{want}, but {weights} has {got}: the config and the weights do not belong together")

    expect("embeddings.word_embeddings.weight", "vocab_size", (cfg["vocab_size"], d))
    expect("embeddings.position_embeddings.weight", "max_position_embeddings", (cfg["max_position_embeddings"], d))
    expect("embeddings.token_type_embeddings.weight", "type_vocab_size", (cfg["type_vocab_size"], d))
    layers = {int(m.group(1)) for k in own if (m := re.match(r"encoder\.layer\.(\d{1,6})\.", k))}
    n = cfg["num_hidden_layers"]
    if layers != set(range(n)):
        held = f"layers 0..{max(layers)} ({len(layers)} of them)" if layers else "no encoder layers"
        raise BeexError(f"{where}: 'num_hidden_layers' is {n}, {weights} holds {held}: "
                        f"the config and the weights do not belong together")
    for i in range(n):
        expect(f"encoder.layer.{i}.attention.self.query.weight", "hidden_size", (d, d))
        expect(f"encoder.layer.{i}.intermediate.dense.weight", "intermediate_size", (cfg["intermediate_size"], d))


# --------------------------------------------------------------------------- #
# vocab.txt
# --------------------------------------------------------------------------- #
def load_vocab(path: Path, name: str, vocab_size: int | None = None) -> dict[str, int]:
    """vocab.txt as BERT reads it (one token a line, its id the line number), checked: bounded
    UTF-8 text, no more tokens than ``vocab_size``, ``[PAD]`` first, ``[UNK]`` ``[CLS]`` ``[SEP]`` there."""
    try:
        data = read_bounded(path, MAX_VOCAB_BYTES, name)
    except FileNotFoundError:
        raise BeexError(f"{name}: {path} is missing") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BeexError(f"{name}: {path} is not UTF-8 text (byte {exc.start}); not a WordPiece vocabulary") from None
    if "\x00" in text:
        raise BeexError(f"{name}: {path} holds a NUL character; not a WordPiece vocabulary")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if vocab_size is not None and len(lines) > vocab_size:
        raise BeexError(f"{name}: {path} has {len(lines)} tokens but config.json's vocab_size is {vocab_size}; "
                        f"the vocabulary and the weights do not belong together")
    vocab = {line.rstrip("\r"): i for i, line in enumerate(lines)}
    missing = [s for s in SPECIALS[:4] if s not in vocab]
    if missing:
        raise BeexError(f"{name}: {path} lacks {', '.join(missing)}; not a BERT WordPiece vocabulary")
    if vocab["[PAD]"] != 0:  # beexbench.data.tokenize.encode pads with id 0, as every BERT vocabulary has it
        raise BeexError(f"{name}: [PAD] is id {vocab['[PAD]']} in {path}, beexbench needs it at 0 (the first line)")
    return vocab
