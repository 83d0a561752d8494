"""Imitation-privacy commands ``example``, ``assisted`` and ``side-info`` (mounted as ``privacy``).

modelsteal privacy example --example 3 --n 100,1000,10000 --seed 0
modelsteal privacy assisted --data diabetes --alice-columns age,sex,bmi,bp --learner linear
modelsteal privacy side-info --task digits --budgets 25,50,100,200,400 --seeds 5
"""

from __future__ import annotations

import csv
import inspect
import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from modelsteal._cli_common import console, friendly, parse_params
from modelsteal.errors import InputValidationError, InvalidParameterError

privacy_app = typer.Typer(
    help="Imitation privacy: the paper's examples, assisted learning and side information.",
    no_args_is_help=True,
)

Seed = Annotated[int, typer.Option(help="Seed for every random choice.")]
Out = Annotated[Path | None, typer.Option(help="Also write the rows to this JSON file.")]

# Columns shown after the fixed ones when an example's rows carry them.
_EXTRA = (
    "rho_n",
    "span_error",
    "span_dim",
    "order_recovered",
    "data_error",
    "stage2_queries",
    "rho_theory",
    "tau2",
)


def _ints(text: str | None, option: str) -> tuple[int, ...] | None:
    if text is None or not text.strip():
        return None
    try:
        return tuple(int(s) for s in text.replace(" ", "").split(",") if s)
    except ValueError:
        raise InvalidParameterError(
            f"{option} takes comma-separated ints such as 100,1000,10000. Got {text!r} instead."
        ) from None


def _floats(text: str | None, option: str) -> tuple[float, ...] | None:
    if text is None or not text.strip():
        return None
    try:
        return tuple(float(s) for s in text.replace(" ", "").split(",") if s)
    except ValueError:
        raise InvalidParameterError(
            f"{option} takes comma-separated numbers such as 0.05,0.1. Got {text!r} instead."
        ) from None


def _names(text: str | None) -> list[str] | None:
    if text is None or not text.strip():
        return None
    return [s.strip() for s in text.split(",") if s.strip()]


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}" if value != 0 else "0"
    return str(value)


def _write(out: Path | None, payload: Any) -> None:
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(payload, indent=2))
        console.print(f"written: {out}")


@privacy_app.command("example")
@friendly
def example(
    example: Annotated[int, typer.Option(help="Example of the paper: 3, 4, 6 or 7.")],
    n: Annotated[str | None, typer.Option("--n", help="Bob's data sizes, comma-separated.")] = None,
    k1: Annotated[
        str | None, typer.Option("--k1", help="Example 3: Stage I query counts, comma-separated.")
    ] = None,
    repeats: Annotated[int, typer.Option(help="Independent repeats (new data and queries).")] = 3,
    tasks: Annotated[int, typer.Option(help="Random tasks (label vectors) per repeat.")] = 10,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="Any other parameter of the example, KEY=VALUE (e.g. p=5)."),
    ] = None,
    seed: Seed = 0,
    out: Out = None,
) -> None:
    """Measure ρ for one of the paper's Examples 3, 4, 6, 7 over Bob's data size n."""
    from modelsteal.privacy.examples import EXAMPLES, run_example

    kwargs: dict[str, Any] = {"repeats": repeats, "n_tasks": tasks, "seed": seed}
    sizes = _ints(n, "--n")
    if sizes is not None:
        kwargs["ns"] = sizes
    k1s = _ints(k1, "--k1")
    if k1s is not None:
        if example != 3:
            raise InvalidParameterError("--k1 applies to Example 3 only.")
        kwargs["k1s"] = k1s
    kwargs.update(parse_params(param))
    fn = EXAMPLES.get(example)
    if fn is not None:
        accepted = set(inspect.signature(fn).parameters)
        unknown = sorted(set(kwargs) - accepted)
        if unknown:
            raise InvalidParameterError(
                f"Example {example} has no parameter {', '.join(map(repr, unknown))}. Its "
                f"parameters: {', '.join(sorted(accepted))}."
            )
    rows = run_example(example, **kwargs)
    table = Table(title=f"Example {example}: imitation privacy ρ (0 = perfect imitation)")
    fixed = ["imitation", "n", *(["k1"] if example == 3 else []), "rho", "95% CI"]
    extra = [c for c in _EXTRA if c in rows[0]]
    for col in fixed + extra:
        table.add_column(col, justify="left" if col == "imitation" else "right")
    for row in rows:
        cells = [str(row["imitation"]), str(row["n"])]
        if example == 3:
            cells.append(str(row["k1"]))
        cells += [_fmt(row["rho"]), f"[{_fmt(row['low'])}, {_fmt(row['high'])}]"]
        cells += [_fmt(row[c]) for c in extra]
        table.add_row(*cells)
    console.print(table)
    _write(out, rows)


