"""Microstructures page: each measured trial's volumes as slices and a 3-D isosurface, with downloads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from dashboards import _data, _plots
from dashboards._text import md_text
from generator.errors import MicrodesignError

data, runs_dir = _data.require_study()
st.header("Microstructures")
_data.require_measured(data)

ranked = data.recipes.set_index("trial")
trial = st.selectbox(
    "Trial", list(ranked.index), key="micro_trial",
    format_func=lambda t: f"rank {ranked.loc[t, 'rank']} · trial {t} · mismatch {ranked.loc[t, 'mismatch']:.3g}",
)
folder = str(_data.artifact_folder(data, runs_dir))
artifact_id = str(ranked.loc[trial, "artifact_id"])
try:
    samples = _data.trial_samples(folder, artifact_id)
except MicrodesignError as exc:
    st.warning(md_text(exc))
    st.stop()

n = len(samples.labels)
sample = st.selectbox("Sample", list(range(n)), key="micro_sample", format_func=lambda i: f"{i + 1} of {n}")
volume = samples.labels[sample]
nx, ny, nz = volume.shape
fractions = np.bincount(volume.ravel(), minlength=3) / volume.size
st.caption(f"{nx} x {ny} x {nz} voxels (z: electrode axis, z = 0 the bottom electrode); "
           + ", ".join(f"{name} {100 * f:.1f}%" for name, f in zip(_plots.PHASE_NAMES, fractions) if f > 0))

st.subheader("Orthogonal slices")
c1, c2, c3 = st.columns(3)
x = c1.slider("x", 0, nx - 1, nx // 2, key="micro_x")
y = c2.slider("y", 0, ny - 1, ny // 2, key="micro_y")
z = c3.slider("z", 0, nz - 1, nz // 2, key="micro_z")
st.plotly_chart(_plots.slices_figure(volume, x, y, z))

left, right = st.columns([3, 2])
with left:
    st.subheader("3-D view")
    phases = [i for i in range(3) if fractions[i] > 0]
    phase = st.radio("Phase", phases, key="micro_phase", horizontal=True, format_func=lambda i: _plots.PHASE_NAMES[i])
    st.plotly_chart(_plots.isosurface_figure(volume, phase))
with right:
    st.subheader("This sample")
    values = pd.concat([samples.descriptors.iloc[sample], samples.recipes.iloc[sample]])
    st.dataframe(values.rename("value").to_frame(), height=420)
    stem = f"{data.name}_trial{trial}_sample{sample}"
    d1, d2 = st.columns(2)
    d1.download_button("Download .vti", _data.volume_bytes(folder, artifact_id, sample, ".vti"), file_name=f"{stem}.vti",
                       mime="application/xml", icon=":material/download:", key="micro_vti")
    d2.download_button("Download .npy", _data.volume_bytes(folder, artifact_id, sample, ".npy"), file_name=f"{stem}.npy",
                       mime="application/octet-stream", icon=":material/download:", key="micro_npy")
    st.caption("Labels: 0 donor, 1 acceptor, 2 mixed; `.vti` opens in ParaView.")
