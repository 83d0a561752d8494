"""Disjoint, seeded splits for a stealing experiment: :func:`load_splits`."""

from __future__ import annotations

import logging
import os
from typing import Literal

import numpy as np

from modelsteal._checks import check_float, check_int
from modelsteal.data._base import DATASETS, ArraySet, DataBundle, Splits
from modelsteal.data._base import data_dir as resolve_data_dir
from modelsteal.data._loaders import load_dataset
from modelsteal.errors import InvalidParameterError

logger = logging.getLogger(__name__)


def _stratified_take(
    y: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(len(y))`` into ``(rest, taken)`` with ``round(fraction * n)`` rows taken.

    Every class gives ``fraction`` of its rows (largest-remainder rounding), and both parts come
    back in random order.
    """
    n = len(y)
    if n == 0:  # e.g. a test fraction that took every row: nothing left to split
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    _, codes = np.unique(y, return_inverse=True)
    counts = np.bincount(codes.reshape(-1))
    exact = fraction * counts
    take = np.floor(exact).astype(np.int64)
    short = int(np.floor(fraction * n + 0.5)) - int(take.sum())
    if short > 0:
        take[np.argsort(-(exact - take), kind="stable")[:short]] += 1
    groups = np.split(np.argsort(codes.reshape(-1), kind="stable"), np.cumsum(counts)[:-1])
    taken, rest = [], []
    for members, k in zip(groups, take, strict=True):
        members = rng.permutation(members)
        taken.append(members[:k])
        rest.append(members[k:])
    return rng.permutation(np.concatenate(rest)), rng.permutation(np.concatenate(taken))


def split_indices(
    y: np.ndarray,
    *,
    has_test: bool,
    seed: int,
    pool_fraction: float,
    test_fraction: float,
    max_train: int | None,
) -> dict[str, np.ndarray | None]:
    """Indices into ``y`` (the official train part, or the whole set) for each split.

    Returns ``{"target_train", "attacker_pool", "target_test"}``; ``target_test`` is None when
    the data set has an official test split. The parts are disjoint by construction.
    """
    rng = np.random.default_rng(seed)
    if has_test:
        rest, test = np.arange(len(y)), None
    else:
        rest, test = _stratified_take(y, test_fraction, rng)
    train_rel, pool_rel = _stratified_take(y[rest], pool_fraction, rng)
    train, pool = rest[train_rel], rest[pool_rel]
    if max_train is not None:
        train = train[:max_train]
    return {"target_train": train, "attacker_pool": pool, "target_test": test}


def load_splits(
    name_or_path: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    pool_fraction: float = 0.5,
    test_fraction: float = 0.25,
    ood: str | Literal["default"] | None = "default",
    label_column: str = "label",
    max_train: int | None = None,
) -> Splits:
    """Load a data set and cut it into disjoint target-train, target-test and attacker-pool sets.

    With an official test split, it is the target's test set and the official train part is cut
    (stratified by class, seeded) into target_train and attacker_pool, ``pool_fraction`` of it
    going to the pool. Without one, ``test_fraction`` is first carved off (stratified) as the
    test set. ``max_train`` caps target_train (the rows cut are dropped, not given to the pool).

    ``ood="default"`` adds the data set's usual OOD set (KMNIST for MNIST) when its files are in
    the data folder; a name (or path) loads that set's test part (else its train part); None
    adds none.
    """
    owner = "load_splits"
    seed = check_int(seed, name="seed", owner=owner, low=0)
    pool_fraction = check_float(
        pool_fraction,
        name="pool_fraction",
        owner=owner,
        low=0,
        high=1,
        low_open=True,
        high_open=True,
    )
    test_fraction = check_float(
        test_fraction,
        name="test_fraction",
        owner=owner,
        low=0,
        high=1,
        low_open=True,
        high_open=True,
    )
    if max_train is not None:
        max_train = check_int(max_train, name="max_train", owner=owner, low=1)
    if ood is not None and not isinstance(ood, str | os.PathLike):
        raise InvalidParameterError(
            f"The 'ood' parameter of {owner} must be 'default', None or a data set name. "
            f"Got {ood!r} instead."
        )

    bundle = load_dataset(name_or_path, data_dir=data_dir, label_column=label_column)
    ood_set = _load_ood(
        ood, name_or_path, data_dir=data_dir, label_column=label_column, bundle=bundle
    )
    return split_bundle(
        bundle,
        seed=seed,
        pool_fraction=pool_fraction,
        test_fraction=test_fraction,
        max_train=max_train,
        ood=ood_set,
    )


def split_bundle(
    bundle: DataBundle,
    *,
    seed: int = 0,
    pool_fraction: float = 0.5,
    test_fraction: float = 0.25,
    max_train: int | None = None,
    ood: ArraySet | None = None,
) -> Splits:
    """Cut an already loaded :class:`DataBundle` as :func:`load_splits` does.

    Group arrays travel with their rows. The bundle's ``numeric_features`` are z-scored with the
    mean and standard deviation (``ddof=0``; 1 where it is 0) of the **target_train rows only**,
    and the same affine map is applied to every other part (recorded in ``Splits.scaling``).
    The official validation part, if any, becomes ``Splits.validation``.
    """
    owner = "split_bundle"
    seed = check_int(seed, name="seed", owner=owner, low=0)
    source = bundle.train
    idx = split_indices(
        source.y,
        has_test=bundle.test is not None,
        seed=seed,
        pool_fraction=pool_fraction,
        test_fraction=test_fraction,
        max_train=max_train,
    )
    parts: dict[str, ArraySet | None] = {}
    for part, rows in idx.items():
        if rows is not None and len(rows) == 0:
            raise InvalidParameterError(
                f"load_splits: with {len(source)} rows to split, pool_fraction={pool_fraction:g} "
                f"and test_fraction={test_fraction:g} leave the {part} split empty. Use "
                "fractions nearer 0.5 or a larger data set."
            )
        parts[part] = None if rows is None else source.take(rows)
    if parts["target_test"] is None:
        parts["target_test"] = bundle.test
    parts["validation"] = bundle.val

    scaling = None
    if bundle.numeric_features:
        cols = np.asarray(bundle.numeric_features, dtype=np.int64)
        train_X = parts["target_train"].X[:, cols].astype(np.float64)
        mean = train_X.mean(axis=0)
        std = train_X.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        scaling = {"columns": cols.tolist(), "mean": mean.tolist(), "std": std.tolist()}
        for part, arrays in parts.items():
            if arrays is not None:
                X = arrays.X.copy()
                X[:, cols] = ((X[:, cols] - mean) / std).astype(np.float32)
                parts[part] = ArraySet(X=X, y=arrays.y, groups=arrays.groups)

    return Splits(
        name=bundle.name,
        n_classes=bundle.n_classes,
        input_shape=bundle.input_shape,
        domain=bundle.domain,
        class_names=bundle.class_names,
        kind=bundle.kind,
        target_train=parts["target_train"],
        target_test=parts["target_test"],
        attacker_pool=parts["attacker_pool"],
        ood=ood,
        seed=seed,
        validation=parts["validation"],
        feature_names=bundle.feature_names,
        sensitive_features=bundle.sensitive_features,
        scaling=scaling,
    )


def _load_ood(ood, name_or_path, *, data_dir, label_column, bundle) -> ArraySet | None:
    if ood is None:
        return None
    if ood == "default":
        spec = DATASETS.get(name_or_path) if name_or_path in DATASETS else None
        if spec is None or spec.default_ood is None:
            return None
        ood_spec = DATASETS.get(spec.default_ood)
        folder = resolve_data_dir(data_dir)
        missing = ood_spec.missing_files(folder)
        if missing:
            logger.info(
                "no OOD set for %s: %s not found in %s (pass ood=None to silence this)",
                bundle.name,
                ", ".join(missing),
                folder if folder is not None else "any data folder (none given)",
            )
            return None
        ood = spec.default_ood
    if str(ood) == str(name_or_path):
        raise InvalidParameterError(
            f"The 'ood' parameter of load_splits must name a data set other than the one being "
            f"split. Got {ood!r} for {name_or_path!r}."
        )
    other = load_dataset(ood, data_dir=data_dir, label_column=label_column)
    if other.input_shape != bundle.input_shape:
        raise InvalidParameterError(
            f"The 'ood' parameter of load_splits must name a data set with the same input shape "
            f"as {bundle.name!r} {bundle.input_shape}. Got {ood!r}, whose input shape is "
            f"{other.input_shape}."
        )
    return other.test if other.test is not None else other.train
