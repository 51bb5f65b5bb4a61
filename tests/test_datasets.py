"""kernels.datasets against files written here in the published layouts.

IDX: http://yann.lecun.com/exdb/mnist/ (magic 0x00000803 for images, 0x00000801
for labels, big-endian dimensions). CIFAR-10 binary: records of 1 label byte +
3072 pixel bytes. CIFAR-10 python: a pickled dict with b"data" (N×3072 uint8) and
b"labels" (a list). The expected values come from the arrays the tests wrote.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct

import numpy as np
import pytest

from kernels import datasets
from kernels.datasets import DatasetError, Split

RNG = np.random.default_rng(3)


def idx_bytes(arr: np.ndarray, code: int = 0x08) -> bytes:
    header = struct.pack(">HBB", 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_mnist(d, n_train=5, n_test=3, gz=False, sub=""):
    """Four IDX files; returns the arrays written."""
    root = d / sub if sub else d
    root.mkdir(parents=True, exist_ok=True)
    arrays = {"train-images-idx3-ubyte": RNG.integers(0, 256, (n_train, 28, 28), np.uint8),
              "train-labels-idx1-ubyte": RNG.integers(0, 10, n_train).astype(np.uint8),
              "t10k-images-idx3-ubyte": RNG.integers(0, 256, (n_test, 28, 28), np.uint8),
              "t10k-labels-idx1-ubyte": RNG.integers(0, 10, n_test).astype(np.uint8)}
    for name, arr in arrays.items():
        data = idx_bytes(arr)
        if gz:
            (root / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (root / name).write_bytes(data)
    return arrays


# --------------------------------------------------------------------------- IDX

@pytest.mark.parametrize("dtype,code", [(np.uint8, 0x08), (np.int16, 0x0B),
                                        (np.int32, 0x0C), (np.float32, 0x0D),
                                        (np.float64, 0x0E)])
def test_read_idx_types(tmp_path, dtype, code):
    arr = (RNG.standard_normal((2, 3, 4)) * 100).astype(dtype)
    p = tmp_path / "a.idx"
    p.write_bytes(idx_bytes(arr, code))
    out = datasets.read_idx(p)
    assert out.shape == (2, 3, 4) and out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, arr)


def test_read_idx_gzip_detected_by_magic_not_suffix(tmp_path):
    arr = RNG.integers(0, 256, (4, 5), np.uint8)
    p = tmp_path / "no-suffix"
    p.write_bytes(gzip.compress(idx_bytes(arr)))
    np.testing.assert_array_equal(datasets.read_idx(p), arr)


@pytest.mark.parametrize("mutate,message", [
    (lambda b: b[:-1], "truncated"),
    (lambda b: b + b"\0", "trailing"),
    (lambda b: b[:6], "truncated IDX header"),
    (lambda b: b"\x01" + b[1:], "bad IDX magic"),
    (lambda b: b[:2] + b"\x07" + b[3:], "bad IDX magic"),
    (lambda b: gzip.compress(b)[:-10], "corrupt gzip"),
])
def test_read_idx_bad_files(tmp_path, mutate, message):
    p = tmp_path / "bad"
    p.write_bytes(mutate(idx_bytes(RNG.integers(0, 256, (3, 4), np.uint8))))
    with pytest.raises(DatasetError, match=message) as info:
        datasets.read_idx(p)
    assert str(p) in str(info.value)


def test_read_idx_missing(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        datasets.read_idx(tmp_path / "nope")


# --------------------------------------------------------------------------- MNIST

@pytest.mark.parametrize("gz,sub", [(False, ""), (True, ""), (True, "MNIST/raw")])
def test_load_mnist(tmp_path, gz, sub):
    arrays = write_mnist(tmp_path, gz=gz, sub=sub)
    s = datasets.load_mnist(tmp_path)
    assert isinstance(s, Split)
    assert s.x_train.shape == (5, 1, 28, 28) and s.x_test.shape == (3, 1, 28, 28)
    for x in (s.x_train, s.x_test):
        assert x.dtype == np.float32 and x.flags.c_contiguous
    assert s.y_train.dtype == np.int64 and s.y_test.dtype == np.int64
    np.testing.assert_allclose(s.x_train[:, 0], arrays["train-images-idx3-ubyte"] / 255,
                               rtol=1e-6)
    np.testing.assert_array_equal(s.y_test, arrays["t10k-labels-idx1-ubyte"])


def test_load_mnist_count_mismatch(tmp_path):
    write_mnist(tmp_path)
    labels = RNG.integers(0, 10, 4).astype(np.uint8)  # 4 labels for 5 images
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    with pytest.raises(DatasetError, match="4 labels for 5 images"):
        datasets.load_mnist(tmp_path)


def test_load_mnist_bad_labels_and_shapes(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.array([1, 2, 12], np.uint8)))
    with pytest.raises(DatasetError, match="0..9"):
        datasets.load_mnist(tmp_path)
    write_mnist(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(
        idx_bytes(np.zeros((3, 27, 28), np.uint8)))
    with pytest.raises(DatasetError, match="N×28×28"):
        datasets.load_mnist(tmp_path)


def test_load_mnist_missing_file(tmp_path):
    write_mnist(tmp_path)
    os.remove(tmp_path / "t10k-images-idx3-ubyte")
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte"):
        datasets.load_mnist(tmp_path)


# --------------------------------------------------------------------------- CIFAR-10

def cifar_arrays(n):
    return RNG.integers(0, 256, (n, 3072), np.uint8), RNG.integers(0, 10, n)


def write_cifar_bin(d, sizes=(2, 3, 1, 2, 2, 3)):
    d.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    out = []
    for name, n in zip(names, sizes):
        x, y = cifar_arrays(n)
        records = np.concatenate([y.astype(np.uint8)[:, None], x], axis=1)
        (d / name).write_bytes(records.tobytes())
        out.append((x, y))
    return out


def write_cifar_py(d, sizes=(2, 3, 1, 2, 2, 3), protocol=pickle.DEFAULT_PROTOCOL):
    d.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    out = []
    for name, n in zip(names, sizes):
        x, y = cifar_arrays(n)
        batch = {b"batch_label": b"training batch 1 of 5", b"labels": [int(v) for v in y],
                 b"data": x, b"filenames": [b"img_%d.png" % i for i in range(n)]}
        with open(d / name, "wb") as f:
            pickle.dump(batch, f, protocol=protocol)
        out.append((x, y))
    return out


def check_cifar(s, written):
    x_train = np.concatenate([x for x, _ in written[:5]])
    y_train = np.concatenate([y for _, y in written[:5]])
    assert s.x_train.shape == (len(x_train), 3, 32, 32)
    assert s.x_test.shape == (len(written[5][0]), 3, 32, 32)
    assert s.x_train.dtype == np.float32 and s.x_train.flags.c_contiguous
    # channel-major: the first 1024 bytes are the red plane, row-major
    np.testing.assert_allclose(s.x_train[:, 0], x_train[:, :1024].reshape(-1, 32, 32) / 255,
                               rtol=1e-6)
    np.testing.assert_allclose(s.x_test[:, 2, 5, 7], written[5][0][:, 2048 + 5 * 32 + 7] / 255,
                               rtol=1e-6)
    np.testing.assert_array_equal(s.y_train, y_train)
    np.testing.assert_array_equal(s.y_test, written[5][1])
    assert s.y_train.dtype == np.int64


@pytest.mark.parametrize("sub", ["", "cifar-10-batches-bin"])
def test_load_cifar10_binary(tmp_path, sub):
    written = write_cifar_bin(tmp_path / sub if sub else tmp_path)
    check_cifar(datasets.load_cifar10(tmp_path), written)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_load_cifar10_python(tmp_path, protocol):
    written = write_cifar_py(tmp_path / "cifar-10-batches-py", protocol=protocol)
    check_cifar(datasets.load_cifar10(tmp_path), written)


def test_load_cifar10_python2_module_names(tmp_path):
    """The real files come from Python 2 and numpy 1, naming numpy.core.multiarray."""
    written = write_cifar_py(tmp_path, protocol=2)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        p = tmp_path / name
        p.write_bytes(p.read_bytes().replace(b"numpy._core.multiarray\n",
                                             b"numpy.core.multiarray\n"))
        assert b"numpy.core.multiarray" in p.read_bytes()
    check_cifar(datasets.load_cifar10(tmp_path), written)


def test_cifar_binary_truncated(tmp_path):
    write_cifar_bin(tmp_path)
    p = tmp_path / "data_batch_3.bin"
    p.write_bytes(p.read_bytes()[:-5])
    with pytest.raises(DatasetError, match="data_batch_3.bin.*records"):
        datasets.load_cifar10(tmp_path)


def test_cifar_bad_label(tmp_path):
    write_cifar_bin(tmp_path)
    p = tmp_path / "test_batch.bin"
    data = bytearray(p.read_bytes())
    data[0] = 10
    p.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="0..9"):
        datasets.load_cifar10(tmp_path)


def test_cifar_python_count_mismatch(tmp_path):
    write_cifar_py(tmp_path)
    with open(tmp_path / "data_batch_2", "wb") as f:
        pickle.dump({b"data": np.zeros((3, 3072), np.uint8), b"labels": [1, 2]}, f)
    with pytest.raises(DatasetError, match="data_batch_2: 2 labels for 3 images"):
        datasets.load_cifar10(tmp_path)


def test_cifar_missing(tmp_path):
    write_cifar_bin(tmp_path)
    os.remove(tmp_path / "test_batch.bin")
    with pytest.raises(DatasetError, match="CIFAR-10 batches not found"):
        datasets.load_cifar10(tmp_path)


class _Evil:
    """Unpickling this would call os.system (it must never happen)."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _EvalEvil:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
