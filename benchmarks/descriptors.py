"""Benchmark: our GraSPI descriptors vs py-graspi (side by side) and vs the C++ GraSPI times of the fixtures.

Run ``python benchmarks/descriptors.py`` (py-graspi: ``pip install -e ".[bench]"``).
Prints tables and writes ``benchmarks/results/descriptors.json``.

* ours vs py-graspi on the same 32^3 CH-like volumes, in this one run, with the ratio;
* ours at 64^3 and 128x128x64 (median of repeats) and the peak memory of a fresh
  process describing one 128x128x64 volume;
* the C++ GraSPI seconds stored in the reference fixtures, next to ours on the same volumes;
* compute_batch on 1 thread vs every core.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from generator.descriptors import TWO_PHASE_NAMES, compute, compute_batch  # noqa: E402

FIXTURES = Path(os.environ.get("MICRODESIGN_SHARED", REPO.parent / "shared")) / "graspi_reference"
RESULTS = REPO / "benchmarks" / "results" / "descriptors.json"


def ch_like_volume(shape: tuple[int, ...], seed: int, sigma: float = 2.5, donor_fraction: float = 0.5) -> np.ndarray:
    """A thresholded Gaussian-filtered random field: a bicontinuous, CH-like two-phase volume (0 donor, 1 acceptor)."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return np.where(field < np.quantile(field, donor_fraction), 0, 1).astype(np.uint8)


def time_ours_wall_cpu(labels: np.ndarray, repeats: int, **kwargs) -> tuple[float, float]:
    """Median wall-clock and CPU seconds of :func:`compute`; on a loaded machine the CPU time is the fairer figure."""
    compute(labels, **kwargs)  # warm caches
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        compute(labels, **kwargs)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def run_py_graspi(labels: np.ndarray) -> tuple[float, float, dict[str, float]]:
    """Wall and CPU seconds and the descriptors of py-graspi on one 3-D two-phase volume (written to its .txt format)."""
    from py_graspi import compute_descriptors, generateGraph

    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
        Path("test_results").mkdir()  # py-graspi writes tortuosity files there
        nx, ny, nz = labels.shape
        with open("volume.txt", "w") as fh:
            fh.write(f"{nx} {ny} {nz}\n")
            np.savetxt(fh, labels.reshape(nx, ny * nz, order="F").T, fmt="%d")  # x fastest, then y, then z
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            start, start_cpu = time.perf_counter(), time.process_time()
            graph = generateGraph("volume.txt")
            values = compute_descriptors(graph, "volume", pixelSize=1, n_flag=2)
            seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    return seconds, cpu, {k: float(values[k]) for k in TWO_PHASE_NAMES if k in values}


