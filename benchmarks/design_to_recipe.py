"""Benchmark: from a target design to a recipe that holds up under physics, against physics-only search.

Run ``python benchmarks/design_to_recipe.py --model BUNDLE`` (default: the
shipped model; ``--quick`` for a CI-sized check). Everything is simulated with
the model's own physics (:func:`inverse.verify.simulation_settings`: the
bundle's ``simulation`` record, at the size of the generated films).

1. **Held-out physics films.** ``--series`` new Cahn-Hilliard series at
   scrambled-Halton ``(phi, chi)`` over the training ranges, fresh noise seeds
   (``--heldout-seed``), every snapshot of the training schedule: films the
   model never saw.
2. **Recipe posterior coverage** (:mod:`inverse.posterior`): the fraction of
   held-out films whose true recipe lies inside the posterior's 80 % region
   (goal 75-85 %) and inside each variable's 80 % interval, the interval
   widths, and the degenerate ``(chi, log_time)`` direction.
   With ``--target-films K`` each series is run K times (other seeds) and a
   target is measured on the mean of the K films of one snapshot (default 1;
   ``--quick``: 4, because one 32x32x16 film is too noisy for ±0.03).
3. **Reachable targets.** Held-out films
   (in a seeded random order, at most ``--per-series`` per series) become
   targets: each ``--descriptors`` value ``± --tolerance``. A target is
   *reachable* when its film's own recipe, simulated over ``--seeds`` runs
   (the verification seeds), meets it on the mean; unreachable ones are
   skipped (counted) until ``--n-targets`` reachable ones are found.
4. **Three ways to a recipe**, per target:

   (a) *toolkit*: a generator study (``--n-trials`` trials, TPE), verification
       of its top recipe (posterior mean, ``--seeds`` runs), then physics
       refinement (:func:`inverse.refine.refine_trial`, ``--budget`` runs,
       verification runs included) when it misses;
   (b) *physics only*: Optuna TPE over ``(phi, chi, log_time)`` with the
       simulator as the objective (:func:`inverse.refine.search_recipes`
       without warm start; ``--baseline-budget`` runs);
   (c) *generator loop without refinement*: (a) stopped after the verification.

   For each: success (a recipe whose simulated mean meets every target),
   simulator runs and simulator seconds to the first verified recipe, wall
   time (for (a): generator study + verification + refinement), and the
   recipe's distance to the film's true recipe (``|Δphi|`` and along the
   non-degenerate ``(chi, log_time)`` direction, in training stds).
5. **Time breakdown of a trial** (generate / measure / recipe / storage, from
   the trials' ``seconds``), and the descriptor time of one trial's films on
   one thread against every core.

Prints a table and writes ``benchmarks/results/design_to_recipe.json``
(``design_to_recipe_quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from generator.data.from_volume import parse_shape  # noqa: E402
from generator.io import atomic_path  # noqa: E402
from inverse import evaluation  # noqa: E402
from inverse.posterior import RECIPE, posterior_for_model  # noqa: E402
from inverse.refine import evaluate_recipe, recipe_bounds, refine_trial, search_recipes  # noqa: E402
from inverse.spec import Target, parse_spec  # noqa: E402
from inverse.verify import DEFAULT_SEED, read_model_record, simulation_settings, verify_study  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
#: Default target descriptors: donor fraction, straight paths of both phases, interface density.
DESCRIPTORS = ("ABS_f_D", "CT_f_D_tort1", "CT_f_A_tort1", "norm_STAT_e")


def heldout_films(settings, table: pd.DataFrame, n_series: int, seed: int, device: str | None, replicates: int = 1) -> pd.DataFrame:  # noqa: ANN001
    """Descriptors and recipes of every snapshot of ``n_series`` new series (Halton (phi, chi)).

    Each series is run ``replicates`` times (noise seeds ``seed + i + 100000 r``), column ``replicate``.
    """
    from generator.descriptors import compute_batch
    from generator.physics.cahn_hilliard import simulate
    from generator.physics.presets import DatasetPreset
    from inverse.verify import label_fields

    preset = DatasetPreset(name="heldout", design="halton", n_series=n_series, seed=seed,
                           phi0_range=(float(table["phi"].min()), float(table["phi"].max())),
                           chi_range=(float(table["chi"].min()), float(table["chi"].max())), ch=settings.ch)
    phi0, chi, seeds = preset.series_parameters()
    k = len(phi0)
    series = np.tile(np.arange(k), replicates)
    replicate = np.repeat(np.arange(replicates), k)
    run_seeds = np.tile(seeds, replicates) + 100_000 * replicate
    rows = []
    for snap in simulate(settings.ch, phi0[series], chi[series], run_seeds, device=device):
        labels = label_fields(snap.fields, settings.n_phases)
        for i, d in enumerate(compute_batch(list(labels), n_phases=settings.n_phases)):
            rows.append({**d, "series": int(series[i]), "replicate": int(replicate[i]), "seed": int(run_seeds[i]),
                         "phi": phi0[series[i]], "chi": chi[series[i]], "log_time": snap.log_time, "snapshot": snap.index})
    return pd.DataFrame(rows)


def target_films(films: pd.DataFrame) -> pd.DataFrame:
    """One row per (series, snapshot): the mean descriptors of its replicates (the films a target is measured on)."""
    if "replicate" not in films.columns:
        return films.reset_index(drop=True)
    return films.groupby(["series", "snapshot"], as_index=False).mean(numeric_only=True)


def heldout_from_file(path: str, settings) -> pd.DataFrame:  # noqa: ANN001
    """The held-out films of an HDF5 dataset (``microdesign simulate --seed 9000 ...``), described here when needed.

    Its films must have the verification size (the generated films') and the model's physics.
    """
    from generator.data.hdf5 import read_root_attributes
    from generator.errors import InvalidInputError
    from generator.training.data import described_table

    table = described_table(path)
    shape = tuple(read_root_attributes(path).get("ch_parameters", {}).get("shape", ()))
    if shape and tuple(shape) != tuple(settings.ch.shape):
        raise InvalidInputError(f"--heldout: its films are {list(shape)}, the verification films {list(settings.ch.shape)}")
    return table


def coverage(posterior, films: pd.DataFrame) -> dict:  # noqa: ANN001
    """Calibration of the posterior on held-out films, and the degenerate (chi, log_time) direction."""
    return {**posterior.predict(films).coverage(films[list(RECIPE)].to_numpy(dtype=float)),
            "degenerate_direction": posterior.degenerate_direction()}


def target_spec(name: str, model: str, targets: dict[str, Target], n_trials: int, samples: int | None, url: str,
                size: tuple[int, int, int] | None = None) -> object:
    data = {"name": name, "model": model, "search_sampler": "tpe", "n_trials": n_trials, "n_startup_trials": min(6, n_trials),
            "seed": 0, "storage": url, "targets": {n: {"equal": t.equal, "tolerance": t.tolerance} for n, t in targets.items()}}
    if samples:
        data["samples_per_trial"] = samples
    if size:
        data["generation"] = {"size": list(size)}
    return parse_spec(data)


def _distance(posterior, recipe: dict | None, truth: np.ndarray) -> dict | None:  # noqa: ANN001
    if recipe is None:
        return None
    return posterior.recipe_error(np.array([recipe[n] for n in RECIPE]), truth)


def target_storage(workdir: Path, i: int) -> str:
    """The Optuna storage of target ``i``: its generator study, refinement and physics-only search."""
    return f"sqlite:///{workdir / f'target{i}.db'}"


def run_target(i: int, film: pd.Series, args, model: str, settings, posterior, scales, workdir: Path) -> dict:  # noqa: ANN001
    """(a), (b) and (c) for one target."""
    from inverse.search import run_study

    truth = film[list(RECIPE)].to_numpy(dtype=float)
    targets = {n: Target(equal=float(np.clip(film[n], 0, 1)), tolerance=args.tolerance) for n in args.descriptors}
    url = target_storage(workdir, i)
    bounds = recipe_bounds(settings, posterior_table(model))
    out: dict = {"target": i, "true_recipe": dict(zip(RECIPE, truth.tolist())), "targets": {n: t.equal for n, t in targets.items()}}

    # (a) and (c): generator study, verification of the top recipe, refinement
    start = time.perf_counter()
    spec = target_spec(f"t{i}", model, targets, args.n_trials, args.samples, url, size=args.size)
    study = run_study(spec, storage=url, runs_dir=workdir, progress=False)
    study_s = time.perf_counter() - start
    trial_seconds = [t.user_attrs.get("seconds") for t in study.trials if t.user_attrs.get("seconds")]
    report = verify_study(study, top_k=1, n_seeds=args.seeds, storage_url=url, runs_dir=workdir, store=True, device=args.device)
    verified = report.results[0]
    verify_s = time.perf_counter() - start - study_s
    c = {"success": verified.meets_targets, "runs": len(verified.seeds), "wall_s": study_s + verify_s, "recipe": verified.recipe,
         "distance": _distance(posterior, verified.recipe, truth), "generator_s": study_s, "verify_s": verify_s}
    out["c"] = c
    if verified.meets_targets:
        out["a"] = {**c, "refined": False}
    else:
        result = refine_trial(study, verified, settings, storage=url, budget=args.budget, n_seeds=args.seeds, device=args.device)
        recipe = result.verified.recipe if result.verified else (result.best.recipe if result.best else None)
        out["a"] = {"success": result.status == "verified", "runs": result.runs_to_verified or result.n_runs,
                    "wall_s": time.perf_counter() - start, "recipe": recipe, "distance": _distance(posterior, recipe, truth),
                    "refined": True, "refine_s": result.seconds, "generator_s": study_s, "verify_s": verify_s}
    out["trial_seconds"] = trial_seconds

    if args.no_baseline or args.baseline_workers:
        return out
    b = run_baseline(i, targets, scales, settings, bounds, url, args.baseline_budget, args.seeds, args.device)
    out["b"] = {**b, "distance": _distance(posterior, b["recipe"], truth)}
    return out


def run_baseline(i: int, targets: dict[str, Target], scales, settings, bounds, url: str, budget: int, n_seeds: int,  # noqa: ANN001
                 device: str | None, threads: int | None = None) -> dict:
    """(b), physics only, for target ``i``: Optuna TPE over the recipe with the simulator as the objective.

    Resumes the target's ``t{i}:physics-only`` study when it exists (a run stopped half-way loses no simulation;
    ``resumed_runs`` says how many of its runs an earlier process made, whose wall time ``wall_s`` leaves out).
    ``threads``: torch threads and descriptor threads of this process (a worker beside the generator loop takes one).
    """
    if threads:
        import torch

        torch.set_num_threads(threads)
    start = time.perf_counter()
    name = f"t{i}:physics-only"
    earlier = _runs_in_study(url, name)
    base = search_recipes(targets, scales, settings, storage=url, study_name=name, budget=budget, n_seeds=n_seeds, bounds=bounds,
                          sampler="tpe", sampler_seed=i, n_startup_trials=6, device=device, n_jobs=threads)
    recipe = base.verified.recipe if base.verified else (base.best.recipe if base.best else None)
    ran = base.trail[: base.trail.index(base.verified) + 1] if base.verified else base.trail
    return {"success": base.status == "verified", "runs": base.runs_to_verified or base.n_runs,
            "wall_s": time.perf_counter() - start, "sim_s": sum(sum(c.seconds.values()) for c in ran), "recipe": recipe,
            "resumed_runs": earlier}


def _runs_in_study(url: str, name: str) -> int:
    """Simulator runs already stored in a study (0 when it does not exist yet)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=name, storage=url)
    except KeyError:
        return 0
    return sum(len(t.user_attrs.get("seeds", [])) for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
               if "recipe" in t.user_attrs)


