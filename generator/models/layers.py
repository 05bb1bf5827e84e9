"""Building blocks shared by our 3-D networks (normalisation, residual blocks)."""

from __future__ import annotations

import torch
from torch import nn


def group_norm(channels: int, max_groups: int = 8) -> nn.GroupNorm:
    """GroupNorm with the largest number of groups ``<= max_groups`` that divides ``channels``."""
    groups = next(g for g in range(min(max_groups, channels), 0, -1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


class ResBlock3d(nn.Module):
    """Pre-activation residual block ``x + conv(silu(norm(conv(silu(norm(x))))))`` with an optional
    FiLM modulation (scale and shift) from an embedding vector.

    Parameters
    ----------
    in_channels, out_channels
        Channels of the input and output; a 1x1x1 convolution maps the skip when they differ.
    embed_dim
        Size of the embedding vector (time + context) or ``0`` for none.
    """

    def __init__(self, in_channels: int, out_channels: int | None = None, embed_dim: int = 0) -> None:
        super().__init__()
        out_channels = out_channels or in_channels
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv3d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.conv2 = nn.Conv3d(out_channels, out_channels, 3, padding=1)
        self.act = nn.SiLU()
        self.film = nn.Linear(embed_dim, 2 * out_channels) if embed_dim else None
        self.skip = nn.Conv3d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: (B, C_in, X, Y, Z); ``emb``: (B, embed_dim) or None. Returns (B, C_out, X, Y, Z)."""
        h = self.conv1(self.act(self.norm1(x)))
        h = self.norm2(h)
        if self.film is not None and emb is not None:
            scale, shift = self.film(emb)[:, :, None, None, None].chunk(2, dim=1)
            h = h * (1 + scale) + shift
        h = self.conv2(self.act(h))
        return self.skip(x) + h
