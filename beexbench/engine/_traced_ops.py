"""The packed products as dispatcher ops, for the operation counter's trace.

The counter traces the model with ``torch.jit.trace``; a kernel called through these ops
is one node whatever backend runs (native or the PyTorch fallback), and
:data:`OP_HANDLES` count it like the float model's sign + matmul. ``PackedLinear`` and
``PackedQK`` contribute those handles to an analysis of a model that holds them
(their ``op_handles()``); nothing is added to a global table.

The ``beexbench_engine`` torch.library namespace is defined on first use
(:func:`traced_ops`, called only while tracing), not at import, and only once.
"""
from __future__ import annotations

import threading

import torch

from .. import kernels
from ..profilers._op_handles import Handle, numel, shape

NAMESPACE = "beexbench_engine"
_SCHEMAS = {
    "binary_linear": "binary_linear(Tensor x, Tensor w, Tensor alpha, Tensor? bias, int K) -> Tensor",
    "binary_qk": "binary_qk(Tensor q, Tensor k) -> Tensor",
}


class _State:
    lock = threading.Lock()
    library: torch.library.Library | None = None
    defined = False


def _binary_linear(x, w, alpha, bias, K):
    return kernels.binary_linear(x, w, alpha, bias, K)


def _binary_qk(q, k):
    return kernels.binary_qk_batched(q, k)


def _already_defined() -> bool:
    """The ops exist in this process (e.g. defined by a reloaded copy of this module)."""
    names = set(torch._C._dispatch_get_all_op_names())
    return all(f"{NAMESPACE}::{op}" in names for op in _SCHEMAS)


def traced_ops():
    """``torch.ops.beexbench_engine``, its ops defined on the first call (idempotent)."""
    if not _State.defined:
        with _State.lock:
            if not _State.defined:
                if not _already_defined():
                    lib = torch.library.Library(NAMESPACE, "DEF")
                    for schema in _SCHEMAS.values():
                        lib.define(schema)
                    lib.impl("binary_linear", _binary_linear, "CPU")
                    lib.impl("binary_qk", _binary_qk, "CPU")
                    _State.library = lib  # the definitions live as long as this object
                    _register_flop_formulas()
                _State.defined = True
    return getattr(torch.ops, NAMESPACE)


def defined() -> bool:
    """Whether this process has defined the ops (the first trace of a packed model)."""
    return _State.defined


def _register_flop_formulas() -> None:
    """torch.utils.flop_counter formulas (2 per MAC, as it counts mm) for the packed
    products, so torch's own counter sees them too."""
    try:
        from torch.utils.flop_counter import register_flop_formula
    except ImportError:  # pragma: no cover - older torch
        return

    def linear_flops(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
        m = 1
        for v in x_shape[:-1]:
            m *= v
        return 2 * m * w_shape[0] * x_shape[-1]

    def qk_flops(q_shape, k_shape, *args, out_shape=None, **kwargs) -> int:
        g, m, k = q_shape
        return 2 * g * m * k_shape[1] * k

    # (the native kernels are registered catch-all, which dispatch modes do not see: the
    # counter sees the module path only through these ops, i.e. while tracing)
    ops = getattr(torch.ops, NAMESPACE)
    for op, fn in ((ops.binary_linear, linear_flops), (ops.binary_qk, qk_flops)):
        try:
            register_flop_formula(op)(fn)
        except Exception:  # noqa: BLE001 - counting aid only; never break inference
            pass


# -- the operation counter's handles ------------------------------------------------------
def binary_linear_handle(inputs, outputs) -> dict[str, int]:
    """The float model: sign(x + s) (1 FLOP per input element: the comparison),
    sign(x) @ sign(W)^T (MACs at the declared (1, 1) precision), * alpha, + bias."""
    k = shape(inputs[0])[-1]
    out = numel(outputs[0])
    has_bias = inputs[3].type().kind() != "NoneType"
    return {"mac": out * k, "flop": numel(inputs[0]) + out * (2 if has_bias else 1)}


def binary_qk_handle(inputs, outputs) -> dict[str, int]:
    """sign(q), sign(k) (1 FLOP per element each) and the +-1 product."""
    return {"mac": numel(outputs[0]) * shape(inputs[0])[-1], "flop": numel(inputs[0]) + numel(inputs[1])}


OP_HANDLES: dict[str, Handle] = {
    f"{NAMESPACE}::binary_linear": binary_linear_handle,
    f"{NAMESPACE}::binary_qk": binary_qk_handle,
}
