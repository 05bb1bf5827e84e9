"""``microdesign generate``: condition modes (random, dataset, partial) and output options (threshold, raw, GraSPI, phase levels)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from generator.io.graspi import read_graspi
from generator.levels import PhaseLevels
from generator.loading import load_generator, microgen3d_generator
from generator.models.microgen3d import KINDS, build_networks
from tests.helpers import run_main
from inverse.cli.generate import CSV_NAME, SETTINGS_NAME


def run(args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    """Run ``microdesign ARGS`` in-process; returns (exit code, stdout, stderr)."""
    return run_main(args, monkeypatch, capsys)


FAST = ["--sampler", "ddim", "--steps", "3", "--jobs", "1", "--no-vti"]


def test_partial_condition_is_completed_from_the_training_data(tiny_bundle: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    gen = load_generator(tiny_bundle)
    table = gen.descriptor_table
    value = float(table["ABS_f_D"].median())
    out = tmp_path / "partial"
    code, _, stderr = run(["generate", "--model", str(tiny_bundle), "--condition", f"ABS_f_D={value!r}", "-n", "6",
                           "--out", str(out), *FAST], capsys, monkeypatch)
    assert code == 0, stderr
    csv = pd.read_csv(out / CSV_NAME)
    assert (csv["requested_ABS_f_D"] == value).all()
    assert set(csv["completed"]) == {"CT_f_D_tort1;CT_f_A_tort1"}
    # empirical completion: each completed pair is a training row's pair
    rows = {tuple(r) for r in table[["CT_f_D_tort1", "CT_f_A_tort1"]].to_numpy().round(10)}
    assert all(tuple(r) in rows for r in csv[["requested_CT_f_D_tort1", "requested_CT_f_A_tort1"]].to_numpy().round(10))
    settings = json.loads((out / SETTINGS_NAME).read_text())
    assert settings["completed"] == ["CT_f_D_tort1", "CT_f_A_tort1"] and settings["mode"] == "constant"


def test_condition_ranges_draw_per_sample(tiny_bundle: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    gen = load_generator(tiny_bundle)
    (lo, hi), = [gen.condition_ranges["ABS_f_D"]]
    mid = 0.5 * (lo + hi)
    out = tmp_path / "ranges"
    code, _, stderr = run(["generate", "--model", str(tiny_bundle), "--condition-range", f"ABS_f_D={lo!r}:{mid!r}",
                           "--complete", "gaussian", "-n", "5", "--seed", "2", "--out", str(out), *FAST], capsys, monkeypatch)
    assert code == 0, stderr
    csv = pd.read_csv(out / CSV_NAME)
    requested = csv["requested_ABS_f_D"].to_numpy()
    assert np.all((requested >= lo) & (requested <= mid)) and len(set(requested)) == 5
    assert json.loads((out / SETTINGS_NAME).read_text())["mode"] == "random"


def test_dataset_mode_conditions_on_the_fp_output_and_writes_reconstructions(
    tiny_bundle: Path, tiny_dataset: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    out = tmp_path / "from_data"
    code, _, stderr = run(["generate", "--model", str(tiny_bundle), "--from-dataset", str(tiny_dataset), "-n", "3",
                           "--allow-extrapolation", "--out", str(out), *FAST], capsys, monkeypatch)
    assert code == 0, stderr
    csv = pd.read_csv(out / CSV_NAME)
    assert len(csv) == 3 and csv["source"].str.startswith(f"{tiny_dataset.name}:").all()
    gen = load_generator(tiny_bundle)
    with h5py.File(tiny_dataset) as h5:
        name = csv["source"].iloc[0].split(":", 1)[1]
        grey = h5[name][...][0]
    matrix, latents = gen.conditions_of(grey[None])
    np.testing.assert_allclose(csv[[f"requested_{c}" for c in gen.condition_names]].to_numpy()[0], matrix[0], rtol=1e-5)
    recon = np.load(out / "reconstruction_0000.npy")
    np.testing.assert_array_equal(recon, gen.decode(latents)[0])
    assert np.mean(recon == (grey > 0.5)) > 0.6  # a reconstruction, not noise
    code, _, stderr = run(["generate", "--model", str(tiny_bundle), "--from-dataset", str(tiny_dataset), "--condition", "ABS_f_D=0.5",
                           "--out", str(tmp_path / "x"), *FAST], capsys, monkeypatch)
    assert code == 2 and "--from-dataset" in stderr and stderr.count("\n") == 1


def test_threshold_raw_and_graspi_outputs(tiny_bundle: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    gen = load_generator(tiny_bundle)
    condition = [a for name, (lo, hi) in gen.condition_ranges.items() for a in ("-c", f"{name}={0.5 * (lo + hi)!r}")]
    base = ["generate", "--model", str(tiny_bundle), *condition, "-n", "2", "--seed", "4", *FAST]
    code, _, stderr = run([*base, "--raw", "--graspi", "--out", str(tmp_path / "a")], capsys, monkeypatch)
    assert code == 0, stderr
    grey = np.load(tmp_path / "a" / "sample_0000_grey.npy")
    labels = np.load(tmp_path / "a" / "sample_0000.npy")
    assert grey.dtype == np.float32 and grey.shape == labels.shape
    np.testing.assert_array_equal(labels, (grey > 0.5).astype(np.uint8))
    np.testing.assert_array_equal(read_graspi(tmp_path / "a" / "sample_0000.txt"), labels)
    code, _, stderr = run([*base, "--threshold", "0.8", "--out", str(tmp_path / "b")], capsys, monkeypatch)
    assert code == 0, stderr
    high = np.load(tmp_path / "b" / "sample_0000.npy")
    np.testing.assert_array_equal(high, (grey > 0.8).astype(np.uint8))  # same seed, same grey field
    assert high.sum() < labels.sum()
    for extra, word in ((["--threshold", "1.5"], "--threshold"), (["--phase-levels", "0,0.5,1"], "--phase-levels"),
                        (["--condition-range", "ABS_f_D=0.5"], "NAME=LO:HI")):
        code, _, stderr = run([*base, *extra, "--out", str(tmp_path / "c")], capsys, monkeypatch)
        assert code == 2 and word in stderr and stderr.count("\n") == 1, stderr
    assert not (tmp_path / "c").exists()


def test_microgen3d_partial_conditions_need_a_table(tmp_path: Path, capsys, monkeypatch) -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "models" / "test_microgen3d.py"
    spec = importlib.util.spec_from_file_location("_microgen3d_test_helpers", path)
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    folder = helpers.write_weights(tmp_path / "w", json.loads(helpers.SHAPES.read_text())["experimental"], fill="view")
    code, _, stderr = run(["generate", "--model", str(folder), "--kind", "experimental", "--condition", "ABS_f_D=0.5",
                           "--out", str(tmp_path / "o")], capsys, monkeypatch)
    assert code == 2 and "--table" in stderr and stderr.count("\n") == 1


def test_three_phase_microgen3d_phase_levels_and_raw_grey() -> None:
    """The CH 3-phase decoder's grey field is cut at the nearest of the given levels."""
    torch.manual_seed(0)
    kind = KINDS["CH_3phase"]
    vae, fp, ddpm = build_networks(kind, vae_widths=(2, 2, 2, 2), n_feat=8)
    gen = microgen3d_generator(kind, vae, fp, ddpm)
    condition = {"vol_frac_D": 0.45, "vol_frac_M": 0.2, "tortuosity_A": 0.8, "tortuosity_D": 0.7}
    default = gen.generate(condition, 1, sampler="ddim", steps=1, raw=True)
    grey = default.grey[0]
    assert grey.shape == kind.volume_shape and default.grey.dtype == np.float32
    from generator.physics.labels import grey_to_labels

    np.testing.assert_array_equal(default.labels[0], grey_to_labels(grey, 3))
    cut = float(np.quantile(grey, 0.5))
    levels = PhaseLevels(0.0, cut, 1.0)
    other = gen.generate(condition, 1, sampler="ddim", steps=1, phase_levels=levels)
    expected = np.argmin(np.abs(grey[..., None] - np.array([0.0, 1.0, cut], dtype=np.float32)), axis=-1)
    np.testing.assert_array_equal(other.labels[0], expected)
    with pytest.raises(ValueError, match="--threshold"):
        gen.generate(condition, 1, sampler="ddim", steps=1, threshold=0.5)
    matrix, latents = gen.conditions_of(grey[None])
    assert matrix.shape == (1, 4) and tuple(latents.shape[1:]) == kind.latent_shape
