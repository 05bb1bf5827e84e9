"""``microdesign dataset from-volume``: windows of one large film, resized, labelled, resumable; then ``train --data`` on it."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from generator.data.from_volume import dataset_from_volume, resize_nearest, window_origins
from generator.descriptors import compute
from generator.errors import InvalidInputError
from generator.io import write_volume
from tests.helpers import run_main


def run(args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    """Run ``microdesign ARGS`` in-process; returns (exit code, stdout, stderr)."""
    return run_main(args, monkeypatch, capsys)


@pytest.fixture(scope="module")
def film(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A 96x80x16 Cahn-Hilliard film standing in for tomography: 8-bit grey (0..255) in a .tif, and its labels."""
    from generator.physics.cahn_hilliard import CHParameters, simulate

    params = CHParameters(shape=(96, 80, 16), dt=0.1, steps=300, n_snapshots=1, first_snapshot_time=30.0)
    field = list(simulate(params, [0.5], [3.2], [0]))[-1].fields[0]
    grey = np.clip(np.round(255 * (1 - field)), 0, 255).astype(np.uint8)  # donor-rich is dark, as phase 0
    path = tmp_path_factory.mktemp("film") / "film.tif"
    write_volume(path, grey)
    return path, (grey > 128).astype(np.uint8)


def test_windows_span_the_electrode_axis_and_fit_the_plane() -> None:
    assert window_origins((10, 8, 4), (4, 4, 4), 3) == [(0, 0, 0), (0, 3, 0), (3, 0, 0), (3, 3, 0), (6, 0, 0), (6, 3, 0)]
    assert window_origins((10, 8, 4), (4, 4), (6, 4)) == [(0, 0, 0), (0, 4, 0), (6, 0, 0), (6, 4, 0)]
    with pytest.raises(InvalidInputError, match="full electrode axis"):
        window_origins((10, 8, 4), (4, 4, 2), 2)
    with pytest.raises(InvalidInputError, match="does not fit"):
        window_origins((10, 8, 4), (12, 4), 2)


def test_resize_nearest_keeps_labels_and_halves_exactly() -> None:
    labels = np.random.default_rng(0).integers(0, 3, (8, 6, 4)).astype(np.uint8)
    np.testing.assert_array_equal(resize_nearest(labels, (4, 3, 2)), labels[1::2, 1::2, 1::2])
    up = resize_nearest(labels, (16, 12, 8))
    np.testing.assert_array_equal(up[::2, ::2, ::2], labels)
    assert set(np.unique(up)) <= {0, 1, 2}


def test_from_volume_writes_labelled_windows_with_provenance(film, tmp_path: Path, capsys, monkeypatch) -> None:
    path, labels = film
    out = tmp_path / "data.h5"
    code, stdout, stderr = run(["dataset", "from-volume", str(path), "--size", "32x32x16", "--stride", "24",
                                "--threshold", "128", "--out", str(out), "--jobs", "1", "-q"], capsys, monkeypatch)
    assert code == 0, stderr
    assert "9 window(s)" in stdout  # x and y origins 0, 24, 48 (a window at 72 would pass x = 96)
    with h5py.File(out) as h5:
        assert h5.attrs["n_phases"] == 2 and list(h5.attrs["volume_shape"]) == [32, 32, 16]
        assert len(h5) == 9
        for name in h5:
            x, y, z = h5[name].attrs["origin"]
            window = labels[x:x + 32, y:y + 32, :]
            grey = h5[name][0]
            np.testing.assert_array_equal(grey, window.astype(np.float32))
            assert h5[name].attrs["ABS_f_D"] == pytest.approx(compute(window)["ABS_f_D"])
            assert h5[name].attrs["CT_f_D_tort1"] == pytest.approx(compute(window)["CT_f_D_tort1"])


