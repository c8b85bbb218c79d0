"""``fp32-bf16``: the trained fp32 network run under ``torch.autocast("cpu", dtype=torch.bfloat16)``.

A peer, not a new model: the same weights (stored fp32), every Linear and matrix product run by
torch's bf16 CPU kernels (oneDNN; bf16 operands, fp32 accumulation), the rest as autocast decides,
the answers returned in fp32. Derived from ``fp32`` (kept in ``source``), checked against it on the
validation split with no tolerance (agreement recorded). Where the CPU has no native bf16
(neither AVX512-BF16 nor AMX-BF16 in /proc/cpuinfo) oneDNN emulates it, more slowly: that is not
the fast path, and ``implementation()`` settles it as a fallback (the cell fails unless
BEEXBENCH_ALLOW_FALLBACK=1, and is then labelled). Whether it beats fp32 eager depends on the
host: it is kept as a peer either way.
"""
from __future__ import annotations

from pathlib import Path

import torch

from beexbench.adapters.base import FitReport, ModelAdapter, Precision
from beexbench.adapters.encoder_adapter import EncoderAdapter, module_precision
from beexbench.adapters.protocols import Deployment
from beexbench.adapters.roles import deployment_of
from beexbench.adapters.spec import ModelSpec
from beexbench.models.exits import ExitDecision
from beexbench.progress import NULL_PROGRESS, Progress
from beexbench.results.implementation import PYTORCH, Implementation, settle
from beexbench.training.batches import EncodedSplit
from beexbench.training.calibrate import CostFn

NATIVE_FLAGS = ("amx_bf16", "avx512_bf16")
from ._fp32_copy import agreement, copy_of_fp32, fit_source


def native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The CPU flag that gives native bf16 products (amx_bf16, avx512_bf16), or None."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return next((f for f in NATIVE_FLAGS if f in flags), None)


class TorchBF16(Deployment, EncoderAdapter):
    """The trained fp32 model under torch's CPU autocast to bfloat16 (oneDNN)."""

    derived_from = "fp32"
    role = deployment_of("fp32")
    devices = ("cpu",)
    training_note = "the trained fp32 network run under torch.autocast(cpu, bfloat16) (no retraining)"

    def __init__(self, settings: ModelSpec, spec) -> None:
        super().__init__(settings, spec)
        self.source: ModelAdapter | None = None
        self.verification: dict | None = None

    def _autocast(self):
        return torch.autocast("cpu", dtype=torch.bfloat16)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        """Every exit's logits (fp32) from the bf16 network; a torch trace (the operation
        counter) sees the fp32 graph, whose products precision() declares bf16."""
        if torch.jit.is_tracing():
            return self.model(input_ids, attention_mask)
        with self._autocast():
            out = self.model(input_ids, attention_mask)
        return [o.float() for o in out]

    def predict(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> ExitDecision:
        with self._autocast():
            d = self.model.infer(input_ids, attention_mask, self.rule)
        return ExitDecision(d.logits.float(), d.exit_block)

    # -- derivation ---------------------------------------------------------------------------
    @classmethod
    def derive(cls, source: ModelAdapter, val: EncodedSplit | None, cost_fn: CostFn | None = None) -> "TorchBF16":
        out = copy_of_fp32(cls, source, verb="runs")
        out.verification = out.verify(source.predict, val)
        return out

    def fit(self, train_split: EncodedSplit, val: EncodedSplit, progress: Progress = NULL_PROGRESS,
            cost_fn: CostFn | None = None) -> FitReport:
        """Train the fp32 network (as ``fp32`` does), then run it under autocast."""
        report = fit_source(self, train_split, val, progress, cost_fn)
        self.verification = self.verify(self.source.predict, val)
        return report

    def verify(self, torch_predict, val: EncodedSplit | None) -> dict:
        """Prediction and exit-block agreement with fp32 eager on ``val``; max |logit diff| at equal exits."""
        if val is None or len(val) == 0:
            return {"split": None}
        n, same_pred, same_block, diff = agreement(torch_predict, self.predict, val, 64)
        return {"split": "val", "samples": n, "prediction_agreement": same_pred / n,
                "exit_block_agreement": same_block / n, "max_abs_logit_diff": diff, "tolerance": None}

    # -- what runs ------------------------------------------------------------------------------
    def implementation(self) -> Implementation:
        flag = native_bf16()
        return settle(self.name, fast_path=f"torch {torch.__version__} autocast(cpu, bfloat16): oneDNN bf16 kernels",
                      engine=PYTORCH, isa=flag, kernels=None,
                      reason=None if flag else "bf16 unavailable on this CPU (no AVX512-BF16 or AMX-BF16): oneDNN emulates it")

    def precision(self) -> Precision:
        base = module_precision(self.model)
        products = {m: (16, 16) if bits == (32, 32) else bits for m, bits in base.products.items()}
        v = self.verification
        check = ("not verified against fp32 (loaded, or derived without a validation split)" if not v or v.get("split") is None
                 else f"vs fp32 eager on val ({v['samples']} samples): predictions agree {v['prediction_agreement']:.2%}, "
                      f"exit blocks {v['exit_block_agreement']:.2%}, max |logit diff| {v['max_abs_logit_diff']:.2e} (recorded only)")
        notes = ("bf16 products: torch.autocast('cpu', bfloat16) runs every Linear and matmul with bf16 operands and "
                 "fp32 accumulation (oneDNN); weights stored fp32 and cast per call; LayerNorm, softmax and the exit "
                 f"rule as autocast decides; native bf16 on this CPU: {native_bf16() or 'no (emulated)'}", check)
        return Precision(params=dict(base.params), products=products, notes=notes)
