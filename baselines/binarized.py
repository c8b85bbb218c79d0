"""Published binarization recipes rebuilt on the shared encoder, trained from scratch
(no BERT teacher, no distillation: the originals used both)."""
from __future__ import annotations

from .transformer import Transformer


class BiBERTStyle(Transformer):
    """BiBERT-style W1A1: sign with clipped STE, row-wise alpha, Bi-Attention 1[S>0], GELU FFN, no exits.

    Differences from BiBERT (Qin et al., 2022): trained from scratch on the task (no
    distillation, so no DMD); no learnable activation shift (BiBERT has none).
    """

    defaults = {
        "encoder": {
            "weight_bits": 1, "act_bits": 1, "estimator": "ste", "learnable_shift": False,
            "binary_qk": True, "attention_probs": "bi-attention",
        },
        "train": {"lr": 4e-3},
    }


class BiTStyle(Transformer):
    """BiT-style W1A1: elastic binarization (learnable scale and shift), {0, alpha} attention probs, GELU FFN, no exits.

    Differences from BiT (Liu et al., 2022): trained from scratch (no multi-step
    distillation); the elastic activation scale is one learnable scalar per Linear
    applied after the +-1 product (``learnable_act_scale``) and the shift one learnable
    value per input channel; the sign uses the clipped STE.
    """

    defaults = {
        "encoder": {
            "weight_bits": 1, "act_bits": 1, "estimator": "ste", "learnable_shift": True,
            "learnable_act_scale": True, "binary_qk": True, "attention_probs": "binary",
        },
        "train": {"lr": 4e-3},
    }