@pytest.mark.parametrize("payload", ["top", "nested"])
def test_malicious_pickle_refused_and_not_run(tmp_path, protocol, payload):
    write_cifar_py(tmp_path)
    marker = tmp_path / "pwned"
    evil = _Evil(f"touch {marker}")
    obj = evil if payload == "top" else {b"data": np.zeros((1, 3072), np.uint8),
                                         b"labels": [evil]}
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps(obj, protocol=protocol))
    with pytest.raises(DatasetError, match=r"data_batch_1.*refusing to load global"):
        datasets.load_cifar10(tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("evil", [_EvalEvil(), np.array([{"a": 1}], dtype=object)])
def test_other_forbidden_pickles(tmp_path, evil):
    write_cifar_py(tmp_path)
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": evil, b"labels": [1]}))
    with pytest.raises(DatasetError, match="test_batch.*refusing"):
        datasets.load_cifar10(tmp_path)


def test_cifar_python_not_a_dict_or_garbage(tmp_path):
    write_cifar_py(tmp_path)
    (tmp_path / "data_batch_5").write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(DatasetError, match="expected a pickled dict"):
        datasets.load_cifar10(tmp_path)
    (tmp_path / "data_batch_5").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DatasetError, match="data_batch_5: not a CIFAR-10 batch"):
        datasets.load_cifar10(tmp_path)


