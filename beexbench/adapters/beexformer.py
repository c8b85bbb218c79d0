"""BEExformer (SPEC §1) and its ablations. beexformer is the subject; every variant is an ablation
of it (the report compares each with it) that differs only in defaults (what differs from
beexformer's registered spec), so the variants are data (timm's ``default_cfgs``): one row of
:data:`VARIANTS` each, made into a class of this module under its own name (importable and
picklable as ``beexbench.adapters.beexformer:<class>``, which its entry point in pyproject.toml
names). A new variant: a row here, an entry point, ``pip install -e .``."""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

from .encoder_adapter import EncoderAdapter
from .roles import SUBJECT, ablation_of

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


class Variant(NamedTuple):
    """An ablation of beexformer: its registered name, its one-line description (the class's
    docstring: ``beexbench list models``), its defaults over beexformer's, and the trained model
    it is derived from (None: trained itself)."""

    name: str
    doc: str
    defaults: dict[str, Any]
    derived_from: str | None = None


# class name -> the variant (the entry points in pyproject.toml name these classes)
VARIANTS: dict[str, Variant] = {
    "BEExformerNoEE": Variant(
        "beexformer-no-ee", "Ablation: the same trained network as beexformer, no early exit (every block runs).",
        {"exit": {"rule": "final"}, "calibration": {"param": None, "grid": []}}, derived_from="beexformer"),
    "BEExformerFFN": Variant("beexformer-ffn", "Ablation A6: a plain GELU FFN instead of the SLFN.",
                             {"encoder": {"ffn": "gelu"}}),
    "BEExformerSLFN3": Variant("beexformer-slfn3", "A6 option: the three-gate SLFN variant.", {"encoder": {"ffn": "slfn3"}}),
    "BEExformerSTE": Variant("beexformer-ste", "Ablation A1: the clipped straight-through estimator instead of g'(x).",
                             {"encoder": {"estimator": "ste"}}),
    "BEExformerW1A32": Variant("beexformer-w1a32", "Ablation: binarized weights, full-precision activations.",
                               {"encoder": {"act_bits": 32}}),
    "BEExformerDepthLoss": Variant("beexformer-loss-depth", "Ablation A9: depth-weighted exit losses (w_i proportional to i).",
                                   {"loss": {"kind": "depth_weighted"}}),
    "BEExformerUniformLoss": Variant("beexformer-loss-uniform", "Ablation A9: uniform exit losses.",
                                     {"loss": {"kind": "uniform"}}),
    "BEExformerFinalLoss": Variant("beexformer-loss-final",
                                   "Ablation A9: only the final exit's loss (the other heads barely learn).",
                                   {"loss": {"kind": "final"}}),
    "BEExformerA5": Variant("beexformer-a5",
                            "Ablation A5: a binary token embedding, alpha_row * sign(E) (deployable as 1-bit rows).",
                            {"encoder": {"binary_embedding": True}}),
    # BEExformer's paper trains without a teacher; BiBERT / BiT / BinaryBERT distil a fine-tuned
    # full-precision model. This variant measures what a teacher adds (beexbench.training.distill).
    "BEExformerKD": Variant(
        "beexformer-kd", "Ablation: beexformer distilled from the trained fp32 (logits at every exit and hidden states).",
        {"distill": {"teacher": "fp32", "logits": 1.0, "hidden": 1.0}}),
    # on a backbone, beexformer takes the checkpoint's GELU FFN with its weights; the SLFN has no
    # pretrained weights, so this variant measures what the pretrained FFN is worth against it.
    # On a scratch encoder it is beexformer itself (the backbone setting does nothing there).
    "BEExformerOwnFFN": Variant(
        "beexformer-slfn-ffn",
        "Ablation A6 on a pretrained backbone: BEExformer's SLFN (seeded, no pretrained weights) instead of the backbone's FFN.",
        {"backbone": {"ffn": "own"}}),
}


def variant_class(class_name: str, variant: Variant) -> type[BEExformer]:
    """``variant`` as a subclass of :class:`BEExformer` named ``class_name`` in this module."""
    attrs: dict[str, Any] = {"__doc__": variant.doc, "__module__": __name__, "__qualname__": class_name,
                             "name": variant.name, "role": ABLATION, "defaults": variant.defaults}
    if variant.derived_from:
        attrs["derived_from"] = variant.derived_from
    return type(class_name, (BEExformer,), attrs)


globals().update({cls: variant_class(cls, v) for cls, v in VARIANTS.items()})
BEExformerA5: type[BEExformer]  # made above (the packed A5 deployment finds it by its name, beexformer-a5)
