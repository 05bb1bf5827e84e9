"""describe_dataset: descriptors written as HDF5 attributes, resumable."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from generator.descriptors import compute, describe_dataset, descriptor_names
from generator.descriptors.dataset import working_copy_path
from generator.errors import FileFormatError, InvalidInputError
from generator.physics.labels import labels_to_grey


def _labels(seed: int, n_phases: int, shape=(10, 9, 8)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = np.cumsum(np.cumsum(rng.standard_normal(shape), axis=0), axis=2)
    q = np.quantile(smooth, [0.4, 0.6])
    lab = np.where(smooth > q[1], 1, 0).astype(np.uint8)
    if n_phases == 3:
        lab[(smooth > q[0]) & (smooth <= q[1])] = 2
    return lab


def _write(path, n_phases: int, n: int = 5, shape=(10, 9, 8)) -> list[np.ndarray]:
    volumes = [_labels(seed, n_phases, shape) for seed in range(n)]
    with h5py.File(path, "w") as f:
        f.attrs["n_phases"] = n_phases
        for i, lab in enumerate(volumes):
            f.create_dataset(f"sample_{i:03d}", data=labels_to_grey(lab)[None])
    return volumes


@pytest.mark.parametrize("n_phases", [2, 3])
def test_writes_attributes_equal_to_compute(tmp_path, n_phases):
    path = tmp_path / "data.h5"
    volumes = _write(path, n_phases)
    assert describe_dataset(path, n_jobs=2, progress=False, batch_size=2) == len(volumes)
    with h5py.File(path, "r") as f:
        for i, lab in enumerate(volumes):
            attrs = f[f"sample_{i:03d}"].attrs
            expected = compute(lab, n_phases=n_phases)
            assert {k: float(attrs[k]) for k in descriptor_names(n_phases)} == expected
        assert f.attrs["descriptors_pixel_size"] == 1.0


def test_resumes_only_unlabelled_samples(tmp_path):
    path = tmp_path / "data.h5"
    _write(path, 2)
    describe_dataset(path, n_jobs=1, progress=False)
    with h5py.File(path, "r+") as f:  # as if killed while writing sample 3's attributes
        del f["sample_003"].attrs["CT_f_A_tort1"]
        stamp = f["sample_001"].attrs["ABS_f_D"] + 0.0
        f["sample_001"].attrs["ABS_f_D"] = -1.0  # a labelled sample is left alone
    assert describe_dataset(path, n_jobs=1, progress=False) == 1
    with h5py.File(path, "r") as f:
        assert "CT_f_A_tort1" in f["sample_003"].attrs
        assert f["sample_001"].attrs["ABS_f_D"] == -1.0 != stamp
    assert describe_dataset(path, n_jobs=1, progress=False) == 0


def test_refuses_to_resume_with_other_settings(tmp_path):
    path = tmp_path / "data.h5"
    _write(path, 2, n=2)
    describe_dataset(path, n_jobs=1, progress=False, pixel_size=2.0)
    with pytest.raises(InvalidInputError, match="pixel_size"):
        describe_dataset(path, n_jobs=1, progress=False)


def test_bad_files(tmp_path):
    with pytest.raises(FileFormatError, match="does not exist"):
        describe_dataset(tmp_path / "missing.h5", progress=False)
    text = tmp_path / "not.h5"
    text.write_text("hello")
    with pytest.raises(FileFormatError, match="not an HDF5"):
        describe_dataset(text, progress=False)
    bad = tmp_path / "nan.h5"
    with h5py.File(bad, "w") as f:
        f.attrs["n_phases"] = 2
        f.create_dataset("s", data=np.full((1, 4, 4, 4), np.nan, np.float32))
    with pytest.raises(FileFormatError, match="NaN"):
        describe_dataset(bad, progress=False)
    out_of_range = tmp_path / "five.h5"
    _write(out_of_range, 2, n=2)
    with h5py.File(out_of_range, "r+") as f:
        f["sample_001"][0, 0, 0, 0] = 5.0
    with pytest.raises(FileFormatError, match=r"sample_001.*\[0, 5\]"):
        describe_dataset(out_of_range, progress=False, batch_size=1)
    with h5py.File(out_of_range, "r") as f:  # the file is untouched until every sample is labelled
        assert "ABS_f_D" not in f["sample_000"].attrs and "ABS_f_D" not in f["sample_001"].attrs
    with h5py.File(working_copy_path(out_of_range), "r") as f:  # the valid sample's labels are kept for a rerun
        assert "ABS_f_D" in f["sample_000"].attrs and "ABS_f_D" not in f["sample_001"].attrs
    with h5py.File(out_of_range, "r+") as f:  # the user repairs the file: the old copy is not resumed
        f["sample_001"][0, 0, 0, 0] = 1.0
    assert describe_dataset(out_of_range, progress=False, batch_size=1) == 2
    assert not working_copy_path(out_of_range).exists()


@pytest.mark.slow
def test_terminated_run_leaves_a_readable_file_and_resumes(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "data.h5"
    volumes = _write(path, 2, n=12, shape=(32, 32, 24))
    original = path.read_bytes()
    work = working_copy_path(path)
    child = subprocess.Popen([sys.executable, "-c", (
        "from generator.descriptors import describe_dataset; "
        f"describe_dataset({str(path)!r}, n_jobs=1, progress=False, batch_size=2)")])
    deadline = time.monotonic() + 120

    seen: list[int] = []  # the copy's mtimes (opening it would take HDF5's file lock away from the writer)
    while child.poll() is None and time.monotonic() < deadline:
        if work.is_file():
            seen.append(work.stat().st_mtime_ns)
            if seen[-1] != seen[0]:
                break  # the first batch is being written
        time.sleep(0.005)
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=60) == -signal.SIGTERM
    assert path.read_bytes() == original  # the simulation data is never written in place
    with h5py.File(work, "r") as f:  # never corrupted: SIGTERM is held back while attributes are written
        done = sum(all(k in f[name].attrs for k in descriptor_names(2)) for name in f)
    assert 0 < done < len(volumes)
    assert describe_dataset(path, n_jobs=2, progress=False) == len(volumes) - done
    assert not work.exists()
    with h5py.File(path, "r") as f:
        for i, lab in enumerate(volumes):
            assert f[f"sample_{i:03d}"].attrs["CT_f_D_tort1"] == compute(lab)["CT_f_D_tort1"]
