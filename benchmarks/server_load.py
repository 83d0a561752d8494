"""Load on the prediction server: no defense vs ModelGuard-S, same model, same clients.

    python benchmarks/server_load.py --seconds 60 --clients 32

Serves an MNIST-shaped CNN (``build_model("cnn", (1, 28, 28), 10, seed=0)``, saved as a bundle)
with ``modelsteal serve`` on 127.0.0.1, once per defense, each on a fresh state file, and runs
``--clients`` client threads for ``--seconds`` against each. Inputs are MNIST test images when
$MODELSTEAL_DATA holds mnist/t10k-images-idx3-ubyte.gz, random images otherwise. Writes
benchmarks/results/server_load.{json,md}.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from modelsteal.models import ModelInfo, build_model, save_model
from modelsteal.server import StateStore, create_key

RESULTS = Path(__file__).parent / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(model: Path, state: Path, port: int, *args: str) -> subprocess.Popen:
    code = "import typer; from modelsteal.server.cli import serve; typer.run(serve)"
    cmd = [sys.executable, "-c", code, "--model", str(model), "--state", str(state)]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(proc.stderr.read().decode()[-2000:])
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


def inputs(n: int, seed: int) -> tuple[np.ndarray, str]:
    data = os.environ.get("MODELSTEAL_DATA")
    path = Path(data) / "mnist" / "t10k-images-idx3-ubyte.gz" if data else None
    if path is not None and path.is_file():
        with gzip.open(path) as f:
            raw = np.frombuffer(f.read(), dtype=np.uint8, offset=16)
        return (raw.reshape(-1, 1, 28, 28)[:n] / 255.0).astype(np.float32), "MNIST test images"
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 28, 28), dtype=np.float32), "uniform random images"


def load(port: int, token: str, x: np.ndarray, *, clients: int, seconds: float, batch: int):
    latencies: list[list[float]] = [[] for _ in range(clients)]
    rows = [0] * clients
    errors = [0] * clients
    start_at = time.monotonic() + 0.5
    stop_at = start_at + seconds

    def client(i: int) -> None:
        rng = np.random.default_rng(i)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            while time.monotonic() < start_at:
                time.sleep(0.01)
            while time.monotonic() < stop_at:
                pick = np.ascontiguousarray(x[rng.integers(0, len(x), batch)], dtype="<f4")
                body = {
                    "inputs_b64": base64.b64encode(pick.tobytes()).decode(),
                    "shape": list(pick.shape),
                }
                t0 = time.perf_counter()
                try:
                    r = http.post("/v1/predict", json=body, headers={"X-API-Key": token})
                    ok = r.status_code == 200
                except httpx.TransportError:
                    ok = False
                if ok:
                    latencies[i].append(time.perf_counter() - t0)
                    rows[i] += batch
                else:
                    errors[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 120)
    lat = np.concatenate([np.asarray(v) for v in latencies]) if any(latencies) else np.zeros(1)
    return {
        "requests": len(lat),
        "rows": int(sum(rows)),
        "errors": int(sum(errors)),
        "requests_per_s": len(lat) / seconds,
        "rows_per_s": sum(rows) / seconds,
        "p50_ms": float(np.percentile(lat, 50) * 1e3),
        "p99_ms": float(np.percentile(lat, 99) * 1e3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32, help="Rows per request.")
    parser.add_argument("--epsilon", type=float, default=0.5, help="ModelGuard-S ε.")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="A trained MNIST bundle (e.g. from benchmarks/mnist_knockoff.py); default: the "
        "untrained registry cnn, whose near-constant answers make ModelGuard-S's work trivial.",
    )
    args = parser.parse_args()
    x, source = inputs(10_000, seed=0)
    defenses = {"none": (), "modelguard_s": ("--param", f"epsilon={args.epsilon}")}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.model is not None:
            bundle = args.model
        else:
            bundle = save_model(
                Path(tmp) / "cnn.pt",
                build_model("cnn", (1, 28, 28), 10, seed=0),
                ModelInfo(arch="cnn", input_shape=(1, 28, 28), n_classes=10),
            )
        for name, extra in defenses.items():
            state = Path(tmp) / f"{name}.db"
            token = create_key(StateStore(state), name="bench", quota=None).token
            port = free_port()
            proc = start(bundle, state, port, "--defense", name, *extra)
            try:
                print(f"{name}: {args.clients} clients for {args.seconds:g} s …", flush=True)
                results[name] = load(
                    port, token, x, clients=args.clients, seconds=args.seconds, batch=args.batch
                )
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            if name == "modelguard_s":
                from modelsteal.defenses import ModelGuardS

                guard = ModelGuardS(
                    epsilon=args.epsilon, store=state.with_name(f"{name}.centroids.db")
                )
                results[name]["centroids"] = guard.n_centroids()
                guard.close()
            results[name]["logged_requests"] = StateStore(state).log_count()
            print(json.dumps(results[name]), flush=True)
    ratio = results["modelguard_s"]["rows_per_s"] / results["none"]["rows_per_s"]
    command = (
        f"python benchmarks/server_load.py --seconds {args.seconds:g} --clients {args.clients} "
        f"--batch {args.batch}" + (f" --model {args.model}" if args.model else "")
    )
    report = {
        "command": command,
        "clients": args.clients,
        "seconds": args.seconds,
        "rows_per_request": args.batch,
        "inputs": source,
        "model": str(args.model) if args.model else "build_model('cnn', (1, 28, 28), 10, seed=0)",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "note": "clients and server share the machine's CPUs",
        "results": results,
        "ratio_defended_undefended_rows_per_s": ratio,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "server_load.json").write_text(json.dumps(report, indent=2))
    lines = [
        "# Server load: no defense vs ModelGuard-S",
        "",
        f"`{command}` — {args.clients} clients, {args.seconds:g} s each, {args.batch} rows per "
        f"request, {source}, {report['machine']} (clients and server on the same CPUs).",
        "",
        "| defense | requests/s | rows/s | p50 ms | p99 ms | errors | logged requests |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['requests_per_s']:.1f} | {r['rows_per_s']:.0f} | {r['p50_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {r['errors']} | {r['logged_requests']} |"
        )
    lines += ["", f"Ratio defended / undefended (rows/s): **{ratio:.3f}** (goal ≥ 0.8).", ""]
    (args.out / "server_load.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
