"""Pooling kernels and their NumPy reference against torch (forward and autograd backward)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from backends import cuda_available, to_backend, to_host
from hypothesis import given, settings
from hypothesis import strategies as st

import kernels
from kernels.reference import pool as ref

TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-12)}
DTYPES = [np.float32, np.float64]
IMPLS = {"kernels": kernels, "reference": ref}

# (shape, kernel, stride, padding, ceil_mode)
CASES = [
    ((2, 3, 8, 8), 2, None, 0, False),
    ((64, 6, 28, 28), 2, 2, 0, False),
    ((2, 4, 10, 10), 2, 2, 0, False),
    ((1, 2, 13, 11), 3, 2, 1, False),
    ((2, 2, 13, 11), 3, 2, 1, True),
    ((1, 1, 7, 9), (3, 2), (2, 1), (1, 0), False),
    ((1, 2, 5, 5), 2, 2, 0, True),
    ((3, 6, 6), 3, 1, 1, False),  # unbatched CHW
    ((1, 1, 1, 1), 1, 1, 0, False),
    ((1, 1, 3, 3), 3, 3, 1, True),
    ((2, 1, 9, 4), (4, 1), (3, 2), (2, 0), True),
]


def _torch_max(x, k, s, p, ceil, g):
    xt = torch.tensor(x, requires_grad=True)
    y, i = F.max_pool2d(xt, k, s, p, ceil_mode=ceil, return_indices=True)
    (gx,) = torch.autograd.grad(y, xt, torch.tensor(g))
    return y.detach().numpy(), i.numpy(), gx.numpy()


def _torch_avg(x, k, s, p, ceil, cip, g):
    xt = torch.tensor(x, requires_grad=True)
    y = F.avg_pool2d(xt, k, s, p, ceil, cip)
    (gx,) = torch.autograd.grad(y, xt, torch.tensor(g))
    return y.detach().numpy(), gx.numpy()


def _check_max(impl, x, k, s, p, ceil, rng):
    shape = F.max_pool2d(torch.tensor(x), k, s, p, ceil_mode=ceil).shape
    g = rng.standard_normal(tuple(shape)).astype(x.dtype)
    want_y, want_i, want_gx = _torch_max(x, k, s, p, ceil, g)
    if impl is kernels:
        y, i = kernels.max_pool2d(x, k, s, p, ceil_mode=ceil)
    else:
        y, i = ref.max_pool2d(x, k, s, p, ceil)
    assert y.dtype == x.dtype and i.dtype == np.int64
    np.testing.assert_array_equal(y, want_y)  # a max is exact
    np.testing.assert_array_equal(i, want_i)
    gx = impl.max_pool2d_backward(g, i, x.shape)
    assert gx.dtype == x.dtype
    np.testing.assert_allclose(gx, want_gx, **TOL[x.dtype.type])


def _check_avg(impl, x, k, s, p, ceil, cip, rng):
    shape = F.avg_pool2d(torch.tensor(x), k, s, p, ceil, cip).shape
    g = rng.standard_normal(tuple(shape)).astype(x.dtype)
    want_y, want_gx = _torch_avg(x, k, s, p, ceil, cip, g)
    y = impl.avg_pool2d(x, k, s, p, ceil, cip)
    gx = impl.avg_pool2d_backward(g, x.shape, k, s, p, ceil, cip)
    assert y.dtype == gx.dtype == x.dtype
    np.testing.assert_allclose(y, want_y, **TOL[x.dtype.type])
    np.testing.assert_allclose(gx, want_gx, **TOL[x.dtype.type])


@pytest.mark.parametrize("impl", IMPLS.values(), ids=IMPLS.keys())
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,k,s,p,ceil", CASES)
def test_max_pool2d_matches_torch(impl, dtype, shape, k, s, p, ceil):
    rng = np.random.default_rng(0)
    _check_max(impl, rng.standard_normal(shape).astype(dtype), k, s, p, ceil, rng)


@pytest.mark.parametrize("impl", IMPLS.values(), ids=IMPLS.keys())
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cip", [True, False])
@pytest.mark.parametrize("shape,k,s,p,ceil", CASES)
def test_avg_pool2d_matches_torch(impl, dtype, cip, shape, k, s, p, ceil):
    rng = np.random.default_rng(1)
    _check_avg(impl, rng.standard_normal(shape).astype(dtype), k, s, p, ceil, cip, rng)


@pytest.mark.parametrize("impl", IMPLS.values(), ids=IMPLS.keys())
def test_max_pool2d_ties_nan_and_overlap(impl):
    """Ties keep the first position, NaN wins (the last NaN), -inf windows report their first
    in-bounds position, and overlapping windows accumulate onto a shared argmax."""
    rng = np.random.default_rng(2)
    x = np.round(rng.standard_normal((2, 3, 9, 9)))  # many ties
    x[0, 0, 1, 1] = x[0, 0, 4, 5] = x[0, 0, 4, 6] = np.nan
    x[1, 2] = -np.inf
    x[1, 1] = 0.0
    x[1, 1, 4, 4] = 5.0  # every 3x3 stride-1 window around it picks it
    for k, s, p in ((3, 1, 1), (2, 2, 0), (3, 2, 1)):
        _check_max(impl, x, k, s, p, False, rng)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_pooling_property_matches_torch(data):
    dtype = data.draw(st.sampled_from(DTYPES))
    kh, kw = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    sh, sw = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    ph, pw = data.draw(st.integers(0, kh // 2)), data.draw(st.integers(0, kw // 2))
    ceil = data.draw(st.booleans())
    H = data.draw(st.integers(max(1, kh - 2 * ph), 12))
    W = data.draw(st.integers(max(1, kw - 2 * pw), 12))
    if min(ref.output_size(H, kh, sh, ph, ceil), ref.output_size(W, kw, sw, pw, ceil)) < 1:
        return
    n, c = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((n, c, H, W)).astype(dtype)
    args = ((kh, kw), (sh, sw), (ph, pw), ceil)
    for impl in IMPLS.values():
        _check_max(impl, x, *args, rng)
        _check_avg(impl, x, *args, data.draw(st.booleans()), rng)


def test_kernels_match_reference_exactly_on_max():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 4, 17, 15)).astype(np.float32)
    y, i = kernels.max_pool2d(x, 3, 2, 1)
    ry, ri = ref.max_pool2d(x, 3, 2, 1)
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_array_equal(i, ri)


def test_noncontiguous_input_is_copied():
    x = np.random.default_rng(4).standard_normal((2, 3, 8, 8))[..., ::2, :]
    np.testing.assert_array_equal(kernels.max_pool2d(x, 2)[0], ref.max_pool2d(x, 2)[0])


@pytest.mark.parametrize("call,match", [
    (lambda x: kernels.max_pool2d(x[0, 0], 2), "x must have 3 or 4 dimensions"),
    (lambda x: kernels.max_pool2d(x.astype(np.int32), 2), "x must be float32 or float64"),
    (lambda x: kernels.max_pool2d(x, 0), "kernel_size must be at least 1"),
    (lambda x: kernels.max_pool2d(x, 2, 0), "stride must be at least 1"),
    (lambda x: kernels.max_pool2d(x, 2, 1, -1), "padding must be at least 0"),
    (lambda x: kernels.max_pool2d(x, 2, 1, 2), "padding .* at most half of kernel_size"),
    (lambda x: kernels.max_pool2d(x, 9), "kernel_size .* larger than the padded input"),
    (lambda x: kernels.max_pool2d(x, (2, 2, 2)), "kernel_size must be an int or a pair"),
    (lambda x: kernels.avg_pool2d(x, 3, 1, 2), "padding .* at most half of kernel_size"),
    (lambda x: kernels.avg_pool2d(x, 11, 1, 1), "kernel_size .* larger than the padded input"),
    (lambda x: kernels.avg_pool2d_backward(np.ones((1, 2, 3, 3)), x.shape, 2),
     "grad_out has shape"),
    (lambda x: kernels.avg_pool2d_backward(np.ones((1, 2, 4, 4)), (1, 2, 8), 2),
     "grad_out must have 3 dimensions"),
    (lambda x: kernels.max_pool2d_backward(np.ones((1, 2, 4, 4)), np.zeros((1, 2, 4, 4)),
                                           x.shape), "indices must be a NumPy integer array"),
    (lambda x: kernels.max_pool2d_backward(np.ones((1, 2, 4, 4)),
                                           np.zeros((1, 2, 4, 3), np.int64), x.shape),
     "indices has shape"),
    (lambda x: kernels.max_pool2d_backward(np.ones((1, 2, 4, 4)),
                                           np.full((1, 2, 4, 4), 64), x.shape),
     "indices has 32 entries outside"),
    (lambda x: kernels.max_pool2d_backward(np.ones((1, 3, 4, 4)),
                                           np.zeros((1, 3, 4, 4), np.int64), x.shape),
     "grad_out has shape"),
    (lambda x: kernels.max_pool2d_backward(np.ones((1, 2, 4, 4)),
                                           np.zeros((1, 2, 4, 4), np.int64), (1, 2, 0, 8)),
     "x_shape must be"),
    (lambda x: kernels.max_pool2d([[1.0]], 1), "x must be a NumPy array"),
])
def test_validation_names_the_argument(call, match):
    x = np.ones((1, 2, 8, 8))
    with pytest.raises((ValueError, TypeError), match=match):
        call(x)


# ---------------------------------------------------------------- every backend
# Small cases: in the tests the CUDA kernels run in Numba's simulator, a thread at a time.

BACKEND_CASES = [
    ((1, 2, 5, 5), 3, 2, 1, True),  # overlapping windows, padding, ceil_mode
    ((2, 1, 5, 4), (3, 2), (1, 2), (1, 1), False),  # rectangular, overlapping rows
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,k,s,p,ceil", BACKEND_CASES)
def test_pooling_on_backend_matches_torch_and_cpu(backend, dtype, shape, k, s, p, ceil):
    """Forward and backward on the backend's arrays, against torch and the CPU path
    (bit for bit: the CUDA kernels add in the CPU kernels' order)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(tuple(F.max_pool2d(torch.tensor(x), k, s, p, ceil_mode=ceil)
                                  .shape)).astype(dtype)
    want_y, want_i, want_gx = _torch_max(x, k, s, p, ceil, g)
    y, i = kernels.max_pool2d(to_backend(x, backend), k, s, p, ceil_mode=ceil)
    gx = kernels.max_pool2d_backward(to_backend(g, backend), i, shape)
    y, i, gx = to_host((y, i, gx))
    assert y.dtype == gx.dtype == dtype and i.dtype == np.int64
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_array_equal(i, want_i)
    np.testing.assert_allclose(gx, want_gx, **TOL[dtype])
    np.testing.assert_array_equal(gx, kernels.max_pool2d_backward(g, want_i, shape))
    for cip in (True, False):
        want_y, want_gx = _torch_avg(x, k, s, p, ceil, cip, g)
        y = to_host(kernels.avg_pool2d(to_backend(x, backend), k, s, p, ceil, cip))
        gx = to_host(kernels.avg_pool2d_backward(to_backend(g, backend), shape, k, s, p,
                                                 ceil, cip))
        assert y.dtype == gx.dtype == dtype
        np.testing.assert_allclose(y, want_y, **TOL[dtype])
        np.testing.assert_allclose(gx, want_gx, **TOL[dtype])
        np.testing.assert_array_equal(y, kernels.avg_pool2d(x, k, s, p, ceil, cip))
        np.testing.assert_array_equal(gx, kernels.avg_pool2d_backward(g, shape, k, s, p,
                                                                      ceil, cip))


