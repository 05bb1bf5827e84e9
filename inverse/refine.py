"""Physics-refined recommendations: search recipes with the simulator in the loop until one verifies.

When the recommended recipe of a study (its posterior mean, :mod:`inverse.posterior`)
is simulated and its films miss the targets (``microdesign verify``),
:func:`refine_trial` goes on: an Optuna search over ``(phi, chi, log_time)``
whose objective is the study's own score of the *simulated* films (the mean
descriptors of ``seeds`` runs, simulated together in one batch,
:func:`generator.physics.recipes.simulate_recipes`). It is warm-started from the recipe
posterior (the verified recipe is added as the first, already simulated,
candidate; the targets' posterior mean and draws are queued next) and stops as soon as a
candidate meets every target, or when the budget of simulator runs is spent.
The warm start that matters most is the recipe posterior of the *targets*
themselves (:func:`target_posterior`): on the shipped model it took the
refined loop from 3/8 to 7/8 verified targets within 30 runs
(``docs/verification.md``).

The same search without a warm start, :func:`search_recipes` with
``warm_start=()``, is the *physics-only* baseline of
``benchmarks/design_to_recipe.py``.

Storage and resumption
----------------------
Each candidate is one trial of an Optuna study ``<study>:refine:<trial>`` in
the study's own storage, committed when its runs are measured: killing the
search loses at most the candidate being simulated (a dead worker's RUNNING
candidate is failed at the next start and queued again, like the study's own
trials, :mod:`inverse.storage`). Running it again resumes: the budget counts
every completed candidate. After each candidate the study's user attribute
``refinement`` (schema in ``docs/verification.md``) is updated with the trail,
for the dashboard.
"""

from __future__ import annotations

import datetime as _dt
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import pandas as pd

from generator.descriptors import compute_batch
from generator.errors import InvalidInputError
from generator.model_info import read_model_record
from generator.physics.recipes import RECIPE_NAMES as RECIPE, SimulationSettings, check_recipes, simulate_recipes
from inverse import evaluation, storage as storage_mod
from inverse.posterior import intensive_features, posterior_for_model
from inverse.record import StudyRecord, TrialRecord
from inverse.search import make_sampler
from inverse.spec import Target, parse_spec
from inverse.verify import DEFAULT_SEED

#: Study user attribute holding the refinement trails.
REFINEMENT_ATTR = "refinement"
#: Version of the stored schema.
SCHEMA_VERSION = 1
#: Default budget: simulator runs per refinement (16 recipes of 3 runs).
DEFAULT_BUDGET = 48
#: Default runs per candidate recipe.
DEFAULT_SEEDS = 3
#: Posterior draws queued after the verified recipe.
DEFAULT_WARM_START = 4
#: First noise seed of the refinement runs (other than the verification's).
REFINE_SEED = 200_000


@dataclass
class Candidate:
    """One simulated recipe of a search.

    Attributes
    ----------
    number
        Order in the search (Optuna trial number).
    recipe
        ``{phi, chi, log_time}``.
    seeds
        Noise seeds of its runs.
    simulated
        ``(S, n_descriptors)`` descriptors of the runs.
    target_distance, score, meets_targets
        The study's scoring rule on the simulated mean.
    seconds
        ``{"simulate": s, "measure": s}`` wall time.
    source
        ``"verification"`` (the verified recipe), ``"posterior"`` (a queued draw) or ``"search"``.
    """

    number: int
    recipe: dict[str, float]
    seeds: list[int]
    simulated: pd.DataFrame
    target_distance: dict[str, float]
    score: float
    meets_targets: bool
    seconds: dict[str, float] = field(default_factory=dict)
    source: str = "search"


