"""Substitute training: build a fresh copy from a registered architecture and fit it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from torch import nn

from modelsteal.models import TrainConfig, build_model, train_model


def default_architecture(input_shape: Sequence[int]) -> str:
    """``cnn`` for (C, H, W) images, ``mlp`` for everything else."""
    return "cnn" if len(tuple(input_shape)) == 3 else "mlp"


@dataclass(frozen=True)
class SubstituteTrainer:
    """Trains a substitute from scratch on (x, ỹ) with soft cross-entropy.

    ``arch="auto"`` picks :func:`default_architecture`. The initial weights and the data order
    come from ``seed`` alone, so every retraining round starts from the same weights. Small query
    sets get more epochs so that training takes at least ``min_steps`` optimiser steps.
    """

    arch: str = "auto"
    params: dict[str, Any] = field(default_factory=dict)
    config: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=20))
    min_steps: int = 500

    def architecture(self, input_shape: Sequence[int]) -> str:
        return default_architecture(input_shape) if self.arch == "auto" else self.arch

    def fit(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        *,
        input_shape: Sequence[int],
        n_classes: int,
        seed: int,
    ) -> nn.Module:
        model = build_model(
            self.architecture(input_shape), input_shape, n_classes, seed=seed, **self.params
        )
        steps_per_epoch = math.ceil(len(X) / self.config.batch_size)
        epochs = max(self.config.epochs, math.ceil(self.min_steps / steps_per_epoch))
        config = replace(self.config, epochs=epochs)
        return train_model(model, X, Y, config=config, seed=seed)


def substitute_trainer(
    *,
    substitute: str = "auto",
    substitute_params: dict[str, Any] | None = None,
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 1e-3,
    min_steps: int = 500,
    cls: type[SubstituteTrainer] = SubstituteTrainer,
    **extra: Any,
) -> SubstituteTrainer:
    """The recipes' substitute trainer from the same keywords as KnockoffNets' ``build``."""
    return cls(
        arch=substitute,
        params=dict(substitute_params or {}),
        config=TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr),
        min_steps=min_steps,
        **extra,
    )
