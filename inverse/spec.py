"""Study specs: what to design (targets, objectives), where to search (conditions), how.

A study spec is a TOML file validated by pydantic (see ``docs/inverse.md`` for
an annotated example)::

    name = "opv"
    model = "default"             # was `generator` (still read, with a DeprecationWarning)
    search_sampler = "tpe"        # was `sampler`: Optuna's, not the diffusion sampler of [generation]
    n_trials = 30
    samples_per_trial = 4

    [targets]
    ABS_f_D = { at_least = 0.45, at_most = 0.50 }
    CT_f_D_tort1 = { at_least = 0.9 }
    CT_f_A_tort1 = { equal = 0.95, tolerance = 0.03 }

    [search]                      # condition bounds; default: the model's ranges
    ABS_f_D = [0.35, 0.6]

    [recipe]
    log_time = { at_most = 4.0 }

Validation happens in two steps, both before anything is written:
:func:`load_spec` checks the file on its own (TOML syntax, types, reversed
bounds, target values outside [0, 1]); :func:`resolve_spec` checks it against a
loaded generator (unknown descriptors, conditions or recipe variables) and fills
in the default search bounds. The feasibility of the search space is checked by
:func:`inverse.feasibility.check_search_space`.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from generator.conditions import condition_vector
from generator.descriptors.registry import is_count
from generator.diffusion.settings import SamplingSettings
from generator.errors import InvalidInputError
from generator.io.toml import read_toml
from generator.validation import MAX_SEED

SamplerName = Literal["random", "tpe", "gp", "botorch"]
FeasibilityMode = Literal["auto", "constraint", "pca"]

#: Spec keys that were renamed: ``{old: new}``. The old ones are still read, with a :class:`DeprecationWarning`.
RENAMED_KEYS = {
    "generator": "model",  # "generator" also names the package, the class and torch.Generator
    "sampler": "search_sampler",  # Optuna's sampler; [generation].sampler is the diffusion sampler
}


def renamed_keys(data: Mapping[str, Any], *, warn: bool = True) -> dict[str, Any]:
    """``data`` with the old keys of :data:`RENAMED_KEYS` under their new names.

    Raises
    ------
    InvalidInputError
        When a key is given under both names.
    """
    data = dict(data)
    for old, new in RENAMED_KEYS.items():
        if old not in data:
            continue
        if new in data:
            raise InvalidInputError(f"{new}: given twice, also under its old name {old!r}")
        if warn:
            warnings.warn(f"spec: the key {old!r} is now {new!r}; rename it (the old name will stop working)",
                          DeprecationWarning, stacklevel=3)
        data[new] = data.pop(old)
    return data


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class _Strict(BaseModel):
    # NaN and infinity are never meaningful in a spec (a NaN bound compares false with everything)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Bound(_Strict):
    """A one- or two-sided bound ``at_least <= value <= at_most`` (recipe constraints)."""

    at_least: float | None = None
    at_most: float | None = None

    @model_validator(mode="after")
    def _check(self) -> "Bound":
        if self.at_least is None and self.at_most is None:
            raise ValueError("give at_least and/or at_most")
        if self.at_least is not None and self.at_most is not None and self.at_least > self.at_most:
            raise ValueError(f"reversed bounds: at_least {self.at_least} > at_most {self.at_most}")
        return self

    @property
    def interval(self) -> tuple[float, float]:
        """``(lo, hi)`` with infinite ends where the bound is one-sided."""
        lo = -float("inf") if self.at_least is None else self.at_least
        hi = float("inf") if self.at_most is None else self.at_most
        return lo, hi


class Target(_Strict):
    """A target on one measured descriptor.

    Exactly one form: ``equal`` with ``tolerance`` (meets it when
    ``|value - equal| <= tolerance``), or ``at_least`` and/or ``at_most``.
    """

    equal: float | None = None
    tolerance: float | None = Field(default=None, gt=0)
    at_least: float | None = None
    at_most: float | None = None

    @model_validator(mode="after")
    def _check(self) -> "Target":
        if self.equal is not None:
            if self.at_least is not None or self.at_most is not None:
                raise ValueError("give either equal (with tolerance) or at_least/at_most, not both")
            if self.tolerance is None:
                raise ValueError("equal needs a tolerance")
        else:
            if self.tolerance is not None:
                raise ValueError("tolerance only goes with equal")
            if self.at_least is None and self.at_most is None:
                raise ValueError("give equal (with tolerance), at_least or at_most")
            if self.at_least is not None and self.at_most is not None and self.at_least > self.at_most:
                raise ValueError(f"reversed bounds: at_least {self.at_least} > at_most {self.at_most}")
        return self

    @property
    def interval(self) -> tuple[float, float]:
        """The accepted interval ``(lo, hi)`` (infinite ends for one-sided targets)."""
        if self.equal is not None:
            assert self.tolerance is not None
            return self.equal - self.tolerance, self.equal + self.tolerance
        lo = -float("inf") if self.at_least is None else self.at_least
        hi = float("inf") if self.at_most is None else self.at_most
        return lo, hi

    @property
    def point(self) -> float:
        """A representative value: ``equal``, the middle of a range, or the one given bound."""
        lo, hi = self.interval
        if self.equal is not None:
            return self.equal
        if lo == -float("inf"):
            return hi
        if hi == float("inf"):
            return lo
        return 0.5 * (lo + hi)

    def values(self) -> list[float]:
        """The numbers given in the spec (for range checks)."""
        return [v for v in (self.equal, self.at_least, self.at_most) if v is not None]


class Objective(_Strict):
    """A measured descriptor to maximise or minimise (its trial mean)."""

    descriptor: str
    direction: Literal["maximize", "minimize"] = "maximize"


class GenerationSettings(SamplingSettings):
    """How each trial calls ``Generator.generate``: the sampling settings (sampler name checked on loading), batch and film size."""

    batch_size: int = Field(default=32, ge=1)
    size: tuple[int, int, int] | None = Field(
        default=None, description="film size (X, Y, Z); default the model's (resizable models: X, Y multiples of their in-plane step)"
    )


class StudySpec(_Strict):
    """A validated study spec (see the module docstring for the TOML form)."""

    name: str
    model: str = "default"
    kind: str | None = None
    targets: dict[str, Target] = Field(default_factory=dict)
    objectives: list[Objective] = Field(default_factory=list)
    search: dict[str, tuple[float, float] | float] = Field(default_factory=dict)
    recipe: dict[str, Bound] = Field(default_factory=dict)
    samples_per_trial: int = Field(default=4, ge=1)
    search_sampler: SamplerName = "tpe"
    n_trials: int = Field(default=30, ge=1)
    n_startup_trials: int = Field(default=8, ge=1)
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    storage: str | None = None
    feasibility: FeasibilityMode = "auto"
    #: ``botorch`` with option A: also give qLogNEI the feasibility check as a known input constraint. Off by
    #: default: on the default model it needed a median of 38 evaluations to a hard target, against 14 without
    #: (docs/inverse.md).
    input_constraint: bool = False
    generation: GenerationSettings = Field(default_factory=GenerationSettings)

    @model_validator(mode="before")
    @classmethod
    def _old_keys(cls, data: Any) -> Any:
        return renamed_keys(data) if isinstance(data, Mapping) else data

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME_RE.fullmatch(v):  # fullmatch: "$" would let a trailing newline through
            raise ValueError("use letters, digits, '_', '-' or '.' only")
        return v

    @field_validator("targets")
    @classmethod
    def _targets_in_unit_interval(cls, v: dict[str, Target]) -> dict[str, Target]:
        for name, target in v.items():
            if is_count(name):
                continue
            bad = [x for x in target.values() if not 0.0 <= x <= 1.0]
            if bad:
                raise ValueError(f"{name}: target {bad[0]} is outside [0, 1]")
        return v

    @field_validator("search")
    @classmethod
    def _search_bounds(cls, v: dict[str, Any]) -> dict[str, Any]:
        for name, bounds in v.items():
            if isinstance(bounds, tuple) and bounds[0] > bounds[1]:
                raise ValueError(f"{name}: reversed bounds [{bounds[0]}, {bounds[1]}]")
            values = bounds if isinstance(bounds, tuple) else (bounds,)
            outside = [x for x in values if not is_count(name) and not 0.0 <= x <= 1.0]
            if outside:
                raise ValueError(f"{name}: bound {outside[0]} is outside [0, 1]")
        return v

    @model_validator(mode="after")
    def _something_to_do(self) -> "StudySpec":
        if not self.targets and not self.objectives:
            raise ValueError("give at least one target or objective")
        return self

    @model_validator(mode="after")
    def _input_constraint_needs_single_objective_botorch(self) -> "StudySpec":
        if self.input_constraint and (self.search_sampler != "botorch" or self.n_objectives != 1 or self.feasibility == "pca"):
            raise ValueError("input_constraint: only the botorch sampler with one objective and option A (feasibility "
                             "'constraint' or 'auto' with a [search] box) takes a known input constraint")
        return self

    @property
    def generator(self) -> str:
        """Deprecated name of :attr:`model`."""
        warnings.warn("StudySpec.generator is now StudySpec.model", DeprecationWarning, stacklevel=2)
        return self.model

    @property
    def sampler(self) -> str:
        """Deprecated name of :attr:`search_sampler`."""
        warnings.warn("StudySpec.sampler is now StudySpec.search_sampler", DeprecationWarning, stacklevel=2)
        return self.search_sampler

    @property
    def n_objectives(self) -> int:
        """Number of values each trial reports: 1 (target score) or the objectives (+1 with targets)."""
        if not self.objectives:
            return 1
        return len(self.objectives) + (1 if self.targets else 0)

    def descriptor_names(self) -> list[str]:
        """Every descriptor the spec mentions (targets first, then objectives), without repeats."""
        names = list(self.targets)
        names += [o.descriptor for o in self.objectives if o.descriptor not in names]
        return names


def _one_line(exc: ValidationError, source: str) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(part) for part in first.get("loc", ())) or "spec"
    msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{source}: {loc}: {msg}"


def parse_spec(data: Mapping[str, Any], *, source: str = "spec") -> StudySpec:
    """Validate a spec given as a mapping (the parsed TOML).

    Raises
    ------
    InvalidInputError
        With a one-line message naming the field.
    """
    try:
        data = renamed_keys(data)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{source}: {exc}") from None
    try:
        return StudySpec.model_validate(data)
    except ValidationError as exc:
        raise InvalidInputError(_one_line(exc, source)) from None


def load_spec(path: str | Path, **overrides: Any) -> StudySpec:
    """Read and validate a study spec TOML file.

    Parameters
    ----------
    path
        The ``.toml`` file.
    **overrides
        Top-level fields replacing those of the file when not ``None``
        (``model``, ``n_trials``, ``storage``, ``search_sampler``, ``seed``, ...; the
        old names of :data:`RENAMED_KEYS` too, with a :class:`DeprecationWarning`).
        ``name`` defaults to the file's stem.

    Raises
    ------
    FileFormatError
        Missing file or malformed TOML.
    InvalidInputError
        A field with a bad value (the message names it).
    """
    path = Path(path)
    data = read_toml(path, what="spec file")
    data.setdefault("name", path.stem)
    try:
        data = renamed_keys(data)
        data.update(renamed_keys({k: v for k, v in overrides.items() if v is not None}))
    except InvalidInputError as exc:
        raise InvalidInputError(f"{path}: {exc}") from None
    return parse_spec(data, source=str(path))


class ResolvedSpec(BaseModel):
    """A spec checked against a generator, with every search bound filled in.

    Attributes
    ----------
    spec
        The spec itself.
    bounds
        ``{condition: (lo, hi)}`` for every condition that is searched.
    fixed
        ``{condition: value}`` for conditions held fixed.
    condition_names
        All the generator's conditions, in its order.
    """

    model_config = ConfigDict(frozen=True)

    spec: StudySpec
    bounds: dict[str, tuple[float, float]]
    fixed: dict[str, float]
    condition_names: list[str]

    def conditions(self, params: Mapping[str, float]) -> dict[str, float]:
        """Every condition ``{name: value}``, in the generator's order, from the searched ``params`` and the fixed values."""
        values = {**self.fixed, **{n: float(params[n]) for n in self.bounds}}
        return dict(zip(self.condition_names, condition_vector(self.condition_names, values)))

    def condition_vector(self, params: Mapping[str, float]) -> list[float]:
        """The full condition vector (generator order) from searched ``params`` and the fixed values."""
        return list(self.conditions(params).values())


