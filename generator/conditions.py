"""Condition vectors for generation: their order, constant values, random ranges, and completion of partial conditions.

A condition vector is a model's ``condition_names`` in order;
:func:`condition_vector` is the one place a mapping ``{name: value}`` becomes
that vector (a study's proposal, a ``--condition`` option, a feasibility
check), so the order is fixed once.

A user may fix some conditions (``{"ABS_f_D": 0.45}``), draw others uniformly
in ranges (``{"CT_f_D_tort1": (0.3, 0.6)}``), and leave the rest out. The rest
is *completed* per sample from the training data's correlations, conditionally
on the values fixed or drawn for that sample:

``empirical`` (default)
    the nearest-neighbour conditional distribution: the ``k`` training rows
    closest to the sample's known values (distance in units of each column's
    standard deviation, ``k = round(sqrt(N))``) and one of them drawn at
    random; its values fill the unknown conditions. Completed values are
    always combinations that occur in the training data.
``gaussian``
    a draw from the conditional of the multivariate Gaussian fitted to the
    training table (the distribution behind the feasibility model's Hotelling
    T²), ``x_u | x_k ~ N(mu_u + S_uk S_kk^-1 (x_k - mu_k), S_uu - S_uk S_kk^-1 S_ku)``;
    draws outside the training range of a condition are redrawn (up to 100
    times), then clipped.

With no known value at all, ``empirical`` draws training rows at random (the
data's own distribution) and ``gaussian`` the fitted Gaussian.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from generator.errors import InvalidInputError

#: Completion methods of :func:`complete_conditions`.
METHODS = ("empirical", "gaussian")


@dataclass
class ConditionDraw:
    """Condition matrix of ``n`` samples and where each column came from.

    Attributes
    ----------
    matrix
        ``(n, K)`` raw condition values, columns in ``names`` order.
    names
        The condition names.
    given, ranged, completed
        Names fixed by the user, drawn uniformly in a range, and completed from the training data.
    """

    matrix: np.ndarray
    names: list[str]
    given: list[str] = field(default_factory=list)
    ranged: list[str] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)


def condition_vector(names: Sequence[str], values: Mapping[str, float], *, allow_extra: bool = False) -> np.ndarray:
    """The ``(K,)`` float vector of ``values`` in the order of ``names``.

    Parameters
    ----------
    names
        The condition names, in the model's order (``Generator.condition_names``).
    values
        ``{name: value}`` for every name.
    allow_extra
        Ignore names of ``values`` that are not in ``names`` (default: raise).

    Returns
    -------
    np.ndarray
        ``(K,)`` float64.

    Raises
    ------
    InvalidInputError
        For an unknown name (unless ``allow_extra``) or a missing one.
    """
    names = list(names)
    if not allow_extra:
        unknown = [name for name in values if name not in names]
        if unknown:
            raise InvalidInputError(f"condition: unknown condition {unknown[0]!r}; this model is conditioned on {', '.join(names)}")
    missing = [name for name in names if name not in values]
    if missing:
        raise InvalidInputError(f"condition: missing a value for {missing[0]!r} (needs {', '.join(names)})")
    return np.array([float(values[name]) for name in names], dtype=np.float64)


def _training_rows(table: pd.DataFrame, names: Sequence[str]) -> np.ndarray:
    """``(N, K)`` finite rows of ``table[names]``."""
    absent = [name for name in names if name not in table.columns]
    if absent:
        raise InvalidInputError(f"condition: the training table has no column {absent[0]!r}, needed to complete partial conditions")
    rows = table[list(names)].to_numpy(dtype=np.float64)
    rows = rows[np.all(np.isfinite(rows), axis=1)]
    if len(rows) < 2:
        raise InvalidInputError("condition: the training table has fewer than 2 usable rows to complete partial conditions from")
    return rows


def complete_conditions(
    known: np.ndarray,
    table: pd.DataFrame,
    names: Sequence[str],
    *,
    method: str = "empirical",
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Fill the NaN entries of ``known`` from the training data's conditional distribution.

    Parameters
    ----------
    known
        ``(n, K)`` condition values, NaN where a value is to be completed
        (every row has its NaNs in the same columns).
    table
        Training table holding a column per name.
    names
        ``K`` condition names, the columns of ``known``.
    method
        ``empirical`` or ``gaussian`` (see the module docstring).
    rng
        Random generator (default: seed 0).

    Returns
    -------
    np.ndarray
        ``(n, K)``: ``known`` with its NaNs filled.
    """
    if method not in METHODS:
        raise InvalidInputError(f"--complete: unknown method {method!r}; use one of {', '.join(METHODS)}")
    rng = rng or np.random.default_rng(0)
    known = np.array(known, dtype=np.float64)
    missing = np.isnan(known)
    unknown_cols = np.flatnonzero(missing.any(axis=0))
    if unknown_cols.size == 0:
        return known
    if not np.array_equal(missing, np.broadcast_to(missing[:1], missing.shape)):
        raise InvalidInputError("condition: every sample must have the same conditions to complete")
    known_cols = np.flatnonzero(~missing[0])
    rows = _training_rows(table, names)
    out = known.copy()
    if method == "empirical":
        scale = rows.std(axis=0)
        scale[scale == 0] = 1.0
        k = int(np.clip(round(np.sqrt(len(rows))), 1, len(rows)))
        for i in range(len(out)):
            if known_cols.size:
                d = (((rows[:, known_cols] - out[i, known_cols]) / scale[known_cols]) ** 2).sum(axis=1)
                pool = np.argpartition(d, k - 1)[:k]
            else:
                pool = np.arange(len(rows))
            out[i, unknown_cols] = rows[rng.choice(pool), unknown_cols]
        return out
    mean = rows.mean(axis=0)
    cov = np.cov(rows, rowvar=False) + 1e-12 * np.eye(rows.shape[1])
    lo, hi = rows.min(axis=0), rows.max(axis=0)
    u, kc = unknown_cols, known_cols
    if kc.size:
        gain = cov[np.ix_(u, kc)] @ np.linalg.pinv(cov[np.ix_(kc, kc)])
        cond_cov = cov[np.ix_(u, u)] - gain @ cov[np.ix_(kc, u)]
        cond_mean = mean[u] + (out[:, kc] - mean[kc]) @ gain.T
    else:
        cond_cov = cov[np.ix_(u, u)]
        cond_mean = np.tile(mean[u], (len(out), 1))
    cond_cov = 0.5 * (cond_cov + cond_cov.T)
    values, vectors = np.linalg.eigh(cond_cov)
    root = vectors * np.sqrt(np.clip(values, 0.0, None))
    draw = cond_mean + rng.standard_normal(cond_mean.shape) @ root.T
    for _ in range(100):
        bad = np.any((draw < lo[u]) | (draw > hi[u]), axis=1)
        if not bad.any():
            break
        draw[bad] = cond_mean[bad] + rng.standard_normal((int(bad.sum()), len(u))) @ root.T
    out[:, u] = np.clip(draw, lo[u], hi[u])
    return out


