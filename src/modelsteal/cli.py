"""The ``modelsteal`` command line. Thin: every command calls the library."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from modelsteal._cli_common import console, friendly, parse_params

app = typer.Typer(
    help="Measure and defend against model stealing.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Data sets: list and (opt-in) download.", no_args_is_help=True)
app.add_typer(data_app, name="data")

DataDir = Annotated[
    str | None,
    typer.Option(
        "--data-dir",
        envvar="MODELSTEAL_DATA",
        help="Folder with the data sets' files (default: $MODELSTEAL_DATA).",
    ),
]
Seed = Annotated[int, typer.Option(help="Seed for every random choice.")]


@contextmanager
def _progress() -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress display fed by the library's ``progress(phase, done, total)`` callback."""
    bars = Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    tasks: dict[str, Any] = {}

    def update(phase: str, done: int, total: int) -> None:
        label = {"query": "queries", "train": "rounds"}.get(phase, phase)
        if phase not in tasks or bars.tasks[tasks[phase]].total != total:
            tasks[phase] = bars.add_task(label, total=total)
        bars.update(tasks[phase], completed=done)

    with bars:
        yield update


def _history_table(title: str, curves: dict[str, Sequence[dict[str, float]]]) -> Table:
    table = Table(title=title)
    for col in ("attack", "queries", "accuracy", "fidelity", "train s"):
        table.add_column(col, justify="left" if col == "attack" else "right")
    for label, rows in curves.items():
        for row in rows:
            table.add_row(
                label,
                f"{int(row['queries'])}",
                f"{row['accuracy']:.4f}" if "accuracy" in row else "—",
                f"{row['fidelity']:.4f}" if "fidelity" in row else "—",
                f"{row.get('train_seconds', 0.0):.1f}",
            )
    return table


@app.command()
@friendly
def demo(
    out: Annotated[Path, typer.Option(help="Report folder.")] = Path("reports/demo"),
    seed: Seed = 0,
) -> None:
    """Train a target on scikit-learn's digits, steal it at 50–1000 queries, write a report."""
    from modelsteal.workflows import run_demo

    console.print("Training an MLP target on digits, then stealing it with KnockoffNets…")
    with _progress() as progress:
        result = run_demo(out, seed=seed, progress=progress)
    console.print(f"target test accuracy: [bold]{result.target_accuracy:.4f}[/]")
    console.print(_history_table("KnockoffNets against a digits MLP", result.curves))
    for kind, path in result.paths.items():
        console.print(f"{kind:>8}: {path}")


@app.command()
@friendly
def train(
    data: Annotated[str, typer.Option(help="Data set name (see `list`) or a .csv/.npz file.")],
    out: Annotated[Path, typer.Option(help="Where to save the model bundle (.pt).")],
    model: Annotated[str, typer.Option(help="Architecture (see `list models`).")] = "auto",
    param: Annotated[
        list[str] | None, typer.Option("--param", help="Architecture parameter KEY=VALUE.")
    ] = None,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: Seed = 0,
    split_seed: Annotated[int, typer.Option(help="Seed of the data split.")] = 0,
    pool_fraction: Annotated[
        float, typer.Option(help="Share of training data kept for the attacker pool.")
    ] = 0.5,
    test_fraction: Annotated[
        float, typer.Option(help="Test share when the data set has no test split.")
    ] = 0.25,
    max_train: Annotated[int | None, typer.Option(help="Cap on target-train rows.")] = None,
    label_column: Annotated[str, typer.Option(help="Label column of a CSV file.")] = "label",
    data_dir: DataDir = None,
) -> None:
    """Train a target model on the target-train split and save it as a bundle."""
    from modelsteal.models import TrainConfig
    from modelsteal.workflows import SplitConfig, train_target

    split = SplitConfig(
        data=data,
        split_seed=split_seed,
        pool_fraction=pool_fraction,
        test_fraction=test_fraction,
        max_train=max_train,
        label_column=label_column,
        data_dir=data_dir,
    )
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr)
    with _progress() as progress:
        trained = train_target(
            split,
            arch=model,
            params=parse_params(param),
            config=config,
            seed=seed,
            out=out,
            on_epoch=lambda epoch, loss: progress("epochs", epoch + 1, epochs),
        )
    console.print(
        f"{trained.info.arch} on {data}: test accuracy [bold]{trained.test_accuracy:.4f}[/] "
        f"→ saved to {trained.path}"
    )


