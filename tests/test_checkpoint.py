"""The generator bundle: round trip, safe loading and clear mismatch errors."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from generator.checkpoint import FORMAT_VERSION, read_bundle, save_bundle
from generator.data.dataset import MicrostructureDataset
from generator.errors import CheckpointError, FileFormatError
from generator.loading import load_bundle, load_generator
from generator.training.data import sample_table


def test_round_trip(tiny_bundle, tiny_dataset):
    bundle = read_bundle(tiny_bundle)
    assert bundle["format_version"] == FORMAT_VERSION
    gen = load_generator(tiny_bundle)
    assert gen.n_phases == 2 and gen.volume_shape == (32, 32, 16)
    assert gen.condition_names == ["ABS_f_D", "CT_f_D_tort1", "CT_f_A_tort1"]
    assert gen.attribute_names[:3] == gen.condition_names
    assert gen.recipe_names == ["phi", "chi", "log_time"]
    # the descriptor table is the training set's, sample for sample
    table = sample_table(MicrostructureDataset(tiny_dataset))
    assert len(gen.descriptor_table) == len(table)
    assert "series" in gen.descriptor_table and gen.descriptor_table["series"].dtype.kind == "i"
    for name in gen.attribute_names:
        np.testing.assert_allclose(gen.descriptor_table[name].to_numpy(), table[name].to_numpy())
    for name, (lo, hi) in gen.condition_ranges.items():
        assert (lo, hi) == (table[name].min(), table[name].max())


def test_resave_is_identical(tiny_bundle, tmp_path):
    bundle = read_bundle(tiny_bundle)
    copy = save_bundle(bundle, tmp_path / "copy.pt")
    again = read_bundle(copy)
    for net, state in bundle["state_dicts"].items():
        for key, value in state.items():
            assert torch.equal(value, again["state_dicts"][net][key])
    assert [p.name for p in tmp_path.iterdir()] == ["copy.pt"]  # no temporary file left


def _edited(tiny_bundle, tmp_path, edit) -> object:
    bundle = read_bundle(tiny_bundle)
    edit(bundle)
    return save_bundle(bundle, tmp_path / "edited.pt")


def test_shape_mismatch_names_the_key(tiny_bundle, tmp_path):
    def edit(b):
        b["state_dicts"]["unet"]["conv_in.weight"] = torch.zeros(3, 3, 3, 3, 3)
    with pytest.raises(CheckpointError, match=r"unet state dict .*shape mismatch .*conv_in\.weight \(3, 3, 3, 3, 3\)"):
        load_bundle(_edited(tiny_bundle, tmp_path, edit))


def test_missing_and_unexpected_keys(tiny_bundle, tmp_path):
    def edit(b):
        b["state_dicts"]["feature_predictor"].pop("mean")
        b["state_dicts"]["vae"]["encoder.99.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"vae state dict .*unexpected keys \['encoder\.99\.weight'\]"):
        load_bundle(_edited(tiny_bundle, tmp_path, edit))

    def edit_fp(b):
        b["state_dicts"]["feature_predictor"].pop("mean")
    with pytest.raises(CheckpointError, match=r"feature_predictor state dict .*missing keys \['mean'\]"):
        load_bundle(_edited(tiny_bundle, tmp_path, edit_fp))


def test_config_mismatch_and_versions(tiny_bundle, tmp_path):
    def wider(b):
        b["configs"]["unet"]["width"] *= 2
    with pytest.raises(CheckpointError, match="unet state dict does not match"):
        load_bundle(_edited(tiny_bundle, tmp_path, wider))

    def future(b):
        b["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(CheckpointError, match="format version"):
        load_bundle(_edited(tiny_bundle, tmp_path, future))

    def no_table(b):
        del b["descriptor_table"]
    with pytest.raises(CheckpointError, match="descriptor_table"):
        load_bundle(_edited(tiny_bundle, tmp_path, no_table))


def test_condition_statistics_must_fit_the_conditions(tiny_bundle, tmp_path):
    def short_mean(b):
        b["normalisation"]["context_mean"] = b["normalisation"]["context_mean"][:-1]
    with pytest.raises(CheckpointError, match=r"has 2 context_mean values for 3 conditions"):
        load_bundle(_edited(tiny_bundle, tmp_path, short_mean))

    def renamed(b):
        b["condition_names"] = [*b["condition_names"][:-1], "CT_f_nonsense"]
    with pytest.raises(CheckpointError, match=r"descriptor table lacks the condition\(s\) CT_f_nonsense"):
        load_bundle(_edited(tiny_bundle, tmp_path, renamed))


class _Payload:
    def __reduce__(self):
        return (print, ("code ran",))


def test_unsafe_or_foreign_files(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"format": "microdesign-generator", "x": _Payload()}, evil)
    with pytest.raises(FileFormatError, match="not a readable generator bundle"):
        load_bundle(evil)  # weights_only: the pickled object is never executed
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a bundle at all")
    with pytest.raises(FileFormatError):
        load_bundle(junk)
    plain = tmp_path / "state.pt"
    torch.save({"a": torch.zeros(1)}, plain)
    with pytest.raises(FileFormatError, match="not a microdesign generator bundle"):
        load_bundle(plain)
    with pytest.raises(FileFormatError, match="does not exist"):
        load_generator(tmp_path / "missing.pt")


def test_save_into_missing_folder(tiny_bundle, tmp_path):
    with pytest.raises(FileFormatError, match="does not exist"):
        save_bundle(read_bundle(tiny_bundle), tmp_path / "no" / "bundle.pt")
