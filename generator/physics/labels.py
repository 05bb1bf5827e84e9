"""Phase labels from Cahn-Hilliard fields, and grey levels for HDF5 files / the VAE.

The CH order parameter ``phi(x)`` is the local *donor* fraction, so donor-rich
voxels have a high ``phi``. Labels follow GraSPI: ``0`` donor, ``1`` acceptor,
``2`` mixed. Grey levels (MicroGen3D layout): donor 0.0, mixed 0.5, acceptor 1.0.

Three-phase mixed-band rule
---------------------------
A voxel is *mixed* when its field lies in a band ``|phi - 0.5| < w`` around the
two-phase threshold. The half-width ``w`` is chosen per field:

1. ``w = band_fraction * (hi - lo) / 2`` where ``lo`` / ``hi`` are the 5th /
   95th percentiles of the field (its acceptor-rich and donor-rich bulk
   levels), so the band is the middle third of the field's actual range
   (``band_fraction = 1/3``), whatever stage of coarsening the field is at;
2. capped so that at most ``max_mixed_fraction`` (default 0.3) of the voxels
   are mixed: if the band holds more, ``w`` shrinks to that quantile of
   ``|phi - 0.5|``.

Donor voxels of the three-phase labelling are therefore always donor in the
two-phase labelling (and likewise acceptor), and the mixed phase never
dominates, even for early, barely separated snapshots.
"""

from __future__ import annotations

import numpy as np

from generator.errors import InvalidInputError

DONOR, ACCEPTOR, MIXED = 0, 1, 2
#: Grey level of each label, indexed by label (donor 0.0, acceptor 1.0, mixed 0.5).
GREY_LEVELS = np.array([0.0, 1.0, 0.5], dtype=np.float32)
THRESHOLD = 0.5


def label_two_phase(field: np.ndarray, threshold: float = THRESHOLD) -> np.ndarray:
    """Label a donor-fraction field into donor (0) and acceptor (1).

    Parameters
    ----------
    field
        Local donor fraction, any shape ``(X, Y[, Z])``.
    threshold
        Voxels with ``field > threshold`` are donor.

    Returns
    -------
    np.ndarray
        ``uint8`` labels of the same shape.
    """
    field = np.asarray(field)
    return np.where(field > threshold, DONOR, ACCEPTOR).astype(np.uint8)


def mixed_band_half_width(field: np.ndarray, *, band_fraction: float = 1.0 / 3.0, max_mixed_fraction: float = 0.3) -> float:
    """Half-width ``w`` of the mixed band ``|phi - 0.5| < w`` of one field (see module docstring).

    Parameters
    ----------
    field
        Local donor fraction, any shape.
    band_fraction
        Fraction of the field's 5-95 % range taken by the band.
    max_mixed_fraction
        Largest fraction of voxels the band may hold.

    Returns
    -------
    float
        The half-width (0 for a uniform field).
    """
    if not 0.0 < band_fraction < 1.0:
        raise InvalidInputError(f"band_fraction must lie in (0, 1), got {band_fraction}")
    if not 0.0 < max_mixed_fraction < 1.0:
        raise InvalidInputError(f"max_mixed_fraction must lie in (0, 1), got {max_mixed_fraction}")
    values = np.asarray(field, dtype=np.float64).ravel()
    lo, hi = np.percentile(values, [5.0, 95.0])
    width = band_fraction * (hi - lo) / 2.0
    distance = np.abs(values - THRESHOLD)
    if np.mean(distance < width) > max_mixed_fraction:
        width = float(np.quantile(distance, max_mixed_fraction, method="lower"))
    return float(width)


def label_three_phase(field: np.ndarray, *, band_fraction: float = 1.0 / 3.0, max_mixed_fraction: float = 0.3) -> np.ndarray:
    """Label a donor-fraction field into donor (0), acceptor (1) and mixed (2).

    Parameters
    ----------
    field
        Local donor fraction, any shape ``(X, Y[, Z])``.
    band_fraction, max_mixed_fraction
        The per-field mixed-band rule, see :func:`mixed_band_half_width`.

    Returns
    -------
    np.ndarray
        ``uint8`` labels of the same shape.
    """
    field = np.asarray(field)
    width = mixed_band_half_width(field, band_fraction=band_fraction, max_mixed_fraction=max_mixed_fraction)
    labels = label_two_phase(field)
    labels[np.abs(field.astype(np.float64) - THRESHOLD) < width] = MIXED
    return labels


def labels_to_grey(labels: np.ndarray) -> np.ndarray:
    """Grey levels of a label volume: donor 0.0, mixed 0.5, acceptor 1.0.

    Parameters
    ----------
    labels
        Integer labels in {0, 1, 2}, any shape.

    Returns
    -------
    np.ndarray
        ``float32`` grey levels of the same shape.
    """
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() > MIXED):
        raise InvalidInputError(f"labels must be 0 (donor), 1 (acceptor) or 2 (mixed), found values in [{labels.min()}, {labels.max()}]")
    return GREY_LEVELS[labels.astype(np.intp)]


def grey_to_labels(grey: np.ndarray, n_phases: int) -> np.ndarray:
    """Labels of a grey-level volume (exact levels or a decoder's continuous output).

    Two phases: acceptor where ``grey > 0.5``, else donor. Three phases: the
    nearest of the levels 0.0 (donor), 0.5 (mixed), 1.0 (acceptor), i.e.
    thresholds at 0.25 and 0.75.

    Parameters
    ----------
    grey
        Grey levels in [0, 1], any shape.
    n_phases
        2 or 3.

    Returns
    -------
    np.ndarray
        ``uint8`` labels of the same shape.
    """
    grey = np.asarray(grey)
    if n_phases == 2:
        return np.where(grey > 0.5, ACCEPTOR, DONOR).astype(np.uint8)
    if n_phases == 3:
        labels = np.full(grey.shape, MIXED, dtype=np.uint8)
        labels[grey < 0.25] = DONOR
        labels[grey > 0.75] = ACCEPTOR
        return labels
    raise InvalidInputError(f"n_phases must be 2 or 3, got {n_phases}")
