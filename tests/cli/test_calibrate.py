"""``microdesign calibrate``: fresh films of one size calibrate a bundle's recipe posterior; bad input is one line."""

from __future__ import annotations

import shutil

import pytest
import torch

from generator.checkpoint import read_bundle, tensor_to_table
from generator.model_info import model_info
from tests.helpers import run_main


@pytest.fixture
def bundle(tiny_bundle, tmp_path):
    """A copy of the tiny bundle (32x32x16 films, training seeds 0-3) that a test may rewrite."""
    return shutil.copyfile(tiny_bundle, tmp_path / "model.pt")


def test_calibrate_adds_films_of_a_size_and_replaces_them_on_a_rerun(bundle, tmp_path, monkeypatch, capsys):
    from inverse.posterior import posterior_for_model

    work = tmp_path / "work"
    args = ["calibrate", "--model", bundle, "--size", "32x32x16", "--n-series", "3", "--seed", "9300", "--workdir", work,
            "--no-progress"]
    code, out, err = run_main(args, monkeypatch, capsys)
    assert code == 0, err
    assert "recipe calibration: 12 films of 32x32x16 from 3 unused series" in out and f"wrote {bundle}" in out
    after = read_bundle(bundle)
    record = model_info(bundle)
    assert record.calibration_sizes == [{"shape": [32, 32, 16], "films": 12, "series": 3}]
    assert sorted(set(tensor_to_table(after["calibration_table"])["seed"].astype(int))) == [9300, 9301, 9302]
    # films of the training size now get the radii of the fresh series of that size
    posterior = posterior_for_model(bundle)
    assert [c.method for c in posterior.calibrations] == ["nested", "split"]
    assert set(posterior.calibration_index(record_table(bundle))) == {1}
    # a rerun resumes the simulation (nothing new) and replaces the films of that size instead of adding them
    code, out, err = run_main(args, monkeypatch, capsys)
    assert code == 0, err
    assert model_info(bundle).calibration_sizes[0]["films"] == 12


def record_table(bundle):
    from generator.model_info import read_model_record

    return read_model_record(bundle).descriptor_table


def test_calibrate_writes_another_bundle_with_a_second_size(bundle, tiny_bundle, tmp_path, monkeypatch, capsys):
    out_path = tmp_path / "calibrated.pt"
    code, out, err = run_main(["calibrate", "--model", bundle, "--size", "48x32x16", "--n-series", "3", "--seed", "9400",
                               "--workdir", tmp_path / "w48", "--out", out_path, "--no-progress"], monkeypatch, capsys)
    assert code == 0, err
    assert "recipe calibration: 12 films of 48x32x16 from 3 unused series" in out
    assert read_bundle(bundle).get("calibration_table") is None  # --out leaves the model as it was
    written, original = read_bundle(out_path), read_bundle(tiny_bundle)
    for network, state in original["state_dicts"].items():
        assert all(torch.equal(state[k], written["state_dicts"][network][k]) for k in state)
    code, out, err = run_main(["info", out_path], monkeypatch, capsys)
    assert code == 0 and "recipe calibration: 12 films of 48x32x16 from 3 unused series" in out
    # the same films' folder with another seed is refused before anything is simulated or written
    code, _, err = run_main(["calibrate", "--model", out_path, "--size", "48x32x16", "--n-series", "3", "--seed", "9500",
                             "--workdir", tmp_path / "w48", "--no-progress"], monkeypatch, capsys)
    assert code == 2 and "--workdir:" in err and "delete it or choose another --workdir" in err
    assert len(err.strip().splitlines()) == 1 and model_info(out_path).calibration_sizes[0]["films"] == 12


@pytest.mark.parametrize("extra, message", [
    (["--size", "32x32"], "--size: expected XxYxZ"),
    (["--seed", "1"], "seed 1 is a training series' noise seed"),
    (["--n-series", "2"], "2 series give 8 films (4 each); a calibration needs at least 10"),
    (["--n-series", "0"], "--n-series: must be at least 1"),
    (["--out", "calibrated.txt"], "--out: a bundle file ends in .pt"),
    (["--device", "tpu"], "--device: unknown device"),
    (["--preset", "small"], "--preset: the model records the physics of its training data"),
    (["--out", "missing/calibrated.pt"], "--out: cannot write into"),
    (["--seed", str(2**32 - 2)], "--seed + --n-series - 1: must be a whole number"),
])
def test_bad_input_is_one_line_before_any_simulation(bundle, tmp_path, monkeypatch, capsys, extra, message):
    before = bundle.read_bytes()
    work = tmp_path / "work"
    code, out, err = run_main(["calibrate", "--model", bundle, "--workdir", work, "--no-progress", *extra], monkeypatch, capsys)
    assert code == 2 and message in err and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert not work.exists() and bundle.read_bytes() == before


def test_a_missing_model_is_one_line(tmp_path, monkeypatch, capsys):
    code, _, err = run_main(["calibrate", "--model", tmp_path / "nope.pt"], monkeypatch, capsys)
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1


def test_the_shipped_model_is_rewritten_only_when_out_names_it(tmp_path, monkeypatch, capsys):
    from generator.loading import DEFAULT_BUNDLE

    before = DEFAULT_BUNDLE.stat().st_mtime_ns
    code, _, err = run_main(["calibrate", "--size", "64x64x64", "--workdir", tmp_path / "w"], monkeypatch, capsys)
    assert code == 2 and "--out: name the bundle to write" in err and len(err.strip().splitlines()) == 1
    assert DEFAULT_BUNDLE.stat().st_mtime_ns == before and not (tmp_path / "w").exists()
