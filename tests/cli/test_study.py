"""``microdesign study run|report|list`` on the tiny model, and its bad-input handling."""

from __future__ import annotations

import pandas as pd
import pytest

from inverse.recipes import LEADING_COLUMNS
from tests.helpers import run_main

GOOD = """
search_sampler = "random"
n_trials = 3
samples_per_trial = 2
[targets]
ABS_f_D = { at_least = 0.4, at_most = 0.6 }
[generation]
steps = 3
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[targets\nABS_f_D = 1", "malformed TOML"),
        ("[targets]\nCT_f_X = { at_least = 0.5 }", "targets.CT_f_X: unknown descriptor"),
        ("[targets]\nABS_f_D = { at_least = 0.6, at_most = 0.4 }", "targets.ABS_f_D: reversed bounds"),
        ("[targets]\nABS_f_D = { at_least = 0.4 }\n[search]\nABS_f_D = [0.6, 0.4]", "search: ABS_f_D: reversed bounds"),
        ("[targets]\nCT_f_D_tort1 = { equal = 1.3, tolerance = 0.1 }", "targets: CT_f_D_tort1: target 1.3 is outside [0, 1]"),
        (
            "[targets]\nABS_f_D = { at_least = 0.4 }\n[search]\nABS_f_D = [0.9, 0.95]\nCT_f_D_tort1 = [0.0, 0.05]\nCT_f_A_tort1 = [0.95, 1.0]",
            "search: no point of the search space lies inside the training data",
        ),
    ],
)
def test_bad_specs_fail_with_one_line_and_write_nothing(text, message, tiny_bundle, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.toml").write_text(text)
    code, out, err = run_main(["study", "run", "bad.toml", "--model", str(tiny_bundle), "--no-progress"], monkeypatch, capsys)
    assert code == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]


@pytest.mark.slow
def test_run_report_list(tiny_bundle, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo.toml").write_text(GOOD)
    code, out, err = run_main(["study", "run", "demo.toml", "--model", str(tiny_bundle), "--no-progress"], monkeypatch, capsys)
    assert code == 0, err
    assert "study demo: 3 complete trials" in out
    assert (tmp_path / "runs" / "demo.db").is_file()

    code, out, err = run_main(["study", "report", "demo"], monkeypatch, capsys)
    assert code == 0, err
    table = pd.read_csv(tmp_path / "runs" / "demo_recipes.csv")
    assert list(table.columns[: len(LEADING_COLUMNS)]) == LEADING_COLUMNS
    assert {"phi_mean", "chi_lo", "chi_hi", "log_time_mean", "ABS_f_D_mean", "cond_CT_f_A_tort1"} <= set(table.columns)
    assert table["rank"].tolist() == list(range(1, len(table) + 1))
    assert table["mismatch"].is_monotonic_increasing or table["meets_targets"].any()
    # the recipe is the posterior's, with its 80 % interval; the spread of the FP's outputs is not reported
    assert (table["recipe_source"] == "posterior").all() and "chi_std" not in table.columns
    assert (table["chi_lo"] <= table["chi_mean"]).all() and (table["chi_mean"] <= table["chi_hi"]).all()
    assert "[80" in out and "trade off" in out  # the recipe columns hold the 80 % interval (headers wrap at 80 columns)

    code, out, _ = run_main(["study", "list"], monkeypatch, capsys)
    assert code == 0 and "demo" in out and "minimize" in out

    code, _, err = run_main(["study", "report", "nope"], monkeypatch, capsys)
    assert code == 2 and "storage:" in err and "does not exist" in err


QUICK = """
search_sampler = "random"
n_trials = 2
samples_per_trial = 1
feasibility = "constraint"
[targets]
ABS_f_D = { at_least = 0.4, at_most = 0.6 }
[search]                        # near the middle of the default model's training data: every proposal is feasible
ABS_f_D = [0.48, 0.52]
CT_f_D_tort1 = [0.12, 0.14]
CT_f_A_tort1 = [0.12, 0.14]
[generation]
steps = 2
size = [32, 32, 64]
"""


def _table_width(out: str) -> int:
    """Widest line of the rich tables in ``out`` (the lines drawn with box characters)."""
    return max(len(line) for line in out.splitlines() if line[:1] in "┏┃┡│└")


def test_run_says_where_the_study_is_stored_and_its_tables_fit_80_columns(tmp_path, monkeypatch, capsys):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("COLUMNS", "80")
    (work / "quick.toml").write_text(QUICK)
    code, out, err = run_main(["study", "run", "quick.toml", "--no-progress"], monkeypatch, capsys)
    assert code == 0, err
    url = f"sqlite:///{work / 'runs' / 'quick.db'}"
    assert f"stored in {url}\n" in out
    assert f"microdesign study report quick --storage {url}" in out
    assert _table_width(out) <= 80 and "…" not in out, out
    monkeypatch.chdir(elsewhere)
    code, out, err = run_main(["study", "list", "--storage", url], monkeypatch, capsys)
    assert code == 0 and "quick" in out and _table_width(out) <= 80, out + err
    code, out, err = run_main(["study", "report", "quick", "--storage", url, "--csv", "r.csv"], monkeypatch, capsys)
    assert code == 0, err
    assert _table_width(out) <= 80 and "…" not in out, out
    assert sorted(p.name for p in elsewhere.iterdir()) == ["r.csv"]


def test_storage_passwords_never_appear_and_nothing_is_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "quick.toml").write_text(QUICK)
    code, out, err = run_main(["study", "run", "quick.toml", "--no-progress", "--storage", "postgresql://alice:S3CRET@127.0.0.1:1/studies"],
                              monkeypatch, capsys)
    assert code == 2 and "S3CRET" not in out + err and "alice:***@127.0.0.1:1" in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["quick.toml"]


def test_a_study_whose_disk_fills_stops_between_trials_with_one_line(tmp_path, monkeypatch, capsys):
    import shutil
    from collections import namedtuple

    import optuna

    monkeypatch.chdir(tmp_path)
    (tmp_path / "quick.toml").write_text(QUICK.replace("n_trials = 2", "n_trials = 5"))
    real = shutil.disk_usage
    calls = []

    def filling_disk(path):  # noqa: ANN001, ANN202 - plenty of room for two trials, then 1 MiB
        calls.append(path)
        usage = real(path)
        free = usage.free if len(calls) <= 2 * 2 + 2 else 2**20
        return namedtuple("usage", "total used free")(usage.total, usage.used, free)

    monkeypatch.setattr(shutil, "disk_usage", filling_disk)
    code, out, err = run_main(["study", "run", "quick.toml", "--no-progress"], monkeypatch, capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: no space left on device while writing "), err
    rdb = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'runs' / 'quick.db'}")
    states = [t.state for t in optuna.load_study(study_name="quick", storage=rdb).trials]
    assert states and optuna.trial.TrialState.RUNNING not in states
    assert 1 <= states.count(optuna.trial.TrialState.COMPLETE) < 5
