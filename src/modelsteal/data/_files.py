"""File formats and files: IDX parsing, user CSV/NPZ files, checksums and opt-in downloads."""

from __future__ import annotations

import csv
import gzip
import hashlib
import http.client
import logging
import os
import shutil
import struct
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path

import numpy as np

from modelsteal.data._base import DATASETS, ArraySet, DataBundle, RemoteFile
from modelsteal.errors import (
    ChecksumMismatchError,
    DataNotFoundError,
    InputValidationError,
    InvalidParameterError,
)

logger = logging.getLogger(__name__)

# IDX type codes (third byte of the magic number) -> big-endian numpy dtypes.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CORRUPT_HINT = (
    "The file is truncated or corrupt: check it with verify_file against the published MD5, "
    "or download it again (`modelsteal data fetch NAME --force`)."
)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip-compressed or not, as a native-endian array.

    The header is two zero bytes, a type code, the number of dimensions, then one big-endian
    uint32 per dimension; the data follow, big-endian. The data size must match the header.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"read_idx: no file at {path}.")
    try:
        with path.open("rb") as fh:
            compressed = fh.read(2) == b"\x1f\x8b"
        raw = gzip.decompress(path.read_bytes()) if compressed else path.read_bytes()
    except (EOFError, OSError, zlib.error) as exc:
        raise InputValidationError(
            f"read_idx: {path} could not be decompressed ({exc}). {_CORRUPT_HINT}"
        ) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise InputValidationError(
            f"read_idx: {path} is not an IDX file: bad magic number {raw[:4].hex() or '(empty)'} "
            "(expected 0000 then a type code in 08, 09, 0b, 0c, 0d, 0e and a dimension count "
            "of at least 1, e.g. 00000803 for images, 00000801 for labels)."
        )
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise InputValidationError(
            f"read_idx: {path} ends inside its header ({len(raw)} bytes, the header of a "
            f"{ndim}-D IDX file takes {header}). {_CORRUPT_HINT}"
        )
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise InputValidationError(
            f"read_idx: {path} has {len(raw) - header} data bytes, but its header "
            f"(shape {dims}, {dtype.name}) promises {expected}. {_CORRUPT_HINT}"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="))  # a native-endian, writable copy


def file_md5(path: str | Path) -> str:
    """The hex MD5 of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: Path, md5: str) -> None:
    """Raise ChecksumMismatchError unless the file at ``path`` has the MD5 ``md5``."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"verify_file: no file at {path}.")
    actual = file_md5(path)
    if actual != md5.lower():
        raise ChecksumMismatchError(
            f"Checksum mismatch for {path}: expected MD5 {md5.lower()}, got {actual}. The file "
            "is corrupt, truncated or a different version; delete it and download it again "
            "(`modelsteal data fetch NAME --force`)."
        )


def _download(url: str, dest: Path, md5: str, *, timeout: float, member: str | None = None) -> None:
    part = dest.with_name(dest.name + ".part")
    archive = dest.with_name(dest.name + ".zip.part")
    try:
        target = archive if member is not None else part
        with urllib.request.urlopen(url, timeout=timeout) as response, target.open("wb") as out:
            shutil.copyfileobj(response, out, length=1 << 20)
        if member is not None:
            with zipfile.ZipFile(archive) as zf, zf.open(member) as src, part.open("wb") as out:
                shutil.copyfileobj(src, out, length=1 << 20)
        actual = file_md5(part)
        if actual != md5.lower():
            raise ChecksumMismatchError(
                f"{url} served a file with MD5 {actual}, expected {md5.lower()}"
            )
        os.replace(part, dest)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ValueError(f"{url}: could not extract {member} ({exc})") from None
    finally:
        part.unlink(missing_ok=True)
        archive.unlink(missing_ok=True)


def fetch_dataset(
    name: str, *, data_dir: str | Path, force: bool = False, timeout: float = 60.0
) -> list[Path]:
    """Download a registered data set's files into ``data_dir`` and verify their MD5s (opt-in).

    Files already present with the right MD5 are kept unless ``force``; a present file with a
    wrong MD5 raises unless ``force``. Mirrors are tried in order. Returns the files' paths
    (empty for data sets bundled with scikit-learn). Never called by the loaders.
    """
    spec = DATASETS.get(name)
    if data_dir is None:
        raise InvalidParameterError(
            "The 'data_dir' parameter of fetch_dataset must be a folder to download into. "
            "Got None instead."
        )
    root = Path(data_dir).expanduser()
    if not spec.files:
        logger.info("data set %r is bundled with scikit-learn; nothing to fetch", name)
        return []
    paths = []
    for remote in spec.files:
        dest = root / remote.relpath
        paths.append(dest)
        if dest.is_file() and not force:
            try:
                verify_file(dest, remote.md5)
            except ChecksumMismatchError as exc:
                raise ChecksumMismatchError(
                    f"{exc} Pass force=True (--force) to replace it."
                ) from None
            logger.info("%s is present and verified", dest)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        _fetch_one(name, remote, dest, timeout=timeout)
    return paths


def _fetch_one(name: str, remote: RemoteFile, dest: Path, *, timeout: float) -> None:
    failures = []
    for url in remote.urls:
        logger.info("downloading %s -> %s", url, dest)
        try:
            _download(url, dest, remote.md5, timeout=timeout, member=remote.member)
        except ChecksumMismatchError as exc:
            failures.append(str(exc))
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            failures.append(f"{url}: {exc}")
        else:
            return
    tried = "\n  ".join(failures)
    raise DataNotFoundError(
        f"Could not download {remote.relpath} of data set {name!r}. Tried:\n  {tried}\n"
        f"If this machine is offline, copy the file from a machine that is online to {dest} "
        f"(expected MD5 {remote.md5}), or point MODELSTEAL_DATA / --data-dir at a folder that "
        "already holds it."
    )


# ---------------------------------------------------------------------------------------------
# User files
# ---------------------------------------------------------------------------------------------


def _encode_labels(labels: np.ndarray, *, where: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Map labels (ints or strings) to 0..C-1 in sorted order; keep the original values as names."""
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise InputValidationError(
                f"{where}: labels must be integers or strings; some are fractional, NaN or inf."
            )
        labels = labels.astype(np.int64)
    elif labels.dtype.kind == "S":
        labels = labels.astype(str)
    elif labels.dtype.kind == "U":
        try:
            labels = labels.astype(np.int64)  # "3" -> 3, so that "10" sorts after "9"
        except ValueError:
            pass
    elif labels.dtype.kind not in "iub":
        raise InputValidationError(
            f"{where}: labels must be integers or strings. Got dtype {labels.dtype} instead."
        )
    values, codes = np.unique(labels, return_inverse=True)
    if len(values) < 2:
        raise InputValidationError(
            f"{where}: a classification data set needs at least 2 classes; every label is "
            f"{values[0]!r}."
        )
    return codes.astype(np.int64).reshape(-1), tuple(str(v) for v in values.tolist())


def _bundle(name: str, X: np.ndarray, y: np.ndarray, class_names: tuple[str, ...]) -> DataBundle:
    return DataBundle(
        name=name,
        train=ArraySet(X=X, y=y),
        test=None,
        n_classes=len(class_names),
        input_shape=tuple(int(s) for s in X.shape[1:]),
        domain=None,
        class_names=class_names,
        kind="tabular" if X.ndim == 2 else "image",
    )


def load_csv(path: Path, *, label_column: str = "label") -> DataBundle:
    """A user's CSV file with a header row: numeric feature columns and one label column."""
    where = f"CSV file {path}"
    rows, lines = [], []
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh, skipinitialspace=True)
        header = next(reader, None)
        if header is None:
            raise InputValidationError(f"{where} is empty; it needs a header row and data rows.")
        header = [h.strip() for h in header]
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise InputValidationError(
                    f"{where}: line {reader.line_num} has {len(row)} fields, the header has "
                    f"{len(header)}."
                )
            rows.append(row)
            lines.append(reader.line_num)
    if label_column not in header:
        raise InputValidationError(
            f"{where} has no label column {label_column!r}. Its columns are: "
            f"{', '.join(repr(h) for h in header)}. Pass label_column= (--label-column) to name "
            "the column that holds the labels."
        )
    if header.count(label_column) > 1:
        raise InputValidationError(f"{where} has more than one column named {label_column!r}.")
    if not rows:
        raise InputValidationError(f"{where} has a header but no data rows.")
    if len(header) < 2:
        raise InputValidationError(f"{where} has no feature columns besides {label_column!r}.")
    cells = np.char.strip(np.array(rows, dtype=str))
    j_label = header.index(label_column)
    features = [j for j in range(len(header)) if j != j_label]
    X = np.empty((len(rows), len(features)), dtype=np.float64)
    for k, j in enumerate(features):
        column = np.where(cells[:, j] == "", "nan", cells[:, j])
        try:
            X[:, k] = column.astype(np.float64)
        except ValueError:
            i = next(i for i, v in enumerate(column) if not _is_float(v))
            raise InputValidationError(
                f"{where}: column {header[j]!r} is not numeric (line {lines[i]} holds "
                f"{column[i]!r}). Encode categorical columns as numbers (e.g. one-hot) or drop "
                "them before loading."
            ) from None
    X = X.astype(np.float32)
    bad = ~np.isfinite(X)
    if bad.any():
        cols = [header[features[k]] for k in np.flatnonzero(bad.any(axis=0))]
        bad_lines = [lines[i] for i in np.flatnonzero(bad.any(axis=1))]
        raise InputValidationError(
            f"{where}: missing (empty), NaN or infinite feature values in column(s) "
            f"{', '.join(repr(c) for c in cols[:10])} on line(s) {bad_lines[:10]}"
            f"{' and more' if len(bad_lines) > 10 else ''}. Impute or drop these rows first."
        )
    labels = cells[:, j_label]
    empty = np.flatnonzero(labels == "")
    if len(empty):
        raise InputValidationError(
            f"{where}: the label column {label_column!r} is empty on line(s) "
            f"{[lines[i] for i in empty[:10]]}."
        )
    y, class_names = _encode_labels(labels, where=where)
    return _bundle(path.name, X, y, class_names)


def _is_float(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def load_npz(path: Path) -> DataBundle:
    """A user's NPZ file with arrays ``X`` of shape (n, ...) and ``y`` of shape (n,)."""
    where = f"NPZ file {path}"
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = sorted(npz.files)
            if "X" not in keys or "y" not in keys:
                raise InputValidationError(
                    f"{where} must hold arrays named 'X' (features, shape (n, ...)) and 'y' "
                    f"(labels, shape (n,)). It holds: {', '.join(keys) or '(nothing)'}. Save it "
                    "with np.savez(path, X=X, y=y)."
                )
            X, labels = npz["X"], npz["y"]
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        if isinstance(exc, InputValidationError):
            raise
        raise InputValidationError(f"{where} could not be read ({exc}).") from None
    if X.dtype.kind not in "biuf":
        raise InputValidationError(f"{where}: X must be numeric. Got dtype {X.dtype} instead.")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if X.ndim < 2 or labels.ndim != 1 or len(X) != len(labels):
        raise InputValidationError(
            f"{where}: expected X of shape (n, ...) with at least 2 dimensions and y of shape "
            f"(n,). Got X {X.shape} and y {labels.shape} instead."
        )
    X = X.astype(np.float32)
    bad = ~np.isfinite(X.reshape(len(X), -1)).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise InputValidationError(
            f"{where}: X has NaN or infinite values in rows {rows[:10].tolist()}"
            f"{' and more' if len(rows) > 10 else ''}. Impute or drop these rows first."
        )
    y, class_names = _encode_labels(labels, where=where)
    return _bundle(path.name, X, y, class_names)
