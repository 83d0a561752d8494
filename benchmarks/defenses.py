"""The defense speed benchmarks in one run, summarised in one table.

Runs ``modelguard_w.py`` (exact solver vs HiGHS, and the 10,000-case exactness check),
``modelguard_s.py`` (lookup cost with 10,000 centroids vs a small CNN's forward pass) and
``mad.py`` (batched vs per-sample MAD), each of which measures its own ratios interleaved in one
process, then writes ``benchmarks/results/defenses.md`` from their JSON results.

    python benchmarks/defenses.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PARTS = ("modelguard_w", "modelguard_s", "mad")


def summary() -> str:
    w = json.loads((RESULTS / "modelguard_w.json").read_text())
    s = json.loads((RESULTS / "modelguard_s.json").read_text())
    m = json.loads((RESULTS / "mad.json").read_text())
    lines = ["# Defense speed, one run", "", "## ModelGuard-W: exact solver vs HiGHS", ""]
    lines += ["| C | batch | exact µs/query | HiGHS µs/query | speed-up |", "|---|---|---|---|---|"]
    for r in w["speed"]:
        lines.append(
            f"| {r['C']} | {r['batch']} | {r['exact_us_per_query']:.1f} | "
            f"{r['highs_us_per_query']:.0f} | {r['speedup']:.0f}× |"
        )
    mismatches = sum(r["mismatches"] for r in w["exactness"])
    cases = sum(r["cases"] for r in w["exactness"])
    lines += ["", f"Exactness: {mismatches} mismatches in {cases} random (y, ε) cases.", ""]
    lines += ["## ModelGuard-S: lookup with 10,000 centroids vs the CNN forward pass", ""]
    lines += [
        "| batch | store | CNN ms (1 thread) | seen | latest (worst) | CNN ms (2 threads) | seen | latest |"
    ]
    lines += ["|---|---|---|---|---|---|---|---|"]
    for batch, r in sorted(s["results"].items(), key=lambda kv: int(kv[0])):
        for store in ("memory", "sqlite"):
            lines.append(
                f"| {batch} | {store} | {r['cnn']:.3f} | {r[store + '_seen_ratio']:.1%} | "
                f"{r[store + '_latest_ratio']:.1%} | {r['cnn_mt']:.3f} | "
                f"{r[store + '_seen_ratio_mt']:.1%} | {r[store + '_latest_ratio_mt']:.1%} |"
            )
    lines += ["", "## MAD: batched vs per-sample", ""]
    lines += [
        "| proxy | oracle | batch | batched ms/query | loop ms/query | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for r in m["rows"]:
        lines.append(
            f"| {r['proxy']} | {r['oracle']} | {r['batch']} | {r['batched_ms_per_query']:.3f} | "
            f"{r['per_sample_ms_per_query']:.3f} | {r['speedup']:.1f}× |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run; results not written")
    args = parser.parse_args()
    for part in PARTS:
        cmd = [sys.executable, str(HERE / f"{part}.py"), *(["--quick"] if args.quick else [])]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    if not args.quick:
        (RESULTS / "defenses.md").write_text(summary())
        print(summary())


if __name__ == "__main__":
    main()
