"""The Streamlit dashboard for reviewing design studies (``microdesign dashboard``).

:data:`APP_PATH` is the Streamlit script (a multipage app built with
``st.navigation``); its pages live in ``dashboards/views/``. The dashboard only
reads studies: it depends on :mod:`inverse` (and through it on
:mod:`generator`), never the other way. See ``docs/dashboard.md``.
"""

from __future__ import annotations

from pathlib import Path

#: The Streamlit script that ``microdesign dashboard`` runs.
APP_PATH = Path(__file__).resolve().parent / "app.py"

__all__ = ["APP_PATH"]
