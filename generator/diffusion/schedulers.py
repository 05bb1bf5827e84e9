"""Noise schedules and samplers from diffusers, chosen by name."""

from __future__ import annotations

from typing import Literal

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from pydantic import BaseModel, ConfigDict, Field

from generator.errors import InvalidInputError

#: Sampler names accepted everywhere (CLI, :func:`sample_latents`, :meth:`Generator.generate`).
SAMPLERS = ("ddpm", "ddim", "dpm++")


class NoiseSchedule(BaseModel):
    """The forward (noising) process the denoiser was trained with.

    The defaults are those of the paper: 1000 steps, betas linear from 1e-4 to 0.02.
    ``prediction_type`` says what the denoiser outputs: ``epsilon`` (the noise)
    or ``v_prediction`` (``v = sqrt(abar) eps - sqrt(1 - abar) x0``).
    """

    model_config = ConfigDict(extra="forbid")

    num_train_timesteps: int = Field(1000, ge=2)
    beta_start: float = Field(1e-4, gt=0.0)
    beta_end: float = Field(0.02, gt=0.0, lt=1.0)
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "linear"
    prediction_type: Literal["epsilon", "v_prediction"] = "epsilon"
    #: Explicit betas (length ``num_train_timesteps``); overrides beta_start/beta_end/beta_schedule.
    trained_betas: list[float] | None = None
    #: ``ddpm`` noise: ``fixed_small`` (posterior variance) or ``fixed_large`` (beta_t, MicroGen3D's sampler).
    variance_type: Literal["fixed_small", "fixed_large"] = "fixed_small"
    #: alpha-bar the last ``ddpm``/``ddim`` step lands on (default 1, the clean sample; MicroGen3D: its level 0).
    final_alpha_cumprod: float | None = Field(None, gt=0.0, le=1.0)


def canonical_sampler(name: str) -> str:
    """The sampler ``name`` as one of :data:`SAMPLERS` (case, ``_`` and ``-`` ignored; ``dpmpp``, ``dpmsolver++`` mean ``dpm++``).

    Raises
    ------
    InvalidInputError
        For an unknown sampler name.
    """
    key = str(name).lower().replace("_", "").replace("-", "")
    if key in ("ddpm", "ddim"):
        return key
    if key in ("dpm++", "dpmpp", "dpmsolver++", "dpmsolver"):
        return "dpm++"
    raise InvalidInputError(f"sampler: unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")


def make_scheduler(name: str, schedule: NoiseSchedule | None = None) -> SchedulerMixin:
    """A diffusers scheduler for sampler ``name`` (``ddpm``, ``ddim`` or ``dpm++``) on ``schedule``.

    ``ddpm`` is the ancestral sampler of the paper; ``ddim`` is deterministic
    (eta 0, trailing time steps, **no** clipping of the predicted x0: diffusers
    clips to [-1, 1] by default, far inside the range of unit-variance latents);
    ``dpm++`` is DPM-Solver++ (2nd-order multistep), also unclipped.

    Raises
    ------
    InvalidInputError
        For an unknown sampler name.
    """
    schedule = schedule or NoiseSchedule()
    common = dict(
        num_train_timesteps=schedule.num_train_timesteps,
        beta_start=schedule.beta_start,
        beta_end=schedule.beta_end,
        beta_schedule=schedule.beta_schedule,
        prediction_type=schedule.prediction_type,
        trained_betas=schedule.trained_betas,
    )
    final = None if schedule.final_alpha_cumprod is None else torch.tensor(schedule.final_alpha_cumprod)
    key = canonical_sampler(name)
    if key == "ddpm":
        scheduler = DDPMScheduler(**common, clip_sample=False, variance_type=schedule.variance_type)
        if final is not None:
            scheduler.one = final  # alpha-bar after the last step (diffusers: 1)
        return scheduler
    if key == "ddim":
        scheduler = DDIMScheduler(**common, clip_sample=False, set_alpha_to_one=False, timestep_spacing="trailing")
        if final is not None:
            scheduler.final_alpha_cumprod = final
        return scheduler
    return DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_order=2, thresholding=False)
