"""GraSPI's own text input format (structured data), to cross-check with the C++ program or import its files.

Format: the first line holds the dimensions ``nx ny nz`` (``nx ny 1`` for a 2-D
image); then ``ny * nz`` lines of ``nx`` integers each, x varying fastest,
then y, then z (the layer ``z = 0`` first: the bottom electrode, GraSPI's
cathode). Phase codes: ``0`` donor (GraSPI's black), ``1`` acceptor (white)
and ``3`` mixed (grey; GraSPI's code for grey, :data:`GRASPI_GREY`). On
reading, ``2`` is also taken as mixed, for files written by tools that use our
label.

The electrode axis is the last axis in both conventions: volumes ``(x, y, z)``
map to GraSPI's ``(nx, ny, nz)`` and 2-D images ``(x, y)`` to ``nx ny 1``, whose
electrode axis is y in GraSPI as here.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from generator.errors import FileFormatError, InvalidInputError
from generator.io.atomic import atomic_path

#: GraSPI's code of the grey (mixed) phase in its input files.
GRASPI_GREY = 3


def graspi_text(labels: np.ndarray) -> str:
    """GraSPI input text of a label volume.

    Parameters
    ----------
    labels
        ``(X, Y)`` or ``(X, Y, Z)`` integer labels: 0 donor, 1 acceptor, 2 mixed.

    Returns
    -------
    str
        The file's text (``nx ny nz`` then ``ny * nz`` lines of ``nx`` codes).
    """
    labels = np.asarray(labels)
    if labels.ndim not in (2, 3):
        raise InvalidInputError(f"a GraSPI file holds a 2-D (x, y) or 3-D (x, y, z) volume, got shape {labels.shape}")
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool) or (labels.size and (labels.min() < 0 or labels.max() > 2)):
        raise InvalidInputError("a GraSPI file holds phase labels 0 (donor), 1 (acceptor), 2 (mixed); threshold grey levels first")
    volume = labels.astype(np.int64)[..., None] if labels.ndim == 2 else labels.astype(np.int64)
    codes = np.where(volume == 2, GRASPI_GREY, volume)
    nx, ny, nz = codes.shape
    rows = codes.transpose(2, 1, 0).reshape(ny * nz, nx)  # z slowest, then y; x along each line
    body = "\n".join(" ".join(map(str, row)) for row in rows.tolist())
    return f"{nx} {ny} {nz}\n{body}\n"


def write_graspi(path: str | os.PathLike[str], labels: np.ndarray) -> Path:
    """Write ``labels`` as a GraSPI input file, atomically (see :func:`graspi_text`)."""
    path = Path(path)
    text = graspi_text(labels)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def parse_graspi(text: str, name: str = "GraSPI file") -> np.ndarray:
    """Labels ``(X, Y, Z)`` (``uint8``; 0 donor, 1 acceptor, 2 mixed) of GraSPI input text.

    Raises
    ------
    FileFormatError
        A malformed header, a wrong number of values, or codes other than 0, 1, 2, 3.
    """
    tokens = text.split()
    try:
        dims = [int(t) for t in tokens[:3]]
    except ValueError:
        dims = []
    if len(dims) != 3 or min(dims) < 1:
        raise FileFormatError(f"{name}: not a GraSPI file (the first line must hold the dimensions nx ny nz)")
    nx, ny, nz = dims
    count = nx * ny * nz
    if len(tokens) - 3 != count:
        raise FileFormatError(f"{name}: holds {len(tokens) - 3} values, expected nx*ny*nz = {count} (truncated file?)")
    try:
        codes = np.array(tokens[3:], dtype=np.int64)
    except ValueError:
        raise FileFormatError(f"{name}: phase codes must be integers 0 (black), 1 (white) or {GRASPI_GREY} (grey)") from None
    bad = ~np.isin(codes, (0, 1, 2, GRASPI_GREY))
    if bad.any():
        raise FileFormatError(f"{name}: unknown phase code {codes[bad][0]}; expected 0 (black), 1 (white) or {GRASPI_GREY} (grey)")
    labels = np.where(codes == GRASPI_GREY, 2, codes).astype(np.uint8)
    return np.ascontiguousarray(labels.reshape(nz, ny, nx).transpose(2, 1, 0))


def read_graspi(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a GraSPI input file into labels ``(X, Y, Z)`` (see :func:`parse_graspi`)."""
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"volume file {path} does not exist")
    try:
        text = path.read_text(encoding="ascii")
    except (UnicodeDecodeError, OSError) as exc:
        raise FileFormatError(f"{path}: not a GraSPI text file ({exc.__class__.__name__})") from None
    return parse_graspi(text, str(path))
