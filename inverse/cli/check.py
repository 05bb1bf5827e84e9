"""``microdesign check``: is a target inside what the model's training data covers?

Exit code 0 when the target is feasible, 1 when it is not, 2 on bad input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from generator.errors import InvalidInputError
from inverse.cli._app import app, parse_assignments


@app.command()
def check(
    target: Annotated[list[str], typer.Option("--target", "-t", help="Target descriptor value, NAME=VALUE (repeatable).")],
    model: Annotated[str, typer.Option("--model", "-m", help="Bundle file, 'default', or a MicroGen3D folder.")] = "default",
    kind: Annotated[str | None, typer.Option(help="MicroGen3D kind for a folder of weights.")] = None,
    table: Annotated[Path | None, typer.Option(help="Training descriptors (.csv or labelled .h5) when the model carries none.")] = None,
) -> None:
    """Say whether a target is feasible, which correlation it breaks, and the nearest feasible target."""
    from generator.checkpoint import load_generator
    from inverse.feasibility import check_targets, model_for
    from inverse.search import measured_descriptor_names
    from inverse.spec import is_count_descriptor

    values = parse_assignments(target, "--target", required=True)
    for name, value in values.items():
        if not is_count_descriptor(name) and not 0.0 <= value <= 1.0:
            raise InvalidInputError(f"--target {name}: {value} is outside [0, 1]")
    generator = load_generator(model, kind=kind)
    known = set(measured_descriptor_names(generator))
    for name in values:
        if name not in known:
            raise InvalidInputError(f"--target {name}: unknown descriptor (known: {', '.join(sorted(known))})")
    fmodel = model_for(generator, list(values), table)
    report = check_targets(fmodel, values)
    shown = ", ".join(f"{k} = {v:.3g}" for k, v in report.values.items())
    if report.feasible:
        print(f"feasible: {shown} lies inside the training data")
    else:
        print(f"infeasible: {report.explanation}")
        nearest = ", ".join(f"{k} = {v:.3g}" for k, v in report.nearest.items())
        print(f"nearest feasible target: {nearest}")
    if fmodel.pca is not None:
        print(
            f"T² = {report.t2:.3g} (limit {report.t2_limit:.3g}), SPE = {report.spe:.3g} (limit {report.spe_limit:.3g}), "
            f"{fmodel.n_components} of {len(fmodel.columns)} principal components, {len(fmodel.train)} training samples"
        )
    else:
        print("range checks only: the model carries no training-descriptor table (pass --table for the full check)")
    raise typer.Exit(0 if report.feasible else 1)
