"""The descriptor registry: one home for every descriptor's name, kind, domain and words."""

from __future__ import annotations

import math

import numpy as np
import pytest

from generator.descriptors import (
    ALIASES,
    DESCRIPTORS,
    NON_DESCRIPTOR_COLUMNS,
    compute,
    descriptor,
    descriptor_names,
    is_count,
    is_descriptor_column,
    words,
)
from generator.errors import InvalidInputError
from generator.physics.recipes import RECIPE_NAMES


def test_every_computed_descriptor_is_registered_with_a_kind_and_domain():
    rng = np.random.default_rng(0)
    for n_phases in (2, 3):
        volume = rng.integers(0, n_phases, (6, 6, 5)).astype(np.uint8)
        values = compute(volume, n_phases=n_phases)
        assert list(values) == list(descriptor_names(n_phases))
        for name, value in values.items():
            entry = DESCRIPTORS[name]
            assert n_phases in entry.n_phases
            assert entry.kind == ("count" if is_count(name) else "fraction")
            lo, hi = entry.domain
            assert lo <= value <= hi, (name, value, entry.domain)
    assert set(DESCRIPTORS) == set(descriptor_names(2)) | set(descriptor_names(3))


def test_kinds_aliases_and_lookup():
    assert descriptor("STAT_e").kind == "count" and descriptor("STAT_e").domain == (0.0, math.inf)
    assert descriptor("CT_n_D_adj_An").kind == "count" and descriptor("CT_e_conn").kind == "count"
    assert descriptor("ABS_f_D").kind == "fraction" and descriptor("ABS_f_D").domain == (0.0, 1.0)
    for alias, name in ALIASES.items():
        assert descriptor(alias).alias_of == name and descriptor(alias).kind == descriptor(name).kind
    with pytest.raises(InvalidInputError, match="unknown descriptor 'nope'"):
        descriptor("nope")


def test_words_name_descriptors_and_recipe_variables():
    assert words("ABS_f_D") == "donor volume fraction" == words("vol_frac_D")
    assert words("phi") == "blend ratio" and words("log_time") == "log annealing time"
    assert words("STAT_n_D") == "STAT_n_D"  # no words: the name itself


def test_non_descriptor_columns():
    assert set(RECIPE_NAMES) <= NON_DESCRIPTOR_COLUMNS
    assert {"series", "snapshot", "seed", "step"} <= NON_DESCRIPTOR_COLUMNS
    assert not is_descriptor_column("series") and is_descriptor_column("ABS_f_D")
    assert not NON_DESCRIPTOR_COLUMNS & set(DESCRIPTORS)


def test_everything_reads_the_registry():
    from generator.models import microgen3d
    from inverse import feasibility, spec

    assert spec.is_count is is_count and feasibility.words is words
    assert microgen3d.DOMAINS["ABS_f_D"] == DESCRIPTORS["ABS_f_D"].domain
