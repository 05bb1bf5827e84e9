"""Staged training on the tiny dataset: logs, per-band losses, resume and stale output folders."""

from __future__ import annotations

import json
import lightning as L
import pandas as pd
import pytest
import torch

from generator.errors import InvalidInputError
from generator.training import stage_losses, train_pipeline

FAST = {
    "vae": {"max_steps": 6, "checkpoint_every": 3, "val_every": 3, "batch_size": 4, "model": {"widths": [4, 8]}},
    "fp": {"max_steps": 4, "checkpoint_every": 2, "val_every": 2, "model": {"hidden": [8]}},
    "ddpm": {"max_steps": 4, "checkpoint_every": 2, "val_every": 2, "model": {"width": 4, "channel_mults": [1]}},
}


class StopAt(L.Callback):
    """Fail (like a crash) when the global step reaches ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step >= self.step:
            raise RuntimeError("simulated crash")


class FirstStep(L.Callback):
    """Record the global step at which fitting starts, and count fits."""

    def __init__(self) -> None:
        self.starts: list[int] = []

    def on_train_start(self, trainer, module):
        self.starts.append(trainer.global_step)


def test_tiny_bundle_logs(tiny_bundle):
    out = tiny_bundle.parent
    for stage in ("vae", "fp", "ddpm"):
        log = stage_losses(out, stage)
        assert "train/loss" in log.columns and log["train/loss"].notna().any()
        assert (out / f"{stage}.pt").is_file()
    ddpm = stage_losses(out, "ddpm")
    # the denoiser's validation loss is reported per band of time steps
    assert {"val/loss_t0", "val/loss_t3"} <= set(ddpm.columns)
    vae = stage_losses(out, "vae")
    assert vae["train/loss"].dropna().iloc[-1] < vae["train/loss"].dropna().iloc[0]


@pytest.mark.slow
def test_stage_resumes_from_its_checkpoint(tiny_dataset, tmp_path):
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_pipeline("tiny", data=tiny_dataset, out_dir=tmp_path, overrides=FAST, progress=False, callbacks={"vae": [StopAt(4)]})
    assert (tmp_path / "checkpoints" / "vae" / "last.ckpt").is_file()
    assert not (tmp_path / "vae.pt").exists()
    first = FirstStep()
    with pytest.raises(RuntimeError, match="simulated crash"):  # the VAE resumes and finishes, then the denoiser crashes
        train_pipeline("tiny", data=tiny_dataset, out_dir=tmp_path, overrides=FAST, progress=False,
                       callbacks={"vae": [first], "ddpm": [StopAt(3)]})
    assert first.starts == [3]  # resumed at the checkpoint written at step 3, not from scratch
    assert (tmp_path / "vae.pt").is_file() and (tmp_path / "fp.pt").is_file() and not (tmp_path / "ddpm.pt").exists()
    resumed = FirstStep()
    bundle = train_pipeline("tiny", data=tiny_dataset, out_dir=tmp_path, overrides=FAST, progress=False, callbacks={"ddpm": [resumed]})
    assert resumed.starts == [2]  # the denoiser resumed at its step-2 checkpoint
    assert bundle.is_file()
    # every run of every stage logged its time, the interrupted ones too
    times = [json.loads(line) for line in (tmp_path / "stage_times.jsonl").read_text().splitlines()]
    assert [t["stage"] for t in times] == ["vae", "vae", "encode", "fp", "ddpm", "ddpm"]
    assert all(t["wall_s"] > 0 and t["cpu_s"] >= 0 for t in times)
    assert times[0]["to_step"] == FAST["vae"]["max_steps"] and times[2]["to_step"] is None
    # a finished run is not retrained: every stage is skipped
    again = {stage: [FirstStep()] for stage in ("vae", "fp", "ddpm")}
    mtime = (tmp_path / "ddpm.pt").stat().st_mtime_ns
    assert train_pipeline("tiny", data=tiny_dataset, out_dir=tmp_path, overrides=FAST, progress=False, callbacks=again) == bundle
    assert all(cb[0].starts == [] for cb in again.values())
    assert (tmp_path / "ddpm.pt").stat().st_mtime_ns == mtime
    # another config in the same folder is refused, not mixed
    with pytest.raises(InvalidInputError, match="another config"):
        train_pipeline("tiny", data=tiny_dataset, out_dir=tmp_path, overrides={**FAST, "fp": {**FAST["fp"], "lr": 0.5}}, progress=False)


@pytest.mark.slow
def test_a_stage_trains_longer_from_its_last_checkpoint(tiny_dataset, tmp_path):
    """More steps for a finished stage is not another config: deleting its result resumes it from its last checkpoint."""
    train_pipeline("tiny", data=tiny_dataset, out_dir=tmp_path, overrides=FAST, progress=False)
    (tmp_path / "ddpm.pt").unlink()
    longer = {**FAST, "ddpm": {**FAST["ddpm"], "max_steps": 6}}
    resumed = FirstStep()
    assert train_pipeline("tiny", data=tiny_dataset, out_dir=tmp_path, overrides=longer, progress=False, callbacks={"ddpm": [resumed]}).is_file()
    assert resumed.starts == [4]  # from the step-4 checkpoint of the first run, not from scratch
    assert json.loads((tmp_path / "config.json").read_text())["config"]["ddpm"]["max_steps"] == 6


def test_gradient_clipping_reaches_the_trainer(tiny_dataset, tmp_path):
    seen = []

    class Record(L.Callback):
        def on_train_start(self, trainer, module):
            seen.append(trainer.gradient_clip_val)

    overrides = {**FAST, "trainer": {"gradient_clip_val": 0.5}}
    train_pipeline("tiny", data=tiny_dataset, out_dir=tmp_path, overrides=overrides, progress=False,
                   callbacks={"vae": [Record()], "ddpm": [Record()]})
    assert seen == [0.5, 0.5]


def test_cosine_schedule_warms_up_then_decays_to_its_final_fraction():
    from generator.training.config import LRSchedule

    schedule = LRSchedule(kind="cosine", warmup_steps=10, final_fraction=0.05)
    factors = [schedule.factor(step, 110) for step in range(120)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)  # linear warm-up over 10 steps
    assert factors[60] == pytest.approx(0.05 + 0.95 * 0.5)  # half way through the decay: half way down
    assert factors[110] == pytest.approx(0.05) and factors[119] == pytest.approx(0.05)  # the floor, also past max_steps
    assert all(a >= b for a, b in zip(factors[9:], factors[10:]))  # never rises after the warm-up
    assert all(LRSchedule().factor(step, 100) == 1.0 for step in range(100))
    with pytest.raises(ValueError):
        LRSchedule(final_fraction=1.5)


class RecordLR(L.Callback):
    """The optimiser's lr at every step, as the step ran (the schedule callback comes first)."""

    def __init__(self) -> None:
        self.lrs: dict[int, float] = {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.lrs[trainer.global_step] = trainer.optimizers[0].param_groups[0]["lr"]


@pytest.mark.slow
def test_lr_schedule_drives_the_optimiser_and_survives_a_resume(tiny_dataset, tmp_path):
    """Each step's lr follows the schedule; a stage resumed with more steps continues on the new curve."""
    from generator.training.config import LRSchedule

    schedule = {"kind": "cosine", "warmup_steps": 2, "final_fraction": 0.1}
    ddpm = {**FAST["ddpm"], "max_steps": 8, "lr": 1e-3, "lr_schedule": schedule}
    first = RecordLR()
    train_pipeline("tiny", data=tiny_dataset, out_dir=tmp_path, overrides={**FAST, "ddpm": ddpm}, progress=False, callbacks={"ddpm": [first]})
    expected = LRSchedule(**schedule)
    assert sorted(first.lrs) == list(range(8))
    assert [first.lrs[k] for k in range(8)] == pytest.approx([1e-3 * expected.factor(k, 8) for k in range(8)])
    # train on to 12 steps: it resumes at the last checkpoint (step 8) and follows the 12-step curve
    (tmp_path / "ddpm.pt").unlink()
    longer = RecordLR()
    train_pipeline("tiny", data=tiny_dataset, out_dir=tmp_path, overrides={**FAST, "ddpm": {**ddpm, "max_steps": 12}}, progress=False,
                   callbacks={"ddpm": [longer]})
    assert sorted(longer.lrs) == list(range(8, 12))
    assert [longer.lrs[k] for k in range(8, 12)] == pytest.approx([1e-3 * expected.factor(k, 12) for k in range(8, 12)])


def test_unknown_condition_is_refused(tiny_dataset, tmp_path):
    with pytest.raises(InvalidInputError, match="data.conditions: attribute 'no_such_descriptor'"):
        train_pipeline("tiny", data=tiny_dataset, out_dir=tmp_path / "o", overrides={"data": {"conditions": ["no_such_descriptor"]}}, progress=False)
    assert not (tmp_path / "o").exists()  # nothing written for a bad config


def test_in_plane_symmetries_keep_every_descriptor(tiny_dataset):
    from generator.descriptors import compute
    from generator.physics.labels import grey_to_labels
    from generator.training.data import Volumes, apply_in_plane_symmetry, in_plane_symmetries, open_dataset

    dataset = open_dataset(tiny_dataset)
    grey = Volumes(dataset)[len(dataset) - 1][None]  # (1, 1, 32, 32, 16), the most coarsened snapshot
    assert in_plane_symmetries(dataset.volume_shape) == 8 and in_plane_symmetries((32, 16, 16)) == 4
    images = [apply_in_plane_symmetry(grey, k) for k in range(8)]
    assert len({tuple(im.flatten().tolist()) for im in images}) == 8  # eight different volumes
    base = compute(grey_to_labels(grey[0, 0].numpy(), 2))
    for image in images:
        assert compute(grey_to_labels(image[0, 0].numpy(), 2)) == pytest.approx(base, rel=1e-12, abs=1e-12)


def test_in_plane_augmentation_trains_on_every_symmetry(tiny_dataset, tmp_path):
    overrides = {**FAST, "data": {"augment": "in_plane"}}
    bundle = train_pipeline("tiny", data=tiny_dataset, out_dir=tmp_path, overrides=overrides, progress=False)
    latents = torch.load(tmp_path / "latents.pt", weights_only=True)["mu"]
    n = 16  # the tiny dataset's volumes
    assert latents.shape[0] == 8 * n
    # row s * n + i encodes volume i under symmetry s: the flips of a volume are encoded, not copied
    assert not torch.allclose(latents[:n], latents[n:2 * n])
    assert bundle.is_file()


def test_truncated_stage_checkpoint_is_a_clear_error(tiny_dataset, tmp_path):
    from generator.errors import CheckpointError

    with pytest.raises(RuntimeError, match="simulated crash"):
        train_pipeline("tiny", data=tiny_dataset, out_dir=tmp_path, overrides=FAST, progress=False, callbacks={"vae": [StopAt(4)]})
    last = tmp_path / "checkpoints" / "vae" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # a kill in the middle of Lightning's write
    with pytest.raises(CheckpointError, match=r"checkpoint: .*last\.ckpt is truncated or corrupt .*delete it and run again"):
        train_pipeline("tiny", data=tiny_dataset, out_dir=tmp_path, overrides=FAST, progress=False)
