"""Every page of the dashboard under ``streamlit.testing.v1.AppTest``, on tiny studies run by ``inverse``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from inverse.recipes import study_recipes
from tests.dashboards.conftest import metrics, plotly_figures, trace

PAGES = ["recipes", "convergence", "feasibility", "microstructures", "descriptors", "verification"]


def _statuses(study) -> list[str]:  # noqa: ANN001
    return [t.user_attrs.get("status") for t in study.trials]


def _ranked_table(at) -> pd.DataFrame:  # noqa: ANN001
    return next(df.value for df in at.dataframe if "rank" in df.value.columns and "mismatch" in df.value.columns)


def _headings(at) -> list[str]:  # noqa: ANN001
    return [h.value for h in at.header] + [h.value for h in at.subheader]


def test_recipes_page_shows_the_ranked_table_of_inverse(open_app, tiny_studies):
    study = tiny_studies.load(tiny_studies.single)
    expected = study_recipes(study)
    at = open_app(tiny_studies.single)
    assert "Ranked recipes" in _headings(at) and "Recipe map" in _headings(at)
    statuses = _statuses(study)
    assert metrics(at) == {
        "Trials": str(len(study.trials)), "Measured": str(statuses.count("measured")),
        "Infeasible": str(statuses.count("infeasible")), "Failed": "0",
        "Best mismatch": f"{expected['mismatch'].min():.4g}",
    }
    table = _ranked_table(at)
    assert len(table) == len(expected) == statuses.count("measured")
    assert table["trial"].tolist() == expected["trial"].tolist()
    np.testing.assert_allclose(table["mismatch"], expected["mismatch"])
    assert "artifact_id" not in table.columns
    assert [b.proto.label for b in at.get("download_button")] == ["Download CSV"]
    recipes = trace(plotly_figures(at)[0], "recipes")
    np.testing.assert_allclose(recipes["x"], expected["log_time_mean"])
    np.testing.assert_allclose(recipes["y"], expected["chi_mean"])
    np.testing.assert_allclose(recipes["marker"]["color"], expected["mismatch"])
    # the recipes are the posterior's, the bars their calibrated 80 % intervals (not the FP's spread over the films)
    assert (expected["recipe_source"] == "posterior").all() and "chi_std" not in table.columns
    np.testing.assert_allclose(recipes["error_y"]["array"], expected["chi_hi"] - expected["chi_mean"])
    np.testing.assert_allclose(recipes["error_y"]["arrayminus"], expected["chi_mean"] - expected["chi_lo"])
    density = trace(plotly_figures(at)[0], "recipe posterior")
    assert density["type"] == "contour" and np.asarray(density["z"]).shape == (len(density["y"]), len(density["x"]))
    # the density of the selected (first) trial peaks at its posterior mean
    z = np.asarray(density["z"])
    row, col = np.unravel_index(z.argmax(), z.shape)
    first = expected.iloc[0]
    assert abs(density["y"][row] - first["chi_mean"]) <= 2 * (density["y"][1] - density["y"][0])
    assert abs(density["x"][col] - first["log_time_mean"]) <= 2 * (density["x"][1] - density["x"][0])


def test_recipes_page_sorts_and_filters(open_app, tiny_studies):
    expected = study_recipes(tiny_studies.load(tiny_studies.single))
    at = open_app(tiny_studies.single)
    at.selectbox(key="recipes_sort").set_value("mismatch")
    at.toggle(key="recipes_descending").set_value(True)
    limit = float(expected["mismatch"].median())
    at.number_input(key="recipes_max_mismatch").set_value(limit)
    at.run()
    table = _ranked_table(at)
    kept = expected[expected["mismatch"] <= limit]
    assert len(table) == len(kept) and 0 < len(kept) < len(expected)  # the filter dropped some rows, not all
    assert table["mismatch"].tolist() == sorted(kept["mismatch"], reverse=True)
    assert table["rank"].tolist() == kept.sort_values("mismatch", ascending=False)["rank"].tolist()
    assert f"{len(kept)} of {len(expected)} recipes shown." in [c.value for c in at.caption]


def test_convergence_page_best_so_far(open_app, tiny_studies):
    study = tiny_studies.load(tiny_studies.single)
    at = open_app(tiny_studies.single, "convergence")
    measured = [(t.number, t.values[0]) for t in study.trials if t.user_attrs.get("status") == "measured"]
    best = min(measured, key=lambda m: m[1])
    assert metrics(at)["Best target score"] == f"{best[1]:.4g}"
    assert metrics(at)["Found at trial"] == str(best[0])
    (figure,) = plotly_figures(at)
    line = trace(figure, "best so far")
    values = np.array([t.values[0] if t.user_attrs.get("status") == "measured" else np.nan for t in study.trials])
    np.testing.assert_allclose(np.asarray(line["y"], dtype=float), np.fmin.accumulate(values), equal_nan=True)
    assert "Pareto front" not in _headings(at)


def test_convergence_page_pareto_front_of_a_multi_objective_study(open_app, tiny_studies):
    study = tiny_studies.load(tiny_studies.multi)
    ranked = study_recipes(study)
    at = open_app(tiny_studies.multi, "convergence")
    assert "Pareto front" in _headings(at)
    figures = plotly_figures(at)
    assert len(figures) == 2
    front = trace(figures[1], "Pareto front")
    on_front = ranked[ranked["pareto"]]
    assert len(front["x"]) == len(on_front) >= 1
    stored = {t.number: t.values for t in study.trials}
    assert sorted(front["y"]) == sorted(stored[n][1] for n in on_front["trial"])
    assert sorted(at.dataframe[0].value["trial"]) == sorted(on_front["trial"])


def test_feasibility_page_projects_on_the_model_pca(open_app, tiny_studies):
    from generator.loading import load_generator
    from inverse.feasibility import model_for

    study = tiny_studies.load(tiny_studies.single)
    at = open_app(tiny_studies.single, "feasibility")
    statuses = _statuses(study)
    assert metrics(at)["Proposals"] == str(len(study.trials))
    assert metrics(at)["Infeasible"] == str(statuses.count("infeasible"))
    (figure,) = plotly_figures(at)
    model = model_for(load_generator(tiny_studies.bundle), study.user_attrs["condition_names"])
    train = trace(figure, "training data")
    assert len(train["x"]) == len(model.train)
    if model.pca.n_components_ >= 2:
        scores = model.pca.transform(model.standardise(model.train))
        np.testing.assert_allclose(train["x"], scores[:, 0], atol=1e-9)
        np.testing.assert_allclose(train["y"], scores[:, 1], atol=1e-9)
    infeasible = trace(figure, "infeasible proposals")
    assert (0 if infeasible is None else len(infeasible["x"])) == statuses.count("infeasible")
    measured = trace(figure, "proposals (measured)")
    assert len(measured["x"]) == statuses.count("measured")
    assert trace(figure, "target") is not None and trace(figure, "T² limit") is not None
    proposals = at.dataframe[0].value
    assert proposals["trial"].tolist() == [t.number for t in study.trials]


def test_microstructures_page_slices_and_downloads(open_app, tiny_studies):
    from dashboards import _data
    from inverse.storage import artifact_dir

    study = tiny_studies.load(tiny_studies.single)
    best = study_recipes(study).iloc[0]
    at = open_app(tiny_studies.single, "microstructures")
    assert at.selectbox(key="micro_trial").value == best["trial"]
    labels = _data.trial_samples(str(artifact_dir(study.study_name, tiny_studies.url, tiny_studies.runs_dir)), best["artifact_id"]).labels
    at.selectbox(key="micro_sample").set_value(1)
    at.slider(key="micro_x").set_value(3)
    at.slider(key="micro_z").set_value(0)
    at.run()
    assert not at.exception
    slices, iso = plotly_figures(at)
    heatmaps = [t for t in slices["data"] if t["type"] == "heatmap"]
    volume = labels[1]
    y = volume.shape[1] // 2
    for heatmap, plane in zip(heatmaps, (volume[3, :, :], volume[:, y, :], volume[:, :, 0])):
        np.testing.assert_array_equal(np.asarray(heatmap["z"]), plane.T)
    assert iso["data"][0]["type"] == "isosurface"
    assert len(iso["data"][0]["value"]) == volume.size  # 32x32x16 is below the downsampling threshold
    np.testing.assert_array_equal(np.asarray(iso["data"][0]["value"]), (volume == 0).ravel().astype(np.float32))
    assert [b.proto.label for b in at.get("download_button")] == ["Download .vti", "Download .npy"]


def test_descriptors_page_kde_per_target(open_app, tiny_studies):
    study = tiny_studies.load(tiny_studies.single)
    ranked = study_recipes(study)
    targets = study.user_attrs["spec"]["targets"]
    at = open_app(tiny_studies.single, "descriptors")
    figures = plotly_figures(at)
    assert len(figures) == len(targets)
    top = ranked["trial"].tolist()[:3]
    for figure, name in zip(figures, targets):
        assert figure["layout"]["xaxis"]["title"]["text"].startswith(name)
        curves = [t["name"] for t in figure["data"] if t.get("fill") == "tozeroy"]
        assert curves == [f"rank {r} · trial {t}" for r, t in zip(ranked["rank"][:3], top)]
        assert trace(figure, "training data") is not None
        lo = targets[name].get("at_least", targets[name].get("equal"))
        assert figure["layout"]["shapes"][0]["x0"] == pytest.approx(lo)
    means = at.dataframe[0].value
    assert len(means) == len(top) * len(targets)
    for row in means.itertuples():
        assert row.mean == pytest.approx(study.trials[row.trial].user_attrs["measured_mean"][row.descriptor])


def test_verification_page(open_app, tiny_studies):
    from dashboards import _data

    study = tiny_studies.load(tiny_studies.multi)
    (number, record), = study.user_attrs[_data.VERIFICATION_KEY]["trials"].items()
    at = open_app(tiny_studies.multi, "verification")
    assert metrics(at)["Verified recipes"] == "1"
    assert metrics(at)["Meet the targets when simulated"] == str(int(record["meets_targets"]))
    assert metrics(at)["Best verified mismatch"] == f"{record['score']:.4g}"
    assert "Trial {}: recipe outside the training range in log_time.".format(number) in [c.value for c in at.caption]
    table = at.dataframe[0].value
    assert table["trial"].tolist() == [int(number)]
    assert table["verified_mismatch"][0] == pytest.approx(record["score"])
    assert table["generated_mismatch"][0] == pytest.approx(study.trials[int(number)].user_attrs["score"])
    for name in ("CT_f_D_tort1", "STAT_e"):
        assert table[f"{name}_verified"][0] == pytest.approx(record["simulated_mean"][name])
        assert table[f"{name}_generated"][0] == pytest.approx(study.trials[int(number)].user_attrs["measured_mean"][name])
    summary, kde_tort, kde_interface, slices = plotly_figures(at)
    simulated = trace(summary, "simulated (verified)")
    np.testing.assert_allclose(simulated["y"], [record["simulated_mean"]["CT_f_D_tort1"]])
    assert [t["name"] for t in kde_tort["data"]] == [f"generated (trial {number})", "simulated"]
    assert [t["type"] for t in slices["data"]] == ["heatmap"] * 3

    at = open_app(tiny_studies.single, "verification")
    assert "has been verified yet" in at.info[0].value


def test_verification_page_shows_a_refinement(open_app, tiny_studies):
    from inverse.refine import REFINEMENT_ATTR

    study = tiny_studies.load(tiny_studies.multi)
    (number, _), = study.user_attrs["verification"]["trials"].items()
    trail = [
        {"number": 0, "recipe": {"phi": 0.5, "chi": 3.0, "log_time": 1.2}, "score": 0.4, "meets_targets": False, "n_runs": 1,
         "source": "verification", "seconds": {}, "simulated_mean": {"CT_f_D_tort1": 0.5}},
        {"number": 1, "recipe": {"phi": 0.52, "chi": 3.3, "log_time": 1.4}, "score": 0.0, "meets_targets": True, "n_runs": 3,
         "source": "posterior", "seconds": {"simulate": 2.0, "measure": 0.5}, "simulated_mean": {"CT_f_D_tort1": 0.62}},
    ]
    study.set_user_attr(REFINEMENT_ATTR, {"schema": 1, "trials": {number: {
        "status": "verified", "budget": 12, "verified_recipe": trail[1]["recipe"], "best_recipe": trail[1]["recipe"], "best_score": 0.0,
        "n_recipes": 2, "n_runs": 4, "runs_to_verified": 4, "seconds": 2.5, "trail": trail}}})
    try:
        at = open_app(tiny_studies.multi, "verification")
        assert "Physics-refined recipes" in _headings(at)
        assert "Verified recipe: φ = 0.520, χ = 3.300, log t = 1.400 after 4 simulator runs (2 recipes)." in at.success[0].value
        figure = plotly_figures(at)[-1]
        points = trace(figure, "simulated recipes")
        assert list(points["x"]) == [1, 4] and list(points["y"]) == [0.4, 0.0]
        table = at.dataframe[-1].value
        assert table["runs_so_far"].tolist() == [1, 4] and table["source"].tolist() == ["verification", "posterior"]
    finally:
        study.set_user_attr(REFINEMENT_ATTR, {})


@pytest.mark.parametrize("page", PAGES)
def test_empty_study_explains_itself(open_app, tiny_studies, page):
    at = open_app(tiny_studies.empty, page)
    assert at.info and tiny_studies.empty in at.info[0].value
    assert not plotly_figures(at)


def test_missing_storage_is_reported_in_the_sidebar(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from dashboards import APP_PATH, _data

    monkeypatch.setenv(_data.STORAGE_ENV, f"sqlite:///{tmp_path / 'missing.db'}")
    at = AppTest.from_file(str(APP_PATH), default_timeout=60).run()
    assert not at.exception
    assert "does not exist" in at.sidebar.error[0].value
    assert "No study selected" in at.info[0].value
    assert not (tmp_path / "missing.db").exists()


def test_follows_a_running_study(open_app, tiny_studies):
    import optuna

    from inverse.search import run_study
    from inverse.spec import StudySpec
    from tests.dashboards.conftest import TINY

    name = "live"
    optuna.create_study(study_name=name, storage=tiny_studies.url).ask()  # a worker's trial, still running
    at = open_app(name)
    assert metrics(at)["Trials"] == "1"
    assert "1 running" in at.info[0].value
    assert "1 trials: 0 complete, 0 failed, 1 running or waiting" in [c.value for c in at.sidebar.caption]

    spec = StudySpec(name=name, seed=3, targets={"ABS_f_D": {"at_least": 0.4, "at_most": 0.6}},
                     **dict(TINY, n_trials=2, generator=str(tiny_studies.bundle)))
    run_study(spec, storage=tiny_studies.url, progress=False, runs_dir=tiny_studies.runs_dir, n_jobs=1)
    at.run()  # what a refresh (or the sidebar's auto-refresh) does
    study = tiny_studies.load(name)
    statuses = _statuses(study)
    assert len(study.trials) == 3
    assert metrics(at)["Trials"] == "3"
    assert metrics(at)["Measured"] == str(statuses.count("measured"))
    assert metrics(at)["Infeasible"] == str(statuses.count("infeasible"))


def test_auto_refresh_watches_the_trial_counts(open_app, tiny_studies):
    from dashboards import _data

    at = open_app(tiny_studies.single)
    at.toggle(key="auto_refresh").set_value(True).run()
    assert not at.exception
    assert at.select_slider(key="refresh_every").value == 15
    assert at.session_state["microdesign_watch"] == _data.study_version(tiny_studies.url, tiny_studies.single)
