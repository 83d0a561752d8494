"""Tabular data sets with sensitive attributes: UCI Adult and ProPublica COMPAS.

Two views of Adult:

- :func:`load_adult` gives the 14 raw columns with ordinal codes for the categories, as the
  decision-tree extraction attacks need them (:class:`TabularData`, per-feature kinds);
- the registered data set ``adult`` (and ``compas``) is a :class:`~modelsteal.data.DataBundle`
  for neural targets: categorical columns one-hot encoded over a fixed category list, numeric
  columns left raw and listed in ``numeric_features`` so that
  :func:`~modelsteal.data.load_splits` z-scores them with the statistics of the target-train rows
  only. The sensitive attributes travel with every row in ``ArraySet.groups``.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modelsteal._checks import check_choice
from modelsteal.data._base import (
    DATASETS,
    ArraySet,
    DataBundle,
    DatasetSpec,
    RemoteFile,
    require_files,
)
from modelsteal.data._base import data_dir as resolve_data_dir
from modelsteal.errors import DataNotFoundError, InputValidationError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TabularData:
    """A tabular data set with per-feature kinds, for tree extraction."""

    X: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    kinds: tuple[str, ...]
    categories: dict[int, tuple[str, ...]]
    class_names: tuple[str, ...]


# ---------------------------------------------------------------------------------------------
# Adult
# ---------------------------------------------------------------------------------------------

_ADULT_COLUMNS = (
    ("age", "integer"),
    ("workclass", "categorical"),
    ("fnlwgt", "integer"),
    ("education", "categorical"),
    ("education-num", "integer"),
    ("marital-status", "categorical"),
    ("occupation", "categorical"),
    ("relationship", "categorical"),
    ("race", "categorical"),
    ("sex", "categorical"),
    ("capital-gain", "integer"),
    ("capital-loss", "integer"),
    ("hours-per-week", "integer"),
    ("native-country", "categorical"),
)
_ADULT_BASE = "https://archive.ics.uci.edu/ml/machine-learning-databases/adult/"
_ADULT_FILES = (
    RemoteFile(
        "adult/adult.data", (_ADULT_BASE + "adult.data",), "5d7c39d7b8804f071cdd1f2a7c460872"
    ),
    RemoteFile(
        "adult/adult.test", (_ADULT_BASE + "adult.test",), "35238206dfdf7f1fe215bbb874adecdc"
    ),
)
#: Numeric columns of the ``adult`` bundle; capital gain and loss enter as log(1 + value).
_ADULT_NUMERIC = ("age", "education-num", "capital-gain", "capital-loss", "hours-per-week")
_ADULT_LOG = ("capital-gain", "capital-loss")
#: One-hot columns of the ``adult`` bundle (``education`` duplicates ``education-num``; the
#: census sampling weight ``fnlwgt`` describes the survey, not the person: both are left out).
_ADULT_CATEGORICAL = (
    "workclass",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "native-country",
)
ADULT_SENSITIVE = ("sex", "race")


def load_adult(*, data_dir: str | os.PathLike | None = None, split: str = "train") -> TabularData:
    """UCI Adult from ``<data_dir>/adult/adult.{data,test}`` (explicit path > ``$MODELSTEAL_DATA``).

    Categorical features are ordinal codes over the categories seen in ``adult.data`` (sorted; the
    missing value ``?`` is a category of its own); the codes are the same for both splits. Label 1
    is ``>50K``.
    """
    split = check_choice(split, name="split", owner="load_adult", choices=("train", "test"))
    folder = resolve_data_dir(data_dir)
    if folder is None:
        raise DataNotFoundError(
            "The Adult data set is read from a data folder, and none was given. Set "
            "MODELSTEAL_DATA=/path/to/datasets or pass data_dir=; the folder must hold "
            "adult/adult.data and adult/adult.test."
        )
    train_rows = _read_adult(folder / "adult" / "adult.data")
    rows = train_rows if split == "train" else _read_adult(folder / "adult" / "adult.test")
    kinds = tuple(k for _, k in _ADULT_COLUMNS)
    categories = {
        j: tuple(sorted({r[j] for r in train_rows}))
        for j, k in enumerate(kinds)
        if k == "categorical"
    }
    X = np.empty((len(rows), len(kinds)), dtype=np.float64)
    for j, kind in enumerate(kinds):
        col = [r[j] for r in rows]
        if kind == "categorical":
            index = {v: i for i, v in enumerate(categories[j])}
            X[:, j] = [index.get(v, index.get("?", 0)) for v in col]
        else:
            X[:, j] = np.asarray(col, dtype=np.float64)
    y = np.asarray([r[-1].rstrip(".") == ">50K" for r in rows], dtype=np.int64)
    return TabularData(
        X=X,
        y=y,
        feature_names=tuple(n for n, _ in _ADULT_COLUMNS),
        kinds=kinds,
        categories=categories,
        class_names=("<=50K", ">50K"),
    )


def _read_adult(path: Path) -> list[list[str]]:
    if not path.is_file():
        raise DataNotFoundError(f"The Adult data set needs {path}, which does not exist.")
    out = []
    with path.open(newline="") as fh:
        for row in csv.reader(fh, skipinitialspace=True):
            if len(row) == len(_ADULT_COLUMNS) + 1:
                out.append([v.strip() for v in row])
    return out


def _one_hot(
    columns: dict[str, np.ndarray], categories: dict[str, Sequence[str]]
) -> tuple[np.ndarray, list[str]]:
    """One-hot columns over fixed category lists; a value outside its list gives all zeros."""
    blocks, names = [], []
    for name, cats in categories.items():
        values = columns[name]
        blocks.append(
            (values[:, None] == np.asarray(cats, dtype=object)[None, :]).astype(np.float32)
        )
        names += [f"{name}={c}" for c in cats]
    return np.concatenate(blocks, axis=1), names


def _encode(
    columns: dict[str, np.ndarray],
    *,
    numeric: Sequence[str],
    log1p: Sequence[str],
    categories: dict[str, Sequence[str]],
) -> tuple[np.ndarray, list[str]]:
    num = np.column_stack([columns[c].astype(np.float64) for c in numeric])
    for j, c in enumerate(numeric):
        if c in log1p:
            num[:, j] = np.log1p(np.clip(num[:, j], 0.0, None))
    hot, hot_names = _one_hot(columns, categories)
    X = np.concatenate([num.astype(np.float32), hot], axis=1)
    return X, [*(f"log1p({c})" if c in log1p else c for c in numeric), *hot_names]


def _columns(rows: list[list[str]], header: Sequence[str]) -> dict[str, np.ndarray]:
    table = np.asarray(rows, dtype=object)
    return {name: table[:, j] for j, name in enumerate(header)}


def _load_adult_bundle(folder: Path | None) -> DataBundle:
    root = require_files("adult", folder, [f.relpath for f in _ADULT_FILES])
    header = [n for n, _ in _ADULT_COLUMNS]
    train_rows = _read_adult(root / "adult" / "adult.data")
    test_rows = _read_adult(root / "adult" / "adult.test")
    train_cols = _columns([r[:-1] for r in train_rows], header)
    test_cols = _columns([r[:-1] for r in test_rows], header)
    # The category lists come from the official training file only ('?' is a category).
    categories = {c: sorted(set(train_cols[c])) for c in _ADULT_CATEGORICAL}
    parts = []
    for rows, cols in ((train_rows, train_cols), (test_rows, test_cols)):
        X, names = _encode(cols, numeric=_ADULT_NUMERIC, log1p=_ADULT_LOG, categories=categories)
        y = np.asarray([r[-1].rstrip(".") == ">50K" for r in rows], dtype=np.int64)
        groups = {g: cols[g].astype(str) for g in ADULT_SENSITIVE}
        parts.append(ArraySet(X=X, y=y, groups=groups))
    logger.debug("loaded adult from %s", root)
    return DataBundle(
        name="adult",
        train=parts[0],
        test=parts[1],
        n_classes=2,
        input_shape=(parts[0].X.shape[1],),
        domain=None,
        class_names=("<=50K", ">50K"),
        kind="tabular",
        feature_names=tuple(names),
        numeric_features=tuple(range(len(_ADULT_NUMERIC))),
        sensitive_features=ADULT_SENSITIVE,
    )


# ---------------------------------------------------------------------------------------------
# COMPAS
# ---------------------------------------------------------------------------------------------

_COMPAS_FILE = RemoteFile(
    "compas/compas-scores-two-years.csv",
    (
        "https://raw.githubusercontent.com/propublica/compas-analysis/master/"
        "compas-scores-two-years.csv",
    ),
    "9165d40c400bba93a8cffece2b74622b",
)
_COMPAS_NUMERIC = ("age", "priors_count", "juv_fel_count", "juv_misd_count", "juv_other_count")
#: Fixed category lists (the values present in ProPublica's file).
_COMPAS_CATEGORIES = {
    "c_charge_degree": ("F", "M"),
    "sex": ("Female", "Male"),
    "race": ("African-American", "Asian", "Caucasian", "Hispanic", "Native American", "Other"),
}
COMPAS_SENSITIVE = ("race",)


def _read_compas(path: Path) -> tuple[dict[str, np.ndarray], int]:
    """The columns of the rows kept by ProPublica's filter, and the number of rows read."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        rows = [r for r in reader if r]
    if header is None:
        raise InputValidationError(f"{path} is empty; expected ProPublica's COMPAS CSV.")
    needed = (
        *_COMPAS_NUMERIC,
        *_COMPAS_CATEGORIES,
        "days_b_screening_arrest",
        "is_recid",
        "score_text",
        "two_year_recid",
    )
    missing = [c for c in needed if c not in header]
    if missing:
        raise InputValidationError(
            f"{path} lacks the column(s) {', '.join(missing)}; expected ProPublica's "
            "compas-scores-two-years.csv."
        )
    index = {c: header.index(c) for c in needed}  # first occurrence (the file repeats a few)
    table = {c: np.asarray([r[j] for r in rows], dtype=object) for c, j in index.items()}
    days = table["days_b_screening_arrest"]
    has_days = days != ""
    days_num = np.where(has_days, days, "nan").astype(np.float64)
    keep = (
        has_days
        & (np.abs(days_num) <= 30)
        & (table["is_recid"] != "-1")
        & (table["c_charge_degree"] != "O")
        & (table["score_text"] != "N/A")
    )
    return {c: v[keep] for c, v in table.items()}, len(rows)


