"""Plotly figures of the dashboard (pure functions of tables and arrays; no Streamlit)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from scipy.stats import gaussian_kde

from generator.descriptors import words

#: Colours of the phase labels 0 donor, 1 acceptor, 2 mixed.
PHASE_COLOURS = ("#1f3b73", "#f2c14e", "#8c8c8c")
PHASE_NAMES = ("donor", "acceptor", "mixed")

#: Colours of the trial statuses.
STATUS_COLOURS = {"measured": "#2a9d8f", "infeasible": "#d62828", "failed": "#6c757d", "running": "#f4a261"}

#: Largest side (voxels) of the volume drawn as a 3-D isosurface; larger volumes are downsampled.
ISOSURFACE_MAX_SIDE = 48


def label(name: str) -> str:
    """Axis label of a descriptor or recipe variable: its name and, when known, its words."""
    text = words(name)
    return name if text == name else f"{name} ({text})"


def _layout(fig: go.Figure, **kwargs: object) -> go.Figure:
    fig.update_layout(margin=dict(l=10, r=10, t=40, b=10), template="plotly_white",
                      legend=dict(orientation="h", x=0.0, y=1.02, yanchor="bottom"))
    fig.update_layout(**kwargs)
    return fig


def convergence_figure(table: pd.DataFrame, value_name: str) -> go.Figure:
    """Measured values and the best so far per trial, over a strip of every trial's status.

    ``table`` is :func:`dashboards._data.convergence_table` (``trial``, ``status``, ``value``, ``best_so_far``).
    """
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.82, 0.18], vertical_spacing=0.04)
    measured = table[np.isfinite(table["value"].to_numpy(dtype=float))]
    fig.add_trace(go.Scatter(x=measured["trial"], y=measured["value"], mode="markers", name=value_name,
                             marker=dict(color=STATUS_COLOURS["measured"], size=8)), row=1, col=1)
    fig.add_trace(go.Scatter(x=table["trial"], y=table["best_so_far"], mode="lines", line_shape="hv", name="best so far",
                             line=dict(color="black", width=2)), row=1, col=1)
    for status, group in table.groupby("status", sort=False):
        fig.add_trace(go.Scatter(x=group["trial"], y=[str(status)] * len(group), mode="markers", name=str(status),
                                 marker=dict(symbol="line-ns-open", size=12, color=STATUS_COLOURS.get(str(status), "#999")),
                                 showlegend=False), row=2, col=1)
    fig.update_yaxes(title_text=value_name, row=1, col=1)
    fig.update_xaxes(title_text="trial", row=2, col=1)
    return _layout(fig, height=460)


def pareto_figure(table: pd.DataFrame, x: str, y: str, directions: Mapping[str, str]) -> go.Figure:
    """Measured trials in the plane of two trial values, the Pareto front joined and highlighted.

    ``table`` is :func:`dashboards._data.value_table` (``trial``, the values, ``pareto``).
    """
    fig = go.Figure()
    rest = table[~table["pareto"]]
    front = table[table["pareto"]].sort_values(x)
    fig.add_trace(go.Scatter(x=rest[x], y=rest[y], mode="markers", name="dominated",
                             marker=dict(color="#adb5bd", size=8), text=rest["trial"].map("trial {}".format)))
    fig.add_trace(go.Scatter(x=front[x], y=front[y], mode="markers+lines", name="Pareto front",
                             marker=dict(color="#d62828", size=11, symbol="diamond"), text=front["trial"].map("trial {}".format)))
    fig.update_xaxes(title_text=f"{x} ({directions.get(x, '')})")
    fig.update_yaxes(title_text=f"{y} ({directions.get(y, '')})")
    return _layout(fig, height=460)


def feasibility_figure(
    train: np.ndarray,
    proposals: pd.DataFrame,
    scores: np.ndarray,
    *,
    explained: Sequence[float],
    boundary: tuple[np.ndarray, np.ndarray] | None = None,
    target: np.ndarray | None = None,
    nearest: np.ndarray | None = None,
) -> go.Figure:
    """The PCA plane: training samples, the T² limit, the target and the proposals.

    Parameters
    ----------
    train
        ``(n, 2)`` scores of the training samples.
    proposals
        :func:`dashboards._data.proposal_table` rows, aligned with ``scores``.
    scores
        ``(m, 2)`` scores of the proposals.
    explained
        Explained-variance fractions of the two axes.
    boundary
        The ``T²`` limit curve (:func:`dashboards._data.t2_boundary`).
    target, nearest
        ``(2,)`` scores of the target and of the nearest feasible target.
    """
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=train[:, 0], y=train[:, 1], mode="markers", name="training data",
                             marker=dict(color="#ced4da", size=6)))
    if boundary is not None:
        fig.add_trace(go.Scatter(x=boundary[0], y=boundary[1], mode="lines", name="T² limit",
                                 line=dict(color="#495057", dash="dash")))
    feasible = proposals["feasible"].to_numpy(dtype=bool) if len(proposals) else np.zeros(0, dtype=bool)
    ok = feasible & np.isfinite(proposals["mismatch"].to_numpy(dtype=float)) if len(proposals) else feasible
    text = proposals["trial"].map("trial {}".format) if len(proposals) else []
    if ok.any():
        fig.add_trace(go.Scatter(x=scores[ok, 0], y=scores[ok, 1], mode="markers", name="proposals (measured)",
                                 text=np.asarray(text)[ok],
                                 marker=dict(color=proposals["mismatch"][ok], colorscale="Viridis_r", size=10,
                                             colorbar=dict(title="mismatch"), line=dict(color="black", width=0.5))))
    other = feasible & ~ok
    if other.any():
        fig.add_trace(go.Scatter(x=scores[other, 0], y=scores[other, 1], mode="markers", name="proposals (not measured)",
                                 text=np.asarray(text)[other], marker=dict(color="#6c757d", size=9, symbol="circle-open")))
    if (~feasible).any():
        fig.add_trace(go.Scatter(x=scores[~feasible, 0], y=scores[~feasible, 1], mode="markers", name="infeasible proposals",
                                 text=np.asarray(text)[~feasible], marker=dict(color=STATUS_COLOURS["infeasible"], size=10, symbol="x")))
    if target is not None:
        fig.add_trace(go.Scatter(x=[target[0]], y=[target[1]], mode="markers", name="target",
                                 marker=dict(color="#e63946", size=18, symbol="star", line=dict(color="black", width=1))))
    if nearest is not None:
        fig.add_trace(go.Scatter(x=[nearest[0]], y=[nearest[1]], mode="markers", name="nearest feasible target",
                                 marker=dict(color="#2a9d8f", size=14, symbol="star-open", line=dict(width=2))))
    fig.update_xaxes(title_text=f"PC1 ({100 * explained[0]:.0f}% of the variance)")
    fig.update_yaxes(title_text=f"PC2 ({100 * explained[1]:.0f}% of the variance)", scaleanchor="x", scaleratio=1)
    return _layout(fig, height=520)


def slices_figure(volume: np.ndarray, x: int, y: int, z: int) -> go.Figure:
    """Three orthogonal slices of a label volume ``(X, Y, Z)``: ``x = const``, ``y = const``, ``z = const``."""
    n_phases = max(2, int(volume.max()) + 1)
    colours = PHASE_COLOURS[:n_phases]
    scale = []
    for i, c in enumerate(colours):
        scale += [[i / n_phases, c], [(i + 1) / n_phases, c]]
    fig = make_subplots(rows=1, cols=3, subplot_titles=(f"x = {x} (y-z)", f"y = {y} (x-z)", f"z = {z} (x-y)"),
                        horizontal_spacing=0.06)
    planes = (volume[x, :, :], volume[:, y, :], volume[:, :, z])
    axes = (("y", "z"), ("x", "z"), ("x", "y"))
    for col, (plane, (h, v)) in enumerate(zip(planes, axes), start=1):
        fig.add_trace(go.Heatmap(z=plane.T, zmin=-0.5, zmax=n_phases - 0.5, colorscale=scale, showscale=col == 3,
                                 colorbar=dict(tickvals=list(range(n_phases)), ticktext=list(PHASE_NAMES[:n_phases])),
                                 hovertemplate=f"{h}=%{{x}} {v}=%{{y}} phase=%{{z}}<extra></extra>"), row=1, col=col)
        fig.update_xaxes(title_text=h, row=1, col=col, constrain="domain")
        fig.update_yaxes(title_text=v, row=1, col=col, scaleanchor=f"x{'' if col == 1 else col}", scaleratio=1)
    return _layout(fig, height=360)


def downsample_factor(shape: Sequence[int], max_side: int = ISOSURFACE_MAX_SIDE) -> int:
    """Stride that brings the largest side of ``shape`` to at most ``max_side`` voxels."""
    return max(1, int(np.ceil(max(shape) / max_side)))


def isosurface_figure(volume: np.ndarray, phase: int = 0, max_side: int = ISOSURFACE_MAX_SIDE) -> go.Figure:
    """A 3-D isosurface of one phase of ``(X, Y, Z)`` labels, downsampled by block averaging for large volumes.

    The surface is the 0.5 level of the phase's indicator (its local volume
    fraction after averaging ``s³`` blocks, ``s`` = :func:`downsample_factor`).
    """
    s = downsample_factor(volume.shape, max_side)
    indicator = (volume == phase).astype(np.float32)
    if s > 1:
        pad = [(0, (-n) % s) for n in indicator.shape]
        indicator = np.pad(indicator, pad, mode="edge")
        nx, ny, nz = (n // s for n in indicator.shape)
        indicator = indicator.reshape(nx, s, ny, s, nz, s).mean(axis=(1, 3, 5))
    gx, gy, gz = np.meshgrid(*(np.arange(n) * s for n in indicator.shape), indexing="ij")
    fig = go.Figure(go.Isosurface(
        x=gx.ravel(), y=gy.ravel(), z=gz.ravel(), value=indicator.ravel(), isomin=0.5, isomax=1.0,
        surface_count=1, caps=dict(x_show=True, y_show=True, z_show=True), showscale=False,
        colorscale=[[0, PHASE_COLOURS[phase]], [1, PHASE_COLOURS[phase]]],
    ))
    fig.update_layout(scene=dict(xaxis_title="x", yaxis_title="y", zaxis_title="z (electrode axis)", aspectmode="data"))
    return _layout(fig, height=520, title=f"{PHASE_NAMES[phase]} phase" + (f" (downsampled {s}x)" if s > 1 else ""))


def kde_curve(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Gaussian kernel density of ``values`` on ``grid`` (a narrow normal for fewer than 2 distinct values)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return np.zeros_like(grid)
    if len(values) >= 2 and np.ptp(values) > 0:
        try:
            return gaussian_kde(values)(grid)
        except np.linalg.LinAlgError:
            pass
    width = max(0.02 * float(np.ptp(grid)), 1e-9)
    return np.exp(-0.5 * ((grid - values.mean()) / width) ** 2) / (width * np.sqrt(2 * np.pi))


def kde_figure(
    name: str,
    samples: Mapping[str, np.ndarray],
    *,
    interval: tuple[float, float] | None = None,
    training: np.ndarray | None = None,
) -> go.Figure:
    """Densities of one measured descriptor: one curve per trial, the training data, the target interval.

    Parameters
    ----------
    name
        The descriptor.
    samples
        ``{legend: values (n,)}`` measured per generated volume.
    interval
        The target's accepted interval ``(lo, hi)`` (infinite ends allowed).
    training
        The descriptor over the training set (dashed grey reference).
    """
    pools = [np.asarray(v, dtype=float) for v in samples.values()]
    if training is not None:
        pools.append(np.asarray(training, dtype=float))
    if interval is not None:
        pools.append(np.array([e for e in interval if np.isfinite(e)]))
    allv = np.concatenate([p[np.isfinite(p)] for p in pools]) if pools else np.zeros(1)
    lo, hi = (float(allv.min()), float(allv.max())) if len(allv) else (0.0, 1.0)
    pad = 0.15 * (hi - lo) if hi > lo else 0.05 * max(abs(hi), 1.0)
    grid = np.linspace(lo - pad, hi + pad, 256)
    fig = go.Figure()
    if interval is not None:
        a = interval[0] if np.isfinite(interval[0]) else grid[0]
        b = interval[1] if np.isfinite(interval[1]) else grid[-1]
        fig.add_vrect(x0=a, x1=b, fillcolor="#2a9d8f", opacity=0.15, line_width=0, annotation_text="target",
                      annotation_position="top left")
    if training is not None:
        fig.add_trace(go.Scatter(x=grid, y=kde_curve(training, grid), mode="lines", name="training data",
                                 line=dict(color="#868e96", dash="dash")))
    for legend, values in samples.items():
        fig.add_trace(go.Scatter(x=grid, y=kde_curve(values, grid), mode="lines", name=legend, fill="tozeroy", opacity=0.6))
    fig.update_xaxes(title_text=label(name))
    fig.update_yaxes(title_text="density")
    return _layout(fig, height=340)


def _interval_bars(table: pd.DataFrame, name: str) -> dict[str, object] | None:
    """Asymmetric error bars from ``<name>_lo``/``<name>_hi`` around ``<name>_mean`` (``None`` without an interval)."""
    if f"{name}_lo" not in table.columns or not np.isfinite(table[f"{name}_lo"].to_numpy(dtype=float)).any():
        return None
    mean = table[f"{name}_mean"].to_numpy(dtype=float)
    return dict(type="data", symmetric=False, array=table[f"{name}_hi"].to_numpy(dtype=float) - mean,
                arrayminus=mean - table[f"{name}_lo"].to_numpy(dtype=float), thickness=1, color="#adb5bd")


def recipe_map_figure(table: pd.DataFrame, *, training: pd.DataFrame | None = None,
                      density: tuple[np.ndarray, np.ndarray, np.ndarray, Sequence[float]] | None = None) -> go.Figure:
    """χ against annealing time (``log_time``) of the ranked recipes, coloured by mismatch (like Fig. 4b).

    ``table`` is the ranked recipe table (needs ``chi_mean``, ``log_time_mean``,
    ``mismatch``; ``*_lo``/``*_hi``, the calibrated 80 % intervals, become error
    bars). ``training`` (columns ``chi``, ``log_time``) is drawn in grey behind.
    ``density`` ``(log_time (nx,), chi (ny,), values (ny, nx), levels)`` is a
    recipe posterior drawn as filled contours at the given density levels
    (the family of (χ, time) pathways that make the design).
    """
    fig = go.Figure()
    if training is not None and {"chi", "log_time"} <= set(training.columns):
        fig.add_trace(go.Scatter(x=training["log_time"], y=training["chi"], mode="markers", name="training data",
                                 marker=dict(color="#dee2e6", size=6)))
    if density is not None:
        x, y, z, levels = density
        levels = sorted(float(v) for v in levels)
        fig.add_trace(go.Contour(
            x=x, y=y, z=z, name="recipe posterior", showscale=False, opacity=0.55, colorscale="Blues", hoverinfo="skip",
            contours=dict(start=levels[0], end=levels[-1], size=(levels[-1] - levels[0]) / max(len(levels) - 1, 1) or 1.0,
                          coloring="fill", showlines=True),
            line=dict(width=1, color="#1d3557"), showlegend=True,
        ))
    custom = np.stack([table["rank"], table["trial"], table.get("phi_mean", pd.Series(np.nan, index=table.index))], axis=1)
    meets = table["meets_targets"].to_numpy(dtype=bool)
    fig.add_trace(go.Scatter(
        x=table["log_time_mean"], y=table["chi_mean"], mode="markers", name="recipes",
        error_x=_interval_bars(table, "log_time"),
        error_y=_interval_bars(table, "chi"),
        marker=dict(color=table["mismatch"], colorscale="Viridis_r", size=np.where(meets, 16, 11),
                    symbol=np.where(meets, "star", "circle"), colorbar=dict(title="mismatch"), line=dict(color="black", width=0.5)),
        customdata=custom,
        hovertemplate="rank %{customdata[0]} (trial %{customdata[1]})<br>log t = %{x:.3f}<br>χ = %{y:.3f}"
                      "<br>φ = %{customdata[2]:.3f}<br>mismatch = %{marker.color:.3g}<extra></extra>",
    ))
    fig.update_xaxes(title_text="annealing time, log10 t (log_time)")
    fig.update_yaxes(title_text="Flory-Huggins χ (chi)")
    return _layout(fig, height=460)


def verification_figure(table: pd.DataFrame, names: Sequence[str], intervals: Mapping[str, tuple[float, float]]) -> go.Figure:
    """Per target descriptor: generated mean and simulated (verified) mean ± std per trial, the target band."""
    fig = make_subplots(rows=1, cols=max(1, len(names)), subplot_titles=list(names))
    trials = table["trial"].map("trial {}".format)
    for col, name in enumerate(names, start=1):
        fig.add_trace(go.Scatter(x=trials, y=table[f"{name}_generated"], mode="markers", name="generated",
                                 marker=dict(color="#457b9d", size=10), showlegend=col == 1), row=1, col=col)
        fig.add_trace(go.Scatter(x=trials, y=table[f"{name}_verified"], mode="markers", name="simulated (verified)",
                                 error_y=dict(array=table[f"{name}_verified_std"]),
                                 marker=dict(color="#e76f51", size=10, symbol="diamond"), showlegend=col == 1), row=1, col=col)
        if name in intervals:
            lo, hi = intervals[name]
            values = table[[f"{name}_generated", f"{name}_verified"]].to_numpy(dtype=float).ravel()
            shown = np.concatenate([values, [e for e in (lo, hi) if np.isfinite(e)]])
            shown = shown[np.isfinite(shown)]
            bottom, top = (shown.min(), shown.max()) if len(shown) else (0.0, 1.0)
            pad = 0.1 * (top - bottom) if top > bottom else 0.05 * max(abs(top), 1.0)
            y0 = lo if np.isfinite(lo) else bottom - pad
            y1 = hi if np.isfinite(hi) else top + pad
            fig.add_hrect(y0=y0, y1=y1, fillcolor="#2a9d8f", opacity=0.15, line_width=0, row=1, col=col)
    return _layout(fig, height=400, legend=dict(orientation="h", x=0.0, y=-0.15, yanchor="top"))


def refinement_figure(trail: Sequence[Mapping[str, object]]) -> go.Figure:
    """Score of each simulated recipe of a refinement against the simulator runs spent (verified ones as stars)."""
    runs = np.cumsum([int(c.get("n_runs") or 0) for c in trail])
    scores = np.array([np.nan if c.get("score") is None else float(c["score"]) for c in trail])
    meets = np.array([bool(c.get("meets_targets")) for c in trail])
    sources = [str(c.get("source", "search")) for c in trail]
    recipes = [c.get("recipe") or {} for c in trail]
    custom = np.array([[r.get("phi", np.nan), r.get("chi", np.nan), r.get("log_time", np.nan)] for r in recipes], dtype=float)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=runs, y=np.fmin.accumulate(np.nan_to_num(scores, nan=np.inf)), mode="lines", name="best so far",
                             line=dict(color="#adb5bd", shape="hv")))
    fig.add_trace(go.Scatter(
        x=runs, y=scores, mode="markers", name="simulated recipes", text=sources, customdata=custom,
        marker=dict(color=np.where(meets, "#2a9d8f", "#e76f51"), size=np.where(meets, 16, 10), symbol=np.where(meets, "star", "circle")),
        hovertemplate="%{text}: φ=%{customdata[0]:.3f} χ=%{customdata[1]:.3f} log t=%{customdata[2]:.3f}"
                      "<br>runs so far %{x}<br>score %{y:.3g}<extra></extra>",
    ))
    fig.update_xaxes(title_text="simulator runs spent")
    fig.update_yaxes(title_text="score of the simulated films (0 = every target met)")
    return _layout(fig, height=380)
