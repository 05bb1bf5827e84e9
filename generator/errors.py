"""Exceptions that signal a *user* mistake.

Every function of the toolkit that rejects bad input raises a subclass of
:class:`MicrodesignError`. The command line turns these into a one-line
``error: ...`` message and exit code 2, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


class MicrodesignError(ValueError):
    """Base class of all user-facing errors (bad input, bad files, bad configs)."""


class InvalidInputError(MicrodesignError):
    """An argument or a value in a file is outside what the toolkit accepts."""


class FileFormatError(MicrodesignError):
    """A file is missing, unreadable, truncated or not of the expected format."""


class CheckpointError(MicrodesignError):
    """A checkpoint or bundle does not match the model it is loaded into."""


def exit_on_user_error(main: Callable[[], Any]) -> None:
    """Run a script's ``main()``; a :class:`MicrodesignError` ends it with one ``error: ...`` line and exit code 2."""
    try:
        main()
    except MicrodesignError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
