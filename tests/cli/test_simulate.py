"""``microdesign simulate``: the README command, and one-line errors with exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from generator.physics.cahn_hilliard import torch_threads
from inverse.cli import main


@pytest.fixture(autouse=True)
def _one_torch_thread():
    with torch_threads(1):  # the 2-core CI runs two pytest workers
        yield


def _microdesign(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["microdesign", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


FAST = ("--grid", "16x16x8", "--steps", "120", "--threads", "1", "--quiet")


def test_readme_command_creates_the_runs_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, _ = _microdesign(monkeypatch, capsys, "simulate", "--preset", "tiny", "--out", "runs/tiny.h5", *FAST)
    assert code == 0
    assert "runs/tiny.h5: 4 series" in out
    with h5py.File(tmp_path / "runs" / "tiny.h5") as h5:
        assert h5.attrs["n_phases"] == 2 and len(h5) == 16
    code, out, _ = _microdesign(monkeypatch, capsys, "simulate", "--out", "runs/tiny.h5", *FAST)  # resumes: nothing to do
    assert code == 0 and "4 series, 16 snapshots" in out
    code, _, _ = _microdesign(monkeypatch, capsys, "simulate", "--out", "runs/tiny.h5", "--phases", "3", "--overwrite", *FAST)
    with h5py.File(tmp_path / "runs" / "tiny.h5") as h5:
        assert code == 0 and h5.attrs["n_phases"] == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--steps", "-5"), "ch.steps: Input should be greater than or equal to 1"),
        (("--phi0", "0.2,1.3"), "phi0_range: phi0 must lie in (0, 1)"),
        (("--phi0", "0"), "phi0_range: phi0 must lie in (0, 1)"),
        (("--preset", "huge"), "unknown preset 'huge'"),
        (("--phases", "4"), "--phases must be 2 or 3"),
        (("--grid", "16x16x8x2"), "--grid: expected XxYxZ or XxY"),
        (("--device", "tpu"), "--device must be cpu or cuda"),
        (("--threads", "0"), "--threads must be at least 1"),
    ],
)
def test_bad_input_gives_one_line_error_and_no_file(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    code, _, err = _microdesign(monkeypatch, capsys, "simulate", "--out", "runs/x.h5", "--quiet", *args)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_path(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    code, _, err = _microdesign(monkeypatch, capsys, "simulate", "--out", str(blocker / "x.h5"), *FAST)
    assert code == 2 and err.startswith("error: cannot create folder") and err.count("\n") == 1
    code, _, err = _microdesign(monkeypatch, capsys, "simulate", "--out", str(tmp_path), *FAST)
    assert code == 2 and "is a folder" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not_a_folder"]


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux's read-only /sys")
def test_read_only_folder_is_named_even_for_root(monkeypatch, capsys):
    # root passes os.access on /sys, but nothing can be created there: the error names the user's path
    code, _, err = _microdesign(monkeypatch, capsys, "simulate", "--out", "/sys/kernel/x.h5", *FAST)
    assert code == 2 and err.startswith("error: cannot write /sys/kernel/x.h5: ") and err.count("\n") == 1
    assert not Path("/sys/kernel/x.h5").exists()


def test_preset_toml_file_and_the_console_script(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\nphi0_range = [0.5, 1.5]\n[ch]\nshape = [16, 16, 8]\n')
    proc = subprocess.run(["microdesign", "simulate", "--preset", str(bad), "--out", str(tmp_path / "x.h5")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: preset bad: phi0_range: phi0 must lie in (0, 1), got [0.5, 1.5]"
    assert not (tmp_path / "x.h5").exists()
