"""``microdesign train``: a run end to end and bad input."""

from __future__ import annotations

import sys

import pytest

from generator.loading import load_generator
from inverse.cli import main
from inverse.cli.train import parse_overrides


def _run(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["microdesign", "train", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    out, err = capsys.readouterr()
    return exc.value.code or 0, out, err


def test_parse_overrides():
    assert parse_overrides(["ddpm.max_steps=5", "trainer.accelerator=gpu", "vae.model.widths=[4, 8]", "fp.lr=1e-3"]) == {
        "ddpm": {"max_steps": 5},
        "trainer": {"accelerator": "gpu"},
        "vae": {"model": {"widths": [4, 8]}},
        "fp": {"lr": 1e-3},
    }


@pytest.mark.parametrize(
    "args,message",
    [
        (["--preset", "huge"], "unknown preset 'huge'"),
        (["--set", "vae.batch_size=0"], "vae.batch_size"),
        (["--set", "novalue"], "--set: expected section.key=value"),
        (["--set", "data.conditions=['nope']"], "data.conditions: attribute 'nope'"),
    ],
)
def test_bad_input(tiny_dataset, tmp_path, monkeypatch, capsys, args, message):
    code, _, err = _run(monkeypatch, capsys, "--data", str(tiny_dataset), "--out", str(tmp_path / "out"), "--preset", "tiny", *args)
    assert code == 2
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_an_impossible_film_size_is_refused_before_any_simulation(tmp_path, monkeypatch, capsys):
    code, _, err = _run(monkeypatch, capsys, "--preset", "tiny", "--out", str(tmp_path / "m"), "--no-progress",
                        "--set", "data.generate_shape=[64,32,16]", "--set", "data.calibration_series=3")
    assert code == 2 and err.startswith("error: data.generate_shape") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m" / "data.h5").exists()


def test_missing_data(tmp_path, monkeypatch, capsys):
    code, _, err = _run(monkeypatch, capsys, "--data", str(tmp_path / "none.h5"), "--out", str(tmp_path / "o"))
    assert code == 2 and "--data" in err and "does not exist" in err


def test_train_writes_a_loadable_bundle(tiny_dataset, tmp_path, monkeypatch, capsys):
    small = ["--set", "vae.max_steps=4", "--set", "fp.max_steps=4", "--set", "ddpm.max_steps=4", "--set", "ddpm.model.channel_mults=[1]"]
    code, out, err = _run(monkeypatch, capsys, "--data", str(tiny_dataset), "--out", str(tmp_path / "m"), "--preset", "tiny", "--no-progress", *small)
    assert code == 0, err
    bundle = tmp_path / "m" / "generator.pt"
    assert f"wrote {bundle}" in out
    assert load_generator(bundle).volume_shape == (32, 32, 16)



def test_every_preset_without_data_names_a_dataset_to_simulate():
    from generator.training.config import load_config

    for preset in ("tiny", "small", "paper-ch2", "paper-ch3"):  # what --help, the README and docs promise
        assert load_config(preset).data.dataset is not None, preset


def test_tiny_preset_without_data_simulates_and_labels_its_dataset(tmp_path, monkeypatch, capsys):
    import h5py

    from generator.descriptors import descriptor_names

    trained, trained_series = [], []

    def fake_train_pipeline(config, *, data, out_dir, progress, calibration, calibration_series):  # noqa: ANN001, ANN202 - training is tested above
        trained.append((config.name, data, calibration))
        trained_series.append(calibration_series)
        return out_dir / "generator.pt"

    monkeypatch.setattr("generator.training.train_pipeline", fake_train_pipeline)
    code, out, err = _run(monkeypatch, capsys, "--preset", "tiny", "--out", str(tmp_path / "m"), "--no-progress",
                          "--set", "data.calibration_series=3", "--set", "data.calibration_seed=500")
    assert code == 0, err
    data, calibration = tmp_path / "m" / "data.h5", tmp_path / "m" / "calibration.h5"
    assert trained == [("tiny", data, calibration)]
    for path in (data, calibration):
        with h5py.File(path, "r") as f:
            names = [k for k in f if isinstance(f[k], h5py.Dataset)]
            assert names and all(set(descriptor_names(2)) <= set(f[k].attrs) for k in names)
    # the calibration films: fresh series (seeds 500, 501, 502) of the same physics
    from generator.data.hdf5 import read_root_attributes
    from generator.training.data import open_dataset, sample_table

    films = sample_table(open_dataset(calibration))
    assert sorted(films["seed"].unique()) == [500, 501, 502] and read_root_attributes(calibration)["n_series"] == 3
    stages = (tmp_path / "m" / "stage_times.jsonl").read_text()
    assert '"calibration: simulate"' in stages and '"calibration: describe"' in stages
    assert trained_series == [3]

    # the same folder asked for fewer calibration series: its file is kept (nothing simulated), the first ones calibrate
    before = calibration.read_bytes()
    code, out, err = _run(monkeypatch, capsys, "--preset", "tiny", "--out", str(tmp_path / "m"), "--no-progress",
                          "--set", "data.calibration_series=2", "--set", "data.calibration_seed=500")
    assert code == 0, err
    assert calibration.read_bytes() == before and trained_series == [3, 2]
    assert "holds 3 calibration series; the first 2 (data.calibration_series) calibrate the bundle" in err
    # and more: the file grows by the new series only
    code, out, err = _run(monkeypatch, capsys, "--preset", "tiny", "--out", str(tmp_path / "m"), "--no-progress",
                          "--set", "data.calibration_series=4", "--set", "data.calibration_seed=500")
    assert code == 0, err
    grown = sample_table(open_dataset(calibration))
    assert sorted(grown["seed"].unique()) == [500, 501, 502, 503] and trained_series == [3, 2, 4]
    assert grown[grown["seed"] < 503]["ABS_f_D"].tolist() == films["ABS_f_D"].tolist()
