"""A small layer set over the kernels, with explicit forward and backward (no autograd).

Each layer keeps what its backward needs from the forward (a reference, not a copy)
and writes the gradients of its parameters on ``backward``; gradients are overwritten,
never accumulated, so there is no ``zero_grad``. ``parameters()`` and ``gradients()``
are aligned lists, ready for :mod:`kernels.optim`::

    >>> import numpy as np
    >>> from kernels import nn, optim
    >>> rng = np.random.default_rng(0)
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3, rng=rng))
    >>> loss_fn, opt = nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=0.1)
    >>> x, y = rng.random((5, 1, 2, 2), dtype=np.float32), np.array([0, 1, 2, 0, 1])
    >>> first = loss_fn(model(x), y)
    >>> for _ in range(20):
    ...     loss = loss_fn(model(x), y)
    ...     _ = model.backward(loss_fn.backward())
    ...     opt.step(model.gradients())
    >>> loss < first
    True

Names, shapes, initialization and ``state_dict`` keys follow ``torch.nn`` (a
``Sequential``'s keys are ``"0.weight"``, ``"3.running_mean"``, ...), so weights move
between the two with ``torch.from_numpy`` / ``.numpy()``. Initialization is torch's
default, drawn from a ``np.random.Generator``: ``kaiming_uniform_(a=sqrt(5))`` for
weights, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound for biases.

:func:`save` / :func:`load` write a model (and a :mod:`kernels.optim` optimizer) to
``.npz`` atomically, and read it back with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import zipfile

import numpy as np

from . import activation, conv, norm, pool
from ._checks import pair, positive

__all__ = ["Module", "Conv2d", "MaxPool2d", "Linear", "ReLU", "Flatten", "BatchNorm2d",
           "Sequential", "CrossEntropyLoss", "lenet5", "save", "load", "load_meta",
           "CheckpointError"]


# ---------------------------------------------------------------- argument checks

def _int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def _rng(rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
                        f"got {type(rng).__name__}")
    return rng


def _dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def _uniform(rng, bound: float, shape, dtype) -> np.ndarray:
    """U(-bound, bound), drawn in float64 (so float32 and float64 models start alike)."""
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


# ---------------------------------------------------------------- the base class

class Module:
    """A layer: ``forward(x)``, ``backward(grad_out) -> grad_in``, parameters, buffers.

    Subclasses name their parameter and buffer attributes in ``_params`` / ``_buffers``
    and containers list their children in ``_children``. ``needs_input_grad = False``
    makes ``backward`` skip the input gradient (and return None), as autograd does for
    a network's first layer.
    """

    _params: tuple[str, ...] = ()
    _buffers: tuple[str, ...] = ()

    def __init__(self):
        self.training = True
        self.needs_input_grad = True
        self.grads: dict[str, np.ndarray] = {}

    def _children(self) -> list[tuple[str, Module]]:
        return []

    def forward(self, x):
        raise NotImplementedError

    def backward(self, grad_out):
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(x)

    # -- parameters, gradients, buffers ----------------------------------------------
    def _init_grads(self) -> None:
        """Zero gradients, so ``gradients()`` lines up with ``parameters()`` from the start."""
        self.grads = {n: np.zeros_like(a) for n, a in self._own(self._params)}

    def _own(self, names) -> list[tuple[str, np.ndarray]]:
        return [(n, getattr(self, n)) for n in names if getattr(self, n) is not None]

    def _walk(self, kind: str, prefix: str = ""):
        if kind == "grads":
            yield from ((prefix + n, self.grads[n]) for n, _ in self._own(self._params))
        else:
            yield from ((prefix + n, a) for n, a in self._own(getattr(self, kind)))
        for name, child in self._children():
            yield from child._walk(kind, f"{prefix}{name}.")

    def named_parameters(self) -> list[tuple[str, np.ndarray]]:
        return list(self._walk("_params"))

    def named_buffers(self) -> list[tuple[str, np.ndarray]]:
        return list(self._walk("_buffers"))

    def parameters(self) -> list[np.ndarray]:
        """The parameter arrays themselves (an optimizer updates them in place)."""
        return [a for _, a in self._walk("_params")]

    def gradients(self) -> list[np.ndarray]:
        """The gradients of the last ``backward``, aligned with ``parameters()``."""
        return [g for _, g in self._walk("grads")]

    def train(self, mode: bool = True) -> Module:
        self.training = bool(mode)
        for _, child in self._children():
            child.train(mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    # -- state dicts -----------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter and buffer, keyed as in torch."""
        return {n: a.copy() for n, a in self.named_parameters() + self.named_buffers()}

    def load_state_dict(self, state_dict) -> None:
        """Copy ``state_dict`` into the existing arrays (in place, so an optimizer built on
        ``parameters()`` keeps working). All names and shapes are checked first."""
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
        own = dict(self.named_parameters() + self.named_buffers())
        missing, unexpected = sorted(set(own) - set(state_dict)), sorted(set(state_dict) - set(own))
        if missing or unexpected:
            raise ValueError(f"state_dict does not match the model: missing {missing}, "
                             f"unexpected {unexpected}")
        for name, a in own.items():
            v = np.asarray(state_dict[name])
            if v.shape != a.shape:
                raise ValueError(f"state_dict[{name!r}] has shape {v.shape}, "
                                 f"the model's has {a.shape}")
            if v.dtype.kind not in "fiu":
                raise TypeError(f"state_dict[{name!r}] must be numeric, got {v.dtype}")
        for name, a in own.items():
            np.copyto(a, state_dict[name], casting="unsafe")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._extra()})"

    def _extra(self) -> str:
        return ""


