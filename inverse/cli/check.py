"""``microdesign check``: not implemented yet."""

from inverse.cli._app import app  # noqa: F401