def _row_targets(row: dict, tolerance: float) -> dict[str, Target]:
    return {n: Target(equal=v, tolerance=tolerance) for n, v in row["targets"].items()}


def _baseline_record(b: dict, row: dict, posterior) -> dict:  # noqa: ANN001
    """(b)'s result with its recipe's distance to the target film's true recipe."""
    truth = np.array([row["true_recipe"][n] for n in RECIPE])
    return {**b, "distance": _distance(posterior, b["recipe"], truth)}


class _ParallelBaseline:
    """(b) in worker processes beside the generator loop (``--baseline-workers``): the simulator at 128x128x64
    keeps about one core busy, so the physics-only searches run while (a) and (c) go on with the next targets.

    A context manager: leaving it on an error (or Ctrl-C) stops the workers at once; their studies keep every
    finished simulation, and ``--resume`` goes on from them.
    """

    def __init__(self, args, settings, scales, posterior) -> None:  # noqa: ANN001
        self.args, self.settings, self.scales, self.posterior = args, settings, scales, posterior
        self.bounds = recipe_bounds(settings, posterior_table(args.model))
        self.pending: dict = {}

    def __enter__(self) -> _ParallelBaseline:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.pool = ProcessPoolExecutor(max_workers=self.args.baseline_workers, mp_context=multiprocessing.get_context("spawn"))
        return self

    def __exit__(self, kind, value, traceback) -> None:  # noqa: ANN001
        if kind is None:
            self.pool.shutdown()
            return
        processes = list((getattr(self.pool, "_processes", None) or {}).values())  # the executor has no terminate()
        self.pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()

    def submit(self, row: dict, workdir: Path) -> None:
        i = row["target"]
        url = target_storage(workdir, i)
        future = self.pool.submit(run_baseline, i, _row_targets(row, self.args.tolerance), self.scales, self.settings, self.bounds,
                                  url, self.args.baseline_budget, self.args.seeds, self.args.device, 1)
        self.pending[future] = row

    def collect(self, wait: bool) -> bool:
        """Store finished searches in their rows; with ``wait``, block until one finishes (False: none left).

        A search that failed leaves its row without (b) (said on one line): ``--resume`` retries it in its study.
        """
        from concurrent.futures import FIRST_COMPLETED
        from concurrent.futures import wait as wait_for

        if not self.pending:
            return False
        done, _ = wait_for(list(self.pending), timeout=None if wait else 0, return_when=FIRST_COMPLETED)
        for future in done:
            row = self.pending.pop(future)
            try:
                b = future.result()
            except Exception as exc:  # noqa: BLE001 - one failed search (a worker killed for memory...) must not end the run
                print(f"target {row['target']}: (b) failed ({type(exc).__name__}: {exc}); --resume retries it", flush=True)
                continue
            row["b"] = {**_baseline_record(b, row, self.posterior), "parallel": True}
            print(f"target {row['target']}: (b) {b['success']} in {b['runs']} runs ({b['wall_s']:.0f} s)", flush=True)
        return bool(done)


