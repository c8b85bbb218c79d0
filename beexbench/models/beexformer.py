"""BEExformer (SPEC §1) and its ablations, each a variant that only declares defaults (what
differs from its parent's registered spec) and its role: beexformer is the subject, every
variant an ablation of it (the report compares each with it)."""
from __future__ import annotations

import dataclasses

from ..adapters.encoder_adapter import EncoderAdapter
from ..adapters.roles import SUBJECT, ablation_of

DELTA_GRID = [-0.5, -0.2, -0.1, -0.05, 0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.01]
# prediction-change thresholds for regression, in train-label standard deviations
# (0 never exits early; 10 always exits at min_exit)
CHANGE_GRID = [0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 10.0]
# Regression tasks have no class entropy: the exits use the same rule on the prediction
# itself (exit when it moves less than delta), and the soft-routing loss follows it.
ABLATION = ablation_of("beexformer")
REGRESSION_EXIT = {
    "exit": {"rule": "prediction-change", "delta": 0.1, "min_exit": 2},
    "calibration": {"param": "delta", "grid": CHANGE_GRID},
}


class BEExformer(EncoderAdapter):
    """Binarized (W1A1, sign with g'(x) = 2-2|x|), SLFN, an exit after every block with the
    fractional-entropy rule (delta calibrated on validation), soft-routing loss."""

    name = "beexformer"

    role = SUBJECT

    defaults = {
        "encoder": {"weight_bits": 1, "act_bits": 1, "estimator": "g", "ffn": "slfn", "exit_heads": True},
        "train": {"lr": 4e-3},
        "loss": {"kind": "soft_routing"},
        "exit": {"rule": "fractional-entropy", "delta": 0.1, "min_exit": 2, "answer": "lower_entropy"},
        "calibration": {"param": "delta", "grid": DELTA_GRID},
    }
    regression_defaults = REGRESSION_EXIT

    def precision(self):
        p = super().precision()
        # the size column shows each model's files: this one's are its training checkpoint
        return dataclasses.replace(p, notes=(*p.notes, "on disk: the fp32 training checkpoint (latent float weights); "
                                             "its deployable artifact is beexformer-packed"))


class BEExformerNoEE(BEExformer):
    """Ablation: the same trained network as beexformer, no early exit (every block runs)."""

    name = "beexformer-no-ee"

    role = ABLATION

    derived_from = "beexformer"
    defaults = {"exit": {"rule": "final"}, "calibration": {"param": None, "grid": []}}


class BEExformerFFN(BEExformer):
    """Ablation A6: a plain GELU FFN instead of the SLFN."""

    name = "beexformer-ffn"

    role = ABLATION

    defaults = {"encoder": {"ffn": "gelu"}}


class BEExformerSLFN3(BEExformer):
    """A6 option: the three-gate SLFN variant."""

    name = "beexformer-slfn3"

    role = ABLATION

    defaults = {"encoder": {"ffn": "slfn3"}}


class BEExformerSTE(BEExformer):
    """Ablation A1: the clipped straight-through estimator instead of g'(x)."""

    name = "beexformer-ste"

    role = ABLATION

    defaults = {"encoder": {"estimator": "ste"}}


class BEExformerW1A32(BEExformer):
    """Ablation: binarized weights, full-precision activations."""

    name = "beexformer-w1a32"

    role = ABLATION

    defaults = {"encoder": {"act_bits": 32}}


class BEExformerDepthLoss(BEExformer):
    """Ablation A9: depth-weighted exit losses (w_i proportional to i)."""

    name = "beexformer-loss-depth"

    role = ABLATION

    defaults = {"loss": {"kind": "depth_weighted"}}


class BEExformerUniformLoss(BEExformer):
    """Ablation A9: uniform exit losses."""

    name = "beexformer-loss-uniform"

    role = ABLATION

    defaults = {"loss": {"kind": "uniform"}}


class BEExformerFinalLoss(BEExformer):
    """Ablation A9: only the final exit's loss (the other heads barely learn)."""

    name = "beexformer-loss-final"

    role = ABLATION

    defaults = {"loss": {"kind": "final"}}


class BEExformerA5(BEExformer):
    """Ablation A5: a binary token embedding, alpha_row * sign(E) (deployable as 1-bit rows)."""

    name = "beexformer-a5"

    role = ABLATION

    defaults = {"encoder": {"binary_embedding": True}}


class BEExformerKD(BEExformer):
    """Ablation: beexformer distilled from the trained fp32 (logits at every exit and hidden states)."""

    name = "beexformer-kd"

    role = ABLATION

    # BEExformer's paper trains without a teacher; BiBERT / BiT / BinaryBERT distil a fine-tuned
    # full-precision model. This variant measures what a teacher adds (beexbench.training.distill).
    defaults = {"distill": {"teacher": "fp32", "logits": 1.0, "hidden": 1.0}}


class BEExformerOwnFFN(BEExformer):
    """Ablation A6 on a pretrained backbone: BEExformer's SLFN (seeded, no pretrained weights) instead of the backbone's FFN."""

    name = "beexformer-slfn-ffn"

    role = ABLATION

    # on a backbone, beexformer takes the checkpoint's GELU FFN with its weights; the SLFN has no
    # pretrained weights, so this variant measures what the pretrained FFN is worth against it.
    # On a scratch encoder it is beexformer itself (the backbone setting does nothing there).
    defaults = {"backbone": {"ffn": "own"}}
