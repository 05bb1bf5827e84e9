"""Bayesian search over condition vectors (Optuna; BoTorch for ``botorch``).

:func:`run_study` is the whole loop: validate the spec against the model and
the training data (nothing is written before that succeeds), open the storage
(fail the running trials of dead workers), and ask the sampler for
conditions trial after trial. Each proposal is checked for feasibility
*before* any generation (:mod:`inverse.feasibility`):

* ``feasibility = "constraint"`` (option A): an infeasible
  proposal is recorded with ``trial.set_constraint("feasibility", c > 0)`` and
  a penalty value, without calling the generator; constraint-aware samplers
  (TPE, GP, BoTorch) learn to avoid the region.
* ``feasibility = "pca"`` (option B): the sampler searches the whitened PCA
  scores of the conditions, ``|u_i| <= sqrt(T²_lim)``, so proposals follow the
  training data's correlations; the few that still fall outside (corners of
  the box, range) are handled as in option A.
* ``feasibility = "auto"`` (the default): B where it fits (a training table,
  no ``[search]`` box), else A (:func:`resolve_feasibility_mode`).

``benchmarks/search_efficiency.py`` measures both; see ``docs/inverse.md``.
"""

from __future__ import annotations

import functools
import json
import logging
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.artifacts import upload_artifact

from generator.descriptors import descriptor_names
from generator.errors import InvalidInputError, MicrodesignError
from generator.loading import load_generator
from inverse import evaluation, feasibility, storage as storage_mod
from inverse.masking import mask_credentials
from inverse.posterior import posterior_for_table
from inverse.record import FAILED, INFEASIBLE, MEASURED, StudyRecord, TrialRecord, write_trial
from inverse.spec import ResolvedSpec, StudySpec, resolve_spec

