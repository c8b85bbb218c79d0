"""One ONNX graph for the whole early-exit network (``fp32-ort-graph`` / ``int8-ort-graph``,
:mod:`baselines.ort_graph`): the per-block graphs of :func:`baselines._onnx_export.export_graphs`
stitched into one model whose exit rule runs inside it, so a batch is **one** ``session.run``.

After each block that has an exit head the graph computes the rule (the same ops as torch's
:func:`~beexbench.models.exits.fractional_entropy_step`: ``LogSoftmax`` -> ``-(exp(logp) * logp).sum``,
``r = (H_prev - H) / max(H_prev, eps)``, ``r < delta``; or ``|y_i - y_{i-1}| < delta`` for
regression's prediction-change rule), records the answer and exit block of the rows that are done,
and an ONNX ``If`` runs the rest of the network only while some row is pending (its then-branch
holds the next block's nodes and weights, and the next ``If``; its else-branch passes the answers
through). At batch 1 that is exactly early exit; at batch > 1 the rows that are done stay in the
batch, masked (their answers are kept, their later blocks' outputs discarded) until every row is
done: the batch costs its slowest row.

Inputs ``ids [B, L] int64``, ``mask [B, L] bool`` and ``delta`` (a float with the calibrated
value as its default: fed ``-inf`` no row exits early, which ``forward`` uses to get every exit);
outputs ``logits [B, C]`` (the answers), ``exit_block [B] int64`` (1-based) and ``exits [k, B, C]``
(the logits of every exit that ran).
"""
from __future__ import annotations

from dataclasses import dataclass

from beexbench.errors import BeexError

INPUTS = ("ids", "mask", "delta")
OUTPUTS = ("logits", "exit_block", "exits")
CONTROL_FLOW = ("If", "Loop")


@dataclass(frozen=True)
class GraphRule:
    """An exit rule the graph can hold: ``kind`` is fractional-entropy, prediction-change, static or final."""

    kind: str
    delta: float = 0.0
    min_exit: int = 2
    lower: bool = False  # fractional-entropy with answer="lower_entropy"
    eps: float = 1e-6

    @classmethod
    def of(cls, rule) -> "GraphRule":
        d = rule.to_dict()
        kind = d["rule"]
        if kind == "final":
            return cls("final")
        if kind == "fractional-entropy":
            return cls(kind, float(d["delta"]), int(d["min_exit"]), d["answer"] == "lower_entropy", float(rule.eps))
        if kind == "prediction-change":
            return cls(kind, float(d["delta"]), int(d["min_exit"]))
        if kind == "static":  # static depth k: every row leaves at block min_exit = k
            return cls("static", 0.0, int(d["min_exit"]))
        raise BeexError(f"exit rule '{kind}' cannot be put inside one ONNX graph (fractional-entropy, "
                        "prediction-change, static and final can): use fp32-ort for it")


def _rename(graph, index: int, h_prev: str | None):
    """Block ``index``'s nodes and initializers with every name prefixed ``b<index>/`` (its
    inputs mapped onto ``ids`` / ``mask`` / the previous block's hidden state)."""
    fixed = {"ids": "ids", "mask": "mask", "h_in": h_prev, "": ""}

    def name(n: str) -> str:
        return fixed[n] if n in fixed else f"b{index}/{n}"

    for node in graph.node:
        node.input[:] = [name(n) for n in node.input]
        node.output[:] = [name(n) for n in node.output]
        node.name = f"b{index}/{node.name}"
    for init in graph.initializer:
        init.name = name(init.name)
    return list(graph.node), list(graph.initializer)


