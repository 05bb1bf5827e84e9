"""Lightning modules of the three training stages (VAE, feature predictor, latent denoiser)."""

from __future__ import annotations

import copy

import lightning as L
import torch
import torch.nn.functional as F
from generator.diffusion import NoiseSchedule, make_scheduler
from generator.models import VAE, FeaturePredictor, LatentUNet

#: Time-step bands (of 1000) in which the validation loss of the denoiser is reported.
N_BANDS = 4


class _Stage(L.LightningModule):
    """Shared optimiser (AdamW) and logging."""

    def __init__(self, lr: float, weight_decay: float) -> None:
        super().__init__()
        self.lr = lr
        self.weight_decay = weight_decay

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)

    def _log(self, prefix: str, values: dict[str, torch.Tensor], batch_size: int) -> None:
        on_step = prefix == "train"
        self.log_dict(
            {f"{prefix}/{k}": v.detach() for k, v in values.items()},
            prog_bar=False,
            on_step=on_step,
            on_epoch=not on_step,
            batch_size=batch_size,
            sync_dist=not on_step,
        )
        self.log(f"{prefix}_loss", values["loss"].detach(), prog_bar=True, on_step=on_step, on_epoch=not on_step, batch_size=batch_size, sync_dist=not on_step)


class VAEModule(_Stage):
    """Stage 1: the VAE on grey volumes ``(B, 1, X, Y, Z)``."""

    def __init__(self, vae: VAE, lr: float, weight_decay: float = 0.0, channels_last: bool = False) -> None:
        super().__init__(lr, weight_decay)
        self.vae = vae
        self.channels_last = channels_last
        if channels_last:
            self.vae.to(memory_format=torch.channels_last_3d)

    def _prepare(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.contiguous(memory_format=torch.channels_last_3d) if self.channels_last else batch

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        out = self.vae.loss(self._prepare(batch))
        self._log("train", out, batch.shape[0])
        return out["loss"]

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self._log("val", self.vae.loss(self._prepare(batch)), batch.shape[0])


def sample_normalised_latent(mu: torch.Tensor, sigma: torch.Tensor, latent_mean: torch.Tensor, latent_std: torch.Tensor, sample: bool) -> torch.Tensor:
    """``(z - mean) / std`` of a posterior sample ``z = mu + sigma * eps`` (or of ``mu`` when not ``sample``)."""
    z = mu + sigma * torch.randn_like(mu) if sample else mu
    return (z - latent_mean.view(1, -1, 1, 1, 1)) / latent_std.view(1, -1, 1, 1, 1)


def roll_in_plane(*latents: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The latents ``(B, C, x, y, z)`` shifted circularly by one random amount along x and one along y.

    For a periodic film encoded by an in-plane periodic VAE a shift by whole latent cells is the
    latent of the film shifted by whole strides, whose descriptors are the same: a free augmentation
    that keeps a fully convolutional denoiser from learning where in the box a film's features lie.
    """
    shifts = (int(torch.randint(latents[0].shape[2], ())), int(torch.randint(latents[0].shape[3], ())))
    return tuple(torch.roll(z, shifts=shifts, dims=(2, 3)) for z in latents)


class FeaturePredictorModule(_Stage):
    """Stage 3: the feature predictor on ``(mu, sigma, normalised targets)`` batches."""

    def __init__(self, fp: FeaturePredictor, latent_mean: torch.Tensor, latent_std: torch.Tensor, lr: float, weight_decay: float = 0.0) -> None:
        super().__init__(lr, weight_decay)
        self.fp = fp
        self.register_buffer("latent_mean", latent_mean.clone())
        self.register_buffer("latent_std", latent_std.clone())

    def _loss(self, batch: tuple[torch.Tensor, ...], sample: bool) -> dict[str, torch.Tensor]:
        mu, sigma, target = batch
        z = sample_normalised_latent(mu, sigma, self.latent_mean, self.latent_std, sample)
        pred = self.fp(z)
        per_attr = (pred - target).pow(2).mean(dim=0)
        return {"loss": per_attr.mean(), "r2_mean": (1 - per_attr).mean()}

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        out = self._loss(batch, sample=True)
        self._log("train", out, batch[0].shape[0])
        return out["loss"]

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        self._log("val", self._loss(batch, sample=False), batch[0].shape[0])


class DenoiserModule(_Stage):
    """Stage 4: the latent denoiser with condition dropout (classifier-free guidance) and an EMA copy.

    Batches are ``(mu, sigma, normalised context)``; the training target is
    ``eps`` or ``v`` as ``schedule.prediction_type`` says. The validation loss
    is also reported per band of time steps (``val/loss_t0``: the lowest
    quarter of ``t``, ... ``val/loss_t3``: the noisiest).
    """

    def __init__(
        self,
        unet: LatentUNet,
        schedule: NoiseSchedule,
        latent_mean: torch.Tensor,
        latent_std: torch.Tensor,
        lr: float,
        weight_decay: float = 0.0,
        condition_dropout: float = 0.1,
        ema_decay: float | None = 0.999,
        roll: bool = False,
    ) -> None:
        super().__init__(lr, weight_decay)
        self.roll = roll
        self.unet = unet
        self.schedule = schedule
        self.noise_scheduler = make_scheduler("ddpm", schedule)
        self.condition_dropout = condition_dropout
        self.ema_decay = ema_decay
        self.ema = copy.deepcopy(unet).requires_grad_(False) if ema_decay else None
        self.register_buffer("latent_mean", latent_mean.clone())
        self.register_buffer("latent_std", latent_std.clone())

    def denoiser(self) -> LatentUNet:
        """The network to sample with: the EMA copy when there is one."""
        return self.ema if self.ema is not None else self.unet

    def _loss(self, batch: tuple[torch.Tensor, ...], generator: torch.Generator | None, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        mu, sigma, context = batch
        device = mu.device
        if train:
            if self.roll:
                mu, sigma = roll_in_plane(mu, sigma)
            x0 = sample_normalised_latent(mu, sigma, self.latent_mean, self.latent_std, sample=True)
            noise = torch.randn_like(x0)
            t = torch.randint(0, self.schedule.num_train_timesteps, (x0.shape[0],), device=device)
            drop = torch.rand(x0.shape[0], device=device) < self.condition_dropout
        else:
            x0 = sample_normalised_latent(mu, sigma, self.latent_mean, self.latent_std, sample=False)
            noise = torch.randn(x0.shape, generator=generator).to(device)
            t = torch.randint(0, self.schedule.num_train_timesteps, (x0.shape[0],), generator=generator).to(device)
            drop = None
        x_t = self.noise_scheduler.add_noise(x0, noise, t)
        target = noise if self.schedule.prediction_type == "epsilon" else self.noise_scheduler.get_velocity(x0, noise, t)
        net = self.unet if train else self.denoiser()
        out = net(x_t, t, context, drop)
        per_sample = (out - target).pow(2).flatten(1).mean(dim=1)
        return per_sample, t

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        per_sample, _ = self._loss(batch, None, train=True)
        loss = per_sample.mean()
        self._log("train", {"loss": loss}, batch[0].shape[0])
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.ema is None:
            return
        # warm-up: average over the steps seen so far until 1/(1-decay) steps have passed
        step = self.global_step
        decay = min(self.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            ema_params = list(self.ema.parameters())
            torch._foreach_lerp_(ema_params, list(self.unet.parameters()), 1.0 - decay)
            for b_ema, b in zip(self.ema.buffers(), self.unet.buffers()):
                b_ema.copy_(b)

    def on_validation_epoch_start(self) -> None:
        self._val_generator = torch.Generator().manual_seed(1234)

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        per_sample, t = self._loss(batch, self._val_generator, train=False)
        values = {"loss": per_sample.mean()}
        band = (t * N_BANDS) // self.schedule.num_train_timesteps
        for b in range(N_BANDS):
            mask = band == b
            if mask.any():
                self.log(f"val/loss_t{b}", per_sample[mask].mean(), on_epoch=True, batch_size=int(mask.sum()), sync_dist=True)
        self._log("val", values, batch[0].shape[0])
