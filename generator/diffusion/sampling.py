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
#: ``x0_guidance(x0 (B, C, ...), batch slice) -> the gradient (B, C, ...) of a loss to lower`` at the predicted clean latent.
X0Guidance = Callable[[torch.Tensor, slice], torch.Tensor]


def model_output_to_x0(out: torch.Tensor, x: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """The clean latent ``x0`` predicted by a model output ``out`` (``epsilon`` or ``v_prediction``) at ``x_t``."""
    if prediction_type == "v_prediction":
        return alpha_bar.sqrt() * x - (1 - alpha_bar).sqrt() * out
    return (x - (1 - alpha_bar).sqrt() * out) / alpha_bar.sqrt()


def x0_to_model_output(x0: torch.Tensor, x: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """The model output (``epsilon`` or ``v_prediction``) that predicts ``x0`` at ``x_t``: the inverse of :func:`model_output_to_x0`."""
    eps = (x - alpha_bar.sqrt() * x0) / (1 - alpha_bar).sqrt()
    return alpha_bar.sqrt() * eps - (1 - alpha_bar).sqrt() * x0 if prediction_type == "v_prediction" else eps


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


@torch.no_grad()
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
    x0_guidance: X0Guidance | None = None,
    x0_guidance_scale: float = 0.0,
    x0_guidance_start: float = 0.5,
    batch: slice | None = None,
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
    x0_guidance, x0_guidance_scale, x0_guidance_start
        Gradient guidance at the predicted clean latent (e.g. by the feature predictor): from the
        fraction ``x0_guidance_start`` of the steps on, each step's ``x0 = f(x_t, output)`` moves by
        ``-x0_guidance_scale * x0_guidance(x0, batch)`` and the output is rebuilt from the moved ``x0``
        (:func:`x0_to_model_output`), so that every diffusers sampler follows it. Off when ``None`` or the scale is 0.
    batch
        The rows of the caller's batch that these latents are (passed on to ``x0_guidance``; default all).

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
    guide = x0_guidance is not None and x0_guidance_scale > 0
    first_guided = x0_guidance_start * len(scheduler.timesteps)
    rows = batch if batch is not None else slice(0, shape[0])
    for i, t in enumerate(tqdm(scheduler.timesteps, desc=f"{sampler} sampling", disable=not progress, leave=False)):
        model_input = scheduler.scale_model_input(x, t)
        tt = torch.full((shape[0],), int(t), device=device, dtype=torch.long)
        out = guided_output(denoiser, model_input, tt, context, guidance)
        if guide and i >= first_guided:
            alpha_bar = scheduler.alphas_cumprod[int(t)].to(device=device, dtype=x.dtype)
            x0 = model_output_to_x0(out, x, alpha_bar, schedule.prediction_type)
            with torch.enable_grad():
                step = x0_guidance(x0.detach().requires_grad_(True), rows).detach()  # type: ignore[misc]
            out = x0_to_model_output(x0 - x0_guidance_scale * step, x, alpha_bar, schedule.prediction_type)
        x = scheduler.step(out, t, x, generator=generator).prev_sample
    return x
