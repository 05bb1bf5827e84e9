"""Convergence page: best-so-far per trial, and the Pareto front of multi-objective studies."""

from __future__ import annotations

import numpy as np
import streamlit as st

from dashboards import _data, _plots

data, runs_dir = _data.require_study()
st.header("Convergence")
_data.require_measured(data)

table = _data.convergence_table(data)
value_name = data.value_names[0]
direction = data.directions[0]
measured = table[np.isfinite(table["value"].to_numpy(dtype=float))]
best_row = measured.loc[measured["value"].idxmax() if direction == "maximize" else measured["value"].idxmin()]
cols = st.columns(3)
cols[0].metric(f"Best {value_name}", f"{best_row['value']:.4g}")
cols[1].metric("Found at trial", int(best_row["trial"]))
cols[2].metric("Trials since", int(table["trial"].max() - best_row["trial"]))
st.plotly_chart(_plots.convergence_figure(table, value_name))
st.caption(f"Measured trials and the best {value_name} so far ({direction}). The strip below shows every "
           "trial's status; infeasible proposals are never generated and do not count.")

if len(data.directions) > 1:
    st.subheader("Pareto front")
    values = _data.value_table(data)
    names = data.value_names
    c1, c2 = st.columns(2)
    x = c1.selectbox("x axis", names, index=0, key="pareto_x")
    y = c2.selectbox("y axis", names, index=1, key="pareto_y")
    st.plotly_chart(_plots.pareto_figure(values, x, y, dict(zip(names, data.directions))))
    front = values[values["pareto"]]
    st.caption(f"{len(front)} of {len(values)} measured trials are on the Pareto front of "
               + ", ".join(f"{n} ({d})" for n, d in zip(names, data.directions)) + ".")
    st.dataframe(front, hide_index=True, column_config=_data.number_format(front))
