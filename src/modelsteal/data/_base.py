"""Plain data types of :mod:`modelsteal.data`, the data-set registry and the data-folder rule."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modelsteal._registry import Registry
from modelsteal.errors import DataNotFoundError, InputValidationError, InvalidParameterError

#: Environment variable naming the folder that holds the data sets' files.
DATA_ENV = "MODELSTEAL_DATA"

KINDS = ("image", "tabular")


@dataclass(frozen=True, eq=False)
class ArraySet:
    """One labelled array set: ``X`` float32 of shape ``(n, *input_shape)``, ``y`` int64 ``(n,)``.

    Arrays of other numeric dtypes are converted on construction; labels must be whole numbers.
    Equality is identity (arrays have no single truth value).

    ``groups`` (optional) maps an attribute name (e.g. ``"sex"``, ``"race"``) to an ``(n,)`` array
    aligned with the rows: the sensitive features that group-fairness metrics condition on. They
    travel with the rows through :meth:`take` (and so through :func:`~modelsteal.data.load_splits`)
    but are not part of ``X`` unless the data set also encodes them as features.
    """

    X: np.ndarray
    y: np.ndarray
    groups: Mapping[str, np.ndarray] | None = None

    def __post_init__(self) -> None:
        X = np.asarray(self.X)
        if X.dtype == object or not (
            np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.bool_)
        ):
            raise InputValidationError(
                f"ArraySet: X must be numeric. Got an array of dtype {X.dtype} instead."
            )
        X = X.astype(np.float32, copy=False)
        y = np.asarray(self.y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_)):
            if not np.issubdtype(y.dtype, np.floating) or not np.all(np.isfinite(y)):
                raise InputValidationError(
                    f"ArraySet: y must hold integer class indices. Got dtype {y.dtype} instead."
                )
            if not np.all(y == np.round(y)):
                raise InputValidationError(
                    "ArraySet: y must hold integer class indices; some labels have a fractional "
                    "part. Map labels to 0..C-1 first."
                )
        y = y.astype(np.int64, copy=False)
        if X.ndim < 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
            raise InputValidationError(
                "ArraySet: expected X of shape (n, *input_shape) and y of shape (n,). "
                f"Got X {X.shape} and y {y.shape} instead."
            )
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "y", y)
        if self.groups is not None:
            object.__setattr__(self, "groups", _check_groups(self.groups, n=len(y)))

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def take(self, rows: np.ndarray) -> ArraySet:
        """The rows ``rows`` (indices or a boolean mask) of X, y and every group array."""
        groups = None
        if self.groups is not None:
            groups = {k: v[rows] for k, v in self.groups.items()}
        return ArraySet(X=self.X[rows], y=self.y[rows], groups=groups)

    def __repr__(self) -> str:
        extra = "" if not self.groups else f", groups={sorted(self.groups)}"
        return f"ArraySet(n={len(self)}, X=float32{self.X.shape}, y=int64{self.y.shape}{extra})"


def _check_groups(groups: Mapping[str, np.ndarray], *, n: int) -> Mapping[str, np.ndarray]:
    if not isinstance(groups, Mapping):
        raise InputValidationError(
            "ArraySet: groups must be a mapping from attribute name to an (n,) array. "
            f"Got {type(groups).__name__} instead."
        )
    out = {}
    for name, values in groups.items():
        arr = np.asarray(values)
        if not isinstance(name, str) or not name:
            raise InputValidationError(
                f"ArraySet: group names must be non-empty strings. Got {name!r} instead."
            )
        if arr.ndim != 1 or len(arr) != n:
            raise InputValidationError(
                f"ArraySet: group {name!r} must be an ({n},) array aligned with the rows. "
                f"Got shape {arr.shape} instead."
            )
        out[name] = arr
    return out


def _check_labels(arrays: ArraySet, *, n_classes: int, where: str) -> None:
    if len(arrays) and (arrays.y.min() < 0 or arrays.y.max() >= n_classes):
        raise InputValidationError(
            f"{where}: labels must lie in 0..{n_classes - 1} (n_classes={n_classes}). "
            f"Got labels from {arrays.y.min()} to {arrays.y.max()} instead."
        )


def _check_meta(
    owner: str,
    *,
    n_classes: int,
    input_shape: tuple[int, ...],
    domain: tuple[float, float] | None,
    class_names: tuple[str, ...],
    kind: str,
) -> None:
    if kind not in KINDS:
        raise InvalidParameterError(
            f"The 'kind' parameter of {owner} must be one of {KINDS}. Got {kind!r} instead."
        )
    if len(class_names) != n_classes:
        raise InvalidParameterError(
            f"{owner}: class_names must hold one name per class (n_classes={n_classes}). "
            f"Got {len(class_names)} names instead."
        )
    if domain is not None and (len(domain) != 2 or not domain[0] < domain[1]):
        raise InvalidParameterError(
            f"The 'domain' parameter of {owner} must be None or a pair (low, high) with "
            f"low < high. Got {domain!r} instead."
        )
    if not isinstance(input_shape, tuple):
        raise InvalidParameterError(
            f"The 'input_shape' parameter of {owner} must be a tuple. Got {input_shape!r} instead."
        )


def _check_set(
    arrays: ArraySet, *, owner: str, part: str, input_shape: tuple[int, ...], n_classes: int | None
) -> None:
    if tuple(arrays.X.shape[1:]) != input_shape:
        raise InputValidationError(
            f"{owner}: the {part} set has inputs of shape {tuple(arrays.X.shape[1:])}, "
            f"but input_shape is {input_shape}."
        )
    if n_classes is not None:
        _check_labels(arrays, n_classes=n_classes, where=f"{owner} ({part} set)")


@dataclass(frozen=True)
class DataBundle:
    """A data set as distributed: its official train part, its official test part (or None).

    Optional fields (defaults keep older callers working):

    - ``val``: the official validation part, when the data set has one (PneumoniaMNIST);
    - ``feature_names``: one name per column of a flat ``X``;
    - ``numeric_features``: columns that :func:`~modelsteal.data.load_splits` z-scores with the
      mean and standard deviation of the **target-train rows only** (raw in the bundle);
    - ``sensitive_features``: the names in the parts' ``groups`` that fairness audits use.
    """

    name: str
    train: ArraySet
    test: ArraySet | None
    n_classes: int
    input_shape: tuple[int, ...]
    domain: tuple[float, float] | None
    class_names: tuple[str, ...]
    kind: str
    val: ArraySet | None = None
    feature_names: tuple[str, ...] | None = None
    numeric_features: tuple[int, ...] = ()
    sensitive_features: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        owner = f"DataBundle {self.name!r}"
        _check_meta(
            owner,
            n_classes=self.n_classes,
            input_shape=self.input_shape,
            domain=self.domain,
            class_names=self.class_names,
            kind=self.kind,
        )
        for part, arrays in (("train", self.train), ("test", self.test), ("val", self.val)):
            if arrays is not None:
                _check_set(
                    arrays,
                    owner=owner,
                    part=part,
                    input_shape=self.input_shape,
                    n_classes=self.n_classes,
                )
        _check_columns(
            owner,
            input_shape=self.input_shape,
            feature_names=self.feature_names,
            numeric_features=self.numeric_features,
        )
        for name in self.sensitive_features:
            for part, arrays in (("train", self.train), ("test", self.test), ("val", self.val)):
                if arrays is not None and (arrays.groups is None or name not in arrays.groups):
                    raise InvalidParameterError(
                        f"{owner}: sensitive feature {name!r} is missing from the groups of the "
                        f"{part} part."
                    )


def _check_columns(
    owner: str,
    *,
    input_shape: tuple[int, ...],
    feature_names: tuple[str, ...] | None,
    numeric_features: tuple[int, ...],
) -> None:
    width = input_shape[0] if len(input_shape) == 1 else None
    if feature_names is not None and len(feature_names) != width:
        raise InvalidParameterError(
            f"{owner}: feature_names must name every column of a flat X ({width} columns). "
            f"Got {len(feature_names)} names instead."
        )
    if numeric_features and (
        width is None or any(not 0 <= int(j) < width for j in numeric_features)
    ):
        raise InvalidParameterError(
            f"{owner}: numeric_features must be column indices of a flat X in [0, {width}). "
            f"Got {numeric_features!r} instead."
        )


@dataclass(frozen=True)
class Splits:
    """Disjoint splits for one stealing experiment (see :func:`modelsteal.data.load_splits`).

    ``attacker_pool.y`` is kept for analysis only: attacks must not read it. ``ood.y`` holds the
    OOD set's own labels, which need not match this data set's classes.

    Optional fields: ``validation`` (the data set's official validation part, if any),
    ``feature_names``, ``sensitive_features`` (names in the parts' ``groups``) and ``scaling``
    (``{"columns", "mean", "std"}``: the z-scoring fitted on target_train and applied to every
    part; None when no column was rescaled).
    """

    name: str
    n_classes: int
    input_shape: tuple[int, ...]
    domain: tuple[float, float] | None
    class_names: tuple[str, ...]
    kind: str
    target_train: ArraySet
    target_test: ArraySet
    attacker_pool: ArraySet
    ood: ArraySet | None
    seed: int
    validation: ArraySet | None = None
    feature_names: tuple[str, ...] | None = None
    sensitive_features: tuple[str, ...] = ()
    scaling: Mapping[str, list] | None = None

    def __post_init__(self) -> None:
        owner = f"Splits {self.name!r}"
        _check_meta(
            owner,
            n_classes=self.n_classes,
            input_shape=self.input_shape,
            domain=self.domain,
            class_names=self.class_names,
            kind=self.kind,
        )
        for part in ("target_train", "target_test", "attacker_pool", "ood", "validation"):
            arrays = getattr(self, part)
            if arrays is not None:
                _check_set(
                    arrays,
                    owner=owner,
                    part=part,
                    input_shape=self.input_shape,
                    n_classes=None if part == "ood" else self.n_classes,
                )

    def describe(self) -> dict:
        """Sizes, class counts and metadata as plain (JSON-ready) values."""
        parts = {
            "target_train": self.target_train,
            "target_test": self.target_test,
            "attacker_pool": self.attacker_pool,
        }
        info = {
            "name": self.name,
            "kind": self.kind,
            "n_classes": int(self.n_classes),
            "class_names": list(self.class_names),
            "input_shape": list(self.input_shape),
            "domain": None if self.domain is None else [float(v) for v in self.domain],
            "seed": int(self.seed),
            "sizes": {
                **{part: len(arrays) for part, arrays in parts.items()},
                "ood": 0 if self.ood is None else len(self.ood),
            },
            "class_counts": {
                part: np.bincount(arrays.y, minlength=self.n_classes).tolist()
                for part, arrays in parts.items()
            },
        }
        if self.validation is not None:
            info["sizes"]["validation"] = len(self.validation)
        if self.sensitive_features:
            groups = self.target_test.groups or {}
            info["sensitive_features"] = {
                name: dict(
                    zip(
                        *(v.tolist() for v in np.unique(groups[name], return_counts=True)),
                        strict=True,
                    )
                )
                for name in self.sensitive_features
                if name in groups
            }
        return info


@dataclass(frozen=True)
class RemoteFile:
    """One file of a data set: where it lives under the data folder, where to get it, its MD5.

    When the file is distributed inside a zip archive, ``urls`` point at the archive and
    ``member`` names the file inside it; ``md5`` is always the extracted file's.
    """

    relpath: str
    urls: tuple[str, ...]
    md5: str
    member: str | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """A registered data set: how to load it and which files it needs."""

    name: str
    description: str
    loader: Callable[[Path | None], DataBundle]
    needs_data_dir: bool
    files: tuple[RemoteFile, ...]
    default_ood: str | None

    def missing_files(self, folder: str | os.PathLike | None) -> list[str]:
        """The relative paths of this data set's files absent from ``folder`` (all if None)."""
        if not self.needs_data_dir:
            return []
        if folder is None:
            return [f.relpath for f in self.files]
        root = Path(folder)
        return [f.relpath for f in self.files if not (root / f.relpath).is_file()]


DATASETS: Registry[DatasetSpec] = Registry("data set")


def data_dir(path: str | os.PathLike | None = None) -> Path | None:
    """The data folder: ``path`` if given, else ``$MODELSTEAL_DATA``, else None.

    There is no default location: nothing is downloaded or looked for anywhere implicit.
    """
    if path is not None:
        if not isinstance(path, str | os.PathLike) or not str(path).strip():
            raise InvalidParameterError(
                f"The 'data_dir' parameter must be None or a non-empty path. Got {path!r} instead."
            )
        return Path(path).expanduser()
    env = os.environ.get(DATA_ENV, "").strip()
    return Path(env).expanduser() if env else None


def require_files(name: str, folder: Path | None, relpaths: Iterable[str]) -> Path:
    """Return ``folder`` if it holds every file in ``relpaths``; else raise DataNotFoundError."""
    relpaths = list(relpaths)
    online = (
        f"If this machine is online, `modelsteal data fetch {name} --data-dir FOLDER` "
        "downloads them and checks their MD5s."
    )
    if folder is None:
        raise DataNotFoundError(
            f"Data set {name!r} is read from a data folder, and none was given. Set "
            f"{DATA_ENV}=/path/to/datasets or pass --data-dir (data_dir= in Python); the folder "
            f"must hold {', '.join(relpaths)}. {online}"
        )
    missing = [p for p in relpaths if not (folder / p).is_file()]
    if missing:
        where = "does not exist" if not folder.is_dir() else f"lacks {', '.join(missing)}"
        raise DataNotFoundError(
            f"Data set {name!r} not found: the data folder {folder} {where}. It must hold "
            f"{', '.join(relpaths)}. Put the files there, or point to the folder that holds "
            f"them: set {DATA_ENV}=/path/to/datasets or pass --data-dir (data_dir= in Python). "
            f"{online}"
        )
    return folder