# --------------------------------------------------------------------------- digits

def test_bilinear_matches_torch_interpolate():
    torch = pytest.importorskip("torch")
    x = RNG.random((3, 2, 8, 8))
    for size in (3, 8, 16, 28):
        ref = torch.nn.functional.interpolate(torch.from_numpy(x), size=(size, size),
                                              mode="bilinear", align_corners=False)
        np.testing.assert_allclose(datasets.resize_bilinear(x, size), ref.numpy(),
                                   rtol=1e-5, atol=1e-6)


def test_load_digits_against_sklearn():
    from sklearn.datasets import load_digits as sk

    raw = sk()
    s = datasets.load_digits(image_size=8, channels=1, test_fraction=0.25, seed=0)
    x = np.concatenate([s.x_train, s.x_test])
    y = np.concatenate([s.y_train, s.y_test])
    assert x.shape == (1797, 1, 8, 8) and x.dtype == np.float32
    assert x.min() >= 0 and x.max() <= 1
    # size 8 is no resize: every image is sklearn's, /16, with its own label
    flat = {img.tobytes(): lab for img, lab in zip((raw.images / 16).astype(np.float32),
                                                      raw.target)}
    for img, lab in zip(x[:, 0], y):
        assert flat[img.tobytes()] == lab
    assert sorted(y.tolist()) == sorted(raw.target.tolist())
    assert len(s.y_test) == int(np.ceil(1797 * 0.25))  # sklearn rounds the test share up


