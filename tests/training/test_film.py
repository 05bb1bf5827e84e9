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
def calibration_films(tmp_path_factory):
    """Films at the periodic model's generated size (64x32x16) from 3 fresh series: its recipe-posterior calibration."""
    from generator.data.build import series_in_dataset, simulate_dataset
    from generator.physics.presets import load_preset
    from generator.training.data import described_table

    preset = load_preset("tiny", design="halton", n_series=3, seed=9200, ch={"shape": [64, 32, 16]})
    path = simulate_dataset(preset, tmp_path_factory.mktemp("calibration") / "calibration.h5", progress=False)
    assert series_in_dataset(path) == {0: 4, 1: 4, 2: 4}
    films = described_table(path)  # labels the file in place: it had no descriptors
    assert len(films) == 12 and films["ABS_f_D"].between(0, 1).all() and "ABS_f_D" in described_table(path)
    return path


@pytest.fixture(scope="module")
def periodic_bundle(tiny_dataset, calibration_films, tmp_path_factory):
    return train_pipeline("tiny", data=tiny_dataset, out_dir=tmp_path_factory.mktemp("film"), overrides=PERIODIC, progress=False,
                          calibration=calibration_films)


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
    assert (record.n_calibration_films, record.n_calibration_series) == (12, 3)


def test_info_cli_names_the_calibration_films(periodic_bundle, monkeypatch, capsys):
    from tests.helpers import run_main

    code, stdout, err = run_main(["info", str(periodic_bundle)], monkeypatch, capsys)
    assert code == 0, err
    assert "recipe calibration: 12 films of 64x32x16 from 3 unused series" in stdout


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
        from generator.training.stages import generate_shape

        generate_shape(load_config("tiny", {"data": {"generate_shape": [64, 32, 16]}}), (32, 32, 16))


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


def test_the_bundle_carries_calibration_films_of_its_film_size(periodic_bundle, calibration_films, tiny_dataset, tmp_path):
    from generator.model_info import read_model_record
    from generator.training.data import open_dataset, sample_table
    from inverse.posterior import posterior_for_model

    record = read_model_record(periodic_bundle)
    films = sample_table(open_dataset(calibration_films))
    assert len(record.calibration_table) == len(films) == 12
    np.testing.assert_allclose(record.calibration_table["ABS_f_D"], films["ABS_f_D"])
    assert (record.calibration_table["STAT_n"] == 64 * 32 * 16).all() and (record.descriptor_table["STAT_n"] == 32 * 32 * 16).all()
    assert load_generator(periodic_bundle).calibration_table is not None
    posterior = posterior_for_model(periodic_bundle)
    training, generated = posterior.calibrations
    assert (training.voxels, training.method) == (32 * 32 * 16, "nested")
    assert (generated.voxels, generated.method, generated.n_films, generated.n_series) == (64 * 32 * 16, "split", 12, 3)
    # each film is calibrated at its own size
    assert list(posterior.calibration_index(films)) == [1] * 12
    assert list(posterior.calibration_index(record.descriptor_table)) == [0] * len(record.descriptor_table)
    dist = posterior.predict(films)
    np.testing.assert_allclose(dist.radius, generated.radius)
    # calibration films of another size than the generated films are refused before any training
    with pytest.raises(InvalidInputError, match=r"calibration: its films are \[32, 32, 16\], the generated films \[64, 32, 16\]"):
        train_pipeline("tiny", data=tiny_dataset, out_dir=tmp_path / "m", overrides=PERIODIC, progress=False, calibration=tiny_dataset)
    assert not (tmp_path / "m").exists()


def test_calibration_films_are_read_at_the_generated_size(calibration_films):
    from generator.training.stages import read_calibration_films

    attributes = ["phi", "chi", "log_time", "ABS_f_D"]
    films = read_calibration_films(calibration_films, (64, 32, 16), attributes)
    assert len(films) == 12 and films["series"].nunique() == 3
    assert set(films[["film_x", "film_y", "film_z"]].itertuples(index=False, name=None)) == {(64, 32, 16)}
    assert read_calibration_films(calibration_films, (64, 32, 16), attributes, n_series=3).equals(films)
    # the first 2 series are 8 films: too few to calibrate, and said so with their count
    with pytest.raises(InvalidInputError, match="got 8 of 64x32x16"):
        read_calibration_films(calibration_films, (64, 32, 16), attributes, n_series=2)
    with pytest.raises(InvalidInputError, match="holds 3 series, not the first 4 of its design"):
        read_calibration_films(calibration_films, (64, 32, 16), attributes, n_series=4)
    with pytest.raises(InvalidInputError, match=r"its films are \[64, 32, 16\], the generated films \[32, 32, 16\]"):
        read_calibration_films(calibration_films, (32, 32, 16), attributes)
    with pytest.raises(InvalidInputError, match="calibration"):
        read_calibration_films(calibration_films, (64, 32, 16), [*attributes, "no_such_descriptor"])
