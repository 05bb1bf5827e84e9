"""Shared, session-scoped fixtures: reference volumes, the tiny dataset and the tiny model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Each xdist worker gets one core of its own: torch's default of one thread
    # per core makes workers fight over the cores and runs ~10x slower.
    import torch

    torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
#: The C++ GraSPI's outputs on reference volumes (a copy of ``../shared/graspi_reference``, shipped with the tests).
GRASPI_REFERENCE = Path(__file__).resolve().parent / "fixtures" / "graspi_reference"


@pytest.fixture(scope="session")
def graspi_fixture_paths() -> list[Path]:
    """Paths of the reference GraSPI volumes in ``tests/fixtures/graspi_reference`` (part of the repository)."""
    paths = sorted(GRASPI_REFERENCE.glob("*.npz"))
    assert len(paths) == 8, f"expected the 8 GraSPI reference volumes under {GRASPI_REFERENCE}, found {len(paths)}"
    return paths


@pytest.fixture
def one_thread():
    """One torch thread for the test: tiny networks run fastest so, and do not stall on a busy machine."""
    from generator.physics.cahn_hilliard import torch_threads

    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``tiny`` Cahn-Hilliard dataset, simulated and labelled with descriptors."""
    from generator.data.build import simulate_dataset
    from generator.descriptors import describe_dataset

    path = tmp_path_factory.mktemp("tiny_data") / "tiny.h5"
    simulate_dataset("tiny", path, progress=False)
    describe_dataset(path, n_jobs=1, progress=False)
    return path


@pytest.fixture(scope="session")
def tiny_bundle(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle of the ``tiny`` training preset, trained on :func:`tiny_dataset`."""
    from generator.training import train_pipeline

    out = tmp_path_factory.mktemp("tiny_model")
    return train_pipeline("tiny", data=tiny_dataset, out_dir=out, progress=False)
