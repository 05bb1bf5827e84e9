"""``microdesign generate``: sample volumes for a condition, with their measured descriptors and predicted recipe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from generator.errors import InvalidInputError
from generator.validation import check_output_folder
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


def _read_dataset_volumes(path: Path, n: int | None, volume_shape: tuple[int, ...]) -> tuple[list[str], "np.ndarray"]:
    """The first ``n`` (default all) grey volumes ``(N, X, Y, Z)`` of an HDF5 dataset and their ``file:name``."""
    import numpy as np

    from generator.data.dataset import MicrostructureDataset

    dataset = MicrostructureDataset(path, in_memory=False)
    try:
        if tuple(dataset.volume_shape) != tuple(volume_shape):
            raise InvalidInputError(f"--from-dataset: {path} holds volumes {tuple(dataset.volume_shape)}, the model makes {tuple(volume_shape)}")
        count = len(dataset) if n is None else min(n, len(dataset))
        volumes = np.stack([dataset[i][0].numpy()[0] for i in range(count)])
        names = [f"{Path(file).name}:{name}" for file, name in dataset.names[:count]]
    finally:
        dataset.close()
    return names, volumes


@app.command()
def generate(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for the volumes and the CSV.")],
    condition: Annotated[Optional[list[str]], typer.Option("--condition", "-c", help="Condition value, NAME=VALUE (repeatable). Conditions not given are drawn (--condition-range) or completed from the training data.", show_default=False)] = None,
    condition_range: Annotated[Optional[list[str]], typer.Option("--condition-range", "-r", help="Draw a condition uniformly per sample, NAME=LO:HI (repeatable).", show_default=False)] = None,
    from_dataset: Annotated[Optional[Path], typer.Option("--from-dataset", help="HDF5 dataset: one sample per volume, conditioned on the feature predictor's output on it; its reconstruction is written beside.", show_default=False)] = None,
    complete: Annotated[str, typer.Option("--complete", help="How missing conditions are completed from the training data: empirical (nearest training rows) or gaussian (conditional Gaussian).")] = "empirical",
    table: Annotated[Optional[Path], typer.Option("--table", help="Training descriptors (.csv or labelled .h5) for completing conditions when the model carries none (MicroGen3D weights).", show_default=False)] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="Bundle file, 'default', or a folder with MicroGen3D's vae.pt, fp.pt, ddpm.pt.")] = "default",
    kind: Annotated[Optional[str], typer.Option(help="MicroGen3D kind of a weights folder: CH_2phase, CH_3phase or experimental.")] = None,
    n: Annotated[Optional[int], typer.Option("-n", "--n", help="Number of volumes (default 16; with --from-dataset: every volume of the dataset).", show_default=False)] = None,
    sampler: Annotated[Optional[str], typer.Option(help="Sampler: ddpm, ddim or dpm++ (default: the model's, see `microdesign info`).", show_default=False)] = None,
    steps: Annotated[Optional[int], typer.Option(help="Denoising steps (default: the model's).", show_default=False)] = None,
    guidance: Annotated[Optional[float], typer.Option(help="Classifier-free guidance scale, 1.0: plain conditional sampling (default: the model's).", show_default=False)] = None,
    feature_guidance: Annotated[Optional[float], typer.Option(help="Feature-predictor guidance step, 0: off (default: the model's).", show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same volumes.")] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Volumes per network batch.")] = 16,
    allow_extrapolation: Annotated[bool, typer.Option("--allow-extrapolation", help="Sample conditions outside the training range.")] = False,
    threshold: Annotated[Optional[float], typer.Option("--threshold", help="Two-phase models: cut the decoder's grey field at this value (default 0.5).", show_default=False)] = None,
    phase_levels: Annotated[Optional[str], typer.Option("--phase-levels", help="Three-phase grey models: grey levels DONOR,MIXED,ACCEPTOR; each voxel takes the nearest (default 0,0.5,1).", show_default=False)] = None,
    raw: Annotated[bool, typer.Option("--raw", help="Also write the decoder's grey field (float32) as sample_NNNN_grey.npy (and .vti).")] = False,
    graspi: Annotated[bool, typer.Option("--graspi", help="Also write each volume in GraSPI's text input format (sample_NNNN.txt).")] = False,
    size: Annotated[Optional[str], typer.Option("--size", help="Film size XxYxZ (default: the model's; resizable models take any X, Y that are multiples of their in-plane step, see `microdesign info`).", show_default=False)] = None,
    vti: Annotated[bool, typer.Option("--vti/--no-vti", help="Also write each volume as .vti (ParaView).")] = True,
    device: Annotated[str, typer.Option(help="Torch device, e.g. cpu or cuda.")] = "cpu",
    jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", help="Threads for the descriptors (default: every core).")] = None,
) -> None:
    """Generate volumes; write them (.npy, .vti) and samples.csv.

    Conditions come in three modes: constant (--condition NAME=VALUE for every
    condition), random (--condition-range NAME=LO:HI, drawn per sample) and
    dataset (--from-dataset data.h5: the feature predictor's output on each
    volume). Conditions left out are completed per sample from the training
    data's correlations (--complete); the CSV's `completed` column names them.
    Each CSV row holds the requested condition, the GraSPI descriptors measured
    on that volume and the feature predictor's outputs (the recipe phi, chi,
    log_time where the model predicts it).
    """
    import numpy as np
    from tqdm.auto import tqdm

    from generator.conditions import parse_range
    from generator.data.from_volume import parse_shape
    from generator.descriptors import compute_batch
    from generator.diffusion.settings import resolve_feature_guidance
    from generator.io import atomic_path
    from generator.io.volumes import write_volume
    from generator.levels import PhaseLevels, labels_from_grey
    from generator.loading import load_generator

    if jobs is not None and jobs < 1:
        raise InvalidInputError(f"--jobs: must be at least 1, got {jobs}")
    check_output_folder(out, "--out")
    if from_dataset is not None and (condition or condition_range):
        raise InvalidInputError("--from-dataset: takes its conditions from the dataset; leave out --condition and --condition-range")
    if from_dataset is not None and not any(ch in str(from_dataset) for ch in "*?[") and not from_dataset.exists():
        raise InvalidInputError(f"--from-dataset: {from_dataset} does not exist")
    values = parse_assignments(condition or [], "--condition")
    ranges = dict(parse_range(item) for item in condition_range or [])
    levels = PhaseLevels.parse(phase_levels) if phase_levels is not None else None
    generator = load_generator(model, kind=kind, device=device)
    film_size = parse_shape(size, "--size", dims=(3,)) if size is not None else None
    # sampler, steps, guidance, seed, counts, film size and memory, all before the output folder is made
    sampler, steps, guidance = generator.resolve_sampling(sampler, steps, guidance)
    feature_guidance = resolve_feature_guidance(feature_guidance, generator.sampling_defaults)
    generator.check_sampling(n=16 if n is None else n, sampler=sampler, steps=steps, guidance=guidance, seed=seed,
                             batch_size=batch_size, size=film_size, feature_guidance=feature_guidance)
    generator.check_decoding(threshold, levels)
    if raw and generator.grey_decoder is None:
        raise InvalidInputError("--raw: this model has no grey-field decoder")
    sources: list[str] = []
    completed: list[str] = []
    reconstructions = None
    if from_dataset is not None:
        sources, volumes = _read_dataset_volumes(from_dataset, n, generator.volume_shape)
        parts = [generator.conditions_of(volumes[i:i + batch_size]) for i in range(0, len(volumes), batch_size)]
        matrix = np.concatenate([m for m, _ in parts])
        latents = [z for _, z in parts]
        if threshold is not None or levels is not None:
            reconstructions = np.concatenate([labels_from_grey(generator.decode_grey(z), generator.n_phases, threshold=threshold, levels=levels)
                                              for z in latents])
        else:
            reconstructions = np.concatenate([generator.decode(z) for z in latents])
    else:
        count = 16 if n is None else n
        if not ranges and set(values) >= set(generator.condition_names):
            matrix = generator.condition_matrix(values, count)  # unknown names fail here, before any work
        else:
            from inverse.feasibility import load_table

            draw = generator.draw_conditions(values, count, ranges=ranges, method=complete, seed=seed,
                                             table=load_table(table) if table is not None else None)
            matrix, completed = draw.matrix, draw.completed
    if not allow_extrapolation:
        generator.check_ranges(matrix)
    result = generator.generate(
        matrix, sampler=sampler, steps=steps, guidance=guidance, feature_guidance=feature_guidance, seed=seed, batch_size=batch_size,
        progress=True, allow_extrapolation=True, threshold=threshold, phase_levels=levels, raw=raw, size=film_size,
    )
    out.mkdir(parents=True, exist_ok=True)
    stems = [f"sample_{i:04d}" for i in range(len(result))]
    measured: list[dict[str, float]] = []
    for start in tqdm(range(0, len(result), batch_size), desc="descriptors", unit="batch"):
        measured += compute_batch(result.labels[start:start + batch_size], n_jobs=jobs, n_phases=generator.n_phases)
    for i, (stem, labels) in enumerate(zip(tqdm(stems, desc="writing", unit="volume"), result.labels)):
        write_volume(out / f"{stem}.npy", labels)
        if vti:
            write_volume(out / f"{stem}.vti", labels)
        if graspi:
            write_volume(out / f"{stem}.txt", labels)
        if raw:
            write_volume(out / f"{stem}_grey.npy", result.grey[i])
            if vti:
                write_volume(out / f"{stem}_grey.vti", result.grey[i])
        if reconstructions is not None:
            write_volume(out / f"reconstruction_{i:04d}.npy", reconstructions[i])
            if vti:
                write_volume(out / f"reconstruction_{i:04d}.vti", reconstructions[i])
    frame = sample_table(result, measured, generator.condition_names, stems)
    if sources:
        frame.insert(2, "source", sources)
        frame.insert(3, "reconstruction", [f"reconstruction_{i:04d}" for i in range(len(result))])
    if completed:
        frame.insert(2, "completed", ";".join(completed))
    with atomic_path(out / CSV_NAME) as tmp:
        frame.to_csv(tmp, index=False)
    mode = "dataset" if from_dataset is not None else ("random" if ranges else "constant")
    settings = {
        "model": str(model), "kind": kind, "mode": mode, "conditions": values,
        "condition_ranges": {k: list(v) for k, v in ranges.items()}, "completed": completed,
        "complete_method": complete if completed else None,
        "from_dataset": str(from_dataset) if from_dataset is not None else None, "n": len(result), "sampler": sampler,
        "steps": steps, "guidance": guidance, "feature_guidance": feature_guidance, "seed": seed, "allow_extrapolation": allow_extrapolation,
        "threshold": threshold, "phase_levels": levels.to_list() if levels is not None else None, "raw": raw,
        "volume_shape": list(result.labels.shape[1:]), "n_phases": generator.n_phases,
    }
    with atomic_path(out / SETTINGS_NAME) as tmp:
        tmp.write_text(json.dumps(settings, indent=2))
    typer.echo(f"wrote {len(result)} volume(s) {tuple(result.labels.shape[1:])} and {CSV_NAME} to {out}")
