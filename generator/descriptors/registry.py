"""The descriptor registry: every measured descriptor's name, kind, domain and words, in one place.

Everything that needs to know about a descriptor reads it here: which names
:func:`generator.descriptors.compute` returns (:func:`descriptor_names`),
MicroGen3D's aliases (:data:`ALIASES`), which are counts rather than
fractions (:func:`is_count`; a count's targets may exceed 1), each one's
valid domain, its plain-language name for messages and the dashboards
(:func:`words`), and which columns of a descriptor table are bookkeeping, not
descriptors (:data:`NON_DESCRIPTOR_COLUMNS`). ``docs/descriptors.md`` defines
each descriptor; the recipe variables are defined in :mod:`generator.physics.recipes`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from generator.errors import InvalidInputError
from generator.physics.recipes import RECIPE_NAMES, RECIPE_VARIABLES

#: The 22 two-phase descriptors, in GraSPI's order (``CT_n_*`` last).
TWO_PHASE_NAMES: tuple[str, ...] = (
    "STAT_n", "STAT_e", "STAT_n_D", "STAT_n_A", "STAT_CC_D", "STAT_CC_A", "STAT_CC_D_An", "STAT_CC_A_Ca",
    "ABS_wf_D", "ABS_f_D", "DISS_wf10_D", "DISS_f10_D",
    "CT_f_e_conn", "CT_f_conn_D_An", "CT_f_conn_A_Ca", "CT_e_conn", "CT_e_D_An", "CT_e_A_Ca",
    "CT_f_D_tort1", "CT_f_A_tort1", "CT_n_D_adj_An", "CT_n_A_adj_Ca",
)
#: Ours, not GraSPI's: STAT_e divided by the number of voxels (MicroGen3D's ``norm_STAT_e`` is unpublished).
OUR_TWO_PHASE_NAMES: tuple[str, ...] = ("norm_STAT_e",)
#: Three-phase descriptors (GraSPI's names where GraSPI has one, ``_M`` for the mixed phase).
THREE_PHASE_NAMES: tuple[str, ...] = (
    "STAT_n", "STAT_e", "STAT_n_D", "STAT_n_A", "STAT_n_M",
    "STAT_CC_D", "STAT_CC_A", "STAT_CC_M", "STAT_CC_D_An", "STAT_CC_A_Ca", "STAT_CC_M_An", "STAT_CC_M_Ca",
    "ABS_wf_D", "ABS_f_D", "ABS_f_A", "ABS_f_M",
    "DISS_wf10_D", "DISS_f10_D", "DISS_wf10_M", "DISS_f10_M",
    "CT_f_e_conn", "CT_f_conn_D_An", "CT_f_conn_A_Ca", "CT_e_conn", "CT_e_D_An", "CT_e_A_Ca",
    "CT_f_D_tort1", "CT_f_A_tort1", "CT_f_M_tort1_An", "CT_f_M_tort1_Ca", "CT_n_D_adj_An", "CT_n_A_adj_Ca",
)
#: MicroGen3D's three-phase attribute names, as aliases of ours.
ALIASES: dict[str, str] = {
    "vol_frac_D": "ABS_f_D",
    "vol_frac_M": "ABS_f_M",
    "tortuosity_D": "CT_f_D_tort1",
    "tortuosity_A": "CT_f_A_tort1",
}

#: Name prefixes of counts (not fractions): ``STAT_*`` (voxels, pairs, components), ``CT_n_*``, ``CT_e_*``.
COUNT_PREFIXES = ("STAT_", "CT_n_", "CT_e_")

#: Columns of descriptor tables (training data, trials) that identify a sample or a run, not descriptors.
BOOKKEEPING_COLUMNS = frozenset({"series", "snapshot", "time", "sample", "key", "seed", "step"})
#: Columns that are not descriptors: bookkeeping and the recipe (:data:`generator.physics.recipes.RECIPE_NAMES`).
NON_DESCRIPTOR_COLUMNS = BOOKKEEPING_COLUMNS | frozenset(RECIPE_NAMES)

#: Plain-language names (the glossary), for messages and the dashboards.
_WORDS = {
    "ABS_f_D": "donor volume fraction",
    "vol_frac_D": "donor volume fraction",
    "vol_frac_M": "mixed-phase volume fraction",
    "ABS_wf_D": "weighted donor fraction",
    "CT_f_D_tort1": "donor straight-path fraction",
    "CT_f_A_tort1": "acceptor straight-path fraction",
    "tortuosity_D": "donor straight-path fraction",
    "tortuosity_A": "acceptor straight-path fraction",
    "STAT_e": "donor-acceptor interface",
    "norm_STAT_e": "normalised donor-acceptor interface",
    "CT_f_e_conn": "fraction of the interface with paths to both electrodes",
    "CT_f_conn_D_An": "fraction of donor connected to the anode",
    "CT_f_conn_A_Ca": "fraction of acceptor connected to the cathode",
    "DISS_f10_D": "fraction of donor within 10 of the interface",
    "DISS_wf10_D": "weighted exciton-dissociation fraction",
}

Kind = Literal["fraction", "count"]


@dataclass(frozen=True)
class Descriptor:
    """One registered descriptor.

    Attributes
    ----------
    name
        As :func:`generator.descriptors.compute` returns it.
    kind
        ``"fraction"`` (intensive: a fraction in [0, 1], or a ratio per voxel) or
        ``"count"`` (a non-negative number of voxels, pairs or components, which grows with the film).
    domain
        ``(lo, hi)``: its valid values, ends included.
    words
        Its name in words, or ``None`` when it has none.
    n_phases
        The volumes it is measured on: ``(2,)``, ``(3,)`` or ``(2, 3)``.
    alias_of
        For MicroGen3D's names (:data:`ALIASES`), the descriptor it repeats.
    """

    name: str
    kind: Kind
    domain: tuple[float, float]
    words: str | None
    n_phases: tuple[int, ...]
    alias_of: str | None = None


def is_count(name: str) -> bool:
    """Whether ``name`` is a count (``STAT_e``, ``CT_n_D_adj_An``, ...) rather than a fraction in [0, 1]."""
    return name.startswith(COUNT_PREFIXES)


def descriptor_names(n_phases: int) -> tuple[str, ...]:
    """Keys of :func:`compute`'s result for a two- or three-phase volume, in order.

    Parameters
    ----------
    n_phases
        2 or 3.

    Returns
    -------
    tuple of str
    """
    if n_phases == 2:
        return TWO_PHASE_NAMES + OUR_TWO_PHASE_NAMES
    if n_phases == 3:
        return THREE_PHASE_NAMES + tuple(ALIASES)
    raise InvalidInputError(f"n_phases must be 2 or 3, got {n_phases}")


#: Domains other than a fraction's [0, 1] or a count's [0, inf).
_DOMAINS = {"norm_STAT_e": (0.0, 3.0)}  # D-A faces per voxel: at most 3 (each voxel's +x, +y, +z faces)


def _registry() -> dict[str, Descriptor]:
    phases: dict[str, tuple[int, ...]] = {}
    for n, names in ((2, descriptor_names(2)), (3, descriptor_names(3))):
        for name in names:
            phases[name] = phases.get(name, ()) + (n,)
    return {
        name: Descriptor(name=name, kind="count" if is_count(name) else "fraction",
                         domain=_DOMAINS.get(name, (0.0, math.inf) if is_count(name) else (0.0, 1.0)), words=_WORDS.get(name),
                         n_phases=n_phases, alias_of=ALIASES.get(name))
        for name, n_phases in phases.items()
    }


#: Every descriptor by name (two- and three-phase, aliases included).
DESCRIPTORS: dict[str, Descriptor] = _registry()


def descriptor(name: str) -> Descriptor:
    """The registered descriptor ``name``.

    Raises
    ------
    InvalidInputError
        When no descriptor has that name.
    """
    try:
        return DESCRIPTORS[name]
    except KeyError:
        raise InvalidInputError(f"descriptor: unknown descriptor {name!r} (known: {', '.join(sorted(DESCRIPTORS))})") from None


def is_descriptor_column(name: str) -> bool:
    """Whether a table column ``name`` holds a descriptor (not bookkeeping such as ``series`` or a recipe variable)."""
    return name not in NON_DESCRIPTOR_COLUMNS


def words(name: str) -> str:
    """A column's name in words (``ABS_f_D`` -> ``donor volume fraction``, ``phi`` -> ``blend ratio``), or the name itself.

    Descriptors have their words here, recipe variables in
    :data:`generator.physics.recipes.RECIPE`.
    """
    if name in RECIPE_VARIABLES:
        return RECIPE_VARIABLES[name].words
    return _WORDS.get(name, name)
