"""The dashboard's data access and figures: launch options, tables, PCA plane, KDE, downsampling, downloads."""

from __future__ import annotations

import numpy as np
import optuna
import pandas as pd
import pytest

from dashboards import _data, _plots
from inverse.storage import RUNS_DIR


def test_launch_options_from_arguments_then_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(_data.STORAGE_ENV, raising=False)
    monkeypatch.delenv(_data.RUNS_DIR_ENV, raising=False)
    assert _data.launch_options([]) == _data.LaunchOptions(storage=None, runs_dir=RUNS_DIR)
    options = _data.launch_options(["--storage", "sqlite:///a.db", "--runs-dir", str(tmp_path), "--other", "x"])
    assert options == _data.LaunchOptions(storage="sqlite:///a.db", runs_dir=tmp_path)
    monkeypatch.setenv(_data.STORAGE_ENV, "postgresql://db/studies")
    assert _data.launch_options(["--sto", "ignored"]).storage == "postgresql://db/studies"  # no abbreviations
    assert _data.storage_urls(_data.launch_options([])) == ["postgresql://db/studies"]
    monkeypatch.delenv(_data.STORAGE_ENV)
    (tmp_path / "b.db").touch()
    (tmp_path / "a.db").touch()
    assert _data.storage_urls(_data.launch_options(["--runs-dir", str(tmp_path)])) == [
        f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}",
    ]


def _study_data(values: list[float | None], direction: str) -> _data.StudyData:
    """A study whose trials are measured (a value) or infeasible (``None``, a penalty value)."""
    study = optuna.create_study(direction=direction)
    for v in values:
        status = "measured" if v is not None else "infeasible"
        study.add_trial(optuna.trial.create_trial(value=v if v is not None else 99.0, user_attrs={"status": status}))
    return _data.StudyData(url="", name="s", directions=[direction], user_attrs={}, trials=study.trials, recipes=pd.DataFrame())


@pytest.mark.parametrize("direction, expected", [
    ("minimize", [np.nan, 0.5, 0.5, 0.2, 0.2]),
    ("maximize", [np.nan, 0.5, 0.5, 0.5, 0.7]),
])
def test_best_so_far_ignores_infeasible_penalties(direction, expected):
    table = _data.convergence_table(_study_data([None, 0.5, None, 0.2, 0.7], direction))
    assert table["status"].tolist() == ["infeasible", "measured", "infeasible", "measured", "measured"]
    np.testing.assert_allclose(table["best_so_far"], expected, equal_nan=True)


def test_filter_recipes_keeps_ranks():
    table = pd.DataFrame({"rank": [1, 2, 3, 4], "trial": [7, 3, 5, 1], "feasible": [True, True, False, True],
                          "meets_targets": [True, False, False, False], "mismatch": [0.0, 0.2, 0.1, 0.4]})
    assert _data.filter_recipes(table)["trial"].tolist() == [7, 3, 5, 1]
    assert _data.filter_recipes(table, feasible_only=True, sort_by="mismatch", ascending=False)["rank"].tolist() == [4, 2, 1]
    assert _data.filter_recipes(table, meets_targets_only=True)["trial"].tolist() == [7]
    assert _data.filter_recipes(table, max_mismatch=0.15, sort_by="trial")["trial"].tolist() == [5, 7]


def _correlated_table(n: int, d: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, 1))
    x = base @ np.linspace(1.0, 2.0, d)[None] + 0.3 * rng.standard_normal((n, d))
    return pd.DataFrame(x, columns=[f"c{i}" for i in range(d)])


def test_pca_plane_is_the_feasibility_models_plane_and_t2_curve_is_its_limit():
    from inverse.feasibility import fit_feasibility

    model = fit_feasibility(_correlated_table(300, 4), [f"c{i}" for i in range(4)], variance=0.99)
    assert model.pca.n_components_ >= 2
    plane = _data.pca_plane(model)
    np.testing.assert_allclose(plane.project(model, model.train), model.pca.transform(model.standardise(model.train))[:, :2])
    x, y = _data.t2_boundary(model, plane)
    lam = model.pca.explained_variance_[:2]
    np.testing.assert_allclose(x**2 / lam[0] + y**2 / lam[1], model.t2_limit)


