"""The study record: one owner of what a study stores in Optuna; records round-trip through real trials."""

from __future__ import annotations

import optuna
import pytest

from inverse.record import (
    INFEASIBLE,
    MEASURED,
    STUDY_KEYS,
    TRIAL_KEYS,
    StudyRecord,
    TrialRecord,
    write_trial,
)


@pytest.fixture
def study() -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(storage=optuna.storages.InMemoryStorage(), directions=["minimize"])


def test_a_trial_record_round_trips_through_an_optuna_trial(study: optuna.Study) -> None:
    written = TrialRecord(
        status=MEASURED, conditions={"ABS_f_D": 0.5, "CT_f_D_tort1": 0.9}, seed=7,
        feasibility={"t2": 1.0, "t2_limit": 9.0, "spe": 0.1, "spe_limit": 1.0, "range_excess": 0.0, "constraint": -0.5, "feasible": True},
        measured_mean={"ABS_f_D": 0.49}, measured_std={"ABS_f_D": 0.01}, recipe_mean={"phi": 0.5}, recipe_std={"phi": 0.02},
        recipe_posterior={"mean": {"phi": 0.5}}, target_distance={"ABS_f_D": 0.0}, score=0.0, meets_targets=True,
        uncertainty=0.1, n_samples=4, recipe_ok=True, artifact_id="abc", seconds={"generate": 1.5},
    )

    def objective(trial: optuna.Trial) -> float:
        write_trial(trial, **{k: getattr(written, k) for k in TRIAL_KEYS if getattr(written, k) is not None})
        return 0.0

    study.optimize(objective, n_trials=1)
    frozen = study.trials[0]
    assert set(frozen.user_attrs) == set(TRIAL_KEYS) - {"failure"}
    read = TrialRecord.of(frozen)
    assert read == written
    assert read.measured and read.feasible


def test_an_infeasible_trial_reads_with_defaults(study: optuna.Study) -> None:
    def objective(trial: optuna.Trial) -> float:
        write_trial(trial, conditions={"ABS_f_D": 0.9}, feasibility={"feasible": False, "constraint": 2.0})
        write_trial(trial, status=INFEASIBLE)
        return 1.0

    study.optimize(objective, n_trials=1)
    read = TrialRecord.of(study.trials[0])
    assert read.status == INFEASIBLE and not read.measured and not read.feasible
    assert read.score is None and read.measured_mean == {} and read.artifact_id is None


def test_unknown_keys_are_refused_when_written_and_ignored_when_read(study: optuna.Study) -> None:
    trial = study.ask()
    with pytest.raises(KeyError, match="scroe"):
        write_trial(trial, scroe=1.0)
    trial.set_user_attr("source", "posterior")  # another writer's key (refinement studies)
    assert TrialRecord.of(trial) == TrialRecord()


def test_a_study_record_round_trips_and_is_not_rewritten(study: optuna.Study) -> None:
    record = StudyRecord(
        spec={"name": "opv", "model": "default", "targets": {"ABS_f_D": {"at_least": 0.4}},
              "objectives": [{"descriptor": "CT_f_D_tort1", "direction": "maximize"}, {"descriptor": "ABS_f_D"}]},
        condition_names=["ABS_f_D", "CT_f_D_tort1"], descriptor_scales={"ABS_f_D": 0.05}, feasible_fraction=0.6,
    )
    record.write(study)
    study.set_user_attr("verification", {"schema": 1})
    read = StudyRecord.of(study)
    assert read == record and set(STUDY_KEYS) <= set(study.user_attrs)
    assert read.model == "default" and read.target_names == ["ABS_f_D"]
    assert read.objectives == [("CT_f_D_tort1", "maximize"), ("ABS_f_D", "maximize")]
    assert read.descriptor_names == ["ABS_f_D", "CT_f_D_tort1"]
    assert StudyRecord.of({}) == StudyRecord() and StudyRecord().model is None


def test_a_study_stored_before_the_spec_keys_were_renamed_reads_under_the_new_names() -> None:
    old = StudyRecord.of({"spec": {"name": "opv", "generator": "runs/m.pt", "sampler": "gp"}})
    assert old.model == "runs/m.pt" and old.spec["search_sampler"] == "gp" and "generator" not in old.spec
