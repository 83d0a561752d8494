"""The defended prediction server: keys, row quotas, validation, durable state, HTTP target."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import httpx
import numpy as np
import pytest

with warnings.catch_warnings():  # starlette's TestClient announces a move to httpx2
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from modelsteal.models import ModelInfo, TrainConfig, build_model, save_model, train_model
from modelsteal.server import Settings, StateStore, create_app, create_key, input_digest, revoke_key
from modelsteal.server.auth import RateLimiter
from modelsteal.targets import HttpTarget, QuotaExceeded, load_target

MG = {"epsilon": 0.5}

pytestmark = pytest.mark.filterwarnings(
    "ignore:Using `httpx` with `starlette.testclient`:DeprecationWarning",
    "ignore:The given NumPy array is not writable:UserWarning",
)


@pytest.fixture(scope="module")
def mlp_bundle(digits_mlp, tmp_path_factory) -> Path:
    info = ModelInfo(arch="mlp", input_shape=(64,), n_classes=10, params={"hidden": [64]})
    return save_model(tmp_path_factory.mktemp("model") / "digits_mlp.pt", digits_mlp, info)


def make_app(bundle: Path, state: Path, **overrides):
    settings = Settings(model=bundle, state=state, **overrides)
    app = create_app(settings)
    return app, app.state.service


def key(service, name="alice", quota=None) -> str:
    return create_key(service.store, name=name, quota=quota).token


def predict(client, token, x, **extra):
    body = {"inputs": np.asarray(x).tolist(), **extra}
    return client.post("/v1/predict", json=body, headers={"X-API-Key": token})


@pytest.fixture
def served(mlp_bundle, tmp_path):
    app, service = make_app(mlp_bundle, tmp_path / "state.db", max_batch_rows=64)
    with TestClient(app) as client:
        yield client, service


def test_health_info_and_openapi(served):
    client, service = served
    assert client.get("/v1/health").json()["status"] == "ok"
    token = key(service)
    info = client.get("/v1/info", headers={"X-API-Key": token}).json()
    assert info["n_classes"] == 10 and info["input_shape"] == [64]
    assert info["defense"] == "none" and info["output_kind"] == "probabilities"
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/predict", "/v1/info", "/v1/usage", "/v1/health"} <= set(paths)
    assert "/v1/explain" not in paths


def test_predict_answers_rows_and_counts_them(served, digits):
    client, service = served
    token = key(service, quota=100)
    X, _ = digits
    r = predict(client, token, X[:10])
    assert r.status_code == 200
    body = r.json()
    out = np.asarray(body["outputs"])
    assert out.shape == (10, 10) and np.allclose(out.sum(axis=1), 1.0)
    assert np.allclose(out, service.target.query(X[:10]))
    assert body["usage"]["used"] == 10 and body["usage"]["remaining"] == 90
    # the compact encoding gives the same answers
    arr = np.ascontiguousarray(X[:10], dtype="<f4")
    b64 = {"inputs_b64": base64.b64encode(arr.tobytes()).decode(), "shape": [10, 64]}
    r2 = client.post("/v1/predict", json=b64, headers={"Authorization": f"Bearer {token}"})
    assert r2.status_code == 200 and r2.json()["outputs"] == body["outputs"]


def _error(response, status: int, code: str, match: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    import re

    assert re.search(match, error["message"]), error["message"]
    return error


def test_auth_errors(served, digits):
    client, service = served
    X, _ = digits
    _error(
        client.post("/v1/predict", json={"inputs": X[:1].tolist()}),
        401,
        "missing_key",
        "No API key",
    )
    _error(predict(client, "msk_nope_nope", X[:1]), 401, "unknown_key", "not known")
    _error(predict(client, "garbage", X[:1]), 401, "unknown_key", "not known")
    token = key(service, name="bob")
    good_id = token.split("_")[1]
    _error(predict(client, f"msk_{good_id}_wrongsecret", X[:1]), 401, "unknown_key", "not known")
    assert predict(client, token, X[:1]).status_code == 200
    revoke_key(service.store, "bob")
    _error(predict(client, token, X[:1]), 403, "key_revoked", "revoked")
    _error(client.get("/v1/usage", headers={"X-API-Key": token}), 403, "key_revoked", "revoked")


def test_bad_inputs_get_4xx_with_clear_messages(served, digits):
    client, service = served
    token = key(service, quota=1000)
    X, _ = digits
    h = {"X-API-Key": token}
    _error(
        predict(client, token, X[:2, :10]),
        422,
        "invalid_input",
        r"expected inputs of shape \(n, 64\)",
    )
    _error(predict(client, token, X[0]), 422, "invalid_input", r"shape")
    nan = X[:2].copy().tolist()
    nan[1][3] = float("nan")
    r = client.post(
        "/v1/predict",
        content=json.dumps({"inputs": nan}),
        headers={**h, "Content-Type": "application/json"},
    )
    _error(r, 422, "invalid_input", r"finite; rows \[1\]")
    _error(
        client.post("/v1/predict", json={"inputs": [["a"] * 64]}, headers=h),
        422,
        "invalid_input",
        "numeric",
    )
    _error(
        client.post("/v1/predict", json={"inputs": [[1, [2]]]}, headers=h),
        422,
        "invalid_input",
        "could not be read",
    )
    _error(
        client.post("/v1/predict", json={"inputs": []}, headers=h), 422, "invalid_input", "shape"
    )
    _error(client.post("/v1/predict", json={}, headers=h), 422, "invalid_input", "exactly one")
    _error(
        client.post("/v1/predict", json={"inputs": 3}, headers=h), 422, "invalid_request", "inputs"
    )
    _error(
        client.post("/v1/predict", json={"inputs_b64": "!!", "shape": [1, 64]}, headers=h),
        422,
        "invalid_input",
        "base64",
    )
    _error(
        client.post("/v1/predict", json={"inputs_b64": "AAAA", "shape": [1, 64]}, headers=h),
        422,
        "invalid_input",
        "holds 3 bytes",
    )
    for shape in ([1, 10**400], [1, 0, 2**70], [1, 8, 8]):  # never a 500, whatever the shape
        _error(
            client.post("/v1/predict", json={"inputs_b64": "", "shape": shape}, headers=h),
            422,
            "invalid_input",
            r"'shape' must be \[n, 64\]",
        )
    r = client.post(
        "/v1/predict", content=b"{not json", headers={**h, "Content-Type": "application/json"}
    )
    _error(r, 400, "malformed_body", "not valid JSON")
    _error(predict(client, token, np.zeros((65, 64))), 413, "too_many_rows", "at most 64 rows")
    big = b'{"inputs": [' + b"0," * (9 * 1024 * 1024) + b"0]}"
    _error(
        client.post("/v1/predict", content=big, headers={**h, "Content-Type": "application/json"}),
        413,
        "body_too_large",
        "larger than",
    )
    # nothing refused was counted
    assert client.get("/v1/usage", headers=h).json()["used"] == 0


def test_quota_and_rate_limit_429(mlp_bundle, tmp_path, digits):
    X, _ = digits
    app, service = make_app(mlp_bundle, tmp_path / "s.db", rate_limit=1.0, rate_burst=2)
    with TestClient(app) as client:
        token = key(service, quota=5)
        assert predict(client, token, X[:4]).status_code == 200
        error = _error(
            predict(client, token, X[:2]), 429, "quota_exceeded", r"quota of 5 rows, 4 are used"
        )
        assert error["details"] == {"quota": 5, "used": 4, "requested": 2}
        r = predict(client, token, X[:2])
        _error(r, 429, "rate_limited", "1 requests per second")
        assert int(r.headers["Retry-After"]) >= 1
    limiter = RateLimiter(2.0, 1)
    assert limiter.take("k", now=0.0) == 0.0
    assert limiter.take("k", now=0.1) == pytest.approx(0.4)
    assert limiter.take("k", now=0.6) == 0.0


def test_quota_is_exact_under_concurrent_requests(served, digits):
    client, service = served
    X, _ = digits
    token = key(service, quota=100)
    answered: list[int] = []
    refused: list[int] = []

    def worker() -> None:
        for _ in range(6):  # bounded: 16 threads × 6 requests × 7 rows >> 100
            r = predict(client, token, X[:7])
            (answered if r.status_code == 200 else refused).append(r.status_code)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert set(refused) == {429}
    assert 7 * len(answered) == 98  # 14 batches of 7 fit in 100; never one more
    usage = client.get("/v1/usage", headers={"X-API-Key": token}).json()
    assert usage["used"] == usage["answered_rows"] == 98 and usage["requests"] == 14


def test_reserve_is_atomic_across_connections(tmp_path):
    stores = [StateStore(tmp_path / "q.db") for _ in range(3)]  # three connections, like processes
    kid = create_key(stores[0], name="k", quota=50).record.id
    granted: list[int] = []

    def worker(store) -> None:
        for _ in range(40):
            try:
                store.reserve(kid, 3)
                granted.append(3)
            except Exception:
                pass

    threads = [threading.Thread(target=worker, args=(s,)) for s in stores for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sum(granted) == 48 and stores[1].get_key(kid).used == 48
    assert stores[2].recover() == 48 and stores[0].get_key(kid).used == 0


def test_keys_cannot_read_each_others_usage(served, digits):
    client, service = served
    X, _ = digits
    a, b = key(service, "a", quota=50), key(service, "b", quota=70)
    assert predict(client, a, X[:5]).status_code == 200
    ua = client.get("/v1/usage", headers={"X-API-Key": a}).json()
    a_id = ua["key_id"]
    ub = client.get("/v1/usage", params={"key_id": a_id}, headers={"X-API-Key": b}).json()
    assert ua["used"] == 5 and ua["quota"] == 50
    assert ub["key_id"] != a_id and ub["used"] == 0 and ub["quota"] == 70 and ub["name"] == "b"


def test_query_log_has_every_answered_query(served, digits):
    client, service = served
    X, _ = digits
    token = key(service, quota=30)
    sent = []
    for start in range(0, 40, 8):
        r = predict(client, token, X[start : start + 8])
        if r.status_code == 200:
            sent.append((X[start : start + 8], np.asarray(r.json()["outputs"])))
    assert len(sent) == 3  # 24 rows fit in 30; the 4th batch of 8 does not
    entries = service.store.log_entries()
    assert len(entries) == 3
    for (x, out), entry in zip(sent, entries, strict=True):
        assert entry.input_digest == input_digest(x) and entry.rows == len(x)
        np.testing.assert_array_equal(entry.response, out)


def test_modelguard_s_answers_survive_a_restart(mlp_bundle, tmp_path, digits):
    X, _ = digits
    state = tmp_path / "mg.db"
    x = X[800:900]
    app, service = make_app(mlp_bundle, state, defense="modelguard_s", defense_params=MG)
    with TestClient(app) as client:
        token = key(service, quota=None)
        first = np.asarray(predict(client, token, x).json()["outputs"])
        assert service.defense.n_centroids() > 0
        clean = service.target.query(x)
        assert np.abs(first - clean).sum(axis=1).max() <= MG["epsilon"] + 1e-9
    app2, _ = make_app(mlp_bundle, state, defense="modelguard_s", defense_params=MG)
    with TestClient(app2) as client:
        again = np.asarray(predict(client, token, x).json()["outputs"])
        reordered = np.asarray(predict(client, token, x[::-1]).json()["outputs"])[::-1]
    np.testing.assert_array_equal(again, first)
    np.testing.assert_array_equal(reordered, first)


@pytest.mark.parametrize("synchronous", ["FULL", "NORMAL"])
def test_synchronous_applies_to_the_state_and_the_centroid_file(mlp_bundle, tmp_path, synchronous):
    _, service = make_app(
        mlp_bundle,
        tmp_path / "s.db",
        defense="modelguard_s",
        defense_params=MG,
        synchronous=synchronous,
    )
    mode = {"FULL": 2, "NORMAL": 1}[synchronous]
    centroids = service.defense._store
    assert centroids.synchronous == synchronous
    with centroids.exclusive("probe"):
        assert centroids._connection().execute("PRAGMA synchronous").fetchone()[0] == mode
    assert service.store._conn.execute("PRAGMA synchronous").fetchone()[0] == mode
    service.close()
    assert centroids._conn is None  # the server closed the centroid file it opened


def test_explain_only_when_enabled(mlp_bundle, tmp_path, served, digits):
    client, service = served
    X, _ = digits
    token = key(service)
    _error(
        client.post("/v1/explain", json={"inputs": X[:2].tolist()}, headers={"X-API-Key": token}),
        404,
        "not_found",
        "No route",
    )
    app, svc = make_app(mlp_bundle, tmp_path / "e.db", explain=True)
    with TestClient(app) as c2:
        t2 = key(svc, quota=10)
        r = c2.post("/v1/explain", json={"inputs": X[:3].tolist()}, headers={"X-API-Key": t2})
        assert r.status_code == 200
        assert np.asarray(r.json()["gradients"]).shape == (3, 64) and r.json()["usage"]["used"] == 3


def test_http_target_in_process(served, digits):
    client, service = served
    X, _ = digits
    token = key(service, quota=40)
    target = HttpTarget("http://testserver", api_key=token, client=client, batch_rows=16)
    assert target.n_classes == 10 and target.input_shape == (64,)
    np.testing.assert_allclose(target.query(X[:30]), service.target.query(X[:30]))
    assert target.rows_answered == 30
    with pytest.raises(QuotaExceeded, match=r"quota is 40 rows, 30 are used and 16 more"):
        target.query(X[:16])
    with pytest.raises(ValueError, match="expected inputs of shape"):
        target.query(X[:2, :5])
    assert target.usage()["used"] == 30


# -- a real uvicorn process -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, state: Path, port: int, *args: str) -> subprocess.Popen:
    code = "import typer; from modelsteal.server.cli import serve; typer.run(serve)"
    cmd = [
        sys.executable,
        "-c",
        code,
        "--model",
        str(model),
        "--state",
        str(state),
        "--port",
        str(port),
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # Generous: starting Python, torch and uvicorn takes seconds, far longer on a busy machine.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start within 120 s")


@pytest.fixture(scope="module")
def mnist_cnn_bundle(digits, tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A tiny MNIST-shaped CNN (1×28×28) trained on digits scaled up to 28×28."""
    X, y = digits
    images = np.kron(X.reshape(-1, 8, 8), np.ones((3, 3), dtype=np.float32))
    images = np.pad(images, ((0, 0), (2, 2), (2, 2)))[:, None].astype(np.float32)
    params = {"channels": [4, 8], "hidden": 16, "dropout": 0.0}
    model = build_model("cnn", (1, 28, 28), 10, seed=0, **params)
    train_model(model, images[:600], y[:600], config=TrainConfig(epochs=3), seed=0)
    info = ModelInfo(arch="cnn", input_shape=(1, 28, 28), n_classes=10, params=params)
    path = save_model(tmp_path_factory.mktemp("cnn") / "mnist_cnn.pt", model, info)
    return path, images


