"""Imitation privacy against the imitator's budget and side information (Xian et al.).

For a fixed module, ρ of imitations built with b queries under four levels of side information
(a 2 × 2 grid: the module's model class known or not, its data distribution known or not), from
``modelsteal.privacy.side_information_curve``:

1. digits: the registry MLP trained on ``load_splits("digits", seed=0, pool_fraction=0.7)``'s
   target_train part, behind a label-only API; queries from the attacker pool (distribution
   known) or uniform on [0, 1]^64 (unknown); imitator the same MLP architecture (class known) or
   5-nearest neighbours (unknown); ρ = 1 − fidelity on the 449 target_test rows;
2. linear: least squares through the origin on 200 rows of N(0, Σ), p = 10 correlated features
   with unequal scales; queries from N(0, Σ) or uniform on [-3, 3]^10; imitator least squares or
   5-nearest-neighbour regression; ρ = Σ|f_I − f_M|² / Σ|f_M|² on 2,000 future rows.

Every point is the mean ρ of S independent imitations (new query sets, new MLP initialisation),
with a 95% percentile-bootstrap interval that resamples the future rows and the imitations
together, and P(ρ ≤ ε) over the imitations with its Wilson interval.

Writes ``benchmarks/results/imitation_side_information.{json,md,png}``. About 2 CPU-minutes
(torch on one thread); ``--quick`` runs a smaller grid and writes under
``runs/imitation_side_information/quick`` instead.

    python benchmarks/imitation_side_information.py [--seeds 10] [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from modelsteal.privacy import LEVELS, side_information_curve

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
COMMAND = "python benchmarks/imitation_side_information.py"
P = 10
GRID = {
    "digits": (25, 50, 100, 200, 400, 800),
    "linear": (2, 5, 8, 9, 10, 11, 15, 20, 50, 100, 200, 500, 1000),
}
QUICK = {"digits": (25, 100, 400), "linear": (5, 9, 10, 20, 100)}
EPSILONS = {"digits": (0.05, 0.1, 0.2, 0.5), "linear": (1e-6, 0.05, 0.2, 0.5)}
STYLES = {"both": "-o", "class only": "--s", "distribution only": "-.^", "neither": ":v"}


def fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) < 1e-3:
        return f"{v:.1e}"
    return f"{v:.3g}"


def pivot(rows: list[dict], cell) -> str:
    budgets = sorted({r["budget"] for r in rows})
    out = [
        "| level | " + " | ".join(str(b) for b in budgets) + " |",
        "|---" * (len(budgets) + 1) + "|",
    ]
    for level in LEVELS:
        by_b = {r["budget"]: r for r in rows if r["level"] == level}
        out.append(f"| {level} | " + " | ".join(cell(by_b[b]) for b in budgets) + " |")
    return "\n".join(out)


def privacy_table(rows: list[dict]) -> str:
    budgets = sorted({r["budget"] for r in rows})
    out = [
        "| level | ε | " + " | ".join(str(b) for b in budgets) + " |",
        "|---" * (len(budgets) + 2) + "|",
    ]
    for level in LEVELS:
        by_b = {r["budget"]: r for r in rows if r["level"] == level}
        for i, e in enumerate(by_b[budgets[0]]["privacy"]):
            cells = []
            for b in budgets:
                est = by_b[b]["privacy"][i]
                cells.append(
                    f"{int(est['k'])}/{int(est['r'])} [{est['low']:.2f}, {est['high']:.2f}]"
                )
            out.append(f"| {level} | {e['epsilon']:g} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for ax, task in zip(axes, ("digits", "linear"), strict=True):
        rows = results[task]
        for level in LEVELS:
            sel = sorted((r for r in rows if r["level"] == level), key=lambda r: r["budget"])
            b = np.array([r["budget"] for r in sel])
            rho = np.array([r["rho"] for r in sel])
            low = np.array([r["low"] for r in sel])
            high = np.array([r["high"] for r in sel])
            ax.errorbar(
                b,
                rho,
                yerr=[np.maximum(rho - low, 0), np.maximum(high - rho, 0)],
                fmt=STYLES[level],
                ms=4,
                capsize=2,
                label=f"{level} ({sel[0]['imitator']}, {sel[0]['queries_from']})",
            )
        if task == "digits":
            ax.set(yscale="log", ylabel="ρ = 1 − fidelity on future data")
            ax.set_title(f"digits MLP (test accuracy {rows[0]['module_score']:.3f}), label-only")
        else:
            ax.set_yscale("symlog", linthresh=1e-2)
            ax.set_ylim(-0.002, 3)
            ax.axvline(P, color="grey", lw=0.8)
            ax.text(P * 1.05, 2.0, "b = p", color="grey", fontsize=8)
            ax.set(ylabel="ρ = Σ|f_I − f_M|² / Σ|f_M|²  (symlog; 0 = exact)")
            ax.set_title(f"linear regression, p = {P} (module R² {rows[0]['module_score']:.3f})")
        ax.set(xscale="log", xlabel="queries (budget b)")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="imitations per level and budget")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="smaller grid, fewer seeds")
    args = parser.parse_args()
    torch.set_num_threads(1)
    grid = QUICK if args.quick else GRID
    seeds = min(args.seeds, 3) if args.quick else args.seeds
    started, cpu0 = time.perf_counter(), time.process_time()
    results, seconds = {}, {}
    for task in ("digits", "linear"):
        t0 = time.perf_counter()
        results[task] = side_information_curve(
            task,
            grid[task],
            seeds=seeds,
            epsilons=EPSILONS[task],
            p=P if task == "linear" else None,
            n_boot=args.n_boot,
            seed=0,
        )
        seconds[task] = round(time.perf_counter() - t0, 1)
        print(f"{task}: {seconds[task]} s", flush=True)
    out_dir = (
        HERE.parent / "runs" / "imitation_side_information" / "quick" if args.quick else RESULTS
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    plot(results, out_dir / "imitation_side_information.png")
    command = (
        COMMAND
        + (" --quick" if args.quick else "")
        + (f" --seeds {args.seeds}" if args.seeds != 10 else "")
    )
    meta = {
        "command": command,
        "seeds": seeds,
        "n_boot": args.n_boot,
        "budgets": grid,
        "epsilons": EPSILONS,
        "p": P,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "seconds": round(time.perf_counter() - started, 1),
        "cpu_seconds": round(time.process_time() - cpu0, 1),
        "seconds_by_task": seconds,
    }
    (out_dir / "imitation_side_information.json").write_text(
        json.dumps({"meta": meta, **results}, indent=2)
    )
    md = [
        "# Imitation privacy against budget and side information",
        "",
        f"Made by `{command}` ({meta['seconds']:.0f} s wall, {meta['cpu_seconds']:.0f} CPU-s, "
        f"torch on one thread, {meta['machine']}). Every cell: {seeds} imitations (seeds 0 to "
        f"{seeds - 1}: new query sets and MLP initialisations; the module is fixed). ρ: mean over "
        "the imitations [95% percentile bootstrap over the future rows and the imitations "
        "together]; sd: standard deviation of ρ over the imitations; P(ρ ≤ ε): k of r imitations "
        "[95% Wilson interval].",
        "",
        "![rho against budget](imitation_side_information.png)",
        "",
    ]
    for task in ("digits", "linear"):
        rows = results[task]
        first = {r["level"]: r for r in rows}
        score = "test accuracy" if task == "digits" else "R² on the future rows"
        md += [
            f"## {task}",
            "",
            f"Module score: {rows[0]['module_score']:.4f} ({score}).",
            "",
            "| level | model class known | distribution known | imitator | queries from |",
            "|---|---|---|---|---|",
            *(
                f"| {lv} | {'yes' if r['class_known'] else 'no'} | "
                f"{'yes' if r['distribution_known'] else 'no'} | {r['imitator']} | "
                f"{r['queries_from']} |"
                for lv, r in first.items()
            ),
            "",
            "### ρ (columns: budget b)",
            "",
            pivot(rows, lambda r: f"{fmt(r['rho'])} [{fmt(r['low'])}, {fmt(r['high'])}]"),
            "",
            "### sd of ρ over the imitations",
            "",
            pivot(rows, lambda r: fmt(r["rho_sd"])),
            "",
            "### P(ρ ≤ ε)",
            "",
            privacy_table(rows),
            "",
        ]
    (out_dir / "imitation_side_information.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
