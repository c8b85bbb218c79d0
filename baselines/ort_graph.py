"""``fp32-ort-graph`` and ``int8-ort-graph``: the trained fp32 network deployed as **one** ONNX graph.

What a practitioner ships: the whole early-exit network, exit rule included, exported as one ONNX
model (:mod:`baselines._onnx_graph`: the per-block graphs of :mod:`baselines._onnx_export` stitched
under ONNX ``If`` nodes, the fractional-entropy rule computed in the graph), so ``predict`` is one
``session.run`` per batch and no Python runs between blocks (``fp32-ort`` runs one session per
block with the rule in Python: the difference is its glue). At batch 1 the graph exits early
exactly; at batch > 1 the rows that are done stay in the batch, masked, until every row is done.

Derived from ``fp32`` (no retraining): ``derive`` takes the trained source (kept as ``source``),
its calibrated rule (delta, min_exit) and network, builds the graph and checks it against the
torch model on the validation split (``verification``: prediction and exit-block agreement, max
|logit diff|); fp32-ort-graph must agree exactly within :attr:`FP32OrtGraph.tolerance`.
``int8-ort-graph`` quantizes the same graph with ONNX Runtime's dynamic int8 quantization
(``quantize_dynamic`` defaults, as int8-ort): block by block before stitching, since
``quantize_dynamic`` leaves the MatMuls inside ``If`` branches in fp32; the ops are the same.

The checkpoint holds ``graph.onnx`` and a JSON header (each with its sha256 in the metadata), and
the torch fp32 weights the operation counter traces (``module()``); if those weights change, the
graph is built again before the next call. A new exit rule (``set_rule``) rebuilds the graph too.
"""
from __future__ import annotations

import hashlib
import operator
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from beexbench._io import atomic_write_bytes, atomic_write_text, dumps_strict
from beexbench.adapters.base import FitReport, ModelAdapter, Precision, TaskSpec
from beexbench.adapters.checkpoint import META
from beexbench.adapters.encoder_adapter import EncoderAdapter, how_trained, module_precision
from beexbench.adapters.protocols import Deployment
from beexbench.adapters.roles import deployment_of
from beexbench.adapters.spec import ModelSpec
from beexbench.errors import BeexError
from beexbench.models.exits import ExitDecision, ExitRule
from beexbench.progress import NULL_PROGRESS, Progress
from beexbench.results.implementation import ONNXRUNTIME, Implementation
from beexbench.training.batches import EncodedSplit
from beexbench.training.calibrate import CostFn

from . import _onnx_export as ox
from ._fp32_copy import agreement, copy_of_fp32, fit_source
from . import _onnx_graph as og
from ._ort_files import load_checkpoint, save_checkpoint

GRAPH, HEADER = "graph.onnx", "ort_graph.json"
EXPORTED = "the trained fp32 network exported to one ONNX graph, exit rule inside (no retraining)"
_VERSION = operator.attrgetter("_version")