def test_knockoff_over_http_stops_at_exactly_the_quota(mnist_cnn_bundle, tmp_path):
    from modelsteal.attacks import build_recipe, extract

    model, images = mnist_cnn_bundle
    state = tmp_path / "serve.db"
    quota = 300
    token = create_key(StateStore(state), name="attacker", quota=quota).token
    port = free_port()
    proc = start_server(model, state, port, "--defense", "modelguard_s", "--param", "epsilon=0.5")
    try:
        target = load_target(f"http://127.0.0.1:{port}", api_key=token)
        assert isinstance(target, HttpTarget) and target.input_shape == (1, 28, 28)
        assert target.info["defense"] == "modelguard_s"
        recipe = dataclasses.replace(build_recipe("knockoff", epochs=1), query_batch_size=100)
        # The quota stops the attack: it keeps and trains on every row it was answered.
        result = extract(target, recipe, pool=images[600:], budget=500, seed=0)
        assert result.queries == len(result.queried_x) == quota
        assert "quota is 300 rows, 300 are used" in result.info["stopped"]
        assert target.rows_answered == quota
        with pytest.raises(QuotaExceeded, match="quota is 300 rows, 300 are used"):
            target.query(images[:1])
        usage = target.usage()
        assert usage["used"] == usage["answered_rows"] == quota
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert sum(e.rows for e in StateStore(state).log_entries()) == quota


