"""Data sets and splits for stealing experiments.

Registered data sets (``DATASETS``) load from a local data folder (``data_dir=`` or
``$MODELSTEAL_DATA``) or from scikit-learn's bundled sets; user ``.csv`` / ``.npz`` files load by
path. :func:`load_splits` cuts a data set into disjoint, seeded target-train, target-test and
attacker-pool sets, plus an optional out-of-distribution set. Nothing is downloaded unless
:func:`fetch_dataset` is called.
"""

from modelsteal.data._base import (
    DATASETS,
    ArraySet,
    DataBundle,
    DatasetSpec,
    RemoteFile,
    Splits,
    data_dir,
)
from modelsteal.data._files import fetch_dataset, read_idx, verify_file
from modelsteal.data._loaders import load_dataset
from modelsteal.data._splits import load_splits

__all__ = [
    "DATASETS",
    "ArraySet",
    "DataBundle",
    "DatasetSpec",
    "RemoteFile",
    "Splits",
    "data_dir",
    "fetch_dataset",
    "load_dataset",
    "load_splits",
    "read_idx",
    "verify_file",
]
