"""Benchmark: is the recipe posterior calibrated at one film size, and how far does one held-out set's coverage vary?

Run ``python benchmarks/posterior_coverage.py --size 128x128x64 --heldout A.h5 --heldout B.csv`` (default: the shipped
model and its generated film size). The model's posterior (:mod:`inverse.posterior`) calibrates films of each size on
*calibration films* of that size (fresh series, ``microdesign calibrate``); this reports

1. **Held-out sets.** For each ``--heldout`` set of films of that size (an HDF5 dataset such as
   ``microdesign simulate --seed 9000 ...``, or the ``heldout_films.csv`` of ``benchmarks/design_to_recipe.py``):
   the fraction of films whose true recipe lies inside the shipped 80 % region (goal 75-85 %) and inside each
   variable's 80 % interval, a 90 % interval of that fraction from a bootstrap over *series* (the films of one
   series are correlated, so a set of 8-16 series is a small sample), the coverage per snapshot and the
   least-covered series.
2. **Series cross-validation of the calibration.** The calibration films and every held-out set pooled (each
   set's series kept apart), split ``--folds`` ways by series, ``--repeats`` times: each fold is covered by
   the split-conformal radius of the other folds' films, as a new set of series is covered by the shipped one.
   The mean over folds is the procedure's expected coverage on new series; their spread is how far one set of
   ``n / folds`` series may stray from it.
3. **Ablations**, in the same cross-validation: a radius per predicted-log-t tercile (Mondrian conformal), and
   the location shifted by its neighbours' mean out-of-fold residual (an edge-bias correction).

Prints tables and writes ``benchmarks/results/posterior_coverage_<size>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from generator.checkpoint import calibration_groups  # noqa: E402
from generator.data.from_volume import parse_shape  # noqa: E402
from generator.errors import InvalidInputError  # noqa: E402
from generator.io import atomic_path  # noqa: E402
from generator.model_info import read_model_record  # noqa: E402
from inverse.posterior import RECIPE, _conformal_quantile, _scores, posterior_for_model  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


def read_films(path: str) -> pd.DataFrame:
    """Films with recipes and descriptors: an HDF5 dataset (described here if needed) or a CSV table."""
    from generator.training.data import described_table

    if not Path(path).is_file():
        raise InvalidInputError(f"--heldout: {path} does not exist")
    films = pd.read_csv(path) if path.endswith(".csv") else described_table(path)
    missing = [c for c in (*RECIPE, "series", "STAT_n") if c not in films.columns]
    if missing:
        raise InvalidInputError(f"--heldout {path}: the films have no {missing[0]!r} column")
    return films.reset_index(drop=True)


def bootstrap_over_series(inside: np.ndarray, series: np.ndarray, n: int = 4000, seed: int = 0) -> tuple[float, float]:
    """90 % interval of a coverage fraction, resampling whole series."""
    keys, index = np.unique(series, return_inverse=True)
    hits, counts = np.bincount(index, weights=inside.astype(float)), np.bincount(index)
    draws = np.random.default_rng(seed).integers(0, len(keys), size=(n, len(keys)))
    fractions = hits[draws].sum(axis=1) / counts[draws].sum(axis=1)
    return float(np.quantile(fractions, 0.05)), float(np.quantile(fractions, 0.95))


def heldout_report(name: str, films: pd.DataFrame, posterior) -> dict:  # noqa: ANN001
    """Coverage of one held-out set under the shipped calibration."""
    dist = posterior.predict(films)
    truth = films[list(RECIPE)].to_numpy(dtype=float)
    inside = dist.contains(truth)
    series = films["series"].to_numpy()
    by_series = pd.DataFrame({"series": series, "inside": inside, "phi": films["phi"], "chi": films["chi"]}).groupby("series").agg(
        coverage=("inside", "mean"), phi=("phi", "first"), chi=("chi", "first")).sort_values("coverage")
    out = {"name": name, "n_series": int(len(by_series)), **dist.coverage(truth),
           "joint_90ci_over_series": bootstrap_over_series(inside, series),
           "radius": float(np.median(dist.radius)),
           "least_covered_series": by_series.head(4).reset_index().to_dict(orient="records")}
    if "snapshot" in films.columns:
        snaps = films["snapshot"].to_numpy()
        out["by_snapshot"] = {int(s): float(inside[snaps == s].mean()) for s in np.unique(snaps)}
    return out


def _radii(joint: np.ndarray, calibrating: np.ndarray, level: float, bins: np.ndarray | None, where: np.ndarray) -> np.ndarray:
    """Split-conformal radius for the films ``where`` from the films ``calibrating`` (one per bin when ``bins`` given)."""
    if bins is None:
        return np.full(int(where.sum()), _conformal_quantile(joint[calibrating], level))
    radii = {b: _conformal_quantile(joint[calibrating & (bins == b)], level) for b in np.unique(bins)}
    return np.array([radii[b] for b in bins[where]])


def cross_validate(joint: np.ndarray, series: np.ndarray, level: float, folds: int, repeats: int, *,
                   bins: np.ndarray | None = None, seed: int = 0) -> dict:
    """Coverage of each fold of series under the split-conformal radius of the other folds (per ``bins`` when given)."""
    keys = np.unique(series)
    rng = np.random.default_rng(seed)
    coverages = []
    for _ in range(repeats):
        for fold in np.array_split(rng.permutation(keys), folds):
            test = np.isin(series, fold)
            coverages.append(float((joint[test] <= _radii(joint, ~test, level, bins, test)).mean()))
    c = np.array(coverages)
    return {"mean": float(c.mean()), "sd": float(c.std()), "p05": float(np.quantile(c, 0.05)), "p95": float(np.quantile(c, 0.95)),
            "folds": folds, "repeats": repeats, "series_per_fold": len(keys) / folds}


def tercile(values: np.ndarray) -> np.ndarray:
    """``(n,)`` 0, 1, 2: the tercile of each value."""
    return np.digitize(values, np.quantile(values, [1 / 3, 2 / 3]))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="generator bundle (default: the shipped model)")
    parser.add_argument("--size", default=None, help="film size XxYxZ whose calibration to check (default: the model's volume shape)")
    parser.add_argument("--heldout", action="append", default=[], help="held-out films of that size (HDF5 dataset or CSV); repeatable")
    parser.add_argument("--folds", default="6,3", help="folds of series in the cross-validation (comma-separated: one run each)")
    parser.add_argument("--repeats", type=int, default=50, help="random fold splits")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    record = read_model_record(args.model)
    shape = parse_shape(args.size, "--size", dims=(3,)) if args.size else tuple(record.volume_shape)
    try:
        folds = [int(f) for f in str(args.folds).split(",") if f.strip()]
    except ValueError:
        folds = []
    if not folds or min(folds) < 2 or args.repeats < 1:
        raise InvalidInputError(f"--folds: give whole numbers >= 2 (got {args.folds!r}); --repeats >= 1")
    posterior = posterior_for_model(args.model)
    level = posterior.level
    table = record.calibration_table
    calibration = next((films for key, films in calibration_groups(table) if key is not None and tuple(key) == tuple(shape)),
                       None) if table is not None else None
    if calibration is None:
        raise InvalidInputError(f"--size: the model has no calibration films of {'x'.join(map(str, shape))} "
                                f"(add them with microdesign calibrate --size {'x'.join(map(str, shape))})")
    sets = {"calibration": calibration.reset_index(drop=True)}
    for path in args.heldout:
        name = Path(path).parent.name + "/" + Path(path).name
        if name in sets:
            raise InvalidInputError(f"--heldout: {path} given twice")
        sets[name] = read_films(path)
    voxels = float(calibration["STAT_n"].median())  # three-phase films count donor and acceptor voxels only
    for name, films in list(sets.items())[1:]:
        if not np.isclose(films["STAT_n"].median(), voxels, rtol=0.25):
            raise InvalidInputError(f"--heldout {name}: its films have about {films['STAT_n'].median():,.0f} voxels, the "
                                    f"calibration films of {'x'.join(map(str, shape))} {voxels:,.0f}")
    reports = [heldout_report(name, films, posterior) for name, films in list(sets.items())[1:]]
    pooled = pd.concat([films.assign(series=films["series"].astype(str) + "@" + name, held_out_set=name)
                        for name, films in sets.items()], ignore_index=True)
    joint, _ = posterior.scores(pooled)
    series = pooled["series"].to_numpy()
    # ablations, from the posterior's parts: where a film's location lies (its predicted log t), how far its nearest
    # training films are, and the location shifted by their mean out-of-fold residual
    x = posterior._features(pooled)
    location, sigma = posterior.parts.locate(x)
    distances, neighbours = posterior.parts.neighbours.kneighbors(x, n_neighbors=posterior.parts.n_neighbours)
    y = (pooled[list(RECIPE)].to_numpy(dtype=float) - posterior.y_mean) / posterior.y_std
    joint_shifted, _ = _scores(y - location - posterior.parts.residuals[neighbours].mean(axis=1), sigma)
    variants = {
        "split conformal (shipped)": (joint, None),
        "Mondrian: a radius per predicted-log-t tercile": (joint, tercile(location[:, 2])),
        "Mondrian: a radius per nearest-training-film-distance tercile": (joint, tercile(distances.mean(axis=1))),
        "edge-bias shift: + neighbours' mean out-of-fold residual": (joint_shifted, None),
    }
    cv = []
    for k in folds:
        if k > len(np.unique(series)):
            raise InvalidInputError(f"--folds: {k} folds of {len(np.unique(series))} series")
        cv += [{"calibration": name, **cross_validate(scores, series, level, k, args.repeats, bins=bins)}
               for name, (scores, bins) in variants.items()]
    # each held-out set covered by the radius of every other film pooled (the calibration grown by the other sets)
    by_set = {}
    for name in list(sets)[1:]:
        test = (pooled["held_out_set"] == name).to_numpy()
        by_set[name] = {variant: float((scores[test] <= _radii(scores, ~test, level, bins, test)).mean())
                        for variant, (scores, bins) in variants.items()}
        by_set[name]["other_series"] = int(len(np.unique(series[~test])))
    summary = {"model": str(args.model), "film_shape": list(shape), "level": level,
               "calibration": {"n_films": len(calibration), "n_series": int(calibration["series"].nunique()),
                               "radius": posterior.calibrations[int(posterior.calibration_index(calibration)[0])].radius},
               "heldout": reports, "pooled": {"n_films": len(pooled), "n_series": int(len(np.unique(series)))},
               "folds": folds, "cross_validation": cv, "heldout_with_all_other_films": by_set, "seconds": time.perf_counter() - start}
    print_tables(summary)
    out = Path(args.out or RESULTS / f"posterior_coverage_{'x'.join(map(str, shape))}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(summary, indent=2, default=float))
    print(f"wrote {out}")
    return summary


def print_tables(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    shape = "x".join(map(str, summary["film_shape"]))
    cal = summary["calibration"]
    t = Table(title=f"{summary['model']}: posterior coverage of {shape} films ({cal['n_series']} calibration series, radius "
                    f"{cal['radius']:.3f}; goal 75-85 %)")
    for column in ("held-out set", "films", "series", "joint", "90 % CI (series bootstrap)", "φ", "χ", "log t",
                   "joint, calibrated on all other films"):
        t.add_column(column, justify="right")
    for r in summary["heldout"]:
        lo, hi = r["joint_90ci_over_series"]
        m = r["marginal"]
        t.add_row(r["name"], str(r["n_films"]), str(r["n_series"]), f"{r['joint']:.0%}", f"{lo:.0%}-{hi:.0%}", f"{m['phi']:.0%}",
                  f"{m['chi']:.0%}", f"{m['log_time']:.0%}",
                  f"{summary['heldout_with_all_other_films'][r['name']]['split conformal (shipped)']:.0%}")
    console.print(t)
    p = summary["pooled"]
    t = Table(title=f"series cross-validation over {p['n_series']} series ({p['n_films']} films) pooled")
    for column in ("calibration", "mean coverage", "sd of a fold", "5-95 % of folds", "series per fold"):
        t.add_column(column, justify="right")
    for c in summary["cross_validation"]:
        t.add_row(c["calibration"], f"{c['mean']:.1%}", f"{c['sd']:.1%}", f"{c['p05']:.0%}-{c['p95']:.0%}", f"{c['series_per_fold']:.0f}")
    console.print(t)
    t = Table(title="each held-out set, calibrated on every other film pooled")
    t.add_column("calibration", justify="right")
    names = list(summary["heldout_with_all_other_films"])
    for name in names:
        t.add_column(f"{name} ({summary['heldout_with_all_other_films'][name]['other_series']} other series)", justify="right")
    for variant in (c["calibration"] for c in summary["cross_validation"][: len(summary["cross_validation"]) // len(summary["folds"])]):
        t.add_row(variant, *(f"{summary['heldout_with_all_other_films'][n][variant]:.0%}" for n in names))
    console.print(t)


if __name__ == "__main__":
    from generator.errors import exit_on_user_error

    exit_on_user_error(main)
