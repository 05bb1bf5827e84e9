"""``microdesign calibrate``: calibrate a bundle's recipe posterior for films of another size."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Annotated, Optional

import typer

from generator.errors import FileFormatError, InvalidInputError
from inverse.cli._app import app


@app.command()
def calibrate(
    size: Annotated[Optional[str], typer.Option("--size", help="Film size XxYxZ to calibrate, e.g. 64x64x64 (the training films' size). Default: the model's generated size.", show_default=False)] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="Bundle file or 'default' (the shipped model).")] = "default",
    n_series: Annotated[int, typer.Option("--n-series", help="Fresh series to simulate (a film per snapshot: 8 with the film physics); a larger N on the same --workdir grows it.")] = 12,
    seed: Annotated[int, typer.Option("--seed", help="Noise seed of the first series (series i: SEED + i); must not be a training series' seed.")] = 9200,
    preset: Annotated[Optional[str], typer.Option("--preset", help="Dataset preset (name or .toml) to simulate with; only for a model that does not record its training physics.", show_default=False)] = None,
    workdir: Annotated[Optional[Path], typer.Option("--workdir", help="Where the simulated films go (calibration.h5; resumable). Default: runs/calibrate-MODEL-SIZE-seedSEED.", show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Bundle to write. Default: the --model file itself (its networks are unchanged); required for the shipped default model.", show_default=False)] = None,
    device: Annotated[str, typer.Option("--device", help="Simulator device: cpu or cuda.")] = "cpu",
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bars.")] = True,
) -> None:
    """Simulate fresh series at one film size and add them to a bundle as recipe-posterior calibration films.

    The recipe posterior reads a recipe from a film's descriptors; how far off it
    may be depends on the film's size. Its 80 % regions are calibrated on films of
    the size being read: `microdesign train` simulates them at the generated size;
    this command adds them at any other size (e.g. the training films' 64x64x64,
    at which `benchmarks/design_to_recipe.py --size` verifies), with the physics the
    model records for its training data. Films of that shape already in the bundle
    are replaced; the simulation resumes when run again.
    """
    from generator.calibration import add_calibration_films, calibration_preset, check_fresh_seeds
    from generator.checkpoint import MIN_CALIBRATION_FILMS, bundle_calibration_table, read_bundle, save_bundle
    from generator.data.from_volume import parse_shape
    from generator.io import atomic_path
    from generator.loading import DEFAULT_BUNDLE
    from generator.model_info import calibration_sizes, card_path
    from generator.training.data import open_dataset, sample_table
    from generator.validation import check_device, check_seed
    from inverse.cli.info import calibration_lines
    from inverse.cli.train import build_training_data

    source = DEFAULT_BUNDLE if model == "default" else Path(model)
    if not source.is_file():
        raise FileFormatError(f"--model: {source} does not exist")
    if out is None and model == "default":
        raise InvalidInputError("--out: name the bundle to write (the shipped default model is rewritten only when --out names it)")
    target = out if out is not None else source
    if target.suffix != ".pt" or target.is_dir():
        raise InvalidInputError(f"--out: a bundle file ends in .pt, got {target}")
    if not target.parent.is_dir() or not os.access(target.parent, os.W_OK):
        raise InvalidInputError(f"--out: cannot write into {target.parent} (not an existing, writable folder)")
    check_seed(seed)
    if n_series < 1:
        raise InvalidInputError(f"--n-series: must be at least 1, got {n_series}")
    check_seed(seed + n_series - 1, "--seed + --n-series - 1")
    check_device(device)
    bundle = read_bundle(source)
    shape = parse_shape(size, "--size", dims=(3,)) if size is not None else tuple(int(n) for n in bundle["volume_shape"])
    simulation = bundle.get("simulation") or {}
    films_preset = calibration_preset(simulation, shape, n_series=n_series, seed=seed, preset=preset)
    check_fresh_seeds(bundle, range(seed, seed + n_series))
    per_series = len(films_preset.ch.snapshot_steps())
    if n_series * per_series < MIN_CALIBRATION_FILMS:
        raise InvalidInputError(f"--n-series: {n_series} series give {n_series * per_series} films ({per_series} each); "
                                f"a calibration needs at least {MIN_CALIBRATION_FILMS}")
    size_text = "x".join(map(str, shape))
    workdir = workdir if workdir is not None else Path("runs") / f"calibrate-{source.stem}-{size_text}-seed{seed}"
    films_file = workdir / "calibration.h5"
    n_phases = int(simulation.get("n_phases") or bundle["n_phases"])
    try:
        path = build_training_data(films_preset, films_file, n_phases=n_phases, device=device, progress=progress,
                                   stage="calibration")
    except InvalidInputError as exc:
        if not films_file.exists():
            raise
        raise InvalidInputError(f"--workdir: {films_file} holds other films ({str(exc).split(';')[0]}); delete it or choose "
                                "another --workdir") from None
    calibrated = add_calibration_films(bundle, sample_table(open_dataset(path)), shape)
    save_bundle(calibrated, target)
    card = card_path(source)
    if target.resolve() != source.resolve() and card.is_file():
        with atomic_path(card_path(target)) as tmp:
            shutil.copyfile(card, tmp)
    for line in calibration_lines(calibration_sizes(bundle_calibration_table(calibrated))):
        typer.echo(line)
    typer.echo(f"wrote {target}")
