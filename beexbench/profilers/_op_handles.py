"""The base op handles: how the operation counter costs torch's own ops (fvcore style).

A handle is a small pure function ``(inputs, outputs) -> dict[category, int]`` over the
``torch._C.Value`` inputs and outputs of one traced node. Categories:

* ``"mac"``       multiply-accumulates of a product; its precision is the one the
                  enclosing module declares in ``adapter.precision().products``;
* ``"mac@<b>"``   multiply-accumulates whose precision is fixed by the op itself
                  (``"mac@int8"`` for ``quantized::linear_dynamic``);
* ``"flop"``      elementwise / reduction / normalisation FLOPs (cost per element below).

A handle returning ``{}`` costs nothing but the call is still recorded (embedding
lookups). A handle that cannot count a node raises :class:`Uncountable`; the node is then
reported in the record's ``uncounted``, never as a silent zero.

:data:`ATEN_HANDLES` is read-only: nothing adds to it. The handles of one analysis are
the base set (these, plus torch's quantized modules: :mod:`._op_handles_quantized`) and
what the model being counted contributes (its modules' and its adapter's ``op_handles()``),
assembled per analysis by :mod:`beexbench.profilers._op_handle_sets`.
"""
from __future__ import annotations

import math
import re
from math import prod
from types import MappingProxyType
from typing import Any, Callable, Mapping

Handle = Callable[[list, list], Mapping[str, int]]

CONVENTION = (
    "MACs: one multiply-accumulate of a matrix product (Linear, matmul/bmm/mm/addmm, einsum, "
    "attention QK^T and A.V) = 1 MAC; FLOPs = 2 x MACs for every non-binary product (fp32, w1a32, int8, ...). "
    "Binary MACs (both operands 1-bit) are BOPs, counted apart and not in FLOPs; "
    "OPs = FLOPs + BOPs/64 is a literature convention (Rastegari et al. / Liu et al., Bi-Real Net), not a measurement. "
    "Elementwise FLOPs per element of the output: add, sub, mul, div, neg, abs, sign (incl. the custom "
    "sign autograd Functions), comparisons, clamp, masked_fill, where (0 between two scalars: where(x >= 0, 1, -1) is a sign, 1 FLOP with its comparison), sigmoid, tanh, gelu, relu, exp, log, "
    "sqrt: 1; searchsorted (a table lookup by binary search): ceil(log2(n + 1)) comparisons per value in a table of n; reductions (sum, mean, max): 1 per input element; softmax: 5 per element (max, subtract, exp, "
    "sum, divide); layer_norm: 5 per element with affine, 4 without (fvcore's estimate); a Linear/addmm "
    "bias: 1 per output element. Embedding lookups and shape/copy ops: 0 (lookups are recorded in op_calls). "
    "int8 dynamic Linear: the product is int8 x int8 MACs, plus 2 FLOPs per input element (range, "
    "quantize) and 2 per output element (rescale, bias). Ops whose inputs are all parameters or constants "
    "(weight sign, alpha = mean|W|) are folded into the deployed weights and reported in folded_flops, not "
    "in flops. The trace is taken in eval mode under no_grad after one warm-up call (the steady inference "
    "path, with caches a deployed model stores in place). Cost is for one sample of seq_len real tokens (no padding), eval mode (dropout is identity)."
)


class Uncountable(Exception):
    """Raised by a handle that cannot count the node it was given."""


# Pure shape / copy / allocation ops: free, not recorded. (fvcore's own default ignore
# list also silently drops arithmetic such as clamp, max, masked_fill and relu; ours
# does not - those have handles below.)
SHAPE_OPS = frozenset(
    f"aten::{n}"
    for n in (
        "size", "view", "reshape", "transpose", "permute", "contiguous", "unsqueeze", "squeeze",
        "expand", "expand_as", "select", "slice", "narrow", "to", "type_as", "detach", "flatten",
        "unflatten", "t", "Int", "Float", "ScalarImplicit", "alias", "clone", "copy_", "lift_fresh",
        "dropout", "feature_dropout", "alpha_dropout",  # identity in eval mode
        "arange", "zeros", "ones", "empty", "full", "zeros_like", "ones_like", "empty_like",
        "full_like", "new_zeros", "new_ones", "new_empty", "new_full",
        "cat", "stack", "split", "split_with_sizes", "chunk", "unbind", "index_select", "gather",
    )
)


def shape(value: Any) -> list[int]:
    """The complete shape of a traced tensor value (raises Uncountable otherwise)."""
    if not value.isCompleteTensor():
        raise Uncountable(f"no complete tensor shape for {value.debugName()}")
    return list(value.type().sizes())


def numel(value: Any) -> int:
    return prod(shape(value))


def _is_none(value: Any) -> bool:
    return value.type().kind() == "NoneType"


# -- products -------------------------------------------------------------------------
def linear(inputs: list, outputs: list) -> dict[str, int]:
    """aten::linear(x [.., k], W [n, k], b?) -> [.., n]: numel(out) * k MACs, bias 1/out."""
    k = shape(inputs[0])[-1]
    out = numel(outputs[0])
    cost = {"mac": out * k}
    if len(inputs) > 2 and not _is_none(inputs[2]):
        cost["flop"] = out
    return cost


def matmul(inputs: list, outputs: list) -> dict[str, int]:
    """aten::matmul / mm / bmm: numel(out) * k MACs, k the contracted dimension."""
    a = shape(inputs[0])
    return {"mac": max(numel(outputs[0]), 1) * a[-1]}


def addmm(inputs: list, outputs: list) -> dict[str, int]:
    """aten::addmm(c, a [n, k], b [k, m]) and baddbmm: product MACs + 1 FLOP/out for the add."""
    k = shape(inputs[1])[-1]
    out = numel(outputs[0])
    return {"mac": out * k, "flop": out}


