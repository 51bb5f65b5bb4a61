"""The harder bad calls of the kernels: each is a ValueError or TypeError that names the
argument, raised by the argument checks before any kernel runs (so before Numba
compiles one) or any output is allocated; never an OverflowError, IndexError,
ZeroDivisionError, MemoryError or a silent truncation.

"Before any kernel" is checked directly: the ``no_kernels`` fixture replaces every CPU
kernel (each Numba dispatcher in ``kernels.cpu``) and every CUDA launch and device
allocation (``launch``, ``empty``, ``zeros``, ``fill`` in ``kernels.cuda``) with a stub
that fails the test, so a check that came too late would surface as an AssertionError
(or, for a huge output, a MemoryError) instead of the expected error. The cases run on
every backend (the CUDA one in Numba's simulator without a GPU).
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from backends import to_backend

import kernels
from kernels import _checks

HUGE = 10**20  # a Python int that no int64 holds

CPU_MODULES = ["activation", "conv", "correlate", "norm", "pool", "tiles"]
CUDA_MODULES = ["activation", "conv", "correlate", "elementwise", "norm", "pool"]
CUDA_STUBBED = ["launch", "empty", "zeros", "fill"]


def _stub(name):
    def called(*args, **kwargs):
        raise AssertionError(f"{name} was called: the arguments were not checked first")
    return called


@pytest.fixture
def no_kernels(monkeypatch, backend):
    """Every kernel, launch and device allocation of ``backend`` fails the test."""
    # NOTE: every module imported before any is patched, so that none binds a stub
    # by importing it from another (``from .elementwise import fill``) for good
    if backend == "cpu":
        from numba.core.dispatcher import Dispatcher

        modules = {f"kernels.cpu.{n}": importlib.import_module(f"kernels.cpu.{n}")
                   for n in CPU_MODULES}
        for name, module in modules.items():
            for attr, value in vars(module).copy().items():
                if isinstance(value, Dispatcher):
                    monkeypatch.setattr(module, attr, _stub(f"{name}.{attr}"))
    else:
        modules = {f"kernels.cuda.{n}": importlib.import_module(f"kernels.cuda.{n}")
                   for n in CUDA_MODULES}
        for name, module in modules.items():
            for attr in CUDA_STUBBED:
                if hasattr(module, attr):
                    monkeypatch.setattr(module, attr, _stub(f"{name}.{attr}"))
    return backend


def test_the_stubs_catch_a_kernel_call(no_kernels):
    """The fixture itself: a valid call reaches a stubbed kernel."""
    x = to_backend(np.ones((1, 1, 4, 4), np.float32), no_kernels)
    with pytest.raises(AssertionError, match="was called"):
        kernels.max_pool2d(x, 2)


# ---------------------------------------------------------------- the table

def _x(shape=(1, 2, 8, 8), dtype=np.float32):
    return np.ones(shape, dtype)


def _idx(shape=(2, 4, 4, 4)):
    return np.zeros(shape, np.int64)


# (id, call(d) where d moves a host array to the backend, exception, message regex)
CASES = [
    # hyperparameters too large for int64
    ("conv-stride", lambda d: kernels.conv2d(d(_x()), d(_x((3, 2, 3, 3))), stride=HUGE),
     ValueError, "stride must be at most"),
    ("conv-stride-pair", lambda d: kernels.conv2d(d(_x()), d(_x((3, 2, 3, 3))),
                                                  stride=(1, HUGE)),
     ValueError, "stride must be at most"),
    ("conv-padding", lambda d: kernels.conv2d(d(_x()), d(_x((3, 2, 3, 3))), padding=HUGE),
     ValueError, "padding must be at most"),
    ("conv-dilation", lambda d: kernels.conv2d(d(_x()), d(_x((3, 2, 3, 3))), dilation=HUGE),
     ValueError, "dilation must be at most"),
    ("conv-backward-stride", lambda d: kernels.conv2d_backward(
        d(_x((1, 3, 6, 6))), d(_x()), d(_x((3, 2, 3, 3))), stride=HUGE),
     ValueError, "stride must be at most"),
    ("conv-backward-padding", lambda d: kernels.conv2d_backward(
        d(_x((1, 3, 6, 6))), d(_x()), d(_x((3, 2, 3, 3))), padding=(HUGE, 0)),
     ValueError, "padding must be at most"),
    ("max-pool-stride", lambda d: kernels.max_pool2d(d(_x()), 2, HUGE),
     ValueError, "stride must be at most"),
    ("max-pool-kernel", lambda d: kernels.max_pool2d(d(_x()), HUGE),
     ValueError, "kernel_size must be at most"),
    ("max-pool-padding", lambda d: kernels.max_pool2d(d(_x()), 2, 2, HUGE),
     ValueError, "padding must be at most"),
    ("avg-pool-stride", lambda d: kernels.avg_pool2d(d(_x()), 2, HUGE),
     ValueError, "stride must be at most"),
    ("avg-pool-kernel-np", lambda d: kernels.avg_pool2d(d(_x()), np.uint64(2**63)),
     ValueError, "kernel_size must be at most"),
    ("avg-pool-backward-stride", lambda d: kernels.avg_pool2d_backward(
        d(_x((1, 2, 4, 4))), (1, 2, 8, 8), 2, HUGE),
     ValueError, "stride must be at most"),
    # outputs too large to allocate
    ("conv-output-padding", lambda d: kernels.conv2d(d(_x()), d(_x((3, 2, 3, 3))),
                                                     padding=10**6),
     ValueError, r"the output y would need [\d,.]+ GiB"),
    ("conv-output-channels", lambda d: kernels.conv2d(d(_x((64, 1, 128, 128))),
                                                      d(_x((10**6, 1, 1, 1)))),
     ValueError, r"the output y would need [\d,.]+ GiB"),
    ("max-pool-backward-x-shape-huge", lambda d: kernels.max_pool2d_backward(
        d(_x((2, 4, 4, 4))), d(_idx()), (2, 4, 10**10, 10**10)),
     ValueError, r"grad_x \(of x_shape\) would need [\d,.]+ GiB"),
    ("max-pool-backward-x-shape-huge-int64", lambda d: kernels.max_pool2d_backward(
        d(_x((2, 4, 4, 4))), d(_idx()), (2, 4, HUGE, 8)),
     ValueError, r"grad_x \(of x_shape\) would need [\d,.]+ GiB"),
    ("correlate2d-output", lambda d: kernels.correlate2d(d(np.ones((200_000, 1))),
                                                         d(np.ones((1, 200_000)))),
     ValueError, r"the output would need [\d,.]+ GiB"),
    # x_shape: ints only, 3 or 4 positive sizes
    *[(f"{fn}-x-shape-{label}", call, error, "x_shape must be")
      for fn, make in [
          ("max-pool-backward", lambda shape: lambda d: kernels.max_pool2d_backward(
              d(_x((2, 4, 4, 4))), d(_idx()), shape)),
          ("avg-pool-backward", lambda shape: lambda d: kernels.avg_pool2d_backward(
              d(_x((2, 4, 4, 4))), shape, 2))]
      for label, call, error in [
          ("float", make((2, 4, 8.7, 8)), TypeError),
          ("whole-float", make((2, 4, 8.0, 8)), TypeError),
          ("numpy-float", make((2, 4, np.float64(8), 8)), TypeError),
          ("bool", make((2, 4, True, 8)), TypeError),
          ("string", make("2448"), TypeError),
          ("none", make(None), TypeError),
          ("negative", make((2, 4, -8, 8)), ValueError),
          ("short", make((8, 8)), ValueError),
          ("long", make((1, 2, 4, 8, 8)), ValueError)]],
    # float hyperparameters given as strings
    ("batch-norm-eps", lambda d: kernels.batch_norm(d(_x()), training=True, eps="1e-5"),
     TypeError, "eps must be a number"),
    ("batch-norm-eval-eps", lambda d: kernels.batch_norm(
        d(_x()), d(np.zeros(2, np.float32)), d(np.ones(2, np.float32)), eps="1e-5"),
     TypeError, "eps must be a number"),
    ("batch-norm-momentum", lambda d: kernels.batch_norm(d(_x()), training=True,
                                                         momentum="0.1"),
     TypeError, "momentum must be a finite number"),
    ("batch-norm-eps-bool", lambda d: kernels.batch_norm(d(_x()), training=True, eps=True),
     TypeError, "eps must be a number"),
    ("instance-norm-eps", lambda d: kernels.instance_norm(d(_x()), eps="1e-5"),
     TypeError, "eps must be a number"),
    ("instance-norm-momentum", lambda d: kernels.instance_norm(d(_x()), momentum="0.1"),
     TypeError, "momentum must be a finite number"),
    ("group-norm-eps", lambda d: kernels.group_norm(d(_x()), 2, eps="1e-5"),
     TypeError, "eps must be a number"),
    ("layer-norm-eps", lambda d: kernels.layer_norm(d(_x()), (8,), eps="1e-5"),
     TypeError, "eps must be a number"),
    ("layer-norm-eps-none", lambda d: kernels.layer_norm(d(_x()), (8,), eps=None),
     TypeError, "eps must be a number"),
    ("cross-entropy-smoothing", lambda d: kernels.cross_entropy(
        d(_x((2, 3))), d(np.array([0, 1])), label_smoothing="0.1"),
     TypeError, "label_smoothing must be a number"),
    # bools that must be bools
    *[(f"conv-backward-need-input-grad-{label}", lambda d, v=value: kernels.conv2d_backward(
        d(_x((1, 3, 6, 6))), d(_x()), d(_x((3, 2, 3, 3))), need_input_grad=v),
       TypeError, "need_input_grad must be True or False")
      for label, value in [("no", "no"), ("none", None), ("one", 1), ("zero", 0.0)]],
    # one buffer as both running statistics
    *[(f"{fn}-running-{label}", call, ValueError, "running_mean and running_var share memory")
      for label, buffers in [
          ("same", lambda d: (lambda r: (r, r))(d(np.zeros(2, np.float32)))),
          ("overlapping", lambda d: (lambda r: (r[0:2], r[1:3]))(d(np.zeros(4, np.float32))))]
      for fn, call in [
          ("batch-norm-train", lambda d, b=buffers: kernels.batch_norm(
              d(_x()), *b(d), training=True)),
          ("batch-norm-eval", lambda d, b=buffers: kernels.batch_norm(d(_x()), *b(d))),
          ("instance-norm", lambda d, b=buffers: kernels.instance_norm(d(_x()), *b(d)))]],
]


@pytest.mark.parametrize("call,error,match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_call_names_the_argument_before_any_kernel(no_kernels, call, error, match):
    with pytest.raises(error, match=match):
        call(lambda a: to_backend(a, no_kernels))


def test_the_table_has_unique_ids():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))


# ---------------------------------------------------------------- what stays accepted

def test_the_largest_hyperparameter_is_accepted():
    assert _checks.pair(_checks.MAX_HYPER, "stride") == (_checks.MAX_HYPER,) * 2
    assert _checks.pair((1, np.int64(_checks.MAX_HYPER)), "stride") == (1, _checks.MAX_HYPER)
    with pytest.raises(ValueError, match="stride must be at most 2147483647"):
        _checks.pair(_checks.MAX_HYPER + 1, "stride")


def test_a_stride_past_the_input_still_works():
    """A stride larger than the input (one output per plane) is valid, as in torch."""
    x = np.arange(64, dtype=np.float64).reshape(1, 1, 8, 8)
    y, i = kernels.max_pool2d(x, 2, 1000)
    assert y.shape == (1, 1, 1, 1) and i.item() == 9


@pytest.mark.parametrize("value", [True, False, np.bool_(True), np.bool_(False)])
def test_need_input_grad_takes_python_and_numpy_bools(value):
    x, w = np.arange(9.0).reshape(1, 1, 3, 3), np.ones((1, 1, 2, 2))
    gx, gw, gb = kernels.conv2d_backward(np.ones((1, 1, 2, 2)), x, w, need_input_grad=value)
    assert (gx is None) is (not value)
    np.testing.assert_array_equal(gw[0, 0], [[8.0, 12.0], [20.0, 24.0]])


@pytest.mark.parametrize("eps", [1e-5, 0, 1, np.float32(1e-5), np.float64(0.1)])
def test_numeric_eps_is_accepted(eps):
    x = np.arange(16, dtype=np.float64).reshape(2, 2, 4)
    y = kernels.layer_norm(x, (4,), eps=eps)
    assert y.shape == x.shape


def test_adjacent_views_of_one_buffer_are_two_running_buffers(backend):
    """Views of one buffer that do not overlap are accepted, and updated as separate
    arrays would be."""
    x = np.random.default_rng(0).standard_normal((3, 2, 4)).astype(np.float32)
    buf = np.zeros(4, np.float32)
    buf[2:] = 1
    apart = (np.zeros(2, np.float32), np.ones(2, np.float32))
    d = to_backend(buf, backend)
    kernels.batch_norm(to_backend(x, backend), d[0:2], d[2:4], training=True)
    kernels.batch_norm(x, *apart, training=True)
    got = d.copy_to_host() if backend != "cpu" else d
    np.testing.assert_allclose(got, np.concatenate(apart), rtol=1e-6)


# ---------------------------------------------------------------- the shared helpers

class _Device:
    """A device array as the GPU would show it: only ``__cuda_array_interface__``."""

    def __init__(self, ptr, shape, strides=None, typestr="<f4"):
        self.__cuda_array_interface__ = {"data": (ptr, False), "shape": shape,
                                         "strides": strides, "typestr": typestr,
                                         "version": 3}


@pytest.mark.parametrize("a,b,overlap", [
    (_Device(1000, (4,)), _Device(1000, (4,)), True),  # the same buffer
    (_Device(1000, (4,)), _Device(1008, (4,)), True),  # overlapping views
    (_Device(1000, (4,)), _Device(1016, (4,)), False),  # adjacent
    (_Device(1016, (4,)), _Device(1000, (4,)), False),
    (_Device(1000, (2, 3)), _Device(1020, (1,)), True),  # the last element of a 2x3
    (_Device(1000, (2, 3)), _Device(1024, (1,)), False),
    (_Device(1012, (4,), strides=(-4,)), _Device(1000, (1,)), True),  # a reversed view
    (_Device(1000, (4,), typestr="<f8"), _Device(1024, (4,), typestr="<f8"), True),
    (_Device(1000, (0,)), _Device(1000, (4,)), False),  # empty
])
def test_device_arrays_overlap_by_address_range(a, b, overlap):
    assert _checks.shares_memory(a, b) is overlap
    assert _checks.shares_memory(b, a) is overlap


def test_check_size_names_the_array_and_its_size(monkeypatch):
    monkeypatch.setattr(_checks, "MAX_OUTPUT_BYTES", 2**30)
    _checks.check_size("the output y", (2**28,), np.float32)  # exactly 1 GiB: fine
    with pytest.raises(ValueError, match=r"the output y would need 2\.0 GiB \(shape "
                                         r"\(2, 268435456\), float32\), more than the 1\.0"):
        _checks.check_size("the output y", (2, 2**28), np.float32)


def test_the_padded_copy_is_checked_on_the_host(monkeypatch):
    """The CPU kernels work on a zero-padded copy of x (the GPU's read the padding as
    zeros), which can be far larger than the output when C_in >> C_out."""
    monkeypatch.setattr(_checks, "MAX_OUTPUT_BYTES", 2**20)  # 1 MiB
    x, w = np.ones((1, 64, 8, 8), np.float32), np.ones((1, 64, 1, 1), np.float32)
    g = np.ones((1, 1, 208, 208), np.float32)  # the output: 169 KiB
    with pytest.raises(ValueError, match=r"the zero-padded copy of x would need 0\.0103 GiB"):
        kernels.conv2d(x, w, padding=100)
    with pytest.raises(ValueError, match="the zero-padded copy of x would need"):
        kernels.conv2d_backward(g, x, w, padding=100)


def _swapped(a: np.ndarray) -> np.ndarray:
    """``a``'s values in the other byte order (big-endian on a little-endian machine)."""
    return a.astype(a.dtype.newbyteorder("S"))


