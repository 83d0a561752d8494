"""What the routes call: decode inputs, spend quota, answer through the defense, log, settle.

Routes stay thin; every rule of the service lives here and raises :class:`ApiError` with the HTTP
status, a stable code and a message that says what to do.
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from modelsteal._checks import check_inputs
from modelsteal.errors import InputValidationError, InvalidParameterError
from modelsteal.server.auth import RateLimiter, retry_after_header
from modelsteal.server.schemas import PredictRequest
from modelsteal.server.settings import Settings
from modelsteal.server.store import KeyRecord, ReserveRefused, StateStore

log = logging.getLogger(__name__)

# Defenses that are safe to call from many threads at once; others are serialised by a lock
# (their random generators are not thread-safe).
_CONCURRENT_DEFENSES = {"none", "modelguard_s", "top1", "topk", "rounding", "reverse_sigmoid"}


class ApiError(Exception):
    """An answer other than 200: status, code, message, optional details and headers."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}


def quota_error(key: KeyRecord, requested: int) -> ApiError:
    remaining = key.remaining or 0
    return ApiError(
        429,
        "quota_exceeded",
        f"Quota exceeded: key {key.id} has a quota of {key.quota} rows, {key.used} are used and "
        f"{requested} more were asked for ({remaining} remain). Ask for at most {remaining} rows, "
        "or ask the provider for a larger quota.",
        details={"quota": key.quota, "used": key.used, "requested": requested},
    )


