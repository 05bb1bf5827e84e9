"""``microdesign verify``: re-run the top recipes of a study with the physics simulator."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from generator.errors import InvalidInputError
from inverse.cli._app import app
from inverse.cli._tables import TableColumn, print_fitting

if TYPE_CHECKING:
    import optuna

    from inverse.spec import Target
    from inverse.verify import RecipeVerification, VerificationReport


def _target_text(target: Target | None) -> str:
    """``0.5 ± 0.02``, ``≥ 0.85``, ``≤ 1.4``, ``[0.45, 0.5]`` or ``-`` (objectives)."""
    if target is None:
        return "-"
    if target.equal is not None:
        return f"{target.equal:.4g} ± {target.tolerance:.2g}"
    if target.at_least is not None and target.at_most is not None:
        return f"[{target.at_least:.4g}, {target.at_most:.4g}]"
    return f"≥ {target.at_least:.4g}" if target.at_least is not None else f"≤ {target.at_most:.4g}"


def _mean_std(mean: float | None, std: float | None, sep: str = " ") -> str:
    """``0.4512 ± 0.0019`` (``sep`` before the ``±``), the bare mean without a std, ``n/a`` without a mean."""
    if mean is None or mean != mean:
        return "n/a"
    return f"{mean:.4g}{sep}± {std:.2g}" if std is not None and std == std else f"{mean:.4g}"


def _yes(flag: bool) -> str:
    return "[green]yes[/]" if flag else "[red]no[/]"


def _descriptor_columns(report: VerificationReport, result: RecipeVerification, sep: str) -> list[list[TableColumn]]:
    """The columns of one verified recipe's table (one row per descriptor; ``sep`` before each ``±``)."""
    names = list(report.descriptor_names)
    targets = [report.spec.targets.get(name) for name in names]
    generated = [(result.generated_mean.get(n), result.generated_std.get(n)) for n in names]
    simulated = [(result.simulated_mean.get(n), result.simulated_std.get(n)) for n in names]
    difference = [abs(g - s) if g is not None and s is not None else float("nan") for (g, _), (s, _) in zip(generated, simulated, strict=True)]
    return [[
        TableColumn("target", [_target_text(t) for t in targets]),
        TableColumn("generated", [_mean_std(m, s, sep) for m, s in generated]),
        TableColumn("simulated", [_mean_std(m, s, sep) for m, s in simulated]),
        TableColumn("|Δ|", [f"{d:.3g}" for d in difference]),  # |generated - simulated|
        TableColumn("meets", ["-" if t is None else _yes(result.target_distance.get(n, float("inf")) == 0.0)
                              for n, t in zip(names, targets, strict=True)], markup=True),
    ]]


def print_report(report: VerificationReport) -> None:
    """Print one rich table per verified recipe and a summary table (split to fit the terminal, numbers never cut)."""
    from rich.console import Console

    console = Console()  # the terminal's width (80 columns when it is unknown)
    settings = report.settings
    console.print(
        f"verified {len(report.results)} recipe(s) of study [bold]{report.study_name}[/] with the Cahn-Hilliard simulator "
        f"(preset {settings.preset or '?'} from the {settings.source}, grid {list(settings.ch.shape)}, dt {settings.ch.dt:g}, "
        f"{settings.n_phases} phases, {len(report.results[0].seeds)} seeds)"
    )
    names = list(report.descriptor_names)
    for r in report.results:
        notes = []
        if r.below_spinodal:
            notes.append("chi below the spinodal: no phase separation")
        if r.outside_training:
            notes.append(f"outside the training range: {', '.join(r.outside_training)}")
        title = (
            f"rank {r.rank} · trial {r.trial} · φ={r.recipe['phi']:.3f} χ={r.recipe['chi']:.3f} "
            f"log t={r.recipe['log_time']:.3f} (t={r.time:.4g}, {r.steps} steps)"
        )
        print_fitting(console, title, [TableColumn("descriptor", names, justify="left")],
                      [_descriptor_columns(report, r, " "), _descriptor_columns(report, r, "\n")],
                      caption="; ".join(notes) or None, title_justify="left")
    results = report.results
    summary = [
        [TableColumn("φ", [f"{r.recipe['phi']:.3f}" for r in results]), TableColumn("χ", [f"{r.recipe['chi']:.3f}" for r in results]),
         TableColumn("log t", [f"{r.recipe['log_time']:.3f}" for r in results])],
        [TableColumn("generated score", [f"{r.generated_score:.3g}" for r in results]),
         TableColumn("simulated score", [f"{r.score:.3g}" for r in results])],
        [TableColumn("generated meets", [_yes(r.generated_meets_targets) for r in results], markup=True),
         TableColumn("simulated meets", [_yes(r.meets_targets) for r in results], markup=True),
         TableColumn("runs meeting", [f"{round(r.fraction_meeting * len(r.seeds))}/{len(r.seeds)}" for r in results])],
    ]
    keys = [TableColumn("rank", [str(r.rank) for r in results]), TableColumn("trial", [str(r.trial) for r in results])]
    print_fitting(console, "summary", keys, [summary], title_justify="left")


