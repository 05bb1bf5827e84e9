"""Is a target (or a condition vector) inside what the training data covers?

Method (see ``docs/inverse.md``): the training-descriptor table of the model's
bundle is standardised (z-scores) and a scikit-learn :class:`~sklearn.decomposition.PCA`
is fitted on it. The retained components (the fewest that explain
``variance`` of the variance, at most ``d - 1`` so that the residual means
something) give two statistics of a point ``z``:

* Hotelling's ``T² = sum_i t_i² / lambda_i`` over the retained scores ``t``
  (how far along the data's main directions), and
* the residual ``SPE = Q = ||z - P Pᵀ z||²`` (how far off the data's
  correlations).

A point is feasible when ``T²`` and ``SPE`` are within the ``quantile`` of
their training values and every coordinate lies within the training range.
The single number :func:`constraint` is ``max(T²/T²_lim, SPE/SPE_lim) - 1``
inside the training ranges and ``max(that, range excess) > 0`` outside them
(``<= 0`` feasible), the form Optuna's constrained samplers take.

When a model has no descriptor table (MicroGen3D's published weights), the
check degrades to range checks on the condition ranges (:func:`range_model`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.stats import qmc
from sklearn.decomposition import PCA

if TYPE_CHECKING:
    import torch

from generator.conditions import condition_vector
from generator.descriptors import descriptor_names, is_count, words
from generator.errors import FileFormatError, InvalidInputError
from generator.loading import load_generator


@dataclass(frozen=True)
class FeasibilityModel:
    """A fitted feasibility region over ``columns``.

    Attributes
    ----------
    columns
        Descriptor names, the order of every ``x`` array.
    mean, scale
        Standardisation, shape ``(d,)``.
    pca
        The fitted PCA on the standardised table (``None`` for a range-only model).
    t2_limit, spe_limit
        Thresholds (training quantiles).
    lo, hi
        Training range per column (original units), shape ``(d,)``.
    train
        The training table (original units), shape ``(n, d)``; empty for a range-only model.
    """

    columns: list[str]
    mean: np.ndarray
    scale: np.ndarray
    pca: PCA | None
    t2_limit: float
    spe_limit: float
    lo: np.ndarray
    hi: np.ndarray
    train: np.ndarray = field(repr=False)

    @property
    def n_components(self) -> int:
        """Number of retained principal components (0 for a range-only model)."""
        return 0 if self.pca is None else int(self.pca.n_components_)

    def standardise(self, x: np.ndarray) -> np.ndarray:
        """``(m, d)`` original units -> z-scores."""
        return (np.asarray(x, dtype=float) - self.mean) / self.scale

    def unstandardise(self, z: np.ndarray) -> np.ndarray:
        """``(m, d)`` z-scores -> original units."""
        return np.asarray(z, dtype=float) * self.scale + self.mean

    def vector(self, values: Mapping[str, float]) -> np.ndarray:
        """The ``(d,)`` vector of ``values`` in column order (every column must be given; others are ignored)."""
        return condition_vector(self.columns, values, allow_extra=True)


def fit_feasibility(
    table: pd.DataFrame,
    columns: Sequence[str],
    *,
    variance: float = 0.95,
    quantile: float = 0.99,
) -> FeasibilityModel:
    """Fit the PCA feasibility model on the training-descriptor table.

    Parameters
    ----------
    table
        One row per training sample (the bundle's ``descriptor_table``).
    columns
        The descriptors the region is over (``d`` of them).
    variance
        Fraction of the variance the retained components explain.
    quantile
        Training quantile of T² and SPE used as thresholds.

    Raises
    ------
    InvalidInputError
        A column missing from the table, or fewer than 3 usable rows.
    """
    columns = list(columns)
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InvalidInputError(f"{missing[0]}: not in the training-descriptor table (it has: {', '.join(map(str, table.columns))})")
    x = table[columns].to_numpy(dtype=float)
    x = x[np.all(np.isfinite(x), axis=1)]
    if len(x) < 3:
        raise InvalidInputError(f"the training-descriptor table has only {len(x)} usable rows for {', '.join(columns)}")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    z = (x - mean) / scale
    d = len(columns)
    full = PCA().fit(z)
    cumulative = np.cumsum(full.explained_variance_ratio_)
    k = int(np.searchsorted(cumulative, variance) + 1)
    k = max(1, min(k, d - 1 if d > 1 else 1))
    pca = PCA(n_components=k).fit(z)
    model = FeasibilityModel(
        columns=columns, mean=mean, scale=scale, pca=pca, t2_limit=np.inf, spe_limit=np.inf,
        lo=x.min(axis=0), hi=x.max(axis=0), train=x,
    )
    t2, spe = _t2_spe(model, z)
    t2_limit = float(np.quantile(t2, quantile))
    spe_limit = float(np.quantile(spe, quantile)) if k < d else np.inf
    return FeasibilityModel(
        columns=columns, mean=mean, scale=scale, pca=pca, t2_limit=max(t2_limit, 1e-9),
        spe_limit=max(spe_limit, 1e-9), lo=x.min(axis=0), hi=x.max(axis=0), train=x,
    )


def range_model(ranges: Mapping[str, tuple[float, float]]) -> FeasibilityModel:
    """A range-only feasibility model (no descriptor table: MicroGen3D weights)."""
    columns = list(ranges)
    lo = np.array([ranges[c][0] for c in columns], dtype=float)
    hi = np.array([ranges[c][1] for c in columns], dtype=float)
    return FeasibilityModel(
        columns=columns, mean=0.5 * (lo + hi), scale=np.where(hi > lo, 0.5 * (hi - lo), 1.0), pca=None,
        t2_limit=np.inf, spe_limit=np.inf, lo=lo, hi=hi, train=np.empty((0, len(columns))),
    )


def _t2_spe(model: FeasibilityModel, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """T² and SPE of standardised points ``z`` ``(m, d)`` -> two ``(m,)`` arrays."""
    if model.pca is None:
        zeros = np.zeros(len(z))
        return zeros, zeros
    scores = (z - model.pca.mean_) @ model.pca.components_.T
    t2 = np.sum(scores**2 / model.pca.explained_variance_, axis=1)
    residual = (z - model.pca.mean_) - scores @ model.pca.components_
    return t2, np.sum(residual**2, axis=1)


def _range_excess(model: FeasibilityModel, x: np.ndarray) -> np.ndarray:
    """Largest distance outside the training range, in units of the range width, ``(m,)``."""
    width = np.where(model.hi > model.lo, model.hi - model.lo, 1.0)
    below = (model.lo - x) / width
    above = (x - model.hi) / width
    return np.maximum(np.maximum(below, above).max(axis=1), 0.0)


def statistics(model: FeasibilityModel, x: np.ndarray) -> dict[str, np.ndarray]:
    """Feasibility statistics of points ``x`` ``(m, d)`` (original units).

    Returns
    -------
    dict
        ``t2``, ``spe``, ``range_excess`` and ``constraint`` (each ``(m,)``);
        ``constraint <= 0`` means feasible.
    """
    x = np.atleast_2d(np.asarray(x, dtype=float))
    t2, spe = _t2_spe(model, model.standardise(x))
    excess = _range_excess(model, x)
    ratios = [np.zeros(len(x))]
    if np.isfinite(model.t2_limit):
        ratios.append(t2 / model.t2_limit)
    if np.isfinite(model.spe_limit):
        ratios.append(spe / model.spe_limit)
    inside = np.max(np.stack(ratios), axis=0) - 1.0
    constraint = np.where(excess > 0, np.maximum(inside, excess), inside)
    return {"t2": t2, "spe": spe, "range_excess": excess, "constraint": constraint}


def constraint(model: FeasibilityModel, x: np.ndarray) -> np.ndarray:
    """``max(T²/T²_lim, SPE/SPE_lim) - 1`` (inside the ranges) for ``x`` ``(m, d)``; ``<= 0`` is feasible."""
    return statistics(model, x)["constraint"]


def constraint_tensor(model: FeasibilityModel, x: torch.Tensor) -> torch.Tensor:
    """:func:`constraint` of points ``x`` ``(..., d)`` (original units) as a differentiable torch function ``(...)``.

    The same formula as :func:`statistics`, for gradient-based optimisers (BoTorch's
    input constraints).
    """
    import torch

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a, dtype=float), dtype=x.dtype, device=x.device)

    ratios = [torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)]
    if model.pca is not None:
        centred = (x - t(model.mean)) / t(model.scale) - t(model.pca.mean_)
        components = t(model.pca.components_)
        scores = centred @ components.T
        if np.isfinite(model.t2_limit):
            ratios.append((scores**2 / t(model.pca.explained_variance_)).sum(-1) / model.t2_limit)
        if np.isfinite(model.spe_limit):
            ratios.append(((centred - scores @ components) ** 2).sum(-1) / model.spe_limit)
    inside = torch.stack(ratios).amax(0) - 1.0
    width = t(np.where(model.hi > model.lo, model.hi - model.lo, 1.0))
    excess = torch.maximum((t(model.lo) - x) / width, (x - t(model.hi)) / width).amax(-1).clamp_min(0.0)
    return torch.where(excess > 0, torch.maximum(inside, excess), inside)


@dataclass(frozen=True)
class FeasibilityReport:
    """The answer of :func:`check_targets`.

    Attributes
    ----------
    feasible
        Whether the target lies inside the training data's region.
    values
        The target, ``{descriptor: value}``.
    t2, t2_limit, spe, spe_limit
        The statistics and their thresholds.
    explanation
        For an infeasible target, the broken correlation (or range) in words.
    nearest
        The nearest feasible target, ``{descriptor: value}`` (the target itself when feasible).
    model
        The feasibility model the target was checked against.
    """

    feasible: bool
    values: dict[str, float]
    t2: float
    t2_limit: float
    spe: float
    spe_limit: float
    explanation: str | None
    nearest: dict[str, float]
    model: FeasibilityModel | None = field(default=None, compare=False, repr=False)


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def _range_problems(model: FeasibilityModel, x: np.ndarray) -> list[str]:
    """One sentence per coordinate of ``x`` outside its training range."""
    return [
        f"{name} = {_fmt(x[j])} lies outside the training data: the {words(name)} ranges over [{_fmt(model.lo[j])}, {_fmt(model.hi[j])}] there"
        for j, name in enumerate(model.columns) if not model.lo[j] <= x[j] <= model.hi[j]
    ]


def _broken_correlation(model: FeasibilityModel, x: np.ndarray, neighbours: float) -> str | None:
    """The descriptor of ``x`` furthest outside its range conditional on the others, in words (``None`` if none)."""
    names = model.columns
    if len(names) < 2 or len(model.train) == 0:
        return None
    z_train = model.standardise(model.train)
    z = model.standardise(x[None])[0]
    k = min(len(z_train), max(10, int(neighbours * len(z_train))))
    worst: tuple[float, int, float, float] | None = None
    for j in range(len(names)):
        others = [i for i in range(len(names)) if i != j]
        dist = np.linalg.norm(z_train[:, others] - z[others], axis=1)
        near = model.train[np.argsort(dist)[:k], j]
        lo, hi = float(near.min()), float(near.max())
        gap = max(lo - x[j], x[j] - hi, 0.0) / model.scale[j]
        if gap > 0 and (worst is None or gap > worst[0]):
            worst = (gap, j, lo, hi)
    if worst is None:
        return None
    _, j, lo, hi = worst
    others = [i for i in range(len(names)) if i != j]
    given = " and ".join(f"{names[i]} = {_fmt(x[i])}" for i in others)
    context = f"that {words(names[others[0]])}" if len(others) == 1 else "those values of " + " and ".join(words(names[i]) for i in others)
    bound = f"stays below {_fmt(hi)}" if x[j] > hi else f"stays above {_fmt(lo)}"
    return f"{names[j]} = {_fmt(x[j])} with {given} lies outside the training data: at {context} the {words(names[j])} {bound}"


def explain(model: FeasibilityModel, x: np.ndarray, *, neighbours: float = 0.05) -> str | None:
    """Say in words which ranges and which correlation the point ``x`` ``(d,)`` breaks (``None`` if it is feasible).

    Every coordinate outside its training range is named. The correlation is
    then judged on ``x`` clipped to the ranges: for each descriptor ``j`` the
    training samples nearest in the *other* descriptors (a ``neighbours``
    fraction of them, at least 10) give the conditional range of ``j``, and
    the descriptor furthest outside it (in standard deviations) is named. A
    point inside every range and conditional range that the PCA statistics
    still reject lies in the sparse tails of the training data; then the
    statistics are given.
    """
    x = np.asarray(x, dtype=float)
    if constraint(model, x[None])[0] <= 0:
        return None
    problems = _range_problems(model, x)
    clipped = np.clip(x, model.lo, model.hi)
    correlation = _broken_correlation(model, clipped, neighbours)
    if correlation is not None:
        problems.append(correlation if not problems else f"and even within the ranges, {correlation}")
    if problems:
        return "; ".join(problems)
    stats = statistics(model, x[None])
    shown = [f"{label} = {_fmt(stats[key][0])}, limit {_fmt(limit)}"
             for label, key, limit in (("T²", "t2", model.t2_limit), ("SPE", "spe", model.spe_limit)) if np.isfinite(limit)]
    return (f"{', '.join(f'{n} = {_fmt(v)}' for n, v in zip(model.columns, x))} lies in the sparse tail of the training data "
            f"({'; '.join(shown)})")


def nearest_feasible(model: FeasibilityModel, x: np.ndarray, *, margin: float = 0.02) -> np.ndarray:
    """The feasible point nearest to ``x`` ``(d,)`` in standardised space (original units, ``(d,)``).

    Minimises ``||z - z(x)||²`` subject to ``T² <= (1 - margin) T²_lim``,
    ``SPE <= (1 - margin) SPE_lim`` and the training ranges (SLSQP), started
    from the nearest feasible training sample, which is also the fall-back.
    """
    x = np.asarray(x, dtype=float)
    if constraint(model, x[None])[0] <= 0:
        return x
    z0 = model.standardise(x[None])[0]
    zlo, zhi = model.standardise(model.lo[None])[0], model.standardise(model.hi[None])[0]
    if len(model.train) == 0:
        return model.unstandardise(np.clip(z0, zlo, zhi)[None])[0]
    z_train = model.standardise(model.train)
    ok = constraint(model, model.train) <= -margin
    candidates = z_train[ok] if ok.any() else z_train
    start = candidates[np.argmin(np.linalg.norm(candidates - z0, axis=1))]

    def slack(z: np.ndarray) -> np.ndarray:
        t2, spe = _t2_spe(model, z[None])
        out = [1.0 - margin - t2[0] / model.t2_limit]
        if np.isfinite(model.spe_limit):
            out.append(1.0 - margin - spe[0] / model.spe_limit)
        return np.array(out)

    result = minimize(
        lambda z: float(np.sum((z - z0) ** 2)), start, jac=lambda z: 2 * (z - z0), method="SLSQP",
        bounds=list(zip(zlo, zhi)), constraints=[{"type": "ineq", "fun": slack}], options={"maxiter": 200},
    )
    best = result.x if result.success else start
    point = model.unstandardise(best[None])[0]
    return point if constraint(model, point[None])[0] <= 0 else model.unstandardise(start[None])[0]


def check_targets(model: FeasibilityModel, values: Mapping[str, float]) -> FeasibilityReport:
    """Whether ``{descriptor: value}`` is feasible, why not, and the nearest feasible target."""
    x = model.vector(values)
    stats = statistics(model, x[None])
    feasible = bool(stats["constraint"][0] <= 0)
    nearest = x if feasible else nearest_feasible(model, x)
    return FeasibilityReport(
        feasible=feasible,
        values={c: float(v) for c, v in zip(model.columns, x)},
        t2=float(stats["t2"][0]), t2_limit=float(model.t2_limit),
        spe=float(stats["spe"][0]), spe_limit=float(model.spe_limit),
        explanation=None if feasible else explain(model, x),
        nearest={c: float(v) for c, v in zip(model.columns, nearest)},
        model=model,
    )


def check_search_space(
    model: FeasibilityModel,
    bounds: Mapping[str, tuple[float, float]],
    fixed: Mapping[str, float] | None = None,
    *,
    n_points: int = 4096,
    seed: int = 0,
) -> float:
    """Fraction of the search box that is feasible (Sobol points); raise when none is.

    Parameters
    ----------
    model
        Feasibility model over the generator's conditions.
    bounds
        ``{condition: (lo, hi)}`` searched.
    fixed
        ``{condition: value}`` held fixed.

    Raises
    ------
    InvalidInputError
        When no point of the box is feasible (the message names ``search``).
    """
    fixed = dict(fixed or {})
    names = list(bounds)
    lo = np.array([bounds[n][0] for n in names])
    hi = np.array([bounds[n][1] for n in names])
    unit = qmc.Sobol(len(names), seed=seed).random(n_points)
    box = qmc.scale(unit, lo, hi) if np.all(hi > lo) else lo + unit * (hi - lo)
    x = np.empty((n_points, len(model.columns)))
    for j, c in enumerate(model.columns):
        x[:, j] = box[:, names.index(c)] if c in bounds else fixed[c]
    fraction = float(np.mean(constraint(model, x) <= 0))
    if fraction == 0.0:
        nearest = nearest_feasible(model, x[np.argmin(constraint(model, x))])
        hint = ", ".join(f"{c} = {_fmt(v)}" for c, v in zip(model.columns, nearest))
        raise InvalidInputError(
            "search: no point of the search space lies inside the training data "
            f"(nearest feasible conditions: {hint})"
        )
    return fraction


def load_table(path: str | Path) -> pd.DataFrame:
    """A training-descriptor table from a ``.csv`` file or a labelled HDF5 dataset (one row per sample).

    For HDF5, every dataset at the file's root is one sample and its numeric
    attributes are the row.

    Raises
    ------
    FileFormatError
        A missing or unreadable file, or one without any row.
    """
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"--table: {path} does not exist")
    try:
        if path.suffix.lower() in {".h5", ".hdf5"}:
            import h5py

            with h5py.File(path, "r") as fh:
                rows = [
                    {k: float(v) for k, v in fh[key].attrs.items() if np.ndim(v) == 0 and np.issubdtype(np.asarray(v).dtype, np.number)}
                    for key in fh
                    if isinstance(fh[key], h5py.Dataset)
                ]
            table = pd.DataFrame(rows)
        else:
            table = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise FileFormatError(f"--table: cannot read {path}: {exc}") from None
    if table.empty:
        raise FileFormatError(f"--table: {path} holds no samples")
    return table


def model_for(generator: Any, columns: Sequence[str], table: pd.DataFrame | str | Path | None = None) -> FeasibilityModel:
    """The feasibility model of a generator's training data over ``columns``.

    Uses ``table`` (a DataFrame or a file for :func:`load_table`), else the
    bundle's ``descriptor_table``. Without a table holding every column, it
    degrades to range checks on ``generator.condition_ranges`` when those cover
    every column; a table the user gives must hold every column (it is never
    silently replaced by range checks).

    Raises
    ------
    InvalidInputError
        When a given table lacks a column, or neither a table nor ranges cover the columns.
    """
    columns = list(columns)
    if table is not None:
        source = str(table) if isinstance(table, (str, Path)) else "the table"
        if isinstance(table, (str, Path)):
            table = load_table(table)
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise InvalidInputError(f"--table: {source} has no column {missing[0]} (its columns: {', '.join(map(str, table.columns))})")
    if table is None:
        table = getattr(generator, "descriptor_table", None)
    if table is not None and all(c in table.columns for c in columns):
        return fit_feasibility(table, columns)
    ranges = getattr(generator, "condition_ranges", {}) or {}
    if all(c in ranges for c in columns):
        return range_model({c: tuple(ranges[c]) for c in columns})
    missing = next(c for c in columns if (table is None or c not in table.columns) and c not in ranges)
    raise InvalidInputError(
        f"--table: the training data of this model does not cover {missing}; pass a table of training descriptors (--table FILE)"
    )


def check(
    target: Mapping[str, float],
    model: Any = "default",
    *,
    kind: str | None = None,
    table: pd.DataFrame | str | Path | None = None,
    option: str = "target",
) -> FeasibilityReport:
    """Whether a target lies inside what a model's training data covers (``microdesign check``).

    Parameters
    ----------
    target
        ``{descriptor: value}``, the descriptors measured on generated volumes.
    model
        A loaded :class:`~generator.pipeline.Generator`, or what
        :func:`generator.loading.load_generator` takes (``"default"``, a
        bundle file, a MicroGen3D folder).
    kind
        MicroGen3D kind, for a folder of weights.
    table
        Training descriptors (a DataFrame, ``.csv`` or labelled ``.h5``) when the model carries none.
    option
        The name of ``target`` in messages (``--target`` for the command line).

    Returns
    -------
    FeasibilityReport
        Feasible or not, the broken correlation in words, the nearest feasible
        target and the statistics; :attr:`FeasibilityReport.model` is the model used.

    Raises
    ------
    InvalidInputError
        A fraction outside [0, 1], an unknown descriptor, or training data that does not cover the target.
    """
    values = {str(k): float(v) for k, v in target.items()}
    for name, value in values.items():
        if not is_count(name) and not 0.0 <= value <= 1.0:
            raise InvalidInputError(f"{option} {name}: {value} is outside [0, 1]")
    generator = load_generator(model, kind=kind) if isinstance(model, (str, Path)) else model
    known = set(descriptor_names(int(generator.n_phases)))
    for name in values:
        if name not in known:
            raise InvalidInputError(f"{option} {name}: unknown descriptor (known: {', '.join(sorted(known))})")
    return check_targets(model_for(generator, list(values), table), values)
