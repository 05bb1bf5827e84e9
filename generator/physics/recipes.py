"""The recipe: the processing parameters ``(phi, chi, log_time)`` of a film, and their simulation.

One definition of the recipe, read by every module that names its variables:
:data:`RECIPE` (names, units, physical domains and plain-language names, in
simulator order), :data:`RECIPE_NAMES`, and :class:`Recipe`, one recipe as a
value. Beside it, the simulation of recipes with the Cahn-Hilliard model
that made the training data (:func:`simulate_recipes`), which recipe
verification and refinement run.

Time follows the documented mapping of :mod:`generator.physics.cahn_hilliard`:
``log_time = log10(t)``, ``steps = round(10 ** log_time / dt)``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from generator.errors import InvalidInputError
from generator.physics.cahn_hilliard import CHParameters, SpinodalWarning, log_time_to_time, simulate
from generator.physics.labels import label_three_phase, label_two_phase

#: Default limit on the steps of one run, as a multiple of the training runs' steps.
MAX_STEPS_FACTOR = 10


@dataclass(frozen=True)
class RecipeVariable:
    """One variable of a recipe.

    Attributes
    ----------
    name
        Its name in data files, bundles, studies and specs.
    unit
        Its unit (``"1"``: dimensionless).
    domain
        ``(lo, hi)``: the physically meaningful values, ends excluded (infinite: unbounded).
    words
        Its name in words, for messages and the dashboards.
    description
        What it is.
    """

    name: str
    unit: str
    domain: tuple[float, float]
    words: str
    description: str

    def contains(self, value: float) -> bool:
        """Whether ``value`` is a finite number inside :attr:`domain` (ends excluded)."""
        lo, hi = self.domain
        return math.isfinite(value) and lo < value < hi


#: The recipe variables, in simulator order.
RECIPE: tuple[RecipeVariable, ...] = (
    RecipeVariable("phi", "1", (0.0, 1.0), "blend ratio",
                   "blend ratio phi0: the mean donor volume fraction of the film (the initial field's mean)"),
    RecipeVariable("chi", "1", (-math.inf, math.inf), "Flory-Huggins chi",
                   "Flory-Huggins interaction parameter; the blend phase-separates above its spinodal chi_s(phi)"),
    RecipeVariable("log_time", "log10 of CH time units", (-math.inf, math.inf), "log annealing time",
                   "log10 of the annealing (simulation) time t, in the Cahn-Hilliard model's time units"),
)
#: Their names, in simulator order.
RECIPE_NAMES: tuple[str, ...] = tuple(v.name for v in RECIPE)
#: The variables by name.
RECIPE_VARIABLES: dict[str, RecipeVariable] = {v.name: v for v in RECIPE}


@dataclass(frozen=True)
class Recipe:
    """One recipe: blend ratio, Flory-Huggins chi and log annealing time.

    Parameters
    ----------
    phi
        Blend ratio (mean donor fraction), in (0, 1).
    chi
        Flory-Huggins interaction parameter.
    log_time
        ``log10`` of the annealing time (Cahn-Hilliard time units).

    Raises
    ------
    InvalidInputError
        A value outside its variable's domain (:data:`RECIPE`).
    """

    phi: float
    chi: float
    log_time: float

    def __post_init__(self) -> None:
        for variable in RECIPE:
            value = float(getattr(self, variable.name))
            if not variable.contains(value):
                lo, hi = variable.domain
                where = f"in ({lo:g}, {hi:g})" if math.isfinite(lo) or math.isfinite(hi) else "finite"
                raise InvalidInputError(f"recipe: {variable.name}={value:g} must be {where}")
            object.__setattr__(self, variable.name, value)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "Recipe":
        """A recipe from ``{phi, chi, log_time}`` (other keys ignored).

        Raises
        ------
        InvalidInputError
            A missing variable or a value outside its domain.
        """
        missing = [n for n in RECIPE_NAMES if n not in values]
        if missing:
            raise InvalidInputError(f"recipe: missing {', '.join(missing)} (a recipe is {', '.join(RECIPE_NAMES)})")
        return cls(**{n: float(values[n]) for n in RECIPE_NAMES})

    def as_dict(self) -> dict[str, float]:
        """``{phi, chi, log_time}``."""
        return {n: getattr(self, n) for n in RECIPE_NAMES}

    def as_array(self) -> np.ndarray:
        """``(3,)`` values in :data:`RECIPE_NAMES` order (a row of :func:`simulate_recipes`' input)."""
        return np.array([getattr(self, n) for n in RECIPE_NAMES], dtype=np.float64)

    @property
    def time(self) -> float:
        """The annealing time ``10 ** log_time``."""
        return float(log_time_to_time(self.log_time))


@dataclass(frozen=True)
class SimulationSettings:
    """The simulator settings of a model's training data: what verification re-runs.

    Attributes
    ----------
    ch
        Cahn-Hilliard parameters (grid, ``kappa``, ``dt``, ``N_A``, ``N_B``, mobility, noise, ...).
    n_phases
        2 or 3 (labelling).
    preset
        Dataset preset name, when known.
    source
        ``"bundle"`` (the model's own record) or ``"preset"`` (named by the user).
    """

    ch: CHParameters
    n_phases: int
    preset: str | None
    source: str

    def steps_for(self, log_time: float) -> int:
        """Time steps of a run that ends at ``log_time`` (the training data's mapping)."""
        return self.ch.steps_for_log_time(float(log_time))

    def to_json(self) -> dict[str, Any]:
        """JSON-ready description (stored with the results)."""
        return {"preset": self.preset, "source": self.source, "n_phases": self.n_phases, "ch_parameters": self.ch.model_dump(mode="json")}


def label_fields(fields: np.ndarray, n_phases: int) -> np.ndarray:
    """Phase labels of donor-fraction fields, like the training data.

    Parameters
    ----------
    fields
        ``(B, X, Y, Z)`` or ``(B, X, Y)`` local donor fractions.
    n_phases
        2 or 3.

    Returns
    -------
    np.ndarray
        ``(B, X, Y, Z)`` ``uint8`` labels (``Z = 1`` for 2-D fields).
    """
    label = label_two_phase if n_phases == 2 else label_three_phase
    labels = np.stack([label(f) for f in np.asarray(fields)])
    return labels if labels.ndim == 4 else labels[..., None]


def check_recipes(recipes: np.ndarray, settings: SimulationSettings, max_steps: int | None = None) -> np.ndarray:
    """Validate ``(k, 3)`` recipes ``(phi, chi, log_time)`` and return their step counts ``(k,)``.

    Raises
    ------
    InvalidInputError
        A non-finite value, ``phi`` outside (0, 1), or a time beyond ``max_steps``
        (default :data:`MAX_STEPS_FACTOR` times the training runs' steps).
    """
    recipes = np.atleast_2d(np.asarray(recipes, dtype=np.float64))
    if recipes.ndim != 2 or recipes.shape[1] != 3 or len(recipes) == 0:
        raise InvalidInputError(f"recipes: expected a (k, 3) array of (phi, chi, log_time), got shape {recipes.shape}")
    limit = int(max_steps or MAX_STEPS_FACTOR * settings.ch.steps)
    steps = np.empty(len(recipes), dtype=np.int64)
    for i, (phi, chi, log_time) in enumerate(recipes):
        if not np.all(np.isfinite([phi, chi, log_time])):
            raise InvalidInputError(f"recipe {i}: non-finite value in (phi, chi, log_time) = ({phi}, {chi}, {log_time})")
        if not 0.0 < phi < 1.0:
            raise InvalidInputError(f"recipe {i}: phi={phi:g} must lie in (0, 1)")
        steps[i] = settings.steps_for(log_time)
        if steps[i] > limit:
            raise InvalidInputError(
                f"recipe {i}: log_time={log_time:.3g} needs {steps[i]} time steps, more than the limit {limit}; raise --max-steps to simulate it"
            )
    return steps


def simulate_recipes(
    recipes: np.ndarray,
    settings: SimulationSettings,
    seeds: Sequence[int],
    *,
    max_steps: int | None = None,
    device: str | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Simulate every recipe over every seed and label the final fields.

    Runs that end at the same step go together in one batch (``len(seeds)``
    runs per recipe); each run depends only on its own parameters and seed.

    Parameters
    ----------
    recipes
        ``(k, 3)`` rows ``(phi, chi, log_time)``.
    settings
        The training data's simulator settings.
    seeds
        ``S`` noise seeds, the same for every recipe.
    max_steps, device, progress
        Step limit (see :func:`check_recipes`), torch device, progress bar over recipes.

    Returns
    -------
    labels : np.ndarray
        ``(k, S, X, Y, Z)`` ``uint8`` phase labels.
    steps : np.ndarray
        ``(k,)`` time steps simulated per recipe.
    """
    recipes = np.atleast_2d(np.asarray(recipes, dtype=np.float64))
    steps = check_recipes(recipes, settings, max_steps)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise InvalidInputError("seeds: give at least one seed")
    grid = tuple(settings.ch.shape) + (1,) * (3 - len(settings.ch.shape))
    labels = np.empty((len(recipes), len(seeds), *grid), dtype=np.uint8)
    with tqdm(total=len(recipes), desc="simulating recipes", unit="recipe", disable=not progress) as bar:
        for n_steps in np.unique(steps):
            group = np.flatnonzero(steps == n_steps)
            params = settings.ch.model_copy(update={"steps": int(n_steps), "n_snapshots": 1, "first_snapshot_time": float(n_steps * settings.ch.dt)})
            phi0 = np.repeat(recipes[group, 0], len(seeds))
            chi = np.repeat(recipes[group, 1], len(seeds))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SpinodalWarning)  # recorded per recipe as below_spinodal
                *_, last = simulate(params, phi0, chi, np.tile(seeds, len(group)), device=device)
            assert last.step == n_steps
            labels[group] = label_fields(last.fields, settings.n_phases).reshape(len(group), len(seeds), *grid)
            bar.update(len(group))
    return labels, steps
