"""Verification page: recipes simulated with the physics engine (``microdesign verify``), against the targets."""

from __future__ import annotations

import numpy as np
import streamlit as st

from dashboards import _data, _plots
from dashboards._text import md_text
from generator.errors import MicrodesignError
from inverse.record import TrialRecord

data, runs_dir = _data.require_study()
st.header("Verification")
table = _data.verification_table(data)
if table.empty:
    st.info(
        f"No recipe of study **{md_text(data.name)}** has been verified yet. microdesign verify {md_text(data.name)} simulates the "
        "top recipes with the Cahn-Hilliard engine and stores what it measures in the study; the results show up here."
    )
    st.stop()

meets = table["meets_targets"].fillna(False).astype(bool)
cols = st.columns(4)
cols[0].metric("Verified recipes", len(table))
cols[1].metric("Meet the targets as generated", int(table["generated_meets_targets"].fillna(False).astype(bool).sum()))
cols[2].metric("Meet the targets when simulated", int(meets.sum()))
best = table["verified_mismatch"].min()
cols[3].metric("Best verified mismatch", f"{best:.4g}" if np.isfinite(best) else "-")
spinodal = table.loc[table["below_spinodal"].fillna(False).astype(bool), "trial"].tolist()
if spinodal:
    st.warning("χ is at or below the spinodal for trial(s) " + ", ".join(map(str, spinodal))
               + ": that blend does not phase-separate, whatever the annealing time.")
outside = table[table["outside_training"] != ""]
for row in outside.itertuples():
    st.caption(f"Trial {row.trial}: recipe outside the training range in {row.outside_training}.")

names = [n for n in _data.verified_descriptors(data) if f"{n}_verified" in table.columns]
intervals = {n: t.interval for n, t in data.targets.items()}
if names:
    st.plotly_chart(_plots.verification_figure(table, names, intervals))
    st.caption("Per descriptor: the mean measured on the generated volumes and on the volumes simulated from the "
               "trial's recipe (± std over the runs); shaded: the target's accepted interval.")
st.dataframe(table, hide_index=True, column_config=_data.number_format(table))

st.subheader("Simulated against generated")
records = _data.verification_records(data)
trial = st.selectbox("Trial", list(table["trial"]), key="verify_trial",
                     format_func=lambda t: f"trial {t} · rank {records[t].get('rank')}")
record = records[trial]
folder = str(_data.artifact_folder(data, runs_dir))
generated = None
artifact = TrialRecord.of(data.trial(trial)).artifact_id
try:
    generated = _data.trial_samples(folder, str(artifact)).descriptors if artifact else None
except MicrodesignError as exc:
    st.caption(md_text(exc))
samples = record.get("simulated_samples") or {}
for name in names:
    curves = {}
    if generated is not None and name in generated:
        curves[f"generated (trial {trial})"] = generated[name].to_numpy()
    if name in samples:
        curves["simulated"] = np.array([np.nan if v is None else v for v in samples[name]], dtype=float)
    if curves:
        st.plotly_chart(_plots.kde_figure(name, curves, interval=intervals.get(name)), key=f"verify_kde_{name}")
if record.get("artifact_id"):
    try:
        simulated = _data.trial_samples(folder, str(record["artifact_id"])).labels
    except MicrodesignError as exc:
        st.caption(md_text(exc))
    else:
        volume = simulated[0]
        st.plotly_chart(_plots.slices_figure(volume, *(n // 2 for n in volume.shape)), key="verify_slices")
        st.caption(f"Middle slices of the first simulated volume (seed {(record.get('seeds') or ['?'])[0]}), "
                   f"after t = {record.get('time')} of annealing.")

refinements = _data.refinement_records(data)
if refinements:
    st.subheader("Physics-refined recipes")
    st.caption("`microdesign verify --refine` went on from the posterior when the verified recipe missed the targets: "
               "a search with the simulator in the loop, warm-started from the recipe posterior, until a recipe's "
               "simulated films met every target (mean over its runs) or the budget ran out.")
    rows = []
    for number, entry in sorted(refinements.items()):
        verified = entry.get("verified_recipe") or {}
        rows.append({"trial": number, "status": entry.get("status"), "recipes simulated": entry.get("n_recipes"),
                     "simulator runs": entry.get("n_runs"), "runs to the verified recipe": entry.get("runs_to_verified"),
                     "budget (runs)": entry.get("budget"), "seconds": entry.get("seconds"),
                     **{f"verified {k}": v for k, v in verified.items()}, "best score": entry.get("best_score")})
    st.dataframe(rows, hide_index=True)
    chosen = st.selectbox("Refinement of", sorted(refinements), key="refine_trial", format_func=lambda t: f"trial {t}")
    entry = refinements[chosen]
    if entry.get("status") == "verified":
        recipe = entry["verified_recipe"]
        st.success(f"Verified recipe: φ = {recipe['phi']:.3f}, χ = {recipe['chi']:.3f}, log t = {recipe['log_time']:.3f} "
                   f"after {entry.get('runs_to_verified')} simulator runs ({entry.get('n_recipes')} recipes).")
    else:
        st.warning(f"Budget exhausted: no recipe met the targets within {entry.get('budget')} simulator runs; "
                   f"the closest scored {entry.get('best_score')}.")
    trail = entry.get("trail") or []
    if trail:
        st.plotly_chart(_plots.refinement_figure(trail), key="refine_trail")
        trail_table = _data.refinement_table(entry)
        st.dataframe(trail_table, hide_index=True, column_config=_data.number_format(trail_table))
