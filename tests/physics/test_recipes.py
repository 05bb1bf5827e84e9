"""The recipe (phi, chi, log_time): its one definition, and the simulation of recipes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from generator.errors import InvalidInputError
from generator.physics import recipes
from generator.physics.cahn_hilliard import log_time_to_time
from generator.physics.presets import load_preset
from generator.physics.recipes import RECIPE, RECIPE_NAMES, RECIPE_VARIABLES, Recipe


def test_the_recipe_is_defined_once_with_units_and_domains():
    assert RECIPE_NAMES == ("phi", "chi", "log_time")
    assert [v.name for v in RECIPE] == list(RECIPE_NAMES) == list(RECIPE_VARIABLES)
    assert all(v.unit and v.words and v.description for v in RECIPE)
    assert RECIPE_VARIABLES["phi"].domain == (0.0, 1.0)
    assert RECIPE_VARIABLES["phi"].contains(0.5) and not RECIPE_VARIABLES["phi"].contains(1.0)
    assert not RECIPE_VARIABLES["phi"].contains(0.0) and not RECIPE_VARIABLES["chi"].contains(math.nan)
    assert RECIPE_VARIABLES["log_time"].contains(-2.0) and RECIPE_VARIABLES["chi"].contains(-1.0)


def test_every_module_reads_the_one_definition():
    from generator import pipeline
    from inverse import posterior, verify

    assert pipeline.RECIPE_NAMES is RECIPE_NAMES
    assert verify.RECIPE is RECIPE_NAMES and posterior.RECIPE is RECIPE_NAMES


def test_a_recipe_value_checks_its_domain_and_converts():
    recipe = Recipe.from_mapping({"phi": 0.4, "chi": 3, "log_time": 1.0, "score": 0.1})
    assert recipe.as_dict() == {"phi": 0.4, "chi": 3.0, "log_time": 1.0}
    assert list(recipe.as_array()) == [0.4, 3.0, 1.0]
    assert recipe.time == pytest.approx(float(log_time_to_time(1.0)))
    with pytest.raises(InvalidInputError, match=r"phi=1.2 must be in \(0, 1\)"):
        Recipe(phi=1.2, chi=3.0, log_time=1.0)
    with pytest.raises(InvalidInputError, match="log_time=nan must be finite"):
        Recipe(phi=0.5, chi=3.0, log_time=math.nan)
    with pytest.raises(InvalidInputError, match="missing chi"):
        Recipe.from_mapping({"phi": 0.5, "log_time": 1.0})


def test_check_recipes_agrees_with_the_domains():
    settings = recipes.SimulationSettings(ch=load_preset("tiny").ch, n_phases=2, preset="tiny", source="preset")
    assert list(recipes.check_recipes([Recipe(0.5, 3.0, 1.0).as_array()], settings)) == [round(10 / settings.ch.dt)]
    with pytest.raises(InvalidInputError, match=r"phi=1 must lie in \(0, 1\)"):
        recipes.check_recipes([[1.0, 3.0, 1.0]], settings)


def test_label_fields_two_and_three_phases():
    rng = np.random.default_rng(0)
    fields = rng.uniform(0, 1, (2, 6, 5, 4))
    two = recipes.label_fields(fields, 2)
    three = recipes.label_fields(fields, 3)
    assert two.shape == three.shape == (2, 6, 5, 4) and two.dtype == np.uint8
    assert set(np.unique(two)) == {0, 1} and set(np.unique(three)) == {0, 1, 2}
    assert np.array_equal(two[three != 2], three[three != 2])  # mixed only ever replaces donor/acceptor
    assert recipes.label_fields(fields[..., 0], 2).shape == (2, 6, 5, 1)  # 2-D fields gain the electrode axis


# ----------------------------------------------------------------------------- physics


def test_three_phase_models_get_three_phase_labels_of_the_same_run():
    ch = load_preset("tiny").ch
    two = recipes.SimulationSettings(ch=ch, n_phases=2, preset="tiny", source="preset")
    three = recipes.SimulationSettings(ch=ch, n_phases=3, preset="tiny", source="preset")
    recipe = [[0.5, 3.0, 1.0]]  # t = 10: 100 steps
    labels2, _ = recipes.simulate_recipes(recipe, two, [0])
    labels3, _ = recipes.simulate_recipes(recipe, three, [0])
    mixed = labels3 == 2
    assert 0.0 < mixed.mean() <= 0.3 + 1e-9  # the mixed band, capped as in the training data
    assert np.array_equal(labels3[~mixed], labels2[~mixed])  # same run, same donor/acceptor outside the band
