"""Physics data engine: Cahn-Hilliard simulation, phase labels, dataset presets."""