def _load_compas(folder: Path | None) -> DataBundle:
    root = require_files("compas", folder, [_COMPAS_FILE.relpath])
    cols, n_read = _read_compas(root / _COMPAS_FILE.relpath)
    X, names = _encode(cols, numeric=_COMPAS_NUMERIC, log1p=(), categories=_COMPAS_CATEGORIES)
    y = cols["two_year_recid"].astype(np.int64)
    groups = {"race": cols["race"].astype(str), "sex": cols["sex"].astype(str)}
    logger.debug("loaded compas from %s: %d of %d rows kept", root, len(y), n_read)
    return DataBundle(
        name="compas",
        train=ArraySet(X=X, y=y, groups=groups),
        test=None,
        n_classes=2,
        input_shape=(X.shape[1],),
        domain=None,
        class_names=("no_recid", "recid"),
        kind="tabular",
        feature_names=tuple(names),
        numeric_features=tuple(range(len(_COMPAS_NUMERIC))),
        sensitive_features=COMPAS_SENSITIVE,
    )


def _register() -> None:
    DATASETS.register(
        "adult",
        DatasetSpec(
            name="adult",
            description="UCI Adult census income (>50K): 32,561 train / 16,281 test rows, 2 "
            "classes. 5 numeric features (age, education-num, log1p capital gain and loss, "
            "hours-per-week; z-scored on target-train rows by load_splits) and 7 one-hot "
            "categoricals over adult.data's categories ('?' is a category); fnlwgt and education "
            "are dropped. groups: sex, race (also input features). Files under adult/.",
            loader=_load_adult_bundle,
            needs_data_dir=True,
            files=_ADULT_FILES,
            default_ood=None,
        ),
    )
    DATASETS.register(
        "compas",
        DatasetSpec(
            name="compas",
            description="ProPublica COMPAS two-year recidivism, filtered as ProPublica did "
            "(|days_b_screening_arrest| <= 30, is_recid != -1, c_charge_degree != 'O', "
            "score_text != 'N/A'): 6,172 rows, 2 classes (two_year_recid). Features: age, "
            "priors_count, three juvenile counts (z-scored on target-train rows by load_splits), "
            "one-hot charge degree, sex and race. groups: race (sensitive), sex. No official "
            "test split. File compas/compas-scores-two-years.csv.",
            loader=_load_compas,
            needs_data_dir=True,
            files=(_COMPAS_FILE,),
            default_ood=None,
        ),
    )


_register()
