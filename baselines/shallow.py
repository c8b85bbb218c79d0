"""``fp32-shallow``: a static k-block fp32 network trained alone, one exit, no early exit.

An early-exit model whose rule settles on block k is judged against "deep training + exits"'s
obvious rival, "just train k blocks": this is that rival. It is fp32's registered settings
(:class:`baselines.fp32.FP32`'s defaults: same width, FFN, dropout, learning rate) with
``encoder.n_blocks = k``, a single exit head after the last block (``exit_heads = false``),
the final-exit loss and the ``final`` rule (no calibration).

k is ``exit.min_exit`` of its spec (the rule's parameter it mirrors: fp32's and beexformer's
default 2, which is where the default suite's rules settle). A suite's ``[model.encoder]
n_blocks`` is the deep models' depth; this model is k blocks deep whatever it is, and a k above
it is refused (the shallow model would be deeper than the models it is compared with). Set k
for this model alone with ``[model_overrides.fp32-shallow.exit] min_exit = 3``. It trains from
scratch: on a pretrained backbone (whose config.json sets the depth) it is refused.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from beexbench.adapters.encoder_adapter import EncoderAdapter
from beexbench.adapters.roles import BASELINE
from beexbench.adapters.spec import SCRATCH, ModelSpec
from beexbench.errors import ConfigError

from .fp32 import FP32


def _given_depth(overrides: "dict[str, Any] | ModelSpec | None") -> int | None:
    """``encoder.n_blocks`` as a run's overrides give it (nested or dotted), else None."""
    if isinstance(overrides, ModelSpec):
        return overrides.encoder.n_blocks
    if not isinstance(overrides, dict):
        return None
    encoder = overrides.get("encoder")
    if isinstance(encoder, dict) and "n_blocks" in encoder:
        return encoder["n_blocks"]
    return overrides.get("encoder.n_blocks")


class FP32Shallow(EncoderAdapter):
    """fp32 with k = exit.min_exit blocks (default 2) trained alone, one exit: the static-depth rival of early exit."""

    role = BASELINE

    # over fp32's registered spec (default_spec below), not over EncoderAdapter's
    defaults = {
        "encoder": {"exit_heads": False},
        "loss": {"kind": "final"},
        "exit": {"rule": "final"},
        "calibration": {"param": None, "grid": []},
    }

    @classmethod
    def default_spec(cls, problem: str = "classification") -> ModelSpec:
        """fp32's registered spec (its regression defaults included), this model's ``defaults``
        over it, at depth k."""
        return cls._at_depth(FP32.default_spec(problem).merged(cls.defaults), None)

    @classmethod
    def resolve_spec(cls, overrides: "dict[str, Any] | ModelSpec | None", problem: str = "classification") -> ModelSpec:
        return cls._at_depth(cls.default_spec(problem).merged(overrides), _given_depth(overrides))

    @staticmethod
    def _at_depth(spec: ModelSpec, deep: int | None) -> ModelSpec:
        """``spec`` with ``encoder.n_blocks = k = exit.min_exit``; ``deep``: the depth the run gives
        (the deep models'), which k must not exceed."""
        k = spec.exit.min_exit
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ConfigError([f"'model.exit.min_exit' is {k!r}: fp32-shallow is that many blocks deep, a whole number >= 1"])
        if isinstance(deep, int) and not isinstance(deep, bool) and k > deep:
            raise ConfigError([f"'model.exit.min_exit' ({k}) is above 'model.encoder.n_blocks' ({deep}): fp32-shallow is "
                               f"min_exit blocks deep, the static-depth rival of {deep}-block models; use a min_exit of at most {deep}"])
        if spec.backbone.name != SCRATCH:  # a backbone's config.json would set the depth back to its own
            raise ConfigError([f"'model.backbone.name' is {spec.backbone.name!r}: fp32-shallow trains k blocks from scratch "
                               "(a pretrained backbone's depth is its own); leave it out of suites on a backbone"])
        return dataclasses.replace(spec, encoder=dataclasses.replace(spec.encoder, n_blocks=k))
