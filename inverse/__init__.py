"""microdesign.inverse: study specs, feasibility, Bayesian search, evaluation, recipes and the CLI."""
