"""The packed engine's whole-model native op (``infer`` in engine/_engine.cpp, one C++ call
per forward) and its per-block op (``step``): the same exit blocks and logits, bit for bit, as the
module path and as the float beexformer under ``canonical_numerics`` (the engine's order of every
pre-sign sum, models/canonical.py), whatever the host, for the rules it runs (fractional entropy, absolute
entropy, no exit) at batch 1 and batched (uneven lengths, rows leaving at different
blocks, all rows leaving early, masks with holes), both FFNs, odd and multi-word widths,
every token embedding format (against the float model on that format's decoded table),
every compiled instruction set (the Intel / AMD difference: each host picks its own), one thread
and several, over several seeds of the fixture's training; other rules fall back to the
per-block steps."""
from __future__ import annotations

import pytest
import torch

from beexbench.adapters.base import TaskSpec
from beexbench.adapters.registry import get_adapter_class
from beexbench.engine import _fused, _native
from beexbench.engine.embedding import FORMATS, PackedEmbedding
from beexbench.models.canonical import canonical_numerics
from beexbench.models.exits import AbsoluteEntropy, ExitRule, FractionalEntropy, Patience
from engine_variants import each_isa_and_thread_count
from nudged import nudged

SPEC = TaskSpec(task="native", num_labels=3, vocab_size=50, max_len=24)
RULES = [FractionalEntropy(0.1), FractionalEntropy(0.5), FractionalEntropy(-0.05, answer="current"),
         FractionalEntropy(1.01, min_exit=3), AbsoluteEntropy(1.05), AbsoluteEntropy(0.9, min_exit=2), ExitRule()]
CONFIGS = {
    "odd-slfn": {"d_model": 40, "n_heads": 4, "n_blocks": 3, "d_ff": 72},
    "d64-gelu": {"d_model": 64, "n_heads": 4, "n_blocks": 4, "d_ff": 128, "ffn": "gelu"},
    "d128-slfn": {"d_model": 128, "n_heads": 2, "n_blocks": 3, "d_ff": 256},
    "d45-one-head": {"d_model": 45, "n_heads": 5, "n_blocks": 3, "d_ff": 50, "exit_heads": False},
}

STEPS = _fused.infer_steps  # the per-block path, called directly (the tests below refuse it as a fallback)
pytestmark = pytest.mark.skipif(_native.ops() is None, reason="the fused engine is not available here")


def data(n: int, seed: int, holes: bool = False):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, SPEC.max_len + 1, (n,), generator=g)
    mask = torch.arange(SPEC.max_len)[None, :] < lengths[:, None]
    if holes:
        mask &= torch.rand(mask.shape, generator=g) > 0.3
    ids = torch.randint(1, SPEC.vocab_size, (n, SPEC.max_len), generator=g) * mask
    return ids, mask, ids[:, 0] % SPEC.num_labels


def trained(enc: dict, steps: int = 12, seed: int = 0):
    return nudged("beexformer", SPEC, {"encoder": enc}, *data(64, seed=1), steps, seed=seed)


class Pair:
    """A trained float beexformer and its packed engine with token rows in format ``bits``;
    ``reference()`` sets the float model's table to that format's decoded rows."""

    def __init__(self, enc: dict, seed: int = 0) -> None:
        self.float = trained(enc, seed=seed)
        self.packed = get_adapter_class("beexformer-packed").derive(self.float, None)
        self.table = self.float.module().tok.weight.detach().clone()
        self.bits = None

    def use(self, bits: int) -> "Pair":
        if bits != self.bits:
            emb = PackedEmbedding.from_table(self.table, bits)
            self.packed.model.tok = emb
            with torch.no_grad():
                self.float.module().tok.weight.copy_(emb.table())
            self.bits = bits
        return self


@pytest.fixture(scope="module")
def pairs():
    return {name: Pair(enc) for name, enc in CONFIGS.items()}


def same(got, ref) -> None:
    """Bit for bit: exit blocks and logits."""
    assert torch.equal(got.exit_block, ref.exit_block), (got.exit_block, ref.exit_block)
    assert torch.equal(got.logits, ref.logits), (got.logits - ref.logits).abs().max()


