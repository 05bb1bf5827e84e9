"""How many generator evaluations does each sampler need to meet a target?

For fixed targets, every sampler (random, TPE, GP, BoTorch) runs a study per
seed and stops at the first trial whose *measured* descriptors meet every
target. An evaluation is one generator call (``samples_per_trial`` volumes);
proposals rejected by the feasibility check cost none and are counted
separately. A run that never meets the targets within ``--budget``
evaluations counts as ``budget + 1`` (censored; shown with ``>``). The table
shows medians over the seeds, side by side in one run, and the ratio of each
sampler's median to random search's. ``--feasibility`` compares option A
(``constraint``) with option B (``pca``).

Usage::

    python benchmarks/search_efficiency.py --model runs/tiny/generator.pt --seeds 5

Without ``--model`` it trains the ``tiny`` preset into
``benchmarks/results/tiny_model`` first (about a minute). Results go to
``benchmarks/results/search_efficiency.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import optuna

from inverse.search import MEASURED, run_study
from inverse.spec import parse_spec

RESULTS = Path(__file__).resolve().parent / "results"


def tiny_model() -> Path:
    """Train (once) the ``tiny`` preset on the ``tiny`` dataset; return the bundle path."""
    from generator.data.build import simulate_dataset
    from generator.descriptors import describe_dataset
    from generator.training import train_pipeline

    out = RESULTS / "tiny_model"
    bundle = out / "generator.pt"
    if bundle.is_file():
        return bundle
    out.mkdir(parents=True, exist_ok=True)
    data = simulate_dataset("tiny", out / "tiny.h5", progress=True)
    describe_dataset(data, n_jobs=1, progress=True)
    return Path(train_pipeline("tiny", data=data, out_dir=out / "train", progress=True))


def one_run(generator, model: str, sampler: str, seed: int, feasibility: str, targets: dict, budget: int, samples: int, steps: int) -> dict:
    """Run one study until the targets are met or ``budget`` evaluations are spent."""
    spec = parse_spec({
        "name": f"{sampler}_{feasibility}_{seed}", "model": model, "search_sampler": sampler, "seed": seed,
        "n_trials": 4 * budget, "n_startup_trials": 5, "samples_per_trial": samples, "targets": targets,
        "feasibility": feasibility, "generation": {"steps": steps},
    })

    def stop(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        measured = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("status") == MEASURED]
        if trial.user_attrs.get("meets_targets") or len(measured) >= budget:
            study.stop()

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        study = run_study(spec, generator=generator, storage=f"sqlite:///{tmp}/b.db", runs_dir=tmp, progress=False, callbacks=[stop])
        seconds = time.perf_counter() - start
    evaluations, proposals, met = 0, 0, False
    for t in study.get_trials(deepcopy=False):
        proposals += 1
        if t.user_attrs.get("status") == MEASURED or t.state == optuna.trial.TrialState.FAIL:
            evaluations += 1
        if t.user_attrs.get("meets_targets"):
            met = True
            break
    return {"evaluations": evaluations if met else budget + 1, "met": met, "proposals": proposals, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="bundle path (default: train the tiny preset)")
    parser.add_argument("--samplers", default="random,tpe,gp,botorch")
    parser.add_argument("--feasibility", default="constraint", help="comma-separated: constraint (option A), pca (option B)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budget", type=int, default=30, help="generator evaluations per run before giving up")
    parser.add_argument("--samples", type=int, default=2, help="volumes per evaluation")
    parser.add_argument("--steps", type=int, default=5, help="diffusion steps per generation")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared CPU: threads spin-wait)")
    parser.add_argument("--out", type=Path, default=RESULTS / "search_efficiency.json", help="JSON to write")
    parser.add_argument("--targets", default='{"ABS_f_D": {"at_least": 0.45, "at_most": 0.5}, "CT_f_D_tort1": {"at_least": 0.5}, "CT_f_A_tort1": {"at_least": 0.5}}')
    args = parser.parse_args()

    import torch

    from generator.loading import load_generator

    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    model = str(args.model or tiny_model())
    generator = load_generator(model)
    targets = json.loads(args.targets)
    rows = []
    for feasibility in args.feasibility.split(","):
        for sampler in args.samplers.split(","):
            runs = [one_run(generator, model, sampler, seed, feasibility, targets, args.budget, args.samples, args.steps) for seed in range(args.seeds)]
            row = {
                "sampler": sampler, "feasibility": feasibility,
                "median_evaluations": statistics.median(r["evaluations"] for r in runs),
                "median_proposals": statistics.median(r["proposals"] for r in runs),
                "met": sum(r["met"] for r in runs), "seeds": args.seeds,
                "median_seconds": statistics.median(r["seconds"] for r in runs), "runs": runs,
            }
            rows.append(row)
            print(f"  {feasibility:10s} {sampler:8s} evaluations {[r['evaluations'] for r in runs]}", flush=True)
    random = {r["feasibility"]: r["median_evaluations"] for r in rows if r["sampler"] == "random"}
    print(f"\ntargets {targets} (budget {args.budget} evaluations, {args.samples} volumes each, {args.steps} steps)")
    print(f"{'feasibility':12s} {'sampler':8s} {'median evals':>12s} {'vs random':>9s} {'proposals':>9s} {'met':>5s} {'s/run':>7s}")
    for r in rows:
        ratio = r["median_evaluations"] / random[r["feasibility"]] if r["feasibility"] in random else float("nan")
        censored = ">" if r["median_evaluations"] > args.budget else " "
        r["ratio_to_random"] = ratio
        print(f"{r['feasibility']:12s} {r['sampler']:8s} {censored}{r['median_evaluations']:>11g} {ratio:>9.2f} {r['median_proposals']:>9g} "
              f"{r['met']:>2d}/{r['seeds']:<2d} {r['median_seconds']:>7.1f}")
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": model, "targets": targets, "budget": args.budget, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    from generator.errors import exit_on_user_error

    exit_on_user_error(main)
