"""The generator bundle: one file with the three networks, their configs and the data statistics.

Format (``format_version`` 1)
-----------------------------
A ``torch.save`` of plain containers only (dicts, lists, strings, numbers and
tensors), so it loads with ``torch.load(weights_only=True)``: opening a bundle
never executes code. Keys:

``format`` (``"microdesign-generator"``), ``format_version``, ``n_phases``,
``volume_shape`` ``[X, Y, Z]``, ``latent_shape`` ``[C, x, y, z]``,
``condition_names`` (the denoiser's context, in order), ``attribute_names`` (the
feature predictor's outputs, in order), ``configs`` (``vae``,
``feature_predictor``, ``unet``, ``schedule`` and the whole ``training`` config),
``normalisation`` (``context_mean``/``context_std`` ``(K,)``,
``latent_mean``/``latent_std`` ``(C,)``; the feature predictor's target mean/std
are buffers of its state dict). The denoiser and the feature predictor work on
*normalised* latents ``(mu - latent_mean) / latent_std`` (per channel); the
decoder gets them back in VAE units, ``state_dicts`` (``vae``, ``feature_predictor``,
``unet``) and ``descriptor_table`` (``columns`` and a float64 ``values`` tensor
``(N, M)``: every descriptor and recipe attribute of every training sample,
plus ``series``). Optional: ``simulation`` (``{"preset", "n_phases",
"ch_parameters"}``, how the training data was simulated, from the dataset's root
attributes; ``None`` for other data), used to verify recipes by simulation;
``training_shape`` ``[X, Y, Z]``, the films the networks were trained on when
``volume_shape`` (the default size of generated films) differs from it (fully
convolutional networks with periodic in-plane padding generate any in-plane
size that is a multiple of their stride); ``training_record`` (wall and CPU
seconds of each training stage, from the run's ``stage_times.jsonl``);
``sampling_defaults`` (``sampler``, ``steps``, ``guidance`` that ``generate`` uses when
not told: the settings measured best for this model, ``ddpm.sampling`` of its config);
``calibration_table`` (a table like ``descriptor_table`` plus each film's shape in
:data:`FILM_SHAPE_COLUMNS`: films from series the training never used, at
``volume_shape`` (``microdesign train``) or any other shape (``microdesign
calibrate``), which calibrate the recipe posterior for films of their shape,
:mod:`inverse.posterior`; ``None`` when not made).
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from generator.diffusion import NoiseSchedule
from generator.errors import CheckpointError, FileFormatError, InvalidInputError
from generator.io import atomic_path
from generator.models import VAE, FeaturePredictor, FeaturePredictorConfig, LatentUNet, LatentUNetConfig, VAEConfig

BUNDLE_FORMAT = "microdesign-generator"
FORMAT_VERSION = 1
_REQUIRED = (
    "format_version",
    "n_phases",
    "volume_shape",
    "latent_shape",
    "condition_names",
    "attribute_names",
    "configs",
    "normalisation",
    "state_dicts",
    "descriptor_table",
)
_NETWORKS = ("vae", "feature_predictor", "unet")


def table_to_tensor(table: pd.DataFrame) -> dict[str, Any]:
    """``{"columns": [...], "values": float64 tensor (N, M)}`` of a numeric DataFrame."""
    return {"columns": [str(c) for c in table.columns], "values": torch.as_tensor(table.to_numpy(dtype=np.float64))}


def tensor_to_table(stored: Mapping[str, Any]) -> pd.DataFrame:
    """Inverse of :func:`table_to_tensor`; ``series`` (and ``snapshot``) become integer columns."""
    table = pd.DataFrame(stored["values"].numpy(), columns=list(stored["columns"]))
    for name in ("series", "snapshot"):
        if name in table:
            table[name] = table[name].round().astype(np.int64)
    return table


#: The fewest calibration films (with a voxel count) a recipe-posterior calibration rests on.
MIN_CALIBRATION_FILMS = 10


def optional_table(bundle: Mapping[str, Any], key: str) -> pd.DataFrame | None:
    """A bundle's optional table (e.g. ``calibration_table``) as a DataFrame, or ``None`` when absent."""
    stored = bundle.get(key)
    return tensor_to_table(stored) if stored is not None else None


