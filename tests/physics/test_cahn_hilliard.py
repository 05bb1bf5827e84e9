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


# --- films: no-flux electrodes and adaptive time steps ----------------------------------------


def _film(**kw):
    base = dict(shape=(24, 24, 16), steps=300, dt=0.1, n_snapshots=4, first_snapshot_time=5.0, z_boundary="no_flux")
    return CHParameters(**{**base, **kw})


def test_no_flux_electrodes_conserve_mass_and_do_not_wrap():
    params = _film(float64=True)
    phi0 = np.array([0.4, 0.55])
    snaps = _run(params, phi0, [3.2, 3.0], [5, 6])
    last = snaps[-1].fields
    assert last.shape == (2, 24, 24, 16)
    np.testing.assert_allclose(last.reshape(2, -1).mean(axis=1), phi0, rtol=1e-9)
    assert last.min() < 0.2 and last.max() > 0.8
    # the two electrode layers are not neighbours: a periodic run couples them, a no-flux one does not
    periodic = _run(params.model_copy(update={"z_boundary": "periodic"}), phi0, [3.2, 3.0], [5, 6])[-1].fields
    def layer_corr(f):
        a, b = f[..., 0] - f[..., 0].mean(), f[..., -1] - f[..., -1].mean()
        return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))
    assert layer_corr(periodic[0]) > 0.5
    assert abs(layer_corr(last[0])) < 0.3


@pytest.mark.parametrize("boundary", ["no_flux", "periodic"])
def test_a_cosine_mode_decays_in_shape_only_with_no_flux_electrodes(boundary):
    """Below the spinodal, cos(pi (z + 1/2) / Z) is an eigenmode of the no-flux problem: it decays keeping its shape.
    With periodic electrodes the same profile has a jump at the wrap and changes shape."""
    import torch

    from generator.physics.cahn_hilliard import make_stepper

    params = CHParameters(shape=(4, 4, 16), dt=0.01, z_boundary=boundary, float64=True)
    z = np.arange(16)
    mode = np.cos(np.pi * (z + 0.5) / 16)
    phi = torch.as_tensor(np.broadcast_to(0.5 + 0.01 * mode, (1, 4, 4, 16)).copy())
    if boundary == "no_flux":
        phi = torch.cat([phi, phi.flip(-1)], dim=-1)
    step = make_stepper(params, torch.tensor(1.0, dtype=torch.float64).reshape(1, 1, 1, 1))  # chi = 1 < chi_s = 2
    phi_hat = torch.fft.rfftn(phi, dim=(1, 2, 3))
    for _ in range(200):
        phi, phi_hat = step(phi, phi_hat)
    profile = phi[0, 0, 0, :16].numpy() - 0.5
    corr = float(profile @ mode / np.linalg.norm(profile) / np.linalg.norm(mode))
    if boundary == "no_flux":
        assert corr > 0.99999 and 0.1 < np.abs(profile).max() / 0.01 < 0.99
    else:
        assert corr < 0.999


def test_adaptive_steps_hit_the_same_snapshot_times_with_fewer_steps():
    fixed = _run(_film(), [0.45, 0.55], [3.2, 3.0], [1, 2])
    adaptive = _run(_film(adaptive=True, dt_max=1.0, step_tolerance=3e-3), [0.45, 0.55], [3.2, 3.0], [1, 2])
    assert [s.time for s in fixed] == [s.time for s in adaptive]
    assert [s.step for s in fixed] == [s.step for s in adaptive]
    assert fixed[-1].solver_steps == 300
    assert adaptive[-1].solver_steps < 0.8 * 300
    # same coarsening within a few per cent (the stabilised scheme lags slightly at large steps)
    ratio = characteristic_length(adaptive[-1].fields) / characteristic_length(fixed[-1].fields)
    assert np.all(np.abs(ratio - 1) < 0.1), ratio


def test_adaptive_run_is_deterministic():
    a = _run(_film(adaptive=True), [0.5], [3.1], [3])
    b = _run(_film(adaptive=True), [0.5], [3.1], [3])
    np.testing.assert_array_equal(a[-1].fields, b[-1].fields)
