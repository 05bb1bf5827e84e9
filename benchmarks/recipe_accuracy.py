"""Benchmark: how good are the predicted recipes? Verify the example studies' top recipes by simulation.

Run ``python benchmarks/recipe_accuracy.py --model BUNDLE`` (default: the shipped model).
For every example study (``studies/*.toml``) it runs the study on the model (a
short run: ``--n-trials``), simulates its top ``--top-k`` recipes over
``--seeds`` seeds with the training data's Cahn-Hilliard settings
(:func:`inverse.verify.verify_study`), and reports:

* ``frac_generated_meet`` / ``frac_simulated_meet``: fraction of the top recipes
  whose generated / simulated descriptor means meet the targets, and
  ``frac_runs_meet``: fraction of the individual simulated runs that do;
* ``mae``: mean absolute error between the generated and the simulated
  descriptor means, per target/objective descriptor, and ``mae_scaled``
  (each divided by the study's descriptor scale, i.e. in score units);
* the recipe error: how far the FP's (phi, chi, log_time) lies from the recipe
  that makes the generated microstructure. That recipe is estimated by
  nearest neighbours in descriptor space over a *reference atlas*: a dataset
  simulated with the training data's settings on a finer (phi, chi) grid
  over the training ranges (``--atlas N``: N x N series, every snapshot;
  ``generator.data.simulate_dataset`` + ``describe_dataset``), and over the
  training table itself (``recipe_error_training``). ``recipe_error`` is
  ``|FP recipe - atlas recipe of the generated descriptors|`` per variable;
  ``recipe_error_floor`` applies the same estimator to the *simulated*
  descriptors, whose true recipe is the FP recipe: what the estimate itself
  costs (seed noise, grid spacing). ``fp_recipe_std`` is the FP's own spread
  over a trial's samples.

Prints a table and writes ``benchmarks/results/recipe_accuracy.json``.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from generator.errors import MicrodesignError  # noqa: E402
from generator.io import atomic_path  # noqa: E402
from inverse.search import run_study  # noqa: E402
from generator.descriptors import is_count as is_count_descriptor  # noqa: E402
from inverse.spec import load_spec  # noqa: E402
from inverse.verify import (  # noqa: E402
    RECIPE,
    SimulationSettings,
    nearest_training_recipe,
    read_model_record,
    simulation_settings,
    verify_study,
)

RESULTS = REPO / "benchmarks" / "results" / "recipe_accuracy.json"


def reference_atlas(settings: SimulationSettings, table, n: int, workdir: Path):  # noqa: ANN001, ANN201
    """Descriptor table of an ``n x n`` (phi, chi) grid over the training ranges, simulated like the training data."""
    from generator.data.build import simulate_dataset
    from generator.descriptors import describe_dataset
    from generator.physics.presets import DatasetPreset
    from generator.training.data import open_dataset, sample_table

    preset = DatasetPreset(
        name="atlas", n_phases=settings.n_phases, design="grid", n_phi0=n, n_chi=n, seed=50_000, batch_size=n * n,
        phi0_range=(float(table["phi"].min()), float(table["phi"].max())),
        chi_range=(float(table["chi"].min()), float(table["chi"].max())),
        ch=settings.ch.model_copy(update={"n_snapshots": max(settings.ch.n_snapshots, 12)}),
    )
    path = simulate_dataset(preset, workdir / f"atlas_{n}.h5", progress=False)
    describe_dataset(path, progress=False)
    return sample_table(open_dataset(path))


def _recipes(estimates) -> np.ndarray:  # noqa: ANN001
    return np.array([[(e or {}).get(v, np.nan) for v in RECIPE] for e in estimates], dtype=float)


def study_metrics(report, study, table, atlas) -> dict:  # noqa: ANN001
    """The benchmark's numbers for one verified study (see the module docstring)."""
    names = report.descriptor_names
    fractions = [j for j, n in enumerate(names) if not is_count_descriptor(n)]
    scales = study.user_attrs.get("descriptor_scales", {})
    results = report.results
    gen = np.array([[r.generated_mean.get(n, np.nan) for n in names] for r in results])
    sim = np.array([[r.simulated_mean.get(n, np.nan) for n in names] for r in results])
    err = np.abs(gen - sim)
    scale = np.array([scales.get(n, 1.0) for n in names])
    fp = np.array([[r.recipe[v] for v in RECIPE] for r in results])
    compared = [n for n in results[0].generated_mean if n in (atlas if atlas is not None else table).columns]
    reference = atlas if atlas is not None else table
    from_generated = _recipes(nearest_training_recipe(r.generated_mean, reference, compared) for r in results)
    from_simulated = _recipes(nearest_training_recipe(r.simulated_mean, reference, compared) for r in results)
    from_training = _recipes(r.nearest_training_recipe for r in results)
    fp_std = np.array([[study.trials[r.trial].user_attrs.get("recipe_std", {}).get(v, np.nan) for v in RECIPE] for r in results])
    return {
        "n_verified": len(results),
        "frac_generated_meet": float(np.mean([r.generated_meets_targets for r in results])),
        "frac_simulated_meet": float(np.mean([r.meets_targets for r in results])),
        "frac_runs_meet": float(np.mean([r.fraction_meeting for r in results])),
        "mae": dict(zip(names, np.nanmean(err, axis=0).tolist())),
        "mae_fractions": float(np.nanmean(err[:, fractions])) if fractions else None,
        "mae_scaled": float(np.nanmean(err / scale)),
        "seed_std_fractions": float(np.nanmean([[r.simulated_std.get(names[j], np.nan) for j in fractions] for r in results]))
        if fractions else None,
        "recipe_error": dict(zip(RECIPE, np.nanmean(np.abs(fp - from_generated), axis=0).tolist())),
        "recipe_error_floor": dict(zip(RECIPE, np.nanmean(np.abs(fp - from_simulated), axis=0).tolist())),
        "recipe_error_training": dict(zip(RECIPE, np.nanmean(np.abs(fp - from_training), axis=0).tolist())),
        "fp_recipe_std": dict(zip(RECIPE, np.nanmean(fp_std, axis=0).tolist())),
        "below_spinodal": int(sum(r.below_spinodal for r in results)),
        "outside_training": int(sum(bool(r.outside_training) for r in results)),
        "recipes": [
            {"trial": r.trial, "rank": r.rank, "recipe": r.recipe, "nearest_training_recipe": r.nearest_training_recipe,
             "atlas_recipe_generated": dict(zip(RECIPE, g)), "atlas_recipe_simulated": dict(zip(RECIPE, m)),
             "generated_score": r.generated_score, "simulated_score": r.score, "meets_targets": r.meets_targets,
             "generated_mean": {n: r.generated_mean.get(n) for n in names}, "simulated_mean": {n: r.simulated_mean.get(n) for n in names}}
            for r, g, m in zip(results, from_generated.tolist(), from_simulated.tolist())
        ],
    }


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def print_table(rows: list[dict], model: str) -> None:
    """One line per study."""
    from rich.console import Console
    from rich.table import Table

    out = Table(title=f"recipe accuracy of {model}")
    columns = ("study", "verified", "gen meets", "sim meets", "runs meet", "MAE frac.", "MAE/scale", "seed std",
               "|Δφ|", "|Δχ|", "|Δlog t|", "floor |Δφ| |Δχ| |Δlog t|", "train-kNN |Δφ| |Δχ| |Δlog t|", "s")
    for column in columns:
        out.add_column(column, justify="right")
    for row in rows:
        if "error" in row:
            out.add_row(row["study"], *["-"] * (len(columns) - 2), f"{row['seconds']:.0f}")
            continue
        e, f, t = row["recipe_error"], row["recipe_error_floor"], row["recipe_error_training"]
        out.add_row(
            row["study"], str(row["n_verified"]), f"{row['frac_generated_meet']:.2f}", f"{row['frac_simulated_meet']:.2f}",
            f"{row['frac_runs_meet']:.2f}", _num(row["mae_fractions"]), f"{row['mae_scaled']:.2f}", _num(row["seed_std_fractions"]),
            f"{e['phi']:.3f}", f"{e['chi']:.3f}", f"{e['log_time']:.3f}",
            f"{f['phi']:.3f} {f['chi']:.3f} {f['log_time']:.3f}", f"{t['phi']:.3f} {t['chi']:.3f} {t['log_time']:.3f}",
            f"{row['seconds']:.0f}",
        )
    Console(width=170).print(out)
    for row in rows:
        if "error" in row:
            print(f"{row['study']}: skipped: {row['error']}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="generator bundle (default: the shipped model)")
    parser.add_argument("--studies", default=str(REPO / "studies" / "*.toml"), help="glob of study specs")
    parser.add_argument("--n-trials", type=int, default=12, help="trials per study (short runs)")
    parser.add_argument("--samples", type=int, default=None, help="override samples per trial")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--preset", default=None, help="dataset preset (models without a simulation record)")
    parser.add_argument("--atlas", type=int, default=5, help="reference atlas: N x N (phi, chi) series (0: training table only)")
    parser.add_argument("--workdir", default=None, help="folder for the study databases and the atlas (default: a temporary one)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    record = read_model_record(args.model)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        atlas = None
        if args.atlas and record.descriptor_table is not None:
            start = time.perf_counter()
            atlas = reference_atlas(simulation_settings(record, args.preset), record.descriptor_table, args.atlas, workdir)
            print(f"reference atlas: {len(atlas)} simulated samples in {time.perf_counter() - start:.0f} s", flush=True)
        for path in sorted(glob.glob(args.studies)):
            name = Path(path).stem
            start = time.perf_counter()
            url = f"sqlite:///{workdir / f'{name}.db'}"
            try:
                spec = load_spec(path, model=args.model, n_trials=args.n_trials, samples_per_trial=args.samples,
                                 storage=url, n_startup_trials=min(args.n_trials, 6))
                study = run_study(spec, runs_dir=workdir, progress=False)
                report = verify_study(study, top_k=args.top_k, n_seeds=args.seeds, preset=args.preset, storage_url=url,
                                      runs_dir=workdir, progress=True)
                row = {"study": name, **study_metrics(report, study, record.descriptor_table, atlas)}
                row["simulation"] = report.settings.to_json()
            except MicrodesignError as exc:
                row = {"study": name, "error": str(exc)}
            row["seconds"] = time.perf_counter() - start
            rows.append(row)
            print(f"{name}: done in {row['seconds']:.0f} s", flush=True)

    done = [r for r in rows if "error" not in r]
    summary = {
        "model": str(args.model), "n_trials": args.n_trials, "top_k": args.top_k, "seeds": args.seeds,
        "n_training_samples": None if record.descriptor_table is None else len(record.descriptor_table),
        "frac_simulated_meet": float(np.mean([r["frac_simulated_meet"] for r in done])) if done else None,
        "frac_generated_meet": float(np.mean([r["frac_generated_meet"] for r in done])) if done else None,
        "mae_fractions": float(np.nanmean([r["mae_fractions"] or np.nan for r in done])) if done else None,
        "mae_scaled": float(np.mean([r["mae_scaled"] for r in done])) if done else None,
        "atlas_samples": None if atlas is None else len(atlas),
    }
    for key in ("recipe_error", "recipe_error_floor", "recipe_error_training", "fp_recipe_std"):
        summary[key] = {v: float(np.nanmean([r[key][v] for r in done])) for v in RECIPE} if done else None
    print_table(rows, str(args.model))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp_out:
        tmp_out.write_text(json.dumps({"summary": summary, "studies": rows}, indent=2, default=float))
    print(f"wrote {out}")
    return summary


if __name__ == "__main__":
    from generator.errors import exit_on_user_error

    exit_on_user_error(main)
