"""``microdesign simulate``: simulate a Cahn-Hilliard dataset preset into an HDF5 file."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from generator.errors import InvalidInputError
from inverse.cli._app import app


def _parse_pair(text: str, option: str) -> tuple[float, float]:
    parts = [p for p in text.replace(":", ",").split(",") if p.strip()]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values *= 2
    if len(values) != 2:
        raise InvalidInputError(f"{option} takes LO,HI (or one value), got {text!r}")
    return values[0], values[1]


@app.command()
def simulate(
    preset: Annotated[str, typer.Option("--preset", "-p", help="Preset name (tiny, small, paper) or a preset .toml file.")] = "tiny",
    out: Annotated[Path, typer.Option("--out", "-o", help="Output HDF5 file (folders are created).")] = Path("runs/data.h5"),
    phases: Annotated[Optional[int], typer.Option("--phases", help="2 (donor/acceptor) or 3 (with a mixed phase); default: the preset's.")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="Torch device: cpu or cuda (default cpu).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Start afresh instead of resuming an existing file.")] = False,
    steps: Annotated[Optional[int], typer.Option("--steps", help="Override the number of time steps.")] = None,
    grid: Annotated[Optional[str], typer.Option("--grid", help="Override the grid, e.g. 64x64x32.")] = None,
    phi0: Annotated[Optional[str], typer.Option("--phi0", help="Override the blend-ratio range LO,HI (inside (0, 1)).")] = None,
    chi: Annotated[Optional[str], typer.Option("--chi", help="Override the Flory-Huggins chi range LO,HI.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Override the preset's seed: series i gets noise seed SEED + i (and a new Halton design); another seed gives independent replicates.")] = None,
    n_series: Annotated[Optional[int], typer.Option("--n-series", help="Simulate N series at scrambled-Halton (phi, chi) over the preset's ranges instead of its own design; a larger N grows an existing file in place.")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", help="Torch CPU threads (default: torch's; 1 is fastest on a busy machine).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Simulate a grid of (phi, chi) Cahn-Hilliard time series into HDF5 (MicroGen3D layout).

    Resumable: rerunning the same command skips the finished series; a run
    killed at any moment leaves a readable file holding only whole series.
    A scrambled-Halton dataset grows in place: the same command with a larger
    --n-series simulates only the new series (the first points of the sequence
    do not depend on N).
    """
    from generator.data.build import simulate_dataset
    from generator.data.hdf5 import finished_series
    from generator.physics.cahn_hilliard import SpinodalWarning, torch_threads
    from generator.physics.presets import load_preset

    if phases is not None and phases not in (2, 3):
        raise InvalidInputError(f"--phases must be 2 or 3, got {phases}")
    if threads is not None and threads < 1:
        raise InvalidInputError(f"--threads must be at least 1, got {threads}")
    if device is not None and device.split(":")[0] not in ("cpu", "cuda"):
        raise InvalidInputError(f"--device must be cpu or cuda, got {device!r}")
    overrides: dict[str, Any] = {}
    ch: dict[str, Any] = {}
    if steps is not None:
        ch["steps"] = steps
    if grid is not None:
        from generator.data.from_volume import parse_shape

        ch["shape"] = parse_shape(grid, "--grid")
    if ch:
        overrides["ch"] = ch
    if phi0 is not None:
        overrides["phi0_range"] = _parse_pair(phi0, "--phi0")
    if chi is not None:
        overrides["chi_range"] = _parse_pair(chi, "--chi")
    if seed is not None:
        if not 0 <= seed < 2**32:
            raise InvalidInputError(f"--seed must lie in [0, 2^32), got {seed}")
        overrides["seed"] = seed
    if n_series is not None:
        if n_series < 1:
            raise InvalidInputError(f"--n-series must be at least 1, got {n_series}")
        overrides.update(design="halton", n_series=n_series)
    spec = load_preset(preset, **overrides)
    with warnings.catch_warnings(record=True) as caught, torch_threads(threads):
        warnings.simplefilter("always", SpinodalWarning)
        path = simulate_dataset(spec, out, n_phases=phases, progress=not quiet, device=device, overwrite=overwrite)
    for message in dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, SpinodalWarning)):
        typer.echo(f"warning: {message}", err=True)
    counts = finished_series(path)
    typer.echo(f"{path}: {len(counts)} series, {sum(counts.values())} snapshots ({spec.name}, {phases or spec.n_phases} phases)")
