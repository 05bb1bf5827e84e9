"""PCA feasibility (T², SPE, ranges) on descriptors measured on real random-field volumes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from generator.errors import InvalidInputError
from inverse import feasibility
from inverse.feasibility import (
    check_search_space,
    check_targets,
    constraint,
    fit_feasibility,
    load_table,
    model_for,
    nearest_feasible,
    range_model,
    statistics,
)

COLUMNS = ["ABS_f_D", "CT_f_D_tort1", "CT_f_A_tort1"]


@pytest.fixture(scope="module")
def model(measured_table: pd.DataFrame):
    return fit_feasibility(measured_table, COLUMNS)


def test_thresholds_are_training_quantiles(model, measured_table):
    inside = constraint(model, measured_table[COLUMNS].to_numpy()) <= 0
    # 0.99 quantiles of T² and SPE: between 97 % and 100 % of the training samples are inside
    assert 0.97 <= inside.mean() < 1.0
    assert 1 <= model.n_components < len(COLUMNS)


def test_statistics_match_their_definitions(model, measured_table):
    x = measured_table[COLUMNS].to_numpy()[:5]
    z = (x - x.mean(0) * 0 - model.mean) / model.scale
    scores = model.pca.transform(z)
    t2 = np.sum(scores**2 / model.pca.explained_variance_, axis=1)
    spe = np.sum((z - model.pca.inverse_transform(scores)) ** 2, axis=1)
    stats = statistics(model, x)
    np.testing.assert_allclose(stats["t2"], t2, rtol=1e-10)
    np.testing.assert_allclose(stats["spe"], spe, rtol=1e-8, atol=1e-12)


def test_torch_constraint_equals_the_numpy_one(model, measured_table):
    import torch

    rng = np.random.default_rng(0)
    x = np.vstack([measured_table[COLUMNS].to_numpy()[:20], rng.uniform(-0.2, 1.2, size=(50, len(COLUMNS)))])
    expected = constraint(model, x)
    assert (expected > 0).any() and (expected <= 0).any()
    got = feasibility.constraint_tensor(model, torch.tensor(x, dtype=torch.float64, requires_grad=True))
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-9, atol=1e-12)
    got.sum().backward()  # differentiable, for gradient-based acquisition optimisers


def test_typical_target_is_feasible(model, measured_table):
    median = measured_table[COLUMNS].median().to_dict()
    report = check_targets(model, median)
    assert report.feasible and report.explanation is None
    assert report.nearest == pytest.approx(report.values)


def test_broken_correlation_is_explained_in_words(measured_table):
    two = fit_feasibility(measured_table, ["ABS_f_D", "CT_f_A_tort1"])
    # high donor fraction with a high acceptor straight-path fraction: the data never shows it
    report = check_targets(two, {"ABS_f_D": 0.72, "CT_f_A_tort1": 0.95})
    assert not report.feasible
    assert "CT_f_A_tort1 = 0.95 with ABS_f_D = 0.72 lies outside the training data" in report.explanation
    assert "acceptor straight-path fraction stays below" in report.explanation
    # the statement is true of the data: the samples nearest to ABS_f_D = 0.72 stay below the bound it gives
    bound = float(report.explanation.rsplit("stays below ", 1)[1])
    near = measured_table.iloc[np.argsort((measured_table.ABS_f_D - 0.72).abs().to_numpy())[:10]]
    assert bound < 0.95
    assert near.CT_f_A_tort1.max() == pytest.approx(bound, abs=5e-4)


def test_out_of_range_target(model):
    report = check_targets(model, {"ABS_f_D": 0.95, "CT_f_D_tort1": 0.8, "CT_f_A_tort1": 0.8})
    assert not report.feasible
    assert report.explanation.startswith("ABS_f_D = 0.95 lies outside the training data")
    assert report.nearest["ABS_f_D"] <= model.hi[0] + 1e-12


def test_out_of_range_target_names_the_correlation_it_also_breaks(measured_table):
    two = fit_feasibility(measured_table, ["ABS_f_D", "CT_f_A_tort1"])
    hi = float(two.hi[1])
    report = check_targets(two, {"ABS_f_D": 0.72, "CT_f_A_tort1": hi + 0.05})
    assert not report.feasible
    first, second = report.explanation.split("; and even within the ranges, ")
    assert first.startswith(f"CT_f_A_tort1 = {hi + 0.05:.3g} lies outside the training data")
    # judged at the range's edge: much donor leaves few acceptor straight paths
    assert second.startswith(f"CT_f_A_tort1 = {hi:.3g} with ABS_f_D = 0.72 lies outside the training data")


def test_target_in_the_sparse_tail_of_one_descriptor(measured_table):
    one = fit_feasibility(measured_table, ["ABS_f_D"])
    lo, hi = float(one.lo[0]), float(one.hi[0])
    # inside the range but beyond the T² threshold (a 0.99 training quantile): a tail value
    values = np.linspace(lo, hi, 201)
    tail = values[constraint(one, values[:, None]) > 0]
    report = check_targets(one, {"ABS_f_D": float(tail[-1])})
    assert not report.feasible and report.explanation is not None
    assert "lies in the sparse tail of the training data (T² = " in report.explanation and "SPE" not in report.explanation


def test_nearest_feasible_is_feasible_and_closer_than_any_feasible_sample(model):
    x = np.array([0.35, 0.95, 0.5])
    assert constraint(model, x[None])[0] > 0
    nearest = nearest_feasible(model, x)
    assert constraint(model, nearest[None])[0] <= 0
    z = model.standardise(x[None])[0]
    ok = model.train[constraint(model, model.train) <= 0]
    d_samples = np.linalg.norm(model.standardise(ok) - z, axis=1).min()
    assert np.linalg.norm(model.standardise(nearest[None])[0] - z) <= d_samples + 1e-9


def test_search_space_checks(model):
    lo, hi = model.lo, model.hi
    fraction = check_search_space(model, {c: (lo[i], hi[i]) for i, c in enumerate(COLUMNS)})
    assert 0.0 < fraction < 1.0
    # a box with much donor, few donor straight paths and many acceptor ones: the data never shows it
    bounds = {"ABS_f_D": (0.7, 0.74), "CT_f_D_tort1": (0.36, 0.45), "CT_f_A_tort1": (0.9, 0.97)}
    with pytest.raises(InvalidInputError, match=r"^search: no point"):
        check_search_space(model, bounds)
    # fixed conditions take part
    with pytest.raises(InvalidInputError, match=r"^search"):
        check_search_space(model, {"ABS_f_D": (0.7, 0.74), "CT_f_D_tort1": (0.36, 0.45)}, {"CT_f_A_tort1": 0.95})


def test_range_model_only_checks_ranges():
    model = range_model({"a": (0.0, 1.0), "b": (2.0, 4.0)})
    c = constraint(model, np.array([[0.5, 3.0], [0.0, 4.0], [1.2, 3.0], [0.5, 1.0]]))
    assert c[0] <= 0 and c[1] <= 0 and c[2] > 0 and c[3] > 0
    assert nearest_feasible(model, np.array([1.2, 1.0])) == pytest.approx([1.0, 2.0])


def test_model_for_falls_back_and_rejects(measured_table, tmp_path):
    class NoTable:
        descriptor_table = None
        condition_ranges = {"ABS_f_D": (0.3, 0.7)}

    assert model_for(NoTable(), ["ABS_f_D"]).pca is None
    with pytest.raises(InvalidInputError, match="--table"):
        model_for(NoTable(), ["CT_f_A_tort1"])
    path = tmp_path / "train.csv"
    measured_table.to_csv(path, index=False)
    fitted = model_for(NoTable(), COLUMNS, path)
    assert fitted.pca is not None and len(fitted.train) == len(measured_table)
    assert load_table(path).shape == measured_table.shape
