"""Recipe posteriors: calibrated on the default model's training films, checked on held-out series."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from generator.errors import InvalidInputError
from inverse.posterior import RECIPE, RecipePosterior, intensive_features


@pytest.fixture(scope="module")
def training_table() -> pd.DataFrame:
    """The shipped model's training table: 80 simulated series x 8 snapshots (real physics films)."""
    from generator.model_info import read_model_record

    return read_model_record("default").descriptor_table


@pytest.fixture(scope="module")
def split(training_table):  # noqa: ANN001, ANN201
    """Fit on two thirds of the series; the others are held out (never seen, not even their snapshots)."""
    held = training_table["series"] % 3 == 1
    fitted = RecipePosterior.fit(training_table[~held].reset_index(drop=True), n_estimators=40, seed=1)
    return fitted, training_table[held].reset_index(drop=True)


def test_features_are_intensive_and_measured(training_table):
    features = intensive_features(training_table)
    assert "ABS_f_D" in features and "norm_STAT_e" in features
    assert not {"STAT_n", "STAT_e", "CT_n_D_adj_An", "phi", "chi", "log_time", "series", "seed", "DISS_f10_D"} & set(features)


def test_regions_are_calibrated_on_held_out_series(split):
    posterior, held = split
    dist = posterior.predict(held)
    truth = held[list(RECIPE)].to_numpy()
    assert dist.mean.shape == (len(held), 3) and dist.cov.shape == (len(held), 3, 3)
    coverage = dist.contains(truth).mean()
    assert 0.7 <= coverage <= 0.9, coverage
    summary = dist.coverage(truth)
    assert summary["joint"] == coverage and summary["n_films"] == len(held) and summary["level"] == 0.8
    assert summary["marginal"]["phi"] == dist.in_intervals(truth)[:, 0].mean()
    marginal = dist.in_intervals(truth).mean(axis=0)
    assert np.all((marginal >= 0.7) & (marginal <= 0.92)), marginal
    assert np.all(dist.lower <= dist.mean + 1e-9) and np.all(dist.upper >= dist.lower)
    # phi is pinned by the donor fraction; chi much less: the intervals say so
    width = (dist.upper - dist.lower).mean(axis=0)
    assert width[0] < 0.05 and width[1] > 5 * width[0]


def test_degenerate_direction_and_recipe_error(split):
    posterior, _ = split
    axes = posterior.degenerate_direction()
    major, minor = np.array(axes["direction"]), np.array(axes["minor"])
    assert np.linalg.norm(major) == pytest.approx(1) and abs(major @ minor) < 1e-9
    assert axes["std_ratio"] > 1 and axes["correlation"] < 0  # more chi, less time: the trade-off
    truth = np.array([0.5, 3.1, 1.4])
    along = truth + np.r_[0, np.array(axes["direction"]) * posterior.y_std[1:] * 0.3]
    error = posterior.recipe_error(along, truth)
    assert error["non_degenerate"] == pytest.approx(0, abs=1e-9) and error["degenerate"] == pytest.approx(0.3)


def test_sets_samples_and_density(split):
    posterior, held = split
    films = held[held["series"] == held["series"].iloc[0]].head(3)
    one = posterior.predict_set(films)
    assert len(one) == 1
    draws = one.sample(0, 200, seed=0)
    assert draws.shape == (200, 3)
    assert np.all(draws >= posterior.y_min - 1e-12) and np.all(draws <= posterior.y_max + 1e-12)
    assert np.array_equal(draws, one.sample(0, 200, seed=0))
    chi = np.linspace(2.8, 3.5, 30)
    log_time = np.linspace(0.9, 2.0, 40)
    density = one.density_2d(0, chi, log_time)
    assert density.shape == (40, 30) and np.all(density >= 0)
    assert 0 < one.level_2d(0, 0.8) < density.max()
    summary = one.summary(0)
    assert set(summary["mean"]) == set(RECIPE) and summary["level"] == 0.8