def test_max_pool2d_on_backend_ties_nan_and_overlap(backend):
    """Ties keep the first position, NaN wins, a -inf plane reports first positions, and
    the 3x3 stride-1 windows that all pick one spike add their gradients onto it."""
    x = np.round(np.random.default_rng(6).standard_normal((1, 3, 5, 5)))
    x[0, 0, 1, 1] = x[0, 0, 3, 2] = np.nan
    x[0, 1] = -np.inf
    x[0, 2] = 0.0
    x[0, 2, 2, 2] = 5.0
    g = np.random.default_rng(7).standard_normal((1, 3, 5, 5))
    want_y, want_i, want_gx = _torch_max(x, 3, 1, 1, False, g)
    y, i = kernels.max_pool2d(to_backend(x, backend), 3, 1, 1)
    gx = to_host(kernels.max_pool2d_backward(to_backend(g, backend), i, x.shape))
    np.testing.assert_array_equal(to_host(y), want_y)
    np.testing.assert_array_equal(to_host(i), want_i)
    np.testing.assert_allclose(gx, want_gx, **TOL[np.float64])
    assert gx[0, 2, 2, 2] == kernels.max_pool2d_backward(g, want_i, x.shape)[0, 2, 2, 2]


needs_cuda = pytest.mark.skipif(not cuda_available(), reason="no CUDA backend")


