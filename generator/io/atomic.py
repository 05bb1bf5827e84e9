"""Atomic file writes: a file either appears whole or not at all."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from generator.errors import FileFormatError


def _current_umask() -> int:
    """Return the process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` and move it into place on success.

    The caller writes the whole file to the yielded path. When the block exits
    normally the file is fsync'ed and renamed onto ``path`` (an atomic
    operation on POSIX file systems); when it raises, the temporary file is
    removed and ``path`` is left untouched. A reader therefore never sees a
    half-written file, even after SIGKILL or a full disk.

    Parameters
    ----------
    path
        Final destination.
    suffix
        Suffix of the temporary file (some writers choose the format from it).
        Defaults to the suffix of ``path``.

    Raises
    ------
    FileFormatError
        If the destination folder does not exist or is not writable.
    """
    dest = Path(path)
    folder = dest.parent if str(dest.parent) else Path(".")
    if not folder.is_dir():
        raise FileFormatError(f"cannot write {dest}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise FileFormatError(f"cannot write {dest}: folder {folder} is not writable")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix if suffix is not None else dest.suffix, dir=folder)
    except OSError as exc:  # os.access says yes to root on read-only file systems (/proc, /sys, ro mounts)
        raise FileFormatError(f"cannot write {dest}: {exc.strerror or exc} in folder {folder}") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, dest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _naming(exc, tmp, dest) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _naming(exc: OSError, tmp: Path, dest: Path) -> OSError:
    """``exc`` as it would read had it been raised while writing ``dest``: temporary names are not for users.

    Writers (numpy, h5py, pandas) name the file they were given, the
    temporary one, in their messages; the error names the destination instead.
    """
    text = str(tmp)
    if text not in str(exc) and text != exc.filename:
        return exc
    strerror = (exc.strerror or str(exc)).replace(text, str(dest))
    return type(exc)(exc.errno, strerror, str(dest)) if exc.errno is not None else type(exc)(strerror.replace(text, str(dest)))
