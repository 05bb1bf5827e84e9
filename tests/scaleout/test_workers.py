"""Many workers on one study through PostgreSQL, with a worker SIGKILLed in the middle of a trial.

Every worker is the command a user runs on each machine:
``microdesign study run SPEC --storage postgresql://...``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest

from inverse.storage import artifact_dir, with_installed_driver
from tests.scaleout.conftest import HEARTBEAT_ENV, cli_env, kill_all, run_cli, sigkill, start_cli, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

N_TRIALS = 9
N_WORKERS = 3
SAMPLES = 2

SPEC = f"""
name = "scaleout"
search_sampler = "random"
n_trials = {N_TRIALS}
samples_per_trial = {SAMPLES}
seed = 0

# A wide target: the test needs measured trials to check their stored microstructures, whatever the conditions.
[targets]
ABS_f_D = {{ at_least = 0.2, at_most = 0.8 }}

[generation]
steps = 3
"""


def typical_search(bundle: Path) -> str:
    """A ``[search]`` box where every proposal is feasible, so that every trial is measured (a random proposal over
    the whole box of the tiny model is feasible about 4 times in 10: nine infeasible trials in a row, one run in 100).

    The conditions of the most typical training film (the lowest feasibility constraint), ``ABS_f_D`` searched
    ± 0.02 around it (every worker still samples its own values).
    """
    from generator.loading import load_generator
    from inverse.feasibility import constraint, model_for

    generator = load_generator(bundle)
    names = list(generator.condition_names)
    films = generator.descriptor_table[names].to_numpy(dtype=float)
    model = model_for(generator, names)
    typical = [float(v) for v in films[int(np.argmin(constraint(model, films)))]]
    lines = [f"{name} = {value!r}" for name, value in zip(names, typical) if name != "ABS_f_D"]
    lines.append(f"ABS_f_D = [{typical[names.index('ABS_f_D')] - 0.02!r}, {typical[names.index('ABS_f_D')] + 0.02!r}]")
    box = np.array([[typical[j] if n != "ABS_f_D" else typical[j] + d for j, n in enumerate(names)] for d in (-0.02, 0.0, 0.02)])
    assert (constraint(model, box) <= 0).all(), "the typical film's neighbourhood is not feasible"
    return "\n[search]\n" + "\n".join(lines) + "\n"


COMPLETE, FAIL = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL
PAUSED_WORKER = Path(__file__).with_name("paused_worker.py")


def trials(url: str) -> list[optuna.trial.FrozenTrial]:
    """The study's trials, read from the server (no heartbeat of ours)."""
    storage = optuna.storages.RDBStorage(with_installed_driver(url))
    try:
        return optuna.load_study(study_name="scaleout", storage=storage).get_trials(deepcopy=False)
    except KeyError:  # not created yet
        return []
    finally:
        storage.engine.dispose()


def test_three_workers_share_a_study_and_survive_a_killed_worker(postgres_url, tiny_bundle, tmp_path):
    spec = tmp_path / "scaleout.toml"
    spec.write_text(f'model = "{tiny_bundle}"\n' + SPEC + typical_search(tiny_bundle))
    command = ("study", "run", spec, "--storage", postgres_url, "--no-progress")
    procs = []
    try:
        # 1. One worker, SIGKILLed in the middle of its second trial. It pauses there by itself
        #    (paused_worker.py) and says so with a file, so the kill lands mid-trial by construction: no race
        #    with a worker that finishes its trials before the test catches it.
        paused = tmp_path / "paused"
        with open(tmp_path / "worker0.log", "wb") as log:
            first = subprocess.Popen([sys.executable, str(PAUSED_WORKER), *map(str, command)], cwd=tmp_path,
                                     env=cli_env(MICRODESIGN_TEST_PAUSED=str(paused)), stdout=log, stderr=subprocess.STDOUT)
        procs.append(first)

        def at_pause() -> bool:
            assert first.poll() is None, (tmp_path / "worker0.log").read_text()[-2000:]
            return paused.is_file()

        wait_until(at_pause, timeout=240, interval=0.05, what="the first worker to pause in its second trial")
        sigkill(first)
        before = trials(postgres_url)
        killed = [t for t in before if t.state == optuna.trial.TrialState.RUNNING]
        n_params = max(len(t.params) for t in before if t.state == COMPLETE)
        assert len(killed) == 1 and len(killed[0].params) == n_params, before
        killed = killed[0]
        done_before = {t.number: t.user_attrs for t in before if t.state == COMPLETE}

        # 2. Its heartbeat stops; once the grace period has passed, three workers start with the same command.
        time.sleep(int(HEARTBEAT_ENV["MICRODESIGN_GRACE_PERIOD"]) + 1)
        procs += [start_cli(*command, cwd=tmp_path, log=tmp_path / f"worker{i}.log") for i in range(1, N_WORKERS + 1)]
        for i, proc in enumerate(procs[-N_WORKERS:], start=1):
            assert proc.wait(timeout=400) == 0, (tmp_path / f"worker{i}.log").read_text()[-2000:]
    finally:
        kill_all(procs)

    after = trials(postgres_url)
    by_number = {t.number: t for t in after}
    states = [t.state for t in after]
    complete = [t for t in after if t.state == COMPLETE]
    # the killed trial is failed, and retried once with the same conditions; it completed
    assert by_number[killed.number].state == FAIL
    retries = [t for t in after if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retries) == 1 and retries[0].state == COMPLETE
    assert retries[0].params == killed.params
    # nothing lost: every trial finished; the only failure is the killed one; completed work is untouched
    assert states.count(FAIL) == 1
    assert set(states) <= {COMPLETE, FAIL}
    for number, attrs in done_before.items():
        assert by_number[number].state == COMPLETE and by_number[number].user_attrs == attrs
    # the study holds its total: workers stop once N trials are complete (the others' last trials may overrun)
    assert N_TRIALS <= len(complete) <= N_TRIALS + N_WORKERS - 1
    # nothing duplicated: every completed trial searched other conditions (each worker samples its own stream)
    conditions = [tuple(sorted(t.params.items())) for t in complete]
    assert len(set(conditions)) == len(conditions)
    # every measured trial's microstructures are there and readable
    folder = artifact_dir("scaleout", postgres_url, tmp_path / "runs")
    measured = [t for t in complete if t.user_attrs.get("status") == "measured"]
    assert measured, "no trial was feasible"
    ids = [t.user_attrs["artifact_id"] for t in measured]
    assert len(set(ids)) == len(ids)
    for trial in measured:
        with np.load(folder / trial.user_attrs["artifact_id"]) as npz:
            assert npz["labels"].shape[0] == SAMPLES and npz["labels"].dtype == np.uint8
            assert np.all(np.isfinite(npz["descriptors"]))
    # a further worker finds the study complete and adds nothing
    rerun = run_cli(*command, cwd=tmp_path, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert len(trials(postgres_url)) == len(after)
    assert f"{len(complete)} complete trials" in rerun.stdout
