"""Our latent denoiser: a narrow 3-D UNet with time and context embeddings.

A narrow convolutional UNet (width 32) on the small latent trains far faster on
a CPU than a wide one or an MLP on the flattened latent (see docs/generator.md).
The context (normalised condition vector) and the diffusion time step are
embedded, summed and injected into every residual block as a FiLM scale and
shift. A learned *null* embedding stands for "no condition": it is used for the
unconditional branch of classifier-free guidance (``context=None``) and for the
samples whose condition is dropped during training.
"""

from __future__ import annotations

import torch
from diffusers.models.embeddings import get_timestep_embedding
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from generator.models.layers import InPlanePadding, ResBlock3d, conv3d, group_norm


class LatentUNetConfig(BaseModel):
    """Architecture of :class:`LatentUNet`. ``len(channel_mults) - 1`` stride-2 downsamplings."""

    model_config = ConfigDict(extra="forbid")

    width: int = Field(32, ge=4)
    channel_mults: list[int] = Field(default_factory=lambda: [1, 2], min_length=1)
    res_blocks: int = Field(1, ge=1, description="residual blocks per level")
    embed_mult: int = Field(4, ge=1, description="embedding size = embed_mult * width")
    in_plane_padding: InPlanePadding = Field("zeros", description="zeros, or periodic in x and y (films of any in-plane size)")


class LatentUNet(nn.Module):
    """``eps``/``v``-prediction network ``(x_t (B, C, x, y, z), t (B,), context (B, K) | None) -> (B, C, x, y, z)``.

    Parameters
    ----------
    config
        Widths and depth.
    latent_channels
        ``C``.
    context_dim
        ``K``, the number of condition attributes (0: unconditional).
    """

    def __init__(self, config: LatentUNetConfig, latent_channels: int, context_dim: int) -> None:
        super().__init__()
        self.config = config
        self.context_dim = context_dim
        w = config.width
        emb = config.embed_mult * w
        self.time_embed = nn.Sequential(nn.Linear(w, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.context_embed = (
            nn.Sequential(nn.Linear(context_dim, emb), nn.SiLU(), nn.Linear(emb, emb)) if context_dim else None
        )
        self.null_context = nn.Parameter(torch.zeros(emb))
        pad = config.in_plane_padding
        self.conv_in = conv3d(latent_channels, w, 3, padding=1, in_plane=pad)

        chans = [w * m for m in config.channel_mults]
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skips = [w]
        prev = w
        for level, ch in enumerate(chans):
            blocks = nn.ModuleList()
            for _ in range(config.res_blocks):
                blocks.append(ResBlock3d(prev, ch, emb, in_plane=pad))
                prev = ch
                skips.append(ch)
            self.down.append(blocks)
            last = level == len(chans) - 1
            self.downsample.append(nn.Identity() if last else conv3d(ch, ch, 3, stride=2, padding=1, in_plane=pad))
            if not last:
                skips.append(ch)
        self.mid = nn.ModuleList([ResBlock3d(prev, prev, emb, in_plane=pad), ResBlock3d(prev, prev, emb, in_plane=pad)])
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level, ch in reversed(list(enumerate(chans))):
            blocks = nn.ModuleList()
            for _ in range(config.res_blocks + 1):
                blocks.append(ResBlock3d(prev + skips.pop(), ch, emb, in_plane=pad))
                prev = ch
            self.up.append(blocks)
            self.upsample.append(
                nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), conv3d(ch, ch, 3, padding=1, in_plane=pad))
                if level > 0
                else nn.Identity()
            )
        self.out = nn.Sequential(group_norm(prev), nn.SiLU(), conv3d(prev, latent_channels, 3, padding=1, in_plane=pad))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def embed(self, t: torch.Tensor, context: torch.Tensor | None, drop: torch.Tensor | None = None) -> torch.Tensor:
        """Summed time and context embedding ``(B, E)``; ``drop`` (B,) bool replaces a sample's context by the null embedding."""
        temb = self.time_embed(get_timestep_embedding(t, self.config.width, flip_sin_to_cos=True, downscale_freq_shift=0))
        null = self.null_context.expand_as(temb)
        if context is None or self.context_embed is None:
            return temb + null
        cemb = self.context_embed(context.to(temb.dtype))
        if drop is not None:
            cemb = torch.where(drop[:, None], null, cemb)
        return temb + cemb

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None = None, drop: torch.Tensor | None = None) -> torch.Tensor:
        """Model output (``eps`` or ``v``) of the same shape as ``x``."""
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        emb = self.embed(t, context, drop)
        h = self.conv_in(x)
        hs = [h]
        for blocks, down in zip(self.down, self.downsample):
            for block in blocks:
                h = block(h, emb)
                hs.append(h)
            if not isinstance(down, nn.Identity):
                h = down(h)
                hs.append(h)
        for block in self.mid:
            h = block(h, emb)
        for blocks, up in zip(self.up, self.upsample):
            for block in blocks:
                h = block(torch.cat([h, hs.pop()], dim=1), emb)
            h = up(h)
        return self.out(h)