class OrtGraphDeployment(Deployment, EncoderAdapter):
    """Helper base (not registered): the trained fp32 network and its exit rule in one ONNX graph. CPU only."""

    derived_from = "fp32"
    role = deployment_of("fp32")
    devices = ("cpu",)
    training_note = f"{EXPORTED}; trained from scratch as fp32"
    quantized: ClassVar[bool] = False
    tolerance: ClassVar[float | None] = None  # max |logit - torch logit| derive accepts (None: recorded only)
    verify_batch_size: ClassVar[int] = 64

    def __init__(self, config: ModelSpec, spec: TaskSpec) -> None:
        super().__init__(config, spec)
        how = how_trained(self.model_spec)
        if how:
            self.training_note = f"{EXPORTED}; fp32 {how}"
        self.source: ModelAdapter | None = None  # the trained fp32 adapter it was derived from (None: fit or load)
        self._blocks: list[bytes] | None = None  # per-block graphs (quantized for int8) of the stamped weights
        self._blocks_stamp: tuple | None = None
        self._graph: bytes | None = None
        self._key: tuple | None = None  # (weights stamp, GraphRule) the graph was built for
        self._params: tuple[int, list[torch.Tensor]] | None = None
        self._session = self._session_key = None
        self.verification: dict | None = None

    # -- the graph and its session -----------------------------------------------------------
    def _stamp(self) -> tuple:
        """Changes when a weight of module() changes in place or the module is replaced."""
        if self._params is None or self._params[0] != id(self.model):
            self._params = (id(self.model), [*self.model.parameters(), *self.model.buffers()])
        return id(self.model), sum(map(_VERSION, self._params[1]))

    def block_graphs(self) -> list[bytes]:
        stamp = self._stamp()
        if self._blocks is None or self._blocks_stamp != stamp:
            blocks = ox.export_graphs(self.model, self.spec.max_len)
            self._blocks = [ox.quantize_graph(g) for g in blocks] if self.quantized else blocks
            self._blocks_stamp = stamp
        return self._blocks

    def graph(self) -> bytes:
        """The one ONNX graph (serialized), built again if module()'s weights or the rule changed."""
        key = (self._stamp(), og.GraphRule.of(self.rule))
        if self._graph is None or self._key != key:
            self._graph = og.stitch(self.block_graphs(), self.model.exit_blocks, key[1])
            self._key, self._session = key, None
        return self._graph

    def set_rule(self, rule: ExitRule) -> None:
        og.GraphRule.of(rule)  # a rule the graph cannot hold is refused here
        self.rule = rule

    def session_settings(self) -> dict:
        threads, spinning = self._session_key or (torch.get_num_threads(), ox.spinning_from_environment())
        return ox.session_settings(threads, spinning)

    def session(self):
        graph = self.graph()
        key = (torch.get_num_threads(), ox.spinning_from_environment())
        if self._session is None or key != self._session_key:
            self._session, self._session_key = ox.make_session(graph, *key), key
        return self._session

    def implementation(self) -> Implementation:
        import onnxruntime as ort

        providers = ", ".join(self.session().get_providers())
        return Implementation(engine=ONNXRUNTIME, isa=None, kernels=None, fallback=False, allowed_by=None, reason=None,
                              fast_path=f"onnxruntime {ort.__version__} ({providers}), one graph, one session call "
                                        "per batch (exit rule inside the graph: ONNX If)")

    # -- inference ------------------------------------------------------------------------
    def _feeds(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict:
        if input_ids.shape[0] == 0:
            raise ValueError("empty batch")
        if input_ids.shape[1] > self.spec.max_len:
            raise ValueError(f"sequence length {input_ids.shape[1]} exceeds the model's max_len {self.spec.max_len}")
        return {"ids": input_ids.detach().to("cpu", torch.int64).contiguous().numpy(),
                "mask": attention_mask.detach().to("cpu", torch.bool).contiguous().numpy()}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        """Every exit's logits: the graph with ``delta = -inf`` (no row exits before the last
        block). A torch trace (the operation counter) or autograd with trainable weights runs
        the torch network the graph is built from (ORT has neither)."""
        if torch.jit.is_tracing() or (torch.is_grad_enabled() and any(p.requires_grad for p in self._stamp_params())):
            return self.model(input_ids, attention_mask)
        feeds = {**self._feeds(input_ids, attention_mask), "delta": np.array(-np.inf, dtype=np.float32)}
        (exits,) = self.session().run(["exits"], feeds)
        return [torch.from_numpy(np.ascontiguousarray(e)) for e in exits]

    def _stamp_params(self) -> list[torch.Tensor]:
        self._stamp()
        return self._params[1]

    def predict(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> ExitDecision:
        """One ``session.run``: the answers and exit blocks the graph's rule gives (torch runs
        nothing here; the session owns the thread budget)."""
        logits, blocks = self.session().run(["logits", "exit_block"], self._feeds(input_ids, attention_mask))
        return ExitDecision(torch.from_numpy(logits), torch.from_numpy(blocks))

    # -- derivation and verification --------------------------------------------------------
    @classmethod
    def derive(cls, source: ModelAdapter, val: EncodedSplit | None, cost_fn: CostFn | None = None) -> "OrtGraphDeployment":
        """The trained fp32 network and its calibrated rule in one graph, checked against torch on ``val``."""
        out = copy_of_fp32(cls, source)
        out.verification = out.verify(source.predict, val, reference=f"torch {source.name} (eager)")
        return out

    def fit(self, train_split: EncodedSplit, val: EncodedSplit, progress: Progress = NULL_PROGRESS,
            cost_fn: CostFn | None = None) -> FitReport:
        """Train the fp32 network (as ``fp32`` does, rule calibrated on val), build the graph and verify."""
        report = fit_source(self, train_split, val, progress, cost_fn)
        with torch.no_grad():
            self.verification = self.verify(self.source.predict, val, f"torch {self.source.name} (eager)")
        return report

    def verify(self, torch_predict, val: EncodedSplit | None, reference: str) -> dict:
        """Predictions and exit blocks of the graph vs torch on ``val`` (batches of
        ``verify_batch_size``), max |logit diff| of the answers at equal exits; with a
        ``tolerance``, a disagreement or a larger difference is a BeexError."""
        if val is None or len(val) == 0:
            return {"split": None, "note": "not verified: no validation split was given"}
        self.model.eval()
        n, same_pred, same_block, diff = agreement(torch_predict, self.predict, val, self.verify_batch_size)
        record = {"split": "val", "samples": n, "batch_size": self.verify_batch_size, "reference": reference,
                  "rule": self.rule.to_dict(), "prediction_agreement": same_pred / n, "exit_block_agreement": same_block / n,
                  "max_abs_logit_diff": diff, "tolerance": self.tolerance, "session": self.session_settings()}
        if self.tolerance is not None and (same_pred != n or same_block != n or not diff <= self.tolerance):
            raise BeexError(f"{self.name} disagrees with {reference} on the validation split (predictions {same_pred}/{n}, "
                            f"exit blocks {same_block}/{n}, max |logit diff| {diff:.2e}, tolerance {self.tolerance:g}): "
                            "the ONNX graph is not the same model; re-derive it, or report it with your torch and "
                            "onnxruntime versions")
        return record

    def verification_note(self) -> str:
        v = self.verification
        if not v or v.get("split") is None:
            return "not verified against the torch model (loaded without a record, or derived without a validation split)"
        return (f"verified on {v['split']} ({v['samples']} samples, batches of {v['batch_size']}) against "
                f"{v['reference']}: predictions agree {v['prediction_agreement']:.2%}, exit blocks "
                f"{v['exit_block_agreement']:.2%}, max |logit diff| {v['max_abs_logit_diff']:.2e}"
                + (f", tolerance {v['tolerance']:g}" if v.get("tolerance") is not None else ", no tolerance (recorded only)"))

    # -- checkpoint -----------------------------------------------------------------------
    def save(self, directory: Path) -> Path:
        """graph.onnx and the header (atomically, each sha256 in the metadata), then the torch weights
        and the metadata (written last)."""
        directory = Path(directory)
        graph = self.graph()
        directory.mkdir(parents=True, exist_ok=True)
        (directory / META).unlink(missing_ok=True)
        header = dumps_strict({"format": "beexbench-ort-graph", "format_version": 1, "adapter": self.name,
                               "inputs": list(og.INPUTS), "outputs": list(og.OUTPUTS), "exit_rule": self.rule.to_dict(),
                               "exit_blocks": list(self.model.exit_blocks), "num_labels": self.spec.num_labels,
                               "max_len": self.spec.max_len, "quantization": self.quantization_note()}, sort_keys=True)
        atomic_write_bytes(directory / GRAPH, graph)
        atomic_write_text(directory / HEADER, header)
        files = {GRAPH: hashlib.sha256(graph).hexdigest(), HEADER: hashlib.sha256(header.encode("utf-8")).hexdigest()}
        return save_checkpoint(self, directory, "ort_graph", files)

    @classmethod
    def load(cls, directory: Path) -> "OrtGraphDeployment":
        directory = Path(directory)
        adapter, _, files, redo = load_checkpoint(cls, directory, "ort_graph")
        blobs = {}
        for name in (GRAPH, HEADER):
            path = directory / name
            blob = path.read_bytes() if path.is_file() else b""
            if name not in files or hashlib.sha256(blob).hexdigest() != files[name]:
                raise BeexError(f"checkpoint {directory}: {name} is missing, tampered or foreign (checksum mismatch): {redo}")
            blobs[name] = blob
        try:
            import onnx

            onnx.load_from_string(blobs[GRAPH])
        except Exception as exc:  # protobuf's DecodeError: not an ONNX model
            raise BeexError(f"checkpoint {directory}: {GRAPH} is not a readable ONNX model ({type(exc).__name__}): {redo}") from None
        adapter._graph, adapter._key = blobs[GRAPH], (adapter._stamp(), og.GraphRule.of(adapter.rule))
        return adapter

    def deployable_files(self, directory: Path) -> list[Path]:
        """What a deployment ships: the one graph and its header (not the torch weights)."""
        return [Path(directory) / GRAPH, Path(directory) / HEADER]

    # -- precision ------------------------------------------------------------------------
    def quantization_note(self) -> str:
        return "none: fp32 graph"

    def precision_notes(self) -> tuple[str, ...]:
        s = self.session_settings()
        return (f"ONNX Runtime deployment ({s['runtime']}, {s['provider']}): the whole network in one graph, the exit "
                "rule inside it (ONNX If per block; at batch > 1 rows that are done stay in the batch, masked), one "
                "session.run per batch; intra-op threads = torch's thread count at the first call, 1 inter-op thread, "
                "spinning only under OMP_WAIT_POLICY=ACTIVE, sequential, graph optimizations all",
                f"quantization: {self.quantization_note()}", f"ORT vs torch: {self.verification_note()}")

    def precision(self) -> Precision:
        base = module_precision(self.model)
        return Precision(params=dict(base.params), products=dict(base.products), notes=self.precision_notes())


class FP32OrtGraph(OrtGraphDeployment):
    """The trained fp32 model as one ONNX graph with its calibrated exit rule inside."""

    tolerance = 1e-4


class Int8OrtGraph(OrtGraphDeployment):
    """The same one graph after ONNX Runtime dynamic int8 quantization (QInt8 weights per tensor,
    uint8 activations per batch at run time); fp32's exit rule."""

    quantized = True

    def quantized_weights(self) -> list[ox.QuantizedWeight]:
        return [w for g in self.block_graphs() for w in ox.quantized_weights(g)]

    def quantization_note(self) -> str:
        return ("onnxruntime.quantization.quantize_dynamic with its default op types (QInt8 weights, symmetric, per "
                "tensor; activations uint8 per batch at run time), applied to each block's graph before they are "
                "stitched into one (quantize_dynamic leaves MatMuls inside If branches fp32): every MatMul and Gemm "
                "with a weight operand -> MatMulInteger, embedding tables uint8; attention products, LayerNorms, "
                "softmax and the exit rule stay fp32")

    def precision(self) -> Precision:
        """As Int8Ort: every module whose weight is 8-bit in the graph at 8 bits, a Linear's product (8, 8)."""
        quantized = self.quantized_weights()
        params, products = ox.int8_params_and_products(self.model, quantized)
        notes = (*self.precision_notes(),
                 f"8-bit weights ({len(quantized)}): {', '.join(sorted(f'{w.module} ({w.dtype})' for w in quantized))}",
                 "size: each 8-bit weight has one fp32 scale and one 8-bit zero point in the graph; the size profiler "
                 "counts 32 bits for that zero point")
        return Precision(params=params, products=products, notes=notes)