#: Columns of a calibration table that hold each film's shape (``X, Y, Z``). ``STAT_n`` is no measure of it:
#: three-phase films count only their donor and acceptor voxels there. Tables written before these columns
#: hold films of one size, the bundle's ``volume_shape``.
FILM_SHAPE_COLUMNS = ("film_x", "film_y", "film_z")


def with_film_shape(table: pd.DataFrame, shape: Sequence[int]) -> pd.DataFrame:
    """``table`` with its films' shape ``(X, Y, Z)`` in :data:`FILM_SHAPE_COLUMNS`."""
    return table.assign(**{column: int(n) for column, n in zip(FILM_SHAPE_COLUMNS, shape)})


def bundle_calibration_table(bundle: Mapping[str, Any]) -> pd.DataFrame | None:
    """A bundle's calibration films with their shapes, or ``None``.

    Tables written by training before :data:`FILM_SHAPE_COLUMNS` existed hold films of one size,
    the bundle's ``volume_shape``: they get it here, so every reader sees the shapes.
    """
    table = optional_table(bundle, "calibration_table")
    if table is not None and not set(FILM_SHAPE_COLUMNS) <= set(table.columns):
        table = with_film_shape(table, bundle["volume_shape"])
    return table


def calibration_groups(table: pd.DataFrame) -> list[tuple[tuple[int, ...] | None, pd.DataFrame]]:
    """Calibration films grouped by film shape.

    Parameters
    ----------
    table
        One row per calibration film, with ``STAT_n`` (the film's voxel count, or its donor
        and acceptor voxels in a three-phase film) and :data:`FILM_SHAPE_COLUMNS`.

    Returns
    -------
    list of (tuple or None, pandas.DataFrame)
        ``(shape, films)`` per film shape, fewest voxels first; a table without the shape
        columns is one group of shape ``None`` (the bundle's ``volume_shape``). Films without a
        finite, positive ``STAT_n`` are left out (an empty list without the column).
    """
    if "STAT_n" not in table.columns:
        return []
    voxels = pd.to_numeric(table["STAT_n"], errors="coerce").to_numpy(dtype=float)
    films = table.loc[np.isfinite(voxels) & (voxels > 0)]
    if films.empty:
        return []
    if not set(FILM_SHAPE_COLUMNS) <= set(films.columns):
        return [(None, films)]
    groups = [(tuple(int(n) for n in shape), group) for shape, group in films.groupby(list(FILM_SHAPE_COLUMNS), sort=False)]
    return sorted(groups, key=lambda item: (int(np.prod(item[0])), item[0]))


def check_calibration_table(table: pd.DataFrame, needed: Sequence[str] = ()) -> None:
    """Refuse calibration films that cannot calibrate a recipe posterior.

    Parameters
    ----------
    table
        One row per calibration film; several film sizes may share it (each calibrates films of its size).
    needed
        Columns it must hold besides ``STAT_n`` (the recipe, the descriptors the posterior reads).

    Raises
    ------
    InvalidInputError
        A missing column, no film with a finite, positive ``STAT_n``, or a film
        shape with fewer than :data:`MIN_CALIBRATION_FILMS` films.
    """
    missing = [n for n in (*needed, "STAT_n") if n not in table.columns]
    if missing:
        raise InvalidInputError(f"calibration: the calibration films have no {missing[0]!r} column")
    groups = calibration_groups(table)
    if not groups:
        raise InvalidInputError(f"calibration: need at least {MIN_CALIBRATION_FILMS} calibration films with a voxel count (STAT_n), "
                                "got 0")
    for shape, films in groups:
        if len(films) < MIN_CALIBRATION_FILMS:
            size = "x".join(map(str, shape)) if shape else f"{float(films['STAT_n'].median()):,.0f} voxels"
            raise InvalidInputError(f"calibration: need at least {MIN_CALIBRATION_FILMS} calibration films of each size, "
                                    f"got {len(films)} of {size}")


