"""Measured-descriptors page: distributions over the generated volumes against the targets (like Fig. 4a)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboards import _data, _plots
from dashboards._text import md_text
from generator.errors import MicrodesignError
from inverse.record import TrialRecord

data, runs_dir = _data.require_study()
st.header("Measured descriptors")
_data.require_measured(data)

ranked = data.recipes.set_index("trial")
all_names = sorted({n for t in data.measured for n in TrialRecord.of(t).measured_mean})
c1, c2 = st.columns(2)
trials = c1.multiselect(
    "Trials", list(ranked.index), default=list(ranked.index[:3]), key="desc_trials",
    format_func=lambda t: f"rank {ranked.loc[t, 'rank']} · trial {t}",
)
names = c2.multiselect("Descriptors", all_names, default=[n for n in data.descriptor_names if n in all_names] or all_names[:3],
                       key="desc_names")
if not trials or not names:
    st.info("Pick at least one trial and one descriptor.")
    st.stop()

folder = str(_data.artifact_folder(data, runs_dir))
samples = {}
for t in trials:
    try:
        samples[t] = _data.trial_samples(folder, str(ranked.loc[t, "artifact_id"])).descriptors
    except MicrodesignError as exc:
        st.warning(md_text(exc))
try:
    training = _data.study_model(data).descriptor_table
except MicrodesignError as exc:
    training = None
    st.caption(f"Training distribution not shown: {md_text(exc)}")

targets = data.targets
st.caption("Kernel density of each descriptor over the trial's generated volumes (one curve per trial), "
           "the training data (dashed) and the target's accepted interval (shaded).")
for name in names:
    curves = {f"rank {ranked.loc[t, 'rank']} · trial {t}": s[name].to_numpy() for t, s in samples.items() if name in s}
    reference = training[name].to_numpy() if training is not None and name in training.columns else None
    interval = targets[name].interval if name in targets else None
    st.plotly_chart(_plots.kde_figure(name, curves, interval=interval, training=reference), key=f"kde_{name}")

st.subheader("Means and spreads")
rows = []
for t in trials:
    attrs = TrialRecord.of(data.trial(t))
    for name in names:
        lo, hi = targets[name].interval if name in targets else (float("nan"), float("nan"))
        rows.append({"trial": t, "rank": ranked.loc[t, "rank"], "descriptor": name,
                     "mean": attrs.measured_mean.get(name), "std": attrs.measured_std.get(name),
                     "target low": lo, "target high": hi,
                     "distance": attrs.target_distance.get(name)})
means = pd.DataFrame(rows)
st.dataframe(means, hide_index=True, column_config=_data.number_format(means))
