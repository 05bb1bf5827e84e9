"""The staged training run: VAE -> encode the dataset -> feature predictor -> latent denoiser -> bundle.

Every stage writes its result into the output folder (``vae.pt``, ``latents.pt``,
``fp.pt``, ``ddpm.pt``) and is skipped when that file exists; an interrupted
stage resumes from its Lightning checkpoint ``checkpoints/<stage>/last.ckpt``.
Losses go to ``logs/<stage>/metrics.csv`` (Lightning's CSVLogger), and each
stage's wall and CPU time to ``stage_times.jsonl`` (:func:`stage_timer`), which
the model card reads.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, Subset, TensorDataset
from tqdm.auto import tqdm

from generator.checkpoint import (
    check_calibration_table,
    in_plane_multiple_of_configs,
    make_bundle,
    save_bundle,
    with_film_shape,
    zip_problem,
)
from generator.errors import CheckpointError, InvalidInputError
from generator.io import atomic_path
from generator.models import VAE, FeaturePredictor, LatentUNet
from generator.training.config import LRSchedule, StageConfig, TrainConfig, TrainerConfig, load_config
from generator.data.dataset import split_by_series
from generator.data.hdf5 import simulation_record
from generator.training.data import (
    Volumes,
    apply_in_plane_symmetry,
    check_attributes,
    feature_attributes,
    in_plane_symmetries,
    infer_n_phases,
    open_dataset,
    sample_table,
)
from generator.training.modules import DenoiserModule, FeaturePredictorModule, VAEModule

BUNDLE_NAME = "generator.pt"
STAGES = ("vae", "encode", "fp", "ddpm")
#: Per-stage timing log of a run folder: one JSON object a line, ``{"stage", "wall_s", "cpu_s", "to_step"}``.
STAGE_TIMES = "stage_times.jsonl"


@contextmanager
def stage_timer(out_dir: str | os.PathLike[str], stage: str, to_step: int | None = None):
    """Append the wall and CPU seconds of the block to ``out_dir/stage_times.jsonl`` when it finishes.

    An interrupted stage (an exception) writes its time too and its resumed run
    appends another line: readers sum them. Only the global-rank-0 process of a
    distributed run writes.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        if int(os.environ.get("RANK", "0")) == 0:
            record = {"stage": stage, "wall_s": round(time.perf_counter() - wall, 3), "cpu_s": round(time.process_time() - cpu, 3),
                      "to_step": to_step}
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            with open(Path(out_dir) / STAGE_TIMES, "a") as log:
                log.write(json.dumps(record) + "\n")


@contextmanager
def speed_settings(trainer: TrainerConfig):
    """Apply the CPU speed settings (threads, oneDNN) for the duration of training."""
    old_threads = torch.get_num_threads()
    old_mkldnn = torch.backends.mkldnn.enabled
    try:
        if trainer.threads:
            torch.set_num_threads(trainer.threads)
        if trainer.mkldnn is not None:
            torch.backends.mkldnn.enabled = trainer.mkldnn
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.backends.mkldnn.enabled = old_mkldnn


