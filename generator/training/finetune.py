"""Fine-tuning MicroGen3D's published networks, their architecture unchanged, on a user's data.

``microdesign train --init-from WEIGHTS --kind KIND --data mine.h5`` loads the
three published networks (:func:`generator.models.microgen3d.load_folder`),
continues training the selected stages with the Lightning modules of
:mod:`generator.training.modules` and :func:`generator.training.stages.fit_stage`
(checkpoints, resuming, CSV logs, stage times, multi-GPU as for ``train``), and
writes a folder in the published layout::

    OUT/vae.pt  fp.pt  ddpm.pt    plain state dicts, the published keys (MicroGen3D's own code loads them)
    OUT/microgen3d.json           kind, network sizes, provenance (written last: the folder is complete)
    OUT/descriptors.csv           the data's attributes (condition ranges, feasibility, partial conditions)

which :func:`generator.loading.load_generator` loads without ``--kind``.

The losses are the published ones: the VAE's ``MSE + kl_weight * KL``
(:meth:`~generator.models.microgen3d.MicroGen3DVAE.loss`), the feature
predictor's MSE in raw units on posterior samples, and the DDPM's noise MSE at
levels ``1 .. T-1`` of the file's own schedule, with the feature predictor's
prediction as the context (``ddpm.context = "fp"``, computed once on each
volume's posterior mean; ``"labels"`` uses the data's attributes instead). No
latent scaling, as published.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn
from torch.utils.data import Subset, TensorDataset

from generator.data.dataset import split_by_series
from generator.data.hdf5 import simulation_record
from generator.descriptors import ALIASES
from generator.errors import FileFormatError, InvalidInputError
from generator.io.toml import read_toml
from generator.models.microgen3d import (
    FILES,
    KINDS,
    MicroGen3DDDPM,
    MicroGen3DFeaturePredictor,
    MicroGen3DKind,
    MicroGen3DVAE,
    load_folder,
    noise_schedule,
    save_networks,
)
from generator.training.config import StageConfig, TrainerConfig, _merge
from generator.training.data import Volumes, in_plane_symmetries, infer_n_phases, open_dataset, sample_table
from generator.training.modules import DenoiserModule, FeaturePredictorModule, VAEModule
from generator.training.stages import _check_out_dir, _device, _load, _loader, _save, encode_volumes, fit_stage, speed_settings, stage_timer

#: The stages that can be fine-tuned, in the order they run.
FINETUNE_STAGES = ("vae", "fp", "ddpm")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FinetuneData(_Strict):
    """Validation split and augmentation of the fine-tuning data."""

    val_fraction: float = Field(0.2, ge=0.0, lt=1.0, description="fraction of series held out for validation")
    seed: int = 0
    augment: Literal["none", "in_plane"] = Field(
        "none", description="in_plane: the fp and ddpm stages also learn every volume under its in-plane symmetries (x/y flips, x-y transpose)"
    )


class FinetuneVAE(StageConfig):
    """The VAE stage: small steps from the published weights."""

    batch_size: int = Field(4, ge=1)
    lr: float = Field(1e-5, gt=0.0)
    kl_weight: float = Field(1e-6, ge=0.0, description="weight of the KL term (published 1e-6)")


class FinetuneFP(StageConfig):
    """The feature-predictor stage."""

    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-4, gt=0.0)


class FinetuneDDPM(StageConfig):
    """The latent DDPM stage."""

    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-5, gt=0.0)
    context: Literal["fp", "labels"] = Field(
        "fp", description="fp: the feature predictor's prediction on the latent (published); labels: the data's attributes"
    )
    ema_decay: float | None = Field(None, gt=0.0, lt=1.0, description="EMA of the DDPM weights (None: off, as published)")


class FinetuneConfig(_Strict):
    """A fine-tuning run: data split, trainer and the three stages (``--set vae.max_steps=500`` etc.)."""

    name: str = "finetune"
    data: FinetuneData = Field(default_factory=FinetuneData)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    vae: FinetuneVAE = Field(default_factory=FinetuneVAE)
    fp: FinetuneFP = Field(default_factory=FinetuneFP)
    ddpm: FinetuneDDPM = Field(default_factory=FinetuneDDPM)


def load_finetune_config(config: str | os.PathLike[str] | FinetuneConfig | None = None, overrides: dict[str, Any] | None = None) -> FinetuneConfig:
    """The defaults, a TOML file or a :class:`FinetuneConfig`, with ``overrides`` merged in, validated.

    Raises
    ------
    InvalidInputError
        For a config that fails validation (naming the field).
    FileFormatError
        For a missing or unreadable TOML file.
    """
    if config is None:
        raw: dict[str, Any] = {}
    elif isinstance(config, FinetuneConfig):
        raw = config.model_dump()
    else:
        path = Path(config)
        if not path.is_file():
            raise FileFormatError(f"config: {path} does not exist")
        raw = read_toml(path, what="config")
    try:
        return FinetuneConfig(**_merge(raw, overrides or {}))
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(part) for part in first.get("loc", ()))
        raise InvalidInputError(f"config {loc}: {first.get('msg', 'invalid value')}") from None


def parse_stages(stages: str | Iterable[str]) -> tuple[str, ...]:
    """The stages of ``"vae,fp,ddpm"`` (or a list), in run order.

    Raises
    ------
    InvalidInputError
        For an empty list or an unknown stage.
    """
    items = [s.strip() for s in (stages.split(",") if isinstance(stages, str) else stages) if s.strip()]
    unknown = [s for s in items if s not in FINETUNE_STAGES]
    if unknown or not items:
        raise InvalidInputError(f"--stages: expected a comma-separated subset of {','.join(FINETUNE_STAGES)}, got {','.join(items) or 'nothing'!r}")
    return tuple(s for s in FINETUNE_STAGES if s in items)


def attribute_column(table: pd.DataFrame, name: str) -> str | None:
    """The column of ``table`` holding attribute ``name``: itself, or its GraSPI name (``tortuosity_A`` -> ``CT_f_A_tort1``)."""
    for column in (name, ALIASES.get(name)):
        if column is not None and column in table.columns and np.all(np.isfinite(table[column].to_numpy(dtype=np.float64))):
            return column
    return None


class _Posterior(nn.Module):
    """The VAE as :func:`~generator.training.stages.encode_volumes` expects it: ``encode(x) -> (mu, logvar)``."""

    def __init__(self, vae: MicroGen3DVAE) -> None:
        super().__init__()
        self.vae = vae

    def encode(self, grey: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``grey`` (B, 1, X, Y, Z) -> ``(mu, logvar)``, each (B, C, x, y, z)."""
        return self.vae.encoder(grey)


