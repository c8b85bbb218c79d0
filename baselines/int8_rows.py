"""fp32 with int8 token rows: the trained fp32 network whose token embedding is stored as the packed
BEExformer artifact stores it (int8 rows, an fp16 scale per row), everything else fp32, run in torch.

It is the size ladder's middle step (issue 28): between fp32 and the packed 1-bit deployment, it
separates what embedding compression saves from what binarizing the encoder saves. The rows are
quantized with the packed engine's own format and code (:mod:`beexbench.engine.embedding`:
``encode_rows`` through :class:`~beexbench.engine.embedding.PackedEmbedding`), and a lookup
dequantizes the rows it gathers (``code * scale``). The checkpoint is safetensors (``tok.codes`` int8
[V, d], ``tok.scale`` fp16 [V]), so its size on disk is the deployment's. Its accuracy is measured
like every model's: the rounding of the table is a measured cost, not an assumed one.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from beexbench.adapters.base import FitReport, ModelAdapter, Precision, TaskSpec
from beexbench.adapters.checkpoint import read_checkpoint, write_checkpoint
from beexbench.adapters.encoder_adapter import EncoderAdapter, module_precision
from beexbench.adapters.protocols import Deployment
from beexbench.adapters.roles import deployment_of
from beexbench.adapters.spec import ModelSpec
from beexbench.engine.embedding import EMBEDDING_NAMES, PackedEmbedding
from beexbench.errors import BeexError
from beexbench.progress import NULL_PROGRESS, Progress
from beexbench.training.batches import EncodedSplit
from beexbench.training.calibrate import CostFn

ROW_BITS = 8


class FP32Int8Rows(Deployment, EncoderAdapter):
    """fp32 network with its token embedding stored as int8 rows (fp16 scale per row), dequantized on lookup."""

    name = "fp32-int8-rows"
    role = deployment_of("fp32")
    derived_from = "fp32"
    training_note = "the trained fp32 network (no training of its own); token rows quantized to int8 after training"

    def __init__(self, settings: ModelSpec, spec: TaskSpec) -> None:
        super().__init__(settings, spec)
        enc = self.encoder_config
        if enc.binary_embedding or enc.weight_bits != 32 or enc.act_bits != 32:
            raise BeexError(f"{self.name} stores an fp32 network's token rows as int8: its encoder must be fp32 "
                            "(weight_bits = act_bits = 32, binary_embedding = false)")
        self.model.tok = PackedEmbedding.from_table(self.model.tok.weight, ROW_BITS)
        self.source: ModelAdapter | None = None  # the trained fp32 model it was derived from (None: loaded)

    # -- derived from a trained fp32 model ------------------------------------------------
    def _take_float(self, state: dict[str, torch.Tensor]) -> None:
        """Take a float network's weights: the token table quantized to int8 rows, the rest as is."""
        state = dict(state)
        table = state.pop("tok.weight", None)
        if table is None:
            raise BeexError(f"{self.name}: the source network has no float token table (tok.weight) to quantize")
        self.model.load_state_dict(state, strict=True)
        self.model.tok = PackedEmbedding.from_table(table, ROW_BITS).to(table.device)
        self.model.eval()

    def float_state(self) -> dict[str, torch.Tensor]:
        """The fp32 network these weights stand for (the token table decoded from its rows)."""
        return {**self.model.state_dict(), "tok.weight": self.model.tok.table()}

    @classmethod
    def derive(cls, source: ModelAdapter, val: EncodedSplit, cost_fn: CostFn | None = None) -> "FP32Int8Rows":
        """The trained fp32 ``source`` with int8 token rows; its exit rule re-calibrated on ``val``
        with the rows as deployed (as every derived deployment of fp32 does)."""
        if not isinstance(source, EncoderAdapter):
            raise BeexError(f"{cls.name} is derived from a model on the shared encoder, not '{source.name}'")
        out = cls(ModelSpec.from_dict(source.config), source.spec)  # the source's settings, as it records them
        out._take_float(source.module().state_dict())
        out.backbone = getattr(source, "backbone", None)
        out.source = source
        out.fit_report = source.fit_report
        out._recalibrate(val, cost_fn)
        return out

    def _recalibrate(self, val: EncodedSplit, cost_fn: CostFn | None) -> None:
        if not self.model_spec.calibration.grid:
            return
        calibration = self.calibrate(val, cost_fn)
        if self.fit_report is not None:
            self.fit_report = FitReport(**{**self.fit_report.to_dict(), "calibration": calibration})

    def fit(self, train_split: EncodedSplit, val: EncodedSplit, progress: Progress = NULL_PROGRESS,
            cost_fn: CostFn | None = None) -> FitReport:
        """Train the fp32 network it stands for (as ``fp32`` does), then quantize its token rows."""
        from beexbench.adapters.registry import get_adapter_class

        source = get_adapter_class(self.derived_from)(self.model_spec, self.spec)
        source.model.load_state_dict(self.float_state())
        source.fit(train_split, val, progress=progress, cost_fn=cost_fn)
        self._take_float(source.module().state_dict())
        self.source, self.fit_report = source, source.fit_report
        self._recalibrate(val, cost_fn)
        assert self.fit_report is not None
        return self.fit_report

    # -- files: safetensors, the rows as int8 ----------------------------------------------
    def save(self, directory: Path) -> Path:
        tensors = {**self.model.state_dict(), **{f"tok.{k}": v for k, v in self.model.tok.stored().items()}}
        meta = {"config": self.config, "task": self.spec.to_dict(),
                "fit": self.fit_report.to_dict() if self.fit_report else None}
        if getattr(self, "backbone", None):
            meta["backbone"] = self.backbone
        return write_checkpoint(Path(directory), self.name, tensors, json.loads(json.dumps(meta)))

    @classmethod
    def load(cls, directory: Path) -> "FP32Int8Rows":
        tensors, doc = read_checkpoint(Path(directory), cls.name)
        codes, scale = tensors.pop("tok.codes", None), tensors.pop("tok.scale", None)
        try:
            adapter = cls(ModelSpec.from_dict(doc["config"]), TaskSpec(**doc["task"]))
            if codes is None or scale is None:
                raise KeyError("tok.codes / tok.scale")
            adapter.model.load_state_dict(tensors, strict=True)
            adapter.model.tok.load(codes, scale)
        except (KeyError, TypeError, RuntimeError, BeexError) as exc:
            raise BeexError(f"checkpoint {directory} does not match model '{cls.name}' "
                            f"({str(exc).splitlines()[0]}): re-derive it") from None
        adapter.fit_report = FitReport.from_dict(doc.get("fit"))
        adapter.backbone = doc.get("backbone")
        adapter.model.eval()
        return adapter

    def precision(self) -> Precision:
        """fp32 everywhere except the token table: [vocab, d] at 8 bits with its fp16 per-row scale."""
        base = module_precision(self.model)
        params = {**base.params, "tok.weight": ROW_BITS, "tok.scale": 16}
        return Precision(params=params, products=dict(base.products), notes=(
            f"token embedding: {EMBEDDING_NAMES[ROW_BITS]} (the packed artifact's format), dequantized on lookup; "
            "every other weight and every product fp32 (torch)",))