def _save(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def check_checkpoint(path: Path) -> None:
    """Raise :class:`CheckpointError` when a stage result or Lightning checkpoint is truncated or corrupt."""
    problem = zip_problem(path)
    if problem is not None:
        raise CheckpointError(f"checkpoint: {path} is truncated or corrupt ({problem}); delete it and run again to redo that stage")


def _load(path: Path) -> Any:
    check_checkpoint(path)
    return torch.load(path, map_location="cpu", weights_only=True)


class StepProgress(Callback):
    """One tqdm bar per stage over its optimisation steps (Lightning's own bar counts epochs), with the loss."""

    def __init__(self, stage: str, max_steps: int) -> None:
        self.stage, self.max_steps = stage, max_steps
        self.bar: tqdm | None = None

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self.bar = tqdm(total=self.max_steps, initial=trainer.global_step, desc=f"training {self.stage}", unit="step", dynamic_ncols=True)

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        if self.bar is not None:
            self.bar.update(trainer.global_step - self.bar.n)
            loss = trainer.callback_metrics.get("train_loss")
            if loss is not None:
                self.bar.set_postfix(loss=f"{float(loss):.4g}", refresh=False)

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    on_exception = lambda self, trainer, module, exc: self.on_train_end(trainer, module)  # noqa: E731


class ScheduledLR(Callback):
    """Sets every optimiser group's lr to ``base_lr * schedule.factor(global_step, max_steps)`` before each step.

    It reads only the global step, which Lightning restores on resume, so it keeps no state of its own
    and a resumed stage with another ``max_steps`` or schedule continues on the new curve.
    """

    def __init__(self, schedule: LRSchedule, max_steps: int) -> None:
        self.schedule, self.max_steps = schedule, max_steps
        self._base: list[float] | None = None

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch, batch_idx: int) -> None:
        groups = [g for opt in trainer.optimizers for g in opt.param_groups]
        if self._base is None:
            self._base = [g.get("initial_lr", g["lr"]) for g in groups]
            for g, base in zip(groups, self._base):
                g["initial_lr"] = base
        factor = self.schedule.factor(trainer.global_step, self.max_steps)
        for g, base in zip(groups, self._base):
            g["lr"] = base * factor