# ---------------------------------------------------------------- layers with weights

class Conv2d(Module):
    """``torch.nn.Conv2d`` (no dilation or groups), over :func:`kernels.conv2d`."""

    _params = ("weight", "bias")

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 *, rng, dtype=np.float32):
        super().__init__()
        self.in_channels = _int(in_channels, "in_channels")
        self.out_channels = _int(out_channels, "out_channels")
        self.kernel_size = kh, kw = pair(kernel_size, "kernel_size")
        pair(stride, "stride")
        if not isinstance(padding, str):
            pair(padding, "padding", minimum=0)
        self.stride, self.padding = stride, padding
        rng, dtype = _rng(rng), _dtype(dtype)
        bound = 1 / math.sqrt(self.in_channels * kh * kw)
        self.weight = _uniform(rng, bound, (self.out_channels, self.in_channels, kh, kw), dtype)
        self.bias = _uniform(rng, bound, (self.out_channels,), dtype) if bias else None
        self._init_grads()
        self._x = None

    def forward(self, x):
        y = conv.conv2d(x, self.weight, self.bias, self.stride, self.padding)
        self._x = x
        return y

    def backward(self, grad_out):
        gx, gw, gb = conv.conv2d_backward(grad_out, self._x, self.weight, self.stride,
                                          self.padding, need_input_grad=self.needs_input_grad)
        self.grads["weight"] = gw
        if self.bias is not None:
            self.grads["bias"] = gb
        return gx

    def _extra(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}")


