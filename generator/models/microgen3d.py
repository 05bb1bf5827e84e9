"""Exact replicas of the published MicroGen3D networks (VAE, feature predictor, latent DDPM).

The module and parameter names reproduce the published ``vae.pt``, ``fp.pt``
and ``ddpm.pt`` state dicts key for key and shape for shape, so that those
files load with ``load_state_dict(strict=True)``. Widths are parameters so that
tests can build narrow replicas with the same code paths; the defaults are the
published sizes (VAE 64-128-256-512, DDPM ``n_feat`` 512).

Volumes enter and leave the VAE as ``(B, 1, X, Y, Z)`` grey levels in [0, 1]
(donor 0, mixed 0.5, acceptor 1), the last axis being the film thickness, which
is also MicroGen3D's ``(C, D, H, W)`` layout: no transposition is needed.

See ``docs/microgen3d.md`` for the loader and the sampling-index convention.
"""

from __future__ import annotations

import json
import math
import os
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from generator.descriptors.registry import DESCRIPTORS
from generator.diffusion import NoiseSchedule
from generator.errors import CheckpointError, FileFormatError, InvalidInputError
from generator.io import atomic_path
from generator.models.vae import grey_to_labels_torch

#: Number of diffusion levels of the published schedule.
N_T = 1000
#: Buffers of the published ``LatentDDPM`` (each of length :data:`N_T`), in state-dict order.
SCHEDULE_BUFFERS = ("alpha_t", "oneover_sqrta", "sqrt_beta_t", "alphabar_t", "sqrtab", "sqrtmab", "mab_over_sqrtmab")


@dataclass(frozen=True)
class MicroGen3DKind:
    """What distinguishes the three published models.

    Attributes
    ----------
    name
        ``CH_2phase``, ``CH_3phase`` or ``experimental``.
    volume_shape
        ``(X, Y, Z)`` of the decoded volumes, ``Z`` the film thickness.
    latent_shape
        ``(C, x, y, z)`` of the latents.
    first_stage_stride
        Stride of the VAE's first encoder stage (2 CH, 1 experimental; the
        published flag ``first_layer_downsample`` says the opposite).
    attributes
        The feature predictor's outputs, in order, raw units.
    context_attributes
        The DDPM's condition vector, in order.
    n_phases
        2 or 3 (the CH 3-phase decoder outputs grey levels 0 / 0.5 / 1).
    """

    name: str
    volume_shape: tuple[int, int, int]
    latent_shape: tuple[int, int, int, int]
    first_stage_stride: int
    attributes: tuple[str, ...]
    context_attributes: tuple[str, ...]
    n_phases: int

    @property
    def latent_channels(self) -> int:
        """Channels of the latent (4 CH, 1 experimental)."""
        return self.latent_shape[0]

    @property
    def latent_size(self) -> int:
        """Number of values of one flattened latent (the FP's input size)."""
        return math.prod(self.latent_shape)


_CH_2PHASE_ATTRIBUTES = ("norm_STAT_e", "ABS_wf_D", "ABS_f_D", "DISS_wf10_D", "CT_f_e_conn", "CT_f_D_tort1", "CT_f_A_tort1")
_GRASPI_CONTEXT = ("ABS_f_D", "CT_f_D_tort1", "CT_f_A_tort1")

#: The published kinds by name.
KINDS: dict[str, MicroGen3DKind] = {
    "CH_2phase": MicroGen3DKind("CH_2phase", (128, 128, 64), (4, 8, 8, 4), 2, _CH_2PHASE_ATTRIBUTES, _GRASPI_CONTEXT, 2),
    "CH_3phase": MicroGen3DKind(
        "CH_3phase", (128, 128, 64), (4, 8, 8, 4), 2,
        ("vol_frac_D", "vol_frac_M", "tortuosity_A", "tortuosity_D", "phi", "chi", "log_time"),
        ("vol_frac_D", "vol_frac_M", "tortuosity_A", "tortuosity_D"), 3,
    ),
    "experimental": MicroGen3DKind("experimental", (64, 64, 64), (1, 8, 8, 8), 1, _GRASPI_CONTEXT, _GRASPI_CONTEXT, 2),
}


# ----------------------------------------------------------------------------- VAE

