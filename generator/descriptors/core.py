"""GraSPI morphology descriptors of two- and three-phase label volumes.

The definitions (and their GraSPI quirks) are those of the C++ GraSPI, see
``docs/descriptors.md``. Heavy lifting is done by the numba kernels of
:mod:`generator.descriptors._kernels` on the implicit 26-neighbour voxel graph.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import generator.descriptors._kernels as _kernels
from generator.descriptors.registry import ALIASES, descriptor_names
from generator.errors import InvalidInputError

DONOR, ACCEPTOR, MIXED = 0, 1, 2

#: Exciton diffusion length of DISS (physical units, compared with distances that include the pixel size).
DISS_LENGTH = 10.0
#: Light absorption length of ABS_wf_D (physical units).
ABS_LENGTH = 100.0


def as_labels(volume: np.ndarray, *, threshold: float | None = None, name: str = "labels") -> np.ndarray:
    """Check and convert a volume to ``uint8`` labels in {0, 1, 2}.

    Parameters
    ----------
    volume
        Integer, boolean or float array ``(X, Y[, Z])``. Floats must hold
        exactly 0, 1 or 2 unless ``threshold`` is given.
    threshold
        When given, threshold a grey-level (or any real) volume into two
        phases: values ``> threshold`` are acceptor (1), the others donor (0)
        (the grey-level convention: donor 0.0, acceptor 1.0).
    name
        What to call the volume in error messages (a file name, say).

    Returns
    -------
    np.ndarray
        ``uint8`` labels, same shape.

    Raises
    ------
    InvalidInputError
        On NaN, values outside {0, 1, 2}, or a shape that is not 2-D or 3-D.
    """
    arr = np.asarray(volume)
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise InvalidInputError(f"{name}: expected a non-empty 2-D (x, y) or 3-D (x, y, z) volume, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise InvalidInputError(f"{name}: unsupported dtype {arr.dtype}; expected integer labels or real values")
    if np.issubdtype(arr.dtype, np.floating) and np.isnan(arr).any():
        raise InvalidInputError(f"{name}: holds NaN values; expected labels 0 (donor), 1 (acceptor), 2 (mixed)")
    if threshold is not None:
        if not math.isfinite(threshold):
            raise InvalidInputError(f"threshold must be a finite number, got {threshold}")
        return np.where(arr > threshold, ACCEPTOR, DONOR).astype(np.uint8)
    if arr.dtype == np.uint8:
        bad = arr > MIXED
    else:
        bad = (arr != DONOR) & (arr != ACCEPTOR) & (arr != MIXED)
    if bad.any():
        value = arr[bad].flat[0].item()
        hint = " (threshold grey levels first, e.g. --threshold 0.5)" if np.issubdtype(arr.dtype, np.floating) else ""
        raise InvalidInputError(f"{name}: found value {value!r}; labels must be 0 (donor), 1 (acceptor) or 2 (mixed){hint}")
    return arr.astype(np.uint8)


def _electrode_last(labels: np.ndarray, periodic: bool) -> tuple[np.ndarray, bool, bool]:
    """Shape a label array as ``(nx, ny, nz)`` with z the electrode axis, and the x / y wrap flags.

    2-D images ``(nx, ny)`` or ``(nx, ny, 1)`` become ``(nx, 1, ny)``: GraSPI's
    2-D graph (8 neighbours, electrodes at y = 0 and y = ny - 1, x periodic
    only). An axis shorter than 3 never wraps (its wrapped neighbours would be
    the voxel itself or a neighbour twice).
    """
    if labels.ndim == 3 and labels.shape[2] == 1:
        labels = labels[:, :, 0]
    if labels.ndim == 2:
        vol = labels[:, None, :]
        return np.ascontiguousarray(vol), periodic and vol.shape[0] >= 3, False
    vol = np.ascontiguousarray(labels)
    return vol, periodic and vol.shape[0] >= 3, periodic and vol.shape[1] >= 3


def _ratio(num: float, den: float) -> float:
    """``num / den``, or 0.0 where GraSPI would divide by zero (see the docs)."""
    return float(num) / float(den) if den else 0.0


def _straight_path_fraction(dist: np.ndarray, shape: tuple[int, int, int], source_layer: int, pixel_size: float, n_reachable: int) -> float:
    """GraSPI's fraction of reached voxels with tortuosity 1: ``|d / h - 1| < 1 / nz`` (t = 1 where h = 0)."""
    nz = shape[2]
    d = dist.reshape(shape)
    height = np.abs(np.arange(nz, dtype=np.float64) - source_layer) * pixel_size
    finite = np.isfinite(d)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = d.astype(np.float64) / height
    straight = finite & ((np.abs(t - 1.0) < 1.0 / nz) | (height < 1e-20))
    return _ratio(np.count_nonzero(straight), n_reachable)


