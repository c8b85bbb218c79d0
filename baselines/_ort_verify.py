"""Checking an ONNX Runtime deployment (:mod:`baselines.ort`) against the torch model it was
exported from, on the validation split: :func:`verify` makes the record a deployment keeps
(``verification``), :func:`verification_note` says it in one line for ``precision().notes``."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch

from beexbench.errors import BeexError
from beexbench.training.batches import EncodedSplit

if TYPE_CHECKING:
    from .ort import OrtDeployment


def verify(deployment: "OrtDeployment", torch_predict: Callable, torch_forward: Callable, val: EncodedSplit | None,
           reference: str = "torch fp32") -> dict:
    """Compare ``deployment`` with the torch model on ``val`` (batches of its ``verify_batch_size``,
    rows removed as they exit): agreement of predictions and exit blocks, max |logit difference|
    of the answers (rows that exit at the same block) and of every exit. With a ``tolerance``,
    any disagreement or a larger difference is a BeexError."""
    if val is None or len(val) == 0:
        return {"split": None, "note": "not verified: no validation split was given"}
    n = same_pred = same_block = 0
    answer_diff = exits_diff = 0.0
    deployment.model.eval()
    with torch.no_grad():
        for b in val.batches(deployment.verify_batch_size):
            ref, got = torch_predict(b.input_ids, b.attention_mask), deployment.predict(b.input_ids, b.attention_mask)
            same = ref.exit_block == got.exit_block
            n += len(same)
            same_block += int(same.sum())
            same_pred += int((ref.logits.argmax(-1) == got.logits.argmax(-1)).sum())
            if same.any():
                answer_diff = max(answer_diff, float((ref.logits[same] - got.logits[same]).abs().max()))
            for a, c in zip(torch_forward(b.input_ids, b.attention_mask), deployment.forward(b.input_ids, b.attention_mask)):
                exits_diff = max(exits_diff, float((a - c).abs().max()))
    tolerance = deployment.tolerance
    record = {"split": "val", "samples": n, "batch_size": deployment.verify_batch_size, "reference": reference,
              "rule": deployment.rule.to_dict(), "prediction_agreement": same_pred / n, "exit_block_agreement": same_block / n,
              "max_abs_logit_diff": answer_diff, "max_abs_logit_diff_all_exits": exits_diff,
              "tolerance": tolerance, "session": deployment.session_settings()}
    if tolerance is not None:
        worst = max(answer_diff, exits_diff)
        if same_pred != n or same_block != n or not worst <= tolerance:
            raise BeexError(
                f"{deployment.name} disagrees with {reference} on the validation split (predictions {same_pred}/{n}, exit "
                f"blocks {same_block}/{n}, max |logit diff| {worst:.2e} > tolerance {tolerance:g} or a "
                "disagreement): the ONNX export is not the same model; re-derive it, or report it with your torch "
                "and onnxruntime versions")
    return record


def verification_note(v: dict | None) -> str:
    """One line for a deployment's ``verification`` record (None or unverified: says so)."""
    if not v or v.get("split") is None:
        return "not verified against the torch model (loaded without a record, or derived without a validation split)"
    text = (f"verified on {v['split']} ({v['samples']} samples, batches of {v['batch_size']}, rows removed as they exit) "
            f"against {v['reference']}: predictions agree {v['prediction_agreement']:.2%}, exit blocks "
            f"{v['exit_block_agreement']:.2%}, max |logit diff| {v['max_abs_logit_diff']:.2e} (answers), "
            f"{v['max_abs_logit_diff_all_exits']:.2e} (every exit)")
    return text + (f", tolerance {v['tolerance']:g}" if v.get("tolerance") is not None else ", no tolerance (recorded only)")
