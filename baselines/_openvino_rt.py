"""OpenVINO runtime helpers of ``ov-fp32`` / ``ov-bf16`` / ``ov-int8`` (:mod:`baselines.openvino`).

The one ONNX graph of :mod:`baselines._onnx_graph` (the exit rule inside, ONNX ``If``) is read by
OpenVINO's ONNX frontend (it accepts the ``If`` nodes: one ``infer`` per batch) with ``delta`` made
a real input (an initializer with an input's name is folded into a constant by OpenVINO), and
compiled for the CPU with an inference-precision hint. int8 is NNCF post-training quantization
of each block's ONNX graph (``nncf.quantize``, ONNX backend, ``ModelType.TRANSFORMER``: QDQ nodes
OpenVINO runs as int8 kernels) before the blocks are stitched into one graph: NNCF's OpenVINO
backend fails on the stitched graph's nested ``If`` bodies, and this mirrors int8-ort-graph.
Nothing here imports openvino or nncf before it is needed; a missing one is a one-line BeexError.
"""
from __future__ import annotations

import contextlib
import io
import logging

import numpy as np

from beexbench.errors import BeexError

INSTALL = "pip install 'beexbench[openvino]'"
PRODUCT_OPS = ("FullyConnected", "MatMul", "Subgraph")  # runtime-model layer types that run the products


def require(module: str = "openvino"):
    """``module`` imported, or a one-line BeexError naming the extra that installs it."""
    try:
        if module == "nncf":
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                import nncf

            nncf.set_log_level(logging.ERROR)
            return nncf
        import openvino

        return openvino
    except ImportError as exc:
        raise BeexError(f"{module} is not installed ({exc.name or module}): {INSTALL}") from None


def missing() -> str | None:
    """Why the OpenVINO deployments cannot run here (None: they can)."""
    try:
        require("openvino")
    except BeexError as exc:
        return str(exc)
    return None


def delta_as_input(graph: bytes) -> bytes:
    """``graph`` with its ``delta`` initializer removed, so ``delta`` is an input OpenVINO keeps."""
    import onnx

    model = onnx.load_from_string(graph)
    keep = [i for i in model.graph.initializer if i.name != "delta"]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    return model.SerializeToString()


def settings(precision: str, threads: int) -> dict:
    return {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": int(threads),
            "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}


def compile_graph(graph: bytes, precision: str, threads: int):
    """The compiled OpenVINO model (CPU) of the ONNX ``graph`` (``delta`` an input)."""
    ov = require("openvino")
    core = ov.Core()
    model = core.read_model(delta_as_input(graph), b"")
    return core.compile_model(model, "CPU", settings(precision, threads))


def runtime_precisions(compiled) -> dict[str, int]:
    """Execution precision -> count of the runtime model's product layers (top level: the
    ``If`` bodies are one layer there; blocks before the first ``If`` run at top level)."""
    out: dict[str, int] = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) in PRODUCT_OPS:
            key = info["runtimePrecision"].astype(str)
            out[key] = out.get(key, 0) + 1
    return out


def ran_bf16(compiled) -> bool:
    """Whether the compiled model really runs bf16: the hint the plugin settled on is bf16
    (on a CPU without AVX512-BF16 or AMX it settles on f32) and a product layer runs bf16."""
    hint = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
    return "bf16" in hint.lower().replace("bfloat16", "bf16") and runtime_precisions(compiled).get("bf16", 0) > 0


def version() -> str:
    return require("openvino").__version__.split("-")[0]


# -- int8: NNCF post-training quantization of each block graph ------------------------------
def calibration_feeds(ids, mask, limit: int) -> list[dict]:
    """Batch-1 feeds of the first ``limit`` rows (each trimmed to its length)."""
    feeds = []
    for i in range(min(limit, ids.shape[0])):
        n = max(1, int(mask[i].sum()))
        feeds.append({"ids": ids[i:i + 1, :n].to(dtype=__import__("torch").int64).numpy(),
                      "mask": mask[i:i + 1, :n].bool().numpy()})
    return feeds


def quantize_blocks(blocks: list[bytes], feeds: list[dict]) -> list[bytes]:
    """Each block's ONNX graph quantized by NNCF on the inputs it sees (block 1: ``feeds``;
    block i: block i-1's hidden states on them, computed by the fp32 block graphs)."""
    import onnx
    import onnxruntime as ort

    nncf = require("nncf")
    out = []
    for i, graph in enumerate(blocks):
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            q = nncf.quantize(onnx.load_from_string(graph), nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER,
                              subset_size=len(feeds))
        out.append(q.SerializeToString())
        if i + 1 < len(blocks):
            so = ort.SessionOptions()
            so.intra_op_num_threads, so.log_severity_level = 1, 3
            session = ort.InferenceSession(graph, sess_options=so, providers=["CPUExecutionProvider"])
            feeds = [{"h_in": session.run(["h"], f)[0], "mask": f["mask"]} for f in feeds]
    return out


def int8_weights(graph: bytes) -> list[str]:
    """Module names whose Linear weight is stored int8 in the (QDQ) ``graph``: an 8-bit
    initializer dequantized into a MatMul/Gemm whose weight operand had that module's name."""
    import onnx

    found: set[str] = set()

    def walk(g) -> None:
        inits = {i.name: i for i in g.initializer}
        for node in g.node:
            if node.op_type == "DequantizeLinear" and node.input[0] in inits and inits[node.input[0]].data_type in (2, 3):
                name = node.input[0].split("/", 1)[-1].removeprefix("q_output_").removeprefix("encoder.")
                for suffix in (".weight_t", ".weight"):
                    if suffix in name:
                        found.add(name[: name.index(suffix)])
                        break
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)

    walk(onnx.load_from_string(graph).graph)
    return sorted(found)


def infer(request, feeds: dict, names: tuple[str, ...]) -> list[np.ndarray]:
    """One ``infer`` call; the named outputs copied out of the request's memory."""
    request.infer(feeds)
    return [np.array(request.get_tensor(n).data, copy=True) for n in names]