def test_load_digits_resize_channels_stratified_deterministic():
    torch = pytest.importorskip("torch")
    from sklearn.datasets import load_digits as sk

    raw = sk()
    a = datasets.load_digits(image_size=28, channels=3, seed=1)
    b = datasets.load_digits(image_size=28, channels=3, seed=1)
    c = datasets.load_digits(image_size=28, channels=3, seed=2)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a.y_train, c.y_train)
    assert a.x_train.shape[1:] == (3, 28, 28) and a.x_train.flags.c_contiguous
    np.testing.assert_array_equal(a.x_train[:, 0], a.x_train[:, 2])
    assert set(a.y_train.tolist()) == set(a.y_test.tolist()) == set(range(10))
    # stratified: each class's share of the test set matches its share overall
    overall = np.bincount(raw.target, minlength=10) / len(raw.target)
    test = np.bincount(a.y_test, minlength=10) / len(a.y_test)
    assert np.abs(test - overall).max() < 0.01
    # the resized images are torch's bilinear resize of sklearn's images
    ref = torch.nn.functional.interpolate(torch.from_numpy(raw.images[:, None] / 16),
                                          size=(28, 28), mode="bilinear",
                                          align_corners=False).numpy()[:, 0]
    ref = np.clip(ref, 0, 1).reshape(len(ref), -1)
    got = a.x_test[:, 0].reshape(len(a.x_test), -1).astype(np.float64)
    dist = (got ** 2).sum(1)[:, None] - 2 * got @ ref.T + (ref ** 2).sum(1)[None]
    nearest = dist.argmin(axis=1)
    assert np.sqrt(np.maximum(dist[np.arange(len(got)), nearest], 0)).max() < 1e-4
    np.testing.assert_array_equal(raw.target[nearest], a.y_test)


def test_load_digits_bad_arguments():
    with pytest.raises(ValueError, match="test_fraction"):
        datasets.load_digits(test_fraction=1.5)
    with pytest.raises(TypeError, match="image_size"):
        datasets.load_digits(image_size=2.5)
    with pytest.raises(ValueError, match="channels"):
        datasets.load_digits(channels=0)


# --------------------------------------------------------------------------- load()

def test_load_front_door(tmp_path):
    s = datasets.load("digits", image_size=16, channels=2)
    assert s.x_train.shape[1:] == (2, 16, 16)
    with pytest.raises(DatasetError, match="--data-dir"):
        datasets.load("mnist")
    with pytest.raises(DatasetError, match="--data-dir"):
        datasets.load("cifar10")
    with pytest.raises(DatasetError, match="unknown data set 'imagenet'"):
        datasets.load("imagenet")
    arrays = write_mnist(tmp_path, gz=True)
    s = datasets.load("mnist", tmp_path, image_size=32, channels=3)
    assert s.x_train.shape == (5, 3, 32, 32) and s.x_train.dtype == np.float32
    assert s.x_train.flags.c_contiguous
    np.testing.assert_allclose(
        s.x_train[:, 1],
        datasets.resize_bilinear(arrays["train-images-idx3-ubyte"] / 255, 32), rtol=1e-5)
    written = write_cifar_bin(tmp_path / "c")
    s = datasets.load("cifar10", tmp_path / "c", channels=1)
    x = np.concatenate([w[0] for w in written[:5]]).reshape(-1, 3, 32, 32) / 255
    np.testing.assert_allclose(s.x_train[:, 0], x.mean(axis=1), rtol=1e-5)
    with pytest.raises(DatasetError, match="data directory not found"):
        datasets.load("mnist", tmp_path / "missing")