# -- fuzzing the OpenAPI document -----------------------------------------------------------------


def test_fuzzing_the_openapi_spec_finds_no_5xx(mlp_bundle, tmp_path):
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error

    app, service = make_app(
        mlp_bundle,
        tmp_path / "fuzz.db",
        defense="modelguard_s",
        defense_params=MG,
        explain=True,
        max_batch_rows=32,
    )
    token = key(service, name="fuzzer", quota=None)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/predict", "/v1/explain", "/v1/usage"}
    calls: list[int] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def fuzz(case) -> None:
            # half the cases carry a valid key, so the fuzzer gets past authentication
            headers = {"X-API-Key": token} if len(calls) % 2 == 0 else {}
            response = case.call_and_validate(checks=[not_a_server_error], headers=headers)
            calls.append(response.status_code)

        fuzz()
    assert calls and max(calls) < 500


def test_keys_commands(tmp_path):
    from typer.testing import CliRunner

    from modelsteal.server.cli import keys_app

    runner = CliRunner()
    state = str(tmp_path / "k.db")
    made = runner.invoke(
        keys_app, ["create", "--name", "carol", "--quota", "500", "--state", state]
    )
    assert made.exit_code == 0, made.output
    token = made.stdout.strip().splitlines()[-1]
    assert token.startswith("msk_")
    listed = runner.invoke(keys_app, ["list", "--state", state])
    assert "carol" in listed.output and "500" in listed.output and token not in listed.output
    assert runner.invoke(keys_app, ["revoke", "carol", "--state", state]).exit_code == 0
    again = runner.invoke(keys_app, ["revoke", "carol", "--state", state])
    assert again.exit_code == 2 and "No active key" in again.output
    assert StateStore(state).key_secret(token.split("_")[1])[1] != token.encode()  # stored hashed
