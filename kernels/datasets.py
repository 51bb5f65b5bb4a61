"""Image data sets for the examples, read from their published file formats.

>>> from kernels.datasets import load_digits
>>> split = load_digits(image_size=16, channels=1)
>>> split.x_train.shape[1:], split.x_train.dtype, split.y_train.dtype
((1, 16, 16), dtype('float32'), dtype('int64'))

Nothing is downloaded. ``load_digits`` uses scikit-learn's shipped 8×8 digits,
so the examples run offline; ``load_mnist`` and ``load_cifar10`` read files you
already have (``--data-dir``), in the layouts torchvision and the original
sites use. Every loader returns a ``Split`` of float32 NCHW images in [0, 1]
(C-contiguous) and int64 labels. Anything wrong with a file raises
``DatasetError`` (a ``ValueError``) naming the file and the problem.

NOTE: the CIFAR-10 "python version" is a pickle. It is read only through
``_SafeUnpickler``, whose ``find_class`` resolves nothing but the few numpy
callables that rebuild an array, so a hostile file cannot run code.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = ["DatasetError", "Split", "read_idx", "load_mnist", "load_cifar10",
           "load_digits", "load", "NAMES", "bilinear_matrix", "resize_bilinear"]

NAMES = ("digits", "mnist", "cifar10")

_GZIP_MAGIC = b"\x1f\x8b"
# IDX type code -> big-endian dtype (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT")
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_MNIST_FILES = {"train_images": "train-images-idx3-ubyte",
                "train_labels": "train-labels-idx1-ubyte",
                "test_images": "t10k-images-idx3-ubyte",
                "test_labels": "t10k-labels-idx1-ubyte"}
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = "test_batch"
_CIFAR_PIXELS = 3 * 32 * 32


class DatasetError(ValueError):
    """A data file is missing, truncated or not in the format it claims."""


class Split(NamedTuple):
    """Train and test arrays: x float32 NCHW in [0, 1], y int64 class indices."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


# --------------------------------------------------------------------------- files

def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic (not by suffix)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e.strerror or e})") from None
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise DatasetError(f"{path}: corrupt gzip data ({e})") from None
    return data


def _find(name: str, dirs: list[Path], suffixes: tuple[str, ...]) -> Path | None:
    """The first existing ``dir/name+suffix``, searching dirs in order."""
    for d in dirs:
        for s in suffixes:
            p = d / (name + s)
            if p.is_file():
                return p
    return None


def _data_dir(data_dir) -> Path:
    if not isinstance(data_dir, (str, os.PathLike)):
        raise TypeError(f"data_dir must be a path, got {type(data_dir).__name__}")
    d = Path(data_dir)
    if not d.is_dir():
        raise DatasetError(f"{d}: data directory not found")
    return d


# --------------------------------------------------------------------------- IDX / MNIST

def read_idx(path) -> np.ndarray:
    """Read an IDX file (raw or gzip) into a native-endian array of its declared shape.

    Layout: two zero bytes, a type code, the number of dimensions, then one
    big-endian uint32 per dimension and the big-endian data, row-major."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DatasetError(f"{path}: truncated IDX header ({len(data)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in _IDX_TYPES:
        raise DatasetError(f"{path}: bad IDX magic number 0x{data[:4].hex()} "
                           "(expected 0x0000 then a type code and the rank)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{path}: truncated IDX header (rank {ndim} needs {header} bytes, "
                           f"file has {len(data)})")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_TYPES[code])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise DatasetError(f"{path}: {what}: header declares shape {shape} "
                           f"({expected} bytes), file has {len(data)} bytes")
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))


def _mnist_part(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    x = read_idx(images)
    y = read_idx(labels)
    if x.ndim != 3 or x.shape[1:] != (28, 28) or x.dtype != np.uint8:
        raise DatasetError(f"{images}: expected uint8 images of shape N×28×28, "
                           f"got {x.dtype} {x.shape}")
    if y.ndim != 1 or y.dtype != np.uint8:
        raise DatasetError(f"{labels}: expected a uint8 label vector, got {y.dtype} {y.shape}")
    if len(y) != len(x):
        raise DatasetError(f"{labels}: {len(y)} labels for {len(x)} images in {images}")
    _check_labels(y, labels)
    return _scale(x[:, None]), y.astype(np.int64)


def load_mnist(data_dir) -> Split:
    """MNIST from the four IDX files (raw or .gz) in ``data_dir`` or ``data_dir/MNIST/raw``."""
    d = _data_dir(data_dir)
    dirs = [d, d / "MNIST" / "raw"]
    paths = {}
    for key, name in _MNIST_FILES.items():
        p = _find(name, dirs, ("", ".gz"))
        if p is None:
            raise DatasetError(f"{d}: MNIST file {name}[.gz] not found "
                               f"(looked in {', '.join(str(x) for x in dirs)})")
        paths[key] = p
    x_train, y_train = _mnist_part(paths["train_images"], paths["train_labels"])
    x_test, y_test = _mnist_part(paths["test_images"], paths["test_labels"])
    return Split(x_train, y_train, x_test, y_test)


# --------------------------------------------------------------------------- CIFAR-10

def _cifar_bin(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Records of 1 label byte + 3072 pixel bytes (1024 R, 1024 G, 1024 B, row-major)."""
    data = _read_bytes(path)
    record = 1 + _CIFAR_PIXELS
    if len(data) == 0 or len(data) % record:
        raise DatasetError(f"{path}: {len(data)} bytes is not a whole number of "
                           f"{record}-byte CIFAR-10 records (truncated?)")
    raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, record)
    return raw[:, 1:], raw[:, 0]


