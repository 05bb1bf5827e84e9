"""Trial evaluation: generate, measure, aggregate, score.

A trial's conditions go to ``Generator.generate`` (``samples_per_trial``
volumes, batched and seeded); :func:`generator.descriptors.compute_batch`
measures their descriptors and the feature predictor gives each volume's
recipe. The trial's score is the normalised distance of the *measured* means
to the targets (:func:`score`)::

    d_j   = dist(mean_j, [lo_j, hi_j]) / s_j
    score = sqrt( (1/J) * sum_j d_j² )

with ``[lo_j, hi_j]`` the target's accepted interval (``equal ± tolerance``,
or ``[at_least, at_most]`` with open ends), ``dist`` the distance to the
interval (0 inside) and ``s_j`` the descriptor's standard deviation over the
training set (:func:`descriptor_scales`). ``score == 0`` means every target is
met.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from generator.checkpoint import NonFiniteOutputError
from generator.descriptors import compute_batch, is_count
from generator.errors import MicrodesignError
from inverse.spec import Bound, GenerationSettings, Target

#: Columns of the training table that are not measured descriptors.


class GenerationFailed(MicrodesignError):
    """The generator returned unusable output (NaN/inf) for a trial's conditions."""


@dataclass(frozen=True)
class Measurement:
    """What one trial measured.

    Attributes
    ----------
    descriptors
        ``(n, n_descriptors)`` table, one row per generated volume.
    recipes
        ``(n, n_recipe)`` table of the feature predictor's recipe per volume.
    labels
        ``(n, X, Y, Z)`` uint8 phase labels.
    seconds
        Wall time of the steps: ``generate`` (diffusion, decoding and the feature
        predictor) and ``measure`` (descriptors of the ``n`` volumes).
    """

    descriptors: pd.DataFrame
    recipes: pd.DataFrame
    labels: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, dict[str, float]]:
        """``measured_mean``, ``measured_std``, ``recipe_mean``, ``recipe_std`` as ``{name: value}``."""
        return {
            "measured_mean": _clean(self.descriptors.mean()),
            "measured_std": _clean(self.descriptors.std(ddof=0)),
            "recipe_mean": _clean(self.recipes.mean()),
            "recipe_std": _clean(self.recipes.std(ddof=0)),
        }


def _clean(series: pd.Series) -> dict[str, float]:
    return {str(k): float(v) for k, v in series.items()}


def measure(
    generator: object,
    conditions: Mapping[str, float],
    n: int,
    *,
    seed: int,
    settings: GenerationSettings | None = None,
    n_jobs: int | None = None,
) -> Measurement:
    """Generate ``n`` volumes at ``conditions`` and measure them.

    ``settings`` (a spec's ``[generation]``; default: the model's sampling
    defaults, batches of 32, its film size) go to ``Generator.generate`` whole.

    The descriptors of the ``n`` volumes are measured in parallel over the
    volumes, on ``n_jobs`` threads (default: every core; the generator's torch
    threads are idle by then, and the GraSPI kernels release the GIL).

    Raises
    ------
    GenerationFailed
        NaN or inf in the generator's latents, decoder logits or predictions, or no volume.
    """
    start = time.perf_counter()
    try:
        settings = settings or GenerationSettings()
        result = generator.generate(  # type: ignore[attr-defined]
            dict(conditions), n, settings=settings, seed=seed, batch_size=settings.batch_size, progress=False,
            **({"size": tuple(settings.size)} if settings.size is not None else {}),
        )
    except NonFiniteOutputError as exc:
        raise GenerationFailed(f"{str(exc).removeprefix('model: ')} at {dict(conditions)}") from None
    latents = np.asarray(result.latents.detach().cpu().numpy() if hasattr(result.latents, "detach") else result.latents)
    if not np.all(np.isfinite(latents)):
        raise GenerationFailed(f"the generator returned non-finite latents at {dict(conditions)}")
    predicted = {k: np.asarray(v, dtype=float) for k, v in result.predicted.items()}
    bad = [k for k, v in predicted.items() if not np.all(np.isfinite(v))]
    if bad:
        raise GenerationFailed(f"the feature predictor returned non-finite {bad[0]} at {dict(conditions)}")
    labels = np.asarray(result.labels)
    if labels.shape[0] != n:
        raise GenerationFailed(f"the generator returned {labels.shape[0]} volumes instead of {n}")
    generated = time.perf_counter()
    descriptors = pd.DataFrame(compute_batch(list(labels), n_jobs=n_jobs))
    descriptors = descriptors.astype(float)
    seconds = {"generate": generated - start, "measure": time.perf_counter() - generated}
    if not np.all(np.isfinite(descriptors.to_numpy())):
        descriptors = descriptors.replace([np.inf, -np.inf], np.nan)
    recipe_names = list(getattr(generator, "recipe_names", []))
    recipes = pd.DataFrame({name: predicted[name] for name in recipe_names if name in predicted}, index=descriptors.index)
    return Measurement(descriptors=descriptors, recipes=recipes, labels=labels, seconds=seconds)


def descriptor_scales(names: Sequence[str], table: pd.DataFrame | None) -> dict[str, float]:
    """Normalisation ``s_j`` per descriptor: its training standard deviation.

    Without a training table (MicroGen3D weights) or with a constant column:
    0.1 for fractions, and 1 for counts.
    """
    scales = {}
    for name in names:
        s = float(table[name].std(ddof=0)) if table is not None and name in table.columns else 0.0
        if not np.isfinite(s) or s <= 1e-12:
            s = 1.0 if is_count(name) else 0.1
        scales[name] = s
    return scales


def target_distances(mean: Mapping[str, float], targets: Mapping[str, Target], scales: Mapping[str, float]) -> dict[str, float]:
    """``d_j = dist(mean_j, [lo_j, hi_j]) / s_j`` per target (0 when met; ``inf`` when not measured)."""
    out = {}
    for name, target in targets.items():
        value = float(mean.get(name, np.nan))
        if not np.isfinite(value):
            out[name] = float("inf")
            continue
        lo, hi = target.interval
        out[name] = max(lo - value, value - hi, 0.0) / scales[name]
    return out


def score(distances: Mapping[str, float]) -> float:
    """``sqrt(mean_j d_j²)``: 0 when every target is met."""
    d = np.array(list(distances.values()), dtype=float)
    return float(np.sqrt(np.mean(d**2))) if len(d) else 0.0


def uncertainty(std: Mapping[str, float], names: Sequence[str], scales: Mapping[str, float]) -> float:
    """``sqrt(mean_j (std_j / s_j)²)`` over ``names``: the spread of the trial's samples in score units."""
    v = np.array([float(std.get(n, np.nan)) / scales[n] for n in names], dtype=float)
    v = v[np.isfinite(v)]
    return float(np.sqrt(np.mean(v**2))) if len(v) else 0.0


def recipe_violation(recipe_mean: Mapping[str, float], bounds: Mapping[str, Bound]) -> float:
    """Largest violation of the recipe bounds by the mean recipe, relative to ``max(|bound|, 1)`` (``<= 0`` ok)."""
    worst = -1.0
    for name, bound in bounds.items():
        value = float(recipe_mean.get(name, np.nan))
        if not np.isfinite(value):
            return 1.0
        lo, hi = bound.interval
        for edge, excess in ((lo, lo - value), (hi, value - hi)):
            if np.isfinite(edge):
                worst = max(worst, excess / max(abs(edge), 1.0))
    return float(worst)
