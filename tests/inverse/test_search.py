"""The search loop: samplers on an analytic objective; whole studies on the tiny model."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from optuna.artifacts import download_artifact

from generator.errors import InvalidInputError
from inverse import storage as storage_mod
from inverse.evaluation import score, target_distances
from inverse.search import INFEASIBLE, MEASURED, make_sampler, plan_study, run_study
from inverse.spec import parse_spec

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _constrained_quadratic(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", 0.0, 1.0)
    y = trial.suggest_float("y", 0.0, 1.0)
    trial.set_constraint("feasibility", x + y - 1.2)  # the optimum (0.7, 0.4) sits on the boundary's good side
    return (x - 0.7) ** 2 + (y - 0.4) ** 2


@pytest.mark.parametrize("name", ["random", "tpe", pytest.param("gp", marks=pytest.mark.slow), pytest.param("botorch", marks=pytest.mark.slow)])
def test_samplers_minimise_a_constrained_quadratic(name):
    sampler = make_sampler(name, seed=0, n_startup_trials=4)
    study = optuna.create_study(sampler=sampler)
    model_based = name in {"gp", "botorch"}
    study.optimize(_constrained_quadratic, n_trials=8 if model_based else 30)
    feasible = [t for t in study.trials if all(v <= 0 for v in t.constraints.values())]
    assert min(t.value for t in feasible) < 0.05
    if model_based:
        # after the 4 start-up trials the model's proposals are mostly feasible (it learnt the constraint)
        late = study.trials[4:]
        assert sum(all(v <= 0 for v in t.constraints.values()) for t in late) >= len(late) // 2


@pytest.mark.slow
def test_botorch_with_a_known_input_constraint_proposes_only_feasible_points():
    def x_plus_y_minus_one(x):  # feasible where x + y <= 1, in the sampler's (name-sorted) columns: x, y
        return x[..., 0] + x[..., 1] - 1.0

    sampler = make_sampler("botorch", seed=0, n_startup_trials=4, input_constraint=x_plus_y_minus_one)
    study = optuna.create_study(sampler=sampler)

    def objective(trial: optuna.Trial) -> float:
        x, y = trial.suggest_float("x", 0.0, 1.0), trial.suggest_float("y", 0.0, 1.0)
        return (x - 0.8) ** 2 + (y - 0.8) ** 2  # the unconstrained optimum (0.8, 0.8) is infeasible

    study.optimize(objective, n_trials=8)
    proposals = [(t.params["x"], t.params["y"]) for t in study.trials[4:]]
    assert all(x + y <= 1.0 + 1e-6 for x, y in proposals)  # the model never proposes outside the known constraint
    best = min(study.trials[4:], key=lambda t: t.value)
    assert best.params["x"] + best.params["y"] > 0.9  # pressed against the constraint, towards the optimum


@pytest.mark.slow
def test_botorch_keeps_a_feasible_start_when_the_constrained_optimiser_fails(monkeypatch):
    import botorch.optim
    from botorch.exceptions.errors import CandidateGenerationError

    real = botorch.optim.optimize_acqf

    def failing_when_constrained(*args, **kwargs):
        if kwargs.get("nonlinear_inequality_constraints"):
            raise CandidateGenerationError("The optimizer produced infeasible candidates.")
        return real(*args, **kwargs)

    monkeypatch.setattr(botorch.optim, "optimize_acqf", failing_when_constrained)
    sampler = make_sampler("botorch", seed=1, n_startup_trials=3, input_constraint=lambda x: x[..., 0] + x[..., 1] - 1.0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: (t.suggest_float("x", 0.0, 1.0) - 0.8) ** 2 + (t.suggest_float("y", 0.0, 1.0) - 0.8) ** 2, n_trials=5)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert all(t.params["x"] + t.params["y"] <= 1.0 + 1e-9 for t in study.trials[3:])


def test_unknown_sampler_is_a_user_error():
    with pytest.raises(InvalidInputError, match="^sampler"):
        make_sampler("cmaes", seed=0)


# ----------------------------------------------------------------------------- tiny model

@pytest.fixture(scope="module")
def tiny_generator(tiny_bundle):
    from generator.loading import load_generator

    return load_generator(tiny_bundle)


def _spec(tiny_bundle, **fields):
    data = {
        "name": "t",
        "model": str(tiny_bundle),
        "search_sampler": "tpe",
        "n_trials": 4,
        "n_startup_trials": 2,
        "samples_per_trial": 2,
        "targets": {"ABS_f_D": {"at_least": 0.45, "at_most": 0.5}, "CT_f_D_tort1": {"at_least": 0.5}},
        "generation": {"steps": 3},
        **fields,
    }
    return parse_spec(data)


def test_input_constraint_is_the_feasibility_of_the_condition_vector(tiny_bundle, tiny_generator):
    import torch

    from inverse.feasibility import constraint
    from inverse.search import _input_constraint

    names = list(tiny_generator.condition_names)
    lo, hi = tiny_generator.condition_ranges[names[1]]
    fixed = 0.5 * (lo + hi)
    assert _input_constraint(plan_study(_spec(tiny_bundle, search={names[1]: fixed}), tiny_generator)) is None  # opt-in
    plan = plan_study(_spec(tiny_bundle, search={names[1]: fixed}, search_sampler="botorch", input_constraint=True), tiny_generator)
    searched = sorted(plan.resolved.bounds)  # the order Optuna's samplers give the parameters in
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.uniform(*plan.resolved.bounds[n], size=40) for n in searched])
    full = np.array([[row[searched.index(n)] if n in searched else fixed for n in names] for row in x])
    got = _input_constraint(plan)(torch.tensor(x, dtype=torch.float64))
    np.testing.assert_allclose(got.numpy(), constraint(plan.feasibility_model, full), rtol=1e-9, atol=1e-12)
    # no [search] box: `auto` takes option B, whose proposals follow the training data by construction
    assert _input_constraint(plan_study(_spec(tiny_bundle, search_sampler="botorch", input_constraint=True), tiny_generator)) is None


@pytest.mark.slow
def test_study_measures_scores_stores_and_resumes(tiny_bundle, tiny_generator, tmp_path):
    from generator.descriptors import compute_batch

    spec = _spec(tiny_bundle)
    study = run_study(spec, generator=tiny_generator, runs_dir=tmp_path, progress=False)
    assert (tmp_path / "t.db").is_file()
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 4
    measured = [t for t in trials if t.user_attrs["status"] == MEASURED]
    assert measured, "no proposal of the tiny model's box was feasible"
    scales = study.user_attrs["descriptor_scales"]
    store = storage_mod.artifact_store("t", storage_mod.default_storage_url("t", tmp_path), tmp_path)
    for t in measured:
        a = t.user_attrs
        json.dumps(a)  # the schema is plain JSON
        assert set(a["conditions"]) == set(tiny_generator.condition_names)
        assert a["feasibility"]["feasible"] and a["feasibility"]["t2"] <= a["feasibility"]["t2_limit"]
        # the artifact holds the trial's volumes; their measured descriptors are the stored means
        path = tmp_path / f"{t.number}.npz"
        download_artifact(artifact_store=store, file_path=str(path), artifact_id=a["artifact_id"])
        with np.load(path) as npz:
            labels = npz["labels"]
        assert labels.shape == (2, *tiny_generator.volume_shape) and labels.dtype == np.uint8
        recomputed = pd.DataFrame(compute_batch(list(labels), n_jobs=1)).mean()
        for name in ("ABS_f_D", "CT_f_D_tort1", "STAT_e"):
            assert a["measured_mean"][name] == pytest.approx(recomputed[name])
        assert set(a["recipe_mean"]) == set(tiny_generator.recipe_names)
        expected = score(target_distances(a["measured_mean"], spec.targets, scales))
        assert a["score"] == pytest.approx(expected) and t.values[0] == pytest.approx(expected)
        assert a["meets_targets"] == (expected == 0.0)
    for t in trials:
        if t.user_attrs["status"] == INFEASIBLE:
            assert t.constraints["feasibility"] > 0 and "artifact_id" not in t.user_attrs and "seed" not in t.user_attrs
    # resuming runs only the missing trials and keeps the old ones
    before = {t.number: t.values for t in trials}
    study = run_study(spec, generator=tiny_generator, runs_dir=tmp_path, n_trials=6, progress=False)
    after = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(after) == 6
    assert {t.number: t.values for t in after if t.number in before} == before


@pytest.mark.slow
def test_nan_generator_output_fails_the_trial_and_the_study_goes_on(tiny_bundle, tiny_generator, tmp_path, monkeypatch):
    monkeypatch.setattr(tiny_generator, "denoiser", lambda x, t, c: torch.full_like(x, float("nan")))
    spec = _spec(tiny_bundle, name="nan", n_trials=3, search_sampler="random")
    study = run_study(spec, generator=tiny_generator, runs_dir=tmp_path, progress=False)
    failed = study.get_trials(states=(optuna.trial.TrialState.FAIL,))
    assert failed, "every proposal was infeasible"
    assert all("non-finite" in t.user_attrs["failure"] for t in failed)
    assert len(study.trials) >= 3  # it went on after the failures


def test_infeasible_search_space_is_rejected_before_anything_is_written(tiny_bundle, tiny_generator, tmp_path):
    spec = _spec(tiny_bundle, search={"ABS_f_D": [0.9, 0.95], "CT_f_D_tort1": [0.0, 0.05], "CT_f_A_tort1": [0.95, 1.0]})
    with pytest.raises(InvalidInputError, match="^search: no point"):
        run_study(spec, generator=tiny_generator, runs_dir=tmp_path / "runs", progress=False)
    assert not (tmp_path / "runs").exists()
    plan = plan_study(_spec(tiny_bundle), tiny_generator)
    assert 0 < plan.feasible_fraction <= 1 and plan.directions == ["minimize"]


@pytest.mark.slow
def test_sigkill_loses_no_complete_trial_and_running_ones_fail_on_resume(tiny_bundle, tiny_generator, tmp_path):
    spec_path = tmp_path / "kill.toml"
    spec_path.write_text(
        f'model = "{tiny_bundle}"\nsearch_sampler = "random"\nn_trials = 200\nsamples_per_trial = 2\n'
        '[targets]\nABS_f_D = { at_least = 0.45, at_most = 0.5 }\n[search]\nABS_f_D = [0.45, 0.55]\n[generation]\nsteps = 3\n'
    )
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    # a trial can end between the check and the kill (an infeasible proposal takes milliseconds): then the
    # kill landed between two trials, and the same command (it resumes the study) is killed again
    for attempt in range(5):
        proc = subprocess.Popen(
            [sys.executable, "-m", "inverse", "study", "run", str(spec_path), "--storage", url, "--no-progress"],
            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                time.sleep(0.5)
                if proc.poll() is not None:
                    pytest.fail(f"the study ended early: {proc.stderr.read().decode()[-2000:]}")
                if not Path(tmp_path / "kill.db").is_file():
                    continue
                try:  # plain read-only SQL: an RDBStorage would race the worker creating the tables
                    with contextlib.closing(sqlite3.connect(f"file:{tmp_path / 'kill.db'}?mode=ro", uri=True, timeout=1)) as con:
                        states = [row[0] for row in con.execute("SELECT state FROM trials ORDER BY number")]
                except sqlite3.Error:  # the tables may not exist yet
                    continue
                if states.count("COMPLETE") >= 2 and states[-1] == "RUNNING":
                    break
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait()
        study = optuna.load_study(study_name="kill", storage=url)
        complete = {t.number for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))}
        running = {t.number for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,))}
        if running:
            break
    assert len(complete) >= 2 and running, "in 5 attempts the kill never landed in the middle of a trial"
    time.sleep(3.5)  # past the 2 s grace period by more than SQLite's 1 s timestamp resolution
    spec = parse_spec({**json.loads(json.dumps(study.user_attrs["spec"])), "n_trials": len(complete) + 1})
    resumed = run_study(spec, generator=tiny_generator, storage=url, runs_dir=tmp_path, grace_period=2, progress=False)
    states = {t.number: t.state for t in resumed.get_trials()}
    assert all(states[n] == optuna.trial.TrialState.FAIL for n in running), ({n: states[n] for n in running}, states)
    assert complete <= {n for n, s in states.items() if s == optuna.trial.TrialState.COMPLETE}
    assert sum(s == optuna.trial.TrialState.COMPLETE for s in states.values()) == len(complete) + 1


def test_pca_mode_proposals_follow_the_training_correlations(tiny_bundle, tiny_generator):
    from inverse import feasibility
    from inverse.search import _suggest_conditions

    plan = plan_study(_spec(tiny_bundle, feasibility="pca"), tiny_generator)
    model = plan.feasibility_model
    with pytest.warns(DeprecationWarning, match="feasibility_model"):
        assert plan.feasible is model  # the old name, kept
    u = np.linspace(-0.5, 0.5, model.n_components) * np.sqrt(model.t2_limit)
    trial = optuna.trial.FixedTrial({f"pc{i + 1}": float(v) for i, v in enumerate(u)})
    conditions = _suggest_conditions(trial, plan)
    stats = feasibility.statistics(model, model.vector(conditions)[None])
    assert stats["spe"][0] == pytest.approx(0.0, abs=1e-9)  # on the retained components' plane
    assert stats["t2"][0] == pytest.approx(float(np.sum(u**2)))
    with pytest.raises(InvalidInputError, match="^feasibility"):
        plan_study(_spec(tiny_bundle, feasibility="pca", search={"ABS_f_D": 0.5}), tiny_generator)
