"""Signed conditioning error along a sweep of one requested condition: is there a systematic bias?

The model card reports R² and MAE of measured against requested descriptors over held-out
conditions; a small bias in one region (e.g. near a study's target) hides in those. This sweeps
one condition over values with the others fixed, generates ``-n`` films per value (seeded, at the
settings a study uses), measures them (GraSPI-exact) and prints measured minus requested per
condition, for each set of fixed values.

    python benchmarks/condition_bias.py --sweep ABS_f_D=0.40,0.43,0.45,0.47,0.50,0.55 \\
        --fixed CT_f_D_tort1=0.14,CT_f_A_tort1=0.14 --fixed CT_f_D_tort1=0.11,CT_f_A_tort1=0.11 -n 4 --steps 20

Prints a table and writes ``benchmarks/results/condition_bias.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RESULTS = REPO / "benchmarks" / "results" / "condition_bias.json"


def parse_values(text: str) -> tuple[str, list[float]]:
    """``NAME=v1,v2,...`` -> ``(NAME, [v1, v2, ...])``."""
    name, _, values = text.partition("=")
    return name.strip(), [float(v) for v in values.split(",") if v.strip()]


def parse_fixed(text: str) -> dict[str, float]:
    """``A=0.1,B=0.2`` -> ``{"A": 0.1, "B": 0.2}``."""
    return {k.strip(): float(v) for k, _, v in (item.partition("=") for item in text.split(",") if item.strip())}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--sweep", required=True, help="NAME=v1,v2,...: the swept condition and its requested values")
    parser.add_argument("--fixed", action="append", default=[], help="NAME=v,NAME=v: the other conditions (repeat for several sets)")
    parser.add_argument("-n", type=int, default=4, help="films per requested value")
    parser.add_argument("--steps", type=int, default=None, help="solver steps (default: the model's)")
    parser.add_argument("--guidance", type=float, default=None, help="guidance (default: the model's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    from generator.descriptors import compute_batch
    from generator.loading import load_generator

    torch.set_num_threads(args.threads)
    gen = load_generator(args.model)
    swept, values = parse_values(args.sweep)
    fixed_sets = [parse_fixed(text) for text in args.fixed] or [{}]
    names = list(gen.condition_names)
    rows = []
    start_all, cpu_all = time.perf_counter(), time.process_time()
    for fixed in fixed_sets:
        for value in values:
            request = {**fixed, swept: value}
            missing = [n for n in names if n not in request]
            if missing:
                parser.error(f"--fixed: no value for the condition {missing[0]}")
            result = gen.generate(request, n=args.n, steps=args.steps, guidance=args.guidance, seed=int(round(value * 1000)))
            measured = pd.DataFrame(compute_batch(list(result.labels), n_jobs=args.threads))
            row = {"fixed": fixed, "requested": request,
                   "measured_mean": {n: float(measured[n].mean()) for n in names},
                   "measured_std": {n: float(measured[n].std(ddof=0)) for n in names},
                   "bias": {n: float(measured[n].mean() - request[n]) for n in names}}
            rows.append(row)
            print(f"{fixed} {swept}={value:.3g}: " + ", ".join(f"{n} {row['measured_mean'][n]:.4f} ({row['bias'][n]:+.4f})"
                                                               for n in names), flush=True)
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"measured - requested ({args.n} films each; {gen.volume_shape} films)")
    table.add_column("fixed")
    table.add_column(f"requested {swept}", justify="right")
    for n in names:
        table.add_column(f"Δ {n}", justify="right")
    for row in rows:
        table.add_row(", ".join(f"{k} {v:g}" for k, v in row["fixed"].items()), f"{row['requested'][swept]:.3g}",
                      *[f"{row['bias'][n]:+.4f}" for n in names])
    Console(width=160).print(table)
    summary = {"model": str(args.model), "film_shape": list(gen.volume_shape), "n": args.n, "steps": args.steps,
               "guidance": args.guidance, "sampling_defaults": dict(gen.sampling_defaults), "swept": swept, "rows": rows,
               "wall_s": time.perf_counter() - start_all, "cpu_s": time.process_time() - cpu_all}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    print(f"wrote {out}")
    return summary


if __name__ == "__main__":
    from generator.errors import exit_on_user_error

    exit_on_user_error(main)
