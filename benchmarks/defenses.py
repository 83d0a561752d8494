"""The defense speed goals in one run: ModelGuard-W, ModelGuard-S and MAD, per query.

Measures, in one process, with torch on one thread (per-core cost against per-core cost), at
batch 1 and 256:

- **ModelGuard-W** for C in {10, 100, 256}: ``solve_modelguard_w`` (the compiled exact solver)
  against one HiGHS LP per row (``solve_modelguard_w_highs``), on
  Dirichlet(0.3) rows with ε uniform in [1e-3, 2]; batch 1 is 64 different rows sent one call
  each. Both sides are timed in alternation; the objective gap between the two answers is checked
  on every timed row. Goal: ≥ 100×.
- **ModelGuard-S** for C in {10, 100, 256}: 10,000 centroids in class 0 (ε = 0.05, ℓ1), built by
  the defense itself from a stream of synthetic softmax rows, in a memory and an SQLite store,
  against the forward pass of ``build_model("cnn", (1, 28, 28), C)`` on the same batch (eval,
  no_grad). Timed interleaved call by call in shuffled order (medians):
  *seen*: predictions answered before (the same bytes: the memo of answers);
  *near*: predictions never sent byte for byte (stream rows moved by float noise of 1e-7),
  whose first match lies anywhere in the list; *near-latest*: the same for the last rows of the
  stream, whose first match is at the end of the list (the worst case for a lookup);
  *new*: rows never seen, which append centroids (for SQLite, a commit before the answer).
  Goal: ≤ 10% of the forward pass (lookups; new rows are reported against it too).
- **MAD** for C = 10 (and C = 100 with the CNN proxy): the batched defense against the
  per-sample loop (``benchmarks/mad.py``'s ``measure``, best of interleaved repeats), with the
  bfloat16 proxy rows and the compiled-forward floor of the float32 CNN proxy (``mad.py
  --bfloat16 --compiled-floor``). Goal: ≥ 20× at batch 256.

Writes ``benchmarks/results/defenses.{json,md}`` (``--quick``: a smoke run that writes nothing).
``--parts`` first runs the detailed scripts ``modelguard_w.py`` (with its 10,000-case exactness
check), ``modelguard_s.py``, ``modelguard_s_memo.py`` and ``mad.py`` (with the arguments of its
record in docs/benchmarks.md), which write their own result files.

    python benchmarks/defenses.py [--quick] [--parts]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy
import torch

import mad as mad_bench
from modelsteal.defenses.modelguard_s import ModelGuardS
from modelsteal.defenses.modelguard_w import (
    modelguard_w_objective,
    solve_modelguard_w,
    solve_modelguard_w_highs,
)
from modelsteal.models import build_model

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
# the detailed scripts --parts runs, with the arguments of their records in docs/benchmarks.md
PARTS = {
    "modelguard_w": [],
    "modelguard_s": [],
    "modelguard_s_memo": [],
    "mad": ["--classes", "100", "--loop-rows", "2", "--bfloat16", "--compiled-floor"],
}
CLASSES = (10, 100, 256)
EPS_S = 0.05


# ---- ModelGuard-W -------------------------------------------------------------------------


def clocks() -> tuple[float, float]:
    """(wall, CPU time of this thread) in seconds."""
    return time.perf_counter(), time.thread_time()


def _run_calls(solve: Callable, y: np.ndarray, eps: np.ndarray, batch: int) -> tuple[float, float]:
    """Per-query (wall, CPU) seconds to answer ``y`` in calls of ``batch`` rows."""
    wall, cpu = clocks()
    for i in range(0, len(y), batch):
        solve(y[i : i + batch], eps[i : i + batch])
    wall_end, cpu_end = clocks()
    return (wall_end - wall) / len(y), (cpu_end - cpu) / len(y)


def modelguard_w(quick: bool) -> list[dict]:
    rng = np.random.default_rng(0)
    repeats, highs_repeats, singles = (3, 1, 16) if quick else (15, 5, 64)
    rows = []
    for c in CLASSES:
        y = rng.dirichlet(np.full(c, 0.3), size=256)
        eps = rng.uniform(1e-3, 2.0, size=256)
        for batch in (1, 256):
            n = singles if batch == 1 else (64 if quick else 256)
            yb, eb = y[:n], eps[:n]
            exact = np.concatenate(
                [
                    solve_modelguard_w(yb[i : i + batch], eb[i : i + batch])
                    for i in range(0, n, batch)
                ]
            )
            ref = solve_modelguard_w_highs(yb, eb)
            gap = np.abs(modelguard_w_objective(yb, exact) - modelguard_w_objective(yb, ref))
            t_exact, t_highs = [], []
            for r in range(repeats):  # alternate, so that load from other jobs hits both
                t_exact.append(_run_calls(solve_modelguard_w, yb, eb, batch))
                if r % (repeats // highs_repeats) == 0 and len(t_highs) < highs_repeats:
                    t_highs.append(_run_calls(solve_modelguard_w_highs, yb, eb, batch))
            row = {"C": c, "batch": batch, "rows": n, "max_objective_gap": float(gap.max())}
            for k, clock in enumerate(("wall", "cpu")):
                exact_t = [t[k] for t in t_exact]
                highs_t = [t[k] for t in t_highs]
                row[f"exact_us_{clock}"] = 1e6 * statistics.median(exact_t)
                row[f"highs_us_{clock}"] = 1e6 * statistics.median(highs_t)
                row[f"exact_us_{clock}_min"] = 1e6 * min(exact_t)
                row[f"highs_us_{clock}_min"] = 1e6 * min(highs_t)
                row[f"speedup_{clock}"] = statistics.median(highs_t) / statistics.median(exact_t)
            rows.append(row)
            print(
                f"  ModelGuard-W C={c} batch={batch}: CPU {row['exact_us_cpu']:.1f} vs "
                f"{row['highs_us_cpu']:.0f} µs/query, {row['speedup_cpu']:.0f}x "
                f"(wall {row['speedup_wall']:.0f}x)",
                flush=True,
            )
    return rows


def interleaved(
    fns: dict[str, Callable[[], object]], reps: int, *, warmup: int = 3
) -> dict[str, float]:
    """Median wall and CPU milliseconds of each function, all timed in every repetition, in a
    shuffled (seeded) order so that load and what a call leaves behind hit each alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in fns}
    order = np.random.default_rng(0)
    names = list(fns)
    for _ in range(reps):
        for i in order.permutation(len(names)):
            wall, cpu = clocks()
            fns[names[i]]()
            wall_end, cpu_end = clocks()
            times[names[i]].append((wall_end - wall, cpu_end - cpu))
    out = {}
    for name, t in times.items():
        out[name] = 1e3 * statistics.median(c for _, c in t)  # CPU: the primary figure
        out[f"{name}_wall"] = 1e3 * statistics.median(w for w, _ in t)
        out[f"{name}_min"] = 1e3 * min(c for _, c in t)
    return out


