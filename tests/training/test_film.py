"""Films of any in-plane size: a tiny periodic model trained on 32x32x16 films generates 64x32x16 films without seams."""

from __future__ import annotations

import numpy as np
import pytest

from generator.errors import InvalidInputError
from generator.loading import load_generator
from generator.model_info import model_info
from generator.training import train_pipeline
from generator.training.config import load_config

PERIODIC = {
    "data": {"generate_shape": [64, 32, 16]},
    "vae": {"max_steps": 6, "checkpoint_every": 6, "val_every": 6, "batch_size": 4,
            "model": {"widths": [4, 8], "in_plane_padding": "periodic"}},
    "fp": {"max_steps": 4, "checkpoint_every": 4, "val_every": 4,
           "model": {"hidden": [8], "conv_channels": [4], "in_plane_padding": "periodic"}},
    "ddpm": {"max_steps": 4, "checkpoint_every": 4, "val_every": 4, "sampling": {"guidance": 1.5, "steps": 4},
             "model": {"width": 4, "channel_mults": [1, 2], "in_plane_padding": "periodic"}},
}


@pytest.fixture(scope="module")
def periodic_bundle(tiny_dataset, tmp_path_factory):
    return train_pipeline("tiny", data=tiny_dataset, out_dir=tmp_path_factory.mktemp("film"), overrides=PERIODIC, progress=False)


def test_periodic_model_generates_its_default_and_other_in_plane_sizes(periodic_bundle):
    gen = load_generator(periodic_bundle)
    assert gen.resizable and gen.in_plane_multiple == 8
    assert gen.volume_shape == (64, 32, 16) and gen.training_shape == (32, 32, 16)
    conditions = {name: float(np.mean(gen.condition_ranges[name])) for name in gen.condition_names}
    default = gen.generate(conditions, n=2, steps=3, seed=1)
    assert default.labels.shape == (2, 64, 32, 16)
    wide = gen.generate(conditions, n=1, steps=3, seed=1, size=(40, 24, 16))
    assert wide.labels.shape == (1, 40, 24, 16)
    assert set(wide.predicted) == set(gen.attribute_names) and np.isfinite(wide.predicted["phi"]).all()


@pytest.mark.parametrize("size, message", [((36, 32, 16), "multiples of 8"), ((32, 32, 24), "electrode axis"), ((32, 32), "X, Y and Z")])
def test_impossible_sizes_are_refused(periodic_bundle, size, message):
    gen = load_generator(periodic_bundle)
    with pytest.raises(InvalidInputError, match=message):
        gen.generate({n: float(np.mean(gen.condition_ranges[n])) for n in gen.condition_names}, n=1, steps=2, size=size)


def test_zero_padded_model_generates_one_size_only(tiny_bundle):
    gen = load_generator(tiny_bundle)
    assert not gen.resizable
    with pytest.raises(InvalidInputError, match="not periodic"):
        gen.latent_shape_for((64, 32, 16))


def test_info_reports_sizes_data_and_training_time(periodic_bundle):
    record = model_info(periodic_bundle)
    assert record.volume_shape == (64, 32, 16) and record.training_shape == (32, 32, 16)
    assert record.in_plane_multiple == 8 and record.n_phases == 2
    assert record.dataset["preset"] == "tiny" and record.dataset["ch_parameters"]["shape"] == [32, 32, 16]
    assert {"vae", "fp", "ddpm"} <= set(record.training["stages"]) and record.training["wall_s"] > 0
    lo, hi = record.conditions["ABS_f_D"]
    assert 0 < lo < hi < 1


def test_the_bundle_carries_its_sampling_defaults(periodic_bundle):
    gen = load_generator(periodic_bundle)
    assert gen.sampling_defaults == {"sampler": "dpm++", "steps": 4, "guidance": 1.5, "feature_guidance": 0.0}
    conditions = {name: float(np.mean(gen.condition_ranges[name])) for name in gen.condition_names}
    implicit = gen.generate(conditions, n=1, seed=2, size=(32, 32, 16))
    explicit = gen.generate(conditions, n=1, seed=2, size=(32, 32, 16), sampler="dpm++", steps=4, guidance=1.5)
    plain = gen.generate(conditions, n=1, seed=2, size=(32, 32, 16), steps=4, guidance=1.0)
    np.testing.assert_array_equal(implicit.latents.numpy(), explicit.latents.numpy())
    assert not np.array_equal(implicit.latents.numpy(), plain.latents.numpy())
    assert model_info(periodic_bundle).sampling["guidance"] == 1.5


def test_generate_shape_needs_periodic_networks():
    with pytest.raises(InvalidInputError, match="periodic"):
        from generator.training.stages import _generate_shape

        _generate_shape(load_config("tiny", {"data": {"generate_shape": [64, 32, 16]}}), (32, 32, 16))


def test_generate_cli_takes_a_film_size(periodic_bundle, tmp_path, monkeypatch, capsys):
    from generator.io.volumes import read_volume
    from tests.helpers import run_main

    out = tmp_path / "films"
    base = ["generate", "--model", str(periodic_bundle), "-c", "ABS_f_D=0.5", "-n", "1", "--steps", "2", "--no-vti", "--jobs", "1"]
    code, stdout, err = run_main([*base, "--size", "40x24x16", "--out", str(out)], monkeypatch, capsys)
    assert code == 0, err
    assert read_volume(out / "sample_0000.npy").shape == (40, 24, 16) and "(40, 24, 16)" in stdout
    code, _, err = run_main([*base, "--size", "36x24x16", "--out", str(tmp_path / "bad")], monkeypatch, capsys)
    assert code == 2 and "multiples of 8" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()