def _np_core():
    """numpy's core package: ``numpy._core`` on numpy 2, ``numpy.core`` before."""
    return getattr(np, "_core", None) or np.core


def _latin1_encode(obj, encoding="latin1"):
    """``_codecs.encode`` as Python 3 protocol-2 pickles use it for bytes, and nothing else."""
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode is allowed only as str -> latin1 bytes")
    return obj.encode("latin1")


def _plain_dtype(*args):
    """``numpy.dtype`` for plain (non-object) dtypes: object arrays could hold anything."""
    dt = np.dtype(*args)
    if dt.hasobject:
        raise pickle.UnpicklingError(f"refusing object dtype {dt}")
    return dt


def _allowed_globals() -> dict[tuple[str, str], object]:
    """What a CIFAR-10 batch pickle may reference: array and dtype rebuilding only.

    ``ndarray.__reduce__`` gives ``_reconstruct(ndarray, (0,), b'b')`` then
    ``__setstate__``; protocol 5 gives ``_frombuffer(buffer, dtype, shape, order)``;
    dtypes reduce to ``dtype(str, align, copy)``. Python 2 pickles (the real
    files) name the module ``numpy.core``, numpy 2 writes ``numpy._core``."""
    core = _np_core()
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): _plain_dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for mod in ("numpy.core", "numpy._core"):
        allowed[(f"{mod}.multiarray", "_reconstruct")] = core.multiarray._reconstruct
        allowed[(f"{mod}.numeric", "_frombuffer")] = core.numeric._frombuffer
    return allowed


class _SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the names in ``_allowed_globals``."""

    def find_class(self, module, name):
        obj = _allowed_globals().get((module, name))
        if obj is None:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return obj

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refusing persistent ids")


def _cifar_py(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A python-version batch: a pickled dict with ``data`` (N×3072 uint8) and ``labels``."""
    data = _read_bytes(path)
    try:
        obj = _SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except DatasetError:
        raise
    except Exception as e:  # a hostile or broken pickle can fail in many ways
        raise DatasetError(f"{path}: not a CIFAR-10 batch pickle ({e})") from None
    if not isinstance(obj, dict):
        raise DatasetError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    keys = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
    if "data" not in keys or "labels" not in keys:
        raise DatasetError(f"{path}: the batch dict lacks 'data' or 'labels' "
                           f"(keys: {sorted(map(str, keys))})")
    x, labels = keys["data"], keys["labels"]
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 \
            or x.shape[1] != _CIFAR_PIXELS:
        raise DatasetError(f"{path}: 'data' must be a uint8 array N×{_CIFAR_PIXELS}, got "
                           f"{getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}")
    if not isinstance(labels, (list, np.ndarray)) or \
            not all(isinstance(v, (int, np.integer)) for v in labels):
        raise DatasetError(f"{path}: 'labels' must be a list of integers")
    y = np.asarray(labels, dtype=np.int64)
    if y.ndim != 1:
        raise DatasetError(f"{path}: 'labels' must be one-dimensional")
    return x, y


def _cifar_files(d: Path) -> tuple[list[Path], object] | None:
    """The six batch files and their reader, preferring the binary version (no pickle)."""
    for suffix, sub, reader in ((".bin", "cifar-10-batches-bin", _cifar_bin),
                                ("", "cifar-10-batches-py", _cifar_py)):
        dirs = [d, d / sub]
        found = [_find(n, dirs, (suffix,)) for n in (*_CIFAR_TRAIN, _CIFAR_TEST)]
        if all(found):
            return found, reader
    return None


def load_cifar10(data_dir) -> Split:
    """CIFAR-10, binary or python version, from ``data_dir`` or its extracted subfolder."""
    d = _data_dir(data_dir)
    found = _cifar_files(d)
    if found is None:
        raise DatasetError(f"{d}: CIFAR-10 batches not found (need data_batch_1..5.bin and "
                           "test_batch.bin, or the python-version data_batch_1..5 and "
                           "test_batch, here or in cifar-10-batches-bin/-py)")
    paths, reader = found
    parts = []
    for p in paths:
        x, y = reader(p)
        if len(x) != len(y):
            raise DatasetError(f"{p}: {len(y)} labels for {len(x)} images")
        _check_labels(y, p)
        parts.append((x, y))
    x_train = np.concatenate([x for x, _ in parts[:5]]).reshape(-1, 3, 32, 32)
    y_train = np.concatenate([y for _, y in parts[:5]]).astype(np.int64)
    x_test = parts[5][0].reshape(-1, 3, 32, 32)
    return Split(_scale(x_train), y_train, _scale(x_test), parts[5][1].astype(np.int64))


