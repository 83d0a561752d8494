"""The one settings object of the prediction server."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Settings(BaseModel):
    """Everything the server is configured with; built once and handed to :func:`create_app`.

    ``state`` is the SQLite file of keys, usage and the query log; a stateful defense
    (ModelGuard-S) keeps its centroids in the sibling file ``centroid_state`` (by default
    ``<state>.centroids.db``), in the defense's own :class:`SQLiteCentroidStore`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: Path = Field(description="Model file (.pt bundle, .onnx, .joblib/.pkl).")
    state: Path = Field(description="SQLite file of keys, usage and the query log.")
    defense: str = Field("none", description="Defense name (modelsteal list defenses).")
    defense_params: dict[str, Any] = Field(default_factory=dict)
    input_shape: tuple[int, ...] | None = Field(
        None, description="One example's shape, for model files that do not say it."
    )
    centroid_state: Path | None = Field(
        None, description="SQLite file of a stateful defense (default: <state>.centroids.db)."
    )
    max_batch_rows: int = Field(512, ge=1, description="Most rows in one request (else 413).")
    max_body_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="Largest request body in bytes (else 413)."
    )
    rate_limit: float = Field(
        0.0, ge=0.0, description="Requests per second per key (token bucket); 0 turns it off."
    )
    rate_burst: int = Field(20, ge=1, description="Token bucket size: requests in a burst.")
    explain: bool = Field(False, description="Serve POST /v1/explain (input gradients).")
    labels_only: bool = Field(False, description="Answer one-hot top-1 rows only.")
    log_responses: bool = Field(True, description="Keep each answer in the query log.")
    synchronous: Literal["NORMAL", "FULL"] = Field(
        "FULL",
        description="SQLite synchronous mode of the state file and of a stateful defense's "
        "centroid file. NORMAL survives process crashes (SIGKILL) but may lose the last commits "
        "on power loss; FULL survives both.",
    )

    @field_validator("defense")
    @classmethod
    def _known_defense(cls, name: str) -> str:
        from modelsteal.defenses import DEFENSES

        DEFENSES.get(name)  # raises UnknownNameError listing the known ones
        return name

    @property
    def centroid_path(self) -> Path:
        """Where a stateful defense keeps its state."""
        if self.centroid_state is not None:
            return self.centroid_state
        return self.state.with_name(self.state.stem + ".centroids.db")
