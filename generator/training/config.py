"""Training configuration: TOML files validated by pydantic, and the shipped presets."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from generator.diffusion import DEFAULT_SAMPLING, NoiseSchedule, SamplingSettings
from generator.errors import FileFormatError, InvalidInputError
from generator.io.toml import read_toml
from generator.models import FeaturePredictorConfig, LatentUNetConfig, VAEConfig

PRESET_DIR = Path(__file__).resolve().parent / "presets"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
    """What to learn from the dataset.

    ``conditions`` are the denoiser's context attributes (in order);
    ``attributes`` the feature predictor's outputs (empty: the conditions, then
    every other numeric sample attribute of the file, recipe last).
    """

    n_phases: int | None = Field(None, ge=2, le=3, description="None: inferred from the grey levels")
    conditions: list[str] = Field(default_factory=lambda: ["ABS_f_D", "CT_f_D_tort1", "CT_f_A_tort1"], min_length=1)
    attributes: list[str] = Field(default_factory=list)
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0, description="fraction of series held out for validation")
    seed: int = 0
    dataset: str | None = Field(
        None, description="dataset preset (generator/physics/presets) that `microdesign train` simulates and labels when no --data is given"
    )
    generate_shape: list[int] | None = Field(
        None, min_length=3, max_length=3,
        description="default (X, Y, Z) of generated films when it differs from the training films' (needs networks with "
                    "in_plane_padding = 'periodic'; Z must equal the films' Z, X and Y multiples of the in-plane stride)",
    )
    augment: Literal["none", "in_plane"] = Field(
        "none",
        description="in_plane: the encoding, feature-predictor and denoiser stages also learn every training volume under its "
                    "in-plane symmetries (x/y flips, and the x-y transpose for square planes), which leave every descriptor unchanged",
    )
    calibration_series: int = Field(
        0, ge=0,
        description="series of films at the generated size (generate_shape), with fresh seeds, that `microdesign train` simulates "
                    "from data.dataset to calibrate the recipe posterior for films of that size (inverse.posterior); 0: none",
    )
    calibration_seed: int = Field(9200, ge=0, lt=2**32, description="seed of the calibration series (series i: seed + i)")


class TrainerConfig(_Strict):
    """Lightning ``Trainer`` settings shared by all stages, plus CPU speed settings."""

    accelerator: str = "auto"
    devices: int | str | list[int] = "auto"
    num_nodes: int = Field(1, ge=1)
    strategy: str = "auto"
    precision: str = "32-true"
    num_workers: int = Field(0, ge=0, description="DataLoader workers for the volume stages")
    threads: int | None = Field(None, ge=1, description="torch intra-op threads (None: torch's default)")
    mkldnn: bool | None = Field(None, description="oneDNN (mkldnn) for CPU convolutions; None leaves torch's default")
    channels_last: bool = Field(False, description="channels_last_3d memory format for the VAE")
    compile: bool = Field(False, description="torch.compile the networks")
    gradient_clip_val: float | None = Field(
        None, gt=0.0, description="clip the gradient norm of every step to this value (None: no clipping; the film denoiser "
                                  "diverged without it when trained past 4000 steps at lr 2e-3)"
    )


class LRSchedule(_Strict):
    """How a stage's learning rate changes over its steps: ``lr`` times :meth:`factor`.

    ``constant`` keeps ``lr``; ``cosine`` warms up linearly over ``warmup_steps``, then decays along half a
    cosine to ``final_fraction * lr`` at ``max_steps``. The factor depends only on the global step, so a
    stage resumed with another ``max_steps`` (training on) continues on the new curve.
    """

    kind: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = Field(0, ge=0)
    final_fraction: float = Field(0.05, ge=0.0, le=1.0, description="cosine: the last step's lr as a fraction of lr")

    def factor(self, step: int, max_steps: int) -> float:
        """The learning-rate multiplier at optimisation step ``step`` (0-based) of ``max_steps``."""
        if self.warmup_steps and step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return 1.0
        span = max(1, max_steps - self.warmup_steps)
        progress = min(1.0, max(0.0, (step - self.warmup_steps) / span))
        return self.final_fraction + (1.0 - self.final_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress))


class StageConfig(_Strict):
    """Optimisation of one stage."""

    max_steps: int = Field(1000, ge=1)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(1e-3, gt=0.0)
    lr_schedule: LRSchedule = Field(default_factory=LRSchedule)
    weight_decay: float = Field(0.0, ge=0.0)
    val_every: int = Field(200, ge=1, description="validate every this many steps")
    checkpoint_every: int = Field(200, ge=1, description="write the resumable checkpoint every this many steps")


class VAEStage(StageConfig):
    model: VAEConfig = Field(default_factory=VAEConfig)


class FPStage(StageConfig):
    model: FeaturePredictorConfig = Field(default_factory=FeaturePredictorConfig)


class DDPMStage(StageConfig):
    model: LatentUNetConfig = Field(default_factory=LatentUNetConfig)
    #: How the trained model samples when a caller does not say (written into the bundle); the sampler name is
    #: checked when the config loads, and unset values are :data:`generator.diffusion.DEFAULT_SAMPLING`'s.
    sampling: SamplingSettings = Field(default_factory=lambda: DEFAULT_SAMPLING)
    schedule: NoiseSchedule = Field(default_factory=NoiseSchedule)
    condition_dropout: float = Field(0.1, ge=0.0, le=1.0, description="probability of training a sample unconditionally (CFG)")
    ema_decay: float | None = Field(0.999, gt=0.0, lt=1.0, description="EMA of the denoiser weights (None: off)")


class TrainConfig(_Strict):
    """The whole training run: data, trainer and the three network stages."""

    name: str = "custom"
    data: DataConfig = Field(default_factory=DataConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    vae: VAEStage = Field(default_factory=VAEStage)
    fp: FPStage = Field(default_factory=FPStage)
    ddpm: DDPMStage = Field(default_factory=DDPMStage)


def preset_names() -> list[str]:
    """Names of the shipped presets (``tiny``, ``small``, ``paper-ch2``, ``paper-ch3``)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def load_config(preset: str | os.PathLike[str] | TrainConfig, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Load a preset by name or a TOML file, validated.

    Parameters
    ----------
    preset
        A preset name, a path to a TOML file, or a :class:`TrainConfig` (returned as is, with overrides).
    overrides
        Nested dict merged over the file's values (e.g. ``{"ddpm": {"max_steps": 10}}``).

    Raises
    ------
    InvalidInputError
        For an unknown preset, or a config that fails validation (naming the field).
    """
    if isinstance(preset, TrainConfig):
        raw = preset.model_dump()
    else:
        path = Path(preset)
        if path.suffix != ".toml" and not path.exists():
            if str(preset) not in preset_names():
                raise InvalidInputError(f"preset: unknown preset {str(preset)!r}; choose one of {', '.join(preset_names())} or a .toml file")
            path = PRESET_DIR / f"{preset}.toml"
        if not path.is_file():
            raise FileFormatError(f"config: {path} does not exist")
        raw = read_toml(path, what="config")
    raw = _merge(raw, overrides or {})
    try:
        return TrainConfig(**raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(part) for part in first.get("loc", ()))
        raise InvalidInputError(f"config {loc}: {first.get('msg', 'invalid value')}") from None


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out
