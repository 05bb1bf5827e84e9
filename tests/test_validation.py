"""Every user-given number is checked at the edge: seeds, devices, finite values, memory, output folders.

The command-line cases run on the shipped default model and must fail with
one ``error:`` line and exit code 2 before any file, folder or database exists.
"""

from __future__ import annotations

import pytest

from generator import validation
from generator.errors import InvalidInputError
from tests.helpers import run_main


@pytest.mark.parametrize("seed", [-1, 2**32, 10**30, 1.5, True, "3"])
def test_bad_seeds(seed):
    with pytest.raises(InvalidInputError, match="--seed: must be a whole number"):
        validation.check_seed(seed)


def test_good_seeds():
    import numpy as np

    assert validation.check_seed(0) == 0 and validation.check_seed(2**32 - 1) == 2**32 - 1
    assert validation.check_seed(np.int64(5)) == 5


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", float("nan"), "x", None])
def test_non_finite_values(value):
    with pytest.raises(InvalidInputError, match="guidance"):
        validation.check_finite(value, "guidance")


def test_finite_ranges():
    assert validation.check_finite("2.5", "x", minimum=0) == 2.5
    with pytest.raises(InvalidInputError, match="at least 0"):
        validation.check_finite(-1, "x", minimum=0)
    with pytest.raises(InvalidInputError, match="at most 1"):
        validation.check_finite(2, "x", maximum=1)


@pytest.mark.parametrize("device", ["tpu", "gpu", "cuda:x", "cpu ", "", "cpu:0:1"])
def test_unknown_devices(device):
    if device == "cpu ":
        assert validation.check_device(device) == "cpu"  # surrounding blanks are forgiven
        return
    with pytest.raises(InvalidInputError, match="unknown device"):
        validation.check_device(device)


def test_devices_this_machine_does_not_have(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InvalidInputError, match="no CUDA GPU"):
        validation.check_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert validation.check_device("cuda:1") == "cuda:1"
    with pytest.raises(InvalidInputError, match="2 CUDA GPU"):
        validation.check_device("cuda:2")
    assert validation.check_device("cpu") == "cpu"


def test_memory_check(monkeypatch):
    monkeypatch.setattr(validation, "physical_memory", lambda: 8 * 2**30)
    validation.check_memory(7 * 2**30, "-n 7")
    with pytest.raises(InvalidInputError, match=r"-n 9: needs about 9 GiB of memory, more than this machine's 8 GiB"):
        validation.check_memory(9 * 2**30, "-n 9")


def test_output_folder(tmp_path):
    validation.check_output_folder(tmp_path / "new")
    validation.check_output_folder(tmp_path)
    (tmp_path / "sample_0007.npy").write_bytes(b"")
    with pytest.raises(InvalidInputError, match="not empty"):
        validation.check_output_folder(tmp_path)
    with pytest.raises(InvalidInputError, match="not a folder"):
        validation.check_output_folder(tmp_path / "sample_0007.npy")


@pytest.fixture(scope="module")
def default_generator():
    from generator.loading import load_generator

    return load_generator("default")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (dict(n=0), "-n: must be at least 1"),
        (dict(n=10**12), "-n 1000000000000: needs about"),
        (dict(batch_size=0), "--batch-size: must be at least 1"),
        (dict(sampler="euler"), "--sampler: unknown sampler 'euler'"),
        (dict(steps=0), "--steps: must lie in [1, "),
        (dict(steps=10**6), "--steps: must lie in [1, "),
        (dict(guidance=float("nan")), "--guidance: must be a finite number"),
        (dict(guidance=-1.0), "--guidance: must be at least 0"),
        (dict(seed=-3), "--seed: must be a whole number"),
    ],
)
def test_generator_checks_its_sampling_settings(default_generator, settings, message):
    good = dict(n=2, sampler="dpm++", steps=5, guidance=1.0, seed=0, batch_size=2)
    with pytest.raises(InvalidInputError) as info:
        default_generator.check_sampling(**{**good, **settings})
    assert str(info.value).startswith(message), str(info.value)
    default_generator.check_sampling(**good)


