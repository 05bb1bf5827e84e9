"""Choose a model's sampling defaults on its validation series: R² of measured against requested per setting.

The conditions are rows of the bundle's own validation split (series the networks never saw,
``split_by_series`` as in training), never the held-out films of the model card, so the card's
numbers stay a test. For each (sampler steps, guidance) the same conditions and noise are used.

    python benchmarks/guidance.py --model runs/train-film/generator.pt --size 64x64x64 \\
        --guidance 1,1.5,2,2.5,3 --steps 25 -n 32

Prints a table and writes ``benchmarks/results/guidance.json``.
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

RESULTS = Path(__file__).resolve().parent / "results" / "guidance.json"


def split_conditions(model: str, names: list[str], n: int, seed: int = 0, split: str = "validation") -> np.ndarray:
    """``(n, K)`` seeded rows of columns ``names`` of a bundle's ``validation`` or ``training`` series
    (``split_by_series`` as in its training)."""
    from generator.checkpoint import read_bundle, tensor_to_table
    from generator.data.dataset import split_by_series

    bundle = read_bundle(model)
    table = tensor_to_table(bundle["descriptor_table"])
    data_cfg = bundle["configs"]["training"]["data"]
    train_idx, val_idx = split_by_series(table["series"].to_numpy(), data_cfg["val_fraction"], seed=data_cfg["seed"])
    idx = val_idx if split == "validation" else train_idx
    rows = np.random.default_rng(seed).choice(idx, size=min(n, len(idx)), replace=False)
    return table.iloc[rows][names].to_numpy(float)


def r2_per_column(measured: np.ndarray, requested: np.ndarray) -> list[float]:
    """Per-column R² of ``measured`` against ``requested`` ``(n, K)``."""
    ss = ((requested - requested.mean(axis=0)) ** 2).sum(axis=0)
    return (1 - ((measured - requested) ** 2).sum(axis=0) / ss).tolist()


def validation_setup(args: argparse.Namespace):  # noqa: ANN201
    """``(generator, condition names, film size or None, requested (n, K))`` of a benchmark's ``--model``, ``--size``,
    ``-n``, ``--seed`` and ``--threads`` (torch's thread count is set here)."""
    from generator.data.from_volume import parse_shape
    from generator.loading import load_generator

    torch.set_num_threads(args.threads)
    size = parse_shape(args.size, "--size", dims=(3,)) if args.size else None
    gen = load_generator(args.model)
    return gen, gen.condition_names, size, split_conditions(args.model, gen.condition_names, args.n, args.seed)


def main() -> None:
    from generator.descriptors import compute_batch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--size", default=None, help="film size XxYxZ (default: the model's)")
    parser.add_argument("--guidance", default="1,1.5,2,2.5,3")
    parser.add_argument("--steps", default="25", help="comma list of DPM-Solver++ step counts")
    parser.add_argument("-n", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--feature-guidance", type=float, default=None, help="feature-predictor guidance step (default: the model's)")
    parser.add_argument("--out", default=str(RESULTS), help="JSON file to write")
    args = parser.parse_args()
    gen, names, size, requested = validation_setup(args)
    results = []
    for steps in (int(s) for s in args.steps.split(",")):
        for g in (float(v) for v in args.guidance.split(",")):
            t0, c0 = time.perf_counter(), time.process_time()
            res = gen.generate(requested, sampler="dpm++", steps=steps, guidance=g, seed=args.seed, batch_size=8, size=size,
                               feature_guidance=args.feature_guidance)
            wall, cpu = (time.perf_counter() - t0) / len(requested), (time.process_time() - c0) / len(requested)
            measured = np.array([[d[k] for k in names] for d in compute_batch(list(res.labels), n_jobs=1)])
            r2 = dict(zip(names, r2_per_column(measured, requested)))
            bias = {k: float((measured[:, j] - requested[:, j]).mean()) for j, k in enumerate(names)}
            results.append({"steps": steps, "guidance": g, "r2": r2, "bias": bias, "wall_s_per_film": wall, "cpu_s_per_film": cpu})
            print(f"dpm++-{steps} guidance {g:g}: " + "  ".join(f"{k} R² {r2[k]:.3f} (bias {bias[k]:+.4f})" for k in names)
                  + f"  {wall:.2f} s/film", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": str(args.model), "feature_guidance": args.feature_guidance, "size": list(res.labels.shape[1:]), "n_conditions": len(requested),
                                   "conditions_from": "validation series of the training run", "results": results}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    from generator.errors import exit_on_user_error

    exit_on_user_error(main)
