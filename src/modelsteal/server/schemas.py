"""Request and response bodies of the HTTP API (pydantic models; no logic)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class PredictRequest(BaseModel):
    """A batch of inputs, as nested JSON lists or as base64-encoded little-endian floats.

    Send exactly one of ``inputs`` (shape ``(n, *input_shape)``) and ``inputs_b64`` (with
    ``shape`` and ``dtype``). The base64 form is exact and much smaller for images.
    """

    model_config = ConfigDict(extra="forbid")

    inputs: list[Any] | None = Field(
        None, description="Nested lists of numbers, shape (n, *input_shape)."
    )
    inputs_b64: str | None = Field(
        None, description="Base64 of the batch's bytes, little-endian, C order."
    )
    shape: list[int] | None = Field(None, description="The batch's shape, for inputs_b64.")
    dtype: Literal["float32", "float64"] = Field("float32", description="dtype of inputs_b64.")


class Usage(BaseModel):
    """A key's own counts. Quotas are in rows; ``used`` includes rows of requests in flight."""

    key_id: str
    name: str
    quota: int | None
    used: int
    remaining: int | None
    answered_rows: int
    requests: int
    rate_limit: float | None = Field(None, description="Requests per second, if limited.")


class PredictResponse(BaseModel):
    outputs: list[list[float]] = Field(
        description="Defended probability rows (one-hot rows when output_kind is 'labels')."
    )
    labels: list[int] = Field(description="The top-1 class of each returned row.")
    output_kind: Literal["probabilities", "labels"]
    rows: int
    usage: Usage


class ExplainResponse(BaseModel):
    gradients: list[Any] = Field(
        description="Gradient of the top-1 logit w.r.t. each input, shape (n, *input_shape)."
    )
    rows: int
    usage: Usage


class InfoResponse(BaseModel):
    n_classes: int
    input_shape: list[int]
    output_kind: Literal["probabilities", "labels"]
    defense: str
    defense_params: dict[str, Any]
    max_batch_rows: int
    max_body_bytes: int
    explain: bool
    input_encodings: list[str]


class HealthResponse(BaseModel):
    status: Literal["ok"]
    version: str


class ErrorBody(BaseModel):
    code: str = Field(description="A stable machine-readable code, e.g. 'quota_exceeded'.")
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    error: ErrorBody
