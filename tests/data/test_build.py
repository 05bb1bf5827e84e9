"""Dataset building: HDF5 layout, three-phase labels, resumability and kill safety."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from generator.data.build import simulate_dataset
from generator.data.hdf5 import finished_series, read_root_attributes
from generator.errors import FileFormatError, InvalidInputError
from generator.physics.presets import load_preset

REPO = Path(__file__).resolve().parents[2]


def _mini(**kw):
    """A fast preset: 16x16x8, 6 series, 5 snapshots, one series per batch."""
    base = dict(design="grid", phi0_range=(0.4, 0.6), chi_range=(2.9, 3.3), n_phi0=3, n_chi=2, batch_size=1,
                ch={"shape": (16, 16, 8), "dt": 0.1, "steps": 150, "n_snapshots": 5, "first_snapshot_time": 8.0})
    base.update(kw)
    return load_preset("tiny", **base)


def _contents(path: Path) -> dict[str, tuple[np.ndarray, dict]]:
    with h5py.File(path) as h5:
        return {name: (ds[()], dict(ds.attrs)) for name, ds in h5.items()}


def test_tiny_preset_layout(tmp_path):
    out = simulate_dataset("tiny", tmp_path / "new" / "tiny.h5", progress=False)
    root = read_root_attributes(out)
    preset = load_preset("tiny")
    assert root["format"] == "microdesign-ch" and root["format_version"] == 1
    assert root["n_phases"] == 2 and root["preset"] == "tiny" and root["complete"] is True
    assert root["volume_shape"] == [32, 32, 16] and root["n_series"] == preset.total_series
    assert root["ch_parameters"]["kappa"] == preset.ch.kappa
    n_snap = len(preset.ch.snapshot_steps())
    assert finished_series(out) == {i: n_snap for i in range(preset.total_series)}
    phi0, chi, _ = preset.series_parameters()
    with h5py.File(out) as h5:
        for name, ds in h5.items():
            assert ds.shape == (1, 32, 32, 16) and ds.dtype == np.float32
            assert set(np.unique(ds[()])) == {0.0, 1.0}
            s = int(ds.attrs["series"])
            assert name == f"s{s:05d}_t{int(ds.attrs['snapshot']):04d}"
            assert ds.attrs["phi"] == pytest.approx(phi0[s]) and ds.attrs["chi"] == pytest.approx(chi[s])
            assert ds.attrs["log_time"] == pytest.approx(np.log10(ds.attrs["time"]))
            # grey 0.0 is donor = high local donor fraction: donor fraction tracks phi0
            if ds.attrs["snapshot"] == n_snap - 1:
                assert np.mean(ds[()] == 0.0) == pytest.approx(phi0[s], abs=0.08)


def test_three_phase_labels_from_the_same_fields(tmp_path):
    two = _contents(simulate_dataset(_mini(), tmp_path / "two.h5", progress=False))
    three = _contents(simulate_dataset(_mini(), tmp_path / "three.h5", n_phases=3, progress=False))
    assert read_root_attributes(tmp_path / "three.h5")["n_phases"] == 3
    assert two.keys() == three.keys()
    for name, (grey3, _) in three.items():
        grey2 = two[name][0]
        mixed = grey3 == 0.5
        assert set(np.unique(grey3)) <= {0.0, 0.5, 1.0} and 0 < mixed.mean() <= 0.3 + 1e-6
        np.testing.assert_array_equal(grey3[~mixed], grey2[~mixed])


def test_resume_after_an_interruption_gives_the_same_file(tmp_path, monkeypatch):
    import generator.data.build as build

    full = _contents(simulate_dataset(_mini(), tmp_path / "full.h5", progress=False))
    real = build.simulate
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        yield from real(*args, **kwargs)

    monkeypatch.setattr(build, "simulate", flaky)
    out = tmp_path / "resumed.h5"
    with pytest.raises(KeyboardInterrupt):
        simulate_dataset(_mini(), out, progress=False)
    assert finished_series(out) == {0: 5, 1: 5}  # whole series only
    assert read_root_attributes(out)["complete"] is False
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    monkeypatch.setattr(build, "simulate", real)
    simulate_dataset(_mini(batch_size=4), out, progress=False)  # another batch size may resume
    resumed = _contents(out)
    assert resumed.keys() == full.keys()
    for name in full:
        np.testing.assert_array_equal(resumed[name][0], full[name][0])
    assert read_root_attributes(out)["complete"] is True


@pytest.mark.slow
def test_sigkill_at_any_moment_leaves_a_readable_file_of_whole_series(tmp_path):
    # Each series takes a good fraction of a second even on a quiet machine, so that the three kills
    # (one more committed series, then 0-0.8 s) land before the run can finish.
    preset = _mini(n_phi0=4, n_chi=3, ch={"shape": (24, 24, 12), "dt": 0.1, "steps": 1000, "n_snapshots": 40, "first_snapshot_time": 0.5})
    toml = tmp_path / "kill.toml"
    toml.write_text(_to_toml(preset))
    out = tmp_path / "kill.h5"
    script = f"from generator.data.build import simulate_dataset; simulate_dataset({str(toml)!r}, {str(out)!r}, progress=False)"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    seen_counts, killed_mid_batch = [], []
    for delay in (0.0, 0.37, 0.81):
        proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env)
        before = finished_series(out) if out.exists() else {}
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:  # wait for one more committed series
            if out.exists() and len(finished_series(out)) > len(before):
                break
            time.sleep(0.05)
        time.sleep(delay)  # then kill somewhere inside the next batch
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        counts = finished_series(out)
        assert counts and set(counts.values()) == {40}  # readable, whole series only
        seen_counts.append(len(counts))
        killed_mid_batch.append(any(tmp_path.glob(".kill.h5.*")))  # a half-written batch file was left
    assert seen_counts == sorted(seen_counts) and seen_counts[-1] < preset.total_series
    assert any(killed_mid_batch)
    simulate_dataset(toml, out, progress=False)  # resumes, and removes the killed runs' temp files
    assert finished_series(out) == {i: 40 for i in range(preset.total_series)}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def _to_toml(preset) -> str:
    data = preset.model_dump(mode="json", exclude_none=True)
    ch = data.pop("ch")
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items()] + ["[ch]"] + [f"{k} = {_toml_value(v)}" for k, v in ch.items()]
    return "\n".join(lines) + "\n"


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def test_a_halton_dataset_grows_in_place_to_more_series(tmp_path, monkeypatch):
    import generator.data.build as build

    def halton(n):
        return _mini(design="halton", n_series=n, batch_size=2)

    fresh = _contents(simulate_dataset(halton(5), tmp_path / "fresh.h5", progress=False))
    out = simulate_dataset(halton(3), tmp_path / "grown.h5", progress=False)
    real = build.simulate
    simulated = []

    def recording(ch, phi0, chi, seeds, **kwargs):
        simulated.extend(int(s) for s in seeds)
        yield from real(ch, phi0, chi, seeds, **kwargs)

    monkeypatch.setattr(build, "simulate", recording)
    simulate_dataset(halton(5), out, progress=False)
    assert sorted(simulated) == list(halton(5).series_parameters()[2][3:])  # only the two new series ran
    grown = _contents(out)
    assert grown.keys() == fresh.keys()
    for name in fresh:
        np.testing.assert_array_equal(grown[name][0], fresh[name][0])
        assert grown[name][1]["phi"] == fresh[name][1]["phi"] and grown[name][1]["seed"] == fresh[name][1]["seed"]
    root = read_root_attributes(out)
    assert root["n_series"] == 5 and root["complete"] is True and root["preset_json"]["n_series"] == 5
    # fewer series than the file holds, or another sequence (seed), is another dataset
    with pytest.raises(InvalidInputError, match="holds series [34], which this preset \\(3 series\\) does not make"):
        simulate_dataset(halton(3), out, progress=False)
    with pytest.raises(InvalidInputError, match="another preset"):
        simulate_dataset(halton(6).model_copy(update={"seed": 77}), out, progress=False)
    # a grid design is not a growing sequence: another n_phi0 is another dataset
    grid = simulate_dataset(_mini(), tmp_path / "grid.h5", progress=False)
    with pytest.raises(InvalidInputError, match="another preset"):
        simulate_dataset(_mini(n_phi0=4), grid, progress=False)


def test_existing_file_of_another_preset_and_overwrite(tmp_path):
    out = simulate_dataset(_mini(), tmp_path / "a.h5", progress=False)
    with pytest.raises(InvalidInputError, match="another preset or number of phases.*--overwrite"):
        simulate_dataset(_mini(), out, n_phases=3, progress=False)
    simulate_dataset(_mini(), out, n_phases=3, progress=False, overwrite=True)
    assert read_root_attributes(out)["n_phases"] == 3
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as h5:
        h5["x"] = np.zeros(3)
    with pytest.raises(FileFormatError, match="not a microdesign dataset"):
        simulate_dataset(_mini(), foreign, progress=False)
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not hdf5")
    with pytest.raises(FileFormatError, match="not a readable HDF5 file"):
        simulate_dataset(_mini(), garbage, progress=False)


def test_bad_output_paths_leave_nothing(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(FileFormatError, match="cannot create folder"):
        simulate_dataset(_mini(), blocker / "sub" / "x.h5", progress=False)
    with pytest.raises(FileFormatError, match="is a folder"):
        simulate_dataset(_mini(), tmp_path, progress=False)
    with pytest.raises(InvalidInputError, match="n_phases must be 2 or 3"):
        simulate_dataset(_mini(), tmp_path / "x.h5", n_phases=4, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_simulation_record_lets_the_simulator_be_rerun(tmp_path):
    from generator.data.hdf5 import simulation_record
    from generator.physics.cahn_hilliard import CHParameters

    out = simulate_dataset(_mini(), tmp_path / "a.h5", n_phases=3, progress=False)
    record = simulation_record(out)
    assert record["preset"] == "tiny" and record["n_phases"] == 3
    assert CHParameters.model_validate(record["ch_parameters"]) == _mini().ch
    assert simulation_record([out, out]) == record
    foreign = tmp_path / "part_0.h5"
    with h5py.File(foreign, "w") as h5:
        h5["x"] = np.zeros((1, 4, 4, 4))
    assert simulation_record([foreign]) is None


def test_two_dimensional_presets_store_x_y_1_volumes(tmp_path):
    from generator.data import MicrostructureDataset

    preset = _mini(n_phi0=2, n_chi=1, ch={"shape": (24, 16), "dt": 0.1, "steps": 100, "n_snapshots": 2, "first_snapshot_time": 8.0})
    out = simulate_dataset(preset, tmp_path / "flat.h5", progress=False)
    assert read_root_attributes(out)["volume_shape"] == [24, 16, 1]
    data = MicrostructureDataset(out, ["phi"])
    assert len(data) == 4 and data[0][0].shape == (1, 24, 16, 1)


def test_a_sample_is_reproduced_from_its_recipe_and_log_time(tmp_path):
    """The recipe-verification contract: (phi, chi, seed, log_time) + ch_parameters re-create a snapshot."""
    from generator.data.build import field_to_grey
    from generator.data.hdf5 import simulation_record
    from generator.physics.cahn_hilliard import CHParameters, simulate

    out = simulate_dataset(_mini(), tmp_path / "a.h5", progress=False)
    ch = CHParameters.model_validate(simulation_record(out)["ch_parameters"])
    with h5py.File(out) as h5:
        sample = h5["s00003_t0002"]
        grey, attrs = sample[()][0], dict(sample.attrs)
    rerun = ch.model_copy(update={"steps": ch.steps_for_log_time(attrs["log_time"])})
    assert rerun.steps == attrs["step"]
    last = list(simulate(rerun, [attrs["phi"]], [attrs["chi"]], [attrs["seed"]]))[-1]
    np.testing.assert_array_equal(field_to_grey(last.fields[0], 2), grey)
