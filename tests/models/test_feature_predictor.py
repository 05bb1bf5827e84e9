"""Feature predictor: target normalisation and raw-unit predictions."""

from __future__ import annotations

import pytest
import torch

from generator.models import FeaturePredictor, FeaturePredictorConfig


def _fp(n_attributes: int = 3, conv: list[int] | None = None) -> FeaturePredictor:
    return FeaturePredictor(FeaturePredictorConfig(hidden=[16], dropout=0.0, conv_channels=conv or []), (2, 4, 4, 2), n_attributes)


def test_normalisation_statistics():
    torch.manual_seed(0)
    targets = torch.stack([torch.randn(50) * 3 + 10, torch.rand(50), torch.full((50,), 7.0)], dim=1)
    fp = _fp()
    fp.set_normalisation(targets)
    norm = fp.normalise(targets)
    torch.testing.assert_close(norm[:, :2].mean(dim=0), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(norm[:, :2].std(dim=0), torch.ones(2), atol=1e-5, rtol=0)
    assert fp.std[2] == 1.0 and torch.all(norm[:, 2] == 0)  # a constant attribute never divides by zero
    assert set(fp.state_dict()) >= {"mean", "std"}  # the statistics travel with the weights


@pytest.mark.parametrize("conv", [None, [8, 8]])
def test_predict_is_raw_units(conv):
    fp = _fp(conv=conv).eval()
    fp.set_normalisation(torch.tensor([[0.0, 100.0, -5.0], [2.0, 300.0, 5.0]]))
    z = torch.randn(4, 2, 4, 4, 2)
    torch.testing.assert_close(fp.predict(z), fp(z) * fp.std + fp.mean)
    assert fp.predict(z).shape == (4, 3)


@pytest.mark.parametrize("conv", [None, [8]])
def test_learns_a_global_target(conv):
    torch.manual_seed(0)
    z = torch.randn(128, 2, 4, 4, 2)
    y = torch.stack([z.mean(dim=(1, 2, 3, 4)) * 50 + 3, z[:, 0].pow(2).mean(dim=(1, 2, 3))], dim=1)
    fp = _fp(2, conv)
    fp.set_normalisation(y)
    opt = torch.optim.Adam(fp.parameters(), lr=1e-2)
    for _ in range(200):
        loss = (fp(z) - fp.normalise(y)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    fp.eval()
    r2 = 1 - (fp.predict(z) - y).pow(2).mean(dim=0) / y.var(dim=0)
    assert torch.all(r2 > 0.9)
