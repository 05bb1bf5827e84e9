"""``microdesign dashboard``: the Streamlit dashboard for reviewing studies and their recipes."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from generator.errors import InvalidInputError
from inverse.cli._app import app


def app_path() -> Path:
    """The dashboard's Streamlit script, found without importing :mod:`dashboards` (which depends on :mod:`inverse`)."""
    found = importlib.util.find_spec("dashboards")
    if found is None or not found.submodule_search_locations:
        raise InvalidInputError("dashboard: the dashboards package is not installed")
    return Path(next(iter(found.submodule_search_locations))) / "app.py"


def streamlit_command(
    *,
    storage: str | None,
    port: int,
    address: str,
    runs_dir: Path,
    headless: bool = True,
) -> list[str]:
    """The ``python -m streamlit run dashboards/app.py ...`` command line (the app found via the installed package)."""
    command = [
        sys.executable, "-m", "streamlit", "run", str(app_path()),
        "--server.port", str(port),
        "--server.address", address,
        "--server.headless", str(headless).lower(),
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "minimal",
        "--",
        "--runs-dir", str(runs_dir.resolve()),
    ]
    if storage:
        command += ["--storage", storage]
    return command


@app.command()
def dashboard(
    storage: Annotated[str | None, typer.Option("--storage", help="SQLAlchemy URL of the studies (default: every runs/*.db).")] = None,
    port: Annotated[int, typer.Option("--port", "-p", min=1, max=65535, help="Port to serve on.")] = 8501,
    address: Annotated[str, typer.Option("--address", help="Address to bind (0.0.0.0 to serve other machines).")] = "localhost",
    runs_dir: Annotated[Path, typer.Option("--runs-dir", help="Folder of the SQLite files and artifact stores.")] = Path("runs"),
    browser: Annotated[bool, typer.Option("--browser/--no-browser", help="Open a web browser.")] = False,
) -> None:
    """Start the dashboard (Streamlit): ranked recipes, convergence, feasibility, microstructures, descriptors."""
    from inverse.storage import sqlite_path, storage_exists

    if storage is not None:
        if "://" not in storage:
            raise InvalidInputError(f"storage: {storage!r} is not an SQLAlchemy URL (for example sqlite:///runs/opv.db)")
        if not storage_exists(storage):
            raise InvalidInputError(f"storage: {sqlite_path(storage)} does not exist (run a study first: microdesign study run SPEC)")
    elif runs_dir.exists() and not runs_dir.is_dir():
        raise InvalidInputError(f"--runs-dir: {runs_dir} is not a folder")
    # no study yet (no runs dir): the dashboard starts anyway, on a page that says how to run one
    command = streamlit_command(storage=storage, port=port, address=address, runs_dir=runs_dir, headless=not browser)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(command[0], command)  # streamlit takes over this process: Ctrl-C and SIGTERM reach it directly
