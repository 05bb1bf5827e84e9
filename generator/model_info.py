"""What a generator is, read without sampling it.

:func:`model_info` gathers a model's record (shape, phases, conditions, data,
physics, card) for ``microdesign info``; :func:`read_model_record` the smaller
:class:`ModelRecord` that recipe verification and the recipe posterior need.

The record is read from a bundle without building its networks (or from a
MicroGen3D weights folder by loading it), so ``microdesign info`` is quick. A
model card written by ``benchmarks/model_card.py`` beside a bundle
(``<bundle>.card.json``) adds its headline numbers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from generator.checkpoint import bundle_calibration_table, calibration_groups, in_plane_multiple_of_configs, read_bundle, tensor_to_table
from generator.errors import FileFormatError
from generator.loading import DEFAULT_BUNDLE, load_generator
from generator.models.microgen3d import read_metadata
from generator.physics.recipes import RECIPE_NAMES
from generator.pipeline import SAMPLING_DEFAULTS

#: Suffix of the model-card summary written beside a bundle (``default.pt`` -> ``default.card.json``).
CARD_SUFFIX = ".card.json"


@dataclass
class ModelInfo:
    """A model's record.

    Attributes
    ----------
    source
        The bundle file or weights folder.
    kind
        ``"bundle"`` or the MicroGen3D kind.
    n_phases
        2 or 3.
    volume_shape
        ``(X, Y, Z)`` of generated films by default.
    training_shape
        ``(X, Y, Z)`` of the training films.
    latent_shape
        ``(C, x, y, z)`` at ``volume_shape``.
    in_plane_multiple
        Step of the in-plane sizes it can generate (0: ``volume_shape`` only).
    conditions
        ``{name: (lo, hi)}`` training range of every condition (NaN when unknown).
    attributes
        The feature predictor's outputs, in order.
    n_training_samples, n_training_series
        Size of the training table (0 when the model carries none).
    n_calibration_films, n_calibration_series
        Size of the recipe posterior's calibration table (films from unused series, summed over
        their film sizes; 0: none).
    calibration_sizes
        The calibration films per film shape, fewest voxels first: ``{"shape", "films", "series"}``.
    dataset
        ``{"preset", "n_phases", "ch_parameters"}``: how the training data was simulated (empty when unknown).
    training
        Training config name, wall and CPU seconds per stage (``stages``), and their totals.
    card
        Headline numbers of the model card (empty when there is none).
    sampling
        ``{"sampler", "steps", "guidance"}`` that generation uses when not told.
    """

    source: str
    kind: str
    n_phases: int
    volume_shape: tuple[int, ...]
    training_shape: tuple[int, ...]
    latent_shape: tuple[int, ...]
    in_plane_multiple: int
    conditions: dict[str, tuple[float, float]]
    attributes: list[str]
    n_training_samples: int = 0
    n_training_series: int = 0
    n_calibration_films: int = 0
    n_calibration_series: int = 0
    calibration_sizes: list[dict[str, Any]] = field(default_factory=list)
    dataset: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    card: dict[str, Any] = field(default_factory=dict)
    sampling: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples as lists)."""
        out = asdict(self)
        out["conditions"] = {k: list(v) for k, v in self.conditions.items()}
        return json.loads(json.dumps(out, default=_jsonable))


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(type(value).__name__)


def card_path(bundle: str | os.PathLike[str]) -> Path:
    """Where the model-card summary of a bundle lives: ``<bundle without .pt>.card.json``."""
    path = Path(bundle)
    return path.with_name(path.stem + CARD_SUFFIX)


