"""Calibrated recipe posteriors: which processing recipes ``(phi, chi, log_time)`` make a given film?

The feature predictor gives *one* recipe per film, and the spread of those
predictions over a trial's films is not an uncertainty (``chi`` is predicted
with a held-out R² near 0 on the default model). :class:`RecipePosterior`
gives a *distribution* of recipes instead, learnt from the training data's
``(descriptors -> recipe)`` pairs and calibrated on them:

1. **Features.** The film's *intensive* descriptors (fractions and
   normalised counts: every measured descriptor that is not a count, see
   :func:`generator.descriptors.is_count`), so that films of another size
   than the training films (a resizable generator's 128x128x64 films from
   64x64x64 training films) are described on the same scale. Constant columns
   are dropped; each feature is standardised by its training std.
2. **Location.** A multi-output :class:`sklearn.ensemble.ExtraTreesRegressor`
   predicts the standardised recipe.
3. **Shape.** Out-of-fold residuals (:class:`sklearn.model_selection.GroupKFold`
   over the training *series*, so that snapshots of one run never sit on both
   sides) give, for each query, the covariance ``Σ(x)`` of the residuals of its
   ``n_neighbours`` nearest training films in feature space: a local
   3x3 covariance that carries the ``(chi, log_time)`` trade-off.
4. **Calibration** (split conformal, nested). The 80 % region is the ellipsoid
   ``(y - μ)ᵀ Σ(x)⁻¹ (y - μ) <= q²``; each variable's 80 % interval is
   ``μ_j ± q_j sqrt(Σ_jj)``. ``q`` and ``q_j`` are conformal quantiles of the
   scores of the training films, each fold of series scored by a whole
   posterior (regressor, residual bank, neighbours) fitted *without* it:
   exactly how a new series is scored by the posterior fitted on all of them.
   (Scoring the out-of-fold residuals themselves, ``calibration="out_of_fold"``,
   is cheaper but over-covers: the residual bank describes fold models that are
   worse than the final one. On the film model's held-out 128x128x64 films it
   covered 95 % where the nested calibration covers 89 %.) On exchangeable
   data (another series of the same simulator) a conformal region covers the
   true recipe with probability >= ``level``; ``benchmarks/design_to_recipe.py``
   measures the coverage on held-out physics films.
5. **Per film size** (split conformal). The descriptors of a larger film are
   less noisy, so its recipe is read better and the training films' radius
   over-covers it (on the film model's 128x128x64 films, 64x64x64 training
   films: 97 % for 80 %). Given *calibration films* at another size (fresh
   series simulated at the generator's film size by ``microdesign train``, or
   at any size by ``microdesign calibrate``; a bundle's ``calibration_table``
   may hold several sizes), the radii for each size are the conformal quantiles
   of their scores under the posterior fitted on all training films: plain
   split conformal, exchangeable with new films of that size. A film gets the
   radii of the calibrated size nearest to its own (``STAT_n``, the voxel
   count, in log scale); films without ``STAT_n`` get the training films'.

The *degenerate direction* (:meth:`RecipePosterior.degenerate_direction`) is the
major axis of the mean ``(chi, log_time)`` residual covariance, in units of
each variable's training std: the family of (chi, annealing time) pathways that
make the same film (a larger chi coarsens faster, like a longer anneal). The
*non-degenerate* direction is its orthogonal complement; recipe errors are
reported along it.

A design (the films of one trial, or any set of films) is summarised by its
mean descriptors (:meth:`RecipePosterior.predict_set`): a mean of several films is less noisy
than one film, so the single-film calibration is conservative for it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from generator.checkpoint import calibration_groups, check_calibration_table
from generator.descriptors import NON_DESCRIPTOR_COLUMNS, compute_batch, is_count
from generator.errors import InvalidInputError
from generator.loading import DEFAULT_BUNDLE
from generator.model_info import read_model_record
from generator.physics.recipes import RECIPE_NAMES as RECIPE


#: Default probability of the credible regions and intervals.
DEFAULT_LEVEL = 0.8


def intensive_features(table: pd.DataFrame) -> list[str]:
    """The descriptor columns of a training table usable across film sizes: non-count, finite, not constant.

    Parameters
    ----------
    table
        One row per film (a bundle's ``descriptor_table``).
    """
    names = []
    for name in table.columns:
        if name in NON_DESCRIPTOR_COLUMNS or is_count(name):
            continue
        values = pd.to_numeric(table[name], errors="coerce").to_numpy(dtype=float)
        if np.isfinite(values).mean() > 0.99 and np.nanstd(values) > 1e-9:
            names.append(str(name))
    return names


def _conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The split-conformal quantile: the ``ceil((n + 1) level)``-th smallest score."""
    scores = np.sort(np.asarray(scores, dtype=float))
    k = int(np.ceil((len(scores) + 1) * level))
    return float(scores[min(k, len(scores)) - 1])


@dataclass(frozen=True)
class RecipeDistribution:
    """Posterior of the recipe of ``n`` films (or designs), in raw units.

    Attributes
    ----------
    mean
        ``(n, 3)`` posterior location ``(phi, chi, log_time)``.
    cov
        ``(n, 3, 3)`` covariance whose Gaussian ``level`` ellipsoid is the calibrated region.
    lower, upper
        ``(n, 3)`` calibrated marginal ``level`` intervals per variable (inside the training range).
    level
        Probability of the regions and intervals (e.g. 0.8).
    radius
        ``(n,)`` each row's Mahalanobis radius ``q`` under ``cov / scale`` (that of its film size).
    scale
        ``(n,)`` ``q² / chi2.ppf(level, 3)``: ``cov = scale * Σ`` (``Σ`` the local residual covariance).
    support
        ``(lo, hi)``, each ``(3,)``: the training data's recipe range (the prior's support).
    """

    mean: np.ndarray
    cov: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    level: float
    radius: np.ndarray
    scale: np.ndarray
    support: tuple[np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.mean)

    def contains(self, recipes: np.ndarray) -> np.ndarray:
        """Whether each recipe ``(n, 3)`` lies inside its row's calibrated joint region -> bool ``(n,)``."""
        diff = np.asarray(recipes, dtype=float) - self.mean
        inverse = np.linalg.inv(self.cov)
        d2 = np.einsum("ni,nij,nj->n", diff, inverse, diff)
        return d2 <= stats.chi2.ppf(self.level, df=3)

    def in_intervals(self, recipes: np.ndarray) -> np.ndarray:
        """Whether each recipe variable lies in its marginal interval -> bool ``(n, 3)``."""
        recipes = np.asarray(recipes, dtype=float)
        return (recipes >= self.lower) & (recipes <= self.upper)

    def sample(self, index: int, n: int, *, seed: int = 0) -> np.ndarray:
        """``(n, 3)`` recipes drawn from row ``index``'s Gaussian posterior, truncated to the training range (:attr:`support`)."""
        rng = np.random.default_rng(seed)
        out = np.empty((0, len(RECIPE)))
        for _ in range(100):
            draws = rng.multivariate_normal(self.mean[index], self.cov[index], size=max(4 * int(n), 16), method="cholesky")
            if self.support is not None:
                draws = draws[np.all((draws >= self.support[0]) & (draws <= self.support[1]), axis=1)]
            out = np.concatenate([out, draws])
            if len(out) >= n:
                break
        if len(out) < n:  # a posterior far outside the training range: clip instead
            extra = rng.multivariate_normal(self.mean[index], self.cov[index], size=int(n) - len(out), method="cholesky")
            out = np.concatenate([out, np.clip(extra, *self.support) if self.support is not None else extra])
        return out[: int(n)]

    def density_2d(self, index: int, x: np.ndarray, y: np.ndarray, dims: tuple[int, int] = (1, 2)) -> np.ndarray:
        """The marginal density of two recipe variables (default ``(chi, log_time)``) on a grid.

        Parameters
        ----------
        index
            Row of the distribution.
        x, y
            ``(nx,)`` and ``(ny,)`` grid values of ``RECIPE[dims[0]]`` and ``RECIPE[dims[1]]``.

        Returns
        -------
        np.ndarray
            ``(ny, nx)`` density values.
        """
        i, j = dims
        mean = self.mean[index, [i, j]]
        cov = self.cov[index][np.ix_([i, j], [i, j])]
        xx, yy = np.meshgrid(x, y)
        points = np.stack([xx, yy], axis=-1)
        return stats.multivariate_normal(mean, cov, allow_singular=True).pdf(points).reshape(len(y), len(x))

    def level_2d(self, index: int, level: float, dims: tuple[int, int] = (1, 2)) -> float:
        """The density value of the 2-D marginal whose contour encloses probability ``level``."""
        i, j = dims
        cov = self.cov[index][np.ix_([i, j], [i, j])]
        peak = 1.0 / (2 * np.pi * np.sqrt(max(np.linalg.det(cov), 1e-300)))
        return float(peak * np.exp(-0.5 * stats.chi2.ppf(level, df=2)))

    def coverage(self, recipes: np.ndarray) -> dict[str, Any]:
        """How well the rows cover their true recipes ``(n, 3)`` (held-out films): the calibration check.

        Returns
        -------
        dict
            ``n_films``, ``level``; ``joint``: fraction of recipes inside their region; ``marginal``: per variable,
            inside its interval; ``interval_width``: mean interval width; ``rmse``: of the location.
        """
        truth = np.asarray(recipes, dtype=float)
        return {
            "n_films": len(self), "level": self.level,
            "joint": float(self.contains(truth).mean()),
            "marginal": dict(zip(RECIPE, self.in_intervals(truth).mean(axis=0).tolist())),
            "interval_width": dict(zip(RECIPE, (self.upper - self.lower).mean(axis=0).tolist())),
            "rmse": dict(zip(RECIPE, np.sqrt(((self.mean - truth) ** 2).mean(axis=0)).tolist())),
        }

    def summary(self, index: int) -> dict[str, Any]:
        """JSON-ready summary of one row: ``{"level", "mean": {...}, "lower": {...}, "upper": {...}, "cov": [[...]]}``."""
        return {
            "level": self.level,
            "mean": {n: float(v) for n, v in zip(RECIPE, self.mean[index])},
            "lower": {n: float(v) for n, v in zip(RECIPE, self.lower[index])},
            "upper": {n: float(v) for n, v in zip(RECIPE, self.upper[index])},
            "cov": self.cov[index].tolist(),
        }


#: The descriptor holding a film's voxel count (its size), which picks its calibration.
SIZE_COLUMN = "STAT_n"


@dataclass(frozen=True, eq=False)
class Calibration:
    """The conformal radii of one film size.

    Attributes
    ----------
    voxels
        The films' voxel count (median ``STAT_n``), or ``None`` when not recorded.
    radius
        Joint Mahalanobis radius ``q`` of the level region.
    marginal_radius
        ``(3,)`` per-variable radii ``q_j``.
    n_films, n_series
        How many films (of how many series) it rests on.
    method
        ``nested`` or ``out_of_fold`` (the training films), or ``split`` (separate calibration films).
    """

    voxels: float | None
    radius: float
    marginal_radius: np.ndarray
    n_films: int
    n_series: int
    method: str


def _frame(descriptors: pd.DataFrame | Mapping[str, float]) -> pd.DataFrame:
    """A table of films from a table or one film given as ``{name: value}``."""
    return pd.DataFrame([descriptors]) if isinstance(descriptors, Mapping) else descriptors


def _film_voxels(table: pd.DataFrame) -> float | None:
    """Median voxel count of a table's films (``None`` without a finite ``STAT_n``)."""
    if SIZE_COLUMN not in table.columns:
        return None
    values = pd.to_numeric(table[SIZE_COLUMN], errors="coerce").to_numpy(dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    return float(np.median(values)) if len(values) else None


class RecipePosterior:
    """A calibrated conditional distribution ``p(recipe | film descriptors)`` (see the module docstring).

    Build it with :meth:`fit` (or :func:`posterior_for_model`), then call
    :meth:`predict` on film descriptors or :meth:`predict_set` on a design.
    """

    def __init__(self, *, features: list[str], x_mean: np.ndarray, x_std: np.ndarray, y_mean: np.ndarray, y_std: np.ndarray,
                 parts: _Parts, level: float, calibrations: Sequence[Calibration], n_series: int, y_min: np.ndarray,
                 y_max: np.ndarray) -> None:
        self.features = features
        self.x_mean, self.x_std = x_mean, x_std
        self.y_mean, self.y_std = y_mean, y_std
        self.parts = parts
        self.level = level
        #: one per calibrated film size; the first is the training films'
        self.calibrations = list(calibrations)
        self.n_series = n_series
        self.y_min, self.y_max = y_min, y_max

    @property
    def radius(self) -> float:
        """The training films' joint radius (``calibrations[0]``)."""
        return self.calibrations[0].radius

    @property
    def marginal_radius(self) -> np.ndarray:
        """The training films' per-variable radii ``(3,)``."""
        return self.calibrations[0].marginal_radius

    # ------------------------------------------------------------------ fitting

    @classmethod
    def fit(cls, table: pd.DataFrame, *, features: Sequence[str] | None = None, level: float = DEFAULT_LEVEL, n_splits: int = 5,
            n_neighbours: int = 60, n_estimators: int = 100, seed: int = 0, n_jobs: int | None = None,
            calibration: Literal["nested", "out_of_fold"] = "nested",
            calibration_table: pd.DataFrame | None = None) -> RecipePosterior:
        """Fit and calibrate on a training table.

        Parameters
        ----------
        table
            One row per training film: the recipe columns ``phi``, ``chi``, ``log_time``,
            the descriptor columns and (optional) ``series`` (films of one simulated run;
            each row is its own group without it).
        features
            Descriptor columns to use (default :func:`intensive_features`).
        level
            Probability of the calibrated regions, in (0, 1).
        n_splits
            Folds of the out-of-fold residuals (grouped by series), and of the nested calibration.
        n_neighbours
            Training films whose residuals give a query's local covariance.
        n_estimators, seed, n_jobs
            Trees of the regressor, its random state, threads.
        calibration
            ``nested`` (default): each fold of series is scored by a whole posterior
            (regressor, residuals, neighbours) fitted without it, exactly as a new
            film is scored by the posterior fitted on all series; the radii are the
            conformal quantiles of those scores. ``out_of_fold``: the scores of the
            out-of-fold residuals themselves (cheaper, ``n_splits + 1`` fits instead of
            ``(n_splits + 1)²``, but the residual bank then describes fold models
            that are worse than the final one, and the regions over-cover new series).
        calibration_table
            Optional films of other sizes than the training films, from series the
            training never used (recipe and descriptor columns, ``STAT_n``, ``series``):
            the radii for films of each shape (``FILM_SHAPE_COLUMNS``; a table without them is one size) are split-conformal quantiles of
            the scores of that size's films (module docstring, point 5).

        Raises
        ------
        InvalidInputError
            Missing recipe columns, no usable feature, fewer than 3 series, a
            level outside (0, 1) or an unknown calibration; calibration films without
            a needed column or with fewer than 10 films of a size, or given for training films without ``STAT_n``. With few series (the ``tiny`` test data) it fits,
            but the calibration means little: :attr:`n_series` says on how many it rests.
        """
        from sklearn.model_selection import GroupKFold

        if not 0.0 < float(level) < 1.0:
            raise InvalidInputError(f"level: must lie in (0, 1), got {level}")
        if calibration not in ("nested", "out_of_fold"):
            raise InvalidInputError(f"calibration: must be nested or out_of_fold, got {calibration!r}")
        missing = [n for n in RECIPE if n not in table.columns]
        if missing:
            raise InvalidInputError(f"posterior: the training table has no {missing[0]!r} column (it needs phi, chi and log_time)")
        features = list(features) if features is not None else intensive_features(table)
        absent = [f for f in features if f not in table.columns]
        if absent or not features:
            raise InvalidInputError(f"posterior: no usable descriptor column ({absent[0]!r} is missing)" if absent
                                    else "posterior: the training table has no usable descriptor column")
        x_raw = table[features].to_numpy(dtype=float)
        x_mean, x_std = np.nanmean(x_raw, axis=0), np.nanstd(x_raw, axis=0)
        x_std[~(x_std > 1e-12)] = 1.0
        x = np.nan_to_num((x_raw - x_mean) / x_std)
        y_raw = table[list(RECIPE)].to_numpy(dtype=float)
        y_mean, y_std = y_raw.mean(axis=0), y_raw.std(axis=0)
        y_std[~(y_std > 1e-12)] = 1.0
        y = (y_raw - y_mean) / y_std
        groups = table["series"].to_numpy() if "series" in table.columns else np.arange(len(table))
        n_series = len(np.unique(groups))
        if n_series < 3:
            raise InvalidInputError(f"posterior: need at least 3 training series to calibrate, got {n_series}")
        n_splits = int(min(n_splits, n_series))
        fit_parts = functools.partial(_fit_parts, n_splits=n_splits, n_neighbours=n_neighbours,
                                      n_estimators=n_estimators, seed=seed, n_jobs=n_jobs)
        parts = fit_parts(x, y, groups)
        if calibration == "out_of_fold":
            index = _other_series_neighbours(parts.neighbours, x, groups, parts.n_neighbours)
            joint, marginal_scores = _scores(parts.residuals, _local_covariance(parts.residuals, index))
        else:
            joint, marginal_scores = np.empty(len(x)), np.empty_like(y)
            for train, test in GroupKFold(n_splits=n_splits).split(x, y, groups):
                inner = fit_parts(x[train], y[train], groups[train])
                joint[test], marginal_scores[test] = inner.scores(x[test], y[test])
        training = _calibration(joint, marginal_scores, level, voxels=_film_voxels(table), n_series=n_series, method=calibration)
        posterior = cls(features=features, x_mean=x_mean, x_std=x_std, y_mean=y_mean, y_std=y_std, parts=parts, level=float(level),
                        calibrations=[training], n_series=n_series, y_min=y_raw.min(axis=0), y_max=y_raw.max(axis=0))
        if calibration_table is not None:
            if training.voxels is None:
                raise InvalidInputError(f"posterior: the training films have no voxel count ({SIZE_COLUMN}), so calibration films "
                                        "of another size cannot be told from them")
            check_calibration_table(calibration_table, (*RECIPE, *features))
            posterior.calibrations += [posterior._split_calibration(films) for _, films in calibration_groups(calibration_table)]
        return posterior

    def _split_calibration(self, films: pd.DataFrame) -> Calibration:
        """Split-conformal radii from calibration films of one size, scored by this posterior (fitted on all training films)."""
        joint, marginal = self.scores(films)
        n_series = int(films["series"].nunique()) if "series" in films.columns else len(films)
        return _calibration(joint, marginal, self.level, voxels=_film_voxels(films), n_series=n_series, method="split")

    def scores(self, films: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Conformal scores of films whose recipes are known, as the calibration scores them.

        Parameters
        ----------
        films
            ``(n, ...)`` table with the posterior's :attr:`features` and the recipe columns ``phi, chi, log_time``.

        Returns
        -------
        tuple of np.ndarray
            ``(n,)`` joint scores (the Mahalanobis distance of the true recipe from the location under the local
            covariance: inside the region iff ``<=`` the film's calibration ``radius``) and ``(n, 3)`` per-variable
            scores (inside the interval of variable ``j`` iff ``<= marginal_radius[j]``, before clipping to the
            training range).
        """
        missing = [n for n in RECIPE if n not in films.columns]
        if missing:
            raise InvalidInputError(f"posterior: scoring needs the films' recipes; there is no {missing[0]!r} column")
        y = (films[list(RECIPE)].to_numpy(dtype=float) - self.y_mean) / self.y_std
        return self.parts.scores(self._features(films), y)

    # ------------------------------------------------------------------ prediction

    def _features(self, descriptors: pd.DataFrame | Mapping[str, float]) -> np.ndarray:
        frame = _frame(descriptors)
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            raise InvalidInputError(f"posterior: the films have no {missing[0]!r} descriptor (the posterior uses {', '.join(self.features)})")
        x = (frame[self.features].to_numpy(dtype=float) - self.x_mean) / self.x_std
        return np.nan_to_num(x)

    def predict(self, descriptors: pd.DataFrame | Mapping[str, float]) -> RecipeDistribution:
        """The recipe posterior of each film.

        Parameters
        ----------
        descriptors
            ``(n, ...)`` table with (at least) the posterior's :attr:`features`, or one film as ``{name: value}``;
            its ``STAT_n`` (voxel count), when given, picks the calibration of the film's size (:meth:`calibration_index`).

        Returns
        -------
        RecipeDistribution
            ``n`` rows, raw units.
        """
        frame = _frame(descriptors)
        x = self._features(frame)
        mean, sigma = self.parts.locate(x)
        chosen = [self.calibrations[i] for i in self.calibration_index(frame)]
        radius = np.array([c.radius for c in chosen])
        scale = radius**2 / stats.chi2.ppf(self.level, df=3)
        s = np.diag(self.y_std)
        cov = scale[:, None, None] * (s @ sigma @ s)
        mean_raw = mean * self.y_std + self.y_mean
        marginal = np.array([c.marginal_radius for c in chosen]).reshape(len(x), len(RECIPE))
        half = marginal * np.sqrt(np.einsum("nii->ni", sigma)) * self.y_std
        return RecipeDistribution(mean=mean_raw, cov=cov, lower=np.maximum(mean_raw - half, self.y_min),
                                  upper=np.minimum(mean_raw + half, self.y_max), level=self.level, radius=radius,
                                  scale=scale, support=(self.y_min, self.y_max))

    def calibration_index(self, descriptors: pd.DataFrame | Mapping[str, float]) -> np.ndarray:
        """Which calibration each film gets.

        Parameters
        ----------
        descriptors
            ``(n, ...)`` films (or one film as ``{name: value}``); ``STAT_n``, their voxel count, picks the calibration.

        Returns
        -------
        np.ndarray
            ``(n,)`` index into :attr:`calibrations`: the calibrated size nearest each film's ``STAT_n`` in log scale;
            on a tie the calibration films' (fresh series) over the training films'; 0 (the training films') for a
            film without a finite, positive ``STAT_n``.
        """
        frame = _frame(descriptors)
        sizes = [c.voxels for c in self.calibrations]
        if len(sizes) == 1 or SIZE_COLUMN not in frame.columns:
            return np.zeros(len(frame), dtype=int)
        voxels = pd.to_numeric(frame[SIZE_COLUMN], errors="coerce").to_numpy(dtype=float)
        known = np.array([np.log(v) if v else np.nan for v in sizes])
        with np.errstate(invalid="ignore", divide="ignore"):
            gap = np.abs(np.log(np.where(voxels > 0, voxels, np.nan))[:, None] - known[None, :])
        gap = np.where(np.isnan(gap), np.inf, gap)
        index = len(sizes) - 1 - np.argmin(gap[:, ::-1], axis=1)  # ties: the latest (calibration films over training films)
        return np.where(np.isfinite(gap.min(axis=1)), index, 0)

    def predict_set(self, descriptors: pd.DataFrame) -> RecipeDistribution:
        """The recipe posterior of a design: its films' mean descriptors (one row)."""
        if len(descriptors) == 0:
            raise InvalidInputError("posterior: the design has no film")
        frame = descriptors[[c for c in descriptors.columns if c in self.features or c == SIZE_COLUMN]]
        return self.predict(frame.mean(numeric_only=True).to_dict())

    def predict_volumes(self, volumes: np.ndarray, *, n_jobs: int | None = None, n_phases: int | None = None) -> RecipeDistribution:
        """The recipe posterior of a design given as label volumes ``(n, X, Y, Z)``: measured (in parallel), then :meth:`predict_set`."""
        return self.predict_set(pd.DataFrame(compute_batch(list(volumes), n_jobs=n_jobs, n_phases=n_phases)).astype(float))

    # ------------------------------------------------------------------ the (chi, time) trade-off

    def degenerate_direction(self) -> dict[str, Any]:
        """The direction of ``(chi, log_time)`` along which recipes make the same film.

        Returns
        -------
        dict
            ``direction``: unit vector ``(d_chi, d_log_time)`` in units of each
            variable's training std (the major axis of the mean residual
            covariance); ``slope``: ``d log_time / d chi`` along it, raw units;
            ``correlation``: of the chi and log_time residuals; ``std_ratio``:
            residual std along the major axis over the minor axis;
            ``minor``: the non-degenerate unit vector.
        """
        block = np.cov(self.parts.residuals[:, 1:].T)
        values, vectors = np.linalg.eigh(block)
        major, minor = vectors[:, 1], vectors[:, 0]
        major = major if major[0] >= 0 else -major
        slope = float(major[1] * self.y_std[2] / (major[0] * self.y_std[1])) if abs(major[0]) > 1e-12 else float("inf")
        return {
            "direction": major.tolist(),
            "minor": minor.tolist(),
            "slope": slope,
            "correlation": float(block[0, 1] / np.sqrt(block[0, 0] * block[1, 1])),
            "std_ratio": float(np.sqrt(values[1] / max(values[0], 1e-300))),
            "residual_std": {n: float(s * sd) for n, s, sd in zip(RECIPE, self.parts.residuals.std(axis=0), self.y_std)},
        }

    def recipe_error(self, recipe: np.ndarray, truth: np.ndarray) -> dict[str, float]:
        """How far ``recipe`` ``(3,)`` lies from ``truth`` ``(3,)``: ``|Δphi|``, and along each ``(chi, log_time)`` axis.

        Returns
        -------
        dict
            ``phi``: ``|Δphi|``; ``non_degenerate``: ``|Δ|`` along the minor axis and
            ``degenerate``: along the major axis of :meth:`degenerate_direction`, both in
            units of the training std (one std of chi or of log_time = 1).
        """
        d = (np.asarray(recipe, dtype=float) - np.asarray(truth, dtype=float)) / self.y_std
        axes = self.degenerate_direction()
        return {
            "phi": float(abs(d[0] * self.y_std[0])),
            "non_degenerate": float(abs(np.dot(d[1:], axes["minor"]))),
            "degenerate": float(abs(np.dot(d[1:], axes["direction"]))),
        }


@dataclass(frozen=True)
class _Parts:
    """A fitted location model, its out-of-fold residual bank and the neighbour index over the training features."""

    regressor: Any
    neighbours: Any
    residuals: np.ndarray
    n_neighbours: int

    def locate(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Standardised location ``(n, 3)`` and local residual covariance ``(n, 3, 3)`` of standardised films ``x`` ``(n, F)``."""
        _, index = self.neighbours.kneighbors(x, n_neighbors=self.n_neighbours)
        return self.regressor.predict(x).reshape(len(x), -1), _local_covariance(self.residuals, index)

    def scores(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Conformal scores of standardised films ``x`` ``(n, F)`` with true recipes ``y`` ``(n, 3)``, as :meth:`RecipePosterior.predict` sees them."""
        mean, sigma = self.locate(x)
        return _scores(y - mean, sigma)


def _fit_parts(x: np.ndarray, y: np.ndarray, groups: np.ndarray, *, n_splits: int, n_neighbours: int, n_estimators: int,
               seed: int, n_jobs: int | None) -> _Parts:
    """Regressor on all of ``x, y``, out-of-fold residuals over ``n_splits`` folds of ``groups``, neighbour index."""
    from sklearn.ensemble import ExtraTreesRegressor
    from sklearn.model_selection import GroupKFold
    from sklearn.neighbors import NearestNeighbors

    def regressor() -> Any:
        return ExtraTreesRegressor(n_estimators=n_estimators, min_samples_leaf=3, max_features=0.6, random_state=seed, n_jobs=n_jobs)

    residuals = np.empty_like(y)
    for train, test in GroupKFold(n_splits=min(n_splits, len(np.unique(groups)))).split(x, y, groups):
        residuals[test] = y[test] - regressor().fit(x[train], y[train]).predict(x[test]).reshape(len(test), -1)
    k = int(min(n_neighbours, len(x) - np.unique(groups, return_counts=True)[1].max()))
    return _Parts(regressor=regressor().fit(x, y), neighbours=NearestNeighbors(n_neighbors=k).fit(x), residuals=residuals, n_neighbours=k)


def _scores(residuals: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Joint Mahalanobis scores ``(n,)`` and per-variable scores ``|r_j| / sd_j`` ``(n, 3)`` of residuals under covariances ``(n, 3, 3)``."""
    d2 = np.einsum("ni,nij,nj->n", residuals, np.linalg.inv(cov), residuals)
    return np.sqrt(d2), np.abs(residuals) / np.sqrt(np.einsum("nii->ni", cov))


def _calibration(joint: np.ndarray, marginal_scores: np.ndarray, level: float, *, voxels: float | None, n_series: int,
                 method: str) -> Calibration:
    """The conformal radii of joint scores ``(n,)`` and per-variable scores ``(n, 3)``."""
    marginal = np.array([_conformal_quantile(marginal_scores[:, j], level) for j in range(marginal_scores.shape[1])])
    return Calibration(voxels=voxels, radius=_conformal_quantile(joint, level), marginal_radius=marginal, n_films=len(joint),
                       n_series=n_series, method=method)


def _other_series_neighbours(neighbours: Any, x: np.ndarray, groups: np.ndarray, k: int) -> np.ndarray:
    """``(n, k)`` indices of each training film's ``k`` nearest films of *other* series.

    A new film's neighbours all come from other series; leaving a film's own
    series out of its calibration covariance keeps the calibration exchangeable
    with new films (the residuals of one series are correlated).
    """
    _, counts = np.unique(groups, return_counts=True)
    extra = int(counts.max())
    _, index = neighbours.kneighbors(x, n_neighbors=min(k + extra, len(x)))
    other = groups[index] != groups[:, None]
    order = np.argsort(~other, axis=1, kind="stable")[:, :k]  # other-series neighbours first, nearest first
    return np.take_along_axis(index, order, axis=1)


def _local_covariance(residuals: np.ndarray, index: np.ndarray, ridge: float = 1e-4) -> np.ndarray:
    """``(n, 3, 3)`` covariance of the residuals ``(N, 3)`` of each row's neighbours ``index`` ``(n, k)`` (plus a small ridge)."""
    r = residuals[index]  # (n, k, 3)
    centred = r - r.mean(axis=1, keepdims=True)
    cov = np.einsum("nki,nkj->nij", centred, centred) / max(r.shape[1] - 1, 1)
    return cov + ridge * np.eye(residuals.shape[1])


_FITTED: dict[tuple[Any, ...], RecipePosterior] = {}


def posterior_for_table(table: pd.DataFrame | None, *, level: float = DEFAULT_LEVEL,
                        features: Sequence[str] | None = None, calibration_table: pd.DataFrame | None = None) -> RecipePosterior:
    """:meth:`RecipePosterior.fit` on a training table, fitted once per process and table content (a hash of it).

    Parameters
    ----------
    table
        The training films (a bundle's ``descriptor_table``), or ``None``.
    level, features
        As :meth:`RecipePosterior.fit`.
    calibration_table
        A bundle's calibration films (one or more film shapes), or ``None``.

    Raises
    ------
    InvalidInputError
        No table (MicroGen3D weights), or as :meth:`RecipePosterior.fit`.
    """
    if table is None:
        raise InvalidInputError("posterior: the model carries no training-descriptor table (MicroGen3D weights); no recipe posterior")
    def content(frame: pd.DataFrame | None) -> tuple[Any, ...] | None:
        return None if frame is None else (int(pd.util.hash_pandas_object(frame, index=False).sum()), tuple(frame.columns))

    key = (content(table), content(calibration_table), float(level), tuple(features) if features is not None else None)
    if key not in _FITTED:
        if len(_FITTED) >= 8:
            _FITTED.pop(next(iter(_FITTED)))
        _FITTED[key] = RecipePosterior.fit(table, level=level, features=features, calibration_table=calibration_table)
    return _FITTED[key]


@functools.lru_cache(maxsize=8)
def _cached_posterior(key: str, mtime: float, level: float, features: tuple[str, ...] | None) -> RecipePosterior:
    record = read_model_record(key)
    return posterior_for_table(record.descriptor_table, level=level, features=features, calibration_table=record.calibration_table)


def posterior_for_model(model: str | os.PathLike[str] = "default", *, level: float = DEFAULT_LEVEL,
                        features: Sequence[str] | None = None) -> RecipePosterior:
    """The recipe posterior of a bundle's training data (fitted once per process, bundle file and feature set).

    ``features`` restricts it to some descriptors (e.g. a study's target descriptors,
    :func:`inverse.refine.target_posterior`); default :func:`intensive_features`.

    Raises
    ------
    InvalidInputError
        A model without a training-descriptor table.
    MicrodesignError
        A model that cannot be read.
    """
    path = DEFAULT_BUNDLE if str(model) == "default" else os.fspath(model)
    mtime = os.path.getmtime(path) if os.path.isfile(path) else 0.0
    return _cached_posterior(str(model), mtime, float(level), tuple(features) if features is not None else None)
