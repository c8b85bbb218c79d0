"""Per-sample outputs of a cell (``metrics.samples``, results schema 4; issue 29): for every test
sample the model's answer, its label and the block it left at — what a paired test between two
models (or two runs) of the same split needs. Packed into the cell's own JSON (one file, written
atomically with the rest of the record): each array is little-endian bytes in base64, and
``sha256`` covers the decoded bytes, so a record edited by hand or cut short is refused instead
of silently pairing the wrong samples. ``split_digest`` names the samples themselves (sha256 of
the test split's token ids, lengths and labels): two cells pair only when their digests match.

Bounded before anything is allocated: ``n`` at most :data:`MAX_SAMPLES`, and each base64 string
must have exactly the length ``n`` and the dtype imply before it is decoded."""
from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .codec import Context, Section, decode_fields
from .columns import MetricDeclaration

MAX_SAMPLES = 5_000_000  # a test split larger than this is not stored per sample (say so, never truncate)
DTYPES = {"int32": "<i4", "float32": "<f4", "int16": "<i2"}


def _b64(arr: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(arr, dtype=DTYPES[dtype]).tobytes()).decode("ascii")


def _b64_len(n: int, dtype: str) -> int:
    raw = n * np.dtype(DTYPES[dtype]).itemsize
    return 4 * ((raw + 2) // 3)


def split_digest(input_ids: Any, lengths: Any, labels: Any) -> str:
    """sha256 of a test split as the model saw it (token ids, lengths, labels)."""
    h = hashlib.sha256()
    for part in (input_ids, lengths, labels):
        arr = np.asarray(part.detach().cpu().numpy() if hasattr(part, "detach") else part)
        h.update(str(arr.dtype.str).encode() + str(arr.shape).encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


@dataclass(frozen=True, kw_only=True)
class Samples(Section):
    """One cell's per-sample outputs (test split, exit rule applied)."""

    n: int
    split_digest: str  # sha256 of the test split (token ids, lengths, labels): pairs only equal digests
    kind: Literal["class", "value"]  # classification answers (class index) or regression values
    prediction_dtype: Literal["int32", "float32"]
    prediction: str  # base64 of n little-endian values
    label: str  # base64, same dtype
    exit_block: str  # base64 of n int16 (the block each sample left after; 0: the model has no blocks)
    sha256: str  # of prediction, label and exit_block bytes, decoded, in that order

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or not 0 < self.n <= MAX_SAMPLES:
            raise ValueError(f"n is the number of test samples, 1..{MAX_SAMPLES}")
        want = _b64_len(self.n, self.prediction_dtype)
        if len(self.prediction) != want or len(self.label) != want or len(self.exit_block) != _b64_len(self.n, "int16"):
            raise ValueError(f"the packed arrays do not hold {self.n} samples")

    @classmethod
    def _decode(cls, doc: dict, ptr: str, ctx: Context) -> "Samples":
        obj = decode_fields(cls, doc, ptr, ctx)
        try:
            obj.arrays()
        except ValueError as exc:
            raise ctx.fail(ptr, str(exc)) from None
        return obj

    @classmethod
    def pack(cls, prediction: Any, label: Any, exit_block: Any, *, digest: str, regression: bool) -> "Samples":
        dtype = "float32" if regression else "int32"
        pred, lab = np.asarray(prediction).reshape(-1), np.asarray(label).reshape(-1)
        blocks = np.asarray(exit_block).reshape(-1)
        if not (pred.size == lab.size == blocks.size):
            raise ValueError(f"per-sample arrays of different lengths: {pred.size}, {lab.size}, {blocks.size}")
        fields = (_b64(pred, dtype), _b64(lab, dtype), _b64(blocks, "int16"))
        return cls(n=int(pred.size), split_digest=digest, kind="value" if regression else "class", prediction_dtype=dtype,
                   prediction=fields[0], label=fields[1], exit_block=fields[2], sha256=cls._hash(*fields))

    @staticmethod
    def _hash(*b64: str) -> str:
        h = hashlib.sha256()
        for part in b64:
            h.update(base64.b64decode(part, validate=True))
        return h.hexdigest()

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(prediction, label, exit_block), checked against ``sha256``."""
        try:
            if self._hash(self.prediction, self.label, self.exit_block) != self.sha256:
                raise ValueError("its per-sample arrays do not match their sha256 (edited or cut short)")
            raw = [base64.b64decode(s, validate=True) for s in (self.prediction, self.label, self.exit_block)]
        except (ValueError, TypeError) as exc:
            raise ValueError(str(exc) if "sha256" in str(exc) else f"a per-sample array is not base64: {exc}") from None
        dt = DTYPES[self.prediction_dtype]
        return np.frombuffer(raw[0], dt), np.frombuffer(raw[1], dt), np.frombuffer(raw[2], "<i2")

    def correct(self) -> np.ndarray:
        """Per-sample correctness (classification)."""
        if self.kind != "class":
            raise ValueError("correctness is defined for classification samples")
        pred, label, _ = self.arrays()
        return pred == label


# no column of its own: the paired tests (beexbench.compare, the report's pairwise sentences) read it;
# runner.measure fills it from the quality pass (no second forward)
DECLARATION = MetricDeclaration(key="samples", section=Samples, columns=())
