"""The generation pipeline: condition vector -> latent diffusion -> decoded labels + FP predictions.

:class:`Generator` is built from components (a latent decoder, a feature
predictor, a denoiser, the noise schedule and the attribute metadata), so that
both our bundles and MicroGen3D's published weights plug into it; loading a
model from files is the job of :mod:`generator.loading`, which imports this
module (never the other way round).
"""

from __future__ import annotations

import importlib
import numbers
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from generator.conditions import condition_vector, draw_conditions
from generator.diffusion import (
    DEFAULT_SAMPLING,
    Denoiser,
    NoiseSchedule,
    SamplingSettings,
    canonical_sampler,
    make_scheduler,
    sample_latents,
)
from generator.diffusion.settings import resolve_feature_guidance, resolve_sampling
from generator.errors import InvalidInputError
from generator.levels import check_threshold, labels_from_grey
from generator.physics.recipes import RECIPE_NAMES  # noqa: F401  (the recipe attributes a feature predictor may output)
from generator.validation import check_finite, check_memory, check_seed

#: How :meth:`Generator.generate` samples when neither the call nor the model says otherwise
#: (:data:`generator.diffusion.DEFAULT_SAMPLING` as a dict).
SAMPLING_DEFAULTS = DEFAULT_SAMPLING.model_dump()

#: Old import paths of names that moved to :mod:`generator.loading` (``from generator.pipeline import load_generator``).
_MOVED = {"load_generator": "generator.loading", "DEFAULT_BUNDLE": "generator.loading"}


def __getattr__(name: str) -> object:
    """The names of :data:`_MOVED`, from their new home, with a :class:`DeprecationWarning`."""
    if name in _MOVED:
        warnings.warn(f"generator.pipeline.{name} moved to {_MOVED[name]}.{name}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class GenerationResult:
    """Output of :meth:`Generator.generate` for ``n`` samples.

    Attributes
    ----------
    labels
        ``(n, X, Y, Z)`` ``uint8`` phase labels (0 donor, 1 acceptor, 2 mixed).
    latents
        ``(n, C, x, y, z)`` float tensor (CPU), in the denoiser's latent space.
    conditions
        ``(n, K)`` requested condition vectors in raw units, columns in
        :attr:`Generator.condition_names` order.
    predicted
        ``{attribute: (n,) array}``: the feature predictor's outputs on the
        latents (descriptors and recipe) in raw units.
    grey
        ``(n, X, Y, Z)`` float32 grey field the labels were cut from (donor
        0, acceptor 1), when asked for (``raw=True``), else ``None``.
    """

    labels: np.ndarray
    latents: torch.Tensor
    conditions: np.ndarray
    predicted: dict[str, np.ndarray] = field(default_factory=dict)
    grey: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])


