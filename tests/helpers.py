"""Helpers shared by several test modules (importable as ``tests.helpers``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import pytest


def run_main(
    args: Sequence[str | os.PathLike[str]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """Run ``microdesign ARGS`` in this process, as the console script does.

    Returns
    -------
    (exit code, stdout, stderr)
    """
    from inverse.cli import main

    monkeypatch.setattr(sys, "argv", ["microdesign", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out = capsys.readouterr()
    return code, out.out, out.err
