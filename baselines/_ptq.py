"""Helper base for post-training quantized baselines: train the fp32 counterpart, convert
its Linear layers, calibrate the exit rule on the converted model.

A subclass declares ``convert(float_model) -> nn.Module`` and, in the converted model, uses
modules whose ``state_dict`` holds plain tensors only (int8 weights, scales, biases), so
the checkpoint is ordinary safetensors (no pickle) and its size on disk is the quantized
size. Loading rebuilds the quantized modules from those tensors exactly (no re-quantization).
"""
from __future__ import annotations

import copy
from abc import abstractmethod
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from beexbench.adapters.base import FitReport, Precision, TaskSpec
from beexbench.adapters.encoder_adapter import EncoderAdapter, module_precision
from beexbench.adapters.roles import BASELINE
from beexbench.errors import BeexError
from beexbench.models.layers import QuantLinear
from beexbench.progress import NULL_PROGRESS, Progress
from beexbench.training.batches import EncodedSplit
from beexbench.training.calibrate import CostFn
from beexbench.training.loop import train

from .fp32 import FP32


def plain_linears(model: nn.Module, *, skip: tuple[str, ...] = ()) -> nn.Module:
    """A deep copy of ``model`` whose fp32 :class:`QuantLinear` layers are plain ``nn.Linear``
    (the same function), so torch's quantization flows, which match exact types, see them.
    Modules whose name starts with an entry of ``skip`` are left alone."""
    model = copy.deepcopy(model).eval()
    for name, mod in list(model.named_modules()):
        if not isinstance(mod, QuantLinear) or name.startswith(skip):
            continue
        if mod.weight_bits != 32:
            raise BeexError(f"cannot quantize {name}: it is a binarized Linear (weight_bits={mod.weight_bits}); start from an fp32 model")
        lin = nn.Linear(mod.in_features, mod.out_features, bias=mod.bias is not None)
        lin.load_state_dict(mod.state_dict())
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, lin)
    return model


class PostTrainingQuantized(FP32):
    """Helper base (not registered): the fp32 counterpart, trained, then converted."""

    derived_from = "fp32"
    role = BASELINE  # a rival in its own right (not the fp32 reference it is made from)
    devices = ("cpu",)  # torch's quantized kernels run on the CPU only
    quantized_types: ClassVar[tuple[type, ...]] = ()  # the quantized modules convert() creates
    weight_bits: ClassVar[int] = 8  # storage bits of their weights
    product_bits: ClassVar[tuple[int, int]] = (8, 8)  # (input, weight) bits of their products

    def __init__(self, config: dict[str, Any], spec: TaskSpec) -> None:
        super().__init__(config, spec)
        self.float_model: nn.Module | None = self.model  # trained by fit
        self.model = self.convert(self.float_model)

    @abstractmethod
    def convert(self, float_model: nn.Module) -> nn.Module:
        """The quantized copy of ``float_model`` (its fp32 network is left untouched)."""

    @classmethod
    def from_float(cls, adapter: EncoderAdapter) -> "PostTrainingQuantized":
        """Quantize an already trained fp32 adapter (same architecture) instead of training.
        Its exit rule is kept; call ``calibrate(val)`` to re-calibrate it on the quantized model."""
        if adapter.encoder_config.weight_bits != 32:
            raise BeexError(f"'{adapter.name}' is not a full-precision model: {cls.name} quantizes fp32 models only")
        out = cls(adapter.config, adapter.spec)
        out.float_model = copy.deepcopy(adapter.model).eval()
        out.model = out.convert(out.float_model)
        out.fit_report = adapter.fit_report
        return out

    @classmethod
    def derive(cls, source: EncoderAdapter, val: EncodedSplit, cost_fn: CostFn | None = None) -> "PostTrainingQuantized":
        """Quantize the trained fp32 model and re-calibrate its exit rule on the quantized model."""
        out = cls.from_float(source)
        if out.config["calibration"]["grid"]:
            calibration = out.calibrate(val, cost_fn)
            if out.fit_report is not None:
                out.fit_report = FitReport(**{**out.fit_report.to_dict(), "calibration": calibration})
        return out

    def fit(self, train_split: EncodedSplit, val: EncodedSplit, progress: Progress = NULL_PROGRESS,
            cost_fn: CostFn | None = None) -> FitReport:
        if self.float_model is None:
            raise BeexError(f"this {self.name} model was loaded from a quantized checkpoint and has no fp32 weights to train: build a fresh one")
        log = train(self.float_model, self.loss, train_split, val, self.train_config,
                    description=f"train {self.name} (fp32)", progress=progress)
        self.model = self.convert(self.float_model)
        calibration = self.calibrate(val, cost_fn) if self.config["calibration"]["grid"] else None
        self.fit_report = FitReport(**log, calibration=calibration)
        return self.fit_report

    @classmethod
    def load(cls, directory: Path) -> "PostTrainingQuantized":
        adapter = super().load(directory)
        adapter.float_model = None  # only the quantized weights are stored
        return adapter

    def precision(self) -> Precision:
        """Quantized weights at ``weight_bits`` (logical N x K elements, named ``<linear>.weight``);
        scales, zero points, biases and everything else 32."""
        base = module_precision(self.model)
        params, products = dict(base.params), dict(base.products)
        for name, mod in self.model.named_modules():
            if isinstance(mod, self.quantized_types):
                for key, _ in mod.state_dict().items():
                    params[f"{name}.{key}"] = 32
                params[f"{name}.weight"] = self.weight_bits
                params.pop(f"{name}.weight_packed", None)
                products[name] = self.product_bits
        return Precision(params=params, products=products, notes=self.precision_notes())

    def precision_notes(self) -> tuple[str, ...]:
        return ()


@contextmanager
def quiet_quantization():
    """torch.ao.quantization warns on every call that it is deprecated (the int8 kernels it
    runs are the ones benchmarked); silence that warning here only."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions.*")
        yield
