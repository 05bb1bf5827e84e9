"""Noise schedules, samplers (from diffusers), their settings and classifier-free guidance."""

from generator.diffusion.sampling import Denoiser, guided_output, sample_latents
from generator.diffusion.schedulers import SAMPLERS, NoiseSchedule, canonical_sampler, make_scheduler
from generator.diffusion.settings import DEFAULT_SAMPLING, SamplingSettings

__all__ = [
    "DEFAULT_SAMPLING",
    "SAMPLERS",
    "Denoiser",
    "NoiseSchedule",
    "SamplingSettings",
    "canonical_sampler",
    "guided_output",
    "make_scheduler",
    "sample_latents",
]
