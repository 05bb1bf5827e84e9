"""Score, distances, uncertainty and recipe violations (the trial-evaluation arithmetic)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from inverse.evaluation import descriptor_scales, recipe_violation, score, target_distances, uncertainty
from inverse.spec import Bound, Target


def test_distances_are_zero_inside_and_scaled_outside():
    targets = {
        "ABS_f_D": Target(at_least=0.45, at_most=0.5),
        "CT_f_D_tort1": Target(at_least=0.9),
        "CT_f_A_tort1": Target(equal=0.8, tolerance=0.05),
    }
    scales = {"ABS_f_D": 0.1, "CT_f_D_tort1": 0.2, "CT_f_A_tort1": 0.05}
    d = target_distances({"ABS_f_D": 0.47, "CT_f_D_tort1": 0.8, "CT_f_A_tort1": 0.95}, targets, scales)
    assert d["ABS_f_D"] == 0.0
    assert d["CT_f_D_tort1"] == pytest.approx(0.1 / 0.2)
    assert d["CT_f_A_tort1"] == pytest.approx((0.95 - 0.85) / 0.05)
    assert score(d) == pytest.approx(math.sqrt((0.5**2 + 2.0**2) / 3))
    assert score(target_distances({"ABS_f_D": 0.5, "CT_f_D_tort1": 0.95, "CT_f_A_tort1": 0.76}, targets, scales)) == 0.0
    assert target_distances({"ABS_f_D": float("nan")}, {"ABS_f_D": targets["ABS_f_D"]}, scales)["ABS_f_D"] == math.inf


def test_scales_come_from_the_training_table():
    table = pd.DataFrame({"ABS_f_D": [0.3, 0.5, 0.7], "STAT_e": [5.0, 5.0, 5.0]})
    scales = descriptor_scales(["ABS_f_D", "STAT_e", "CT_f_A_tort1"], table)
    assert scales["ABS_f_D"] == pytest.approx(np.std([0.3, 0.5, 0.7]))
    assert scales["STAT_e"] == 1.0  # constant column: count fall-back
    assert scales["CT_f_A_tort1"] == 0.1  # not in the table: fraction fall-back
    assert descriptor_scales(["ABS_f_D"], None) == {"ABS_f_D": 0.1}


def test_uncertainty_is_rms_of_scaled_std():
    u = uncertainty({"a": 0.02, "b": 0.04}, ["a", "b"], {"a": 0.1, "b": 0.1})
    assert u == pytest.approx(math.sqrt((0.2**2 + 0.4**2) / 2))


def test_recipe_violation():
    bounds = {"log_time": Bound(at_most=3.0), "chi": Bound(at_least=2.5, at_most=3.0)}
    assert recipe_violation({"log_time": 2.0, "chi": 2.8}, bounds) < 0
    assert recipe_violation({"log_time": 3.6, "chi": 2.8}, bounds) == pytest.approx(0.6 / 3.0)
    assert recipe_violation({"log_time": 2.0, "chi": 2.0}, bounds) == pytest.approx(0.5 / 2.5)