def test_resize_and_resume_after_an_interrupted_run(film, tmp_path: Path) -> None:
    path, labels = film
    out = tmp_path / "small.h5"
    kwargs = dict(size=(48, 40), stride=16, resize=(24, 20, 8), threshold=128.0, n_jobs=1, progress=False, batch_size=2)
    windows = window_origins(labels.shape, (48, 40), 16)
    calls = {"n": 0}
    import generator.data.from_volume as module

    real = module.write_sample

    def failing(*args, **kw):  # the process dies while writing the third batch
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(*args, **kw)

    module.write_sample = failing
    try:
        with pytest.raises(KeyboardInterrupt):
            dataset_from_volume(path, out, **kwargs)
    finally:
        module.write_sample = real
    with h5py.File(out) as h5:
        assert len(h5) == 4 and not h5.attrs["complete"]  # two whole batches, nothing half-written
    dataset_from_volume(path, out, **kwargs)
    with h5py.File(out) as h5:
        assert len(h5) == len(windows) and h5.attrs["complete"]
        first = h5["w000000"]
        np.testing.assert_array_equal(first[0], resize_nearest(labels[:48, :40, :], (24, 20, 8)).astype(np.float32))
        assert all("CT_f_A_tort1" in h5[name].attrs for name in h5)
    with pytest.raises(InvalidInputError, match="--overwrite"):
        dataset_from_volume(path, out, **{**kwargs, "stride": 8})


def test_bad_inputs_are_one_line_errors(film, tmp_path: Path, capsys, monkeypatch) -> None:
    path, _ = film
    flat = tmp_path / "flat.npy"
    np.save(flat, np.zeros((5, 5)))
    text = tmp_path / "notes.txt"
    text.write_text("not a volume\n")
    cases = [
        ([str(path), "--size", "32x32x16", "--out", str(tmp_path / "a.h5")], "--threshold"),  # grey without a threshold
        ([str(flat), "--size", "4x4", "--out", str(tmp_path / "b.h5")], "3-D volume"),
        ([str(text), "--size", "4x4", "--out", str(tmp_path / "c.h5")], "GraSPI"),
        ([str(tmp_path / "missing.npy"), "--size", "4x4", "--out", str(tmp_path / "d.h5")], "does not exist"),
        ([str(path), "--size", "32x32x8", "--threshold", "128", "--out", str(tmp_path / "e.h5")], "full electrode axis"),
        ([str(path), "--size", "32by32", "--out", str(tmp_path / "f.h5")], "--size"),
        ([str(path), "--size", "32x32", "--stride", "0", "--threshold", "128", "--out", str(tmp_path / "g.h5")], "--stride"),
        ([str(path), "--size", "32x32", "--resize", "8x8", "--threshold", "128", "--out", str(tmp_path / "h.h5")], "--resize"),
    ]
    for args, word in cases:
        code, _, stderr = run(["dataset", "from-volume", *args, "-q"], capsys, monkeypatch)
        assert code == 2 and word in stderr and stderr.startswith("error: ") and stderr.count("\n") == 1, (args, stderr)
    assert not list(tmp_path.glob("*.h5"))


@pytest.mark.slow
def test_train_runs_on_a_dataset_made_from_a_volume(film, tmp_path: Path, capsys, monkeypatch) -> None:
    path, _ = film
    data = tmp_path / "data.h5"
    code, _, stderr = run(["dataset", "from-volume", str(path), "--size", "32x32", "--stride", "16", "--threshold", "128",
                           "--out", str(data), "--jobs", "1", "-q"], capsys, monkeypatch)
    assert code == 0, stderr
    out = tmp_path / "run"
    sets = ["vae.max_steps=2", "fp.max_steps=2", "ddpm.max_steps=2", "vae.val_every=2", "fp.val_every=2", "ddpm.val_every=2",
            "vae.checkpoint_every=2", "fp.checkpoint_every=2", "ddpm.checkpoint_every=2"]
    code, stdout, stderr = run(["train", "--preset", "tiny", "--data", str(data), "--out", str(out), "--no-progress",
                                *[a for s in sets for a in ("--set", s)]], capsys, monkeypatch)
    assert code == 0, stderr
    from generator.loading import load_generator

    gen = load_generator(out / "generator.pt")
    assert gen.volume_shape == (32, 32, 16) and len(gen.descriptor_table) == 20  # x origins 0..64 by 16, y 0..48 by 16
    result = gen.generate(gen.descriptor_table[gen.condition_names].iloc[:1].to_numpy(), sampler="ddim", steps=2)
    assert result.labels.shape == (1, 32, 32, 16)
