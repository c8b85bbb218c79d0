"""The standard reference: a vanilla post-LN transformer encoder, fp32, no exits."""
from __future__ import annotations

from beexbench.adapters.encoder_adapter import EncoderAdapter


class Transformer(EncoderAdapter):
    """Vanilla post-LN transformer encoder (GELU FFN, fp32), one classifier after the last block."""

    defaults = {
        "encoder": {"weight_bits": 32, "act_bits": 32, "ffn": "gelu", "exit_heads": False, "dropout": 0.2},
        "train": {"lr": 1e-3},
        "loss": {"kind": "final"},
        "exit": {"rule": "final"},
        "calibration": {"param": None, "grid": []},
    }
