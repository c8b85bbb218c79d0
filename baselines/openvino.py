"""``ov-fp32``, ``ov-bf16``, ``ov-int8``: the trained fp32 network deployed with OpenVINO (CPU).

The same one ONNX graph as fp32-ort-graph (:mod:`baselines.ort_graph`: every block, the exit rule
inside under ONNX ``If`` nodes), read by OpenVINO's ONNX frontend, which accepts the ``If`` nodes:
``predict`` is **one** ``infer`` call per batch, no Python between blocks. Compiled for the CPU with
``INFERENCE_PRECISION_HINT`` f32 / bf16, ``INFERENCE_NUM_THREADS`` = torch's thread count at the
first call, the latency hint and one stream (:mod:`baselines._openvino_rt`).

* ``ov-fp32``: f32; checked against torch like fp32-ort-graph (tolerance 1e-4).
* ``ov-bf16``: bf16 products where the CPU has them natively (AVX512-BF16 or AMX); elsewhere
  OpenVINO runs f32, which is detected from the compiled model (the precision it settled on and
  the runtime model's layer precisions) and is never silent: ``implementation()`` settles it as
  "bf16 unavailable on this CPU: ran f32" (the cell fails unless BEEXBENCH_ALLOW_FALLBACK=1, and
  is then labelled a fallback).
* ``ov-int8``: NNCF post-training quantization (static, calibrated) of each block's graph before
  stitching, then run by OpenVINO's int8 kernels. ``derive`` is given the validation split only,
  so a derived ov-int8 is calibrated on it, and says so; one trained directly (``fit``) is
  calibrated on its train split.

Low-precision ones are verified against torch with no tolerance (agreement recorded only).
Checkpoint: the ONNX graph (QDQ for int8) and its header, each with its sha256 (as fp32-ort-graph),
no pickle; OpenVINO compiles it at first use. openvino (and nncf for int8) are the optional extra
``beexbench[openvino]``: without them ``derive``/``predict`` fail with a one-line error naming it.
"""
from __future__ import annotations

import contextvars
import json
from importlib import metadata
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from beexbench.adapters.base import FitReport, Precision
from beexbench.adapters.encoder_adapter import module_precision
from beexbench.progress import NULL_PROGRESS, Progress
from beexbench.results.implementation import OPENVINO, Implementation, settle
from beexbench.training.batches import EncodedSplit
from beexbench.training.calibrate import CostFn

from . import _onnx_export as ox
from . import _onnx_graph as og
from . import _openvino_rt as rt
from .ort_graph import EXPORTED, HEADER, OrtGraphDeployment

_CALIBRATION: contextvars.ContextVar = contextvars.ContextVar("ov_calibration", default=None)
NO_SPLIT = "random token ids (no split was given: not a trained model's calibration)"


