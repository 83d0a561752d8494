"""ModelGuard-S lookup cost with 10,000 centroids in one class, next to a small CNN's forward pass.

Builds 10,000 centroids of class 0 (10 classes, ℓ1, ε = 0.05) by running the defense itself on a
stream of synthetic softmax rows, in a memory store and in two SQLite stores (``sqlite``: the
default ``synchronous="FULL"``; ``sqlite-normal``: ``synchronous="NORMAL"``). Then times, in one
run, interleaved call by call (so machine load hits both sides alike), at batch 1 and 256:

- ``cnn``: ``build_model("cnn", (1, 28, 28), 10, seed=0)`` forward, eval mode, no_grad;
- ``seen``: ``defense.perturb`` on predictions drawn from the stream that built the centroids.
  They are answered from existing centroids without any write (SQLite: warm cache, no disk),
  in fact from the defense's memo of answers, since they were sent before byte for byte
  (``benchmarks/defenses.py`` also times rows moved by float noise, which are looked up).
  With ε this small nearly every stream row made its own centroid, so the first match lies
  anywhere in the list, uniformly: the ordered scan reads half the list on average;
- ``latest``: the last rows of the stream, whose first match is at the end of the list: the
  scan reads all 10,000 centroids (the worst case for a lookup);
- ``new``: predictions never seen; nearly all append a centroid (the write lock, and for SQLite
  a commit before the answer: flushed to the disk with FULL, not with NORMAL).

Ratio = median defense time / median CNN time on the same batch. Writes
``benchmarks/results/modelguard_s.{json,md}`` (``--quick``: ``modelguard_s_quick.*``, 1,000
centroids, few repetitions) and prints the table.

    python benchmarks/modelguard_s.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy
import torch

from modelsteal.defenses.modelguard_s import ModelGuardS
from modelsteal.defenses.stores import SQLiteCentroidStore
from modelsteal.models import build_model

HERE = Path(__file__).resolve().parent
N_CLASSES = 10
EPSILON = 0.05
STORES = ("memory", "sqlite", "sqlite-normal")


def class0_rows(n: int, rng: np.random.Generator) -> np.ndarray:
    """Softmax-like rows whose top class is 0: Dirichlet(0.3) with the largest entry moved to 0."""
    y = rng.dirichlet(np.full(N_CLASSES, 0.3), size=n)
    top = y.argmax(axis=1)
    rows = np.arange(n)
    y[rows, 0], y[rows, top] = y[rows, top], y[rows, 0]
    return y


def fill(defense: ModelGuardS, target: int, rng: np.random.Generator) -> np.ndarray:
    """Query fresh rows in batches of up to 256 until class 0 holds ``target`` centroids."""
    seen = []
    while (have := defense.centroid_counts().get(0, 0)) < target:
        y = class0_rows(min(256, target - have), rng)
        defense.perturb(y)
        seen.append(y)
    return np.concatenate(seen)


def interleaved_ms(
    fns: dict[str, Callable[[], object]], reps: int, *, threads: int, warmup: int = 3
) -> dict[str, float]:
    """Median (and minimum) milliseconds of each function, all timed in every repetition.

    The order is shuffled (seeded) in each repetition, so that machine load and whatever a
    previous call leaves behind (torch's worker threads spin for a while after a forward pass)
    fall on every function alike. Torch runs with ``threads`` threads throughout.
    """
    default_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for fn in fns.values():
            for _ in range(warmup):
                fn()
        times: dict[str, list[float]] = {name: [] for name in fns}
        order = np.random.default_rng(0)
        names = list(fns)
        for _ in range(reps):
            for i in order.permutation(len(names)):
                start = time.perf_counter()
                fns[names[i]]()
                times[names[i]].append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(default_threads)
    out = {name: 1e3 * statistics.median(t) for name, t in times.items()}
    out |= {f"{name}_min": 1e3 * min(t) for name, t in times.items()}
    return out


def mean_rank(defense: ModelGuardS, rows: np.ndarray) -> float:
    """Mean position in class 0's list of the centroids answering ``rows``."""
    cents = defense.centroids(0)
    answers = defense.perturb(rows)
    match = np.all(np.isclose(cents[None, :, :], answers[:, None, :], rtol=0, atol=1e-15), axis=2)
    return float(match.argmax(axis=1).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 centroids, few repetitions")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    n_centroids = 1_000 if args.quick else 10_000
    reps = {1: 20, 256: 5} if args.quick else {1: 500, 256: 60}
    new_reps = {1: 10, 256: 3} if args.quick else {1: 100, 256: 8}  # each appends ~batch rows

    torch_threads = torch.get_num_threads()
    model = build_model("cnn", (1, 28, 28), N_CLASSES, seed=0).eval()
    gen = torch.Generator().manual_seed(0)
    results: dict[str, dict[str, float]] = {}
    setup: dict[str, float] = {}

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        normal = SQLiteCentroidStore(os.path.join(tmp, "normal.sqlite"), synchronous="NORMAL")
        defenses = {
            "memory": ModelGuardS(epsilon=EPSILON),
            "sqlite": ModelGuardS(epsilon=EPSILON, store=os.path.join(tmp, "centroids.sqlite")),
            "sqlite-normal": ModelGuardS(epsilon=EPSILON, store=normal),
        }
        streams = {}
        for name, defense in defenses.items():
            start = time.perf_counter()
            streams[name] = fill(defense, n_centroids, np.random.default_rng(0))
            setup[f"fill_{name}_s"] = round(time.perf_counter() - start, 3)
        stream = streams["memory"]
        np.testing.assert_array_equal(stream, streams["sqlite"])
        np.testing.assert_array_equal(stream, streams["sqlite-normal"])
        setup["stream_rows"] = len(stream)
        setup["centroids_class0"] = defenses["memory"].centroid_counts()[0]
        setup["pins"] = defenses["memory"].n_pins()

        pick = np.random.default_rng(1)
        for batch in (1, 256):
            x = torch.rand((batch, 1, 28, 28), generator=gen)

            def cnn(x: torch.Tensor = x) -> None:
                with torch.no_grad():
                    model(x)

            lookups = {
                "seen": stream[pick.choice(len(stream), size=batch, replace=False)],
                "latest": stream[-batch:],
            }
            before = {name: d.n_centroids() for name, d in defenses.items()}
            fns: dict[str, Callable[[], object]] = {"cnn": cnn}
            for name, defense in defenses.items():
                for kind, rows in lookups.items():
                    fns[f"{name}_{kind}"] = lambda d=defense, y=rows: d.perturb(y)
            row = interleaved_ms(fns, reps[batch], threads=1)
            multi = interleaved_ms(fns, reps[batch] // 2, threads=torch_threads)
            row |= {f"{key}_mt": value for key, value in multi.items()}
            assert {n: d.n_centroids() for n, d in defenses.items()} == before, "lookup appended"
            for kind, rows in lookups.items():
                row[f"{kind}_mean_rank"] = mean_rank(defenses["memory"], rows)

            fresh = [class0_rows(batch, pick) for _ in range(new_reps[batch] + 3)]
            fns = {"cnn": cnn}
            for name, defense in defenses.items():
                fns[f"{name}_new"] = lambda d=defense, f=iter(fresh): d.perturb(next(f))
            new = interleaved_ms(fns, new_reps[batch], threads=1)
            row["cnn_new_phase"] = new.pop("cnn")
            row["cnn_new_phase_min"] = new.pop("cnn_min")
            row |= new
            for name in STORES:
                for kind in ("seen", "latest"):
                    row[f"{name}_{kind}_ratio"] = row[f"{name}_{kind}"] / row["cnn"]
                    row[f"{name}_{kind}_ratio_mt"] = row[f"{name}_{kind}_mt"] / row["cnn_mt"]
                row[f"{name}_new_ratio"] = row[f"{name}_new"] / row["cnn_new_phase"]
            results[str(batch)] = row
        setup["centroids_class0_at_end"] = defenses["memory"].centroid_counts()[0]
        for defense in defenses.values():
            defense.close()
        normal.close()

    report = {
        "benchmark": "modelguard_s",
        "command": "python benchmarks/modelguard_s.py" + (" --quick" if args.quick else ""),
        "config": {
            "n_classes": N_CLASSES,
            "epsilon": EPSILON,
            "norm": "l1",
            "ordered": True,
            "centroids_in_class": n_centroids,
            "repetitions": {"lookups": reps, "new_rows": new_reps},
            "statistic": "median wall time per call (ms), interleaved with the CNN",
            "torch_threads": {"primary": 1, "_mt keys": "default"},
        },
        "setup": setup,
        "results": results,
        "environment": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "platform": platform.platform(),
            "loadavg_before": [round(v, 2) for v in load_before],
            "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        },
    }
    md = render(report)
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    (args.out / f"modelguard_s{suffix}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"modelguard_s{suffix}.md").write_text(md)
    print(md)


def render(report: dict) -> str:
    cfg, setup = report["config"], report["setup"]
    env = report["environment"]
    lines = [
        "# ModelGuard-S lookup cost",
        "",
        f"`{report['command']}`: {cfg['centroids_in_class']:,} centroids in class 0 "
        f"({cfg['n_classes']} classes, ℓ1, ε = {cfg['epsilon']}), built by the defense from "
        f"{setup['stream_rows']:,} synthetic softmax rows ({setup['pins']} pins). Median wall "
        "time per call in ms, timed interleaved (shuffled order) with the CNN forward pass on "
        "the same batch; the percentage is defense / CNN. Torch runs on one thread here, as the "
        "defense does (per-core cost against per-core cost).",
        "",
        "| batch | CNN forward | store | seen rows | latest rows (worst case) | new rows |",
        "|---:|---:|---|---:|---:|---:|",
    ]
    for batch, row in report["results"].items():
        for store in STORES:
            cells = [
                f"{row[f'{store}_{kind}']:.3f} ({row[f'{store}_{kind}_ratio']:.1%})"
                for kind in ("seen", "latest", "new")
            ]
            lines.append(f"| {batch} | {row['cnn']:.3f} | {store} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"The lookups again, with torch on its default {env['torch_threads']} threads:",
        "",
        "| batch | CNN forward | store | seen rows | latest rows (worst case) |",
        "|---:|---:|---|---:|---:|",
    ]
    for batch, row in report["results"].items():
        for store in STORES:
            cells = [
                f"{row[f'{store}_{kind}_mt']:.3f} ({row[f'{store}_{kind}_ratio_mt']:.1%})"
                for kind in ("seen", "latest")
            ]
            lines.append(f"| {batch} | {row['cnn_mt']:.3f} | {store} | " + " | ".join(cells) + " |")
    ranks = ", ".join(
        f"batch {b}: {r['seen_mean_rank']:,.0f} (seen), {r['latest_mean_rank']:,.0f} (latest)"
        for b, r in report["results"].items()
    )
    lines += [
        "",
        f"Mean position of the answering centroid in the list: {ranks}. *Seen* and *latest* rows "
        "were sent before, byte for byte, so the defense answers them from its memo of answers "
        "without any lookup or write, and they cost the same wherever their centroid lies "
        "(`benchmarks/defenses.py` times rows moved by float noise, which are looked up). *New* "
        "rows were never seen; nearly all append a centroid, under the "
        "write lock, and SQLite commits before answering: flushed to the disk (`synchronous="
        "FULL`, the default) for *sqlite*, left to the WAL checkpoints (`NORMAL`: survives a "
        "process crash, not a power loss) for *sqlite-normal*. The list grows "
        f"to {setup['centroids_class0_at_end']:,} centroids during the *new* measurements.",
        "",
        f"Python {env['python']}, numpy {env['numpy']}, scipy {env['scipy']}, torch "
        f"{env['torch']}, {env['cpus']} CPUs, {env['platform']}. Load average (1, 5, 15 min) "
        f"before: {env['loadavg_before']}, after: {env['loadavg_after']}. The machine is shared: "
        "absolute times vary between runs, and a two-thread forward pass suffers most from "
        "other load (its threads wait for each other), which is why the one-thread table leads. "
        "The JSON file also holds the minimum of each timing.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