# ---- ModelGuard-S -------------------------------------------------------------------------


def class0_rows(n: int, c: int, rng: np.random.Generator) -> np.ndarray:
    """Softmax-like rows whose top class is 0: Dirichlet(0.3) with the largest entry moved to 0."""
    y = rng.dirichlet(np.full(c, 0.3), size=n)
    top = y.argmax(axis=1)
    rows = np.arange(n)
    y[rows, 0], y[rows, top] = y[rows, top], y[rows, 0]
    return y


def fill(defense: ModelGuardS, target: int, c: int, rng: np.random.Generator) -> np.ndarray:
    """Query fresh rows in batches of up to 256 until class 0 holds ``target`` centroids."""
    seen = []
    while (have := defense.centroid_counts().get(0, 0)) < target:
        y = class0_rows(min(256, target - have), c, rng)
        defense.perturb(y)
        seen.append(y)
    return np.concatenate(seen)


def nudged(rows: np.ndarray, rng: np.random.Generator, scale: float = 1e-7) -> np.ndarray:
    """The rows moved by float noise of the size that separates batched from single inference:
    other bytes (not in the memo), another quantized row, (nearly always) the same answer."""
    out = np.clip(rows + rng.uniform(-scale, scale, size=rows.shape), 0.0, None)
    return out / out.sum(axis=1, keepdims=True)


