"""``fp32-ort`` and ``int8-ort``: the trained fp32 model deployed with ONNX Runtime.

Derived deployments of ``fp32`` (no retraining; :class:`~beexbench.adapters.protocols.Deployment`:
fp32's registered settings, the trained fp32 adapter kept as ``source``, no inheritance from fp32):
the runner trains (or reuses) the fp32
checkpoint and calls :meth:`OrtDeployment.derive`, which exports that network to ONNX one block
at a time (:mod:`baselines._onnx_export`: graph 1 embeds and runs block 1 and its exit head,
graph i runs block i and its head; batch and sequence axes dynamic) and, for ``int8-ort``,
quantizes every graph with ONNX Runtime's dynamic int8 quantization. ``predict`` runs the
graphs in ONNX Runtime sessions and the fp32 model's calibrated exit rule in Python between
them, dropping the rows that exit: the loop torch's inference runs too
(:func:`beexbench.models.early_exit.run_early_exit`). ``derive`` checks the deployment against
the torch model on the validation split and records what it found (``verification``, also in ``precision().notes``); fp32-ort
must give the same predictions and exit blocks with logits within :attr:`FP32Ort.tolerance`.

The operation counter and the profilers trace ``module()``, the torch fp32 network the graphs
were exported from (kept beside them in the checkpoint folder); if its weights change (training
``module()``, loading a state dict), the graphs are exported again before the next call, so the
ONNX graphs are always that network. ``deployable_files`` are the ``.onnx`` graphs and a small
JSON header (exit rule, graph inputs and outputs): what a deployment ships. The checkpoint's
files and their checksums are :mod:`baselines._ort_files`; the check against torch is
:mod:`baselines._ort_verify`.
"""
from __future__ import annotations

import operator
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from beexbench.adapters.base import FitReport, ModelAdapter, Precision, TaskSpec
from beexbench.adapters.checkpoint import META
from beexbench.adapters.encoder_adapter import EncoderAdapter, how_trained, module_precision
from beexbench.adapters.protocols import Deployment
from beexbench.adapters.roles import deployment_of
from beexbench.adapters.spec import ModelSpec
from beexbench.models.early_exit import run_early_exit
from beexbench.models.exits import ExitDecision
from beexbench.progress import NULL_PROGRESS, Progress
from beexbench.results.implementation import ONNXRUNTIME, Implementation
from beexbench.training.batches import EncodedSplit
from beexbench.training.calibrate import CostFn

from . import _onnx_export as ox
from ._fp32_copy import copy_of_fp32, fit_source
from . import _ort_verify
from ._ort_files import HEADER, graph_file, load_checkpoint, read_graphs, save_checkpoint, write_files

_VERSION = operator.attrgetter("_version")

EXPORTED = "the trained fp32 network exported to ONNX (no retraining)"


