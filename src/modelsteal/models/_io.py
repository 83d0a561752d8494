"""Saving and loading trained models as self-describing ``.pt`` bundles.

A bundle holds the architecture name and parameters, the input shape and class count, the
weights, and free-form metadata (data set, split seed, test accuracy…). It is loaded with
``torch.load(weights_only=True)``: no code from the file is ever executed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modelsteal.errors import InvalidParameterError
from modelsteal.models._architectures import build_model

FORMAT = "modelsteal-model"
VERSION = 1


@dataclass(frozen=True)
class ModelInfo:
    """What a bundle says about its model."""

    arch: str
    input_shape: tuple[int, ...]
    n_classes: int
    params: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


def save_model(path: str | Path, model: nn.Module, info: ModelInfo) -> Path:
    """Write ``model`` and ``info`` to ``path`` (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    bundle = {
        "format": FORMAT,
        "version": VERSION,
        "arch": info.arch,
        "params": dict(info.params),
        "input_shape": list(info.input_shape),
        "n_classes": int(info.n_classes),
        "metadata": dict(info.metadata),
        "state_dict": model.state_dict(),
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(bundle, tmp)
    tmp.replace(path)  # never leave a half-written model behind
    return path


def is_bundle(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def load_model(path: str | Path) -> tuple[nn.Module, ModelInfo]:
    """Load a bundle written by :func:`save_model`; the model comes back in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No model file at {path}.")
    bundle = torch.load(path, map_location="cpu", weights_only=True)
    if not is_bundle(bundle):
        raise InvalidParameterError(
            f"{path} is not a modelsteal model bundle (saved by `modelsteal train` or "
            "modelsteal.models.save_model). For a TorchScript file use load_target()."
        )
    if bundle.get("version", 0) > VERSION:
        raise InvalidParameterError(
            f"{path} was written by a newer modelsteal (bundle version {bundle['version']}); "
            "upgrade modelsteal to read it."
        )
    info = ModelInfo(
        arch=bundle["arch"],
        input_shape=tuple(bundle["input_shape"]),
        n_classes=int(bundle["n_classes"]),
        params=dict(bundle["params"]),
        metadata=dict(bundle["metadata"]),
    )
    model = build_model(info.arch, info.input_shape, info.n_classes, seed=0, **info.params)
    model.load_state_dict(bundle["state_dict"])
    return model.eval(), info