class PredictionService:
    """The model, its defense and the state file, behind the rules of the API."""

    def __init__(self, settings: Settings) -> None:
        from modelsteal.defenses import DEFENSES, build_defense
        from modelsteal.targets import load_target

        self.settings = settings
        self.target = load_target(settings.model, input_shape=settings.input_shape)
        self.input_shape = tuple(int(s) for s in self.target.input_shape)
        self.n_classes = int(self.target.n_classes)
        if settings.explain and not callable(getattr(self.target, "explain", None)):
            raise InvalidParameterError(
                f"{settings.model} cannot explain (only torch models can): serve it without "
                "--explain."
            )
        params = dict(settings.defense_params)
        cls = DEFENSES.get(settings.defense)
        self._centroids = None
        if cls.stateful:
            if "store" in params:
                raise InvalidParameterError(
                    "The server keeps a stateful defense's state itself: pass --centroid-state "
                    "PATH instead of a 'store' parameter."
                )
            from modelsteal.defenses import SQLiteCentroidStore

            self._centroids = SQLiteCentroidStore(
                settings.centroid_path, synchronous=settings.synchronous
            )
            params["store"] = self._centroids
        self.defense = build_defense(settings.defense, **params)
        self.defense_params = {k: v for k, v in params.items() if k != "store" and _plain(v)}
        self._defense_lock = None if settings.defense in _CONCURRENT_DEFENSES else threading.Lock()
        self.store = StateStore(settings.state, synchronous=settings.synchronous)
        self.store.recover()
        self.limiter = RateLimiter(settings.rate_limit, settings.rate_burst)

    @property
    def output_kind(self) -> str:
        return "labels" if self.settings.labels_only else "probabilities"

    def close(self) -> None:
        self.store.close()
        closer = getattr(self.defense, "close", None)
        if callable(closer):
            closer()  # closes only a store the defense made itself ...
        if self._centroids is not None:
            self._centroids.close()  # ... so the centroid file the server opened is closed here

    # -- rules --------------------------------------------------------------------------------

    def rate_check(self, key: KeyRecord) -> None:
        wait = self.limiter.take(key.id)
        if wait > 0:
            raise ApiError(
                429,
                "rate_limited",
                f"Rate limit: key {key.id} may send {self.limiter.rate:g} requests per second "
                f"(bursts of {self.limiter.burst}). Retry after {wait:.2f} s.",
                details={"retry_after_seconds": wait},
                headers={"Retry-After": retry_after_header(wait)},
            )

    def decode(self, body: PredictRequest) -> np.ndarray:
        """The request's batch as a validated float32 array (or an ApiError)."""
        max_rows = self.settings.max_batch_rows
        where = "inputs"
        if (body.inputs is None) == (body.inputs_b64 is None):
            raise ApiError(422, "invalid_input", "Send exactly one of 'inputs' and 'inputs_b64'.")
        if body.inputs is not None:
            if len(body.inputs) > max_rows:
                raise _too_many(len(body.inputs), max_rows)
            raw: Any = body.inputs
        else:
            shape = body.shape
            if not shape or any(s < 0 for s in shape):
                raise ApiError(
                    422,
                    "invalid_input",
                    "'inputs_b64' needs 'shape': the batch's shape, e.g. [n, 1, 28, 28].",
                )
            if shape[0] > max_rows:
                raise _too_many(shape[0], max_rows)
            if tuple(shape[1:]) != tuple(self.input_shape):
                raise ApiError(
                    422,
                    "invalid_input",
                    f"'shape' must be [n, {', '.join(map(str, self.input_shape))}]. "
                    f"Got {list(shape)[:8]} instead.",
                )
            try:
                data = base64.b64decode(body.inputs_b64, validate=True)
            except (binascii.Error, ValueError):
                raise ApiError(422, "invalid_input", "'inputs_b64' is not valid base64.") from None
            dtype = np.dtype(body.dtype).newbyteorder("<")
            count = math.prod(shape)
            if count * dtype.itemsize != len(data):
                raise ApiError(
                    422,
                    "invalid_input",
                    f"'inputs_b64' holds {len(data)} bytes but shape {list(shape)} of "
                    f"{body.dtype} needs {count * dtype.itemsize}.",
                )
            raw = np.frombuffer(data, dtype=dtype).reshape(shape)
            where = "inputs_b64"
        try:
            return check_inputs(raw, input_shape=self.input_shape, where=where)
        except InputValidationError as exc:
            raise ApiError(422, "invalid_input", str(exc)) from None

    def _spend(
        self, key: KeyRecord, x: np.ndarray, endpoint: str, answer: Callable[[], np.ndarray]
    ) -> tuple[np.ndarray, KeyRecord]:
        """Reserve rows, answer, log and settle; release the rows if anything fails."""
        n = len(x)
        try:
            reservation = self.store.reserve(key.id, n)
        except ReserveRefused as refused:
            if refused.reason == "quota" and refused.key is not None:
                raise quota_error(refused.key, n) from None
            if refused.reason == "revoked":
                raise ApiError(403, "key_revoked", f"Key {key.id} has been revoked.") from None
            raise ApiError(401, "unknown_key", "The API key is not known.") from None
        try:
            out = answer()
            self.store.finish(
                reservation,
                key_id=key.id,
                endpoint=endpoint,
                x=x,
                response=out,
                keep_response=self.settings.log_responses,
            )
        except BaseException:
            try:
                self.store.release(reservation)
            except Exception:  # the state file is gone: recover() gives the rows back on restart
                log.exception("could not release reservation %d", reservation)
            raise
        fresh = self.store.get_key(key.id) or key
        return out, fresh

    def predict(self, key: KeyRecord, x: np.ndarray) -> tuple[np.ndarray, KeyRecord]:
        def answer() -> np.ndarray:
            clean = self.target.query(x)
            inputs = x if self.defense.needs_inputs else None
            if self._defense_lock is None:
                out = self.defense.perturb(clean, x=inputs)
            else:
                with self._defense_lock:
                    out = self.defense.perturb(clean, x=inputs)
            if self.settings.labels_only:
                hard = np.zeros_like(out)
                hard[np.arange(len(out)), out.argmax(axis=1)] = 1.0
                out = hard
            return out

        return self._spend(key, x, "predict", answer)

    def explain(self, key: KeyRecord, x: np.ndarray) -> tuple[np.ndarray, KeyRecord]:
        def answer() -> np.ndarray:
            grads = np.asarray(self.target.explain(x), dtype=np.float64)
            if not np.all(np.isfinite(grads)):
                raise RuntimeError("The model produced non-finite gradients.")
            return grads

        return self._spend(key, x, "explain", answer)


def _too_many(n: int, max_rows: int) -> ApiError:
    return ApiError(
        413,
        "too_many_rows",
        f"The batch has {n} rows; this server answers at most {max_rows} rows per request. "
        "Split it into smaller batches.",
        details={"rows": n, "max_batch_rows": max_rows},
    )


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool | list | tuple | dict)
