"""Building blocks shared by our 3-D networks (normalisation, in-plane periodic convolutions, residual blocks).

In-plane periodic padding
-------------------------
A film is statistically homogeneous in its plane (x, y) and bounded by its
electrodes along z. Networks built with ``in_plane_padding = "periodic"`` pad x
and y circularly and z with zeros, so a fully convolutional network trained on
periodic films of one in-plane size generates seamless periodic films of any
other (a multiple of its stride): with circular padding and GroupNorm, tiling
the input tiles the output exactly (``tests/models/test_layers.py``).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _triple

#: In-plane padding of the convolutions: zeros (MicroGen3D's and the first models') or periodic in x and y.
InPlanePadding = Literal["zeros", "periodic"]


class PlanePeriodicConv3d(nn.Conv3d):
    """``nn.Conv3d`` whose padding wraps around x and y (circular) and is zero along z.

    Same parameters (and state-dict keys) as :class:`torch.nn.Conv3d`; ``padding`` gives the
    per-axis amounts ``(px, py, pz)`` (or one int).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, **kwargs) -> None:
        px, py, pz = _triple(padding)
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=(0, 0, pz), **kwargs)
        self.plane_padding = (px, py)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (B, C_in, X, Y, Z) -> (B, C_out, X', Y', Z')."""
        px, py = self.plane_padding
        if px or py:
            x = F.pad(x, (0, 0, py, py, px, px), mode="circular")
        return super().forward(x)


class PlanePeriodicConvTranspose3d(nn.ConvTranspose3d):
    """``nn.ConvTranspose3d`` that treats x and y as periodic (z as in the plain layer).

    The input is padded circularly by ``q = ceil(k / s)`` cells in x and y and the
    extra ``q s`` output cells on each side are cropped, which gives exactly the
    transposed convolution of the periodic signal. Same parameters as the plain layer.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, **kwargs) -> None:
        k, s, p = _triple(kernel_size), _triple(stride), _triple(padding)
        self.wrap = (math.ceil(k[0] / s[0]), math.ceil(k[1] / s[1]))
        crop = (p[0] + self.wrap[0] * s[0], p[1] + self.wrap[1] * s[1], p[2])
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=crop, **kwargs)

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:  # noqa: D401
        """``x``: (B, C_in, X, Y, Z) -> (B, C_out, X', Y', Z')."""
        qx, qy = self.wrap
        return super().forward(F.pad(x, (0, 0, qy, qy, qx, qx), mode="circular"))


def conv3d(in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, *, in_plane: InPlanePadding = "zeros") -> nn.Conv3d:
    """A 3-D convolution with zero padding, or periodic in-plane padding (:class:`PlanePeriodicConv3d`)."""
    cls = PlanePeriodicConv3d if in_plane == "periodic" else nn.Conv3d
    return cls(in_channels, out_channels, kernel_size, stride=stride, padding=padding)


def conv_transpose3d(in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, *,
                     in_plane: InPlanePadding = "zeros") -> nn.ConvTranspose3d:
    """A 3-D transposed convolution, plain or periodic in-plane (:class:`PlanePeriodicConvTranspose3d`)."""
    cls = PlanePeriodicConvTranspose3d if in_plane == "periodic" else nn.ConvTranspose3d
    return cls(in_channels, out_channels, kernel_size, stride=stride, padding=padding)


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
    in_plane
        Padding of the 3x3x3 convolutions in x and y: ``"zeros"`` or ``"periodic"``.
    """

    def __init__(self, in_channels: int, out_channels: int | None = None, embed_dim: int = 0, *,
                 in_plane: InPlanePadding = "zeros") -> None:
        super().__init__()
        out_channels = out_channels or in_channels
        self.norm1 = group_norm(in_channels)
        self.conv1 = conv3d(in_channels, out_channels, 3, padding=1, in_plane=in_plane)
        self.norm2 = group_norm(out_channels)
        self.conv2 = conv3d(out_channels, out_channels, 3, padding=1, in_plane=in_plane)
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