def _write_partial(out_path: Path, args, rows: list[dict], tried: int, run_seconds: list[float]) -> None:  # noqa: ANN001
    """The targets done so far, so that a run stopped early (hours on a CPU) keeps them; the final summary replaces it."""
    partial = out_path.with_name(out_path.stem + "_partial.json")
    partial.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(partial) as tmp:
        tmp.write_text(json.dumps({"partial": True, "args": {k: v for k, v in vars(args).items()}, "n_candidates": tried,
                                   "run_seconds": run_seconds, "targets": rows}, indent=2, default=str))


#: Settings that define a run: a --resume must repeat them.
_RUN_KEYS = ("model", "quick", "n_targets", "series", "heldout_seed", "heldout", "per_series", "max_candidates", "descriptors",
             "tolerance", "target_films", "seeds", "n_trials", "samples", "budget", "baseline_budget", "size", "no_baseline")


def _resumed(out_path: Path, args) -> tuple[list[dict], int, list[float]]:  # noqa: ANN001
    """The finished targets, the number of candidates tried and the simulator seconds per run of their reachability checks
    of an earlier run's ``*_partial.json`` (none: a fresh start)."""
    from generator.errors import InvalidInputError

    partial = out_path.with_name(out_path.stem + "_partial.json")
    if not partial.is_file():
        print(f"--resume: no {partial.name}; starting afresh", flush=True)
        return [], 0, []
    if not args.workdir:
        raise InvalidInputError("--resume: give the --workdir of the run to resume (its held-out films and studies)")
    earlier = json.loads(partial.read_text())
    now = json.loads(json.dumps({k: getattr(args, k) for k in _RUN_KEYS}, default=str))
    differ = [k for k in _RUN_KEYS if earlier["args"].get(k) != now[k]]
    if differ:
        raise InvalidInputError(f"--resume: {partial.name} was run with other settings ({', '.join(differ)})")
    print(f"--resume: {len(earlier['targets'])} targets done, {earlier['n_candidates']} candidates tried", flush=True)
    return list(earlier["targets"]), int(earlier["n_candidates"]), list(earlier.get("run_seconds", []))


