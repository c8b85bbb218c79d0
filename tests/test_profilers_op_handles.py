"""Op handles are passed per analysis (fvcore style): a base set plus what the counted
model's module classes and adapter declare (``op_handles()``) plus ``handles=``. Importing
the engine, the profilers or the baselines defines no torch.library op and changes no
table, and a model's counts do not depend on what was imported before (subprocesses)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
from torch import nn

from beexbench.adapters.base import ExitLayout, TaskSpec
from beexbench.adapters.encoder_adapter import module_precision
from beexbench.profilers.ops import count_ops, handles_for, registered_op_handles

SPEC = TaskSpec("t", 3, 100, 16)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _Cube(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * x * x


def _cube_handle(inputs, outputs):
    return {"flop": 2 * int(torch.tensor(outputs[0].type().sizes()).prod())}


class _CubeToy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(100, 4)
        self.out = nn.Linear(4, 3)

    def forward(self, ids, mask):
        return [self.out(_Cube.apply(self.emb(ids)).mean(1))]


class _CubeToyDeclared(_CubeToy):
    @staticmethod
    def op_handles():
        return {"prim::PythonOp._Cube": _cube_handle}


class _Adapter:
    name = "toy"

    def __init__(self, module: nn.Module) -> None:
        self.model, self.spec = module, SPEC

    def module(self):
        return self.model

    def forward(self, ids, mask):
        return self.model(ids, mask)

    def precision(self):
        return module_precision(self.model)

    def exit_layout(self):  # ModelAdapter's defaults: one block, one exit, no op handles
        return ExitLayout()

    def op_handles(self):
        return {}


class _DeclaringAdapter(_Adapter):
    def op_handles(self):
        return {"prim::PythonOp._Cube": _cube_handle}


def test_handles_come_from_the_analysis_not_a_global_table():
    L = 5
    before = registered_op_handles()
    assert count_ops(_Adapter(_CubeToy()), L).uncounted == {"prim::PythonOp._Cube": 1}
    by_arg = count_ops(_Adapter(_CubeToy()), L, handles={"prim::PythonOp._Cube": _cube_handle})
    by_module = count_ops(_Adapter(_CubeToyDeclared()), L)
    by_adapter = count_ops(_DeclaringAdapter(_CubeToy()), L)
    for rec in (by_arg, by_module, by_adapter):
        assert rec.uncounted == {} and rec.op_calls["PythonOp._Cube"] == 1
        assert rec.elementwise_flops == by_arg.elementwise_flops
    assert by_arg.elementwise_flops == count_ops(_Adapter(_CubeToy()), L).elementwise_flops + 2 * L * 4
    # nothing stays behind: the next analysis of the plain toy sees the op as uncounted again
    assert count_ops(_Adapter(_CubeToy()), L).uncounted == {"prim::PythonOp._Cube": 1}
    assert registered_op_handles() == before
    assert "prim::PythonOp._Cube" not in handles_for()


def test_a_module_declares_handles_for_the_analysis_only():
    toy = _CubeToyDeclared()
    assert "prim::PythonOp._Cube" in handles_for(module=toy)
    assert "prim::PythonOp._Cube" not in handles_for(module=_CubeToy())


IMPORTS = ["beexbench.engine", "beexbench.engine.adapter", "beexbench.profilers.ops", "beexbench.kernels",
           "baselines.weight_only", "baselines.int8_dynamic", "baselines.binarized", "baselines.floors"]

NO_SIDE_EFFECTS = r"""
import importlib, json, sys
import torch
from torch.utils.flop_counter import flop_registry
ops0, flops0 = set(torch._C._dispatch_get_all_op_names()), set(flop_registry)
from beexbench.profilers import _op_handle_sets as hs
base0 = hs.handles_for()
for name in {imports!r}:
    importlib.import_module(name)
from beexbench.adapters.registry import get_adapter_class, list_models
for name in list_models():
    get_adapter_class(name)
from beexbench.engine import _traced_ops
print(json.dumps({{
    "new_ops": sorted(set(torch._C._dispatch_get_all_op_names()) - ops0),
    "new_flop_formulas": sorted(str(k) for k in set(flop_registry) - flops0),
    "registered": sorted(hs.registered_op_handles()),
    "base_changed": hs.handles_for() != base0,
    "engine_ops_defined": _traced_ops.defined(),
}}))
"""


def _run(script: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


def test_importing_engine_profilers_and_baselines_registers_nothing():
    got = json.loads(_run(NO_SIDE_EFFECTS.format(imports=IMPORTS)))
    assert got == {"new_ops": [], "new_flop_formulas": [], "registered": [], "base_changed": False,
                   "engine_ops_defined": False}


COUNTS = r"""
import importlib, json, sys, warnings
import torch
from torch import nn
PRIMED = {primed!r}
if PRIMED:
    for name in {imports!r}:
        importlib.import_module(name)
