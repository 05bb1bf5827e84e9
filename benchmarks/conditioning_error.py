"""Where a generator's conditioning error comes from, and what sampling-time fixes buy.

The model card's R² of measured against requested says *how much* the films miss; this says *why*,
on a bundle's validation series (never the card's held-out films):

1. **Per-sample noise or a condition-specific error?** Every condition is generated with two noise
   seeds. Half the variance of the seed-to-seed difference is the per-sample noise; the rest of the
   residual variance (measured - requested) is an error the model makes at that condition whatever
   the noise, i.e. what a better denoiser (or more data there) must fix.
2. **Does the feature predictor see it?** R² of the feature predictor's output on the sampled latents
   against the requested and against the measured values.
3. **Feature-predictor guidance** (``--fp-guidance λ,...``, ``Generator.generate(feature_guidance=λ)``):
   over the second half of the DPM-Solver++ steps the predicted clean latent ``x0`` takes a gradient
   step of size ``λ`` on the feature predictor's squared error of the requested conditions (in
   training stds); the model output is rebuilt from the moved ``x0``.
4. **Condition recalibration** (``--recalibrate M``): the response is measured on ``M`` generated films
   at *training* conditions, a Gaussian process learns the condition to ask for to get a measured
   value, and the validation conditions are generated with it.

    python benchmarks/conditioning_error.py --model generator/pretrained/default.pt --size 64x64x64 -n 64 \\
        --fp-guidance 10,30,100 --recalibrate 480 --threads 2

Prints tables and writes ``benchmarks/results/conditioning_error.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from guidance import r2_per_column as r2, split_conditions, validation_setup  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "conditioning_error.json"


def main() -> None:
    from generator.descriptors import compute_batch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="generator/pretrained/default.pt")
    parser.add_argument("--size", default=None, help="film size XxYxZ (default: the model's)")
    parser.add_argument("-n", type=int, default=64, help="validation conditions")
    parser.add_argument("--fp-guidance", default="", help="comma list of feature-predictor guidance steps λ")
    parser.add_argument("--recalibrate", type=int, default=0, help="films at training conditions to learn a recalibration from")
    parser.add_argument("--seed", type=int, default=0, help="which validation conditions")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS), help="JSON file to write")
    args = parser.parse_args()
    gen, names, size, requested = validation_setup(args)
    sampling = gen.resolve_sampling(None, None, None)

    def measure(labels: np.ndarray) -> np.ndarray:
        return np.array([[d[k] for k in names] for d in compute_batch(list(labels), n_jobs=args.threads)])

    t0 = time.perf_counter()
    runs = [gen.generate(requested, seed=seed, batch_size=8, size=size) for seed in (0, 1)]
    measured = [measure(r.labels) for r in runs]
    shape = list(runs[0].labels.shape[1:])
    residual = measured[0] - requested
    noise_var = ((measured[0] - measured[1]) ** 2).mean(axis=0) / 2  # per-sample noise variance (two seeds)
    fp_pred = np.column_stack([runs[0].predicted[n] for n in names])
    report: dict = {
        "model": args.model, "size": shape, "n_conditions": len(requested), "sampling": list(sampling),
        "conditions_from": "validation series of the training run",
        "r2": dict(zip(names, r2(measured[0], requested))),
        "r2_second_seed": dict(zip(names, r2(measured[1], requested))),
        "residual_sd": dict(zip(names, residual.std(axis=0).tolist())),
        "per_sample_noise_sd": dict(zip(names, np.sqrt(noise_var).tolist())),
        "noise_share_of_residual_variance": dict(zip(names, (noise_var / (residual**2).mean(axis=0)).tolist())),
        "fp_r2_vs_requested": dict(zip(names, r2(fp_pred, requested))),
        "fp_r2_vs_measured": dict(zip(names, r2(fp_pred, measured[0]))),
        "seconds_two_seeds": time.perf_counter() - t0,
    }
    print(f"{args.model}: {len(requested)} validation conditions, films {shape}, {sampling}")
    print(f"{'':34}" + "".join(f"{n:>16}" for n in names))
    for key in ("r2", "r2_second_seed", "residual_sd", "per_sample_noise_sd", "noise_share_of_residual_variance",
                "fp_r2_vs_requested", "fp_r2_vs_measured"):
        print(f"{key:34}" + "".join(f"{report[key][n]:16.4f}" for n in names), flush=True)

    report["r2_mean_of_seeds"] = {n: (report["r2"][n] + report["r2_second_seed"][n]) / 2 for n in names}
    print(f"{'r2_mean_of_seeds':34}" + "".join(f"{report['r2_mean_of_seeds'][n]:16.4f}" for n in names), flush=True)
    report["fp_guidance"] = []
    for lam in (float(v) for v in args.fp_guidance.split(",") if v.strip()):
        per_seed = []
        for seed in (0, 1):
            guided = gen.generate(requested, seed=seed, batch_size=8, size=size, feature_guidance=lam)
            per_seed.append(r2(measure(guided.labels), requested))
        p = np.column_stack([guided.predicted[n] for n in names])
        mean = np.mean(per_seed, axis=0)
        row = {"lambda": lam, "r2_mean_of_seeds": dict(zip(names, mean.tolist())),
               "r2_per_seed": [dict(zip(names, r)) for r in per_seed], "fp_r2_vs_requested": dict(zip(names, r2(p, requested)))}
        report["fp_guidance"].append(row)
        print(f"fp guidance λ={lam:g}: measured R² (mean of 2 seeds) "
              + " ".join(f"{n} {row['r2_mean_of_seeds'][n]:.3f}" for n in names)
              + "; fp R² vs requested " + " ".join(f"{row['fp_r2_vs_requested'][n]:.3f}" for n in names), flush=True)

    if args.recalibrate:
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        asked = split_conditions(args.model, names, args.recalibrate, seed=1, split="training")
        got = measure(gen.generate(asked, seed=1, batch_size=8, size=size).labels)
        kernel = ConstantKernel() * RBF(np.ones(len(names))) + WhiteKernel()
        inverse = make_pipeline(StandardScaler(), GaussianProcessRegressor(kernel, normalize_y=True)).fit(got, asked - got)
        corrected = requested + inverse.predict(requested)
        m = measure(gen.generate(corrected, seed=0, batch_size=8, size=size, allow_extrapolation=True).labels)
        report["recalibration"] = {"n_fit_films": len(asked), "r2_fit_films": dict(zip(names, r2(got, asked))),
                                   "r2": dict(zip(names, r2(m, requested)))}
        print(f"recalibrated on {len(asked)} films at training conditions: measured R² "
              + " ".join(f"{n} {report['recalibration']['r2'][n]:.3f}" for n in names), flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    from generator.errors import exit_on_user_error

    exit_on_user_error(main)