def read_card(bundle: str | os.PathLike[str]) -> dict[str, Any]:
    """The model-card summary beside a bundle, or ``{}`` when there is none or it is unreadable."""
    path = card_path(bundle)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def model_info(path: str | os.PathLike[str] = "default", *, kind: str | None = None) -> ModelInfo:
    """The record of a model: ``"default"``, a bundle file, or a MicroGen3D folder (with ``kind``).

    Raises
    ------
    MicrodesignError
        When the path is missing or not a model (one-line message).
    """
    target = DEFAULT_BUNDLE if str(path) == "default" else Path(path)
    if target.is_dir():
        gen = load_generator(target, kind=kind)
        return ModelInfo(
            source=str(target), kind=str(kind), n_phases=gen.n_phases, volume_shape=gen.volume_shape,
            training_shape=gen.training_shape, latent_shape=gen.latent_shape, in_plane_multiple=gen.in_plane_multiple,
            conditions={n: tuple(gen.condition_ranges.get(n, (float("nan"), float("nan")))) for n in gen.condition_names},
            attributes=list(gen.attribute_names), sampling=dict(gen.sampling_defaults),
        )
    if not target.exists():
        raise FileFormatError(f"model: {target} does not exist")
    bundle = read_bundle(target)
    table = tensor_to_table(bundle["descriptor_table"])
    conditions = {
        name: ((float(table[name].min()), float(table[name].max())) if name in table else (float("nan"), float("nan")))
        for name in bundle["condition_names"]
    }
    simulation = bundle.get("simulation") or {}
    calibration = bundle_calibration_table(bundle)
    sizes = [] if calibration is None else calibration_sizes(calibration)
    training = dict(bundle.get("training_record") or {})
    training.setdefault("config", (bundle["configs"].get("training") or {}).get("name"))
    return ModelInfo(
        source=str(target), kind="bundle", n_phases=int(bundle["n_phases"]),
        volume_shape=tuple(bundle["volume_shape"]), training_shape=tuple(bundle.get("training_shape") or bundle["volume_shape"]),
        latent_shape=tuple(bundle["latent_shape"]), in_plane_multiple=in_plane_multiple_of_configs(bundle["configs"]),
        conditions=conditions, attributes=list(bundle["attribute_names"]),
        n_training_samples=len(table), n_training_series=int(table["series"].nunique()) if "series" in table else 0,
        n_calibration_films=sum(size["films"] for size in sizes),
        n_calibration_series=sum(size["series"] for size in sizes),
        calibration_sizes=sizes,
        dataset=dict(simulation), training=training, card=read_card(target),
        sampling={**SAMPLING_DEFAULTS, **dict(bundle.get("sampling_defaults") or {})},
    )


def calibration_sizes(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Calibration films per film shape (``bundle_calibration_table``), fewest voxels first: ``{"shape", "films", "series"}``."""
    return [{"shape": list(shape) if shape else None, "films": len(films),
             "series": int(films["series"].nunique()) if "series" in films else 0}
            for shape, films in calibration_groups(table)]


@dataclass(frozen=True)
class ModelRecord:
    """What verification needs to know about a generator (its networks are not needed).

    Attributes
    ----------
    n_phases
        2 or 3: how simulated fields are labelled.
    volume_shape
        ``(X, Y, Z)`` of the generated films (the generator's default size).
    recipe_names
        The recipe variables the feature predictor outputs.
    descriptor_table
        The training set's attributes (``None`` for MicroGen3D weights).
    simulation
        The bundle's ``simulation`` record (``preset``, ``ch_parameters``,
        ``n_phases``) or ``None`` when the model does not record it.
    training_shape
        ``(X, Y, Z)`` of the training films, when recorded.
    calibration_table
        Films from unused series, one or more film shapes (``FILM_SHAPE_COLUMNS``), which calibrate the recipe posterior (or ``None``).
    """

    n_phases: int
    volume_shape: tuple[int, int, int]
    recipe_names: tuple[str, ...]
    descriptor_table: pd.DataFrame | None
    simulation: Mapping[str, Any] | None
    training_shape: tuple[int, int, int] | None = None
    calibration_table: pd.DataFrame | None = None

    @property
    def trained_on(self) -> tuple[int, int, int]:
        """``(X, Y, Z)`` of the training films (:attr:`volume_shape` when not recorded)."""
        return tuple(self.training_shape or self.volume_shape)


def read_model_record(model: str | os.PathLike[str] = "default", *, kind: str | None = None) -> ModelRecord:
    """Read what verification needs from a bundle (without building its networks) or a MicroGen3D folder.

    Parameters
    ----------
    model
        Bundle file, ``"default"`` or a folder of MicroGen3D weights (then ``kind``,
        unless it is a fine-tuned folder, whose ``microgen3d.json`` also records
        how its data was simulated).

    Raises
    ------
    MicrodesignError
        When the model cannot be found or read.
    """
    path = DEFAULT_BUNDLE if str(model) == "default" else Path(model)
    if (str(model) == "default" and not path.is_file()) or path.is_dir():
        generator = load_generator(model, kind=kind)  # raises the toolkit's message for a missing default
        meta = read_metadata(path) if path.is_dir() else None  # a fine-tuned folder records how its data was simulated
        return ModelRecord(
            n_phases=int(generator.n_phases), volume_shape=tuple(generator.volume_shape),
            recipe_names=tuple(generator.recipe_names), descriptor_table=generator.descriptor_table,
            simulation=(meta or {}).get("simulation"),
            training_shape=tuple(getattr(generator, "training_shape", generator.volume_shape)),
            calibration_table=getattr(generator, "calibration_table", None),
        )
    bundle = read_bundle(path)
    return ModelRecord(
        n_phases=int(bundle["n_phases"]),
        volume_shape=tuple(int(s) for s in bundle["volume_shape"]),
        recipe_names=tuple(n for n in RECIPE_NAMES if n in bundle["attribute_names"]),
        descriptor_table=tensor_to_table(bundle["descriptor_table"]),
        simulation=bundle.get("simulation"),
        training_shape=tuple(int(s) for s in bundle.get("training_shape") or bundle["volume_shape"]),
        calibration_table=bundle_calibration_table(bundle),
    )
