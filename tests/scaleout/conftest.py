"""Fixtures of the scale-out and fault tests: a throw-away PostgreSQL server and CLI runners.

``postgres_url`` starts a private PostgreSQL server for the test session:
``initdb`` into a fresh temporary folder (owned by the ``postgres`` user when
the tests run as root, since PostgreSQL refuses to run as root), ``pg_ctl
start`` listening on 127.0.0.1 only (no Unix socket, ``trust`` authentication
on loopback) on a free port, and ``createdb``. The server is stopped and its
folder removed at the end. The tests that need it skip, with the reason, when
the PostgreSQL server binaries or ``psycopg2`` are missing.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

#: Environment of every CLI subprocess: small heartbeat/grace period so that a dead worker's trial is failed in seconds.
HEARTBEAT_ENV = {"MICRODESIGN_HEARTBEAT_INTERVAL": "1", "MICRODESIGN_GRACE_PERIOD": "3"}


def postgres_bin_dir() -> Path | None:
    """Folder of ``initdb`` / ``pg_ctl`` (``$PG_BIN``, Debian's ``/usr/lib/postgresql/*/bin``, or ``PATH``)."""
    candidates = [os.environ.get("PG_BIN", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0, reverse=True)
    which = shutil.which("initdb")
    candidates.append(str(Path(which).resolve().parent) if which else "")
    for folder in candidates:
        if folder and (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def postgres_server(database: str = "microdesign") -> Iterator[str]:
    """Run a throw-away PostgreSQL server on loopback; yield its SQLAlchemy URL.

    Raises
    ------
    RuntimeError
        When the binaries are there but the server does not start (the log is in the message).
    """
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise FileNotFoundError("PostgreSQL server binaries (initdb, pg_ctl) not found; apt-get install postgresql")
    run_as: dict[str, int] = {}
    root = Path(tempfile.mkdtemp(prefix="microdesign-pg-"))
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: hand the folder to the postgres user
        try:
            user = pwd.getpwnam(os.environ.get("PG_USER", "postgres"))
        except KeyError:
            shutil.rmtree(root, ignore_errors=True)
            raise FileNotFoundError("running as root and there is no 'postgres' user to run the server as") from None
        os.chown(root, user.pw_uid, user.pw_gid)
        run_as = {"user": user.pw_uid, "group": user.pw_gid}
    data, log = root / "data", root / "server.log"
    port = free_port()
    env = {**os.environ, "LC_ALL": "C"}
    started = False
    try:
        subprocess.run([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
                       check=True, capture_output=True, env=env, cwd=root, **run_as)
        options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories='' -c fsync=off -c max_connections=50"
        result = subprocess.run([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start"],
                                capture_output=True, env=env, cwd=root, **run_as)
        started = result.returncode == 0
        if not started:
            raise RuntimeError(f"pg_ctl start failed: {result.stderr.decode()[-500:]} {log.read_text()[-1000:] if log.exists() else ''}")
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{database}"')
        conn.close()
        yield f"postgresql://postgres@127.0.0.1:{port}/{database}"
    finally:
        if started:
            subprocess.run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, env=env, cwd=root, **run_as)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL of a throw-away PostgreSQL database on 127.0.0.1 (skips when PostgreSQL is absent)."""
    pytest.importorskip("psycopg2", reason="psycopg2 is not installed (pip install psycopg2-binary)")
    if postgres_bin_dir() is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found; install Debian's postgresql package")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(os.environ.get("PG_USER", "postgres"))
        except KeyError:
            pytest.skip("running as root without a 'postgres' user to run the server as")
    with postgres_server() as url:
        yield url


# ----------------------------------------------------------------------------- CLI subprocesses

def cli_command(*args: str | os.PathLike[str]) -> list[str]:
    """The ``microdesign`` command line, run with this interpreter."""
    return [sys.executable, "-m", "inverse", *map(str, args)]


def cli_env(**extra: str) -> dict[str, str]:
    """Environment of a CLI subprocess: one torch thread (the cores are shared), short heartbeats."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **HEARTBEAT_ENV, **extra}
    env.pop("PYTEST_XDIST_WORKER", None)
    return env


def run_cli(*args: str | os.PathLike[str], cwd: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``microdesign ARGS`` to completion; returns the completed process (text output)."""
    return subprocess.run(cli_command(*args), cwd=cwd, env=cli_env(**env), capture_output=True, text=True, timeout=timeout)


def start_cli(*args: str | os.PathLike[str], cwd: Path, log: Path, **env: str) -> subprocess.Popen[bytes]:
    """Start ``microdesign ARGS`` in the background, output to ``log``."""
    with open(log, "wb") as fh:
        return subprocess.Popen(cli_command(*args), cwd=cwd, env=cli_env(**env), stdout=fh, stderr=subprocess.STDOUT)


def wait_until(predicate, *, timeout: float, interval: float = 0.05, what: str = "condition") -> None:  # noqa: ANN001
    """Poll ``predicate()`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def sigkill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a process we started and reap it."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def kill_all(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGKILL every still-running process of ``procs`` (test clean-up)."""
    for proc in procs:
        with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
            sigkill(proc)


