"""GraSPI descriptors: the C++ GraSPI's own numbers, hand-checked volumes, and the kernels."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

from generator.descriptors import ALIASES, TWO_PHASE_NAMES, as_labels, compute, compute_batch, descriptor_names
from generator.descriptors import _kernels
from generator.descriptors.core import _straight_path_fraction, _Volume
from generator.errors import InvalidInputError

# GraSPI's three-phase free text -> our names.
THREE_PHASE_LINES = {
    "Weighted fraction of black vertices:": "ABS_wf_D",
    "Weighted fraction of black vertices in 10 distance to interface:": "DISS_wf10_D",
    "Fraction of black vertices in 10 distance to interface:": "DISS_f10_D",
    "Weighted fraction of grey vertices in 10 distance to grey-white interface:": "DISS_wf10_M",
    "Fraction of grey vertices in 10 distance to grey-white interface:": "DISS_f10_M",
    "Number of interface edges:": "STAT_e",
    "Number of interface edges with complementary paths:": "CT_e_conn",
    "Fraction of interface with complementary paths to bottom and top:": "CT_f_e_conn",
    "Number of black interface vertices with path to top:": "CT_e_D_An",
    "Number of white interface vertices with path to bottom:": "CT_e_A_Ca",
    "Fraction of black vertices with straight rising paths (t=1):": "CT_f_D_tort1",
    "Fraction of white vertices with straight rising paths (t=1):": "CT_f_A_tort1",
    "Fraction of grey vertices with straight rising paths to top (t=1):": "CT_f_M_tort1_An",
    "Fraction of grey vertices with straight rising paths to bottom (t=1):": "CT_f_M_tort1_Ca",
}


def _parse_graspi_text(text: str) -> dict[str, float]:
    values = {}
    for line in text.strip().splitlines():
        match = re.match(r"\[[^\]]+\]\s*(.*:)\s*(\S+)\s*$", line)
        assert match, line
        values[THREE_PHASE_LINES[match.group(1)]] = float(match.group(2))
    return values


def _load(path):
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def _assert_close(ours: dict[str, float], reference: dict[str, float], where: str) -> None:
    bad = {k: (v, ours[k]) for k, v in reference.items() if not math.isclose(ours[k], v, rel_tol=1e-5, abs_tol=1e-12)}
    assert not bad, f"{where}: (GraSPI, ours) differ for {bad}"


def test_two_phase_fixtures_match_graspi(graspi_fixture_paths):
    checked = 0
    for path in graspi_fixture_paths:
        fx = _load(path)
        if "descriptors_json" not in fx:
            continue
        reference = json.loads(str(fx["descriptors_json"]))
        assert set(reference) == set(TWO_PHASE_NAMES)
        ours = compute(fx["labels"], pixel_size=float(fx["pixel_size"]), periodic=bool(fx["periodic"]))
        _assert_close(ours, reference, path.name)
        checked += 1
    assert checked >= 6  # 3-D, periodic, pixel size 2, 2-D


def test_three_phase_fixtures_match_graspi(graspi_fixture_paths):
    checked = 0
    for path in graspi_fixture_paths:
        fx = _load(path)
        if "graspi_text" not in fx:
            continue
        reference = _parse_graspi_text(str(fx["graspi_text"]))
        assert len(reference) == len(THREE_PHASE_LINES)
        ours = compute(fx["labels"], pixel_size=float(fx["pixel_size"]), periodic=bool(fx["periodic"]))
        _assert_close(ours, reference, path.name)
        n = fx["labels"].size
        assert ours["vol_frac_D"] == ours["ABS_f_D"] == np.count_nonzero(fx["labels"] == 0) / n
        assert ours["vol_frac_M"] == np.count_nonzero(fx["labels"] == 2) / n
        assert ours["tortuosity_D"] == ours["CT_f_D_tort1"] and ours["tortuosity_A"] == ours["CT_f_A_tort1"]
        checked += 1
    assert checked >= 2


def test_periodic_fixture_differs_when_not_wrapped(graspi_fixture_paths):
    fx = _load(next(p for p in graspi_fixture_paths if "periodic" in p.name))
    wrapped = compute(fx["labels"], periodic=True)
    open_ = compute(fx["labels"], periodic=False)
    assert wrapped["STAT_e"] > open_["STAT_e"]  # the faces across the x / y boundaries


# ----------------------------------------------------------------------------- hand-checked volumes

def test_single_straight_column():
    lab = np.ones((5, 5, 6), dtype=np.uint8)
    lab[2, 2, :] = 0
    out = compute(lab)
    assert out["STAT_n_D"] == 6 and out["STAT_n_A"] == 144 and out["STAT_n"] == 150
    assert out["STAT_CC_D"] == out["STAT_CC_A"] == out["STAT_CC_D_An"] == out["STAT_CC_A_Ca"] == 1
    assert out["STAT_e"] == 24 and out["CT_e_conn"] == 24 and out["CT_f_e_conn"] == 1.0
    assert out["CT_e_D_An"] == 6 and out["CT_e_A_Ca"] == 8 * 6  # the 8 columns around the donor column
    assert out["CT_f_D_tort1"] == 1.0 and out["CT_f_A_tort1"] == 1.0
    assert out["CT_n_D_adj_An"] == 2 and out["CT_n_A_adj_Ca"] == 25
    assert out["DISS_f10_D"] == 1.0  # every donor touches the interface: d = 1/2
    assert out["DISS_wf10_D"] == pytest.approx(6.265 * math.exp(-((0.5 + 23) / 17.17) ** 2))
    assert out["ABS_wf_D"] == pytest.approx(sum(math.exp(-(6 - k) / 100) for k in range(6)) / 150)
    assert out["norm_STAT_e"] == pytest.approx(24 / 150)


def test_staircase_straight_rising_paths():
    # Donor column at x = 0 for z >= 7, one diagonal step, column at x = 1 for z < 7 (nz = 10).
    # Below the step d = h - 1 + sqrt(2): t - 1 = 0.414 / h < 1 / nz only for h >= 5 (z <= 4).
    lab = np.ones((3, 3, 10), dtype=np.uint8)
    lab[0, 1, 7:] = 0
    lab[1, 1, :7] = 0
    out = compute(lab)
    assert out["STAT_CC_D"] == 1
    assert out["CT_f_D_tort1"] == pytest.approx(8 / 10)
    # The pixel size scales d and h alike.
    assert compute(lab, pixel_size=3.0)["CT_f_D_tort1"] == pytest.approx(8 / 10)


def test_diagonal_chain_is_one_component_and_not_straight():
    lab = np.ones((6, 1, 6), dtype=np.uint8)
    for k in range(6):
        lab[k, 0, k] = 0
    out = compute(lab)
    assert out["STAT_CC_D"] == 1 and out["STAT_CC_A"] == 1  # 26-connectivity on both sides
    assert out["STAT_e"] == 20  # 4 in-bounds face neighbours per donor, 2 at the two ends
    assert out["CT_f_D_tort1"] == pytest.approx(1 / 6)  # only the top voxel (t = sqrt 2 elsewhere)


@pytest.mark.parametrize("phase", [0, 1])
def test_one_phase_only(phase):
    lab = np.full((4, 4, 4), phase, dtype=np.uint8)
    out = compute(lab)
    assert out["STAT_e"] == 0 and out["CT_f_e_conn"] == 0.0  # no interface: 0, not NaN
    assert out["DISS_f10_D"] == 0.0 and out["DISS_wf10_D"] == 0.0
    if phase == 0:
        assert out["CT_f_D_tort1"] == 1.0 and out["CT_f_conn_D_An"] == 1.0
        assert out["CT_f_A_tort1"] == 0.0 and out["CT_f_conn_A_Ca"] == 0.0 and out["CT_n_A_adj_Ca"] == 1
    else:  # no donor reaches the top: GraSPI divides by zero, we give 0
        assert out["CT_f_D_tort1"] == 0.0 and out["CT_f_conn_D_An"] == 0.0 and out["ABS_f_D"] == 0.0
        assert out["CT_f_A_tort1"] == 1.0 and out["CT_n_D_adj_An"] == 1
    assert all(np.isfinite(list(out.values())))


def test_one_voxel_thick_donor_layer():
    lab = np.ones((4, 4, 5), dtype=np.uint8)
    lab[:, :, 2] = 0
    out = compute(lab)
    assert out["STAT_CC_D"] == 1 and out["STAT_CC_D_An"] == 0
    assert out["STAT_CC_A"] == 2 and out["STAT_CC_A_Ca"] == 1
    assert out["CT_f_conn_A_Ca"] == 0.5 and out["CT_f_A_tort1"] == 1.0
    assert out["CT_f_D_tort1"] == 0.0  # no donor reaches the top
    assert out["STAT_e"] == 32 and out["CT_e_conn"] == 0
    assert out["DISS_f10_D"] == 1.0


def test_one_voxel_thick_film_is_two_d():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 2, (12, 9)).astype(np.uint8)
    assert compute(image) == compute(image[:, :, None])
    # A (nx, ny, 1) film: y is the electrode axis, 8 neighbours.
    bar = np.ones((5, 4), dtype=np.uint8)
    bar[2, :] = 0
    out = compute(bar)
    assert out["CT_f_D_tort1"] == 1.0 and out["CT_n_D_adj_An"] == 2 and out["STAT_e"] == 8


def test_periodic_wrap_joins_components():
    lab = np.ones((5, 5, 4), dtype=np.uint8)
    lab[0, 2, :] = 0
    lab[4, 2, :] = 0
    assert compute(lab)["STAT_CC_D"] == 2
    wrapped = compute(lab, periodic=True)
    assert wrapped["STAT_CC_D"] == 1
    assert wrapped["STAT_e"] == compute(lab)["STAT_e"]  # the two columns face each other: no new D-A face


def test_three_phase_mixed_path_links_both_electrodes():
    # A mixed column spanning the film, and a separate two-voxel mixed stub on the bottom.
    # GraSPI reaches the stub from the top through the bottom electrode: its bottom voxel at
    # d = 4 = h (t = 1), the other at d = 5, h = 3. Without that link the fraction would be 5 / 5.
    lab = np.ones((5, 5, 5), dtype=np.uint8)
    lab[0, 0, :] = 2
    lab[3, 3, :2] = 2
    out = compute(lab)
    assert out["STAT_CC_M"] == 2 and out["STAT_CC_M_An"] == 1 and out["STAT_CC_M_Ca"] == 2
    assert out["CT_f_M_tort1_An"] == pytest.approx(6 / 7)
    assert out["CT_f_M_tort1_Ca"] == 1.0


# ----------------------------------------------------------------------------- kernels

def _random_labels(shape, seed, p=0.55):
    rng = np.random.default_rng(seed)
    return (rng.random(shape) > p).astype(np.uint8)


@pytest.mark.parametrize("periodic", [False, True])
def test_geodesic_distances_match_scipy_dijkstra(periodic):
    lab = _random_labels((7, 6, 5), seed=1, p=0.35)
    v = _Volume(lab, 1.5, periodic)
    n = lab.size
    rows, cols, weights = [], [], []
    coords = np.array(np.unravel_index(np.arange(n), lab.shape)).T
    for off in _kernels._OFFSETS:
        nb = coords + off
        ok = (nb[:, 2] >= 0) & (nb[:, 2] < lab.shape[2])
        for axis in (0, 1):
            if periodic:
                nb[:, axis] %= lab.shape[axis]
            else:
                ok &= (nb[:, axis] >= 0) & (nb[:, axis] < lab.shape[axis])
        src, dst = np.flatnonzero(ok), np.ravel_multi_index(nb[ok].T, lab.shape)
        keep = (v.flat[src] == 0) & (v.flat[dst] == 0)
        rows.append(src[keep])
        cols.append(dst[keep])
        weights.append(np.full(keep.sum(), 1.5 * math.sqrt(np.abs(off).sum())))
    # One extra vertex (the top electrode) joined to the donors of the top layer with weight 0 (+tiny).
    top = np.flatnonzero((coords[:, 2] == lab.shape[2] - 1) & (v.flat == 0))
    rows.append(np.full(top.size, n))
    cols.append(top)
    weights.append(np.full(top.size, 1e-30))
    graph = coo_matrix((np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))), shape=(n + 1, n + 1)).tocsr()
    expected = dijkstra(graph, directed=True, indices=n)[:n]
    sources = v.layer_sources(0, lab.shape[2] - 1)
    ours = _kernels.geodesic_distances(*v.args(), 0, sources, np.zeros(sources.size, np.float32), v.weights, np.inf, -1, 0, np.inf)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_excess_pruning_keeps_straight_path_fraction(seed):
    lab = _random_labels((10, 9, 12), seed=seed, p=0.3)
    v = _Volume(lab, 1.0, False)
    top = lab.shape[2] - 1
    reachable = v.n_in_components(0, v.comp_top)
    sources = v.layer_sources(0, top)
    full = _kernels.geodesic_distances(*v.args(), 0, sources, np.zeros(sources.size, np.float32), v.weights, np.inf, -1, top, np.inf)
    pruned = v.distances_from_layer(0, top)
    assert np.isfinite(full).sum() == reachable
    assert _straight_path_fraction(pruned, v.shape, top, 1.0, reachable) == _straight_path_fraction(full, v.shape, top, 1.0, reachable)


def test_components_match_scipy_label():
    from scipy import ndimage

    lab = _random_labels((9, 8, 7), seed=5, p=0.6)
    v = _Volume(lab, 1.0, False)
    for phase in (0, 1):
        _, expected = ndimage.label(lab == phase, structure=np.ones((3, 3, 3)))
        assert v.n_components(phase) == expected


# ----------------------------------------------------------------------------- API

def test_names_and_batch():
    rng = np.random.default_rng(0)
    volumes = rng.integers(0, 2, (3, 8, 8, 6)).astype(np.uint8)
    results = compute_batch(volumes, n_jobs=2)
    assert results == [compute(vol) for vol in volumes]
    assert list(results[0]) == list(descriptor_names(2))
    three = compute(np.where(volumes[0] == 1, 2, volumes[0]), n_phases=3)
    assert list(three) == list(descriptor_names(3)) and set(ALIASES) <= set(three)


@pytest.mark.parametrize("bad, message", [
    (np.full((3, 3, 3), 5), "found value 5"),
    (np.full((3, 3, 3), np.nan), "NaN"),
    (np.full((3, 3, 3), 0.5), "threshold"),
    (np.zeros(5), "shape"),
    (np.zeros((2, 2, 2, 2)), "shape"),
])
def test_invalid_labels_are_rejected(bad, message):
    with pytest.raises(InvalidInputError, match=message):
        compute(bad)


def test_threshold_and_float_labels():
    grey = np.array([[[0.1, 0.9], [0.6, 0.2]]])
    np.testing.assert_array_equal(as_labels(grey, threshold=0.5), [[[0, 1], [1, 0]]])
    assert compute(np.array([[[0.0, 1.0, 2.0]]]))["STAT_n_M"] == 1


def test_bad_arguments():
    with pytest.raises(InvalidInputError, match="pixel_size"):
        compute(np.zeros((3, 3, 3), np.uint8), pixel_size=0)
    with pytest.raises(InvalidInputError, match="n_phases"):
        compute(np.full((3, 3, 3), 2, np.uint8), n_phases=2)
