"""A target served over HTTP by ``modelsteal serve`` (or anything speaking the same API)."""

from __future__ import annotations

import base64
import logging
import time
from typing import Any

import numpy as np

from modelsteal._checks import check_float, check_inputs, check_int, check_probabilities
from modelsteal.errors import InputValidationError, ModelStealError, QueryBudgetExceeded
from modelsteal.targets._base import OutputKind

log = logging.getLogger(__name__)


class HttpTargetError(ModelStealError, RuntimeError):
    """The server refused a request (other than for quota or bad inputs), or could not be
    reached after every retry."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class QuotaExceeded(QueryBudgetExceeded):
    """The server's quota for this API key does not cover the batch; nothing of it was answered.

    A :class:`~modelsteal.errors.QueryBudgetExceeded`, so attacks stop as at a local budget.
    """

    def __init__(self, *, quota: int, used: int, requested: int, key: str, message: str) -> None:
        super().__init__(budget=quota, spent=used, requested=requested)
        self.key = key
        self.server_message = message

    def __str__(self) -> str:
        return (
            f"The server's quota for key {self.key} is exhausted: its quota is {self.budget} "
            f"rows, {self.spent} are used and {self.requested} more were asked for "
            f"({self.remaining} remain). {self.server_message}"
        )


class HttpTarget:
    """A :class:`~modelsteal.targets.Target` answered by a prediction server.

    Reads ``n_classes``, ``input_shape`` and ``output_kind`` from ``GET /v1/info``; ``query``
    sends batches of at most ``batch_rows`` rows (default: the server's limit) as base64 float32
    to ``POST /v1/predict``. Rate limits (429 ``rate_limited``), server faults (5xx) and
    connection errors are retried up to ``retries`` times with exponential backoff (``backoff``
    seconds, doubling; a ``Retry-After`` header is honoured). An exhausted quota raises
    :class:`QuotaExceeded` at once; other 4xx answers raise at once too.

    ``rows_answered`` counts the rows the server answered to this object. A batch larger than
    ``batch_rows`` is sent in several requests: if the quota runs out part-way, the earlier
    requests were answered (and counted) but ``query`` raises, so keep ``batch_rows`` at least
    the attack's batch size when every answered row matters.
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str,
        timeout: float = 30.0,
        retries: int = 5,
        backoff: float = 0.25,
        max_backoff: float = 10.0,
        batch_rows: int | None = None,
        client: Any = None,
    ) -> None:
        import httpx

        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise InputValidationError(f"HttpTarget needs an http(s) URL. Got {url!r} instead.")
        if not isinstance(api_key, str) or not api_key:
            raise InputValidationError("HttpTarget needs an API key (api_key='msk_...').")
        self.url = url.rstrip("/")
        self.timeout = check_float(
            timeout, name="timeout", owner="HttpTarget", low=0, low_open=True
        )
        self.retries = check_int(retries, name="retries", owner="HttpTarget", low=0)
        self.backoff = check_float(backoff, name="backoff", owner="HttpTarget", low=0)
        self.max_backoff = check_float(max_backoff, name="max_backoff", owner="HttpTarget", low=0)
        self._owns_client = client is None
        self._client = client or httpx.Client(base_url=self.url, timeout=self.timeout)
        self._headers = {"X-API-Key": api_key}
        parts = api_key.split("_", 2)
        self._key_id = parts[1] if len(parts) == 3 else "(this key)"
        self.rows_answered = 0
        self.requests_sent = 0
        info = self._call("GET", "/v1/info")
        self.info: dict[str, Any] = info
        self.n_classes = int(info["n_classes"])
        self.input_shape = tuple(int(s) for s in info["input_shape"])
        self.output_kind: OutputKind = info.get("output_kind", "probabilities")
        limit = int(info.get("max_batch_rows", 256))
        if batch_rows is None:
            batch_rows = limit
        self.batch_rows = check_int(batch_rows, name="batch_rows", owner="HttpTarget", low=1)
        self.batch_rows = min(self.batch_rows, limit)
        if info.get("explain"):
            self.explain = self._explain  # only servers that explain offer explain()

    # -- the Target protocol ------------------------------------------------------------------

    def query(self, x: np.ndarray) -> np.ndarray:
        batch = check_inputs(x, input_shape=self.input_shape, where="HttpTarget.query")
        outs = [
            np.asarray(self._send("/v1/predict", chunk)["outputs"], dtype=np.float64)
            for chunk in self._chunks(batch)
        ]
        return check_probabilities(
            np.concatenate(outs), n=len(batch), n_classes=self.n_classes, where="HttpTarget"
        )

    def _explain(self, x: np.ndarray) -> np.ndarray:
        batch = check_inputs(x, input_shape=self.input_shape, where="HttpTarget.explain")
        outs = [
            np.asarray(self._send("/v1/explain", chunk)["gradients"], dtype=np.float64)
            for chunk in self._chunks(batch)
        ]
        return np.concatenate(outs).reshape(len(batch), *self.input_shape)

    def usage(self) -> dict[str, Any]:
        """The key's own counts on the server (``GET /v1/usage``)."""
        return self._call("GET", "/v1/usage")

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> HttpTarget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"HttpTarget({self.url!r}, n_classes={self.n_classes}, input_shape={self.input_shape})"
        )

    # -- HTTP ---------------------------------------------------------------------------------

    def _chunks(self, batch: np.ndarray):
        for start in range(0, len(batch), self.batch_rows):
            yield batch[start : start + self.batch_rows]

    def _send(self, path: str, chunk: np.ndarray) -> dict[str, Any]:
        arr = np.ascontiguousarray(chunk, dtype="<f4")
        body = {
            "inputs_b64": base64.b64encode(arr.tobytes()).decode("ascii"),
            "shape": list(arr.shape),
            "dtype": "float32",
        }
        answer = self._call("POST", path, json=body, rows=len(arr))
        self.rows_answered += len(arr)
        return answer

    def _call(self, method: str, path: str, *, rows: int = 0, **kwargs: Any) -> dict[str, Any]:
        import httpx

        attempt = 0
        while True:
            wait: float | None = None
            try:
                response = self._client.request(
                    method, self.url + path, headers=self._headers, **kwargs
                )
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
                status = None
            else:
                self.requests_sent += 1
                if response.status_code < 300:
                    return response.json()
                status = response.status_code
                error = _error_of(response)
                code, message = error.get("code", ""), error.get("message", response.text[:200])
                problem = f"{status} {code}: {message}"
                if status == 429 and code == "quota_exceeded":
                    details = error.get("details") or {}
                    raise QuotaExceeded(
                        quota=int(details.get("quota", 0)),
                        used=int(details.get("used", 0)),
                        requested=int(details.get("requested", rows)),
                        key=self._key_id,
                        message=message,
                    )
                if status in (400, 413, 422):
                    raise InputValidationError(f"The server refused the inputs: {message}")
                if status != 429 and status < 500:
                    raise HttpTargetError(
                        f"{method} {self.url}{path} failed with {status} ({code}): {message}",
                        status=status,
                        code=code,
                    )
                retry_after = response.headers.get("Retry-After")
                if retry_after is not None:
                    try:
                        wait = float(retry_after)
                    except ValueError:
                        wait = None
            if attempt >= self.retries:
                raise HttpTargetError(
                    f"{method} {self.url}{path} failed after {attempt + 1} attempts: {problem}",
                    status=status,
                )
            delay = min(self.max_backoff, self.backoff * 2**attempt)
            if wait is not None:
                delay = max(delay, min(wait, self.max_backoff))
            log.info("retrying %s %s in %.2f s (%s)", method, path, delay, problem)
            time.sleep(delay)
            attempt += 1


def _error_of(response: Any) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}