def resolve_spec(
    spec: StudySpec,
    *,
    condition_names: Iterable[str],
    condition_ranges: Mapping[str, tuple[float, float]],
    descriptor_names: Iterable[str],
    recipe_names: Iterable[str],
) -> ResolvedSpec:
    """Check a spec against a generator and fill in default search bounds.

    Parameters
    ----------
    spec
        A validated spec.
    condition_names, condition_ranges
        The generator's conditions and their training ranges.
    descriptor_names
        The descriptors that are measured on each generated volume.
    recipe_names
        The recipe variables the feature predictor gives.

    Raises
    ------
    InvalidInputError
        An unknown descriptor, condition or recipe variable (the message names
        the field and lists the known names).
    """
    conditions = list(condition_names)
    known = set(descriptor_names)
    for field, names in (("targets", list(spec.targets)), ("objectives", [o.descriptor for o in spec.objectives])):
        for name in names:
            if name not in known:
                raise InvalidInputError(f"{field}.{name}: unknown descriptor (known: {', '.join(sorted(known))})")
    recipes = set(recipe_names)
    for name in spec.recipe:
        if name not in recipes:
            raise InvalidInputError(
                f"recipe.{name}: the model does not predict it (it predicts: {', '.join(sorted(recipes)) or 'nothing'})"
            )
    bounds: dict[str, tuple[float, float]] = {}
    fixed: dict[str, float] = {}
    for name, value in spec.search.items():
        if name not in conditions:
            raise InvalidInputError(f"search.{name}: not a condition of the model (its conditions: {', '.join(conditions)})")
    for name in conditions:
        value = spec.search.get(name)
        if value is None:
            lo, hi = condition_ranges[name]
            bounds[name] = (float(lo), float(hi))
        elif isinstance(value, tuple):
            if value[0] == value[1]:
                fixed[name] = float(value[0])
            else:
                bounds[name] = (float(value[0]), float(value[1]))
        else:
            fixed[name] = float(value)
    if not bounds:
        raise InvalidInputError("search: every condition is fixed; leave at least one to search")
    return ResolvedSpec(spec=spec, bounds=bounds, fixed=fixed, condition_names=conditions)
