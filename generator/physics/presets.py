"""Dataset presets: which (phi0, chi) time series to simulate, on which grid.

A preset is a TOML file (``generator/physics/presets/{tiny,small,paper}.toml``,
or any file a user passes) validated by :class:`DatasetPreset`. Series ``i``
runs at ``(phi0[i], chi[i])`` with noise seed ``seed + i``.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from generator.errors import InvalidInputError
from generator.io.toml import read_toml
from generator.physics.cahn_hilliard import CHParameters

PRESET_DIR = Path(__file__).with_name("presets")


def preset_names() -> list[str]:
    """Names of the shipped presets."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


class DatasetPreset(BaseModel):
    """A dataset of Cahn-Hilliard time series over a design of (phi0, chi).

    ``design = "grid"``: ``n_phi0 x n_chi`` evenly spaced points of the ranges
    (phi0 varies slowest). ``design = "halton"``: ``n_series`` points of a
    scrambled Halton sequence (seeded) over the ranges.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    n_phases: Literal[2, 3] = 2
    design: Literal["grid", "halton"] = "grid"
    phi0_range: tuple[float, float] = (0.35, 0.65)
    chi_range: tuple[float, float] = (2.7, 3.5)
    n_phi0: int = Field(1, ge=1)
    n_chi: int = Field(1, ge=1)
    n_series: int | None = Field(None, ge=1)
    seed: int = Field(0, ge=0)
    batch_size: int = Field(16, ge=1, description="series advanced together in one tensor")
    ch: CHParameters = CHParameters()

    @field_validator("phi0_range")
    @classmethod
    def _check_phi0(cls, value: tuple[float, float]) -> tuple[float, float]:
        lo, hi = value
        if not (0 < lo < 1 and 0 < hi < 1):
            raise ValueError(f"phi0 must lie in (0, 1), got {list(value)}")
        if lo > hi:
            raise ValueError(f"lower bound above upper bound: {list(value)}")
        return value

    @field_validator("chi_range")
    @classmethod
    def _check_chi(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] > value[1]:
            raise ValueError(f"lower bound above upper bound: {list(value)}")
        return value

    @model_validator(mode="after")
    def _check_design(self) -> "DatasetPreset":
        if self.design == "halton" and self.n_series is None:
            raise ValueError("n_series is required for design = 'halton'")
        return self

    @property
    def total_series(self) -> int:
        """Number of series of the preset."""
        return self.n_phi0 * self.n_chi if self.design == "grid" else int(self.n_series)

    def series_parameters(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(phi0, chi, seeds)`` of every series, each ``(n_series,)``."""
        if self.design == "grid":
            phis = np.linspace(*self.phi0_range, self.n_phi0)
            chis = np.linspace(*self.chi_range, self.n_chi)
            pairs = np.array(list(itertools.product(phis, chis)))
        else:
            from scipy.stats import qmc

            unit = qmc.Halton(d=2, scramble=True, seed=self.seed).random(int(self.n_series))
            lo = np.array([self.phi0_range[0], self.chi_range[0]])
            hi = np.array([self.phi0_range[1], self.chi_range[1]])
            pairs = lo + unit * (hi - lo)
        seeds = self.seed + np.arange(len(pairs))
        return pairs[:, 0].round(6), pairs[:, 1].round(6), seeds


def load_preset(preset: str | os.PathLike[str] | DatasetPreset, **overrides: Any) -> DatasetPreset:
    """A preset by name (``tiny``, ``small``, ``paper``), TOML path, or instance, with field overrides.

    Parameters
    ----------
    preset
        Shipped preset name, path to a TOML file, or a :class:`DatasetPreset`.
    **overrides
        Top-level fields to replace; ``ch`` may be a partial dict of
        :class:`CHParameters` fields (e.g. ``ch={"steps": 100}``).

    Raises
    ------
    InvalidInputError
        Unknown preset name or an invalid field (the message names the field).
    FileFormatError
        A TOML file that cannot be read.
    """
    if isinstance(preset, DatasetPreset):
        data = preset.model_dump()
    else:
        path = Path(preset)
        if path.suffix.lower() != ".toml":
            if str(preset) not in preset_names():
                raise InvalidInputError(f"unknown preset {str(preset)!r}; choose one of {', '.join(preset_names())} or pass a .toml file")
            path = PRESET_DIR / f"{preset}.toml"
        data = read_toml(path, what="preset file")
        data.setdefault("name", path.stem)
    for key, value in overrides.items():
        if key == "ch":
            data["ch"] = {**dict(data.get("ch", {})), **value}
        else:
            data[key] = value
    try:
        return DatasetPreset.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ())) or "preset"
        message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        raise InvalidInputError(f"preset {data.get('name', '?')}: {loc}: {message}") from None
