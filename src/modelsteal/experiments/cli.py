"""Experiment commands: ``run``, ``report`` and ``audit`` (registered by the main CLI)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from modelsteal._cli_common import console, friendly

DataDir = Annotated[
    str | None,
    typer.Option(
        "--data-dir",
        envvar="MODELSTEAL_DATA",
        help="Folder with the data sets' files (default: $MODELSTEAL_DATA).",
    ),
]
Workers = Annotated[int, typer.Option(help="Cells run at once (worker processes).")]


@contextmanager
def _cell_bar() -> Iterator[Callable[..., None]]:
    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    task: dict[str, Any] = {}

    def update(cell, result, error, done: int, total: int) -> None:
        if "id" not in task:
            task["id"] = bars.add_task("cells", total=total)
        labels = cell.labels
        what = " / ".join(v for k, v in labels.items() if k in ("defense", "strategy", "attack"))
        if error is not None:
            console.print(f"[red]failed[/] {what}: {error.splitlines()[0]}", highlight=False)
        elif cell.kind == "attack":
            console.print(
                f"{what}: accuracy {result.get('accuracy', float('nan')):.4f}, "
                f"fidelity {result.get('fidelity', float('nan')):.4f}",
                highlight=False,
            )
        bars.update(task["id"], completed=done)

    with bars:
        yield update


def _summary_line(summary) -> str:
    return (
        f"{summary.total} cells: {summary.skipped} already done, {summary.finished} run, "
        f"{summary.failed} failed in {summary.seconds / 60:.1f} min; store {summary.store}"
    )


@friendly
def run(
    config: Annotated[
        Path, typer.Argument(help="Experiment config (TOML), e.g. configs/modelguard_digits.toml.")
    ],
    out: Annotated[
        Path | None, typer.Option(help="Run folder (default: results/<config name>).")
    ] = None,
    workers: Workers = 1,
    backend: Annotated[str, typer.Option(help="local (processes) or ray.")] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default: a local Ray instance).")
    ] = None,
    data_dir: DataDir = None,
    report: Annotated[bool, typer.Option(help="Write the report when the grid is done.")] = True,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="Run only cells with this label, e.g. strategy=KnockoffNets."),
    ] = None,
) -> None:
    """Run an experiment grid; a second run on the same folder only does what is left."""
    from modelsteal._cli_common import parse_params
    from modelsteal.experiments import load_config, run_grid, write_report

    cfg = load_config(config)
    out = out or Path("results") / cfg.name
    selected = {k: str(v) for k, v in parse_params(only).items()}
    with _cell_bar() as bar:
        summary = run_grid(
            cfg,
            out,
            workers=workers,
            backend=backend,
            address=address,
            data_dir=data_dir,
            progress=bar,
            log_line=console.print,
            only=selected,
        )
    console.print(_summary_line(summary), highlight=False)
    if report:
        paths = write_report(out)
        console.print(f"report: {paths['markdown']} and {paths['html']}", highlight=False)
    if summary.failed:
        raise typer.Exit(code=1)


@friendly
def report(
    results: Annotated[
        Path,
        typer.Argument(help="A run folder (what `modelsteal run` wrote) or its results.sqlite."),
    ],
    out: Annotated[
        Path | None, typer.Option(help="Where to write (default: the run folder).")
    ] = None,
) -> None:
    """Write the Markdown/HTML report, CSV tables and PNG plots of a run folder."""
    from modelsteal.experiments import write_report

    paths = write_report(results, out)
    for key, path in paths.items():
        console.print(f"{key:22s} {path}", highlight=False)


@friendly
def audit(
    model: Annotated[Path, typer.Option(help="Your saved model: .joblib/.pkl, .onnx or .pt.")],
    data: Annotated[
        str, typer.Option(help="Your data: a CSV/NPZ file (or a registered data set).")
    ],
    out: Annotated[Path, typer.Option(help="Where the grid, results and report go.")] = Path(
        "audit"
    ),
    defenses: Annotated[
        str, typer.Option(help="Comma-separated defenses to compare with none.")
    ] = ",".join(("top1", "rounding", "reverse_sigmoid", "modelguard_s")),
    budgets: Annotated[
        str | None,
        typer.Option(help="Query budgets, e.g. 100,500,1k (default: 5–80% of the pool)."),
    ] = None,
    label_column: Annotated[str, typer.Option(help="The CSV's label column.")] = "label",
    seeds: Annotated[int, typer.Option(help="Seeds per cell (0, 1, ...).")] = 1,
    workers: Workers = 1,
    data_dir: DataDir = None,
) -> None:
    """Audit a saved model: how well it can be stolen, undefended and behind each defense."""
    from modelsteal.experiments.audit import audit as run_audit
    from modelsteal.workflows import parse_budgets

    chosen = [d.strip() for d in defenses.split(",") if d.strip()]
    with _cell_bar() as bar:
        summary, paths = run_audit(
            model,
            data,
            out,
            defenses=chosen,
            workers=workers,
            data_dir=data_dir,
            budgets=parse_budgets(budgets) if budgets else None,
            label_column=label_column,
            seeds=list(range(seeds)),
            progress=bar,
            log_line=console.print,
        )
    console.print(_summary_line(summary), highlight=False)
    console.print(f"report: {paths['markdown']} and {paths['html']}", highlight=False)
