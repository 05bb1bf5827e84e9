"""Output hygiene of the command line: one ``error:`` line for every mistake, no library noise, no temporary names,
no silently wrong answer (a table with the wrong columns)."""

from __future__ import annotations

import pytest

from tests.helpers import run_main


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["generate", "-c", "ABS_f_D=0.5"], "Missing option '--out' / '-o'. (see: microdesign generate --help)"),
        (["generate", "-c", "a=1", "--out", "x", "-n", "many"], "Invalid value for '-n' / '--n'"),
        (["nope"], "No such command 'nope'. (see: microdesign --help)"),
        (["study", "run"], "Missing argument 'spec'. (see: microdesign study run --help)"),
        (["dashboard", "--port", "0"], "Invalid value for '--port' / '-p'"),
    ],
)
def test_usage_errors_are_one_line(args, message, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(args, monkeypatch, capsys)
    assert code == 2 and out == ""
    assert err.startswith(f"error: {message}") and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [["generate"], ["study", "run"], ["train"], ["check"]])
def test_help_shows_flags_without_a_value(command, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run_main([*command, "--help"], monkeypatch, capsys)
    assert code == 0 and "Usage: microdesign" in out
    assert "<bool>" not in out and "╭" not in out  # plain help: no boxes, flags without a metavar
    assert max(len(line) for line in out.splitlines()) <= 80


NOISY = """
import logging, sys, warnings

import optuna

import generator


class Noisy(str):  # printing the version makes the noise that torch, tifffile and Optuna make
    def __str__(self):
        warnings.warn("You are using `torch.load` with `weights_only=False`", FutureWarning)
        warnings.warn("Duplicated constraint 'feasibility'", UserWarning)
        warnings.warn("fail_stale_trials is experimental", optuna.exceptions.ExperimentalWarning)
        logging.getLogger("tifffile").warning("<tifffile.TiffFile 'x.tif'> invalid page offset")
        optuna.logging.get_logger("optuna.study").warning("Trial 3 failed with parameters")
        return "9.9"


generator.__version__ = Noisy("9.9")
from inverse.cli import main

sys.argv = ["microdesign", "version"]
main()
"""


def test_library_warnings_and_log_notes_do_not_reach_the_user(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    env.pop("PYTHONWARNINGS", None)
    proc = subprocess.run([sys.executable, "-c", NOISY], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0 and proc.stdout == "9.9\n"
    assert proc.stderr == ""


def test_check_refuses_a_table_without_the_target_columns(tmp_path, monkeypatch, capsys):
    (tmp_path / "wrong.csv").write_text("phi,chi\n0.5,2.0\n0.4,2.5\n")
    code, out, err = run_main(["check", "-t", "ABS_f_D=0.5", "--table", tmp_path / "wrong.csv"], monkeypatch, capsys)
    assert code == 2 and "range checks only" not in out
    assert err.startswith("error: --table: ") and "has no column ABS_f_D" in err and err.count("\n") == 1


def test_check_refuses_a_target_given_twice(monkeypatch, capsys):
    code, _, err = run_main(["check", "-t", "ABS_f_D=0.5", "-t", "ABS_f_D=0.6"], monkeypatch, capsys)
    assert code == 2 and err == "error: --target ABS_f_D: given more than once\n"


def test_errors_never_name_temporary_files(tmp_path):
    import errno

    from generator.io import atomic_path

    for make in (lambda tmp: OSError(errno.ENOSPC, "No space left on device", str(tmp)),
                 lambda tmp: OSError(f"Unable to create file (name = '{tmp}', errno = 28)")):
        with pytest.raises(OSError) as info:
            with atomic_path(tmp_path / "data.h5") as tmp:
                raise make(tmp)
        text = f"{info.value} {info.value.filename}"
        assert str(tmp) not in text and str(tmp_path / "data.h5") in text
    assert list(tmp_path.iterdir()) == []