def test_pca_plane_of_a_one_component_model_is_refitted_and_bounded_by_lines():
    from inverse.feasibility import fit_feasibility

    model = fit_feasibility(_correlated_table(200, 2), ["c0", "c1"])
    assert model.pca.n_components_ == 1
    plane = _data.pca_plane(model)
    scores = plane.project(model, model.train)
    np.testing.assert_allclose(scores.var(axis=0, ddof=1), plane.variances)
    np.testing.assert_allclose(np.abs(plane.components[0]), np.abs(model.pca.components_[0]))
    x, _ = _data.t2_boundary(model, plane)
    half = np.sqrt(model.t2_limit * model.pca.explained_variance_[0])
    np.testing.assert_allclose(x[[0, 1, 3, 4]], [-half, -half, half, half])


def test_pca_plane_needs_a_training_table():
    from inverse.feasibility import range_model

    assert _data.pca_plane(range_model({"a": (0.0, 1.0), "b": (0.0, 2.0)})) is None


@pytest.mark.parametrize("values", [np.random.default_rng(0).normal(0.4, 0.05, 40), np.array([0.3]), np.full(5, 0.7)])
def test_kde_curve_is_a_density(values):
    grid = np.linspace(-1.0, 2.0, 3001)
    density = _plots.kde_curve(values, grid)
    assert np.all(density >= 0)
    assert np.trapezoid(density, grid) == pytest.approx(1.0, abs=1e-3)
    assert grid[np.argmax(density)] == pytest.approx(np.median(values), abs=0.05)


def test_isosurface_is_block_averaged_for_large_volumes():
    rng = np.random.default_rng(1)
    volume = (rng.random((100, 60, 30)) < 0.4).astype(np.uint8)
    assert _plots.downsample_factor(volume.shape) == 3
    trace = _plots.isosurface_figure(volume, phase=0).data[0]
    assert len(trace.value) == 34 * 20 * 10
    block = (volume[3:6, 6:9, 0:3] == 0).mean()
    index = np.ravel_multi_index((1, 2, 0), (34, 20, 10))
    assert trace.value[index] == pytest.approx(block)
    assert (trace.x[index], trace.y[index], trace.z[index]) == (3, 6, 0)
    small = _plots.isosurface_figure(volume[:32, :32, :16], phase=1).data[0]
    np.testing.assert_array_equal(small.value, (volume[:32, :32, :16] == 1).ravel())


@pytest.mark.parametrize("suffix", [".npy", ".vti"])
def test_downloads_round_trip(tiny_studies, tmp_path, suffix):
    from generator.io import read_volume
    from inverse.recipes import study_recipes
    from inverse.storage import artifact_dir

    study = tiny_studies.load(tiny_studies.single)
    best = study_recipes(study).iloc[0]
    folder = str(artifact_dir(study.study_name, tiny_studies.url, tiny_studies.runs_dir))
    samples = _data.trial_samples(folder, best["artifact_id"])
    assert samples.labels.shape == (2, 32, 32, 16)
    np.testing.assert_allclose(samples.descriptors.mean(), pd.Series(study.trials[best["trial"]].user_attrs["measured_mean"]))
    path = tmp_path / f"volume{suffix}"
    path.write_bytes(_data.volume_bytes(folder, best["artifact_id"], 1, suffix))
    np.testing.assert_array_equal(read_volume(path), samples.labels[1])


def test_missing_artifact_is_a_clear_error(tmp_path):
    from generator.errors import MicrodesignError

    with pytest.raises(MicrodesignError, match="--runs-dir"):
        _data.trial_samples(str(tmp_path), "0123-missing")


def test_verification_band_of_a_one_sided_target_lies_above_its_bound():
    table = pd.DataFrame({"trial": [4, 5], "d_generated": [0.43, 0.41], "d_verified": [0.23, 0.21], "d_verified_std": [0.04, 0.02]})
    figure = _plots.verification_figure(table, ["d"], {"d": (0.6, np.inf)})
    (band,) = figure.layout.shapes
    assert band.y0 == 0.6 and band.y1 > 0.6
    figure = _plots.verification_figure(table, ["d"], {"d": (-np.inf, 0.3)})
    (band,) = figure.layout.shapes
    assert band.y1 == 0.3 and band.y0 < 0.21
