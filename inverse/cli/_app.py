"""The root ``microdesign`` typer application and its error handling.

Each sub-command lives in its own module of :mod:`inverse.cli` and registers
itself on :data:`app` (or on a sub-application such as ``study``).
"""

from __future__ import annotations

import errno
import sys

import typer
from pydantic import ValidationError

try:  # typer >= 0.2x carries its own copy of click
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer on click
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

from generator.errors import InvalidInputError, MicrodesignError
from generator.validation import check_finite
from inverse.masking import mask_credentials

#: Settings of every typer application of the CLI. ``rich_markup_mode=None``: click's plain help, which fits
#: any terminal width and shows flags as flags (typer's rich help prints ``<bool>`` after them).
TYPER_SETTINGS: dict = dict(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)

app = typer.Typer(
    name="microdesign",
    help="Inverse design of 3-D microstructures: simulate, describe, train, generate, search.",
    **TYPER_SETTINGS,
)

#: Loggers of libraries whose notes are not for the user (the toolkit reports what matters itself).
QUIET_LOGGERS = ("optuna", "tifffile", "lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning",
                 "torch", "h5py", "numba", "diffusers", "streamlit", "botorch", "gpytorch", "linear_operator")

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
        One-line message naming ``option`` for a malformed item, a non-number,
        NaN or infinity, or a name given twice (it would silently keep the last value).
    """
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise InvalidInputError(f"{option}: expected NAME=VALUE, got {item!r}")
        if name in out:
            raise InvalidInputError(f"{option} {name}: given more than once")
        out[name] = check_finite(value.strip(), f"{option} {name}")
    if required and not out:
        raise InvalidInputError(f"{option}: give at least one NAME=VALUE")
    return out


def fail(message: str) -> None:
    """Print ``error: message`` (one line, credentials masked) on stderr and exit with :data:`USAGE_EXIT_CODE`."""
    print(f"error: {mask_credentials(' '.join(str(message).split()))}", file=sys.stderr)
    raise SystemExit(USAGE_EXIT_CODE)


def quiet_libraries() -> None:
    """Keep library warnings and log notes (torch, tifffile, Optuna, Lightning, ...) away from users.

    Python warnings are ignored unless the user asked for them (``python -W``
    or ``PYTHONWARNINGS``); the loggers of :data:`QUIET_LOGGERS` only pass errors.
    Code that reports a warning of its own records it with
    :func:`warnings.catch_warnings` (as ``simulate`` does), which this does not affect.
    """
    import logging
    import warnings

    if not sys.warnoptions:
        warnings.simplefilter("ignore")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def _usage_error(exc: click_exceptions.UsageError) -> str:
    """One line for a usage error of click (missing option, bad integer, unknown command), with where to get help."""
    where = f" (see: {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
    return f"{exc.format_message()}{where}"


def main() -> None:
    """Entry point of the ``microdesign`` console script.

    Every user mistake, including usage errors of the parser, ends in one
    ``error: ...`` line on stderr and exit code :data:`USAGE_EXIT_CODE`.
    """
    quiet_libraries()
    try:
        code = app(prog_name="microdesign", standalone_mode=False)
    except click_exceptions.NoArgsIsHelpError as exc:  # bare `microdesign` or `microdesign study`: the help
        print(exc.format_message(), file=sys.stderr)
        raise SystemExit(USAGE_EXIT_CODE) from None
    except click_exceptions.UsageError as exc:
        fail(_usage_error(exc))
    except typer.Abort:  # Ctrl-C
        print("aborted", file=sys.stderr)
        raise SystemExit(130) from None
    except MicrodesignError as exc:
        fail(str(exc))
    except ValidationError as exc:
        fail(format_validation_error(exc))
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            fail(f"no space left on device while writing {exc.filename or 'output'}; nothing was left half-written")
        # one line: some libraries (h5py) put line breaks into their messages
        fail(f"{exc.strerror or exc}{': ' + str(exc.filename) if exc.filename else ''}")
    # as click's standalone mode does: always exit, with typer.Exit's code (--help, `check`'s 1) or 0
    raise SystemExit(code if isinstance(code, int) else 0)


@app.command()
def version() -> None:
    """Print the toolkit's version."""
    from generator import __version__

    print(__version__)
