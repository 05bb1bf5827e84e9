"""The root ``microdesign`` typer application and its error handling.

Each sub-command lives in its own module of :mod:`inverse.cli` and registers
itself on :data:`app` (or on a sub-application such as ``study``).
"""

from __future__ import annotations

import errno
import sys

import typer
from pydantic import ValidationError

from generator.errors import MicrodesignError

app = typer.Typer(
    name="microdesign",
    help="Inverse design of 3-D microstructures: simulate, describe, train, generate, search.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Exit code for every user mistake (bad input, bad file, bad config).
USAGE_EXIT_CODE = 2


def format_validation_error(exc: ValidationError) -> str:
    """Return a one-line description of the first problem of a pydantic error, naming the field."""
    first = exc.errors()[0]
    loc = ".".join(str(part) for part in first.get("loc", ())) or "input"
    return f"{loc}: {first.get('msg', 'invalid value')}"


def parse_assignments(items: list[str], option: str, *, required: bool = False) -> dict[str, float]:
    """Parse repeated ``NAME=VALUE`` options into ``{NAME: VALUE}``.

    Parameters
    ----------
    items
        The raw option values, e.g. ``["ABS_f_D=0.45", "CT_f_D_tort1=0.3"]``.
    option
        The option's name (``--target``, ``--condition``), used in error messages.
    required
        Whether at least one assignment must be given.

    Raises
    ------
    InvalidInputError
        One-line message naming ``option`` for a malformed item or a non-number.
    """
    from generator.errors import InvalidInputError

    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise InvalidInputError(f"{option}: expected NAME=VALUE, got {item!r}")
        try:
            out[name] = float(value)
        except ValueError:
            raise InvalidInputError(f"{option} {name}: {value!r} is not a number") from None
    if required and not out:
        raise InvalidInputError(f"{option}: give at least one NAME=VALUE")
    return out


def fail(message: str) -> None:
    """Print ``error: message`` on stderr and exit with :data:`USAGE_EXIT_CODE`."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(USAGE_EXIT_CODE)


def main() -> None:
    """Entry point of the ``microdesign`` console script."""
    try:
        app()
    except MicrodesignError as exc:
        fail(str(exc))
    except ValidationError as exc:
        fail(format_validation_error(exc))
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            fail(f"no space left on device while writing {exc.filename or 'output'}; nothing was left half-written")
        # one line: some libraries (h5py) put line breaks into their messages
        fail(" ".join(f"{exc.strerror or exc}{': ' + str(exc.filename) if exc.filename else ''}".split()))


@app.command()
def version() -> None:
    """Print the toolkit's version."""
    from generator import __version__

    print(__version__)
