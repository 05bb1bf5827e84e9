"""``microdesign verify`` and ``microdesign study run --verify`` on the tiny model."""

from __future__ import annotations

import sys

import optuna
import pytest

from inverse.cli import main

SPEC = """
name = "cliv"
model = "{bundle}"
search_sampler = "random"
n_trials = 3
n_startup_trials = 1
samples_per_trial = 2
seed = 4

[targets]
ABS_f_D = {{ at_least = 0.3, at_most = 0.7 }}
CT_f_A_tort1 = {{ at_least = 0.2 }}

[search]
ABS_f_D = [0.45, 0.55]

[generation]
steps = 4
"""


def _run(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:  # noqa: ANN001
    monkeypatch.setattr(sys, "argv", ["microdesign", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    out, err = capsys.readouterr()
    return exc.value.code or 0, out, err


@pytest.fixture(scope="module")
def verified_study(tiny_bundle, tmp_path_factory):
    """``study run --verify 1`` of a tiny spec: (storage URL, printed output)."""
    folder = tmp_path_factory.mktemp("cli_verify")
    spec = folder / "cliv.toml"
    spec.write_text(SPEC.format(bundle=tiny_bundle))
    url = f"sqlite:///{folder / 'cliv.db'}"
    mp = pytest.MonkeyPatch()
    mp.setattr(sys, "argv", ["microdesign", "study", "run", str(spec), "--storage", url, "--no-progress", "--verify", "1", "--verify-seeds", "2"])
    try:
        with pytest.raises(SystemExit) as exc:
            main()
    finally:
        mp.undo()
    assert (exc.value.code or 0) == 0
    return url


@pytest.mark.slow
def test_study_run_verify_stores_and_verify_reports(verified_study, monkeypatch, capsys):
    url = verified_study
    stored = optuna.load_study(study_name="cliv", storage=url).user_attrs["verification"]
    assert len(stored["trials"]) == 1 and stored["simulation"]["preset"] == "tiny"
    (trial, entry), = stored["trials"].items()
    assert entry["n_runs"] == 2 and set(entry["simulated_mean"]) >= {"ABS_f_D", "CT_f_A_tort1"}

    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = _run(monkeypatch, capsys, "verify", "cliv", "--storage", url, "--top-k", "1", "--seeds", "1", "--seed", "7", "--no-progress")
    assert code == 0, err
    assert f"trial {trial}" in out and "simulated" in out and "summary" in out and "ABS_f_D" in out
    drawn = [line for line in out.splitlines() if line[:1] in "┏┃┡│└"]
    assert max(map(len, drawn)) <= 80 and "…" not in out, out  # tables fit an 80-column terminal, no number cut
    again = optuna.load_study(study_name="cliv", storage=url).user_attrs["verification"]["trials"][trial]
    assert again["seeds"] == [7]
    assert f"{again['simulated_mean']['ABS_f_D']:.4g}" in out


@pytest.mark.parametrize("args, message", [
    (["--top-k", "0"], "top-k: must be >= 1"),
    (["--seeds", "0"], "seeds: must be >= 1"),
    (["--preset", "paper"], "preset: the grid [128, 128, 64]"),
    (["--preset", "nosuch"], "unknown preset 'nosuch'"),
    (["--max-steps", "0"], "max-steps: must be >= 1"),
    (["--max-steps", "2"], "raise --max-steps"),
    (["--refine", "--budget", "2", "--refine-seeds", "3"], "budget: 2 simulator runs do not pay for one recipe of 3 runs"),
    (["--refine", "--refine-seeds", "0"], "refine-seeds: must be >= 1"),
    pytest.param(["--device", "cuda"], "cuda is not available", marks=pytest.mark.skipif(
        __import__("torch").cuda.is_available(), reason="this machine has CUDA")),
])
def test_bad_options_exit_2(verified_study, monkeypatch, capsys, args, message):
    code, _, err = _run(monkeypatch, capsys, "verify", "cliv", "--storage", verified_study, "--no-progress", *args)
    assert code == 2 and err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


def test_unknown_or_empty_study_exit_2(verified_study, tiny_bundle, tmp_path, monkeypatch, capsys):
    code, _, err = _run(monkeypatch, capsys, "verify", "nosuch", "--storage", verified_study)
    assert code == 2 and "no study 'nosuch'" in err and "cliv" in err and len(err.strip().splitlines()) == 1
    code, _, err = _run(monkeypatch, capsys, "verify", "cliv", "--storage", f"sqlite:///{tmp_path / 'none.db'}")
    assert code == 2 and "does not exist" in err
    empty = optuna.create_study(study_name="empty", storage=verified_study)
    empty.set_user_attr("spec", {"name": "empty", "model": str(tiny_bundle), "targets": {"ABS_f_D": {"at_least": 0.3}}})
    code, _, err = _run(monkeypatch, capsys, "verify", "empty", "--storage", verified_study)
    assert code == 2 and "no completed, measured trial" in err and "Traceback" not in err


def test_study_run_rejects_a_negative_verify(tmp_path, monkeypatch, capsys):
    spec = tmp_path / "x.toml"
    spec.write_text(SPEC.format(bundle=tmp_path / "unused.pt"))
    code, _, err = _run(monkeypatch, capsys, "study", "run", str(spec), "--verify", "-1")
    assert code == 2 and "verify: need K >= 0" in err


def test_study_run_refine_needs_verify(tmp_path, monkeypatch, capsys):
    spec = tmp_path / "x.toml"
    spec.write_text(SPEC.format(bundle=tmp_path / "unused.pt"))
    code, _, err = _run(monkeypatch, capsys, "study", "run", str(spec), "--refine")
    assert code == 2 and "refine: --refine goes on from the verification; give --verify K" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_study_run_verify_refine_exhausts_its_budget_and_resumes(tiny_bundle, tmp_path, monkeypatch, capsys):
    """A target no film meets: the verified recipe misses, the refinement spends its budget and says so; a rerun resumes."""
    spec = tmp_path / "hard.toml"
    text = SPEC.format(bundle=tiny_bundle).replace('name = "cliv"', 'name = "hard"')
    spec.write_text(text.replace("ABS_f_D = { at_least = 0.3, at_most = 0.7 }", "ABS_f_D = { equal = 0.97, tolerance = 0.01 }"))
    url = f"sqlite:///{tmp_path / 'hard.db'}"
    code, out, err = _run(monkeypatch, capsys, "study", "run", str(spec), "--storage", url, "--no-progress", "--verify", "1",
                          "--verify-seeds", "1", "--refine", "--budget", "4")
    assert code == 0, err
    assert "refine: no verified recipe meets the targets" in out
    assert "budget exhausted: no recipe met the targets within 4 simulator runs (2 recipes)" in out
    study = optuna.load_study(study_name="hard", storage=url)
    (trial, entry), = study.user_attrs["refinement"]["trials"].items()
    assert entry["status"] == "exhausted" and entry["n_runs"] == 4 and [c["n_runs"] for c in entry["trail"]] == [1, 3]
    def simulated() -> int:  # completed candidates (queued warm-start recipes beyond the budget stay WAITING)
        trials = optuna.load_study(study_name=entry["refine_study"], storage=url).trials
        return sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials)

    assert simulated() == 2

    # run again: the verification is redone, the refinement resumes and has nothing left to spend
    code, out, err = _run(monkeypatch, capsys, "verify", "hard", "--storage", url, "--top-k", "1", "--seeds", "1", "--refine",
                          "--budget", "4", "--no-progress")
    assert code == 0, err
    assert "within 4 simulator runs (2 recipes)" in out
    assert simulated() == 2