_TABLES: dict[str, pd.DataFrame] = {}


def posterior_table(model: str) -> pd.DataFrame | None:
    if model not in _TABLES:
        _TABLES[model] = read_model_record(model).descriptor_table
    return _TABLES[model]


def summarise(rows: list[dict], key: str, per_run_s: float) -> dict:
    """Success rate, median runs / simulator seconds / wall time to a verified recipe, median distances."""
    done = [r[key] for r in rows]
    ok = [d for d in done if d["success"]]

    def median(values: list[float]) -> float | None:
        values = [v for v in values if v is not None and np.isfinite(v)]
        return float(np.median(values)) if values else None

    return {
        "n": len(done), "success": float(np.mean([d["success"] for d in done])) if done else None,
        "median_runs_to_verified": median([d["runs"] for d in ok]),
        "median_sim_s_to_verified": median([d["runs"] * per_run_s for d in ok]),
        "median_wall_s_to_verified": median([d["wall_s"] for d in ok]),
        "mean_runs_all": float(np.mean([d["runs"] for d in done])) if done else None,
        "total_runs": int(sum(d["runs"] for d in done)),
        "median_dphi": median([d["distance"]["phi"] for d in ok if d["distance"]]),
        "median_non_degenerate": median([d["distance"]["non_degenerate"] for d in ok if d["distance"]]),
        "median_degenerate": median([d["distance"]["degenerate"] for d in ok if d["distance"]]),
    }


