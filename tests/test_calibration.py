"""Calibration films of a bundle (``generator.calibration``): their preset, and adding them per film size."""

from __future__ import annotations

import numpy as np
import pytest

from generator.calibration import add_calibration_films, calibration_preset, check_fresh_seeds
from generator.checkpoint import calibration_groups, check_calibration_table, read_bundle, table_to_tensor, tensor_to_table, with_film_shape
from generator.errors import InvalidInputError


@pytest.fixture(scope="module")
def bundle(tiny_bundle):
    return read_bundle(tiny_bundle)


def films_like_training(bundle, *, seed_offset: int = 1000, n: int | None = None):
    """The training films relabelled as films of fresh series (other seeds)."""
    films = tensor_to_table(bundle["descriptor_table"]).head(n).copy()
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
    small = calibration_preset({}, (32, 32, 16), n_series=2, seed=5, preset="small")  # a model that records no physics
    assert small.name == "small" and list(small.ch.shape) == [32, 32, 16]


@pytest.mark.parametrize("simulation, kwargs, message", [
    ({}, {}, "does not record how its training data was simulated"),
    (None, {"preset": "small"}, r"--preset: the model records the physics of its training data \(preset tiny\)"),
    ({"preset": "my-own", "ch_parameters": {"shape": [32, 32, 16]}}, {}, "not a shipped preset; name its TOML file"),
    (None, {"n_series": 0}, "at least 1"),
])
def test_the_preset_refuses_what_it_cannot_simulate(bundle, simulation, kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        calibration_preset(bundle["simulation"] if simulation is None else simulation, (32, 32, 16),
                           **{"n_series": 3, "seed": 9300, **kwargs})


def shapes_of(bundle) -> list:
    return [(shape, len(films)) for shape, films in calibration_groups(tensor_to_table(bundle["calibration_table"]))]


def test_films_of_each_shape_are_added_and_replace_only_their_own_shape(bundle):
    assert bundle.get("calibration_table") is None
    one = add_calibration_films(bundle, films_like_training(bundle), (64, 32, 16))
    assert one["state_dicts"] is bundle["state_dicts"]  # the networks are untouched
    assert shapes_of(one) == [((64, 32, 16), 16)]
    two = add_calibration_films(one, films_like_training(bundle, seed_offset=2000), (32, 32, 16))
    assert shapes_of(two) == [((32, 32, 16), 16), ((64, 32, 16), 16)]  # fewest voxels first
    # the same voxel count in another shape is another size
    three = add_calibration_films(two, films_like_training(bundle, seed_offset=2500), (32, 64, 16))
    assert shapes_of(three) == [((32, 32, 16), 16), ((32, 64, 16), 16), ((64, 32, 16), 16)]
    # the same shape again: its films are replaced, the others kept
    again = add_calibration_films(three, films_like_training(bundle, seed_offset=3000, n=12), (64, 32, 16))
    assert shapes_of(again) == [((32, 32, 16), 16), ((32, 64, 16), 16), ((64, 32, 16), 12)]
    replaced = dict(calibration_groups(tensor_to_table(again["calibration_table"])))[(64, 32, 16)]
    assert (replaced["seed"] >= 3000).all()


def test_a_table_written_by_training_is_the_generated_size(bundle):
    """Calibration tables of earlier bundles have no shape columns: their films are the bundle's volume_shape."""
    legacy = {**bundle, "calibration_table": table_to_tensor(films_like_training(bundle, seed_offset=500))}
    assert calibration_groups(tensor_to_table(legacy["calibration_table"]))[0][0] is None
    added = add_calibration_films(legacy, films_like_training(bundle), (64, 32, 16))
    assert shapes_of(added) == [(tuple(bundle["volume_shape"]), 16), ((64, 32, 16), 16)]
    assert shapes_of(add_calibration_films(legacy, films_like_training(bundle), bundle["volume_shape"])) == [
        (tuple(bundle["volume_shape"]), 16)]


def test_three_phase_films_of_one_shape_are_one_group(bundle):
    """Three-phase films count only donor and acceptor voxels in STAT_n, which differs film to film."""
    films = with_film_shape(films_like_training(bundle), (32, 32, 16))
    films["STAT_n"] = films["STAT_n"] - np.arange(len(films)) * 37
    groups = calibration_groups(films)
    assert len(groups) == 1 and len(groups[0][1]) == 16
    check_calibration_table(films)


def test_films_that_cannot_calibrate_are_refused(bundle):
    training = tensor_to_table(bundle["descriptor_table"])
    with pytest.raises(InvalidInputError, match="at least 10 calibration films of each size, got 8 of 64x32x16"):
        add_calibration_films(bundle, films_like_training(bundle, n=8), (64, 32, 16))
    with pytest.raises(InvalidInputError, match=f"seed {int(training['seed'].min())} is a training series' noise seed"):
        add_calibration_films(bundle, films_like_training(bundle, seed_offset=0), (64, 32, 16))
    for column in ("CT_f_D_tort1", "STAT_CC_D", "chi"):  # an attribute, any other descriptor the posterior may read, the recipe
        with pytest.raises(InvalidInputError, match=f"no '{column}' column"):
            add_calibration_films(bundle, films_like_training(bundle).drop(columns=column), (64, 32, 16))
    check_fresh_seeds(bundle, [9300, 9301])
    with pytest.raises(InvalidInputError, match="noise seed"):
        check_fresh_seeds(bundle, [9300, int(training["seed"].max())])


def test_a_calibration_table_needs_ten_films_of_every_shape(bundle):
    films = with_film_shape(films_like_training(bundle), (32, 32, 16))
    check_calibration_table(films)
    films.loc[:5, "film_x"] = 48
    with pytest.raises(InvalidInputError, match="got 6 of 48x32x16"):
        check_calibration_table(films)
    with pytest.raises(InvalidInputError, match="got 0"):
        check_calibration_table(films.assign(STAT_n=np.nan))
