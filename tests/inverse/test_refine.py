"""Physics-refined recipes: a search with the real Cahn-Hilliard simulator in the loop (tiny preset, short runs)."""

from __future__ import annotations

import numpy as np
import optuna
import pytest

from generator.errors import InvalidInputError
from generator.physics.presets import load_preset
from inverse import refine, verify
from inverse.spec import Target

SEEDS = 2
BOX = {"phi": (0.4, 0.6), "chi": (2.9, 3.4), "log_time": (1.0, 1.3)}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One torch thread: the runs are small, and threads only wait on each other on a busy machine."""
    from generator.physics.cahn_hilliard import torch_threads

    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def settings() -> verify.SimulationSettings:
    return verify.SimulationSettings(ch=load_preset("tiny").ch, n_phases=2, preset="tiny", source="preset")


@pytest.fixture(scope="module")
def reachable(settings):  # noqa: ANN001, ANN201
    """Targets measured on the films of a known recipe (same seeds as the search): that recipe meets them."""
    recipe = {"phi": 0.47, "chi": 3.2, "log_time": 1.2}
    simulated, *_ = refine.evaluate_recipe(recipe, settings, {}, {}, [refine.REFINE_SEED + i for i in range(SEEDS)], n_jobs=1)
    mean = simulated.mean()
    targets = {n: Target(equal=float(mean[n]), tolerance=0.03) for n in ("ABS_f_D", "CT_f_D_tort1", "CT_f_A_tort1")}
    return recipe, targets


def _search(settings, targets, url, name, **kwargs):  # noqa: ANN001, ANN003, ANN202
    scales = {n: 0.1 for n in targets}
    return refine.search_recipes(targets, scales, settings, storage=url, study_name=name, n_seeds=SEEDS, bounds=BOX, n_jobs=1, **kwargs)


def test_warm_start_at_the_true_recipe_verifies_at_once(settings, reachable, tmp_path):
    recipe, targets = reachable
    url = f"sqlite:///{tmp_path / 'r.db'}"
    result = _search(settings, targets, url, "hit", budget=8, warm_start=[recipe, {"phi": 0.59, "chi": 2.95, "log_time": 1.0}])
    assert result.status == "verified" and result.runs_to_verified == SEEDS == result.n_runs
    assert result.verified.recipe == pytest.approx(recipe) and result.verified.source == "posterior"
    assert result.verified.simulated.shape[0] == SEEDS and set(result.verified.seconds) == {"simulate", "measure"}
    assert "verified" in result.message(8)


def test_budget_exhaustion_resume_and_no_lost_simulation(settings, reachable, tmp_path):
    recipe, _ = reachable
    impossible = {"ABS_f_D": Target(equal=0.95, tolerance=0.01)}
    url = f"sqlite:///{tmp_path / 'r.db'}"
    known = refine.evaluate_recipe(recipe, settings, {}, {}, [7], n_jobs=1)[0]
    seen: list[int] = []

    def kill_after_two(trail):  # noqa: ANN001, ANN202
        seen.append(len(trail))
        if len(trail) == 3:
            raise KeyboardInterrupt  # killed right after the second simulated recipe was committed

    with pytest.raises(KeyboardInterrupt):
        _search(settings, impossible, url, "miss", budget=9, known=[(recipe, [7], known)], on_candidate=kill_after_two)
    stored = optuna.load_study(study_name="miss", storage=url)
    done = [t for t in stored.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 3 and done[0].user_attrs["source"] == "verification" and done[0].user_attrs["seeds"] == [7]
    first = [t.user_attrs["recipe"] for t in done]

    # resumed: the three candidates are kept (not simulated again), the budget counts them (1 + 2 + 2 + 2 + 2 = 9 runs)
    result = _search(settings, impossible, url, "miss", budget=9, known=[(recipe, [7], known)])
    assert result.status == "exhausted" and result.verified is None and result.runs_to_verified is None
    assert [c.recipe for c in result.trail[:3]] == first and len(result.trail) == 5 and result.n_runs == 9
    assert all(BOX[n][0] <= c.recipe[n] <= BOX[n][1] for c in result.trail for n in verify.RECIPE)
    assert result.best.score == min(c.score for c in result.trail) > 0
    message = result.message(9)
    assert message.startswith("budget exhausted: no recipe met the targets within 9 simulator runs (5 recipes)") and "--budget" in message
    # a finished search run again simulates nothing more
    assert _search(settings, impossible, url, "miss", budget=9).n_runs == 9


def test_bad_input_is_refused_before_simulating(settings, reachable, tmp_path):
    _, targets = reachable
    url = f"sqlite:///{tmp_path / 'r.db'}"
    with pytest.raises(InvalidInputError, match="no targets"):
        _search(settings, {}, url, "x")
    with pytest.raises(InvalidInputError, match="budget: 1 simulator runs do not pay for one recipe of 2 runs"):
        _search(settings, targets, url, "x", budget=1)
    with pytest.raises(InvalidInputError, match="needs .* time steps, more than the limit 10"):
        _search(settings, targets, url, "x", max_steps=10)
    with pytest.raises(InvalidInputError, match="refine-seeds"):
        refine.search_recipes(targets, {}, settings, storage=url, study_name="x", n_seeds=0, bounds=BOX)
    assert optuna.get_all_study_summaries(url) == []


def test_recipe_bounds(settings):
    import pandas as pd

    from inverse.spec import Bound

    table = pd.DataFrame({"phi": [0.4, 0.6], "chi": [2.9, 3.4], "log_time": [1.0, 1.5]})
    assert refine.recipe_bounds(settings, table) == {"phi": (0.4, 0.6), "chi": (2.9, 3.4), "log_time": (1.0, 1.5)}
    narrowed = refine.recipe_bounds(settings, table, recipe_bounds={"chi": Bound(at_most=3.0)})
    assert narrowed["chi"] == (2.9, 3.0)
    with pytest.raises(InvalidInputError, match="search range of chi is empty"):
        refine.recipe_bounds(settings, table, recipe_bounds={"chi": Bound(at_least=3.6)})
    assert np.isclose(refine.recipe_bounds(settings, None, max_steps=1000)["log_time"][1], np.log10(1000 * settings.ch.dt))


@pytest.mark.slow
def test_refine_a_study_trial_stores_the_trail(tiny_bundle, tmp_path):
    """A tiny study whose target no film meets: the verified recipe misses, the refinement runs out of budget."""
    from inverse.search import run_study
    from inverse.spec import parse_spec

    url = f"sqlite:///{tmp_path / 'hard.db'}"
    spec = parse_spec({
        "name": "hard", "model": str(tiny_bundle), "search_sampler": "random", "n_trials": 2, "n_startup_trials": 1,
        "samples_per_trial": 2, "seed": 1, "generation": {"steps": 4}, "targets": {"ABS_f_D": {"equal": 0.97, "tolerance": 0.01}},
    })
    study = run_study(spec, storage=url, runs_dir=tmp_path, progress=False)
    measured = [t for t in study.trials if t.user_attrs.get("status") == "measured"]
    assert measured and all(set(t.user_attrs["seconds"]) == {"generate", "measure", "recipe", "storage"} for t in measured)
    assert all(t.user_attrs["recipe_posterior"]["level"] == 0.8 for t in measured)
    report = verify.verify_study(study, top_k=1, n_seeds=1, storage_url=url, runs_dir=tmp_path)
    first = report.results[0]
    assert not first.meets_targets
    lines: list[str] = []
    result = refine.refine_trial(study, first, report.settings, storage=url, budget=3, n_seeds=1, n_warm_start=2, progress=lines.append)
    assert result.status == "exhausted" and result.n_runs == 3 and len(result.trail) == 3 and len(lines) == 3
    assert [c.source for c in result.trail] == ["verification", "posterior", "posterior"]
    assert result.trail[0].recipe == pytest.approx(first.recipe) and result.trail[0].seeds == first.seeds
    stored = optuna.load_study(study_name="hard", storage=url).user_attrs[refine.REFINEMENT_ATTR]["trials"][str(first.trial)]
    assert stored["status"] == "exhausted" and stored["n_runs"] == 3 and stored["verified_recipe"] is None
    assert [c["source"] for c in stored["trail"]] == ["verification", "posterior", "posterior"]
    assert stored["refine_study"] == refine.refine_study_name("hard", first.trial)
    trials = optuna.load_study(study_name=stored["refine_study"], storage=url).trials
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials) == 3  # queued draws beyond the budget wait


def test_warm_start_from_the_posterior_of_the_targets():
    from generator.model_info import read_model_record

    table = read_model_record("default").descriptor_table
    floor = float(table["CT_f_D_tort1"].quantile(0.75))  # an upper-quartile target of the shipped model's training films
    targets = {"ABS_f_D": Target(equal=0.45, tolerance=0.03), "CT_f_D_tort1": Target(at_least=floor),
               "STAT_e": Target(at_least=100.0)}  # a count: not a feature of the posterior, ignored
    center = refine.target_center(targets, table)
    assert center["ABS_f_D"] == 0.45 and floor < center["CT_f_D_tort1"] <= table["CT_f_D_tort1"].max()
    recipes = refine.target_posterior(targets, "default", 3, seed=1)
    assert len(recipes) == 3 and recipes == refine.target_posterior(targets, "default", 3, seed=1)
    # the donor fraction pins phi: training films with ABS_f_D near 0.45 have phi near 0.45
    near = table[(table["ABS_f_D"] - 0.45).abs() < 0.02]
    assert abs(recipes[0]["phi"] - near["phi"].mean()) < 0.03
    assert refine.target_posterior({"STAT_e": Target(at_least=1.0)}, "default", 3) == []
    assert refine.target_posterior(targets, "default", 0) == []
