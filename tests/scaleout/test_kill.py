"""SIGKILL in the middle of ``microdesign simulate``, ``train`` and ``describe``, then the same command again.

After each kill: every file left is readable, and the rerun finishes the job
without losing or redoing completed work. (``study run`` is killed in
``test_workers.py`` and in ``tests/inverse/test_search.py``.)
"""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from generator.checkpoint import zip_problem
from generator.data.hdf5 import finished_series
from generator.descriptors import compute, descriptor_names
from generator.descriptors.dataset import working_copy_path
from generator.physics.labels import grey_to_labels
from tests.scaleout.conftest import kill_all, run_cli, sigkill, start_cli, wait_until

pytestmark = pytest.mark.slow

PRESET = """
name = "killed"
n_phases = 2
design = "grid"
phi0_range = [0.4, 0.6]
chi_range = [2.8, 3.4]
n_phi0 = 3
n_chi = 2
seed = 0
batch_size = 1
[ch]
shape = [24, 24, 12]
dt = 0.1
steps = 300
n_snapshots = 3
first_snapshot_time = 10.0
"""


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def samples(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {name: f[name][...] for name in f}


def test_simulate_killed_then_resumed(tmp_path):
    (tmp_path / "killed.toml").write_text(PRESET)
    out = tmp_path / "data" / "killed.h5"
    proc = start_cli("simulate", "--preset", "killed.toml", "--out", out, "--quiet", cwd=tmp_path, log=tmp_path / "simulate.log")
    try:
        wait_until(lambda: out.exists() and len(finished_series(out)) >= 2, timeout=240, what="two committed series")
        assert proc.poll() is None, "the simulation finished before it could be killed"
        sigkill(proc)
    finally:
        kill_all([proc])
    done = finished_series(out)
    assert 2 <= len(done) < 6 and set(done.values()) == {3}  # readable, whole series only
    kept = samples(out)
    rerun = run_cli("simulate", "--preset", "killed.toml", "--out", out, "--quiet", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert finished_series(out) == {i: 3 for i in range(6)}
    after = samples(out)
    for name, grey in kept.items():  # nothing completed was lost or recomputed differently
        np.testing.assert_array_equal(after[name], grey)
    assert sorted(p.name for p in out.parent.iterdir()) == ["killed.h5"]  # the killed run's temp file is gone


def test_train_killed_then_resumed(tiny_dataset, tmp_path):
    out = tmp_path / "model"
    command = ("train", "--data", tiny_dataset, "--out", out, "--preset", "tiny", "--set", "fp.checkpoint_every=10",
               "--set", "ddpm.max_steps=10", "--set", "ddpm.val_every=10", "--set", "ddpm.checkpoint_every=10", "--no-progress")
    proc = start_cli(*command, cwd=tmp_path, log=tmp_path / "train.log")
    try:
        wait_until(lambda: (out / "vae.pt").exists() and (out / "checkpoints" / "fp" / "last.ckpt").exists(), timeout=400,
                   what="the VAE stage to finish and the FP stage to checkpoint")
        sigkill(proc)
    finally:
        kill_all([proc])
    assert not (out / "generator.pt").exists()
    for path in [*out.glob("*.pt"), *out.rglob("*.ckpt")]:  # every file left is whole
        assert zip_problem(path) is None, path
        torch.load(path, map_location="cpu", weights_only=False)
    vae = digest(out / "vae.pt")

    # a damaged stage result is refused with a one-line error, and nothing is overwritten
    shutil.copyfile(out / "vae.pt", tmp_path / "vae.pt")
    (out / "vae.pt").write_bytes((tmp_path / "vae.pt").read_bytes()[:2000])
    damaged = run_cli(*command, cwd=tmp_path)
    assert damaged.returncode == 2, damaged.stderr[-2000:]
    assert damaged.stderr.strip().splitlines()[-1].startswith(f"error: checkpoint: {out / 'vae.pt'} is truncated or corrupt")
    assert "Traceback" not in damaged.stderr and not (out / "generator.pt").exists()

    shutil.copyfile(tmp_path / "vae.pt", out / "vae.pt")
    resumed = run_cli(*command, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert digest(out / "vae.pt") == vae  # the finished stage was not trained again
    from generator.loading import load_generator

    generator = load_generator(out / "generator.pt")
    result = generator.generate({"ABS_f_D": 0.5, "CT_f_D_tort1": 0.9, "CT_f_A_tort1": 0.9}, 1, steps=2, allow_extrapolation=True)
    assert result.labels.shape == (1, *generator.volume_shape)


def _copy_written(work: Path, seen: list[int]) -> bool:
    """Whether describe's working copy was written since it was first seen (by its mtime: opening it would
    take HDF5's file lock away from the writer)."""
    if not work.is_file():
        return False
    stamp = work.stat().st_mtime_ns
    seen.append(stamp)
    return stamp != seen[0]


def test_describe_killed_then_resumed(tiny_dataset, tmp_path):
    # The tiny dataset's 16 samples, each 16 times under a new name (256 samples, 32 batches of 8): a
    # fast machine labels 16 samples in well under the 0.1 s between the first write and the kill.
    path = tmp_path / "unlabelled.h5"
    shutil.copyfile(tiny_dataset, path)
    names = descriptor_names(2)
    with h5py.File(path, "r+") as f:
        originals = list(f)
        for sample in f.values():
            for key in names:
                if key in sample.attrs:
                    del sample.attrs[key]
        for copy in range(1, 16):
            for name in originals:
                f.copy(f[name], f"{name}_copy{copy:02d}")
        n = len(f)
    original = path.read_bytes()
    work = working_copy_path(path)  # describe labels a copy, which replaces the file when every sample is done
    seen: list[int] = []
    proc = start_cli("describe", path, "--jobs", "1", cwd=tmp_path, log=tmp_path / "describe.log")
    try:  # 8 samples per batch with one thread: kill right after the first batch was written
        wait_until(lambda: _copy_written(work, seen) or proc.poll() is not None, timeout=240, interval=0.005,
                   what="the first batch of descriptors")
        time.sleep(0.1)  # past the few milliseconds of the write, into the next batch's computation
        sigkill(proc)
    finally:
        kill_all([proc])
    assert path.read_bytes() == original  # the simulation data is never written in place
    with h5py.File(work, "r") as f:  # readable; each sample labelled wholly or not at all
        labelled = [all(k in f[s].attrs for k in names) for s in f]
        assert all(any(k in f[s].attrs for k in names) == done for s, done in zip(f, labelled))
        first = {s: {k: float(f[s].attrs[k]) for k in names} for s, done in zip(f, labelled) if done}
    assert 0 < len(first) < n
    rerun = run_cli("describe", path, "--jobs", "1", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"labelled {n - len(first)} sample(s)" in rerun.stdout + rerun.stderr
    with h5py.File(path, "r") as f:
        for s in f:
            values = {k: float(f[s].attrs[k]) for k in names}
            if s in first:
                assert values == first[s]  # kept, not recomputed
        check = sorted(f)[-1]
        expected = compute(grey_to_labels(f[check][0], 2), n_phases=2)
        assert {k: float(f[check].attrs[k]) for k in names} == pytest.approx({k: expected[k] for k in names})
