"""``microdesign dashboard``: argument checks and the Streamlit command line (the server itself: test_browser.py)."""

from __future__ import annotations

import sys

import pytest

from dashboards import APP_PATH
from inverse.cli import main
from inverse.cli.dashboard import streamlit_command


def _run(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["microdesign", "dashboard", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    return exc.value.code or 0, capsys.readouterr().err


def test_missing_sqlite_storage_is_a_user_error(monkeypatch, capsys, tmp_path):
    code, err = _run(monkeypatch, capsys, "--storage", f"sqlite:///{tmp_path / 'nope.db'}")
    assert code == 2
    assert err.startswith("error: storage:") and "nope.db does not exist" in err
    assert not (tmp_path / "nope.db").exists()


def test_malformed_storage_and_a_runs_dir_that_is_a_file(monkeypatch, capsys, tmp_path):
    code, err = _run(monkeypatch, capsys, "--storage", "runs/opv.db")
    assert code == 2 and "is not an SQLAlchemy URL" in err
    (tmp_path / "file").write_text("")
    code, err = _run(monkeypatch, capsys, "--runs-dir", str(tmp_path / "file"))
    assert code == 2 and err.startswith("error: --runs-dir:") and "is not a folder" in err


def test_the_dashboard_starts_before_any_study_exists(monkeypatch, capsys, tmp_path):
    import os

    started = []
    monkeypatch.setattr(os, "execv", lambda path, argv: started.append(argv))
    monkeypatch.chdir(tmp_path)
    code, err = _run(monkeypatch, capsys, "--port", "8765")
    assert code == 0 and err == ""
    assert started and started[0][-2:] == ["--runs-dir", str(tmp_path / "runs")]
    assert list(tmp_path.iterdir()) == []  # nothing created: the page explains how to run a study


def test_streamlit_command_runs_the_packaged_app(tmp_path):
    command = streamlit_command(storage="postgresql://host/db", port=8600, address="127.0.0.1", runs_dir=tmp_path)
    assert command[:5] == [sys.executable, "-m", "streamlit", "run", str(APP_PATH)]
    assert APP_PATH.is_file()
    options = command[5:command.index("--")]
    assert dict(zip(options[::2], options[1::2])) == {
        "--server.port": "8600", "--server.address": "127.0.0.1", "--server.headless": "true",
        "--server.fileWatcherType": "none", "--browser.gatherUsageStats": "false", "--client.toolbarMode": "minimal",
    }
    assert command[command.index("--") + 1:] == ["--runs-dir", str(tmp_path.resolve()), "--storage", "postgresql://host/db"]
