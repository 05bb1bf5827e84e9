"""Sampling settings: which diffusion sampler, how many steps, how much guidance, validated once.

:class:`SamplingSettings` is the one object that carries them, from a
study spec's ``[generation]`` table or the command line to
:meth:`generator.pipeline.Generator.generate`; :data:`DEFAULT_SAMPLING` is the
one place their defaults are set (a model's bundle may carry its own,
``sampling_defaults``, which :meth:`SamplingSettings.resolved` applies first).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from diffusers.schedulers.scheduling_utils import SchedulerMixin
from pydantic import BaseModel, ConfigDict, Field, field_validator

from generator.diffusion.schedulers import NoiseSchedule, canonical_sampler, make_scheduler


class SamplingSettings(BaseModel):
    """How latents are sampled; ``None`` leaves a setting to the model's defaults.

    Parameters
    ----------
    sampler
        ``ddpm``, ``ddim`` or ``dpm++`` (checked when the settings are made).
    steps
        Denoising steps, at least 1 (at most the model's ``num_train_timesteps``,
        checked by :meth:`generator.pipeline.Generator.check_sampling`).
    guidance
        Classifier-free guidance scale, at least 0; ``1.0`` is plain conditional sampling.
    feature_guidance
        Feature-predictor guidance, at least 0 (``0``: off): over the second half
        of the steps the predicted clean latent takes a gradient step of this size
        on the feature predictor's squared error of the requested conditions (in
        training stds); see :func:`generator.diffusion.sampling.sample_latents`.

    Raises
    ------
    pydantic.ValidationError
        An unknown sampler, fewer than 1 step, a negative or non-finite guidance.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    sampler: str | None = Field(default=None, description="diffusion sampler (None: the model's default, `microdesign info`)")
    steps: int | None = Field(default=None, ge=1, description="solver steps (None: the model's default)")
    guidance: float | None = Field(default=None, ge=0, description="classifier-free guidance (None: the model's default)")
    feature_guidance: float | None = Field(default=None, ge=0,
                                           description="feature-predictor guidance step, 0 off (None: the model's default)")

    @field_validator("sampler")
    @classmethod
    def _known_sampler(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                canonical_sampler(value)
            except ValueError as exc:  # InvalidInputError is a ValueError
                raise ValueError(str(exc).removeprefix("sampler: ")) from None
        return value

    def resolved(self, defaults: SamplingSettings | Mapping[str, Any] | None = None) -> SamplingSettings:
        """These settings with every ``None`` filled in: from ``defaults`` (a model's), then :data:`DEFAULT_SAMPLING`."""
        sampler, steps, guidance = resolve_sampling(self.sampler, self.steps, self.guidance, defaults)
        return SamplingSettings(sampler=sampler, steps=steps, guidance=guidance,
                                feature_guidance=resolve_feature_guidance(self.feature_guidance, defaults))

    def scheduler(self, schedule: NoiseSchedule | None = None) -> SchedulerMixin:
        """A fresh diffusers scheduler of :attr:`sampler` on ``schedule`` (settings :meth:`resolved` first)."""
        return make_scheduler(self.resolved().sampler, schedule)  # type: ignore[arg-type]


#: How latents are sampled when neither the call nor the model says otherwise.
DEFAULT_SAMPLING = SamplingSettings(sampler="dpm++", steps=25, guidance=1.0, feature_guidance=0.0)


def resolve_sampling(sampler: str | None, steps: int | None, guidance: float | None,
                     defaults: SamplingSettings | Mapping[str, Any] | None = None) -> tuple[str, int, float]:
    """``(sampler, steps, guidance)`` with each ``None`` taken from ``defaults`` (a model's), then :data:`DEFAULT_SAMPLING`.

    Given values pass unchecked (their checks, with messages naming the
    setting as the user wrote it, are :meth:`generator.pipeline.Generator.check_sampling`'s).
    """
    return str(_pick("sampler", sampler, defaults)), _pick("steps", steps, defaults), _pick("guidance", guidance, defaults)


def resolve_feature_guidance(value: float | None, defaults: SamplingSettings | Mapping[str, Any] | None = None) -> float:
    """The feature-predictor guidance step: ``value``, else ``defaults``' (a model's), else :data:`DEFAULT_SAMPLING`'s (0, off)."""
    return float(_pick("feature_guidance", value, defaults))


def _pick(name: str, value: Any, defaults: SamplingSettings | Mapping[str, Any] | None) -> Any:
    """``value``, else ``defaults``' setting ``name``, else :data:`DEFAULT_SAMPLING`'s."""
    if value is None:
        value = (defaults.model_dump() if isinstance(defaults, SamplingSettings) else dict(defaults or {})).get(name)
    return getattr(DEFAULT_SAMPLING, name) if value is None else value
