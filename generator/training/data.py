"""Training data: the dataset's volumes (:class:`generator.data.dataset.MicrostructureDataset`) and its sample table."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pandas as pd
import torch

from generator.data.dataset import MicrostructureDataset
from generator.data.hdf5 import open_h5
from generator.descriptors.dataset import describe_dataset
from generator.descriptors.registry import BOOKKEEPING_COLUMNS as BOOKKEEPING
from generator.errors import InvalidInputError
from generator.physics.recipes import RECIPE_NAMES as RECIPE



def open_dataset(data: str | os.PathLike[str]) -> MicrostructureDataset:
    """The training set's volumes; items are ``(grey (1, X, Y, Z), empty values)``."""
    return MicrostructureDataset(data)


def sample_table(dataset: MicrostructureDataset) -> pd.DataFrame:
    """One row per sample (dataset order): every numeric scalar attribute, and ``series`` from the dataset."""
    rows: list[dict[str, float]] = []
    handles: dict[object, h5py.File] = {}
    try:
        for file, name in dataset.names:
            if file not in handles:
                handles[file] = open_h5(file)
            attrs = handles[file][name].attrs
            rows.append({
                k: float(np.asarray(v).reshape(-1)[0])
                for k, v in attrs.items()
                if np.size(v) == 1 and np.issubdtype(np.asarray(v).dtype, np.number)
            })
    finally:
        for handle in handles.values():
            handle.close()
    table = pd.DataFrame(rows)
    table["series"] = np.asarray(dataset.series, dtype=np.int64)
    return table


def described_table(path: str | os.PathLike[str], *, progress: bool = False) -> pd.DataFrame:
    """One row per film of a dataset file (:func:`sample_table`), labelled with the descriptors first if it has none.

    Parameters
    ----------
    path
        A dataset file (``microdesign simulate``); :func:`generator.descriptors.describe_dataset` labels it in place
        (resumable) when its films carry no descriptors yet.
    progress
        Progress bar while labelling.
    """
    table = sample_table(open_dataset(path))
    if "ABS_f_D" not in table.columns:
        describe_dataset(path, progress=progress)
        table = sample_table(open_dataset(path))
    return table


def infer_n_phases(dataset: MicrostructureDataset, n_probe: int = 8) -> int:
    """The files' ``n_phases`` root attribute, else 3 when a probed volume holds mixed grey levels (0.25-0.75), else 2."""
    with open_h5(dataset.files[0]) as h5:
        if "n_phases" in h5.attrs:
            return int(h5.attrs["n_phases"])
    for i in np.linspace(0, len(dataset) - 1, min(n_probe, len(dataset))).astype(int):
        grey = dataset[int(i)][0]
        if bool(((grey > 0.25) & (grey < 0.75)).any()):
            return 3
    return 2


def check_attributes(table: pd.DataFrame, names: list[str], field: str) -> None:
    """Raise :class:`InvalidInputError` naming the first attribute of ``names`` absent from ``table`` or not finite."""
    for name in names:
        if name not in table.columns:
            have = ", ".join(c for c in table.columns if c not in BOOKKEEPING)
            raise InvalidInputError(
                f"{field}: attribute {name!r} is not in the dataset (it has: {have}); label it with `microdesign describe` first"
            )
        if not np.all(np.isfinite(table[name].to_numpy())):
            raise InvalidInputError(f"{field}: attribute {name!r} has missing or non-finite values")


def feature_attributes(table: pd.DataFrame, conditions: list[str], requested: list[str]) -> list[str]:
    """The feature predictor's outputs: ``requested``, or the conditions, every other finite attribute, recipe last."""
    if requested:
        return list(requested)
    finite = [c for c in table.columns if c not in BOOKKEEPING and np.all(np.isfinite(table[c].to_numpy()))]
    others = [c for c in finite if c not in conditions and c not in RECIPE]
    return list(conditions) + others + [c for c in RECIPE if c in finite]


class Volumes(torch.utils.data.Dataset):
    """Only the grey volume ``(1, X, Y, Z)`` of each item of a dataset (or subset)."""

    def __init__(self, dataset: torch.utils.data.Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.dataset[index][0]


def in_plane_symmetries(volume_shape: tuple[int, ...]) -> int:
    """How many in-plane symmetries :func:`apply_in_plane_symmetry` offers for volumes of ``(X, Y, Z)``.

    The x and y flips (4); with the x-y transpose as well (8) when ``X == Y``.
    Every descriptor is exactly invariant under them: they map the voxel lattice
    onto itself and leave the electrode (z) axis alone.
    """
    return 8 if volume_shape[0] == volume_shape[1] else 4


def apply_in_plane_symmetry(volumes: torch.Tensor, k: int) -> torch.Tensor:
    """Symmetry ``k`` (0 = identity) of :func:`in_plane_symmetries` applied to ``volumes`` ``(B, C, X, Y, Z)``."""
    if k & 4:
        volumes = volumes.transpose(2, 3)
    dims = [d for bit, d in ((1, 2), (2, 3)) if k & bit]
    return volumes.flip(dims) if dims else volumes
