"""A training dataset from one large volume (tomography, a big simulation): sliding windows, resized, labelled.

This is the reference paper's experimental pipeline and the way to bring your
own microstructures. Windows of ``size`` voxels are cut from the large volume
on a grid of ``stride`` in the film plane (x, y); every window spans the
**full electrode axis** (z), so that the descriptors keep their meaning (paths
from one electrode to the other). Each window is optionally resized with
nearest-neighbour sampling (labels stay labels), stored in the HDF5 layout of
:mod:`generator.data.hdf5` as grey levels (donor 0.0, mixed 0.5, acceptor 1.0),
and finally labelled with the GraSPI-exact descriptors
(:func:`generator.descriptors.describe_dataset`). Provenance: each sample's
``origin`` attribute is its window origin ``[x, y, z]`` in the source volume
(voxels, before resizing), its ``series`` the window index; the root holds the
source file, its shape, the window size, the stride and the resize target.

Crash safety and resuming work as in :func:`generator.data.build.simulate_dataset`:
each batch of windows is written into a copy of the file that atomically
replaces it, so a kill leaves whole windows only; rerunning the same command
skips the windows already written, then labels the rest.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from generator.data.build import _prepare_output
from generator.data.hdf5 import encode_sample, open_h5, read_root_attributes, reported_write_errors, write_root_attributes, write_sample
from generator.descriptors import as_labels
from generator.descriptors.dataset import describe_dataset
from generator.errors import FileFormatError, InvalidInputError
from generator.io import read_volume
from generator.io.atomic import atomic_path
from generator.levels import PhaseLevels, labels_from_grey
from generator.physics.labels import labels_to_grey

#: ``format`` root attribute of datasets made by :func:`dataset_from_volume`.
FORMAT = "microdesign-subvolumes"
FORMAT_VERSION = 1
HDF5_SUFFIXES = (".h5", ".hdf5")


def parse_shape(text: str, option: str, dims: tuple[int, ...] = (2, 3)) -> tuple[int, ...]:
    """``"64x64x32"`` (or ``"64x64"``) -> ``(64, 64, 32)``: the one parser of the ``XxYxZ`` command-line sizes.

    Parameters
    ----------
    text
        Sizes joined by ``x`` (case-insensitive).
    option
        The option's name, for the error message (e.g. ``"--size"``).
    dims
        The numbers of sizes accepted (default 2 or 3).

    Raises
    ------
    InvalidInputError
        Not integers, a size below 1, or another number of sizes; names ``option``.
    """
    try:
        shape = tuple(int(p) for p in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) not in dims or min(shape) < 1:
        form = "XxYxZ" if dims == (3,) else "XxYxZ or XxY"
        raise InvalidInputError(f"{option}: expected {form} (positive integers, e.g. 128x128x64), got {text!r}")
    return shape


def read_large_volume(path: str | os.PathLike[str], *, key: str | None = None) -> np.ndarray:
    """The 3-D volume of a ``.npy .npz .tif .vti .txt`` file or of one dataset of an HDF5 file.

    For HDF5, ``key`` names the dataset; without it the file must hold exactly
    one (a leading axis of length 1, as in ``(1, X, Y, Z)``, is dropped).

    Raises
    ------
    FileFormatError
        Missing or unreadable file, several HDF5 datasets and no ``key``.
    InvalidInputError
        Anything that is not a non-empty 3-D numeric volume.
    """
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"volume file {path} does not exist")
    if path.suffix.lower() in HDF5_SUFFIXES:
        import h5py

        with open_h5(path) as h5:
            names = [k for k in h5 if isinstance(h5[k], h5py.Dataset)]
            if key is None and len(names) != 1:
                raise FileFormatError(f"{path}: holds {len(names)} datasets at its root; name the volume with --key (one of: {', '.join(names[:5])}{' ...' if len(names) > 5 else ''})")
            name = key if key is not None else names[0]
            if name not in h5 or not isinstance(h5[name], h5py.Dataset):
                raise FileFormatError(f"{path}: no dataset {name!r}")
            volume = np.asarray(h5[name][...])
    else:
        if key is not None:
            raise InvalidInputError("--key: only applies to HDF5 files")
        volume = read_volume(path)
    if volume.ndim == 4 and volume.shape[0] == 1:
        volume = volume[0]
    if volume.ndim != 3 or volume.size == 0:
        raise InvalidInputError(f"{path}: expected a 3-D volume (x, y, z), got shape {volume.shape}")
    if not (volume.dtype == bool or np.issubdtype(volume.dtype, np.integer) or np.issubdtype(volume.dtype, np.floating)):
        raise InvalidInputError(f"{path}: expected a numeric volume, got dtype {volume.dtype}")
    return volume


def to_labels(volume: np.ndarray, *, threshold: float | None = None, phase_levels: PhaseLevels | None = None,
              name: str = "volume") -> np.ndarray:
    """``uint8`` labels of a label or grey volume.

    A volume holding only 0, 1 (and 2) is taken as labels. Any other volume
    needs ``threshold`` (two phases: values above are acceptor, any real
    units, e.g. 128 for 8-bit tomography) or ``phase_levels`` (three phases:
    nearest grey level).
    """
    if threshold is not None and phase_levels is not None:
        raise InvalidInputError("--threshold and --phase-levels: give one (two phases: threshold; three phases: levels)")
    volume = np.asarray(volume)
    if np.issubdtype(volume.dtype, np.floating) and not np.all(np.isfinite(volume)):
        raise InvalidInputError(f"{name}: holds NaN or infinite values")
    if phase_levels is not None:
        return labels_from_grey(volume, 3, levels=phase_levels)
    if threshold is None and not (volume.dtype == bool or np.all(np.isin(volume, (0, 1, 2)))):
        lo, hi = float(volume.min()), float(volume.max())
        raise InvalidInputError(f"{name}: holds grey values in [{lo:g}, {hi:g}], not phase labels 0/1/2; "
                                "pass --threshold T (two phases) or --phase-levels DONOR,MIXED,ACCEPTOR (three)")
    return as_labels(volume, threshold=threshold, name=name)


def resize_nearest(volume: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour resize of ``volume`` to ``shape`` (voxel centres mapped, ``floor((i + 0.5) * n_in / n_out)``)."""
    index = [np.minimum(((np.arange(m) + 0.5) * n / m).astype(np.int64), n - 1) for n, m in zip(volume.shape, shape)]
    return volume[np.ix_(*index)]