def _strategy_params(recipe: str, strategy: str | None, seeding: str | None) -> dict[str, Any]:
    """``--strategy``/``--seeding`` as recipe parameters: ActiveThief calls its strategy
    ``selection``; other recipes that take a query strategy call it ``strategy``."""
    import inspect

    from modelsteal.attacks import RECIPES

    accepted = inspect.signature(RECIPES.get(recipe)).parameters
    params: dict[str, Any] = {}
    for option, value, names in (
        ("--strategy", strategy, ("selection", "strategy")),
        ("--seeding", seeding, ("seeding",)),
    ):
        if value is None:
            continue
        name = next((n for n in names if n in accepted), None)
        if name is None:
            raise typer.BadParameter(
                f"recipe {recipe!r} has no {' or '.join(repr(n) for n in names)} parameter; "
                f"drop {option}."
            )
        params[name] = value
    return params


@app.command()
@friendly
def steal(
    target: Annotated[
        str,
        typer.Option(help="Model file (.pt bundle, .onnx, .joblib/.pkl) or a server URL."),
    ],
    budgets: Annotated[str, typer.Option(help="Query budgets, e.g. 1000,5000,10k.")] = "1000",
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", envvar="MODELSTEAL_API_KEY", help="API key of a server target."),
    ] = None,
    recipe: Annotated[str, typer.Option(help="Attack recipe (see `list recipes`).")] = "knockoff",
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="Recipe parameter KEY=VALUE, e.g. selection=entropy+kcenter."),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(help="Data set or file (default: the one the target was trained on)."),
    ] = None,
    strategy: Annotated[
        str | None,
        typer.Option(
            help="activethief: the selection strategy (e.g. entropy+kcenter); recipes with a "
            "query strategy: its name (e.g. jbda_tr)."
        ),
    ] = None,
    seeding: Annotated[
        str | None, typer.Option(help="activethief: random, cluster or kmeans_input.")
    ] = None,
    substitute: Annotated[str, typer.Option(help="Substitute architecture.")] = "auto",
    epochs: Annotated[int, typer.Option(help="Substitute training epochs.")] = 20,
    labels_only: Annotated[
        bool, typer.Option("--labels-only", help="Target answers top-1 labels only.")
    ] = False,
    seed: Seed = 0,
    split_seed: Annotated[int | None, typer.Option(help="Override the stored split seed.")] = None,
    pool_fraction: Annotated[
        float | None, typer.Option(help="Override the stored pool share.")
    ] = None,
    test_fraction: Annotated[
        float | None, typer.Option(help="Override the stored test share.")
    ] = None,
    label_column: Annotated[str | None, typer.Option(help="Label column of a CSV file.")] = None,
    out: Annotated[Path | None, typer.Option(help="Report folder.")] = None,
    save_substitute: Annotated[
        Path | None, typer.Option(help="Save the final substitute (.pt).")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Steal a saved target with an attack recipe at a schedule of budgets."""
    from modelsteal.attacks import EXACT_ATTACKS
    from modelsteal.attacks.training import default_architecture
    from modelsteal.models import ModelInfo, save_model
    from modelsteal.reports import write_extraction_report
    from modelsteal.targets import load_target
    from modelsteal.workflows import parse_budgets, split_config_for
    from modelsteal.workflows import steal as run_steal

    if recipe.replace("-", "_") in EXACT_ATTACKS:
        # Exact-extraction recipes have their own command; --budgets gives their query cap.
        return exact(
            name=recipe,
            target=Path(target),
            data=data,
            param=param,
            budget=max(parse_budgets(budgets)) if budgets != "1000" else None,
            seed=seed,
            out=out,
            data_dir=data_dir,
        )
    schedule = parse_budgets(budgets)
    split = split_config_for(
        target,
        overrides={
            "data": data,
            "split_seed": split_seed,
            "pool_fraction": pool_fraction,
            "test_fraction": test_fraction,
            "label_column": label_column,
        },
        data_dir=data_dir,
    )
    splits = split.load(ood=None)
    victim = load_target(target, input_shape=splits.input_shape, api_key=api_key)
    name = target if target.startswith(("http://", "https://")) else Path(target).name
    with _progress() as progress:
        result = run_steal(
            victim,
            splits,
            recipe=recipe,
            recipe_params={
                "substitute": substitute,
                "epochs": epochs,
                **_strategy_params(recipe, strategy, seeding),
                **parse_params(param),
            },
            budgets=schedule,
            seed=seed,
            labels_only=labels_only,
            progress=progress,
        )
    label = f"{recipe}{', labels only' if labels_only else ''}"
    curves = {label: result.history}
    console.print(_history_table(f"{recipe} against {name} on {split.data}", curves))
    if out is not None:
        meta = {
            "target": str(target),
            "data": split.data,
            "split_seed": split.split_seed,
            "attacker_pool_rows": len(splits.attacker_pool),
            "test_rows": len(splits.target_test),
            "seed": seed,
        }
        for kind, path in write_extraction_report(
            out, curves, meta=meta, title=f"{recipe} against {name}"
        ).items():
            console.print(f"{kind:>8}: {path}")
    if save_substitute is not None:
        arch = default_architecture(splits.input_shape) if substitute == "auto" else substitute
        info = ModelInfo(
            arch=arch,
            input_shape=tuple(splits.input_shape),
            n_classes=splits.n_classes,
            metadata={**split.as_metadata(), "stolen_from": str(target), "queries": result.queries},
        )
        console.print(f"substitute → {save_model(save_substitute, result.substitute, info)}")


@app.command()
@friendly
def defend(
    target: Annotated[Path, typer.Option(help="Model file: .pt bundle, .onnx or .joblib/.pkl.")],
    defense: Annotated[str, typer.Option(help="Defense name (see `list defenses`).")],
    param: Annotated[
        list[str] | None, typer.Option("--param", help="Defense parameter KEY=VALUE.")
    ] = None,
    sweep: Annotated[
        str | None, typer.Option(help="One parameter and its values, e.g. epsilon=0.25,0.5,1.")
    ] = None,
    ood: Annotated[
        str, typer.Option(help="OOD set for the AUROC: 'default', a data set name, or 'none'.")
    ] = "default",
    data: Annotated[str | None, typer.Option(help="Data set (default: the target's).")] = None,
    label_column: Annotated[str | None, typer.Option(help="Label column of a CSV file.")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for utility.csv/.md/.json.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Measure what a defense costs honest users: ℓ1 distortion, accuracy, OOD AUROC."""
    from modelsteal.errors import InvalidParameterError
    from modelsteal.reports import markdown_table, write_csv
    from modelsteal.targets import load_target
    from modelsteal.workflows import defend as run_defend
    from modelsteal.workflows import split_config_for

    split = split_config_for(
        target, overrides={"data": data, "label_column": label_column}, data_dir=data_dir
    )
    splits = split.load(ood=None if ood == "none" else ood)
    victim = load_target(target, input_shape=splits.input_shape)
    sweep_values = None
    if sweep:
        key, sep, values = sweep.partition("=")
        if not sep or not values:
            raise InvalidParameterError(f"--sweep takes KEY=V1,V2,... Got {sweep!r} instead.")
        sweep_values = {key: [json.loads(v) for v in values.split(",")]}
    with console.status(f"evaluating {defense} on {len(splits.target_test)} test rows…"):
        rows = run_defend(
            victim, splits, defense=defense, params=parse_params(param), sweep=sweep_values
        )
    columns = [
        c
        for c in (
            *(sweep_values or {}),
            "max_l1",
            "mean_l1",
            "clean_accuracy",
            "protected_accuracy",
            "argmax_kept",
            "ood_auroc",
            "clean_ood_auroc",
            "centroids",
        )
        if any(c in r for r in rows)
    ]
    table = Table(title=f"{defense} in front of {target.name} ({split.data} test set)")
    short = {
        "max_l1": "max ℓ1",
        "mean_l1": "mean ℓ1",
        "clean_accuracy": "clean acc",
        "protected_accuracy": "protected acc",
        "argmax_kept": "argmax kept",
        "ood_auroc": "OOD AUROC",
        "clean_ood_auroc": "clean AUROC",
    }
    for col in columns:
        table.add_column(short.get(col, col), justify="right")
    for row in rows:
        table.add_row(
            *(
                f"{row[c]:.4f}" if isinstance(row.get(c), float) else str(row.get(c, ""))
                for c in columns
            )
        )
    console.print(table)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_csv(out / "utility.csv", rows, ["defense", *columns])
        (out / "utility.md").write_text(markdown_table(rows, ["defense", *columns]))
        (out / "utility.json").write_text(json.dumps(rows, indent=2, default=str))
        console.print(f"written: {out}/utility.{{csv,md,json}}")


@app.command()
@friendly
def exact(
    name: Annotated[str, typer.Argument(help="Exact attack, e.g. relu-from-gradients.")],
    target: Annotated[Path, typer.Option(help="Model file: .joblib/.pkl (sklearn) or .pt bundle.")],
    data: Annotated[
        str | None,
        typer.Option(help="Data set or .csv/.npz file (default: the target's training data)."),
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="Attack parameter KEY=VALUE.")
    ] = None,
    budget: Annotated[int | None, typer.Option(help="Query budget (default: the attack's).")] = (
        None
    ),
    seed: Seed = 0,
    out: Annotated[Path | None, typer.Option(help="Folder for result.json and params.npz.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Run an exact-extraction attack (equation solving, tree path finding, ReLU reconstruction)."""
    from modelsteal.attacks.exact import run_exact, save_exact

    with console.status(f"running {name} against {target.name}…"):
        result, report = run_exact(
            name,
            target,
            data=data,
            params=parse_params(param),
            budget=budget,
            seed=seed,
            data_dir=data_dir,
        )
    table = Table(title=f"{report['attack']} against {target.name} ({report['data']})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("queries", f"{report['queries']:,} of {report['budget']:,}")
    for key in ("agreement_test", "agreement_uniform", "rel_error_test", "rel_error_uniform"):
        if key in report:
            table.add_row(key.replace("_", " "), f"{report[key]:.6g}")
    for key, value in report["info"].items():
        if isinstance(value, int | float | str):
            table.add_row(key.replace("_", " "), str(value))
    console.print(table)
    if out is not None:
        for path in save_exact(result, report, out):
            console.print(f"written: {path}")


@app.command("list")
@friendly
def list_(
    what: Annotated[
        str | None, typer.Argument(help="datasets, models, recipes, strategies or recoveries.")
    ] = None,
) -> None:
    """Show what each registry holds."""
    from modelsteal.registries import REGISTRIES

    names = [what] if what else list(REGISTRIES)
    for name in names:
        registry = REGISTRIES.get(name)
        table = Table(title=name)
        table.add_column("name")
        table.add_column("description")
        for key, obj in registry.items():
            doc = getattr(obj, "description", None) or (getattr(obj, "__doc__", "") or "")
            table.add_row(key, doc.strip().splitlines()[0] if doc.strip() else "")
        console.print(table)


@data_app.command("fetch")
@friendly
def data_fetch(
    name: Annotated[str, typer.Argument(help="Registered data set name.")],
    data_dir: DataDir = None,
    force: bool = False,
) -> None:
    """Download a data set's files from their canonical locations and verify checksums."""
    from modelsteal.data import fetch_dataset
    from modelsteal.errors import InvalidParameterError

    if data_dir is None:
        raise InvalidParameterError(
            "Pass --data-dir (or set MODELSTEAL_DATA) to say where to save."
        )
    for path in fetch_dataset(name, data_dir=data_dir, force=force):
        console.print(f"ok {path}")


from modelsteal.experiments.cli import audit, report, run  # noqa: E402  (the experiments')
from modelsteal.multiplicity.cli import multiplicity  # noqa: E402  (Rashomon sets)
from modelsteal.privacy.cli import privacy_app  # noqa: E402  (imitation privacy)
from modelsteal.server.cli import keys_app, serve  # noqa: E402  (the server's commands)

app.command("serve")(serve)
app.command("run")(run)
app.command("report")(report)
app.command("audit")(audit)
app.add_typer(keys_app, name="keys")
app.add_typer(privacy_app, name="privacy")
app.command("multiplicity")(multiplicity)


def main() -> None:  # pragma: no cover
    logging.basicConfig(level=logging.WARNING)
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
