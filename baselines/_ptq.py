"""Helper base for post-training quantized baselines: train the fp32 counterpart, convert
its Linear layers, calibrate the exit rule on the converted model.

A deployment of ``fp32`` (``derived_from``, :class:`~beexbench.adapters.protocols.Deployment`):
it holds the fp32 adapter it quantizes in ``source`` (None when loaded from its quantized files)
and is built with fp32's registered settings; it does not inherit from fp32.

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
from typing import ClassVar

from torch import nn

from beexbench.adapters.base import FitReport, Precision, TaskSpec
from beexbench.adapters.encoder_adapter import EncoderAdapter, module_precision
from beexbench.adapters.protocols import Deployment
from beexbench.adapters.roles import BASELINE
from beexbench.adapters.spec import ModelSpec
from beexbench.errors import BeexError
from beexbench.models.layers import QuantLinear
from beexbench.progress import NULL_PROGRESS, Progress
from beexbench.training.batches import EncodedSplit
from beexbench.training.calibrate import CostFn
from beexbench.training.loop import train


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


class PostTrainingQuantized(Deployment, EncoderAdapter):
    """Helper base (not registered): the fp32 counterpart, trained, then converted."""

    derived_from = "fp32"
    role = BASELINE  # a rival in its own right (not the fp32 reference it is made from)
    devices = ("cpu",)  # torch's quantized kernels run on the CPU only
    quantized_types: ClassVar[tuple[type, ...]] = ()  # the quantized modules convert() creates
    weight_bits: ClassVar[int] = 8  # storage bits of their weights
    product_bits: ClassVar[tuple[int, int]] = (8, 8)  # (input, weight) bits of their products

    def __init__(self, settings: ModelSpec, spec: TaskSpec, source: EncoderAdapter | None = None) -> None:
        """``source``: the trained fp32 adapter to quantize (its network converted, left as it is);
        None: a fresh model, an fp32 network as fp32 builds it, held as the ``source`` that ``fit`` trains."""
        super().__init__(settings, spec)  # an fp32 network as fp32 builds it (a backbone's weights loaded)
        if source is None:
            source = self.source_class().around(self.model, self.model_spec, spec, self.backbone)  # type: ignore[attr-defined]
        self.source = source
        self.model = self.convert(source.module())

    @property
    def float_model(self) -> nn.Module | None:
        """The fp32 network this quantizes (its source's), None when loaded from quantized files."""
        return None if self.source is None else self.source.module()

    @abstractmethod
    def convert(self, float_model: nn.Module) -> nn.Module:
        """The quantized copy of ``float_model`` (its fp32 network is left untouched)."""

    @classmethod
    def from_float(cls, adapter: EncoderAdapter) -> "PostTrainingQuantized":
        """Quantize an already trained fp32 adapter (same architecture) instead of training.
        Its exit rule is kept; call ``calibrate(val)`` to re-calibrate it on the quantized model."""
        if adapter.encoder_config.weight_bits != 32:
            raise BeexError(f"'{adapter.name}' is not a full-precision model: {cls.name} quantizes fp32 models only")
        out = cls(ModelSpec.from_dict(adapter.config), adapter.spec, source=adapter)
        out.fit_report = adapter.fit_report
        return out

    @classmethod
    def derive(cls, source: EncoderAdapter, val: EncodedSplit, cost_fn: CostFn | None = None) -> "PostTrainingQuantized":
        """Quantize the trained fp32 model and re-calibrate its exit rule on the quantized model."""
        out = cls.from_float(source)
        out._recalibrate(val, cost_fn)
        return out

    def _recalibrate(self, val: EncodedSplit, cost_fn: CostFn | None) -> None:
        """Calibrate the exit rule on the quantized model; the training record keeps its source's."""
        if self.model_spec.calibration.grid:
            calibration = self.calibrate(val, cost_fn)
            if self.fit_report is not None:
                self.fit_report = FitReport(**{**self.fit_report.to_dict(), "calibration": calibration})

    def fit(self, train_split: EncodedSplit, val: EncodedSplit, progress: Progress = NULL_PROGRESS,
            cost_fn: CostFn | None = None) -> FitReport:
        """Train the source's fp32 network (every epoch scored by its final exit), then quantize it
        and calibrate on the quantized model, as ``derive`` does from a trained fp32."""
        source = self.source
        if source is None:
            raise BeexError(f"this {self.name} model was loaded from a quantized checkpoint and has no fp32 weights to train: build a fresh one")
        log = train(source.module(), source.loss, train_split, val, source.train_config,  # type: ignore[attr-defined]
                    description=f"train {self.name} (fp32)", progress=progress)
        source.fit_report = FitReport(**log)
        self.model = self.convert(source.module())
        self.fit_report = source.fit_report
        self._recalibrate(val, cost_fn)
        return self.fit_report

    @classmethod
    def load(cls, directory: Path) -> "PostTrainingQuantized":
        adapter = super().load(directory)
        adapter.source = None  # only the quantized weights are stored
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
