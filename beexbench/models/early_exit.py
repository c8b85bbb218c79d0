"""Early-exit inference with row removal: the one loop every eager path runs.

A batch runs block by block; after each block that has an exit head the exit rule (its
``start`` / ``step``, :mod:`beexbench.models.exits`) decides which rows are done, their answers
and exit blocks are recorded, and they leave the batch before the next block, so the remaining
blocks really run only for the rows still pending. What runs a block is the caller's ``step``:

* the torch encoder (:func:`beexbench.models.encoder.early_exit_infer`, also the packed engine's
  module path),
* the packed engine's per-block C++ op (:func:`beexbench.engine._fused.infer_steps`),
* the ONNX Runtime graphs of ``fp32-ort`` / ``int8-ort`` (``baselines/ort.py``; hidden states and
  masks are numpy arrays there).

The packed engine's whole-model C++ op (``infer`` in ``beexbench/engine/_engine.cpp``) is the one
twin of this loop; tests/test_engine_native.py checks the two give the same logits and exit blocks
bit for bit.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Protocol

import torch

from .exits import ExitDecision, ExitState

BlockStep = Callable[[Any, Any, int], "tuple[Any, Optional[torch.Tensor]]"]


class RuleSteps(Protocol):
    """What the loop needs of an exit rule (an :class:`~beexbench.models.exits.ExitRule`, or a
    stand-in running the same rule another way)."""

    name: str

    def start(self, batch: int) -> ExitState: ...

    def step(self, block: int, logits: torch.Tensor, state: ExitState, last: bool): ...


def run_early_exit(h: Any, mask: Any, n_blocks: int, step: BlockStep, rule: RuleSteps) -> ExitDecision:
    """Run blocks ``1..n_blocks`` on the batch ``(h, mask)`` with row removal; returns every row's
    answer logits and exit block (1-based), in the batch's order.

    ``step(h, mask, block)`` runs ``block`` (1-based) on the pending rows and returns the new
    hidden state and that block's exit logits [rows, C] (None for a block without an exit head;
    the last block has one). ``h`` and ``mask`` are torch tensors or numpy arrays (indexed by
    rows only; ``h`` may be None once no block follows). The answers keep the rule's dtype and
    device. Nothing is allocated for the bookkeeping until some rows exit while others
    stay (a batch of one never allocates it). A rule that leaves rows pending at the last block is
    a ValueError (the contract: ``step(..., last=True)`` marks every row done)."""
    n = int(mask.shape[0])
    if n == 0:
        raise ValueError("empty batch")
    as_numpy = not isinstance(mask, torch.Tensor)
    rows = logits_out = blocks_out = None  # rows: the batch rows still pending (None: all of them)
    state = rule.start(n)
    for i in range(1, n_blocks + 1):
        h, logits = step(h, mask, i)
        if logits is None:  # a block without an exit head
            continue
        done, answer, state = rule.step(i, logits, state, last=i == n_blocks)
        exited = int(done.sum())
        if exited == 0:
            continue
        if rows is None:
            if exited == n:  # every row exits here, none before: no bookkeeping
                return ExitDecision(answer, torch.full((n,), i, dtype=torch.long, device=answer.device))
            rows = torch.arange(n, device=answer.device)
            logits_out = torch.empty(n, answer.shape[-1], dtype=answer.dtype, device=answer.device)
            blocks_out = torch.empty(n, dtype=torch.long, device=answer.device)
        if exited == len(done):  # every pending row exits here
            logits_out[rows] = answer
            blocks_out[rows] = i
            return ExitDecision(logits_out, blocks_out)
        gone = rows[done]
        logits_out[gone] = answer[done]
        blocks_out[gone] = i
        keep = ~done
        take = keep.numpy() if as_numpy else keep
        h, mask, rows, state = h[take], mask[take], rows[keep], state.select(keep)
    raise ValueError(f"exit rule '{getattr(rule, 'name', rule)}' left {len(rows) if rows is not None else n} "
                     f"row(s) pending after the last block ({n_blocks})")
