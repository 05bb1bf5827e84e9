"""GraSPI-exact morphology descriptors, fast.

Public API: :func:`compute` (one volume), :func:`compute_batch` (many, on
threads), :func:`describe_dataset` (label every sample of an HDF5 dataset,
resumable). See ``docs/descriptors.md`` for every descriptor's definition.
"""

from generator.descriptors.core import (
    ALIASES,
    THREE_PHASE_NAMES,
    TWO_PHASE_NAMES,
    as_labels,
    compute,
    compute_batch,
    descriptor_names,
)
from generator.descriptors.dataset import describe_dataset

__all__ = [
    "ALIASES",
    "THREE_PHASE_NAMES",
    "TWO_PHASE_NAMES",
    "as_labels",
    "compute",
    "compute_batch",
    "describe_dataset",
    "descriptor_names",
]
