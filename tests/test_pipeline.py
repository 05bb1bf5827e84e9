"""The Generator pipeline on the tiny bundle: shapes, determinism, guidance and condition errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generator.errors import InvalidInputError, MicrodesignError
from generator.loading import DEFAULT_BUNDLE, load_generator
from generator.pipeline import GenerationResult, Generator


@pytest.fixture(scope="module")
def gen(tiny_bundle) -> Generator:
    return load_generator(tiny_bundle)


def _mid(gen: Generator) -> dict[str, float]:
    return {name: float(np.mean(gen.condition_ranges[name])) for name in gen.condition_names}


def test_generate_shapes_and_outputs(gen):
    result = gen.generate(_mid(gen), n=3, sampler="dpm++", steps=5, seed=0)
    assert isinstance(result, GenerationResult) and len(result) == 3
    assert result.labels.shape == (3, *gen.volume_shape) and result.labels.dtype == np.uint8
    assert set(np.unique(result.labels)) <= {0, 1}
    assert tuple(result.latents.shape) == (3, *gen.latent_shape)
    assert result.conditions.shape == (3, 3)
    np.testing.assert_allclose(result.conditions[1], [_mid(gen)[n] for n in gen.condition_names])
    assert list(result.predicted) == gen.attribute_names
    assert all(v.shape == (3,) and np.all(np.isfinite(v)) for v in result.predicted.values())
    # the FP outputs are its predictions on exactly these latents
    again = gen.predict(result.latents)
    np.testing.assert_allclose(again["phi"], result.predicted["phi"], rtol=1e-6)


@pytest.mark.parametrize("sampler,steps", [("ddpm", 8), ("ddim", 4), ("dpm++", 4)])
def test_deterministic_for_a_seed(gen, sampler, steps):
    a = gen.generate(_mid(gen), n=2, sampler=sampler, steps=steps, seed=7)
    b = gen.generate(_mid(gen), n=2, sampler=sampler, steps=steps, seed=7)
    c = gen.generate(_mid(gen), n=2, sampler=sampler, steps=steps, seed=8)
    assert torch.equal(a.latents, b.latents) and np.array_equal(a.labels, b.labels)
    assert not torch.allclose(a.latents, c.latents)


def test_batches_do_not_change_samples(gen):
    whole = gen.generate(_mid(gen), n=5, sampler="ddim", steps=5, seed=1, batch_size=5)
    parts = gen.generate(_mid(gen), n=5, sampler="ddim", steps=5, seed=1, batch_size=2)
    torch.testing.assert_close(whole.latents, parts.latents, atol=1e-4, rtol=1e-4)


def test_condition_matrix_rows(gen):
    lo = [gen.condition_ranges[n][0] for n in gen.condition_names]
    hi = [gen.condition_ranges[n][1] for n in gen.condition_names]
    result = gen.generate(np.array([lo, hi]), sampler="ddim", steps=3)
    np.testing.assert_allclose(result.conditions, [lo, hi])


def test_guidance(gen):
    calls = {"uncond": 0}
    denoiser = gen.denoiser

    def counting(x, t, context):
        calls["uncond"] += context is None
        return denoiser(x, t, context)

    counted = Generator(
        decoder=gen.decoder, feature_predictor=gen.feature_predictor, denoiser=counting, latent_shape=gen.latent_shape,
        volume_shape=gen.volume_shape, schedule=gen.schedule, condition_names=gen.condition_names,
        attribute_names=gen.attribute_names, n_phases=gen.n_phases, context_mean=gen.context_mean,
        context_std=gen.context_std, descriptor_table=gen.descriptor_table,
    )
    plain = counted.generate(_mid(gen), n=2, sampler="ddim", steps=4, guidance=1.0)
    assert calls["uncond"] == 0  # guidance 1 is plain conditional sampling
    torch.testing.assert_close(plain.latents, gen.generate(_mid(gen), n=2, sampler="ddim", steps=4).latents)
    guided = counted.generate(_mid(gen), n=2, sampler="ddim", steps=4, guidance=4.0)
    assert calls["uncond"] == 4
    assert not torch.allclose(plain.latents, guided.latents)


def test_condition_errors(gen):
    mid = _mid(gen)
    with pytest.raises(InvalidInputError, match="unknown condition 'porosity'"):
        gen.generate({**mid, "porosity": 0.3}, n=1)
    with pytest.raises(InvalidInputError, match="missing a value for 'CT_f_A_tort1'"):
        gen.generate({k: v for k, v in mid.items() if k != "CT_f_A_tort1"}, n=1)
    lo, hi = gen.condition_ranges["CT_f_D_tort1"]
    far = {**mid, "CT_f_D_tort1": hi + 1.0}
    with pytest.raises(InvalidInputError, match=r"CT_f_D_tort1=.* outside the training range"):
        gen.generate(far, n=1)
    result = gen.generate(far, n=1, sampler="ddim", steps=2, allow_extrapolation=True)
    assert result.conditions[0, 1] == hi + 1.0
    with pytest.raises(InvalidInputError, match=r"\(n, 3\) array"):
        gen.generate(np.zeros((2, 2)))
    with pytest.raises(InvalidInputError, match="sampler"):
        gen.generate(mid, n=1, sampler="nope")


def test_default_model_and_bad_paths(tmp_path):
    if not DEFAULT_BUNDLE.is_file():
        with pytest.raises(MicrodesignError, match="no default model is shipped"):
            load_generator("default")
    else:
        assert load_generator("default").condition_names
    with pytest.raises(MicrodesignError, match="does not exist"):
        load_generator(tmp_path / "nothing.pt")


def test_feature_guidance_pulls_the_feature_predictor_to_the_request(gen):
    """Feature-predictor guidance lowers the FP's error of the requested conditions; 0 is plain sampling."""
    from generator.diffusion import SamplingSettings

    lo = np.array([gen.condition_ranges[n][0] for n in gen.condition_names])
    hi = np.array([gen.condition_ranges[n][1] for n in gen.condition_names])
    request = np.array([lo + 0.3 * (hi - lo), lo + 0.7 * (hi - lo)])

    def error(result) -> float:
        predicted = np.column_stack([result.predicted[n] for n in gen.condition_names])
        return float(np.mean(np.abs(predicted - request) / gen.context_std))

    plain = gen.generate(request, sampler="dpm++", steps=6, seed=3)
    off = gen.generate(request, sampler="dpm++", steps=6, seed=3, feature_guidance=0.0)
    torch.testing.assert_close(off.latents, plain.latents)
    guided = gen.generate(request, sampler="dpm++", steps=6, seed=3, feature_guidance=5.0)
    assert error(guided) < 0.7 * error(plain)
    by_settings = gen.generate(request, seed=3, settings=SamplingSettings(sampler="dpm++", steps=6, feature_guidance=5.0))
    torch.testing.assert_close(by_settings.latents, guided.latents)
    with pytest.raises(InvalidInputError, match="feature_guidance"):
        gen.generate(request, steps=6, feature_guidance=-1.0)
