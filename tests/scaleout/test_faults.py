"""Faults across the toolkit, through the ``microdesign`` command line.

* bad files (corrupt bundle, corrupt or truncated HDF5, truncated ``.vti``,
  corrupt training checkpoint, unreachable storage): one-line ``error: ...``,
  exit code 2, nothing written;
* a full disk (a 16 KiB tmpfs; and an 8 KiB file-size limit, RLIMIT_FSIZE,
  which needs no privileges): a clean error and no half-written file;
* NaN in the generator's decoder: the trial fails with the reason, the study goes on.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import optuna
import pytest
import torch

from generator.checkpoint import read_bundle
from generator.io import write_volume
from tests.helpers import run_main
from tests.scaleout.conftest import cli_command, cli_env, free_port

STUDY = """
search_sampler = "random"
n_trials = 3
samples_per_trial = 2
[targets]
ABS_f_D = {{ at_least = 0.3, at_most = 0.7 }}
[generation]
steps = 3
"""


def one_line_error(code: int, err: str, fragment: str) -> None:
    """Exit code 2 and, after any progress bars, one line ``error: ...`` holding ``fragment`` (no traceback)."""
    assert code == 2, err
    last = err.rstrip("\n").replace("\r", "\n").splitlines()[-1]
    assert last.startswith("error: ") and "Traceback" not in err, err
    assert fragment in last, err


def flip_data_byte(path: Path) -> None:
    """Invert one byte in the middle of the largest stored tensor of a torch zip file (its data, not a header),
    so the damage is a CRC mismatch wherever the file layout puts the tensors."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        info = max(archive.infolist(), key=lambda i: i.compress_size)
    data = bytearray(path.read_bytes())
    name_len, extra_len = int.from_bytes(data[info.header_offset + 26: info.header_offset + 28], "little"), \
        int.from_bytes(data[info.header_offset + 28: info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len
    data[start + info.compress_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path, keep: float = 0.5) -> None:
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])


# ----------------------------------------------------------------------------- bad files

