"""KnockoffNets (random) against a small MNIST CNN at 1k/5k/10k queries, from the CLI.

Runs exactly the commands shown in docs/benchmarks.md and writes
``benchmarks/results/mnist_knockoff.{json,md}``. Needs the MNIST files in ``$MODELSTEAL_DATA``
(or ``--data-dir``). About 5 minutes on 2 cores.

    python benchmarks/mnist_knockoff.py [--data-dir DIR] [--work runs/bench_mnist]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
CLI = [sys.executable, "-m", "modelsteal.cli"]


def run(args: list[str], env: dict[str, str]) -> float:
    print("$ modelsteal " + shlex.join(args), flush=True)
    started = time.perf_counter()
    subprocess.run([*CLI, *args], check=True, env=env)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("MODELSTEAL_DATA"))
    parser.add_argument("--work", type=Path, default=Path("runs/bench_mnist"))
    args = parser.parse_args()
    if not args.data_dir:
        sys.exit("Set MODELSTEAL_DATA or pass --data-dir: the MNIST files are needed.")
    env = {**os.environ, "MODELSTEAL_DATA": str(args.data_dir)}
    work: Path = args.work
    target = work / "mnist_cnn.pt"
    commands = {
        "train": [
            "train",
            "--data",
            "mnist",
            "--model",
            "cnn",
            "--epochs",
            "5",
            "--seed",
            "0",
            "--out",
            str(target),
        ],
        "steal": [
            "steal",
            "--target",
            str(target),
            "--budgets",
            "1k,5k,10k",
            "--seed",
            "0",
            "--out",
            str(work / "steal"),
        ],
        "steal_labels": [
            "steal",
            "--target",
            str(target),
            "--budgets",
            "1k,5k,10k",
            "--seed",
            "0",
            "--labels-only",
            "--out",
            str(work / "steal_labels"),
        ],
    }
    seconds = {name: run(cmd, env) for name, cmd in commands.items()}

    from modelsteal.models import load_model

    _, info = load_model(target)
    rows = []
    for name in ("steal", "steal_labels"):
        for row in csv.DictReader((work / name / "history.csv").open()):
            rows.append({k: row[k] for k in ("attack", "queries", "accuracy", "fidelity")})
    result = {
        "target_test_accuracy": info.metadata["test_accuracy"],
        "split": {k: info.metadata[k] for k in ("data", "split_seed", "pool_fraction")},
        "rows": rows,
        "seconds": seconds,
        "commands": {k: "modelsteal " + shlex.join(v) for k, v in commands.items()},
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu": platform.processor(),
        },
    }
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "mnist_knockoff.json").write_text(json.dumps(result, indent=2))
    lines = [
        f"target test accuracy: {result['target_test_accuracy']:.4f}",
        "",
        "| attack | queries | accuracy | fidelity |",
        "|---|---|---|---|",
        *(
            f"| {r['attack']} | {r['queries']} | {float(r['accuracy']):.4f} | "
            f"{float(r['fidelity']):.4f} |"
            for r in rows
        ),
    ]
    (out / "mnist_knockoff.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
