import pytest
import torch

from gancore.losses import ADVERSARIAL_LOSSES, adversarial_losses

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
