"""MAD: the batched defense against the per-sample reference loop, in one run.

For MNIST-shaped inputs (1, 28, 28), with two randomly initialised proxies (the registry's
``cnn`` and ``mlp``) and the oracles ``extreme`` and ``argmax``, times ``MAD.perturb`` (one
forward pass with a hook, Gram matrices and the oracle vectorised over the batch) and
``mad_per_sample`` (one forward pass and C ``autograd.grad`` calls on the last layer's weight per
row and a Python loop over candidate vertices, the way the reference code works) on the same
rows, at batch 256 and batch 1, checks that both give the same answers, and reports the cost per
query and the speed-up. The project's goal is a speed-up of at least 20× at batch 256.

Two more columns say what bounds the ratio and whether the comparison is fair:

- ``forward``: the proxy's forward pass alone, as the batched path runs it (for images, a
  channels-last copy of the proxy, see ``MAD._channels_last``), over the same batches: the floor
  of the batched path;
- ``loop (channels-last)``: the per-sample loop given the same channels-last proxy, so that the
  loop is not slower merely for its memory layout (CNN only).

``--compiled-floor`` adds, for the float32 CNN row with the extreme oracle at the large batch,
the forward pass of a compiled (``torch.compile``) copy of the proxy (inductor, frozen weights,
one static shape of 64 rows; the last linear layer eager): what the batched path would cost if
its forward pass ran fused kernels (convolution with ReLU, pooling) instead of eager operators,
and the speed-up that would allow; with the rate (GFLOP/s) of the proxy's costliest convolution
alone and of a large float32 matrix product. It is a measurement, not a path of the library
(it needs a C++ compiler and seconds of compilation per shape).

``--bfloat16`` adds CNN rows whose batched defense runs the proxy in bfloat16
(``MAD(proxy_dtype="bfloat16")``) against the same float32 per-sample loop; ``max diff`` and
``rows_equal_to_loop`` (JSON) then say how often the answers still equal float32's.

Inputs are uniform noise and the clean rows are Dirichlet(0.3) draws: MAD's cost does not depend
on what the rows are. Each timing is the best of ``--repeats`` interleaved runs (the machines are
shared), in CPU time of the timing thread (what a call costs a core; waiting for a core does not
count) and in wall-clock time; torch runs on ``--threads`` threads (1 by default: per-core cost
against per-core cost; with more, CPU time of one thread undercounts).
``--classes`` adds CNN rows with more classes (extreme oracle); their per-sample loop builds
G (C × 128·C) row by row and is timed on ``--loop-rows`` rows only (it costs the same per row
whatever the batch).

    python benchmarks/mad.py            # writes benchmarks/results/mad.{json,md}, ~1 min on 2 cores
    python benchmarks/mad.py --quick    # smaller batches, one repeat; prints, writes nothing
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from modelsteal.defenses import mad as mad_module
from modelsteal.defenses.mad import MAD, mad_per_sample
from modelsteal.models import build_model

HERE = Path(__file__).resolve().parent
C = 10
SHAPE = (1, 28, 28)


def best_times(fns: list[Callable[[], object]], repeats: int) -> list[tuple[float, float]]:
    """Best CPU time (of this thread) and best wall time of each function, the runs interleaved
    so load from other processes on a shared machine hits them alike."""
    best = [(float("inf"), float("inf"))] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            cpu, wall = time.thread_time(), time.perf_counter()
            fn()
            cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
            best[i] = (min(best[i][0], cpu), min(best[i][1], wall))
    return best


def measure(
    arch: str,
    oracle: str,
    batch: int,
    repeats: int,
    rng: np.random.Generator,
    *,
    classes: int = C,
    loop_rows: int | None = None,
    proxy_dtype: str = "float32",
    compiled_floor: bool = False,
) -> dict:
    """Per-query cost of the batched defense and of the per-sample loop on the same rows.

    ``loop_rows``: time the per-sample loop (and check equality) on only the first rows; its
    cost per row does not depend on the batch. ``proxy_dtype="bfloat16"``: the batched defense
    runs its proxy in bfloat16; the per-sample loop, the reference, stays in float32.
    """
    proxy = build_model(arch, SHAPE, classes, seed=0)
    dtype = {} if proxy_dtype == "float32" else {"proxy_dtype": proxy_dtype}
    defense = MAD(epsilon=1.0, oracle=oracle, proxy=proxy, seed=0, **dtype)
    n_rows = max(batch, 64)  # batch 1: time 64 single-row calls and divide
    x = rng.random((n_rows, *SHAPE), dtype=np.float32)
    y = rng.dirichlet(np.full(classes, 0.3), size=n_rows)
    chunks = [slice(s, s + batch) for s in range(0, n_rows, batch)]
    n_loop = n_rows if loop_rows is None else min(loop_rows, n_rows)
    loop_chunks = [slice(s, min(s + batch, n_loop)) for s in range(0, n_loop, batch)]
    image = len(SHAPE) == 3 and arch == "cnn"
    proxy_cl = copy.deepcopy(proxy).to(memory_format=torch.channels_last) if image else None
    defense_cl = MAD(epsilon=1.0, oracle=oracle, proxy=proxy_cl, seed=0) if image else None

    def batched() -> np.ndarray:
        return np.concatenate([defense.perturb(y[s], x=x[s]) for s in chunks])

    def per_sample() -> np.ndarray:
        return np.concatenate([mad_per_sample(defense, y[s], x[s]) for s in loop_chunks])

    def per_sample_cl() -> np.ndarray:
        return np.concatenate([mad_per_sample(defense_cl, y[s], x[s]) for s in loop_chunks])

    # what the batched path runs (a proxy as it is, for code without the channels-last copy)
    image_fast = image and hasattr(defense, "_channels_last")
    fast = defense._channels_last(proxy) if image_fast else proxy

    # rows per forward pass, as MAD's
    step = getattr(mad_module, "_IMAGE_CHUNK" if image_fast else "_FORWARD_CHUNK", 1024)

    # as MAD's own passes (only code with proxy_dtype has bfloat16 rows)
    precision = (
        mad_module._precision(proxy_dtype, torch.device("cpu"))
        if proxy_dtype != "float32"
        else contextlib.nullcontext()
    )

    def forward_only() -> None:  # the floor of the batched path: the proxy's forward pass
        with torch.no_grad(), precision:
            for s in chunks:
                xt = torch.from_numpy(x[s])
                xt = xt.contiguous(memory_format=torch.channels_last) if image_fast else xt
                for k in range(0, len(xt), step):
                    fast(xt[k : k + step])

    a, b = batched(), per_sample()  # warm-up, and the equivalence check
    fns = [batched, per_sample, forward_only] + ([per_sample_cl] if image else [])
    if image:
        per_sample_cl()
    compiled = compiled_forward(fast, x, chunks, step) if compiled_floor else None
    if compiled is not None:
        fns.append(compiled)
    both = best_times(fns, repeats)
    times = [cpu for cpu, _ in both]
    t_batched, t_forward = times[0] / n_rows, times[2] / n_rows
    t_per_sample = times[1] / n_loop
    row = {
        "proxy": arch,
        "proxy_params": sum(p.numel() for p in proxy.parameters()),
        "classes": classes,
        "oracle": oracle,
        "batch": batch,
        "rows_timed": n_rows,
        "loop_rows_timed": n_loop,
        "batched_ms_per_query": 1e3 * t_batched,
        "per_sample_ms_per_query": 1e3 * t_per_sample,
        "speedup": t_per_sample / t_batched,
        "proxy_forward_ms_per_query": 1e3 * t_forward,
        "proxy_dtype": proxy_dtype,
        "max_abs_difference": float(np.abs(a[:n_loop] - b).max()),
        "rows_equal_to_loop": int(np.sum(np.abs(a[:n_loop] - b).max(axis=1) <= 1e-12)),
        "batched_ms_per_query_wall": 1e3 * both[0][1] / n_rows,
        "per_sample_ms_per_query_wall": 1e3 * both[1][1] / n_loop,
        "speedup_wall": (both[1][1] / n_loop) / (both[0][1] / n_rows),
    }
    if image:
        row["per_sample_channels_last_ms_per_query"] = 1e3 * times[3] / n_loop
        row["speedup_vs_channels_last_loop"] = times[3] / n_loop / t_batched
    if compiled is not None:
        row["compiled_forward_ms_per_query"] = 1e3 * times[-1] / n_rows
        row["speedup_ceiling_compiled"] = t_per_sample / (times[-1] / n_rows)
        row |= float32_rates(fast, step, repeats)
    return row


def float32_rates(fast: nn.Module, rows: int, repeats: int) -> dict:
    """GFLOP/s of the proxy's costliest convolution alone (its input shape as in a forward pass of
    ``rows`` rows, channels-last, eager) and of a 2048 × 2048 float32 matrix product, on the same
    thread: how close the forward pass's main work already is to what the core does in float32."""
    seen: list[tuple[nn.Conv2d, torch.Tensor, int]] = []

    def hook(layer: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        flops = 2 * layer.weight[0].numel() * output.numel()  # one multiply-add per weight use
        seen.append((layer, inputs[0].detach().clone(), flops))

    convs = [m for m in fast.modules() if isinstance(m, nn.Conv2d)]
    handles = [m.register_forward_hook(hook) for m in convs]
    try:
        with torch.no_grad():
            fast(torch.rand(rows, *SHAPE).contiguous(memory_format=torch.channels_last))
    finally:
        for h in handles:
            h.remove()
    out = {}
    if seen:
        layer, x, flops = max(seen, key=lambda item: item[2])
        with torch.no_grad():
            ((cpu, _),) = best_times([lambda: layer(x)], 4 * repeats)
        out["largest_conv_gflops"] = flops / cpu / 1e9
    a, b = torch.rand(2048, 2048), torch.rand(2048, 2048)
    ((cpu, _),) = best_times([lambda: torch.mm(a, b)], repeats)
    out["matmul_2048_gflops"] = 2 * 2048**3 / cpu / 1e9
    return out


def compiled_forward(
    fast: nn.Module, x: np.ndarray, chunks: list[slice], step: int
) -> Callable[[], None] | None:
    """The proxy's forward pass through a compiled (``torch.compile``) copy of all its layers but
    the last linear one (a ``nn.Sequential`` ending in ``nn.Linear``), over the same rows as
    ``forward_only``, on chunks of ``step`` rows only (one static shape). None for other proxies,
    for batches that leave a smaller chunk, and where compiling fails (e.g. no C++ compiler): the
    rest of the benchmark goes on without the floor. The inductor settings it changes stay
    changed for the rest of the process (compilation happens lazily, on first call)."""
    if not (isinstance(fast, nn.Sequential) and isinstance(fast[-1], nn.Linear)):
        return None
    if any((s.stop - s.start) % step for s in chunks):
        return None
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True  # weights as constants: prepacked for oneDNN, as in serving
    # compile in this process: a pool of compile workers starting up beside the timings that
    # follow would slow them (shared caches) on a two-core machine
    inductor_config.compile_threads = 1
    head = fast[-1]
    body = torch.compile(copy.deepcopy(fast[:-1]).eval(), dynamic=False)
    tensors = [torch.from_numpy(x[s]).contiguous(memory_format=torch.channels_last) for s in chunks]

    def run() -> None:
        with torch.no_grad():
            for xt in tensors:
                for k in range(0, len(xt), step):
                    head(body(xt[k : k + step]))

    with torch.no_grad():  # compile, and check the logits against the eager proxy
        xt = tensors[0][:step]
        try:
            compiled = head(body(xt))
        except Exception as exc:  # torch.compile's failures have many types
            print(f"compiled floor skipped: torch.compile failed ({type(exc).__name__}: {exc})")
            return None
        diff = (compiled - fast(xt)).abs().max().item()
    if diff > 1e-4:
        raise RuntimeError(f"the compiled proxy's logits differ from eager ones by {diff:.1e}")
    return run


def table(rows: list[dict]) -> list[str]:
    lines = [
        "| proxy | C | oracle | batch | batched ms/query | per-sample ms/query | speed-up "
        "(wall clock) | forward alone ms/query | loop (channels-last) ms/query, speed-up "
        "| max diff |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cl = (
            f"{r['per_sample_channels_last_ms_per_query']:.3f}, "
            f"{r['speedup_vs_channels_last_loop']:.1f}×"
            if "per_sample_channels_last_ms_per_query" in r
            else "–"
        )
        loop = r["per_sample_ms_per_query"]
        note = f" ({r['loop_rows_timed']} rows)" if r["loop_rows_timed"] < r["rows_timed"] else ""
        dtype = r.get("proxy_dtype", "float32")
        proxy = r["proxy"] if dtype == "float32" else f"{r['proxy']}, {dtype}"
        lines.append(
            f"| {proxy} | {r['classes']} | {r['oracle']} | {r['batch']} "
            f"| {r['batched_ms_per_query']:.3f} | {loop:.3f}{note} "
            f"| **{r['speedup']:.1f}×** ({r['speedup_wall']:.1f}×) "
            f"| {r['proxy_forward_ms_per_query']:.3f} | {cl} | {r['max_abs_difference']:.0e} |"
        )
    return lines


def run(
    *,
    quick: bool,
    repeats: int,
    classes: list[int],
    loop_rows: int,
    log: bool = True,
    bfloat16: bool = False,
    compiled_floor: bool = False,
) -> list[dict]:
    big = 64 if quick else 256
    rng = np.random.default_rng(0)
    rows = []
    configs = [
        (arch, oracle, C, "float32") for arch in ("cnn", "mlp") for oracle in ("extreme", "argmax")
    ]
    configs += [("cnn", "extreme", c, "float32") for c in classes if c != C]
    if bfloat16:
        configs += [("cnn", oracle, C, "bfloat16") for oracle in ("extreme", "argmax")]
    for arch, oracle, c, dtype in configs:
        for batch in (big, 1):
            row = measure(
                arch,
                oracle,
                batch,
                repeats,
                rng,
                classes=c,
                loop_rows=None if c == C else loop_rows,
                proxy_dtype=dtype,
                compiled_floor=compiled_floor
                and arch == "cnn"
                and oracle == "extreme"
                and dtype == "float32"
                and c == C
                and batch == big,
            )
            rows.append(row)
            if log:
                print(
                    f"{arch:>3} {dtype:>8} C={c:<3} {oracle:>7} batch {batch:>3}: "
                    f"batched {row['batched_ms_per_query']:.3f} ms/query, "
                    f"per-sample {row['per_sample_ms_per_query']:.3f} ms/query, "
                    f"{row['speedup']:.1f}x (max |diff| {row['max_abs_difference']:.1e})",
                    flush=True,
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 64, one repeat, no files")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--classes", type=int, nargs="*", default=[], help="more CNN rows")
    parser.add_argument("--loop-rows", type=int, default=16)
    parser.add_argument(
        "--bfloat16", action="store_true", help="also the CNN proxy in bfloat16 (batched side)"
    )
    parser.add_argument(
        "--compiled-floor",
        action="store_true",
        help="also time a torch.compile'd copy of the CNN proxy's forward pass (float32)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = 1 if args.quick else args.repeats
    rows = run(
        quick=args.quick,
        repeats=repeats,
        classes=args.classes,
        loop_rows=args.loop_rows,
        bfloat16=args.bfloat16,
        compiled_floor=args.compiled_floor,
    )
    extra = [f"--threads {args.threads}"] if args.threads != 1 else []
    extra += [f"--classes {' '.join(map(str, args.classes))}"] if args.classes else []
    extra += [f"--loop-rows {args.loop_rows}"] if args.classes and args.loop_rows != 16 else []
    extra += ["--bfloat16"] if args.bfloat16 else []
    extra += ["--compiled-floor"] if args.compiled_floor else []
    result = {
        "benchmark": "MAD batched vs per-sample",
        "mode": "quick" if args.quick else "full",
        "classes": C,
        "input_shape": list(SHAPE),
        "epsilon": 1.0,
        "ydist": "l1",
        "max_grad_layer": "last",
        "repeats": repeats,
        "statistic": "best of the repeats, interleaved; CPU time of the timing thread "
        "(the _wall keys: wall clock)",
        "rows": rows,
        "command": " ".join(
            ["python benchmarks/mad.py", *(["--quick"] if args.quick else []), *extra]
        ),
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
        },
    }
    lines = [
        f"MAD, inputs {SHAPE}, ε = 1 (ℓ1), gradient of the last linear layer; CPU time of the "
        f"timing thread, best of {repeats} interleaved runs (wall-clock speed-up in brackets); "
        f"{torch.get_num_threads()} torch thread(s). `{result['command']}`",
        "",
        *table(rows),
    ]
    for r in rows:
        if "compiled_forward_ms_per_query" in r:
            lines += [
                "",
                f"Compiled floor ({r['proxy']}, C = {r['classes']}, {r['oracle']}, batch "
                f"{r['batch']}): the forward pass alone through torch.compile (float32) costs "
                f"{r['compiled_forward_ms_per_query']:.3f} ms/query against "
                f"{r['proxy_forward_ms_per_query']:.3f} eager; a batched path costing no more "
                f"than it would be at most **{r['speedup_ceiling_compiled']:.1f}×** the loop. "
                f"The proxy's costliest convolution alone runs at "
                f"{r.get('largest_conv_gflops', float('nan')):.0f} GFLOP/s, a 2048 × 2048 "
                f"float32 matrix product at {r['matmul_2048_gflops']:.0f} GFLOP/s (torch on "
                f"{torch.get_num_threads()} thread(s)).",
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
