"""Feature predictor: an MLP from the latent to descriptors and recipe attributes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from generator.models.layers import InPlanePadding, conv3d


class FeaturePredictorConfig(BaseModel):
    """Architecture of :class:`FeaturePredictor`.

    ``conv_channels`` empty: an MLP on the flattened latent. Non-empty: 3x3x3
    convolutions with these widths, then the per-channel mean and standard
    deviation over the latent grid feed the MLP. Descriptors are mostly global
    averages, and this translation-invariant front end generalises to held-out
    series far better (validation R^2 0.70 vs 0.16 averaged over the 2-phase
    attributes of the ``small`` dataset; interface area 0.98 vs -0.49).
    """

    model_config = ConfigDict(extra="forbid")

    hidden: list[int] = Field(default_factory=lambda: [256, 128])
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    conv_channels: list[int] = Field(default_factory=list)
    in_plane_padding: InPlanePadding = Field("zeros", description="padding of the convolutions in x and y: zeros or periodic")


class FeaturePredictor(nn.Module):
    """MLP ``latent (B, C, x, y, z) -> attributes (B, A)`` with stored target normalisation.

    The network predicts *normalised* targets ``(y - mean) / std``;
    :meth:`predict` returns raw units. ``mean`` and ``std`` are buffers, so they
    travel with the state dict.

    Parameters
    ----------
    config
        Hidden widths and dropout.
    latent_shape
        ``(C, x, y, z)`` of the latent.
    n_attributes
        Number of outputs ``A``.
    """

    def __init__(self, config: FeaturePredictorConfig, latent_shape: Sequence[int], n_attributes: int) -> None:
        super().__init__()
        self.config = config
        convs: list[nn.Module] = []
        prev = int(latent_shape[0])
        for width in config.conv_channels:
            convs += [conv3d(prev, width, 3, padding=1, in_plane=config.in_plane_padding), nn.SiLU()]
            prev = width
        self.conv = nn.Sequential(*convs) if convs else None
        n_in = 2 * prev if convs else int(np.prod(latent_shape))
        layers: list[nn.Module] = [nn.Flatten()]
        for width in config.hidden:
            layers += [nn.Linear(n_in, width), nn.LayerNorm(width), nn.SiLU(), nn.Dropout(config.dropout)]
            n_in = width
        layers.append(nn.Linear(n_in, n_attributes))
        self.net = nn.Sequential(*layers)
        self.register_buffer("mean", torch.zeros(n_attributes))
        self.register_buffer("std", torch.ones(n_attributes))

    def set_normalisation(self, targets: torch.Tensor) -> None:
        """Store per-attribute mean and standard deviation of raw training targets ``(N, A)``.

        A constant attribute gets ``std = 1`` so that normalising never divides by zero.
        """
        std = targets.std(dim=0)
        self.mean.copy_(targets.mean(dim=0))
        self.std.copy_(torch.where(std > 1e-8, std, torch.ones_like(std)))

    def normalise(self, targets: torch.Tensor) -> torch.Tensor:
        """Raw targets ``(B, A)`` to normalised ones."""
        return (targets - self.mean) / self.std

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """Normalised predictions ``(B, A)`` of latents ``(B, C, x, y, z)``."""
        if self.conv is not None:
            h = self.conv(latent)
            # periodic models: the population std, so that a film tiled in-plane gives the same features at any size
            correction = 0 if self.config.in_plane_padding == "periodic" else 1
            latent = torch.cat([h.mean(dim=(2, 3, 4)), h.std(dim=(2, 3, 4), correction=correction)], dim=1)
        return self.net(latent)

    def predict(self, latent: torch.Tensor) -> torch.Tensor:
        """Predictions in raw units ``(B, A)``."""
        return self(latent) * self.std + self.mean
