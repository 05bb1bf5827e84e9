"""Recipe verification by physics simulation: close the loop design -> recipe -> "manufacture".

A study ranks recipes: the feature predictor's (FP) blend ratio ``phi``,
Flory-Huggins ``chi`` and ``log_time`` for the microstructures the generator
made at the trial's conditions. :func:`verify_study` takes the top-k of them
and re-runs the Cahn-Hilliard simulator that made the training data with
exactly those parameters, on the same grid and with the same time mapping
(``steps = round(10**log_time / dt)``, see
:mod:`generator.physics.cahn_hilliard`), over several noise seeds in one
batch per annealing time. The simulated fields are labelled like the training
data (two- or three-phase, :mod:`generator.physics.labels`), measured with
:func:`generator.descriptors.compute_batch`, and scored against the study's
targets with the study's own rule (:mod:`inverse.evaluation`).

How the training data was simulated comes from the bundle (its
``simulation`` record, written by ``microdesign train`` from the dataset's
root attributes) or, for MicroGen3D weights and older bundles, from a named
dataset preset (``preset=``). Results are stored in the study's user
attribute ``verification`` (schema in ``docs/verification.md``), because
Optuna does not let user attributes of finished trials change.
"""

from __future__ import annotations

import datetime as _dt
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd

from generator.descriptors import compute_batch, is_count
from generator.errors import InvalidInputError
from generator.model_info import ModelRecord, read_model_record
from generator.physics.cahn_hilliard import CHParameters, spinodal_chi
from generator.physics.presets import load_preset
from generator.physics.recipes import (  # noqa: F401  (also verify's names before they moved)
    MAX_STEPS_FACTOR,
    RECIPE_NAMES as RECIPE,
    SimulationSettings,
    check_recipes,
    label_fields,
    simulate_recipes,
)
from generator.validation import check_device, check_seed
from inverse import evaluation, storage as storage_mod
from inverse.recipes import study_recipes
from inverse.record import StudyRecord, TrialRecord
from inverse.spec import StudySpec, parse_spec

#: Study user attribute holding the verification results.
VERIFICATION_ATTR = "verification"
#: Version of the stored schema (``docs/verification.md``).
SCHEMA_VERSION = 1
#: Default first noise seed of the verification runs (training presets use small seeds).
DEFAULT_SEED = 100_000


# ----------------------------------------------------------------------------- how the data was simulated

def simulation_settings(record: ModelRecord, preset: str | os.PathLike[str] | None = None,
                        size: Sequence[int] | None = None) -> SimulationSettings:
    """The simulator settings to verify a model's recipes with.

    Parameters
    ----------
    record
        From :func:`read_model_record`.
    preset
        A dataset preset (name or TOML file) to use instead of the model's own
        record; required when the model has none (MicroGen3D weights).
    size
        ``(X, Y, Z)`` of the films a study generated when it is not the model's
        default (a study's ``[generation] size``): they are verified at that size.

    Films are simulated at the size of the generated films (the model's
    ``volume_shape``): a resizable generator trained on 64x64x64 films that
    generates 128x128x64 films is verified on 128x128x64 films with its
    training physics (the record's or preset's grid is replaced when it is the
    training films' grid and the electrode axis agrees).

    Raises
    ------
    InvalidInputError
        No record and no preset, or a grid that is neither the generated nor the training films' size.
    """
    if preset is not None:
        loaded = load_preset(preset)
        ch, name, source = loaded.ch, loaded.name, "preset"
    elif record.simulation and record.simulation.get("ch_parameters"):
        ch = CHParameters.model_validate(record.simulation["ch_parameters"])
        name, source = record.simulation.get("preset"), "bundle"
    else:
        raise InvalidInputError(
            "preset: the model does not record how its training data was simulated "
            "(MicroGen3D weights or an older bundle); name the dataset preset with --preset (tiny, small, paper or a .toml)"
        )
    grid = tuple(ch.shape) + (1,) * (3 - len(ch.shape))
    volume = tuple(int(n) for n in size) if size is not None else tuple(record.volume_shape)
    if grid != volume:
        if grid in (tuple(record.trained_on), tuple(record.volume_shape)) and len(ch.shape) == 3 and grid[2] == volume[2]:
            ch = ch.model_copy(update={"shape": volume})  # same physics, the generated films' size
        else:
            raise InvalidInputError(
                f"preset: the grid {list(ch.shape)} of preset {name} differs from the model's volume shape {list(volume)}"
            )
    return SimulationSettings(ch=ch, n_phases=record.n_phases, preset=name, source=source)