GOOD_CONDITION = ["-c", "ABS_f_D=0.5", "-c", "CT_f_D_tort1=0.7", "-c", "CT_f_A_tort1=0.7"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--seed", "-1"], "--seed: must be a whole number"),
        (["--seed", str(2**40)], "--seed: must be a whole number"),
        (["--device", "tpu"], "device: unknown device 'tpu'"),
        (["-n", str(10**12)], "-n 1000000000000: needs about"),
        (["--guidance", "nan"], "--guidance: must be a finite number"),
        (["--guidance", "inf"], "--guidance: must be a finite number"),
        (["--steps", "0"], "--steps: must lie in"),
        (["--sampler", "euler"], "--sampler: unknown sampler"),
        (["-c", "ABS_f_D=0.4"], "--condition ABS_f_D: given more than once"),
        (["-c", "STAT_e=nan"], "--condition STAT_e: must be a finite number"),
        (["-n", "many"], "Invalid value for '-n'"),
        (["--bogus"], "No such option: --bogus"),
    ],
)
def test_generate_rejects_bad_values_before_writing(extra, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(["generate", *GOOD_CONDITION, *extra, "--out", "gen"], monkeypatch, capsys)
    assert code == 2 and err.startswith(f"error: {message}") and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


def test_generate_refuses_a_folder_holding_an_earlier_run(tmp_path, monkeypatch, capsys):
    (tmp_path / "gen").mkdir()
    (tmp_path / "gen" / "sample_0015.npy").write_bytes(b"old")
    code, _, err = run_main(["generate", *GOOD_CONDITION, "--out", tmp_path / "gen"], monkeypatch, capsys)
    assert code == 2 and "--out:" in err and "not empty" in err and err.count("\n") == 1
    assert [p.name for p in (tmp_path / "gen").iterdir()] == ["sample_0015.npy"]


@pytest.mark.parametrize(
    ("text", "options", "message"),
    [
        ("[generation]\nsampler = \"euler\"", [], "generation.sampler: unknown sampler 'euler'"),
        ("[generation]\nsteps = 100000", [], "generation.steps: must lie in [1, "),
        ("", ["--samples", "1000000000000"], "samples_per_trial 1000000000000: needs about"),
        ("", ["--seed", "-5"], "seed: Input should be greater than or equal to 0"),
        ("[generation]\nguidance = nan", [], "generation.guidance"),
    ],
)
def test_study_run_checks_generation_settings_before_the_database(text, options, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.toml").write_text('[targets]\nABS_f_D = { at_least = 0.4, at_most = 0.6 }\n' + text)
    code, _, err = run_main(["study", "run", "s.toml", "--no-progress", *options], monkeypatch, capsys)
    assert code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.toml"]  # no runs/, no database, no trial


def test_simulate_refuses_a_grid_that_cannot_fit_in_memory(tmp_path, monkeypatch, capsys):
    code, _, err = run_main(["simulate", "--preset", "tiny", "--grid", "4000x4000x4000", "--out", tmp_path / "d.h5", "--quiet"],
                            monkeypatch, capsys)
    assert code == 2 and err.startswith("error: grid 4000x4000x4000 (batch of ") and "of memory" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_accelerators(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    validation.check_accelerator("auto", "auto")
    validation.check_accelerator("cpu", 4)
    with pytest.raises(InvalidInputError, match="trainer.accelerator: unknown accelerator 'tpu'"):
        validation.check_accelerator("tpu", 1)
    with pytest.raises(InvalidInputError, match="trainer.accelerator: gpu is not available"):
        validation.check_accelerator("gpu", 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    validation.check_accelerator("gpu", [0, 1])
    with pytest.raises(InvalidInputError, match="trainer.devices: 4 GPUs asked for, this machine has 2"):
        validation.check_accelerator("cuda", 4)


def test_train_refuses_an_accelerator_before_writing(tmp_path, monkeypatch, capsys):
    code, _, err = run_main(["train", "--preset", "tiny", "--out", tmp_path / "m", "--set", "trainer.accelerator=tpu"], monkeypatch, capsys)
    assert code == 2 and err.startswith("error: trainer.accelerator: unknown accelerator 'tpu'") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_scripts_end_a_user_error_with_one_line(capsys):
    """``exit_on_user_error`` (every benchmark's entry): a user error is one ``error:`` line and exit code 2."""
    from generator.errors import FileFormatError, exit_on_user_error

    def bad() -> None:
        raise FileFormatError("--heldout: x.h5 does not exist")

    with pytest.raises(SystemExit) as stopped:
        exit_on_user_error(bad)
    assert stopped.value.code == 2
    assert capsys.readouterr().err == "error: --heldout: x.h5 does not exist\n"
    ran = []
    exit_on_user_error(lambda: ran.append(1))
    assert ran == [1]
    with pytest.raises(RuntimeError):  # a bug is not a user error: its traceback stays
        exit_on_user_error(lambda: (_ for _ in ()).throw(RuntimeError("bug")))
