"""Dataset presets: shipped files, designs, overrides and errors."""

from __future__ import annotations

import numpy as np
import pytest

from generator.errors import FileFormatError, InvalidInputError
from generator.physics.cahn_hilliard import spinodal_chi
from generator.physics.presets import load_preset, preset_names


def test_shipped_presets():
    assert {"tiny", "small", "paper"} <= set(preset_names())
    paper = load_preset("paper")
    assert paper.ch.shape == (128, 128, 64) and paper.total_series == 67 and len(paper.ch.snapshot_steps()) == 400
    small = load_preset("small")
    assert small.total_series * len(small.ch.snapshot_steps()) == 2304
    for name in preset_names():
        preset = load_preset(name)
        phi0, chi, seeds = preset.series_parameters()
        assert len(phi0) == len(chi) == len(seeds) == preset.total_series == len(set(seeds))
        assert np.all(chi > spinodal_chi(phi0) + 0.5)  # deep enough to separate before the first snapshot
        assert preset.n_phases == 2


def test_halton_design_is_seeded_and_inside_the_ranges():
    a = load_preset("paper").series_parameters()
    b = load_preset("paper").series_parameters()
    np.testing.assert_array_equal(a[0], b[0])
    assert a[0].min() >= 0.38 and a[0].max() <= 0.62 and a[1].min() >= 2.9 and a[1].max() <= 3.4
    assert len(np.unique(a[0])) == 67
    c = load_preset("paper", seed=7).series_parameters()
    assert not np.array_equal(a[0], c[0])


def test_overrides_toml_files_and_errors(tmp_path):
    preset = load_preset("tiny", ch={"steps": 10, "shape": (8, 8, 4)}, n_phases=3)
    assert preset.ch.steps == 10 and preset.ch.shape == (8, 8, 4) and preset.ch.dt == load_preset("tiny").ch.dt
    toml = tmp_path / "mine.toml"
    toml.write_text('phi0_range = [0.45, 0.55]\nn_phi0 = 3\n[ch]\nshape = [16, 16]\nsteps = 50\n')
    mine = load_preset(toml)
    assert mine.name == "mine" and mine.total_series == 3 and mine.ch.shape == (16, 16)
    with pytest.raises(InvalidInputError, match=r"ch.steps: Input should be greater than or equal to 1"):
        load_preset("tiny", ch={"steps": -1})
    with pytest.raises(InvalidInputError, match=r"phi0_range: phi0 must lie in \(0, 1\)"):
        load_preset("tiny", phi0_range=(0.0, 0.5))
    with pytest.raises(InvalidInputError, match=r"ch.shape: .*2 or 3 sizes"):
        load_preset("tiny", ch={"shape": (8,)})
    with pytest.raises(InvalidInputError, match="unknown preset 'medium'"):
        load_preset("medium")
    with pytest.raises(InvalidInputError, match="n_series is required"):
        load_preset("tiny", design="halton")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [")
    with pytest.raises(FileFormatError, match="malformed TOML"):
        load_preset(bad)
    with pytest.raises(FileFormatError, match="does not exist"):
        load_preset(tmp_path / "missing.toml")
