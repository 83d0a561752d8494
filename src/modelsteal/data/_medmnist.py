"""PneumoniaMNIST (MedMNIST v2): paediatric chest X-rays, 28x28, normal vs pneumonia."""

from __future__ import annotations

import logging
import zipfile
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
from modelsteal.errors import InputValidationError

logger = logging.getLogger(__name__)

_PNEUMONIA_FILE = RemoteFile(
    "medmnist/pneumoniamnist.npz",
    ("https://zenodo.org/records/6496656/files/pneumoniamnist.npz?download=1",),
    "28209eda62fecd6e6a2d98b1501bb15f",
)
_PARTS = ("train", "val", "test")


def _part(npz, part: str, where: str) -> ArraySet:
    images, labels = npz[f"{part}_images"], npz[f"{part}_labels"]
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise InputValidationError(
            f"{where}: expected {part}_images as uint8 (n, 28, 28). "
            f"Got {images.dtype} {images.shape} instead."
        )
    y = np.asarray(labels).reshape(-1)
    if len(y) != len(images):
        raise InputValidationError(
            f"{where}: {part}_labels has {len(y)} labels for {len(images)} images."
        )
    X = images.astype(np.float32)[:, None] / 255.0
    return ArraySet(X=X, y=y.astype(np.int64))


def _load_pneumoniamnist(folder: Path | None) -> DataBundle:
    root = require_files("pneumoniamnist", folder, [_PNEUMONIA_FILE.relpath])
    path = root / _PNEUMONIA_FILE.relpath
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            wanted = {f"{p}_{k}" for p in _PARTS for k in ("images", "labels")}
            if not wanted <= keys:
                raise InputValidationError(
                    f"{path} lacks the arrays {', '.join(sorted(wanted - keys))}; expected the "
                    "official MedMNIST pneumoniamnist.npz."
                )
            train, val, test = (_part(npz, p, str(path)) for p in _PARTS)
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InputValidationError(f"{path} could not be read ({exc}).") from None
    logger.debug("loaded pneumoniamnist from %s", root)
    return DataBundle(
        name="pneumoniamnist",
        train=train,
        test=test,
        val=val,
        n_classes=2,
        input_shape=(1, 28, 28),
        domain=(0.0, 1.0),
        class_names=("normal", "pneumonia"),
        kind="image",
    )


def _register() -> None:
    DATASETS.register(
        "pneumoniamnist",
        DatasetSpec(
            name="pneumoniamnist",
            description="PneumoniaMNIST (MedMNIST v2): paediatric chest X-rays, 4,708 train / "
            "524 val / 624 test, (1, 28, 28) in [0, 1], 2 classes (normal, pneumonia). The "
            "official val part is kept as Splits.validation. File medmnist/pneumoniamnist.npz.",
            loader=_load_pneumoniamnist,
            needs_data_dir=True,
            files=(_PNEUMONIA_FILE,),
            default_ood=None,
        ),
    )


_register()
