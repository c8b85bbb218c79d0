"""Export the shared early-exit encoder to ONNX one block at a time, quantize the graphs with
ONNX Runtime's dynamic int8 quantization, and run them in ONNX Runtime sessions.

The graphs keep the early-exit structure of :func:`beexbench.models.encoder.early_exit_infer`:

* graph 1: ``ids [B, L] int64, mask [B, L] bool -> h [B, L, d], logits [B, C]`` (embeddings,
  block 1 and block 1's exit head);
* graph i (1 < i < n): ``h, mask -> h', logits`` (block i and its exit head);
* graph n: ``h, mask -> logits`` (the last block and its head).

A block with no exit head (``exit_heads = False``) has no ``logits`` output. Batch and sequence
axes are dynamic, so the exit rule can run in Python between session calls and drop the rows
that exit, as the torch loop does. The weight matrix of every Linear is renamed in the graph to
``<module>.weight_t`` (the exporter stores ``W^T`` under a generated name), so the quantized
graph says which Linear each int8 initializer belongs to.
"""
from __future__ import annotations

import io
import os
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

OPSET = 18
WEIGHT_SUFFIX = ".weight_t"  # the name a Linear's transposed weight gets in the graphs
QUANT_SUFFIX = "_quantized"  # what onnxruntime.quantization appends to a quantized initializer
# int8-ort quantizes with onnxruntime's defaults (op_types_to_quantize=None): for these graphs the
# MatMuls and the heads' Gemm (int8 weights, MatMulInteger) and the embedding Gathers (uint8 tables)


@contextmanager
def quiet_export():
    """The TorchScript exporter warns that it is deprecated, and traces the encoder's Python
    checks (max_len) as constants: both are expected here, silence them locally."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx.*")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield


class _Step(nn.Module):
    """Block ``index`` (1-based) of ``encoder`` with its exit head; block 1 includes the embeddings."""

    def __init__(self, encoder: nn.Module, index: int) -> None:
        super().__init__()
        self.encoder, self.index = encoder, index
        self.last = index == len(encoder.blocks)
        self.has_head = encoder.head_for(index) is not None

    def forward(self, x: torch.Tensor, mask: torch.Tensor):
        enc = self.encoder
        h = enc.embed(x) if self.index == 1 else x
        h = enc.blocks[self.index - 1](h, mask)
        head = enc.head_for(self.index)
        if self.last:
            return head(h, mask)
        if head is None:
            return h
        return h, head(h, mask)


@dataclass(frozen=True)
class GraphIO:
    """Input and output names of one exported graph."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    @property
    def output_list(self) -> list[str]:  # what InferenceSession.run takes
        return list(self.outputs)

    @property
    def has_logits(self) -> bool:
        return self.outputs[-1] == "logits"


def graph_io(encoder: nn.Module, index: int) -> GraphIO:
    last = index == len(encoder.blocks)
    has_head = encoder.head_for(index) is not None
    outputs = ("logits",) if last else (("h", "logits") if has_head else ("h",))
    return GraphIO(("ids" if index == 1 else "h_in", "mask"), outputs)


def _linear_weights(encoder: nn.Module) -> dict[bytes, str]:
    """``W^T`` bytes -> ``<module>.weight_t`` of every Linear (to name the exporter's constants)."""
    out: dict[bytes, str] = {}
    for name, mod in encoder.named_modules():
        if isinstance(mod, nn.Linear):
            key = mod.weight.detach().t().contiguous().numpy().tobytes()
            out.setdefault(key, name + WEIGHT_SUFFIX)
    return out


def _rename_linear_weights(model, weights: dict[bytes, str]) -> None:
    import onnx.numpy_helper as nh

    renames = {}
    for init in model.graph.initializer:
        if init.data_type != 1 or len(init.dims) != 2:
            continue
        name = weights.get(nh.to_array(init).astype("float32", copy=False).tobytes())
        if name and name != init.name:
            renames[init.name] = name
    for init in model.graph.initializer:
        if init.name in renames:
            init.name = renames[init.name]
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name in renames:
                node.input[i] = renames[name]


def export_graphs(encoder: nn.Module, max_len: int) -> list[bytes]:
    """The fp32 ONNX graphs (serialized ModelProto) of every block of ``encoder``, in order."""
    import onnx

    was_training = encoder.training
    encoder.eval()
    seq = max(2, min(max_len, 7))
    ids = torch.ones(2, seq, dtype=torch.long)
    mask = torch.ones(2, seq, dtype=torch.bool)
    mask[1, seq - 1] = False
    d = encoder.pos.embedding_dim
    weights = _linear_weights(encoder)
    graphs = []
    try:
        with torch.no_grad(), quiet_export():
            for index in range(1, len(encoder.blocks) + 1):
                names = graph_io(encoder, index)
                x = ids if index == 1 else torch.randn(2, seq, d)
                axes = {names.inputs[0]: {0: "batch", 1: "seq"}, "mask": {0: "batch", 1: "seq"}}
                for out in names.outputs:
                    axes[out] = {0: "batch", 1: "seq"} if out == "h" else {0: "batch"}
                buf = io.BytesIO()
                torch.onnx.export(_Step(encoder, index), (x, mask), buf, dynamo=False, opset_version=OPSET,
                                  input_names=list(names.inputs), output_names=list(names.outputs),
                                  dynamic_axes=axes, do_constant_folding=True)
                model = onnx.load_from_string(buf.getvalue())
                _rename_linear_weights(model, weights)
                model.producer_name = "beexbench"
                graphs.append(model.SerializeToString())
    finally:
        encoder.train(was_training)
    return graphs


