"""``microdesign study run|report|list``: Bayesian inverse-design studies."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from generator.errors import InvalidInputError
from inverse.cli._app import TYPER_SETTINGS, app
from inverse.cli._tables import TableColumn, print_fitting
from inverse.masking import mask_credentials

study_app = typer.Typer(help="Run, report and list inverse-design studies.", **TYPER_SETTINGS)
app.add_typer(study_app, name="study")

StorageOption = Annotated[str | None, typer.Option("--storage", help="SQLAlchemy URL (default: sqlite:///runs/NAME.db).")]


def _recipe_cell(row, name: str, sep: str = " ") -> str:  # noqa: ANN001
    """``0.49 [0.48, 0.50]`` (the recipe and its 80 % interval, ``sep`` between), or the bare value when the interval is unknown."""
    value, lo, hi = row[f"{name}_mean"], row.get(f"{name}_lo"), row.get(f"{name}_hi")
    if lo is None or hi is None or lo != lo or hi != hi:
        return f"{value:.3g}"
    return f"{value:.3g}{sep}[{lo:.3g}, {hi:.3g}]"


def _print_recipes(table, *, title: str, top: int, posterior=None) -> None:  # noqa: ANN001
    """Print the first ``top`` rows of a ranked recipe table with rich (the CSV has every column).

    One table when the terminal is wide enough; else values over their intervals on two lines, split into
    tables that repeat rank and trial: a number is never folded or cut.
    """
    from rich.console import Console

    from generator.physics.recipes import RECIPE_NAMES

    rows = [row for _, row in table.head(top).iterrows()]
    recipes = [n for n in RECIPE_NAMES if f"{n}_mean" in table.columns]
    measured = [c.removesuffix("_mean") for c in table.columns if c.endswith("_mean") and c.removesuffix("_mean") not in recipes]
    with_interval = "recipe_source" in table.columns and (table["recipe_source"] == "posterior").any()
    keys = [TableColumn("rank", [str(r["rank"]) for r in rows]), TableColumn("trial", [str(r["trial"]) for r in rows])]
    status = [
        TableColumn("meets", ["yes" if r["meets_targets"] else "no" for r in rows]),
        TableColumn("mismatch", [f"{r['mismatch']:.3g}" for r in rows]),
        TableColumn("uncert.", [f"{r['uncertainty']:.3g}" for r in rows]),
    ]

    def layout(sep: str) -> list[list[TableColumn]]:
        header = (lambda n: f"{n}{sep}[80 %]") if with_interval else (lambda n: n)
        return [
            status,
            [TableColumn(header(n), [_recipe_cell(r, n, sep) for r in rows]) for n in recipes],
            [TableColumn(n, [f"{r[f'{n}_mean']:.3g}{sep}± {r[f'{n}_std']:.2g}" for r in rows]) for n in measured],
        ]

    console = Console()  # the terminal's width (80 columns when it is unknown)
    print_fitting(console, title, keys, [layout(" "), layout("\n")])
    if recipes and not with_interval:
        console.print("recipes: the feature predictor's mean (this model has no training table, so no calibrated interval)")
    if posterior is not None and with_interval:
        axes = posterior.degenerate_direction()
        spread = axes["residual_std"]
        console.print(
            f"recipes: posterior mean and calibrated 80 % interval (inverse.posterior, {posterior.n_series} training series). "
            f"chi and log time trade off (correlation {axes['correlation']:.2f}; a chi 0.1 higher goes with log t "
            f"{0.1 * axes['slope']:+.3f}): a film pins chi to about ±{spread['chi']:.2g}, log t to ±{spread['log_time']:.2g}, "
            f"phi to ±{spread['phi']:.2g} (1 std)."
        )


def _write_csv(table, path: Path) -> None:  # noqa: ANN001
    from generator.io import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


@study_app.command("run")
def run(
    spec: Annotated[Path, typer.Argument(help="Study spec (.toml).")],
    n_trials: Annotated[int | None, typer.Option("--n-trials", min=1, help="Total complete trials wanted (resumes).")] = None,
    storage: StorageOption = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Override the spec's generator (bundle, 'default', folder).")] = None,
    sampler: Annotated[str | None, typer.Option(help="Override the spec's sampler: random, tpe, gp, botorch.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the spec's seed.")] = None,
    samples: Annotated[int | None, typer.Option("--samples", min=1, help="Override samples per trial.")] = None,
    top: Annotated[int, typer.Option(min=0, help="Rows of the recipe table to print.")] = 10,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
    verify: Annotated[int, typer.Option("--verify", metavar="K", help="Then simulate the top K recipes (microdesign verify); 0: off.")] = 0,
    verify_seeds: Annotated[int, typer.Option("--verify-seeds", help="Simulations per verified recipe.")] = 4,
    verify_preset: Annotated[str | None, typer.Option("--verify-preset", help="Dataset preset to verify with (MicroGen3D weights).")] = None,
    refine: Annotated[bool, typer.Option("--refine", help="With --verify: search recipes with the simulator until one verifies.")] = False,
    budget: Annotated[int, typer.Option("--budget", help="--refine: most simulator runs of the search.")] = 48,
) -> None:
    """Run or resume a study, then print its ranked recipes (and verify the top ones by simulation with --verify)."""
    from inverse.recipes import study_posterior, study_recipes
    from inverse.search import run_study
    from inverse.spec import load_spec
    from inverse.storage import default_storage_url, stored_at

    if verify < 0 or verify_seeds < 1:
        raise InvalidInputError(f"verify: need K >= 0 and --verify-seeds >= 1, got {verify} and {verify_seeds}")
    if refine and not verify:
        raise InvalidInputError("refine: --refine goes on from the verification; give --verify K as well")
    from inverse.cli.verify import check_refine_options

    check_refine_options(refine, budget, 3)
    study_spec = load_spec(spec, model=model, search_sampler=sampler, seed=seed, samples_per_trial=samples, storage=storage)
    study = run_study(study_spec, n_trials=n_trials, progress=progress)
    posterior = study_posterior(study)
    table = study_recipes(study, posterior=posterior)
    n_done = sum(1 for t in study.trials if t.state.name == "COMPLETE")
    print(f"study {study.study_name}: {n_done} complete trials, {len(table)} measured")
    url = stored_at(study_spec.storage or default_storage_url(study_spec.name))
    print(f"stored in {mask_credentials(url)}")
    if study_spec.storage is None:  # the default is relative to this folder: say how to reach it from anywhere
        print(f"  from another folder: microdesign study report {study.study_name} --storage {url}")
    if len(table):
        _print_recipes(table, title=f"ranked recipes of {study.study_name}", top=top, posterior=posterior)
    if verify and len(table):
        from inverse.cli.verify import run_verification

        run_verification(study, storage_url=study_spec.storage or default_storage_url(study_spec.name), top_k=verify,
                         seeds=verify_seeds, seed=None, model=model, kind=None, preset=verify_preset, max_steps=None,
                         store=True, progress=progress, refine=refine, budget=budget)


@study_app.command("report")
def report(
    name: Annotated[str, typer.Argument(help="Study name.")],
    storage: StorageOption = None,
    csv: Annotated[Path | None, typer.Option(help="CSV to write (default: runs/NAME_recipes.csv).")] = None,
    top: Annotated[int, typer.Option(min=0, help="Rows to print.")] = 20,
) -> None:
    """Print the ranked recipe table of a study and write it as CSV."""
    import optuna

    from inverse.recipes import study_posterior, study_recipes
    from inverse.storage import RUNS_DIR, default_storage_url, open_storage

    url = storage or default_storage_url(name)
    rdb = open_storage(url, readonly=True)
    try:
        study = optuna.load_study(study_name=name, storage=rdb)
    except KeyError:
        names = ", ".join(s.study_name for s in optuna.get_all_study_summaries(rdb, include_best_trial=False))
        raise InvalidInputError(f"name: no study {name!r} in {url} (it holds: {names or 'none'})") from None
    posterior = study_posterior(study)
    table = study_recipes(study, posterior=posterior)
    path = csv or RUNS_DIR / f"{name}_recipes.csv"
    _write_csv(table, path)
    if len(table):
        _print_recipes(table, title=f"ranked recipes of {name}", top=top, posterior=posterior)
    else:
        print(f"study {name} has no measured trial yet")
    print(f"wrote {path}")


@study_app.command("list")
def list_(storage: StorageOption = None) -> None:
    """List the studies of a storage (default: every runs/*.db)."""
    from rich.console import Console
    from rich.table import Table

    from inverse.storage import RUNS_DIR, list_studies

    urls = [storage] if storage else [f"sqlite:///{p}" for p in sorted(RUNS_DIR.glob("*.db"))]
    out = Table(title="studies")
    for column in ("study", "storage", "trials", "complete", "directions", "started"):
        out.add_column(column, overflow="fold")
    for url in urls:
        for s in list_studies(url):
            started = str(s["started"])[:19] if s["started"] else "-"
            out.add_row(str(s["name"]), mask_credentials(url), str(s["n_trials"]), str(s["n_complete"]), ",".join(s["directions"]), started)  # type: ignore[arg-type]
    if out.row_count == 0:
        print("no studies" + (f" in {storage}" if storage else f" under {RUNS_DIR}/"))
        return
    Console().print(out)
