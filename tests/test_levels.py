"""Labels from grey fields with an explicit threshold (two phases) or explicit phase levels (three phases)."""

from __future__ import annotations

import numpy as np
import pytest

from generator.errors import InvalidInputError
from generator.levels import DEFAULT_LEVELS, PhaseLevels, grey_from_labels, labels_from_grey
from generator.physics.labels import grey_to_labels


def test_two_phase_threshold_moves_the_cut() -> None:
    grey = np.array([0.1, 0.35, 0.45, 0.55, 0.9], dtype=np.float32)
    assert labels_from_grey(grey, 2).tolist() == [0, 0, 0, 1, 1]
    assert labels_from_grey(grey, 2, threshold=0.4).tolist() == [0, 0, 1, 1, 1]
    assert labels_from_grey(grey, 2, threshold=0.6).tolist() == [0, 0, 0, 0, 1]


def test_default_levels_agree_with_the_toolkits_rule() -> None:
    grey = np.random.default_rng(0).uniform(0, 1, (6, 7, 5)).astype(np.float32)
    grey = grey[np.abs(np.abs(grey - 0.5) - 0.25) > 1e-6]  # away from the exact midpoints
    np.testing.assert_array_equal(labels_from_grey(grey, 3), grey_to_labels(grey, 3))
    assert DEFAULT_LEVELS.to_list() == [0.0, 0.5, 1.0]


def test_other_levels_decode_data_coded_otherwise() -> None:
    labels = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)
    levels = PhaseLevels.parse("0,0.3,1")
    grey = grey_from_labels(labels, levels)
    assert grey.ravel().tolist() == pytest.approx([0.0, 1.0, 0.3, 0.3, 1.0, 0.0])
    np.testing.assert_array_equal(labels_from_grey(grey + 0.05, 3, levels=levels), labels)
    # with the default levels, 0.35 would be read as mixed too, but 0.2 (mixed coded 0.2) would be donor
    assert labels_from_grey(np.array([0.2]), 3).tolist() == [0]
    assert labels_from_grey(np.array([0.2]), 3, levels=PhaseLevels(0.0, 0.2, 1.0)).tolist() == [2]


def test_bad_threshold_and_levels() -> None:
    with pytest.raises(InvalidInputError, match="--threshold"):
        labels_from_grey(np.zeros(3), 2, threshold=1.5)
    with pytest.raises(InvalidInputError, match="--threshold: applies to two-phase"):
        labels_from_grey(np.zeros(3), 3, threshold=0.5)
    with pytest.raises(InvalidInputError, match="--phase-levels: applies to three-phase"):
        labels_from_grey(np.zeros(3), 2, levels=DEFAULT_LEVELS)
    for text in ("0,0.5", "0,x,1", "0,0.5,0.5", "0,0.5,2"):
        with pytest.raises(InvalidInputError, match="--phase-levels"):
            PhaseLevels.parse(text)