class _Builder:
    def __init__(self, rule: GraphRule, n_blocks: int, exit_blocks: list[int]) -> None:
        self.rule, self.n, self.exit_blocks = rule, n_blocks, set(exit_blocks)

    def _rule_nodes(self, i: int, state: dict, logits: str) -> tuple[list, dict]:
        """The rule after block ``i``'s exit: new state {answer, block, pending, prev, prev_h, exits}."""
        from onnx import helper as oh

        r, last, p = self.rule, i == self.n, f"r{i}/"
        nodes = [oh.make_node("Unsqueeze", [logits, "c/axis0"], [p + "u"]),
                 oh.make_node("Concat", [state["exits"], p + "u"], [p + "exits"], axis=0)] if state else \
                [oh.make_node("Unsqueeze", [logits, "c/axis0"], [p + "exits"])]
        new = {"exits": p + "exits", "prev": logits, "prev_h": None}
        chosen, cond = logits, None
        if r.kind == "fractional-entropy":
            nodes += [oh.make_node("LogSoftmax", [logits], [p + "logp"], axis=-1),
                      oh.make_node("Exp", [p + "logp"], [p + "pr"]),
                      oh.make_node("Mul", [p + "pr", p + "logp"], [p + "plogp"]),
                      oh.make_node("ReduceSum", [p + "plogp", "c/axis-1"], [p + "nh"], keepdims=0),
                      oh.make_node("Neg", [p + "nh"], [p + "h"])]
            new["prev_h"] = p + "h"
            if state and i >= r.min_exit:
                nodes += [oh.make_node("Sub", [state["prev_h"], p + "h"], [p + "dh"]),
                          oh.make_node("Max", [state["prev_h"], "c/eps"], [p + "den"]),
                          oh.make_node("Div", [p + "dh", p + "den"], [p + "r"]),
                          oh.make_node("Less", [p + "r", "delta"], [p + "cond"])]
                cond = p + "cond"
                if r.lower:
                    nodes += [oh.make_node("Less", [p + "r", "c/zero"], [p + "rose"]),
                              oh.make_node("Unsqueeze", [p + "rose", "c/axis-1"], [p + "rose2"]),
                              oh.make_node("Where", [p + "rose2", state["prev"], logits], [p + "chosen"])]
                    chosen = p + "chosen"
        elif r.kind == "prediction-change" and state and i >= r.min_exit:
            nodes += [oh.make_node("Sub", [logits, state["prev"]], [p + "dy"]),
                      oh.make_node("Abs", [p + "dy"], [p + "ady"]),
                      oh.make_node("ReduceMax", [p + "ady", "c/axis-1"], [p + "change"], keepdims=0),
                      oh.make_node("Less", [p + "change", "delta"], [p + "cond"])]
            cond = p + "cond"
        elif r.kind == "static" and i >= r.min_exit:
            cond = "c/true"
        if last:
            cond = "c/true"
        if cond is None:  # nobody can exit here: the state carries over
            return nodes, {**state, **new, "answer": state.get("answer", logits), "block": state.get("block"),
                           "pending": state.get("pending")}
        if not state or state.get("pending") is None:  # the first exit anyone can take: nothing answered yet
            nodes += [oh.make_node("Shape", [logits], [p + "shape"], end=1),
                      oh.make_node("ConstantOfShape", [p + "shape"], [p + "none"],
                                   value=oh.make_tensor("v", 7, [1], [0])),
                      oh.make_node("Identity", [chosen], [p + "answer0"]),
                      oh.make_node("Cast", [p + "none"], [p + "pend0"], to=9),
                      oh.make_node("Not", [p + "pend0"], [p + "pending_in"])]
            state = {**state, "answer": p + "answer0", "block": p + "none", "pending": p + "pending_in"}
        nodes += [oh.make_node("And", [state["pending"], cond], [p + "newly"]),
                  oh.make_node("Unsqueeze", [p + "newly", "c/axis-1"], [p + "newly2"]),
                  oh.make_node("Where", [p + "newly2", chosen, state["answer"]], [p + "answer"]),
                  oh.make_node("Where", [p + "newly", f"c/block{i}", state["block"]], [p + "block"]),
                  oh.make_node("Not", [cond], [p + "stay"]),
                  oh.make_node("And", [state["pending"], p + "stay"], [p + "pending"])]
        return nodes, {**new, "answer": p + "answer", "block": p + "block", "pending": p + "pending"}

    def scope(self, i: int, blocks: list, state: dict, h_prev: str | None):
        """Nodes and initializers running blocks ``i..n`` (from the state after block i-1), and the
        names of (answer, exit block, exits) they end with."""
        from onnx import helper as oh

        nodes, inits = [], []
        while True:
            bn, bi = _rename(blocks[i - 1], i, h_prev)
            nodes += bn
            inits += bi
            h_prev = f"b{i}/h"
            if i in self.exit_blocks:
                rn, state = self._rule_nodes(i, state, f"b{i}/logits")
                nodes += rn
            if i == self.n:
                return nodes, inits, (state["answer"], state["block"], state["exits"])
            i += 1
            if state.get("pending") is not None:
                break
        p = f"if{i}/"  # blocks i..n run only while a row is pending
        nodes += [oh.make_node("Cast", [state["pending"]], [p + "pi"], to=6),
                  oh.make_node("ReduceMax", [p + "pi"], [p + "any"], keepdims=0),
                  oh.make_node("Cast", [p + "any"], [p + "go"], to=9)]
        then_nodes, then_inits, outs = self.scope(i, blocks, state, h_prev)
        then_nodes += [oh.make_node("Identity", [o], [f"{p}then_{k}"]) for k, o in zip(OUTPUTS, outs)]
        else_nodes = [oh.make_node("Identity", [state[s]], [f"{p}else_{k}"])
                      for k, s in zip(OUTPUTS, ("answer", "block", "exits"))]
        def branch(tag, body, init):
            outputs = [oh.make_empty_tensor_value_info(f"{p}{tag}_{k}") for k in OUTPUTS]
            return oh.make_graph(body, f"{p}{tag}", [], outputs, initializer=init)
        names = [f"{p}{k}" for k in OUTPUTS]
        nodes.append(oh.make_node("If", [p + "go"], names, name=p + "If",
                                  then_branch=branch("then", then_nodes, then_inits),
                                  else_branch=branch("else", else_nodes, [])))
        return nodes, inits, tuple(names)


