"""Feasibility page: the PCA plane of the training conditions with the target and the proposals."""

from __future__ import annotations

import streamlit as st

from dashboards import _data, _plots
from dashboards._text import md_text
from generator.errors import MicrodesignError
from inverse import feasibility

data, runs_dir = _data.require_study()
st.header("Feasibility map")
proposals = _data.proposal_table(data)
if proposals.empty:
    st.info(f"Study **{md_text(data.name)}** has no proposal yet; this page fills in as trials start.")
    st.stop()

n_infeasible = int((~proposals["feasible"]).sum())
cols = st.columns(4)
cols[0].metric("Proposals", len(proposals))
cols[1].metric("Feasible", len(proposals) - n_infeasible)
cols[2].metric("Infeasible", n_infeasible)
fraction = data.record.feasible_fraction
cols[3].metric("Feasible share of the search box", f"{100 * fraction:.0f}%" if fraction is not None else "-")

try:
    model = _data.study_feasibility(data)
except MicrodesignError as exc:
    st.warning(f"The map needs the study's model and its training data: {md_text(exc)}")
    model = None
plane = _data.pca_plane(model) if model is not None else None
if model is not None and plane is None:
    st.info("This model has no training-descriptor table (published MicroGen3D weights): feasibility is a range "
            "check on the conditions, and there is no PCA plane to draw.")
if model is not None and plane is not None:
    target = _data.target_conditions(data, model)
    target_xy = nearest_xy = None
    if target is not None:
        x, filled = target
        target_xy = plane.project(model, x[None])[0]
        if filled:
            st.caption("Target: conditions without a target (" + ", ".join(filled) + ") are placed at the training mean.")
        else:
            report = feasibility.check_targets(model, dict(zip(model.columns, x)))
            if report.feasible:
                st.success("The target lies inside the training data.")
            else:
                st.warning(f"The target lies outside the training data: {md_text(report.explanation)}.")
                nearest_xy = plane.project(model, model.vector(report.nearest)[None])[0]
    scores = plane.project(model, proposals[model.columns].to_numpy(dtype=float))
    st.plotly_chart(_plots.feasibility_figure(
        plane.project(model, model.train), proposals, scores, explained=plane.explained,
        boundary=_data.t2_boundary(model, plane), target=target_xy, nearest=nearest_xy,
    ))
    st.caption(
        "The training samples' conditions (" + ", ".join(model.columns) + "), standardised and projected on their "
        "first two principal components. The dashed curve is the T² limit in this plane; a proposal is feasible "
        "when T² and the residual SPE (off the plane) are within their training limits and every condition is "
        "within its training range, so a few markers inside the curve can still be infeasible."
    )

st.subheader("Proposals")
st.dataframe(proposals, hide_index=True, column_config=_data.number_format(proposals))