def check(pair: Pair, rule, ids, mask) -> torch.Tensor:
    """Whole-model op == module path == float model in the engine's numerics; returns the exit blocks."""
    model = pair.packed.model
    pair.float.set_rule(rule)
    with canonical_numerics():
        a = pair.float.predict(ids, mask)
    b = model.infer_modules(ids, mask, rule)
    with torch.no_grad():
        c = _fused.infer_fused(model, _native.ops(), ids, mask, rule)
    for other in (b, c):
        same(other, a)
    return c.exit_block


@pytest.fixture(autouse=True)
def no_steps(monkeypatch):
    """The rules under test must run as the whole-model op, never the per-block steps."""
    def refuse(*args, **kwargs):
        raise AssertionError("per-block path used")

    monkeypatch.setattr(_fused, "infer_steps", refuse)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_rules_batched_and_batch1(pairs, name):
    pair = pairs[name].use(32)
    ids, mask, _ = data(40, seed=3)
    spread = set()
    for rule in RULES:
        blocks = check(pair, rule, ids, mask)
        spread.add(len(set(blocks.tolist())))
        for i in range(0, 40, 3):
            n = int(mask[i].sum())
            check(pair, rule, ids[i : i + 1, :n], mask[i : i + 1, :n])
    if CONFIGS[name].get("exit_heads", True):
        assert max(spread) >= 2, "some rule should make rows exit at different blocks"


@pytest.mark.parametrize("bits", FORMATS)
@pytest.mark.parametrize("name", ["odd-slfn", "d128-slfn", "d45-one-head"])
def test_token_formats(pairs, name, bits):
    pair = pairs[name].use(bits)
    ids, mask, _ = data(24, seed=4)
    for rule in (FractionalEntropy(0.1), ExitRule()):
        check(pair, rule, ids, mask)
        check(pair, rule, ids[:1, : int(mask[0].sum())], mask[:1, : int(mask[0].sum())])


def test_all_rows_exit_early_and_masks_with_holes(pairs):
    pair = pairs["d64-gelu"].use(8)
    ids, mask, _ = data(16, seed=5)
    blocks = check(pair, FractionalEntropy(1e9), ids, mask)
    assert blocks.tolist() == [2] * 16
    blocks = check(pair, AbsoluteEntropy(1e9), ids, mask)
    assert blocks.tolist() == [1] * 16
    ids, mask, _ = data(16, seed=6, holes=True)
    mask[0] = False  # a row with no tokens at all
    check(pair, FractionalEntropy(0.1), ids, mask)
    check(pair, ExitRule(), ids, mask)


@pytest.fixture(scope="module")
def reseeded():
    """Pairs trained from other seeds (built on first use): agreement by construction, not for
    one lucky set of weights."""
    cache = {}

    def get(name: str, seed: int) -> Pair:
        if (name, seed) not in cache:
            cache[name, seed] = Pair(CONFIGS[name], seed=seed)
        return cache[name, seed]

    return get


@pytest.mark.parametrize("name,seed", [("d128-slfn", 0), ("d128-slfn", 1), ("d128-slfn", 2), ("d45-one-head", 0),
                                       ("d64-gelu", 0), ("d64-gelu", 1)])
def test_every_instruction_set_and_threads(pairs, reseeded, name, seed):
    """Every ISA variant (portable, AVX2, AVX-512: what an Intel or an AMD host picks) and thread
    count, the whole-model op and the per-block op, equal the module path and the float model
    (engine numerics) bit for bit, masks with holes included."""
    ops = _native.ops()
    pair = (pairs[name] if seed == 0 else reseeded(name, seed)).use(4)
    model = pair.packed.model
    for ids, mask in (data(24, seed=7)[:2], data(12, seed=6, holes=True)[:2]):
        for rule in (FractionalEntropy(0.1), ExitRule()):
            ref = model.infer_modules(ids, mask, rule)
            pair.float.set_rule(rule)
            with canonical_numerics():
                same(pair.float.predict(ids, mask), ref)
            for _ in each_isa_and_thread_count(ops):
                with torch.no_grad():
                    same(model.infer(ids, mask, rule), ref)
                    same(STEPS(model, ops, ids, mask, rule), ref)