class _Outputs(nn.Module):
    """The feature predictor restricted to the outputs the data has labels for: (B, C, x, y, z) -> (B, len(indices))."""

    def __init__(self, fp: MicroGen3DFeaturePredictor, indices: Sequence[int]) -> None:
        super().__init__()
        self.fp = fp
        self.register_buffer("indices", torch.as_tensor(list(indices), dtype=torch.long), persistent=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fp(z)[:, self.indices]


class _PublishedDenoiser(nn.Module):
    """The published DDPM with :class:`~generator.training.modules.DenoiserModule`'s signature.

    Diffusers' timestep ``t`` is the published level ``t + 1``
    (:func:`~generator.models.microgen3d.noise_schedule`), so ``t`` uniform in
    ``0 .. T-2`` trains levels ``1 .. T-1`` as published. There is no
    unconditional branch: ``drop`` must be empty (condition dropout 0).
    """

    def __init__(self, ddpm: MicroGen3DDDPM) -> None:
        super().__init__()
        self.ddpm = ddpm

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (B, C, x, y, z) at timesteps ``t`` (B,), ``context`` (B, K) raw -> predicted noise (B, C, x, y, z)."""
        return self.ddpm(x, t + 1, context)


def check_data(dataset, spec: MicroGen3DKind, data: str | os.PathLike[str]) -> None:
    """Raise :class:`InvalidInputError` when the volumes do not fit ``spec``'s networks (shape, phases)."""
    shape = tuple(int(n) for n in dataset.volume_shape)
    if shape != spec.volume_shape:
        raise InvalidInputError(
            f"--data: {data} holds volumes of {'x'.join(map(str, shape))}, but MicroGen3D kind {spec.name} takes "
            f"{'x'.join(map(str, spec.volume_shape))} (its feature predictor reads a fixed {'x'.join(map(str, spec.latent_shape))} latent); "
            "cut or resample them with `microdesign dataset from-volume`"
        )
    n_phases = infer_n_phases(dataset)
    if n_phases != spec.n_phases:
        raise InvalidInputError(f"--data: {data} holds {n_phases}-phase volumes, but MicroGen3D kind {spec.name} is {spec.n_phases}-phase")


def _descriptor_table(table: pd.DataFrame, spec: MicroGen3DKind) -> pd.DataFrame | None:
    """The data's attributes with a column for every attribute of ``spec`` found under another name; ``None`` when no condition is there."""
    out = table.copy()
    for name in spec.attributes:
        column = attribute_column(table, name)
        if column is not None and column != name:
            out[name] = table[column]
    if not any(name in out.columns for name in spec.context_attributes):
        return None
    return out


def finetune_microgen3d(
    init_from: str | os.PathLike[str],
    *,
    data: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    kind: str | None = None,
    stages: str | Iterable[str] = FINETUNE_STAGES,
    config: str | os.PathLike[str] | FinetuneConfig | None = None,
    overrides: dict[str, Any] | None = None,
    progress: bool = True,
    callbacks: dict[str, Sequence[Callback]] | None = None,
) -> Path:
    """Continue training MicroGen3D's networks on ``data`` and write a loadable weights folder.

    Parameters
    ----------
    init_from
        A folder of published ``vae.pt``, ``fp.pt``, ``ddpm.pt`` (then ``kind``)
        or one written by this function (its ``microgen3d.json`` gives the kind).
    data
        HDF5 file, folder of ``*.h5`` files or glob, volumes of the kind's
        ``volume_shape`` (X, Y, Z). The ``fp`` stage needs the kind's attributes
        (those absent are not trained); ``ddpm.context = "labels"`` its conditions.
    out_dir
        Run folder: checkpoints, logs, and the result (created if needed).
    kind
        ``CH_2phase``, ``CH_3phase`` or ``experimental``.
    stages
        Which networks to train (``"vae,fp,ddpm"`` or a subset); the others are kept as loaded.
    config, overrides
        Defaults (:class:`FinetuneConfig`), a TOML file or a config; nested
        overrides such as ``{"vae": {"max_steps": 500}}``.
    progress
        Progress bars.
    callbacks
        Extra Lightning callbacks per stage name.

    Returns
    -------
    Path
        ``out_dir``, holding ``vae.pt``, ``fp.pt``, ``ddpm.pt``, ``microgen3d.json``
        (and ``descriptors.csv`` when the data has any condition).

    Raises
    ------
    MicrodesignError
        Bad weights (missing files, wrong kind, mismatched keys), data that does
        not fit the kind, a bad config, or an output folder of another run.
    """
    config = load_finetune_config(config, overrides)
    stages = parse_stages(stages)
    init_from, out_dir = Path(init_from), Path(out_dir)
    if out_dir.resolve() == init_from.resolve():
        raise InvalidInputError(f"--out: {out_dir} is the --init-from folder; write the fine-tuned model to another folder")
    kind, vae, fp, ddpm = load_folder(init_from, kind=kind)
    spec = KINDS[kind]
    dataset = open_dataset(data)
    check_data(dataset, spec, data)
    table = sample_table(dataset)
    columns = {name: attribute_column(table, name) for name in spec.attributes}
    trained = [name for name in spec.attributes if columns[name] is not None]
    if "fp" in stages and not trained:
        raise InvalidInputError(f"--data: the fp stage needs at least one of {', '.join(spec.attributes)} in {data}; "
                                "label it with `microdesign describe` first, or leave fp out of --stages")
    if "ddpm" in stages and config.ddpm.context == "labels":
        absent = [name for name in spec.context_attributes if columns[name] is None]
        if absent:
            raise InvalidInputError(f"--data: ddpm.context = 'labels' needs {', '.join(absent)} in {data}; "
                                    "label it with `microdesign describe` first, or use ddpm.context = 'fp'")
    present = [name for name in FILES.values() if (out_dir / name).is_file()]
    if present and not (out_dir / "config.json").is_file():
        raise InvalidInputError(f"--out: {out_dir} already holds {', '.join(present)} that no fine-tuning run wrote; choose a new folder")
    run = {"kind": kind, "init_from": str(init_from.resolve()), "stages": list(stages), "finetune": config.model_dump(mode="json")}
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_out_dir(out_dir, _Record(run), len(table))

    train_idx, val_idx = split_by_series(table["series"].to_numpy(), config.data.val_fraction, seed=config.data.seed)
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING if progress else logging.ERROR)
    L.seed_everything(config.data.seed, verbose=False)
    tc = config.trainer
    callbacks = callbacks or {}
    volumes = Volumes(dataset)

    def fit(module: L.LightningModule, stage: str, sc: StageConfig, train_set, val_set) -> None:
        fit_stage(
            module, _loader(train_set, sc.batch_size, True, tc.num_workers if stage == "vae" else 0),
            _loader(val_set, sc.batch_size, False, tc.num_workers if stage == "vae" else 0) if len(val_set) else None,
            stage=stage, out_dir=out_dir, max_steps=sc.max_steps, val_every=sc.val_every, checkpoint_every=sc.checkpoint_every,
            trainer=tc, progress=progress, callbacks=callbacks.get(stage, ()), lr_schedule=sc.lr_schedule,
        )

    with speed_settings(tc):
        if "vae" in stages:
            vae_file = out_dir / FILES["vae"]
            if not vae_file.is_file():
                with stage_timer(out_dir, "vae", config.vae.max_steps):
                    vae.kl_weight = config.vae.kl_weight
                    module = VAEModule(vae.train(), lr=config.vae.lr, weight_decay=config.vae.weight_decay, channels_last=tc.channels_last)
                    fit(module, "vae", config.vae, Subset(volumes, train_idx), Subset(volumes, val_idx))
                    _save(module.vae.to(memory_format=torch.contiguous_format).state_dict(), vae_file)
            vae.load_state_dict(_load(vae_file))
        vae.cpu()

        if "fp" in stages or "ddpm" in stages:
            latent_file = out_dir / "latents.pt"
            symmetries = in_plane_symmetries(spec.volume_shape) if config.data.augment == "in_plane" else 1
            if not latent_file.is_file():
                with stage_timer(out_dir, "encode"):
                    mu, sigma = encode_volumes(_Posterior(vae), volumes, batch_size=config.vae.batch_size, device=_device(tc),
                                               progress=progress, num_workers=tc.num_workers, symmetries=symmetries)
                    _save({"mu": mu, "sigma": sigma}, latent_file)
            vae.cpu()
            encoded = _load(latent_file)
            mu, sigma = encoded["mu"], encoded["sigma"]
            n = len(table)
            # latent rows s * N + i: volume i under in-plane symmetry s; train on every symmetry of the training series,
            # validate on the validation volumes as they are
            train_rows = torch.as_tensor(np.concatenate([s * n + np.asarray(train_idx) for s in range(symmetries)]), dtype=torch.long)
            val_rows = torch.as_tensor(np.asarray(val_idx), dtype=torch.long)
            zeros, ones = torch.zeros(spec.latent_channels), torch.ones(spec.latent_channels)  # published: no latent scaling

            def latent_sets(values: torch.Tensor) -> tuple[TensorDataset, TensorDataset]:
                """Train / validation sets of ``(mu, sigma, values)`` per latent row."""
                return (TensorDataset(mu[train_rows], sigma[train_rows], values[train_rows]),
                        TensorDataset(mu[val_rows], sigma[val_rows], values[val_rows]))

            def per_row(values: np.ndarray) -> torch.Tensor:
                """Per-sample ``values`` (N, K) repeated for every symmetry row (S * N, K)."""
                return torch.as_tensor(np.tile(values, (symmetries, 1)), dtype=torch.float32)

        if "fp" in stages:
            fp_file = out_dir / FILES["fp"]
            if not fp_file.is_file():
                with stage_timer(out_dir, "fp", config.fp.max_steps):
                    targets = per_row(table[[columns[name] for name in trained]].to_numpy(dtype=np.float64))
                    outputs = _Outputs(fp.train(), [spec.attributes.index(name) for name in trained])
                    module = FeaturePredictorModule(outputs, zeros, ones, lr=config.fp.lr, weight_decay=config.fp.weight_decay)
                    fit(module, "fp", config.fp, *latent_sets(targets))
                    _save(fp.state_dict(), fp_file)
            fp.load_state_dict(_load(fp_file))
        fp.cpu().eval()

        if "ddpm" in stages:
            ddpm_file = out_dir / FILES["ddpm"]
            if not ddpm_file.is_file():
                with stage_timer(out_dir, "ddpm", config.ddpm.max_steps):
                    if config.ddpm.context == "fp":
                        with torch.inference_mode():
                            predicted = torch.cat([fp(chunk) for chunk in mu.split(256)])
                        context = predicted[:, [spec.attributes.index(name) for name in spec.context_attributes]].clone()
                    else:
                        context = per_row(table[[columns[name] for name in spec.context_attributes]].to_numpy(dtype=np.float64))
                    module = DenoiserModule(
                        _PublishedDenoiser(ddpm.train()), noise_schedule(dict(ddpm.named_buffers())), zeros, ones, lr=config.ddpm.lr,
                        weight_decay=config.ddpm.weight_decay, condition_dropout=0.0, ema_decay=config.ddpm.ema_decay,
                    )
                    fit(module, "ddpm", config.ddpm, *latent_sets(context))
                    _save(module.denoiser().ddpm.state_dict(), ddpm_file)
            ddpm.load_state_dict(_load(ddpm_file))

    metadata = {
        "name": config.name,
        "init_from": str(init_from.resolve()),
        "stages": list(stages),
        "data": [str(f) for f in dataset.files],
        "n_samples": len(table),
        "fp_attributes_trained": trained if "fp" in stages else [],
        "ddpm_context": config.ddpm.context if "ddpm" in stages else None,
        "simulation": simulation_record(dataset.files),
        "config": config.model_dump(mode="json"),
    }
    return save_networks(out_dir, kind, vae.cpu(), fp.cpu(), ddpm.cpu(), metadata=metadata,
                         descriptor_table=_descriptor_table(table, spec))


class _Record:
    """What :func:`~generator.training.stages._check_out_dir` records of a run (``model_dump``)."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record

    def model_dump(self, mode: str = "json") -> dict[str, Any]:
        return json.loads(json.dumps(self.record))
