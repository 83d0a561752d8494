"""The app factory and the routes (thin: each calls :class:`PredictionService`).

Errors always come back as ``{"error": {"code", "message", "details"}}``:

- 400 ``malformed_body`` (not JSON), 401 ``missing_key`` / ``unknown_key``, 403 ``key_revoked``,
  404 ``not_found`` (also ``/v1/explain`` when explanations are off), 413 ``body_too_large`` /
  ``too_many_rows``, 422 ``invalid_request`` (schema) / ``invalid_input`` (shape, dtype, NaN),
  429 ``quota_exceeded`` / ``rate_limited`` (with ``Retry-After``).
- 500 ``internal_error`` only for a fault of the server itself (logged with its traceback).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelsteal._version import __version__
from modelsteal.server.auth import verify_token
from modelsteal.server.schemas import (
    ErrorResponse,
    ExplainResponse,
    HealthResponse,
    InfoResponse,
    PredictRequest,
    PredictResponse,
    Usage,
)
from modelsteal.server.service import ApiError, PredictionService
from modelsteal.server.settings import Settings
from modelsteal.server.store import KeyRecord

log = logging.getLogger(__name__)

# -- dependencies -----------------------------------------------------------------------------

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)
_bearer = HTTPBearer(auto_error=False)


def get_service(request: Request) -> PredictionService:
    return request.app.state.service


Service = Annotated[PredictionService, Depends(get_service)]


def authenticate(
    service: Service,
    api_key: Annotated[str | None, Security(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> KeyRecord:
    token = api_key or (bearer.credentials if bearer is not None else None)
    if not token:
        raise ApiError(
            401,
            "missing_key",
            "No API key: send it as the X-API-Key header (or Authorization: Bearer KEY).",
            headers={"WWW-Authenticate": "Bearer"},
        )
    key = verify_token(service.store, token)
    if key is None:
        raise ApiError(
            401, "unknown_key", "The API key is not known.", headers={"WWW-Authenticate": "Bearer"}
        )
    if key.revoked is not None:
        raise ApiError(403, "key_revoked", f"Key {key.id} has been revoked.")
    return key


Caller = Annotated[KeyRecord, Depends(authenticate)]

# -- body size --------------------------------------------------------------------------------


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413 before anything parses them.

    A declared Content-Length over the limit is refused at once; otherwise the body is read (at
    most ``max_bytes`` + one chunk) and replayed to the app.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                if int(declared) > self.max_bytes:
                    await self._refuse(scope, send)
                    return
            except ValueError:
                pass
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._refuse(scope, send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        response = _error(
            413,
            "body_too_large",
            f"The request body is larger than this server's limit of {self.max_bytes} bytes. "
            "Send fewer rows per request (or the compact 'inputs_b64' encoding).",
            details={"max_body_bytes": self.max_bytes},
        )
        await response(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def _error(
    status: int,
    code: str,
    message: str,
    *,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details}}
    return JSONResponse(body, status_code=status, headers=headers)


# -- the app ----------------------------------------------------------------------------------

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in (
        (400, "Malformed body"),
        (401, "Missing or unknown API key"),
        (403, "Revoked API key"),
        (413, "Body too large or too many rows"),
        (422, "Invalid request or inputs"),
        (429, "Quota exceeded or rate limited"),
    )
}


def create_app(settings: Settings, *, service: PredictionService | None = None) -> FastAPI:
    """Build the app: load the model and defense, open the state, wire the routes."""
    service = service or PredictionService(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()

    app = FastAPI(
        title="modelsteal prediction server",
        version=__version__,
        description="A model behind a defense, with API keys, row quotas and durable state.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    _install_error_handlers(app)

    @app.get("/v1/health", response_model=HealthResponse, tags=["service"])
    def health(service: Service) -> dict[str, Any]:
        """Liveness and readiness: the model is loaded and the state file answers."""
        if not service.store.ping():
            raise RuntimeError("The state file does not answer.")
        return {"status": "ok", "version": __version__}

    @app.get("/v1/info", response_model=InfoResponse, responses=_ERRORS, tags=["model"])
    def info(service: Service, caller: Caller) -> dict[str, Any]:
        """What the model takes and returns, and the defense in front of it."""
        return {
            "n_classes": service.n_classes,
            "input_shape": list(service.input_shape),
            "output_kind": service.output_kind,
            "defense": service.settings.defense,
            "defense_params": service.defense_params,
            "max_batch_rows": service.settings.max_batch_rows,
            "max_body_bytes": service.settings.max_body_bytes,
            "explain": service.settings.explain,
            "input_encodings": ["json", "base64"],
        }

    @app.get("/v1/usage", response_model=Usage, responses=_ERRORS, tags=["keys"])
    def usage(service: Service, caller: Caller) -> dict[str, Any]:
        """The calling key's own counts (no key can read another's)."""
        return _usage(service, service.store.get_key(caller.id) or caller)

    @app.post("/v1/predict", response_model=PredictResponse, responses=_ERRORS, tags=["model"])
    def predict(body: PredictRequest, service: Service, caller: Caller) -> JSONResponse:
        """Defended answers for a batch; each row counts against the key's quota."""
        service.rate_check(caller)
        x = service.decode(body)
        out, key = service.predict(caller, x)
        return JSONResponse(
            {
                "outputs": out.tolist(),
                "labels": out.argmax(axis=1).tolist(),
                "output_kind": service.output_kind,
                "rows": len(out),
                "usage": _usage(service, key),
            }
        )

    if settings.explain:

        @app.post("/v1/explain", response_model=ExplainResponse, responses=_ERRORS, tags=["model"])
        def explain(body: PredictRequest, service: Service, caller: Caller) -> JSONResponse:
            """Input gradients of the top-1 logit (undefended; for explanation-leak studies)."""
            service.rate_check(caller)
            x = service.decode(body)
            grads, key = service.explain(caller, x)
            return JSONResponse(
                {"gradients": grads.tolist(), "rows": len(grads), "usage": _usage(service, key)}
            )

    return app


def _usage(service: PredictionService, key: KeyRecord) -> dict[str, Any]:
    return {
        "key_id": key.id,
        "name": key.name,
        "quota": key.quota,
        "used": key.used,
        "remaining": key.remaining,
        "answered_rows": key.answered,
        "requests": key.requests,
        "rate_limit": service.limiter.rate if service.limiter.enabled else None,
    }


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message, details=exc.details, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "loc": [str(p) for p in e.get("loc", ())],
                "msg": str(e.get("msg", "")),
                "type": e.get("type"),
            }
            for e in exc.errors()
        ]
        if any(e["type"] == "json_invalid" for e in errors):
            return _error(
                400, "malformed_body", "The request body is not valid JSON.", details=errors
            )
        summary = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors[:5])
        return _error(422, "invalid_request", f"Invalid request: {summary}", details=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        if exc.status_code == 400:
            code = "malformed_body"
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"No route {request.url.path}. See /openapi.json for the API."
        return _error(exc.status_code, code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def fault(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error(500, "internal_error", "The server failed; the fault is logged.")


__all__ = ["create_app"]
