"""``microdesign describe``: volumes, HDF5 datasets, and bad labels."""

from __future__ import annotations

import json
import sys

import h5py
import numpy as np
import pytest

from generator.descriptors import compute
from generator.io import write_volume
from generator.physics.labels import labels_to_grey
from inverse.cli import main


def _run(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["microdesign", "describe", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    out, err = capsys.readouterr()
    return exc.value.code or 0, out, err


def _labels(seed: int = 0, shape=(8, 7, 6)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (np.cumsum(rng.standard_normal(shape), axis=2) > 0).astype(np.uint8)


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".vti", ".tif"])
def test_json_per_file(tmp_path, monkeypatch, capsys, suffix):
    lab_a, lab_b = _labels(0), _labels(1)
    a, b = write_volume(tmp_path / f"a{suffix}", lab_a), write_volume(tmp_path / f"b{suffix}", lab_b)
    code, out, err = _run(monkeypatch, capsys, str(a), str(b), "--json", "--pixel-size", "2", "--periodic")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert [json.loads(line) for line in lines] == [compute(lab, pixel_size=2.0, periodic=True) for lab in (lab_a, lab_b)]


def test_table(tmp_path, monkeypatch, capsys):
    path = write_volume(tmp_path / "vol.npy", _labels(2))
    code, out, _ = _run(monkeypatch, capsys, str(path))
    assert code == 0
    assert "CT_f_D_tort1" in out and "vol.npy" in out and f"{compute(_labels(2))['ABS_f_D']:.6g}" in out


@pytest.mark.parametrize("volume, message", [
    (np.full((4, 4, 4), 5, dtype=np.uint8), "found value 5"),
    (np.where(np.eye(4)[:, :, None] > 0, np.nan, 0.0).repeat(3, axis=2), "NaN"),
    (np.full((4, 4, 4), 0.7), "--threshold"),
])
def test_invalid_labels_exit_2(tmp_path, monkeypatch, capsys, volume, message):
    path = tmp_path / "bad.npy"
    np.save(path, volume)
    code, out, err = _run(monkeypatch, capsys, str(path))
    assert code == 2
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_threshold_grey_levels(tmp_path, monkeypatch, capsys):
    lab = _labels(3)
    path = tmp_path / "grey.npy"
    np.save(path, labels_to_grey(lab) * 0.8 + 0.1)
    code, out, _ = _run(monkeypatch, capsys, str(path), "--threshold", "0.5", "--json")
    assert code == 0 and json.loads(out) == compute(lab)


def test_hdf5_dataset_gets_attributes(tmp_path, monkeypatch, capsys):
    path = tmp_path / "data.h5"
    volumes = [_labels(seed) for seed in range(3)]
    with h5py.File(path, "w") as f:
        f.attrs["n_phases"] = 2
        for i, lab in enumerate(volumes):
            f.create_dataset(f"s{i}", data=labels_to_grey(lab)[None])
    code, out, err = _run(monkeypatch, capsys, str(path), "--jobs", "1")
    assert code == 0, err
    assert "labelled 3 sample" in out
    with h5py.File(path, "r") as f:
        for i, lab in enumerate(volumes):
            assert f[f"s{i}"].attrs["CT_f_D_tort1"] == compute(lab)["CT_f_D_tort1"]
    code, out, _ = _run(monkeypatch, capsys, str(path))
    assert code == 0 and "labelled 0 sample" in out


def test_threshold_is_refused_for_hdf5_datasets(tmp_path, monkeypatch, capsys):
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        f.attrs["n_phases"] = 2
        f.create_dataset("s0", data=labels_to_grey(_labels(0))[None])
    code, _, err = _run(monkeypatch, capsys, str(path), "--threshold", "0.3")
    assert code == 2 and "--threshold applies to volume files" in err and len(err.strip().splitlines()) == 1
    with h5py.File(path, "r") as f:
        assert "ABS_f_D" not in f["s0"].attrs


def test_missing_file_exit_2(tmp_path, monkeypatch, capsys):
    code, _, err = _run(monkeypatch, capsys, str(tmp_path / "nope.npy"))
    assert code == 2 and "does not exist" in err