def peak_memory_mb(shape: tuple[int, ...]) -> dict[str, float]:
    """Peak RSS of a fresh process: after imports and making the volume, and after computing its descriptors."""
    # VmHWM (peak resident set of this process image); ru_maxrss would carry the parent's peak over fork.
    code = f"""
import re, sys
sys.path.insert(0, {str(REPO)!r})
sys.path.insert(0, {str(Path(__file__).parent)!r})
from descriptors import ch_like_volume
from generator.descriptors import compute
hwm = lambda: int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
lab = ch_like_volume({shape!r}, seed=0)
compute(lab[:8, :8, :8])
before = hwm()
compute(lab)
print(before / 1024, hwm() / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return {"baseline_mb": float(out[0]), "peak_mb": float(out[1]), "increase_mb": float(out[1]) - float(out[0])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timing repeats for ours (median)")
    parser.add_argument("--py-graspi-volumes", type=int, default=1, help="32^3 volumes to run py-graspi on (about 50 s each); 0 skips it")
    args = parser.parse_args()
    results: dict = {"machine": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()}}

    start = time.perf_counter()
    compute(ch_like_volume((8, 8, 8), seed=0))
    results["first_call_seconds"] = time.perf_counter() - start  # numba: compile, or load from cache
    print(f"first call (numba compile or cache load): {results['first_call_seconds']:.2f} s")

    # ---- ours vs py-graspi, side by side on the same 32^3 volumes -----------------------------
    rows = []
    for seed in range(max(args.py_graspi_volumes, 1)):
        lab = ch_like_volume((32, 32, 32), seed=seed, sigma=2.0)
        ours_s, ours_cpu = time_ours_wall_cpu(lab, args.repeats)
        row = {"volume": f"32^3 seed {seed}", "ours_s": ours_s, "ours_cpu_s": ours_cpu}
        if seed < args.py_graspi_volumes:
            try:
                theirs_s, theirs_cpu, theirs = run_py_graspi(lab)
                ours = compute(lab)
                row.update(py_graspi_s=theirs_s, py_graspi_cpu_s=theirs_cpu, ratio=theirs_s / ours_s, cpu_ratio=theirs_cpu / ours_cpu,
                           differing=sorted(k for k, v in theirs.items() if not np.isclose(v, ours[k], rtol=1e-5)))
            except Exception as exc:  # noqa: BLE001  (a benchmark-only dependency: report, do not crash)
                row["py_graspi_error"] = f"{type(exc).__name__}: {exc}"
        rows.append(row)
    results["vs_py_graspi"] = rows
    print("\nours vs py-graspi (same volume, this run)")
    print(f"{'volume':<14}{'ours [s]':>10}{'py-graspi [s]':>15}{'ratio':>8}{'cpu ratio':>11}  descriptors that differ")
    for r in rows:
        if "py_graspi_s" in r:
            print(f"{r['volume']:<14}{r['ours_s']:>10.4f}{r['py_graspi_s']:>15.2f}{r['ratio']:>8.0f}{r['cpu_ratio']:>11.0f}  {', '.join(r['differing']) or '-'}")
        else:
            print(f"{r['volume']:<14}{r['ours_s']:>10.4f}{'n/a':>15}{'':>19}  {r.get('py_graspi_error', 'skipped')}")

    # ---- ours at the target sizes ------------------------------------------------------------
    print("\nours, two-phase set, one thread (median of repeats; CPU time is the fairer figure on a loaded machine)")
    sizes = {}
    for shape, sigma in (((64, 64, 64), 2.5), ((128, 128, 64), 3.0)):
        lab = ch_like_volume(shape, seed=1, sigma=sigma)
        wall, cpu = time_ours_wall_cpu(lab, args.repeats)
        sizes["x".join(map(str, shape))] = {"wall_s": wall, "cpu_s": cpu}
        print(f"  {'x'.join(map(str, shape)):<12} wall {wall:.3f} s   cpu {cpu:.3f} s")
    results["ours_seconds"] = sizes
    results["memory_128x128x64"] = mem = peak_memory_mb((128, 128, 64))
    print(f"  peak RSS describing 128x128x64 in a fresh process: {mem['peak_mb']:.0f} MB "
          f"({mem['baseline_mb']:.0f} MB after imports, +{mem['increase_mb']:.0f} MB)")

    # ---- C++ GraSPI times stored in the fixtures ------------------------------------------------
    fixtures = []
    for path in sorted(FIXTURES.glob("*.npz")):
        with np.load(path) as fx:
            lab, cpp = fx["labels"], float(fx["graspi_seconds"])
            kwargs = dict(pixel_size=float(fx["pixel_size"]), periodic=bool(fx["periodic"]))
        ours_s, ours_cpu = time_ours_wall_cpu(lab, args.repeats, **kwargs)
        fixtures.append({"fixture": path.stem, "shape": list(lab.shape), "cpp_graspi_s": cpp, "ours_s": ours_s, "ours_cpu_s": ours_cpu,
                         "ratio": cpp / ours_s, "cpu_ratio": cpp / ours_cpu})
    results["vs_cpp_graspi_fixtures"] = fixtures
    if fixtures:
        print("\nC++ GraSPI (times stored in the fixtures) vs ours on the same volumes")
        print(f"{'fixture':<32}{'C++ [s]':>10}{'ours [s]':>10}{'ours cpu [s]':>14}{'ratio':>8}{'cpu ratio':>11}")
        for r in fixtures:
            print(f"{r['fixture']:<32}{r['cpp_graspi_s']:>10.3f}{r['ours_s']:>10.4f}{r['ours_cpu_s']:>14.4f}{r['ratio']:>8.0f}{r['cpu_ratio']:>11.0f}")

    # ---- batch on threads ---------------------------------------------------------------------
    batch = [ch_like_volume((64, 64, 64), seed=s) for s in range(8)]
    compute_batch(batch[:2], n_jobs=2)
    timing = {}
    for n_jobs in sorted({1, os.cpu_count() or 1}):
        start = time.perf_counter()
        compute_batch(batch, n_jobs=n_jobs)
        timing[str(n_jobs)] = time.perf_counter() - start
    results["batch_8x64^3_seconds_by_threads"] = timing
    print("\ncompute_batch, 8 volumes of 64^3: " + ", ".join(f"{k} thread(s) {v:.2f} s" for k, v in timing.items()))
    print(f"load average during the run: {os.getloadavg()}")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    from generator.errors import exit_on_user_error

    exit_on_user_error(main)