def trial_breakdown(rows: list[dict]) -> dict:
    """Mean seconds per trial step over every trial of every target's study."""
    seconds = [s for r in rows for s in r.get("trial_seconds", [])]
    keys = ("generate", "measure", "recipe", "storage")
    return {k: float(np.mean([s.get(k, 0.0) for s in seconds])) if seconds else None for k in keys} | {"n_trials": len(seconds)}


def measure_speedup(model: str, n: int) -> dict:
    """Descriptor time of ``n`` generated films on one thread and on every core."""
    from generator.loading import load_generator
    from generator.descriptors import compute_batch

    generator = load_generator(model)
    table = generator.descriptor_table
    conditions = {c: float(table[c].median()) for c in generator.condition_names} if table is not None else {}
    labels = np.asarray(generator.generate(conditions, n, steps=10, seed=0, progress=False).labels)
    timings = {}
    for jobs in (1, None):
        start = time.perf_counter()
        compute_batch(list(labels), n_jobs=jobs)
        timings["1 thread" if jobs == 1 else f"{os.cpu_count()} threads"] = time.perf_counter() - start
    return {"films": n, "shape": list(labels.shape[1:]), "seconds": timings}


def print_table(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    cov = summary["coverage"]
    d = cov["degenerate_direction"]
    console.print(f"recipe posterior on {cov['n_films']} held-out films: true recipe inside the 80 % region in "
                  f"{cov['joint']:.0%} (goal 75-85 %); marginal phi {cov['marginal']['phi']:.0%}, chi {cov['marginal']['chi']:.0%}, "
                  f"log t {cov['marginal']['log_time']:.0%}; mean 80 % widths phi {cov['interval_width']['phi']:.3f}, "
                  f"chi {cov['interval_width']['chi']:.3f}, log t {cov['interval_width']['log_time']:.3f}")
    console.print(f"degenerate (chi, log t) direction (training-std units): {np.round(d['direction'], 3).tolist()}, "
                  f"d log t / d chi = {d['slope']:.3f}, residual correlation {d['correlation']:.2f}, std ratio {d['std_ratio']:.1f}")
    out = Table(title=f"design -> recipe on {summary['model']} ({summary['n_targets']} reachable targets: mean of "
                      f"{summary['target_films']} film(s) ±{summary['tolerance']})")
    for column in ("method", "verified", "median runs", "median sim. s", "median wall s", "mean runs (all)", "|Δφ|", "Δ non-degen.", "Δ degen."):
        out.add_column(column, justify="right")
    names = {"a": "(a) toolkit: generator + verify + refine", "b": "(b) physics-only TPE", "c": "(c) generator + verify, no refinement"}

    def f(v: float | None, fmt: str = ".3g") -> str:
        return "-" if v is None else format(v, fmt)

    for key in ("a", "b", "c"):
        s = summary["methods"][key]
        out.add_row(names[key], f(s["success"], ".0%"), f(s["median_runs_to_verified"]), f(s["median_sim_s_to_verified"]),
                    f(s["median_wall_s_to_verified"]), f(s["mean_runs_all"]), f(s["median_dphi"]), f(s["median_non_degenerate"]),
                    f(s["median_degenerate"]))
    console.print(out)
    b = summary["trial_breakdown"]
    if b["n_trials"]:
        console.print("time of a generator trial (mean s): " + ", ".join(f"{k} {b[k]:.3f}" for k in ("generate", "measure", "recipe", "storage")))
    m = summary.get("measure_speedup")
    if m:
        console.print(f"descriptors of {m['films']} films {m['shape']}: " + ", ".join(f"{k} {v:.2f} s" for k, v in m["seconds"].items()))
    console.print(f"simulator: {summary['per_run_s']:.2f} s per run; reachable targets {summary['n_targets']} of {summary['n_candidates']} tried")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="generator bundle (default: the shipped model)")
    parser.add_argument("--quick", action="store_true",
                        help="CI-sized: 4 targets, 6 trials, budgets 12 / 24 runs, 8 held-out series, targets the mean of 4 films ± 0.05")
    parser.add_argument("--n-targets", type=int, default=20)
    parser.add_argument("--series", type=int, default=24, help="held-out series (coverage films and target candidates)")
    parser.add_argument("--heldout-seed", type=int, default=9000)
    parser.add_argument("--heldout", default=None,
                        help="an HDF5 dataset of held-out films to use instead of simulating them "
                             "(e.g. microdesign simulate --preset film --seed 9000 --n-series 12 --grid 128x128x64)")
    parser.add_argument("--per-series", type=int, default=2, help="most target candidates from one held-out series")
    parser.add_argument("--max-candidates", type=int, default=None, help="films tried as targets (default 10 x --n-targets)")
    parser.add_argument("--descriptors", default=",".join(DESCRIPTORS), help="target descriptors (comma-separated fractions)")
    parser.add_argument("--tolerance", type=float, default=None, help="± on each target descriptor (default 0.03; --quick 0.05)")
    parser.add_argument("--target-films", type=int, default=None,
                        help="held-out films (seeds) of one recipe whose mean is a target (default 1; --quick 4: 32x32x16 films are noisy)")
    parser.add_argument("--seeds", type=int, default=3, help="runs per recipe")
    parser.add_argument("--n-trials", type=int, default=16, help="generator trials per target")
    parser.add_argument("--samples", type=int, default=None, help="samples per trial (default: the spec default)")
    parser.add_argument("--budget", type=int, default=48, help="(a) simulator runs (verification included)")
    parser.add_argument("--baseline-budget", type=int, default=150, help="(b) simulator runs")
    parser.add_argument("--device", default=None, help="simulator device (cuda on a GPU)")
    parser.add_argument("--size", default=None,
                        help="film size XxYxZ to generate and simulate at (resizable models; default: the model's, e.g. 128x128x64). "
                             "A smaller size (the training films' 64x64x64) makes the benchmark 4x cheaper on a CPU")
    parser.add_argument("--no-baseline", action="store_true", help="skip (b), the physics-only search")
    parser.add_argument("--baseline-workers", type=int, default=0,
                        help="run (b) in this many processes beside (a) and (c) (one torch and descriptor thread each; default 0: "
                             "in line). The processes share the cores, so wall and simulator seconds grow; run counts and the "
                             "(a)/(b) ratios stay comparable")
    parser.add_argument("--coverage-only", action="store_true",
                        help="stop after the posterior coverage on the held-out films (written to --out)")
    parser.add_argument("--workdir", default=None,
                        help="keep the studies and the held-out films here (default: a temporary folder); needed by --resume")
    parser.add_argument("--resume", action="store_true",
                        help="go on from the *_partial.json of an earlier run with the same settings: its finished targets are kept, "
                             "its held-out films are read back from --workdir")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.n_targets, args.series, args.n_trials = min(args.n_targets, 4), min(args.series, 8), min(args.n_trials, 6)
        args.budget, args.baseline_budget = min(args.budget, 12), min(args.baseline_budget, 24)
    args.tolerance = args.tolerance if args.tolerance is not None else (0.05 if args.quick else 0.03)
    args.target_films = args.target_films if args.target_films is not None else (4 if args.quick else 1)
    if args.baseline_workers < 0:
        parser.error("--baseline-workers: must be >= 0")
    if args.heldout and args.target_films != 1:
        parser.error("--heldout datasets have one film per recipe and snapshot: use --target-films 1")
    args.descriptors = [d.strip() for d in args.descriptors.split(",") if d.strip()]
    args.size = parse_shape(args.size, "--size", dims=(3,)) if args.size else None
    out_path = Path(args.out or RESULTS / ("design_to_recipe_quick.json" if args.quick else "design_to_recipe.json"))

    total = time.perf_counter()
    record = read_model_record(args.model)
    settings = simulation_settings(record, size=args.size)
    posterior = posterior_for_model(args.model)
    table = record.descriptor_table
    scales = evaluation.descriptor_scales(args.descriptors, table)
    print(f"model {args.model}: films {list(settings.ch.shape)} ({settings.ch.z_boundary} electrodes), posterior on "
          f"{posterior.n_series} training series", flush=True)

    rows, tried_before, run_seconds = _resumed(out_path, args) if args.resume else ([], 0, [])
    cache = Path(args.workdir) / "heldout_films.csv" if args.workdir else None
    start = time.perf_counter()
    if args.heldout:
        films = heldout_from_file(args.heldout, settings)
    elif args.resume and cache is not None and cache.is_file():
        films = pd.read_csv(cache)
    else:
        films = heldout_films(settings, table, args.series, args.heldout_seed, args.device, replicates=args.target_films)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(cache) as tmp_cache:
                films.to_csv(tmp_cache, index=False)
    print(f"held-out films: {len(films)} from {films['series'].nunique()} series in {time.perf_counter() - start:.0f} s", flush=True)
    cov = coverage(posterior, films)
    print(f"coverage: joint {cov['joint']:.2f}, marginal {cov['marginal']}", flush=True)
    if args.coverage_only:
        summary = {"model": str(args.model), "film_shape": list(settings.ch.shape), "heldout": args.heldout,
                   "n_series": int(films["series"].nunique()), "coverage": cov}
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out_path) as tmp_out:
            tmp_out.write_text(json.dumps(summary, indent=2, default=float))
        print(f"wrote {out_path}")
        return summary

    # candidate targets: held-out films (the mean of their replicates) in a seeded random order, at most --per-series per series
    pool = target_films(films)
    order = np.random.default_rng(args.heldout_seed).permutation(len(pool))
    picked, per_series = [], {}
    for index in order:
        series = int(pool.iloc[index]["series"])
        if per_series.get(series, 0) < args.per_series:
            per_series[series] = per_series.get(series, 0) + 1
            picked.append(index)
    candidates = [pool.iloc[i] for i in picked[: args.max_candidates or 10 * args.n_targets]]
    verify_seeds = [DEFAULT_SEED + k for k in range(args.seeds)]
    tried = 0
    in_pool = bool(args.baseline_workers) and not args.no_baseline
    pool = _ParallelBaseline(args, settings, scales, posterior) if in_pool else contextlib.nullcontext()

    def save() -> None:
        _write_partial(out_path, args, rows, max(tried, tried_before), run_seconds)

    with tempfile.TemporaryDirectory() as tmp, pool as baseline:
        workdir = Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for stale in range(len(rows), args.n_targets):  # a target stopped half-way starts again from an empty study
            (workdir / f"target{stale}.db").unlink(missing_ok=True)
        for row in rows:  # (b) of a finished target that did not finish resumes in its study (in the pool, or here first)
            if "b" in row or args.no_baseline:
                continue
            if baseline is not None:
                baseline.submit(row, workdir)
                continue
            url = target_storage(workdir, row["target"])
            b = run_baseline(row["target"], _row_targets(row, args.tolerance), scales, settings, recipe_bounds(settings, table), url,
                             args.baseline_budget, args.seeds, args.device)
            row["b"] = _baseline_record(b, row, posterior)
            save()
        for film in candidates:
            if len(rows) >= args.n_targets:
                break
            tried += 1
            if tried <= tried_before:
                continue
            targets = {n: Target(equal=float(np.clip(film[n], 0, 1)), tolerance=args.tolerance) for n in args.descriptors}
            _, _, score, seconds = evaluate_recipe(dict(film[list(RECIPE)]), settings, targets, scales, verify_seeds, device=args.device)
            run_seconds.append(sum(seconds.values()) / args.seeds)
            if score > 0:
                print(f"series {int(film['series'])}: its own recipe misses the target (score {score:.3g}): not reachable, skipped", flush=True)
                continue
            row = run_target(len(rows), film, args, args.model, settings, posterior, scales, workdir)
            rows.append(row)
            save()
            b = row.get("b", {"success": None, "runs": None})
            print(f"target {row['target']}: (a) {row['a']['success']} in {row['a']['runs']} runs, (b) {b['success']} in "
                  f"{b['runs']} runs, (c) {row['c']['success']}", flush=True)
            if baseline is not None:
                baseline.submit(row, workdir)
                if baseline.collect(wait=False):
                    save()
        if baseline is not None:
            while baseline.collect(wait=True):
                save()
    tried = max(tried, tried_before)
    per_run = float(np.mean(run_seconds)) if run_seconds else float("nan")
    summary = {
        "model": str(args.model), "quick": args.quick, "film_shape": list(settings.ch.shape), "tolerance": args.tolerance,
        "target_films": args.target_films,
        "descriptors": args.descriptors, "seeds": args.seeds, "n_trials": args.n_trials, "budget": args.budget,
        "baseline_budget": args.baseline_budget, "n_targets": len(rows), "n_candidates": tried, "per_run_s": per_run,
        "coverage": cov, "methods": {k: summarise([r for r in rows if k in r], k, per_run) for k in ("a", "b", "c")},
        "trial_breakdown": trial_breakdown(rows), "measure_speedup": measure_speedup(args.model, 8),
        "seconds": time.perf_counter() - total, "targets": rows,
    }
    both = [r for r in rows if "a" in r and "b" in r]  # the ratios compare (a) and (b) on the same targets
    summary["n_targets_with_b"] = len(both)
    incomplete = len(both) < len(rows) and not args.no_baseline
    if incomplete:
        print(f"note: (b) finished on {len(both)} of {len(rows)} targets (--resume goes on); the ratios are over those", flush=True)
    if both:
        a, b = (summarise(both, k, per_run) for k in ("a", "b"))
        if a["median_sim_s_to_verified"] and b["median_sim_s_to_verified"]:
            summary["sim_time_ratio_a_over_b"] = a["median_sim_s_to_verified"] / b["median_sim_s_to_verified"]
        if a["total_runs"] and b["total_runs"]:  # every target, failures counted at their budget
            summary["runs_ratio_a_over_b_all_targets"] = a["total_runs"] / b["total_runs"]
    print_table(summary)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_path) as tmp_out:
        tmp_out.write_text(json.dumps(summary, indent=2, default=float))
    if not incomplete:  # otherwise --resume still needs it
        out_path.with_name(out_path.stem + "_partial.json").unlink(missing_ok=True)
    print(f"wrote {out_path} ({summary['seconds']:.0f} s)")
    return summary


if __name__ == "__main__":
    from generator.errors import exit_on_user_error

    exit_on_user_error(main)