@pytest.fixture()
def bad_files(tiny_bundle: Path, tiny_dataset: Path, tmp_path: Path) -> dict[str, Path]:
    """One damaged copy of each kind of input file."""
    files = {}
    for name, damage in (("truncated", truncate), ("flipped", flip_data_byte)):
        files[f"bundle_{name}"] = tmp_path / f"bundle_{name}.pt"
        shutil.copyfile(tiny_bundle, files[f"bundle_{name}"])
        damage(files[f"bundle_{name}"])
    files["h5_truncated"] = tmp_path / "truncated.h5"
    shutil.copyfile(tiny_dataset, files["h5_truncated"])
    truncate(files["h5_truncated"], 0.4)
    files["h5_garbage"] = tmp_path / "garbage.h5"
    files["h5_garbage"].write_bytes(np.random.default_rng(0).bytes(4096))
    files["vti_truncated"] = write_volume(tmp_path / "v.vti", np.random.default_rng(1).integers(0, 2, (16, 16, 8)).astype(np.uint8))
    truncate(files["vti_truncated"], 0.7)
    files["spec"] = tmp_path / "study.toml"
    files["spec"].write_text(STUDY.format())
    return files


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["generate", "-c", "ABS_f_D=0.5", "-c", "CT_f_D_tort1=0.9", "-c", "CT_f_A_tort1=0.9", "-n", "1", "--steps", "2", "--out", "{out}", "--model", "{bundle_truncated}"],
         "not a readable generator bundle"),
        (["generate", "-c", "ABS_f_D=0.5", "-c", "CT_f_D_tort1=0.9", "-c", "CT_f_A_tort1=0.9", "-n", "1", "--steps", "2", "--out", "{out}", "--model", "{bundle_flipped}"],
         "is corrupt (bad CRC"),
        (["study", "run", "{spec}", "--model", "{bundle_flipped}", "--storage", "sqlite:///{out}/s.db", "--no-progress"], "is corrupt (bad CRC"),
        (["study", "run", "{spec}", "--model", "{tiny_bundle}", "--storage", "postgresql://nobody@127.0.0.1:{port}/none", "--no-progress"],
         "storage: cannot open"),
        (["describe", "{h5_truncated}"], "truncated.h5"),
        (["describe", "{h5_garbage}"], "is not an HDF5 file"),
        (["train", "--data", "{h5_truncated}", "--out", "{out}", "--preset", "tiny", "--no-progress"], "truncated.h5"),
        (["train", "--data", "{h5_garbage}", "--out", "{out}", "--preset", "tiny", "--no-progress"], "garbage.h5"),
        (["describe", "{vti_truncated}"], "v.vti"),
    ],
    ids=["generate-truncated-bundle", "generate-flipped-bundle", "study-flipped-bundle", "study-unreachable-storage",
         "describe-truncated-h5", "describe-garbage-h5", "train-truncated-h5", "train-garbage-h5", "describe-truncated-vti"],
)
def test_bad_files_get_a_one_line_error_and_nothing_is_written(args, fragment, bad_files, tiny_bundle, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    names = {**{k: str(v) for k, v in bad_files.items()}, "out": str(out), "tiny_bundle": str(tiny_bundle), "port": str(free_port())}
    monkeypatch.chdir(tmp_path)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    code, _, err = run_main([a.format(**names) for a in args], monkeypatch, capsys)
    one_line_error(code, err, fragment)
    after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    assert after == before  # nothing new, nothing touched (the damaged inputs included)


# ----------------------------------------------------------------------------- full disk

@contextlib.contextmanager
def tiny_tmpfs(folder: Path, size: str = "16k") -> Iterator[Path]:
    """Mount a ``size`` tmpfs on ``folder`` (skips the test where mounting is not permitted)."""
    folder.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def _limit_file_size(limit: int) -> None:  # runs in the child before exec
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def readable(path: Path) -> bool:
    """Whether a file the toolkit wrote opens completely."""
    from generator.io import read_volume

    if path.suffix == ".h5":
        with h5py.File(path, "r") as f:
            return all(np.isfinite(f[k][...]).all() for k in f)
    if path.suffix in (".npy", ".npz", ".vti", ".tif"):
        return read_volume(path).size > 0
    if path.suffix in (".pt", ".ckpt"):
        torch.load(path, map_location="cpu", weights_only=False)
        return True
    if path.suffix == ".csv":
        import pandas as pd

        return len(pd.read_csv(path).columns) > 0
    return True


GENERATE = ["generate", "-c", "ABS_f_D=0.5", "-c", "CT_f_D_tort1=0.9", "-c", "CT_f_A_tort1=0.9", "-n", "12", "--steps", "2", "--model", "{bundle}", "--out", "{disk}/gen"]
SIMULATE = ["simulate", "--preset", "tiny", "--grid", "24x24x12", "--steps", "40", "--out", "{disk}/data.h5", "--quiet"]


# numpy reports a short write without an errno ("16384 requested and 8064 written")
@pytest.mark.parametrize(("args", "fragment"), [(SIMULATE, "no space left on device"), (GENERATE, "written")], ids=["simulate", "generate"])
def test_full_tmpfs_gives_a_clean_error_and_no_half_written_file(args, fragment, tiny_bundle, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with tiny_tmpfs(tmp_path / "disk", size="16k") as disk:
        code, _, err = run_main([a.format(disk=disk, bundle=tiny_bundle) for a in args], monkeypatch, capsys)
        one_line_error(code, err, fragment)
        left = [p for p in disk.rglob("*") if p.is_file()]
        assert not [p for p in left if p.name.startswith(".")], left  # no temporary file stays behind
        assert all(readable(p) for p in left)


@pytest.mark.parametrize(("args", "fragment"), [(SIMULATE, "File too large"), (GENERATE, "written")], ids=["simulate", "generate"])
def test_file_size_limit_gives_a_clean_error_and_no_half_written_file(args, fragment, tiny_bundle, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    result = subprocess.run(cli_command(*[a.format(disk=disk, bundle=tiny_bundle) for a in args]), cwd=tmp_path, env=cli_env(),
                            capture_output=True, text=True, timeout=300, preexec_fn=lambda: _limit_file_size(8 * 1024))
    one_line_error(result.returncode, result.stderr, fragment)
    left = [p for p in disk.rglob("*") if p.is_file()]
    assert not [p for p in left if p.name.startswith(".")], left
    assert all(readable(p) for p in left)


# ----------------------------------------------------------------------------- NaN in the generator

@pytest.fixture()
def nan_decoder_bundle(tiny_bundle: Path, tmp_path: Path) -> Path:
    """The tiny bundle with NaN in the last weight of its VAE decoder (finite latents, NaN logits)."""
    bundle = read_bundle(tiny_bundle)
    vae = bundle["state_dicts"]["vae"]
    last = [k for k in vae if k.startswith("decoder") and k.endswith("weight")][-1]
    vae[last] = torch.full_like(vae[last], float("nan"))
    path = tmp_path / "nan.pt"
    torch.save(bundle, path)  # save_bundle refuses non-finite weights: this stands for a damaged or foreign file
    return path


def test_nan_decoder_output_fails_the_trial_with_the_reason_and_the_study_goes_on(nan_decoder_bundle, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nan.toml").write_text(STUDY.format())
    url = f"sqlite:///{tmp_path}/nan.db"
    code, out, err = run_main(["study", "run", "nan.toml", "--model", nan_decoder_bundle, "--storage", url, "--no-progress"], monkeypatch, capsys)
    assert code == 0, err
    trials = optuna.load_study(study_name="nan", storage=url).trials
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(trials) == 3 and failed, [t.user_attrs.get("status") for t in trials]  # all three ran, despite failures
    for trial in failed:
        assert trial.user_attrs["status"] == "failed"
        assert "VAE decoder" in trial.user_attrs["failure"] and "non-finite" in trial.user_attrs["failure"]
    assert not [t for t in trials if t.user_attrs.get("status") == "measured"]  # no garbage volume was scored
    # the same model through `generate`: a one-line error, no volume written
    code, _, err = run_main(["generate", "-c", "ABS_f_D=0.5", "-c", "CT_f_D_tort1=0.9", "-c", "CT_f_A_tort1=0.9", "-n", "1",
                             "--steps", "2", "--model", nan_decoder_bundle, "--out", tmp_path / "gen"], monkeypatch, capsys)
    one_line_error(code, err, "non-finite")
    assert not any((tmp_path / "gen").glob("*")) if (tmp_path / "gen").exists() else True


def test_inf_recipe_fails_one_trial_and_the_next_trials_are_measured(tiny_bundle, tmp_path, monkeypatch, capsys):
    """The feature predictor returns +inf for the first generation only: that trial fails with the reason, the rest complete."""
    from generator.pipeline import Generator

    real_generate = Generator.generate
    calls = []

    def first_call_inf(self, *args, **kwargs):
        result = real_generate(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            result.predicted["chi"] = np.full_like(np.asarray(result.predicted["chi"], dtype=float), np.inf)
        return result

    monkeypatch.setattr(Generator, "generate", first_call_inf)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "inf.toml").write_text(STUDY.format().replace("n_trials = 3", "n_trials = 4"))
    url = f"sqlite:///{tmp_path}/inf.db"
    code, _, err = run_main(["study", "run", "inf.toml", "--model", tiny_bundle, "--storage", url, "--no-progress"], monkeypatch, capsys)
    assert code == 0, err
    trials = optuna.load_study(study_name="inf", storage=url).trials
    generated = [t for t in trials if t.user_attrs.get("status") in ("measured", "failed")]
    first = generated[0]
    assert first.state == optuna.trial.TrialState.FAIL and "feature predictor returned non-finite chi" in first.user_attrs["failure"]
    later = generated[1:]
    assert later and all(t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs["status"] == "measured" for t in later)
    assert all(np.isfinite(t.user_attrs["recipe_mean"]["chi"]) for t in later)
