"""The Cahn-Hilliard simulator: conservation, energy decay, coarsening, determinism, warnings."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from generator.errors import InvalidInputError
from generator.physics.cahn_hilliard import (
    CHParameters,
    SpinodalWarning,
    characteristic_length,
    free_energy,
    log_time_to_time,
    simulate,
    spinodal_chi,
    time_to_log_time,
)


def _run(params, phi0, chi, seeds, **kw):
    return list(simulate(params, phi0, chi, seeds, **kw))


@pytest.mark.parametrize("shape", [(20, 20, 10), (48, 40)])
@pytest.mark.parametrize("float64", [True, False])
def test_mass_is_conserved(shape, float64):
    params = CHParameters(shape=shape, steps=200, dt=0.1, n_snapshots=4, first_snapshot_time=2.0, float64=float64)
    phi0 = np.array([0.35, 0.5, 0.62])
    snaps = _run(params, phi0, [3.0, 2.8, 3.4], [1, 2, 3])
    assert len(snaps) == 4
    for snap in snaps:
        means = snap.fields.reshape(len(phi0), -1).astype(np.float64).mean(axis=1)
        np.testing.assert_allclose(means, phi0, rtol=1e-6, atol=0)
    # and the runs did phase-separate
    assert snaps[-1].fields.min() < 0.2 and snaps[-1].fields.max() > 0.8


def test_free_energy_never_increases():
    params = CHParameters(shape=(16, 16, 8), steps=300, dt=0.1, n_snapshots=300, first_snapshot_time=0.1, float64=True)
    chi = [3.0, 2.6, 3.6]
    snaps = _run(params, [0.5, 0.4, 0.6], chi, [0, 1, 2])
    assert [s.step for s in snaps] == list(range(1, 301))
    energies = np.array([free_energy(s.fields, chi, params) for s in snaps])
    increase = np.diff(energies, axis=0)
    assert np.all(increase <= 1e-10 * np.abs(energies[:-1])), increase.max()
    assert np.all(energies[-1] < energies[0] - 1.0)  # it really evolved


@pytest.mark.slow
def test_domains_coarsen_but_stay_below_the_box_and_interfaces_are_resolved():
    params = CHParameters()  # the defaults: 32x32x16, t = 5 ... 70
    chi = [3.0, 3.4]
    snaps = _run(params, [0.5, 0.4], chi, [5, 6])
    lengths = np.array([characteristic_length(s.fields) for s in snaps])  # (snapshots, runs)
    late = lengths[len(lengths) // 3:]
    assert np.all(np.diff(late, axis=0) > -0.05 * late[:-1])  # no real shrinking
    assert np.all(lengths[-1] > 1.3 * lengths[0])
    assert np.all(lengths[-1] / 2 < 0.4 * min(params.shape))  # domains (half a period) well below the box
    for field in snaps[-1].fields.astype(np.float64):
        lo, hi = np.percentile(field, [2, 98])
        slope = np.sqrt(sum(g**2 for g in np.gradient(field)))
        at_interface = np.abs((field - lo) / (hi - lo) - 0.5) < 0.1
        width = (hi - lo) / np.median(slope[at_interface])  # 2 xi of a tanh profile
        assert width >= 1.9  # the interface spans about 2 voxels or more even at the largest chi


def test_deterministic_for_a_seed_and_independent_of_batch_mates():
    params = CHParameters(shape=(16, 16, 8), steps=150, dt=0.1, n_snapshots=2, first_snapshot_time=5.0)
    a = _run(params, [0.5, 0.4], [3.0, 3.2], [7, 8])
    b = _run(params, [0.5, 0.4], [3.0, 3.2], [7, 8])
    c = _run(params, [0.5, 0.4], [3.0, 3.2], [7, 9])
    alone = _run(params, [0.4], [3.2], [8])
    for sa, sb in zip(a, b):
        np.testing.assert_array_equal(sa.fields, sb.fields)
    assert not np.allclose(a[-1].fields[1], c[-1].fields[1], atol=1e-2)
    np.testing.assert_allclose(alone[-1].fields[0], a[-1].fields[1], atol=1e-3)


def test_spinodal_warning_and_bad_input():
    params = CHParameters(shape=(8, 8, 4), steps=2, n_snapshots=1)
    assert spinodal_chi(0.5) == pytest.approx(2.0)
    with pytest.warns(SpinodalWarning, match=r"chi=1\.5 is below the spinodal chi_s=2 of phi0=0\.5"):
        _run(params, [0.5], [1.5], [0])
    with warnings.catch_warnings():
        warnings.simplefilter("error", SpinodalWarning)
        _run(params, [0.5], [2.5], [0])
    with pytest.raises(InvalidInputError, match="phi0 must lie in"):
        _run(params, [1.2], [3.0], [0])
    with pytest.raises(InvalidInputError, match="one value per run"):
        _run(params, [0.5, 0.5], [3.0], [0])


def test_snapshot_schedule_and_log_time_mapping():
    params = CHParameters(dt=0.05, steps=1600, n_snapshots=24, first_snapshot_time=5.0)
    steps = params.snapshot_steps()
    assert len(steps) == 24 and steps[0] == 100 and steps[-1] == 1600
    assert np.all(np.diff(steps) > 0)
    ratios = steps[1:] / steps[:-1]
    assert ratios.max() / ratios.min() < 1.1  # log-spaced
    assert time_to_log_time(100.0) == pytest.approx(2.0)
    assert log_time_to_time(time_to_log_time(37.5)) == pytest.approx(37.5)
    assert params.steps_for_log_time(time_to_log_time(80.0)) == 1600
    snap = _run(CHParameters(shape=(8, 8, 4), dt=0.1, steps=20, n_snapshots=1), [0.5], [3.0], [0])[-1]
    assert snap.time == pytest.approx(2.0) and snap.log_time == pytest.approx(np.log10(2.0))