@pytest.mark.parametrize("name", ["odd-slfn", "d45-one-head"])
def test_cpp_loop_equals_the_python_row_removal_loop(pairs, name):
    """The whole-model op's C++ early-exit loop (``infer`` in _engine.cpp) and the one Python loop
    (models/early_exit.py ``run_early_exit``, here driving the per-block op ``step`` with the rule's
    C++ ``frac_entropy`` twin or its Python ``step``) give the same logits and exit blocks bit for
    bit, batched (rows leaving at different blocks) and at batch 1; a rule only the Python loop runs
    equals the module path through the same loop."""
    from beexbench.models.early_exit import run_early_exit

    ops, model = _native.ops(), pairs[name].use(32).packed.model
    ids, mask, _ = data(30, seed=11)

    def block_step(h, m, i):
        h, logits = ops.step(h, m, *_fused.whole_tensors(model)[0], i - 1)
        return h, logits if model.head_for(i) is not None else None

    with torch.no_grad():
        for rule in RULES:
            whole = _fused.infer_fused(model, ops, ids, mask, rule)
            same(STEPS(model, ops, ids, mask, rule), whole)
            for i in (0, 4):
                n = int(mask[i].sum())
                one = (ids[i : i + 1, :n], mask[i : i + 1, :n])
                same(STEPS(model, ops, *one, rule), _fused.infer_fused(model, ops, *one, rule))
            if type(rule) is FractionalEntropy:  # the rule's own Python step in the loop, not its C++ twin
                h = model.embed(ids).float().contiguous()
                same(run_early_exit(h, mask.contiguous(), len(model.blocks), block_step, rule), whole)
        for rule in (Patience(1), Patience(2)):
            same(STEPS(model, ops, ids, mask, rule), model.infer_modules(ids, mask, rule))

def test_other_rules_fall_back(pairs, monkeypatch):
    pair = pairs["odd-slfn"].use(32)
    model = pair.packed.model
    ids, mask, _ = data(12, seed=8)
    calls = []
    monkeypatch.setattr(_fused, "infer_steps", lambda *a: calls.append(a[-1]) or model.infer_modules(*a[2:]))

    class Tweaked(FractionalEntropy):
        pass

    with torch.no_grad():
        for rule in (Patience(1), Tweaked(0.1)):
            model.infer(ids, mask, rule)
        assert len(calls) == 2
        model.infer(ids, mask, FractionalEntropy(0.1))
        assert len(calls) == 2
        monkeypatch.setenv("BEEXBENCH_ENGINE", "steps")
        model.infer(ids, mask, FractionalEntropy(0.1))
        assert len(calls) == 3


def test_bad_inputs_are_refused(pairs):
    model = pairs["odd-slfn"].use(32).packed.model
    ids, mask, _ = data(2, seed=9)
    with torch.no_grad():
        with pytest.raises(RuntimeError, match="out of range"):
            model.infer(ids + SPEC.vocab_size, mask, ExitRule())
        with pytest.raises(ValueError, match="max_len"):
            model.infer(torch.ones(1, SPEC.max_len + 1, dtype=torch.long), torch.ones(1, SPEC.max_len + 1, dtype=torch.bool), ExitRule())
        with pytest.raises(ValueError, match="empty batch"):
            model.infer(ids[:0], mask[:0], ExitRule())


def test_new_token_rows_are_picked_up(pairs):
    """The whole-model tensors are cached on the model; a new token table (another module,
    or new codes loaded into the same one) is used at the next call."""
    pair = pairs["odd-slfn"]
    model = pair.packed.model
    ids, mask, _ = data(8, seed=10)
    for bits in (8, 1):
        pair.use(bits)
        before = _fused.infer_fused(model, _native.ops(), ids, mask, ExitRule())
        other = PackedEmbedding.from_table(pair.table.flip(0), bits)
        model.tok.codes, model.tok.scale = other.codes, other.scale
        after = _fused.infer_fused(model, _native.ops(), ids, mask, ExitRule())
        assert not torch.allclose(before.logits, after.logits)
        assert torch.equal(after.logits, model.infer_modules(ids, mask, ExitRule()).logits)
        pair.bits = None  # the pair's float reference no longer matches: rebuild it on next use
