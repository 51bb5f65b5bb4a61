"""ReLU, linear and cross-entropy kernels and their NumPy reference against torch autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from backends import cuda_available, to_backend, to_host
from hypothesis import given, settings
from hypothesis import strategies as st

import kernels
from kernels._checks import is_device
from kernels.reference import activation as ref

TOL = {np.float32: dict(rtol=2e-5, atol=1e-6), np.float64: dict(rtol=1e-11, atol=1e-12)}
DTYPES = [np.float32, np.float64]
IMPLS = {"kernels": kernels, "reference": ref}
impls = pytest.mark.parametrize("impl", IMPLS.values(), ids=IMPLS.keys())
cuda_only = pytest.mark.skipif(not cuda_available(), reason="Numba's CUDA target is absent")


@impls
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (1,), (5,), (64, 10), (3, 4, 5, 6), (300, 200)])
def test_relu_matches_torch(impl, dtype, shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    x.flat[: min(3, x.size)] = [0.0, np.nan, -0.0][: min(3, x.size)]
    g = rng.standard_normal(shape).astype(dtype)
    xt = torch.tensor(x, requires_grad=True)
    y = F.relu(xt)
    (gx,) = torch.autograd.grad(y, xt, torch.tensor(g))
    ours, grad = impl.relu(x), impl.relu_backward(g, x)
    assert ours.dtype == grad.dtype == dtype
    assert ours.shape == grad.shape == shape  # a 0-d array stays 0-d, as in torch
    np.testing.assert_array_equal(ours, y.detach().numpy())  # NaN propagates, exact
    np.testing.assert_array_equal(grad, gx.numpy())  # 0 at x == 0


def _linear_case(seed, dtype, x_shape, out, bias):
    """Random x, w, b (or None) and grad_out; torch's y and gradients of x, w (and b); the
    tolerance."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal((out, x_shape[-1])).astype(dtype)
    b = rng.standard_normal(out).astype(dtype) if bias else None
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True) if bias else None
    y = F.linear(xt, wt, bt)
    g = rng.standard_normal(tuple(y.shape)).astype(dtype)
    want = torch.autograd.grad(y, [t for t in (xt, wt, bt) if t is not None], torch.tensor(g))
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else TOL[dtype]
    return x, w, b, g, y, want, tol


@impls
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape,out,bias", [((4, 3), 5, True), ((2, 3, 7), 1, False),
                                              ((7,), 4, True), ((64, 120), 84, True)])
def test_linear_matches_torch(impl, dtype, x_shape, out, bias):
    x, w, b, g, y, want, tol = _linear_case(1, dtype, x_shape, out, bias)
    np.testing.assert_allclose(impl.linear(x, w, b), y.detach().numpy(), **tol)
    grads = impl.linear_backward(g, x, w)
    assert all(a.dtype == dtype for a in grads)
    for ours, theirs in zip(grads, want):
        np.testing.assert_allclose(ours, theirs.numpy(), **tol)
    if not bias:
        np.testing.assert_allclose(grads[2], g.reshape(-1, out).sum(0), **tol)


def _check_cross_entropy(impl, z, t, reduction, smoothing, rng):
    zt = torch.tensor(z, requires_grad=True)
    loss = F.cross_entropy(zt, torch.tensor(t), reduction=reduction, label_smoothing=smoothing)
    go = rng.standard_normal(tuple(loss.shape)).astype(z.dtype)
    (want,) = torch.autograd.grad(loss, zt, torch.tensor(go))
    ours = impl.cross_entropy(z, t, reduction, smoothing)
    assert np.asarray(ours).dtype == z.dtype and np.shape(ours) == tuple(loss.shape)
    np.testing.assert_allclose(ours, loss.detach().numpy(), **TOL[z.dtype.type])
    grad = impl.cross_entropy_backward(z, t, reduction, smoothing, grad_out=go)
    assert grad.dtype == z.dtype
    np.testing.assert_allclose(grad, want.numpy(), **TOL[z.dtype.type])


@impls
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,c", [(1, 1), (3, 5), (64, 10), (33, 200), (256, 1000)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_matches_torch(impl, dtype, n, c, reduction, smoothing):
    rng = np.random.default_rng(2)
    z = (rng.standard_normal((n, c)) * 4).astype(dtype)
    _check_cross_entropy(impl, z, rng.integers(0, c, n), reduction, smoothing, rng)


