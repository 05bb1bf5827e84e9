"""Optuna storages and artifact stores for studies.

* Storage: ``runs/NAME.db`` (SQLite) by default, or any SQLAlchemy URL
  (``postgresql://user@host/db``) so that several workers on several machines
  share one study. Storages are :class:`optuna.storages.RDBStorage` with a
  heartbeat: a worker killed with SIGKILL stops beating, and its RUNNING
  trials are marked FAIL once ``grace_period`` has passed (at the next start
  of any worker, and before every new trial) and retried once: the same
  conditions are queued again as a new trial (Optuna's
  :class:`~optuna.storages.RetryHeartbeatStaleTrialCallback`). Completed trials are
  committed one by one, so none is lost. ``MICRODESIGN_HEARTBEAT_INTERVAL`` and
  ``MICRODESIGN_GRACE_PERIOD`` (seconds) change the defaults.
* Artifacts: an :class:`optuna.artifacts.FileSystemArtifactStore` in
  ``runs/NAME.artifacts/`` (next to the SQLite file, or under ``runs/`` for a
  server URL), one ``.npz`` of microstructures per measured trial.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import optuna
import sqlalchemy.exc
from optuna.artifacts import FileSystemArtifactStore

from generator.errors import InvalidInputError
from inverse.masking import mask_credentials

#: Folder of the default SQLite files and artifact stores.
RUNS_DIR = Path("runs")


def _seconds_from_env(name: str, default: int) -> int:
    """A positive whole number of seconds from the environment variable ``name`` (``default`` when unset)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise InvalidInputError(f"{name}: expected a whole number of seconds >= 1, got {raw!r}")
    return int(raw)


#: Default heartbeat settings (seconds); the environment variables override them.
HEARTBEAT_INTERVAL = _seconds_from_env("MICRODESIGN_HEARTBEAT_INTERVAL", 10)
GRACE_PERIOD = _seconds_from_env("MICRODESIGN_GRACE_PERIOD", 30)
#: How often the trial of a dead worker is queued again.
MAX_RETRY = 1


def default_storage_url(name: str, runs_dir: str | Path = RUNS_DIR) -> str:
    """``sqlite:///runs/NAME.db``."""
    return f"sqlite:///{Path(runs_dir) / f'{name}.db'}"


def stored_at(url: str) -> str:
    """``url`` with a SQLite file's path made absolute (``sqlite:////home/me/runs/opv.db``), other URLs unchanged.

    ``runs/NAME.db`` is relative to the folder a study ran in; the absolute URL
    reaches the study from any folder (``study report NAME --storage URL``).
    """
    path = sqlite_path(url)
    return url if path is None else f"sqlite:///{path.resolve()}"


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (``None`` for other URLs)."""
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///"))
    return None


def storage_exists(url: str) -> bool:
    """Whether opening ``url`` would find an existing storage (always true for server URLs)."""
    path = sqlite_path(url)
    return path is None or path.is_file()


def with_installed_driver(url: str) -> str:
    """``postgresql://...`` as ``postgresql+psycopg2://...`` when only psycopg2 is installed.

    SQLAlchemy >= 2.1 maps a bare ``postgresql://`` to psycopg 3; our
    ``postgres`` extra installs psycopg2. Other URLs are returned unchanged.
    """
    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


class _HeartbeatStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage whose stale trials also include RUNNING trials that never beat.

    Optuna records a trial's first heartbeat just after creating it; a worker
    killed in between leaves a RUNNING trial without one, which Optuna would
    keep RUNNING for ever. Such a trial started longer than the grace period
    ago is dead (a live worker beats within milliseconds), so it is failed and
    retried like any other stale trial.
    """

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        from datetime import datetime, timedelta

        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session
        from sqlalchemy import orm

        stale = super()._get_stale_trial_ids(study_id)
        grace = self.grace_period if self.grace_period is not None else 2 * (self.heartbeat_interval or 0)
        cutoff = datetime.now() - timedelta(seconds=grace)  # datetime_start is the worker's naive local time
        with _create_scoped_session(self.scoped_session, True) as session:
            running = (
                session.query(models.TrialModel)
                .options(orm.selectinload(models.TrialModel.heartbeats))
                .filter(models.TrialModel.state == optuna.trial.TrialState.RUNNING, models.TrialModel.study_id == study_id)
                .all()
            )
            never_beat = [t.trial_id for t in running if not t.heartbeats and t.datetime_start is not None and t.datetime_start < cutoff]
        return stale + never_beat  # disjoint: Optuna counts only trials that beat


#: Tables of an Optuna storage: a database without them holds no studies (and a read-only command must not add them).
OPTUNA_TABLES = frozenset({"studies", "trials", "version_info", "alembic_version"})

#: Attempts at creating a server storage's tables while other workers create them too.
_CREATE_ATTEMPTS = 5
_CREATION_RACES = ("already exists", "unique constraint", "duplicate key", "database is locked")


_SETUP_THREADS = threading.RLock()
_SETUP_HELD: set[Path] = set()


@contextlib.contextmanager
def setup_lock(url: str) -> Iterator[None]:
    """Serialise the set-up of a SQLite storage (its tables, a new study) between processes on this machine.

    Workers started at once on a new SQLite file would otherwise race to create
    Optuna's tables (``table studies already exists``, ``UNIQUE constraint
    failed: alembic_version.version_num``). The lock is an exclusive
    :func:`fcntl.flock` on the file's folder, released when the block ends or
    the process dies; no lock file is left behind. Server URLs need no lock
    (:func:`open_storage` retries a lost creation race there).
    """
    path = sqlite_path(url)
    if path is None:
        yield
        return
    folder = (path.parent if str(path.parent) else Path(".")).resolve()
    with _SETUP_THREADS:  # re-entrant here: run_study holds it around open_storage, which takes it too
        if folder in _SETUP_HELD:
            yield
            return
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            _SETUP_HELD.add(folder)
            try:
                yield
            finally:
                _SETUP_HELD.discard(folder)
        finally:
            os.close(fd)  # closing the descriptor releases the lock


