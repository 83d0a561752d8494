"""ρ of KnockoffNets and ActiveThief imitations of an MNIST CNN, with and without ModelGuard-S.

Issue 10, item 1. The *module* is a small CNN trained for 3 epochs on
``load_splits("mnist", seed=0)``'s target_train part (30,000 images; cached under
``runs/imitation_mnist/``, which git ignores). The imitations query it from a fixed sample of
10,000 images of the attacker_pool part:

- **KnockoffNets** (``knockoff_orekondy_2019``): random pool rows, trained on the soft answers;
- **ActiveThief** (``activethief_pal_2020``) with ``selection="entropy+kcenter"``: a random seed of
  10% of the largest budget (200 queries), then a batch chosen with the current substitute after
  200, 500 and 1,000 queries (up to the next budget): the 10·n most uncertain unused rows (entropy
  of its softmax) are kept and k-center picks the n most diverse among them (among all unused rows
  when there are fewer than 10·n). The batches are large (300 to 1,000 rows), so entropy alone
  would fill them with near-duplicates; k-center spreads them.

One attack per (method, defense) spends the largest budget; the substitute trained from scratch
after the first ``b`` queries is the imitation at budget ``b`` (``extract``'s schedule; for
ActiveThief, ``iterations=1``, these retrainings are its selection rounds). Each attack faces
either the plain target or a fresh ModelGuard-S (ε = 1.0, ℓ1, ordered; empty centroid store).
Substitutes: the project's small CNN, 10 epochs and at least 250 optimiser steps (the recipes'
defaults, 20 and 500, halved to fit the run time).

ρ is the 0-1 imitation loss, 1 − fidelity against the *clean* target's labels, on the 10,000
MNIST test images (future data: the target never trained on them, the attacker never saw them),
with a 95% percentile-bootstrap interval (``modelsteal.privacy.imitation_privacy``, 1,000
resamples). The (ε, δ) estimate repeats one setting (KnockoffNets, no defense, 1,000
queries) for seeds 0..S−1 (a new query set and substitute initialisation each) and reports
P(ρ ≤ ε) with a 95% Wilson interval for a grid of ε (``modelsteal.privacy.privacy_probability``).

Writes ``benchmarks/results/imitation_mnist.{json,md,png}``. Needs the MNIST files in
``$MODELSTEAL_DATA`` (or ``--data-dir``). Torch runs on one thread: about 5 CPU-minutes; on a
2-core machine shared with higher-priority jobs it took 32 minutes of wall time. Training the
target the first time adds about 1.5 minutes. ``--quick`` is a smoke run (budgets 200 and 400, a
2,000-image pool, 2,000 test images, 3 seeds) that writes under ``runs/imitation_mnist/quick``
instead.

    python benchmarks/imitation_mnist.py [--data-dir DIR] [--seeds 5] [--epsilons ...] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modelsteal.attacks import build_recipe, extract
from modelsteal.data import load_splits
from modelsteal.defenses import build_defense, defended
from modelsteal.metrics import accuracy
from modelsteal.models import (
    ModelInfo,
    TrainConfig,
    build_model,
    load_model,
    predict_proba,
    save_model,
    train_model,
)
from modelsteal.privacy import imitation_privacy, privacy_probability
from modelsteal.targets import Target, TorchTarget

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
COMMAND = "python benchmarks/imitation_mnist.py"

SPLIT_SEED = 0
TARGET_EPOCHS = 3
POOL_ROWS = 10_000
BUDGETS = (500, 1000, 2000)
ED_BUDGET = 1000  # the (ε, δ) setting's budget (the smallest with --quick)
EPSILONS = (0.03, 0.035, 0.04, 0.045, 0.05, 0.06)  # default of --epsilons
SUBSTITUTE: dict[str, Any] = {"epochs": 10, "min_steps": 250}
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "KnockoffNets": ("knockoff_orekondy_2019", {}),
    "ActiveThief": ("activethief_pal_2020", {"selection": "entropy+kcenter", "iterations": 1}),
}
DEFENSES: dict[str, tuple[str, dict[str, Any]] | None] = {
    "none": None,
    "ModelGuard-S": ("modelguard_s", {"epsilon": 1.0}),
}
QUICK = {"budgets": (200, 400), "seeds": 3, "pool_rows": 2_000, "test_rows": 2_000}


def load_target(splits: Any, path: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The cached target at ``path`` if it was trained with these settings, else train it."""
    wanted = {"data": "mnist", "split_seed": SPLIT_SEED, "epochs": TARGET_EPOCHS, "seed": 0}
    if path.is_file():
        model, info = load_model(path)
        if all(info.metadata.get(k) == v for k, v in wanted.items()):
            print(f"target loaded from {path}", flush=True)
            return model, {**info.metadata, "cached": True}
    started = time.perf_counter()
    print(f"training the target ({TARGET_EPOCHS} epochs) ...", flush=True)
    model = build_model("cnn", splits.input_shape, splits.n_classes, seed=0)
    model = train_model(
        model,
        splits.target_train.X,
        splits.target_train.y,
        config=TrainConfig(epochs=TARGET_EPOCHS),
        seed=0,
    )
    test_acc = accuracy(splits.target_test.y, predict_proba(model, splits.target_test.X))
    metadata = {
        **wanted,
        "test_accuracy": test_acc,
        "train_seconds": time.perf_counter() - started,
    }
    info = ModelInfo("cnn", tuple(splits.input_shape), splits.n_classes, metadata=metadata)
    save_model(path, model, info)
    return model.eval(), {**metadata, "cached": False}


