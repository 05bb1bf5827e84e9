"""Our VAE: shapes, phase encodings, and a reconstruction round trip on the tiny dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generator.data.dataset import MicrostructureDataset
from generator.models import VAE, VAEConfig
from generator.models.vae import grey_to_labels_torch
from generator.physics.labels import grey_to_labels, labels_to_grey


@pytest.mark.parametrize("n_phases", [2, 3])
def test_shapes(n_phases):
    vae = VAE(VAEConfig(n_phases=n_phases, widths=[4, 8, 8], latent_channels=3))
    grey = torch.rand(2, 1, 32, 32, 16)
    logits, mu, logvar = vae(grey)
    assert mu.shape == logvar.shape == (2, 3, 4, 4, 2)
    assert vae.config.latent_shape((32, 32, 16)) == (3, 4, 4, 2)
    assert logits.shape == (2, 1 if n_phases == 2 else 3, 32, 32, 16)
    labels = vae.logits_to_labels(logits)
    assert labels.dtype == torch.uint8 and labels.shape == (2, 32, 32, 16)
    assert set(labels.unique().tolist()) <= set(range(n_phases))


def test_latent_shape_needs_divisible_axes():
    with pytest.raises(ValueError, match="divisible"):
        VAEConfig(widths=[4, 4, 4]).latent_shape((32, 32, 12))


@pytest.mark.parametrize("n_phases", [2, 3])
def test_grey_to_labels_matches_physics(n_phases):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, n_phases, size=(5, 6, 7)).astype(np.uint8)
    grey = labels_to_grey(labels)
    ours = grey_to_labels_torch(torch.from_numpy(grey), n_phases).numpy()
    np.testing.assert_array_equal(ours, grey_to_labels(grey, n_phases))
    np.testing.assert_array_equal(ours, labels)


def test_three_phase_one_hot_input():
    vae = VAE(VAEConfig(n_phases=3, widths=[4]))
    grey = torch.tensor([0.0, 1.0, 0.5]).view(1, 1, 3, 1, 1).expand(1, 1, 3, 2, 2)
    onehot = vae.grey_to_input(grey)
    assert onehot.shape == (1, 3, 3, 2, 2)
    # donor -> channel 0, acceptor -> channel 1, mixed -> channel 2
    assert onehot[0, :, :, 0, 0].argmax(dim=0).tolist() == [0, 1, 2]
    assert torch.all(onehot.sum(dim=1) == 1)


def test_round_trip_on_tiny_dataset(tiny_bundle, tiny_dataset):
    """The tiny bundle's VAE (trained for seconds) reconstructs the training volumes far above chance."""
    from generator.checkpoint import build_networks, read_bundle

    vae, _, _ = build_networks(read_bundle(tiny_bundle))
    data = MicrostructureDataset(tiny_dataset)
    grey = torch.stack([data[i][0] for i in range(len(data))])
    with torch.no_grad():
        mu, _ = vae.encode(grey)
        labels = vae.logits_to_labels(vae.decode(mu))
    truth = grey_to_labels_torch(grey[:, 0], 2)
    accuracy = (labels == truth).float().mean().item()
    acceptor = truth.float().mean(dim=(1, 2, 3))
    majority = torch.maximum(acceptor, 1 - acceptor).mean().item()  # per-volume best constant guess
    assert accuracy > 0.85 and accuracy > majority + 0.05
