"""The start every runtime deployment of the trained fp32 model shares (ONNX Runtime per block or in
one graph, torch bf16, OpenVINO): the same network and settings, its calibrated exit rule kept, the
trained source held (``Deployment.source``); each deployment then exports or verifies its own way."""
from __future__ import annotations

from typing import Any

from beexbench.adapters.spec import ModelSpec
from beexbench.errors import BeexError, ConfigError


def take_rule(out: Any, rule: Any) -> None:
    """``out`` deploys ``rule`` (``set_rule`` where the deployment has one, so what it builds follows)."""
    if rule is None:
        return
    if callable(getattr(out, "set_rule", None)):
        out.set_rule(rule)
    else:
        out.rule = rule  # the calibrated rule object (config["exit"] holds the same parameters)


def fit_source(self: Any, train_split: Any, val: Any, progress: Any, cost_fn: Any) -> Any:
    """A deployment trained directly: an fp32 around its own network trains (as ``fp32`` does, rule
    calibrated on val) and becomes its ``source``; the deployment takes its settings, report and rule."""
    source = self.source_class().around(self.model, self.model_spec, self.spec, self.backbone)
    report = source.fit(train_split, val, progress=progress, cost_fn=cost_fn)
    self.source, self.model_spec, self.fit_report = source, source.model_spec, report
    take_rule(self, source.exit_rule())
    return report


def copy_of_fp32(cls: Any, source: Any, verb: str = "exports") -> Any:
    """A ``cls`` holding a copy of ``source``'s trained fp32 network and its calibrated rule
    (``set_rule`` where the deployment has one, so that what it builds follows the rule)."""
    try:
        settings = ModelSpec.from_dict(source.config)
    except (ConfigError, AttributeError):
        raise BeexError(f"'{getattr(source, 'name', source)}' is not an fp32 encoder model: {cls.name} {verb} fp32") from None
    if settings.encoder.weight_bits != 32:
        raise BeexError(f"'{source.name}' is not a full-precision model: {cls.name} {verb} fp32 models only")
    out = cls(settings, source.spec)
    out.model.load_state_dict(source.module().state_dict())
    out.model.eval()
    take_rule(out, source.exit_rule())
    out.source, out.fit_report = source, source.fit_report
    return out


def agreement(torch_predict: Any, predict: Any, val: Any, batch_size: int) -> tuple[int, int, int, float]:
    """``predict`` against the torch reference on ``val``: (samples, same predictions, same exit
    blocks, max |logit difference| of the answers of rows that exit at the same block)."""
    import torch

    n = same_pred = same_block = 0
    diff = 0.0
    with torch.no_grad():
        for b in val.batches(batch_size):
            ref, got = torch_predict(b.input_ids, b.attention_mask), predict(b.input_ids, b.attention_mask)
            same = ref.exit_block == got.exit_block
            n, same_block = n + len(same), same_block + int(same.sum())
            same_pred += int((ref.logits.argmax(-1) == got.logits.argmax(-1)).sum())
            if same.any():
                diff = max(diff, float((ref.logits[same] - got.logits[same]).abs().max()))
    return n, same_pred, same_block, diff
