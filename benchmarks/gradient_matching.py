"""Gradient-matching substitutes on MNIST against prediction-only training (Milli et al. 2019).

Writes ``benchmarks/results/gradient_matching.{json,md}``.

Target: the registry ``cnn`` trained on MNIST target_train (``load_splits("mnist", seed=0)``).
Attacker inputs come from attacker_pool. A gradient-matching substitute (``train_gradient_matching``)
is trained on B explained inputs, B in {100, 300, 1000}, each costing 2 rows (prediction +
explanation), for λ in {1, 10, 100}; prediction-only substitutes (soft cross-entropy on the
returned probabilities) are trained on 100 to 10,000 rows. Every substitute is a small cnn;
gradient matching trains for a fixed number of optimiser steps, prediction-only for at least as
many and at least 10 epochs. Fidelity = top-1 agreement with the target on target_test.
The ratio reported for each B is "prediction-only rows needed to reach the gradient-matching
fidelity at B (best λ)" divided by the 2B rows gradient matching spent, interpolated in log-rows
between measured budgets (a lower bound ``>`` when prediction-only never reaches it).

    MODELSTEAL_DATA=/path/to/datasets python benchmarks/gradient_matching.py [--quick]

About 5 to 10 minutes on one CPU core (``--quick``: about 1 minute).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from modelsteal.attacks.exact import train_gradient_matching
from modelsteal.data import load_splits
from modelsteal.models import TrainConfig, build_model, predict_proba, train_model
from modelsteal.targets import TorchTarget, budgeted

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
COMMAND = "python benchmarks/gradient_matching.py"
SUBSTITUTE = {"channels": (16, 32), "hidden": 64, "dropout": 0.0}


def fidelity(model, X: np.ndarray, target_labels: np.ndarray) -> float:
    return float(np.mean(predict_proba(model, X).argmax(axis=1) == target_labels))


def prediction_only(target, x, *, steps: int, seed: int, config: TrainConfig):
    oracle = budgeted(target, len(x))
    probs = oracle.query(x)
    model = build_model("cnn", tuple(target.input_shape), target.n_classes, seed=seed, **SUBSTITUTE)
    # at least the steps gradient matching gets, and at least 10 epochs (never fewer updates)
    epochs = max(10, round(steps * config.batch_size / len(x)))
    cfg = TrainConfig(epochs=epochs, batch_size=config.batch_size, lr=config.lr)
    return train_model(model, x, probs, config=cfg, seed=seed), oracle.spent


def rows_needed(curve: list[tuple[int, float]], level: float) -> tuple[float | None, bool]:
    """Rows prediction-only needs to reach ``level`` (log-linear interpolation), and whether it
    was reached at all within the measured budgets."""
    pts = sorted(curve)
    if pts[0][1] >= level:
        return float(pts[0][0]), True
    for (n0, f0), (n1, f1) in itertools.pairwise(pts):
        if f0 < level <= f1:
            frac = (level - f0) / (f1 - f0)
            return float(np.exp(np.log(n0) + frac * (np.log(n1) - np.log(n0)))), True
    return None, False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("MODELSTEAL_DATA"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=400, help="optimiser steps per substitute")
    parser.add_argument("--target-epochs", type=int, default=3)
    parser.add_argument("--max-train", type=int, default=20_000, help="cap on target_train rows")
    args = parser.parse_args()
    # one thread: on a shared 2-core machine two OpenMP threads can run 10-50x slower
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    started = time.perf_counter()
    seed = args.seed
    explained = (100, 300) if args.quick else (100, 300, 1000)
    lams = (10.0,) if args.quick else (1.0, 10.0, 100.0)
    pred_rows = (
        (100, 200, 600, 2000)
        if args.quick
        else (100, 200, 300, 600, 1000, 2000, 3000, 5000, 10_000)
    )
    steps = 150 if args.quick else args.steps

    splits = load_splits("mnist", data_dir=args.data_dir, seed=seed, ood=None)
    Xtr = splits.target_train.X[: args.max_train]
    ytr = splits.target_train.y[: args.max_train]
    t0 = time.perf_counter()
    net = build_model("cnn", splits.input_shape, splits.n_classes, seed=seed)
    net = train_model(
        net, Xtr, ytr, config=TrainConfig(epochs=args.target_epochs, batch_size=128), seed=seed
    )
    target = TorchTarget(net, input_shape=splits.input_shape, n_classes=splits.n_classes)
    Xte, yte = splits.target_test.X, splits.target_test.y
    target_labels = target.query(Xte).argmax(axis=1)
    target_acc = float(np.mean(target_labels == yte))
    target_seconds = time.perf_counter() - t0
    print(f"target: test accuracy {target_acc:.4f} ({target_seconds:.0f} s)")

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(splits.attacker_pool.X))
    pool = splits.attacker_pool.X[order]
    config = TrainConfig(batch_size=64, lr=1e-3)

    pred_curve, rows = [], []
    for n in pred_rows:
        t0 = time.perf_counter()
        model, spent = prediction_only(target, pool[:n], steps=steps, seed=seed, config=config)
        fid = fidelity(model, Xte, target_labels)
        pred_curve.append((spent, fid))
        rows.append(
            {
                "method": "prediction-only",
                "inputs": n,
                "lam": None,
                "queries": spent,
                "fidelity": fid,
                "seconds": time.perf_counter() - t0,
            }
        )
        print(rows[-1])
    for b in explained:
        for lam in lams:
            t0 = time.perf_counter()
            model, spent = train_gradient_matching(
                target,
                pool[:b],
                arch="cnn",
                arch_params=SUBSTITUTE,
                lam=lam,
                config=config,
                steps=steps,
                seed=seed,
            )
            rows.append(
                {
                    "method": "gradient matching",
                    "inputs": b,
                    "lam": lam,
                    "queries": spent,
                    "fidelity": fidelity(model, Xte, target_labels),
                    "seconds": time.perf_counter() - t0,
                }
            )
            print(rows[-1])

    ratios = []
    for b in explained:
        gm = [r for r in rows if r["method"] == "gradient matching" and r["inputs"] == b]
        best = max(gm, key=lambda r: r["fidelity"])
        same = next((f for n, f in pred_curve if n == 2 * b), None)
        needed, reached = rows_needed(pred_curve, best["fidelity"])
        ratios.append(
            {
                "explained_inputs": b,
                "gm_queries": best["queries"],
                "best_lam": best["lam"],
                "gm_fidelity": best["fidelity"],
                "pred_only_fidelity_same_rows": same,
                "pred_only_rows_needed": needed if reached else f"> {max(pred_rows)}",
                "ratio": (needed / best["queries"]) if reached else None,
                "ratio_lower_bound": None if reached else max(pred_rows) / best["queries"],
            }
        )

    RESULTS.mkdir(parents=True, exist_ok=True)
    command = COMMAND + (" --quick" if args.quick else "")
    meta = {
        "command": command,
        "seed": seed,
        "steps_per_substitute": steps,
        "substitute": {"arch": "cnn", **SUBSTITUTE},
        "target": {
            "arch": "cnn",
            "epochs": args.target_epochs,
            "train_rows": len(Xtr),
            "test_accuracy": target_acc,
        },
        "test_rows": len(Xte),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "seconds": time.perf_counter() - started,
    }
    (RESULTS / "gradient_matching.json").write_text(
        json.dumps({"meta": meta, "runs": rows, "ratios": ratios}, indent=2)
    )

    def lam_text(v):
        return "—" if v is None else f"{v:g}"

    def fmt(v):
        if v is None:
            return "—"
        if isinstance(v, float):
            return f"{v:.4f}" if v < 10 else f"{v:,.0f}"
        return str(v)

    md = [
        "# Gradient-matching substitutes on MNIST",
        "",
        f"Made by `{command}` (seed {seed}, {meta['seconds']:.0f} s on {meta['machine']}, "
        f"torch {torch.__version__}, CPU).",
        "",
        f"Target: registry `cnn`, {args.target_epochs} epochs on {len(Xtr):,} target_train rows, "
        f"test accuracy {target_acc:.4f}. Substitutes: `cnn` with channels (16, 32), hidden 64, "
        f"no dropout, Adam lr 1e-3, batch 64; gradient matching {steps} optimiser steps, "
        f"prediction-only max({steps} steps, 10 epochs). Attacker inputs: "
        "attacker_pool (shuffled, seeded). Fidelity: top-1 agreement with the target on the "
        f"{len(Xte):,} target_test images. Gradient matching costs 2 rows per input (prediction "
        "+ explanation); λ weighs the gradient error normalised by the mean squared norm of the "
        "target's explanations.",
        "",
        "| method | inputs | λ | queries (rows) | fidelity |",
        "|---|---|---|---|---|",
    ]
    md += [
        f"| {r['method']} | {r['inputs']} | {lam_text(r['lam'])} | {r['queries']} | "
        f"{r['fidelity']:.4f} |"
        for r in rows
    ]
    md += [
        "",
        "## Ratio: prediction-only rows needed for the gradient-matching fidelity",
        "",
        "| explained inputs B | GM rows (2B) | best λ | GM fidelity | prediction-only at 2B rows "
        "| prediction-only rows needed | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in ratios:
        needed = r["pred_only_rows_needed"]
        ratio = (
            f"{r['ratio']:.2f}×" if r["ratio"] is not None else f"> {r['ratio_lower_bound']:.1f}×"
        )
        md.append(
            f"| {r['explained_inputs']} | {r['gm_queries']} | {fmt(r['best_lam'])} | "
            f"{r['gm_fidelity']:.4f} | {fmt(r['pred_only_fidelity_same_rows'])} | "
            f"{fmt(needed) if not isinstance(needed, str) else needed} | {ratio} |"
        )
    md.append("")
    (RESULTS / "gradient_matching.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