class OpenVINODeployment(OrtGraphDeployment):
    """Helper base (not registered): the one graph of fp32-ort-graph, run by OpenVINO."""

    precision_hint: ClassVar[str] = "f32"
    ov_quantized: ClassVar[bool] = False
    calibration_rows: ClassVar[int] = 300  # NNCF's default subset size

    def __init__(self, config, spec) -> None:
        super().__init__(config, spec)
        self.training_note = self.training_note.replace(EXPORTED, f"{EXPORTED}, run by OpenVINO")
        self._compiled = self._compiled_graph = self._request = self._compiled_threads = None
        self._inputs: set[str] = set()
        self._calibration: tuple[str, EncodedSplit] | None = _CALIBRATION.get()
        self._graph_calib = self._blocks_calib = None
        self._loaded_note: str | None = None

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this model cannot run here (its optional dependencies), or None."""
        reason = rt.missing()
        if reason is None and cls.ov_quantized:
            try:
                rt.require("nncf")
            except Exception as exc:  # BeexError: nncf missing
                return str(exc)
        return reason

    # -- calibration (int8) --------------------------------------------------------------------
    def _calib_key(self):
        return None if self._calibration is None else (self._calibration[0], id(self._calibration[1]))

    def _calibration_split(self) -> tuple[str, torch.Tensor, torch.Tensor]:
        if self._calibration is not None and len(self._calibration[1]) > 0:
            label, split = self._calibration
            return label, split.input_ids, split.attention_mask
        g = torch.Generator().manual_seed(0)
        n, length = 32, self.spec.max_len
        ids = torch.randint(1, self.spec.vocab_size, (n, length), generator=g)
        lengths = torch.randint(1, length + 1, (n,), generator=g)
        return NO_SPLIT, ids, torch.arange(length)[None, :] < lengths[:, None]

    def block_graphs(self) -> list[bytes]:
        if not self.ov_quantized:
            return super().block_graphs()
        key = (self._stamp(), self._calib_key())
        if self._blocks is None or (self._blocks_stamp, self._blocks_calib) != key:
            _, ids, mask = self._calibration_split()
            feeds = rt.calibration_feeds(ids, mask, self.calibration_rows)
            self._blocks = rt.quantize_blocks(ox.export_graphs(self.model, self.spec.max_len), feeds)
            self._blocks_stamp, self._blocks_calib, self._loaded_note = key[0], key[1], None
        return self._blocks

    def graph(self) -> bytes:
        if self.ov_quantized and self._graph is not None and self._graph_calib != self._calib_key():
            self._graph = None
        graph = super().graph()
        self._graph_calib = self._calib_key()
        return graph

    # -- the compiled model ---------------------------------------------------------------------
    def compiled(self):
        graph = self.graph()
        threads = torch.get_num_threads()
        if self._compiled is None or self._compiled_graph is not graph or self._compiled_threads != threads:
            self._compiled = rt.compile_graph(graph, self.precision_hint, threads)
            self._compiled_graph, self._compiled_threads = graph, threads
            self._request = self._compiled.create_infer_request()
            self._inputs = {i.get_any_name() for i in self._compiled.inputs}
        return self._compiled

    def request(self):
        self.compiled()
        return self._request

    def session(self):  # the ORT session of the base is not used here
        return self.compiled()

    def session_settings(self) -> dict:
        compiled = self.compiled()
        return {"runtime": f"openvino {rt.version()}", "provider": "CPU",
                **{k.lower(): v for k, v in rt.settings(self.precision_hint, self._compiled_threads).items()},
                "settled_precision": str(compiled.get_property("INFERENCE_PRECISION_HINT")),
                "runtime_product_precisions": rt.runtime_precisions(compiled)}

    def bf16_fallback(self) -> str | None:
        if self.precision_hint == "bf16" and not rt.ran_bf16(self.compiled()):
            return "bf16 unavailable on this CPU: ran f32"
        return None

    def implementation(self) -> Implementation:
        fast = (f"OpenVINO {rt.version()} (CPU, {self.precision_hint} inference precision), one graph, one infer call "
                "per batch (exit rule inside the graph: ONNX If)")
        return settle(self.name, fast_path=fast, engine=OPENVINO, isa=None, kernels=None, reason=self.bf16_fallback())

    # -- inference ------------------------------------------------------------------------------
    def _run(self, input_ids, attention_mask, delta: float, names: tuple[str, ...]) -> list[np.ndarray]:
        feeds = self._feeds(input_ids, attention_mask)
        request = self.request()
        if "delta" in self._inputs:
            feeds["delta"] = np.array(delta, dtype=np.float32)
        return rt.infer(request, feeds, names)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        """Every exit's logits (``delta = -inf``); a trace or autograd runs the torch network."""
        if torch.jit.is_tracing() or (torch.is_grad_enabled() and any(p.requires_grad for p in self._stamp_params())):
            return self.model(input_ids, attention_mask)
        (exits,) = self._run(input_ids, attention_mask, -np.inf, ("exits",))
        return [torch.from_numpy(np.ascontiguousarray(e)) for e in exits]

    def predict(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """One ``infer`` call: the answers and exit blocks of the graph's rule."""
        from beexbench.models.exits import ExitDecision

        logits, blocks = self._run(input_ids, attention_mask, og.GraphRule.of(self.rule).delta, ("logits", "exit_block"))
        return ExitDecision(torch.from_numpy(logits), torch.from_numpy(blocks))

    # -- derivation -------------------------------------------------------------------------------
    @classmethod
    def derive(cls, source, val: EncodedSplit | None, cost_fn: CostFn | None = None):
        """As fp32-ort-graph; ov-int8 is calibrated on ``val`` (the only split derive is given)."""
        reason = cls.unavailable()
        if reason:
            from beexbench.errors import BeexError

            raise BeexError(f"{cls.name}: {reason}")
        label = "the validation split (derive() is given no train split)"
        token = _CALIBRATION.set((label, val) if val is not None and len(val) else None)
        try:
            return super().derive(source, val, cost_fn)
        finally:
            _CALIBRATION.reset(token)

    def fit(self, train_split: EncodedSplit, val: EncodedSplit, progress: Progress = NULL_PROGRESS,
            cost_fn: CostFn | None = None) -> FitReport:
        self._calibration = ("the train split", train_split)
        return super().fit(train_split, val, progress=progress, cost_fn=cost_fn)

    @classmethod
    def load(cls, directory: Path):
        adapter = super().load(directory)  # graph.onnx and the header checked against their sha256
        header = json.loads((Path(directory) / HEADER).read_text(encoding="utf-8"))
        adapter._loaded_note = header.get("quantization") if isinstance(header.get("quantization"), str) else None
        adapter._graph_calib = adapter._calib_key()
        return adapter

    # -- precision ----------------------------------------------------------------------------------
    def quantization_note(self) -> str:
        return "none: fp32 graph, OpenVINO f32 inference precision"

    def precision_notes(self) -> tuple[str, ...]:
        s = self.session_settings()
        return (f"OpenVINO deployment ({s['runtime']}, CPU): the whole network in one graph (the ONNX graph of "
                "fp32-ort-graph), the exit rule inside it (ONNX If per block; at batch > 1 rows that are done stay in "
                "the batch, masked), one infer call per batch; INFERENCE_NUM_THREADS = torch's thread count at the "
                f"first call, PERFORMANCE_HINT LATENCY, 1 stream; precision hint {self.precision_hint}, settled on "
                f"{s['settled_precision']}, top-level product layers {s['runtime_product_precisions']}",
                f"quantization: {self.quantization_note()}", f"OpenVINO vs torch: {self.verification_note()}")


class OVFP32(OpenVINODeployment):
    """The trained fp32 model as one graph, run by OpenVINO in f32."""

    tolerance = 1e-4


class OVBF16(OpenVINODeployment):
    """The same graph compiled with ``INFERENCE_PRECISION_HINT`` bf16 (native bf16 only)."""

    precision_hint = "bf16"

    def quantization_note(self) -> str:
        ran = "bf16" if self.bf16_fallback() is None else "f32 (bf16 unavailable on this CPU)"
        return (f"none in the graph (fp32 weights stored); OpenVINO casts products to bf16 at compile time "
                f"(INFERENCE_PRECISION_HINT bf16, fp32 accumulation); ran {ran}")

    def precision(self) -> Precision:
        base = module_precision(self.model)
        products = dict(base.products)
        if self.bf16_fallback() is None:
            products = {m: (16, 16) if bits == (32, 32) else bits for m, bits in products.items()}
        return Precision(params=dict(base.params), products=products, notes=self.precision_notes())


class OVInt8(OpenVINODeployment):
    """The graph after NNCF post-training int8 quantization, run by OpenVINO."""

    ov_quantized = True

    def quantization_note(self) -> str:
        if self._loaded_note is not None:
            return self._loaded_note
        label, ids, _ = self._calibration_split()
        try:
            version = metadata.version("nncf")
        except metadata.PackageNotFoundError:
            version = "?"
        return (f"NNCF {version} post-training quantization (nncf.quantize, ONNX backend, ModelType.TRANSFORMER: "
                "SmoothQuant and fast bias correction; int8 weights, 8-bit activations with static scales) of each "
                f"block's graph before stitching; calibrated on {label} ({min(len(ids), self.calibration_rows)} rows, "
                "batch 1); OpenVINO runs the QDQ graph with int8 kernels; LayerNorms, softmax and the exit rule stay fp32")

    def precision(self) -> Precision:
        base = module_precision(self.model)
        params, products = dict(base.params), dict(base.products)
        quantized = [m for m in rt.int8_weights(self.graph()) if f"{m}.weight" in params]
        for m in quantized:
            params[f"{m}.weight"] = 8
            if isinstance(self.model.get_submodule(m), nn.Linear):
                products[m] = (8, 8)
        notes = (*self.precision_notes(), f"8-bit weights ({len(quantized)}): {', '.join(quantized)}")
        return Precision(params=params, products=products, notes=notes)
