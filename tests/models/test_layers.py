"""In-plane periodic convolutions: exact periodic results, and networks that tile without seams."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from generator.models import VAE, FeaturePredictor, FeaturePredictorConfig, LatentUNet, LatentUNetConfig, VAEConfig
from generator.models.layers import PlanePeriodicConv3d, PlanePeriodicConvTranspose3d


def _periodic_reference(layer: nn.Module, x: torch.Tensor, tiles: int = 3) -> torch.Tensor:
    """The layer applied to the input tiled 3x3 in-plane (zero padding), middle tile cut out: the periodic answer."""
    big = x.repeat(1, 1, tiles, tiles, 1)
    out = layer(big)
    sx, sy = out.shape[2] // tiles, out.shape[3] // tiles
    return out[:, :, sx:2 * sx, sy:2 * sy]


@pytest.mark.parametrize("kernel, stride, padding", [(3, 1, 1), (4, 2, 1), (3, 2, 1), (1, 1, 0)])
def test_periodic_conv_equals_the_convolution_of_the_tiled_signal(kernel, stride, padding):
    torch.manual_seed(0)
    periodic = PlanePeriodicConv3d(3, 5, kernel, stride=stride, padding=padding)
    plain = nn.Conv3d(3, 5, kernel, stride=stride, padding=padding)
    plain.load_state_dict(periodic.state_dict())
    x = torch.randn(2, 3, 8, 12, 6)
    out = periodic(x)
    assert out.shape == plain(x).shape
    torch.testing.assert_close(out, _periodic_reference(plain, x), rtol=1e-5, atol=1e-5)
    if padding:  # the in-plane edges differ from the zero-padded layer's
        assert not torch.allclose(out, plain(x))


def test_periodic_transposed_conv_equals_the_transposed_convolution_of_the_tiled_signal():
    torch.manual_seed(1)
    periodic = PlanePeriodicConvTranspose3d(4, 2, 4, stride=2, padding=1)
    plain = nn.ConvTranspose3d(4, 2, 4, stride=2, padding=1)
    plain.load_state_dict(periodic.state_dict())
    x = torch.randn(1, 4, 5, 6, 3)
    out = periodic(x)
    assert out.shape == (1, 2, 10, 12, 6)
    torch.testing.assert_close(out, _periodic_reference(plain, x), rtol=1e-5, atol=1e-5)


def _tile(x: torch.Tensor) -> torch.Tensor:
    return x.repeat(1, 1, 2, 2, 1)


def test_periodic_vae_tiles_without_seams():
    torch.manual_seed(2)
    vae = VAE(VAEConfig(widths=[4, 8], latent_channels=2, in_plane_padding="periodic")).eval()
    grey = (torch.rand(1, 1, 16, 16, 8) > 0.5).float()
    with torch.no_grad():
        mu, _ = vae.encode(grey)
        mu_big, _ = vae.encode(_tile(grey))
        torch.testing.assert_close(mu_big, _tile(mu), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(vae.decode(_tile(mu)), _tile(vae.decode(mu)), rtol=1e-4, atol=1e-5)
        # shifting the film by one stride shifts the latent by one cell
        shifted, _ = vae.encode(torch.roll(grey, shifts=(4, -4), dims=(2, 3)))
        torch.testing.assert_close(shifted, torch.roll(mu, shifts=(1, -1), dims=(2, 3)), rtol=1e-4, atol=1e-5)


def test_zero_padded_vae_has_seams():
    torch.manual_seed(2)
    vae = VAE(VAEConfig(widths=[4, 8], latent_channels=2)).eval()
    grey = (torch.rand(1, 1, 16, 16, 8) > 0.5).float()
    with torch.no_grad():
        mu, _ = vae.encode(grey)
        assert not torch.allclose(vae.encode(_tile(grey))[0], _tile(mu), atol=1e-3)


def test_periodic_unet_and_feature_predictor_tile_without_seams():
    torch.manual_seed(3)
    unet = LatentUNet(LatentUNetConfig(width=8, channel_mults=[1, 2, 2], in_plane_padding="periodic"), 2, 3).eval()
    fp = FeaturePredictor(FeaturePredictorConfig(conv_channels=[8], hidden=[8], in_plane_padding="periodic"), (2, 4, 4, 4), 3).eval()
    z = torch.randn(1, 2, 4, 4, 4)
    t = torch.tensor([500])
    context = torch.randn(1, 3)
    with torch.no_grad():
        torch.testing.assert_close(unet(_tile(z), t, context), _tile(unet(z, t, context)), rtol=1e-4, atol=1e-5)
        # the pooled features of a tiled latent are those of the tile: the same prediction at any size
        torch.testing.assert_close(fp(_tile(z)), fp(z), rtol=1e-4, atol=1e-5)