@dataclass
class SearchResult:
    """The outcome of :func:`search_recipes`.

    Attributes
    ----------
    status
        ``"verified"`` (a candidate met every target) or ``"exhausted"`` (the budget ran out first).
    verified
        The first candidate that met the targets (``None`` when exhausted).
    best
        The candidate of lowest score.
    trail
        Every completed candidate, in order (earlier sessions' ones included).
    n_runs
        Simulator runs spent (every candidate's seeds).
    runs_to_verified
        Runs spent up to and including the verified candidate (``None`` when exhausted).
    seconds
        Wall time of the candidates (simulate + measure), summed.
    study_name
        The Optuna study holding the trail.
    """

    status: str
    verified: Candidate | None
    best: Candidate | None
    trail: list[Candidate]
    n_runs: int
    runs_to_verified: int | None
    seconds: float
    study_name: str

    def message(self, budget: int) -> str:
        """One line for the user."""
        if self.verified is not None:
            r = self.verified.recipe
            return (f"verified: phi={r['phi']:.3f} chi={r['chi']:.3f} log t={r['log_time']:.3f} meets every target "
                    f"(mean of {len(self.verified.seeds)} runs) after {self.runs_to_verified} simulator runs")
        best = self.best
        text = f"budget exhausted: no recipe met the targets within {budget} simulator runs ({len(self.trail)} recipes)"
        if best is not None:
            r = best.recipe
            text += f"; closest: phi={r['phi']:.3f} chi={r['chi']:.3f} log t={r['log_time']:.3f} (score {best.score:.3g})"
        return text + "; raise --budget or relax the targets"


def recipe_bounds(settings: SimulationSettings, training: pd.DataFrame | None, max_steps: int | None = None,
                  recipe_bounds: Mapping[str, Any] | None = None) -> dict[str, tuple[float, float]]:
    """The search box: the training data's recipe ranges (the posterior's support), within the spec's ``[recipe]`` bounds.

    Without a training table: ``phi`` in [0.3, 0.7], ``chi`` in [2.5, 3.6] and
    ``log_time`` up to the step limit.

    Raises
    ------
    InvalidInputError
        An empty box (``[recipe]`` bounds outside the training range).
    """
    if training is not None and set(RECIPE) <= set(training.columns):
        box = {n: (float(training[n].min()), float(training[n].max())) for n in RECIPE}
    else:
        limit = int(max_steps or 10 * settings.ch.steps)
        box = {"phi": (0.3, 0.7), "chi": (2.5, 3.6), "log_time": (0.5, float(np.log10(limit * settings.ch.dt)))}
    for name, bound in (recipe_bounds or {}).items():
        if name in box:
            lo, hi = bound.interval
            box[name] = (max(box[name][0], lo), min(box[name][1], hi))
    for name, (lo, hi) in box.items():
        if not lo < hi:
            raise InvalidInputError(f"recipe: the search range of {name} is empty ([{lo:.4g}, {hi:.4g}]); widen the [recipe] bounds")
    return box


def evaluate_recipe(recipe: Mapping[str, float], settings: SimulationSettings, targets: Mapping[str, Target],
                    scales: Mapping[str, float], seeds: Sequence[int], *, max_steps: int | None = None, n_jobs: int | None = None,
                    device: str | None = None) -> tuple[pd.DataFrame, dict[str, float], float, dict[str, float]]:
    """Simulate one recipe over ``seeds`` (one batch), measure and score it.

    Returns
    -------
    simulated : pd.DataFrame
        ``(S, n_descriptors)`` descriptors of the runs.
    distances : dict
        ``d_j`` per target (:func:`inverse.evaluation.target_distances` of the mean).
    score : float
        The study's score of the mean (0: every target met).
    seconds : dict
        ``{"simulate", "measure"}`` wall time.
    """
    start = time.perf_counter()
    labels, _ = simulate_recipes(np.array([[recipe[n] for n in RECIPE]]), settings, seeds, max_steps=max_steps, device=device)
    simulated_at = time.perf_counter()
    simulated = pd.DataFrame(compute_batch(list(labels[0]), n_jobs=n_jobs, n_phases=settings.n_phases)).astype(float)
    measured_at = time.perf_counter()
    distances = evaluation.target_distances(simulated.mean().to_dict(), targets, scales)
    return simulated, distances, evaluation.score(distances), {"simulate": simulated_at - start, "measure": measured_at - simulated_at}


