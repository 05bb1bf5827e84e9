"""Label every sample of an HDF5 dataset file with its descriptors (resumable).

Layout (``docs/architecture.md``): every sample is a dataset at the file root,
of shape ``(1, X, Y, Z)`` holding grey levels (donor 0.0, mixed 0.5, acceptor
1.0); the root attribute ``n_phases`` says 2 or 3. The descriptors are written
as attributes of each sample dataset.

Crash and full-disk safety: the file itself is never written in place. The
labels go into a working copy beside it (``.NAME.describing``, made once,
atomically), which replaces the file atomically when every sample is
labelled; a full disk or a kill at any moment leaves the simulation data
untouched. Within the copy, the volumes of a batch are read with it open
read-only, the descriptors are computed on threads with it *closed*, and the
batch's attributes are then written (SIGINT / SIGTERM held back during that
short window), so a kill loses at most one batch: the next run resumes from
the copy (:func:`working_copy_path`), or starts a new copy from the file when
the old one cannot be read or was made from another version of the file.
Labelling therefore needs free space for one more copy of the file.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from generator.descriptors.core import compute
from generator.descriptors.registry import descriptor_names
from generator.errors import FileFormatError, InvalidInputError
from generator.io import atomic_path
from generator.levels import DEFAULT_LEVELS, labels_from_grey
from generator.physics.labels import grey_to_labels

#: Root attributes recording how the file's samples were labelled.
PIXEL_SIZE_ATTR = "descriptors_pixel_size"
PERIODIC_ATTR = "descriptors_periodic"
LEVELS_ATTR = "descriptors_phase_levels"
#: Root attribute of a working copy: the size and modification time of the file it was copied from.
SOURCE_ATTR = "descriptors_source"


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT / SIGTERM back until the block has finished, then deliver them.

    Python handlers (not a thread signal mask, which would leave the worker
    threads to receive a process-directed signal) record the signal; they run
    in the main thread only. Outside the main thread this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda sig, frame: received.append(sig)) for sig in held}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in received:
            signal.raise_signal(sig)


def _n_phases(f, names: list[str], path: Path) -> int:
    value = f.attrs.get("n_phases")
    if value is None:  # a MicroGen3D file: three-phase volumes hold the 0.5 level
        if not names:
            return 2
        grey = np.asarray(f[names[0]][...])
        return 3 if bool(np.any((grey > 0.25) & (grey < 0.75))) else 2
    n = int(np.asarray(value).item())
    if n not in (2, 3):
        raise FileFormatError(f"{path}: root attribute n_phases must be 2 or 3, got {n}")
    return n


def _sample_volume(f, name: str, path: Path) -> np.ndarray:
    grey = np.asarray(f[name][...])
    if grey.ndim == 4 and grey.shape[0] == 1:
        grey = grey[0]
    if grey.ndim not in (2, 3):
        raise FileFormatError(f"{path}: sample {name!r} has shape {f[name].shape}; expected (1, X, Y, Z)")
    if not np.all(np.isfinite(grey)):
        raise FileFormatError(f"{path}: sample {name!r} holds NaN or infinite grey levels")
    if grey.size and (grey.min() < 0.0 or grey.max() > 1.0):
        raise FileFormatError(f"{path}: sample {name!r} holds grey levels in [{grey.min():g}, {grey.max():g}]; "
                              "expected donor 0.0, mixed 0.5, acceptor 1.0 (values in [0, 1])")
    return grey


def describe_dataset(path: str | os.PathLike[str], *, n_jobs: int | None = None, progress: bool = True, pixel_size: float = 1.0,
                     periodic: bool = False, batch_size: int | None = None, phase_levels=None) -> int:
    """Compute the descriptors of every sample of an HDF5 dataset and store them as attributes.

    Samples that already carry every descriptor are skipped, so an
    interrupted run resumes where it stopped.

    Parameters
    ----------
    path
        HDF5 file in the dataset layout (root datasets ``(1, X, Y, Z)`` of
        grey levels, root attribute ``n_phases``; without it, a file whose
        first sample holds the 0.5 level is taken as three-phase).
    n_jobs
        Threads computing descriptors; default every core.
    progress
        Show a tqdm progress bar.
    pixel_size, periodic
        As in :func:`generator.descriptors.compute`; they are recorded in the
        root attributes ``descriptors_pixel_size`` / ``descriptors_periodic``,
        and resuming with other values is refused.
    batch_size
        Samples computed between two writes (default ``8 * n_jobs``): a kill
        loses at most one batch.
    phase_levels
        Three-phase files: a :class:`generator.levels.PhaseLevels` giving the
        grey level of each phase (each voxel takes the nearest); default
        donor 0.0, mixed 0.5, acceptor 1.0. Recorded in the root attribute
        ``descriptors_phase_levels``; resuming with other levels is refused.

    Returns
    -------
    int
        The number of samples labelled by this call.

    Raises
    ------
    FileFormatError
        If the file is missing, not HDF5, or holds a sample of the wrong shape.
    InvalidInputError
        If the file was labelled before with another pixel size or periodicity.
    """
    import h5py
    from tqdm.auto import tqdm


    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"dataset file {path} does not exist")
    if not h5py.is_hdf5(path):
        raise FileFormatError(f"{path} is not an HDF5 file")
    workers = max(1, n_jobs or os.cpu_count() or 1)
    batch = max(1, batch_size or 8 * workers)
    try:
        first = h5py.File(path, "r")
    except OSError as exc:
        raise FileFormatError(f"{path}: not a readable HDF5 file (truncated or corrupt?): {exc}") from None
    with first as f:
        names = [k for k in f.keys() if isinstance(f[k], h5py.Dataset)]
        n_phases = _n_phases(f, names, path)
        if phase_levels is not None and f.attrs.get("n_phases") is None:  # levels say three phases, whatever the grey values
            n_phases = 3
        keys = descriptor_names(n_phases)
        if phase_levels is not None and n_phases != 3:
            raise InvalidInputError(f"--phase-levels: {path} holds two-phase volumes (levels apply to three-phase data)")
        levels_used = (phase_levels or DEFAULT_LEVELS).to_list()
        if n_phases == 3 and LEVELS_ATTR in f.attrs and list(np.asarray(f.attrs[LEVELS_ATTR]).tolist()) != levels_used:
            raise InvalidInputError(f"{path}: samples were labelled with phase levels {list(np.asarray(f.attrs[LEVELS_ATTR]).tolist())}, "
                                    f"not {levels_used}; pass the same --phase-levels to resume")
        for attr, wanted in ((PIXEL_SIZE_ATTR, float(pixel_size)), (PERIODIC_ATTR, bool(periodic))):
            if attr in f.attrs and np.asarray(f.attrs[attr]).item() != wanted:
                raise InvalidInputError(f"{path}: samples were labelled with {attr.removeprefix('descriptors_')}={np.asarray(f.attrs[attr]).item()}, "
                                        f"not {wanted}; pass the same value to resume")
        todo = [k for k in names if not all(key in f[k].attrs for key in keys)]
    if not todo:
        return 0

    def run(grey: np.ndarray) -> dict[str, float]:
        labels = grey_to_labels(grey, n_phases) if phase_levels is None else labels_from_grey(grey, n_phases, levels=phase_levels)
        return compute(labels, pixel_size=pixel_size, periodic=periodic, n_phases=n_phases)

    work = _working_copy(path, names)
    try:
        with h5py.File(work, "r") as f:
            todo = [k for k in names if not all(key in f[k].attrs for key in keys)]
        bar = tqdm(total=len(names), initial=len(names) - len(todo), desc=f"describe {path.name}", unit="sample", disable=not progress)
        with ThreadPoolExecutor(max_workers=workers) as pool, bar:
            for start in range(0, len(todo), batch):
                chunk = todo[start:start + batch]
                with h5py.File(work, "r") as f:
                    volumes = [_sample_volume(f, name, path) for name in chunk]
                results = list(pool.map(run, volumes))
                with _signals_held(), h5py.File(work, "r+") as f:
                    f.attrs[PIXEL_SIZE_ATTR] = float(pixel_size)
                    f.attrs[PERIODIC_ATTR] = bool(periodic)
                    if n_phases == 3:
                        f.attrs[LEVELS_ATTR] = np.asarray(levels_used, dtype=np.float64)
                    for name, values in zip(chunk, results):
                        attrs = f[name].attrs
                        for key in keys:
                            attrs[key] = values[key]
                bar.update(len(chunk))
        with h5py.File(work, "r+") as f:
            del f.attrs[SOURCE_ATTR]
        with open(work, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(work, path)
    except OSError as exc:  # a full disk while writing the copy: the file is untouched; the message names it
        work.unlink(missing_ok=True)
        raise OSError(exc.errno, (exc.strerror or str(exc)).replace(str(work), str(path)), str(path)) from None
    return len(todo)


def working_copy_path(path: str | os.PathLike[str]) -> Path:
    """Where :func:`describe_dataset` keeps its working copy of ``path`` until every sample is labelled."""
    path = Path(path)
    return path.with_name(f".{path.name}.describing")


def _source_stamp(path: Path) -> str:
    """Size and modification time of ``path``: a working copy of another version of the file is not resumed."""
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def _working_copy(path: Path, names: list[str]) -> Path:
    """The copy of ``path`` that :func:`describe_dataset` labels: a sound one left by an interrupted run, or a new one.

    A copy is resumed only when it was made from this very version of the file
    (size and modification time) and every sample's attributes can be read;
    otherwise it is made again, atomically (:func:`generator.io.atomic_path`),
    so that a full disk leaves no partial copy behind.
    """
    import shutil

    import h5py


    work = working_copy_path(path)
    stamp = _source_stamp(path)
    if work.is_file():
        try:
            with h5py.File(work, "r") as f:
                if (str(f.attrs.get(SOURCE_ATTR, "")) == stamp
                        and sorted(k for k in f.keys() if isinstance(f[k], h5py.Dataset)) == sorted(names)):
                    for name in names:  # every sample's attributes must be readable
                        dict(f[name].attrs)
                    return work
        except (OSError, KeyError, RuntimeError):
            pass
        work.unlink()
    with atomic_path(work) as tmp:
        shutil.copyfile(path, tmp)
        with h5py.File(tmp, "r+") as f:
            f.attrs[SOURCE_ATTR] = stamp
    return work
