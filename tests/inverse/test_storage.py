"""Storage: stale RUNNING trials of dead workers are failed and retried, even those that never beat."""

from __future__ import annotations

import time

import optuna

from inverse import storage as storage_mod


def test_a_trial_killed_before_its_first_heartbeat_is_failed_and_retried(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    rdb = storage_mod.open_storage(url, heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(study_name="s", storage=rdb)
    # what a worker SIGKILLed between creating its trial and its first heartbeat leaves behind
    orphan = rdb.create_new_trial(study._study_id)
    rdb.set_trial_param(orphan, "x", 0.3, optuna.distributions.FloatDistribution(0.0, 1.0))
    # and a live trial of another worker, beating
    live = rdb.create_new_trial(study._study_id)
    rdb.record_heartbeat(live)
    assert storage_mod.fail_stale_trials(study) == []  # nothing is stale within the grace period
    time.sleep(1.5)
    rdb.record_heartbeat(live)
    failed = storage_mod.fail_stale_trials(study)
    trials = {t._trial_id: t for t in study.get_trials(deepcopy=False)}
    assert failed == [trials[orphan].number]
    assert trials[orphan].state == optuna.trial.TrialState.FAIL and trials[live].state == optuna.trial.TrialState.RUNNING
    retry = [t for t in trials.values() if t.system_attrs.get("failed_trial") == trials[orphan].number]
    assert len(retry) == 1 and retry[0].state == optuna.trial.TrialState.WAITING and retry[0].params == {"x": 0.3}
