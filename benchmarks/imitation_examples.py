"""Imitation privacy in assisted learning: Examples 3, 4, 6, 7 of Xian et al., and assisted learning.

Writes ``benchmarks/results/imitation_examples.{json,md}`` and
``benchmarks/results/imitation_examples.png``:

1. Example 3 (Bob: least squares): ρ against n at k1 = p for the paper's covariance estimator and
   the covariance-free "gram" variant; ρ and the span error against k1 at fixed n;
2. Example 4 (Bob: a two-leaf tree): ρ against n for the Stage I + II reconstruction and for
   Stage I order + known marginal; whether the order came out exactly;
3. Example 6 (Bob releases Laplace-LDP data): ρ against n for the debiased and the naive
   imitation, at two privacy levels;
4. Example 7 (one raw feature released): ρ against n for p in {2, 5, 10}, independent and
   correlated features, beside its population value;
5. assisted learning: test MSE against rounds k, beside Alice alone and the oracle (all columns),
   for linear and tree learners, on scikit-learn's bundled diabetes data (Alice: age, sex, bmi,
   bp; Bob: the six serum measurements; random 70/30 splits) and on synthetic data.

ρ is the scaled squared error Σ|f_I − f_M|²/Σ|f_M|² on 2,000 future rows, averaged over random
tasks and repeats, with a 95% bootstrap interval (``modelsteal.privacy.multi_task_privacy``).
Log-log slopes of ρ against n are least-squares fits over the four largest n of each curve (−1
means ρ ∝ 1/n).

About 1 CPU-minute (2 to 3 minutes on 2 shared cores); ``--quick`` runs smaller grids in about
20 seconds.

    python benchmarks/imitation_examples.py [--quick] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split
from sklearn.tree import DecisionTreeRegressor

from modelsteal.privacy import (
    assisted_curve,
    example3,
    example4,
    example6,
    example7,
    make_vertical_task,
)

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
COMMAND = "python benchmarks/imitation_examples.py"


def slope(rows: list[dict], last: int = 4) -> float:
    """Least-squares slope of log ρ against log n over the ``last`` largest n."""
    rows = sorted(rows, key=lambda r: r["n"])[-last:]
    n = np.log([r["n"] for r in rows])
    rho = np.log([max(r["rho"], 1e-300) for r in rows])
    return float(np.polyfit(n, rho, 1)[0])


def run_examples(grid: dict, seed: int) -> dict:
    common = {"repeats": grid["repeats"], "n_tasks": 10, "seed": seed}
    out: dict = {}
    t0 = time.perf_counter()
    out["ex3_n"] = example3(grid["ex3_ns"], p=5, **common) + example3(
        grid["ex3_ns"], p=5, method="gram", **common
    )
    out["ex3_k1"] = example3((grid["ex3_k1_n"],), p=5, k1s=grid["ex3_k1s"], **common)
    out["ex3_seconds"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    out["ex4"] = example4(grid["ex4_ns"], **{**common, "repeats": grid["ex4_repeats"]})
    out["ex4_seconds"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    out["ex6"] = [r for a in (2.0, 4.0) for r in example6(grid["ex6_ns"], p=3, alpha=a, **common)]
    out["ex6_seconds"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    out["ex7"] = [
        r
        for p in (2, 5, 10)
        for c in (0.0, 0.5)
        for r in example7(
            grid["ex7_ns"], p=p, correlation=c, **{**common, "repeats": grid["ex7_repeats"]}
        )
    ]
    out["ex7_seconds"] = time.perf_counter() - t0
    return out


def _mean_curves(curves: list[list[dict]]) -> list[dict]:
    keys = ("assisted", "alice_alone", "oracle", "baseline")
    rows = []
    for k in range(len(curves[0])):
        row = {"k": k + 1}
        for key in keys:
            vals = np.array([c[k][key] for c in curves])
            row[key] = float(vals.mean())
            row[key + "_se"] = (
                float(vals.std(ddof=1) / np.sqrt(len(vals))) if len(vals) > 1 else 0.0
            )
        row["assisted_over_oracle"] = row["assisted"] / row["oracle"]
        rows.append(row)
    return rows


def run_assisted(grid: dict, seed: int) -> list[dict]:
    settings = [
        ("linear", "linear", 1.0, grid["k_linear"]),
        ("tree", DecisionTreeRegressor(max_depth=1), 0.3, grid["k_tree_diabetes"]),
    ]
    x, y = load_diabetes(return_X_y=True)
    out = []
    for name, learner, lr, rounds in settings:
        curves = []
        for s in range(grid["splits"]):
            xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=seed + s)
            curves.append(
                assisted_curve(
                    xtr[:, :4],
                    xtr[:, 4:],
                    ytr,
                    xte[:, :4],
                    xte[:, 4:],
                    yte,
                    learner=learner,
                    rounds=rounds,
                    learning_rate=lr,
                    seed=seed + s,
                )
            )
        label = "stump (depth 1), learning rate 0.3" if name == "tree" else "least squares"
        out.append(
            {"data": "diabetes", "learner": name, "detail": label, "curve": _mean_curves(curves)}
        )
    synthetic = [
        ("linear", "linear", "linear", 1.0, 0.0, grid["k_linear"]),
        (
            "nonlinear (additive)",
            "nonlinear",
            DecisionTreeRegressor(max_depth=3),
            0.5,
            0.0,
            grid["k_tree"],
        ),
        (
            "nonlinear + x_A1·x_B1 interaction",
            "nonlinear",
            DecisionTreeRegressor(max_depth=3),
            0.5,
            3.0,
            grid["k_tree"],
        ),
    ]
    for label, kind, learner, lr, inter, rounds in synthetic:
        curves = []
        for s in range(grid["synthetic_seeds"]):
            xa, xb, yy = make_vertical_task(4000, kind=kind, interaction=inter, seed=seed + s)
            tr, te = slice(0, 2000), slice(2000, None)
            curves.append(
                assisted_curve(
                    xa[tr],
                    xb[tr],
                    yy[tr],
                    xa[te],
                    xb[te],
                    yy[te],
                    learner=learner,
                    rounds=rounds,
                    learning_rate=lr,
                    seed=seed + s,
                )
            )
        name = "linear" if learner == "linear" else "tree"
        detail = "least squares" if name == "linear" else "depth-3 tree, learning rate 0.5"
        out.append(
            {
                "data": f"synthetic {label}",
                "learner": name,
                "detail": detail,
                "curve": _mean_curves(curves),
            }
        )
    return out


def _errbars(ax, rows, label, **kw):
    n = np.array([r["n"] for r in rows])
    rho = np.array([r["rho"] for r in rows])
    low = np.array([r["low"] for r in rows])
    high = np.array([r["high"] for r in rows])
    ax.errorbar(
        n, rho, yerr=[rho - low, high - rho], marker="o", ms=3, capsize=2, label=label, **kw
    )


def plot(ex: dict, assisted: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(18, 8))
    ax = axes[0, 0]
    for method in ("covariance", "gram"):
        _errbars(ax, [r for r in ex["ex3_n"] if r["imitation"] == method], method)
    ns = np.array(sorted({r["n"] for r in ex["ex3_n"]}))
    ax.plot(ns, 10 / ns, "k:", label="10 / n")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="Bob's rows n",
        ylabel="ρ",
        title="Ex. 3: ρ vs n (k1 = p = 5)",
    )
    ax.legend(fontsize=8)
    ax = axes[0, 1]
    rows = ex["ex3_k1"]
    k1 = [r["k1"] for r in rows]
    ax.errorbar(
        k1,
        [r["rho"] for r in rows],
        yerr=[[r["rho"] - r["low"] for r in rows], [r["high"] - r["rho"] for r in rows]],
        marker="o",
        ms=3,
        capsize=2,
        label="ρ",
    )
    ax.plot(
        k1, [max(r["span_error"], 1e-16) for r in rows], "s--", ms=3, label="span error (sin θ_max)"
    )
    ax.axvline(5, color="grey", lw=0.8)
    ax.set(
        yscale="log", xlabel="Stage I queries k1", title=f"Ex. 3: vs k1 (n = {rows[0]['n']}, p = 5)"
    )
    ax.legend(fontsize=8)
    ax = axes[0, 2]
    for name in ("stage I + II", "stage I + marginal"):
        _errbars(ax, [r for r in ex["ex4"] if r["imitation"] == name], name)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="Bob's rows n (= k1)",
        ylabel="ρ",
        title="Ex. 4: two-leaf tree, ρ vs n",
    )
    ax.legend(fontsize=8)
    ax = axes[0, 3]
    for alpha in (2.0, 4.0):
        for name, style in (("debiased", "-"), ("naive", "--")):
            sel = [r for r in ex["ex6"] if r["imitation"] == name and r["alpha"] == alpha]
            _errbars(ax, sel, f"{name}, α = {alpha:g} (τ² = {sel[0]['tau2']:g})", ls=style)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="Bob's rows n",
        ylabel="ρ",
        title="Ex. 6: Laplace-LDP release, ρ vs n",
    )
    ax.legend(fontsize=7)
    ax = axes[1, 0]
    for p in (2, 5, 10):
        for c, style in ((0.0, "-"), (0.5, "--")):
            sel = [
                r
                for r in ex["ex7"]
                if r["imitation"] == "released feature" and r["p"] == p and r["correlation"] == c
            ]
            _errbars(ax, sel, f"p = {p}, corr = {c:g}", ls=style)
    ax.axhline(1.0, color="k", lw=0.8, label="nothing released")
    ax.set(
        xscale="log",
        ylim=(0, 1.1),
        xlabel="Bob's rows n",
        ylabel="ρ",
        title="Ex. 7: one raw feature released",
    )
    ax.legend(fontsize=7)
    for ax, item in zip(axes[1, 1:], [*assisted[:2], assisted[3]], strict=True):
        curve = item["curve"]
        k = [r["k"] for r in curve]
        for key, label in (
            ("assisted", "assisted"),
            ("alice_alone", "Alice alone"),
            ("oracle", "oracle (all columns)"),
        ):
            ax.errorbar(
                k,
                [r[key] for r in curve],
                yerr=[r[key + "_se"] for r in curve],
                marker="o",
                ms=3,
                capsize=2,
                label=label,
            )
        ax.set(
            xlabel="rounds k",
            ylabel="test MSE",
            title=f"Assisted: {item['data']}, {item['learner']}",
        )
        ax.legend(fontsize=8)
    from matplotlib.ticker import NullFormatter

    for ax in axes.flat:
        ax.grid(alpha=0.3)
        if ax.get_xscale() == "log":
            ax.xaxis.set_minor_formatter(NullFormatter())
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(rows: list[dict], cols: list[str]) -> str:
    def fmt(v):
        if isinstance(v, float):
            if v == 0:
                return "0"
            return (
                f"{v:.3g}" if abs(v) < 1e-2 or abs(v) >= 1e4 else f"{v:.4f}".rstrip("0").rstrip(".")
            )
        return "—" if v is None else str(v)

    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller grids (a few seconds)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    if args.quick:
        grid = {
            "repeats": 2,
            "ex3_ns": (100, 1000, 10000),
            "ex3_k1_n": 1000,
            "ex3_k1s": (1, 3, 5, 8),
            "ex4_ns": (25, 100, 400),
            "ex4_repeats": 2,
            "ex6_ns": (100, 1000, 10000),
            "ex7_ns": (100, 1000),
            "ex7_repeats": 2,
            "splits": 3,
            "synthetic_seeds": 2,
            "k_linear": 5,
            "k_tree": 6,
            "k_tree_diabetes": 10,
        }
    else:
        grid = {
            "repeats": 10,
            "ex3_ns": (100, 300, 1000, 3000, 10000, 30000, 100000),
            "ex3_k1_n": 1000,
            "ex3_k1s": (1, 2, 3, 4, 5, 6, 7, 8, 10, 15, 20),
            "ex4_ns": (25, 50, 100, 200, 400, 800),
            "ex4_repeats": 5,
            "ex6_ns": (100, 300, 1000, 3000, 10000, 30000, 100000),
            "ex7_ns": (100, 1000, 10000),
            "ex7_repeats": 5,
            "splits": 20,
            "synthetic_seeds": 5,
            "k_linear": 8,
            "k_tree": 15,
            "k_tree_diabetes": 20,
        }
    ex = run_examples(grid, args.seed)
    t0 = time.perf_counter()
    assisted = run_assisted(grid, args.seed)
    assisted_seconds = time.perf_counter() - t0
    slopes = {
        "ex3 covariance": slope([r for r in ex["ex3_n"] if r["imitation"] == "covariance"]),
        "ex3 gram": slope([r for r in ex["ex3_n"] if r["imitation"] == "gram"]),
        "ex4 stage I + II": slope([r for r in ex["ex4"] if r["imitation"] == "stage I + II"]),
        "ex4 stage I + marginal": slope(
            [r for r in ex["ex4"] if r["imitation"] == "stage I + marginal"]
        ),
        "ex6 debiased, alpha 2": slope(
            [r for r in ex["ex6"] if r["imitation"] == "debiased" and r["alpha"] == 2.0]
        ),
        "ex6 debiased, alpha 4": slope(
            [r for r in ex["ex6"] if r["imitation"] == "debiased" and r["alpha"] == 4.0]
        ),
        "ex6 naive, alpha 4": slope(
            [r for r in ex["ex6"] if r["imitation"] == "naive" and r["alpha"] == 4.0]
        ),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(ex, assisted, RESULTS / "imitation_examples.png")
    command = COMMAND + (" --quick" if args.quick else "")
    meta = {
        "command": command,
        "seed": args.seed,
        "grid": grid,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "seconds": time.perf_counter() - started,
        "seconds_by_part": {
            **{k: round(v, 1) for k, v in ex.items() if k.endswith("_seconds")},
            "assisted_seconds": round(assisted_seconds, 1),
        },
    }
    payload = {
        "meta": meta,
        "slopes": slopes,
        **{k: v for k, v in ex.items() if not k.endswith("_seconds")},
        "assisted": assisted,
    }
    (RESULTS / "imitation_examples.json").write_text(json.dumps(payload, indent=2))
    rho_cols = ["imitation", "n", "rho", "low", "high"]
    md = [
        "# Imitation privacy in assisted learning: Examples 3, 4, 6, 7",
        "",
        f"Made by `{command}` (seed {args.seed}, {meta['seconds']:.0f} s on {meta['machine']}); "
        f"{grid['repeats']} repeats ({grid['ex4_repeats']} for Example 4, {grid['ex7_repeats']} for "
        "Example 7) × 10 tasks per point, "
        "2,000 future rows, 95% bootstrap "
        "intervals. ρ = Σ|f_I − f_M|² / Σ|f_M|² (0 = perfect imitation, 1 = the all-zero "
        "imitation).",
        "",
        "![curves](imitation_examples.png)",
        "",
        "## Log-log slopes of ρ against n",
        "",
        "Least-squares fits of log ρ on log n over the four largest n of each curve (−1: ρ ∝ 1/n; "
        "0: ρ does not vanish).",
        "",
        table([{"curve": k, "slope": v} for k, v in slopes.items()], ["curve", "slope"]),
        "",
        "## Example 3: least squares, k1 = p = 5",
        "",
        table(ex["ex3_n"], [*rho_cols, "rho_n", "span_error", "span_dim"]),
        "",
        f"### Example 3 against k1 (n = {grid['ex3_k1_n']}, covariance estimator)",
        "",
        table(ex["ex3_k1"], ["k1", "rho", "low", "high", "span_error", "span_dim"]),
        "",
        "## Example 4: two-leaf tree, k1 = n basis labels",
        "",
        table(
            ex["ex4"], [*rho_cols, "rho_n", "order_recovered", "data_error", "k2", "stage2_queries"]
        ),
        "",
        "## Example 6: Laplace-LDP release (p = 3, values in [-1, 1])",
        "",
        table(ex["ex6"], ["alpha", "tau2", *rho_cols, "rho_n"]),
        "",
        "## Example 7: one raw feature released",
        "",
        table(ex["ex7"], ["p", "correlation", *rho_cols, "rho_theory"]),
        "",
        "## Assisted learning: test MSE after k rounds",
        "",
        "`assisted`: Stage I for k rounds (2k fitted models), Stage II sum. `alice_alone`: her "
        "learner boosted on her columns, `oracle`: on all columns, both with 2k fitted models "
        "(plain least squares for the linear learner). `baseline`: the training mean. Means "
        "over splits/seeds (± standard error in the JSON).",
        "",
    ]
    for item in assisted:
        md += [
            f"### {item['data']}, {item['learner']} ({item['detail']})",
            "",
            table(
                item["curve"],
                ["k", "assisted", "alice_alone", "oracle", "baseline", "assisted_over_oracle"],
            ),
            "",
        ]
    (RESULTS / "imitation_examples.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
