"""The shipped default generator: it loads, generates valid conditional volumes, and its model card matches it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from generator.checkpoint import read_bundle
from generator.descriptors import compute_batch
from generator.loading import DEFAULT_BUNDLE, load_generator

CARD = DEFAULT_BUNDLE.parent / "README.md"


@pytest.fixture(scope="module")
def default():
    return load_generator("default")


#: A small film size for fast tests; the default model generates 128x128x64 and any in-plane multiple of 32.
SMALL = (32, 32, 64)


def test_default_bundle_is_shipped_small_and_packaged():
    assert DEFAULT_BUNDLE.is_file()
    assert DEFAULT_BUNDLE.stat().st_size <= 50 * 2**20
    bundle = read_bundle(DEFAULT_BUNDLE)
    assert bundle["configs"]["training"]["name"] == "film"
    assert bundle["simulation"] is not None and bundle["simulation"]["preset"] == "film"
    ch = bundle["simulation"]["ch_parameters"]
    assert ch["z_boundary"] == "no_flux" and ch["adaptive"] is True
    assert bundle["volume_shape"] == [128, 128, 64] and bundle["training_shape"] == [64, 64, 64]
    assert {"vae", "fp", "ddpm"} <= set(bundle["training_record"]["stages"])


def test_default_generates_valid_seeded_films_of_several_sizes(default):
    assert default.volume_shape == (128, 128, 64) and default.resizable and default.in_plane_multiple == 32
    assert default.condition_names == ["ABS_f_D", "CT_f_D_tort1", "CT_f_A_tort1"]
    condition = default.descriptor_table[default.condition_names].median().to_dict()
    a = default.generate(condition, n=2, steps=10, seed=3, size=SMALL)
    b = default.generate(condition, n=2, steps=10, seed=3, size=SMALL)
    assert a.labels.shape == (2, *SMALL) and a.labels.dtype == np.uint8
    assert set(np.unique(a.labels)) <= {0, 1}
    np.testing.assert_array_equal(a.labels, b.labels)
    # both phases present and each of the two films distinct: not a collapsed sample
    assert 0.1 < a.labels.mean() < 0.9
    assert (a.labels[0] != a.labels[1]).mean() > 0.05
    wide = default.generate(condition, n=1, steps=5, seed=3, size=(64, 32, 64))
    assert wide.labels.shape == (1, 64, 32, 64)


def test_default_follows_the_requested_donor_fraction(default):
    """Films requested at a low and a high donor fraction measure (GraSPI) low and high, near what was asked."""
    table = default.descriptor_table
    names = default.condition_names
    low = table.loc[(table["ABS_f_D"] - table["ABS_f_D"].quantile(0.1)).abs().idxmin(), names].to_numpy(float)
    high = table.loc[(table["ABS_f_D"] - table["ABS_f_D"].quantile(0.9)).abs().idxmin(), names].to_numpy(float)
    result = default.generate(np.repeat(np.stack([low, high]), 2, axis=0), steps=25, seed=0, size=(64, 64, 64))
    measured = np.array([d["ABS_f_D"] for d in compute_batch(list(result.labels), n_phases=2)])
    assert measured[2:].min() > measured[:2].max()
    np.testing.assert_allclose(measured, result.conditions[:, 0], atol=0.06)


def _card_number(pattern: str) -> float:
    match = re.search(pattern, CARD.read_text())
    assert match, f"model card lacks {pattern!r}"
    return float(match.group(1))


def test_model_card_matches_the_shipped_bundle():
    from generator.model_info import read_card

    text = CARD.read_text()
    bundle = read_bundle(DEFAULT_BUNDLE)
    assert _card_number(r"Bundle size: ([\d.]+) MiB") == pytest.approx(DEFAULT_BUNDLE.stat().st_size / 2**20, abs=0.01)
    # measured on held-out physics films of the default size, trained on every film of the training set
    assert "held-out physics films of 128×128×64" in text
    assert _card_number(r"trained on (\d+) films") == len(bundle["descriptor_table"]["values"])
    # every condition has a number for each sampler row, and each row's plot is shipped
    rows = [line for line in text.splitlines() if line.startswith(("| ddpm-1000 |", "| dpm++-25 |")) and "[png]" in line]
    assert len(rows) >= 2
    for row in rows:
        r2 = [float(x) for x in re.findall(r"\| (-?[\d.]+) \[-?[\d.]+, -?[\d.]+\] \(", row)]
        assert len(r2) == len(bundle["condition_names"]) and all(v <= 1.0 for v in r2)
        png = re.search(r"\[png\]\(([^)]+)\)", row).group(1)
        assert (CARD.parent / png).is_file()
    # each target of the default model is stated with its measured value and verdict
    section = text.split("## Targets", 1)[1].split("\n## ", 1)[0]
    targets = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith(("| target", "|---"))]
    assert sum(line.startswith("| R² ") for line in targets) == len(bundle["condition_names"])
    assert any("diversity" in line for line in targets) and any("nearest training film" in line for line in targets)
    assert all(line.rstrip().endswith(("| yes |", "| no |", "| within noise |")) for line in targets)
    assert 0.5 < _card_number(r"Voxel accuracy of reconstructions \(posterior mean\): mean ([\d.]+)") <= 1.0
    for stage in ("vae", "fp", "ddpm"):
        assert re.search(rf"^\| {stage} \| \d+ \| \d+ \|", text, re.M), f"no training time for {stage}"
    # the headline that `microdesign info` prints is the card's
    head = read_card(DEFAULT_BUNDLE)["headline"]
    guidance = bundle["sampling_defaults"]["guidance"]
    fast = next(row for row in rows if row.startswith(f"| dpm++-25 | {guidance:g} |"))
    first_r2 = float(re.findall(r"\| (-?[\d.]+) \[", fast)[0])
    assert head["R² ABS_f_D"] == pytest.approx(first_r2, abs=1e-3)


@pytest.mark.slow
def test_train_without_data_simulates_and_labels_the_preset_dataset(tmp_path, monkeypatch, capsys):
    """`microdesign train --preset P` alone builds P's data.dataset into OUT/data.h5, then trains (how the default is reproduced)."""
    import sys

    from generator.training.data import open_dataset, sample_table
    from inverse.cli import main

    out = tmp_path / "run"
    steps = ["--set", "vae.max_steps=2", "--set", "fp.max_steps=2", "--set", "ddpm.max_steps=2", "--set", "ddpm.model.channel_mults=[1]"]
    monkeypatch.setattr(sys, "argv", ["microdesign", "train", "--preset", "tiny", "--set", "data.dataset=tiny", "--out", str(out), "--no-progress", *steps])
    with pytest.raises(SystemExit) as exc:
        main()
    assert (exc.value.code or 0) == 0, capsys.readouterr().err
    table = sample_table(open_dataset(out / "data.h5"))
    assert len(table) == 16 and np.isfinite(table["CT_f_D_tort1"]).all()
    assert load_generator(out / "generator.pt").volume_shape == (32, 32, 16)
    # every step's time is logged for the model card, the data's too
    stages = [json.loads(line)["stage"] for line in (out / "stage_times.jsonl").read_text().splitlines()]
    assert stages == ["data: simulate", "data: describe", "vae", "encode", "fp", "ddpm"]


def test_train_without_data_needs_a_dataset_preset(tmp_path, monkeypatch, capsys):
    import sys

    from inverse.cli import main

    config = tmp_path / "nodata.toml"
    config.write_text('name = "nodata"\n')  # no data.dataset to simulate
    monkeypatch.setattr(sys, "argv", ["microdesign", "train", "--preset", str(config), "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2 and "--data: required" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("spec_file", sorted((Path(__file__).resolve().parents[1] / "studies").glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_studies_plan_on_the_default_model(spec_file):
    """Every example study resolves against the shipped model and its search box holds feasible conditions."""
    from inverse.search import plan_study
    from inverse.spec import load_spec

    plan = plan_study(load_spec(spec_file), load_generator("default"))
    assert 0.0 < plan.feasible_fraction <= 1.0
    assert plan.feasibility_mode in ("constraint", "pca")
