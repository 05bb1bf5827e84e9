"""Three-phase HDF5 data whose mixed phase is coded with another grey level: ``describe --phase-levels``."""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from generator.descriptors import compute, describe_dataset
from generator.errors import InvalidInputError
from generator.levels import PhaseLevels, grey_from_labels
from inverse.cli import main


def three_phase_file(path: Path, levels: PhaseLevels) -> np.ndarray:
    """A MicroGen3D-style file (no root attributes) of two 3-phase volumes coded with ``levels``."""
    rng = np.random.default_rng(0)
    labels = rng.choice(np.array([0, 1, 2], dtype=np.uint8), size=(2, 12, 12, 8), p=[0.45, 0.4, 0.15])
    with h5py.File(path, "w") as h5:
        for i, volume in enumerate(labels):
            h5.create_dataset(f"sample_{i}", data=grey_from_labels(volume, levels)[None])
    return labels


def test_phase_levels_decode_another_mixed_coding(tmp_path: Path, capsys, monkeypatch) -> None:
    levels = PhaseLevels(0.0, 0.8, 1.0)  # mixed coded 0.8: the default levels read it as acceptor
    labels = three_phase_file(tmp_path / "d.h5", levels)
    monkeypatch.setattr(sys, "argv", ["microdesign", "describe", str(tmp_path / "d.h5"), "--phase-levels", "0,0.8,1", "--jobs", "1"])
    try:
        main()
    except SystemExit as exc:
        assert not exc.code
    with h5py.File(tmp_path / "d.h5") as h5:
        expected = compute(labels[0], n_phases=3)
        assert h5["sample_0"].attrs["vol_frac_M"] == pytest.approx(expected["vol_frac_M"])
        assert h5["sample_0"].attrs["vol_frac_M"] == pytest.approx(np.mean(labels[0] == 2))
        assert list(h5.attrs["descriptors_phase_levels"]) == [0.0, 0.8, 1.0]
    default = tmp_path / "default.h5"
    three_phase_file(default, levels)
    describe_dataset(default, n_jobs=1, progress=False)
    with h5py.File(default) as h5:
        # misread as two-phase, mixed taken for acceptor: why the levels must be explicit
        assert "vol_frac_M" not in h5["sample_0"].attrs
        assert h5["sample_0"].attrs["ABS_f_D"] == pytest.approx(np.mean(labels[0] == 0))
    with pytest.raises(InvalidInputError, match="phase levels"):
        describe_dataset(tmp_path / "d.h5", n_jobs=1, progress=False, phase_levels=PhaseLevels(0.0, 0.4, 1.0))
