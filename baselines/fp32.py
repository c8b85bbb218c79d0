"""The full-precision counterpart of BEExformer: same architecture, nothing binarized."""
from __future__ import annotations

from beexbench.adapters.encoder_adapter import EncoderAdapter
from beexbench.adapters.roles import BASELINE, FULL_PRECISION_REFERENCE
from beexbench.adapters.beexformer import DELTA_GRID, REGRESSION_EXIT


class FP32(EncoderAdapter):
    """fp32 BEExformer architecture (SLFN, exits after every block, fractional-entropy rule)."""

    role = FULL_PRECISION_REFERENCE  # the report's compression ratios are against it

    defaults = {
        "encoder": {"weight_bits": 32, "act_bits": 32, "ffn": "slfn", "exit_heads": True, "dropout": 0.2},
        "train": {"lr": 1e-3},
        "loss": {"kind": "soft_routing"},
        "exit": {"rule": "fractional-entropy", "delta": 0.1, "min_exit": 2, "answer": "lower_entropy"},
        "calibration": {"param": "delta", "grid": DELTA_GRID},
    }
    regression_defaults = REGRESSION_EXIT


class FP32NoEE(FP32):
    """The same trained network as fp32, without early exit (all blocks run)."""

    role = BASELINE

    derived_from = "fp32"
    defaults = {"exit": {"rule": "final"}, "calibration": {"param": None, "grid": []}}
