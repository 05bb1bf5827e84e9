"""Sampling settings: one validated object, one place for the defaults, one scheduler per generate call."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from generator import pipeline
from generator.diffusion import DEFAULT_SAMPLING, SamplingSettings, canonical_sampler
from generator.diffusion.settings import resolve_sampling
from generator.errors import InvalidInputError
from generator.pipeline import Generator
from inverse.spec import GenerationSettings, parse_spec


def test_settings_are_checked_when_made():
    assert SamplingSettings(sampler="DDIM", steps=3, guidance=0.0).sampler == "DDIM"
    for bad in (dict(sampler="euler"), dict(steps=0), dict(guidance=-1.0), dict(guidance=float("nan")), dict(sampler="ddim", eta=0)):
        with pytest.raises(ValidationError):
            SamplingSettings(**bad)
    assert canonical_sampler("DPM-Solver++") == "dpm++" and canonical_sampler("d_d_i_m") == "ddim"
    with pytest.raises(InvalidInputError, match="unknown sampler 'euler'"):
        canonical_sampler("euler")


def test_defaults_are_set_in_one_place():
    assert DEFAULT_SAMPLING == SamplingSettings(sampler="dpm++", steps=25, guidance=1.0, feature_guidance=0.0)
    assert pipeline.SAMPLING_DEFAULTS == DEFAULT_SAMPLING.model_dump()
    assert SamplingSettings().resolved() == DEFAULT_SAMPLING
    assert SamplingSettings(steps=4).resolved({"sampler": "ddim", "steps": 50}) == SamplingSettings(sampler="ddim", steps=4, guidance=1.0,
                                                                                                     feature_guidance=0.0)
    # a model's feature guidance (a bundle's sampling_defaults) is taken unless the call gives its own
    assert SamplingSettings().resolved({"feature_guidance": 100.0}).feature_guidance == 100.0
    assert SamplingSettings(feature_guidance=0.0).resolved({"feature_guidance": 100.0}).feature_guidance == 0.0
    with pytest.raises(ValueError):
        SamplingSettings(feature_guidance=-1.0)
    assert resolve_sampling(None, None, 2.0, {"steps": 10}) == ("dpm++", 10, 2.0)


def test_a_spec_checks_its_sampler_when_loaded():
    assert issubclass(GenerationSettings, SamplingSettings)
    with pytest.raises(InvalidInputError, match=r"spec: generation.sampler: unknown sampler 'euler'; choose one of ddpm, ddim, dpm\+\+"):
        parse_spec({"name": "x", "targets": {"ABS_f_D": {"at_least": 0.4}}, "generation": {"sampler": "euler"}})


def _toy_generator() -> Generator:
    return Generator(
        decoder=lambda z: (z[:, 0] > 0).to(torch.uint8), feature_predictor=lambda z: z.flatten(1).mean(1, keepdim=True),
        denoiser=lambda x, t, c: torch.zeros_like(x), latent_shape=(1, 2, 2, 2), volume_shape=(2, 2, 2), schedule=None,
        condition_names=["ABS_f_D"], attribute_names=["ABS_f_D"], n_phases=2,
    )


def test_generate_builds_one_scheduler_per_call_and_takes_a_settings_object(monkeypatch):
    built = []
    real = pipeline.make_scheduler
    monkeypatch.setattr(pipeline, "make_scheduler", lambda *a, **k: built.append(a) or real(*a, **k))
    gen = _toy_generator()
    one = gen.generate({"ABS_f_D": 0.5}, 5, settings=SamplingSettings(sampler="ddim", steps=3), batch_size=2, seed=1)
    assert [a[0] for a in built] == ["ddim"]  # one for the call (three batches), none per batch
    loose = gen.generate({"ABS_f_D": 0.5}, 5, sampler="ddim", steps=3, batch_size=5, seed=1)
    assert np.allclose(one.latents.numpy(), loose.latents.numpy(), atol=1e-6)  # reused scheduler: same samples as one batch
