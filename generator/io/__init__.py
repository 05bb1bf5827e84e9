"""File input and output: volumes and atomic writes."""

from generator.io.atomic import atomic_path
from generator.io.volumes import read_volume, write_volume

__all__ = ["atomic_path", "read_volume", "write_volume"]
