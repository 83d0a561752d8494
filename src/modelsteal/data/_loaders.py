"""The registered data sets and :func:`load_dataset`."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from modelsteal.data._base import (
    DATASETS,
    ArraySet,
    DataBundle,
    DatasetSpec,
    RemoteFile,
    require_files,
)
from modelsteal.data._base import data_dir as resolve_data_dir
from modelsteal.data._files import load_csv, load_npz, read_idx
from modelsteal.errors import (
    DataNotFoundError,
    InputValidationError,
    InvalidParameterError,
    UnknownNameError,
)

logger = logging.getLogger(__name__)

_IDX_NAMES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
_MNIST_MD5 = (
    "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "d53e105ee54ea40749a09fcbcd1e9432",
    "9fb629c4189551a2d022fa330f9573f3",
    "ec29112dd5afa0611ce80d1b7f02629c",
)
_FASHION_MD5 = (
    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "25c81989df183df01b3e8a0aad5dffbe",
    "bef4ecab320f06d8554ea6380940ec79",
    "bb300cfdad3c16e7a12a480ee83cd310",
)
_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
_FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
_KMNIST_BASE = "http://codh.rois.ac.jp/kmnist/dataset/kmnist/"
_KMNIST_FILES = (
    ("kmnist-test-imgs.npz", "dace6de62ca8b90843cc45366337d02e"),
    ("kmnist-test-labels.npz", "3ae489a79983d0fe386152684e3b5412"),
)
_FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# Index -> hiragana, as in kmnist_classmap.csv (o, ki, su, tsu, na, ha, ma, ya, re, wo).
_KMNIST_CLASSES = ("お", "き", "す", "つ", "な", "は", "ま", "や", "れ", "を")
_DIGITS = tuple(str(d) for d in range(10))


def _remote(folder: str, names_md5s, mirrors) -> tuple[RemoteFile, ...]:
    return tuple(
        RemoteFile(relpath=f"{folder}/{name}", urls=tuple(m + name for m in mirrors), md5=md5)
        for name, md5 in names_md5s
    )


def _images(raw: np.ndarray, *, where: str) -> np.ndarray:
    """uint8 (n, 28, 28) -> float32 (n, 1, 28, 28) in [0, 1]."""
    if raw.ndim != 3 or raw.shape[1:] != (28, 28) or raw.dtype != np.uint8:
        raise InputValidationError(
            f"{where}: expected uint8 images of shape (n, 28, 28). "
            f"Got {raw.dtype} {raw.shape} instead."
        )
    X = raw.astype(np.float32)[:, None]
    X /= 255.0
    return X


def _labels(raw: np.ndarray, *, n: int, where: str) -> np.ndarray:
    if raw.ndim != 1 or len(raw) != n:
        raise InputValidationError(
            f"{where}: expected {n} labels of shape ({n},). Got shape {raw.shape} instead."
        )
    return raw.astype(np.int64)


def _idx_loader(name: str, subdir: str, class_names: tuple[str, ...]):
    relpaths = [f"{subdir}/{n}" for n in _IDX_NAMES]

    def load(folder: Path | None) -> DataBundle:
        root = require_files(name, folder, relpaths)
        parts = []
        for images, labels in ((relpaths[0], relpaths[1]), (relpaths[2], relpaths[3])):
            X = _images(read_idx(root / images), where=str(root / images))
            y = _labels(read_idx(root / labels), n=len(X), where=str(root / labels))
            parts.append(ArraySet(X=X, y=y))
        logger.debug("loaded %s from %s", name, root)
        return DataBundle(
            name=name,
            train=parts[0],
            test=parts[1],
            n_classes=10,
            input_shape=(1, 28, 28),
            domain=(0.0, 1.0),
            class_names=class_names,
            kind="image",
        )

    load.__name__ = f"load_{name}"
    return load


def _load_kmnist(folder: Path | None) -> DataBundle:
    relpaths = [f"kmnist/{n}" for n, _ in _KMNIST_FILES]
    root = require_files("kmnist", folder, relpaths)
    arrays = []
    for rel in relpaths:
        with np.load(root / rel, allow_pickle=False) as npz:
            if "arr_0" not in npz.files:
                raise InputValidationError(
                    f"{root / rel}: expected an array named 'arr_0'; found {sorted(npz.files)}."
                )
            arrays.append(npz["arr_0"])
    X = _images(arrays[0], where=str(root / relpaths[0]))
    y = _labels(arrays[1], n=len(X), where=str(root / relpaths[1]))
    return DataBundle(
        name="kmnist",
        train=ArraySet(X=X, y=y),
        test=None,
        n_classes=10,
        input_shape=(1, 28, 28),
        domain=(0.0, 1.0),
        class_names=_KMNIST_CLASSES,
        kind="image",
    )


def _load_digits(folder: Path | None) -> DataBundle:
    from sklearn.datasets import load_digits

    data = load_digits()
    X = (data.data / 16.0).astype(np.float32)
    return DataBundle(
        name="digits",
        train=ArraySet(X=X, y=data.target.astype(np.int64)),
        test=None,
        n_classes=10,
        input_shape=(64,),
        domain=(0.0, 1.0),
        class_names=_DIGITS,
        kind="tabular",
    )


def _load_breast_cancer(folder: Path | None) -> DataBundle:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    raw = data.data.astype(np.float64)
    std = raw.std(axis=0)
    X = ((raw - raw.mean(axis=0)) / np.where(std > 0, std, 1.0)).astype(np.float32)
    return DataBundle(
        name="breast_cancer",
        train=ArraySet(X=X, y=data.target.astype(np.int64)),
        test=None,
        n_classes=2,
        input_shape=(X.shape[1],),
        domain=None,
        class_names=tuple(str(c) for c in data.target_names),
        kind="tabular",
    )


def _register() -> None:
    DATASETS.register(
        "digits",
        DatasetSpec(
            name="digits",
            description="scikit-learn's 8x8 handwritten digits (1,797 rows, 10 classes) as 64 "
            "features scaled to [0, 1] (pixel / 16). Bundled; no official test split.",
            loader=_load_digits,
            needs_data_dir=False,
            files=(),
            default_ood=None,
        ),
    )
    DATASETS.register(
        "breast_cancer",
        DatasetSpec(
            name="breast_cancer",
            description="scikit-learn's Wisconsin breast cancer set (569 rows, 30 features, 2 "
            "classes). Features are z-scored with the mean and std of the whole set as "
            "distributed (a fixed, public rescaling, identical for every split); domain None. "
            "Bundled; no official test split.",
            loader=_load_breast_cancer,
            needs_data_dir=False,
            files=(),
            default_ood=None,
        ),
    )
    DATASETS.register(
        "mnist",
        DatasetSpec(
            name="mnist",
            description="MNIST handwritten digits: 60,000 train / 10,000 test, (1, 28, 28) in "
            "[0, 1]. IDX files under mnist/.",
            loader=_idx_loader("mnist", "mnist", _DIGITS),
            needs_data_dir=True,
            files=_remote("mnist", zip(_IDX_NAMES, _MNIST_MD5, strict=True), _MNIST_MIRRORS),
            default_ood="kmnist",
        ),
    )
    DATASETS.register(
        "fashion_mnist",
        DatasetSpec(
            name="fashion_mnist",
            description="Fashion-MNIST clothing images: 60,000 train / 10,000 test, (1, 28, 28) "
            "in [0, 1]. IDX files under fashion_mnist/ (same names as MNIST's).",
            loader=_idx_loader("fashion_mnist", "fashion_mnist", _FASHION_CLASSES),
            needs_data_dir=True,
            files=_remote(
                "fashion_mnist", zip(_IDX_NAMES, _FASHION_MD5, strict=True), _FASHION_MIRRORS
            ),
            default_ood="kmnist",
        ),
    )
    DATASETS.register(
        "kmnist",
        DatasetSpec(
            name="kmnist",
            description="Kuzushiji-MNIST test split only (10,000 hiragana images, (1, 28, 28) "
            "in [0, 1]), given as the bundle's train part; the usual OOD set for MNIST. NPZ "
            "files under kmnist/.",
            loader=_load_kmnist,
            needs_data_dir=True,
            files=_remote("kmnist", _KMNIST_FILES, (_KMNIST_BASE,)),
            default_ood=None,
        ),
    )


_register()

_USER_SUFFIXES = (".csv", ".npz")


def load_dataset(
    name_or_path: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    label_column: str = "label",
) -> DataBundle:
    """Load a registered data set by name, or a user's ``.csv`` / ``.npz`` file by path.

    Registered sets that need files read them from ``data_dir`` (else ``$MODELSTEAL_DATA``);
    nothing is ever downloaded here. A CSV needs a header row, numeric features and the label
    column ``label_column``; an NPZ needs arrays ``X`` and ``y``. Labels of user files are mapped
    to 0..C-1 in sorted order and their original values kept as ``class_names``.
    """
    if isinstance(name_or_path, str) and name_or_path in DATASETS:
        spec = DATASETS.get(name_or_path)
        folder = resolve_data_dir(data_dir) if spec.needs_data_dir else None
        return spec.loader(folder)
    if not isinstance(name_or_path, str | os.PathLike) or not str(name_or_path).strip():
        raise InvalidParameterError(
            "The 'name_or_path' parameter of load_dataset must be a data set name or a path "
            f"to a .csv or .npz file. Got {name_or_path!r} instead."
        )
    if not isinstance(label_column, str) or not label_column:
        raise InvalidParameterError(
            "The 'label_column' parameter of load_dataset must be a non-empty string. "
            f"Got {label_column!r} instead."
        )
    path = Path(name_or_path).expanduser()
    suffix = path.suffix.lower()
    if suffix in _USER_SUFFIXES:
        if not path.is_file():
            raise DataNotFoundError(f"load_dataset: no file at {path}.")
        if suffix == ".csv":
            return load_csv(path, label_column=label_column)
        return load_npz(path)
    if path.exists():
        raise InvalidParameterError(
            f"load_dataset: {path} is neither a .csv nor a .npz file. Convert it to one of "
            "those, or pass the name of a registered data set."
        )
    err = UnknownNameError(DATASETS.kind, str(name_or_path), DATASETS.names())
    err.args = (f"{err.args[0]} Or pass the path of a .csv or .npz file.",)
    raise err