def check_refine_options(refine: bool, budget: int, refine_seeds: int) -> None:
    """Refuse bad refinement options before anything is simulated (one ``error:`` line)."""
    if not refine:
        return
    if refine_seeds < 1:
        raise InvalidInputError(f"refine-seeds: must be >= 1, got {refine_seeds}")
    if budget < refine_seeds:
        raise InvalidInputError(f"budget: {budget} simulator runs do not pay for one recipe of {refine_seeds} runs; give --budget >= {refine_seeds}")


def run_refinement(study: optuna.Study, report: VerificationReport, *, storage_url: str, budget: int, refine_seeds: int,
                   max_steps: int | None, store: bool, device: str | None = None, progress: bool = True) -> None:
    """Refine the closest verified recipe when none met the targets (``verify --refine``), and print the outcome."""
    from inverse.refine import REFINEMENT_ATTR, refine_trial

    met = [r for r in report.results if r.meets_targets]
    if met:
        print(f"refine: the recipe of trial {met[0].trial} (rank {met[0].rank}) already meets every target when simulated; nothing to refine")
        return
    start = min(report.results, key=lambda r: (r.score, r.rank))
    print(f"refine: no verified recipe meets the targets; searching from trial {start.trial}'s recipe and posterior "
          f"(budget {budget} simulator runs, {refine_seeds} per recipe; resumable)")
    result = refine_trial(study, start, report.settings, storage=storage_url, budget=budget, n_seeds=refine_seeds, max_steps=max_steps,
                          store=store, device=device, progress=print if progress else None)
    print(result.message(budget))
    if store:
        print(f"trail stored in the study's user attribute {REFINEMENT_ATTR!r} and in study {result.study_name!r}")


def run_verification(study: optuna.Study, *, storage_url: str | None, top_k: int, seeds: int, seed: int | None, model: str | None,
                     kind: str | None, preset: str | None, max_steps: int | None, store: bool, progress: bool,
                     device: str | None = None, refine: bool = False, budget: int = 48, refine_seeds: int = 3) -> VerificationReport:
    """Verify a loaded study, print the report and say where it was stored (shared with ``study run --verify``).

    With ``refine``, go on with :func:`run_refinement` when no verified recipe meets the targets.
    """
    from inverse.storage import default_storage_url
    from inverse.verify import DEFAULT_SEED, VERIFICATION_ATTR, verify_study

    check_refine_options(refine, budget, refine_seeds)
    report = verify_study(
        study, top_k=top_k, n_seeds=seeds, seed=DEFAULT_SEED if seed is None else seed, model=model, kind=kind, preset=preset, storage_url=storage_url,
        store=store, max_steps=max_steps, device=device, progress=progress,
    )
    print_report(report)
    if store:
        print(f"stored in the study's user attribute {VERIFICATION_ATTR!r}")
    if refine:
        run_refinement(study, report, storage_url=storage_url or default_storage_url(study.study_name), budget=budget,
                       refine_seeds=refine_seeds, max_steps=max_steps, store=store, device=device, progress=progress)
    return report


@app.command("verify")
def verify(
    study: Annotated[str, typer.Argument(help="Study name.")],
    storage: Annotated[str | None, typer.Option("--storage", help="SQLAlchemy URL (default: sqlite:///runs/STUDY.db).")] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Best-ranked recipes to verify.")] = 3,
    seeds: Annotated[int, typer.Option("--seeds", help="Simulations (noise seeds) per recipe.")] = 4,
    seed: Annotated[int | None, typer.Option("--seed", help="First noise seed (default 100000).")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Generator whose training data to match (default: the study's).")] = None,
    kind: Annotated[str | None, typer.Option(help="For a MicroGen3D folder: CH_2phase, CH_3phase.")] = None,
    preset: Annotated[str | None, typer.Option(
        "--preset", help="Dataset preset (tiny, small, paper or .toml) to simulate with; needed for MicroGen3D weights.")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Largest time steps per run (default: 10x the training runs').")] = None,
    store: Annotated[bool, typer.Option("--store/--no-store", help="Write the results into the study.")] = True,
    device: Annotated[str | None, typer.Option(help="Torch device of the simulator (default cpu).")] = None,
    refine: Annotated[bool, typer.Option(
        "--refine", help="When no verified recipe meets the targets, search recipes with the simulator (warm-started from the posterior).")] = False,
    budget: Annotated[int, typer.Option("--budget", help="--refine: most simulator runs of the search (verified runs included).")] = 48,
    refine_seeds: Annotated[int, typer.Option("--refine-seeds", help="--refine: runs per candidate recipe (one batch).")] = 3,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Simulate the top-k recipes of a study and check that the simulated microstructures meet its targets.

    With --refine, go on searching recipes with the simulator in the loop until one verifies or --budget runs are spent;
    the search is stored in the study and resumes where it stopped.
    """
    from inverse.verify import load_study

    if top_k < 1:
        raise InvalidInputError(f"top-k: must be >= 1, got {top_k}")
    if seeds < 1:
        raise InvalidInputError(f"seeds: must be >= 1, got {seeds}")
    if max_steps is not None and max_steps < 1:
        raise InvalidInputError(f"max-steps: must be >= 1, got {max_steps}")
    check_refine_options(refine, budget, refine_seeds)
    loaded, url = load_study(study, storage)
    run_verification(loaded, storage_url=url, top_k=top_k, seeds=seeds, seed=seed, model=model, kind=kind, preset=preset,
                     max_steps=max_steps, store=store, progress=progress, device=device, refine=refine, budget=budget,
                     refine_seeds=refine_seeds)