# ----------------------------------------------------------------------------- comparison with the training data

def nearest_training_recipe(
    descriptors: Mapping[str, float], table: pd.DataFrame | None, names: Sequence[str], *, k: int = 5
) -> dict[str, float] | None:
    """The recipe of the training samples whose descriptors are nearest to ``descriptors``.

    Distances are Euclidean over ``names`` (those present in both, counts
    such as ``STAT_n`` left out: they grow with the film's size, and a
    128×128×64 film is compared with 64×64×64 training films), each
    descriptor scaled by its training standard deviation; the result is the
    mean ``phi``, ``chi``, ``log_time`` of the ``k`` nearest samples: the
    recipe known to make such a microstructure. ``None`` without a table or
    without a shared size-independent descriptor.

    Parameters
    ----------
    descriptors
        ``{name: value}``, e.g. a trial's generated mean.
    table
        The training set's attributes (one row per sample).
    names
        Descriptors to compare on.
    k
        Neighbours averaged.
    """
    if table is None or not set(RECIPE) <= set(table.columns):
        return None
    cols = [n for n in names if n in table.columns and not is_count(n) and np.isfinite(descriptors.get(n, np.nan))]
    if not cols:
        return None
    values = table[cols].to_numpy(dtype=np.float64)
    scale = values.std(axis=0)
    scale[~(scale > 1e-12)] = 1.0
    query = np.array([descriptors[n] for n in cols], dtype=np.float64)
    distance = np.sqrt(np.nansum(((values - query) / scale) ** 2, axis=1))
    nearest = np.argsort(distance, kind="stable")[: max(1, int(k))]
    return {name: float(table[name].to_numpy()[nearest].mean()) for name in RECIPE}


def outside_training(recipe: Mapping[str, float], table: pd.DataFrame | None) -> list[str]:
    """Recipe variables outside the training data's range (empty without a table)."""
    if table is None:
        return []
    return [n for n in RECIPE if n in table.columns and not table[n].min() <= recipe[n] <= table[n].max()]


# ----------------------------------------------------------------------------- studies

