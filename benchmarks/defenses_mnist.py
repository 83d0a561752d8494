"""Utility of every defense in front of an MNIST small-CNN target, at the papers' settings.

For each defense: max and mean ℓ1 distortion, protected accuracy (the defended answers' accuracy
on the 10,000 MNIST test images), OOD-detection AUROC with the maximum softmax probability
(MNIST test = in-distribution, KMNIST = out-of-distribution) and, for ModelGuard-S, the number of
centroids. Writes ``benchmarks/results/defenses_mnist.{json,md}``.

Adaptive Misinformation needs a target trained with Outlier Exposure and a misinformation model;
KMNIST's 10,000 images are split in two halves: one for that training, the other for every
defense's OOD AUROC, so no OOD image used in training is ever used for evaluation.

    python benchmarks/defenses_mnist.py [--data-dir DIR] [--epochs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from modelsteal.data import load_splits
from modelsteal.defenses import build_defense, evaluate_defense
from modelsteal.defenses.am import train_misinformation_model, train_with_outlier_exposure
from modelsteal.models import TrainConfig, build_model, predict_proba, train_model
from modelsteal.targets import TorchTarget

HERE = Path(__file__).resolve().parent


def settings(misinformation_model) -> list[tuple[str, str, dict]]:
    """(label, defense, params): the ModelGuard comparison's settings (ℓ1 budget 1.0)."""
    rows = [
        ("None", "none", {}),
        ("Top-1", "top1", {}),
        ("Top-2", "topk", {"k": 2}),
        ("Rounding (1 decimal)", "rounding", {"decimals": 1}),
        ("Rounding (2 decimals)", "rounding", {"decimals": 2}),
        ("Reverse Sigmoid (β=0.2, γ=0.2)", "reverse_sigmoid", {"beta": 0.2, "gamma": 0.2}),
        ("Random noise (logit ℓ1 ε=1)", "random_noise", {"epsilon": 1.0}),
        ("High confidence (cutoff 0.25)", "high_confidence", {"cutoff": 0.25}),
        ("Gaussian noise (σ=0.2)", "gaussian_noise", {"scale": 0.2}),
        ("MAD (ε=1, extreme)", "mad", {"epsilon": 1.0, "oracle": "extreme"}),
        ("MAD (ε=1, argmax)", "mad", {"epsilon": 1.0, "oracle": "argmax"}),
        ("ModelGuard-W (ε=1)", "modelguard_w", {"epsilon": 1.0}),
        ("ModelGuard-S (ε=1)", "modelguard_s", {"epsilon": 1.0}),
        ("ModelGuard-S non-ordered (ε=1)", "modelguard_s", {"epsilon": 1.0, "ordered": False}),
    ]
    for tau in (0.5, 0.9, 0.99):
        rows.append(
            (
                f"AM (τ={tau}, OE target)",
                "am",
                {"tau": tau, "misinformation_model": misinformation_model},
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("MODELSTEAL_DATA"))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not args.data_dir:
        sys.exit("Set MODELSTEAL_DATA or pass --data-dir: MNIST and KMNIST files are needed.")
    splits = load_splits("mnist", data_dir=args.data_dir, seed=args.seed, ood="kmnist")
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(splits.ood))
    oe_x, ood_x = splits.ood.X[order[:5000]], splits.ood.X[order[5000:]]
    train_x, train_y = splits.target_train.X, splits.target_train.y
    config = TrainConfig(epochs=args.epochs, batch_size=64)
    shape, c = splits.input_shape, splits.n_classes

    started = time.perf_counter()
    plain = train_model(
        build_model("cnn", shape, c, seed=args.seed),
        train_x,
        train_y,
        config=config,
        seed=args.seed,
    )
    oe = train_with_outlier_exposure(
        build_model("cnn", shape, c, seed=args.seed),
        train_x,
        train_y,
        oe_x,
        config=config,
        seed=args.seed,
    )
    oe_labels = predict_proba(oe, oe_x).argmax(axis=1)
    mis = train_misinformation_model(
        build_model("cnn", shape, c, seed=args.seed + 1),
        train_x,
        train_y,
        oe_x,
        oe_labels,
        config=config,
        seed=args.seed,
    )
    training_seconds = time.perf_counter() - started

    targets = {
        "plain": TorchTarget(plain, input_shape=shape),
        "oe": TorchTarget(oe, input_shape=shape),
    }
    rows = []
    for label, name, params in settings(mis):
        which = "oe" if name == "am" else "plain"
        t0 = time.perf_counter()
        result = evaluate_defense(
            targets[which],
            build_defense(name, **params),
            test_x=splits.target_test.X,
            test_y=splits.target_test.y,
            ood_x=ood_x,
        )
        result.update(label=label, target=which, seconds=time.perf_counter() - t0)
        rows.append(result)
        print(
            f"{label:34s} max ℓ1 {result['max_l1']:.3f}  mean ℓ1 {result['mean_l1']:.3f}  "
            f"protected acc {result['protected_accuracy']:.4f}  "
            f"OOD AUROC {result['ood_auroc']:.3f}  "
            f"{'centroids ' + str(result['centroids']) if 'centroids' in result else ''}",
            flush=True,
        )
    # The OE target undefended, for reference against the AM rows.
    reference = evaluate_defense(
        targets["oe"],
        build_defense("none"),
        test_x=splits.target_test.X,
        test_y=splits.target_test.y,
        ood_x=ood_x,
    )
    reference.update(label="None (OE target)", target="oe", seconds=0.0)
    rows.insert(1, reference)

    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "defenses_mnist.json").write_text(
        json.dumps(
            {
                "command": "python benchmarks/defenses_mnist.py",
                "epochs": args.epochs,
                "seed": args.seed,
                "training_seconds": training_seconds,
                "test_rows": len(splits.target_test),
                "ood_rows": len(ood_x),
                "rows": rows,
            },
            indent=2,
            default=str,
        )
    )
    lines = [
        "| defense | target | max ℓ1 | mean ℓ1 | protected acc | OOD AUROC | centroids |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['target']} | {r['max_l1']:.3f} | {r['mean_l1']:.3f} | "
            f"{r['protected_accuracy']:.4f} | {r['ood_auroc']:.3f} | {r.get('centroids', '')} |"
        )
    (out / "defenses_mnist.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
