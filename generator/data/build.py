"""Simulate a dataset preset into an HDF5 file: resumable, whole series only.

Crash safety: the output file is only ever replaced atomically. Each batch of
series is written into a copy of the current file (a hidden temporary file
next to it), which is fsync'ed and renamed over the output once the batch is
complete (:func:`generator.io.atomic_path`). A run killed at any moment (even
SIGKILL in the middle of an HDF5 write) therefore leaves either the previous
file or the new one, both readable and holding only whole series; a rerun
skips the finished series. Temporary files left by a killed run are removed by
the next run.
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from generator.data.hdf5 import (
    encode_sample,
    FORMAT,
    FORMAT_VERSION,
    open_h5,
    read_root_attributes,
    reported_write_errors,
    sample_name,
    write_root_attributes,
    write_sample,
)
from generator.errors import FileFormatError, InvalidInputError
from generator.io.atomic import atomic_path
from generator.physics.cahn_hilliard import simulate
from generator.physics.labels import label_three_phase, label_two_phase, labels_to_grey
from generator.physics.presets import DatasetPreset, load_preset
from generator.validation import check_device, check_memory


def field_to_grey(field: np.ndarray, n_phases: int) -> np.ndarray:
    """Grey levels of a donor-fraction field, labelled with ``n_phases`` phases."""
    labels = label_two_phase(field) if n_phases == 2 else label_three_phase(field)
    return labels_to_grey(labels)


def _label_and_encode(field: np.ndarray, n_phases: int) -> tuple[np.ndarray, bytes]:
    """Grey levels of one field (made 3-D) and their stored chunk; runs in a thread pool."""
    grey = field_to_grey(field if field.ndim == 3 else field[:, :, None], n_phases)
    return grey, encode_sample(grey)


def _identity(preset: DatasetPreset, n_phases: int) -> dict:
    """What must match for a rerun to resume a file (the batch size may differ)."""
    return {"n_phases": n_phases, "preset_json": preset.model_dump(mode="json", exclude={"batch_size", "n_phases"})}


def _growable(preset_json: dict) -> dict:
    """A scrambled-Halton preset less its ``n_series``: a file may grow to more series of the same sequence."""
    return {key: value for key, value in preset_json.items() if not (preset_json.get("design") == "halton" and key == "n_series")}


def _prepare_output(out: Path) -> None:
    if out.is_dir():
        raise FileFormatError(f"output {out} is a folder; give a file name such as {out / 'data.h5'}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FileFormatError(f"cannot create folder {out.parent}: {exc.strerror or exc}") from None
    if not os.access(out.parent, os.W_OK):
        raise FileFormatError(f"cannot write {out}: folder {out.parent} is not writable")
    for stale in out.parent.glob(f".{out.name}.*{out.suffix}"):  # left by a killed run
        stale.unlink(missing_ok=True)


def _series_in(out: Path) -> tuple[dict[int, int], dict[int, tuple[float, float, int]]]:
    """One pass over a file: snapshots per series, and ``{series: (phi, chi, seed)}`` from each series' first snapshot."""
    counts: dict[int, int] = {}
    found: dict[int, tuple[float, float, int]] = {}
    with open_h5(out) as h5:
        for dset in h5.values():
            attrs = dset.attrs
            if not isinstance(dset, h5py.Dataset) or "series" not in attrs:
                continue
            series = int(attrs["series"])
            counts[series] = counts.get(series, 0) + 1
            found.setdefault(series, (float(attrs["phi"]), float(attrs["chi"]), int(attrs["seed"])))
    return counts, found


def series_in_dataset(path: str | os.PathLike[str]) -> dict[int, int]:
    """``{series: snapshots written}`` of a dataset file (a file being simulated holds some series only in part).

    Raises
    ------
    FileFormatError
        The file is missing or not a readable HDF5 file.
    """
    return _series_in(Path(path))[0]


