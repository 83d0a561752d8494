"""ModelGuard-S's memo of answers once it is full: the cost of remembering one more answer.

The defense remembers the last ``_MEMO_SIZE`` (65,536) answers it gave, keyed by the bytes of the
clean row, and forgets the oldest when a new one comes in. A server that has answered more than
that many distinct predictions pays this eviction on every new row. This script fills the memo
of a ModelGuard-S (memory store, C = 10) with distinct rows, then times ``_remember`` (the step
every newly answered row takes) for ``--rows`` more rows, one row per call, and reports the mean,
the 99th percentile and the maximum per call (CPU time of the thread, µs), and the same for a
lookup of a remembered row (``perturb`` of a row answered before).

    python benchmarks/modelguard_s_memo.py [--rows 200000] [--tag _before]

Writes ``benchmarks/results/modelguard_s_memo{tag}.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from modelsteal.defenses import modelguard_s as ms

HERE = Path(__file__).resolve().parent
C = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows remembered after filling")
    parser.add_argument("--tag", default="", help="suffix of the result files")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    defense = ms.ModelGuardS(epsilon=0.05)
    size = ms._MEMO_SIZE
    fill = rng.dirichlet(np.full(C, 0.3), size=size)
    answers = fill.copy()  # what is remembered does not matter for the cost
    defense._remember(fill, answers)
    assert len(defense._memo) == size
    rows = rng.dirichlet(np.full(C, 0.3), size=args.rows)
    remember = np.empty(args.rows)
    for i in range(args.rows):
        row = rows[i : i + 1]
        start = time.thread_time_ns()
        defense._remember(row, row)
        remember[i] = time.thread_time_ns() - start
    assert len(defense._memo) == size
    seen = rows[-1000:]
    lookup = np.empty(len(seen))
    for i in range(len(seen)):
        row = seen[i : i + 1]
        start = time.thread_time_ns()
        defense.perturb(row)
        lookup[i] = time.thread_time_ns() - start

    def stats(ns: np.ndarray) -> dict[str, float]:
        us = ns / 1e3
        return {
            "mean_us": float(us.mean()),
            "p99_us": float(np.percentile(us, 99)),
            "max_us": float(us.max()),
        }

    report = {
        "benchmark": "modelguard_s memo eviction",
        "command": "python benchmarks/modelguard_s_memo.py"
        + (f" --rows {args.rows}" if args.rows != 200_000 else "")
        + (f" --tag {args.tag}" if args.tag else ""),
        "memo_size": size,
        "memo_type": type(defense._memo).__name__,
        "rows": args.rows,
        "remember": stats(remember),
        "lookup_seen": stats(lookup),
        "environment": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "cpus": os.cpu_count(),
            "loadavg": [round(v, 2) for v in os.getloadavg()],
        },
    }
    r, s = report["remember"], report["lookup_seen"]
    md = "\n".join(
        [
            "# ModelGuard-S: remembering an answer with a full memo",
            "",
            f"`{report['command']}`: memo of {size:,} answers ({report['memo_type']}), "
            f"{args.rows:,} more rows remembered one per call; CPU time of the thread, µs per "
            "call.",
            "",
            "| step | mean | 99th percentile | max |",
            "|---|---:|---:|---:|",
            f"| remember a new answer | {r['mean_us']:.2f} | {r['p99_us']:.1f} | "
            f"{r['max_us']:.0f} |",
            f"| answer a row from the memo | {s['mean_us']:.2f} | {s['p99_us']:.1f} | "
            f"{s['max_us']:.0f} |",
            "",
        ]
    )
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / f"modelguard_s_memo{args.tag}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / f"modelguard_s_memo{args.tag}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
