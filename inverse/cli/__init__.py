"""The ``microdesign`` command line (typer).

Importing this package registers every sub-command on :data:`app`.
"""

from inverse.cli._app import app, main
from inverse.cli import (  # noqa: F401  (each module registers its commands)
    simulate,
    describe,
    train,
    generate,
    check,
    study,
    verify,
    dashboard,
    dataset,
    info,
    calibrate,
)

__all__ = ["app", "main"]