def _read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"No such CSV file: {path}")
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header:
            raise InputValidationError(f"{path} is empty; a header row of column names is needed.")
        names = [h.strip() for h in header]
        values = []
        for line, record in enumerate(reader, start=2):
            if not record:
                continue
            if len(record) != len(names):
                raise InputValidationError(
                    f"{path}, line {line}: {len(record)} fields where the header has {len(names)}."
                )
            try:
                values.append([float(v) for v in record])
            except ValueError:
                raise InputValidationError(
                    f"{path}, line {line}: every field must be a number (assisted learning is "
                    "regression on numeric columns); encode categorical columns first."
                ) from None
    if not values:
        raise InputValidationError(f"{path} has a header but no data rows.")
    return names, np.asarray(values)


def _columns(
    names: list[str], wanted: list[str] | None, option: str, exclude: set[str]
) -> list[int]:
    if wanted is None:
        return [i for i, c in enumerate(names) if c not in exclude]
    missing = [w for w in wanted if w not in names]
    if missing:
        raise InvalidParameterError(
            f"{option}: no column {', '.join(map(repr, missing))}. Columns: {', '.join(names)}."
        )
    return [names.index(w) for w in wanted]


def _vertical_data(
    data: str,
    target: str | None,
    alice: list[str] | None,
    bob: list[str] | None,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], list[str]]:
    """``(x_alice, x_bob, y, alice_names, bob_names)`` from a bundled set, synthetic or a CSV."""
    if data in ("synthetic", "synthetic-nonlinear"):
        from modelsteal.privacy.assisted import make_vertical_task

        kind = "linear" if data == "synthetic" else "nonlinear"
        xa, xb, y = make_vertical_task(2000, kind=kind, seed=seed)
        return xa, xb, y, [f"a{i}" for i in range(5)], [f"b{i}" for i in range(5)]
    if data == "diabetes":
        from sklearn.datasets import load_diabetes

        bunch = load_diabetes()
        names, x, y = list(bunch.feature_names), bunch.data, bunch.target
        alice = alice or ["age", "sex", "bmi", "bp"]
    elif data.endswith(".csv"):
        names, table = _read_csv(Path(data))
        target = target or names[-1]
        t = _columns(names, [target], "--target", set())[0]
        y, x = table[:, t], np.delete(table, t, axis=1)
        names = [c for i, c in enumerate(names) if i != t]
    else:
        raise InvalidParameterError(
            "--data must be 'diabetes', 'synthetic', 'synthetic-nonlinear' or a .csv file. Got "
            f"{data!r} instead."
        )
    if alice is None:
        raise InvalidParameterError(
            f"--alice-columns is required for {data}: name Alice's columns. Columns: "
            f"{', '.join(names)}."
        )
    ia = _columns(names, alice, "--alice-columns", set())
    ib = _columns(names, bob, "--bob-columns", set(alice))
    if not ib:
        raise InvalidParameterError("Bob has no columns: leave some out of --alice-columns.")
    if set(ia) & set(ib):
        raise InvalidParameterError("A column cannot be both Alice's and Bob's.")
    return x[:, ia], x[:, ib], y, [names[i] for i in ia], [names[i] for i in ib]


