import torch

from beexbench.models.layers import QuantLinear
from beexbench.models.quantizers import WeightBinarizer, hard_sign, row_scale, sign_g, sign_ste

POINTS = torch.tensor([-1.5, -1.0, -0.75, -0.25, 0.0, 0.1, 0.5, 0.9, 1.0, 2.0])


def _grad(fn, x):
    x = x.clone().requires_grad_(True)
    fn(x).sum().backward()
    return x.grad


def test_sign_maps_zero_to_plus_one():
    assert hard_sign(torch.tensor([-2.0, -0.0, 0.0, 3.0])).tolist() == [-1.0, 1.0, 1.0, 1.0]
    assert sign_g(torch.tensor([0.0])).item() == 1.0


def test_g_gradient_is_analytic_derivative_of_piecewise_quadratic():
    # g'(x) = 2 - 2|x| on [-1, 1], 0 outside, by hand at each point
    expected = torch.tensor([0.0, 0.0, 0.5, 1.5, 2.0, 1.8, 1.0, 0.2, 0.0, 0.0])
    assert torch.allclose(_grad(sign_g, POINTS), expected, atol=1e-6)


def test_g_gradient_matches_numerical_derivative_of_g():
    def g(x):
        return torch.where(x < -1, -torch.ones_like(x), torch.where(x < 0, 2 * x + x * x, torch.where(x < 1, 2 * x - x * x, torch.ones_like(x))))

    x = torch.tensor([-0.8, -0.3, 0.2, 0.7], dtype=torch.float64)
    h = 1e-6
    numeric = (g(x + h) - g(x - h)) / (2 * h)
    assert torch.allclose(_grad(sign_g, x), numeric, atol=1e-5)


def test_ste_differs_from_g():
    ste = _grad(sign_ste, POINTS)
    assert ste.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    assert not torch.allclose(ste, _grad(sign_g, POINTS))


def test_binarized_weights_take_two_values_per_row():
    torch.manual_seed(0)
    w = torch.randn(5, 17)
    signs, alpha = WeightBinarizer()(w)
    wb = signs * alpha[:, None]
    for row, a in zip(wb, alpha):
        assert set(row.tolist()) <= {a.item(), -a.item()}
    assert torch.allclose(alpha, w.abs().mean(1))


def test_gradient_flows_through_alpha():
    torch.manual_seed(0)
    lin = QuantLinear(4, 3, bias=False, weight_bits=1, act_bits=32)
    x = torch.randn(2, 4)
    lin(x).sum().backward()
    # d/dW of alpha * (x @ sign(W)^T): the alpha path adds sign(W) * sum(x @ sign(W)^T) / K per row
    w = lin.weight.detach()
    s = hard_sign(w)
    y_sign = x @ s.T  # [2, 3]
    from_alpha = (y_sign.sum(0)[:, None] * s) / w.shape[1]
    from_sign = row_scale(w)[:, None] * (x.sum(0)[None, :]) * torch.clamp(2 - 2 * w.abs(), min=0)
    assert torch.allclose(lin.weight.grad, from_alpha + from_sign, atol=1e-5)


def test_w1a1_layer_is_binary_product_times_alpha():
    torch.manual_seed(1)
    lin = QuantLinear(8, 4, weight_bits=1, act_bits=1, learnable_shift=False)
    x = torch.randn(3, 8)
    expected = (hard_sign(x) @ hard_sign(lin.weight).T) * row_scale(lin.weight) + lin.bias
    assert torch.allclose(lin(x), expected, atol=1e-6)