def test_bad_input_is_refused(training_table):
    with pytest.raises(InvalidInputError, match="level"):
        RecipePosterior.fit(training_table, level=1.5)
    with pytest.raises(InvalidInputError, match="'chi'"):
        RecipePosterior.fit(training_table.drop(columns=["chi"]))
    with pytest.raises(InvalidInputError, match="3 training series"):
        RecipePosterior.fit(training_table[training_table["series"] < 2])
    posterior = RecipePosterior.fit(training_table[training_table["series"] < 12], n_estimators=5)
    with pytest.raises(InvalidInputError, match="no 'norm_STAT_e' descriptor"):
        posterior.predict(training_table.drop(columns=["norm_STAT_e"]).head(2))
    with pytest.raises(InvalidInputError, match="no film"):
        posterior.predict_set(training_table.head(0))


def test_a_design_given_as_volumes(split):
    from generator.descriptors import compute_batch
    from tests.inverse.conftest import random_field_volumes

    posterior, _ = split
    volumes, _ = random_field_volumes(3)
    measured = pd.DataFrame(compute_batch(list(volumes), n_jobs=1))
    by_volumes = posterior.predict_volumes(volumes, n_jobs=2)
    np.testing.assert_allclose(by_volumes.mean, posterior.predict_set(measured).mean)
    np.testing.assert_allclose(by_volumes.mean, posterior.predict(measured.mean().to_dict()).mean)


def test_fitted_once_per_table_content(training_table):
    from inverse.posterior import posterior_for_model, posterior_for_table

    part = training_table[training_table["series"] < 30].reset_index(drop=True)
    first = posterior_for_table(part, features=["ABS_f_D", "norm_STAT_e"])
    assert posterior_for_table(part.copy(), features=["ABS_f_D", "norm_STAT_e"]) is first  # same content: no refit
    assert first.features == ["ABS_f_D", "norm_STAT_e"]
    other = part.assign(norm_STAT_e=part["norm_STAT_e"] + 0.01)
    assert posterior_for_table(other, features=["ABS_f_D", "norm_STAT_e"]) is not first
    from generator.model_info import read_model_record

    calibration = read_model_record("default").calibration_table  # the shipped model's films of 64x64x64 and 128x128x64 from fresh series
    assert posterior_for_model("default") is posterior_for_table(training_table, calibration_table=calibration)
    assert [c.method for c in posterior_for_model("default").calibrations] == ["nested", "split", "split"]  # 64x64x64, 128x128x64
    assert posterior_for_table(training_table) is not posterior_for_model("default")
    with pytest.raises(InvalidInputError, match="no training-descriptor table"):
        posterior_for_table(None)


def test_nested_calibration_scores_folds_as_new_series(training_table):
    """Out-of-fold residuals describe fold models worse than the final one: their regions are wider and over-cover.

    The nested calibration scores each fold of series with a whole posterior fitted without it, as a new
    series is scored; its radius is smaller and its held-out coverage nearer the level.
    """
    held = training_table["series"] % 3 == 1
    fit, test = training_table[~held].reset_index(drop=True), training_table[held].reset_index(drop=True)
    truth = test[list(RECIPE)].to_numpy()
    nested = RecipePosterior.fit(fit, n_estimators=40, seed=1)
    old = RecipePosterior.fit(fit, n_estimators=40, seed=1, calibration="out_of_fold")
    np.testing.assert_allclose(nested.predict(test).mean, old.predict(test).mean)  # same location, other radius
    assert nested.radius < old.radius
    miss = {name: abs(p.predict(test).contains(truth).mean() - p.level) for name, p in (("nested", nested), ("old", old))}
    assert miss["nested"] < miss["old"], miss
    with pytest.raises(InvalidInputError, match="calibration"):
        RecipePosterior.fit(fit, calibration="bogus")


