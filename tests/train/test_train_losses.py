import pytest
import torch
import torch.nn.functional as F

from gancore.losses import (
    ADVERSARIAL_LOSSES,
    adversarial_losses,
    gradient_penalty,
    penalty_grad_scale,
)

real = torch.tensor([2.0, -1.0, 0.5])
fake = torch.tensor([-3.0, 0.0, 1.5])


def test_adversarial_losses_match_their_formulas():
    sig = torch.sigmoid
    expected = {
        "bce": (-(sig(real).log().mean() + (1 - sig(fake)).log().mean()), -sig(fake).log().mean()),
        "hinge": ((1 - real).clamp(min=0).mean() + (1 + fake).clamp(min=0).mean(), -fake.mean()),
        "lsgan": (0.5 * ((real - 1) ** 2).mean() + 0.5 * (fake ** 2).mean(), 0.5 * ((fake - 1) ** 2).mean()),
        "wasserstein": (fake.mean() - real.mean(), -fake.mean()),
    }
    assert expected.keys() == ADVERSARIAL_LOSSES.keys()
    for kind, (d_want, g_want) in expected.items():
        d_loss, g_loss = adversarial_losses(kind)
        assert torch.allclose(d_loss(real, fake), d_want), kind
        assert torch.allclose(g_loss(fake), g_want), kind


def test_losses_reduce_in_float32_from_bf16_scores():
    d_loss, g_loss = adversarial_losses("bce")
    assert d_loss(real.bfloat16(), fake.bfloat16()).dtype == torch.float32
    assert g_loss(fake.half()).dtype == torch.float32


def test_unknown_loss_names_the_choices():
    with pytest.raises(ValueError, match="hinge"):
        adversarial_losses("wgan")


class Linear(torch.nn.Module):
    """critic(x) = <w, x>: its input gradient is w everywhere, so the penalty is known exactly."""

    def __init__(self, w):
        super().__init__()
        self.w = torch.nn.Parameter(w)

    def forward(self, x):
        return x.flatten(1) @ self.w


def test_penalty_of_a_linear_critic_is_exact_and_differentiable():
    w = torch.tensor([3.0, 4.0, 0.0, 0.0])  # |w| = 5
    critic = Linear(w.clone())
    x_real, x_fake = torch.randn(6, 1, 2, 2), torch.randn(6, 1, 2, 2)
    penalty = gradient_penalty(critic, x_real, x_fake, weight=10.0)
    assert torch.allclose(penalty, torch.tensor(10.0 * (5 - 1) ** 2))
    penalty.backward()
    # d/dw 10 (|w| - 1)^2 = 20 (|w| - 1) w / |w|
    assert torch.allclose(critic.w.grad, 20 * 4 * w / 5)
    zero_centred = gradient_penalty(critic, x_real, x_fake, weight=2.0, center=0.0)
    assert torch.allclose(zero_centred, torch.tensor(2.0 * 25))


def test_penalty_uses_the_given_mixing_weights():
    seen = []

    def critic(x):
        seen.append(x.detach().clone())
        return x.flatten(1).sum(1)

    r, f = torch.zeros(3, 2), torch.ones(3, 2)
    gradient_penalty(critic, r, f, alpha=torch.tensor([0.0, 0.25, 1.0]))
    assert torch.equal(seen[0], torch.tensor([[0.0, 0.0], [0.25, 0.25], [1.0, 1.0]]))
    with pytest.raises(ValueError, match="one weight per sample"):
        gradient_penalty(critic, r, f, alpha=torch.rand(2))
    with pytest.raises(ValueError, match="same shape"):
        gradient_penalty(critic, r, torch.ones(3, 3))


def test_scaled_inner_gradient_gives_the_same_penalty():
    torch.manual_seed(0)
    critic = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    r, f, a = torch.randn(5, 4), torch.randn(5, 4), torch.rand(5)
    plain = gradient_penalty(lambda x: critic(x)[:, 0], r, f, alpha=a)
    with penalty_grad_scale(2.0 ** 12):
        scaled = gradient_penalty(lambda x: critic(x)[:, 0], r, f, alpha=a)
    assert torch.allclose(plain, scaled, rtol=1e-5)


def test_penalty_does_not_backpropagate_into_its_inputs():
    r = torch.randn(4, 3, requires_grad=True)
    f = torch.randn(4, 3, requires_grad=True)
    w = torch.nn.Parameter(torch.randn(3))
    gradient_penalty(lambda x: F.softplus(x @ w), r, f).backward()
    assert r.grad is None and f.grad is None and w.grad is not None
