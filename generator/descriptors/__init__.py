"""GraSPI-exact morphology descriptors, fast.

Public API: :func:`compute` (one volume), :func:`compute_batch` (many, on
threads), :func:`describe_dataset` (label every sample of an HDF5 dataset,
resumable), and the registry of every descriptor's name, kind (fraction or
count), domain and words (:mod:`generator.descriptors.registry`). See
``docs/descriptors.md`` for every descriptor's definition.
"""

from generator.descriptors.core import as_labels, compute, compute_batch
from generator.descriptors.dataset import describe_dataset
from generator.descriptors.registry import (
    ALIASES,
    DESCRIPTORS,
    NON_DESCRIPTOR_COLUMNS,
    THREE_PHASE_NAMES,
    TWO_PHASE_NAMES,
    Descriptor,
    descriptor,
    descriptor_names,
    is_count,
    is_descriptor_column,
    words,
)

__all__ = [
    "ALIASES",
    "DESCRIPTORS",
    "NON_DESCRIPTOR_COLUMNS",
    "THREE_PHASE_NAMES",
    "TWO_PHASE_NAMES",
    "Descriptor",
    "as_labels",
    "compute",
    "compute_batch",
    "describe_dataset",
    "descriptor",
    "descriptor_names",
    "is_count",
    "is_descriptor_column",
    "words",
]
