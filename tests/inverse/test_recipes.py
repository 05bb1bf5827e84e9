"""Recipe ranking from trials' user attributes."""

from __future__ import annotations

import numpy as np
import optuna
from optuna.distributions import FloatDistribution

from inverse.recipes import LEADING_COLUMNS, pareto_mask, rank_recipes


def _trial(number, values, *, score, unc, recipe_ok=True, status="measured", feasible=True, phi=0.5):
    attrs = {
        "status": status, "score": score, "uncertainty": unc, "meets_targets": score == 0.0, "recipe_ok": recipe_ok,
        "feasibility": {"feasible": feasible}, "conditions": {"ABS_f_D": 0.4 + number / 100},
        "recipe_mean": {"phi": phi, "chi": 3.0}, "recipe_std": {"phi": 0.01, "chi": 0.1},
        "measured_mean": {"ABS_f_D": 0.47}, "measured_std": {"ABS_f_D": 0.01}, "artifact_id": f"a{number}",
    }
    return optuna.trial.create_trial(
        values=values, params={"x": 0.1}, distributions={"x": FloatDistribution(0, 1)}, user_attrs=attrs,
    )


def _numbered(trials):
    for i, t in enumerate(trials):
        t.number = i
    return trials


def test_ranking_order_and_columns():
    trials = _numbered([
        _trial(0, [0.5], score=0.5, unc=0.1),
        _trial(1, [0.0], score=0.0, unc=0.3),
        _trial(2, [0.0], score=0.0, unc=0.1),
        _trial(3, [0.0], score=0.0, unc=0.05, recipe_ok=False),
        _trial(4, [2.0], score=2.0, unc=0.0, status="infeasible"),
        _trial(5, [0.2], score=0.2, unc=0.2),
    ])
    table = rank_recipes(trials, descriptors=["ABS_f_D"])
    assert list(table.columns[: len(LEADING_COLUMNS)]) == LEADING_COLUMNS
    # met targets first (less uncertain first), then by mismatch, recipe violations last, infeasible dropped
    assert table["trial"].tolist() == [2, 1, 5, 0, 3]
    assert table["rank"].tolist() == [1, 2, 3, 4, 5]
    for column in ("phi_mean", "phi_lo", "phi_hi", "phi_fp", "chi_mean", "cond_ABS_f_D", "ABS_f_D_mean", "ABS_f_D_std", "artifact_id"):
        assert column in table.columns
    # without a posterior: the feature predictor's mean, no interval, and never its spread over the films
    assert (table["recipe_source"] == "feature predictor").all() and table["phi_lo"].isna().all()
    assert "phi_std" not in table.columns and table["phi_mean"].tolist() == table["phi_fp"].tolist()


def test_posterior_recipes_with_intervals():
    from inverse.posterior import RECIPE, RecipePosterior
    from generator.model_info import read_model_record

    training = read_model_record("default").descriptor_table
    posterior = RecipePosterior.fit(training[training["series"] % 4 != 0], n_estimators=20)
    films = training[training["series"] % 4 == 0].reset_index(drop=True)
    features = posterior.features
    trials = _numbered([_trial(i, [0.1 * i], score=0.1 * i, unc=0.1) for i in range(3)])
    picks = [0, len(films) // 2, len(films) - 1]
    for t, i in zip(trials, picks):
        t.user_attrs["measured_mean"] = {**films.loc[i, features].to_dict(), "ABS_f_D": films.loc[i, "ABS_f_D"]}
    table = rank_recipes(trials, descriptors=["ABS_f_D"], posterior=posterior)
    assert (table["recipe_source"] == "posterior").all()
    expected = posterior.predict(films.loc[picks, features])
    for j, name in enumerate(RECIPE):
        np.testing.assert_allclose(table[f"{name}_mean"], expected.mean[:, j])
        assert np.all(table[f"{name}_lo"] <= table[f"{name}_mean"]) and np.all(table[f"{name}_mean"] <= table[f"{name}_hi"])
    assert table["phi_fp"].tolist() == [0.5, 0.5, 0.5]  # the feature predictor's mean is kept for reference
    # trials that lack a descriptor of the posterior keep the feature predictor's recipe
    plain = rank_recipes(_numbered([_trial(0, [0.1], score=0.1, unc=0.1)]), posterior=posterior)
    assert plain["recipe_source"].tolist() == ["feature predictor"]


def test_pareto_mask():
    values = np.array([[0.0, 10.0], [0.0, 5.0], [1.0, 20.0], [2.0, 1.0]])
    mask = pareto_mask(values, ["minimize", "maximize"])
    assert mask.tolist() == [True, False, True, False]
