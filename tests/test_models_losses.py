import math

import pytest
import torch
import torch.nn.functional as F

from beexbench.models.exits import entropy
from beexbench.models.losses import exit_loss, exit_weights
from test_models_exits import logits_with_entropy


def stacked(hs):
    return [logits_with_entropy(h) for h in hs]


def test_uniform_depth_and_final_weights():
    lg = stacked([0.6, 0.5, 0.4, 0.3])
    assert torch.allclose(exit_weights("uniform", lg), torch.full((1, 4), 0.25))
    assert torch.allclose(exit_weights("depth_weighted", lg), torch.tensor([[1, 2, 3, 4]]) / 10.0)
    assert exit_weights("final", lg).tolist() == [[0.0, 0.0, 0.0, 1.0]]


def test_soft_routing_weights_by_hand():
    # H = 0.6, 0.3 (r2 = 0.5), 0.27 (r3 = 0.1), 0.2; delta = 0.2, tau = 0.05, floor = 0.3
    lg = stacked([0.6, 0.3, 0.27, 0.2])
    w = exit_weights("soft_routing", lg, delta=0.2, tau=0.05, floor=0.3, min_exit=2)
    s2 = 1 / (1 + math.exp(-(0.2 - 0.5) / 0.05))
    s3 = 1 / (1 + math.exp(-(0.2 - 0.1) / 0.05))
    q = [0.0, s2, (1 - s2) * s3, (1 - s2) * (1 - s3)]  # block 1 cannot exit; the last takes the rest
    expected = torch.tensor([[0.7 * qi + 0.3 / 4 for qi in q]])
    assert torch.allclose(w, expected, atol=1e-5)
    assert torch.allclose(w.sum(1), torch.ones(1))


def test_soft_routing_moves_weight_to_where_the_rule_exits():
    early = exit_weights("soft_routing", stacked([0.6, 0.59, 0.58, 0.57]), delta=0.1, floor=0.0)
    late = exit_weights("soft_routing", stacked([0.6, 0.3, 0.15, 0.07]), delta=0.1, floor=0.0)
    assert early[0, 1] > 0.8  # entropy stopped falling at block 2: sigmoid((0.1 - 0.017) / 0.05) = 0.84
    assert late[0, -1] > 0.9  # entropy kept halving: the last exit answers


def test_loss_is_the_weighted_sum_of_exit_cross_entropies():
    torch.manual_seed(0)
    lg = [torch.randn(5, 3) for _ in range(3)]
    y = torch.randint(0, 3, (5,))
    ce = torch.stack([F.cross_entropy(x, y, reduction="none") for x in lg], 1)
    for kind in ("uniform", "depth_weighted", "final", "soft_routing"):
        w = exit_weights(kind, lg)
        assert torch.allclose(exit_loss(kind, lg, y), (w * ce).sum(1).mean())
    with pytest.raises(ValueError, match="unknown exit loss"):
        exit_weights("nope", lg)


def test_soft_routing_weights_carry_no_gradient():
    """The routing weights choose which exits a sample's loss trains; gradient reaches each
    exit only through its own loss term (weighted), never through the entropies (issue 13:
    with it, the model kept exit 1 uncertain)."""
    torch.manual_seed(0)
    lg = [torch.randn(4, 2, requires_grad=True) for _ in range(3)]
    assert not exit_weights("soft_routing", lg).requires_grad
    y = torch.randint(0, 2, (4,))
    exit_loss("soft_routing", lg, y).backward()
    w = exit_weights("soft_routing", [x.detach() for x in lg])
    for i, x in enumerate(lg):  # d/dx_i of mean_n w[n, i] * CE(x_i[n])
        xi = x.detach().requires_grad_(True)
        (w[:, i] * F.cross_entropy(xi, y, reduction="none")).mean().backward()
        assert torch.allclose(x.grad, xi.grad, atol=1e-6)
    assert entropy(lg[0]).shape == (4,)


def test_soft_routing_with_a_sharp_sigmoid_routes_where_the_exit_rule_exits():
    """The loss's r_i is the rule's (one fractional-entropy function): with tau -> 0 and no
    floor, each sample's weight sits on the exit the rule picks."""
    from beexbench.models.exits import FractionalEntropy, simulate

    g = torch.Generator().manual_seed(5)
    lg = [torch.randn(64, 3, generator=g) * s for s in (0.5, 1.0, 1.5, 2.0)]
    for delta in (0.05, 0.2, 0.5):
        w = exit_weights("soft_routing", lg, delta=delta, tau=1e-6, floor=0.0, min_exit=2)
        rule = simulate(FractionalEntropy(delta, min_exit=2, answer="current"), lg)
        assert torch.equal(w.argmax(1) + 1, rule.exit_block)
