"""Grey levels of the phases, and labels from a grey field with an explicit threshold or explicit levels.

Convention of this toolkit (and of its HDF5 files): donor 0.0, mixed 0.5,
acceptor 1.0. MicroGen3D's published 3-phase data does not document the grey
value of its mixed phase; 0.5 is the default here because it is the only level
that treats donor and acceptor symmetrically, it is the midpoint the published
2-phase threshold (0.5) already uses, and it is what this toolkit writes. Data
coded otherwise is read with explicit levels (:class:`PhaseLevels`, CLI
``--phase-levels DONOR,MIXED,ACCEPTOR``): each voxel takes the phase of the
nearest level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from generator.errors import InvalidInputError
from generator.physics.labels import ACCEPTOR, DONOR, MIXED


@dataclass(frozen=True)
class PhaseLevels:
    """Grey value of each phase.

    Attributes
    ----------
    donor, mixed, acceptor
        Distinct values in [0, 1] (defaults 0.0, 0.5, 1.0).
    """

    donor: float = 0.0
    mixed: float = 0.5
    acceptor: float = 1.0

    def __post_init__(self) -> None:
        values = (self.donor, self.mixed, self.acceptor)
        if not all(np.isfinite(v) and 0.0 <= v <= 1.0 for v in values):
            raise InvalidInputError(f"--phase-levels: levels must lie in [0, 1], got {','.join(f'{v:g}' for v in values)}")
        if len(set(values)) != 3:
            raise InvalidInputError(f"--phase-levels: the three levels must differ, got {','.join(f'{v:g}' for v in values)}")

    @classmethod
    def parse(cls, text: str) -> PhaseLevels:
        """``"DONOR,MIXED,ACCEPTOR"`` (e.g. ``"0,0.5,1"``) -> :class:`PhaseLevels`."""
        parts = [p.strip() for p in text.replace(":", ",").split(",")]
        try:
            values = [float(p) for p in parts]
        except ValueError:
            values = []
        if len(values) != 3:
            raise InvalidInputError(f"--phase-levels: expected DONOR,MIXED,ACCEPTOR (e.g. 0,0.5,1), got {text!r}")
        return cls(*values)

    def by_label(self) -> np.ndarray:
        """``(3,)`` float32 grey value indexed by label (0 donor, 1 acceptor, 2 mixed)."""
        out = np.empty(3, dtype=np.float32)
        out[DONOR], out[ACCEPTOR], out[MIXED] = self.donor, self.acceptor, self.mixed
        return out

    def to_list(self) -> list[float]:
        """``[donor, mixed, acceptor]``."""
        return [self.donor, self.mixed, self.acceptor]


#: The toolkit's levels: donor 0.0, mixed 0.5, acceptor 1.0.
DEFAULT_LEVELS = PhaseLevels()


def check_threshold(threshold: float) -> float:
    """Return ``threshold`` when it lies strictly inside (0, 1), else raise :class:`InvalidInputError`."""
    if not (np.isfinite(threshold) and 0.0 < threshold < 1.0):
        raise InvalidInputError(f"--threshold: must lie strictly between 0 and 1, got {threshold:g}")
    return float(threshold)


def labels_from_grey(grey: np.ndarray, n_phases: int, *, threshold: float | None = None,
                     levels: PhaseLevels | None = None) -> np.ndarray:
    """Phase labels of a grey field.

    Parameters
    ----------
    grey
        Grey values, any shape (e.g. ``(B, X, Y, Z)``).
    n_phases
        2: acceptor (1) where ``grey > threshold`` (default 0.5), else donor (0).
        3: the phase of the nearest of ``levels`` (default :data:`DEFAULT_LEVELS`).
    threshold
        Two phases only.
    levels
        Three phases only.

    Returns
    -------
    np.ndarray
        ``uint8`` labels of the same shape.

    Raises
    ------
    InvalidInputError
        A threshold for three phases, levels for two, or values out of range.
    """
    grey = np.asarray(grey)
    if n_phases == 2:
        if levels is not None:
            raise InvalidInputError("--phase-levels: applies to three-phase volumes; two-phase ones take --threshold")
        cut = 0.5 if threshold is None else check_threshold(threshold)
        return np.where(grey > cut, ACCEPTOR, DONOR).astype(np.uint8)
    if n_phases == 3:
        if threshold is not None:
            raise InvalidInputError("--threshold: applies to two-phase volumes; three-phase ones take --phase-levels DONOR,MIXED,ACCEPTOR")
        table = (levels or DEFAULT_LEVELS).by_label()
        distance = np.abs(grey[..., None].astype(np.float32) - table)
        return distance.argmin(axis=-1).astype(np.uint8)
    raise InvalidInputError(f"n_phases must be 2 or 3, got {n_phases}")


def grey_from_labels(labels: np.ndarray, levels: PhaseLevels | None = None) -> np.ndarray:
    """``float32`` grey values of labels (0 donor, 1 acceptor, 2 mixed) with ``levels``."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() > MIXED):
        raise InvalidInputError(f"labels must be 0 (donor), 1 (acceptor) or 2 (mixed), found values in [{labels.min()}, {labels.max()}]")
    return (levels or DEFAULT_LEVELS).by_label()[labels.astype(np.intp)]
