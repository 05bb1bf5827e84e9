"""Verification page: recipes simulated with the physics engine, measured against the targets."""

from __future__ import annotations

import streamlit as st

from dashboards import _data, _plots

data, runs_dir = _data.require_study()
st.header("Verification")
table = _data.verification_table(data)
if table.empty:
    st.info(
        f"No recipe of study **{data.name}** has been verified yet. `microdesign verify` simulates a recipe with "
        f"the Cahn-Hilliard engine and stores what it measures in the study attribute `{_data.VERIFICATION_KEY}`; "
        "the results show up here."
    )
    st.stop()

cols = st.columns(3)
cols[0].metric("Verified recipes", len(table))
cols[1].metric("Meet the targets when simulated", int(table["meets_targets"].fillna(False).astype(bool).sum()))
best = table["verified_mismatch"].min()
cols[2].metric("Best verified mismatch", f"{best:.4g}")
names = [n for n in data.descriptor_names if f"{n}_verified" in table.columns]
if names:
    st.plotly_chart(_plots.verification_figure(table, names, {n: t.interval for n, t in data.targets.items()}))
    st.caption("Per target descriptor: the mean measured on the generated volumes and on the volumes simulated "
               "from the trial's recipe (± std over the runs); shaded: the target's accepted interval.")
st.dataframe(table.sort_values("verified_mismatch"), hide_index=True, column_config=_data.number_format(table))