def window_origins(volume_shape: Sequence[int], size: Sequence[int], stride: int | Sequence[int]) -> list[tuple[int, int, int]]:
    """Origins ``(x, y, 0)`` of the windows, x slowest; windows span the full z axis."""
    sx, sy = (stride, stride) if isinstance(stride, int) else tuple(stride)
    if min(sx, sy) < 1:
        raise InvalidInputError(f"--stride: must be at least 1, got {stride}")
    X, Y, Z = volume_shape
    wx, wy = size[0], size[1]
    if len(size) == 3 and size[2] != Z:
        raise InvalidInputError(f"--size: windows span the full electrode axis (z = {Z} voxels here); give {wx}x{wy}x{Z} or {wx}x{wy}, got z = {size[2]}")
    if wx > X or wy > Y:
        raise InvalidInputError(f"--size: a {wx}x{wy} window does not fit the volume's film plane {X}x{Y}")
    return [(x, y, 0) for x in range(0, X - wx + 1, sx) for y in range(0, Y - wy + 1, sy)]


def dataset_from_volume(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    size: Sequence[int],
    stride: int | Sequence[int],
    resize: Sequence[int] | None = None,
    threshold: float | None = None,
    phase_levels: PhaseLevels | None = None,
    key: str | None = None,
    n_jobs: int | None = None,
    batch_size: int = 64,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Cut, resize, store and label the windows of one large volume (see the module docstring).

    Parameters
    ----------
    source
        ``.npy .npz .tif .vti .txt`` or HDF5 file holding one 3-D volume ``(X, Y, Z)``, z the electrode axis.
    out
        Output HDF5 file (parent folders are created).
    size
        Window ``(wx, wy)`` or ``(wx, wy, Z)`` (the full z axis).
    stride
        Step between window origins in x and y (one value or two).
    resize
        ``(X', Y', Z')`` every window is resized to (nearest neighbour), or ``None``.
    threshold, phase_levels
        How a grey volume becomes labels (see :func:`to_labels`).
    key
        HDF5 dataset name of the volume.
    n_jobs
        Threads for the descriptors.
    batch_size
        Windows written per atomic file update.
    overwrite
        Start afresh instead of resuming.
    progress
        Progress bars.

    Returns
    -------
    Path
        ``out``, labelled with the descriptors; ``microdesign train --data`` reads it.

    Raises
    ------
    InvalidInputError, FileFormatError
        Bad arguments, a source that is not a 3-D volume, or an existing
        ``out`` made from another source or other settings (without ``overwrite``).
    """
    source, out = Path(source), Path(out)
    if batch_size < 1:
        raise InvalidInputError(f"batch_size: must be at least 1, got {batch_size}")
    if resize is not None and (len(resize) != 3 or min(resize) < 1):
        raise InvalidInputError(f"--resize: expected XxYxZ, got {'x'.join(map(str, resize))}")
    if out.resolve() == source.resolve():
        raise InvalidInputError(f"--out: {out} is the source volume; choose another file")
    labels = to_labels(read_large_volume(source, key=key), threshold=threshold, phase_levels=phase_levels, name=str(source))
    origins = window_origins(labels.shape, size, stride)
    window = (int(size[0]), int(size[1]), labels.shape[2])
    target = tuple(int(s) for s in resize) if resize is not None else window
    n_phases = 3 if phase_levels is not None or bool((labels == 2).any()) else 2
    identity = {
        "source": str(source.resolve()), "source_shape": list(labels.shape), "key": key, "window": list(window),
        "stride": [stride, stride] if isinstance(stride, int) else list(stride), "resize": list(target),
        "threshold": threshold, "phase_levels": phase_levels.to_list() if phase_levels is not None else None,
    }

    _prepare_output(out)
    have_file = out.exists() and not overwrite
    done: set[str] = set()
    if have_file:
        attrs = read_root_attributes(out)
        if attrs.get("format") != FORMAT:
            raise FileFormatError(f"{out} exists and is not a dataset made from a volume; choose another path or pass --overwrite")
        if attrs.get("identity") != identity:
            raise InvalidInputError(f"{out} was made from another volume or with other settings; pass --overwrite or choose another path")
        with open_h5(out) as h5:
            done = set(h5.keys())
    root = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "n_phases": n_phases,
        "volume_shape": np.asarray(target, dtype=np.int64), "n_series": len(origins),
        "source": str(source), "identity": json.dumps(identity),
    }
    names = [f"w{i:06d}" for i in range(len(origins))]
    todo = [i for i, name in enumerate(names) if name not in done]
    with tqdm(total=len(origins), initial=len(origins) - len(todo), desc=f"windows of {source.name}", unit="window",
              disable=not progress) as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            with atomic_path(out) as tmp:
                if have_file:
                    shutil.copyfile(out, tmp)
                with reported_write_errors(out), open_h5(tmp, "a" if have_file else "w") as h5:
                    write_root_attributes(h5, {**root, "complete": False})
                    for i in batch:
                        x, y, z = origins[i]
                        cut = labels[x:x + window[0], y:y + window[1], :]
                        grey = labels_to_grey(resize_nearest(cut, target) if target != window else cut)
                        write_sample(h5, names[i], grey, {"series": i, "origin": np.array([x, y, z], dtype=np.int64)},
                                     encoded=encode_sample(grey))
                    h5.attrs["complete"] = start + len(batch) >= len(todo)
            have_file = True
            bar.update(len(batch))
    if not have_file:
        raise InvalidInputError("--size: no window fits the volume")
    describe_dataset(out, n_jobs=n_jobs, progress=progress)
    return out
