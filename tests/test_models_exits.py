import math

import pytest
import torch

from beexbench.adapters.base import TaskSpec
from beexbench.adapters.registry import create_model
from beexbench.models.exits import AbsoluteEntropy, ExitRule, FractionalEntropy, Patience, entropy, simulate


def logits_with_entropy(h: float, classes: int = 2) -> torch.Tensor:
    """Two-class logits whose softmax has entropy ``h`` nats (0 < h < ln 2), class 0 preferred."""
    lo, hi = 1e-9, 0.5
    for _ in range(100):  # bisection on p of the minority class
        p = (lo + hi) / 2
        if -(p * math.log(p) + (1 - p) * math.log(1 - p)) < h:
            lo = p
        else:
            hi = p
    return torch.tensor([[math.log(1 - p), math.log(p)]])


def test_entropy_helper():
    assert entropy(logits_with_entropy(0.4)).item() == pytest.approx(0.4, abs=1e-6)


def test_exits_at_first_block_whose_fractional_reduction_is_below_delta():
    # H: 0.60, 0.30 (r=0.5), 0.25 (r=0.167), 0.24 (r=0.04) -> delta=0.1 exits at block 4
    hs = [0.60, 0.30, 0.25, 0.24, 0.10]
    stacked = torch.stack([logits_with_entropy(h) for h in hs])
    d = simulate(FractionalEntropy(delta=0.1, min_exit=2), stacked)
    assert d.exit_block.tolist() == [4]
    d = simulate(FractionalEntropy(delta=0.2, min_exit=2), stacked)
    assert d.exit_block.tolist() == [3]
    d = simulate(FractionalEntropy(delta=0.6, min_exit=2), stacked)
    assert d.exit_block.tolist() == [2]


def test_min_exit_is_respected():
    hs = [0.60, 0.59, 0.10, 0.09]
    stacked = torch.stack([logits_with_entropy(h) for h in hs])
    assert simulate(FractionalEntropy(delta=0.1, min_exit=2), stacked).exit_block.tolist() == [2]
    assert simulate(FractionalEntropy(delta=0.1, min_exit=3), stacked).exit_block.tolist() == [4]


def test_entropy_rise_returns_lower_entropy_block_by_default():
    low = logits_with_entropy(0.2)
    high = torch.flip(logits_with_entropy(0.5), dims=[-1])  # different prediction, higher entropy
    stacked = torch.stack([logits_with_entropy(0.6), low, high, low])
    d = simulate(FractionalEntropy(delta=0.1, min_exit=2, answer="lower_entropy"), stacked)
    # block 2: r = (0.6-0.2)/0.6 = 0.67 >= 0.1; block 3: r < 0 -> exit at 3 with block 2's answer
    assert d.exit_block.tolist() == [3]
    assert torch.equal(d.logits, low)
    d = simulate(FractionalEntropy(delta=0.1, min_exit=2, answer="current"), stacked)
    assert torch.equal(d.logits, high)


def test_last_block_always_answers():
    hs = [0.6, 0.3, 0.15, 0.07]  # r = 0.5 each time
    stacked = torch.stack([logits_with_entropy(h) for h in hs])
    assert simulate(FractionalEntropy(delta=0.1), stacked).exit_block.tolist() == [4]


def test_absolute_entropy_and_patience_rules():
    stacked = torch.stack([logits_with_entropy(h) for h in [0.6, 0.4, 0.1, 0.05]])
    assert simulate(AbsoluteEntropy(threshold=0.3), stacked).exit_block.tolist() == [3]
    flip = torch.flip(logits_with_entropy(0.3), dims=[-1])
    same = logits_with_entropy(0.3)
    stacked = torch.stack([flip, same, same, same, flip])
    assert simulate(Patience(2), stacked).exit_block.tolist() == [4]
    assert simulate(Patience(1), stacked).exit_block.tolist() == [3]


