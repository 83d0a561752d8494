"""Data sets and splits for stealing experiments.

Registered data sets (``DATASETS``) load from a local data folder (``data_dir=`` or
``$MODELSTEAL_DATA``) or from scikit-learn's bundled sets; user ``.csv`` / ``.npz`` files load by
path. Tabular sets with sensitive attributes (``adult``, ``compas``) carry them per row in
``ArraySet.groups``; ``pneumoniamnist`` and ``sst2`` (TF-IDF, or MiniLM embeddings through
:func:`load_sst2`) are the medical-imaging and text tasks of the multiplicity study.
:func:`load_splits` cuts a data set into disjoint, seeded target-train, target-test and
attacker-pool sets, plus an optional out-of-distribution set. Nothing is downloaded unless
:func:`fetch_dataset` is called.
"""

from modelsteal.data import _medmnist  # noqa: F401  (registers pneumoniamnist)
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
from modelsteal.data._splits import load_splits, split_bundle
from modelsteal.data._tabular import TabularData, load_adult
from modelsteal.data._text import load_sst2, minilm_available, read_sst2

__all__ = [
    "DATASETS",
    "ArraySet",
    "DataBundle",
    "DatasetSpec",
    "RemoteFile",
    "Splits",
    "TabularData",
    "data_dir",
    "fetch_dataset",
    "load_adult",
    "load_dataset",
    "load_splits",
    "load_sst2",
    "minilm_available",
    "read_idx",
    "read_sst2",
    "split_bundle",
    "verify_file",
]