class ResBlock(nn.Module):
    """``relu(x + IN(conv(relu(IN(conv(x))))))`` with affine instance norms (keys ``block.{0,1,3,4}``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv3d(channels, channels, 3, padding=1),
            nn.InstanceNorm3d(channels, affine=True),
            nn.ReLU(),
            nn.Conv3d(channels, channels, 3, padding=1),
            nn.InstanceNorm3d(channels, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (B, C, X, Y, Z) -> same shape."""
        return F.relu(x + self.block(x))


class Encoder(nn.Module):
    """Four ``conv -> instance norm -> residual`` stages, then a 1x1x1 map to the latent and ``mu`` / ``logvar`` heads."""

    def __init__(self, latent_channels: int, widths: Sequence[int] = (64, 128, 256, 512), first_stage_stride: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = 1
        for stage, width in enumerate(widths):
            layers += [
                nn.Conv3d(prev, width, 3, stride=first_stage_stride if stage == 0 else 2, padding=1),
                nn.InstanceNorm3d(width, affine=True),
                ResBlock(width),
            ]
            prev = width
        layers += [nn.Conv3d(prev, latent_channels, 1), nn.InstanceNorm3d(latent_channels, affine=True), ResBlock(latent_channels)]
        self.conv_layers = nn.Sequential(*layers)
        self.conv_mu = nn.Conv3d(latent_channels, latent_channels, 1)
        self.conv_logvar = nn.Conv3d(latent_channels, latent_channels, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x``: (B, 1, X, Y, Z) grey levels -> ``(mu, logvar)``, each (B, C, x, y, z)."""
        h = self.conv_layers(x)
        return self.conv_mu(h), self.conv_logvar(h)


class Decoder(nn.Module):
    """Mirror of :class:`Encoder`: transposed convolutions up to one sigmoid grey-level channel."""

    def __init__(self, latent_channels: int, widths: Sequence[int] = (64, 128, 256, 512), last_stage_stride: int = 2) -> None:
        super().__init__()
        channels = [latent_channels, *reversed(list(widths))]
        self.convs = nn.ModuleList()
        self.instnorms = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for i, (cin, cout) in enumerate(zip(channels[:-1], channels[1:])):
            if i == 0:
                self.convs.append(nn.ConvTranspose3d(cin, cout, 1))
            else:
                self.convs.append(nn.ConvTranspose3d(cin, cout, 3, stride=2, padding=1, output_padding=1))
            self.instnorms.append(nn.InstanceNorm3d(cout, affine=True))
            self.resblocks.append(ResBlock(cout))
        stride = last_stage_stride
        self.final_conv = nn.ConvTranspose3d(channels[-1], 1, 3, stride=stride, padding=1, output_padding=stride - 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``z``: (B, C, x, y, z) -> (B, 1, X, Y, Z) grey levels in (0, 1)."""
        for conv, norm, res in zip(self.convs, self.instnorms, self.resblocks):
            z = res(norm(conv(z)))
        return torch.sigmoid(self.final_conv(z))


class MicroGen3DVAE(nn.Module):
    """The published VAE (keys ``encoder.*``, ``decoder.*``).

    Parameters
    ----------
    latent_channels
        4 (CH) or 1 (experimental).
    widths
        Encoder stage widths (the decoder mirrors them); published ``(64, 128, 256, 512)``.
    first_stage_stride
        2 (CH: 128x128x64 -> 8x8x4) or 1 (experimental: 64^3 -> 8^3); the
        decoder's last stage uses the same stride.
    n_phases
        2 or 3: how :meth:`loss` reads grey levels as phases for its accuracy.

    Attributes
    ----------
    kl_weight : float
        Weight of the KL term of :meth:`loss` (published 1e-6; not part of the state dict).
    """

    def __init__(self, latent_channels: int = 4, widths: Sequence[int] = (64, 128, 256, 512), first_stage_stride: int = 2,
                 n_phases: int = 2) -> None:
        super().__init__()
        self.n_phases = n_phases
        self.kl_weight = 1e-6
        self.encoder = Encoder(latent_channels, widths, first_stage_stride)
        self.decoder = Decoder(latent_channels, widths, first_stage_stride)

    def encode(self, x: torch.Tensor, *, sample: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """Latent of grey volumes ``x`` (B, 1, X, Y, Z): ``mu``, or ``mu + exp(logvar / 2) * eps`` when ``sample``."""
        mu, logvar = self.encoder(x)
        if not sample:
            return mu
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * logvar) * eps

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Grey levels (B, 1, X, Y, Z) in (0, 1) of latents ``z`` (B, C, x, y, z)."""
        return self.decoder(z)

    def loss(self, grey: torch.Tensor) -> dict[str, torch.Tensor]:
        """The published training loss of a batch of grey volumes ``(B, 1, X, Y, Z)``.

        ``loss = MSE(decode(z), grey) + kl_weight * KL``, with ``z`` a posterior
        sample, the MSE the mean over voxels and ``KL(q(z|x) || N(0, I))`` summed
        over the latent elements of each volume and averaged over the batch.

        Returns
        -------
        dict[str, torch.Tensor]
            Scalars ``loss``, ``reconstruction``, ``kl`` and ``accuracy`` (fraction
            of voxels whose phase, :func:`grey_to_labels_torch` of the grey levels, is right).
        """
        mu, logvar = self.encoder(grey)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        recon = self.decoder(z)
        rec = F.mse_loss(recon, grey)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(dim=1).mean()
        with torch.no_grad():
            labels = grey_to_labels_torch(grey[:, 0], self.n_phases)
            accuracy = (grey_to_labels_torch(recon[:, 0], self.n_phases) == labels).float().mean()
        return {"loss": rec + self.kl_weight * kl, "reconstruction": rec, "kl": kl, "accuracy": accuracy}


# ----------------------------------------------------------------------------- feature predictor

class MicroGen3DFeaturePredictor(nn.Module):
    """The published feature predictor (keys ``fc1``, ``fc2``, ``fc3``): latent -> attributes in raw units.

    ``Linear(n, n/2) -> ReLU -> InstanceNorm1d -> Dropout(0.1) -> Linear(n/2, n/4)
    -> ReLU -> InstanceNorm1d -> Dropout -> Linear(n/4, n_attributes)``. The
    published ``InstanceNorm1d`` (no affine) is applied to a 2-D ``(B, F)``
    tensor, which PyTorch treats as one unbatched ``(C, L)`` input: each row is
    normalised over its own features, i.e. a non-affine layer norm, which is
    what :func:`torch.nn.functional.layer_norm` computes here.

    Parameters
    ----------
    n_latent
        Size of the flattened latent (1024 CH, 512 experimental).
    n_attributes
        Number of outputs.
    """

    def __init__(self, n_latent: int, n_attributes: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(n_latent, n_latent // 2)
        self.fc2 = nn.Linear(n_latent // 2, n_latent // 4)
        self.fc3 = nn.Linear(n_latent // 4, n_attributes)
        self.dropout = nn.Dropout(0.1)

    def _norm(self, h: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(h, h.shape[-1:], eps=1e-5)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``z``: (B, C, x, y, z) or (B, n_latent) -> (B, n_attributes)."""
        h = z.flatten(1)
        h = self.dropout(self._norm(F.relu(self.fc1(h))))
        h = self.dropout(self._norm(F.relu(self.fc2(h))))
        return self.fc3(h)


# ----------------------------------------------------------------------------- latent DDPM

class ResidualConvBlock(nn.Module):
    """``(conv3 -> IN -> GELU)`` twice; output ``(x + x2) / 1.414`` (same width) or ``(x1 + x2) / 1.414``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.same_channels = in_channels == out_channels
        self.conv1 = nn.Sequential(nn.Conv3d(in_channels, out_channels, 3, 1, 1), nn.InstanceNorm3d(out_channels), nn.GELU())
        self.conv2 = nn.Sequential(nn.Conv3d(out_channels, out_channels, 3, 1, 1), nn.InstanceNorm3d(out_channels), nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (B, C_in, ...) -> (B, C_out, ...)."""
        x1 = self.conv1(x)
        x2 = self.conv2(x1)
        return ((x if self.same_channels else x1) + x2) / 1.414


class UnetDown(nn.Module):
    """Residual block then ``MaxPool3d(2)`` (keys ``model.0.*``)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(ResidualConvBlock(in_channels, out_channels), nn.MaxPool3d(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Halve each spatial axis."""
        return self.model(x)


class UnetUp(nn.Module):
    """``cat(x, skip)`` -> ``ConvTranspose3d(k2, s2)`` -> two residual blocks."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(
            nn.ConvTranspose3d(in_channels, out_channels, 2, 2),
            ResidualConvBlock(out_channels, out_channels),
            ResidualConvBlock(out_channels, out_channels),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Double each spatial axis of ``cat(x, skip)``."""
        return self.model(torch.cat((x, skip), 1))


class EmbedFC(nn.Module):
    """``Linear -> GELU -> Linear`` embedding of a scalar (time) or a vector (context)."""

    def __init__(self, input_dim: int, emb_dim: int) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.model = nn.Sequential(nn.Linear(input_dim, emb_dim), nn.GELU(), nn.Linear(emb_dim, emb_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (B, input_dim) (or anything with B * input_dim values) -> (B, emb_dim)."""
        return self.model(x.reshape(-1, self.input_dim))


class ContextUNet3D(nn.Module):
    """The published two-level 3-D context UNet (``ContextUnet_3D_2lvls``).

    Parameters
    ----------
    in_channels
        Latent channels (input and output).
    n_feat
        Base width (published 512; must be divisible by 8 for the group norms).
    context_dim
        Length of the condition vector.
    """

    def __init__(self, in_channels: int, n_feat: int = 512, context_dim: int = 3) -> None:
        super().__init__()
        self.n_feat = n_feat
        self.init_conv = ResidualConvBlock(in_channels, n_feat)
        self.down1 = UnetDown(n_feat, n_feat)
        self.down2 = UnetDown(n_feat, 2 * n_feat)
        self.to_vec = nn.Sequential(nn.AvgPool3d(1), nn.GELU())
        self.timeembed1 = EmbedFC(1, 2 * n_feat)
        self.timeembed2 = EmbedFC(1, n_feat)
        self.contextembed1 = EmbedFC(context_dim, 2 * n_feat)
        self.contextembed2 = EmbedFC(context_dim, n_feat)
        self.up0 = nn.Sequential(nn.ConvTranspose3d(2 * n_feat, 2 * n_feat, 1, 1), nn.GroupNorm(8, 2 * n_feat), nn.LeakyReLU(0.2))
        self.up1 = UnetUp(4 * n_feat, n_feat)
        self.up2 = UnetUp(2 * n_feat, n_feat)
        self.out = nn.Sequential(
            nn.Conv3d(2 * n_feat, n_feat, 3, 1, 1),
            nn.GroupNorm(8, n_feat),
            nn.Tanh(),
            nn.Conv3d(n_feat, in_channels, 3, 1, 1),
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Predicted noise.

        Parameters
        ----------
        x
            (B, C, x, y, z) noisy latents; each spatial axis divisible by 4.
        t
            (B,) or (B, 1) diffusion level divided by :data:`N_T` (float).
        context
            (B, context_dim) condition vectors in raw units.

        Returns
        -------
        torch.Tensor
            (B, C, x, y, z).
        """
        x = self.init_conv(x)
        down1 = self.down1(x)
        down2 = self.down2(down1)
        hidden = self.to_vec(down2)
        shape1 = (-1, 2 * self.n_feat, 1, 1, 1)
        shape2 = (-1, self.n_feat, 1, 1, 1)
        t = t.to(x.dtype)
        context = context.to(x.dtype)
        temb1, temb2 = self.timeembed1(t).view(shape1), self.timeembed2(t).view(shape2)
        cemb1, cemb2 = self.contextembed1(context).view(shape1), self.contextembed2(context).view(shape2)
        up1 = self.up0(hidden)
        up2 = self.up1(up1 + temb1 + cemb1, down2)
        up3 = self.up2(up2 + temb2 + cemb2, down1)
        return self.out(torch.cat((up3, x), 1))


def schedule_buffers(n_t: int = N_T) -> dict[str, torch.Tensor]:
    """The published schedule buffers: betas ``linspace(1e-4, 0.02, n_t)`` scaled by ``1000 / n_t``.

    Returns
    -------
    dict[str, torch.Tensor]
        The seven :data:`SCHEDULE_BUFFERS`, each float32 of shape ``(n_t,)``;
        index ``i`` is diffusion level ``i`` (``alphabar_t[i] = prod_{k<=i} alpha_t[k]``).
    """
    scale = 1000 / n_t
    beta = torch.linspace(scale * 1e-4, scale * 0.02, n_t, dtype=torch.float32)
    alpha = 1 - beta
    alphabar = torch.cumsum(torch.log(alpha), dim=0).exp()
    sqrtmab = torch.sqrt(1 - alphabar)
    return {
        "alpha_t": alpha,
        "oneover_sqrta": 1 / torch.sqrt(alpha),
        "sqrt_beta_t": torch.sqrt(beta),
        "alphabar_t": alphabar,
        "sqrtab": torch.sqrt(alphabar),
        "sqrtmab": sqrtmab,
        "mab_over_sqrtmab": (1 - alpha) / sqrtmab,
    }


class MicroGen3DDDPM(nn.Module):
    """The published latent DDPM: the context UNet (keys ``nn_model.*``) and the schedule buffers.

    Parameters
    ----------
    latent_channels, n_feat, context_dim
        See :class:`ContextUNet3D`.
    n_t
        Number of diffusion levels (published 1000).
    """

    def __init__(self, latent_channels: int = 4, n_feat: int = 512, context_dim: int = 3, n_t: int = N_T) -> None:
        super().__init__()
        self.n_t = n_t
        for name, value in schedule_buffers(n_t).items():
            self.register_buffer(name, value)
        self.nn_model = ContextUNet3D(latent_channels, n_feat, context_dim)

    def forward(self, x: torch.Tensor, level: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Predicted noise of latents ``x`` (B, C, ...) at integer diffusion levels ``level`` (B,)."""
        return self.nn_model(x, level.to(x.dtype) / self.n_t, context)


def build_networks(
    kind: str | MicroGen3DKind,
    *,
    vae_widths: Sequence[int] = (64, 128, 256, 512),
    n_feat: int = 512,
) -> tuple[MicroGen3DVAE, MicroGen3DFeaturePredictor, MicroGen3DDDPM]:
    """Randomly initialised replicas of the three networks of ``kind`` (published sizes by default).

    Parameters
    ----------
    kind
        A name of :data:`KINDS` or a :class:`MicroGen3DKind`.
    vae_widths, n_feat
        Narrower widths build a small replica with identical code paths (tests).

    Returns
    -------
    tuple
        ``(vae, fp, ddpm)``.
    """
    spec = KINDS[kind] if isinstance(kind, str) else kind
    vae = MicroGen3DVAE(spec.latent_channels, vae_widths, spec.first_stage_stride, spec.n_phases)
    fp = MicroGen3DFeaturePredictor(spec.latent_size, len(spec.attributes))
    ddpm = MicroGen3DDDPM(spec.latent_channels, n_feat, len(spec.context_attributes))
    return vae, fp, ddpm


# ----------------------------------------------------------------------------- published schedule -> diffusers

def noise_schedule(buffers: dict[str, torch.Tensor]) -> NoiseSchedule:
    """The diffusers :class:`~generator.diffusion.NoiseSchedule` equivalent to the published buffers.

    Index convention: the published model is trained on levels ``i = 1 .. T-1``
    (network input ``i / T``) and samples ``i = T-2 .. 1``, each step
    ``x <- (x - eps (1 - alpha_i) / sqrt(1 - alphabar_i)) / sqrt(alpha_i) + sqrt(beta_i) n``
    with no noise at ``i = 1``. Level 0 (``alphabar_0 = 1 - beta_0``) is its
    data end. Diffusers' timestep ``t`` is therefore level ``i = t + 1``:
    ``T - 1`` training timesteps whose cumulative alphas are ``alphabar_1 ..
    alphabar_{T-1}`` (betas ``1 - alphabar_1, beta_2, ..., beta_{T-1}``),
    ``fixed_large`` variance (``beta_i``), and a final alpha-bar of
    ``alphabar_0`` instead of 1. Then diffusers' DDPM with ``T - 2`` steps runs
    ``t = T-3 .. 0``, i.e. exactly the published ``i = T-2 .. 1`` (noise for
    ``t > 0``), and the denoiser is fed ``(t + 1) / T``.

    Parameters
    ----------
    buffers
        ``alpha_t`` and ``alphabar_t``, each ``(T,)``.

    Returns
    -------
    NoiseSchedule
    """
    alpha = buffers["alpha_t"].double()
    alphabar = buffers["alphabar_t"].double()
    alphas = torch.cat([alphabar[1:2], alpha[2:]])
    return NoiseSchedule(
        num_train_timesteps=int(alpha.numel()) - 1,
        trained_betas=(1.0 - alphas).tolist(),
        variance_type="fixed_large",
        final_alpha_cumprod=float(alphabar[0]),
        prediction_type="epsilon",
    )


def check_schedule_buffers(buffers: dict[str, torch.Tensor], source: str = "ddpm.pt") -> None:
    """Raise :class:`CheckpointError` when the seven schedule buffers do not describe one DDPM schedule.

    Checks ``alphabar_t = cumprod(alpha_t)``, ``sqrt_beta_t**2 = 1 - alpha_t``,
    ``oneover_sqrta``, ``sqrtab``, ``sqrtmab`` and ``mab_over_sqrtmab`` (relative tolerance 1e-4).
    """
    b = {name: buffers[name].double() for name in SCHEDULE_BUFFERS}
    alpha, alphabar = b["alpha_t"], b["alphabar_t"]
    if not (torch.all(alpha > 0) and torch.all(alpha < 1)):
        raise CheckpointError(f"model: {source}: schedule buffer alpha_t must lie in (0, 1)")
    expected = {
        "alphabar_t": torch.cumprod(alpha, 0),
        "sqrt_beta_t": torch.sqrt(1 - alpha),
        "oneover_sqrta": 1 / torch.sqrt(alpha),
        "sqrtab": torch.sqrt(alphabar),
        "sqrtmab": torch.sqrt(1 - alphabar),
        "mab_over_sqrtmab": (1 - alpha) / torch.sqrt(1 - alphabar),
    }
    for name, value in expected.items():
        if not torch.allclose(b[name], value, rtol=1e-4, atol=1e-7):
            raise CheckpointError(f"model: {source}: schedule buffer {name} is inconsistent with alpha_t (not a DDPM schedule)")


# ----------------------------------------------------------------------------- loading the published files

#: File of each network in a MicroGen3D weights folder.
FILES = {"vae": "vae.pt", "fp": "fp.pt", "ddpm": "ddpm.pt"}

#: Valid domain of the context attributes, used as condition ranges (the training table is not published).
#: All are fractions; ``tortuosity_*`` are MicroGen3D's names of ``CT_f_*_tort1`` (see ``generator.descriptors.ALIASES``).
DOMAINS: dict[str, tuple[float, float]] = {
    name: DESCRIPTORS[name].domain
    for name in ("ABS_f_D", "CT_f_D_tort1", "CT_f_A_tort1", "vol_frac_D", "vol_frac_M", "tortuosity_A", "tortuosity_D")
}


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError, OSError) as exc:
        raise FileFormatError(f"model: {path} is not a readable PyTorch state dict ({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise FileFormatError(f"model: {path} is not a plain state dict (a mapping of parameter names to tensors)")
    return state


def state_dict_mismatch(module: nn.Module, state: dict[str, torch.Tensor]) -> str | None:
    """One line naming the first missing, unexpected and mis-shaped keys of ``state`` for ``module``, or ``None``."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} has shape {tuple(state[k].shape)}, expected {tuple(v.shape)}" for k, v in expected.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = []
    if missing:
        problems.append(f"missing key {missing[0]}" + (f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""))
    if unexpected:
        problems.append(f"unexpected key {unexpected[0]}" + (f" (+{len(unexpected) - 1} more)" if len(unexpected) > 1 else ""))
    if wrong:
        problems.append(wrong[0] + (f" (+{len(wrong) - 1} more)" if len(wrong) > 1 else ""))
    return "; ".join(problems) or None


def _matching_kinds(states: dict[str, dict[str, torch.Tensor]], sizes: Mapping[str, object] | None = None) -> list[str]:
    """Kinds whose shapes (published, or ``sizes``) all of ``states`` match (built on the meta device: no memory, no time)."""
    found = []
    for name in KINDS:
        with torch.device("meta"):
            nets = dict(zip(FILES, build_networks(name, **(sizes or {}))))
        if all(state_dict_mismatch(nets[net], states[net]) is None for net in states):
            found.append(name)
    return found


def load_networks(
    folder: str | os.PathLike[str],
    *,
    kind: str,
    vae_widths: Sequence[int] = (64, 128, 256, 512),
    n_feat: int = 512,
) -> tuple[MicroGen3DVAE, MicroGen3DFeaturePredictor, MicroGen3DDDPM]:
    """Load ``vae.pt``, ``fp.pt`` and ``ddpm.pt`` of ``folder`` into replicas of ``kind`` (eval mode, CPU).

    ``vae_widths`` and ``n_feat`` are the published sizes unless a
    ``microgen3d.json`` (:func:`read_metadata`) records others.

    Raises
    ------
    InvalidInputError
        For an unknown ``kind``.
    FileFormatError
        When a file is missing or not a plain state dict.
    CheckpointError
        When keys or shapes do not match ``kind`` (the message names the file,
        the first mismatched key, and the kind the files do match, if any), or
        the schedule buffers are inconsistent.
    """
    if kind not in KINDS:
        raise InvalidInputError(f"kind: a MicroGen3D weights folder needs --kind, one of {', '.join(KINDS)} (got {kind!r})")
    folder = Path(folder)
    if not folder.is_dir():
        raise FileFormatError(f"model: {folder} is not a folder of MicroGen3D weights")
    missing = [name for name in FILES.values() if not (folder / name).is_file()]
    if missing:
        raise FileFormatError(f"model: {folder} lacks {', '.join(missing)} (a MicroGen3D folder holds vae.pt, fp.pt and ddpm.pt)")
    states = {net: _read_state_dict(folder / filename) for net, filename in FILES.items()}
    sizes = {"vae_widths": tuple(vae_widths), "n_feat": int(n_feat)}
    with torch.device("meta"):  # no random initialisation of ~200M parameters: the files supply them
        nets = dict(zip(FILES, build_networks(kind, **sizes)))
    for net, module in nets.items():
        problem = state_dict_mismatch(module, states[net])
        if problem:
            others = [k for k in _matching_kinds(states, sizes) if k != kind]
            hint = f"; the files match kind {others[0]}" if others else ""
            raise CheckpointError(f"model: {folder / FILES[net]} does not match MicroGen3D kind {kind}: {problem}{hint}")
    check_schedule_buffers(states["ddpm"], str(folder / FILES["ddpm"]))
    for net, module in nets.items():
        module.load_state_dict(states[net], assign=True)
        module.eval()
    return nets["vae"], nets["fp"], nets["ddpm"]


def condition_ranges(spec: MicroGen3DKind, table: pd.DataFrame | None) -> dict[str, tuple[float, float]]:
    """Training range (min, max of ``table``) of each context attribute, else its valid domain."""
    ranges = {name: DOMAINS[name] for name in spec.context_attributes if name in DOMAINS}
    if table is not None:
        for name in spec.context_attributes:
            if name in table.columns and np.isfinite(table[name].to_numpy(dtype=np.float64)).any():
                ranges[name] = (float(table[name].min()), float(table[name].max()))
    return ranges


# ----------------------------------------------------------------------------- fine-tuned folders

#: Written beside the three files by ``microdesign train --init-from``: the kind, the network sizes and the provenance.
METADATA = "microgen3d.json"
#: The fine-tuning data's attributes, one row per sample (optional).
DESCRIPTORS = "descriptors.csv"
METADATA_FORMAT = "microdesign-microgen3d"
METADATA_VERSION = 1
PUBLISHED_SIZES: dict[str, object] = {"vae_widths": (64, 128, 256, 512), "n_feat": 512}


def read_metadata(folder: str | os.PathLike[str]) -> dict[str, object] | None:
    """The ``microgen3d.json`` of a fine-tuned folder, checked, or ``None`` for a folder of published files.

    Returns
    -------
    dict or None
        At least ``kind`` (a name of :data:`KINDS`), ``vae_widths`` (4 ints) and ``n_feat`` (int).

    Raises
    ------
    FileFormatError
        When the file is not JSON of this format, or names an unknown kind or invalid sizes.
    """
    path = Path(folder) / METADATA
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise FileFormatError(f"model: {path} is not readable JSON ({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(meta, dict) or meta.get("format") != METADATA_FORMAT:
        raise FileFormatError(f"model: {path} is not a microdesign MicroGen3D metadata file (format {METADATA_FORMAT!r})")
    if meta.get("format_version") != METADATA_VERSION:
        raise FileFormatError(f"model: {path} has format version {meta.get('format_version')}, this toolkit reads {METADATA_VERSION}")
    if meta.get("kind") not in KINDS:
        raise FileFormatError(f"model: {path} names kind {meta.get('kind')!r}, not one of {', '.join(KINDS)}")
    widths, n_feat = meta.get("vae_widths"), meta.get("n_feat")
    if (not isinstance(widths, list) or len(widths) != 4 or not all(isinstance(w, int) and w > 0 for w in widths)
            or not isinstance(n_feat, int) or n_feat <= 0 or n_feat % 8):
        raise FileFormatError(f"model: {path} has invalid network sizes (vae_widths: 4 positive ints, n_feat: a positive multiple of 8)")
    return meta


def resolve_kind(folder: str | os.PathLike[str], kind: str | None) -> tuple[str, dict[str, object] | None]:
    """The kind of a weights folder (``kind``, or its ``microgen3d.json``'s) and that metadata.

    Raises
    ------
    InvalidInputError
        No kind for a folder of published files, an unknown kind, or a ``kind`` other than the metadata's.
    """
    meta = read_metadata(folder)
    if meta is None:
        if kind is None:
            raise InvalidInputError(f"kind: a MicroGen3D weights folder needs --kind, one of {', '.join(KINDS)}")
        if kind not in KINDS:
            raise InvalidInputError(f"kind: a MicroGen3D weights folder needs --kind, one of {', '.join(KINDS)} (got {kind!r})")
        return kind, None
    if kind is not None and kind != meta["kind"]:
        raise InvalidInputError(f"kind: {folder} holds a fine-tuned {meta['kind']} model ({METADATA}), not {kind}")
    return str(meta["kind"]), meta


def read_descriptors(folder: str | os.PathLike[str]) -> pd.DataFrame | None:
    """The ``descriptors.csv`` of a fine-tuned folder, or ``None``."""
    path = Path(folder) / DESCRIPTORS
    if not path.is_file():
        return None
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise FileFormatError(f"model: {path} is not a readable CSV table ({str(exc).splitlines()[0][:120]})") from None
    if "series" in table:
        table["series"] = table["series"].round().astype(np.int64)
    return table


def save_networks(
    folder: str | os.PathLike[str],
    kind: str,
    vae: MicroGen3DVAE,
    fp: MicroGen3DFeaturePredictor,
    ddpm: MicroGen3DDDPM,
    *,
    metadata: Mapping[str, object] | None = None,
    descriptor_table: pd.DataFrame | None = None,
) -> Path:
    """Write ``vae.pt``, ``fp.pt``, ``ddpm.pt`` (plain state dicts, the published layout) and ``microgen3d.json``.

    Every file is written atomically; ``microgen3d.json`` last, so a folder that
    has it is complete. The sizes recorded are read from the networks.

    Parameters
    ----------
    folder
        Output folder (created if needed).
    kind
        A name of :data:`KINDS`.
    vae, fp, ddpm
        The networks (published key layout; any sizes).
    metadata
        Extra JSON-serialisable entries (provenance) for ``microgen3d.json``.
    descriptor_table
        Attributes of the training samples, written as ``descriptors.csv``.

    Returns
    -------
    Path
        ``folder``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for net, module in zip(FILES, (vae, fp, ddpm)):
        state = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
        with atomic_path(folder / FILES[net]) as tmp:
            torch.save(state, tmp)
    if descriptor_table is not None:
        with atomic_path(folder / DESCRIPTORS) as tmp:
            descriptor_table.to_csv(tmp, index=False)
    record = {
        **dict(metadata or {}),
        "format": METADATA_FORMAT,
        "format_version": METADATA_VERSION,
        "kind": kind,
        "vae_widths": [int(conv.out_channels) for conv in vae.encoder.conv_layers if isinstance(conv, nn.Conv3d)][:4],
        "n_feat": int(ddpm.nn_model.n_feat),
    }
    with atomic_path(folder / METADATA) as tmp:
        tmp.write_text(json.dumps(record, indent=2))
    return folder


def load_folder(folder: str | os.PathLike[str], *, kind: str | None) -> tuple[str, MicroGen3DVAE, MicroGen3DFeaturePredictor, MicroGen3DDDPM]:
    """``(kind, vae, fp, ddpm)`` of a folder of published files (``kind`` needed) or a fine-tuned one (its ``microgen3d.json``).

    Raises
    ------
    MicrodesignError
        As :func:`resolve_kind` and :func:`load_networks`.
    """
    kind, meta = resolve_kind(folder, kind)
    sizes = PUBLISHED_SIZES if meta is None else {"vae_widths": tuple(meta["vae_widths"]), "n_feat": meta["n_feat"]}
    return (kind, *load_networks(folder, kind=kind, **sizes))