def _existing_series(out: Path, preset: DatasetPreset, n_phases: int) -> set[int]:
    """Finished series of ``out`` that this preset resumes.

    A scrambled-Halton preset resumes a file of fewer series of the same sequence: its first points are the same
    whatever ``n_series`` is, so a dataset grows by simulating only the new series. Every series in the file must be
    one the preset makes (same (phi, chi, seed)); a file of more series is another dataset.
    """
    attrs = read_root_attributes(out)
    if attrs.get("format") != FORMAT:
        raise FileFormatError(f"{out} exists and is not a microdesign dataset; choose another path or overwrite it")
    want = _identity(preset, n_phases)
    have_json = attrs.get("preset_json")  # decoded by read_root_attributes
    same = attrs.get("n_phases") == n_phases and isinstance(have_json, dict) and (
        _growable(have_json) == _growable(want["preset_json"]))
    if not same:
        raise InvalidInputError(
            f"{out} holds a dataset of another preset or number of phases ({attrs.get('preset')}, "
            f"{attrs.get('n_phases')} phases); pass --overwrite or choose another path"
        )
    per_series = len(preset.ch.snapshot_steps())
    counts, written = _series_in(out)
    phi0, chi, seeds = preset.series_parameters()
    for series, (phi, chi_, seed) in written.items():
        if series >= len(phi0) or not (np.isclose(phi, phi0[series]) and np.isclose(chi_, chi[series]) and seed == seeds[series]):
            raise InvalidInputError(
                f"{out} holds series {series}, which this preset ({len(phi0)} series) does not make (another design, seed or "
                f"number of series); "
                "pass --overwrite or choose another path"
            )
    return {series for series, n in counts.items() if n == per_series}


def simulate_dataset(preset: str | os.PathLike[str] | DatasetPreset, out: str | os.PathLike[str], *,
                     n_phases: int | None = None, progress: bool = True, device: str | None = None,
                     overwrite: bool = False) -> Path:
    """Simulate every series of a preset into ``out`` (resumable).

    Parameters
    ----------
    preset
        Preset name (``tiny``, ``small``, ``paper``), TOML file or :class:`DatasetPreset`.
    out
        Output HDF5 file; missing parent folders are created.
    n_phases
        2 or 3 (default: the preset's). Three-phase labels come from the same fields.
    progress
        Show tqdm progress bars (series, and time steps of the current batch).
    device
        Torch device for the simulator (default CPU).
    overwrite
        Start afresh instead of resuming an existing file.

    Returns
    -------
    Path
        ``out``. Its datasets follow :mod:`generator.data.hdf5`.
    """
    preset = load_preset(preset)
    n_phases = preset.n_phases if n_phases is None else n_phases
    if n_phases not in (2, 3):
        raise InvalidInputError(f"n_phases must be 2 or 3, got {n_phases}")

    if device is not None:
        device = check_device(device, "--device")
    # the solver holds a batch of fields with their spectra and work arrays: about 64 bytes per voxel and series
    voxels = int(np.prod(preset.ch.shape))
    check_memory(64 * voxels * min(preset.batch_size, preset.total_series),
                 f"grid {'x'.join(map(str, preset.ch.shape))} (batch of {min(preset.batch_size, preset.total_series)} series)")
    out = Path(out)
    _prepare_output(out)
    have_file = out.exists() and not overwrite
    done = _existing_series(out, preset, n_phases) if have_file else set()

    phi0, chi, seeds = preset.series_parameters()
    todo = [i for i in range(len(phi0)) if i not in done]
    steps = preset.ch.snapshot_steps()
    root = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "preset": preset.name,
        "volume_shape": np.asarray(preset.ch.shape + (1,) * (3 - len(preset.ch.shape)), dtype=np.int64),
        "n_series": len(phi0),
        "snapshots_per_series": len(steps),
        "ch_parameters": json.dumps(preset.ch.model_dump(mode="json")),
        "n_phases": n_phases,
        "preset_json": json.dumps(_identity(preset, n_phases)["preset_json"]),
    }
    with tqdm(total=len(phi0), initial=len(done), desc=f"simulate {preset.name}", unit="series", disable=not progress) as bar, \
            ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        for start in range(0, len(todo), preset.batch_size):
            batch = todo[start:start + preset.batch_size]
            with atomic_path(out) as tmp:
                if have_file:
                    shutil.copyfile(out, tmp)
                with reported_write_errors(out), open_h5(tmp, "a" if have_file else "w") as h5:
                    write_root_attributes(h5, {**root, "complete": False})
                    for snap in simulate(preset.ch, phi0[batch], chi[batch], seeds[batch], device=device, progress=progress):
                        encoded = pool.map(lambda field: _label_and_encode(field, n_phases), snap.fields)
                        for series, (grey, chunk) in zip(batch, encoded):
                            write_sample(h5, sample_name(series, snap.index), grey, {
                                "phi": float(phi0[series]), "chi": float(chi[series]), "log_time": snap.log_time,
                                "time": snap.time, "step": snap.step, "series": series, "snapshot": snap.index,
                                "seed": int(seeds[series]),
                            }, encoded=chunk)
                    h5.attrs["complete"] = start + len(batch) >= len(todo)
            have_file = True
            bar.update(len(batch))
    if not have_file:  # nothing to do and no file yet: cannot happen for a non-empty preset
        raise InvalidInputError(f"preset {preset.name} has no series")
    return out

