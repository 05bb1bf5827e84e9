"""``microdesign generate`` on the tiny bundle and on MicroGen3D-format weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from generator.descriptors import compute
from generator.io.volumes import read_volume
from tests.helpers import run_main
from inverse.cli._app import parse_assignments
from inverse.cli.generate import CSV_NAME


def run(args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    """Run ``microdesign ARGS`` in-process; returns (exit code, stdout, stderr)."""
    return run_main(args, monkeypatch, capsys)


@pytest.fixture(scope="module")
def tiny_condition(tiny_bundle: Path) -> dict[str, float]:
    """A condition in the middle of the tiny model's training range."""
    from generator.loading import load_generator

    gen = load_generator(tiny_bundle)
    return {name: 0.5 * (lo + hi) for name, (lo, hi) in gen.condition_ranges.items()}


def condition_args(condition: dict[str, float]) -> list[str]:
    return [arg for name, value in condition.items() for arg in ("--condition", f"{name}={value!r}")]


def test_parse_assignments() -> None:
    assert parse_assignments(["ABS_f_D=0.45", " CT_f_D_tort1 =0.3"], "--condition") == {"ABS_f_D": 0.45, "CT_f_D_tort1": 0.3}
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_assignments(["ABS_f_D"], "--condition")
    with pytest.raises(ValueError, match="not a number"):
        parse_assignments(["ABS_f_D=high"], "--condition")


def test_generate_writes_volumes_and_a_csv_of_requested_measured_predicted(
    tiny_bundle: Path, tiny_condition: dict[str, float], tmp_path: Path, capsys, monkeypatch
) -> None:
    out = tmp_path / "gen"
    args = ["generate", "--model", str(tiny_bundle), *condition_args(tiny_condition), "-n", "3",
            "--sampler", "ddim", "--steps", "4", "--seed", "5", "--jobs", "1"]
    code, stdout, stderr = run([*args, "--out", str(out), "--batch-size", "2"], capsys, monkeypatch)
    assert code == 0, stderr
    table = pd.read_csv(out / CSV_NAME)
    assert len(table) == 3 and list(table["file"]) == ["sample_0000", "sample_0001", "sample_0002"]
    for name, value in tiny_condition.items():
        np.testing.assert_allclose(table[f"requested_{name}"], value)
    assert any(c.startswith("predicted_") for c in table.columns)
    for row in table.itertuples():
        labels = read_volume(out / f"{row.file}.npy")
        np.testing.assert_array_equal(read_volume(out / f"{row.file}.vti"), labels)
        assert set(np.unique(labels)) <= {0, 1, 2}
        measured = compute(labels, n_phases=json.loads((out / "generation.json").read_text())["n_phases"])
        for name in ("ABS_f_D", "CT_f_D_tort1", "STAT_e"):
            assert getattr(row, f"measured_{name}") == pytest.approx(measured[name])
    # the same seed gives the same volumes
    again = tmp_path / "again"
    code, _, stderr = run([*args, "--out", str(again), "--batch-size", "2", "--no-vti"], capsys, monkeypatch)
    assert code == 0, stderr
    for i in range(3):
        np.testing.assert_array_equal(np.load(again / f"sample_{i:04d}.npy"), np.load(out / f"sample_{i:04d}.npy"))
    assert not list(again.glob("*.vti"))
    pd.testing.assert_frame_equal(pd.read_csv(again / CSV_NAME), table)


def test_generate_rejects_unknown_and_out_of_range_conditions(
    tiny_bundle: Path, tiny_condition: dict[str, float], tmp_path: Path, capsys, monkeypatch
) -> None:
    out = tmp_path / "bad"
    base = ["generate", "--model", str(tiny_bundle), "-n", "1", "--steps", "2", "--sampler", "ddim", "--out", str(out), "--no-vti", "--jobs", "1"]
    code, _, stderr = run([*base, *condition_args({**tiny_condition, "not_a_descriptor": 0.1})], capsys, monkeypatch)
    assert code == 2 and stderr.count("\n") == 1 and "not_a_descriptor" in stderr and stderr.startswith("error: ")
    name = next(iter(tiny_condition))
    far = {**tiny_condition, name: 50.0}
    code, _, stderr = run([*base, *condition_args(far)], capsys, monkeypatch)
    assert code == 2 and stderr.count("\n") == 1 and name in stderr and "--allow-extrapolation" in stderr
    assert not out.exists()
    code, _, stderr = run([*base, *condition_args(far), "--allow-extrapolation"], capsys, monkeypatch)
    assert code == 0, stderr
    assert pd.read_csv(out / CSV_NAME)[f"requested_{name}"].tolist() == [50.0]
    fresh = [*base[:-4], str(tmp_path / "fresh"), *base[-3:]]  # --out holds the run above now: a new folder
    code, _, stderr = run([*fresh, *condition_args(tiny_condition), "--sampler", "euler"], capsys, monkeypatch)
    assert code == 2 and "sampler" in stderr and stderr.count("\n") == 1
    code, _, stderr = run([*fresh, *condition_args(tiny_condition), "--steps", "5000"], capsys, monkeypatch)
    assert code == 2 and "--steps" in stderr and stderr.count("\n") == 1
    assert not (tmp_path / "fresh").exists()


def test_generate_from_a_microgen3d_folder_needs_its_kind(tmp_path: Path, capsys, monkeypatch) -> None:
    folder = tmp_path / "weights"
    folder.mkdir()
    code, _, stderr = run(["generate", "--model", str(folder), "--condition", "ABS_f_D=0.5", "--out", str(tmp_path / "o")], capsys, monkeypatch)
    assert code == 2 and "--kind" in stderr and stderr.count("\n") == 1
    code, _, stderr = run(["generate", "--model", str(folder), "--kind", "experimental", "--condition", "ABS_f_D=0.5", "--out", str(tmp_path / "o")], capsys, monkeypatch)
    assert code == 2 and "vae.pt" in stderr and stderr.count("\n") == 1


@pytest.mark.slow
def test_generate_with_microgen3d_weights(tmp_path: Path, capsys, monkeypatch) -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "models" / "test_microgen3d.py"
    spec = importlib.util.spec_from_file_location("_microgen3d_test_helpers", path)
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    SHAPES, write_weights = helpers.SHAPES, helpers.write_weights
    folder = write_weights(tmp_path / "experimental", json.loads(SHAPES.read_text())["experimental"])
    out = tmp_path / "gen"
    code, _, stderr = run(["generate", "--model", str(folder), "--kind", "experimental", "--condition", "ABS_f_D=0.5",
                           "--condition", "CT_f_D_tort1=0.4", "--condition", "CT_f_A_tort1=0.4", "-n", "1",
                           "--sampler", "ddim", "--steps", "1", "--out", str(out), "--jobs", "1"], capsys, monkeypatch)
    assert code == 0, stderr
    labels = np.load(out / "sample_0000.npy")
    assert labels.shape == (64, 64, 64) and set(np.unique(labels)) <= {0, 1}
    table = pd.read_csv(out / CSV_NAME)
    assert {"requested_ABS_f_D", "measured_ABS_f_D", "predicted_ABS_f_D", "predicted_CT_f_A_tort1"} <= set(table.columns)
    assert table["measured_ABS_f_D"].iloc[0] == pytest.approx(compute(labels)["ABS_f_D"])
