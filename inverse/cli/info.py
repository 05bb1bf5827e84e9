"""``microdesign info``: what a model is (shape, phases, conditions, data, physics, training time, card)."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from inverse.cli._app import app


def _shape(shape) -> str:
    return "x".join(str(int(n)) for n in shape)


def calibration_lines(sizes: list[dict]) -> list[str]:
    """``recipe calibration: 96 films of 128x128x64 from 12 unused series``, one line per film shape (``calibration_sizes``)."""
    return [f"recipe calibration: {size['films']} films of {_shape(size['shape'])} from {size['series']} unused series"
            for size in sizes]


@app.command()
def info(
    model: Annotated[str, typer.Argument(help="Bundle file, 'default' (the shipped model), or a MicroGen3D weights folder.")] = "default",
    kind: Annotated[Optional[str], typer.Option("--kind", help="MicroGen3D kind for a folder of weights.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the record as JSON.")] = False,
) -> None:
    """Print a model's record: film size, phases, condition ranges, attributes, training data and physics, time, card."""
    from generator.model_info import model_info

    record = model_info(model, kind=kind)
    if as_json:
        typer.echo(json.dumps(record.to_dict(), indent=2))
        return
    lines = [f"model: {record.source} ({record.kind})",
             f"films: {_shape(record.volume_shape)} voxels, {record.n_phases} phases (0 donor, 1 acceptor{', 2 mixed' if record.n_phases == 3 else ''}); "
             f"latent {_shape(record.latent_shape)}"]
    if record.in_plane_multiple:
        lines.append(f"sizes: any X, Y that are multiples of {record.in_plane_multiple} (--size XxYx{record.volume_shape[2]}); "
                     f"trained on {_shape(record.training_shape)} films, periodic in x and y")
    else:
        lines.append("sizes: this size only")
    lines.append("conditions (training range):")
    lines += [f"  {name:<16} [{lo:.4g}, {hi:.4g}]" for name, (lo, hi) in record.conditions.items()]
    lines.append(f"attributes ({len(record.attributes)}): {', '.join(record.attributes)}")
    if record.sampling:
        lines.append(f"sampling by default: {record.sampling['sampler']}, {record.sampling['steps']} steps, "
                     f"guidance {record.sampling['guidance']:g}, feature guidance {record.sampling['feature_guidance']:g}")
    if record.n_training_samples:
        lines.append(f"training data: {record.n_training_samples} films from {record.n_training_series} series")
    lines += calibration_lines(record.calibration_sizes)
    if record.dataset:
        ch = record.dataset.get("ch_parameters", {})
        physics = ", ".join(f"{k} {ch[k]}" for k in ("shape", "dt", "steps", "z_boundary", "adaptive", "kappa") if k in ch)
        lines.append(f"dataset preset: {record.dataset.get('preset')} ({record.dataset.get('n_phases')} phases); physics: {physics}")
        lines.append(f"  held-out replicates: microdesign simulate --preset {record.dataset.get('preset')} --seed 9000 --n-series 12")
    stages = record.training.get("stages") or {}
    if stages:
        parts = ", ".join(f"{name} {v['wall_s'] / 60:.1f}" for name, v in stages.items())
        lines.append(f"training time (wall min): {parts}; total {record.training.get('wall_s', 0) / 60:.1f} min "
                     f"({record.training.get('cpu_s', 0) / 60:.1f} CPU min)")
    if record.card:
        lines.append("model card:")
        lines += [f"  {k}: {v}" for k, v in record.card.get("headline", record.card).items() if not isinstance(v, (dict, list))]
    typer.echo("\n".join(lines))
