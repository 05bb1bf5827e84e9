"""Data access of the dashboard: storages, studies, artifacts and models, cached.

Every page reads through this module. Storages and models are held with
``st.cache_resource`` (one per process, shared by all sessions); study tables
and microstructures with ``st.cache_data``, keyed on the study's *version* (its
trial counts), so a study that is still running shows new trials on the next
rerun, and on every tick of the sidebar's auto-refresh.

The study layout it reads is the one :mod:`inverse.search` writes (trial user
attributes ``status``, ``conditions``, ``feasibility``, ``measured_mean``,
``measured_std``, ``recipe_mean``, ``recipe_std``, ``score``, ``artifact_id``;
study user attributes ``spec``, ``condition_names``, ``descriptor_scales``),
plus the study attribute :data:`VERIFICATION_KEY` that ``microdesign verify``
writes (``docs/verification.md``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import streamlit as st
from sklearn.decomposition import PCA

from dashboards._text import md_text
from generator.errors import MicrodesignError
from generator.io import write_volume
from generator.loading import load_generator
from inverse import feasibility
from inverse import storage as storage_mod
from inverse.posterior import posterior_for_model
from inverse.recipes import pareto_mask, study_recipes
from inverse.refine import REFINEMENT_ATTR
from inverse.record import MEASURED, StudyRecord, TrialRecord
from inverse.spec import Target
from inverse.verify import VERIFICATION_ATTR

#: Environment variables read when the app is started without ``-- --storage URL`` / ``--runs-dir DIR``.
STORAGE_ENV = "MICRODESIGN_STORAGE"
RUNS_DIR_ENV = "MICRODESIGN_RUNS_DIR"

#: Study user attribute holding the recipe-verification results of ``microdesign verify``
#: (schema in ``docs/verification.md``).
VERIFICATION_KEY = VERIFICATION_ATTR

#: Seconds after which a cached study table is reloaded even if its trial counts did not change.
STUDY_TTL_S = 120

#: Session-state key of the selected study ``(url, name, runs_dir)``.
SELECTION_KEY = "microdesign_selection"

_STATES = optuna.trial.TrialState


# ----------------------------------------------------------------------------- launch options and storages

@dataclass(frozen=True)
class LaunchOptions:
    """Where the dashboard looks for studies.

    Attributes
    ----------
    storage
        SQLAlchemy URL given on the command line (``None``: every ``runs_dir/*.db``).
    runs_dir
        Folder of the default SQLite files and of the artifact stores of server storages.
    """

    storage: str | None
    runs_dir: Path


def launch_options(argv: Sequence[str] | None = None) -> LaunchOptions:
    """Parse ``--storage URL`` and ``--runs-dir DIR`` (the arguments after ``streamlit run app.py --``).

    Falls back to the environment variables :data:`STORAGE_ENV` and
    :data:`RUNS_DIR_ENV`, then to ``runs/``. Unknown arguments are ignored.
    """
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--storage")
    parser.add_argument("--runs-dir")
    args, _ = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    storage = args.storage or os.environ.get(STORAGE_ENV) or None
    runs_dir = Path(args.runs_dir or os.environ.get(RUNS_DIR_ENV) or storage_mod.RUNS_DIR)
    return LaunchOptions(storage=storage, runs_dir=runs_dir)


def storage_urls(options: LaunchOptions) -> list[str]:
    """The storage given on the command line, else one SQLite URL per ``runs_dir/*.db``."""
    if options.storage:
        return [options.storage]
    return [f"sqlite:///{p}" for p in sorted(options.runs_dir.glob("*.db"))]


@st.cache_resource(show_spinner=False)
def open_rdb(url: str) -> optuna.storages.RDBStorage:
    """The Optuna storage at ``url`` (opened once per process; never created by the dashboard)."""
    return storage_mod.open_storage(url, readonly=True)


def study_names(url: str) -> list[str]:
    """Names of the studies in the storage at ``url``, in creation order."""
    return [s.study_name for s in open_rdb(url).get_all_studies()]


def study_version(url: str, name: str) -> tuple[int, int, int, int, str]:
    """Cheap fingerprint of a study's progress: (trials, complete, failed, study attributes, last verification)."""
    rdb = open_rdb(url)
    sid = rdb.get_study_id_from_name(name)
    attrs = rdb.get_study_user_attrs(sid)
    verified = attrs.get(VERIFICATION_KEY)
    return (
        rdb.get_n_trials(sid),
        rdb.get_n_trials(sid, state=_STATES.COMPLETE),
        rdb.get_n_trials(sid, state=_STATES.FAIL),
        len(attrs),
        str(verified.get("updated", "")) if isinstance(verified, dict) else "",
    )


# ----------------------------------------------------------------------------- studies

def trial_status(trial: optuna.trial.FrozenTrial) -> str:
    """``measured``, ``infeasible``, ``failed``, ``running``, ``pruned`` or ``waiting``."""
    if trial.state == _STATES.COMPLETE:
        return str(TrialRecord.of(trial).status or MEASURED)
    if trial.state == _STATES.FAIL:
        return "failed"
    return trial.state.name.lower()


@dataclass
class StudyData:
    """A snapshot of one study, as the pages show it.

    Attributes
    ----------
    url, name
        Where it lives.
    directions
        ``minimize``/``maximize`` per trial value.
    user_attrs
        The study's user attributes (``spec``, ``condition_names``, ...).
    trials
        Every trial, in number order.
    recipes
        The ranked recipe table (:func:`inverse.recipes.study_recipes`).
    """

    url: str
    name: str
    directions: list[str]
    user_attrs: dict[str, Any]
    trials: list[optuna.trial.FrozenTrial]
    recipes: pd.DataFrame

    @property
    def record(self) -> StudyRecord:
        """The study's record (spec, conditions, scales, feasible fraction)."""
        return StudyRecord.of(self.user_attrs)

    @property
    def spec(self) -> dict[str, Any]:
        """The study spec as stored (a plain dict; empty for studies not made by ``inverse``)."""
        return dict(self.record.spec)

    @property
    def targets(self) -> dict[str, Target]:
        """``{descriptor: Target}`` of the spec."""
        return {name: Target(**value) for name, value in (self.spec.get("targets") or {}).items()}

    @property
    def objectives(self) -> list[tuple[str, str]]:
        """``[(descriptor, direction)]`` of the spec's objectives."""
        return self.record.objectives

    @property
    def descriptor_names(self) -> list[str]:
        """Target descriptors, then objective descriptors not already targets."""
        return self.record.descriptor_names

    @property
    def value_names(self) -> list[str]:
        """Names of the trial values: ``target score`` (when the spec has targets), then the objectives."""
        names = ["target score"] if self.targets else []
        names += [d for d, _ in self.objectives]
        while len(names) < len(self.directions):
            names.append(f"value {len(names)}")
        return names[: len(self.directions)]

    @property
    def condition_names(self) -> list[str]:
        """The conditions searched (study attribute, else the first trial's)."""
        names = self.record.condition_names
        if names:
            return list(names)
        for t in self.trials:
            conditions = TrialRecord.of(t).conditions
            if conditions:
                return list(conditions)
        return []

    @property
    def measured(self) -> list[optuna.trial.FrozenTrial]:
        """The measured trials (complete, with microstructures and scores)."""
        return [t for t in self.trials if trial_status(t) == MEASURED]

    def status_counts(self) -> dict[str, int]:
        """Number of trials per :func:`trial_status`."""
        return pd.Series([trial_status(t) for t in self.trials], dtype=object).value_counts().to_dict()

    def trial(self, number: int) -> optuna.trial.FrozenTrial:
        """The trial numbered ``number``."""
        return next(t for t in self.trials if t.number == number)


@st.cache_data(ttl=STUDY_TTL_S, show_spinner="Loading the study ...", max_entries=64)
def load_study(url: str, name: str, version: tuple[int, ...]) -> StudyData:
    """Read a study and rank its recipes (``version`` only keys the cache: see :func:`study_version`)."""
    study = optuna.load_study(study_name=name, storage=open_rdb(url))
    return StudyData(
        url=url,
        name=name,
        directions=[d.name.lower() for d in study.directions],
        user_attrs=dict(study.user_attrs),
        trials=sorted(study.get_trials(deepcopy=False), key=lambda t: t.number),
        recipes=study_recipes(study),
    )


def select(url: str, name: str, runs_dir: Path) -> None:
    """Remember the study the sidebar picked, for the pages."""
    st.session_state[SELECTION_KEY] = (url, name, str(runs_dir))


def selected() -> tuple[StudyData, Path] | None:
    """The study picked in the sidebar (freshly versioned) and the runs folder, or ``None``."""
    picked = st.session_state.get(SELECTION_KEY)
    if not picked:
        return None
    url, name, runs_dir = picked
    return load_study(url, name, study_version(url, name)), Path(runs_dir)


def require_study() -> tuple[StudyData, Path]:
    """:func:`selected`, or an explanation and ``st.stop()`` when there is no study."""
    picked = selected()
    if picked is None:
        st.info("No study selected: pick a storage and a study in the sidebar.")
        st.stop()
    return picked


def require_measured(data: StudyData) -> None:
    """Explain and ``st.stop()`` when the study has no measured trial yet."""
    if not data.measured:
        counts = data.status_counts()
        detail = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no trials"
        st.info(
            f"Study **{md_text(data.name)}** has no measured trial yet ({md_text(detail)}). "
            "Start or resume it with `microdesign study run SPEC`; this page fills in as trials complete."
        )
        st.stop()


# ----------------------------------------------------------------------------- tables

def number_format(table: pd.DataFrame, fmt: str = "%.4g") -> dict[str, Any]:
    """``st.dataframe`` column configs showing every float column of ``table`` with ``fmt``."""
    return {c: st.column_config.NumberColumn(format=fmt) for c in table.columns if table[c].dtype.kind == "f"}


def convergence_table(data: StudyData) -> pd.DataFrame:
    """One row per trial: ``trial``, ``status``, ``value`` (first value; measured trials only), ``best_so_far``.

    ``best_so_far`` is the best measured first value up to that trial (the
    minimum or maximum following the study's first direction); infeasible
    proposals carry a penalty, not a measurement, and do not count.
    """
    rows = []
    for t in data.trials:
        status = trial_status(t)
        value = float(t.values[0]) if status == MEASURED and t.values else np.nan
        rows.append({"trial": t.number, "status": status, "value": value})
    table = pd.DataFrame(rows, columns=["trial", "status", "value"])
    maximise = bool(data.directions) and data.directions[0] == "maximize"
    best = table["value"].cummax() if maximise else table["value"].cummin()
    table["best_so_far"] = best.ffill()
    return table


def value_table(data: StudyData) -> pd.DataFrame:
    """Measured trials with one column per trial value (:attr:`StudyData.value_names`) and ``pareto``.

    ``pareto`` marks the non-dominated trials under the study's directions
    (:func:`inverse.recipes.pareto_mask`, as in the ranked table).
    """
    names = data.value_names
    rows = [{"trial": t.number, **dict(zip(names, t.values))} for t in data.measured]
    table = pd.DataFrame(rows, columns=["trial", *names])
    values = table[names].to_numpy(dtype=float)
    table["pareto"] = pareto_mask(values, data.directions) if len(table) else np.zeros(0, dtype=bool)
    return table


def proposal_table(data: StudyData) -> pd.DataFrame:
    """Every proposal with conditions: ``trial``, ``status``, ``feasible``, ``t2``, ``spe``, ``constraint``, ``mismatch``, conditions."""
    rows = []
    for t in data.trials:
        record = TrialRecord.of(t)
        if not record.conditions:
            continue
        stats = record.feasibility
        rows.append({
            "trial": t.number,
            "status": trial_status(t),
            "feasible": record.feasible,
            "t2": stats.get("t2", np.nan),
            "spe": stats.get("spe", np.nan),
            "constraint": stats.get("constraint", np.nan),
            "mismatch": np.nan if record.score is None else record.score,
            **{name: float(v) for name, v in record.conditions.items()},
        })
    return pd.DataFrame(rows)


def filter_recipes(
    table: pd.DataFrame,
    *,
    feasible_only: bool = False,
    meets_targets_only: bool = False,
    max_mismatch: float | None = None,
    sort_by: str = "rank",
    ascending: bool = True,
) -> pd.DataFrame:
    """Filter and sort the ranked recipe table (the ``rank`` column keeps the study's ranking)."""
    keep = np.ones(len(table), dtype=bool)
    if feasible_only:
        keep &= table["feasible"].to_numpy(dtype=bool)
    if meets_targets_only:
        keep &= table["meets_targets"].to_numpy(dtype=bool)
    if max_mismatch is not None:
        keep &= table["mismatch"].to_numpy(dtype=float) <= max_mismatch
    out = table[keep]
    if sort_by in out.columns:
        out = out.sort_values(sort_by, ascending=ascending, kind="stable")
    return out.reset_index(drop=True)


def verification_records(data: StudyData) -> dict[int, dict[str, Any]]:
    """``{trial number: record}`` of the study's verification attribute (``docs/verification.md``)."""
    stored = data.user_attrs.get(VERIFICATION_KEY)
    trials = stored.get("trials") if isinstance(stored, dict) else None
    return {int(k): r for k, r in (trials or {}).items() if isinstance(r, dict)}


def verified_descriptors(data: StudyData) -> list[str]:
    """The descriptors a verification reported (its ``descriptors``, else the spec's)."""
    stored = data.user_attrs.get(VERIFICATION_KEY)
    names = stored.get("descriptors") if isinstance(stored, dict) else None
    return list(names or data.descriptor_names)


def verification_table(data: StudyData) -> pd.DataFrame:
    """One row per verified trial (``microdesign verify``), in trial order.

    Columns: ``trial``, ``rank`` (when verified), ``generated_mismatch`` and
    ``verified_mismatch`` (the study's score on the generated and on the
    simulated volumes), ``meets_targets``, ``generated_meets_targets``,
    ``fraction_meeting``, ``n_runs``, ``below_spinodal``, ``outside_training``,
    ``time``, the simulated recipe (``phi``, ``chi``, ``log_time``), and per
    reported descriptor ``<d>_generated``, ``<d>_verified`` and ``<d>_verified_std``.
    """
    numbers = {t.number: t for t in data.trials}
    names = verified_descriptors(data)
    rows = []
    for number, r in sorted(verification_records(data).items()):
        generated = TrialRecord.of(numbers[number]) if number in numbers else TrialRecord()
        row: dict[str, Any] = {
            "trial": number,
            "rank": r.get("rank"),
            "generated_mismatch": r.get("generated_score", generated.score),
            "verified_mismatch": r.get("score"),
            "meets_targets": r.get("meets_targets"),
            "generated_meets_targets": r.get("generated_meets_targets"),
            "fraction_meeting": r.get("fraction_meeting"),
            "n_runs": r.get("n_runs"),
            "below_spinodal": r.get("below_spinodal"),
            "outside_training": ", ".join(r.get("outside_training") or []),
            "time": r.get("time"),
            **(r.get("recipe") or {}),
        }
        for name in names:
            row[f"{name}_generated"] = generated.measured_mean.get(name)
            row[f"{name}_verified"] = (r.get("simulated_mean") or {}).get(name)
            row[f"{name}_verified_std"] = (r.get("simulated_std") or {}).get(name)
        rows.append(row)
    table = pd.DataFrame(rows)
    floats = [c for c in table.columns if c.endswith(("_generated", "_verified", "_verified_std", "_mismatch"))]
    return table.astype({c: float for c in floats})


def refinement_records(data: StudyData) -> dict[int, dict[str, Any]]:
    """``{trial number: record}`` of the study's ``refinement`` attribute (``microdesign verify --refine``)."""
    stored = data.user_attrs.get(REFINEMENT_ATTR)
    trials = stored.get("trials") if isinstance(stored, dict) else None
    return {int(k): r for k, r in (trials or {}).items() if isinstance(r, dict)}


def refinement_table(record: dict[str, Any]) -> pd.DataFrame:
    """One row per simulated recipe of a refinement: ``number``, ``source``, the recipe, ``score``,
    ``meets_targets``, ``n_runs``, ``runs_so_far``, ``seconds`` and the simulated mean of each target."""
    rows = []
    spent = 0
    for c in record.get("trail") or []:
        spent += int(c.get("n_runs") or 0)
        rows.append({"number": c.get("number"), "source": c.get("source"), **(c.get("recipe") or {}), "score": c.get("score"),
                     "meets_targets": c.get("meets_targets"), "n_runs": c.get("n_runs"), "runs_so_far": spent,
                     "seconds": sum((c.get("seconds") or {}).values()), **(c.get("simulated_mean") or {})})
    return pd.DataFrame(rows)


@st.cache_resource(show_spinner="Fitting the recipe posterior ...")
def _posterior(path: str) -> Any:
    return posterior_for_model(path)


def posterior_density(data: StudyData, trial: int, n: int = 80) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[float]]:
    """The (log time, χ) posterior density of a trial's recipe on a grid, and its 50/80/95 % contour levels.

    Returns
    -------
    tuple
        ``log_time (n,)``, ``chi (n,)``, ``density (n, n)`` (rows: χ) and the density levels
        enclosing 95, 80 and 50 % (increasing).

    Raises
    ------
    MicrodesignError
        A model without a training table, or a trial without measured descriptors.
    """
    spec = data.spec
    posterior = _posterior(str(spec.get("model") or "default"))
    measured = TrialRecord.of(data.trial(trial)).measured_mean
    dist = posterior.predict(measured)
    sd = np.sqrt(np.diag(dist.cov[0]))
    lo, hi = posterior.y_min, posterior.y_max
    chi = np.linspace(min(lo[1], dist.mean[0, 1] - 3 * sd[1]), max(hi[1], dist.mean[0, 1] + 3 * sd[1]), n)
    log_time = np.linspace(min(lo[2], dist.mean[0, 2] - 3 * sd[2]), max(hi[2], dist.mean[0, 2] + 3 * sd[2]), n)
    density = dist.density_2d(0, log_time, chi, dims=(2, 1))  # rows: chi
    levels = [dist.level_2d(0, p, dims=(2, 1)) for p in (0.95, 0.8, 0.5)]
    return log_time, chi, density, levels


# ----------------------------------------------------------------------------- artifacts

@dataclass(frozen=True)
class TrialSamples:
    """The microstructures a measured trial saved.

    Attributes
    ----------
    labels
        ``(n, X, Y, Z)`` uint8 phase labels.
    descriptors
        ``(n, n_descriptors)`` measured descriptors per volume.
    recipes
        ``(n, n_recipe)`` predicted recipe per volume (no columns for simulated volumes).
    """

    labels: np.ndarray
    descriptors: pd.DataFrame
    recipes: pd.DataFrame


def artifact_folder(data: StudyData, runs_dir: Path) -> Path:
    """Where the study's microstructures are stored (:func:`inverse.storage.artifact_dir`)."""
    return storage_mod.artifact_dir(data.name, data.url, runs_dir)


@st.cache_data(show_spinner="Loading microstructures ...", max_entries=32)
def trial_samples(folder: str, artifact_id: str) -> TrialSamples:
    """Read a ``.npz`` of microstructures (a trial's, or a verification's) from the artifact store in ``folder``.

    Raises
    ------
    MicrodesignError
        When the artifact is not there (another machine's ``runs/``: see ``--runs-dir``).
    """
    from optuna.artifacts import FileSystemArtifactStore, download_artifact

    if not artifact_id or not (Path(folder) / artifact_id).is_file():
        raise MicrodesignError(f"microstructures {artifact_id or '(none)'} are not in {folder}; start the dashboard with --runs-dir pointing at the study's runs folder")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trial.npz"
        download_artifact(artifact_store=FileSystemArtifactStore(folder), file_path=str(path), artifact_id=artifact_id)
        with np.load(path) as npz:
            return TrialSamples(
                labels=np.asarray(npz["labels"], dtype=np.uint8),
                descriptors=pd.DataFrame(npz["descriptors"], columns=[str(c) for c in npz["descriptor_names"]]),
                recipes=pd.DataFrame(npz["recipes"], columns=[str(c) for c in npz["recipe_names"]])
                if "recipes" in npz.files else pd.DataFrame(index=range(len(npz["labels"]))),
            )


@st.cache_data(max_entries=16, show_spinner=False)
def volume_bytes(folder: str, artifact_id: str, sample: int, suffix: str) -> bytes:
    """One sample of a trial as a file (``.vti`` or ``.npy``, via :func:`generator.io.write_volume`)."""
    labels = trial_samples(folder, artifact_id).labels[sample]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"volume{suffix}"
        write_volume(path, labels)
        return path.read_bytes()


# ----------------------------------------------------------------------------- models and feasibility

@st.cache_resource(show_spinner="Loading the model ...")
def load_model(path: str, kind: str | None) -> Any:
    """The study's generator (:func:`generator.loading.load_generator`), loaded once per process."""
    return load_generator(path, kind=kind)


def study_model(data: StudyData) -> Any:
    """The generator the study used (its spec's ``generator`` and ``kind``).

    Raises
    ------
    MicrodesignError
        When it cannot be loaded here (a relative path from another folder, a missing file).
    """
    spec = data.spec
    if not spec.get("model"):
        raise MicrodesignError(f"study {data.name} records no generator in its spec")
    return load_model(str(spec["model"]), spec.get("kind"))


@st.cache_resource(show_spinner="Fitting the feasibility model ...")
def _feasibility_model(path: str, kind: str | None, columns: tuple[str, ...]) -> feasibility.FeasibilityModel:
    return feasibility.model_for(load_model(path, kind), list(columns))


def study_feasibility(data: StudyData) -> feasibility.FeasibilityModel:
    """The feasibility model over the study's conditions (:func:`inverse.feasibility.model_for`)."""
    study_model(data)
    spec = data.spec
    return _feasibility_model(str(spec["model"]), spec.get("kind"), tuple(data.condition_names))


@dataclass(frozen=True)
class PCAPlane:
    """The plane of the first two principal components of the standardised training table.

    Attributes
    ----------
    components
        ``(2, d)`` unit directions in standardised space.
    center
        ``(d,)`` mean of the standardised table.
    variances
        ``(2,)`` variance of the training scores along each direction.
    explained
        ``(2,)`` fraction of the variance each direction explains.
    """

    components: np.ndarray
    center: np.ndarray
    variances: np.ndarray
    explained: np.ndarray

    def project(self, model: feasibility.FeasibilityModel, x: np.ndarray) -> np.ndarray:
        """Scores ``(m, 2)`` of points ``x`` ``(m, d)`` in original units."""
        return (model.standardise(np.atleast_2d(x)) - self.center) @ self.components.T


def pca_plane(model: feasibility.FeasibilityModel) -> PCAPlane | None:
    """The first two components of ``model``'s PCA (refitted with two when it keeps only one).

    ``None`` for a range-only model (no training table) or a single condition.
    """
    if model.pca is None or len(model.columns) < 2 or len(model.train) < 3:
        return None
    pca = model.pca if model.pca.n_components_ >= 2 else PCA(n_components=2).fit(model.standardise(model.train))
    return PCAPlane(
        components=np.asarray(pca.components_[:2]),
        center=np.asarray(pca.mean_),
        variances=np.asarray(pca.explained_variance_[:2]),
        explained=np.asarray(pca.explained_variance_ratio_[:2]),
    )


def t2_boundary(model: feasibility.FeasibilityModel, plane: PCAPlane, n: int = 181) -> tuple[np.ndarray, np.ndarray] | None:
    """The ``T² = T²_lim`` curve in the plane (``x``, ``y`` arrays; ``NaN`` separates pieces).

    With two or more retained components it is the ellipse
    ``t1²/λ1 + t2²/λ2 = T²_lim``; with one, the two lines ``t1 = ±sqrt(λ1 T²_lim)``.
    ``None`` when the model has no finite T² limit.
    """
    if model.pca is None or not np.isfinite(model.t2_limit):
        return None
    if model.pca.n_components_ >= 2:
        angle = np.linspace(0.0, 2 * np.pi, n)
        radius = np.sqrt(model.t2_limit * plane.variances)
        return radius[0] * np.cos(angle), radius[1] * np.sin(angle)
    half = float(np.sqrt(model.t2_limit * model.pca.explained_variance_[0]))
    span = 3.0 * float(np.sqrt(plane.variances[1]))
    return np.array([-half, -half, np.nan, half, half]), np.array([-span, span, np.nan, -span, span])


def target_conditions(data: StudyData, model: feasibility.FeasibilityModel) -> tuple[np.ndarray, list[str]] | None:
    """The target as a condition vector ``(d,)`` and the conditions without a target (filled with the training mean).

    ``None`` when no target is on a condition.
    """
    targets = data.targets
    if not any(c in targets for c in model.columns):
        return None
    x = np.array([targets[c].point if c in targets else model.mean[j] for j, c in enumerate(model.columns)])
    return x, [c for c in model.columns if c not in targets]