class Generator:
    """A conditional latent diffusion generator ready to sample.

    Parameters
    ----------
    decoder
        ``latents (B, C, x, y, z) -> labels (B, X, Y, Z)`` (uint8 tensor or array).
    feature_predictor
        ``latents (B, C, x, y, z) -> attributes (B, A)`` in raw units, columns in ``attribute_names`` order.
    denoiser
        ``denoiser(x_t, t, context | None) -> eps or v`` (see :func:`generator.diffusion.sample_latents`).
    latent_shape
        ``(C, x, y, z)``.
    volume_shape
        ``(X, Y, Z)`` of decoded volumes.
    schedule
        Noise schedule the denoiser was trained with (:class:`NoiseSchedule` or its dict).
    condition_names
        Context attributes, in the order the denoiser expects them.
    attribute_names
        All feature-predictor outputs, in order.
    n_phases
        2 or 3.
    context_mean, context_std
        ``(K,)`` normalisation of the raw condition vector before it reaches the
        denoiser: ``(c - mean) / std`` (defaults: 0 and 1, i.e. raw values).
    descriptor_table
        The training set's attributes, one row per sample, with a ``series`` column (or ``None``).
    calibration_table
        Films from series the training never used, with their recipes, descriptors and shapes (they
        calibrate the recipe posterior for films of their shape; ``generator.calibration``), or ``None``.
    condition_ranges
        ``{name: (lo, hi)}`` training range of each condition; defaults to the
        min/max of ``descriptor_table``; names without a range are not checked.
    device
        Torch device the networks live on.
    in_plane_multiple
        ``0`` (default): the networks generate only ``volume_shape``. A positive
        number: they are fully convolutional and periodic in x and y, so any
        in-plane size that is a multiple of it (the electrode axis fixed at
        ``volume_shape[2]``) can be generated (:meth:`latent_shape_for`).
    training_shape
        ``(X, Y, Z)`` of the films the networks were trained on (default ``volume_shape``).
    encoder
        Optional ``grey volumes (B, 1, X, Y, Z) in [0, 1] -> latents (B, C, x, y, z)``
        (the posterior mean, in the denoiser's latent space); needed by
        :meth:`encode` and :meth:`conditions_of`.
    grey_decoder
        Optional ``latents -> grey field (B, X, Y, Z)`` in [0, 1] (donor 0,
        acceptor 1); needed for ``raw``, ``threshold`` and ``phase_levels``.
    grey_labels
        Whether the labels are a cut of the grey field (MicroGen3D, two-phase
        bundles), so that ``threshold`` / ``phase_levels`` apply; ``False``
        for decoders that classify phases directly (three-phase bundles).
    """

    def __init__(
        self,
        *,
        decoder: Callable[[torch.Tensor], torch.Tensor | np.ndarray],
        feature_predictor: Callable[[torch.Tensor], torch.Tensor],
        denoiser: Denoiser,
        latent_shape: Sequence[int],
        volume_shape: Sequence[int],
        schedule: NoiseSchedule | Mapping[str, object] | None,
        condition_names: Sequence[str],
        attribute_names: Sequence[str],
        n_phases: int,
        context_mean: Sequence[float] | np.ndarray | None = None,
        context_std: Sequence[float] | np.ndarray | None = None,
        descriptor_table: pd.DataFrame | None = None,
        calibration_table: pd.DataFrame | None = None,
        condition_ranges: Mapping[str, tuple[float, float]] | None = None,
        device: str | torch.device = "cpu",
        in_plane_multiple: int = 0,
        training_shape: Sequence[int] | None = None,
        sampling_defaults: Mapping[str, object] | None = None,
        encoder: Callable[[torch.Tensor], torch.Tensor] | None = None,
        grey_decoder: Callable[[torch.Tensor], torch.Tensor | np.ndarray] | None = None,
        grey_labels: bool = True,
    ) -> None:
        self.decoder = decoder
        self.encoder = encoder
        self.grey_decoder = grey_decoder
        self.grey_labels = bool(grey_labels)
        self.feature_predictor = feature_predictor
        self.denoiser = denoiser
        self.latent_shape = tuple(int(s) for s in latent_shape)
        self.volume_shape = tuple(int(s) for s in volume_shape)
        self.schedule = schedule if isinstance(schedule, NoiseSchedule) else NoiseSchedule(**(schedule or {}))
        self.condition_names = list(condition_names)
        self.attribute_names = list(attribute_names)
        self.recipe_names = [name for name in RECIPE_NAMES if name in self.attribute_names]
        self.n_phases = int(n_phases)
        k = len(self.condition_names)
        self.context_mean = np.zeros(k) if context_mean is None else np.asarray(context_mean, dtype=np.float64)
        self.context_std = np.ones(k) if context_std is None else np.asarray(context_std, dtype=np.float64)
        if self.context_mean.shape != (k,) or self.context_std.shape != (k,):
            raise InvalidInputError(f"context_mean/context_std: need {k} values, one per condition")
        self.descriptor_table = descriptor_table
        self.calibration_table = calibration_table
        if condition_ranges is None and descriptor_table is not None:
            condition_ranges = {
                name: (float(descriptor_table[name].min()), float(descriptor_table[name].max()))
                for name in self.condition_names
                if name in descriptor_table.columns
            }
        self.condition_ranges: dict[str, tuple[float, float]] = dict(condition_ranges or {})
        self.device = torch.device(device)
        self.in_plane_multiple = int(in_plane_multiple)
        self.training_shape = tuple(int(s) for s in (training_shape or self.volume_shape))
        self.sampling_defaults: dict[str, object] = {**SAMPLING_DEFAULTS, **dict(sampling_defaults or {})}

    def resolve_sampling(self, sampler: str | None, steps: int | None, guidance: float | None) -> tuple[str, int, float]:
        """``(sampler, steps, guidance)`` with the model's :attr:`sampling_defaults` for those not given (``None``)."""
        d = self.sampling_defaults
        return resolve_sampling(sampler, None if steps is None else steps, guidance,
                                {"sampler": d["sampler"], "steps": int(d["steps"]), "guidance": float(d["guidance"])})  # type: ignore[arg-type]

    @property
    def resizable(self) -> bool:
        """Whether in-plane sizes other than :attr:`volume_shape` can be generated."""
        return self.in_plane_multiple > 0

    def latent_shape_for(self, size: Sequence[int] | None) -> tuple[int, ...]:
        """Latent shape ``(C, x, y, z)`` that decodes to a film of ``size`` ``(X, Y, Z)`` (``None``: :attr:`volume_shape`).

        Raises
        ------
        InvalidInputError
            When this model cannot generate ``size`` (not resizable, another electrode-axis
            size, or an in-plane size that is not a positive multiple of :attr:`in_plane_multiple`).
        """
        if size is None or tuple(int(s) for s in size) == self.volume_shape:
            return self.latent_shape
        size = tuple(int(s) for s in size)
        shape_text = "x".join(map(str, self.volume_shape))
        if len(size) != 3:
            raise InvalidInputError(f"size: give X, Y and Z (e.g. {shape_text}), got {len(size)} values")
        if not self.resizable:
            raise InvalidInputError(f"size: this model generates {shape_text} only (it is not periodic in-plane)")
        m = self.in_plane_multiple
        if size[2] != self.volume_shape[2]:
            raise InvalidInputError(f"size: the electrode axis (Z) of this model is {self.volume_shape[2]}, got {size[2]}")
        if any(n < m or n % m for n in size[:2]):
            raise InvalidInputError(f"size: X and Y must be positive multiples of {m}, got {size[0]}x{size[1]}")
        scale = self.volume_shape[0] // self.latent_shape[1]
        return (self.latent_shape[0], size[0] // scale, size[1] // scale, self.latent_shape[3])

    def __repr__(self) -> str:
        return (
            f"Generator(n_phases={self.n_phases}, volume_shape={self.volume_shape}, latent_shape={self.latent_shape}, "
            f"conditions={self.condition_names})"
        )

    # --- conditions ---------------------------------------------------------------------
    def condition_matrix(self, conditions: Mapping[str, float] | np.ndarray | Sequence[Sequence[float]], n: int | None = None) -> np.ndarray:
        """Raw ``(n, K)`` condition matrix from a mapping ``{name: value}`` (repeated ``n`` times) or an array.

        Raises
        ------
        InvalidInputError
            For an unknown or missing condition name, or a matrix of the wrong width.
        """
        if isinstance(conditions, Mapping):
            row = condition_vector(self.condition_names, conditions)
            return np.tile(row, (1 if n is None else int(n), 1))
        matrix = np.atleast_2d(np.asarray(conditions, dtype=np.float64))
        if matrix.ndim != 2 or matrix.shape[1] != len(self.condition_names):
            raise InvalidInputError(
                f"conditions: expected an (n, {len(self.condition_names)}) array ({', '.join(self.condition_names)}), got shape {matrix.shape}"
            )
        if n is not None and n != matrix.shape[0]:
            raise InvalidInputError(f"n: {n} differs from the {matrix.shape[0]} condition rows given")
        return matrix

    def check_ranges(self, matrix: np.ndarray) -> None:
        """Raise :class:`InvalidInputError` naming the first condition outside its training range."""
        if not np.all(np.isfinite(matrix)):
            raise InvalidInputError("condition: values must be finite numbers")
        for j, name in enumerate(self.condition_names):
            if name not in self.condition_ranges:
                continue
            lo, hi = self.condition_ranges[name]
            bad = (matrix[:, j] < lo) | (matrix[:, j] > hi)
            if bad.any():
                value = matrix[bad.argmax(), j]
                raise InvalidInputError(
                    f"condition {name}={value:g} is outside the training range [{lo:g}, {hi:g}]; "
                    "allow extrapolation (--allow-extrapolation) to sample it anyway"
                )

    def draw_conditions(
        self,
        given: Mapping[str, float] | None = None,
        n: int = 1,
        *,
        ranges: Mapping[str, tuple[float, float]] | None = None,
        table: pd.DataFrame | None = None,
        method: str = "empirical",
        seed: int = 0,
    ):
        """Condition matrix of ``n`` samples from given values, ranges, and completion of the rest.

        See :func:`generator.conditions.draw_conditions`; ``table`` defaults to
        the model's training descriptors (:attr:`descriptor_table`).

        Returns
        -------
        generator.conditions.ConditionDraw
        """
        return draw_conditions(self.condition_names, n, given=given, ranges=ranges,
                               table=self.descriptor_table if table is None else table, method=method, seed=seed)

    # --- encoding -------------------------------------------------------------------------
    @torch.inference_mode()
    def encode(self, grey: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Latents ``(B, C, x, y, z)`` (posterior means) of grey volumes ``(B, X, Y, Z)`` or ``(B, 1, X, Y, Z)`` in [0, 1].

        Raises
        ------
        InvalidInputError
            When the model has no encoder or the volumes have the wrong shape.
        """
        if self.encoder is None:
            raise InvalidInputError("model: this generator has no encoder")
        x = torch.as_tensor(np.asarray(grey, dtype=np.float32) if not isinstance(grey, torch.Tensor) else grey, dtype=torch.float32)
        if x.ndim == 4:
            x = x[:, None]
        if x.ndim != 5 or tuple(x.shape[2:]) != self.volume_shape:
            raise InvalidInputError(f"volumes: shape {tuple(x.shape)} does not fit the model's volumes {self.volume_shape}")
        return self.encoder(x.to(self.device)).float()

    def conditions_of(self, grey: np.ndarray | torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
        """The feature predictor's conditions on volumes: ``(matrix (B, K), latents (B, C, x, y, z))``.

        Each volume is encoded (posterior mean) and the feature predictor's
        outputs for :attr:`condition_names` form its condition vector, as
        MicroGen3D's dataset mode does.
        """
        absent = [name for name in self.condition_names if name not in self.attribute_names]
        if absent:
            raise InvalidInputError(f"model: its feature predictor does not predict the condition {absent[0]!r}")
        latents = self.encode(grey)
        predicted = self.predict(latents)
        return np.stack([predicted[name] for name in self.condition_names], axis=1), latents.cpu()

    @torch.inference_mode()
    def decode_grey(self, latents: torch.Tensor) -> np.ndarray:
        """``float32`` grey field ``(B, X, Y, Z)`` of latents ``(B, C, x, y, z)`` (donor 0, acceptor 1)."""
        if self.grey_decoder is None:
            raise InvalidInputError("model: this generator has no grey-field decoder")
        grey = self.grey_decoder(latents.to(self.device))
        grey = grey.float().cpu().numpy() if isinstance(grey, torch.Tensor) else np.asarray(grey)
        return grey.astype(np.float32)

    def check_decoding(self, threshold: float | None, phase_levels=None) -> None:
        """Raise :class:`InvalidInputError` when ``threshold`` / ``phase_levels`` do not apply to this model."""
        if threshold is None and phase_levels is None:
            return
        if self.grey_decoder is None or not self.grey_labels:
            option = "--threshold" if threshold is not None else "--phase-levels"
            raise InvalidInputError(f"{option}: this model's decoder classifies the phases directly (no grey field to cut)")
        if threshold is not None:
            if self.n_phases != 2:
                raise InvalidInputError("--threshold: applies to two-phase models; three-phase ones take --phase-levels DONOR,MIXED,ACCEPTOR")
            check_threshold(threshold)
        if phase_levels is not None and self.n_phases != 3:
            raise InvalidInputError("--phase-levels: applies to three-phase models; two-phase ones take --threshold")

    # --- sampling -------------------------------------------------------------------------
    def check_sampling(
        self,
        *,
        n: int,
        sampler: str | None,
        steps: int | None,
        guidance: float | None,
        seed: int,
        batch_size: int,
        prefix: str = "--",
        n_name: str | None = None,
        size: Sequence[int] | None = None,
        feature_guidance: float | None = None,
    ) -> None:
        """Check the settings of :meth:`generate` before any work (or any file) is done.

        Parameters
        ----------
        n, sampler, steps, guidance, seed, batch_size, feature_guidance
            As for :meth:`generate`.
        prefix
            Put before each setting's name in messages (``--`` for options,
            ``generation.`` for a study spec's fields).
        n_name
            The name of ``n`` in messages (default ``-n``, or ``n`` after ``prefix``).
        size
            Film size ``(X, Y, Z)`` (default :attr:`volume_shape`; see :meth:`latent_shape_for`).

        Raises
        ------
        InvalidInputError
            An unknown sampler, a step count outside ``[1, num_train_timesteps]``,
            a non-finite or negative guidance, feature guidance on a model whose
            feature predictor does not output its conditions, a bad seed, a count below 1, or
            ``n`` volumes that cannot fit in this machine's memory, or a film size this model cannot make.
        """
        sampler, steps, guidance = self.resolve_sampling(sampler, steps, guidance)

        def name(field: str) -> str:  # the setting as the user wrote it: -n, --batch-size, generation.batch_size
            if field == "n" and n_name is not None:
                return n_name
            if prefix == "--":
                return "-n" if field == "n" else "--" + field.replace("_", "-")
            return prefix + field

        def whole(value: object) -> bool:
            return isinstance(value, numbers.Integral) and not isinstance(value, bool)

        if not whole(n) or n < 1:
            raise InvalidInputError(f"{name('n')}: must be at least 1, got {n!r}")
        if not whole(batch_size) or batch_size < 1:
            raise InvalidInputError(f"{name('batch_size')}: must be at least 1, got {batch_size!r}")
        try:
            canonical_sampler(sampler)
        except InvalidInputError as exc:
            raise InvalidInputError(f"{name('sampler')}: {str(exc).removeprefix('sampler: ')}") from None
        top = self.schedule.num_train_timesteps
        if not whole(steps) or not 1 <= steps <= top:
            raise InvalidInputError(f"{name('steps')}: must lie in [1, {top}] for this model, got {steps!r}")
        check_finite(guidance, name("guidance"), minimum=0.0)
        feature_guidance = resolve_feature_guidance(feature_guidance, self.sampling_defaults)
        check_finite(feature_guidance, name("feature_guidance"), minimum=0.0)
        absent = [c for c in self.condition_names if c not in self.attribute_names]
        if feature_guidance > 0 and (absent or not self.condition_names):
            raise InvalidInputError(f"{name('feature_guidance')}: this model's feature predictor does not output "
                                    + (f"the condition {absent[0]!r}" if absent else "any condition (unconditional model)"))
        check_seed(seed, name("seed"))
        latent_shape = self.latent_shape_for(size)
        scale = float(np.prod(self.volume_shape)) / float(np.prod(self.latent_shape[1:]))
        latent = float(np.prod(latent_shape))
        voxels = float(np.prod(latent_shape[1:])) * scale
        # kept for all n: labels (uint8) and latents + their noise (float32); one batch of decoder activations
        per_volume = voxels + 8 * latent
        check_memory(n * per_volume + min(n, batch_size) * 64 * voxels, f"{name('n')} {n}")

    def feature_guidance_gradient(self, conditions: np.ndarray) -> Callable[[torch.Tensor, slice], torch.Tensor]:
        """The ``x0_guidance`` of :func:`generator.diffusion.sample_latents` for raw conditions ``(n, K)``.

        ``gradient(x0 (B, C, x, y, z), rows) -> (B, C, x, y, z)``: the gradient at ``x0`` of
        ``sum(((fp(x0)[:, conditions] - conditions[rows]) / std) ** 2)``, ``std`` the training std of
        each condition (:attr:`context_std`), times the film's volume over the training films' (a
        descriptor averages over the film, so each voxel's gradient shrinks as the film grows: the
        factor keeps one guidance step the same at every size).
        """
        columns = [self.attribute_names.index(name) for name in self.condition_names]
        target = torch.tensor(np.asarray(conditions, dtype=np.float32), device=self.device)
        std = torch.tensor(np.asarray(self.context_std, dtype=np.float32), device=self.device)
        voxels_per_latent = float(np.prod(self.volume_shape)) / float(np.prod(self.latent_shape[1:]))
        training_voxels = float(np.prod(self.training_shape))

        def gradient(x0: torch.Tensor, rows: slice) -> torch.Tensor:
            loss = (((self.feature_predictor(x0)[:, columns] - target[rows]) / std) ** 2).sum()
            return torch.autograd.grad(loss, x0)[0] * (float(np.prod(x0.shape[2:])) * voxels_per_latent / training_voxels)

        return gradient

    @torch.inference_mode()
    def predict(self, latents: torch.Tensor) -> dict[str, np.ndarray]:
        """Feature-predictor outputs ``{attribute: (B,) array}`` of latents ``(B, C, x, y, z)``."""
        values = self.feature_predictor(latents.to(self.device)).detach().float().cpu().numpy()
        return {name: values[:, j].astype(np.float64) for j, name in enumerate(self.attribute_names)}

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """``uint8`` labels ``(B, X, Y, Z)`` of latents ``(B, C, x, y, z)``."""
        labels = self.decoder(latents.to(self.device))
        labels = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
        return labels.astype(np.uint8)

    def generate(
        self,
        conditions: Mapping[str, float] | np.ndarray | Sequence[Sequence[float]],
        n: int | None = None,
        *,
        sampler: str | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        seed: int = 0,
        batch_size: int = 32,
        progress: bool = False,
        allow_extrapolation: bool = False,
        size: Sequence[int] | None = None,
        threshold: float | None = None,
        phase_levels=None,
        raw: bool = False,
        settings: SamplingSettings | None = None,
        feature_guidance: float | None = None,
    ) -> GenerationResult:
        """Generate ``n`` volumes for the given conditions.

        Parameters
        ----------
        conditions
            ``(n, K)`` raw condition matrix (columns in :attr:`condition_names`
            order) or a mapping ``{name: value}`` (then ``n`` copies, default 1).
        n
            Number of samples (for a mapping).
        sampler, steps, guidance
            See :func:`generator.diffusion.sample_latents`; ``None``: the model's :attr:`sampling_defaults`.
        seed
            Seed of all noise: the same seed gives the same samples. The initial
            noise of sample ``i`` does not depend on ``batch_size``.
        batch_size
            Samples per network batch.
        progress
            Progress bar over the samples.
        allow_extrapolation
            Sample conditions outside the training range instead of raising.
        size
            ``(X, Y, Z)`` of the films (default :attr:`volume_shape`); see :meth:`latent_shape_for`.
        threshold
            Two phases: cut the decoder's grey field at this value (default 0.5).
        phase_levels
            Three phases: a :class:`generator.levels.PhaseLevels`; each voxel
            takes the phase of the nearest level (default 0, 0.5, 1).
        raw
            Keep the decoder's grey field in :attr:`GenerationResult.grey`.
        settings
            Sampler, steps, guidance and feature guidance as one validated object (a study's
            ``[generation]``); ``sampler``, ``steps``, ``guidance``, ``feature_guidance`` given as well take precedence.
        feature_guidance
            Step of the feature-predictor guidance (``0``: off; ``None``: the model's default): over
            the second half of the solver steps the predicted clean latent moves down the gradient of
            the feature predictor's squared error of the requested conditions, in training stds
            (:func:`generator.diffusion.sample_latents`, ``x0_guidance``).

        Returns
        -------
        GenerationResult
        """
        if settings is not None:
            sampler = settings.sampler if sampler is None else sampler
            steps = settings.steps if steps is None else steps
            guidance = settings.guidance if guidance is None else guidance
            feature_guidance = settings.feature_guidance if feature_guidance is None else feature_guidance
        sampler, steps, guidance = self.resolve_sampling(sampler, steps, guidance)
        feature_guidance = resolve_feature_guidance(feature_guidance, self.sampling_defaults)
        count = (1 if n is None else n) if isinstance(conditions, Mapping) else len(np.atleast_2d(np.asarray(conditions)))
        self.check_sampling(n=count, sampler=sampler, steps=steps, guidance=guidance, seed=seed, batch_size=batch_size, prefix="",
                            size=size, feature_guidance=feature_guidance)
        matrix = self.condition_matrix(conditions, n)
        latent_shape = self.latent_shape_for(size)
        if not allow_extrapolation:
            self.check_ranges(matrix)
        self.check_decoding(threshold, phase_levels)
        cut = threshold is not None or phase_levels is not None
        if raw and self.grey_decoder is None:
            raise InvalidInputError("--raw: this model has no grey-field decoder")
        total = matrix.shape[0]
        context = torch.as_tensor((matrix - self.context_mean) / self.context_std, dtype=torch.float32, device=self.device)
        rng = torch.Generator(device="cpu").manual_seed(int(seed))
        noise = torch.randn((total, *latent_shape), generator=rng)
        labels, latents, predicted, greys = [], [], [], []
        scheduler = make_scheduler(sampler, self.schedule)  # once per call; each batch sets its time steps again
        x0_guidance = self.feature_guidance_gradient(matrix) if feature_guidance > 0 else None
        with tqdm(total=total, desc="generating", unit="sample", disable=not progress) as bar:
            for start in range(0, total, batch_size):
                stop = min(start + batch_size, total)
                z = sample_latents(
                    self.denoiser,
                    (stop - start, *latent_shape),
                    context[start:stop] if self.condition_names else None,
                    sampler=sampler,
                    steps=steps,
                    guidance=guidance,
                    generator=rng,
                    schedule=self.schedule,
                    noise=noise[start:stop].to(self.device),
                    scheduler=scheduler,
                    x0_guidance=x0_guidance,
                    x0_guidance_scale=feature_guidance,
                    batch=slice(start, stop),
                )
                grey = self.decode_grey(z) if (raw or cut) else None
                labels.append(labels_from_grey(grey, self.n_phases, threshold=threshold, levels=phase_levels) if cut else self.decode(z))
                if raw:
                    greys.append(grey)
                predicted.append(self.predict(z))
                latents.append(z.cpu())
                bar.update(stop - start)
        return GenerationResult(
            labels=np.concatenate(labels),
            latents=torch.cat(latents),
            conditions=matrix,
            predicted={name: np.concatenate([p[name] for p in predicted]) for name in self.attribute_names},
            grey=np.concatenate(greys) if raw else None,
        )