class Linear(Module):
    """``torch.nn.Linear``: ``y = x @ weight.T + bias`` for ``x`` of shape (N, in)."""

    _params = ("weight", "bias")

    def __init__(self, in_features, out_features, bias=True, *, rng, dtype=np.float32):
        super().__init__()
        self.in_features = _int(in_features, "in_features")
        self.out_features = _int(out_features, "out_features")
        rng, dtype = _rng(rng), _dtype(dtype)
        bound = 1 / math.sqrt(self.in_features)
        self.weight = _uniform(rng, bound, (self.out_features, self.in_features), dtype)
        self.bias = _uniform(rng, bound, (self.out_features,), dtype) if bias else None
        self._init_grads()
        self._x = None

    def forward(self, x):
        y = activation.linear(x, self.weight, self.bias)
        self._x = x
        return y

    def backward(self, grad_out):
        x = self._x.reshape(-1, self.in_features)
        g = np.ascontiguousarray(grad_out).reshape(-1, self.out_features)
        if g.dtype != self.weight.dtype or g.shape[0] != x.shape[0]:
            raise ValueError(f"grad_out must be {self.weight.dtype} of shape "
                             f"{self._x.shape[:-1] + (self.out_features,)}, got {grad_out.dtype} "
                             f"{grad_out.shape}")
        np.matmul(g.T, x, out=self.grads["weight"])  # into the same buffer every step
        if self.bias is not None:
            g.sum(axis=0, out=self.grads["bias"])
        if not self.needs_input_grad:
            return None
        return (g @ self.weight).reshape(self._x.shape)

    def _extra(self):
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"