def _candidate(trial: optuna.trial.FrozenTrial) -> Candidate:
    a = trial.user_attrs
    return Candidate(
        number=trial.number, recipe={n: float(a["recipe"][n]) for n in RECIPE}, seeds=list(a["seeds"]),
        simulated=pd.DataFrame(a["simulated_samples"]), target_distance=dict(a["target_distance"]), score=float(a["score"]),
        meets_targets=bool(a["meets_targets"]), seconds=dict(a.get("seconds", {})), source=str(a.get("source", "search")),
    )


def _attrs(recipe: Mapping[str, float], seeds: Sequence[int], simulated: pd.DataFrame, distances: Mapping[str, float], score: float,
           seconds: Mapping[str, float], source: str, names: Sequence[str]) -> dict[str, Any]:
    def finite(v: float) -> float | None:
        return float(v) if np.isfinite(v) else None

    return {
        "recipe": {n: float(recipe[n]) for n in RECIPE}, "seeds": [int(s) for s in seeds],
        "simulated_samples": {n: [finite(v) for v in simulated[n]] for n in names if n in simulated},
        "simulated_mean": {n: finite(float(simulated[n].mean())) for n in names if n in simulated},
        "target_distance": {k: finite(v) for k, v in distances.items()}, "score": finite(score),
        "meets_targets": bool(score == 0.0), "seconds": dict(seconds), "source": source,
    }


def _completed(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)) if "recipe" in t.user_attrs]


