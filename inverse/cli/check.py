"""``microdesign check``: is a target inside what the model's training data covers?

Exit code 0 when the target is feasible, 1 when it is not, 2 on bad input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from inverse.cli._app import app, parse_assignments


@app.command()
def check(
    target: Annotated[list[str], typer.Option("--target", "-t", help="Target descriptor value, NAME=VALUE (repeatable).")],
    model: Annotated[str, typer.Option("--model", "-m", help="Bundle file, 'default', or a MicroGen3D folder.")] = "default",
    kind: Annotated[str | None, typer.Option(help="MicroGen3D kind for a folder of weights.")] = None,
    table: Annotated[Path | None, typer.Option(help="Training descriptors (.csv or labelled .h5) when the model carries none.")] = None,
) -> None:
    """Say whether a target is feasible, which correlation it breaks, and the nearest feasible target."""
    from inverse.feasibility import check as check_target

    values = parse_assignments(target, "--target", required=True)
    report = check_target(values, model, kind=kind, table=table, option="--target")
    fmodel = report.model
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
