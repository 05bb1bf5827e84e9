"""Batched, seeded latent sampling with classifier-free guidance."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor
from tqdm.auto import tqdm

from generator.diffusion.schedulers import NoiseSchedule, make_scheduler
from generator.diffusion.settings import resolve_sampling
from generator.errors import InvalidInputError

#: ``denoiser(x_t (B, C, ...), t LongTensor (B,), context (B, K) | None) -> model output (B, C, ...)``.
Denoiser = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


def guided_output(denoiser: Denoiser, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None, guidance: float) -> torch.Tensor:
    """Classifier-free guided model output ``u + guidance * (c - u)``.

    ``u`` is the unconditional output (``context=None``), ``c`` the conditional
    one. ``guidance == 1`` (or no context) needs one network call, anything else two.
    """
    if context is None:
        return denoiser(x, t, None)
    if guidance == 1.0:
        return denoiser(x, t, context)
    cond = denoiser(x, t, context)
    uncond = denoiser(x, t, None)
    return uncond + guidance * (cond - uncond)


@torch.inference_mode()
def sample_latents(
    denoiser: Denoiser,
    shape: Sequence[int],
    context: torch.Tensor | None,
    *,
    sampler: str | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    schedule: NoiseSchedule | None = None,
    noise: torch.Tensor | None = None,
    scheduler: SchedulerMixin | None = None,
) -> torch.Tensor:
    """Sample latents by reverse diffusion.

    Parameters
    ----------
    denoiser
        ``denoiser(x_t, t, context) -> output`` (``eps`` or ``v`` as ``schedule.prediction_type`` says).
    shape
        ``(B, C, x, y, z)`` of the latents.
    context
        ``(B, K)`` condition vectors as the denoiser expects them (already
        normalised), or ``None`` for unconditional sampling.
    sampler
        ``ddpm``, ``ddim`` or ``dpm++`` (``None``: :data:`~generator.diffusion.settings.DEFAULT_SAMPLING`'s, ``dpm++``).
    steps
        Number of denoising steps (``ddpm`` with ``num_train_timesteps`` is the paper's sampler; ``None``: 25).
    guidance
        Classifier-free guidance scale; ``1.0`` (``None``) is plain conditional sampling.
    generator
        Seeded torch generator (on the device of the sampling) for the initial
        noise and the ancestral noise: the same seed gives the same latents.
    progress
        Show a progress bar over the steps.
    schedule
        The training noise schedule (default: the paper's linear 1000-step one).
    noise
        Initial noise ``x_T`` of shape ``shape`` (drawn from ``generator`` when ``None``).
    scheduler
        A scheduler of ``sampler`` already built (:func:`~generator.diffusion.schedulers.make_scheduler`), reused
        across the batches of one call; its time steps are set again here.

    Returns
    -------
    torch.Tensor
        ``(B, C, x, y, z)`` denoised latents.
    """
    schedule = schedule or NoiseSchedule()
    sampler, steps, guidance = resolve_sampling(sampler, steps, guidance)
    if not 1 <= steps <= schedule.num_train_timesteps:
        raise InvalidInputError(f"steps: must lie in [1, {schedule.num_train_timesteps}], got {steps}")
    if guidance < 0:
        raise InvalidInputError(f"guidance: must be >= 0, got {guidance}")
    shape = tuple(int(s) for s in shape)
    if context is not None and context.shape[0] != shape[0]:
        raise InvalidInputError(f"context: {context.shape[0]} condition rows for a batch of {shape[0]}")
    device = context.device if context is not None else (generator.device if generator is not None else torch.device("cpu"))
    scheduler = scheduler if scheduler is not None else make_scheduler(sampler, schedule)
    scheduler.set_timesteps(steps, device=device)
    if noise is None:
        noise = randn_tensor(shape, generator=generator, device=device)
    elif tuple(noise.shape) != shape:
        raise InvalidInputError(f"noise: shape {tuple(noise.shape)} differs from {shape}")
    x = noise.to(device) * scheduler.init_noise_sigma
    for t in tqdm(scheduler.timesteps, desc=f"{sampler} sampling", disable=not progress, leave=False):
        model_input = scheduler.scale_model_input(x, t)
        tt = torch.full((shape[0],), int(t), device=device, dtype=torch.long)
        out = guided_output(denoiser, model_input, tt, context, guidance)
        x = scheduler.step(out, t, x, generator=generator).prev_sample
    return x
