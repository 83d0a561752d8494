"""The Target protocol and the base class adapters share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from modelsteal._checks import check_inputs, check_probabilities

OutputKind = Literal["probabilities", "labels"]


@runtime_checkable
class Target(Protocol):
    """A model reachable only by queries.

    ``query(x)`` takes a batch of shape ``(n, *input_shape)`` and returns an ``(n, n_classes)``
    float64 array whose rows lie on the probability simplex. Label-only targets return one-hot rows
    and say so with ``output_kind == "labels"``.
    """

    @property
    def n_classes(self) -> int: ...

    @property
    def input_shape(self) -> tuple[int, ...]: ...

    def query(self, x: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class ExplainableTarget(Target, Protocol):
    """A target that also answers gradient explanations.

    ``explain(x)`` returns, for each row, the gradient of the predicted class's logit with respect
    to the input, shape ``(n, *input_shape)``.
    """

    def explain(self, x: np.ndarray) -> np.ndarray: ...


def output_kind(target: Target) -> OutputKind:
    """What a target's rows carry: full ``"probabilities"`` or one-hot ``"labels"``."""
    return getattr(target, "output_kind", "probabilities")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, stable for large logits."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(n,) int labels → (n, C) float64 one-hot rows."""
    labels = np.asarray(labels, dtype=np.int64)
    out = np.zeros((labels.shape[0], n_classes), dtype=np.float64)
    out[np.arange(labels.shape[0]), labels] = 1.0
    return out


class BaseTarget(ABC):
    """Shared behaviour of the adapters: input validation before, response validation after.

    Subclasses set ``n_classes`` and ``input_shape`` and implement :meth:`_predict`, which receives
    a validated float32 batch and returns probabilities (or logits when ``output="logits"``).
    """

    output_kind: OutputKind = "probabilities"
    n_classes: int
    input_shape: tuple[int, ...]
    _output: Literal["probabilities", "logits"] = "probabilities"

    @abstractmethod
    def _predict(self, x: np.ndarray) -> np.ndarray: ...

    def query(self, x: np.ndarray) -> np.ndarray:
        name = type(self).__name__
        batch = check_inputs(x, input_shape=self.input_shape, where=f"{name}.query")
        raw = self._predict(batch)
        if self._output == "logits":
            raw = np.asarray(raw, dtype=np.float64)
            if raw.ndim == 2 and np.isfinite(raw).all():
                raw = softmax(raw)
            # otherwise check_probabilities below reports the precise complaint
        return check_probabilities(raw, n=len(batch), n_classes=self.n_classes, where=name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_classes={self.n_classes}, input_shape={self.input_shape})"