def _readonly_sqlite_url(path: Path) -> str:
    """A SQLAlchemy URL that opens the SQLite file at ``path`` read-only (it is never created or altered)."""
    return f"sqlite:///file:{quote(str(path.resolve()))}?mode=ro&uri=true"


def _require_optuna_tables(engine_url: str, shown: str) -> None:
    """Raise unless the database at ``engine_url`` holds Optuna's tables; reads only."""
    engine = sqlalchemy.create_engine(engine_url)
    try:
        tables = set(sqlalchemy.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    missing = sorted(OPTUNA_TABLES - tables)
    if missing:
        raise InvalidInputError(f"storage: {shown} holds no Optuna studies (no {missing[0]} table); "
                                "run a study into it first: microdesign study run SPEC --storage URL")


def open_storage(
    url: str,
    *,
    create: bool = True,
    readonly: bool = False,
    heartbeat_interval: int = HEARTBEAT_INTERVAL,
    grace_period: int = GRACE_PERIOD,
) -> optuna.storages.RDBStorage:
    """Open an Optuna RDB storage with a heartbeat.

    Parameters
    ----------
    url
        SQLAlchemy URL.
    create
        Create what is missing: a SQLite file's folder and file, and Optuna's
        tables. Safe when several workers start at once (:func:`setup_lock`
        for SQLite, retries for a server). With ``create=False`` the storage
        must already hold Optuna's tables, and nothing is created.
    readonly
        Only read (``study list``, ``study report``, the dashboard): implies
        ``create=False``, and opens a SQLite file read-only.
    heartbeat_interval, grace_period
        Seconds between heartbeats, and without one before a trial is stale.

    Raises
    ------
    InvalidInputError
        A malformed URL, a storage that cannot be opened, or (``create=False``)
        a SQLite file that does not exist or a database without Optuna's
        tables. The message shows the URL with its password masked.
    """
    create = create and not readonly
    shown = mask_credentials(url)
    path = sqlite_path(url)
    if path is not None:
        if not create and not path.is_file():
            raise InvalidInputError(f"storage: {path} does not exist")
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
    elif "://" not in url:
        raise InvalidInputError(f"storage: {shown!r} is not an SQLAlchemy URL (for example sqlite:///runs/x.db)")
    engine_url = _readonly_sqlite_url(path) if readonly and path is not None else with_installed_driver(url)

    def make() -> optuna.storages.RDBStorage:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return _HeartbeatStorage(
                engine_url,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
                skip_table_creation=not create,
            )

    try:
        if not create:
            _require_optuna_tables(engine_url, shown)
            return make()
        with setup_lock(url):
            for attempt in range(1, _CREATE_ATTEMPTS + 1):
                try:
                    return make()
                except sqlalchemy.exc.SQLAlchemyError as exc:  # another worker created the tables at the same moment
                    if attempt == _CREATE_ATTEMPTS or not any(r in str(exc).lower() for r in _CREATION_RACES):
                        raise
                    time.sleep(0.1 * attempt)
            raise AssertionError("unreachable")
    except (ImportError, ValueError, sqlalchemy.exc.SQLAlchemyError) as exc:
        if isinstance(exc, InvalidInputError):
            raise
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise InvalidInputError(f"storage: cannot open {shown}: {mask_credentials(reason)}") from None


def artifact_dir(name: str, url: str, runs_dir: str | Path = RUNS_DIR) -> Path:
    """Where the study's artifacts live: ``<db folder>/NAME.artifacts`` (SQLite) or ``runs/NAME.artifacts``."""
    path = sqlite_path(url)
    folder = path.parent if path is not None else Path(runs_dir)
    return folder / f"{name}.artifacts"


def artifact_store(name: str, url: str, runs_dir: str | Path = RUNS_DIR) -> FileSystemArtifactStore:
    """The study's :class:`~optuna.artifacts.FileSystemArtifactStore` (its folder is created)."""
    folder = artifact_dir(name, url, runs_dir)
    folder.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(folder))


def fail_stale_trials(study: optuna.Study) -> list[int]:
    """Mark the RUNNING trials of dead workers (no heartbeat within the grace period) as FAIL.

    Returns
    -------
    list of int
        The numbers of the trials that were failed.
    """
    before = {t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    after = {t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))}
    return sorted(before - after)


def list_studies(url: str) -> list[dict[str, object]]:
    """One summary per study in the storage at ``url`` (which must exist).

    Each is ``{"name", "n_trials", "n_complete", "directions", "started"}``.
    """
    rdb = open_storage(url, readonly=True)
    out = []
    for summary in optuna.get_all_study_summaries(rdb, include_best_trial=False):
        study = optuna.load_study(study_name=summary.study_name, storage=rdb)
        states = [t.state for t in study.get_trials(deepcopy=False)]
        out.append({
            "name": summary.study_name,
            "n_trials": len(states),
            "n_complete": sum(s == optuna.trial.TrialState.COMPLETE for s in states),
            "directions": [d.name.lower() for d in summary.directions],
            "started": summary.datetime_start,
        })
    return out