# (id, call with host arrays, the argument named): one array in the other byte order each
# (integer indices are converted to int64 by value, so any byte order reads right)
BYTE_ORDER_CASES = [
    ("conv-x", lambda: kernels.conv2d(_swapped(_x()), _x((3, 2, 3, 3))), "x"),
    ("conv-w", lambda: kernels.conv2d(_x(), _swapped(_x((3, 2, 3, 3)))), "w"),
    ("conv-backward-grad-out", lambda: kernels.conv2d_backward(
        _swapped(_x((1, 3, 6, 6))), _x(), _x((3, 2, 3, 3))), "grad_out"),
    ("correlate2d", lambda: kernels.correlate2d(_swapped(np.ones((8, 8))), np.ones((3, 3))),
     "in1"),
    ("max-pool", lambda: kernels.max_pool2d(_swapped(_x()), 2), "x"),
    ("batch-norm", lambda: kernels.batch_norm(_swapped(_x()), training=True), "x"),
    ("relu", lambda: kernels.relu(_swapped(_x())), "x"),
    ("sgd-params", lambda: kernels.optim.SGD([_swapped(np.ones(3, np.float32))], lr=0.1),
     r"params\[0\]"),
]


@pytest.mark.parametrize("backend", ["cpu"])
@pytest.mark.parametrize("call,name", [c[1:] for c in BYTE_ORDER_CASES],
                         ids=[c[0] for c in BYTE_ORDER_CASES])
def test_the_other_byte_order_is_named_not_misread(no_kernels, call, name):
    """The kernels read raw memory in the machine's byte order; a big-endian array (from a
    file, say) would be read as other numbers, silently (a float64 conv2d returned
    garbage before this check), so it is refused, with the conversion that fixes it."""
    with pytest.raises(TypeError, match=rf"^{name} is (big|little)-endian \(.*pass {name}"
                                        r"\.astype\(np\.(float32|float64)\)"):
        call()