class _DropGreenletNotice(logging.Filter):
    """Optuna's GPSampler notes on every study that ``greenlet`` is missing; it only costs speed."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "greenlet" not in record.getMessage()


for _handler in logging.getLogger("optuna").handlers:
    _handler.addFilter(_DropGreenletNotice())



# ----------------------------------------------------------------------------- samplers

def _single_threaded(func):  # noqa: ANN001, ANN202
    """Run a BoTorch candidates function on one torch thread (GPs on tens of points: threads only add overhead)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return func(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return wrapper


#: Sobol points of the unit cube screened for feasible starting points of the constrained acquisition optimiser.
_RAW_SAMPLES = 256
_RESTARTS = 4


def _feasible_starts(acqf, input_constraint, bounds, seed: int):  # noqa: ANN001, ANN202
    """``(restarts, 1, d)`` feasible starting points (unit cube) of highest acquisition value, or ``None`` if no raw point is feasible."""
    import torch
    from botorch.utils.transforms import unnormalize

    raw = torch.quasirandom.SobolEngine(bounds.size(1), scramble=True, seed=seed).draw(_RAW_SAMPLES).to(bounds)
    with torch.no_grad():
        feasible = raw[input_constraint(unnormalize(raw, bounds=bounds)) <= 0]
        if len(feasible) == 0:
            return None
        values = acqf(feasible[:, None, :])
    return feasible[values.argsort(descending=True)[:_RESTARTS]][:, None, :]


@_single_threaded
def _qlognei_candidates(train_x, train_obj, train_con, bounds, pending_x, *, input_constraint=None):  # noqa: ANN001, ANN202
    """BoTorch qLogNEI (single objective), for :class:`BoTorchSampler`.

    ``train_con`` (from ``trial.set_constraint``) enter as modelled outcome
    constraints. ``input_constraint`` (``x (..., d)`` in the sampler's columns,
    original units -> ``(...)``, ``<= 0`` feasible), when given, is a *known*
    constraint on the inputs: the acquisition is optimised only over the
    points that satisfy it (SLSQP from feasible Sobol starting points).
    """
    import torch
    from botorch.acquisition.logei import qLogNoisyExpectedImprovement
    from botorch.acquisition.objective import GenericMCObjective
    from botorch.exceptions.errors import CandidateGenerationError
    from botorch.exceptions.warnings import BotorchWarning
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms.outcome import Standardize
    from botorch.optim import optimize_acqf
    from botorch.sampling import SobolQMCNormalSampler
    from botorch.utils.transforms import normalize, unnormalize
    from gpytorch.mlls import ExactMarginalLogLikelihood

    kwargs: dict[str, Any] = {}
    train_y = train_obj
    if train_con is not None:
        train_y = torch.cat([train_obj, train_con], dim=-1)
        n_con = train_con.size(1)
        kwargs["objective"] = GenericMCObjective(lambda Z, X: Z[..., 0])
        kwargs["constraints"] = [functools.partial(lambda Z, i: Z[..., -n_con + i], i=i) for i in range(n_con)]
    x = normalize(train_x, bounds=bounds)
    pending = normalize(pending_x, bounds=bounds) if pending_x is not None else None
    model = SingleTaskGP(x, train_y, outcome_transform=Standardize(m=train_y.size(-1)))
    fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    unit = torch.zeros_like(bounds)
    unit[1] = 1
    with warnings.catch_warnings():
        # BoTorch warns on every call while no proposal is feasible yet, and when a restart of the
        # acquisition optimiser fails; neither is actionable for the user
        warnings.simplefilter("ignore", BotorchWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.filterwarnings("ignore", message="Sparse invariant checks", category=UserWarning)  # linear_operator, internal
        acqf = qLogNoisyExpectedImprovement(
            model=model, X_baseline=x, sampler=SobolQMCNormalSampler(torch.Size([64])), X_pending=pending,
            prune_baseline=True, **kwargs,
        )
        starts = None if input_constraint is None else _feasible_starts(acqf, input_constraint, bounds, seed=len(train_x))
        if starts is None:
            candidates, _ = optimize_acqf(acqf, bounds=unit, q=1, num_restarts=_RESTARTS, raw_samples=128,
                                          options={"batch_limit": 4, "maxiter": 60})
        else:
            def feasible(u: torch.Tensor) -> torch.Tensor:  # BoTorch's convention: >= 0 is feasible
                return -input_constraint(unnormalize(u, bounds=bounds))

            try:
                candidates, _ = optimize_acqf(acqf, bounds=unit, q=1, num_restarts=len(starts), batch_initial_conditions=starts,
                                              nonlinear_inequality_constraints=[(feasible, True)], options={"maxiter": 60})
            except CandidateGenerationError:  # SLSQP left the (non-smooth) feasible set from every start: keep the best start
                candidates = starts[0]
    return unnormalize(candidates.detach(), bounds=bounds)


def make_sampler(name: str, *, seed: int, n_objectives: int = 1, n_startup_trials: int = 8,
                 input_constraint: Callable[[Any], Any] | None = None) -> optuna.samplers.BaseSampler:
    """The Optuna sampler for a spec's ``sampler`` field.

    ``random`` (:class:`~optuna.samplers.RandomSampler`), ``tpe`` (multivariate
    :class:`~optuna.samplers.TPESampler`), ``gp`` (:class:`~optuna.samplers.GPSampler`)
    and ``botorch`` (:class:`optuna_integration.BoTorchSampler` with qLogNEI for
    one objective and qLogNEHVI for several; constraints come from
    ``trial.set_constraint``). The model-based samplers start with
    ``n_startup_trials`` quasi-random (Sobol) trials.

    ``input_constraint`` (single-objective ``botorch`` only) is the feasibility
    constraint as a torch function of the searched parameters in name order
    (``x (..., d) -> (...)``, ``<= 0`` feasible): qLogNEI is then optimised
    over feasible inputs only (:func:`_qlognei_candidates`).
    """
    startup = optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=seed, warn_independent_sampling=False)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials, multivariate=True)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=n_startup_trials, independent_sampler=startup)
    if name == "botorch":
        from optuna_integration import BoTorchSampler
        from optuna_integration.botorch import qnehvi_candidates_func

        if n_objectives == 1:
            candidates = functools.partial(_qlognei_candidates, input_constraint=input_constraint)
        else:
            candidates = _single_threaded(qnehvi_candidates_func)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return BoTorchSampler(candidates_func=candidates, n_startup_trials=n_startup_trials, seed=seed, independent_sampler=startup)
    raise InvalidInputError(f"sampler: unknown sampler {name!r} (random, tpe, gp, botorch)")


# ----------------------------------------------------------------------------- study set-up

def measured_descriptor_names(generator: Any) -> list[str]:
    """The descriptors measured on every generated volume (the names ``compute`` returns)."""
    return list(descriptor_names(int(generator.n_phases)))


