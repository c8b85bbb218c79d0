"""Tracing for the operation counter: fvcore's jit-trace analysis of ``adapter.forward``
on one example sample, run with the handles of this analysis
(:func:`beexbench.profilers._op_handle_sets.handles_for`)."""
from __future__ import annotations

import warnings
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Mapping

import torch
from fvcore.nn.jit_analysis import JitModelAnalysis
from torch import nn

from beexbench.errors import BeexError
from beexbench.profilers._op_handle_sets import stand_in_for
from beexbench.profilers._op_handles import SHAPE_OPS, Handle, Uncountable, check_cost


class Forward(nn.Module):
    """Runs ``adapter.forward`` so the trace sees exactly what the adapter runs."""

    def __init__(self, adapter) -> None:
        super().__init__()
        self.model = adapter.module()
        self._adapter = adapter

    def forward(self, ids: torch.Tensor, mask: torch.Tensor):
        return tuple(self._adapter.forward(ids, mask))

    def state_dict(self, *args, **kwargs):
        # The tracer turns the state dict into graph inputs and accepts only plain
        # tensors; quantized modules also store dtypes, scales and packed-parameter
        # objects there. Those stay constants of the graph (so their ops fold).
        # (The tracer calls this on us as a child, with a shared ``destination``: edit in place.)
        sd = super().state_dict(*args, **kwargs)
        for key in [k for k, v in sd.items() if not isinstance(v, torch.Tensor) or v.is_quantized]:
            del sd[key]
        return sd


@contextmanager
def traceable(module: nn.Module) -> Iterator[None]:
    """Temporarily replace the modules the tracer cannot capture by their stand-ins (same
    names, same shapes; :func:`stand_in_for`); restored on exit."""
    swapped = []
    for name, mod in list(module.named_modules()):
        replacement = stand_in_for(mod) if name else None
        if replacement is not None:
            parent_name, _, attr = name.rpartition(".")
            parent = module.get_submodule(parent_name) if parent_name else module
            swapped.append((parent, attr, mod))
            setattr(parent, attr, replacement)
    try:
        yield
    finally:
        for parent, attr, mod in swapped:
            setattr(parent, attr, mod)


class Analysis(JitModelAnalysis):
    """fvcore's analysis with the given handles. Each handle's cost is tagged
    ``<category>:<op>``; work on parameters/constants only is tagged ``folded:<op>``."""

    def __init__(self, model: nn.Module, inputs: tuple[torch.Tensor, ...], handles: Mapping[str, Handle]) -> None:
        super().__init__(model, inputs)
        # fvcore's default ignore list drops arithmetic (clamp, max, masked_fill, relu...)
        # silently; ours only skips pure shape/copy ops.
        self._ignored_ops = set(SHAPE_OPS)
        self._n_data = len(inputs)
        self._data_values: set[int] | None = None
        self.why: dict[str, str] = {}
        self.set_op_handle(**{name: self._wrap(name, fn) for name, fn in handles.items()})
        self.unsupported_ops_warnings(False)
        self.uncalled_modules_warnings(False)
        self.tracer_warnings("none")

    def _depends_on_data(self, value) -> bool:
        if self._data_values is None:  # one pass over the (flat, inlined) traced graph
            graph = value.node().owningBlock()  # the traced graph's (only) block
            data = {v.unique() for v in list(graph.inputs())[: self._n_data]}
            for node in graph.nodes():
                if any(v.unique() in data for v in node.inputs()):
                    data.update(v.unique() for v in node.outputs())
            self._data_values = data
        return value.unique() in self._data_values

    def _wrap(self, name: str, fn):
        simple = name.split("::", 1)[-1]

        def handle(inputs, outputs) -> Counter:
            try:
                cost = check_cost(name, fn(inputs, outputs))
            except Uncountable as exc:
                self.why[name] = str(exc)
                return Counter({f"uncounted:{name}": 1})
            out = Counter({f"call:{simple}": 1})
            folded = not any(self._depends_on_data(v) for v in inputs)
            for category, n in cost.items():
                out[f"folded:{simple}" if folded else f"{category}:{simple}"] += n
            return out

        return handle


@dataclass
class Trace:
    """What one analysis saw: counters per module name and what it could not count."""

    wrapper: Forward
    per_module: dict[str, Counter]
    unsupported: Counter
    uncalled: set[str]
    why: dict[str, str]


def module_of(adapter) -> nn.Module:
    try:
        return adapter.module()
    except NotImplementedError as exc:
        raise BeexError(f"cannot count operations of '{getattr(adapter, 'name', adapter)}': {exc}") from None


def example(adapter, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    spec = getattr(adapter, "spec", None)
    max_len = getattr(spec, "max_len", None)
    if seq_len < 1 or (max_len is not None and seq_len > max_len):
        raise BeexError(f"seq_len {seq_len} is outside 1..{max_len} for this model")
    vocab = max(int(getattr(spec, "vocab_size", 2)), 2)
    try:
        device = next(adapter.module().parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    ids = (torch.arange(seq_len, device=device) % (vocab - 1) + 1).unsqueeze(0)
    return ids, torch.ones(1, seq_len, dtype=torch.bool, device=device)


def trace(adapter, seq_len: int, handles: Mapping[str, Handle]) -> Trace:
    """Trace ``adapter.forward`` on one sample of ``seq_len`` tokens, eval mode, no grad,
    after one warm-up call; the module's train/eval modes and torch's threads are restored."""
    module = module_of(adapter)
    wrapper = Forward(adapter)
    modes = {m: m.training for m in module.modules()}
    threads = torch.get_num_threads()
    module.eval()
    torch.set_num_threads(1)  # the trace runs tiny kernels: threads only add contention
    try:
        with warnings.catch_warnings(), torch.no_grad(), traceable(module):
            warnings.simplefilter("ignore")
            inputs = example(adapter, seq_len)
            # one warm-up call first: the trace then sees the steady inference path, with
            # whatever a deployed model stores (e.g. cached sign(W) and alpha) in place
            wrapper(*inputs)
            analysis = Analysis(wrapper, inputs, handles)
            per_module = analysis.by_module_and_operator()
            unsupported = Counter(dict(analysis.unsupported_ops()))
            uncalled = set(analysis.uncalled_modules())
    finally:
        torch.set_num_threads(threads)
        for m, training in modes.items():
            m.train(training)
    return Trace(wrapper, per_module, unsupported, uncalled, analysis.why)
