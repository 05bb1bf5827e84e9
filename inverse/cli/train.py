"""``microdesign train``: train the generator (VAE -> encode -> FP -> DDPM) and write its bundle."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from generator.errors import FileFormatError, InvalidInputError
from generator.validation import check_accelerator
from inverse.cli._app import app

if TYPE_CHECKING:
    from generator.physics.presets import DatasetPreset


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Nested dict from ``section.key=value`` items; values are TOML (``100``, ``1e-3``, ``"gpu"``, ``[16, 32]``).

    A bare word that is not valid TOML (``gpu``) is taken as a string.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise InvalidInputError(f"--set: expected section.key=value, got {item!r}")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InvalidInputError(f"--set: {key} conflicts with another --set")
        node[leaf] = value
    return out


@app.command()
def train(
    data: Annotated[Optional[Path], typer.Option("--data", "-d", help="Labelled HDF5 dataset: a file, a folder of *.h5 or a glob. Default: simulate and label the preset's data.dataset into OUT/data.h5 (resumable).", show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder (checkpoints, logs/*.csv, generator.pt). Default: runs/train-PRESET.", show_default=False)] = None,
    preset: Annotated[Optional[str], typer.Option("--preset", "-p", help="Preset name (tiny, small, paper-ch2, paper-ch3) or a TOML config file. With --init-from: a fine-tuning TOML file (optional). [default: small]", show_default=False)] = None,
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help="Override a config value, e.g. --set ddpm.max_steps=5000 --set trainer.devices=4.")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bars.")] = True,
    init_from: Annotated[Optional[Path], typer.Option("--init-from", help="Fine-tune MicroGen3D's networks: a folder of its vae.pt, fp.pt, ddpm.pt (published, with --kind, or fine-tuned). Writes a folder of the three files plus microgen3d.json.", show_default=False)] = None,
    kind: Annotated[Optional[str], typer.Option("--kind", help="With --init-from: CH_2phase, CH_3phase or experimental (not needed for a fine-tuned folder).", show_default=False)] = None,
    stages: Annotated[Optional[str], typer.Option("--stages", help="With --init-from: the networks to fine-tune, a subset of vae,fp,ddpm. [default: vae,fp,ddpm]", show_default=False)] = None,
) -> None:
    """Train the conditional latent diffusion generator in stages and write its bundle.

    Stages: VAE, encoding of the dataset, feature predictor, latent denoiser.
    Run the same command again to resume an interrupted run (finished stages
    are skipped). Multi-GPU / multi-node: --set trainer.devices=N --set trainer.num_nodes=M.
    Without --data, the preset's dataset (data.dataset) is simulated and labelled
    first, so `microdesign train --preset small` alone reproduces the shipped model.
    When the config sets data.calibration_series, that many fresh series of
    films at the generated size are simulated and labelled too (OUT/calibration.h5):
    they calibrate the recipe posterior for films of that size.

    With --init-from, MicroGen3D's published networks (their architecture) are
    fine-tuned on --data instead (see docs/microgen3d.md).
    """
    from generator.training import generate_shape, train_pipeline
    from generator.training.config import load_config

    if data is not None and not any(ch in str(data) for ch in "*?[") and not data.exists():
        raise FileFormatError(f"--data: {data} does not exist")
    if init_from is not None:
        _finetune(init_from, kind=kind, stages=stages, data=data, out=out, preset=preset, overrides=overrides or [], progress=progress)
        return
    for option, value in (("--kind", kind), ("--stages", stages)):
        if value is not None:
            raise InvalidInputError(f"{option}: only applies with --init-from (fine-tuning MicroGen3D's networks)")
    preset = preset or "small"
    calibration = None
    config = load_config(preset, parse_overrides(overrides or []))
    check_accelerator(config.trainer.accelerator, config.trainer.devices)  # before data or an output folder is made
    if out is None:
        out = Path("runs") / f"train-{Path(preset).stem}"
    if data is None:
        if config.data.dataset is None:
            raise InvalidInputError("--data: required, since the config names no dataset preset (data.dataset) to simulate")
        from generator.physics.presets import load_preset

        film_size = generate_shape(config, tuple(load_preset(config.data.dataset).ch.shape))  # checked before any simulation
        data = build_training_data(config.data.dataset, out / "data.h5", n_phases=config.data.n_phases,
                                   device=_simulation_device(config.trainer.accelerator), progress=progress)
        if config.data.calibration_series:
            wanted = config.data.calibration_series
            held = _series_held(out / "calibration.h5")  # a folder's file may hold more series of the same sequence: keep it
            calibration = build_training_data(
                config.data.dataset, out / "calibration.h5", n_phases=config.data.n_phases,
                device=_simulation_device(config.trainer.accelerator), progress=progress, stage="calibration",
                overrides={"design": "halton", "n_series": max(wanted, held), "seed": config.data.calibration_seed,
                           "ch": {"shape": list(film_size)}},
            )
            if held > wanted:
                typer.echo(f"note: {out / 'calibration.h5'} holds {held} calibration series; the first {wanted} "
                           f"(data.calibration_series) calibrate the bundle", err=True)
    elif config.data.calibration_series:
        typer.echo(f"note: --data given, so no calibration films are simulated (data.calibration_series = "
                   f"{config.data.calibration_series} applies to the preset's own dataset)", err=True)
    bundle = train_pipeline(config, data=data, out_dir=out, progress=progress, calibration=calibration,
                            calibration_series=config.data.calibration_series if calibration is not None else None)
    typer.echo(f"wrote {bundle}")


def _finetune(init_from: Path, *, kind: str | None, stages: str | None, data: Path | None, out: Path | None, preset: str | None,
              overrides: list[str], progress: bool) -> None:
    """``train --init-from``: fine-tune MicroGen3D's networks (:func:`generator.training.finetune.finetune_microgen3d`)."""
    from generator.models.microgen3d import KINDS, read_metadata
    from generator.training.finetune import FINETUNE_STAGES, finetune_microgen3d, parse_stages

    if not init_from.is_dir():
        raise FileFormatError(f"--init-from: {init_from} is not a folder of MicroGen3D weights (vae.pt, fp.pt, ddpm.pt)")
    if data is None:
        raise InvalidInputError("--data: required with --init-from (the volumes to fine-tune on)")
    if preset is not None and Path(preset).suffix != ".toml":
        raise InvalidInputError(f"--preset: with --init-from, give a fine-tuning TOML file or --set options, not the preset {preset!r}")
    selected = parse_stages(stages if stages is not None else FINETUNE_STAGES)
    if out is None:
        meta = read_metadata(init_from)
        out = Path("runs") / f"finetune-{kind or (meta or {}).get('kind', 'microgen3d')}"
    folder = finetune_microgen3d(init_from, data=data, out_dir=out, kind=kind, stages=selected, config=preset,
                                 overrides=parse_overrides(overrides), progress=progress)
    typer.echo(f"wrote {folder} (vae.pt, fp.pt, ddpm.pt, microgen3d.json; fine-tuned: {','.join(selected)})")
    meta = read_metadata(folder) or {}
    if "fp" in selected:
        untrained = [name for name in KINDS[meta["kind"]].attributes if name not in meta.get("fp_attributes_trained", [])]
        if untrained:
            typer.echo(f"note: the data has no {', '.join(untrained)}: those feature-predictor outputs were not fine-tuned")