def search_recipes(
    targets: Mapping[str, Target],
    scales: Mapping[str, float],
    settings: SimulationSettings,
    *,
    storage: str | optuna.storages.BaseStorage,
    study_name: str,
    budget: int = DEFAULT_BUDGET,
    n_seeds: int = DEFAULT_SEEDS,
    seed: int = REFINE_SEED,
    bounds: Mapping[str, tuple[float, float]],
    warm_start: Sequence[Mapping[str, float]] = (),
    known: Sequence[tuple[Mapping[str, float], Sequence[int], pd.DataFrame]] = (),
    sampler: str = "tpe",
    n_startup_trials: int | None = None,
    sampler_seed: int = 0,
    descriptors: Sequence[str] = (),
    max_steps: int | None = None,
    n_jobs: int | None = None,
    device: str | None = None,
    on_candidate: Callable[[list[Candidate]], None] | None = None,
) -> SearchResult:
    """Search recipes with the simulator as the objective until one meets every target or ``budget`` runs are spent.

    Parameters
    ----------
    targets, scales
        The targets and the score's descriptor scales (:mod:`inverse.evaluation`).
    settings
        The simulator settings (:func:`inverse.verify.simulation_settings`).
    storage, study_name
        Where the candidates live (an Optuna study, created or resumed).
    budget
        Largest number of simulator runs (candidates x ``n_seeds``, known candidates included).
    n_seeds, seed
        Runs per candidate, simulated together, with noise seeds ``seed, seed + 1, ...`` (the same for every candidate).
    bounds
        ``{phi, chi, log_time: (lo, hi)}``: the search box (:func:`recipe_bounds`).
    warm_start
        Recipes queued first (posterior draws), clipped to the box.
    known
        ``(recipe, seeds, simulated descriptors)`` already simulated (the verification): added as
        completed candidates without simulating (they count towards the budget).
    sampler, n_startup_trials, sampler_seed
        ``tpe`` (multivariate TPE) or ``gp`` (Optuna's GP sampler), its random
        start-up trials (default: 0 after a warm start, else 6) and seed.
    descriptors
        Descriptors stored per candidate (default: the targets).
    max_steps, n_jobs, device
        Step limit of a run, descriptor threads (default every core), simulator device.
    on_candidate
        Called with the trail after each completed candidate.

    Returns
    -------
    SearchResult

    Raises
    ------
    InvalidInputError
        No targets, a budget smaller than one candidate's runs, ``n_seeds < 1``, or a box
        whose longest time exceeds ``max_steps``.
    """
    if not targets:
        raise InvalidInputError("refine: the study has no targets; there is nothing to verify a recipe against")
    if int(n_seeds) < 1:
        raise InvalidInputError(f"refine-seeds: must be >= 1, got {n_seeds}")
    if int(budget) < int(n_seeds):
        raise InvalidInputError(f"budget: {budget} simulator runs do not pay for one recipe of {n_seeds} runs; give --budget >= {n_seeds}")
    check_recipes(np.array([[bounds["phi"][0], bounds["chi"][0], bounds["log_time"][1]]]), settings, max_steps)
    names = list(dict.fromkeys([*targets, *descriptors]))
    seeds = [int(seed) + i for i in range(int(n_seeds))]
    startup = n_startup_trials if n_startup_trials is not None else (0 if warm_start or known else 6)
    rdb = storage_mod.open_storage(storage) if isinstance(storage, str) else storage
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study = optuna.create_study(study_name=study_name, storage=rdb, direction="minimize", load_if_exists=True,
                                        sampler=make_sampler(sampler, seed=sampler_seed, n_startup_trials=max(startup, 1)))
            storage_mod.fail_stale_trials(study)
    finally:
        optuna.logging.set_verbosity(verbosity)
    distributions = {n: optuna.distributions.FloatDistribution(*bounds[n]) for n in RECIPE}

    def clip(recipe: Mapping[str, float]) -> dict[str, float]:
        return {n: float(np.clip(recipe[n], *bounds[n])) for n in RECIPE}

    if not study.get_trials(deepcopy=False):  # a new search: add what is known, queue the warm start
        for recipe, run_seeds, simulated in known:
            distances = evaluation.target_distances(simulated.mean().to_dict(), targets, scales)
            score = evaluation.score(distances)
            attrs = _attrs(recipe, run_seeds, simulated, distances, score, {}, "verification", names)
            params = clip(recipe)
            study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=score, user_attrs=attrs))
        for recipe in warm_start:
            study.enqueue_trial(clip(recipe), user_attrs={"source": "posterior"}, skip_if_exists=True)

    def trail() -> list[Candidate]:
        return [_candidate(t) for t in _completed(study)]

    def runs(candidates: list[Candidate]) -> int:
        return sum(len(c.seeds) for c in candidates)

    def objective(trial: optuna.Trial) -> float:
        recipe = {n: trial.suggest_float(n, *bounds[n]) for n in RECIPE}
        simulated, distances, score, seconds = evaluate_recipe(recipe, settings, targets, scales, seeds, max_steps=max_steps,
                                                               n_jobs=n_jobs, device=device)
        source = trial.user_attrs.get("source", "search")
        for key, value in _attrs(recipe, seeds, simulated, distances, score, seconds, source, names).items():
            trial.set_user_attr(key, value)
        return score if np.isfinite(score) else 1e6

    def stop_when_done(study_: optuna.Study, frozen: optuna.trial.FrozenTrial) -> None:
        done = trail()
        if on_candidate is not None:
            on_candidate(done)
        if any(c.meets_targets for c in done) or runs(done) + len(seeds) > int(budget):
            study_.stop()

    done = trail()
    remaining = (int(budget) - runs(done)) // len(seeds)
    if on_candidate is not None and done:
        on_candidate(done)
    if remaining > 0 and not any(c.meets_targets for c in done):
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            study.optimize(objective, n_trials=remaining, callbacks=[stop_when_done], gc_after_trial=False)
        finally:
            optuna.logging.set_verbosity(verbosity)
    done = trail()
    return _result(done, study_name)


