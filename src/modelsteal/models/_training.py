"""A seeded, deterministic training loop on soft or hard labels, and batched prediction."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from modelsteal._checks import check_float, check_int

log = logging.getLogger(__name__)


DEVICE_VARIABLE = "MODELSTEAL_DEVICE"


def compute_device() -> torch.device:
    """The device that training and batched prediction run on: ``$MODELSTEAL_DEVICE`` or CPU.

    Models live on the CPU everywhere else in modelsteal (targets, defenses, attacks hand them
    CPU arrays); :func:`train_model`, :func:`predict_proba` and ActiveThief's DeepFool move a
    model to this device for the call and back afterwards. ``cuda`` (or ``cuda:1``) uses a GPU;
    results then agree with CPU runs up to float rounding, not bit for bit.
    """
    name = os.environ.get(DEVICE_VARIABLE, "").strip() or "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        from modelsteal.errors import InvalidParameterError

        raise InvalidParameterError(
            f"{DEVICE_VARIABLE}={name!r} is not a device torch knows; use 'cpu' or 'cuda' "
            "(optionally with an index, e.g. 'cuda:0')."
        ) from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        from modelsteal.errors import InvalidParameterError

        raise InvalidParameterError(
            f"{DEVICE_VARIABLE}={name!r} asks for a GPU, but this torch build sees none "
            f"(torch {torch.__version__}); unset it to run on the CPU."
        )
    if device.type not in ("cpu", "cuda"):
        from modelsteal.errors import InvalidParameterError

        raise InvalidParameterError(
            f"{DEVICE_VARIABLE}={name!r}: only 'cpu' and 'cuda' devices are supported."
        )
    return device


@contextmanager
def on_compute_device(model: nn.Module) -> Iterator[torch.device]:
    """Run a block with ``model`` on :func:`compute_device`, and put it back where it was.

    Yields the device the block should put its tensors on. A model already off the CPU (a
    nested call, or one the caller placed) stays where it is.
    """
    first = next(model.parameters(), None)
    home = first.device if first is not None else torch.device("cpu")
    device = compute_device()
    if home.type != "cpu" or device.type == "cpu":
        yield home
        return
    model.to(device)
    try:
        yield device
    finally:
        model.to(home)


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained. Plain values, so a config file or the CLI can fill it."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"

    def __post_init__(self) -> None:
        check_int(self.epochs, name="epochs", owner="TrainConfig", low=1)
        check_int(self.batch_size, name="batch_size", owner="TrainConfig", low=1)
        check_float(self.lr, name="lr", owner="TrainConfig", low=0.0, low_open=True)
        check_float(self.weight_decay, name="weight_decay", owner="TrainConfig", low=0.0)
        if self.optimizer not in ("adam", "sgd"):
            from modelsteal.errors import InvalidParameterError

            raise InvalidParameterError(
                "The 'optimizer' parameter of TrainConfig must be one of 'adam', 'sgd'. "
                f"Got {self.optimizer!r} instead."
            )


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser ``config`` names for ``model`` (Adam, or SGD with momentum 0.9)."""
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=0.9, weight_decay=config.weight_decay
    )


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over rows of −Σ_k t_k log softmax(z)_k; one-hot targets give ordinary cross-entropy."""
    return -(targets * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()


def _as_targets(y: np.ndarray, n_classes: int) -> torch.Tensor:
    y = np.asarray(y)
    if y.ndim == 1:
        out = np.zeros((len(y), n_classes), dtype=np.float32)
        out[np.arange(len(y)), y.astype(np.int64)] = 1.0
        return torch.from_numpy(out)
    return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))


def train_model(
    model: nn.Module,
    X: np.ndarray,
    y: np.ndarray,
    *,
    config: TrainConfig = TrainConfig(),
    seed: int,
    on_epoch: Callable[[int, float], None] | None = None,
) -> nn.Module:
    """Train ``model`` in place on ``X`` with labels ``y`` and return it.

    ``y`` is either (n,) integer labels or an (n, C) array of soft labels (probability rows); both
    use :func:`soft_cross_entropy`. Shuffling and dropout draw from generators seeded by ``seed``,
    so the same model, data and seed give the same weights on the same machine.
    """
    X_t = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    with torch.no_grad():
        n_classes = int(model(X_t[:1]).shape[1])
    T = _as_targets(y, n_classes)
    if len(T) != len(X_t):
        from modelsteal.errors import InputValidationError

        raise InputValidationError(
            f"train_model: X has {len(X_t)} rows but the labels have {len(T)}."
        )
    with on_compute_device(model) as device:
        X_t, T = X_t.to(device), T.to(device)
        opt = make_optimizer(model, config)
        gen = torch.Generator().manual_seed(seed)
        n = len(X_t)
        model.train()
        gpus = [] if device.type == "cpu" else [device.index or torch.cuda.current_device()]
        with torch.random.fork_rng(devices=gpus):
            torch.manual_seed(seed)  # dropout masks
            for epoch in range(config.epochs):
                order = torch.randperm(n, generator=gen).to(device)
                total = torch.zeros((), dtype=torch.float64, device=device)
                for start in range(0, n, config.batch_size):
                    idx = order[start : start + config.batch_size]
                    opt.zero_grad(set_to_none=True)
                    loss = soft_cross_entropy(model(X_t[idx]), T[idx])
                    loss.backward()
                    opt.step()
                    total += loss.detach().double() * len(idx)
                mean_loss = float(total) / n
                if on_epoch is not None:
                    on_epoch(epoch, mean_loss)
                log.debug("epoch %d loss %.4f", epoch, mean_loss)
    model.eval()
    return model


def predict_proba(model: nn.Module, X: np.ndarray, *, batch_size: int = 1024) -> np.ndarray:
    """Softmax outputs of ``model`` on ``X`` as a float64 (n, C) array, in eval mode."""
    model.eval()
    outs = []
    with torch.no_grad(), on_compute_device(model) as device:
        for start in range(0, len(X), batch_size):
            chunk = torch.from_numpy(
                np.ascontiguousarray(X[start : start + batch_size], np.float32)
            ).to(device)
            outs.append(torch.softmax(model(chunk).double(), dim=1).cpu().numpy())
    return np.concatenate(outs, axis=0)