def _series_held(path: Path) -> int:
    """How many series of its design a run folder's calibration file holds: the highest series written, plus one
    (0: no file, or not a dataset; building it says why)."""
    from generator.data.build import series_in_dataset
    from generator.errors import FileFormatError

    if not path.is_file():
        return 0
    try:
        return max(series_in_dataset(path), default=-1) + 1
    except FileFormatError:  # a broken or foreign file: simulate_dataset reports it in its own words
        return 0


def _simulation_device(accelerator: str) -> str:
    """``cuda`` when training runs on a GPU that is there, else ``cpu``."""
    import torch

    return "cuda" if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available() else "cpu"


def build_training_data(dataset_preset: str | DatasetPreset, path: Path, *, n_phases: int | None = None, device: str = "cpu",
                        progress: bool = True, overrides: dict[str, Any] | None = None, stage: str = "data") -> Path:
    """Simulate a dataset preset into ``path`` and label it with the descriptors; both steps resume.

    ``n_phases`` overrides the preset's phase count (the 3-phase training presets
    label the same simulations with a mixed phase); ``device`` runs the simulator;
    ``overrides`` replace preset fields (the calibration films: other seeds, series and film size).

    Their times go to ``stage_times.jsonl`` beside ``path`` (as ``STAGE: simulate`` and ``STAGE: describe``).
    """
    from generator.data.build import simulate_dataset
    from generator.descriptors.dataset import describe_dataset
    from generator.physics.presets import load_preset
    from generator.training.stages import stage_timer

    with stage_timer(path.parent, f"{stage}: simulate"):
        simulate_dataset(load_preset(dataset_preset, **(overrides or {})), path, n_phases=n_phases, device=device, progress=progress)
    with stage_timer(path.parent, f"{stage}: describe"):
        describe_dataset(path, progress=progress)
    return path
