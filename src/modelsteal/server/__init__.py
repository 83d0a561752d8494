"""The defended prediction server: a model behind a defense, with keys, row quotas and durable
state. Build the app with :func:`create_app` (``modelsteal serve`` runs it under uvicorn)."""

from modelsteal.server.app import create_app
from modelsteal.server.auth import create_key, revoke_key, verify_token
from modelsteal.server.service import ApiError, PredictionService
from modelsteal.server.settings import Settings
from modelsteal.server.store import KeyRecord, LogEntry, StateStore, input_digest

__all__ = [
    "ApiError",
    "KeyRecord",
    "LogEntry",
    "PredictionService",
    "Settings",
    "StateStore",
    "create_app",
    "create_key",
    "input_digest",
    "revoke_key",
    "verify_token",
]
