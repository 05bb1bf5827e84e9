"""Fine-tuning MicroGen3D's networks (``microdesign train --init-from``): the result loads, the stages learn, bad input is refused.

The published networks are far too large for CPU tests, so the weights to start
from are narrow replicas (same classes, same key layout, VAE widths 2-2-4-4 and
DDPM ``n_feat`` 8) written by :func:`save_networks`, whose ``microgen3d.json``
records those sizes. The data are four 64^3 two-phase volumes (the
``experimental`` kind's shape) in MicroGen3D's file layout, labelled with our
GraSPI descriptors. Error cases with published shapes use expanded-view
tensors (bytes on disk), as ``tests/models/test_microgen3d.py`` does.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from scipy.ndimage import gaussian_filter

from generator.descriptors import compute
from generator.errors import CheckpointError, InvalidInputError
from generator.loading import load_generator
from generator.models.microgen3d import FILES, KINDS, build_networks, load_folder, read_metadata, save_networks
from generator.training.finetune import finetune_microgen3d, parse_stages
from inverse.verify import read_model_record
from tests.helpers import run_main

KIND = "experimental"
NARROW = {"vae_widths": (2, 2, 4, 4), "n_feat": 8}
CONTEXT = list(KINDS[KIND].context_attributes)
FEW_STEPS = {stage: {"max_steps": 3, "batch_size": 2, "val_every": 3, "checkpoint_every": 3} for stage in ("vae", "fp", "ddpm")}


def _microgen3d_test_helpers():
    path = Path(__file__).resolve().parents[1] / "models" / "test_microgen3d.py"
    spec = importlib.util.spec_from_file_location("_microgen3d_test_helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_microgen3d_h5(path: Path, volumes: np.ndarray, attrs: list[dict[str, float]]) -> Path:
    """MicroGen3D's layout: one ``(1, X, Y, Z)`` float dataset per sample at the root, attributes by name."""
    with h5py.File(path, "w") as h5:
        for i, (volume, values) in enumerate(zip(volumes, attrs)):
            dset = h5.create_dataset(f"img_{i:04d}", data=volume[None].astype(np.float32))
            for name, value in values.items():
                dset.attrs[name] = value
    return path


@pytest.fixture(scope="module")
def film_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four 64^3 two-phase films (smoothed noise cut at donor fractions 0.35 .. 0.65) with their GraSPI descriptors."""
    rng = np.random.default_rng(0)
    volumes, attrs = [], []
    for fraction in (0.35, 0.45, 0.55, 0.65):
        field = gaussian_filter(rng.normal(size=(64, 64, 64)), 3, mode="wrap")
        labels = (field > np.quantile(field, fraction)).astype(np.uint8)  # 1 acceptor above the cut
        values = compute(labels)
        volumes.append(labels)
        attrs.append({name: values[name] for name in (*CONTEXT, "ABS_wf_D", "CT_f_e_conn")})
    return write_microgen3d_h5(tmp_path_factory.mktemp("films") / "films.h5", np.stack(volumes), attrs)


@pytest.fixture(scope="module")
def narrow_init(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random narrow replicas of the experimental networks in the published key layout, with their sizes recorded."""
    torch.manual_seed(0)
    vae, fp, ddpm = build_networks(KIND, **NARROW)
    return save_networks(tmp_path_factory.mktemp("init") / "weights", KIND, vae, fp, ddpm, metadata={"name": "random narrow replica"})


