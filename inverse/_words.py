"""Plain-language names of descriptors, for messages."""

from __future__ import annotations

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
    "phi": "blend ratio",
    "chi": "Flory-Huggins chi",
    "log_time": "log annealing time",
}


def words(name: str) -> str:
    """The descriptor's name in words (``ABS_f_D`` -> ``donor volume fraction``), or the name itself."""
    return _WORDS.get(name, name)