def feasibility_model(generator: Any) -> feasibility.FeasibilityModel:
    """The feasibility model over the generator's conditions (see :func:`inverse.feasibility.model_for`)."""
    return feasibility.model_for(generator, generator.condition_names)


@dataclass
class StudyPlan:
    """Everything a study needs, validated: built by :func:`plan_study` before anything is written.

    Attributes
    ----------
    resolved
        The spec with its search bounds.
    generator
        The loaded generator.
    feasibility_model
        Feasibility model over the conditions (``feasible`` before: a name that read like a boolean).
    feasible_fraction
        Fraction of the search box inside the training data.
    scales
        Score normalisation ``s_j`` per target descriptor.
    directions
        Optuna directions (``minimize`` for the target score first, then the objectives).
    feasibility_mode
        ``constraint`` (option A: check each proposal) or ``pca`` (option B: search in
        PCA scores); the spec's ``auto`` resolved by :func:`resolve_feasibility_mode`.
    """

    resolved: ResolvedSpec
    generator: Any
    feasibility_model: feasibility.FeasibilityModel
    feasible_fraction: float
    scales: dict[str, float]
    directions: list[str]
    feasibility_mode: str = "constraint"

    @property
    def spec(self) -> StudySpec:
        """The study spec."""
        return self.resolved.spec

    @property
    def feasible(self) -> feasibility.FeasibilityModel:
        """Deprecated name of :attr:`feasibility_model`."""
        warnings.warn("StudyPlan.feasible is now StudyPlan.feasibility_model", DeprecationWarning, stacklevel=2)
        return self.feasibility_model


def plan_study(spec: StudySpec, generator: Any = None) -> StudyPlan:
    """Load the generator (unless given) and check the spec against it and its training data.

    Raises
    ------
    InvalidInputError
        Unknown names, or a search space with no feasible point.
    """
    if generator is None:
        generator = load_generator(spec.model, kind=spec.kind)
    gen = spec.generation  # sampler, steps, film size and memory: checked here, not at the first trial
    try:
        generator.check_sampling(n=spec.samples_per_trial, sampler=gen.sampler, steps=gen.steps, guidance=gen.guidance,
                                 seed=spec.seed, batch_size=gen.batch_size, prefix="generation.", n_name="samples_per_trial",
                                 size=gen.size)
    except InvalidInputError as exc:
        text = str(exc)
        raise InvalidInputError(f"generation.{text}" if text.startswith("size:") else text) from None
    resolved = resolve_spec(
        spec,
        condition_names=generator.condition_names,
        condition_ranges=generator.condition_ranges,
        descriptor_names=measured_descriptor_names(generator),
        recipe_names=generator.recipe_names,
    )
    model = feasibility_model(generator)
    fraction = feasibility.check_search_space(model, resolved.bounds, resolved.fixed, seed=spec.seed)
    mode = resolve_feasibility_mode(spec.feasibility, model, resolved)
    directions = (["minimize"] if spec.targets else []) + [o.direction for o in spec.objectives]
    scales = evaluation.descriptor_scales(spec.descriptor_names(), generator.descriptor_table)
    return StudyPlan(resolved, generator, model, fraction, scales, directions, mode)


def resolve_feasibility_mode(requested: str, model: feasibility.FeasibilityModel, resolved: ResolvedSpec) -> str:
    """``constraint`` (option A) or ``pca`` (option B) for a spec's ``feasibility`` field.

    ``auto`` takes option B, which measured fewer generator evaluations to a hard
    target for every sampler on the default model (docs/inverse.md), where it
    fits: the model carries a training-descriptor table and the spec searches
    every condition over the model's whole range (no ``[search]`` entry; B's
    proposals cover the training data, so a narrowed box would reject most of
    them). Otherwise option A.

    Raises
    ------
    InvalidInputError
        ``pca`` asked for where it does not apply.
    """
    if requested == "auto":
        return "pca" if model.pca is not None and not resolved.spec.search else "constraint"
    if requested == "pca":
        if model.pca is None:
            raise InvalidInputError("feasibility: 'pca' needs a model with a training-descriptor table; use 'constraint'")
        if resolved.fixed:
            raise InvalidInputError("feasibility: 'pca' searches every condition; do not fix any in [search]")
    return requested