@pytest.fixture(scope="module")
def tiny_beex():
    torch.manual_seed(0)
    spec = TaskSpec("t", 3, 50, 16)
    m = create_model("beexformer", spec, {"encoder": {"d_model": 16, "n_heads": 2, "n_blocks": 5, "d_ff": 24}})
    # make exits vary: a delta between the observed fractional reductions
    m.set_rule(FractionalEntropy(delta=0.02, min_exit=2))
    return m


def _inputs(n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 50, (n, 12), generator=g)
    lengths = torch.randint(3, 13, (n,), generator=g)
    mask = torch.arange(12)[None, :] < lengths[:, None]
    ids = ids.masked_fill(~mask, 0)
    return ids, mask


def test_exited_samples_really_run_fewer_blocks(tiny_beex):
    ids, mask = _inputs()
    calls = [0] * len(tiny_beex.model.blocks)
    hooks = [b.register_forward_hook(lambda mod, inp, out, i=i: calls.__setitem__(i, calls[i] + inp[0].shape[0]))
             for i, b in enumerate(tiny_beex.model.blocks)]
    try:
        d = tiny_beex.predict(ids, mask)
    finally:
        for h in hooks:
            h.remove()
    # rows entering block i = samples whose exit block is >= i
    expected = [int((d.exit_block >= i + 1).sum()) for i in range(len(calls))]
    assert calls == expected
    assert d.exit_block.min() < len(calls), "the test needs some samples to exit early"


def test_batched_row_removal_matches_batch_size_one_and_simulation(tiny_beex):
    ids, mask = _inputs()
    batched = tiny_beex.predict(ids, mask)
    for i in range(len(ids)):
        width = int(mask[i].sum())
        single = tiny_beex.predict(ids[i : i + 1, :width], mask[i : i + 1, :width])
        assert single.exit_block.item() == batched.exit_block[i].item()
        assert torch.allclose(single.logits, batched.logits[i : i + 1], atol=1e-5)
    sim = simulate(tiny_beex.rule, torch.stack(tiny_beex.forward(ids, mask)))
    assert torch.equal(sim.exit_block, batched.exit_block)
    assert torch.equal(sim.logits.argmax(-1), batched.logits.argmax(-1))


def test_empty_batch_is_rejected(tiny_beex):
    with pytest.raises(ValueError, match="empty batch"):
        tiny_beex.predict(torch.zeros(0, 4, dtype=torch.long), torch.zeros(0, 4, dtype=torch.bool))


def test_fractional_entropy_reduction_by_hand():
    from beexbench.models.exits import fractional_entropy_reduction

    r = fractional_entropy_reduction(torch.tensor([0.6, 0.3, 0.0]), torch.tensor([0.3, 0.36, 0.0]), eps=1e-6)
    assert r.tolist() == pytest.approx([0.5, -0.2, 0.0])


def test_rule_step_is_the_shared_fractional_entropy_step():
    from beexbench.models.exits import ExitState, fractional_entropy_step

    g = torch.Generator().manual_seed(3)
    prev, cur = torch.randn(9, 4, generator=g), torch.randn(9, 4, generator=g)
    rule = FractionalEntropy(delta=0.05, min_exit=2)
    state = ExitState(prev_logits=prev, prev_entropy=entropy(prev))
    done, answer, new = rule.step(2, cur, state, last=False)
    d2, a2, h2 = fractional_entropy_step(cur, prev, entropy(prev), 0.05, rule.eps, True, True, False)
    assert torch.equal(done, d2) and torch.equal(answer, a2) and torch.equal(new.prev_entropy, h2)


# -- the one row-removal loop (beexbench/models/early_exit.py) -------------------------------------

