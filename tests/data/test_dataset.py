"""MicrostructureDataset over our files and MicroGen3D's part_*.h5, and the split by series."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from generator.data import MicrostructureDataset, simulate_dataset, split_by_series
from generator.errors import FileFormatError
from generator.physics.presets import load_preset


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    preset = load_preset("tiny", batch_size=4, ch={"shape": (16, 16, 8), "dt": 0.1, "steps": 80, "n_snapshots": 3, "first_snapshot_time": 2.0})
    return simulate_dataset(preset, tmp_path_factory.mktemp("ds") / "ours.h5", progress=False)


def test_reads_our_files_in_memory_and_lazily(ours):
    eager = MicrostructureDataset(ours, ["phi", "chi", "log_time"], in_memory=True)
    lazy = MicrostructureDataset(ours, ["phi", "chi", "log_time"], in_memory=False)
    assert len(eager) == len(lazy) == 12 and eager.volume_shape == (16, 16, 8)
    for i in (0, 5, 11):
        (ve, ae), (vl, al) = eager[i], lazy[i]
        assert ve.shape == (1, 16, 16, 8) and ve.dtype == torch.float32 and ae.dtype == torch.float32
        torch.testing.assert_close(ve, vl)
        torch.testing.assert_close(ae, al)
    with h5py.File(ours) as h5:
        name = eager.names[5][1]
        np.testing.assert_array_equal(eager[5][0].numpy(), h5[name][()])
        assert eager[5][1].tolist() == pytest.approx([h5[name].attrs[k] for k in ("phi", "chi", "log_time")], rel=1e-6)
    assert sorted(np.bincount(eager.series).tolist()) == [3, 3, 3, 3]
    batch, values = next(iter(DataLoader(lazy, batch_size=5, shuffle=True)))
    assert batch.shape == (5, 1, 16, 16, 8) and values.shape == (5, 3)
    lazy.close()


def test_split_is_by_series_never_by_snapshot(ours):
    data = MicrostructureDataset(ours)
    train, val = data.split(0.25, seed=3)
    assert len(train) + len(val) == len(data) and len(val) == 3
    assert not set(data.series[train.indices]) & set(data.series[val.indices])
    tr, va = split_by_series(np.repeat(np.arange(10), 4), 0.3, seed=0)
    assert len(va) == 12 and not set(tr // 4) & set(va // 4)
    assert data[0][1].shape == (0,)


def _microgen3d_parts(folder, shape=(8, 8, 4), flat=False):
    rng = np.random.default_rng(0)
    attrs = ("vol_frac_D", "vol_frac_M", "tortuosity_A", "tortuosity_D", "phi", "chi", "log_time")
    for part in range(2):
        with h5py.File(folder / f"part_{part}.h5", "w") as h5:
            for j in range(3):
                grey = rng.choice([0.0, 0.5, 1.0], size=(1, *shape)).astype(np.float32)
                ds = h5.create_dataset(f"sample_{part}_{j}", data=grey.reshape(-1) if flat else grey)
                for k, a in enumerate(attrs):
                    ds.attrs[a] = 0.1 * k + j
    return attrs


def test_reads_microgen3d_part_files(tmp_path):
    attrs = _microgen3d_parts(tmp_path)
    data = MicrostructureDataset(str(tmp_path / "part_*.h5"), ["vol_frac_D", "tortuosity_A", "log_time"])
    assert len(data) == 6 and data.volume_shape == (8, 8, 4)
    volume, values = data[4]
    assert volume.shape == (1, 8, 8, 4)
    assert values.tolist() == pytest.approx([1.0, 1.2, 1.6])
    # series = one (phi, chi) recipe, across part files
    assert len(np.unique(data.series)) == 3
    assert attrs[0] == "vol_frac_D"


def test_flat_samples_need_a_shape_and_errors_are_clear(tmp_path):
    _microgen3d_parts(tmp_path, flat=True)
    pattern = str(tmp_path / "part_*.h5")
    with pytest.raises(FileFormatError, match=r"pass volume_shape"):
        MicrostructureDataset(pattern)
    assert MicrostructureDataset(pattern, volume_shape=(8, 8, 4))[0][0].shape == (1, 8, 8, 4)
    with pytest.raises(FileFormatError, match=r"does not reshape to \(1, 8, 8, 8\)"):
        MicrostructureDataset(pattern, volume_shape=(8, 8, 8))
    with pytest.raises(FileFormatError, match=r"lacks attribute 'ABS_f_D'"):
        MicrostructureDataset(pattern, ["vol_frac_D", "ABS_f_D"], volume_shape=(8, 8, 4))
    with pytest.raises(FileFormatError, match="no HDF5 files match"):
        MicrostructureDataset(str(tmp_path / "nothing_*.h5"))


@pytest.mark.parametrize("in_memory", [True, False])
def test_a_volume_holding_nan_is_refused_before_training(tmp_path, in_memory):
    path = tmp_path / "nan.h5"
    with h5py.File(path, "w") as f:
        for i in range(3):
            d = f.create_dataset(f"s{i}", data=np.full((1, 4, 4, 2), 0.0 if i != 1 else np.nan, np.float32))
            d.attrs["ABS_f_D"] = 0.5
    with pytest.raises(FileFormatError, match=r"nan.h5:s1 holds NaN or infinite values"):
        MicrostructureDataset(path, ["ABS_f_D"], in_memory=in_memory)


def test_a_bundle_with_nan_weights_is_not_written(tmp_path):
    from generator.checkpoint import save_bundle
    from generator.errors import CheckpointError

    bundle = {"state_dicts": {"vae": {"w": torch.tensor([1.0, float("nan")]), "steps": torch.tensor([3])}}}
    with pytest.raises(CheckpointError, match=r"trained vae holds NaN or infinite weights \(w\)"):
        save_bundle(bundle, tmp_path / "generator.pt")
    assert list(tmp_path.iterdir()) == []
    bundle["state_dicts"]["vae"]["w"] = torch.tensor([1.0, 2.0])
    assert save_bundle(bundle, tmp_path / "generator.pt").is_file()