def stitch(block_graphs: list[bytes], exit_blocks: list[int], rule: GraphRule) -> bytes:
    """One ONNX model running every block graph of ``block_graphs`` with ``rule`` inside it."""
    import onnx
    from onnx import TensorProto as T
    from onnx import helper as oh

    models = [onnx.load_from_string(g) for g in block_graphs]
    n = len(models)
    if rule.kind not in ("final", "static") and not 2 <= rule.min_exit:
        raise BeexError(f"min_exit {rule.min_exit}: the graph's rules need a previous exit")
    builder = _Builder(rule, n, exit_blocks)
    nodes, inits, outs = builder.scope(1, [m.graph for m in models], {}, None)
    consts = [oh.make_tensor("c/axis0", T.INT64, [1], [0]), oh.make_tensor("c/axis-1", T.INT64, [1], [-1]),
              oh.make_tensor("c/eps", T.FLOAT, [], [rule.eps]), oh.make_tensor("c/zero", T.FLOAT, [], [0.0]),
              oh.make_tensor("c/true", T.BOOL, [], [True])]
    consts += [oh.make_tensor(f"c/block{i}", T.INT64, [], [i]) for i in range(1, n + 1)]
    delta = oh.make_tensor("delta", T.FLOAT, [], [rule.delta])
    nodes += [oh.make_node("Identity", [o], [k]) for k, o in zip(OUTPUTS, outs)]
    graph = oh.make_graph(
        nodes, "beexbench-early-exit",
        [oh.make_tensor_value_info("ids", T.INT64, ["batch", "seq"]), oh.make_tensor_value_info("mask", T.BOOL, ["batch", "seq"]),
         oh.make_tensor_value_info("delta", T.FLOAT, [])],
        [oh.make_tensor_value_info("logits", T.FLOAT, ["batch", None]),
         oh.make_tensor_value_info("exit_block", T.INT64, ["batch"]),
         oh.make_tensor_value_info("exits", T.FLOAT, [None, "batch", None])],
        initializer=[*inits, *consts, delta])
    model = oh.make_model(graph, opset_imports=list(models[0].opset_import), producer_name="beexbench")
    model.ir_version = models[0].ir_version
    return model.SerializeToString()


def op_types(graph: bytes) -> dict[str, int]:
    """Node count per op type of ``graph``, subgraphs (If / Loop branches) included."""
    import onnx

    counts: dict[str, int] = {}

    def walk(g) -> None:
        for node in g.node:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)
                for sub in attr.graphs:
                    walk(sub)

    walk(onnx.load_from_string(graph).graph)
    return counts
