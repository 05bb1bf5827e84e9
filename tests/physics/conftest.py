"""One torch thread per test process: the 2-core CI runs two pytest workers."""

import pytest

from generator.physics.cahn_hilliard import torch_threads


@pytest.fixture(autouse=True)
def _one_torch_thread():
    with torch_threads(1):
        yield