def _dev(a):
    return to_backend(np.asarray(a), "cuda")


@needs_cuda
@pytest.mark.parametrize("call,error,match", [
    (lambda x: kernels.max_pool2d(x[0, 0], 2), ValueError, "x must have 3 or 4 dimensions"),
    (lambda x: kernels.max_pool2d(_dev(np.ones((1, 1, 4, 4), np.int32)), 2), TypeError,
     "x must be float32 or float64"),
    (lambda x: kernels.max_pool2d(x, 9), ValueError, "kernel_size .* larger than the padded"),
    (lambda x: kernels.avg_pool2d(x, 3, 1, 2), ValueError, "padding .* at most half"),
    (lambda x: kernels.avg_pool2d_backward(_dev(np.ones((1, 2, 3, 3))), (1, 2, 8, 8), 2),
     ValueError, "grad_out has shape"),
    (lambda x: kernels.max_pool2d_backward(_dev(np.ones((1, 2, 4, 4))),
                                           _dev(np.zeros((1, 2, 4, 4))), (1, 2, 8, 8)),
     TypeError, "indices must be an integer array"),
    (lambda x: kernels.max_pool2d_backward(_dev(np.ones((1, 2, 4, 4))),
                                           _dev(np.zeros((1, 2, 4, 3), np.int64)), (1, 2, 8, 8)),
     ValueError, "indices has shape"),
    (lambda x: kernels.max_pool2d_backward(_dev(np.ones((1, 2, 2, 2))),
                                           _dev(np.full((1, 2, 2, 2), 64)), (1, 2, 8, 8)),
     ValueError, "indices has 8 entries outside"),
    (lambda x: kernels.max_pool2d_backward(_dev(np.ones((1, 2, 4, 4))),
                                           np.zeros((1, 2, 4, 4), np.int64), (1, 2, 8, 8)),
     TypeError, "indices is a NumPy .host. array"),
    (lambda x: kernels.max_pool2d_backward(_dev(np.ones((1, 2, 4, 4))),
                                           _dev(np.zeros((1, 2, 4, 4), np.int64)), (1, 2, 0, 8)),
     ValueError, "x_shape must be"),
])
def test_validation_on_device_names_the_argument(call, error, match):
    """Device arrays are checked before any launch, with the CPU path's messages; a host
    array among device ones is refused."""
    with pytest.raises(error, match=match):
        call(_dev(np.ones((1, 2, 8, 8))))
