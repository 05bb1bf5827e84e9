"""Benchmark: seconds per sample and conditional accuracy of each sampler, side by side, for one model.

Run ``python benchmarks/sampling.py --model BUNDLE`` (or ``--model FOLDER --kind KIND``
for MicroGen3D weights). For every sampler setting (DDPM-1000, DDIM-50,
DPM-Solver++ 25 and 10 by default) it generates the same ``n`` conditions with
the same seed, and reports

* seconds per sample: the whole :meth:`Generator.generate` call (latent
  sampling, decoding, feature predictor), after one warm-up batch, median of
  ``--repeats``, wall and CPU time (CPU of this process, all its threads); and
  the ratio to DDPM-1000 measured in the same run;
* peak memory: the largest resident set size reached during the call, above
  the resident size before it (sampled every 5 ms);
* conditional accuracy: R² between the requested condition values and the
  GraSPI descriptors measured on the generated volumes, per condition and
  averaged (only for a trained model: the conditions are rows of its training
  descriptor table).

``--random-microgen3d KIND`` times the published paper-size networks with random
weights instead (speed only; the values of the weights do not change the
cost), e.g. on a GPU. Prints a table and writes ``benchmarks/results/sampling.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from generator.data.from_volume import parse_shape  # noqa: E402
from generator.descriptors import compute_batch  # noqa: E402
from generator.diffusion.settings import resolve_feature_guidance  # noqa: E402
from generator.io import atomic_path  # noqa: E402
from generator.loading import load_generator  # noqa: E402
from generator.pipeline import Generator  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "sampling.json"
#: (sampler, steps) measured by default; ``ddpm`` steps are capped at the model's training steps.
SETTINGS = (("ddpm", 1000), ("ddim", 50), ("dpm++", 25), ("dpm++", 10))


def requested_conditions(gen: Generator, n: int, seed: int) -> tuple[np.ndarray, bool]:
    """``(n, K)`` conditions: random training-table rows (``True``), or the middle of each range (``False``)."""
    table = gen.descriptor_table
    if table is not None and all(name in table.columns for name in gen.condition_names):
        rows = np.random.default_rng(seed).choice(len(table), size=n, replace=len(table) < n)
        return table[gen.condition_names].to_numpy(dtype=np.float64)[rows], True
    middle = [0.5 * (lo + min(hi, lo + 1.0)) for lo, hi in (gen.condition_ranges.get(name, (0.0, 1.0)) for name in gen.condition_names)]
    return np.tile(middle, (n, 1)), False


def r2(requested: np.ndarray, measured: np.ndarray) -> float:
    """Coefficient of determination of ``measured`` against ``requested`` (NaN when the request is constant)."""
    from sklearn.metrics import r2_score

    return float(r2_score(requested, measured)) if np.ptp(requested) > 0 else float("nan")


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


class PeakMemory:
    """Context manager: the peak resident set size above the one at entry, sampled in a thread (``.peak_mb``)."""

    def __enter__(self) -> "PeakMemory":
        import threading

        self.base = _rss_bytes()
        self.peak = self.base
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.wait(0.005):
                self.peak = max(self.peak, _rss_bytes())

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())

    @property
    def peak_mb(self) -> float:
        return (self.peak - self.base) / 2**20


def time_setting(gen: Generator, conditions: np.ndarray, sampler: str, steps: int, args: argparse.Namespace,
                 feature_guidance: float | None = None):
    """Median wall and CPU seconds per sample over ``args.repeats`` runs (after a warm-up batch), peak memory (MB), last result."""
    kwargs = dict(sampler=sampler, steps=steps, guidance=args.guidance, seed=args.seed, batch_size=args.batch_size,
                  allow_extrapolation=True, size=args.size, feature_guidance=feature_guidance)
    gen.generate(conditions[: args.batch_size], **{**kwargs, "steps": min(steps, 2)})  # warm-up: allocations, kernels
    times, cpu_times, peaks = [], [], []
    for _ in range(args.repeats):
        synchronise(gen.device)
        start, cpu = time.perf_counter(), time.process_time()
        with PeakMemory() as memory:
            result = gen.generate(conditions, **kwargs)
            synchronise(gen.device)
        times.append((time.perf_counter() - start) / len(conditions))
        cpu_times.append((time.process_time() - cpu) / len(conditions))
        peaks.append(memory.peak_mb)
    return statistics.median(times), statistics.median(cpu_times), max(peaks), result


def accuracy(gen: Generator, result, conditions: np.ndarray) -> dict[str, float]:
    """R² per condition (requested vs measured on the decoded volumes) and their mean."""
    measured = compute_batch(result.labels, n_phases=gen.n_phases)
    scores = {}
    for j, name in enumerate(gen.condition_names):
        if name in measured[0]:
            scores[name] = r2(conditions[:, j], np.array([m[name] for m in measured]))
    finite = [v for v in scores.values() if np.isfinite(v)]
    scores["mean"] = float(np.mean(finite)) if finite else float("nan")
    return scores


def load(args: argparse.Namespace) -> tuple[Generator, str]:
    if args.random_microgen3d:
        from generator.loading import microgen3d_generator
        from generator.models.microgen3d import build_networks

        torch.manual_seed(0)
        return microgen3d_generator(args.random_microgen3d, *build_networks(args.random_microgen3d), device=args.device), f"MicroGen3D {args.random_microgen3d} (random weights)"
    return load_generator(args.model, kind=args.kind, device=args.device), str(args.model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="bundle file, 'default', or MicroGen3D folder (with --kind)")
    parser.add_argument("--kind", default=None, help="MicroGen3D kind of a weights folder")
    parser.add_argument("--random-microgen3d", default=None, metavar="KIND", help="time the paper-size MicroGen3D networks with random weights")
    parser.add_argument("-n", type=int, default=16, help="samples per setting")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--guidance", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--settings", default=None, help="comma list of sampler:steps (default ddpm:1000,ddim:50,dpm++:25,dpm++:10)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--size", default=None, help="film size XxYxZ (resizable models; default: the model's)")
    parser.add_argument("--feature-guidance", default=None,
                        help="comma list of feature-predictor guidance steps, each timed with every setting (default: the model's)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.size = parse_shape(args.size, "--size", dims=(3,)) if args.size else None
    if args.threads:
        torch.set_num_threads(args.threads)

    gen, model_name = load(args)
    settings = SETTINGS if args.settings is None else tuple((s.split(":")[0], int(s.split(":")[1])) for s in args.settings.split(","))
    conditions, trained = requested_conditions(gen, args.n, args.seed)
    device = torch.device(args.device)
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    rows = []
    feature_guidances = [None] if args.feature_guidance is None else [float(v) for v in args.feature_guidance.split(",")]
    for (sampler, steps), fg in ((s, f) for s in settings for f in feature_guidances):
        steps = min(steps, gen.schedule.num_train_timesteps)
        seconds, cpu_seconds, peak_mb, result = time_setting(gen, conditions, sampler, steps, args, fg)
        scores = accuracy(gen, result, conditions) if trained and not args.random_microgen3d else {}
        fg = resolve_feature_guidance(fg, gen.sampling_defaults)
        rows.append({"sampler": sampler, "steps": steps, "feature_guidance": fg, "seconds_per_sample": seconds,
                     "cpu_seconds_per_sample": cpu_seconds, "peak_memory_mb": peak_mb, "r2": scores})
        print(f"{sampler}-{steps} (feature guidance {fg:g}): {seconds:.4g} s/sample (CPU {cpu_seconds:.4g} s), peak +{peak_mb:.0f} MB, "
              f"R² {scores.get('mean', float('nan')):.3f}", flush=True)
    base = rows[0]["seconds_per_sample"]
    for row in rows:
        row["speedup_vs_first"] = base / row["seconds_per_sample"]

    from rich.console import Console
    from rich.table import Table

    shape = tuple(result.labels.shape[1:])
    table = Table(title=f"sampling: {model_name}, {hardware}, films {'x'.join(map(str, shape))}, n={args.n}, batch {args.batch_size}")
    for column in ("sampler", "steps", "feature guidance", "s / sample", "CPU s / sample", "peak MB", f"speed-up vs {rows[0]['sampler']}-{rows[0]['steps']}",
                   "R² mean", *gen.condition_names):
        table.add_column(column, justify="right")
    for row in rows:
        scores = row["r2"]
        table.add_row(row["sampler"], str(row["steps"]), f"{row['feature_guidance']:g}", f"{row['seconds_per_sample']:.4g}", f"{row['cpu_seconds_per_sample']:.4g}",
                      f"{row['peak_memory_mb']:.0f}", f"{row['speedup_vs_first']:.1f}x",
                      f"{scores.get('mean', float('nan')):.3f}", *(f"{scores.get(name, float('nan')):.3f}" for name in gen.condition_names))
    Console().print(table)
    report = {
        "model": model_name, "hardware": hardware, "torch": torch.__version__, "volume_shape": list(shape),
        "latent_shape": list(gen.latent_shape), "n": args.n, "batch_size": args.batch_size, "repeats": args.repeats,
        "guidance": args.guidance, "conditions_from_training_table": trained, "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    from generator.errors import exit_on_user_error

    exit_on_user_error(main)