class BatchNorm2d(Module):
    """``torch.nn.BatchNorm2d``: batch statistics in training (updating the running ones
    with ``momentum``, the variance unbiased), running statistics in eval."""

    _params = ("weight", "bias")
    _buffers = ("running_mean", "running_var", "num_batches_tracked")

    def __init__(self, num_features, eps=1e-5, momentum=0.1, *, dtype=np.float32):
        super().__init__()
        self.num_features = _int(num_features, "num_features")
        self.eps = positive(eps, "eps")
        self.momentum = positive(momentum, "momentum", allow_zero=True)
        dtype = _dtype(dtype)
        self.weight = np.ones(num_features, dtype)
        self.bias = np.zeros(num_features, dtype)
        self.running_mean = np.zeros(num_features, dtype)
        self.running_var = np.ones(num_features, dtype)
        self.num_batches_tracked = np.zeros((), np.int64)
        self._init_grads()
        self._saved = None

    def forward(self, x):
        if x.ndim != 4:
            raise ValueError(f"x must be N×C×H×W for BatchNorm2d, got shape {x.shape}")
        y, mean, invstd = norm.batch_norm(x, self.running_mean, self.running_var, self.weight,
                                          self.bias, self.training, self.momentum, self.eps,
                                          return_stats=True)
        if self.training:
            self.num_batches_tracked += 1
        self._saved = (x, mean, invstd, self.training)
        return y

    def backward(self, grad_out):
        x, mean, invstd, training = self._saved
        gx, gw, gb = norm.batch_norm_backward(grad_out, x, self.weight, mean, invstd, training)
        self.grads["weight"], self.grads["bias"] = gw, gb
        return gx if self.needs_input_grad else None

    def _extra(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


# ---------------------------------------------------------------- layers without weights

class MaxPool2d(Module):
    """``torch.nn.MaxPool2d`` (stride defaults to the kernel size)."""

    def __init__(self, kernel_size, stride=None):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride
        self._saved = None

    def forward(self, x):
        y, indices = pool.max_pool2d(x, self.kernel_size, self.stride)
        self._saved = (indices, x.shape)
        return y

    def backward(self, grad_out):
        indices, shape = self._saved
        return pool.max_pool2d_backward(grad_out, indices, shape)

    def _extra(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class ReLU(Module):
    """``torch.nn.ReLU``; the gradient is 0 where the input is 0, as torch."""

    _x = None

    def forward(self, x):
        self._x = x
        return activation.relu(x)

    def backward(self, grad_out):
        return activation.relu_backward(grad_out, self._x)


class Flatten(Module):
    """``torch.nn.Flatten()``: (N, ...) → (N, prod(...)), a view when ``x`` is contiguous."""

    def forward(self, x):
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_out):
        return grad_out.reshape(self._shape)


class Sequential(Module):
    """Layers in order; ``backward`` runs them in reverse.

    The first layer with parameters skips its input gradient (nothing upstream needs
    it, as in autograd), and ``backward`` then returns None; set
    ``needs_input_grad = True`` to get the gradient w.r.t. the input.
    """

    def __init__(self, *layers):
        super().__init__()
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"layers[{i}] must be a kernels.nn.Module, "
                                f"got {type(layer).__name__}")
        self.layers = list(layers)
        self.needs_input_grad = False

    @property
    def needs_input_grad(self) -> bool:
        return self._needs_input_grad

    @needs_input_grad.setter
    def needs_input_grad(self, value: bool) -> None:
        self._needs_input_grad = bool(value)
        first = next((m for m in getattr(self, "layers", []) if m.parameters()), None)
        if first is not None:
            first.needs_input_grad = self._needs_input_grad

    def _children(self):
        return [(str(i), layer) for i, layer in enumerate(self.layers)]

    def __getitem__(self, i: int) -> Module:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad_out):
        g = grad_out
        for layer in reversed(self.layers):
            g = layer.backward(g)
            if g is None:
                return None
        return g

    def __repr__(self):
        inner = "".join(f"\n  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)"


class CrossEntropyLoss:
    """``torch.nn.CrossEntropyLoss()`` (mean over the batch): ``forward(logits, labels)``
    returns the loss as a float, ``backward()`` its gradient w.r.t. the logits."""

    def __init__(self):
        self._saved = None

    def forward(self, logits, labels) -> float:
        if not isinstance(labels, np.ndarray) or not np.issubdtype(labels.dtype, np.integer):
            raise TypeError("labels must be a NumPy integer array of class indices, got "
                            f"{getattr(labels, 'dtype', type(labels).__name__)}")
        loss = float(activation.cross_entropy(logits, labels))
        self._saved = (logits, labels)
        return loss

    __call__ = forward

    def backward(self):
        if self._saved is None:
            raise ValueError("backward() needs a forward(logits, labels) first")
        return activation.cross_entropy_backward(*self._saved)


# ---------------------------------------------------------------- LeNet-5

def lenet5(in_channels=1, image_size=28, n_classes=10, *, rng, dtype=np.float32) -> Sequential:
    """The convolutional-networks homework's LeNet-5 (problem 4): conv 6@5x5 → ReLU →
    maxpool 2 → conv 16@5x5 → ReLU → maxpool 2 → flatten → fc 120 → ReLU → fc 84 → ReLU →
    fc n_classes.

    The first conv pads by ``max(0, (32 - image_size) // 2)``: a 28x28 image (MNIST) is
    padded to LeNet's 32x32 and a 32x32 one (CIFAR-10) is not, so both reach the
    classifier as 16x5x5 = 400 features. Other sizes work too (smaller ones are padded
    up to about 32x32); the first fc layer is sized to match.
    """
    in_channels = _int(in_channels, "in_channels")
    image_size = _int(image_size, "image_size")
    n_classes = _int(n_classes, "n_classes", minimum=2)
    pad = max(0, (32 - image_size) // 2)
    side = ((image_size + 2 * pad - 4) // 2 - 4) // 2
    return Sequential(
        Conv2d(in_channels, 6, 5, padding=pad, rng=rng, dtype=dtype), ReLU(), MaxPool2d(2),
        Conv2d(6, 16, 5, rng=rng, dtype=dtype), ReLU(), MaxPool2d(2), Flatten(),
        Linear(16 * side * side, 120, rng=rng, dtype=dtype), ReLU(),
        Linear(120, 84, rng=rng, dtype=dtype), ReLU(),
        Linear(84, n_classes, rng=rng, dtype=dtype))


# ---------------------------------------------------------------- checkpoints

FORMAT = "kernels.nn checkpoint 1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or that does not match the model or optimizer."""


def _json(value, what: str) -> np.ndarray:
    try:
        return np.array(json.dumps(value, allow_nan=True))
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} must be JSON-serializable (numbers, strings, lists, "
                        f"dicts): {e}") from None


def _tuples(value):
    """JSON lists back to the tuples the optimizers use (``betas``)."""
    return tuple(value) if isinstance(value, list) else value


def save(path, model: Module, optimizer=None, **meta) -> None:
    """Write ``model``'s state dict, ``optimizer``'s (a :mod:`kernels.optim` optimizer,
    or anything with its ``state_dict()`` format) and ``meta`` (JSON values) to the
    ``.npz`` file ``path``, atomically: a temporary file in the same directory is
    renamed over ``path`` only once it is complete, so a failed write leaves the old
    checkpoint intact."""
    arrays = {"format": np.array(FORMAT), "meta": _json(meta, "meta")}
    for name, a in model.state_dict().items():
        arrays[f"model/{name}"] = a
    if optimizer is not None:
        sd = optimizer.state_dict()
        arrays["optimizer/class"] = np.array(type(optimizer).__name__)
        arrays["optimizer/hyperparameters"] = _json(sd["hyperparameters"],
                                                    "optimizer hyperparameters")
        arrays["optimizer/n"] = np.array(len(sd["state"]), np.int64)
        for i, state in enumerate(sd["state"]):
            for key, v in state.items():
                if v is not None:
                    arrays[f"optimizer/{i}/{key}"] = np.asarray(v)
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=directory)
    try:
        os.chmod(tmp, 0o644)  # mkstemp's 0600 is for the temporary name only
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _read(path) -> dict[str, np.ndarray]:
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"checkpoint {path} is not a readable .npz file: {e}") from None
    if "format" not in arrays or str(arrays["format"][()]) != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a {FORMAT!r} file")
    return arrays


