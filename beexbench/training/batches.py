"""Token tensors for one split, and batching with per-batch trimming of padding."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch


@dataclass(frozen=True)
class Batch:
    input_ids: torch.Tensor  # [B, L] long
    attention_mask: torch.Tensor  # [B, L] bool
    labels: torch.Tensor  # [B] long

    def __len__(self) -> int:
        return self.input_ids.shape[0]


@dataclass(frozen=True)
class EncodedSplit:
    input_ids: torch.Tensor  # [N, max_len]
    attention_mask: torch.Tensor  # [N, max_len]
    labels: torch.Tensor  # [N]

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def batch(self, index: torch.Tensor | slice) -> Batch:
        ids, mask = self.input_ids[index], self.attention_mask[index]
        width = max(int(mask.sum(1).max()), 1) if len(ids) else 1
        return Batch(ids[:, :width], mask[:, :width], self.labels[index])

    def batches(self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None,
                bucket: int = 0) -> Iterator[Batch]:
        """Batches in order, or shuffled. ``bucket=k`` (with shuffle) sorts each window of
        ``k`` batches by length before cutting it, then shuffles the batches: much less
        padding, still random."""
        order = torch.randperm(len(self), generator=generator) if shuffle else torch.arange(len(self))
        if shuffle and bucket > 1:
            lengths = self.attention_mask.sum(1)
            window = batch_size * bucket
            chunks = []
            for start in range(0, len(order), window):
                part = order[start : start + window]
                part = part[torch.argsort(lengths[part], stable=True)]
                chunks += list(part.split(batch_size))
            for i in torch.randperm(len(chunks), generator=generator).tolist():
                yield self.batch(chunks[i])
            return
        for start in range(0, len(self), batch_size):
            yield self.batch(order[start : start + batch_size])

    def subset(self, n: int) -> "EncodedSplit":
        return EncodedSplit(self.input_ids[:n], self.attention_mask[:n], self.labels[:n])
