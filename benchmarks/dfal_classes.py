"""DFAL: DeepFool with the 3 classes of highest logit against all classes (ActiveThief's default).

A small CNN substitute is trained for 5 epochs on 3,000 rows of MNIST's attacker_pool part
(labels known, seed 0); 6,000 further pool rows, ordered by softmax margin as DFAL visits them,
get their exact DeepFool distance (max 20 steps, overshoot 0.02, clipped to [0, 1]) with every
other class as candidate, with the 3 and with the 2 of highest logit. Reported: the time of each
(one torch thread) and how many of the n nearest rows by all classes each cheaper variant also
puts among its n nearest, for n = 100, 600 and 2,560 (ten calls' worth of candidates).
Writes ``benchmarks/results/dfal_classes.{json,md}``; about 4 minutes.

    MODELSTEAL_DATA=/path/to/datasets python benchmarks/dfal_classes.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

import modelsteal.attacks.activethief as at
from modelsteal.data import load_splits
from modelsteal.models import TrainConfig, build_model, predict_proba, train_model

HERE = Path(__file__).resolve().parent
TOPS = (100, 600, 2560)


def main() -> None:
    torch.set_num_threads(1)
    splits = load_splits("mnist", seed=0, pool_fraction=0.5)
    pool = splits.attacker_pool
    model = build_model("cnn", splits.input_shape, splits.n_classes, seed=0)
    train_model(model, pool.X[:3000], pool.y[:3000], config=TrainConfig(epochs=5), seed=0)
    rows = pool.X[3000:9000]
    x = rows[np.argsort(at.margin(predict_proba(model, rows)), kind="stable")]
    kwargs = {"max_iter": 20, "overshoot": 0.02, "domain": (0.0, 1.0), "batch_size": 128}
    dist, seconds = {}, {}
    for classes in (None, 3, 2):
        start = time.perf_counter()
        dist[classes], _ = at._deepfool(model, x, classes=classes, **kwargs)
        seconds[classes] = time.perf_counter() - start
    exact = dist[None]
    rows_out = []
    for classes in (3, 2):
        d = dist[classes]
        rows_out.append(
            {
                "classes": classes,
                "seconds": seconds[classes],
                "speed_up": seconds[None] / seconds[classes],
                "median_relative_difference": float(np.median(np.abs(d - exact) / exact)),
                "overlap": {
                    str(n): len(set(np.argsort(exact)[:n]) & set(np.argsort(d)[:n])) for n in TOPS
                },
            }
        )
    result = {"rows": len(x), "all_classes_seconds": seconds[None], "variants": rows_out}
    lines = [
        f"DeepFool on {len(x):,} MNIST pool rows (small CNN substitute, one thread); all classes: "
        f"{seconds[None]:.1f} s.",
        "",
        "| classes | seconds | speed-up | "
        + " | ".join(f"shared of {n} nearest" for n in TOPS)
        + " | median relative distance difference |",
        "|---|---|---|" + "---|" * len(TOPS) + "---|",
    ]
    for r in rows_out:
        lines.append(
            f"| {r['classes']} | {r['seconds']:.1f} | {r['speed_up']:.2f}× | "
            + " | ".join(str(r["overlap"][str(n)]) for n in TOPS)
            + f" | {r['median_relative_difference']:.4f} |"
        )
    lines += ["", "Command: `python benchmarks/dfal_classes.py`"]
    text = "\n".join(lines) + "\n"
    print(text)
    out = HERE / "results"
    (out / "dfal_classes.json").write_text(json.dumps(result, indent=2))
    (out / "dfal_classes.md").write_text(text)


if __name__ == "__main__":
    main()