from beexbench.adapters.base import ExitLayout, TaskSpec
from beexbench.adapters.encoder_adapter import module_precision
from beexbench.profilers.ops import count_ops
from beexbench.adapters.beexformer import BEExformer
from baselines.fp32 import FP32

SPEC = TaskSpec("t", 3, 100, 16)
SMALL = {{"encoder": {{"n_blocks": 2, "d_model": 16, "n_heads": 2, "d_ff": 24, "dropout": 0.0}}}}

class Toy:
    name = "toy"
    def __init__(self, module): self.model, self.spec = module, SPEC
    def module(self): return self.model
    def forward(self, ids, mask): return self.model(ids, mask)
    def precision(self): return module_precision(self.model)
    def exit_layout(self): return ExitLayout()
    def op_handles(self): return {{}}

class Int8PackDirect(nn.Module):
    # calls the weight-only kernel itself: no module declares its handle
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 32)
        self.register_buffer("w", torch.ones(16, 32, dtype=torch.int8))
        self.register_buffer("s", torch.ones(16))
    def forward(self, ids, mask):
        h = self.emb(ids).reshape(-1, 32)
        return [torch.ops.aten._weight_int8pack_mm(h, self.w, self.s).mean(0, keepdim=True)]

class Int8Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 4)
        self.out = nn.Linear(4, 3)
    def forward(self, ids, mask):
        return [self.out(torch.relu(self.emb(ids)).mean(1))]

def counts(adapter):
    torch.manual_seed(0)
    return count_ops(adapter, 8).to_dict()

out = {{}}
if not PRIMED:
    loaded = [m for m in ("beexbench.engine", "beexbench.engine.adapter", "baselines.weight_only") if m in sys.modules]
    assert not loaded, loaded
torch.manual_seed(0)
out["fp32"] = counts(FP32.build(FP32.resolve_spec(SMALL), SPEC))
torch.manual_seed(0)
out["beexformer"] = counts(BEExformer.build(BEExformer.resolve_spec(SMALL), SPEC))
out["int8pack-direct"] = counts(Toy(Int8PackDirect()))
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    q = torch.ao.quantization.quantize_dynamic(Int8Toy(), {{nn.Linear}}, dtype=torch.qint8)
out["int8-dynamic-toy"] = counts(Toy(q))
from baselines.weight_only import Int4WeightOnly, Int8WeightOnly
from beexbench.engine.adapter import PackedBEExformer
for name, cls in (("int8-weight-only", Int8WeightOnly), ("int4-weight-only", Int4WeightOnly),
                  ("beexformer-packed", PackedBEExformer)):
    torch.manual_seed(0)
    out[name] = counts(cls.build(cls.resolve_spec(SMALL), SPEC))
print(json.dumps(out, sort_keys=True))
"""


def test_counts_do_not_depend_on_what_was_imported_first():
    fresh = json.loads(_run(COUNTS.format(primed=False, imports=IMPORTS)))
    primed = json.loads(_run(COUNTS.format(primed=True, imports=IMPORTS)))
    assert fresh == primed
    # a kernel called outside any module that declares its handle is uncounted, whether or
    # not the module declaring it (baselines.weight_only) was imported
    assert fresh["int8pack-direct"]["uncounted"] == {"aten::_weight_int8pack_mm": 1}
    for name in ("fp32", "beexformer", "int8-dynamic-toy", "int8-weight-only", "int4-weight-only",
                 "beexformer-packed"):
        assert fresh[name]["uncounted"] == {}, (name, fresh[name]["uncounted"])
    assert fresh["int8-dynamic-toy"]["macs"]["int8"] == 4 * 3
    assert fresh["beexformer-packed"]["bops"] == fresh["beexformer"]["bops"] > 0
    assert fresh["int8-weight-only"]["macs"]["w8a32"] > 0  # (int4 takes no Linear this small: K % 32)


LAZY_OPS = r"""
import importlib, torch
from beexbench.engine import _traced_ops
assert not _traced_ops.defined()
a = _traced_ops.traced_ops()
b = _traced_ops.traced_ops()  # idempotent
assert a is b and _traced_ops.defined()
again = importlib.reload(_traced_ops)  # a second copy finds the ops already defined
assert again.traced_ops().binary_qk is not None
x = torch.randn(2, 3, 70)
s = torch.where(x >= 0, 1.0, -1.0)
print(torch.equal(a.binary_qk(x, x), s @ s.transpose(1, 2)))
"""


def test_engine_ops_are_defined_on_first_use_once():
    assert _run(LAZY_OPS) == "True"