def make_bundle(
    *,
    vae: VAE,
    feature_predictor: FeaturePredictor,
    unet: LatentUNet,
    schedule: NoiseSchedule,
    volume_shape: Sequence[int],
    condition_names: Sequence[str],
    attribute_names: Sequence[str],
    context_mean: torch.Tensor,
    context_std: torch.Tensor,
    latent_mean: torch.Tensor,
    latent_std: torch.Tensor,
    descriptor_table: pd.DataFrame,
    training_config: Mapping[str, Any] | None = None,
    simulation: Mapping[str, Any] | None = None,
    training_shape: Sequence[int] | None = None,
    training_record: Mapping[str, Any] | None = None,
    sampling_defaults: Mapping[str, Any] | None = None,
    calibration_table: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Assemble the bundle dictionary (see module docstring) from trained networks."""
    latent_shape = vae.config.latent_shape(tuple(volume_shape))
    return {
        "training_shape": [int(s) for s in (training_shape or volume_shape)],
        "format": BUNDLE_FORMAT,
        "format_version": FORMAT_VERSION,
        "n_phases": vae.config.n_phases,
        "volume_shape": [int(s) for s in volume_shape],
        "latent_shape": list(latent_shape),
        "condition_names": list(condition_names),
        "attribute_names": list(attribute_names),
        "configs": {
            "vae": vae.config.model_dump(),
            "feature_predictor": feature_predictor.config.model_dump(),
            "unet": unet.config.model_dump(),
            "schedule": schedule.model_dump(),
            "training": dict(training_config or {}),
        },
        "normalisation": {
            "context_mean": context_mean.detach().cpu().double(),
            "context_std": context_std.detach().cpu().double(),
            "latent_mean": latent_mean.detach().cpu().float(),
            "latent_std": latent_std.detach().cpu().float(),
        },
        "state_dicts": {
            name: {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
            for name, net in zip(_NETWORKS, (vae, feature_predictor, unet))
        },
        "descriptor_table": table_to_tensor(descriptor_table),
        "simulation": dict(simulation) if simulation else None,
        "training_record": dict(training_record or {}),
        "sampling_defaults": dict(sampling_defaults or {}),
        "calibration_table": table_to_tensor(calibration_table) if calibration_table is not None else None,
    }


class NonFiniteOutputError(CheckpointError):
    """A network of a loaded model returned NaN or infinite values (corrupt or diverged weights)."""


def zip_problem(path: str | os.PathLike[str]) -> str | None:
    """Why a ``torch.save`` file (a zip archive) is damaged, or ``None`` when every member passes its CRC check.

    ``torch.load`` notices a truncated file but loads flipped bytes in tensor
    data silently; the zip CRCs catch both.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        return str(exc) or type(exc).__name__
    return None if bad is None else f"bad CRC in {bad}"


def save_bundle(bundle: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``bundle`` to ``path`` atomically; returns the path.

    Raises
    ------
    CheckpointError
        When a network holds NaN or infinite weights (training diverged, or
        the data held NaN): such a bundle would generate nothing usable, and is
        not written.
    """
    path = Path(path)
    for network, state in bundle.get("state_dicts", {}).items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
                raise CheckpointError(f"model: the trained {network} holds NaN or infinite weights ({key}); training diverged "
                                      f"or the data holds NaN; no bundle was written to {path}")
    with atomic_path(path) as tmp:
        torch.save(dict(bundle), tmp)
    return path


def read_bundle(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a bundle dictionary safely (``weights_only=True``) and check its format and keys.

    Raises
    ------
    FileFormatError
        When the file is missing or not a bundle.
    CheckpointError
        When it is a bundle of another format version or lacks required keys.
    """
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"model: bundle {path} does not exist")
    problem = zip_problem(path)  # first: a flipped byte can also make torch.load fail, with a less clear message
    if problem is not None and not str(problem).startswith(("File is not a zip file", "Bad magic number")):
        raise FileFormatError(f"model: {path} is corrupt ({problem})")
    try:
        bundle = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError) as exc:
        raise FileFormatError(f"model: {path} is not a readable generator bundle ({str(exc).splitlines()[0][:120]})") from None
    if problem is not None:
        raise FileFormatError(f"model: {path} is corrupt ({problem})")
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise FileFormatError(f"model: {path} is not a microdesign generator bundle")
    if bundle.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"model: {path} has bundle format version {bundle.get('format_version')}, this toolkit reads {FORMAT_VERSION}")
    missing = [key for key in _REQUIRED if key not in bundle]
    if missing:
        raise CheckpointError(f"model: bundle {path} lacks the key(s) {', '.join(missing)}")
    missing = [key for key in _NETWORKS if key not in bundle["state_dicts"]]
    if missing:
        raise CheckpointError(f"model: bundle {path} lacks the state dict(s) of {', '.join(missing)}")
    _check_condition_statistics(bundle, path)
    return bundle