def draw_conditions(
    names: Sequence[str],
    n: int,
    *,
    given: Mapping[str, float] | None = None,
    ranges: Mapping[str, tuple[float, float]] | None = None,
    table: pd.DataFrame | None = None,
    method: str = "empirical",
    seed: int = 0,
) -> ConditionDraw:
    """Condition matrix of ``n`` samples: given values, uniform draws in ranges, the rest completed.

    Parameters
    ----------
    names
        The model's conditions, in order.
    n
        Number of samples.
    given
        ``{name: value}`` fixed for every sample.
    ranges
        ``{name: (lo, hi)}`` drawn uniformly per sample.
    table
        Training table, needed only when some condition is neither given nor ranged.
    method
        Completion method (:data:`METHODS`).
    seed
        Seed of the uniform draws and the completion.

    Returns
    -------
    ConditionDraw

    Raises
    ------
    InvalidInputError
        An unknown name, a name both given and ranged, an empty or reversed
        range, or conditions to complete without a training table.
    """
    names = list(names)
    given, ranges = dict(given or {}), dict(ranges or {})
    if n < 1:
        raise InvalidInputError(f"n: must be at least 1, got {n}")
    for option, mapping in (("--condition", given), ("--condition-range", ranges)):
        unknown = [name for name in mapping if name not in names]
        if unknown:
            raise InvalidInputError(f"{option}: unknown condition {unknown[0]!r}; this model is conditioned on {', '.join(names)}")
    both = [name for name in given if name in ranges]
    if both:
        raise InvalidInputError(f"--condition-range: {both[0]} is also given a value with --condition; give one of them")
    for name, (lo, hi) in ranges.items():
        if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
            raise InvalidInputError(f"--condition-range {name}: expected LO:HI with LO <= HI, got {lo:g}:{hi:g}")
    rng = np.random.default_rng(seed)
    matrix = np.full((n, len(names)), np.nan)
    for j, name in enumerate(names):
        if name in given:
            matrix[:, j] = float(given[name])
        elif name in ranges:
            lo, hi = ranges[name]
            matrix[:, j] = rng.uniform(lo, hi, n)
    completed = [name for name in names if name not in given and name not in ranges]
    if completed:
        if table is None:
            raise InvalidInputError(
                f"condition: no value for {', '.join(completed)}; completing partial conditions needs the model's training "
                "descriptors, which this model does not carry: give every condition, or pass a table (--table FILE)"
            )
        matrix = complete_conditions(matrix, table, names, method=method, rng=rng)
    return ConditionDraw(matrix=matrix, names=names, given=[n_ for n_ in names if n_ in given],
                         ranged=[n_ for n_ in names if n_ in ranges], completed=completed)


def parse_range(text: str, option: str = "--condition-range") -> tuple[str, tuple[float, float]]:
    """``"NAME=LO:HI"`` -> ``(NAME, (LO, HI))``."""
    name, sep, value = text.partition("=")
    name = name.strip()
    lo_text, colon, hi_text = value.partition(":")
    try:
        lo, hi = float(lo_text), float(hi_text)
    except ValueError:
        colon = ""
    if not sep or not name or not colon:
        raise InvalidInputError(f"{option}: expected NAME=LO:HI (e.g. ABS_f_D=0.3:0.6), got {text!r}")
    return name, (lo, hi)