def einsum(inputs: list, outputs: list) -> dict[str, int]:
    """aten::einsum(equation, [operands]): two operands -> product of every index size
    (MACs); one operand -> a reduction/permutation (1 FLOP per input element)."""
    equation = inputs[0].toIValue().replace(" ", "")
    operands = list(inputs[1].node().inputs())
    lhs = equation.split("->")[0].split(",")
    if len(operands) == 1:
        return {"flop": numel(operands[0])}
    if len(operands) != 2 or "." in equation:
        raise Uncountable(f"einsum '{equation}' with {len(operands)} operands")
    sizes: dict[str, int] = {}
    for letters, op in zip(lhs, operands):
        for letter, size in zip(letters, shape(op)):
            sizes[letter] = max(sizes.get(letter, 1), size)
    return {"mac": prod(sizes.values())}


def sdpa(inputs: list, outputs: list) -> dict[str, int]:
    """aten::scaled_dot_product_attention(q [.., L, E], k [.., S, E], v [.., S, Ev]):
    QK^T and A.V MACs plus softmax (5/elt) and scaling (1/elt) of the [.., L, S] scores."""
    q, k, v = shape(inputs[0]), shape(inputs[1]), shape(inputs[2])
    batch = prod(q[:-2])
    scores = batch * q[-2] * k[-2]
    return {"mac": scores * q[-1] + scores * v[-1], "flop": 6 * scores}


# -- elementwise ----------------------------------------------------------------------
def per_output(cost: int = 1) -> Handle:
    def handle(inputs: list, outputs: list) -> dict[str, int]:
        return {"flop": cost * numel(outputs[0])}

    return handle


def per_input(cost: int = 1) -> Handle:
    def handle(inputs: list, outputs: list) -> dict[str, int]:
        return {"flop": cost * numel(inputs[0])}

    return handle


def layer_norm(inputs: list, outputs: list) -> dict[str, int]:
    affine = len(inputs) > 2 and not _is_none(inputs[2])
    return {"flop": (5 if affine else 4) * numel(inputs[0])}


def where(inputs: list, outputs: list) -> dict[str, int]:
    """aten::where(cond, a, b): a select, 1 FLOP per element - except between two scalars
    (``where(x >= 0, 1., -1.)`` is sign: the comparison's mask relabelled, 0 more)."""
    if len(inputs) == 3 and all(v.type().kind() != "TensorType" for v in inputs[1:]):
        return {}
    return {"flop": numel(outputs[0])}


def searchsorted(inputs: list, outputs: list) -> dict[str, int]:
    """aten::searchsorted(sorted [n], values): a binary search, ceil(log2(n + 1)) comparisons
    per value (1 FLOP each, like any comparison)."""
    n = shape(inputs[0])[-1]
    return {"flop": numel(outputs[0]) * max(1, math.ceil(math.log2(n + 1)))}


def free(inputs: list, outputs: list) -> dict[str, int]:
    """Costs nothing (table lookups); the call is still recorded."""
    return {}


_ELEMENTWISE_1 = (
    "add", "add_", "sub", "sub_", "rsub", "mul", "mul_", "div", "div_", "neg", "abs", "sign", "sgn",
    "reciprocal", "pow", "sqrt", "rsqrt", "exp", "log", "sigmoid", "tanh", "gelu", "relu", "relu_",
    "silu", "hardtanh", "clamp", "clamp_", "clamp_min", "clamp_max", "masked_fill", "masked_fill_",
    "gt", "ge", "lt", "le", "eq", "ne", "logical_not", "bitwise_not", "__and__", "__or__",
    "logical_and", "logical_or", "floor", "round", "square",
)
_REDUCTIONS = ("sum", "mean", "max", "min", "amax", "amin", "argmax", "norm", "var", "std", "cumsum")

# The custom sign / step autograd Functions of beexbench's models (elementwise).
PYTHON_OPS_ELEMENTWISE = ("_SignG", "_SignSTE", "_StepSTE", "_ThresholdSTE")

# torch's ops and beexbench's sign Functions (torch's quantized modules: _op_handles_quantized)
_ATEN: dict[str, Handle] = {
    "aten::linear": linear,
    "aten::matmul": matmul,
    "aten::mm": matmul,
    "aten::bmm": matmul,
    "aten::addmm": addmm,
    "aten::baddbmm": addmm,
    "aten::einsum": einsum,
    "aten::scaled_dot_product_attention": sdpa,
    "aten::softmax": per_output(5),
    "aten::log_softmax": per_output(5),
    "aten::layer_norm": layer_norm,
    "aten::embedding": free,
    "aten::searchsorted": searchsorted,
    "aten::where": where,
    **{f"aten::{name}": per_output(1) for name in _ELEMENTWISE_1},
    **{f"aten::{name}": per_input(1) for name in _REDUCTIONS},
    **{f"prim::PythonOp.{name}": per_output(1) for name in PYTHON_OPS_ELEMENTWISE},
}

ATEN_HANDLES: Mapping[str, Handle] = MappingProxyType(_ATEN)

_CATEGORY = re.compile(r"^(mac(@[a-z0-9]+)?|flop)$")


def check_cost(name: str, cost: Mapping[str, int]) -> dict[str, int]:
    out = {}
    for key, value in cost.items():
        if not _CATEGORY.match(key):
            raise ValueError(f"op handle for {name} returned unknown category '{key}' (use mac, mac@<bucket>, flop)")
        if int(value) != value or value < 0:
            raise ValueError(f"op handle for {name} returned a non-integer or negative count {value!r}")
        out[key] = int(value)
    return out
