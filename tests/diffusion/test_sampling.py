"""Samplers and classifier-free guidance on an exactly solvable problem.

For Gaussian data ``x0 ~ N(m(c), s^2 I)`` the optimal denoiser is known in
closed form, so every sampler must return samples with mean ``m`` and standard
deviation ``s``. With ``s = 3`` this also catches the clipping pitfall of
diffusers' DDIM (predicted x0 clipped to [-1, 1]).
"""

from __future__ import annotations

import pytest
import torch

from generator.diffusion import SAMPLERS, NoiseSchedule, make_scheduler, sample_latents
from generator.errors import InvalidInputError

S = 3.0
SHAPE = (256, 2, 2, 2, 2)


def gaussian_denoiser(schedule: NoiseSchedule):
    """Exact eps (or v) prediction for x0 ~ N(m, S^2) with m = context[:, 0] (0 without context)."""
    abar = make_scheduler("ddpm", schedule).alphas_cumprod.double()
    calls = {"cond": 0, "uncond": 0}

    def denoiser(x: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        calls["uncond" if context is None else "cond"] += 1
        a = abar[t].view(-1, 1, 1, 1, 1).to(x.dtype)
        m = torch.zeros_like(x) if context is None else context[:, 0].view(-1, 1, 1, 1, 1).expand_as(x)
        var = a * S**2 + 1 - a
        centred = x - a.sqrt() * m
        eps = (1 - a).sqrt() * centred / var
        if schedule.prediction_type == "epsilon":
            return eps
        x0 = m + a.sqrt() * S**2 * centred / var
        return a.sqrt() * eps - (1 - a).sqrt() * x0

    denoiser.calls = calls
    return denoiser


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("sampler,steps", [("ddpm", 250), ("ddim", 50), ("dpm++", 25), ("dpm++", 10)])
def test_samplers_reach_the_data_distribution(sampler, steps, prediction_type):
    schedule = NoiseSchedule(prediction_type=prediction_type)
    context = torch.full((SHAPE[0], 1), 1.5)
    x = sample_latents(
        gaussian_denoiser(schedule), SHAPE, context, sampler=sampler, steps=steps,
        generator=torch.Generator().manual_seed(0), schedule=schedule,
    )
    assert x.shape == SHAPE
    assert abs(x.mean().item() - 1.5) < 0.25
    assert abs(x.std().item() - S) < 0.3  # unclipped: DDIM's default clip_sample would give < 2


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_deterministic_for_a_seed(sampler):
    schedule = NoiseSchedule()
    den = gaussian_denoiser(schedule)
    context = torch.zeros(4, 1)
    run = lambda seed: sample_latents(den, (4, 2, 2, 2, 2), context, sampler=sampler, steps=20, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(run(3), run(3))
    assert not torch.allclose(run(3), run(4))


def test_guidance_one_is_plain_conditional_and_guidance_changes_output():
    schedule = NoiseSchedule()
    den = gaussian_denoiser(schedule)
    context = torch.full((64, 1), 2.0)
    kw = dict(sampler="ddim", steps=30, schedule=schedule)
    plain = sample_latents(den, (64, 1, 2, 2, 2), context, guidance=1.0, generator=torch.Generator().manual_seed(0), **kw)
    assert den.calls["uncond"] == 0  # guidance 1 never evaluates the unconditional branch
    guided = sample_latents(den, (64, 1, 2, 2, 2), context, guidance=3.0, generator=torch.Generator().manual_seed(0), **kw)
    assert den.calls["uncond"] == 30
    uncond = sample_latents(den, (64, 1, 2, 2, 2), None, generator=torch.Generator().manual_seed(0), **kw)
    zero = sample_latents(den, (64, 1, 2, 2, 2), context, guidance=0.0, generator=torch.Generator().manual_seed(0), **kw)
    torch.testing.assert_close(zero, uncond)  # guidance 0 is unconditional
    # guidance > 1 pushes the samples further towards the condition than plain conditional sampling
    assert guided.mean() > plain.mean() + 1.0 > uncond.mean() + 2.0


def test_initial_noise_can_be_given():
    den = gaussian_denoiser(NoiseSchedule())
    noise = torch.randn(2, 1, 2, 2, 2, generator=torch.Generator().manual_seed(5))
    a = sample_latents(den, noise.shape, None, sampler="ddim", steps=10, noise=noise)
    b = sample_latents(den, noise.shape, None, sampler="ddim", steps=10, noise=noise.clone())
    assert torch.equal(a, b)


def test_bad_arguments():
    den = gaussian_denoiser(NoiseSchedule())
    with pytest.raises(InvalidInputError, match="sampler"):
        sample_latents(den, (1, 1, 2, 2, 2), None, sampler="euler")
    with pytest.raises(InvalidInputError, match="steps"):
        sample_latents(den, (1, 1, 2, 2, 2), None, steps=0)
    with pytest.raises(InvalidInputError, match="context"):
        sample_latents(den, (2, 1, 2, 2, 2), torch.zeros(3, 1))


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_x0_guidance_moves_the_prediction_and_zero_changes_nothing(prediction_type):
    """The ``x0`` correction is applied through the model output, so every sampler follows it."""
    from generator.diffusion.sampling import model_output_to_x0, x0_to_model_output

    schedule = NoiseSchedule(prediction_type=prediction_type)
    x, out, a = torch.randn(3, 2, 2, 2, 2), torch.randn(3, 2, 2, 2, 2), torch.tensor(0.3)
    torch.testing.assert_close(model_output_to_x0(x0_to_model_output(out, x, a, prediction_type), x, a, prediction_type), out)
    den = gaussian_denoiser(schedule)
    context = torch.full((SHAPE[0], 1), 1.5)
    run = {"seen": []}

    def pull_to_zero(x0: torch.Tensor, rows: slice) -> torch.Tensor:  # gradient of 0.5 |x0|^2
        run["seen"].append(rows)
        return torch.autograd.grad(0.5 * (x0**2).sum(), x0)[0]

    def sample(**kw):
        return sample_latents(den, SHAPE, context, sampler="dpm++", steps=10, generator=torch.Generator().manual_seed(0),
                              schedule=schedule, **kw)

    plain = sample()
    torch.testing.assert_close(sample(x0_guidance=pull_to_zero, x0_guidance_scale=0.0), plain)
    assert run["seen"] == []  # scale 0: never called
    pulled = sample(x0_guidance=pull_to_zero, x0_guidance_scale=0.5, batch=slice(4, 4 + SHAPE[0]))
    assert len(run["seen"]) == 5 and run["seen"][0] == slice(4, 4 + SHAPE[0])  # the second half of 10 steps, rows passed on
    assert pulled.abs().mean() < 0.8 * plain.abs().mean()  # towards the guidance's minimum at 0 (the data mean is 1.5)
