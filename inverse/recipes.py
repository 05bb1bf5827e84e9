"""Rank the processing recipes of a study's measured trials.

Each measured trial is one candidate: the conditions it searched, the
microstructures they gave, and the recipe (blend ratio ``phi``, Flory-Huggins
``chi``, ``log_time``) the feature predictor gives for them. Candidates are
ranked by, in order:

1. ``feasible``: conditions inside the training data and recipe within the
   spec's ``[recipe]`` bounds (``recipe_ok``);
2. ``meets_targets`` (``mismatch == 0``);
3. ``pareto`` (multi-objective studies: on the Pareto front of the objectives);
4. ``mismatch``: the target score (normalised distance, see
   :mod:`inverse.evaluation`), lower first;
5. ``uncertainty``: the samples' spread in the same units, lower first.

Output columns of :func:`rank_recipes` (documented in ``docs/inverse.md``):
``rank``, ``trial``, ``feasible``, ``recipe_ok``, ``meets_targets``,
``pareto``, ``mismatch``, ``uncertainty``; for each recipe variable
``<recipe>_mean`` (the recipe), ``<recipe>_lo`` and ``<recipe>_hi`` (its
calibrated 80 % interval) and ``<recipe>_fp`` (the feature predictor's mean
over the trial's films); ``recipe_source``; ``cond_<condition>`` for each
condition, ``<descriptor>_mean`` and ``<descriptor>_std`` for each target and
objective descriptor, ``artifact_id``.

The recipe comes from the model's calibrated recipe posterior
(:mod:`inverse.posterior`, given the trial's mean descriptors) when the model
carries a training table (``recipe_source = "posterior"``); otherwise it is the
feature predictor's mean and the interval is unknown (``NaN``,
``recipe_source = "feature predictor"``). The spread of the feature
predictor's outputs over a trial's films is *not* reported: it is not an
uncertainty of the recipe.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import optuna
import pandas as pd

from generator.errors import InvalidInputError, MicrodesignError
from inverse.posterior import RECIPE, posterior_for_model
from inverse.record import StudyRecord, TrialRecord

if TYPE_CHECKING:
    from inverse.posterior import RecipePosterior

#: The first columns of the ranked table, in order.
LEADING_COLUMNS = ["rank", "trial", "feasible", "recipe_ok", "meets_targets", "pareto", "mismatch", "uncertainty"]


def trial_table(trials: Sequence[optuna.trial.FrozenTrial], *, descriptors: Sequence[str] = ()) -> pd.DataFrame:
    """One row per *measured* trial, flattened from its user attributes (unranked)."""
    rows = []
    for t in trials:
        a = TrialRecord.of(t)
        if t.state != optuna.trial.TrialState.COMPLETE or not a.measured:
            continue
        recipe_ok = True if a.recipe_ok is None else bool(a.recipe_ok)
        row: dict[str, object] = {
            "trial": t.number,
            "feasible": a.feasible and recipe_ok,
            "recipe_ok": recipe_ok,
            "meets_targets": bool(a.meets_targets),
            "mismatch": float(0.0 if a.score is None else a.score),
            "uncertainty": float(0.0 if a.uncertainty is None else a.uncertainty),
            "values": list(t.values),
        }
        for name, mean in a.recipe_mean.items():
            row[f"{name}_mean"] = mean
            row[f"{name}_lo"] = row[f"{name}_hi"] = np.nan
            row[f"{name}_fp"] = mean
        for name, value in a.conditions.items():
            row[f"cond_{name}"] = value
        for name in descriptors:
            row[f"{name}_mean"] = a.measured_mean.get(name, np.nan)
            row[f"{name}_std"] = a.measured_std.get(name, np.nan)
        row["artifact_id"] = a.artifact_id or ""
        row["_measured"] = a.measured_mean
        rows.append(row)
    return pd.DataFrame(rows)


def add_posterior(table: pd.DataFrame, measured: Sequence[dict[str, float]], posterior: RecipePosterior | None) -> pd.DataFrame:
    """Replace the recipe columns of ``table`` by the posterior given each row's mean descriptors ``measured``.

    ``<recipe>_mean`` becomes the posterior mean, ``<recipe>_lo`` / ``<recipe>_hi`` its
    calibrated interval; ``<recipe>_fp`` keeps the feature predictor's mean.
    Without a posterior (or when the trials lack a descriptor it needs) the
    table keeps the feature predictor's recipe (``recipe_source``).
    """
    table = table.copy()
    table["recipe_source"] = "feature predictor"
    if posterior is None or table.empty:
        return table
    try:
        dist = posterior.predict(pd.DataFrame(list(measured), index=table.index))
    except InvalidInputError:
        return table
    for j, name in enumerate(RECIPE):
        table[f"{name}_mean"] = dist.mean[:, j]
        table[f"{name}_lo"] = dist.lower[:, j]
        table[f"{name}_hi"] = dist.upper[:, j]
        if f"{name}_fp" not in table.columns:
            table[f"{name}_fp"] = np.nan
    table["recipe_source"] = "posterior"
    return table


def pareto_mask(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Non-dominated rows of ``values`` ``(m, k)`` under ``directions`` -> bool ``(m,)``."""
    sign = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
    v = values * sign
    dominated = np.zeros(len(v), dtype=bool)
    for i in range(len(v)):
        dominated[i] = np.any(np.all(v <= v[i], axis=1) & np.any(v < v[i], axis=1))
    return ~dominated