def quantize_graph(graph: bytes, per_channel: bool = False) -> bytes:
    """ONNX Runtime dynamic int8 quantization of one fp32 graph with its default op types, as a
    practitioner gets it: every MatMul and Gemm with a weight operand becomes
    ``DynamicQuantizeLinear`` (uint8 activations, per batch) + ``MatMulInteger`` with int8
    weights (symmetric, one scale per tensor or per column); the embedding tables are stored
    uint8 (one scale and zero point per table) and dequantized after the lookup; the attention
    products, LayerNorms and softmax stay fp32."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="beexbench-ort-") as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(graph)
        logger = logging.getLogger()
        level = logger.level
        logger.setLevel(logging.ERROR)  # quantize_dynamic logs a pre-processing hint on every call
        try:
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=per_channel)
        finally:
            logger.setLevel(level)
        return dst.read_bytes()


@dataclass(frozen=True)
class QuantizedWeight:
    module: str  # the torch module (a Linear or an Embedding) whose weight the graph stores quantized
    groups: int  # scales: 1 per tensor, or one per output column
    dtype: str  # "int8" or "uint8"


# how the graphs name a module's weight: our Linears' ``<module>.weight_t``, the exporter's own
# ``encoder.<module>.weight`` (embeddings, the heads' Gemm), which ORT transposes for a Gemm
_WEIGHT_NAMES = (WEIGHT_SUFFIX, ".weight_Transposed", ".weight")


def quantized_weights(graph: bytes) -> list[QuantizedWeight]:
    """Every module whose weight is stored as 8-bit integers in ``graph``."""
    import onnx

    model = onnx.load_from_string(graph)
    inits = {i.name: i for i in model.graph.initializer}
    out = []
    for name, init in inits.items():
        if not name.endswith(QUANT_SUFFIX) or init.data_type not in (2, 3):  # uint8 / int8
            continue
        base = name[: -len(QUANT_SUFFIX)]
        module = base.removeprefix("encoder.")
        suffix = next((x for x in _WEIGHT_NAMES if module.endswith(x)), None)
        if suffix is None:
            continue
        scale = inits.get(base + "_scale")
        groups = 1 if scale is None else max(1, int(_numel(scale.dims)))
        out.append(QuantizedWeight(module[: -len(suffix)], groups, "uint8" if init.data_type == 2 else "int8"))
    return out


def _numel(dims) -> int:
    n = 1
    for d in dims:
        n *= int(d)
    return n


def op_types(graph: bytes) -> dict[str, int]:
    """Node count per op type of ``graph``."""
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load_from_string(graph).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


# -- sessions -------------------------------------------------------------------------------

def spinning_from_environment() -> bool:
    """Spin-wait intra-op threads exactly when OpenMP is told to (``OMP_WAIT_POLICY=ACTIVE``)."""
    return os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "ACTIVE"


def session_settings(threads: int, spinning: bool) -> dict:
    import onnxruntime as ort

    return {"runtime": f"onnxruntime {ort.__version__}", "provider": "CPUExecutionProvider",
            "intra_op_num_threads": int(threads), "inter_op_num_threads": 1, "allow_spinning": bool(spinning),
            "execution_mode": "sequential", "graph_optimization_level": "all"}


def make_session(graph: bytes, threads: int, spinning: bool):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    flag = "1" if spinning else "0"
    so.add_session_config_entry("session.intra_op.allow_spinning", flag)
    so.add_session_config_entry("session.inter_op.allow_spinning", flag)
    return ort.InferenceSession(graph, sess_options=so, providers=["CPUExecutionProvider"])


def int8_params_and_products(model: nn.Module, quantized: list) -> tuple[dict, dict]:
    """An int8 ONNX deployment's precision by the torch network's names: every module whose weight
    is 8-bit in the graph(s) at 8 bits, a Linear's product (8, 8), the rest as ``module_precision``."""
    from beexbench.adapters.encoder_adapter import module_precision

    base = module_precision(model)
    params, products = dict(base.params), dict(base.products)
    for w in quantized:
        params[f"{w.module}.weight"] = 8
        if isinstance(model.get_submodule(w.module), nn.Linear):
            products[w.module] = (8, 8)
    return params, products