def fit_stage(
    module: L.LightningModule,
    train_loader: DataLoader,
    val_loader: DataLoader | None,
    *,
    stage: str,
    out_dir: Path,
    max_steps: int,
    val_every: int,
    checkpoint_every: int,
    trainer: TrainerConfig,
    progress: bool,
    callbacks: Sequence[Callback] = (),
    lr_schedule: LRSchedule | None = None,
) -> L.Trainer:
    """Fit one stage with Lightning, resuming from ``checkpoints/<stage>/last.ckpt`` when present.

    ``lr_schedule`` (None: the module's constant lr) scales the optimiser's lr at every step
    (:class:`ScheduledLR`).

    Raises
    ------
    RuntimeError
        When training was interrupted (the checkpoint stays for the next run).
    """
    ckpt_dir = out_dir / "checkpoints" / stage
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0, every_n_train_steps=checkpoint_every)
    has_val = val_loader is not None and len(val_loader) > 0
    accelerator = trainer.accelerator
    if accelerator == "auto" and not torch.cuda.is_available():
        accelerator = "cpu"
    lt = L.Trainer(
        accelerator=accelerator,
        devices=trainer.devices if accelerator != "cpu" or trainer.devices != "auto" else 1,
        num_nodes=trainer.num_nodes,
        strategy=trainer.strategy,
        precision=trainer.precision,
        max_steps=max_steps,
        max_epochs=-1,
        gradient_clip_val=trainer.gradient_clip_val,
        val_check_interval=min(val_every, max_steps) if has_val else None,
        check_val_every_n_epoch=None if has_val else 1,
        limit_val_batches=None if has_val else 0,
        num_sanity_val_steps=0,
        callbacks=[checkpoint, *([StepProgress(stage, max_steps)] if progress else []),
                   *([ScheduledLR(lr_schedule, max_steps)] if lr_schedule is not None and lr_schedule != LRSchedule() else []),
                   *callbacks],
        logger=CSVLogger(out_dir, name="logs", version=stage),
        log_every_n_steps=max(1, min(25, max_steps // 10)),
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=out_dir,
    )
    last = ckpt_dir / "last.ckpt"
    if last.is_file():
        check_checkpoint(last)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(does not have many workers|Experiment logs directory|exists and is not empty|isn't divisible|GPU available but not used|LeafSpec|smaller than the logging interval).*")
        lt.fit(module, train_loader, val_loader if has_val else None, ckpt_path=str(last) if last.is_file() else None)
    if lt.interrupted or lt.global_step < max_steps:
        raise RuntimeError(f"training stage {stage} stopped at step {lt.global_step} of {max_steps}; run again to resume")
    return lt


def _device(trainer: TrainerConfig) -> torch.device:
    if trainer.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


@torch.inference_mode()
def encode_volumes(vae: VAE, volumes: Volumes, *, batch_size: int, device: torch.device, progress: bool, num_workers: int = 0,
                   symmetries: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and standard deviation ``(S * N, C, x, y, z)`` of every volume under ``S = symmetries``.

    Row ``s * N + i`` encodes volume ``i`` (dataset order) under in-plane
    symmetry ``s`` (:func:`generator.training.data.apply_in_plane_symmetry`;
    ``s = 0`` is the volume itself).
    """
    vae = vae.to(device).eval()
    mus, sigmas = [], []
    loader = DataLoader(volumes, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    with tqdm(total=symmetries * len(volumes), desc="encoding", disable=not progress, leave=False) as bar:
        for s in range(symmetries):
            for grey in loader:
                mu, logvar = vae.encode(apply_in_plane_symmetry(grey.to(device), s))
                mus.append(mu.float().cpu())
                sigmas.append(torch.exp(0.5 * logvar).float().cpu())
                bar.update(len(grey))
    return torch.cat(mus), torch.cat(sigmas)


def _loader(dataset, batch_size: int, shuffle: bool, num_workers: int = 0) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=min(batch_size, max(1, len(dataset))),
        shuffle=shuffle,
        drop_last=shuffle and len(dataset) > batch_size,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )


def _periodic(config: TrainConfig) -> bool:
    """Whether all three networks pad x and y periodically (films of any in-plane size)."""
    pads = (config.vae.model.in_plane_padding, config.fp.model.in_plane_padding, config.ddpm.model.in_plane_padding)
    return pads == ("periodic",) * 3


def generate_shape(config: TrainConfig, film_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """The bundle's default film size: ``data.generate_shape`` (checked) or the training films' size.

    Raises
    ------
    InvalidInputError
        Another size than ``film_shape`` with networks that are not periodic in-plane, another Z, or X, Y
        that are not multiples of the networks' in-plane stride.
    """
    if config.data.generate_shape is None:
        return film_shape
    shape = tuple(int(n) for n in config.data.generate_shape)
    if shape == film_shape:
        return shape
    step = in_plane_multiple_of_configs({"vae": config.vae.model.model_dump(), "feature_predictor": config.fp.model.model_dump(),
                                         "unet": config.ddpm.model.model_dump()})
    if not step:
        raise InvalidInputError("data.generate_shape: another size than the training films' needs in_plane_padding = 'periodic' "
                                "in vae.model, fp.model and ddpm.model, and fp.model.conv_channels")
    if shape[2] != film_shape[2] or any(n < step or n % step for n in shape[:2]):
        raise InvalidInputError(f"data.generate_shape: {list(shape)} needs Z = {film_shape[2]} (the films') and X, Y multiples of {step}")
    return shape


#: Stage settings a run may change between resumes: how long to train, how often to validate and checkpoint, and the
#: lr schedule (to train on with a decaying tail).
_EXTENSIBLE = ("max_steps", "val_every", "checkpoint_every", "lr_schedule")


def _without_step_counts(record: dict[str, Any]) -> dict[str, Any]:
    """The run's record less what may change between resumes: step counts, and how the trainer runs (threads, devices)."""
    config = json.loads(json.dumps(record["config"]))
    for stage in ("vae", "fp", "ddpm"):
        for key in _EXTENSIBLE:
            config.get(stage, {}).pop(key, None)
    for key in ("threads", "num_workers", "mkldnn", "channels_last", "gradient_clip_val"):
        config.get("trainer", {}).pop(key, None)
    config.get("ddpm", {}).pop("sampling", None)  # how the finished model samples: written into the bundle, no effect on training
    for key in ("calibration_series", "calibration_seed"):  # the recipe posterior's calibration films: no effect on training
        config.get("data", {}).pop(key, None)
    return {**record, "config": config}


def _check_out_dir(out_dir: Path, config: TrainConfig, n_samples: int) -> None:
    """Refuse a folder holding a run of another config or dataset; record this run's config.

    Only the step counts (``max_steps``, ``val_every``, ``checkpoint_every``), the ``lr_schedule`` and the CPU settings of the
    trainer (``threads``, ``num_workers``, ``mkldnn``, ``channels_last``, ``gradient_clip_val``: train on with clipping), the
    bundle's ``ddpm.sampling`` defaults and the calibration films (``data.calibration_series``, ``data.calibration_seed``) may differ: training a stage for longer is resuming it (delete the stage's ``<stage>.pt`` so that it runs again, and it
    continues from its last checkpoint).
    """
    record = {"config": config.model_dump(mode="json"), "n_samples": n_samples}
    path = out_dir / "config.json"
    if path.is_file():
        previous = json.loads(path.read_text())
        if _without_step_counts(previous) != _without_step_counts(record):
            raise InvalidInputError(
                f"out: {out_dir} holds a training run with another config or dataset; choose a new folder or delete it"
            )
        if previous == record:
            return
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2))


def read_calibration_films(path: str | os.PathLike[str], film_size: Sequence[int], attributes: Sequence[str], *,
                           n_series: int | None = None) -> pd.DataFrame:
    """The calibration films of a training run: a labelled HDF5 file of films at the generated size.

    Parameters
    ----------
    path
        The file (``microdesign train`` simulates it as ``OUT/calibration.h5``).
    film_size
        ``(X, Y, Z)`` the generated films' size, which the films must have.
    attributes
        Descriptor and recipe columns every film must carry (the feature predictor's attributes).
    n_series
        Keep only the series numbered below it (the first ``n_series`` of the file's design: with a scrambled-Halton
        design, the calibration films' own, a space-filling subset); all by default.

    Returns
    -------
    pandas.DataFrame
        One row per film, with its shape (``FILM_SHAPE_COLUMNS``): a bundle's ``calibration_table``.

    Raises
    ------
    InvalidInputError
        Films of another size, a missing column, fewer than 10 films, or fewer series than ``n_series``.
    """
    films = open_dataset(path)
    if tuple(films.volume_shape) != tuple(film_size):
        raise InvalidInputError(f"calibration: its films are {list(films.volume_shape)}, the generated films {list(film_size)}")
    table = with_film_shape(sample_table(films), films.volume_shape)
    if n_series is not None:
        missing = sorted(set(range(int(n_series))) - set(table["series"].astype(int)))
        if missing:
            raise InvalidInputError(f"calibration: {path} holds {table['series'].nunique()} series, not the first {n_series} "
                                    f"of its design (series {missing[0]} is missing)")
        table = table[table["series"] < int(n_series)].reset_index(drop=True)
    check_attributes(table, attributes, "calibration")
    check_calibration_table(table)
    return table


def train_pipeline(
    preset: str | os.PathLike[str] | TrainConfig,
    *,
    data: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    overrides: dict[str, Any] | None = None,
    progress: bool = True,
    callbacks: dict[str, Sequence[Callback]] | None = None,
    calibration: str | os.PathLike[str] | None = None,
    calibration_series: int | None = None,
) -> Path:
    """Train the generator in stages and write its bundle.

    Parameters
    ----------
    preset
        Preset name (``tiny``, ``small``, ``paper-ch2``, ``paper-ch3``), a TOML file or a :class:`TrainConfig`.
    data
        HDF5 file, folder of ``*.h5`` files or glob, labelled with descriptors.
    out_dir
        Folder for checkpoints, logs, stage results and the bundle (created if needed).
    overrides
        Nested dict merged over the config (e.g. ``{"ddpm": {"max_steps": 5000}}``).
    progress
        Progress bars.
    callbacks
        Extra Lightning callbacks per stage name (``vae``, ``fp``, ``ddpm``).
    calibration
        Optional labelled HDF5 file of films at the generated size from series the training never used
        (``microdesign train`` simulates ``data.calibration_series`` of them): the bundle's ``calibration_table``,
        which calibrates the recipe posterior for films of that size.
    calibration_series
        Use only the first that many series of ``calibration`` (all by default): a run folder's calibration
        file may hold more series of the same sequence than the config asks for now.

    Returns
    -------
    Path
        The bundle file ``out_dir/generator.pt``.
    """
    config = load_config(preset, overrides)
    out_dir = Path(out_dir)
    callbacks = callbacks or {}
    dataset = open_dataset(data)
    table = sample_table(dataset)
    check_attributes(table, config.data.conditions, "data.conditions")
    attributes = feature_attributes(table, config.data.conditions, config.data.attributes)
    check_attributes(table, attributes, "data.attributes")
    volumes = Volumes(dataset)
    n_phases = config.data.n_phases or infer_n_phases(dataset)
    vae_config = config.vae.model.model_copy(update={"n_phases": n_phases})
    try:
        latent_shape = vae_config.latent_shape(dataset.volume_shape)
    except ValueError as exc:
        raise InvalidInputError(f"vae.model.widths: {exc}") from None
    film_size = generate_shape(config, tuple(dataset.volume_shape))
    calibration_table = None
    if calibration is not None:
        calibration_table = read_calibration_films(calibration, film_size, attributes, n_series=calibration_series)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_out_dir(out_dir, config, len(table))
    train_idx, val_idx = split_by_series(table["series"].to_numpy(), config.data.val_fraction, seed=config.data.seed)
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING if progress else logging.ERROR)
    L.seed_everything(config.data.seed, verbose=False)
    tc = config.trainer
    workers = tc.num_workers

    with speed_settings(tc):
        # 1. VAE
        vae = VAE(vae_config)
        vae_file = out_dir / "vae.pt"
        if not vae_file.is_file():
            with stage_timer(out_dir, "vae", config.vae.max_steps):
                module = VAEModule(vae, lr=config.vae.lr, weight_decay=config.vae.weight_decay, channels_last=tc.channels_last)
                fit_stage(
                    module,
                    _loader(Subset(volumes, train_idx), config.vae.batch_size, True, workers),
                    _loader(Subset(volumes, val_idx), config.vae.batch_size, False, workers) if len(val_idx) else None,
                    stage="vae", out_dir=out_dir, max_steps=config.vae.max_steps, val_every=config.vae.val_every,
                    checkpoint_every=config.vae.checkpoint_every, trainer=tc, progress=progress, callbacks=callbacks.get("vae", ()),
                    lr_schedule=config.vae.lr_schedule,
                )
                vae = module.vae.to(memory_format=torch.contiguous_format)
                _save(vae.state_dict(), vae_file)
        vae.load_state_dict(_load(vae_file))

        # 2. encode the dataset
        latent_file = out_dir / "latents.pt"
        symmetries = in_plane_symmetries(dataset.volume_shape) if config.data.augment == "in_plane" else 1
        if not latent_file.is_file():
            with stage_timer(out_dir, "encode"):
                mu, sigma = encode_volumes(vae, volumes, batch_size=config.vae.batch_size, device=_device(tc), progress=progress,
                                           num_workers=workers, symmetries=symmetries)
                _save({"mu": mu, "sigma": sigma}, latent_file)
        encoded = _load(latent_file)
        mu, sigma = encoded["mu"], encoded["sigma"]
        # latent rows s * N + i: volume i under in-plane symmetry s; the latent stages learn every symmetry of the
        # training series (their descriptors are the same) and are validated on the volumes as they are
        n = len(table)
        train_rows = torch.as_tensor(np.concatenate([s * n + np.asarray(train_idx) for s in range(symmetries)]), dtype=torch.long)
        sample_of = train_rows % n
        latent_mean = mu[train_rows].mean(dim=(0, 2, 3, 4))
        latent_std = mu[train_rows].std(dim=(0, 2, 3, 4)).clamp_min(1e-6)

        def fit_latent_stage(module: L.LightningModule, stage: str, stage_config: StageConfig, values: torch.Tensor) -> None:
            """Fit a stage on (latent mean, latent std, ``values`` per sample): every symmetry of the training rows, the validation rows as they are."""
            fit_stage(
                module,
                _loader(TensorDataset(mu[train_rows], sigma[train_rows], values[sample_of]), stage_config.batch_size, True),
                _loader(TensorDataset(mu[val_idx], sigma[val_idx], values[val_idx]), stage_config.batch_size, False) if len(val_idx) else None,
                stage=stage, out_dir=out_dir, max_steps=stage_config.max_steps, val_every=stage_config.val_every,
                checkpoint_every=stage_config.checkpoint_every, trainer=tc, progress=progress, callbacks=callbacks.get(stage, ()),
                lr_schedule=stage_config.lr_schedule,
            )

        # 3. feature predictor
        targets = torch.tensor(table[attributes].to_numpy(dtype=np.float32))
        fp = FeaturePredictor(config.fp.model, latent_shape, len(attributes))
        fp.set_normalisation(targets[train_idx])
        fp_file = out_dir / "fp.pt"
        if not fp_file.is_file():
            with stage_timer(out_dir, "fp", config.fp.max_steps):
                normalised = fp.normalise(targets)
                module = FeaturePredictorModule(fp, latent_mean, latent_std, lr=config.fp.lr, weight_decay=config.fp.weight_decay)
                fit_latent_stage(module, "fp", config.fp, normalised)
                _save(module.fp.state_dict(), fp_file)
        fp.load_state_dict(_load(fp_file))

        # 4. latent denoiser
        conditions = torch.tensor(table[config.data.conditions].to_numpy(dtype=np.float64))
        context_mean = conditions[train_idx].mean(dim=0)
        context_std = conditions[train_idx].std(dim=0)
        context_std = torch.where(context_std > 1e-12, context_std, torch.ones_like(context_std))
        context = ((conditions - context_mean) / context_std).float()
        unet = LatentUNet(config.ddpm.model, latent_shape[0], len(config.data.conditions))
        ddpm_file = out_dir / "ddpm.pt"
        if not ddpm_file.is_file():
            with stage_timer(out_dir, "ddpm", config.ddpm.max_steps):
                module = DenoiserModule(
                    unet, config.ddpm.schedule, latent_mean, latent_std, lr=config.ddpm.lr, weight_decay=config.ddpm.weight_decay,
                    condition_dropout=config.ddpm.condition_dropout, ema_decay=config.ddpm.ema_decay,
                    roll=_periodic(config),
                )
                fit_latent_stage(module, "ddpm", config.ddpm, context)
                _save(module.denoiser().state_dict(), ddpm_file)
        unet.load_state_dict(_load(ddpm_file))

    descriptor_table = table.copy()
    bundle = make_bundle(
        vae=vae, feature_predictor=fp, unet=unet, schedule=config.ddpm.schedule, volume_shape=film_size, training_shape=dataset.volume_shape,
        condition_names=config.data.conditions, attribute_names=attributes,
        context_mean=context_mean, context_std=context_std, latent_mean=latent_mean, latent_std=latent_std,
        descriptor_table=descriptor_table, training_config=config.model_dump(mode="json"),
        simulation=simulation_record(dataset.files),
        training_record=training_record(out_dir),
        sampling_defaults=config.ddpm.sampling.resolved().model_dump(),
        calibration_table=calibration_table,
    )
    return save_bundle(bundle, out_dir / BUNDLE_NAME)


def training_record(out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Wall and CPU seconds of each stage of a run (summed over resumed runs) from ``stage_times.jsonl``.

    Returns
    -------
    dict
        ``{"stages": {stage: {"wall_s", "cpu_s"[, "steps"]}}, "wall_s", "cpu_s"}`` (empty stages when there is
        no log); ``steps`` is the step count the stage last trained to, where it has one.
    """
    stages: dict[str, dict[str, float]] = {}
    path = Path(out_dir) / STAGE_TIMES
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            entry = stages.setdefault(str(record.get("stage")), {"wall_s": 0.0, "cpu_s": 0.0})
            entry["wall_s"] = round(entry["wall_s"] + float(record.get("wall_s", 0.0)), 3)
            entry["cpu_s"] = round(entry["cpu_s"] + float(record.get("cpu_s", 0.0)), 3)
            if record.get("to_step") is not None:
                entry["steps"] = int(record["to_step"])
    return {"stages": stages, "wall_s": round(sum(e["wall_s"] for e in stages.values()), 3),
            "cpu_s": round(sum(e["cpu_s"] for e in stages.values()), 3)}


def stage_losses(out_dir: str | os.PathLike[str], stage: str) -> pd.DataFrame:
    """The CSV log ``logs/<stage>/metrics.csv`` of a training run as a DataFrame."""
    return pd.read_csv(Path(out_dir) / "logs" / stage / "metrics.csv")