def _result(done: list[Candidate], study_name: str) -> SearchResult:
    verified = next((c for c in done if c.meets_targets), None)
    best = min(done, key=lambda c: c.score, default=None)
    n_runs = sum(len(c.seeds) for c in done)
    to_verified = None
    if verified is not None:
        to_verified = sum(len(c.seeds) for c in done[: done.index(verified) + 1])
    seconds = sum(sum(c.seconds.values()) for c in done)
    return SearchResult(status="verified" if verified else "exhausted", verified=verified, best=best, trail=done, n_runs=n_runs,
                        runs_to_verified=to_verified, seconds=seconds, study_name=study_name)


def target_center(targets: Mapping[str, Target], table: pd.DataFrame) -> dict[str, float]:
    """A point inside each target's accepted interval: ``equal``, the middle of ``[at_least, at_most]``, or a
    one-sided bound moved half a training std inside (clipped to the training range)."""
    center = {}
    for name, target in targets.items():
        lo, hi = target.interval
        column = table[name].to_numpy(dtype=float)
        step = 0.5 * float(np.nanstd(column))
        if np.isfinite(lo) and np.isfinite(hi):
            value = 0.5 * (lo + hi)
        elif np.isfinite(lo):
            value = min(lo + step, float(np.nanmax(column)))
        else:
            value = max(hi - step, float(np.nanmin(column)))
        center[name] = float(value)
    return center


def target_posterior(targets: Mapping[str, Target], model: str, n: int, *, seed: int = 0) -> list[dict[str, float]]:
    """Recipes for the *targets* themselves: the mean and ``n - 1`` draws of the recipe posterior given only the
    target descriptors (:func:`inverse.posterior.posterior_for_model` on those features) at :func:`target_center`.

    ``[]`` when the model has no training table or no target is an intensive descriptor of it.
    """
    if n < 1:
        return []
    table = read_model_record(model).descriptor_table
    if table is None:
        return []
    names = [name for name in targets if name in intensive_features(table)]
    if not names:
        return []
    posterior = posterior_for_model(model, features=names)
    dist = posterior.predict(target_center({k: targets[k] for k in names}, table))
    recipes = [dist.mean[0], *dist.sample(0, n - 1, seed=seed)] if n > 1 else [dist.mean[0]]
    return [dict(zip(RECIPE, map(float, r))) for r in recipes]


# ----------------------------------------------------------------------------- studies

def refine_study_name(study_name: str, trial: int) -> str:
    """Name of the Optuna study holding the refinement of one trial's recipe."""
    return f"{study_name}:refine:{trial}"