def _input_constraint(plan: StudyPlan) -> Callable[[Any], Any] | None:
    """The feasibility constraint as a torch function of the searched conditions in name order.

    ``None`` unless the spec asks for it (``input_constraint = true``) with option A.

    Optuna's samplers see the searched parameters sorted by name; the fixed
    conditions are filled in, and the model's column order restored.
    """
    if plan.feasibility_mode != "constraint" or not plan.spec.input_constraint:
        return None
    resolved, model = plan.resolved, plan.feasibility_model
    searched = sorted(resolved.bounds)

    def constraint(x):  # noqa: ANN001, ANN202
        import torch

        columns = [x[..., searched.index(n)] if n in resolved.bounds
                   else torch.full(x.shape[:-1], resolved.fixed[n], dtype=x.dtype, device=x.device) for n in model.columns]
        return feasibility.constraint_tensor(model, torch.stack(columns, dim=-1))

    return constraint


# ----------------------------------------------------------------------------- proposals

def _suggest_conditions(trial: optuna.Trial, plan: StudyPlan) -> dict[str, float]:
    """Ask the sampler for one condition vector ``{name: value}`` (searched and fixed)."""
    resolved = plan.resolved
    if plan.feasibility_mode == "pca":
        model = plan.feasibility_model
        radius = float(np.sqrt(model.t2_limit))
        u = np.array([trial.suggest_float(f"pc{i + 1}", -radius, radius) for i in range(model.n_components)])
        assert model.pca is not None
        z = model.pca.inverse_transform((u * np.sqrt(model.pca.explained_variance_))[None])
        x = model.unstandardise(z)[0]
        return {n: float(v) for n, v in zip(model.columns, x)}
    params = {n: trial.suggest_float(n, lo, hi) for n, (lo, hi) in resolved.bounds.items()}
    return resolved.conditions(params)


def _box_excess(conditions: Mapping[str, float], bounds: Mapping[str, tuple[float, float]]) -> float:
    """How far ``conditions`` lie outside a box (the search box, the model's ranges), relative to its widths (0 inside)."""
    worst = 0.0
    for n, (lo, hi) in bounds.items():
        width = max(hi - lo, 1e-12)
        worst = max(worst, (lo - conditions[n]) / width, (conditions[n] - hi) / width)
    return worst