@privacy_app.command("assisted")
@friendly
def assisted(
    data: Annotated[
        str,
        typer.Option(
            help="'diabetes' (bundled), 'synthetic', 'synthetic-nonlinear' (2,000 rows, 5 + 5 "
            "columns) or a numeric .csv file with a header row."
        ),
    ] = "diabetes",
    target: Annotated[
        str | None, typer.Option(help="CSV: the label column (default: the last one).")
    ] = None,
    alice_columns: Annotated[
        str | None, typer.Option(help="Alice's columns, comma-separated names.")
    ] = None,
    bob_columns: Annotated[
        str | None, typer.Option(help="Bob's columns (default: every other column).")
    ] = None,
    learner: Annotated[str, typer.Option(help="linear, tree or stump (both sides).")] = "linear",
    rounds: Annotated[int, typer.Option(help="Stage I rounds k.")] = 5,
    learning_rate: Annotated[float, typer.Option(help="Shrinkage per fitted model.")] = 1.0,
    test_size: Annotated[float, typer.Option(help="Share of rows held out.")] = 0.3,
    seed: Seed = 0,
    out: Out = None,
) -> None:
    """Assisted learning on a column split: test MSE against Alice alone and the oracle."""
    from sklearn.model_selection import train_test_split

    from modelsteal._checks import check_float
    from modelsteal.privacy.assisted import assisted_curve

    test_size = check_float(
        test_size,
        name="test_size",
        owner="assisted",
        low=0.0,
        high=1.0,
        low_open=True,
        high_open=True,
    )
    xa, xb, y, na, nb = _vertical_data(
        data, target, _names(alice_columns), _names(bob_columns), seed
    )
    idx_tr, idx_te = train_test_split(np.arange(len(y)), test_size=test_size, random_state=seed)
    rows = assisted_curve(
        xa[idx_tr],
        xb[idx_tr],
        y[idx_tr],
        xa[idx_te],
        xb[idx_te],
        y[idx_te],
        learner=learner,
        rounds=rounds,
        learning_rate=learning_rate,
        seed=seed,
    )
    console.print(
        f"{data}: {len(idx_tr)} training rows, {len(idx_te)} test rows; Alice: {', '.join(na)}; "
        f"Bob: {', '.join(nb)}",
        highlight=False,
    )
    table = Table(title=f"Assisted learning ({learner}): test MSE after k rounds")
    for col in ("k", "assisted", "Alice alone", "oracle (all columns)", "mean only"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            str(r["k"]),
            _fmt(r["assisted"]),
            _fmt(r["alice_alone"]),
            _fmt(r["oracle"]),
            _fmt(r["baseline"]),
        )
    console.print(table)
    _write(out, {"data": data, "alice": na, "bob": nb, "learner": learner, "rows": rows})


@privacy_app.command("side-info")
@friendly
def side_info(
    task: Annotated[
        str,
        typer.Option(
            help="'digits' (an MLP behind a label-only API) or 'linear' (least squares on "
            "correlated Gaussian features)."
        ),
    ] = "digits",
    budgets: Annotated[
        str | None,
        typer.Option(help="Query budgets, comma-separated (default: the task's own grid)."),
    ] = None,
    seeds: Annotated[int, typer.Option(help="Independent imitations per level and budget.")] = 5,
    epsilons: Annotated[
        str, typer.Option(help="ε values of the P(ρ ≤ ε) estimates, comma-separated.")
    ] = "0.01,0.05,0.1,0.25",
    p: Annotated[
        int | None, typer.Option("--p", help="linear: the number of features (default 10).")
    ] = None,
    n_boot: Annotated[int, typer.Option(help="Bootstrap replicates of the ρ interval.")] = 1000,
    seed: Seed = 0,
    out: Out = None,
) -> None:
    """ρ against the budget for four levels of side information: model class, data distribution."""
    from modelsteal.privacy.side_information import side_information_curve

    kwargs: dict[str, Any] = {"seeds": seeds, "n_boot": n_boot, "seed": seed, "p": p}
    sizes = _ints(budgets, "--budgets")
    if sizes is not None:
        kwargs["budgets"] = sizes
    eps = _floats(epsilons, "--epsilons")
    if eps is not None:
        kwargs["epsilons"] = eps
    rows = side_information_curve(task, **kwargs)
    first = rows[0]
    console.print(
        f"{task}: module score {first['module_score']:.4f} "
        f"({'test accuracy' if task == 'digits' else 'R² on future rows'}); "
        + "; ".join(
            f"{level}: {r['imitator']} on {r['queries_from']}"
            for level, r in {r["level"]: r for r in rows}.items()
        ),
        highlight=False,
    )
    table = Table(title=f"Side information ({task}): ρ, mean over {seeds} imitations")
    for col in ("level", "budget", "rho", "95% CI", "sd"):
        table.add_column(col, justify="left" if col == "level" else "right", no_wrap=True)
    for row in rows:
        table.add_row(
            str(row["level"]),
            str(row["budget"]),
            f"{row['rho']:.3g}",
            f"[{row['low']:.3g}, {row['high']:.3g}]",
            f"{row['rho_sd']:.3g}",
        )
    console.print(table)
    console.print(
        "0 = perfect imitation. 95% CI: percentile bootstrap over the future rows and the seeds "
        "together; sd: standard deviation of ρ over the seeds.",
        highlight=False,
    )
    probs = Table(title="P(ρ ≤ ε) over the imitations: k / r [95% Wilson interval]")
    probs.add_column("level", no_wrap=True)
    probs.add_column("budget", justify="right", no_wrap=True)
    for e in first["privacy"]:
        probs.add_column(f"ε = {e['epsilon']:g}", justify="right")
    for row in rows:
        probs.add_row(
            str(row["level"]),
            str(row["budget"]),
            *(
                f"{int(e['k'])}/{int(e['r'])} [{e['low']:.2f}, {e['high']:.2f}]"
                for e in row["privacy"]
            ),
        )
    console.print(probs)
    _write(out, rows)
