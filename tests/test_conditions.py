"""Condition draws: given values, uniform ranges, and completion of partial conditions from the training data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from generator.conditions import complete_conditions, draw_conditions, parse_range
from generator.errors import InvalidInputError

NAMES = ["a", "b", "c"]


@pytest.fixture
def table() -> pd.DataFrame:
    """400 training rows with b = 1 - a (plus noise) and c independent of both."""
    rng = np.random.default_rng(1)
    a = rng.uniform(0.2, 0.8, 400)
    return pd.DataFrame({"a": a, "b": 1 - a + rng.normal(0, 0.01, 400), "c": rng.uniform(0.0, 1.0, 400), "series": 0})


@pytest.mark.parametrize("method", ["empirical", "gaussian"])
def test_completion_follows_the_training_correlation(table: pd.DataFrame, method: str) -> None:
    for a in (0.3, 0.7):
        draw = draw_conditions(NAMES, 64, given={"a": a}, table=table, method=method, seed=3)
        assert draw.given == ["a"] and draw.completed == ["b", "c"] and draw.ranged == []
        assert np.all(draw.matrix[:, 0] == a)
        assert np.mean(draw.matrix[:, 1]) == pytest.approx(1 - a, abs=0.03)  # b follows a
        assert np.std(draw.matrix[:, 2]) > 0.1  # c is not pinned: a per-sample draw
        lo, hi = table[["b", "c"]].min().to_numpy(), table[["b", "c"]].max().to_numpy()
        assert np.all((draw.matrix[:, 1:] >= lo) & (draw.matrix[:, 1:] <= hi))


def test_empirical_completion_takes_values_of_training_rows(table: pd.DataFrame) -> None:
    draw = draw_conditions(NAMES, 20, given={"a": 0.5}, table=table, seed=0)
    rows = {tuple(r) for r in table[["b", "c"]].to_numpy().round(12)}
    assert all(tuple(r) in rows for r in draw.matrix[:, 1:].round(12))


def test_ranges_are_drawn_uniformly_per_sample_and_seeded(table: pd.DataFrame) -> None:
    draw = draw_conditions(NAMES, 200, ranges={"a": (0.3, 0.6)}, given={"c": 0.1}, table=table, seed=5)
    assert draw.ranged == ["a"] and draw.completed == ["b"]
    assert draw.matrix[:, 0].min() >= 0.3 and draw.matrix[:, 0].max() <= 0.6
    assert np.ptp(draw.matrix[:, 0]) > 0.25
    assert np.corrcoef(draw.matrix[:, 0], draw.matrix[:, 1])[0, 1] < -0.8  # b completed per sample from its own a
    again = draw_conditions(NAMES, 200, ranges={"a": (0.3, 0.6)}, given={"c": 0.1}, table=table, seed=5)
    np.testing.assert_array_equal(draw.matrix, again.matrix)
    full = draw_conditions(NAMES, 5, ranges={"a": (0.3, 0.6), "b": (0.1, 0.2), "c": (0.0, 1.0)}, table=None)
    assert full.completed == [] and full.matrix.shape == (5, 3)


def test_nothing_given_draws_from_the_training_distribution(table: pd.DataFrame) -> None:
    draw = complete_conditions(np.full((300, 3), np.nan), table, NAMES, rng=np.random.default_rng(0))
    assert np.corrcoef(draw[:, 0], draw[:, 1])[0, 1] < -0.95
    gauss = complete_conditions(np.full((300, 3), np.nan), table, NAMES, method="gaussian", rng=np.random.default_rng(0))
    assert np.corrcoef(gauss[:, 0], gauss[:, 1])[0, 1] < -0.95


def test_bad_condition_requests_are_one_line_errors(table: pd.DataFrame) -> None:
    with pytest.raises(InvalidInputError, match="unknown condition 'z'"):
        draw_conditions(NAMES, 2, given={"z": 0.1}, table=table)
    with pytest.raises(InvalidInputError, match="also given"):
        draw_conditions(NAMES, 2, given={"a": 0.1}, ranges={"a": (0.0, 0.2)}, table=table)
    with pytest.raises(InvalidInputError, match="LO <= HI"):
        draw_conditions(NAMES, 2, ranges={"a": (0.5, 0.2)}, table=table)
    with pytest.raises(InvalidInputError, match="--table"):
        draw_conditions(NAMES, 2, given={"a": 0.1}, table=None)
    with pytest.raises(InvalidInputError, match="--complete"):
        draw_conditions(NAMES, 2, given={"a": 0.1}, table=table, method="magic")
    with pytest.raises(InvalidInputError, match="no column 'c'"):
        draw_conditions(NAMES, 2, given={"a": 0.1}, table=table.drop(columns="c"))


def test_parse_range() -> None:
    assert parse_range("ABS_f_D=0.3:0.6") == ("ABS_f_D", (0.3, 0.6))
    for bad in ("ABS_f_D=0.3", "ABS_f_D", "=0.1:0.2", "ABS_f_D=a:b"):
        with pytest.raises(InvalidInputError, match="NAME=LO:HI"):
            parse_range(bad)


def test_condition_vector_fixes_the_order_once():
    from generator.conditions import condition_vector
    from inverse.feasibility import range_model
    from inverse.spec import ResolvedSpec, parse_spec

    names = ["ABS_f_D", "CT_f_D_tort1", "CT_f_A_tort1"]
    values = {"CT_f_A_tort1": 0.3, "ABS_f_D": 0.1, "CT_f_D_tort1": 0.2}
    assert list(condition_vector(names, values)) == [0.1, 0.2, 0.3]
    with pytest.raises(InvalidInputError, match="unknown condition 'x'"):
        condition_vector(names, {**values, "x": 1.0})
    assert list(condition_vector(names, {**values, "x": 1.0}, allow_extra=True)) == [0.1, 0.2, 0.3]
    with pytest.raises(InvalidInputError, match="missing a value for 'CT_f_D_tort1'"):
        condition_vector(names, {"ABS_f_D": 0.1, "CT_f_A_tort1": 0.3})
    # the study's proposal and the feasibility check read the same order
    spec = parse_spec({"name": "x", "targets": {"ABS_f_D": {"at_least": 0.1}}})
    resolved = ResolvedSpec(spec=spec, bounds={"CT_f_A_tort1": (0, 1), "ABS_f_D": (0, 1)}, fixed={"CT_f_D_tort1": 0.2}, condition_names=names)
    proposal = resolved.conditions({"ABS_f_D": 0.1, "CT_f_A_tort1": 0.3})
    assert list(proposal) == names and list(proposal.values()) == [0.1, 0.2, 0.3]
    model = range_model({n: (0.0, 1.0) for n in names})
    assert list(model.vector(proposal)) == [0.1, 0.2, 0.3]
