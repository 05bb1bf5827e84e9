"""Cahn-Hilliard solver throughput: torch (CPU, and CUDA when present) vs a plain numpy FFT version.

Measures voxel-steps per second of the semi-implicit stabilised spectral
scheme of :mod:`generator.physics.cahn_hilliard` at 64x64x32 and 128x128x64,
batch 1 and batch 8, side by side in one run, checks that the numpy and torch
versions agree, prints a table with the speed-up ratios and writes
``benchmarks/results/ch_solver.json``.

    python benchmarks/ch_solver.py [--steps 10] [--threads N]

``--film`` times whole series instead: one run of the ``film`` preset's physics
at ``--film-shape`` (default 128x128x64) to its end time, with today's fixed
step (periodic and no-flux electrodes) and with adaptive steps (the preset's
tolerance and a coarser one), side by side; for each its wall and CPU time,
solver steps, the domain size 2 pi / <k> at every snapshot relative to the
fixed-step no-flux run, and the descriptors of the last snapshot.

    python benchmarks/ch_solver.py --film [--film-shape 128x128x64] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from generator.physics.cahn_hilliard import CLAMP, CHParameters, initial_fields, make_stepper

RESULTS = Path(__file__).resolve().parent / "results" / "ch_solver.json"


def numpy_stepper(params: CHParameters, chi: np.ndarray, dtype: type = np.float64):
    """The same scheme with ``numpy.fft`` (numpy >= 2 keeps float32 in float32)."""
    axes = tuple(range(1, len(params.shape) + 1))
    freqs = [np.fft.fftfreq(n, d=params.dx) for n in params.shape[:-1]] + [np.fft.rfftfreq(params.shape[-1], d=params.dx)]
    k2 = sum((2 * np.pi * g) ** 2 for g in np.meshgrid(*freqs, indexing="ij"))
    dt_m_k2 = (params.dt * params.mobility * k2).astype(dtype)
    implicit = (1 + 2 * params.kappa * dt_m_k2 * k2).astype(dtype)
    chi = chi.reshape((-1,) + (1,) * len(params.shape)).astype(dtype)
    n_a, n_b = dtype(params.n_a), dtype(params.n_b)
    lo, hi = dtype(CLAMP), dtype(1 - CLAMP)

    def step(phi: np.ndarray, phi_hat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ends = np.stack([phi.min(axis=axes, keepdims=True), phi.max(axis=axes, keepdims=True)]).clip(lo, hi)
        convex = (1 / (n_a * ends) + 1 / (n_b * (1 - ends))).max(axis=0)
        stab = dt_m_k2 * (0.5 * np.maximum(convex - 2 * chi, 2 * chi))
        p = phi.clip(lo, hi)
        bulk = (np.log(p) + 1) / n_a - (np.log1p(-p) + 1) / n_b + chi * (1 - 2 * p)
        phi_hat = ((1 + stab) * phi_hat - dt_m_k2 * np.fft.rfftn(bulk, axes=axes)) / (implicit + stab)
        return np.fft.irfftn(phi_hat, s=params.shape, axes=axes), phi_hat

    return step


def _time(step, phi, phi_hat, steps: int, sync=lambda: None) -> tuple[float, object]:
    phi, phi_hat = step(phi, phi_hat)  # warm-up (plans, allocations)
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        phi, phi_hat = step(phi, phi_hat)
    sync()
    return time.perf_counter() - start, phi


def run(steps: int) -> list[dict]:
    rows = []
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for shape in [(64, 64, 32), (128, 128, 64)]:
        for batch in (1, 8):
            params = CHParameters(shape=shape)
            phi0 = np.full(batch, 0.5)
            chi = np.linspace(2.9, 3.4, batch)
            fields = initial_fields(phi0, list(range(batch)), params)
            voxel_steps = batch * int(np.prod(shape)) * steps
            dims = tuple(range(1, len(shape) + 1))

            row = {"shape": list(shape), "batch": batch, "steps": steps}
            for dtype in (np.float32, np.float64):
                precision = np.dtype(dtype).name
                start = fields.astype(dtype)
                seconds_np, phi_np = _time(numpy_stepper(params, chi, dtype), start, np.fft.rfftn(start, axes=dims), steps)
                row[f"numpy_{precision}_voxel_steps_per_s"] = voxel_steps / seconds_np
                for device in devices:
                    torch_dtype = getattr(torch, precision)
                    chi_t = torch.as_tensor(chi, dtype=torch_dtype, device=device).reshape((-1,) + (1,) * len(shape))
                    phi = torch.as_tensor(start, device=device)
                    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
                    with torch.inference_mode():
                        seconds, phi_t = _time(make_stepper(params, chi_t), phi, torch.fft.rfftn(phi, dim=dims), steps, sync)
                    name = f"torch_{device}_{precision}"
                    row[f"{name}_voxel_steps_per_s"] = voxel_steps / seconds
                    row[f"{name}_vs_numpy"] = seconds_np / seconds
                    row[f"{name}_max_abs_diff_vs_numpy"] = float(np.abs(phi_t.cpu().numpy() - phi_np).max())
            rows.append(row)
            _print_row(row, devices)
    return rows


def _print_row(row: dict, devices: list[str]) -> None:
    shape = "x".join(map(str, row["shape"]))
    for precision in ("float32", "float64"):
        parts = [f"{shape:>11} B={row['batch']:<2} {precision}: numpy {row[f'numpy_{precision}_voxel_steps_per_s'] / 1e6:6.1f} M/s"]
        for device in devices:
            key = f"torch_{device}_{precision}"
            parts.append(f"torch {device} {row[key + '_voxel_steps_per_s'] / 1e6:7.1f} M/s  ratio x{row[key + '_vs_numpy']:5.2f}  (max diff {row[key + '_max_abs_diff_vs_numpy']:.0e})")
        print(" | ".join(parts), flush=True)


def film_series(shape: tuple[int, ...], seeds: int = 1) -> list[dict]:
    """Whole series of the ``film`` preset's physics: fixed vs adaptive steps, periodic vs no-flux electrodes."""
    from generator.descriptors import compute
    from generator.physics.cahn_hilliard import characteristic_length, simulate
    from generator.physics.labels import label_two_phase
    from generator.physics.presets import load_preset

    film = load_preset("film").ch.model_copy(update={"shape": shape})
    cases = [
        ("fixed dt, periodic electrodes (before)", {"z_boundary": "periodic", "adaptive": False}),
        ("fixed dt, no-flux electrodes", {"adaptive": False}),
        (f"adaptive (preset, tol {film.step_tolerance:g})", {}),
        ("adaptive (tol 3e-3, dt_max 2)", {"step_tolerance": 3e-3, "dt_max": 2.0}),
    ]
    phi0, chi = [0.5] * seeds, [3.2] * seeds
    rows, reference = [], None
    for name, update in cases:
        params = film.model_copy(update=update)
        wall, cpu = time.perf_counter(), time.process_time()
        snaps = list(simulate(params, phi0, chi, list(range(seeds))))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        lengths = np.array([characteristic_length(s.fields).mean() for s in snaps])
        if name.startswith("fixed dt, no-flux"):
            reference = lengths
        last = [compute(label_two_phase(f)) for f in snaps[-1].fields]
        rows.append({"case": name, "shape": list(shape), "series": seeds, "end_time": snaps[-1].time, "solver_steps": snaps[-1].solver_steps,
                     "wall_s_per_series": wall / seeds, "cpu_s_per_series": cpu / seeds, "domain_size": lengths.tolist(),
                     **{k: float(np.mean([d[k] for d in last])) for k in ("ABS_f_D", "CT_f_D_tort1", "CT_f_A_tort1")}})
    for row in rows:
        ratio = np.array(row["domain_size"]) / reference
        row["domain_size_vs_fixed_no_flux_max_dev"] = float(np.abs(ratio - 1).max())
        print(f"{row['case']:<40} {row['solver_steps']:>5} steps  wall {row['wall_s_per_series']:6.1f} s  CPU {row['cpu_s_per_series']:6.1f} s"
              f"  domain size vs fixed: max dev {row['domain_size_vs_fixed_no_flux_max_dev']:.3f}"
              f"  CT_f_D_tort1 {row['CT_f_D_tort1']:.3f}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per case (after one warm-up step)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--film", action="store_true", help="time whole film series (fixed vs adaptive steps) instead")
    parser.add_argument("--film-shape", default="128x128x64")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.film:
        shape = tuple(int(v) for v in args.film_shape.split("x"))
        print(f"Whole Cahn-Hilliard series of the film preset at {args.film_shape} (torch {torch.__version__}, {torch.get_num_threads()} threads)")
        rows = film_series(shape)
        out = RESULTS.with_name("ch_solver_film.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"benchmark": "ch_solver --film", "torch": torch.__version__, "threads": torch.get_num_threads(),
                                   "load_average_at_start": list(__import__("os").getloadavg()), "rows": rows}, indent=2))
        print(f"wrote {out}")
        return
    print(f"Cahn-Hilliard step throughput, voxel-steps per second (torch {torch.__version__}, {torch.get_num_threads()} threads)")
    rows = run(args.steps)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "benchmark": "ch_solver", "torch": torch.__version__, "numpy": np.__version__, "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(), "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "rows": rows,
    }, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    from generator.errors import exit_on_user_error

    exit_on_user_error(main)