def modelguard_s(quick: bool) -> list[dict]:
    n_centroids = 1_000 if quick else 10_000
    rows = []
    for c in CLASSES:
        # fewer repetitions where a lookup scans the whole list (many classes): seconds each
        reps = {1: 30, 256: 4} if quick else ({1: 400, 256: 20} if c <= 10 else {1: 60, 256: 6})
        new_reps = {1: 10, 256: 2} if quick else ({1: 100, 256: 6} if c <= 10 else {1: 20, 256: 3})
        model = build_model("cnn", (1, 28, 28), c, seed=0).eval()
        gen = torch.Generator().manual_seed(0)
        with tempfile.TemporaryDirectory() as tmp:
            defenses = {
                "memory": ModelGuardS(epsilon=EPS_S),
                "sqlite": ModelGuardS(epsilon=EPS_S, store=os.path.join(tmp, "s.sqlite")),
            }
            setup = {}
            streams = {}
            for name, defense in defenses.items():
                started = time.perf_counter()
                streams[name] = fill(defense, n_centroids, c, np.random.default_rng(0))
                setup[f"fill_{name}_s"] = round(time.perf_counter() - started, 2)
            stream = streams["memory"]
            np.testing.assert_array_equal(stream, streams["sqlite"])
            pick = np.random.default_rng(1)
            for batch in (1, 256):
                x = torch.rand((batch, 1, 28, 28), generator=gen)

                def cnn(x: torch.Tensor = x, model: torch.nn.Module = model) -> None:
                    with torch.no_grad():
                        model(x)

                calls = reps[batch] + 3  # interleaved_ms warms up with 3 calls
                seen = stream[pick.choice(len(stream), size=batch, replace=False)]
                fns: dict[str, Callable[[], object]] = {"cnn": cnn}
                for name, defense in defenses.items():
                    defense.perturb(seen)  # remembered: from now on answered from the memo
                    near = [
                        nudged(stream[pick.choice(len(stream), size=batch)], pick)
                        for _ in range(calls)
                    ]
                    latest = [nudged(stream[-batch:], pick) for _ in range(calls)]
                    fns[f"{name}_seen"] = lambda d=defense, y=seen: d.perturb(y)
                    for kind, batches in (("near", near), ("latest", latest)):
                        fns[f"{name}_{kind}"] = lambda d=defense, b=iter(batches): d.perturb(
                            next(b)
                        )
                before = {name: d.n_centroids() for name, d in defenses.items()}
                row = {"C": c, "batch": batch, **setup}
                row |= interleaved(fns, reps[batch])
                row["appended_during_lookups"] = sum(
                    d.n_centroids() - before[name] for name, d in defenses.items()
                )
                fresh = [class0_rows(batch, c, pick) for _ in range(new_reps[batch] + 3)]
                new = interleaved(
                    {
                        "cnn": cnn,
                        **{
                            f"{name}_new": lambda d=defense, f=iter(fresh): d.perturb(next(f))
                            for name, defense in defenses.items()
                        },
                    },
                    new_reps[batch],
                )
                row["cnn_new_phase"] = new["cnn"]
                row["cnn_new_phase_wall"] = new["cnn_wall"]
                for name in defenses:
                    for suffix in ("", "_wall"):
                        row[f"{name}_new{suffix}"] = new[f"{name}_new{suffix}"]
                        row[f"{name}_new_ratio{suffix}"] = (
                            new[f"{name}_new{suffix}"] / new[f"cnn{suffix}"]
                        )
                        for kind in ("seen", "near", "latest"):
                            row[f"{name}_{kind}_ratio{suffix}"] = (
                                row[f"{name}_{kind}{suffix}"] / row[f"cnn{suffix}"]
                            )
                row["mean_rank_latest"] = float(_mean_rank(defenses["memory"], stream[-batch:], c))
                rows.append(row)
                worst = max(row[f"{n}_{k}_ratio"] for n in defenses for k in ("near", "latest"))
                print(
                    f"  ModelGuard-S C={c} batch={batch}: CNN {row['cnn']:.3f} ms, seen "
                    f"{row['memory_seen_ratio']:.1%}, worst lookup {worst:.1%}",
                    flush=True,
                )
            for defense in defenses.values():
                defense.close()
    return rows


