"""Recoveries: what an attacker makes of returned vectors before training on them."""

from __future__ import annotations

import numpy as np

from modelsteal.attacks._base import RECOVERIES, Recovery
from modelsteal.targets import one_hot


@RECOVERIES.register("identity")
def identity() -> Recovery:
    """Train on the returned vectors as they are (soft labels)."""

    def recover(y: np.ndarray, x: np.ndarray | None = None) -> np.ndarray:
        return y

    return recover


@RECOVERIES.register("top1")
def top1() -> Recovery:
    """Keep only the argmax of each returned vector (hard labels)."""

    def recover(y: np.ndarray, x: np.ndarray | None = None) -> np.ndarray:
        return one_hot(np.asarray(y).argmax(axis=1), np.asarray(y).shape[1])

    return recover