def trail_record(result: SearchResult, *, trial: int, budget: int, names: Sequence[str]) -> dict[str, Any]:
    """The JSON record of one refinement stored in the study (schema: ``docs/verification.md``)."""
    def recipe(c: Candidate | None) -> dict[str, float] | None:
        return None if c is None else c.recipe

    return {
        "schema": SCHEMA_VERSION,
        "trial": trial,
        "status": result.status,
        "budget": int(budget),
        "refine_study": result.study_name,
        "verified_recipe": recipe(result.verified),
        "best_recipe": recipe(result.best),
        "best_score": None if result.best is None else result.best.score,
        "n_recipes": len(result.trail),
        "n_runs": result.n_runs,
        "runs_to_verified": result.runs_to_verified,
        "seconds": result.seconds,
        "trail": [
            {"number": c.number, "recipe": c.recipe, "score": c.score if np.isfinite(c.score) else None, "meets_targets": c.meets_targets,
             "n_runs": len(c.seeds), "source": c.source, "seconds": c.seconds,
             "simulated_mean": {n: float(c.simulated[n].mean()) for n in names if n in c.simulated}}
            for c in result.trail
        ],
        "updated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def stored_refinement(study: optuna.Study | optuna.study.StudySummary) -> dict[str, Any]:
    """The study's ``refinement`` attribute (``{"trials": {}}`` when never refined)."""
    return dict(study.user_attrs.get(REFINEMENT_ATTR) or {"schema": SCHEMA_VERSION, "trials": {}})


def refine_trial(
    study: optuna.Study,
    verification: Any,
    settings: SimulationSettings,
    *,
    storage: str,
    budget: int = DEFAULT_BUDGET,
    n_seeds: int = DEFAULT_SEEDS,
    seed: int = REFINE_SEED,
    n_warm_start: int = DEFAULT_WARM_START,
    sampler: str = "tpe",
    max_steps: int | None = None,
    n_jobs: int | None = None,
    device: str | None = None,
    store: bool = True,
    progress: Callable[[str], None] | None = None,
) -> SearchResult:
    """Refine the recipe of one verified trial (an :class:`inverse.verify.RecipeVerification`) with the simulator in the loop.

    The verified recipe and its runs are the first candidate. The warm start
    comes next: the recipe posterior of the *targets* (given the target
    descriptors alone, :func:`target_posterior`: its mean and ``n_warm_start - 1``
    draws), and one draw of the trial's own recipe posterior (what the
    generator's design suggests); then the sampler. The box
    is the training data's recipe range within the spec's ``[recipe]`` bounds.
    With ``store``, the trail goes into the study's ``refinement`` attribute
    after every candidate.

    Raises
    ------
    InvalidInputError
        As :func:`search_recipes`.
    """
    stored = StudyRecord.of(study)
    spec = parse_spec(stored.spec, source=f"study {study.study_name}")
    record = read_model_record(spec.model, kind=spec.kind)
    scales = dict(stored.descriptor_scales)
    scales.update({n: s for n, s in evaluation.descriptor_scales(list(spec.targets), record.descriptor_table).items() if n not in scales})
    bounds = recipe_bounds(settings, record.descriptor_table, max_steps, spec.recipe)
    warm: list[dict[str, float]] = []
    try:
        warm = target_posterior(spec.targets, spec.model, n_warm_start, seed=seed)
        posterior = posterior_for_model(spec.model)
        measured = TrialRecord.of(study.trials[verification.trial]).measured_mean
        if n_warm_start > 0:
            warm.append(dict(zip(RECIPE, posterior.predict(measured).sample(0, 1, seed=seed)[0])))
    except InvalidInputError:
        pass  # no posterior (MicroGen3D weights): the verified recipe alone warm-starts the search
    known = [(verification.recipe, verification.seeds, verification.simulated)]
    name = refine_study_name(study.study_name, verification.trial)
    names = spec.descriptor_names()

    def update(trail: list[Candidate]) -> None:
        if progress is not None and trail:
            c = trail[-1]
            progress(f"recipe {len(trail)}: phi={c.recipe['phi']:.3f} chi={c.recipe['chi']:.3f} log t={c.recipe['log_time']:.3f} "
                     f"score {c.score:.3g}{' (meets every target)' if c.meets_targets else ''}")
        if store:
            stored = stored_refinement(study)
            trials = dict(stored.get("trials", {}))
            trials[str(verification.trial)] = trail_record(_result(trail, name), trial=verification.trial, budget=budget, names=names)
            study.set_user_attr(REFINEMENT_ATTR, {"schema": SCHEMA_VERSION, "trials": trials})

    return search_recipes(
        spec.targets, scales, settings, storage=storage, study_name=name, budget=budget, n_seeds=n_seeds, seed=seed, bounds=bounds,
        warm_start=warm, known=known, sampler=sampler, descriptors=names, max_steps=max_steps, n_jobs=n_jobs, device=device,
        on_candidate=update,
    )


__all__ = [
    "DEFAULT_BUDGET", "DEFAULT_SEED", "DEFAULT_SEEDS", "Candidate", "REFINEMENT_ATTR", "SearchResult", "evaluate_recipe",
    "recipe_bounds", "refine_study_name", "refine_trial", "search_recipes", "stored_refinement", "trail_record",
]
