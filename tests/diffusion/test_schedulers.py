"""Schedulers by name."""

from __future__ import annotations

import pytest
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

from generator.diffusion import NoiseSchedule, make_scheduler
from generator.errors import InvalidInputError


@pytest.mark.parametrize("name,cls", [("ddpm", DDPMScheduler), ("ddim", DDIMScheduler), ("dpm++", DPMSolverMultistepScheduler), ("DPM++", DPMSolverMultistepScheduler)])
def test_by_name(name, cls):
    scheduler = make_scheduler(name, NoiseSchedule(prediction_type="v_prediction"))
    assert isinstance(scheduler, cls)
    assert scheduler.config.prediction_type == "v_prediction"
    assert scheduler.config.num_train_timesteps == 1000
    assert scheduler.betas[0].item() == pytest.approx(1e-4) and scheduler.betas[-1].item() == pytest.approx(0.02)


def test_no_clipping():
    assert make_scheduler("ddim").config.clip_sample is False
    assert make_scheduler("ddpm").config.clip_sample is False
    assert make_scheduler("dpm++").config.thresholding is False


def test_unknown_name():
    with pytest.raises(InvalidInputError, match="unknown sampler 'heun'"):
        make_scheduler("heun")