def _check_condition_statistics(bundle: Mapping[str, Any], path: Path) -> None:
    """The context normalisation has one entry per condition, and the descriptor table holds every condition."""
    names = list(bundle["condition_names"])
    for key in ("context_mean", "context_std"):
        stats = bundle.get("normalisation", {}).get(key)
        if stats is not None and len(stats) != len(names):
            raise CheckpointError(f"model: bundle {path} has {len(stats)} {key} values for {len(names)} conditions ({', '.join(names)})")
    table = bundle.get("descriptor_table")
    if table is not None and "columns" in table:
        absent = [n for n in names if n not in table["columns"]]
        if absent:
            raise CheckpointError(f"model: bundle {path}: its descriptor table lacks the condition(s) {', '.join(absent)}")


def load_state_checked(module: nn.Module, state: Mapping[str, torch.Tensor], name: str) -> None:
    """``module.load_state_dict(state)`` with a :class:`CheckpointError` naming missing, unexpected or mis-shaped keys."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {missing[:3]}{' ...' if len(missing) > 3 else ''}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected[:3]}{' ...' if len(unexpected) > 3 else ''}")
    if wrong:
        problems.append(f"shape mismatch (bundle vs model) {'; '.join(wrong[:3])}{' ...' if len(wrong) > 3 else ''}")
    if problems:
        raise CheckpointError(f"model: {name} state dict does not match its config: {', '.join(problems)}")
    module.load_state_dict(state)


def build_networks(bundle: Mapping[str, Any]) -> tuple[VAE, FeaturePredictor, LatentUNet]:
    """Instantiate and load the three networks of a bundle (eval mode, CPU)."""
    configs = bundle["configs"]
    try:
        vae = VAE(VAEConfig(**configs["vae"]))
        latent_shape = vae.config.latent_shape(tuple(bundle["volume_shape"]))
        fp = FeaturePredictor(FeaturePredictorConfig(**configs["feature_predictor"]), latent_shape, len(bundle["attribute_names"]))
        unet = LatentUNet(LatentUNetConfig(**configs["unet"]), latent_shape[0], len(bundle["condition_names"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"model: bundle configs are invalid: {str(exc).splitlines()[0]}") from None
    if list(latent_shape) != list(bundle["latent_shape"]):
        raise CheckpointError(f"model: bundle latent_shape {bundle['latent_shape']} does not match its VAE config ({list(latent_shape)})")
    for name, net in zip(_NETWORKS, (vae, fp, unet)):
        load_state_checked(net, bundle["state_dicts"][name], name)
        net.eval()
    return vae, fp, unet


def in_plane_multiple_of_configs(configs: Mapping[str, Any]) -> int:
    """The in-plane size step of films the networks of a bundle's ``configs`` can generate, or 0 for one size only.

    Positive only when the VAE, the feature predictor and the UNet all pad x and y
    periodically and the feature predictor pools over the latent grid
    (``conv_channels``): then it is the VAE stride times the UNet's downsampling.
    """
    vae, fp, unet = (configs.get(name) or {} for name in ("vae", "feature_predictor", "unet"))
    pads = [c.get("in_plane_padding", "zeros") for c in (vae, fp, unet)]
    if pads != ["periodic"] * 3 or not fp.get("conv_channels"):
        return 0
    return 2 ** len(vae["widths"]) * 2 ** (len(unet.get("channel_mults", [1, 2])) - 1)
