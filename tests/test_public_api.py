"""The public API: ``import microdesign`` is quick and exposes the main entry points, each documented."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import microdesign

FUNCTIONS = ("load_generator", "describe", "check", "run_study", "verify", "simulate")


@pytest.mark.parametrize("name", FUNCTIONS)
def test_each_function_is_importable_with_a_numpy_style_docstring(name: str) -> None:
    func = getattr(microdesign, name)
    assert callable(func)
    doc = inspect.getdoc(func)
    assert doc and doc.splitlines()[0].strip(), f"{name}: no summary line"
    assert "Parameters\n----------" in doc, f"{name}: no numpy-style Parameters section"
    assert "Returns\n-------" in doc or "Raises\n------" in doc, f"{name}: no Returns/Raises section"


def test_every_exported_name_resolves_and_is_listed() -> None:
    for name in microdesign.__all__:
        assert getattr(microdesign, name) is not None
    assert set(FUNCTIONS) <= set(dir(microdesign))
    with pytest.raises(AttributeError):
        microdesign.no_such_name  # noqa: B018


def test_the_names_are_those_of_their_owning_modules() -> None:
    from generator.loading import load_generator
    from inverse.search import run_study

    assert microdesign.load_generator is load_generator
    assert microdesign.run_study is run_study


def test_import_is_lazy() -> None:
    code = "import sys, microdesign; print('torch' in sys.modules, 'optuna' in sys.modules, 'inverse' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", "False"]


def test_old_import_paths_still_work() -> None:
    """Names that moved to their concept's home stay importable where users found them."""
    from generator import loading, pipeline
    from generator.descriptors import is_count
    from generator.physics import recipes
    from inverse import spec, verify

    with pytest.warns(DeprecationWarning, match="generator.loading.load_generator"):
        assert pipeline.load_generator is loading.load_generator
    with pytest.warns(DeprecationWarning, match="generator.loading.DEFAULT_BUNDLE"):
        assert pipeline.DEFAULT_BUNDLE == loading.DEFAULT_BUNDLE
    assert verify.simulate_recipes is recipes.simulate_recipes and verify.RECIPE == recipes.RECIPE_NAMES
    assert verify.read_model_record.__module__ == "generator.model_info"
    assert spec.is_count is is_count
