"""``microdesign dataset from-volume``: a labelled training dataset from one large volume (tomography, a big simulation)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from generator.errors import InvalidInputError
from inverse.cli._app import app

dataset_app = typer.Typer(help="Build training datasets from your own microstructures.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")


@dataset_app.command("from-volume")
def from_volume(
    source: Annotated[Path, typer.Argument(help="The large volume: .npy .npz .tif .vti .txt (GraSPI) or .h5, indexed (x, y, z), z the electrode axis.", show_default=False)],
    size: Annotated[str, typer.Option("--size", help="Window XxYxZ (Z = the volume's full thickness) or XxY.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output HDF5 dataset.")],
    stride: Annotated[Optional[str], typer.Option("--stride", help="Step between windows in x and y: S or SXxSY (default: the window size, no overlap).", show_default=False)] = None,
    resize: Annotated[Optional[str], typer.Option("--resize", help="Resize every window to XxYxZ (nearest neighbour).", show_default=False)] = None,
    threshold: Annotated[Optional[float], typer.Option("--threshold", help="Grey input, two phases: values above are acceptor (1), the others donor (0); the volume's own units.", show_default=False)] = None,
    phase_levels: Annotated[Optional[str], typer.Option("--phase-levels", help="Grey input, three phases: levels DONOR,MIXED,ACCEPTOR; each voxel takes the nearest.", show_default=False)] = None,
    key: Annotated[Optional[str], typer.Option("--key", help="HDF5 input: the dataset holding the volume (default: the only one).", show_default=False)] = None,
    jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", help="Threads for the descriptors (default: every core).", show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Start afresh instead of resuming an existing file.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Cut windows spanning the full electrode axis, resize them, label them with GraSPI descriptors, write HDF5.

    The result is the dataset layout `microdesign train --data` reads; each
    sample's `origin` attribute is its window origin in the source volume.
    Resumable and kill-safe: rerun the same command to finish an interrupted run.
    """
    from generator.data.from_volume import dataset_from_volume, parse_shape
    from generator.levels import PhaseLevels

    window = parse_shape(size, "--size")
    if stride is None:
        steps: tuple[int, ...] = window[:2]
    else:
        steps = parse_shape(stride, "--stride") if "x" in stride.lower() else parse_shape(f"{stride}x{stride}", "--stride")
        if len(steps) != 2:
            raise InvalidInputError(f"--stride: expected S or SXxSY, got {stride!r}")
    target = parse_shape(resize, "--resize") if resize is not None else None
    if target is not None and len(target) != 3:
        raise InvalidInputError(f"--resize: expected XxYxZ, got {resize!r}")
    if jobs is not None and jobs < 1:
        raise InvalidInputError(f"--jobs: must be at least 1, got {jobs}")
    levels = PhaseLevels.parse(phase_levels) if phase_levels is not None else None
    path = dataset_from_volume(source, out, size=window, stride=steps, resize=target, threshold=threshold,
                               phase_levels=levels, key=key, n_jobs=jobs, overwrite=overwrite, progress=not quiet)
    from generator.data.hdf5 import read_root_attributes

    attrs = read_root_attributes(path)
    typer.echo(f"{path}: {attrs['n_series']} window(s) of {source.name}, volumes {tuple(attrs['volume_shape'])}, "
               f"{attrs['n_phases']} phases, labelled with descriptors")
