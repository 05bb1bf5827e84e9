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

from generator.checkpoint import calibration_groups, check_calibration_table, table_to_tensor, tensor_to_table
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
        A dataset preset (name or TOML file) to use instead of the record (required
        when the bundle has none, e.g. a bundle trained on a custom preset file).

    Returns
    -------
    DatasetPreset
        The preset to simulate (``simulate_dataset``).

    Raises
    ------
    InvalidInputError
        No record and no ``preset``, ``n_series`` < 1, or a size the simulator refuses.
    """
    if n_series < 1:
        raise InvalidInputError(f"--n-series: must be at least 1, got {n_series}")
    if preset is not None:
        base, ch = load_preset(preset), {}
    elif simulation.get("preset") and simulation.get("ch_parameters"):
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


def check_fresh_seeds(bundle: Mapping[str, Any], seeds: Iterable[float]) -> None:
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


def add_calibration_films(bundle: Mapping[str, Any], films: pd.DataFrame) -> dict[str, Any]:
    """A bundle whose calibration films of one size are ``films`` (earlier films of that size replaced).

    Parameters
    ----------
    bundle
        A generator bundle (``read_bundle``); its networks are kept as they are.
    films
        ``(n, ...)`` labelled films of one size (``sample_table`` of a described
        dataset): the recipe, the bundle's attributes, ``STAT_n``, ``series`` and ``seed``.

    Returns
    -------
    dict
        The bundle with its ``calibration_table`` replaced: the earlier films of other sizes, then ``films``.

    Raises
    ------
    InvalidInputError
        A missing recipe or attribute column, films of several sizes or fewer than
        10 films, or a film from a series the training used (a shared noise seed).
    """
    attributes = [name for name in bundle["attribute_names"] if name not in RECIPE_NAMES]
    check_calibration_table(films, (*RECIPE_NAMES, *attributes))
    groups = calibration_groups(films)
    if len(groups) > 1:
        sizes = ", ".join(f"{voxels:,.0f}" for voxels, _ in groups)
        raise InvalidInputError(f"calibration: the films have several sizes ({sizes} voxels); calibrate one size at a time")
    voxels, films = groups[0]
    if "seed" in films:
        check_fresh_seeds(bundle, films["seed"])
    stored = bundle.get("calibration_table")
    kept = []
    if stored is not None:
        earlier = tensor_to_table(stored)
        size = pd.to_numeric(earlier["STAT_n"], errors="coerce").to_numpy(dtype=float)
        kept = [earlier.loc[~np.isclose(size, voxels)]]
    table = pd.concat([*kept, films], ignore_index=True)
    return {**bundle, "calibration_table": table_to_tensor(table)}