def rank_recipes(
    trials: Sequence[optuna.trial.FrozenTrial],
    *,
    directions: Sequence[str] = ("minimize",),
    descriptors: Sequence[str] = (),
    posterior: RecipePosterior | None = None,
) -> pd.DataFrame:
    """The ranked recipe table of a study's trials (columns: see the module docstring).

    Parameters
    ----------
    trials
        The study's trials (only COMPLETE, measured ones are candidates).
    directions
        The study's directions (``minimize``/``maximize``), for the Pareto front.
    descriptors
        Target and objective descriptors whose measured mean and std become columns.
    posterior
        The model's recipe posterior (:func:`inverse.posterior.posterior_for_model`);
        ``None``: the feature predictor's mean recipe, without interval.
    """
    table = trial_table(trials, descriptors=descriptors)
    if table.empty:
        return pd.DataFrame(columns=LEADING_COLUMNS)
    table = add_posterior(table, table.pop("_measured").tolist(), posterior)
    values = np.array(table.pop("values").tolist(), dtype=float)
    table["pareto"] = pareto_mask(values, directions) if len(directions) > 1 else table["meets_targets"].to_numpy()
    table = table.sort_values(
        ["feasible", "meets_targets", "pareto", "mismatch", "uncertainty", "trial"],
        ascending=[False, False, False, True, True, True], kind="stable",
    ).reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    rest = [c for c in table.columns if c not in LEADING_COLUMNS]
    return table[LEADING_COLUMNS + rest]


def study_posterior(study: optuna.Study) -> RecipePosterior | None:
    """The recipe posterior of a study's generator (``None`` when its model has no training table or cannot be read)."""
    model = StudyRecord.of(study).model
    if model is None:
        return None
    try:
        return posterior_for_model(model)
    except (MicrodesignError, OSError):
        return None


def study_recipes(study: optuna.Study, *, posterior: RecipePosterior | None | str = "auto") -> pd.DataFrame:
    """:func:`rank_recipes` of a stored study (descriptors from its spec).

    ``posterior="auto"`` uses :func:`study_posterior`; pass ``None`` for the feature predictor's recipes.
    """
    names = StudyRecord.of(study).descriptor_names
    directions = [d.name.lower() for d in study.directions]
    if isinstance(posterior, str):
        posterior = study_posterior(study)
    return rank_recipes(study.get_trials(deepcopy=False), directions=directions, descriptors=names, posterior=posterior)