def _scripted(table: torch.Tensor, exit_blocks: list[int], as_numpy: bool):
    """A block step reading fixed exit logits: ``table[k]`` [N, C] are the logits of the exit after
    block ``exit_blocks[k]``; the hidden state is each pending row's index, so the step answers
    for exactly the rows it is given and records them."""
    import numpy as np

    seen: dict[int, list[int]] = {}

    def step(h, mask, i):
        assert len(h) == len(mask) and bool(mask.all())
        rows = torch.as_tensor(np.asarray(h) if as_numpy else h).long()
        seen[i] = rows.tolist()
        return h, table[exit_blocks.index(i)][rows] if i in exit_blocks else None

    n = table.shape[1]
    if as_numpy:
        return np.arange(n), np.ones(n, dtype=bool), step, seen
    return torch.arange(n), torch.ones(n, dtype=torch.bool), step, seen


@pytest.mark.parametrize("as_numpy", [False, True])
@pytest.mark.parametrize("exit_blocks", [[1, 2, 3, 4, 5], [2, 4, 5]])
@pytest.mark.parametrize("rule", [FractionalEntropy(0.3), FractionalEntropy(0.1, answer="current"), AbsoluteEntropy(0.9),
                                  Patience(1), Patience(2), ExitRule()],
                         ids=["frac-0.3", "frac-0.1-current", "abs-0.9", "patience-1", "patience-2", "final"])
def test_row_removal_equals_the_offline_simulation(rule, exit_blocks, as_numpy):
    """Rows leave at the block the rule picks, with the answer it picks (the offline simulation
    over every exit's logits), and each block runs exactly the rows still pending."""
    from beexbench.models.early_exit import run_early_exit

    g = torch.Generator().manual_seed(5)
    table = torch.randn(len(exit_blocks), 40, 3, generator=g) * 2
    ref = simulate(rule, table, exit_blocks)
    h, mask, step, seen = _scripted(table, exit_blocks, as_numpy)
    got = run_early_exit(h, mask, 5, step, rule)
    assert torch.equal(got.exit_block, ref.exit_block) and torch.equal(got.logits, ref.logits)
    for i, rows in seen.items():  # block i ran the rows that had not exited before it, in batch order
        assert rows == [r for r in range(40) if ref.exit_block[r] >= i], i
    if type(rule) is not ExitRule and len(exit_blocks) == 5:
        assert len(set(ref.exit_block.tolist())) >= 2, "the table should make rows exit at different blocks"
    for r in (0, 7):  # batch 1: the same answers
        h1, mask1, step1, _ = _scripted(table[:, r : r + 1], exit_blocks, as_numpy)
        one = run_early_exit(h1, mask1, 5, step1, rule)
        assert one.exit_block.tolist() == [ref.exit_block[r].item()] and torch.equal(one.logits, ref.logits[r : r + 1])


def test_row_removal_dtype_and_refusals():
    from beexbench.models.early_exit import run_early_exit

    table = torch.tensor([[[0.0, 3.0], [1.0, 1.0]], [[2.0, 0.0], [0.5, 0.0]]], dtype=torch.float64)  # [exits, N, C]
    for n in (1, 2):  # every row at once (no bookkeeping) and rows leaving apart
        h, mask, step, _ = _scripted(table[:, :n], [1, 2], False)
        got = run_early_exit(h, mask, 2, step, AbsoluteEntropy(0.2))  # the answers keep their dtype
        assert got.logits.dtype == torch.float64 and got.exit_block.tolist() == [1, 2][:n]
        assert got.logits.tolist() == [[0.0, 3.0], [0.5, 0.0]][:n]

    class Never(ExitRule):  # breaks the contract: the last block does not answer
        name = "never"

        def step(self, block, logits, state, last):
            return torch.zeros(logits.shape[0], dtype=torch.bool), logits, state

    h, mask, step, _ = _scripted(table, [1, 2], False)
    with pytest.raises(ValueError, match="'never' left 2 row"):
        run_early_exit(h, mask, 2, step, Never())
    with pytest.raises(ValueError, match="empty batch"):
        run_early_exit(torch.zeros(0, 4), torch.zeros(0, 4, dtype=torch.bool), 2, lambda h, m, i: (h, None), ExitRule())