def _diss(dist: np.ndarray, n_phase: int) -> tuple[float, float]:
    """Weighted and plain fractions of voxels within the exciton diffusion length of the interface."""
    d = dist[(dist > 0) & (dist < DISS_LENGTH)].astype(np.float64)
    weighted = 6.265 * np.exp(-(((d + 23.0) / 17.17) ** 2))
    return _ratio(weighted.sum(), n_phase), _ratio(d.size, n_phase)


class _Volume:
    """One label volume prepared for the kernels, with its components and counts."""

    def __init__(self, labels: np.ndarray, pixel_size: float, periodic: bool):
        self.vol, self.px, self.py = _electrode_last(labels, periodic)
        self.shape = self.vol.shape
        self.nx, self.ny, self.nz = self.shape
        self.flat = self.vol.ravel()
        self.s = float(pixel_size)
        self.weights = np.array([0.0, self.s, self.s * math.sqrt(2.0), self.s * math.sqrt(3.0)], dtype=np.float32)
        # Distance from an interface voxel to GraSPI's interface meta-vertex: half the edge weight, stored as float.
        self.half_weights = np.array([0.0, self.s / 2, self.s * math.sqrt(2.0) / 2, self.s * math.sqrt(3.0) / 2], dtype=np.float32)
        self.counts = np.bincount(self.flat, minlength=3)[:3]
        comp, n_comp = _kernels.connected_components(self.flat, self.nx, self.ny, self.nz, self.px, self.py)
        self.comp = comp
        any_voxel = np.empty(n_comp, dtype=np.int64)
        any_voxel[comp] = np.arange(comp.size)  # every voxel of a component has its phase
        self.comp_phase = self.flat[any_voxel]
        self.comp_size = np.bincount(comp, minlength=n_comp)
        self.comp_top = np.zeros(n_comp, dtype=bool)
        self.comp_top[comp.reshape(self.shape)[:, :, -1].ravel()] = True
        self.comp_bottom = np.zeros(n_comp, dtype=bool)
        self.comp_bottom[comp.reshape(self.shape)[:, :, 0].ravel()] = True

    def args(self) -> tuple:
        return self.flat, self.nx, self.ny, self.nz, self.px, self.py

    def n_components(self, phase: int, where: np.ndarray | None = None) -> int:
        mask = self.comp_phase == phase
        return int(np.count_nonzero(mask if where is None else mask & where))

    def n_in_components(self, phase: int, where: np.ndarray) -> int:
        return int(self.comp_size[(self.comp_phase == phase) & where].sum())

    def voxels_in(self, where: np.ndarray) -> np.ndarray:
        """Boolean voxel mask (flat) of the components selected by ``where``."""
        return where[self.comp]

    def layer_sources(self, phase: int, layer: int) -> np.ndarray:
        idx = np.flatnonzero(self.vol[:, :, layer].ravel() == phase)
        return idx * self.nz + layer

    def distances_from_layer(self, phase: int, layer: int, link_layer: int = -1) -> np.ndarray:
        """Geodesic distances inside ``phase`` from its voxels in ``layer`` (an electrode), far enough for tortuosity 1."""
        sources = self.layer_sources(phase, layer)
        # t = 1 needs d - h < h / nz <= (nz - 1) s / nz: no voxel farther (or reached only through a
        # voxel with a larger excess d - h) can count; a small margin keeps float rounding on the safe side.
        max_excess = (self.nz - 1) * self.s / self.nz * (1 + 1e-6) + 1e-6
        cutoff = (self.nz - 1) * self.s + max_excess
        return _kernels.geodesic_distances(*self.args(), phase, sources, np.zeros(sources.size, np.float32), self.weights, cutoff,
                                           link_layer, layer, max_excess)

    def distances_from_interface(self, phase: int, contact: np.ndarray) -> np.ndarray:
        """Geodesic distances inside ``phase`` from GraSPI's interface meta-vertex (contact class -> half weight)."""
        sources = np.flatnonzero(contact)
        start = self.half_weights[contact[sources]]
        cutoff = DISS_LENGTH * (1 + 1e-6)
        return _kernels.geodesic_distances(*self.args(), phase, sources.astype(np.int64), start, self.weights, cutoff, -1, 0, np.inf)

    def face_pairs(self, d_mask: np.ndarray, a_mask: np.ndarray) -> tuple[int, int]:
        """Face-adjacent donor-acceptor pairs, and those whose donor touches the top and acceptor the bottom.

        ``d_mask`` / ``a_mask`` are (nx, ny, nz) booleans of donors in top-touching
        components and acceptors in bottom-touching ones.
        """
        n_pairs = n_conn = 0
        for axis, wraps in ((0, self.px), (1, self.py), (2, False)):
            if self.shape[axis] < 2:
                continue
            (la, lb), (da, db), (aa, ab) = (_face_neighbours(x, axis, wraps) for x in (self.vol, d_mask, a_mask))
            d_then_a = (la == DONOR) & (lb == ACCEPTOR)
            a_then_d = (la == ACCEPTOR) & (lb == DONOR)
            n_pairs += int(np.count_nonzero(d_then_a) + np.count_nonzero(a_then_d))
            n_conn += int(np.count_nonzero(d_then_a & da & ab) + np.count_nonzero(a_then_d & aa & db))
        return n_pairs, n_conn


