"""Storage: stale trials of dead workers are retried; creation is safe under concurrent starts; reading never writes; passwords are masked."""

from __future__ import annotations

import time

import optuna
import pytest

from generator.errors import InvalidInputError
from inverse import storage as storage_mod
from inverse.masking import mask_credentials


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


def _create_in_child(url: str, barrier, results) -> None:  # noqa: ANN001
    """A worker's start-up on a new storage: open (creating the tables) and create-or-load the study."""
    try:
        barrier.wait()
        with storage_mod.setup_lock(url):
            rdb = storage_mod.open_storage(url)
            optuna.create_study(study_name="s", storage=rdb, load_if_exists=True)
        results.put("ok")
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        results.put(f"{type(exc).__name__}: {exc}")


def test_workers_starting_at_once_on_a_new_sqlite_file_all_succeed(tmp_path):
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    for round_ in range(3):
        url = f"sqlite:///{tmp_path / f'new{round_}.db'}"
        barrier, results = ctx.Barrier(3), ctx.Queue()
        workers = [ctx.Process(target=_create_in_child, args=(url, barrier, results)) for _ in range(3)]
        for w in workers:
            w.start()
        outcomes = [results.get(timeout=120) for _ in workers]
        for w in workers:
            w.join(timeout=60)
        assert outcomes == ["ok"] * 3, outcomes
        rdb = storage_mod.open_storage(url, readonly=True)
        assert [s.study_name for s in optuna.get_all_study_summaries(rdb, include_best_trial=False)] == ["s"]


def test_setup_lock_is_exclusive_between_processes_and_reentrant_within_one(tmp_path):
    import fcntl
    import os

    url = f"sqlite:///{tmp_path / 'x.db'}"
    with storage_mod.setup_lock(url):
        with storage_mod.setup_lock(url):  # re-entrant: run_study holds it around open_storage
            pass
        fd = os.open(tmp_path, os.O_RDONLY)  # another open file description, as another process would have
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released
    finally:
        os.close(fd)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no lock file left behind


def test_reading_commands_never_create_or_alter_a_database(tmp_path):
    import hashlib
    import sqlite3

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as con:
        con.execute("create table notes (text)")
    before = hashlib.sha256(other.read_bytes()).hexdigest()
    for call in (lambda: storage_mod.list_studies(f"sqlite:///{other}"),
                 lambda: storage_mod.open_storage(f"sqlite:///{other}", readonly=True),
                 lambda: storage_mod.open_storage(f"sqlite:///{other}", create=False)):
        with pytest.raises(InvalidInputError, match="holds no Optuna studies"):
            call()
    assert hashlib.sha256(other.read_bytes()).hexdigest() == before
    with sqlite3.connect(other) as con:
        assert [r[0] for r in con.execute("select name from sqlite_master")] == ["notes"]
    with pytest.raises(InvalidInputError, match="does not exist"):
        storage_mod.list_studies(f"sqlite:///{tmp_path / 'missing.db'}")
    assert not (tmp_path / "missing.db").exists()


def test_a_read_only_storage_reads_studies_without_writing(tmp_path):
    import hashlib

    path = tmp_path / "s.db"
    study = optuna.create_study(study_name="s", storage=storage_mod.open_storage(f"sqlite:///{path}"))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    summaries = storage_mod.list_studies(f"sqlite:///{path}")
    assert [(s["name"], s["n_complete"]) for s in summaries] == [("s", 2)]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("cannot open postgresql://alice:s3cret@db:5432/studies", "cannot open postgresql://alice:***@db:5432/studies"),
        ("'postgresql+psycopg2://alice:p@ss@db/x' failed", "'postgresql+psycopg2://alice:***@db/x' failed"),
        ("mysql://u@h/d?password=zz&ssl=1", "mysql://u@h/d?password=***&ssl=1"),
        ("sqlite:///runs/opv.db and postgresql://bob@h/db", "sqlite:///runs/opv.db and postgresql://bob@h/db"),
    ],
)
def test_mask_credentials(text, masked):
    assert mask_credentials(text) == masked


def test_storage_errors_never_show_the_password():
    with pytest.raises(InvalidInputError) as info:
        storage_mod.open_storage("postgresql://alice:TOPSECRET@127.0.0.1:1/studies", readonly=True)
    assert "TOPSECRET" not in str(info.value) and "alice:***@127.0.0.1:1" in str(info.value)
