"""microdesign: inverse design of 3-D microstructures.

A thin public API over the three layers (``generator`` -> ``inverse`` ->
``dashboards``), in the manner of Optuna: every name below is loaded from the
module that owns it the first time it is used, so ``import microdesign`` is
quick and pulls in neither torch nor Optuna.

Functions
---------
load_generator
    Load a generator: ``"default"``, a bundle file, or a MicroGen3D folder
    (:func:`generator.loading.load_generator`).
describe
    GraSPI descriptors of one label volume (:func:`generator.descriptors.compute`).
check
    Whether a descriptor target lies inside a model's training data, and the
    nearest one that does (:func:`inverse.feasibility.check`).
run_study
    Run or resume a design study (:func:`inverse.search.run_study`).
verify
    Verify a study's best recipes by simulation (:func:`inverse.verify.verify_study`).
simulate
    Simulate recipes ``(phi, chi, log_time)`` with Cahn-Hilliard
    (:func:`generator.physics.recipes.simulate_recipes`).

Also: :class:`Generator`, :func:`load_spec`, :class:`StudySpec`,
:class:`Recipe` and :data:`__version__`. ``docs/architecture.md`` maps each
concept to the one module that owns it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from generator import __version__

#: Public name -> ``module:attribute`` of the module that owns it.
_EXPORTS: dict[str, str] = {
    "load_generator": "generator.loading:load_generator",
    "describe": "generator.descriptors:compute",
    "check": "inverse.feasibility:check",
    "run_study": "inverse.search:run_study",
    "verify": "inverse.verify:verify_study",
    "simulate": "generator.physics.recipes:simulate_recipes",
    "Recipe": "generator.physics.recipes:Recipe",
    "Generator": "generator.pipeline:Generator",
    "load_spec": "inverse.spec:load_spec",
    "StudySpec": "inverse.spec:StudySpec",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load lazily
    from generator.descriptors import compute as describe  # noqa: F401
    from generator.loading import load_generator  # noqa: F401
    from generator.physics.recipes import Recipe, simulate_recipes as simulate  # noqa: F401
    from generator.pipeline import Generator  # noqa: F401
    from inverse.feasibility import check  # noqa: F401
    from inverse.search import run_study  # noqa: F401
    from inverse.spec import StudySpec, load_spec  # noqa: F401
    from inverse.verify import verify_study as verify  # noqa: F401


def __getattr__(name: str) -> Any:
    """Load a public name from its owning module on first use (PEP 562)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'microdesign' has no attribute {name!r}")
    module, attribute = _EXPORTS[name].split(":")
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
