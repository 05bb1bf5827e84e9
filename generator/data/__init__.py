"""Datasets: HDF5 layout, simulation of dataset presets, and the torch Dataset."""

from generator.data.build import simulate_dataset
from generator.data.dataset import MicrostructureDataset, split_by_series

__all__ = ["MicrostructureDataset", "simulate_dataset", "split_by_series"]
