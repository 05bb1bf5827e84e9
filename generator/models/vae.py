"""Our 3-D convolutional variational auto-encoder for two- and three-phase voxel volumes.

Phase encoding
--------------
* **Two-phase**: one input channel holding the grey level (donor 0, acceptor 1);
  the decoder outputs one logit per voxel, ``sigmoid(logit)`` is the acceptor
  probability and the label is ``sigmoid > 0.5`` (1 acceptor, 0 donor).
  Loss: binary cross-entropy.
* **Three-phase**: three one-hot input channels in label order (donor,
  acceptor, mixed); the decoder outputs three logits per voxel, ``softmax`` gives
  the phase probabilities and the label is their ``argmax``. Loss: cross-entropy.
  One-hot channels (rather than one grey channel thresholded at 0.25/0.75) keep
  the three phases equidistant, so the decoder never has to pass through
  "mixed" to get from donor to acceptor, and every decoded voxel maps to a valid
  label by construction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from generator.models.layers import InPlanePadding, ResBlock3d, conv3d, conv_transpose3d, group_norm

#: Label of each rounded grey index ``round(2 * grey)``: 0 -> donor 0, 1 -> mixed 2, 2 -> acceptor 1.
_GREY_INDEX_TO_LABEL = torch.tensor([0, 2, 1])


class VAEConfig(BaseModel):
    """Architecture of :class:`VAE`.

    ``widths`` holds one entry per stride-2 downsampling stage, so the latent is
    ``2 ** len(widths)`` times smaller than the volume along each axis.
    """

    model_config = ConfigDict(extra="forbid")

    n_phases: int = Field(2, ge=2, le=3)
    widths: list[int] = Field(default_factory=lambda: [16, 32], min_length=1)
    res_blocks: int = Field(1, ge=0, description="residual blocks per stage")
    latent_channels: int = Field(4, ge=1)
    kl_weight: float = Field(1e-3, ge=0.0)
    in_plane_padding: InPlanePadding = Field(
        "zeros", description="zeros, or periodic in x and y (films: any in-plane size, no seams; see generator.models.layers)"
    )

    @field_validator("widths")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(w < 1 for w in value):
            raise ValueError("all widths must be >= 1")
        return value

    @property
    def channels(self) -> int:
        """Input and output channels: 1 (grey, two-phase) or 3 (one-hot, three-phase)."""
        return 1 if self.n_phases == 2 else 3

    @property
    def downsampling(self) -> int:
        """Factor by which each spatial axis shrinks from volume to latent."""
        return 2 ** len(self.widths)

    def latent_shape(self, volume_shape: tuple[int, int, int]) -> tuple[int, int, int, int]:
        """Latent shape ``(C, x, y, z)`` of a volume ``(X, Y, Z)``; each axis must be divisible by :attr:`downsampling`."""
        f = self.downsampling
        for axis, size in zip("XYZ", volume_shape):
            if size % f:
                raise ValueError(f"volume axis {axis}={size} is not divisible by the VAE downsampling factor {f}")
        return (self.latent_channels, *(s // f for s in volume_shape))


class VAE(nn.Module):
    """3-D convolutional VAE: ``len(widths)`` stride-2 stages down to a ``latent_channels`` latent and back."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        w = config.widths
        pad = config.in_plane_padding
        enc: list[nn.Module] = []
        prev = config.channels
        for width in w:
            # An early stride-2 (k4, s2) convolution: it halves every axis before any
            # full-resolution 3x3x3 work, the main cost of a 3-D conv net on CPU.
            enc.append(conv3d(prev, width, 4, stride=2, padding=1, in_plane=pad))
            enc.extend(ResBlock3d(width, in_plane=pad) for _ in range(config.res_blocks))
            prev = width
        enc += [group_norm(prev), nn.SiLU(), nn.Conv3d(prev, 2 * config.latent_channels, 1)]
        self.encoder = nn.Sequential(*enc)

        dec: list[nn.Module] = [nn.Conv3d(config.latent_channels, w[-1], 1)]
        for i in reversed(range(1, len(w))):
            dec.extend(ResBlock3d(w[i], in_plane=pad) for _ in range(config.res_blocks))
            dec.append(conv_transpose3d(w[i], w[i - 1], 4, stride=2, padding=1, in_plane=pad))
        dec.extend(ResBlock3d(w[0], in_plane=pad) for _ in range(config.res_blocks))
        # The output layer is itself the last (transposed, k4 s2) upsampling: no
        # convolution runs at full resolution, where a 3x3x3 conv to 1-3 channels
        # is the slowest op of the whole VAE on CPU (its backward above all).
        dec += [group_norm(w[0]), nn.SiLU(), conv_transpose3d(w[0], config.channels, 4, stride=2, padding=1, in_plane=pad)]
        self.decoder = nn.Sequential(*dec)

    # --- phase encoding -------------------------------------------------------------
    def grey_to_input(self, grey: torch.Tensor) -> torch.Tensor:
        """Network input from grey levels ``(B, 1, X, Y, Z)``: the grey channel (two-phase) or one-hot (three-phase)."""
        if self.config.n_phases == 2:
            return grey.float()
        labels = grey_to_labels_torch(grey[:, 0], 3)
        return F.one_hot(labels.long(), 3).permute(0, 4, 1, 2, 3).float()

    def logits_to_labels(self, logits: torch.Tensor) -> torch.Tensor:
        """``uint8`` labels ``(B, X, Y, Z)`` (0 donor, 1 acceptor, 2 mixed) from decoder logits ``(B, C, X, Y, Z)``."""
        if self.config.n_phases == 2:
            return (logits[:, 0] > 0).to(torch.uint8)
        return logits.argmax(dim=1).to(torch.uint8)

    def reconstruction_loss(self, logits: torch.Tensor, grey: torch.Tensor) -> torch.Tensor:
        """Mean per-voxel BCE (two-phase) or cross-entropy (three-phase) against grey levels ``(B, 1, X, Y, Z)``."""
        if self.config.n_phases == 2:
            return F.binary_cross_entropy_with_logits(logits, grey.float())
        return F.cross_entropy(logits, grey_to_labels_torch(grey[:, 0], 3).long())

    # --- networks ---------------------------------------------------------------------
    def encode(self, grey: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance, each ``(B, latent_channels, x, y, z)``, of grey volumes ``(B, 1, X, Y, Z)``."""
        mu, logvar = self.encoder(self.grey_to_input(grey)).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder logits ``(B, C, X, Y, Z)`` of latents ``(B, latent_channels, x, y, z)``."""
        return self.decoder(z)

    def forward(self, grey: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode, sample ``z = mu + sigma * eps`` and decode. Returns ``(logits, mu, logvar)``."""
        mu, logvar = self.encode(grey)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + torch.exp(0.5 * logvar) * eps
        return self.decode(z), mu, logvar

    def loss(self, grey: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training loss of a batch of grey volumes: ``{"loss", "reconstruction", "kl", "accuracy"}``.

        The KL term is the mean over latent elements of ``KL(q(z|x) || N(0, I))``,
        weighted by ``kl_weight``.
        """
        logits, mu, logvar = self(grey)
        rec = self.reconstruction_loss(logits, grey)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).mean()
        with torch.no_grad():
            labels = grey_to_labels_torch(grey[:, 0], self.config.n_phases)
            accuracy = (self.logits_to_labels(logits) == labels).float().mean()
        return {"loss": rec + self.config.kl_weight * kl, "reconstruction": rec, "kl": kl, "accuracy": accuracy}


def grey_to_labels_torch(grey: torch.Tensor, n_phases: int) -> torch.Tensor:
    """``uint8`` labels from grey levels (torch twin of :func:`generator.physics.labels.grey_to_labels`).

    Two-phase: ``grey > 0.5`` is acceptor (1). Three-phase: the nearest of
    donor 0.0, mixed 0.5, acceptor 1.0.
    """
    if n_phases == 2:
        return (grey > 0.5).to(torch.uint8)
    index = torch.round(grey.clamp(0.0, 1.0) * 2).long()
    return _GREY_INDEX_TO_LABEL.to(grey.device)[index].to(torch.uint8)
