"""File input and output: volumes and atomic writes."""

from generator.io.atomic import atomic_path

__all__ = ["atomic_path"]