class OrtDeployment(Deployment, EncoderAdapter):
    """Helper base (not registered): the trained fp32 network run by ONNX Runtime, block by
    block, with fp32's calibrated exit rule. CPU only."""

    derived_from = "fp32"
    role = deployment_of("fp32")
    devices = ("cpu",)
    training_note = f"{EXPORTED}; trained from scratch as fp32"
    quantized: ClassVar[bool] = False  # int8: ONNX Runtime dynamic quantization of every graph
    per_channel: ClassVar[bool] = False  # int8 weight scales per output column instead of per tensor
    tolerance: ClassVar[float | None] = None  # max |logit - torch logit| derive accepts (None: recorded only)
    verify_batch_size: ClassVar[int] = 64

    def __init__(self, settings: ModelSpec, spec: TaskSpec) -> None:
        super().__init__(settings, spec)  # the torch network the graphs are exported from, as fp32 builds it
        how = how_trained(self.model_spec)
        if how:  # fp32 fine-tuned from a backbone (or distilled): say so after what this deployment is
            self.training_note = f"{EXPORTED}; fp32 {how}"
        self._graphs: list[bytes] | None = None  # serialized ONNX models, one per block
        self._stamp: tuple | None = None  # the torch weights the graphs were made from
        self._params: tuple[int, list[torch.Tensor]] | None = None
        self._sessions: list | None = None
        self._session_key: tuple[int, bool] | None = None
        self._ios: list[ox.GraphIO] = [ox.graph_io(self.model, i) for i in range(1, len(self.model.blocks) + 1)]
        self.verification: dict | None = None

    # -- the graphs and their sessions ------------------------------------------------------
    def _module_stamp(self) -> tuple:
        """Changes whenever a weight of module() is changed in place (every in-place op bumps a
        tensor's version) or the module is replaced: a few microseconds per call."""
        if self._params is None or self._params[0] != id(self.model):
            self._params = (id(self.model), [*self.model.parameters(), *self.model.buffers()])
        return id(self.model), sum(map(_VERSION, self._params[1]))

    def _trainable(self) -> bool:
        self._module_stamp()
        return any(p.requires_grad for p in self._params[1])

    def graphs(self) -> list[bytes]:
        """The ONNX graphs (serialized), exported (and quantized) again if module()'s weights changed."""
        if self._graphs is None or self._stamp != self._module_stamp():
            graphs = ox.export_graphs(self.model, self.spec.max_len)
            if self.quantized:
                graphs = [ox.quantize_graph(g, per_channel=self.per_channel) for g in graphs]
            self._graphs, self._stamp, self._sessions = graphs, self._module_stamp(), None
            self._ios = [ox.graph_io(self.model, i) for i in range(1, len(self.model.blocks) + 1)]
        return self._graphs

    def session_settings(self) -> dict:
        """The settings the sessions run with (or will, at the next call): intra-op threads from
        ``torch.get_num_threads()``, spinning when ``OMP_WAIT_POLICY=ACTIVE``."""
        threads, spinning = self._session_key or (torch.get_num_threads(), ox.spinning_from_environment())
        return ox.session_settings(threads, spinning)

    def sessions(self) -> list:
        graphs = self.graphs()
        key = (torch.get_num_threads(), ox.spinning_from_environment())
        if self._sessions is None or key != self._session_key:
            self._sessions = [ox.make_session(g, *key) for g in graphs]
            self._session_key = key
        return self._sessions

    def implementation(self) -> Implementation:
        """ONNX Runtime sessions, one per block with the exit rule in Python between them, on the
        execution provider the sessions report (the CPU provider is the only one asked for)."""
        import onnxruntime as ort

        providers = ", ".join(self.sessions()[0].get_providers())
        return Implementation(engine=ONNXRUNTIME, isa=None, kernels=None, fallback=False, allowed_by=None, reason=None,
                              fast_path=f"onnxruntime {ort.__version__} ({providers}), one session per block")

    # -- inference ------------------------------------------------------------------------
    def _inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        if input_ids.shape[0] == 0:
            raise ValueError("empty batch")
        if input_ids.shape[1] > self.spec.max_len:
            raise ValueError(f"sequence length {input_ids.shape[1]} exceeds the model's max_len {self.spec.max_len}")
        ids = input_ids.detach().to("cpu", torch.int64).contiguous().numpy()
        mask = attention_mask.detach().to("cpu", torch.bool).contiguous().numpy()
        return ids, mask

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        """Every exit's logits, every block run: the ORT graphs. Two cases run the torch network
        the graphs are exported from instead: a torch trace (the operation counter's: ORT's kernels
        are invisible to torch's tracer, and the graphs compute the same operations), and autograd
        recording with trainable weights (training ``module()``: ORT has no gradients; the graphs
        are exported again from the new weights at the next call without autograd). Every
        measurement (accuracy, exits, latency) runs without autograd, so it runs the graphs."""
        if torch.jit.is_tracing() or (torch.is_grad_enabled() and self._trainable()):
            return self.model(input_ids, attention_mask)
        sessions = self.sessions()
        h, mask = self._inputs(input_ids, attention_mask)
        out = []
        for session, io in zip(sessions, self._ios):
            res = dict(zip(io.outputs, session.run(io.output_list, {io.inputs[0]: h, "mask": mask})))
            h = res.get("h")
            if "logits" in res:
                out.append(torch.from_numpy(res["logits"]))
        return out

    def predict(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> ExitDecision:
        """Early-exit inference in ONNX Runtime: the exit rule runs between the block graphs and
        the rows that exit leave the batch (``run_early_exit``, as for torch). The sessions
        own the thread budget: torch's few ops on the logits run on one thread meanwhile (with
        spinning OpenMP waits, a second torch pool beside ORT's made batch 8 at 2 threads 2-5x
        slower: docs/BENCHMARKS.md)."""
        sessions = self.sessions()
        threads = torch.get_num_threads()
        if threads == 1:
            return self._predict(sessions, input_ids, attention_mask)
        torch.set_num_threads(1)
        try:
            return self._predict(sessions, input_ids, attention_mask)
        finally:
            torch.set_num_threads(threads)

    def _predict(self, sessions, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> ExitDecision:
        ios = self._ios

        def step(h: np.ndarray, mask: np.ndarray, i: int):
            io = ios[i - 1]
            res = sessions[i - 1].run(io.output_list, {io.inputs[0]: h, "mask": mask})
            if not io.has_logits:  # a block without an exit head
                return res[0], None
            return res[0] if len(res) == 2 else None, torch.from_numpy(res[-1])

        return run_early_exit(*self._inputs(input_ids, attention_mask), len(sessions), step, self.rule)

    # -- derivation and verification --------------------------------------------------------
    @classmethod
    def derive(cls, source: ModelAdapter, val: EncodedSplit | None, cost_fn: CostFn | None = None) -> "OrtDeployment":
        """Export the trained fp32 network (its calibrated exit rule kept, nothing re-calibrated)
        and check the deployment against it on ``val``."""
        out = copy_of_fp32(cls, source)
        out.verification = out.verify(source.predict, source.forward, val, reference=f"torch {source.name} (eager)")
        return out

    def fit(self, train_split: EncodedSplit, val: EncodedSplit, progress: Progress = NULL_PROGRESS,
            cost_fn: CostFn | None = None) -> FitReport:
        """Train an fp32 adapter on this network (``source``: as ``fp32`` trains, exit rule calibrated
        on val), deploy its calibrated rule, export and verify against it."""
        report = fit_source(self, train_split, val, progress, cost_fn)
        self.verification = self.verify(self.source.predict, self.source.forward, val, reference=f"torch {self.source.name} (eager)")
        return report

    def verify(self, torch_predict, torch_forward, val: EncodedSplit | None, reference: str = "torch fp32") -> dict:
        """Compare the deployment with the torch model on ``val`` (batches of ``verify_batch_size``,
        rows removed as they exit): agreement of predictions and exit blocks, max |logit
        difference| of the answers (rows that exit at the same block) and of every exit. With a
        ``tolerance``, any disagreement or a larger difference is a BeexError (``_ort_verify``)."""
        return _ort_verify.verify(self, torch_predict, torch_forward, val, reference)

    def verification_note(self) -> str:
        return _ort_verify.verification_note(self.verification)

    # -- checkpoint -----------------------------------------------------------------------
    def save(self, directory: Path) -> Path:
        """The ONNX graphs and the header (atomically, each with its sha256 in the metadata), then
        the torch fp32 weights and the metadata (written last, as every checkpoint)."""
        directory = Path(directory)
        graphs = self.graphs()
        directory.mkdir(parents=True, exist_ok=True)
        (directory / META).unlink(missing_ok=True)  # a half-written folder has no metadata
        header = {"adapter": self.name,
                  "graphs": [{"file": graph_file(i), "inputs": list(io.inputs), "outputs": list(io.outputs)}
                             for i, io in enumerate(self._ios, start=1)],
                  "exit_blocks": list(self.model.exit_blocks), "exit_rule": self.rule.to_dict(),
                  "num_labels": self.spec.num_labels, "max_len": self.spec.max_len,
                  "quantization": self.quantization_note()}
        files = write_files(directory, graphs, header)
        return save_checkpoint(self, directory, "ort", files)

    @classmethod
    def load(cls, directory: Path) -> "OrtDeployment":
        directory = Path(directory)
        adapter, _, files, redo = load_checkpoint(cls, directory, "ort")
        adapter._graphs = read_graphs(directory, files, len(adapter.model.blocks), cls.name, redo)
        adapter._stamp = adapter._module_stamp()
        return adapter

    def deployable_files(self, directory: Path) -> list[Path]:
        """What a deployment ships: the ONNX graphs and the header (not the torch weights)."""
        directory = Path(directory)
        return [directory / graph_file(i) for i in range(1, len(self.model.blocks) + 1)] + [directory / HEADER]

    # -- precision ------------------------------------------------------------------------
    def quantization_note(self) -> str:
        return "none: fp32 graphs"

    def precision(self) -> Precision:
        """fp32 everywhere (the torch network's parameters, by their names); see Int8Ort."""
        base = module_precision(self.model)
        return Precision(params=dict(base.params), products=dict(base.products), notes=self.precision_notes())

    def precision_notes(self) -> tuple[str, ...]:
        s = self.session_settings()
        return (f"ONNX Runtime deployment ({s['runtime']}, {s['provider']}): one graph per block, exit rule between "
                "session calls; sessions made at the first call of each setting: intra-op threads = torch's thread "
                "count then (the target's setting), 1 inter-op thread, spinning only under OMP_WAIT_POLICY=ACTIVE, "
                "sequential, graph optimizations all",
                f"quantization: {self.quantization_note()}",
                f"ORT vs torch: {self.verification_note()}")


class FP32Ort(OrtDeployment):
    """The trained fp32 model run by ONNX Runtime (fp32 graphs, one per block), its calibrated exit rule."""

    tolerance = 1e-4


class Int8Ort(OrtDeployment):
    """The trained fp32 model run by ONNX Runtime after dynamic int8 quantization (``quantize_dynamic``,
    QInt8 weights per tensor, uint8 activations quantized per batch at run time); fp32's exit rule."""

    quantized = True

    def quantized_weights(self) -> list[ox.QuantizedWeight]:
        return [w for g in self.graphs() for w in ox.quantized_weights(g)]

    def quantization_note(self) -> str:
        return ("onnxruntime.quantization.quantize_dynamic with its default op types (QInt8 weights, symmetric, "
                f"{'per output column' if self.per_channel else 'per tensor'}; activations uint8 per batch at run time): "
                "every MatMul and Gemm with a weight operand -> MatMulInteger (attention q/k/v/o, FFN Linears, exit "
                "heads), embedding tables uint8 per table (dequantized after the lookup); attention products Q.K^T "
                "and A.V, LayerNorms and softmax stay fp32")

    def precision(self) -> Precision:
        """The torch network's parameters by name, at what the graphs store: every module whose
        weight is 8-bit in the graphs at 8 bits, a Linear's product (8, 8), an embedding table
        looked up (no product); the rest 32. A quantized weight has one fp32 scale and one 8-bit
        zero point per group in the graph; the size profiler counts 32 bits for that zero point."""
        quantized = self.quantized_weights()
        params, products = ox.int8_params_and_products(self.model, quantized)
        fp32 = sorted(n for n, b in products.items() if b == (32, 32))
        notes = (*self.precision_notes(),
                 f"8-bit weights ({len(quantized)}): {', '.join(sorted(f'{w.module} ({w.dtype})' for w in quantized))}; "
                 f"fp32 products: {', '.join(fp32) or 'none'}",
                 "size: each 8-bit weight has one fp32 scale and one 8-bit zero point in the graph; the size profiler "
                 "counts 32 bits for that zero point (3 bytes per weight more than the file holds)")
        return Precision(params=params, products=products, notes=notes)
