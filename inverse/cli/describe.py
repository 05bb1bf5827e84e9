"""``microdesign describe``: GraSPI descriptors of volumes, or of every sample of an HDF5 dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from generator.errors import InvalidInputError
from inverse.cli._app import app

HDF5_SUFFIXES = (".h5", ".hdf5")


def _print_table(rows: list[tuple[Path, dict[str, float]]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="GraSPI descriptors")
    table.add_column("descriptor")
    for path, _ in rows:
        table.add_column(path.name, justify="right")
    names = list(dict.fromkeys(name for _, values in rows for name in values))
    for name in names:
        table.add_row(name, *(f"{values[name]:.6g}" if name in values else "" for _, values in rows))
    Console().print(table)


@app.command()
def describe(
    files: Annotated[list[Path], typer.Argument(help="Volumes (.npy .npz .vti .tif) or HDF5 datasets (.h5) to describe.", show_default=False)],
    pixel_size: Annotated[float, typer.Option("--pixel-size", help="Physical voxel size (scales all distances).")] = 1.0,
    periodic: Annotated[bool, typer.Option("--periodic", help="Wrap the in-plane axes (x, y).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per file (keyed by GraSPI names) instead of a table.")] = False,
    threshold: Annotated[Optional[float], typer.Option("--threshold", help="Threshold a grey-level volume: values above are acceptor (1), the others donor (0).")] = None,
    jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", help="Threads for HDF5 datasets (default: every core).")] = None,
    phase_levels: Annotated[Optional[str], typer.Option("--phase-levels", help="Three-phase HDF5 data: grey levels DONOR,MIXED,ACCEPTOR; each voxel takes the nearest (default 0,0.5,1).", show_default=False)] = None,
) -> None:
    """Compute GraSPI morphology descriptors (0 donor, 1 acceptor, 2 mixed; last axis = electrodes).

    For an HDF5 dataset, every sample gets its descriptors as attributes
    (resumable: samples already labelled are skipped).
    """
    from generator.descriptors import as_labels, compute, describe_dataset
    from generator.io import read_volume

    if pixel_size <= 0:
        raise InvalidInputError(f"--pixel-size must be positive, got {pixel_size}")
    if jobs is not None and jobs < 1:
        raise InvalidInputError(f"--jobs must be at least 1, got {jobs}")
    if threshold is not None and any(path.suffix.lower() in HDF5_SUFFIXES for path in files):
        raise InvalidInputError("--threshold applies to volume files; HDF5 datasets hold grey levels labelled by their own rule "
                                "(donor 0.0, mixed 0.5, acceptor 1.0)")
    levels = None
    if phase_levels is not None:
        from generator.levels import PhaseLevels

        levels = PhaseLevels.parse(phase_levels)
        if not all(path.suffix.lower() in HDF5_SUFFIXES for path in files):
            raise InvalidInputError("--phase-levels: applies to HDF5 datasets; volume files hold labels (or take --threshold)")
    rows: list[tuple[Path, dict[str, float]]] = []
    for path in files:
        if path.suffix.lower() in HDF5_SUFFIXES:
            done = describe_dataset(path, n_jobs=jobs, progress=True, pixel_size=pixel_size, periodic=periodic, phase_levels=levels)
            typer.echo(f"{path}: labelled {done} sample(s) with descriptors", err=as_json)
            continue
        labels = as_labels(read_volume(path), threshold=threshold, name=str(path))
        values = compute(labels, pixel_size=pixel_size, periodic=periodic)
        if as_json:
            typer.echo(json.dumps(values))
        else:
            rows.append((path, values))
    if rows:
        _print_table(rows)
