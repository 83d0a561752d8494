"""SIGKILL in the middle of a load: no answer changes after a restart, and the log lost nothing."""

from __future__ import annotations

import base64
import threading
import time

import httpx
import numpy as np
import pytest

from modelsteal.models import ModelInfo, save_model
from modelsteal.server import StateStore, create_key, input_digest
from test_server import free_port, start_server

pytestmark = pytest.mark.slow


def _body(x: np.ndarray) -> dict:
    arr = np.ascontiguousarray(x, dtype="<f4")
    return {"inputs_b64": base64.b64encode(arr.tobytes()).decode(), "shape": list(arr.shape)}


def test_sigkill_mid_load_changes_no_answer(digits, digits_mlp, tmp_path):
    X, _ = digits
    model = save_model(
        tmp_path / "mlp.pt",
        digits_mlp,
        ModelInfo(arch="mlp", input_shape=(64,), n_classes=10, params={"hidden": [64]}),
    )
    state = tmp_path / "state.db"
    token = create_key(StateStore(state), name="load", quota=None).token
    port = free_port()
    args = ("--defense", "modelguard_s", "--param", "epsilon=0.3")
    server = start_server(model, state, port, *args)
    answered: list[tuple[np.ndarray, np.ndarray]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            for _ in range(2000):  # bounded in count ...
                if stop.is_set():
                    return
                n = int(rng.integers(4, 33))
                rows = rng.choice(len(X), size=n, replace=False)
                # noise makes fresh predictions, so centroids keep being appended under load
                x = np.clip(X[rows] + rng.normal(0, 0.15, (n, 64)), 0, 1).astype(np.float32)
                try:
                    r = http.post("/v1/predict", json=_body(x), headers={"X-API-Key": token})
                except httpx.TransportError:
                    return  # the server is gone
                if r.status_code != 200:
                    return
                with lock:
                    answered.append((x, np.asarray(r.json()["outputs"], dtype=np.float64)))

    threads = [threading.Thread(target=client, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10  # ... and in time
    while time.monotonic() < deadline and len(answered) < 60:
        time.sleep(0.05)
    server.kill()  # SIGKILL, with requests in flight
    server.wait(timeout=10)
    stop.set()
    for t in threads:
        t.join(timeout=15)
    assert len(answered) >= 20, "too little load before the kill to test anything"

    server = start_server(model, state, port, *args)
    try:
        changed = 0
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            for x, before in answered:
                r = http.post("/v1/predict", json=_body(x), headers={"X-API-Key": token})
                assert r.status_code == 200, r.text
                changed += int(not np.array_equal(np.asarray(r.json()["outputs"]), before))
        assert changed == 0
    finally:
        server.kill()
        server.wait(timeout=10)

    store = StateStore(state)
    logged = {}
    for entry in store.log_entries():
        logged.setdefault(entry.input_digest, []).append(entry.response)
    for x, before in answered:
        assert any(np.array_equal(r, before) for r in logged[input_digest(x)])
    # reservations of requests cut off by the kill were given back on restart
    kid = token.split("_")[1]
    assert store.get_key(kid).used == sum(e.rows for e in store.log_entries())