class Recorder:
    """A substitute trainer that delegates to ``trainer`` and keeps every model it fits.

    :func:`~modelsteal.attacks.extract` retrains the substitute from scratch at each point of its
    schedule; keyed by the number of rows trained on, these are the imitations at each budget.
    """

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer
        self.fitted: dict[int, torch.nn.Module] = {}

    def fit(self, X: np.ndarray, Y: np.ndarray, **kwargs: Any) -> torch.nn.Module:
        model = self.trainer.fit(X, Y, **kwargs)
        self.fitted[len(X)] = model
        return model


def imitate(
    target: Target,
    *,
    method: str,
    defense: str,
    budgets: list[int],
    seed: int,
    pool: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    module_out: np.ndarray,
    domain: tuple[float, float] | None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One attack on ``target`` (behind a fresh ``defense``) up to the largest budget.

    The substitute trained after the first ``b`` queries is the imitation at budget ``b``; ρ is
    measured for each ``b`` in ``budgets``. Returns one row per budget and a summary of the run.
    """
    recipe_name, params = METHODS[method]
    recipe = build_recipe(recipe_name, **params, **SUBSTITUTE)
    recorder = Recorder(recipe.trainer)
    recipe = replace(recipe, trainer=recorder)
    spec = DEFENSES[defense]
    guard = None if spec is None else build_defense(spec[0], **spec[1])
    oracle = target if guard is None else defended(target, guard)
    started = time.perf_counter()
    result = extract(
        oracle,
        recipe,
        pool=pool,
        budget=max(budgets),
        seed=seed,
        schedule=budgets,
        domain=domain,
    )
    summary: dict[str, Any] = {
        "method": method,
        "defense": defense,
        "seed": seed,
        "queries": int(result.queries),
        "trainings": sorted(recorder.fitted),
        "seconds": time.perf_counter() - started,
    }
    clean = None
    if guard is not None:
        clean = target.query(result.queried_x)
        summary["centroids"] = int(guard.n_centroids())
        guard.close()
    rows = []
    for budget in budgets:
        imitation_out = predict_proba(recorder.fitted[budget], test_x)
        rho = imitation_privacy(imitation_out, module_out, n_boot=1000, seed=0)
        row: dict[str, Any] = {
            "method": method,
            "defense": defense,
            "budget": budget,
            "seed": seed,
            **rho,
            "accuracy": accuracy(test_y, imitation_out),
        }
        if clean is not None:
            diff = result.responses[:budget] - clean[:budget]
            row["mean_l1"] = float(np.abs(diff).sum(axis=1).mean())
        rows.append(row)
        print(
            f"{method:12s} {defense:12s} budget {budget:5d} seed {seed}: ρ = {rho['rho']:.4f} "
            f"[{rho['low']:.4f}, {rho['high']:.4f}]  accuracy {row['accuracy']:.4f}",
            flush=True,
        )
    print(f"  ({summary['seconds']:.0f} s, trained at {summary['trainings']})", flush=True)
    return rows, summary


def fmt_rho(row: dict[str, Any]) -> str:
    return f"{row['rho']:.4f} [{row['low']:.4f}, {row['high']:.4f}]"


def write_markdown(result: dict[str, Any], path: Path) -> None:
    rows, budgets = result["rows"], result["settings"]["budgets"]
    t = result["target"]
    lines = [
        "# Imitation privacy of an MNIST CNN: KnockoffNets and ActiveThief, with and without "
        "ModelGuard-S",
        "",
        f"`{result['command']}`. Target: small CNN, {t['epochs']} epochs on "
        f"{result['sizes']['target_train']:,} MNIST training images, test accuracy "
        f"{t['test_accuracy']:.4f}. Attacker pool: {result['sizes']['pool']:,} images of the "
        f"attacker_pool split. ρ = 1 − fidelity against the clean target on "
        f"{result['sizes']['test']:,} MNIST test images, with a 95% bootstrap interval; "
        "ModelGuard-S at ε = 1.0 (ℓ1), a fresh one for every attack. One attack (seed 0) per "
        "method and defense, its substitute measured after each budget.",
        "",
        "ρ [95% CI] against the budget (queries):",
        "",
        "| method | defense | " + " | ".join(f"{b:,}" for b in budgets) + " |",
        "|---|---|" + "---|" * len(budgets),
    ]
    main_rows = [r for r in rows if r["seed"] == 0]
    for method in METHODS:
        for defense in DEFENSES:
            cells = {
                r["budget"]: r
                for r in main_rows
                if (r["method"], r["defense"]) == (method, defense)
            }
            lines.append(
                f"| {method} | {defense} | " + " | ".join(fmt_rho(cells[b]) for b in budgets) + " |"
            )
    lines += [
        "",
        "Every imitation (accuracy: against the true test labels; mean ℓ1: between the "
        "defended answers the imitation was trained on and the clean ones):",
        "",
        "| method | defense | budget | seed | ρ [95% CI] | accuracy | mean ℓ1 |",
        "|---|---|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        l1 = f"{r['mean_l1']:.3f}" if "mean_l1" in r else "–"
        lines.append(
            f"| {r['method']} | {r['defense']} | {r['budget']:,} | {r['seed']} | {fmt_rho(r)} | "
            f"{r['accuracy']:.4f} | {l1} |"
        )
    lines += [
        "",
        "Every attack (substitute trained after these numbers of queries; ModelGuard-S's "
        "centroids at the end):",
        "",
        "| method | defense | seed | trained at | centroids | seconds |",
        "|---|---|---:|---|---:|---:|",
    ]
    for r in result["runs"]:
        cent = str(r["centroids"]) if "centroids" in r else "–"
        at = ", ".join(f"{q:,}" for q in r["trainings"])
        lines.append(
            f"| {r['method']} | {r['defense']} | {r['seed']} | {at} | {cent} | {r['seconds']:.0f} |"
        )
    ed = result["eps_delta"]
    rhos = ", ".join(f"{x:.4f}" for x in ed["rhos"])
    lines += [
        "",
        f"(ε, δ): {ed['method']}, defense {ed['defense']}, budget {ed['budget']:,}, seeds "
        f"0..{len(ed['rhos']) - 1}: ρ = {rhos} (mean {np.mean(ed['rhos']):.4f}). The target is "
        "(ε, δ)-private against this imitation for δ ≥ P(ρ ≤ ε):",
        "",
        "| ε | ρ ≤ ε (of r) | P(ρ ≤ ε) | 95% Wilson CI |",
        "|---:|---:|---:|---|",
    ]
    for e in ed["table"]:
        lines.append(
            f"| {e['epsilon']:g} | {int(e['k'])} / {int(e['r'])} | {e['p']:.2f} | "
            f"[{e['low']:.2f}, {e['high']:.2f}] |"
        )
    lines += [
        "",
        f"Run time {result['seconds']:.0f} s (target {'cached' if t['cached'] else 'trained'}), "
        f"torch {result['machine']['torch']} on {result['machine']['threads']} thread, "
        f"{result['machine']['cpus']} CPUs shared with other work (load average before "
        f"{result['machine']['load_before'][0]:.1f}, "
        f"after {result['machine']['load_after'][0]:.1f}).",
    ]
    path.write_text("\n".join(lines) + "\n")


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    rows = [r for r in result["rows"] if r["seed"] == 0]
    styles = {"none": "-", "ModelGuard-S": "--"}
    colours = {"KnockoffNets": "tab:blue", "ActiveThief": "tab:orange"}
    for i, method in enumerate(METHODS):
        for j, defense in enumerate(DEFENSES):
            sel = sorted(
                (r for r in rows if (r["method"], r["defense"]) == (method, defense)),
                key=lambda r: r["budget"],
            )
            b = np.array([r["budget"] for r in sel], dtype=float) * (1 + 0.02 * (2 * i + j - 1.5))
            y = np.array([r["rho"] for r in sel])
            err = np.array(
                [[r["rho"] - r["low"] for r in sel], [r["high"] - r["rho"] for r in sel]]
            )
            ax.errorbar(
                b,
                y,
                yerr=err,
                fmt="o" + styles[defense],
                color=colours[method],
                capsize=3,
                label=f"{method}, {'no defense' if defense == 'none' else defense}",
            )
    ax.set_xscale("log")
    ax.set_xticks(result["settings"]["budgets"])
    ax.set_xticklabels([f"{b:,}" for b in result["settings"]["budgets"]])
    ax.minorticks_off()
    ax.set_xlabel("budget (queries)")
    ax.set_ylabel("ρ = 1 − fidelity on MNIST test (95% CI)")
    ax.set_title("Imitation privacy ρ against the budget")
    ax.legend(fontsize=8)
    ed = result["eps_delta"]
    eps = np.array([e["epsilon"] for e in ed["table"]])
    p = np.array([e["p"] for e in ed["table"]])
    err = np.array([p - [e["low"] for e in ed["table"]], [e["high"] for e in ed["table"]] - p])
    bx.errorbar(eps, p, yerr=err, fmt="o-", color="tab:blue", capsize=3, label="P(ρ ≤ ε)")
    xs = np.sort(ed["rhos"])
    cdf = np.arange(1, len(xs) + 1) / len(xs)
    bx.step(
        np.r_[min(eps[0], xs[0]), xs, max(eps[-1], xs[-1])],
        np.r_[0.0, cdf, 1.0],
        where="post",
        color="0.5",
        lw=1,
        label="empirical CDF of ρ",
    )
    bx.plot(xs, np.zeros(len(xs)), "k|", markersize=14, label="ρ of each seed")
    bx.set_xlabel("ε")
    bx.set_ylabel("P(ρ ≤ ε), 95% Wilson CI")
    bx.set_ylim(-0.05, 1.05)
    bx.set_title(
        f"{ed['method']}, no defense, budget {ed['budget']:,}: {len(ed['rhos'])} seeds",
    )
    bx.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("MODELSTEAL_DATA"))
    parser.add_argument(
        "--seeds", type=int, default=None, help="imitations for the (ε, δ) estimate (default 5)"
    )
    parser.add_argument(
        "--epsilons",
        type=float,
        nargs="+",
        default=list(EPSILONS),
        help="ε values of the (ε, δ) table",
    )
    parser.add_argument("--work", type=Path, default=HERE.parent / "runs" / "imitation_mnist")
    parser.add_argument("--quick", action="store_true", help="smoke run, written under --work")
    args = parser.parse_args()
    if not args.data_dir:
        sys.exit("Set MODELSTEAL_DATA or pass --data-dir: the MNIST files are needed.")
    n_seeds = args.seeds or (QUICK["seeds"] if args.quick else 5)
    if n_seeds < 1:
        sys.exit("--seeds must be at least 1.")
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    started = time.perf_counter()

    splits = load_splits("mnist", data_dir=args.data_dir, seed=SPLIT_SEED, ood=None)
    model, target_meta = load_target(splits, args.work / "target.pt")
    target = TorchTarget(model, input_shape=splits.input_shape)
    budgets = QUICK["budgets"] if args.quick else BUDGETS
    pool_rows = QUICK["pool_rows"] if args.quick else POOL_ROWS
    rng = np.random.default_rng(SPLIT_SEED)
    pool = splits.attacker_pool.X[rng.choice(len(splits.attacker_pool), pool_rows, replace=False)]
    test_x, test_y = splits.target_test.X, splits.target_test.y
    if args.quick:
        test_x, test_y = test_x[: QUICK["test_rows"]], test_y[: QUICK["test_rows"]]
    module_out = target.query(test_x)  # the module's predictions on future data
    print(
        f"target test accuracy {accuracy(test_y, module_out):.4f}; pool {len(pool):,}, "
        f"test {len(test_x):,}",
        flush=True,
    )

    rows: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []

    def run(method: str, defense: str, run_budgets: list[int], seed: int) -> None:
        new_rows, summary = imitate(
            target,
            method=method,
            defense=defense,
            budgets=run_budgets,
            seed=seed,
            pool=pool,
            test_x=test_x,
            test_y=test_y,
            module_out=module_out,
            domain=splits.domain,
        )
        rows.extend(new_rows)
        runs.append(summary)

    for method in METHODS:
        for defense in DEFENSES:
            run(method, defense, list(budgets), 0)
    ed_method, ed_defense = "KnockoffNets", "none"
    ed_budget = budgets[0] if args.quick else ED_BUDGET
    for seed in range(1, n_seeds):
        run(ed_method, ed_defense, [ed_budget], seed)
    rhos = np.array(
        [
            r["rho"]
            for r in rows
            if (r["method"], r["defense"], r["budget"]) == (ed_method, ed_defense, ed_budget)
        ]
    )
    table = [{"epsilon": e, **privacy_probability(rhos, e)} for e in sorted(args.epsilons)]

    command = COMMAND + (" --quick" if args.quick else "")
    if args.seeds:
        command += f" --seeds {args.seeds}"
    if sorted(args.epsilons) != sorted(EPSILONS):
        command += " --epsilons " + " ".join(f"{e:g}" for e in sorted(args.epsilons))
    result = {
        "command": command,
        "target": {**target_meta, "test_accuracy": accuracy(test_y, module_out)},
        "sizes": {
            "target_train": len(splits.target_train),
            "pool": len(pool),
            "test": len(test_x),
        },
        "settings": {
            "budgets": list(budgets),
            "split_seed": SPLIT_SEED,
            "substitute": SUBSTITUTE,
            "methods": {k: {"recipe": v[0], **v[1]} for k, v in METHODS.items()},
            "defenses": {
                k: None if v is None else {"name": v[0], **v[1]} for k, v in DEFENSES.items()
            },
            "n_boot": 1000,
            "confidence": 0.95,
        },
        "rows": rows,
        "runs": runs,
        "eps_delta": {
            "method": ed_method,
            "defense": ed_defense,
            "budget": ed_budget,
            "rhos": rhos.tolist(),
            "table": table,
        },
        "seconds": time.perf_counter() - started,
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
            "load_before": list(load_before),
            "load_after": list(os.getloadavg()),
        },
    }
    out = args.work / "quick" if args.quick else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    (out / "imitation_mnist.json").write_text(json.dumps(result, indent=2))
    write_markdown(result, out / "imitation_mnist.md")
    plot(result, out / "imitation_mnist.png")
    print((out / "imitation_mnist.md").read_text())


if __name__ == "__main__":
    main()