@dataclass
class RecipeVerification:
    """The verification of one recipe (one measured trial).

    Attributes
    ----------
    trial, rank
        Trial number and its rank in the study's recipe table.
    recipe
        ``{phi, chi, log_time}``: the ranked table's recipe (posterior mean, else the FP's mean), as simulated.
    steps, time
        Time steps simulated and the simulation time ``steps * dt``.
    seeds
        Noise seeds of the ``S`` runs.
    generated_mean, generated_std
        The trial's measured descriptors of its generated volumes.
    generated_score
        The trial's score.
    simulated
        ``(S, n_descriptors)`` descriptors of the simulated volumes.
    target_distance, score, meets_targets
        The study's scoring rule on the simulated mean.
    fraction_meeting
        Fraction of the simulated runs that meet every target on their own.
    below_spinodal
        ``chi`` at or below the spinodal of ``phi``: the blend does not phase-separate.
    outside_training
        Recipe variables outside the training data's range.
    nearest_training_recipe
        Mean recipe of the training samples nearest to the generated descriptors.
    labels
        ``(S, X, Y, Z)`` simulated labels.
    artifact_id
        Optuna artifact of the simulated volumes (when stored).
    posterior
        The recipe's calibrated 80 % interval (``lower``, ``upper``) and the feature
        predictor's mean, when the model has a recipe posterior (:mod:`inverse.posterior`).
    """

    trial: int
    rank: int
    recipe: dict[str, float]
    steps: int
    time: float
    seeds: list[int]
    generated_mean: dict[str, float]
    generated_std: dict[str, float]
    generated_score: float
    simulated: pd.DataFrame
    target_distance: dict[str, float]
    score: float
    meets_targets: bool
    fraction_meeting: float
    below_spinodal: bool
    outside_training: list[str]
    nearest_training_recipe: dict[str, float] | None
    labels: np.ndarray = field(repr=False)
    artifact_id: str | None = None
    posterior: dict[str, Any] | None = None

    @property
    def simulated_mean(self) -> dict[str, float]:
        """Mean of each simulated descriptor."""
        return {str(k): float(v) for k, v in self.simulated.mean().items()}

    @property
    def simulated_std(self) -> dict[str, float]:
        """Standard deviation (ddof 0, like the trial's) of each simulated descriptor."""
        return {str(k): float(v) for k, v in self.simulated.std(ddof=0).items()}

    @property
    def generated_meets_targets(self) -> bool:
        """Whether the generated volumes met the targets (the trial's verdict)."""
        return self.generated_score == 0.0

    def record(self, names: Sequence[str], settings: SimulationSettings) -> dict[str, Any]:
        """The JSON record stored in the study (schema: ``docs/verification.md``)."""
        return {
            "schema": SCHEMA_VERSION,
            "rank": self.rank,
            "recipe": self.recipe,
            "steps": self.steps,
            "time": self.time,
            "seeds": self.seeds,
            "n_runs": len(self.seeds),
            "preset": settings.preset,
            "n_phases": settings.n_phases,
            "simulated_mean": _finite(self.simulated_mean),
            "simulated_std": _finite(self.simulated_std),
            "simulated_samples": {n: _finite_list(self.simulated[n]) for n in names if n in self.simulated},
            "target_distance": _finite(self.target_distance),
            "score": _finite_value(self.score),
            "meets_targets": self.meets_targets,
            "fraction_meeting": self.fraction_meeting,
            "generated_score": _finite_value(self.generated_score),
            "generated_meets_targets": self.generated_meets_targets,
            "below_spinodal": self.below_spinodal,
            "outside_training": self.outside_training,
            "nearest_training_recipe": self.nearest_training_recipe,
            "artifact_id": self.artifact_id,
            "posterior": self.posterior,
            "verified_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }


def _finite_value(value: float) -> float | None:
    """JSON has no NaN/inf: store ``None`` for them."""
    return float(value) if np.isfinite(value) else None


def _finite(values: Mapping[str, float]) -> dict[str, float | None]:
    return {str(k): _finite_value(float(v)) for k, v in values.items()}


def _finite_list(values: pd.Series) -> list[float | None]:
    return [_finite_value(float(v)) for v in values]


@dataclass
class VerificationReport:
    """:func:`verify_study`'s result: the study's spec, the simulator settings and one entry per recipe."""

    study_name: str
    spec: StudySpec
    settings: SimulationSettings
    results: list[RecipeVerification]

    @property
    def descriptor_names(self) -> list[str]:
        """Target and objective descriptors (the ones reported)."""
        return self.spec.descriptor_names()


def load_study(name: str, storage: str | None = None) -> tuple[optuna.Study, str]:
    """Load an existing study and its storage URL (default ``sqlite:///runs/NAME.db``).

    Raises
    ------
    InvalidInputError
        When the storage or the study does not exist.
    """
    url = storage or storage_mod.default_storage_url(name)
    rdb = storage_mod.open_storage(url, create=False)
    try:
        return optuna.load_study(study_name=name, storage=rdb), url
    except KeyError:
        names = ", ".join(s.study_name for s in optuna.get_all_study_summaries(rdb, include_best_trial=False))
        raise InvalidInputError(f"study: no study {name!r} in {url} (it holds: {names or 'none'})") from None


def _ranked(study: optuna.Study, top_k: int) -> pd.DataFrame:
    """The first ``top_k`` rows of the study's ranked recipe table (:func:`inverse.recipes.study_recipes`)."""
    if int(top_k) < 1:
        raise InvalidInputError(f"top_k: must be >= 1, got {top_k}")
    table = study_recipes(study)
    if table.empty:
        raise InvalidInputError(f"study: {study.study_name!r} has no completed, measured trial to verify")
    return table.head(int(top_k))


def top_trials(study: optuna.Study, top_k: int) -> list[tuple[int, optuna.trial.FrozenTrial]]:
    """``[(rank, trial)]`` of the ``top_k`` best-ranked measured trials (:func:`inverse.recipes.study_recipes`).

    Raises
    ------
    InvalidInputError
        ``top_k < 1``, or a study with no measured trial.
    """
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    return [(int(row.rank), trials[int(row.trial)]) for row in _ranked(study, top_k).itertuples()]


def top_recipes(study: optuna.Study, top_k: int) -> list[tuple[int, optuna.trial.FrozenTrial, dict[str, float], dict[str, Any] | None]]:
    """``[(rank, trial, recipe, posterior)]`` of the ``top_k`` best-ranked measured trials.

    ``recipe`` is the ranked table's recipe (the posterior mean, or the feature
    predictor's mean for models without a training table); ``posterior`` is
    ``{"lower": {...}, "upper": {...}, "source": ...}`` (``None`` without a posterior).

    Raises
    ------
    InvalidInputError
        ``top_k < 1``, a study with no measured trial, or a model whose feature
        predictor gives no phi, chi or log_time.
    """
    table = _ranked(study, top_k)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    out = []
    for row in table.to_dict("records"):
        trial = trials[int(row["trial"])]
        missing = [n for n in RECIPE if not np.isfinite(row.get(f"{n}_mean", np.nan))]
        if missing:
            raise InvalidInputError(
                f"model: trial {trial.number} has no predicted {missing[0]}; verification needs a feature predictor "
                "that gives phi, chi and log_time"
            )
        recipe = {n: float(row[f"{n}_mean"]) for n in RECIPE}
        posterior = None
        if row.get("recipe_source") == "posterior":
            posterior = {"source": "posterior", "level": 0.8,
                         "lower": {n: float(row[f"{n}_lo"]) for n in RECIPE}, "upper": {n: float(row[f"{n}_hi"]) for n in RECIPE},
                         "feature_predictor": {n: float(row[f"{n}_fp"]) for n in RECIPE if np.isfinite(row.get(f"{n}_fp", np.nan))}}
        out.append((int(row["rank"]), trial, recipe, posterior))
    return out


def verify_study(
    study: optuna.Study,
    *,
    top_k: int = 3,
    n_seeds: int = 4,
    seed: int = DEFAULT_SEED,
    model: str | None = None,
    kind: str | None = None,
    preset: str | os.PathLike[str] | None = None,
    storage_url: str | None = None,
    runs_dir: str | Path = storage_mod.RUNS_DIR,
    store: bool = True,
    max_steps: int | None = None,
    neighbours: int = 5,
    n_jobs: int | None = None,
    device: str | None = None,
    progress: bool = False,
) -> VerificationReport:
    """Verify the top-k recipes of a study by simulation, and store the results in it.

    Parameters
    ----------
    study
        A study run by :func:`inverse.search.run_study` (its ``spec`` user attribute gives the targets).
    top_k
        Best-ranked measured trials to verify.
    n_seeds, seed
        Runs per recipe, with noise seeds ``seed, seed + 1, ...``.
    model, kind
        The generator (default: the study spec's); only its record is read.
    preset
        Dataset preset to simulate with instead of the model's record (required for MicroGen3D weights).
    storage_url, runs_dir
        Where the study lives (for the artifact store of the simulated volumes).
    store
        Write the results into the study's ``verification`` user attribute
        (merged with earlier ones) and upload the simulated volumes.
    max_steps
        Largest number of time steps of a run (see :func:`check_recipes`).
    neighbours
        Training samples averaged by :func:`nearest_training_recipe`.
    n_jobs, device, progress
        Descriptor threads, simulator device, progress bars.

    Returns
    -------
    VerificationReport

    Raises
    ------
    InvalidInputError
        Bad ``top_k``/``n_seeds``, a study without a spec or measured trials,
        a model without a simulation record and no ``preset``.
    """
    if int(n_seeds) < 1:
        raise InvalidInputError(f"seeds: must be >= 1, got {n_seeds}")
    check_seed(seed, "seed")
    check_seed(seed + int(n_seeds) - 1, "seed")  # the last run's seed too
    if device is not None:
        device = check_device(device, "device")
    stored = StudyRecord.of(study)
    if not stored.spec:
        raise InvalidInputError(f"study: {study.study_name!r} has no spec (not made by `microdesign study run`)")
    spec = parse_spec(stored.spec, source=f"study {study.study_name}")
    ranked = top_recipes(study, top_k)
    chosen = [(rank, trial) for rank, trial, _, _ in ranked]
    recipes = [recipe for _, _, recipe, _ in ranked]
    record = read_model_record(model or spec.model, kind=kind if model else (kind or spec.kind))
    missing = [n for n in RECIPE if n not in record.recipe_names]
    if missing:
        raise InvalidInputError(f"model: its feature predictor gives no {missing[0]}; verification needs phi, chi and log_time")
    settings = simulation_settings(record, preset, size=spec.generation.size)
    table = record.descriptor_table
    names = spec.descriptor_names()
    scales = dict(stored.descriptor_scales)
    scales.update({n: s for n, s in evaluation.descriptor_scales(names, table).items() if n not in scales})
    seeds = [int(seed) + i for i in range(int(n_seeds))]

    matrix = np.array([[r[n] for n in RECIPE] for r in recipes])
    labels, steps = simulate_recipes(matrix, settings, seeds, max_steps=max_steps, device=device, progress=progress)
    flat = labels.reshape(-1, *labels.shape[2:])
    measured = pd.DataFrame(compute_batch(list(flat), n_jobs=n_jobs, n_phases=settings.n_phases)).astype(float)

    results = []
    chi_s = spinodal_chi(matrix[:, 0], settings.ch.n_a, settings.ch.n_b)
    for i, ((rank, trial), recipe) in enumerate(zip(chosen, recipes)):
        simulated = measured.iloc[i * len(seeds): (i + 1) * len(seeds)].reset_index(drop=True)
        distances = evaluation.target_distances(simulated.mean().to_dict(), spec.targets, scales)
        per_run = [evaluation.score(evaluation.target_distances(row, spec.targets, scales)) == 0.0 for row in simulated.to_dict("records")]
        generated = TrialRecord.of(trial)
        generated_mean = {k: float(v) for k, v in generated.measured_mean.items()}
        results.append(RecipeVerification(
            trial=trial.number, rank=rank, recipe=recipe, steps=int(steps[i]), time=float(steps[i] * settings.ch.dt), seeds=seeds,
            generated_mean=generated_mean,
            generated_std={k: float(v) for k, v in generated.measured_std.items()},
            generated_score=float(np.nan if generated.score is None else generated.score),
            simulated=simulated, target_distance=distances, score=evaluation.score(distances),
            meets_targets=evaluation.score(distances) == 0.0, fraction_meeting=float(np.mean(per_run)),
            below_spinodal=bool(recipe["chi"] <= chi_s[i]), outside_training=outside_training(recipe, table),
            nearest_training_recipe=nearest_training_recipe(generated_mean, table, list(generated_mean), k=neighbours),
            labels=labels[i], posterior=ranked[i][3],
        ))
    report = VerificationReport(study_name=study.study_name, spec=spec, settings=settings, results=results)
    if store:
        store_verification(study, report, storage_url=storage_url, runs_dir=runs_dir)
    return report


def _upload_volumes(study: optuna.Study, store: Any, result: RecipeVerification) -> str:
    """Upload one recipe's simulated volumes (and their descriptors) as a ``.npz`` study artifact."""
    from optuna.artifacts import upload_artifact

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"verification_trial_{result.trial:05d}.npz"
        np.savez_compressed(
            path, labels=result.labels, seeds=np.asarray(result.seeds),
            descriptor_names=np.array(result.simulated.columns, dtype=str), descriptors=result.simulated.to_numpy(dtype=float),
        )
        return upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=study, mimetype="application/octet-stream")


