"""MAD: the batched defense against the per-sample reference loop, in one run.

For C = 10 classes and MNIST-shaped inputs (1, 28, 28), with two randomly initialised proxies
(the registry's ``cnn`` and ``mlp``) and the oracles ``extreme`` and ``argmax``, times
``MAD.perturb`` (one forward pass with a hook, Gram matrices and the oracle vectorised over the
batch) and ``mad_per_sample`` (one forward pass and C ``autograd.grad`` calls per row and a Python
loop over candidate vertices, the way the reference code works) on the same rows, at batch 256 and
batch 1, checks that both give the same answers, and reports the cost per query and the speed-up.
The project's goal is a speed-up of at least 20× at batch 256.

Inputs are uniform noise and the clean rows are Dirichlet(0.3) draws: MAD's cost does not depend
on what the rows are. Each timing is the best of ``--repeats`` interleaved runs (the machines are
shared).

    python benchmarks/mad.py            # writes benchmarks/results/mad.{json,md}, ~40 s on 2 cores
    python benchmarks/mad.py --quick    # smaller batches, one repeat; prints, writes nothing
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from modelsteal.defenses.mad import MAD, mad_per_sample
from modelsteal.models import build_model

HERE = Path(__file__).resolve().parent
C = 10
SHAPE = (1, 28, 28)


def best_times(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Best wall time of each function, the runs interleaved so load from other processes on a
    shared machine hits them alike."""
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            started = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - started)
    return best


def measure(arch: str, oracle: str, batch: int, repeats: int, rng: np.random.Generator) -> dict:
    proxy = build_model(arch, SHAPE, C, seed=0)
    defense = MAD(epsilon=1.0, oracle=oracle, proxy=proxy, seed=0)
    n_rows = max(batch, 64)  # batch 1: time 64 single-row calls and divide
    x = rng.random((n_rows, *SHAPE), dtype=np.float32)
    y = rng.dirichlet(np.full(C, 0.3), size=n_rows)
    chunks = [slice(s, s + batch) for s in range(0, n_rows, batch)]

    def batched() -> np.ndarray:
        return np.concatenate([defense.perturb(y[s], x=x[s]) for s in chunks])

    def per_sample() -> np.ndarray:
        return np.concatenate([mad_per_sample(defense, y[s], x[s]) for s in chunks])

    def forward_only() -> None:  # the floor of the batched path: the proxy's forward pass
        with torch.no_grad():
            for s in chunks:
                proxy(torch.from_numpy(x[s]))

    a, b = batched(), per_sample()  # warm-up, and the equivalence check
    times = best_times([batched, per_sample, forward_only], repeats)
    t_batched, t_per_sample, t_forward = (t / n_rows for t in times)
    return {
        "proxy": arch,
        "proxy_params": sum(p.numel() for p in proxy.parameters()),
        "oracle": oracle,
        "batch": batch,
        "rows_timed": n_rows,
        "batched_ms_per_query": 1e3 * t_batched,
        "per_sample_ms_per_query": 1e3 * t_per_sample,
        "speedup": t_per_sample / t_batched,
        "proxy_forward_ms_per_query": 1e3 * t_forward,
        "max_abs_difference": float(np.abs(a - b).max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 64, one repeat, no files")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    big = 64 if args.quick else 256
    repeats = 1 if args.quick else args.repeats
    rng = np.random.default_rng(0)
    rows = []
    for arch in ("cnn", "mlp"):
        for oracle in ("extreme", "argmax"):
            for batch in (big, 1):
                row = measure(arch, oracle, batch, repeats, rng)
                rows.append(row)
                print(
                    f"{arch:>3} {oracle:>7} batch {batch:>3}: "
                    f"batched {row['batched_ms_per_query']:.3f} ms/query, "
                    f"per-sample {row['per_sample_ms_per_query']:.3f} ms/query, "
                    f"{row['speedup']:.1f}x (max |diff| {row['max_abs_difference']:.1e})",
                    flush=True,
                )
    result = {
        "benchmark": "MAD batched vs per-sample",
        "mode": "quick" if args.quick else "full",
        "classes": C,
        "input_shape": list(SHAPE),
        "epsilon": 1.0,
        "ydist": "l1",
        "max_grad_layer": "last",
        "repeats": repeats,
        "rows": rows,
        "command": "python benchmarks/mad.py" + (" --quick" if args.quick else ""),
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
        },
    }
    lines = [
        f"MAD, C = {C}, inputs {SHAPE}, ε = 1 (ℓ1), gradient of the last linear layer; "
        f"best of {repeats}; {torch.get_num_threads()} torch threads.",
        "",
        "| proxy | oracle | batch | batched ms/query | per-sample ms/query | speed-up "
        "| proxy forward alone ms/query | max diff |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {r['proxy']} | {r['oracle']} | {r['batch']} | {r['batched_ms_per_query']:.3f} | "
            f"{r['per_sample_ms_per_query']:.3f} | {r['speedup']:.1f}× | "
            f"{r['proxy_forward_ms_per_query']:.3f} | {r['max_abs_difference']:.0e} |"
            for r in rows
        ),
    ]
    print("\n".join(lines))
    if args.quick:
        return
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "mad.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "mad.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
