"""Calibration films of a bundle (``generator.calibration``): their preset, and adding them per film size."""

from __future__ import annotations

import numpy as np
import pytest

from generator.calibration import add_calibration_films, calibration_preset, check_fresh_seeds
from generator.checkpoint import calibration_groups, check_calibration_table, read_bundle, tensor_to_table
from generator.errors import InvalidInputError


@pytest.fixture(scope="module")
def bundle(tiny_bundle):
    return read_bundle(tiny_bundle)


def films_like_training(bundle, *, scale: int, seed_offset: int = 1000, n: int | None = None):
    """The training films relabelled as fresh series of another size (``STAT_n`` x ``scale``, other seeds)."""
    films = tensor_to_table(bundle["descriptor_table"]).head(n).copy()
    films["STAT_n"] *= scale
    films["seed"] += seed_offset
    return films


def test_the_preset_is_the_bundles_physics_at_the_size_as_fresh_halton_series(bundle):
    simulation = bundle["simulation"]
    preset = calibration_preset(simulation, (48, 32, 16), n_series=3, seed=9300)
    assert preset.design == "halton" and preset.n_series == 3 and preset.seed == 9300
    assert list(preset.ch.shape) == [48, 32, 16]
    recorded = dict(simulation["ch_parameters"])
    for key in ("dt", "steps", "n_snapshots", "kappa", "z_boundary"):
        assert getattr(preset.ch, key) == recorded[key]
    assert (preset.phi0_range, preset.chi_range) == ((0.4, 0.6), (2.8, 3.4))
    small = calibration_preset({}, (32, 32, 16), n_series=2, seed=5, preset="small")
    assert small.name == "small" and list(small.ch.shape) == [32, 32, 16]


@pytest.mark.parametrize("simulation, kwargs, message", [
    ({}, {}, "does not record how its training data was simulated"),
    ({"preset": "my-own", "ch_parameters": {"shape": [32, 32, 16]}}, {}, "not a shipped preset; name its TOML file"),
    (None, {"n_series": 0}, "at least 1"),
])
def test_the_preset_refuses_what_it_cannot_simulate(bundle, simulation, kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        calibration_preset(bundle["simulation"] if simulation is None else simulation, (32, 32, 16),
                           **{"n_series": 3, "seed": 9300, **kwargs})


def test_films_of_each_size_are_added_and_replace_only_their_own_size(bundle):
    assert bundle.get("calibration_table") is None
    double = films_like_training(bundle, scale=2)
    one = add_calibration_films(bundle, double)
    assert one["state_dicts"] is bundle["state_dicts"]  # the networks are untouched
    table = tensor_to_table(one["calibration_table"])
    assert len(table) == 16 and (table["STAT_n"] == 2 * 32 * 32 * 16).all()
    two = add_calibration_films(one, films_like_training(bundle, scale=4, seed_offset=2000))
    groups = calibration_groups(tensor_to_table(two["calibration_table"]))
    assert [(voxels, len(films)) for voxels, films in groups] == [(2 * 32 * 32 * 16, 16), (4 * 32 * 32 * 16, 16)]
    # the same size again: its films are replaced, the other size's kept
    again = add_calibration_films(two, films_like_training(bundle, scale=2, seed_offset=3000, n=12))
    groups = calibration_groups(tensor_to_table(again["calibration_table"]))
    assert [(voxels, len(films)) for voxels, films in groups] == [(2 * 32 * 32 * 16, 12), (4 * 32 * 32 * 16, 16)]
    assert (groups[0][1]["seed"] >= 3000).all()
    np.testing.assert_allclose(groups[1][1]["ABS_f_D"].to_numpy(), tensor_to_table(bundle["descriptor_table"])["ABS_f_D"].to_numpy())


def test_films_that_cannot_calibrate_are_refused(bundle):
    training = tensor_to_table(bundle["descriptor_table"])
    mixed = films_like_training(bundle, scale=2)
    mixed.loc[:11, "STAT_n"] *= 2
    with pytest.raises(InvalidInputError, match="at least 10 calibration films of each size, got 4"):
        add_calibration_films(bundle, mixed)
    mixed.loc[:, "STAT_n"] = [2 * 32 * 32 * 16] * 12 + [0] * 4
    assert len(calibration_groups(mixed)) == 1  # films without a voxel count are left out
    both = films_like_training(bundle, scale=2)
    both.loc[10:, "STAT_n"] *= 2
    with pytest.raises(InvalidInputError, match="at least 10"):
        add_calibration_films(bundle, both)
    with pytest.raises(InvalidInputError, match=f"seed {int(training['seed'].min())} is a training series' noise seed"):
        add_calibration_films(bundle, films_like_training(bundle, scale=2, seed_offset=0))
    with pytest.raises(InvalidInputError, match="no 'CT_f_D_tort1' column"):
        add_calibration_films(bundle, films_like_training(bundle, scale=2).drop(columns="CT_f_D_tort1"))
    check_fresh_seeds(bundle, [9300, 9301])
    with pytest.raises(InvalidInputError, match="noise seed"):
        check_fresh_seeds(bundle, [9300, int(training["seed"].max())])


def test_a_calibration_table_needs_ten_films_of_every_size(bundle):
    films = films_like_training(bundle, scale=2)
    check_calibration_table(films)
    films.loc[:5, "STAT_n"] = 3 * 32 * 32 * 16
    with pytest.raises(InvalidInputError, match="got 6 of 49,152 voxels"):
        check_calibration_table(films)
    with pytest.raises(InvalidInputError, match="got 0"):
        check_calibration_table(films.assign(STAT_n=np.nan))