@impls
@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_is_stable_and_propagates_nan(impl, dtype):
    rng = np.random.default_rng(3)
    z = (rng.standard_normal((6, 40)) * 30).astype(dtype)
    z[0] += 1e4 if dtype == np.float64 else 80  # no overflow: the row max is subtracted
    z[1, 3] = -1e30 if dtype == np.float64 else -1e30  # exp underflows to exactly 0
    _check_cross_entropy(impl, z, rng.integers(0, 40, 6), "none", 0.0, rng)
    z[2, 5] = np.nan
    t = np.array([0, 1, 2, 3, 4, 5])
    losses = impl.cross_entropy(z, t, "none")
    assert np.isnan(losses[2]) and np.isfinite(np.delete(losses, 2)).all()
    assert np.isnan(impl.cross_entropy_backward(z, t, "none")[2]).all()


def test_cross_entropy_default_grad_is_the_loss_gradient():
    rng = np.random.default_rng(4)
    z = rng.standard_normal((8, 5)).astype(np.float32)
    t = rng.integers(0, 5, 8)
    zt = torch.tensor(z, requires_grad=True)
    F.cross_entropy(zt, torch.tensor(t)).backward()
    np.testing.assert_allclose(kernels.cross_entropy_backward(z, t), zt.grad.numpy(),
                               **TOL[np.float32])


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 40), c=st.integers(1, 60), scale=st.floats(0.1, 50),
       reduction=st.sampled_from(["mean", "sum", "none"]), smoothing=st.sampled_from([0, 0.25]),
       dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**32 - 1))
def test_cross_entropy_property(n, c, scale, reduction, smoothing, dtype, seed):
    rng = np.random.default_rng(seed)
    z = (rng.standard_normal((n, c)) * scale).astype(dtype)
    t = rng.integers(0, c, n)
    for impl in IMPLS.values():
        _check_cross_entropy(impl, z, t, reduction, smoothing, rng)


@pytest.mark.parametrize("call,match", [
    (lambda z, t: kernels.cross_entropy(z, t.astype(np.float64)), "target must be a NumPy int"),
    (lambda z, t: kernels.cross_entropy(z, t[:3]), "target has shape"),
    (lambda z, t: kernels.cross_entropy(z, t + 5), r"target has class indices outside \[0, 5\)"),
    (lambda z, t: kernels.cross_entropy(z, t - 5), "target has class indices outside"),
    (lambda z, t: kernels.cross_entropy(z[0], t), "logits must have 2 dimensions"),
    (lambda z, t: kernels.cross_entropy(z, t, reduction="avg"), "reduction must be one of"),
    (lambda z, t: kernels.cross_entropy(z, t, label_smoothing=1.5), "label_smoothing must be"),
    (lambda z, t: kernels.cross_entropy_backward(z, t, grad_out=np.ones(4)), "grad_out has shape"),
    (lambda z, t: kernels.cross_entropy_backward(z, t + 9), "target has class indices"),
    (lambda z, t: kernels.relu(z.astype(np.int64)), "x must be float32 or float64"),
    (lambda z, t: kernels.relu_backward(z, z[:2]), "x has shape"),
    (lambda z, t: kernels.relu_backward(z, z.astype(np.float32)), "x is float32"),
    (lambda z, t: kernels.linear(z, np.ones((3, 4))), "x has 5 input features"),
    (lambda z, t: kernels.linear(z, np.ones((3, 5)), np.ones(4)), "b has shape"),
    (lambda z, t: kernels.linear(z, np.ones(5)), "w must have 2 dimensions"),
    (lambda z, t: kernels.linear_backward(np.ones((4, 2)), z, np.ones((3, 5))),
     "grad_out has shape"),
])
def test_validation_names_the_argument(call, match):
    z = np.ones((4, 5))
    t = np.array([0, 1, 2, 4])
    with pytest.raises((ValueError, TypeError), match=match):
        call(z, t)


# -- every backend (CUDA in the simulator: ~1 ms a thread, so small shapes) ---------------
def _on(backend, *arrays):
    return [to_backend(a, backend) for a in arrays]


