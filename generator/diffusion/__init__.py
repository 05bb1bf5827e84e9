"""Noise schedules, samplers (from diffusers) and classifier-free guidance."""

from generator.diffusion.sampling import Denoiser, guided_output, sample_latents
from generator.diffusion.schedulers import SAMPLERS, NoiseSchedule, make_scheduler

__all__ = ["SAMPLERS", "NoiseSchedule", "make_scheduler", "sample_latents", "guided_output", "Denoiser"]
