"""Recipes page: the study at a glance, the ranked recipe table (sort, filter, CSV) and the recipe map."""

from __future__ import annotations

import numpy as np
import streamlit as st

from dashboards import _data, _plots
from dashboards._text import md_text
from generator.descriptors import words
from generator.errors import MicrodesignError

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
with_posterior = "recipe_source" in table.columns and bool((table["recipe_source"] == "posterior").any())
st.caption(
    "One row per measured trial: the recipe that makes the trial's microstructures"
    + (" — the mean of the calibrated recipe posterior, with its 80 % interval (`*_lo`, `*_hi`: the true recipe of a "
       "film lies inside in about 80 % of cases); `*_fp` is the feature predictor's mean, for reference. "
       if with_posterior else " (the feature predictor's mean; this model has no training table, so no calibrated interval). ")
    + "Ranked by feasibility, targets met, Pareto front, mismatch (normalised distance of the measured "
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
        density = None
        if with_posterior:
            trial = st.selectbox("Posterior of", list(shown["trial"]), key="recipes_posterior_trial",
                                 format_func=lambda t: f"trial {t} · rank {int(shown.loc[shown['trial'] == t, 'rank'].iloc[0])}")
            try:
                density = _data.posterior_density(data, int(trial))
            except MicrodesignError as exc:
                st.caption(f"Posterior not shown: {exc}")
        st.plotly_chart(_plots.recipe_map_figure(shown, training=training, density=density))
        st.caption("Flory-Huggins χ against annealing time of the recipes shown above, coloured by mismatch "
                   "(stars: every target met"
                   + ("; bars: calibrated 80 % intervals; blue: the selected trial's recipe posterior, contours enclosing "
                      "50, 80 and 95 %. χ and time trade off: the recipes along the ridge make the same films (the paper's "
                      "Figure 4b pathways)." if with_posterior else ")."))
    else:
        st.info("No recipe passes the filters.")
else:
    st.info("This model does not predict χ and annealing time, so there is no recipe map.")