def _assert_backend_array(a, backend, dtype):
    """A result stays on its backend (a device array from CUDA), in the input's dtype."""
    assert is_device(a) == (backend == "cuda") and a.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_on_backend(backend, dtype):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 4)).astype(dtype)
    x.flat[:3] = [0.0, np.nan, -0.0]
    g = rng.standard_normal(x.shape).astype(dtype)
    xt = torch.tensor(x, requires_grad=True)
    y = F.relu(xt)
    (gx,) = torch.autograd.grad(y, xt, torch.tensor(g))
    ours, grad = kernels.relu(*_on(backend, x)), kernels.relu_backward(*_on(backend, g, x))
    _assert_backend_array(ours, backend, dtype)
    _assert_backend_array(grad, backend, dtype)
    np.testing.assert_array_equal(to_host(ours), y.detach().numpy())
    np.testing.assert_array_equal(to_host(grad), gx.numpy())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape,out,bias", [
    ((4, 3), 5, True), ((2, 3, 7), 1, False), ((7,), 4, True),
    ((17, 18), 2, True)])  # more than one 16 x 16 tile along every axis of some product
def test_linear_on_backend(backend, dtype, x_shape, out, bias):
    x, w, b, g, y, want, tol = _linear_case(6, dtype, x_shape, out, bias)
    ours = kernels.linear(*_on(backend, x, w, b))
    _assert_backend_array(ours, backend, dtype)
    np.testing.assert_allclose(to_host(ours), y.detach().numpy(), **tol)
    grads = kernels.linear_backward(*_on(backend, g, x, w))
    for a in grads:
        _assert_backend_array(a, backend, dtype)
    gx, gw, gb = to_host(grads)
    np.testing.assert_allclose(gx, want[0].numpy(), **tol)
    np.testing.assert_allclose(gw, want[1].numpy(), **tol)
    np.testing.assert_allclose(gb, g.reshape(-1, out).sum(0), **tol)


@cuda_only
def test_linear_launches_tall_products_in_parts(monkeypatch):
    """More rows than a grid may hold (gridDim.y): pretend the limit is one tile, so 17
    rows take two launches, and the product is still exact."""
    from kernels.cuda import _launch

    monkeypatch.setattr(_launch, "MAX_GRID_Y", 1)
    rng = np.random.default_rng(9)
    x, w, b = (rng.standard_normal(s) for s in [(17, 3), (2, 3), (2,)])
    g = rng.standard_normal((17, 2))
    np.testing.assert_allclose(to_host(kernels.linear(*_on("cuda", x, w, b))), x @ w.T + b,
                               **TOL[np.float64])
    gx, gw, gb = to_host(kernels.linear_backward(*_on("cuda", g, x, w)))
    for ours, want in [(gx, g @ w), (gw, g.T @ x), (gb, g.sum(0))]:
        np.testing.assert_allclose(ours, want, **TOL[np.float64])


def _check_cross_entropy_on(backend, z, t, reduction, smoothing, rng):
    """As :func:`_check_cross_entropy`, with the inputs on ``backend``: the losses come back
    as a device array (``none``) or a host scalar of the dtype (``mean``, ``sum``)."""
    zt = torch.tensor(z, requires_grad=True)
    loss = F.cross_entropy(zt, torch.tensor(t), reduction=reduction, label_smoothing=smoothing)
    go = rng.standard_normal(tuple(loss.shape)).astype(z.dtype)
    (want,) = torch.autograd.grad(loss, zt, torch.tensor(go))
    ours = kernels.cross_entropy(*_on(backend, z, t), reduction, smoothing)
    if reduction == "none":
        _assert_backend_array(ours, backend, z.dtype)
    else:
        assert isinstance(ours, z.dtype.type)
    np.testing.assert_allclose(to_host(ours), loss.detach().numpy(), **TOL[z.dtype.type])
    go = to_backend(go, backend) if reduction == "none" else go  # N values: on the device
    grad = kernels.cross_entropy_backward(*_on(backend, z, t), reduction, smoothing,
                                          grad_out=go)
    _assert_backend_array(grad, backend, z.dtype)
    np.testing.assert_allclose(to_host(grad), want.numpy(), **TOL[z.dtype.type])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,c,reduction,smoothing", [
    (1, 1, "mean", 0.0), (3, 5, "mean", 0.0), (3, 5, "sum", 0.1), (3, 5, "none", 0.1),
    (1, 300, "none", 0.1)])  # more classes than threads in a block: strided rows
