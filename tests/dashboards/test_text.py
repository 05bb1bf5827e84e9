"""User-controlled strings (study names, attribute values, messages) render as text on the dashboard."""

from __future__ import annotations

import re

import optuna
import pytest

from dashboards import APP_PATH
from dashboards._text import md_text

HOSTILE = "![pixel](http://tracker.example/p.png) **bold** <img src=x> :red[alert] $x^2$ [link](http://x)"


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


@pytest.mark.parametrize("value", [HOSTILE, "opv-2", "a_b.c", "line\nbreak", "C:\\path"])
def test_md_text_escapes_every_markdown_character_and_keeps_the_text(value):
    escaped = md_text(value)
    assert _unescape(escaped) == " ".join(value.split())
    # every markdown-significant character is preceded by a backslash
    assert not re.search(r"(?<!\\)[!\[\]()*<>:$`_]", escaped.replace("\\\\", ""))


def test_md_text_masks_credentials():
    assert "PW" not in md_text("postgresql://alice:PW@db/studies")


def _app(monkeypatch, storage: str | None, runs_dir):  # noqa: ANN001, ANN202
    from streamlit.testing.v1 import AppTest

    from dashboards import _data

    if storage:
        monkeypatch.setenv(_data.STORAGE_ENV, storage)
    else:
        monkeypatch.delenv(_data.STORAGE_ENV, raising=False)
    monkeypatch.setenv(_data.RUNS_DIR_ENV, str(runs_dir))
    at = AppTest.from_file(str(APP_PATH), default_timeout=120)
    return at


def test_a_study_named_like_markdown_is_shown_as_text(tmp_path, monkeypatch):
    from inverse import storage as storage_mod

    url = f"sqlite:///{tmp_path / 'runs' / 'evil.db'}"
    optuna.create_study(study_name=HOSTILE, storage=storage_mod.open_storage(url))
    at = _app(monkeypatch, url, tmp_path / "runs")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    shown = [e.value for e in (*at.header, *at.info, *at.markdown, *at.caption, *at.warning, *at.error, *at.sidebar.info)]
    with_name = [v for v in shown if "pixel" in v]
    assert with_name, shown
    for value in with_name:  # the name appears escaped only: no markdown image, HTML or directive is left to render
        assert md_text(HOSTILE) in value and "\\" in value, value
        assert not re.search(r"(?<!\\)(!\[|<img|:red\[)", value), value


def test_the_dashboard_before_any_study_explains_what_to_do(tmp_path, monkeypatch):
    at = _app(monkeypatch, None, tmp_path / "runs")  # the folder does not even exist yet
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    texts = " ".join(e.value for e in at.sidebar.info) + " ".join(e.value for e in at.info)
    assert "microdesign study run" in texts
    assert not (tmp_path / "runs").exists()