@pytest.fixture(scope="module")
def view_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Published-shape files of the experimental and CH 2-phase kinds as expanded views."""
    helpers = _microgen3d_test_helpers()
    table = json.loads(helpers.SHAPES.read_text())
    root = tmp_path_factory.mktemp("views")
    return {kind: helpers.write_weights(root / kind, table[kind], fill="view") for kind in ("experimental", "CH_2phase")}


def _states(folder: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {net: torch.load(folder / name, weights_only=True) for net, name in FILES.items()}


def _changed(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return any(not torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- the result

def test_all_stages_write_a_published_layout_folder_that_load_generator_loads(film_data, narrow_init, tmp_path, one_thread):
    out = finetune_microgen3d(narrow_init, data=film_data, out_dir=tmp_path / "ft", stages="vae,fp,ddpm",
                              overrides={**FEW_STEPS, "data": {"val_fraction": 0.25}}, progress=False)
    before, after = _states(narrow_init), _states(out)
    for net in FILES:
        # the published key layout: same keys, same order, same shapes; every stage changed its network
        assert [(k, v.shape) for k, v in after[net].items()] == [(k, v.shape) for k, v in before[net].items()], net
        assert _changed(before[net], after[net]), f"{net} was not trained"
    for name in ("alpha_t", "alphabar_t"):  # the schedule is the file's, not trained
        torch.testing.assert_close(after["ddpm"][name], before["ddpm"][name])
    meta = read_metadata(out)
    assert meta["kind"] == KIND and meta["stages"] == ["vae", "fp", "ddpm"] and meta["n_feat"] == 8 and meta["vae_widths"] == [2, 2, 4, 4]
    assert meta["fp_attributes_trained"] == CONTEXT and meta["ddpm_context"] == "fp" and meta["n_samples"] == 4
    assert (out / "logs" / "ddpm" / "metrics.csv").is_file()

    gen = load_generator(out)  # no kind needed
    data = pd.read_csv(out / "descriptors.csv")
    assert gen.condition_names == CONTEXT and gen.descriptor_table is not None and len(gen.descriptor_table) == 4
    assert gen.condition_ranges["ABS_f_D"] == pytest.approx((data["ABS_f_D"].min(), data["ABS_f_D"].max()))
    torch.testing.assert_close(gen.feature_predictor.fc3.weight, after["fp"]["fc3.weight"])
    condition = {name: float(data[name].median()) for name in CONTEXT}
    result = gen.generate(condition, 1, sampler="ddim", steps=2, seed=0)
    assert result.labels.shape == (1, 64, 64, 64) and set(np.unique(result.labels)) <= {0, 1}
    with pytest.raises(InvalidInputError, match="outside the training range"):
        gen.generate({**condition, "ABS_f_D": float(data["ABS_f_D"].max()) + 0.1}, 1, sampler="ddim", steps=1)
    record = read_model_record(out)  # what `verify` reads
    assert record.volume_shape == (64, 64, 64) and len(record.descriptor_table) == 4 and record.simulation is None

    # the same folder refuses another run; a fine-tuned folder can be fine-tuned again, and its kind is its own
    with pytest.raises(InvalidInputError, match="another config"):
        finetune_microgen3d(narrow_init, data=film_data, out_dir=out, stages="fp", overrides=FEW_STEPS, progress=False)
    with pytest.raises(InvalidInputError, match="holds a fine-tuned experimental model"):
        load_folder(out, kind="CH_2phase")


def test_fp_stage_lowers_the_feature_predictor_error_and_keeps_the_other_networks(film_data, narrow_init, tmp_path, one_thread):
    from generator.data.dataset import MicrostructureDataset

    dataset = MicrostructureDataset(film_data, CONTEXT)
    grey = torch.stack([dataset[i][0] for i in range(len(dataset))])
    targets = torch.as_tensor(dataset.values, dtype=torch.float32)

    def fp_error(folder: Path) -> float:
        _, vae, fp, _ = load_folder(folder, kind=None)
        with torch.inference_mode():
            return float((fp(vae.encode(grey))[:, :3] - targets).pow(2).mean())

    fp_steps = {"max_steps": 60, "batch_size": 4, "lr": 3e-3, "val_every": 60, "checkpoint_every": 60}
    out = finetune_microgen3d(narrow_init, data=film_data, out_dir=tmp_path / "fp", stages=["fp"],
                              overrides={"fp": fp_steps, "data": {"val_fraction": 0.0}}, progress=False)
    error = fp_error(out)
    assert error < 0.2 * fp_error(narrow_init)
    # and better than predicting the data's mean: it tells the volumes apart
    assert error < 0.75 * float(targets.var(dim=0, unbiased=False).mean())
    before, after = _states(narrow_init), _states(out)
    assert not _changed(before["vae"], after["vae"]) and not _changed(before["ddpm"], after["ddpm"])
    assert _changed(before["fp"], after["fp"])
    assert read_metadata(out)["stages"] == ["fp"]


def test_vae_loss_is_the_published_mse_plus_weighted_summed_kl(one_thread):
    torch.manual_seed(0)
    vae, _, _ = build_networks(KIND, **NARROW)
    grey = (torch.rand(2, 1, 64, 64, 64) > 0.5).float()
    vae.kl_weight = 0.01
    torch.manual_seed(1)
    out = vae.loss(grey)
    mu, logvar = vae.encoder(grey)
    torch.manual_seed(1)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    rec = ((vae.decode(z) - grey) ** 2).mean()
    kl = torch.stack([0.5 * (m.pow(2) + lv.exp() - 1 - lv).sum() for m, lv in zip(mu, logvar)]).mean()
    torch.testing.assert_close(out["reconstruction"], rec)
    torch.testing.assert_close(out["kl"], kl)
    torch.testing.assert_close(out["loss"], rec + 0.01 * kl)
    assert float(out["kl"]) > 0 and 0.0 <= float(out["accuracy"]) <= 1.0


def test_parse_stages():
    assert parse_stages("ddpm, vae") == ("vae", "ddpm")
    with pytest.raises(InvalidInputError, match="--stages"):
        parse_stages("vae,unet")
    with pytest.raises(InvalidInputError, match="--stages"):
        parse_stages("")


# ----------------------------------------------------------------------------- the command line

def test_cli_fine_tunes_and_generate_uses_the_folder(film_data, narrow_init, tmp_path, monkeypatch, capsys, one_thread):
    out = tmp_path / "cli"
    code, stdout, stderr = run_main(["train", "--init-from", narrow_init, "--data", film_data, "--out", out, "--stages", "ddpm",
                                     "--set", "ddpm.max_steps=2", "--set", "ddpm.batch_size=2", "--set", "ddpm.context=labels",
                                     "--no-progress"], monkeypatch, capsys)
    assert code == 0, stderr
    assert f"wrote {out}" in stdout and "fine-tuned: ddpm" in stdout and "note:" not in stdout
    assert read_metadata(out)["ddpm_context"] == "labels"
    # a partial condition: the others are completed from the fine-tuning data (descriptors.csv)
    code, _, stderr = run_main(["generate", "--model", out, "--condition", "ABS_f_D=0.5", "-n", "1", "--sampler", "ddim",
                                "--steps", "1", "--seed", "0", "--out", tmp_path / "gen", "--jobs", "1", "--no-vti"], monkeypatch, capsys)
    assert code == 0, stderr
    assert np.load(tmp_path / "gen" / "sample_0000.npy").shape == (64, 64, 64)
    table = pd.read_csv(tmp_path / "gen" / "samples.csv")
    data = pd.read_csv(out / "descriptors.csv")
    assert table["requested_CT_f_A_tort1"].iloc[0] in set(data["CT_f_A_tort1"])


def test_cli_fp_stage_on_partly_labelled_data_notes_the_outputs_it_left(film_data, narrow_init, tmp_path, monkeypatch, capsys, one_thread):
    with h5py.File(film_data) as h5:
        names = sorted(h5)
        volumes = np.stack([h5[name][0] for name in names])
        attrs = [{"ABS_f_D": float(h5[name].attrs["ABS_f_D"])} for name in names]
    data = write_microgen3d_h5(tmp_path / "abs_only.h5", volumes, attrs)
    out = tmp_path / "fp"
    code, stdout, stderr = run_main(["train", "--init-from", narrow_init, "--data", data, "--out", out, "--stages", "fp",
                                     "--set", "fp.max_steps=2", "--set", "fp.batch_size=2", "--no-progress"], monkeypatch, capsys)
    assert code == 0, stderr
    assert "note: the data has no CT_f_D_tort1, CT_f_A_tort1" in stdout
    assert read_metadata(out)["fp_attributes_trained"] == ["ABS_f_D"]
    gen = load_generator(out)
    lo, hi = min(a["ABS_f_D"] for a in attrs), max(a["ABS_f_D"] for a in attrs)
    assert gen.condition_ranges == {"ABS_f_D": pytest.approx((lo, hi)), "CT_f_D_tort1": (0.0, 1.0), "CT_f_A_tort1": (0.0, 1.0)}
    # the DDPM can learn from these labels only where the data has every condition
    with pytest.raises(InvalidInputError, match="ddpm.context = 'labels' needs CT_f_D_tort1, CT_f_A_tort1"):
        finetune_microgen3d(narrow_init, data=data, out_dir=tmp_path / "labels", stages="ddpm",
                            overrides={"ddpm": {"context": "labels"}}, progress=False)
    assert not (tmp_path / "labels").exists()


@pytest.fixture(scope="module")
def cube32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 32^3 two-phase volumes: a shape no published kind takes."""
    volumes = (np.random.default_rng(1).random((2, 32, 32, 32)) > 0.5).astype(np.uint8)
    return write_microgen3d_h5(tmp_path_factory.mktemp("cube32") / "cube32.h5", volumes, [{"ABS_f_D": 0.5}] * 2)


