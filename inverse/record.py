"""The study record: what a design study stores in Optuna, written and read in one place.

:func:`inverse.search.run_study` writes each trial's outcome as Optuna user
attributes and the study's set-up as study user attributes; every reader (the
recipe table, verification, refinement, the dashboards) reads them back
through the typed records of this module, never as raw dicts:

* :class:`TrialRecord`: one trial (``TrialRecord.of(trial)``); written key by
  key as the trial goes on with :func:`write_trial`, which refuses keys it
  does not know;
* :class:`StudyRecord`: the study (``StudyRecord.of(study)``, :meth:`StudyRecord.write`).

The keys are the field names; ``docs/inverse.md`` describes them. Studies
written before a key existed read with its default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna

from inverse.spec import renamed_keys

#: :attr:`TrialRecord.status` values.
MEASURED, INFEASIBLE, FAILED = "measured", "infeasible", "failed"


@dataclass(frozen=True)
class TrialRecord:
    """What one trial of a study stored (its Optuna user attributes).

    Attributes
    ----------
    status
        ``measured``, ``infeasible`` (rejected before generation) or ``failed``; ``None`` when not written.
    conditions
        The condition vector ``{name: value}`` (searched and fixed), in the generator's order.
    feasibility
        ``t2``, ``t2_limit``, ``spe``, ``spe_limit``, ``range_excess``, ``constraint`` and ``feasible``.
    seed
        The generation seed (:func:`inverse.search.trial_seed`).
    failure
        Why a failed trial failed.
    measured_mean, measured_std
        ``{descriptor: value}`` over the trial's generated volumes.
    recipe_mean, recipe_std
        ``{recipe variable: value}``: the feature predictor's recipe over the volumes.
    recipe_posterior
        The calibrated recipe posterior of the measured mean (:mod:`inverse.posterior`), or ``None``.
    target_distance
        ``{descriptor: scaled distance to its target}``.
    score
        The target score (0: every target met).
    meets_targets
        Whether the score is 0.
    uncertainty
        The scaled spread of the target descriptors over the volumes.
    n_samples
        Volumes generated.
    recipe_ok
        Whether the FP's recipe meets the spec's ``[recipe]`` bounds (``None`` without bounds).
    artifact_id
        The Optuna artifact holding the volumes (``.npz``).
    seconds
        Wall time of each step (``generate``, ``measure``, ``recipe``, ``storage``).
    """

    status: str | None = None
    conditions: dict[str, float] = field(default_factory=dict)
    feasibility: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    failure: str | None = None
    measured_mean: dict[str, float] = field(default_factory=dict)
    measured_std: dict[str, float] = field(default_factory=dict)
    recipe_mean: dict[str, float] = field(default_factory=dict)
    recipe_std: dict[str, float] = field(default_factory=dict)
    recipe_posterior: dict[str, Any] | None = None
    target_distance: dict[str, float] = field(default_factory=dict)
    score: float | None = None
    meets_targets: bool = False
    uncertainty: float | None = None
    n_samples: int | None = None
    recipe_ok: bool | None = None
    artifact_id: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, trial: optuna.trial.FrozenTrial | optuna.Trial | Mapping[str, Any]) -> TrialRecord:
        """The record of a trial (or of its user attributes); keys it does not know are ignored."""
        attrs = trial if isinstance(trial, Mapping) else trial.user_attrs
        return cls(**{k: v for k, v in attrs.items() if k in TRIAL_KEYS and v is not None})

    @property
    def feasible(self) -> bool:
        """Whether the proposal passed the feasibility check (``True`` when not recorded)."""
        return bool(self.feasibility.get("feasible", True))

    @property
    def measured(self) -> bool:
        """Whether the trial generated and measured its volumes."""
        return self.status == MEASURED


#: The keys a trial may store, in :class:`TrialRecord` order.
TRIAL_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TrialRecord))


def write_trial(trial: optuna.Trial, **values: Any) -> None:
    """Store fields of a trial's :class:`TrialRecord` as its user attributes, in the order given.

    Raises
    ------
    KeyError
        For a name that is not a :class:`TrialRecord` field (a typo would otherwise be stored silently).
    """
    unknown = [k for k in values if k not in TRIAL_KEYS]
    if unknown:
        raise KeyError(f"not a TrialRecord field: {', '.join(unknown)}")
    for key, value in values.items():
        trial.set_user_attr(key, value)


@dataclass(frozen=True)
class StudyRecord:
    """What a study stored about itself (its Optuna study user attributes).

    Attributes
    ----------
    spec
        The study spec as stored (a JSON-ready dict, storage password masked; empty when not written).
    condition_names
        The generator's conditions, in its order.
    descriptor_scales
        The score normalisation ``s_j`` per target descriptor.
    feasible_fraction
        Fraction of the search box inside the training data.
    """

    spec: dict[str, Any] = field(default_factory=dict)
    condition_names: list[str] = field(default_factory=list)
    descriptor_scales: dict[str, float] = field(default_factory=dict)
    feasible_fraction: float | None = None

    @classmethod
    def of(cls, study: optuna.Study | optuna.study.StudySummary | Mapping[str, Any]) -> StudyRecord:
        """The record of a study (or of its user attributes); other keys (``verification``, ...) are ignored."""
        attrs = study if isinstance(study, Mapping) else study.user_attrs
        values = {k: v for k, v in attrs.items() if k in STUDY_KEYS and v is not None}
        if "spec" in values:  # studies run before a spec key was renamed read under the new names
            values["spec"] = renamed_keys(values["spec"], warn=False)
        return cls(**values)

    def write(self, study: optuna.Study) -> None:
        """Store the record as the study's user attributes; unchanged values are not written again (a resumed study)."""
        for key in STUDY_KEYS:
            value = getattr(self, key)
            if study.user_attrs.get(key) != value:
                study.set_user_attr(key, value)

    @property
    def model(self) -> str | None:
        """The spec's model (bundle file, ``"default"`` or a MicroGen3D folder), or ``None``."""
        return self.spec.get("model") or None

    @property
    def target_names(self) -> list[str]:
        """The spec's target descriptors."""
        return list(self.spec.get("targets") or {})

    @property
    def objectives(self) -> list[tuple[str, str]]:
        """``[(descriptor, direction)]`` of the spec's objectives."""
        return [(o["descriptor"], o.get("direction", "maximize")) for o in self.spec.get("objectives") or []]

    @property
    def descriptor_names(self) -> list[str]:
        """Target descriptors, then objective descriptors not already targets."""
        names = self.target_names
        return names + [d for d, _ in self.objectives if d not in names]


#: The keys a study stores, in :class:`StudyRecord` order.
STUDY_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(StudyRecord))
