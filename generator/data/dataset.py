"""A torch ``Dataset`` over our HDF5 files and MicroGen3D's own (``part_*.h5``).

Both layouts hold one dataset per sample at the file root, whose values reshape
to ``(1, X, Y, Z)`` and whose HDF5 attributes hold descriptor / process values
by name (:mod:`generator.data.hdf5`).
"""

from __future__ import annotations

import glob as globlib
import os
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from generator.data.hdf5 import open_h5
from generator.errors import FileFormatError, InvalidInputError

#: ``in_memory="auto"`` loads the volumes into memory when they take at most this many bytes.
AUTO_IN_MEMORY_BYTES = 2 * 1024**3


def resolve_files(source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files of a source: one file, a folder (its ``*.h5``), a glob such as ``train/part_*.h5``, or a list."""
    if isinstance(source, (list, tuple)):
        return [p for s in source for p in resolve_files(s)]
    text = str(source)
    path = Path(text)
    if path.is_dir():
        files = sorted(path.glob("*.h5"))
    elif any(ch in text for ch in "*?["):
        files = sorted(Path(p) for p in globlib.glob(text))
    else:
        files = [path]
    if not files:
        raise FileFormatError(f"no HDF5 files match {text}")
    for file in files:
        if not file.is_file():
            raise FileFormatError(f"dataset file {file} does not exist")
    return files


def split_by_series(series: Sequence[int] | np.ndarray, val_fraction: float = 0.2, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split sample indices into train / validation by series (never by snapshot).

    Parameters
    ----------
    series
        ``(n_samples,)`` series id of each sample.
    val_fraction
        Fraction of the *series* held out (at least one series when there are two or more).
    seed
        Seed of the random choice of validation series.

    Returns
    -------
    tuple of np.ndarray
        ``(train_indices, val_indices)``, sorted sample indices; no series is in both.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise InvalidInputError(f"val_fraction must lie in [0, 1), got {val_fraction}")
    series = np.asarray(series)
    unique = np.unique(series)
    n_val = int(round(val_fraction * len(unique)))
    if val_fraction > 0 and len(unique) >= 2:
        n_val = min(max(n_val, 1), len(unique) - 1)
    val_series = np.random.default_rng(seed).choice(unique, size=n_val, replace=False) if n_val else unique[:0]
    is_val = np.isin(series, val_series)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


class MicrostructureDataset(Dataset):
    """Grey-level volumes and attribute values from one or more HDF5 files.

    Parameters
    ----------
    source
        A file, a folder, a glob (``data/train/part_*.h5``) or a list of them.
    attributes
        Names of the attributes returned with each volume, in order (e.g.
        ``("ABS_f_D", "CT_f_D_tort1", "CT_f_A_tort1")``). Every sample must have them.
    volume_shape
        Expected ``(X, Y, Z)``; default: the files' ``volume_shape`` root
        attribute, else the shape of the first sample.
    in_memory
        ``True`` reads all volumes into memory once (fast epochs), ``False``
        reads each sample from disk, ``"auto"`` (default) loads when they take
        at most 2 GiB.

    Items are ``(volume, values)``: ``volume`` a float32 tensor ``(1, X, Y, Z)``
    with values in [0, 1], ``values`` a float32 tensor ``(len(attributes),)``.

    Attributes
    ----------
    series : np.ndarray
        ``(n,)`` series id per sample: the ``series`` attribute (made unique per
        file), else one id per distinct ``(phi, chi)``, else one per sample.
    values : np.ndarray
        ``(n, len(attributes))`` float64 attribute values.
    names : list of tuple
        ``(file, dataset name)`` of every sample.
    """

    def __init__(self, source, attributes: Sequence[str] = (), *, volume_shape: Sequence[int] | None = None,
                 in_memory: bool | str = "auto") -> None:
        self.files = resolve_files(source)
        self.attributes = tuple(attributes)
        self.names: list[tuple[Path, str]] = []
        values: list[list[float]] = []
        series_keys: list[tuple] = []
        shape = tuple(int(n) for n in volume_shape) if volume_shape is not None else None
        for file_index, file in enumerate(self.files):
            with open_h5(file) as h5:
                if shape is None and "volume_shape" in h5.attrs:
                    shape = tuple(int(n) for n in h5.attrs["volume_shape"])
                for name in sorted(h5.keys()):
                    dset = h5[name]
                    if not isinstance(dset, h5py.Dataset):
                        continue
                    if shape is None:
                        shape = _infer_shape(dset, file, name)
                    if int(np.prod(dset.shape)) != int(np.prod(shape)):
                        raise FileFormatError(f"{file}:{name} has shape {dset.shape}, which does not reshape to (1, {', '.join(map(str, shape))})")
                    attrs = dset.attrs
                    missing = [a for a in self.attributes if a not in attrs]
                    if missing:
                        raise FileFormatError(f"{file}:{name} lacks attribute {missing[0]!r} (has: {', '.join(sorted(attrs.keys())) or 'none'})")
                    values.append([float(np.asarray(attrs[a]).reshape(-1)[0]) for a in self.attributes])
                    if "series" in attrs:
                        series_keys.append((file_index, int(attrs["series"])))
                    elif "phi" in attrs and "chi" in attrs:
                        series_keys.append((-1, float(attrs["phi"]), float(attrs["chi"])))
                    else:
                        series_keys.append((file_index, name))
                    self.names.append((file, name))
        if not self.names:
            raise FileFormatError(f"no samples in {', '.join(map(str, self.files))}")
        self.volume_shape: tuple[int, int, int] = shape  # type: ignore[assignment]
        self.values = np.asarray(values, dtype=np.float64).reshape(len(self.names), len(self.attributes))
        _, self.series = np.unique(np.array([repr(k) for k in series_keys]), return_inverse=True)
        self._values_t = torch.as_tensor(self.values, dtype=torch.float32)
        nbytes = len(self.names) * int(np.prod(shape)) * 4
        if in_memory not in (True, False, "auto"):
            raise InvalidInputError(f"in_memory must be True, False or 'auto', got {in_memory!r}")
        self.in_memory = nbytes <= AUTO_IN_MEMORY_BYTES if in_memory == "auto" else bool(in_memory)
        self._volumes: np.ndarray | None = self._load_all() if self.in_memory else None
        if not self.in_memory:
            self._check_all_finite()  # a NaN volume would turn every weight NaN, and training would still "succeed"
        self._handles: dict[Path, h5py.File] = {}
        self._pid = os.getpid()

    def _load_all(self) -> np.ndarray:
        volumes = np.empty((len(self.names), 1) + self.volume_shape, dtype=np.float32)
        by_file: dict[Path, list[int]] = {}
        for index, (file, _) in enumerate(self.names):
            by_file.setdefault(file, []).append(index)
        for file, indices in by_file.items():
            with open_h5(file) as h5:
                for index in indices:
                    volumes[index] = np.asarray(h5[self.names[index][1]], dtype=np.float32).reshape((1,) + self.volume_shape)
                    _check_finite(volumes[index], file, self.names[index][1])
        return volumes

    def _check_all_finite(self) -> None:
        """Read every volume once (lazy mode) and raise on the first that holds NaN or infinity."""
        for file in dict.fromkeys(f for f, _ in self.names):
            with open_h5(file) as h5:
                for f, name in self.names:
                    if f == file:
                        _check_finite(np.asarray(h5[name], dtype=np.float32), file, name)

    def _read(self, index: int) -> np.ndarray:
        if self._pid != os.getpid():  # a DataLoader worker: h5py handles are not fork-safe
            self._handles, self._pid = {}, os.getpid()
        file, name = self.names[index]
        handle = self._handles.get(file)
        if handle is None:
            handle = self._handles[file] = open_h5(file)
        return np.asarray(handle[name], dtype=np.float32).reshape((1,) + self.volume_shape)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        volume = self._volumes[index] if self._volumes is not None else self._read(index)
        return torch.from_numpy(volume), self._values_t[index]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handles"] = {}
        return state

    def split(self, val_fraction: float = 0.2, *, seed: int = 0) -> tuple[Subset, Subset]:
        """Train / validation subsets, split by series (see :func:`split_by_series`)."""
        train, val = split_by_series(self.series, val_fraction, seed=seed)
        return Subset(self, train.tolist()), Subset(self, val.tolist())

    def close(self) -> None:
        """Close open file handles (lazy mode)."""
        for handle in self._handles.values():
            handle.close()
        self._handles = {}


def _check_finite(volume: np.ndarray, file: Path, name: str) -> None:
    """Raise :class:`FileFormatError` when a training volume holds NaN or infinite grey levels."""
    if not np.all(np.isfinite(volume)):
        raise FileFormatError(f"{file}:{name} holds NaN or infinite values; remove the sample or simulate it again")


def _infer_shape(dset: h5py.Dataset, file: Path, name: str) -> tuple[int, int, int]:
    shape = tuple(int(n) for n in dset.shape)
    if len(shape) == 4 and shape[0] == 1:
        return shape[1:]  # type: ignore[return-value]
    if len(shape) == 3:
        return shape  # type: ignore[return-value]
    raise FileFormatError(f"{file}:{name} has shape {shape}; pass volume_shape=(X, Y, Z) to reshape it to (1, X, Y, Z)")