def _face_neighbours(a: np.ndarray, axis: int, wraps: bool) -> tuple[np.ndarray, np.ndarray]:
    """Two aligned arrays holding every voxel and its +1 neighbour along ``axis`` (wrapping or not)."""
    if wraps:
        return a, np.roll(a, -1, axis=axis)
    head = tuple(slice(None, -1) if i == axis else slice(None) for i in range(a.ndim))
    tail = tuple(slice(1, None) if i == axis else slice(None) for i in range(a.ndim))
    return a[head], a[tail]


def compute(labels: np.ndarray, *, pixel_size: float = 1.0, periodic: bool = False, n_phases: int | None = None) -> dict[str, float]:
    """GraSPI descriptors of one label volume.

    Parameters
    ----------
    labels
        Integer labels ``(X, Y, Z)``: 0 donor, 1 acceptor, 2 mixed. The last
        axis is the electrode axis (``z = 0`` bottom / cathode, ``z = Z - 1``
        top / anode). 2-D images are ``(X, Y)`` or ``(X, Y, 1)``, with y the
        electrode axis. Floats holding exactly 0, 1, 2 are accepted.
    pixel_size
        Physical size of a voxel: scales every distance (DISS's 10 and
        ABS's 100 are physical lengths).
    periodic
        Wrap x and y (x only in 2-D); the electrode axis never wraps.
    n_phases
        2 or 3; by default 3 when the volume holds a mixed voxel, else 2.

    Returns
    -------
    dict[str, float]
        Two-phase: the 22 GraSPI descriptors plus ``norm_STAT_e`` (ours).
        Three-phase: see :data:`~generator.descriptors.registry.THREE_PHASE_NAMES` and
        :data:`~generator.descriptors.registry.ALIASES`.
        Where GraSPI would divide by zero (no donor, no interface, no donor
        reaching the top, ...) the fraction is 0.0.

    Raises
    ------
    InvalidInputError
        On labels outside {0, 1, 2}, a bad shape, a non-positive pixel size,
        or mixed voxels with ``n_phases=2``.
    """
    if not (isinstance(pixel_size, (int, float, np.floating, np.integer)) and math.isfinite(pixel_size) and pixel_size > 0):
        raise InvalidInputError(f"pixel_size must be a positive number, got {pixel_size!r}")
    lab = as_labels(labels)
    has_mixed = bool((lab == MIXED).any())
    if n_phases is None:
        n_phases = 3 if has_mixed else 2
    if n_phases not in (2, 3):
        raise InvalidInputError(f"n_phases must be 2 or 3, got {n_phases}")
    if n_phases == 2 and has_mixed:
        raise InvalidInputError("labels: a two-phase volume holds mixed (2) voxels; pass n_phases=3")
    v = _Volume(lab, float(pixel_size), bool(periodic))
    n_d, n_a, n_m = (int(c) for c in v.counts)
    n_all = v.flat.size
    top, bottom = v.nz - 1, 0
    out: dict[str, float] = {}

    # ---- counts, components, absorption -------------------------------------------------
    out["STAT_n"] = n_d + n_a
    out["STAT_n_D"], out["STAT_n_A"] = n_d, n_a
    out["STAT_CC_D"], out["STAT_CC_A"] = v.n_components(DONOR), v.n_components(ACCEPTOR)
    out["STAT_CC_D_An"] = v.n_components(DONOR, v.comp_top)
    out["STAT_CC_A_Ca"] = v.n_components(ACCEPTOR, v.comp_bottom)
    donors_per_layer = np.count_nonzero(v.vol == DONOR, axis=(0, 1))
    depth = (v.nz - np.arange(v.nz)) * v.s
    out["ABS_wf_D"] = float(np.sum(donors_per_layer * np.exp(-depth / ABS_LENGTH))) / n_all
    out["ABS_f_D"] = n_d / n_all

    # ---- interfaces --------------------------------------------------------------------
    d_contact = _kernels.contact_class(*v.args(), DONOR, ACCEPTOR)
    a_contact = _kernels.contact_class(*v.args(), ACCEPTOR, DONOR)
    d_top = v.voxels_in(v.comp_top) & (v.flat == DONOR)
    a_bottom = v.voxels_in(v.comp_bottom) & (v.flat == ACCEPTOR)
    n_pairs, n_conn = v.face_pairs(d_top.reshape(v.shape), a_bottom.reshape(v.shape))

    # ---- exciton dissociation -------------------------------------------------------------
    out["DISS_wf10_D"], out["DISS_f10_D"] = _diss(v.distances_from_interface(DONOR, d_contact), n_d)

    # ---- charge transport ----------------------------------------------------------------
    n_d_top = v.n_in_components(DONOR, v.comp_top)
    n_a_bottom = v.n_in_components(ACCEPTOR, v.comp_bottom)
    out["CT_f_e_conn"] = _ratio(n_conn, n_pairs)
    out["CT_f_conn_D_An"] = _ratio(n_d_top, n_d)
    out["CT_f_conn_A_Ca"] = _ratio(n_a_bottom, n_a)
    out["CT_e_conn"] = n_conn
    out["CT_e_D_An"] = int(np.count_nonzero(d_contact.astype(bool) & d_top))
    out["CT_e_A_Ca"] = int(np.count_nonzero(a_contact.astype(bool) & a_bottom))
    out["CT_f_D_tort1"] = _straight_path_fraction(v.distances_from_layer(DONOR, top), v.shape, top, v.s, n_d_top)
    out["CT_f_A_tort1"] = _straight_path_fraction(v.distances_from_layer(ACCEPTOR, bottom), v.shape, bottom, v.s, n_a_bottom)
    out["CT_n_D_adj_An"] = int(np.count_nonzero(v.vol[:, :, top] == DONOR)) + 1
    out["CT_n_A_adj_Ca"] = int(np.count_nonzero(v.vol[:, :, bottom] == ACCEPTOR)) + 1
    out["STAT_e"] = n_pairs

    if n_phases == 2:
        out["norm_STAT_e"] = _ratio(n_pairs, n_all)
    else:
        out["STAT_n_M"] = n_m
        out["STAT_CC_M"] = v.n_components(MIXED)
        out["STAT_CC_M_An"] = v.n_components(MIXED, v.comp_top)
        out["STAT_CC_M_Ca"] = v.n_components(MIXED, v.comp_bottom)
        out["ABS_f_A"] = n_a / n_all
        out["ABS_f_M"] = n_m / n_all
        m_contact = _kernels.contact_class(*v.args(), MIXED, ACCEPTOR)
        out["DISS_wf10_M"], out["DISS_f10_M"] = _diss(v.distances_from_interface(MIXED, m_contact), n_m)
        # Mixed paths reach an electrode directly, or through a mixed component touching both
        # electrodes and the other electrode's meta-vertex (GraSPI's 3-phase graph).
        spanning = bool(np.any((v.comp_phase == MIXED) & v.comp_top & v.comp_bottom))
        m_reach_top = v.n_in_components(MIXED, v.comp_top | (v.comp_bottom if spanning else False))
        m_reach_bottom = v.n_in_components(MIXED, v.comp_bottom | (v.comp_top if spanning else False))
        out["CT_f_M_tort1_An"] = _straight_path_fraction(v.distances_from_layer(MIXED, top, link_layer=bottom), v.shape, top, v.s, m_reach_top)
        out["CT_f_M_tort1_Ca"] = _straight_path_fraction(v.distances_from_layer(MIXED, bottom, link_layer=top), v.shape, bottom, v.s, m_reach_bottom)
        for alias, name in ALIASES.items():
            out[alias] = out[name]
    return {name: float(out[name]) for name in descriptor_names(n_phases)}


def compute_batch(volumes: np.ndarray | Sequence[np.ndarray] | Iterable[np.ndarray], *, pixel_size: float = 1.0, periodic: bool = False,
                  n_jobs: int | None = None, n_phases: int | None = None) -> list[dict[str, float]]:
    """:func:`compute` for many volumes, on ``n_jobs`` threads (the kernels release the GIL).

    Parameters
    ----------
    volumes
        An array ``(n, X, Y, Z)`` (or ``(n, X, Y)``) or a sequence of label volumes.
    pixel_size, periodic, n_phases
        As in :func:`compute` (the same for every volume).
    n_jobs
        Threads; default every core (``os.cpu_count()``).

    Returns
    -------
    list of dict
        One descriptor dict per volume, in order.
    """
    items = list(volumes)
    workers = max(1, min(len(items), n_jobs or os.cpu_count() or 1))
    run = lambda lab: compute(lab, pixel_size=pixel_size, periodic=periodic, n_phases=n_phases)  # noqa: E731
    if workers == 1:
        return [run(lab) for lab in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(run, items))
