"""An example beexbench plugin: one model, registered through the ``beexbench.adapters``
entry point (see ../pyproject.toml)."""
from beexbench.adapters.encoder_adapter import EncoderAdapter


class BinaryWeightsGelu(EncoderAdapter):
    """Example plugin: binarized weights (W1A32), GELU FFN, final exit only."""

    # only what differs from the shared defaults (see `beexbench.adapters.encoder_adapter`)
    defaults = {
        "encoder": {"weight_bits": 1, "act_bits": 32, "ffn": "gelu", "exit_heads": False},
        "train": {"lr": 2e-3},
        "loss": {"kind": "final"},
        "exit": {"rule": "final"},
        "calibration": {"param": None, "grid": []},
    }
