"""Phase labels and grey levels."""

from __future__ import annotations

import numpy as np
import pytest

from generator.errors import InvalidInputError
from generator.physics.labels import (
    grey_to_labels,
    label_three_phase,
    label_two_phase,
    labels_to_grey,
    mixed_band_half_width,
)


def _field(seed: int = 0, contrast: float = 0.4) -> np.ndarray:
    """A smooth two-phase-like donor fraction field in (0, 1)."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((24, 24, 12))
    smooth = np.real(np.fft.ifftn(np.fft.fftn(noise) * np.exp(-0.5 * sum(np.meshgrid(*[np.fft.fftfreq(n) ** 2 * 200 for n in noise.shape], indexing="ij")))))
    return 0.5 + contrast * np.tanh(smooth / smooth.std() * 2)


def test_two_phase_threshold_and_donor_is_high_phi():
    field = np.array([[0.1, 0.49], [0.51, 0.9]])
    np.testing.assert_array_equal(label_two_phase(field), [[1, 1], [0, 0]])
    assert label_two_phase(field).dtype == np.uint8


@pytest.mark.parametrize("contrast", [0.45, 0.05])
def test_three_phase_refines_two_phase_and_mixed_does_not_dominate(contrast):
    field = _field(contrast=contrast)
    two = label_two_phase(field)
    three = label_three_phase(field)
    assert set(np.unique(three)) == {0, 1, 2}
    mixed = three == 2
    assert 0.0 < mixed.mean() <= 0.3 + 1e-9
    np.testing.assert_array_equal(three[~mixed], two[~mixed])
    # the mixed voxels are exactly those closest to the 0.5 threshold
    assert np.abs(field[mixed] - 0.5).max() <= np.abs(field[~mixed] - 0.5).min()


def test_band_is_middle_third_of_range_for_well_separated_field():
    field = _field(contrast=0.45)
    lo, hi = np.percentile(field, [5, 95])
    width = mixed_band_half_width(field)
    if np.mean(np.abs(field - 0.5) < (hi - lo) / 6) <= 0.3:
        assert width == pytest.approx((hi - lo) / 6)
    assert mixed_band_half_width(np.full((4, 4, 4), 0.3)) == 0.0


def test_grey_round_trip_and_levels():
    labels = np.array([0, 1, 2, 2, 0], dtype=np.uint8)
    grey = labels_to_grey(labels)
    np.testing.assert_array_equal(grey, [0.0, 1.0, 0.5, 0.5, 0.0])
    assert grey.dtype == np.float32
    np.testing.assert_array_equal(grey_to_labels(grey, 3), labels)
    np.testing.assert_array_equal(grey_to_labels(np.array([0.1, 0.49, 0.51, 0.9]), 2), [0, 0, 1, 1])
    np.testing.assert_array_equal(grey_to_labels(np.array([0.2, 0.3, 0.7, 0.8]), 3), [0, 2, 2, 1])


def test_bad_inputs():
    with pytest.raises(InvalidInputError, match="n_phases"):
        grey_to_labels(np.zeros(3), 4)
    with pytest.raises(InvalidInputError, match="labels must be"):
        labels_to_grey(np.array([0, 3]))