def store_verification(study: optuna.Study, report: VerificationReport, *, storage_url: str | None = None,
                       runs_dir: str | Path = storage_mod.RUNS_DIR) -> dict[str, Any]:
    """Merge a report into the study's ``verification`` user attribute (and upload the simulated volumes).

    Returns
    -------
    dict
        The stored attribute (schema: ``docs/verification.md``).
    """
    url = storage_url or storage_mod.default_storage_url(study.study_name, runs_dir)
    artifacts = storage_mod.artifact_store(study.study_name, url, runs_dir)
    for result in report.results:
        result.artifact_id = _upload_volumes(study, artifacts, result)
    stored = stored_verification(study)
    trials = dict(stored.get("trials", {}))
    trials.update({str(r.trial): r.record(report.descriptor_names, report.settings) for r in report.results})
    value = {
        "schema": SCHEMA_VERSION,
        "simulation": report.settings.to_json(),
        "descriptors": report.descriptor_names,
        "updated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "trials": trials,
    }
    study.set_user_attr(VERIFICATION_ATTR, value)
    return value


def stored_verification(study: optuna.Study | optuna.study.StudySummary) -> dict[str, Any]:
    """The study's ``verification`` attribute (``{}`` when never verified)."""
    return dict(study.user_attrs.get(VERIFICATION_ATTR) or {})
