"""``microdesign generate``: sample volumes for a condition, with their measured descriptors and predicted recipe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from generator.errors import InvalidInputError
from inverse.cli._app import app, parse_assignments

#: Names of the files written into ``--out``.
CSV_NAME = "samples.csv"
SETTINGS_NAME = "generation.json"


def sample_table(result, measured: list[dict[str, float]], condition_names: list[str], files: list[str]):
    """One row per sample: ``file``, ``requested_*`` conditions, ``measured_*`` descriptors, ``predicted_*`` FP outputs.

    Parameters
    ----------
    result
        A :class:`generator.pipeline.GenerationResult` of ``n`` samples.
    measured
        ``n`` descriptor dicts of the decoded volumes.
    condition_names
        Column names of ``result.conditions``.
    files
        ``n`` volume file stems.

    Returns
    -------
    pandas.DataFrame
    """
    import pandas as pd

    table = pd.DataFrame({"sample": range(len(result)), "file": files})
    for j, name in enumerate(condition_names):
        table[f"requested_{name}"] = result.conditions[:, j]
    measured_table = pd.DataFrame(measured).add_prefix("measured_")
    predicted_table = pd.DataFrame(result.predicted).add_prefix("predicted_")
    return pd.concat([table, measured_table, predicted_table], axis=1)


@app.command()
def generate(
    condition: Annotated[list[str], typer.Option("--condition", "-c", help="Condition value, NAME=VALUE (repeatable; every condition of the model).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for the volumes and the CSV.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Bundle file, 'default', or a folder with MicroGen3D's vae.pt, fp.pt, ddpm.pt.")] = "default",
    kind: Annotated[Optional[str], typer.Option(help="MicroGen3D kind of a weights folder: CH_2phase, CH_3phase or experimental.")] = None,
    n: Annotated[int, typer.Option("-n", "--n", help="Number of volumes.")] = 16,
    sampler: Annotated[str, typer.Option(help="Sampler: ddpm, ddim or dpm++.")] = "dpm++",
    steps: Annotated[int, typer.Option(help="Denoising steps.")] = 25,
    guidance: Annotated[float, typer.Option(help="Classifier-free guidance scale (1.0: plain conditional sampling).")] = 1.0,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same volumes.")] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Volumes per network batch.")] = 16,
    allow_extrapolation: Annotated[bool, typer.Option("--allow-extrapolation", help="Sample conditions outside the training range.")] = False,
    vti: Annotated[bool, typer.Option("--vti/--no-vti", help="Also write each volume as .vti (ParaView).")] = True,
    device: Annotated[str, typer.Option(help="Torch device, e.g. cpu or cuda.")] = "cpu",
    jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", help="Threads for the descriptors (default: every core).")] = None,
) -> None:
    """Generate volumes for a condition; write them (.npy, .vti) and samples.csv.

    Each CSV row holds the requested condition, the GraSPI descriptors measured
    on that volume and the feature predictor's outputs (the recipe phi, chi,
    log_time where the model predicts it).
    """
    from tqdm.auto import tqdm

    from generator.descriptors import compute_batch
    from generator.io import atomic_path
    from generator.io.volumes import write_volume
    from generator.pipeline import load_generator
    from generator.validation import check_output_folder

    if jobs is not None and jobs < 1:
        raise InvalidInputError(f"--jobs: must be at least 1, got {jobs}")
    check_output_folder(out, "--out")
    values = parse_assignments(condition, "--condition")
    generator = load_generator(model, kind=kind, device=device)
    # sampler, steps, guidance, seed, counts and memory, all before the output folder is made
    generator.check_sampling(n=n, sampler=sampler, steps=steps, guidance=guidance, seed=seed, batch_size=batch_size)
    matrix = generator.condition_matrix(values, n)  # unknown / missing names fail here, before any work
    if not allow_extrapolation:
        generator.check_ranges(matrix)
    result = generator.generate(
        matrix, sampler=sampler, steps=steps, guidance=guidance, seed=seed, batch_size=batch_size,
        progress=True, allow_extrapolation=True,
    )
    out.mkdir(parents=True, exist_ok=True)
    stems = [f"sample_{i:04d}" for i in range(len(result))]
    measured: list[dict[str, float]] = []
    for start in tqdm(range(0, len(result), batch_size), desc="descriptors", unit="batch"):
        measured += compute_batch(result.labels[start:start + batch_size], n_jobs=jobs, n_phases=generator.n_phases)
    for stem, labels in zip(tqdm(stems, desc="writing", unit="volume"), result.labels):
        write_volume(out / f"{stem}.npy", labels)
        if vti:
            write_volume(out / f"{stem}.vti", labels)
    table = sample_table(result, measured, generator.condition_names, stems)
    with atomic_path(out / CSV_NAME) as tmp:
        table.to_csv(tmp, index=False)
    settings = {
        "model": str(model), "kind": kind, "conditions": values, "n": n, "sampler": sampler, "steps": steps,
        "guidance": guidance, "seed": seed, "allow_extrapolation": allow_extrapolation,
        "volume_shape": list(generator.volume_shape), "n_phases": generator.n_phases,
    }
    with atomic_path(out / SETTINGS_NAME) as tmp:
        tmp.write_text(json.dumps(settings, indent=2))
    typer.echo(f"wrote {len(result)} volume(s) {tuple(generator.volume_shape)} and {CSV_NAME} to {out}")