def test_films_of_another_size_are_calibrated_by_their_own_films(training_table):
    """Split conformal per film size: calibration films of a size get radii from their own scores.

    The held-out third of the series stands in for films of another size (their ``STAT_n`` marked 8x): half of those
    series calibrate, the other half are new films of that size.
    """
    from inverse.posterior import _conformal_quantile

    held = training_table["series"] % 3 == 1
    fitted, other = training_table[~held].reset_index(drop=True), training_table[held].reset_index(drop=True)
    other["STAT_n"] = other["STAT_n"] * 8
    calibrating = other["series"] % 2 == 0
    calibration, new = other[calibrating].reset_index(drop=True), other[~calibrating].reset_index(drop=True)
    posterior = RecipePosterior.fit(fitted, n_estimators=40, seed=1, calibration_table=calibration)
    plain = RecipePosterior.fit(fitted, n_estimators=40, seed=1)
    assert len(posterior.calibrations) == 2 and posterior.radius == plain.radius  # the training films' radius is unchanged
    split = posterior.calibrations[1]
    assert split.method == "split" and split.voxels == pytest.approx(8 * fitted["STAT_n"].median())
    joint, marginal = posterior.scores(calibration)
    assert split.radius == pytest.approx(_conformal_quantile(joint, 0.8))
    np.testing.assert_allclose(split.marginal_radius, [_conformal_quantile(marginal[:, j], 0.8) for j in range(3)])
    # new films of that size get its radius, films of the training size the training radius; same location
    dist, as_training = posterior.predict(new), posterior.predict(new.assign(STAT_n=fitted["STAT_n"].median()))
    np.testing.assert_allclose(dist.radius, split.radius)
    np.testing.assert_allclose(as_training.radius, plain.radius)
    np.testing.assert_allclose(dist.mean, as_training.mean)
    coverage = dist.contains(new[list(RECIPE)].to_numpy()).mean()
    assert 0.65 <= coverage <= 0.95, coverage
    # a film's score says whether its true recipe is inside: the score against the radius is the region's test
    np.testing.assert_array_equal(posterior.scores(new)[0] <= split.radius, dist.contains(new[list(RECIPE)].to_numpy()))
    with pytest.raises(InvalidInputError, match="no 'chi' column"):
        posterior.scores(new.drop(columns="chi"))
    # a design's mean keeps its size; films without a voxel count get the training radius
    assert posterior.predict_set(new).radius[0] == pytest.approx(split.radius)
    assert posterior.predict(new.drop(columns="STAT_n")).radius[0] == pytest.approx(plain.radius)
    with pytest.raises(InvalidInputError, match="calibration films have no 'STAT_n'"):
        RecipePosterior.fit(fitted, n_estimators=10, calibration_table=calibration.drop(columns="STAT_n"))


def test_calibration_films_of_several_sizes_each_calibrate_their_own_size(training_table):
    """One calibration table, two film sizes (``microdesign calibrate`` adds sizes): one split calibration per size."""
    from generator.checkpoint import with_film_shape

    held = training_table["series"] % 3 == 1
    fitted, other = training_table[~held].reset_index(drop=True), training_table[held].reset_index(drop=True)
    size = fitted["STAT_n"].median()
    first = other["series"] % 2 == 0
    at_training_size = with_film_shape(other[first].assign(STAT_n=size), (64, 64, 64))  # the training films' own size
    at_8x = with_film_shape(other[~first].assign(STAT_n=8 * size), (128, 128, 512))
    posterior = RecipePosterior.fit(fitted, n_estimators=40, seed=1,
                                    calibration_table=pd.concat([at_8x, at_training_size], ignore_index=True))
    single = RecipePosterior.fit(fitted, n_estimators=40, seed=1, calibration_table=at_8x.reset_index(drop=True))
    assert [(c.method, c.voxels, c.n_films) for c in posterior.calibrations] == [
        ("nested", size, len(fitted)), ("split", size, len(at_training_size)), ("split", 8 * size, len(at_8x))]
    assert posterior.calibrations[2].radius == pytest.approx(single.calibrations[1].radius)  # the other size changes nothing
    # a film of the training size is read with the calibration films of that size (fresh series), not the training films'
    films = other.head(3)
    index = posterior.calibration_index(pd.concat([films.assign(STAT_n=size), films.assign(STAT_n=8 * size),
                                                   films.assign(STAT_n=6 * size), films.drop(columns="STAT_n")]))
    assert list(index) == [1] * 3 + [2] * 6 + [0] * 3
