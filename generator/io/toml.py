"""Reading TOML files (presets, configs, study specs) with one-line errors."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from generator.errors import FileFormatError


def read_toml(path: str | os.PathLike[str], *, what: str = "file") -> dict[str, Any]:
    """Read a TOML file into a dict.

    Parameters
    ----------
    path
        The file.
    what
        What the file is (``"preset file"``, ``"spec file"``, ...), for messages.

    Raises
    ------
    FileFormatError
        The file does not exist, is not UTF-8, or is not valid TOML.
    """
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"{what} {path} does not exist")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise FileFormatError(f"{what} {path}: malformed TOML: {exc}") from None
