"""Substitute training: build a fresh copy from a registered architecture and fit it.

:meth:`SubstituteTrainer.fit` trains from the seed's initial weights on everything it is given.
:meth:`SubstituteTrainer.fit_validated` can also start from another model's weights (warm start)
and select the epoch by rows held out for validation (early stopping), see
:func:`train_early_stopped`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from modelsteal._checks import check_int
from modelsteal.errors import InputValidationError
from modelsteal.models import TrainConfig, build_model, predict_proba, train_model


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

    def new_model(self, input_shape: Sequence[int], n_classes: int, seed: int) -> nn.Module:
        """The substitute's architecture, initialised from ``seed``."""
        return build_model(
            self.architecture(input_shape), input_shape, n_classes, seed=seed, **self.params
        )

    def config_for(self, n_rows: int) -> TrainConfig:
        """``config`` with enough epochs for at least ``min_steps`` steps on ``n_rows`` rows."""
        steps_per_epoch = math.ceil(n_rows / self.config.batch_size)
        epochs = max(self.config.epochs, math.ceil(self.min_steps / steps_per_epoch))
        return replace(self.config, epochs=epochs)

    def fit(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        *,
        input_shape: Sequence[int],
        n_classes: int,
        seed: int,
    ) -> nn.Module:
        model, _ = self.fit_validated(X, Y, input_shape=input_shape, n_classes=n_classes, seed=seed)
        return model

    def fit_validated(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        *,
        input_shape: Sequence[int],
        n_classes: int,
        seed: int,
        init: nn.Module | None = None,
        validation: tuple[np.ndarray, np.ndarray] | None = None,
        patience: int | None = None,
    ) -> tuple[nn.Module, EarlyStopping | None]:
        """:meth:`fit`, optionally warm-started from ``init`` and early-stopped on ``validation``.

        ``init``: a model of the same architecture whose weights are copied as the starting point
        (it is not modified); None starts from the seed's initial weights, as :meth:`fit`.
        ``validation``: ``(x_val, y_val)`` rows that are not trained on; the epoch whose weights
        agree best with ``y_val``'s labels is kept (see :func:`train_early_stopped`). The
        optimiser starts afresh either way. With neither, this is :meth:`fit` exactly.
        """
        model = self.new_model(input_shape, n_classes, seed)
        if init is not None:
            model.load_state_dict(copy.deepcopy(init.state_dict()))
        config = self.config_for(len(X))
        if validation is None:
            return train_model(model, X, Y, config=config, seed=seed), None
        x_val, y_val = validation
        return train_early_stopped(
            model, X, Y, x_val=x_val, y_val=y_val, config=config, seed=seed, patience=patience
        )


@dataclass(frozen=True)
class EarlyStopping:
    """What :func:`train_early_stopped` saw: one validation score per trained epoch.

    ``agreement[e]``: the share of validation rows whose label (argmax of the given row) the
    model predicted after epoch ``e`` (0-based); ``loss[e]``: its soft cross-entropy on them.
    ``best_epoch`` is the epoch whose weights were kept; ``epochs`` how many were trained.
    """

    best_epoch: int
    epochs: int
    agreement: list[float]
    loss: list[float]


class _Stop(Exception):
    """Raised from the epoch callback to end :func:`train_model` early (patience ran out)."""


def train_early_stopped(
    model: nn.Module,
    X: np.ndarray,
    Y: np.ndarray,
    *,
    x_val: np.ndarray,
    y_val: np.ndarray,
    config: TrainConfig,
    seed: int,
    patience: int | None = None,
) -> tuple[nn.Module, EarlyStopping]:
    """Train as :func:`~modelsteal.models.train_model`, keeping the best epoch on validation rows.

    After every epoch the model (in eval mode) is scored on ``x_val``: agreement with the labels
    of ``y_val`` ((n,) labels or (n, C) rows, whose argmax is the label), ties broken by the
    lower soft cross-entropy. The best epoch's weights are restored at the end. ``patience``:
    stop once that many epochs in a row did not improve the score (None: train every epoch of
    ``config``). Up to the best epoch the weights are exactly those of ``train_model`` with the
    same seed, since scoring draws no random numbers.
    """
    if patience is not None:
        patience = check_int(patience, name="patience", owner="train_early_stopped", low=1)
    y_val = np.asarray(y_val)
    if len(y_val) != len(x_val) or len(x_val) == 0:
        raise InputValidationError(
            f"train_early_stopped: x_val has {len(x_val)} rows and y_val {len(y_val)}; "
            "give the same positive number of rows."
        )
    soft = y_val.astype(np.float64) if y_val.ndim == 2 else None
    labels = y_val.argmax(axis=1) if y_val.ndim == 2 else y_val.astype(np.int64)
    agreement: list[float] = []
    loss: list[float] = []
    best: dict[str, Any] = {"score": None, "epoch": -1, "weights": None}

    def on_epoch(epoch: int, _train_loss: float) -> None:
        probs = predict_proba(model, x_val)  # eval mode: no dropout, no random numbers drawn
        model.train()
        agree = float((probs.argmax(axis=1) == labels).mean())
        log_p = np.log(np.clip(probs, 1e-12, None))
        if soft is None:
            ce = float(-log_p[np.arange(len(labels)), labels].mean())
        else:
            ce = float(-(soft * log_p).sum(axis=1).mean())
        agreement.append(agree)
        loss.append(ce)
        score = (agree, -ce)
        if best["score"] is None or score > best["score"]:
            best.update(score=score, epoch=epoch, weights=copy.deepcopy(model.state_dict()))
        elif patience is not None and epoch - best["epoch"] >= patience:
            raise _Stop

    try:
        train_model(model, X, Y, config=config, seed=seed, on_epoch=on_epoch)
    except _Stop:
        pass
    with torch.no_grad():
        model.load_state_dict(best["weights"])
    model.eval()
    return model, EarlyStopping(
        best_epoch=int(best["epoch"]), epochs=len(agreement), agreement=agreement, loss=loss
    )


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
