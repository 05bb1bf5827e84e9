"""Fixtures of the inverse-design tests: a descriptor table measured on real (random-field) volumes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.ndimage import gaussian_filter


def random_field_volumes(n: int, shape: tuple[int, int, int] = (16, 16, 8), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` two-phase volumes thresholded from smoothed noise at donor fractions in [0.25, 0.75].

    Returns the labels ``(n, X, Y, Z)`` and the donor fractions asked for ``(n,)``.
    """
    rng = np.random.default_rng(seed)
    fractions = rng.uniform(0.25, 0.75, n)
    volumes = np.empty((n, *shape), dtype=np.uint8)
    for i, f in enumerate(fractions):
        field = gaussian_filter(rng.standard_normal(shape), sigma=rng.uniform(1.0, 2.5), mode="wrap")
        volumes[i] = (field > np.quantile(field, f)).astype(np.uint8)  # 0 donor below the quantile
    return volumes, fractions


@pytest.fixture(scope="session")
def measured_table() -> pd.DataFrame:
    """GraSPI descriptors of 160 random-field volumes, with a ``series`` column (like a bundle's table)."""
    from generator.descriptors import compute_batch

    volumes, _ = random_field_volumes(160)
    table = pd.DataFrame(compute_batch(list(volumes), n_jobs=1))
    table["series"] = np.arange(len(table)) // 8
    return table
