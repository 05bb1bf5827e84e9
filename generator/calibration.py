"""Calibration films of a generator bundle: fresh physics series that calibrate its recipe posterior per film size.

The recipe posterior (``inverse.posterior``) reads a film's recipe from its
descriptors. How far the true recipe lies from the prediction depends on the
film's size (a larger film's descriptors are less noisy), so a bundle carries
*calibration films*: films of series the training never saw, simulated with the
bundle's own physics at the sizes its films will be read at. ``microdesign
train`` simulates them at the generated size; :func:`calibration_preset` and
:func:`add_calibration_films` (``microdesign calibrate``) add them at any other
size to an existing bundle, leaving its networks untouched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from generator.checkpoint import (
    FILM_SHAPE_COLUMNS,
    bundle_calibration_table,
    check_calibration_table,
    table_to_tensor,
    tensor_to_table,
    with_film_shape,
)
from generator.descriptors.registry import BOOKKEEPING_COLUMNS
from generator.errors import InvalidInputError
from generator.physics.presets import DatasetPreset, load_preset
from generator.physics.recipes import RECIPE_NAMES

__all__ = ["add_calibration_films", "calibration_preset", "check_fresh_seeds"]


def calibration_preset(simulation: Mapping[str, Any], size: Sequence[int], *, n_series: int, seed: int,
                       preset: str | None = None) -> DatasetPreset:
    """The dataset preset of a bundle's calibration films at one film size.

    Parameters
    ----------
    simulation
        The bundle's ``simulation`` record (``{"preset", "ch_parameters", "n_phases"}``): the
        named preset's recipe ranges with the recorded Cahn-Hilliard parameters.
    size
        ``(X, Y, Z)`` of the calibration films.
    n_series, seed
        A scrambled-Halton design of ``n_series`` recipes; series ``i`` has noise seed ``seed + i``.
    preset
        A dataset preset (name or TOML file) for a bundle that does not record its
        training physics; refused when it does (calibration films must be made
        with the training physics).

    Returns
    -------
    DatasetPreset
        The preset to simulate (``simulate_dataset``).

    Raises
    ------
    InvalidInputError
        No record and no ``preset``, a ``preset`` beside a record, ``n_series`` < 1, or a
        size the simulator refuses.
    """
    if n_series < 1:
        raise InvalidInputError(f"--n-series: must be at least 1, got {n_series}")
    recorded = bool(simulation.get("preset") and simulation.get("ch_parameters"))
    if preset is not None and recorded:
        raise InvalidInputError(f"--preset: the model records the physics of its training data (preset {simulation['preset']}); "
                                "its calibration films are simulated with it")
    if preset is not None:
        base, ch = load_preset(preset), {}
    elif recorded:
        try:
            base = load_preset(simulation["preset"])
        except InvalidInputError:
            raise InvalidInputError(f"preset: the model was trained on the data of preset {simulation['preset']!r}, which is not "
                                    "a shipped preset; name its TOML file with --preset") from None
        ch = dict(simulation["ch_parameters"])
    else:
        raise InvalidInputError("preset: the model does not record how its training data was simulated; name the dataset "
                                "preset with --preset")
    return load_preset(base, design="halton", n_series=int(n_series), seed=int(seed),
                       ch={**ch, "shape": [int(n) for n in size]})


def check_fresh_seeds(bundle: Mapping[str, Any], seeds: Iterable[int]) -> None:
    """Refuse noise seeds of the bundle's training series: calibration films must come from series the training never used.

    Parameters
    ----------
    bundle
        A generator bundle; its ``descriptor_table`` has a ``seed`` column (older bundles: nothing is checked).
    seeds
        The calibration series' noise seeds.

    Raises
    ------
    InvalidInputError
        Naming the first shared seed.
    """
    training = tensor_to_table(bundle["descriptor_table"])
    if "seed" not in training:
        return
    shared = sorted({int(s) for s in seeds} & {int(s) for s in training["seed"]})
    if shared:
        raise InvalidInputError(f"calibration: seed {shared[0]} is a training series' noise seed; calibration films must come "
                                "from series the training never used (choose another --seed)")


def add_calibration_films(bundle: Mapping[str, Any], films: pd.DataFrame, shape: Sequence[int]) -> dict[str, Any]:
    """A bundle whose calibration films of one shape are ``films`` (earlier films of that shape replaced).

    Parameters
    ----------
    bundle
        A generator bundle (``read_bundle``); its networks are kept as they are.
    films
        ``(n, ...)`` labelled films (``sample_table`` of a described dataset): every
        descriptor column of the bundle's training table (the recipe among them),
        ``STAT_n``, ``series`` and ``seed``.
    shape
        ``(X, Y, Z)`` of the films.

    Returns
    -------
    dict
        The bundle with its ``calibration_table`` replaced: the earlier films of other
        shapes (those of a table without shape columns are the bundle's ``volume_shape``), then ``films``.

    Raises
    ------
    InvalidInputError
        A missing column, fewer than 10 films, or a film from a series the training
        used (a shared noise seed).
    """
    training = tensor_to_table(bundle["descriptor_table"])
    shape = tuple(int(n) for n in shape)
    films = with_film_shape(films, shape)
    check_calibration_table(films, (*RECIPE_NAMES, *(c for c in training.columns if c not in BOOKKEEPING_COLUMNS)))
    if "seed" in films:
        check_fresh_seeds(bundle, films["seed"])
    kept = []
    earlier = bundle_calibration_table(bundle)
    if earlier is not None:
        same = np.all(earlier[list(FILM_SHAPE_COLUMNS)].to_numpy(dtype=int) == np.array(shape), axis=1)
        kept = [earlier.loc[~same]]
    table = pd.concat([*kept, films], ignore_index=True)
    return {**bundle, "calibration_table": table_to_tensor(table)}
