"""``microdesign info``: a model's record as text and JSON; bad paths are one-line errors."""

from __future__ import annotations

import json

from tests.helpers import run_main


def run(args, capsys, monkeypatch):
    return run_main(args, monkeypatch, capsys)


def test_info_json_holds_the_record(tiny_bundle, capsys, monkeypatch):
    code, out, err = run(["info", str(tiny_bundle), "--json"], capsys, monkeypatch)
    assert code == 0, err
    record = json.loads(out)
    assert record["volume_shape"] == [32, 32, 16] and record["n_phases"] == 2 and record["in_plane_multiple"] == 0
    assert list(record["conditions"]) == ["ABS_f_D", "CT_f_D_tort1", "CT_f_A_tort1"]
    lo, hi = record["conditions"]["ABS_f_D"]
    assert 0 < lo < hi < 1
    assert record["attributes"][-3:] == ["phi", "chi", "log_time"]
    assert record["dataset"]["preset"] == "tiny" and record["dataset"]["ch_parameters"]["shape"] == [32, 32, 16]
    assert record["n_training_samples"] == 16 and record["n_training_series"] == 4


def test_info_text_names_sizes_ranges_and_data(tiny_bundle, capsys, monkeypatch):
    code, out, _ = run(["info", str(tiny_bundle)], capsys, monkeypatch)
    assert code == 0
    assert "films: 32x32x16 voxels, 2 phases" in out and "sizes: this size only" in out
    assert "ABS_f_D" in out and "dataset preset: tiny" in out
    assert "--preset tiny --seed" in out  # how to simulate held-out replicates


def test_info_of_a_missing_model_is_one_line(tmp_path, capsys, monkeypatch):
    code, out, err = run(["info", str(tmp_path / "nope.pt")], capsys, monkeypatch)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
