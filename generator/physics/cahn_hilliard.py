"""Cahn-Hilliard simulation of a binary polymer blend (Flory-Huggins), in torch.

Model
-----
The order parameter ``phi(x)`` is the local donor fraction. The free energy is

    F[phi] = sum_x ( f(phi) + kappa |grad phi|^2 ) dx^d,
    f(phi) = phi ln(phi) / N_A + (1 - phi) ln(1 - phi) / N_B + chi phi (1 - phi),

and the dynamics are conserved, ``d phi / dt = M lap(mu)`` with
``mu = f'(phi) - 2 kappa lap(phi)``, on a periodic box.

Scheme
------
Semi-implicit, stabilised Fourier-spectral (Zhu, Chen, Shen & Tikare 1999;
Shen & Yang 2010): the bulk term is explicit, the gradient term implicit, and a
stabiliser ``A (phi^{n+1} - phi^n)`` is added to ``mu``:

    phi^_{n+1} = [ (1 + dt M A k^2) phi^_n - dt M k^2 f'(phi_n)^ ]
                 / (1 + dt M A k^2 + 2 dt M kappa k^4)

with ``A = max|f''| / 2`` taken over the current field of each run (updated
every step), which makes the scheme energy-stable. The ``k = 0`` mode is left
unchanged, so the mean (the blend ratio) is conserved to round-off. A batch of
independent runs (different ``phi0``, ``chi``, seeds) advances in one tensor;
the same code runs on CPU and GPU, in 2-D and 3-D, on any grid.

Time and ``log_time``
---------------------
Time is dimensionless, ``t = step * dt`` (with the defaults ``M = 1``,
``kappa = 0.6``, ``dx = 1``: the fastest-growing spinodal wavelength at
``phi0 = 0.5``, ``chi = 3`` is ``2 pi sqrt(4 kappa / |f''|) = 6.9`` voxels and its
growth time ``8 kappa / (M f''^2)`` is 1.2). The ``log_time`` attribute of a
snapshot is ``log10(t)`` (:func:`time_to_log_time`); to re-run a recipe
``(phi, chi, log_time)``, simulate ``steps = round(10**log_time / dt)`` steps
(:meth:`CHParameters.steps_for_log_time`).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from tqdm.auto import tqdm

from generator.errors import InvalidInputError

#: Fields are clamped to ``[CLAMP, 1 - CLAMP]`` where the logarithms are evaluated.
CLAMP = 1e-6


class SpinodalWarning(UserWarning):
    """``chi`` lies below the spinodal of ``phi0``: the blend does not phase-separate."""


class CHParameters(BaseModel):
    """Parameters shared by every run of a batch (``phi0``, ``chi`` and seeds are per run).

    Defaults resolve the interface over about 2 voxels or more (chi <= 3.4) and
    end at ``t = 70``, where the characteristic length ``2 pi / <k>`` is about
    12 voxels (domains about 6 voxels wide), below a 32x32x16 box.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    shape: tuple[int, ...] = Field((32, 32, 16), description="grid (X, Y) or (X, Y, Z); last axis = electrode axis")
    dx: float = Field(1.0, gt=0, description="grid spacing")
    kappa: float = Field(0.6, gt=0, description="gradient-energy coefficient")
    mobility: float = Field(1.0, gt=0, description="mobility M")
    n_a: float = Field(1.0, gt=0, description="degree of polymerisation N_A (donor)")
    n_b: float = Field(1.0, gt=0, description="degree of polymerisation N_B (acceptor)")
    dt: float = Field(0.05, gt=0, description="time step")
    steps: int = Field(1400, ge=1, description="number of time steps")
    n_snapshots: int = Field(24, ge=1, description="number of log-spaced snapshots")
    first_snapshot_time: float = Field(5.0, gt=0, description="time of the first snapshot")
    noise: float = Field(0.02, ge=0, description="amplitude (std) of the initial composition noise")
    float64: bool = Field(False, description="compute in float64 (tests of mass and energy)")
    z_boundary: Literal["periodic", "no_flux"] = Field(
        "periodic",
        description="boundary at the two electrodes (z = 0 and the top layer): periodic (wraps through the electrodes) or "
                    "no_flux (Neumann: d phi / dz = 0 and no mass flux, as in a real film; x and y stay periodic)",
    )
    adaptive: bool = Field(
        False,
        description="adaptive time step: grows from dt up to dt_max while the field's root-mean-square change per step stays near step_tolerance "
                    " (coarsening slows down as t^(-2/3)); snapshot times are the same as with the fixed step",
    )
    dt_max: float = Field(1.0, gt=0, description="largest time step of the adaptive scheme")
    step_tolerance: float = Field(1e-3, gt=0, description="adaptive scheme: target of the root-mean-square change of phi in one step")

    @field_validator("shape")
    @classmethod
    def _check_shape(cls, shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(shape) not in (2, 3) or any(n < 2 for n in shape):
            raise ValueError(f"must be 2 or 3 sizes >= 2, got {shape}")
        return tuple(int(n) for n in shape)

    @property
    def solver_shape(self) -> tuple[int, ...]:
        """Grid the solver advances: ``shape``, doubled along the electrode axis by its mirror image for no-flux
        electrodes (a half-sample-symmetric extension, so that the periodic spectral scheme solves the Neumann problem
        exactly: its even modes are the cosine modes)."""
        if self.z_boundary == "periodic":
            return self.shape
        return self.shape[:-1] + (2 * self.shape[-1],)

    @property
    def end_time(self) -> float:
        """Time of the last step."""
        return self.steps * self.dt

    def snapshot_steps(self) -> np.ndarray:
        """Steps of the snapshots: log-spaced from ``first_snapshot_time`` to ``steps``, strictly increasing.

        Returns
        -------
        np.ndarray
            ``(n,)`` int64 steps, ``n <= n_snapshots`` (fewer only if there are not enough steps).
        """
        first = min(max(1, round(self.first_snapshot_time / self.dt)), self.steps)
        steps = np.rint(np.geomspace(first, self.steps, self.n_snapshots)).astype(np.int64)
        steps = np.maximum(steps, first + np.arange(self.n_snapshots))  # strictly increasing early on
        steps = np.minimum(steps, self.steps)
        return np.unique(steps)

    def steps_for_log_time(self, log_time: float) -> int:
        """Number of steps that reaches ``log_time`` (inverse of the ``log_time`` attribute)."""
        return max(1, round(log_time_to_time(log_time) / self.dt))


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run a block with ``n`` torch intra-op threads (``None``: unchanged), restoring the count after.

    On a small, shared machine (or under ``pytest -n 2``) one thread per process
    avoids the stalls of several threads waiting on each other for every small op.
    """
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def time_to_log_time(t: float | np.ndarray) -> float | np.ndarray:
    """The ``log_time`` attribute of a snapshot at simulation time ``t``: ``log10(t)``."""
    return np.log10(t)


def log_time_to_time(log_time: float | np.ndarray) -> float | np.ndarray:
    """Simulation time of a ``log_time`` attribute: ``10 ** log_time``."""
    return np.power(10.0, log_time)


def spinodal_chi(phi0: float | np.ndarray, n_a: float = 1.0, n_b: float = 1.0) -> float | np.ndarray:
    """Flory-Huggins spinodal ``chi_s = (1 / (N_A phi) + 1 / (N_B (1 - phi))) / 2``."""
    phi0 = np.asarray(phi0, dtype=float)
    return 0.5 * (1.0 / (n_a * phi0) + 1.0 / (n_b * (1.0 - phi0)))


@dataclass(frozen=True)
class Snapshot:
    """One snapshot of a batch of runs."""

    index: int
    step: int
    time: float
    fields: np.ndarray  # (B, *shape) local donor fraction
    solver_steps: int = 0  # time steps taken from the start (differs from ``step`` with adaptive stepping)

    @property
    def log_time(self) -> float:
        return float(time_to_log_time(self.time))


def _wavenumbers_squared(shape: Sequence[int], dx: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``|k|^2`` on the half-spectrum of ``rfftn`` over ``shape``: ``(*shape[:-1], shape[-1] // 2 + 1)``."""
    axes = [torch.fft.fftfreq(n, d=dx, dtype=dtype, device=device) for n in shape[:-1]]
    axes.append(torch.fft.rfftfreq(shape[-1], d=dx, dtype=dtype, device=device))
    grids = torch.meshgrid(*axes, indexing="ij")
    return sum((2 * math.pi * g) ** 2 for g in grids)


def chemical_potential_bulk(phi: torch.Tensor, chi: torch.Tensor, n_a: float, n_b: float) -> torch.Tensor:
    """``f'(phi) = (ln phi + 1) / N_A - (ln(1 - phi) + 1) / N_B + chi (1 - 2 phi)``; ``chi`` broadcasts.

    Written with in-place operations: three full-size temporaries instead of a dozen.
    """
    p = phi.clamp(CLAMP, 1 - CLAMP)
    mu = torch.log(p).mul_(1 / n_a)
    mu.sub_(torch.log1p(p.neg()), alpha=1 / n_b)
    mu.add_(p.mul_(-2).add_(1).mul_(chi))  # p is not needed any more
    return mu.add_(1 / n_a - 1 / n_b)


def _curvature_bound(phi: torch.Tensor, chi: torch.Tensor, n_a: float, n_b: float) -> torch.Tensor:
    """``max |f''|`` over each run's field range, shape ``(B, 1, ..., 1)``."""
    dims = tuple(range(1, phi.ndim))
    ends = torch.stack([phi.amin(dim=dims, keepdim=True), phi.amax(dim=dims, keepdim=True)]).clamp(CLAMP, 1 - CLAMP)
    convex = (1 / (n_a * ends) + 1 / (n_b * (1 - ends))).amax(dim=0)
    return torch.maximum(convex - 2 * chi, 2 * chi)


def free_energy(fields: np.ndarray | torch.Tensor, chi: Sequence[float] | np.ndarray, params: CHParameters) -> np.ndarray:
    """Total free energy of each run.

    Parameters
    ----------
    fields
        ``(B, *shape)`` local donor fraction.
    chi
        ``(B,)`` Flory-Huggins parameters.
    params
        Shared parameters (``kappa``, ``dx``, ``n_a``, ``n_b``).

    Returns
    -------
    np.ndarray
        ``(B,)`` free energies ``sum (f + kappa |grad phi|^2) dx^d`` (spectral gradient).
    """
    phi = torch.as_tensor(np.asarray(fields), dtype=torch.float64)
    dims = tuple(range(1, phi.ndim))
    chi_t = torch.as_tensor(np.asarray(chi, dtype=np.float64)).reshape((-1,) + (1,) * len(dims))
    p = phi.clamp(CLAMP, 1 - CLAMP)
    bulk = p * torch.log(p) / params.n_a + (1 - p) * torch.log1p(-p) / params.n_b + chi_t * p * (1 - p)
    k2 = _wavenumbers_squared(phi.shape[1:], params.dx, torch.float64, phi.device)
    spectrum = torch.fft.rfftn(phi, dim=dims).abs() ** 2
    weight = torch.full(k2.shape, 2.0, dtype=torch.float64)
    weight[..., 0] = 1.0  # rfft: columns other than 0 and Nyquist stand for two modes
    if phi.shape[-1] % 2 == 0:
        weight[..., -1] = 1.0
    gradient = (weight * k2 * spectrum).sum(dim=dims) / phi[0].numel()
    volume = params.dx ** len(dims)
    return ((bulk.sum(dim=dims) + params.kappa * gradient) * volume).numpy()


def characteristic_length(fields: np.ndarray | torch.Tensor, dx: float = 1.0) -> np.ndarray:
    """Domain size ``2 pi / <k>`` of each field, ``<k>`` the first moment of the structure factor.

    Parameters
    ----------
    fields
        ``(B, *shape)`` fields.
    dx
        Grid spacing.

    Returns
    -------
    np.ndarray
        ``(B,)`` characteristic lengths (in units of ``dx``-scaled length).
    """
    phi = torch.as_tensor(np.asarray(fields), dtype=torch.float64)
    dims = tuple(range(1, phi.ndim))
    phi = phi - phi.mean(dim=dims, keepdim=True)
    spectrum = torch.fft.fftn(phi, dim=dims).abs() ** 2
    axes = [torch.fft.fftfreq(n, d=dx, dtype=torch.float64) for n in phi.shape[1:]]
    k = torch.sqrt(sum((2 * math.pi * g) ** 2 for g in torch.meshgrid(*axes, indexing="ij")))
    mean_k = (k * spectrum).sum(dim=dims) / spectrum.sum(dim=dims).clamp_min(1e-300)
    return (2 * math.pi / mean_k).numpy()


def _check_runs(phi0: Sequence[float], chi: Sequence[float], seeds: Sequence[int], params: CHParameters) -> tuple[np.ndarray, np.ndarray, list[int]]:
    phi0 = np.atleast_1d(np.asarray(phi0, dtype=np.float64))
    chi = np.atleast_1d(np.asarray(chi, dtype=np.float64))
    seeds = [int(s) for s in np.atleast_1d(seeds)]
    if not (len(phi0) == len(chi) == len(seeds)) or len(phi0) == 0:
        raise InvalidInputError(f"phi0, chi and seeds need one value per run, got {len(phi0)}, {len(chi)}, {len(seeds)}")
    if not np.all((phi0 > 0) & (phi0 < 1)):
        raise InvalidInputError(f"phi0 must lie in (0, 1), got {phi0[~((phi0 > 0) & (phi0 < 1))][0]}")
    if not np.all(np.isfinite(chi)):
        raise InvalidInputError("chi must be finite")
    chi_s = spinodal_chi(phi0, params.n_a, params.n_b)
    for p, c, s in zip(phi0, chi, chi_s):
        if c <= s:
            warnings.warn(f"chi={c:g} is below the spinodal chi_s={s:.4g} of phi0={p:g}: the blend does not phase-separate", SpinodalWarning, stacklevel=3)
    return phi0, chi, seeds


def initial_fields(phi0: Sequence[float], seeds: Sequence[int], params: CHParameters) -> np.ndarray:
    """Initial fields: ``phi0`` plus zero-mean Gaussian noise of std ``params.noise``, per-run seeds.

    Returns
    -------
    np.ndarray
        ``(B, *shape)`` float64; each run's mean is exactly its ``phi0`` up to round-off.
    """
    fields = np.empty((len(seeds),) + params.shape)
    for i, (p, seed) in enumerate(zip(phi0, seeds)):
        noise = np.random.default_rng(seed).standard_normal(params.shape) * params.noise
        fields[i] = p + noise - noise.mean()
    return fields


def simulate(params: CHParameters, phi0: Sequence[float], chi: Sequence[float], seeds: Sequence[int], *,
             device: str | torch.device | None = None, progress: bool = False) -> Iterator[Snapshot]:
    """Advance a batch of Cahn-Hilliard runs and yield their snapshots.

    Parameters
    ----------
    params
        Shared parameters (grid, kappa, dt, steps, snapshot schedule, electrode
        boundary, adaptive stepping, ...).
    phi0, chi, seeds
        One blend ratio in (0, 1), Flory-Huggins ``chi`` and noise seed per run
        (``B`` runs). A ``chi`` at or below the spinodal of its ``phi0`` gives a
        :class:`SpinodalWarning`.
    device
        Torch device (``"cpu"``, ``"cuda"``); default CPU.
    progress
        Show a tqdm bar over the simulated time.

    Yields
    ------
    Snapshot
        At each time ``step * dt`` of :meth:`CHParameters.snapshot_steps`:
        ``fields`` of shape ``(B, *params.shape)`` (float32, or float64 with
        ``params.float64``). ``step`` is the nominal step (time / dt), also
        with adaptive stepping; ``solver_steps`` counts the steps taken.
        Results depend only on the parameters and seeds (deterministic).

    Notes
    -----
    With ``adaptive``, all runs of the batch share one time step: after a step of
    size ``h`` whose root-mean-square change of ``phi`` (over the batch) was ``c``, the next
    step is ``0.9 h tol / c``, limited to ``[dt, dt_max]`` and to twice the last
    step, and shortened to land exactly on the next snapshot time. The
    stabilised scheme is energy-stable for any step, so no step is rejected.
    """
    phi0_arr, chi_arr, seeds = _check_runs(phi0, chi, seeds, params)
    device = torch.device(device or "cpu")
    dtype = torch.float64 if params.float64 else torch.float32
    ndim = len(params.shape)
    dims = tuple(range(1, ndim + 1))
    bshape = (-1,) + (1,) * ndim
    nz = params.shape[-1]

    phi = torch.as_tensor(initial_fields(phi0_arr, seeds, params), dtype=dtype, device=device)
    if params.z_boundary == "no_flux":
        phi = torch.cat([phi, phi.flip(-1)], dim=-1)  # mirror image: the periodic solver then keeps d phi / dz = 0
    chi_t = torch.as_tensor(chi_arr, dtype=dtype, device=device).reshape(bshape)

    step_once = make_stepper(params, chi_t)
    phi_hat = torch.fft.rfftn(phi, dim=dims)
    snapshot_steps = params.snapshot_steps()
    end_time = float(snapshot_steps[-1] * params.dt)
    t, dt, taken = 0.0, params.dt, 0
    with torch.inference_mode(), tqdm(total=round(end_time, 6), desc="Cahn-Hilliard", unit="time", disable=not progress,
                                      leave=False, bar_format="{l_bar}{bar}| t={n:.4g}/{total:.4g} [{elapsed}<{remaining}]") as bar:
        done_steps = 0
        for index, target_step in enumerate(snapshot_steps):
            target = float(target_step * params.dt)
            if not params.adaptive:  # fixed step: integer step counts, exactly as many as the schedule says
                for _ in range(int(target_step) - done_steps):
                    phi, phi_hat = step_once(phi, phi_hat)
                    taken += 1
                done_steps = int(target_step)
                t = target
            else:
                while t < target * (1 - 1e-12):
                    h = min(dt, target - t)
                    if target - (t + h) < 1e-3 * params.dt:  # never leave a sliver before the snapshot
                        h = target - t
                    previous = phi
                    phi, phi_hat = step_once(phi, phi_hat, h)
                    taken += 1
                    t = target if h == target - t else t + h
                    change = float((phi - previous).square().mean().sqrt())
                    proposal = 0.9 * h * params.step_tolerance / max(change, 1e-12)
                    dt = min(max(proposal, params.dt), params.dt_max, 2 * max(dt, h))
                    bar.update(h)
            bar.n = round(t, 6)
            bar.refresh()
            fields = phi[..., :nz] if params.z_boundary == "no_flux" else phi
            yield Snapshot(index=index, step=int(target_step), time=target, fields=fields.cpu().numpy().copy(), solver_steps=taken)


def make_stepper(params: CHParameters, chi: torch.Tensor) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """One time step of the scheme, ``(phi, phi_hat[, dt]) -> (phi, phi_hat)``, for a batch of runs.

    Parameters
    ----------
    params
        Shared parameters; the grid is :attr:`CHParameters.solver_shape`.
    chi
        ``(B, 1, ..., 1)`` Flory-Huggins parameters on the device and dtype of the fields.

    Returns
    -------
    callable
        Takes ``phi`` ``(B, *solver_shape)``, its ``rfftn`` over the grid axes (updated in place) and
        optionally the step ``dt`` (default ``params.dt``), returns both after one step.
    """
    shape = params.solver_shape
    dims = tuple(range(1, len(shape) + 1))
    k2 = _wavenumbers_squared(shape, params.dx, chi.dtype, chi.device)
    cache: dict[float, tuple[torch.Tensor, torch.Tensor]] = {}

    def operators(dt: float) -> tuple[torch.Tensor, torch.Tensor]:
        if dt not in cache:
            cache.clear()  # keep the last step's operators only (adaptive steps rarely repeat)
            dt_m_k2 = dt * params.mobility * k2
            cache[dt] = (dt_m_k2, 1 + 2 * params.kappa * dt_m_k2 * k2)
        return cache[dt]

    def step(phi: torch.Tensor, phi_hat: torch.Tensor, dt: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        # phi_hat <- ((1 + stab) phi_hat - dt M k^2 f'(phi)^) / (implicit + stab), in place
        dt_m_k2, implicit = operators(params.dt if dt is None else float(dt))
        stab = dt_m_k2 * (0.5 * _curvature_bound(phi, chi, params.n_a, params.n_b))
        denominator = implicit + stab
        bulk_hat = torch.fft.rfftn(chemical_potential_bulk(phi, chi, params.n_a, params.n_b), dim=dims).mul_(dt_m_k2)
        phi_hat.mul_(stab.add_(1)).sub_(bulk_hat).div_(denominator)
        return torch.fft.irfftn(phi_hat, s=shape, dim=dims), phi_hat

    return step