def _optimizer_state(arrays, path, optimizer) -> dict:
    if "optimizer/class" not in arrays:
        raise CheckpointError(f"checkpoint {path} holds no optimizer state")
    name = str(arrays["optimizer/class"][()])
    if name != type(optimizer).__name__:
        raise CheckpointError(f"checkpoint {path} holds {name} state, "
                              f"not {type(optimizer).__name__}")
    try:
        hyper = {k: _tuples(v) for k, v in
                 json.loads(str(arrays["optimizer/hyperparameters"][()])).items()}
        states = [{} for _ in range(int(arrays["optimizer/n"]))]
    except (KeyError, ValueError, AttributeError) as e:
        raise CheckpointError(f"checkpoint {path} has corrupt optimizer state: {e}") from None
    for key, v in arrays.items():
        parts = key.split("/")
        if parts[0] == "optimizer" and len(parts) == 3:
            i = int(parts[1])
            if not 0 <= i < len(states):
                raise CheckpointError(f"checkpoint {path}: optimizer state {key!r} out of range")
            states[i][parts[2]] = int(v) if parts[2] == "step" else v
    return {"hyperparameters": hyper, "state": states}


def _meta(arrays, path) -> dict:
    try:
        return json.loads(str(arrays["meta"][()]))
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} has corrupt metadata: {e}") from None


def load_meta(path) -> dict:
    """The ``meta`` of a :func:`save` checkpoint, without touching any model (to check
    what a checkpoint holds before loading it)."""
    path = os.fspath(path)
    return _meta(_read(path), path)


def load(path, model: Module, optimizer=None) -> dict:
    """Restore ``model`` (and ``optimizer``) from a :func:`save` checkpoint; return its
    ``meta``. Everything is checked before anything is changed: a missing file raises
    FileNotFoundError, an unreadable one or one that does not match the model (names,
    shapes) or the optimizer raises :class:`CheckpointError` (a ValueError)."""
    path = os.fspath(path)
    arrays = _read(path)
    state = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    meta = _meta(arrays, path)
    opt_state = _optimizer_state(arrays, path, optimizer) if optimizer is not None else None
    old_model = model.state_dict()
    try:
        model.load_state_dict(state)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"checkpoint {path} does not match the model: {e}") from None
    if opt_state is not None:
        try:
            optimizer.load_state_dict(opt_state)
        except (ValueError, TypeError) as e:
            model.load_state_dict(old_model)  # all or nothing
            raise CheckpointError(f"checkpoint {path} does not match the optimizer: "
                                  f"{e}") from None
    return meta
