"""Operation counts per sample: MACs split by precision, FLOPs, BOPs, OPs (SPEC section 4).

The counter is fvcore's jit-trace analysis run with the op handles of this analysis: a
base set for torch's ops (:mod:`._op_handles`, :mod:`._op_handles_quantized`) plus the
handles the model being counted contributes (its module classes' and its adapter's
``op_handles()``) and any passed as ``handles=`` (:mod:`._op_handle_sets`). Nothing is
added to a global table by importing a model: a count depends only on the model.
Every MAC is attributed to the module that ran it and put into a precision bucket read
from ``adapter.precision().products``:

* ``fp32``   32-bit x 32-bit products;
* ``w1a32``  1-bit weights x fp32 activations (FLOPs, but reported apart);
* ``binary`` 1-bit x 1-bit products: BOPs (XNOR-popcount), not FLOPs;
* ``int8``   8-bit x 8-bit products (FLOPs, reported apart).

Ops the handles do not know, nodes they cannot count and modules the trace never
reached are stored in ``OpsRecord.uncounted`` (the tests require it to be empty for every
built-in model). :data:`CONVENTION` states the cost per op and is copied into every record.

    rec = count_ops(adapter, seq_len=32)          # one sample, every block and head
    cost = DepthCost.measure(adapter)             # exact polynomial cost per exit block
    cost.macs(exit_block, lengths)                # per-sample MACs (the delta sweep's cost_fn)

Where the parts live: tracing :mod:`._ops_trace`, grouping by block/head and precision
:mod:`._ops_tally`, the record :mod:`._ops_record`, cost per exit :mod:`._depth_cost`.
"""
from __future__ import annotations

from typing import Mapping

from beexbench.profilers._depth_cost import DepthCost
from beexbench.profilers._op_handle_sets import handles_for, register_op_handle, registered_op_handles
from beexbench.profilers._op_handles import CONVENTION, Handle, Uncountable
from beexbench.profilers._ops_record import BOPS_PER_OP, BUCKETS, COUNTER, OpsRecord, bucket_of, make_record
from beexbench.profilers._ops_tally import tally
from beexbench.profilers._ops_trace import module_of

__all__ = ["BOPS_PER_OP", "BUCKETS", "CONVENTION", "COUNTER", "DepthCost", "Handle", "OpsRecord", "Uncountable",
           "bucket_of", "count_ops", "handles_for", "register_op_handle", "registered_op_handles"]


def count_ops(adapter, seq_len: int, handles: Mapping[str, Handle] | None = None) -> OpsRecord:
    """Operation counts of one sample of ``seq_len`` real tokens, every block and every
    exit head run (``adapter.forward``), eval mode. ``handles`` (op name -> handle) add
    to, or replace, the handles of this analysis only."""
    table = handles_for(adapter, module_of(adapter), handles)
    t = tally(adapter, seq_len, table)
    return make_record(t, seq_len, list(t.groups), None)