def test_cross_entropy_on_backend(backend, dtype, n, c, reduction, smoothing):
    rng = np.random.default_rng(7)
    z = (rng.standard_normal((n, c)) * 4).astype(dtype)
    _check_cross_entropy_on(backend, z, rng.integers(0, c, n), reduction, smoothing, rng)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_on_backend_is_stable_and_propagates_nan(backend, dtype):
    rng = np.random.default_rng(8)
    z = (rng.standard_normal((3, 12)) * 30).astype(dtype)
    z[0] += 1e4 if dtype == np.float64 else 80  # no overflow: the row max is subtracted
    z[1, 3] = -1e30  # exp underflows to exactly 0
    t = np.array([0, 3, 5])
    _check_cross_entropy_on(backend, z, t, "none", 0.0, rng)
    z[2, 5] = np.nan
    losses = to_host(kernels.cross_entropy(*_on(backend, z, t), "none"))
    assert np.isnan(losses[2]) and np.isfinite(losses[:2]).all()
    assert np.isnan(to_host(kernels.cross_entropy_backward(*_on(backend, z, t), "none"))[2]).all()


@cuda_only
@pytest.mark.parametrize("call,error,match", [
    (lambda z, t, h: kernels.relu_backward(z, h), TypeError, "x is a NumPy .host. array"),
    (lambda z, t, h: kernels.relu_backward(z, to_backend(h[:2], "cuda")), ValueError,
     "x has shape"),
    (lambda z, t, h: kernels.relu(to_backend(h.astype(np.int64), "cuda")), TypeError,
     "x must be float32 or float64"),
    (lambda z, t, h: kernels.linear(z, to_backend(np.ones((3, 4)), "cuda")), ValueError,
     "x has 5 input features"),
    (lambda z, t, h: kernels.linear(z, to_backend(np.ones((3, 5), np.float32), "cuda")),
     TypeError, "x is float64"),
    (lambda z, t, h: kernels.linear_backward(to_backend(np.ones((4, 2)), "cuda"), z,
                                             to_backend(np.ones((3, 5)), "cuda")),
     ValueError, "grad_out has shape"),
    (lambda z, t, h: kernels.cross_entropy(z, to_backend(np.array([0, 1, 2, 5]), "cuda")),
     ValueError, r"target has class indices outside \[0, 5\)"),
    (lambda z, t, h: kernels.cross_entropy(z, to_backend(np.ones(4), "cuda")), TypeError,
     "target must be an integer array"),
    (lambda z, t, h: kernels.cross_entropy(z, np.array([0, 1, 2, 4])), TypeError,
     "target is a NumPy .host. array"),
    (lambda z, t, h: kernels.cross_entropy(z, t, reduction="avg"), ValueError,
     "reduction must be one of"),
    (lambda z, t, h: kernels.cross_entropy_backward(z, t, grad_out=np.ones(4)), ValueError,
     "grad_out has shape"),
])
def test_device_validation_names_the_argument(call, error, match):
    """Device arrays are checked as host arrays are, before any launch."""
    h = np.ones((4, 5))
    z, t = to_backend(h, "cuda"), to_backend(np.array([0, 1, 2, 4]), "cuda")
    with pytest.raises(error, match=match):
        call(z, t, h)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_max_in_vectors_finds_the_max_anywhere_and_skips_nan(dtype):
    """The softmax rows' max, P lanes at a time then the tail: the largest value wherever
    it sits (a wrong max would only show as an overflow), NaN skipped except in the
    first place (where the scalar loop also kept it)."""
    from kernels.cpu.activation import _row_max

    rng = np.random.default_rng(3)
    for n in range(1, 70):
        for k in {0, n // 2, n - 1}:
            row = rng.standard_normal(n).astype(dtype)
            row[k] = 50
            assert _row_max(row) == 50, (n, k)
            if n > 1:
                row[(k + 1) % n] = np.nan
                if (k + 1) % n:
                    assert _row_max(row) == 50, (n, k)
                else:
                    assert np.isnan(_row_max(row))
