"""What a defense costs honest users: distortion, protected accuracy, OOD detection, state size."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelsteal.defenses._base import Defense
from modelsteal.metrics import accuracy, l1_distances, ood_auroc
from modelsteal.targets import Target


def answer(
    target: Target, defense: Defense, x: np.ndarray, *, batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Clean and defended answers for ``x``, asked in order in batches of ``batch_size``."""
    clean, returned = [], []
    for start in range(0, len(x), batch_size):
        chunk = x[start : start + batch_size]
        y = target.query(chunk)
        clean.append(y)
        returned.append(defense.perturb(y, x=chunk if defense.needs_inputs else None))
    return np.concatenate(clean), np.concatenate(returned)


def evaluate_defense(
    target: Target,
    defense: Defense,
    *,
    test_x: np.ndarray,
    test_y: np.ndarray,
    ood_x: np.ndarray | None = None,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Utility of ``defense`` in front of ``target`` on a test set (and an OOD set).

    Returns plain values: ``max_l1`` and ``mean_l1`` distortion, ``clean_accuracy``,
    ``protected_accuracy`` (accuracy of the defended answers), ``argmax_kept`` (share of rows
    whose top-1 class is unchanged), ``ood_auroc`` of the defended and of the clean answers (maximum
    softmax probability, test set = in-distribution) and, for stateful defenses, ``centroids``.
    The test set is asked first, then the OOD set, as one stream, so a stateful defense sees both.
    """
    clean, returned = answer(target, defense, test_x, batch_size=batch_size)
    dist = l1_distances(clean, returned)
    result: dict[str, Any] = {
        "defense": defense.name,
        "params": {k: v for k, v in defense.params().items() if _plain(v)},
        "max_l1": float(dist.max()),
        "mean_l1": float(dist.mean()),
        "clean_accuracy": accuracy(test_y, clean),
        "protected_accuracy": accuracy(test_y, returned),
        "argmax_kept": float(np.mean(clean.argmax(axis=1) == returned.argmax(axis=1))),
    }
    if ood_x is not None:
        clean_ood, returned_ood = answer(target, defense, ood_x, batch_size=batch_size)
        result["ood_auroc"] = ood_auroc(returned, returned_ood)
        result["clean_ood_auroc"] = ood_auroc(clean, clean_ood)
    counts = getattr(defense, "centroid_counts", None)
    if callable(counts):
        result["centroids"] = int(sum(counts().values()))
    return result


def _plain(value: Any) -> bool:
    return isinstance(value, bool | int | float | str) or value is None
