"""Latent UNet: shapes, null context and condition dropout."""

from __future__ import annotations

import pytest
import torch

from generator.models import LatentUNet, LatentUNetConfig


def _unet(context_dim: int = 3, mults=(1, 2)) -> LatentUNet:
    torch.manual_seed(0)
    net = LatentUNet(LatentUNetConfig(width=8, channel_mults=list(mults)), 4, context_dim)
    torch.nn.init.normal_(net.out[-1].weight, std=0.1)  # the output layer starts at zero
    return net.eval()


@pytest.mark.parametrize("mults", [(1,), (1, 2), (1, 2, 2)])
def test_output_shape(mults):
    net = _unet(mults=mults)
    x = torch.randn(3, 4, 8, 8, 4)
    assert net(x, torch.tensor([0, 500, 999]), torch.randn(3, 3)).shape == x.shape


def test_context_and_null_context():
    net = _unet()
    x, t, c = torch.randn(2, 4, 8, 8, 4), torch.tensor([10, 700]), torch.randn(2, 3)
    with torch.no_grad():
        cond = net(x, t, c)
        uncond = net(x, t, None)
        dropped = net(x, t, c, torch.tensor([True, False]))
        other = net(x, t, c + 1.0)
    assert not torch.allclose(cond, other)  # the condition matters
    torch.testing.assert_close(dropped[0], uncond[0])  # a dropped condition is the null one
    torch.testing.assert_close(dropped[1], cond[1])
    assert not torch.allclose(cond, uncond)


def test_time_step_matters():
    net = _unet()
    x, c = torch.randn(1, 4, 8, 8, 4), torch.randn(1, 3)
    with torch.no_grad():
        assert not torch.allclose(net(x, torch.tensor([1]), c), net(x, torch.tensor([900]), c))
