"""``microdesign dashboard``: review design studies and their processing recipes.

Run with ``microdesign dashboard [--storage URL]`` (or ``streamlit run
dashboards/app.py -- --storage URL``). The sidebar picks a storage and a
study; the pages show it. They live in ``dashboards/views/``, not ``pages/``:
a ``pages/`` folder would switch Streamlit (and ``AppTest``) to the older
folder-based multipage mode. See ``docs/dashboard.md``.
"""

from __future__ import annotations

import streamlit as st

from dashboards import _data
from dashboards._text import md_text
from generator.errors import MicrodesignError
from inverse.masking import mask_credentials

PAGES = (
    ("views/recipes.py", "Recipes", ":material/format_list_numbered:"),
    ("views/convergence.py", "Convergence", ":material/trending_down:"),
    ("views/feasibility.py", "Feasibility map", ":material/scatter_plot:"),
    ("views/microstructures.py", "Microstructures", ":material/view_in_ar:"),
    ("views/descriptors.py", "Measured descriptors", ":material/area_chart:"),
    ("views/verification.py", "Verification", ":material/fact_check:"),
)

#: Choices of the sidebar's auto-refresh interval (seconds).
REFRESH_CHOICES = (5, 15, 60)


def _watch(url: str, name: str, every: int) -> None:
    """Re-run the whole app when the study's trial counts change (checked every ``every`` seconds)."""

    @st.fragment(run_every=every)
    def watch() -> None:
        version = _data.study_version(url, name)
        seen = st.session_state.get("microdesign_watch")
        st.session_state["microdesign_watch"] = version
        if seen is not None and seen != version:
            st.rerun()

    watch()


def sidebar() -> None:
    """Storage and study pickers, refresh controls; remembers the choice for the pages."""
    options = _data.launch_options()
    st.sidebar.title("microdesign")
    urls = _data.storage_urls(options)
    if not urls:
        st.session_state.pop(_data.SELECTION_KEY, None)
        st.sidebar.info(f"No study storage under {md_text(options.runs_dir)}/ yet. Run a study first, for example "
                        "`microdesign study run studies/opv.toml`, or start with `--storage URL`; then press R to reload.")
        return
    url = st.sidebar.selectbox("Storage", urls, key="storage", format_func=mask_credentials) if len(urls) > 1 else urls[0]
    if len(urls) == 1:
        st.sidebar.caption(f"Storage: {md_text(url)}")
    try:
        names = _data.study_names(url)
    except MicrodesignError as exc:
        st.session_state.pop(_data.SELECTION_KEY, None)
        st.sidebar.error(md_text(exc))
        return
    if not names:
        st.session_state.pop(_data.SELECTION_KEY, None)
        st.sidebar.info("This storage holds no study yet.")
        return
    linked = st.query_params.get("study")
    default = names.index(linked) if linked in names else len(names) - 1
    name = st.sidebar.selectbox("Study", names, index=default, key="study")
    st.query_params["study"] = name
    _data.select(url, name, options.runs_dir)
    trials, complete, failed, *_ = _data.study_version(url, name)
    st.sidebar.caption(f"{trials} trials: {complete} complete, {failed} failed, {trials - complete - failed} running or waiting")
    if st.sidebar.button("Refresh", icon=":material/refresh:"):
        _data.load_study.clear()
    if st.sidebar.toggle("Auto-refresh", key="auto_refresh", help="Follow a running study: reload when trials finish."):
        every = st.sidebar.select_slider("every (s)", REFRESH_CHOICES, value=REFRESH_CHOICES[1], key="refresh_every")
        _watch(url, name, every)


st.set_page_config(page_title="microdesign dashboard", page_icon=":material/biotech:", layout="wide")
sidebar()
st.navigation([st.Page(path, title=title, icon=icon, default=i == 0) for i, (path, title, icon) in enumerate(PAGES)]).run()