def _renamed_key(view: Path, tmp: Path) -> Path:
    folder = tmp / "renamed"
    folder.mkdir()
    for name in FILES.values():
        (folder / name).write_bytes((view / name).read_bytes())
    state = torch.load(folder / "fp.pt", weights_only=True)
    state["fc4.weight"] = state.pop("fc3.weight")
    torch.save(state, folder / "fp.pt")
    return folder


def _only_vae(view: Path, tmp: Path) -> Path:
    folder = tmp / "partial"
    folder.mkdir()
    (folder / "vae.pt").write_bytes((view / "vae.pt").read_bytes())
    return folder


@pytest.mark.parametrize(
    "case,message",
    [
        ("wrong kind", r"vae\.pt does not match MicroGen3D kind CH_2phase: .*the files match kind experimental"),
        ("no kind", "needs --kind"),
        ("missing files", r"lacks fp\.pt, ddpm\.pt"),
        ("renamed key", r"fp\.pt does not match MicroGen3D kind experimental: missing key fc3\.weight; unexpected key fc4\.weight"),
        ("volume shape", r"holds volumes of 32x32x32, but MicroGen3D kind experimental takes 64x64x64"),
        ("kind of a fine-tuned folder", "holds a fine-tuned experimental model"),
        ("bad stages", "--stages"),
        ("no data", "--data: required with --init-from"),
        ("a preset", "--preset: with --init-from"),
        ("kind alone", "--kind: only applies with --init-from"),
        ("out is init", "is the --init-from folder"),
        ("out holds weights", r"already holds vae\.pt, fp\.pt, ddpm\.pt that no fine-tuning run wrote"),
        ("not a folder", "--init-from"),
        ("bad setting", "config fp.lr"),
    ],
)
def test_cli_bad_input_is_one_error_line(case, message, view_folders, narrow_init, film_data, cube32, tmp_path, monkeypatch, capsys):
    view = view_folders["experimental"]
    out = tmp_path / "out"
    base = ["train", "--data", film_data, "--out", out, "--no-progress"]
    args = {
        "wrong kind": lambda: [*base, "--init-from", view, "--kind", "CH_2phase"],
        "no kind": lambda: [*base, "--init-from", view],
        "missing files": lambda: [*base, "--init-from", _only_vae(view, tmp_path), "--kind", "experimental"],
        "renamed key": lambda: [*base, "--init-from", _renamed_key(view, tmp_path), "--kind", "experimental"],
        "volume shape": lambda: ["train", "--data", cube32, "--out", out, "--init-from", view, "--kind", "experimental"],
        "kind of a fine-tuned folder": lambda: [*base, "--init-from", narrow_init, "--kind", "CH_2phase"],
        "bad stages": lambda: [*base, "--init-from", narrow_init, "--stages", "vae,unet"],
        "no data": lambda: ["train", "--out", out, "--init-from", narrow_init],
        "a preset": lambda: [*base, "--init-from", narrow_init, "--preset", "tiny"],
        "kind alone": lambda: [*base, "--kind", "experimental"],
        "out is init": lambda: ["train", "--data", film_data, "--out", narrow_init, "--init-from", narrow_init],
        "out holds weights": lambda: ["train", "--data", film_data, "--out", narrow_init, "--init-from", shutil.copytree(narrow_init, tmp_path / "copy")],
        "not a folder": lambda: [*base, "--init-from", tmp_path / "nowhere"],
        "bad setting": lambda: [*base, "--init-from", narrow_init, "--set", "fp.lr=-1"],
    }[case]()
    code, _, stderr = run_main(args, monkeypatch, capsys)
    assert code == 2, stderr
    assert stderr.startswith("error: ") and stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    assert re.search(message, stderr), stderr
    assert not out.exists()
    assert not (narrow_init / "config.json").exists() and read_metadata(narrow_init)["name"] == "random narrow replica"


def test_three_phase_data_is_refused_for_a_two_phase_kind(narrow_init, tmp_path):
    volumes = np.random.default_rng(2).choice([0.0, 0.5, 1.0], size=(2, 64, 64, 64))
    data = write_microgen3d_h5(tmp_path / "three.h5", volumes, [{"ABS_f_D": 0.3}] * 2)
    with pytest.raises(InvalidInputError, match="3-phase volumes, but MicroGen3D kind experimental is 2-phase"):
        finetune_microgen3d(narrow_init, data=data, out_dir=tmp_path / "o", progress=False)
    # without its microgen3d.json a folder is read as published files: the narrow replica's shapes are refused
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in FILES.values():
        (plain / name).write_bytes((narrow_init / name).read_bytes())
    with pytest.raises(CheckpointError, match=r"vae\.pt does not match MicroGen3D kind experimental: encoder\.conv_layers\.0\.weight has shape"):
        load_folder(plain, kind="experimental")
