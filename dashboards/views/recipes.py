"""Recipes page: the study at a glance, the ranked recipe table (sort, filter, CSV) and the recipe map."""

from __future__ import annotations

import numpy as np
import streamlit as st

from dashboards import _data, _plots
from dashboards._text import md_text
from generator.errors import MicrodesignError
from inverse._words import words

data, runs_dir = _data.require_study()
st.header(f"Study {md_text(data.name)}")

counts = data.status_counts()
cols = st.columns(5)
cols[0].metric("Trials", len(data.trials))
cols[1].metric("Measured", counts.get("measured", 0))
cols[2].metric("Infeasible", counts.get("infeasible", 0))
cols[3].metric("Failed", counts.get("failed", 0))
table = data.recipes
best = float(table["mismatch"].min()) if len(table) else float("nan")
cols[4].metric("Best mismatch", f"{best:.4g}" if np.isfinite(best) else "-")

if data.targets or data.objectives:
    with st.expander("Targets and objectives"):
        rows = [{"descriptor": n, "words": words(n), "accepted interval": f"[{t.interval[0]:.4g}, {t.interval[1]:.4g}]"}
                for n, t in data.targets.items()]
        rows += [{"descriptor": d, "words": words(d), "accepted interval": direction} for d, direction in data.objectives]
        st.dataframe(rows, hide_index=True)

_data.require_measured(data)

st.subheader("Ranked recipes")
st.caption(
    "One row per measured trial: the recipe the feature predictor gives for the trial's microstructures. "
    "Ranked by feasibility, targets met, Pareto front, mismatch (normalised distance of the measured "
    "descriptors to the targets; 0 = every target met), then uncertainty."
)
sortable = [c for c in table.columns if c != "artifact_id"]
c1, c2, c3, c4, c5 = st.columns([2, 1, 1, 1, 2])
sort_by = c1.selectbox("Sort by", sortable, index=0, key="recipes_sort")
descending = c2.toggle("Descending", key="recipes_descending")
feasible_only = c3.checkbox("Feasible only", key="recipes_feasible")
meets_only = c4.checkbox("Targets met only", key="recipes_meets")
max_mismatch = c5.number_input("Largest mismatch", min_value=0.0, value=None, step=0.05, format="%.3f",
                               placeholder="no limit", key="recipes_max_mismatch")
shown = _data.filter_recipes(table, feasible_only=feasible_only, meets_targets_only=meets_only,
                             max_mismatch=max_mismatch, sort_by=sort_by, ascending=not descending)
st.dataframe(
    shown.drop(columns=["artifact_id"], errors="ignore"),
    hide_index=True,
    column_config=_data.number_format(shown),
)
st.caption(f"{len(shown)} of {len(table)} recipes shown.")
st.download_button("Download CSV", shown.to_csv(index=False), file_name=f"{data.name}_recipes.csv", mime="text/csv",
                   icon=":material/download:")

st.subheader("Recipe map")
if {"chi_mean", "log_time_mean"} <= set(table.columns):
    try:
        training = _data.study_model(data).descriptor_table
    except MicrodesignError as exc:
        training = None
        st.caption(f"Training data not shown: {md_text(exc)}")
    if len(shown):
        st.plotly_chart(_plots.recipe_map_figure(shown, training=training))
        st.caption("Flory-Huggins χ against annealing time of the recipes shown above, coloured by mismatch "
                   "(stars: every target met; bars: spread over the trial's samples).")
    else:
        st.info("No recipe passes the filters.")
else:
    st.info("This model does not predict χ and annealing time, so there is no recipe map.")
