"""Early-exit baselines with the rules the BEExformer paper compares against.

Both use the vanilla fp32 transformer backbone (GELU FFN, as BERT) with an exit head
after every block; the exit rule's parameter is calibrated on the validation split.
"""
from __future__ import annotations

from beexbench.adapters.base import TaskSpec, expect_spec
from beexbench.adapters.spec import ModelSpec

from .transformer import Transformer

ENTROPY_GRID = [0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0, 1.2, 1.5, 1.8]


class DeeBERTStyle(Transformer):
    """DeeBERT-style early exit: fp32 backbone, exit when entropy < an absolute threshold (calibrated on val).

    Simplification: DeeBERT trains the backbone with the final classifier first, then the
    exit heads with the backbone frozen; here all exits are trained jointly with a
    uniform loss (every exit weighted 1/n_exits). The threshold grid is in nats
    (0 never exits early; ln 2 = 0.69 for two classes). Classification only: entropy needs
    class probabilities.
    """

    problems = ("classification",)

    defaults = {
        "encoder": {"exit_heads": True},
        "loss": {"kind": "uniform"},
        "exit": {"rule": "absolute-entropy", "threshold": 0.2, "min_exit": 1},
        "calibration": {"param": "threshold", "grid": ENTROPY_GRID},
    }


class PABEEStyle(Transformer):
    """PABEE-style early exit: fp32 backbone, exit after `patience` agreeing consecutive exits (calibrated on val).

    Loss: depth-weighted (w_i proportional to i), as in PABEE. The patience grid is
    1..n_blocks-1 unless ``calibration.grid`` is given. On regression tasks two exits
    agree when their predictions differ by less than ``exit.agree_within`` train-label
    standard deviations (PABEE's regression rule).
    """

    defaults = {
        "encoder": {"exit_heads": True},
        "loss": {"kind": "depth_weighted"},
        "exit": {"rule": "patience", "patience": 2},
        "calibration": {"param": "patience", "grid": None},
    }

    def __init__(self, settings: ModelSpec, spec: TaskSpec) -> None:
        settings = expect_spec(type(self), settings)
        if settings.calibration.grid is None:
            settings = settings.merged({"calibration": {"grid": list(range(1, settings.encoder.n_blocks))}})
        super().__init__(settings, spec)