def _penalty(study: optuna.Study, plan: StudyPlan, violation: float) -> list[float]:
    """Values recorded for an infeasible proposal: worst measured score so far + violation; worst objective."""
    values: list[float] = []
    if plan.spec.targets:
        records = [TrialRecord.of(t) for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
        scores = [r.score for r in records if r.measured]
        values.append((max(scores) if scores else 1.0) + violation)
    table = plan.generator.descriptor_table
    for obj in plan.spec.objectives:
        column = table[obj.descriptor] if table is not None and obj.descriptor in table.columns else None
        if obj.direction == "maximize":
            values.append(float(column.min()) if column is not None else 0.0)
        else:
            values.append(float(column.max()) if column is not None else 1e6)
    return values


def _save_microstructures(trial: optuna.Trial, store: Any, measurement: evaluation.Measurement) -> str:
    """Upload the trial's volumes (and per-sample descriptors and recipes) as one ``.npz`` artifact."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"trial_{trial.number:05d}.npz"
        np.savez_compressed(
            path,
            labels=measurement.labels,
            descriptor_names=np.array(measurement.descriptors.columns, dtype=str),
            descriptors=measurement.descriptors.to_numpy(dtype=float),
            recipe_names=np.array(measurement.recipes.columns, dtype=str),
            recipes=measurement.recipes.to_numpy(dtype=float),
        )
        return upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial, mimetype="application/octet-stream")


def trial_seed(spec_seed: int, trial_number: int) -> int:
    """The generation seed of a trial (reproducible per study seed and trial number)."""
    return (spec_seed * 1_000_003 + trial_number) % (2**31 - 1)


def _recipe_posterior(plan: StudyPlan, measured_mean: Mapping[str, float]) -> dict[str, Any] | None:
    """The calibrated recipe posterior of a trial's films (:mod:`inverse.posterior`), or ``None`` for models without a training table."""
    if plan.generator.descriptor_table is None:
        return None
    try:
        return posterior_for_table(plan.generator.descriptor_table,
                                   calibration_table=plan.generator.calibration_table).predict(measured_mean).summary(0)
    except MicrodesignError:
        return None


def make_objective(plan: StudyPlan, store: Any, *, n_jobs: int | None = None) -> Callable[[optuna.Trial], list[float]]:
    """The Optuna objective of a study: propose, check feasibility, generate, measure, score."""
    spec = plan.spec

    def objective(trial: optuna.Trial) -> list[float]:
        conditions = _suggest_conditions(trial, plan)
        x = plan.feasibility_model.vector(conditions)[None]
        stats = feasibility.statistics(plan.feasibility_model, x)
        model_ranges = {n: r for n, r in plan.generator.condition_ranges.items() if n in conditions}
        outside = max(_box_excess(conditions, plan.resolved.bounds), _box_excess(conditions, model_ranges))
        violation = float(stats["constraint"][0]) if outside <= 0 else max(float(stats["constraint"][0]), outside)
        write_trial(trial, conditions=conditions, feasibility={
            "t2": float(stats["t2"][0]), "t2_limit": float(plan.feasibility_model.t2_limit),
            "spe": float(stats["spe"][0]), "spe_limit": float(plan.feasibility_model.spe_limit),
            "range_excess": float(stats["range_excess"][0]), "constraint": violation, "feasible": violation <= 0,
        })
        trial.set_constraint("feasibility", violation)
        if violation > 0:
            if spec.recipe:
                trial.set_constraint("recipe", 0.0)
            write_trial(trial, status=INFEASIBLE)
            return _penalty(trial.study, plan, violation)
        seed = trial_seed(spec.seed, trial.number)
        write_trial(trial, seed=seed)
        try:
            measurement = evaluation.measure(plan.generator, conditions, spec.samples_per_trial, seed=seed,
                                             settings=spec.generation, n_jobs=n_jobs)
        except evaluation.GenerationFailed as exc:
            write_trial(trial, status=FAILED, failure=str(exc))
            raise
        summary = measurement.summary()
        write_trial(trial, **summary)
        seconds = dict(measurement.seconds)
        start = time.perf_counter()
        posterior = _recipe_posterior(plan, summary["measured_mean"])
        if posterior is not None:
            write_trial(trial, recipe_posterior=posterior)
        seconds["recipe"] = time.perf_counter() - start
        distances = evaluation.target_distances(summary["measured_mean"], spec.targets, plan.scales)
        trial_score = evaluation.score(distances)
        if not np.isfinite(trial_score):
            write_trial(trial, status=FAILED, failure="a target descriptor could not be measured (NaN)")
            raise evaluation.GenerationFailed("a target descriptor could not be measured (NaN)")
        write_trial(trial, target_distance=distances, score=trial_score, meets_targets=bool(trial_score == 0.0),
                    uncertainty=evaluation.uncertainty(summary["measured_std"], list(spec.targets), plan.scales),
                    n_samples=spec.samples_per_trial)
        if spec.recipe:
            violation_recipe = evaluation.recipe_violation(summary["recipe_mean"], spec.recipe)
            trial.set_constraint("recipe", violation_recipe)
            write_trial(trial, recipe_ok=violation_recipe <= 0)
        start = time.perf_counter()
        write_trial(trial, artifact_id=_save_microstructures(trial, store, measurement))
        seconds["storage"] = time.perf_counter() - start
        write_trial(trial, seconds=seconds, status=MEASURED)
        values = [trial_score] if spec.targets else []
        values += [summary["measured_mean"][o.descriptor] for o in spec.objectives]
        return values

    return objective


#: Free space a study keeps on the disks of its database and artifacts before it starts another trial (bytes).
MIN_FREE_BYTES = 32 * 2**20


def check_free_space(folders: list[Path], needed: int) -> None:
    """Raise ``OSError(ENOSPC)`` when a folder's disk has less than ``needed`` bytes free.

    Called before every trial: a study whose disk fills stops *between* trials,
    with one clear line, rather than inside one, where neither the trial's
    artifacts nor its final state (SQLite needs room for its journal) could be
    written and a RUNNING trial would be left behind.
    """
    import errno
    import shutil

    for folder in folders:
        probe = folder
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        free = shutil.disk_usage(probe).free
        if free < needed:
            raise OSError(errno.ENOSPC, f"only {free / 2**20:.1f} MiB free, a trial needs {needed / 2**20:.0f} MiB", str(folder))


def n_finished(study: optuna.Study) -> int:
    """Trials that count towards ``n_trials``: COMPLETE ones."""
    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))


