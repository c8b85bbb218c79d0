"""``beexformer-packed``: the trained BEExformer run by the packed-bit engine.

A derived model: the runner trains (or reuses) the ``beexformer`` checkpoint and calls
:meth:`PackedBEExformer.derive`, which packs that network and keeps its calibrated exit
rule (nothing is re-calibrated: the engine computes the float model's logits).  It
subclasses :class:`EncoderAdapter` for its configuration handling only (defaults,
overrides, exit rule), so a suite's encoder settings key its checkpoint like every model
built on the shared encoder; its module is the inference-only
:class:`~beexbench.engine.packed.PackedEncoder`, never a trainable network.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from .. import kernels
from ..adapters.base import FitReport, ModelAdapter, Precision, TaskSpec
from ..adapters.encoder_adapter import EncoderAdapter, make_rule
from ..adapters.registry import register_model
from ..errors import BeexError
from ..models.beexformer import BEExformer
from ..progress import NULL_PROGRESS, Progress
from ..training.batches import EncodedSplit
from ..training.calibrate import CostFn
from ..training.config import TrainConfig, build_dataclass
from ..models.encoder import EncoderConfig
from .packed import FloatMatMul, PackedEncoder, PackedLinear, PackedQK, check_config, pack_encoder, read_packed, write_packed


def kernel_note() -> str:
    name = kernels.backend()
    if name == kernels.FALLBACK:
        return f"packed kernels: {name} (slower; {kernels.fallback_reason()})"
    return f"packed kernels: {name}"


@register_model("beexformer-packed")
class PackedBEExformer(EncoderAdapter):
    """The trained beexformer deployed with the packed-bit engine: 1-bit weights packed 64 to a
    word, XNOR-popcount products for every W1A1 Linear and for Q.K^T, fp32 embeddings,
    LayerNorms, softmax, A.V and exit heads; its calibrated exit rule. CPU only."""

    derived_from = "beexformer"
    devices = ("cpu",)
    defaults = BEExformer.defaults
    regression_defaults = BEExformer.regression_defaults

    def __init__(self, config: dict[str, Any], spec: TaskSpec, engine: PackedEncoder | None = None) -> None:
        self.config, self.spec = config, spec
        check_config(config["encoder"])
        self.encoder_config = build_dataclass(EncoderConfig, config["encoder"], where="model.encoder")
        self.train_config = build_dataclass(TrainConfig, config["train"], where="model.train")
        self.rule = make_rule(config["exit"], spec.problem)
        if engine is None:  # a fresh model: pack a freshly initialised beexformer network
            engine = self._pack(BEExformer(config, spec))
        self.model = engine.eval()
        self.fit_report: FitReport | None = None

    @staticmethod
    def _pack(source: ModelAdapter) -> PackedEncoder:
        spec = source.spec
        return pack_encoder(source.module().state_dict(), source.config["encoder"], vocab_size=spec.vocab_size,
                            max_len=spec.max_len, num_labels=spec.num_labels)

    @classmethod
    def from_beexformer(cls, source: ModelAdapter) -> "PackedBEExformer":
        """Pack a trained beexformer adapter, keeping its (calibrated) exit rule."""
        if not isinstance(getattr(source, "config", None), dict) or "encoder" not in source.config:
            raise BeexError(f"'{getattr(source, 'name', source)}' is not a beexformer model: {cls.name} packs beexformer")
        out = cls(json.loads(json.dumps(source.config)), source.spec, engine=cls._pack(source))
        rule = getattr(source, "rule", None)
        if rule is not None:
            out.rule = rule  # the calibrated rule object (config["exit"] holds the same parameters)
        out.fit_report = source.fit_report
        return out

    @classmethod
    def derive(cls, source: ModelAdapter, val: EncodedSplit, cost_fn: CostFn | None = None) -> "PackedBEExformer":
        """Pack the trained beexformer; its exit rule stays as calibrated (same logits)."""
        return cls.from_beexformer(source)

    def fit(self, train_split: EncodedSplit, val: EncodedSplit, progress: Progress = NULL_PROGRESS,
            cost_fn: CostFn | None = None) -> FitReport:
        """beexformer-packed is derived from beexformer: this trains a beexformer with the same
        configuration (and calibrates its exit rule), then packs it."""
        source = BEExformer(json.loads(json.dumps(self.config)), self.spec)
        source.name = BEExformer.name
        report = source.fit(train_split, val, progress=progress, cost_fn=cost_fn)
        packed = self.from_beexformer(source)
        self.config, self.rule, self.model, self.fit_report = packed.config, packed.rule, packed.model, report
        return report

    def calibrate(self, val: EncodedSplit, cost_fn=None) -> dict:
        raise BeexError(f"{self.name} keeps the exit rule calibrated on its beexformer; calibrate that model")

    # forward, predict and module come from EncoderAdapter: the engine has the same interface

    def save(self, directory: Path) -> Path:
        meta = {"config": self.config, "task": self.spec.to_dict(),
                "fit": self.fit_report.to_dict() if self.fit_report else None}
        return write_packed(Path(directory), self.name, self.model, meta)

    @classmethod
    def load(cls, directory: Path) -> "PackedBEExformer":
        model, doc = read_packed(Path(directory), cls.name)
        try:
            adapter = cls(doc["config"], TaskSpec(**doc["task"]), engine=model)
        except (KeyError, TypeError) as exc:
            raise BeexError(f"checkpoint {directory} does not match model '{cls.name}' ({exc}): re-derive it") from None
        if adapter.config["encoder"] != model.enc:
            raise BeexError(f"checkpoint {directory}: its packed architecture differs from its config: re-derive it")
        adapter.fit_report = FitReport.from_dict(doc.get("fit"))
        return adapter

    def deployable_files(self, directory: Path) -> list[Path]:
        from ..adapters.checkpoint import META, WEIGHTS
        from .packed import PACKED_FILE

        return [Path(directory) / f for f in (PACKED_FILE, WEIGHTS, META)]

    def precision(self) -> Precision:
        """As beexformer: 1-bit weights (logical [out, in], stored packed) with an fp32 alpha per
        row, (1, 1) products for every packed Linear and Q.K^T, fp32 for the rest."""
        params: dict[str, int] = {name: 32 for name, _ in self.model.named_parameters()}
        products: dict[str, tuple[int, int]] = {}
        for name, mod in self.model.named_modules():
            if isinstance(mod, PackedLinear):
                params[f"{name}.weight"] = 1
                if mod.bias is not None:
                    params[f"{name}.bias"] = 32
                if mod.shift is not None:
                    params[f"{name}.shift"] = 32
                products[name] = (1, 1)
            elif isinstance(mod, PackedQK):
                products[name] = (1, 1)
            elif isinstance(mod, FloatMatMul):
                products[name] = (32, 32)
            elif isinstance(mod, nn.Linear):
                products[name] = (32, 32)
        return Precision(params=params, products=products, notes=(
            kernel_note() + "; 1-bit weights packed 64 to a word with an fp32 alpha per row, input shift folded "
            "into the packing threshold; Q.K^T on packed signs; embeddings, LayerNorms, softmax, A.V and exit heads fp32",))