# --------------------------------------------------------------------------- digits

def bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """The n_out×n_in matrix of 1-D linear interpolation with half-pixel centres.

    Output pixel i samples input coordinate ``(i + 0.5)·n_in/n_out − 0.5``,
    clamped to the edges: ``torch.nn.functional.interpolate(mode="bilinear",
    align_corners=False)``. Applied along H and along W it is bilinear resizing."""
    src = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.arange(n_out), lo), 1 - frac)
    np.add.at(m, (np.arange(n_out), hi), frac)
    return m


def resize_bilinear(x: np.ndarray, size: int) -> np.ndarray:
    """Resize the last two axes of ``x`` to size×size (our bilinear, no antialiasing)."""
    ry = bilinear_matrix(x.shape[-2], size)
    rx = bilinear_matrix(x.shape[-1], size)
    out = np.einsum("ij,...jk,lk->...il", ry, x.astype(np.float64), rx, optimize=True)
    return np.ascontiguousarray(out, dtype=np.float32)


def load_digits(image_size: int = 28, channels: int = 1, test_fraction: float = 0.25,
                seed: int = 0) -> Split:
    """scikit-learn's 1,797 8×8 digits, resized (bilinear, ``resize_bilinear``) to
    image_size×image_size, scaled from 0..16 to [0, 1], repeated over ``channels``,
    and split stratified by class with ``seed``."""
    _positive_int(image_size, "image_size")
    _positive_int(channels, "channels")
    if not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_digits()
    x = bunch.images / 16.0
    if image_size != x.shape[-1]:
        x = resize_bilinear(x, image_size)
    x = np.clip(x, 0.0, 1.0).astype(np.float32)[:, None]
    x = np.ascontiguousarray(np.repeat(x, channels, axis=1))
    y = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y)
    return Split(*(np.ascontiguousarray(a) for a in (x_train, y_train, x_test, y_test)))


# --------------------------------------------------------------------------- front door

def load(name: str, data_dir=None, *, image_size: int | None = None,
         channels: int | None = None) -> Split:
    """Load ``name`` (digits, mnist or cifar10), optionally resized and re-channelled.

    For MNIST and CIFAR-10, ``image_size`` resizes bilinearly and ``channels``
    repeats a single channel or averages three into one."""
    if name not in NAMES:
        raise DatasetError(f"unknown data set {name!r} (choose from {', '.join(NAMES)})")
    if name == "digits":
        if data_dir is not None:
            raise DatasetError("the digits data set ships with scikit-learn; "
                               "it takes no --data-dir")
        return load_digits(image_size=28 if image_size is None else image_size,
                           channels=1 if channels is None else channels)
    if data_dir is None:
        raise DatasetError(f"{name} needs --data-dir pointing at its files "
                           "(nothing is downloaded), or use the digits data set")
    split = load_mnist(data_dir) if name == "mnist" else load_cifar10(data_dir)
    return _adapt(split, image_size, channels)


def _adapt(split: Split, image_size: int | None, channels: int | None) -> Split:
    xs = [split.x_train, split.x_test]
    if image_size is not None:
        _positive_int(image_size, "image_size")
        if image_size != xs[0].shape[-1]:
            xs = [resize_bilinear(x, image_size) for x in xs]
    if channels is not None:
        _positive_int(channels, "channels")
        c = xs[0].shape[1]
        if channels != c:
            if c == 1:
                xs = [np.repeat(x, channels, axis=1) for x in xs]
            elif channels == 1:
                xs = [x.mean(axis=1, keepdims=True, dtype=np.float32) for x in xs]
            else:
                raise ValueError(f"channels={channels}: cannot convert {c} channels "
                                 f"to {channels} (only 1 -> C or C -> 1)")
    x_train, x_test = (np.ascontiguousarray(x, dtype=np.float32) for x in xs)
    return Split(x_train, split.y_train, x_test, split.y_test)


# --------------------------------------------------------------------------- helpers

def _scale(x: np.ndarray) -> np.ndarray:
    """uint8 0..255 -> float32 [0, 1], C-contiguous."""
    return np.ascontiguousarray(x, dtype=np.float32) / np.float32(255)


def _check_labels(y: np.ndarray, path: Path) -> None:
    if len(y) and (y.min() < 0 or y.max() > 9):
        raise DatasetError(f"{path}: labels must be 0..9, found {int(y.min())}..{int(y.max())}")


def _positive_int(v, name: str) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(v).__name__}")
    if v < 1:
        raise ValueError(f"{name} must be positive, got {v}")