def run_study(
    spec: StudySpec,
    *,
    generator: Any = None,
    storage: str | None = None,
    n_trials: int | None = None,
    progress: bool = True,
    runs_dir: str | Path = storage_mod.RUNS_DIR,
    heartbeat_interval: int = storage_mod.HEARTBEAT_INTERVAL,
    grace_period: int = storage_mod.GRACE_PERIOD,
    n_jobs: int | None = None,
    callbacks: list[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] | None = None,
) -> optuna.Study:
    """Run (or resume) a study until it holds ``n_trials`` complete trials.

    Parameters
    ----------
    spec
        The study spec.
    generator
        A loaded generator (default: ``load_generator(spec.model, kind=spec.kind)``).
    storage
        SQLAlchemy URL (default: ``spec.storage`` or ``sqlite:///runs/NAME.db``).
    n_trials
        Total complete trials wanted (default ``spec.n_trials``); a resumed
        study runs only the missing ones.
    progress
        Show a progress bar.
    heartbeat_interval, grace_period
        Seconds between heartbeats, and without one before a RUNNING trial counts as dead.
    n_jobs
        Threads measuring a trial's volumes in parallel (default: every core; generation is done by then).
    callbacks
        Passed to :meth:`optuna.Study.optimize` (for example one that calls ``study.stop()``).

    Returns
    -------
    optuna.Study
        The study (its trials carry the user attributes of ``docs/inverse.md``).
    """
    plan = plan_study(spec, generator)
    url = storage or spec.storage or storage_mod.default_storage_url(spec.name, runs_dir)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(max(verbosity, optuna.logging.WARNING))  # quieter if the caller (the CLI) asked
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = make_sampler(spec.search_sampler, seed=spec.seed, n_objectives=len(plan.directions), n_startup_trials=spec.n_startup_trials,
                                   input_constraint=_input_constraint(plan))
            with storage_mod.setup_lock(url):  # workers started at once: one sets the storage and the study up at a time
                rdb = storage_mod.open_storage(url, heartbeat_interval=heartbeat_interval, grace_period=grace_period)
                study = optuna.create_study(study_name=spec.name, storage=rdb, directions=plan.directions, sampler=sampler,
                                            load_if_exists=True)
                if [d.name.lower() for d in study.directions] != plan.directions:
                    raise InvalidInputError(f"name: study {spec.name!r} already exists in {mask_credentials(url)} with other objectives")
                storage_mod.fail_stale_trials(study)
                StudyRecord(
                    # the spec as stored: a password in its storage URL stays out of the database
                    spec=json.loads(spec.model_copy(update={"storage": spec.storage and mask_credentials(spec.storage)}).model_dump_json()),
                    condition_names=list(plan.resolved.condition_names),
                    descriptor_scales=plan.scales,
                    feasible_fraction=plan.feasible_fraction,
                ).write(study)
            if storage_mod.sqlite_path(url) is None:  # a server shared by workers: each samples its own stream
                sampler.reseed_rng()
            store = storage_mod.artifact_store(spec.name, url, runs_dir)
            total = n_trials or spec.n_trials
            remaining = total - n_finished(study)
            if remaining > 0:
                # other workers on the same study count too: stop once the study holds `total` complete trials
                enough = optuna.study.MaxTrialsCallback(total, states=(optuna.trial.TrialState.COMPLETE,))
                folders = [storage_mod.artifact_dir(spec.name, url, runs_dir)]
                if storage_mod.sqlite_path(url) is not None:
                    folders.append(storage_mod.sqlite_path(url).parent)
                needed = MIN_FREE_BYTES + 2 * spec.samples_per_trial * int(np.prod(plan.generator.volume_shape))

                def room_for_a_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial | None = None) -> None:
                    check_free_space(folders, needed)  # raised after a trial is finished and stored: none is left RUNNING

                room_for_a_trial(study)
                study.optimize(
                    make_objective(plan, store, n_jobs=n_jobs), n_trials=remaining,
                    catch=(evaluation.GenerationFailed,), show_progress_bar=progress, gc_after_trial=False,
                    callbacks=[enough, *(callbacks or []), room_for_a_trial],
                )
    finally:
        optuna.logging.set_verbosity(verbosity)
    return study

