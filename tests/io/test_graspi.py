"""GraSPI's text input format: export for the C++ program, import of its files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from generator.descriptors import compute
from generator.errors import FileFormatError, InvalidInputError
from generator.io import read_volume, write_volume
from generator.io.graspi import graspi_text, parse_graspi


def test_layout_x_fastest_then_y_then_z_and_grey_is_3() -> None:
    labels = np.zeros((3, 2, 2), dtype=np.uint8)
    labels[1, 0, 0] = 1  # x = 1 on the first line
    labels[0, 1, 0] = 2  # y = 1: second line, grey
    labels[2, 0, 1] = 1  # z = 1: third line (the first line of layer 1)
    assert graspi_text(labels) == "3 2 2\n0 1 0\n3 0 0\n0 0 1\n0 0 0\n"
    assert graspi_text(labels[:, :, 0]) == "3 2 1\n0 1 0\n3 0 0\n"  # 2-D: nx ny 1


def test_round_trip_through_files_keeps_labels_and_descriptors(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = (rng.uniform(size=(9, 7, 5)) > 0.45).astype(np.uint8)
    labels[rng.uniform(size=labels.shape) > 0.9] = 2
    path = write_volume(tmp_path / "v.txt", labels)
    back = read_volume(path)
    np.testing.assert_array_equal(back, labels)
    assert back.dtype == np.uint8
    two = (labels == 1).astype(np.uint8)
    write_volume(tmp_path / "two.txt", two)
    assert compute(read_volume(tmp_path / "two.txt")) == compute(two)


def test_import_accepts_the_py_graspi_examples_and_code_2_as_grey() -> None:
    assert parse_graspi("2 2 1\n0 0\n1 1\n")[:, :, 0].tolist() == [[0, 1], [0, 1]]
    assert parse_graspi("2 1 2\n0 2\n3 1\n")[:, 0, :].tolist() == [[0, 2], [2, 1]]


@pytest.mark.parametrize("text, message", [
    ("", "dimensions"),
    ("hello world\n", "dimensions"),
    ("2 2 1\n0 0\n1\n", "holds 3 values, expected nx\\*ny\\*nz = 4"),
    ("2 1 1\n0 7\n", "unknown phase code 7"),
    ("2 1 1\n0 0.5\n", "integers"),
])
def test_malformed_files_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(FileFormatError, match=message) as info:
        read_volume(path)
    assert "\n" not in str(info.value)


def test_grey_levels_cannot_be_exported() -> None:
    with pytest.raises(InvalidInputError, match="threshold"):
        graspi_text(np.full((2, 2, 2), 0.5))