def _mean_rank(defense: ModelGuardS, rows: np.ndarray, c: int) -> float:
    cents = defense.centroids(0)
    answers = defense.perturb(rows)
    match = np.all(cents[None, :, :] == answers[:, None, :], axis=2)
    return float(match.argmax(axis=1).mean())


# ---- MAD ----------------------------------------------------------------------------------


def mad(quick: bool) -> list[dict]:
    return mad_bench.run(
        quick=quick,
        repeats=1 if quick else 5,
        classes=[] if quick else [100],
        loop_rows=2,
        bfloat16=not quick and _has_proxy_dtype(),
        compiled_floor=not quick,
    )


def _has_proxy_dtype() -> bool:
    """Whether this MAD has ``proxy_dtype`` (the same script also measures older code)."""
    import inspect

    from modelsteal.defenses.mad import MAD

    return "proxy_dtype" in inspect.signature(MAD).parameters


# ---- the report ---------------------------------------------------------------------------


def markdown(report: dict) -> str:
    w, s, m = report["modelguard_w"], report["modelguard_s"], report["mad"]
    env = report["environment"]
    lines = [
        "# Defense speed, one run",
        "",
        f"`{report['command']}` ({report['seconds']:.0f} s) — torch on 1 thread, {env['cpus']} "
        f"CPUs shared with other jobs (load average before {env['loadavg_before']}, after "
        f"{env['loadavg_after']}). Times are CPU time of the timing thread (what a call costs a "
        "core; time spent waiting for a core does not count), medians of repeats; wall-clock "
        "figures, which that load inflates unevenly, are in brackets.",
        "",
        "## ModelGuard-W: exact solver vs HiGHS (µs per query)",
        "",
        "| C | batch | exact | HiGHS | speed-up | max objective gap |",
        "|---|---|---|---|---|---|",
    ]
    for r in w:
        lines.append(
            f"| {r['C']} | {r['batch']} | {r['exact_us_cpu']:.1f} ({r['exact_us_wall']:.1f}) "
            f"| {r['highs_us_cpu']:.0f} ({r['highs_us_wall']:.0f}) "
            f"| **{r['speedup_cpu']:.0f}×** ({r['speedup_wall']:.0f}×) "
            f"| {r['max_objective_gap']:.1e} |"
        )
    lines += [
        "",
        "## ModelGuard-S: 10,000 centroids in one class vs the CNN forward pass (ms per call; "
        "% of the forward pass, wall-clock % in brackets)",
        "",
        "| C | batch | store | CNN | seen (memo) | near | near-latest (worst) | new |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in s:
        for store in ("memory", "sqlite"):
            cells = [
                f"{r[f'{store}_{k}']:.3f} (**{r[f'{store}_{k}_ratio']:.1%}**, "
                f"{r[f'{store}_{k}_ratio_wall']:.1%})"
                for k in ("seen", "near", "latest", "new")
            ]
            lines.append(
                f"| {r['C']} | {r['batch']} | {store} | {r['cnn']:.3f} | "
                + " | ".join(cells)
                + " |"
            )
    lines += [
        "",
        "## MAD: batched vs per-sample loop (CPU time, best of interleaved repeats)",
        "",
        *mad_bench.table(m),
        "",
        "## Against the goals",
        "",
        *verdicts(report),
    ]
    return "\n".join(lines) + "\n"


def verdicts(report: dict) -> list[str]:
    w, s, m = report["modelguard_w"], report["modelguard_s"], report["mad"]
    out = []
    low = min(w, key=lambda r: r["speedup_cpu"])
    out.append(
        f"- ModelGuard-W ≥ 100× HiGHS: {'met' if low['speedup_cpu'] >= 100 else 'NOT met'} "
        f"(lowest: {low['speedup_cpu']:.0f}× at C = {low['C']}, batch {low['batch']}; "
        f"wall clock: lowest {min(r['speedup_wall'] for r in w):.0f}×)."
    )
    for c in sorted({r["C"] for r in s}):
        lookups = [
            (r[f"{st}_{k}_ratio"], r["batch"], st, k)
            for r in s
            if r["C"] == c
            for st in ("memory", "sqlite")
            for k in ("seen", "near", "latest")
        ]
        worst = max(lookups)
        seen = max(v[0] for v in lookups if v[3] == "seen")
        out.append(
            f"- ModelGuard-S lookups ≤ 10% of the forward pass, C = {c}: "
            f"{'met' if worst[0] <= 0.10 else 'NOT met'} (worst: {worst[0]:.1%}, {worst[2]} "
            f"{worst[3]}, batch {worst[1]}; predictions answered before: at most {seen:.1%})."
        )
    for c in sorted({r["C"] for r in s}):
        for batch in sorted({r["batch"] for r in s}):
            r = next(r for r in s if r["C"] == c and r["batch"] == batch)
            mem, sql = r["memory_new_ratio"], r["sqlite_new_ratio"]
            out.append(
                f"- ModelGuard-S new rows (each appends a centroid), C = {c}, batch {batch}: "
                f"memory {mem:.1%} ({'≤' if mem <= 0.10 else '>'} 10%), SQLite {sql:.1%} "
                f"({'≤' if sql <= 0.10 else '>'} 10%; CPU time: the wait for its commit's flush "
                f"to disk is not in it, in wall-clock time {r['sqlite_new_ratio_wall']:.1%})."
            )
    big = [r for r in m if r["batch"] > 1 and r.get("proxy_dtype", "float32") == "float32"]
    low_m = min(big, key=lambda r: r["speedup"])
    out.append(
        f"- MAD ≥ 20× the per-sample loop at batch {low_m['batch']} (float32 proxy, as the "
        f"loop): {'met' if low_m['speedup'] >= 20 else 'NOT met'} (lowest: "
        f"{low_m['speedup']:.1f}× for {low_m['proxy']}/{low_m['oracle']}, "
        f"C = {low_m['classes']})."
    )
    for r in m:
        if "speedup_ceiling_compiled" in r:
            out.append(
                f"- MAD's float32 ceiling for {r['proxy']}/{r['oracle']}, batch {r['batch']}: "
                f"the proxy's forward pass alone, compiled (torch.compile), costs "
                f"{r['compiled_forward_ms_per_query']:.3f} ms/query (eager "
                f"{r['proxy_forward_ms_per_query']:.3f}); a batched path costing no more than "
                f"that would be {r['speedup_ceiling_compiled']:.1f}× the loop. Its costliest "
                f"convolution alone runs at {r.get('largest_conv_gflops', float('nan')):.0f} "
                f"GFLOP/s, a 2048 × 2048 float32 matrix product at "
                f"{r['matmul_2048_gflops']:.0f} GFLOP/s (on the timing thread)."
            )
        if r["batch"] > 1 and r.get("proxy_dtype", "float32") != "float32":
            out.append(
                f"- MAD with a {r['proxy_dtype']} {r['proxy']} proxy ({r['oracle']}), batch "
                f"{r['batch']}: {r['speedup']:.1f}× the float32 per-sample loop "
                f"({r['speedup_vs_channels_last_loop']:.1f}× its channels-last version); "
                f"{r['rows_equal_to_loop']} of {r['loop_rows_timed']} answers equal to the loop's."
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run; results not written")
    parser.add_argument("--parts", action="store_true", help="also run the detailed scripts")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the results")
    args = parser.parse_args()
    if args.parts:
        for part, part_args in PARTS.items():
            if args.quick and part == "modelguard_s_memo":
                continue  # it has no smoke mode
            extra = ["--quick"] if args.quick else part_args
            cmd = [sys.executable, str(HERE / f"{part}.py"), *extra]
            print("$", " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
    torch.set_num_threads(1)
    load_before = [round(v, 2) for v in os.getloadavg()]
    started = time.perf_counter()
    print("ModelGuard-W", flush=True)
    w = modelguard_w(args.quick)
    print("ModelGuard-S", flush=True)
    s = modelguard_s(args.quick)
    print("MAD", flush=True)
    m = mad(args.quick)
    report = {
        "benchmark": "defense speed goals",
        "command": "python benchmarks/defenses.py" + (" --quick" if args.quick else ""),
        "modelguard_w": w,
        "modelguard_s": s,
        "mad": m,
        "seconds": round(time.perf_counter() - started, 1),
        "environment": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_before": load_before,
            "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        },
    }
    report["verdicts"] = verdicts(report)
    text = markdown(report)
    print(text)
    if not args.quick:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "defenses.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "defenses.md").write_text(text)


if __name__ == "__main__":
    main()
