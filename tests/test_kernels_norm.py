"""kernels.norm (Numba) and kernels.reference.norm (NumPy) against torch.nn.functional.

Both implementations run through every test (``impl``): the reference is the living
definition, so it is held to torch as tightly as the kernels are. Torch runs in the
test's dtype; forward, running statistics and the autograd backward are compared.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from backends import cuda_available, to_backend, to_host
from hypothesis import given, settings
from hypothesis import strategies as st

import kernels
import kernels.reference.norm as reference
from kernels import norm

torch = pytest.importorskip("torch")
F = torch.nn.functional

IMPLS = [pytest.param(reference, id="reference"), pytest.param(norm, id="numba")]
DTYPES = [np.float32, np.float64]
SHAPES = [(5, 3), (4, 3, 7), (3, 4, 5, 6), (2, 6, 3, 4, 2), (1, 2, 9, 9)]


def tol(dtype, scale: float = 1.0, kappa: float = 1.0) -> dict:
    """``scale``: the size of the sums behind a value; ``kappa``: its conditioning."""
    return (dict(rtol=2e-4 * kappa, atol=2e-5 * scale * kappa) if dtype == np.float32
            else dict(rtol=1e-9, atol=1e-11 * scale))


def data(shape, dtype, seed=0, offset=3.0, scale=2.0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * scale + offset).astype(dtype)


def t(a, grad=False):
    return None if a is None else torch.tensor(a, requires_grad=grad)


def close(ours, theirs, dtype, scale=1.0):
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else theirs
    assert ours.dtype == dtype
    np.testing.assert_allclose(ours, theirs, **tol(dtype, scale))


def check_backward(ours, tensors, y, g, dtype):
    """ours = (grad_x, grad_w, grad_b); tensors = (tx, tw, tb) (tw/tb may be None)."""
    wanted = [a for a in tensors if a is not None]
    grads = iter(torch.autograd.grad(y, wanted, torch.tensor(g)))
    scale = np.sqrt(g.size)  # weight/bias grads are sums over many elements
    for mine, tensor in zip(ours, tensors):
        if tensor is None:
            assert mine is None
        else:
            close(mine, next(grads), dtype, scale)


def affine(c, dtype, with_weight=True, with_bias=True, seed=1):
    shape = (c,) if np.isscalar(c) else c
    w = data(shape, dtype, seed, offset=1.0, scale=0.5) if with_weight else None
    b = data(shape, dtype, seed + 1, offset=0.0, scale=1.0) if with_bias else None
    return w, b


# ---------------------------------------------------------------- batch norm

@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_batch_norm_training_forward_backward_and_running_stats(impl, dtype, shape):
    c = shape[1]
    w, b = affine(c, dtype)
    rm, rv = data(c, dtype, 7, 0.0, 1.0), np.abs(data(c, dtype, 8, 1.0, 0.5))
    trm, trv = t(rm), t(rv)
    for step in range(3):  # running statistics after several steps
        x, g = data(shape, dtype, 10 + step), data(shape, dtype, 20 + step, 0.0)
        y, mean, invstd = impl.batch_norm(x, rm, rv, w, b, True, 0.2, 1e-4, return_stats=True)
        tx, tw, tb = t(x, True), t(w, True), t(b, True)
        ty = F.batch_norm(tx, trm, trv, tw, tb, True, 0.2, 1e-4)
        close(y, ty, dtype)
        close(rm, trm, dtype)
        close(rv, trv, dtype)
        axes = (0,) + tuple(range(2, len(shape)))
        close(mean, x.astype(np.float64).mean(axis=axes).astype(dtype), dtype)
        close(invstd, (1 / np.sqrt(x.astype(np.float64).var(axis=axes) + 1e-4)).astype(dtype),
              dtype)
        grads = impl.batch_norm_backward(g, x, w, mean, invstd)
        check_backward(grads, (tx, tw, tb), ty, g, dtype)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5, 3), (3, 4, 5, 6)])
def test_batch_norm_eval_forward_backward(impl, dtype, shape):
    c = shape[1]
    x, g = data(shape, dtype), data(shape, dtype, 5, 0.0)
    w, b = affine(c, dtype)
    rm, rv = data(c, dtype, 7), np.abs(data(c, dtype, 8, 2.0))
    before = rm.copy(), rv.copy()
    y, mean, invstd = impl.batch_norm(x, rm, rv, w, b, return_stats=True)
    np.testing.assert_array_equal(rm, before[0])  # eval never touches the running stats
    np.testing.assert_array_equal(rv, before[1])
    tx, tw, tb = t(x, True), t(w, True), t(b, True)
    ty = F.batch_norm(tx, t(rm), t(rv), tw, tb, False)
    close(y, ty, dtype)
    close(mean, rm, dtype)
    grads = impl.batch_norm_backward(g, x, w, mean, invstd, training=False)
    check_backward(grads, (tx, tw, tb), ty, g, dtype)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_weight,with_bias", [(False, False), (True, False), (False, True)])
def test_batch_norm_without_affine_and_running_stats(impl, dtype, with_weight, with_bias):
    shape = (4, 3, 5)
    x, g = data(shape, dtype), data(shape, dtype, 5, 0.0)
    w, b = affine(3, dtype, with_weight, with_bias)
    y, mean, invstd = impl.batch_norm(x, None, None, w, b, True, return_stats=True)
    tx, tw, tb = t(x, True), t(w, w is not None), t(b, b is not None)
    ty = F.batch_norm(tx, None, None, tw, tb, True)
    close(y, ty, dtype)
    assert isinstance(impl.batch_norm(x, None, None, w, b, True), np.ndarray)
    grads = impl.batch_norm_backward(g, x, w, mean, invstd, has_bias=b is not None)
    check_backward(grads, (tx, tw, tb), ty, g, dtype)


# ---------------------------------------------------------------- instance norm

@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(4, 3, 7), (3, 4, 5, 6), (2, 2, 3, 4, 2)])
def test_instance_norm_input_stats(impl, dtype, shape):
    c = shape[1]
    w, b = affine(c, dtype)
    rm, rv = np.zeros(c, dtype), np.ones(c, dtype)
    trm, trv = t(rm), t(rv)
    for step in range(3):
        x, g = data(shape, dtype, 30 + step), data(shape, dtype, 40 + step, 0.0)
        y, mean, invstd = impl.instance_norm(x, rm, rv, w, b, momentum=0.3, return_stats=True)
        tx, tw, tb = t(x, True), t(w, True), t(b, True)
        ty = F.instance_norm(tx, trm, trv, tw, tb, True, 0.3)
        close(y, ty, dtype)
        close(rm, trm, dtype)
        close(rv, trv, dtype)
        assert mean.shape == invstd.shape == shape[:2]
        grads = impl.instance_norm_backward(g, x, w, mean, invstd)
        check_backward(grads, (tx, tw, tb), ty, g, dtype)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_instance_norm_running_stats(impl, dtype):
    shape = (3, 4, 5, 6)
    x, g = data(shape, dtype), data(shape, dtype, 5, 0.0)
    w, b = affine(4, dtype)
    rm, rv = data(4, dtype, 7), np.abs(data(4, dtype, 8, 2.0))
    y, mean, invstd = impl.instance_norm(x, rm, rv, w, b, use_input_stats=False,
                                         return_stats=True)
    tx, tw, tb = t(x, True), t(w, True), t(b, True)
    ty = F.instance_norm(tx, t(rm), t(rv), tw, tb, use_input_stats=False)
    close(y, ty, dtype)
    grads = impl.instance_norm_backward(g, x, w, mean, invstd, use_input_stats=False)
    check_backward(grads, (tx, tw, tb), ty, g, dtype)


# ---------------------------------------------------------------- group norm

@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,groups", [((5, 6), 3), ((4, 6, 7), 2), ((3, 8, 5, 6), 4),
                                          ((2, 6, 3, 4, 2), 6), ((2, 4, 9, 9), 1)])
@pytest.mark.parametrize("with_affine", [True, False])
def test_group_norm(impl, dtype, shape, groups, with_affine):
    x, g = data(shape, dtype), data(shape, dtype, 5, 0.0)
    w, b = affine(shape[1], dtype, with_affine, with_affine)
    y, mean, invstd = impl.group_norm(x, groups, w, b, 1e-3, return_stats=True)
    assert mean.shape == invstd.shape == (shape[0], groups)
    tx, tw, tb = t(x, True), t(w, with_affine), t(b, with_affine)
    ty = F.group_norm(tx, groups, tw, tb, 1e-3)
    close(y, ty, dtype)
    grads = impl.group_norm_backward(g, x, groups, w, mean, invstd)
    check_backward(grads, (tx, tw, tb), ty, g, dtype)


# ---------------------------------------------------------------- layer norm

@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,normalized", [((5, 7), 7), ((4, 3, 5), (3, 5)),
                                              ((3, 4, 5, 6), (4, 5, 6)), ((2, 3, 4, 5), [5]),
                                              ((6,), (6,)), ((3, 4, 2, 1), (2, 1))])
@pytest.mark.parametrize("with_affine", [True, False])
def test_layer_norm(impl, dtype, shape, normalized, with_affine):
    x, g = data(shape, dtype), data(shape, dtype, 5, 0.0)
    nshape = (normalized,) if np.isscalar(normalized) else tuple(normalized)
    w, b = affine(nshape, dtype, with_affine, with_affine)
    y, mean, invstd = impl.layer_norm(x, normalized, w, b, return_stats=True)
    assert mean.shape == invstd.shape == shape[:len(shape) - len(nshape)]
    tx, tw, tb = t(x, True), t(w, with_affine), t(b, with_affine)
    ty = F.layer_norm(tx, nshape, tw, tb)
    close(y, ty, dtype)
    grads = impl.layer_norm_backward(g, x, normalized, w, mean, invstd)
    check_backward(grads, (tx, tw, tb), ty, g, dtype)


# ---------------------------------------------------------------- eps, has_bias, dtypes

def run_all(impl, x, eps):
    """Each norm's y from impl and from torch, with weight and bias.

    torch refuses eps = 0 for batch norm in training (we allow it), so torch gets 1e-30
    there: the same numbers unless a slice is constant.
    """
    c = x.shape[1]
    w, b = affine(c, x.dtype.type)
    lw, lb = affine(x.shape[1:], x.dtype.type)
    tx, tw, tb, tlw, tlb = map(t, (x, w, b, lw, lb))
    return [
        (impl.batch_norm(x, None, None, w, b, True, eps=eps),
         F.batch_norm(tx, None, None, tw, tb, True, eps=eps or 1e-30)),
        (impl.instance_norm(x, weight=w, bias=b, eps=eps),
         F.instance_norm(tx, weight=tw, bias=tb, eps=eps)),
        (impl.group_norm(x, 2, w, b, eps), F.group_norm(tx, 2, tw, tb, eps)),
        (impl.layer_norm(x, x.shape[1:], lw, lb, eps), F.layer_norm(tx, x.shape[1:], tlw, tlb,
                                                                    eps=eps)),
    ]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("eps", [0.0, 1e-12, 1e-5, 0.1, 10.0])
def test_eps_values(impl, dtype, eps):
    x = data((3, 4, 5, 5), dtype)
    for ours, theirs in run_all(impl, x, eps):
        close(ours, theirs, dtype)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_eps_zero_constant_slice_like_torch(impl, dtype):
    """torch: nan from group/layer norm; invstd = 0 (y = bias) in its batch-norm kernels."""
    check_eps_zero_constant_slice(impl, np.full((2, 4, 3, 3), 1.5, dtype), dtype)


def check_eps_zero_constant_slice(impl, x, dtype):
    """eps = 0 on a constant x: batch and instance norm give y = bias (invstd = 0) and a
    zero input gradient; group and layer norm give nan, as torch does."""
    (batch, _), (instance, tinstance), (group, tgroup), (layer, tlayer) = run_all(impl, x, 0.0)
    _, bias = affine(4, dtype)
    close(instance, tinstance, dtype)
    np.testing.assert_array_equal(instance, np.broadcast_to(bias[:, None, None], x.shape))
    # torch refuses eps = 0 for batch norm in training; ours follows its instance norm
    np.testing.assert_array_equal(batch, instance)
    assert np.isnan(group).all() and torch.isnan(tgroup).all()
    assert np.isnan(layer).all() and torch.isnan(tlayer).all()
    y, mean, invstd = impl.instance_norm(x, eps=0.0, return_stats=True)
    np.testing.assert_array_equal(invstd, 0.0)
    grads = impl.instance_norm_backward(np.ones_like(x), x, None, mean, invstd)
    np.testing.assert_array_equal(grads[0], 0.0)


@pytest.mark.parametrize("impl", IMPLS)
def test_has_bias_overrides_weight(impl):
    x, g = data((3, 4, 5), np.float64), data((3, 4, 5), np.float64, 5)
    y, mean, invstd = impl.group_norm(x, 2, return_stats=True)
    gx, gw, gb = impl.group_norm_backward(g, x, 2, None, mean, invstd, has_bias=True)
    assert gw is None
    np.testing.assert_allclose(gb, g.sum(axis=(0, 2)))
    w, _ = affine(4, np.float64)
    assert impl.group_norm_backward(g, x, 2, w, mean, invstd, has_bias=False)[2] is None


@pytest.mark.parametrize("offset,scale", [(3.0, 1e-3), (1e4, 1.0)])
def test_large_mean_float32_keeps_precision(offset, scale):
    """Two-pass float64 statistics, and the mean applied as two float32 parts: values a
    mean of 3e3 or 1e4 standard deviations away normalize to float32 precision, against
    float64 of the same values (with the mean rounded to float32 alone, ours were off by
    up to half an ulp of the mean times the inverse standard deviation)."""
    x = data((8, 3, 16, 16), np.float32, offset=offset, scale=scale)
    x64 = t(x.astype(np.float64))
    for ours, theirs in [
            (norm.batch_norm(x, training=True), F.batch_norm(x64, None, None, training=True)),
            (norm.group_norm(x, 3), F.group_norm(x64, 3)),
            (norm.layer_norm(x, (16, 16)), F.layer_norm(x64, (16, 16)))]:
        ref = theirs.numpy()
        assert np.abs(ours - ref).max() <= 2e-6 * np.abs(ref).max()


def test_inputs_untouched_and_public_names():
    x = data((3, 4, 5), np.float32)
    copy = x.copy()
    norm.batch_norm(x, training=True)
    norm.layer_norm(x, (4, 5))
    np.testing.assert_array_equal(x, copy)
    assert kernels.batch_norm is norm.batch_norm
    assert kernels.group_norm_backward is norm.group_norm_backward


def test_noncontiguous_input():
    x = data((4, 6, 5), np.float64)[:, ::2]
    y = norm.batch_norm(x, training=True)
    np.testing.assert_allclose(y, reference.batch_norm(x, training=True), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- hypothesis

@st.composite
def problems(draw):
    n = draw(st.integers(1, 4))
    groups = draw(st.integers(1, 3))
    c = groups * draw(st.integers(1, 3))
    spatial = tuple(draw(st.lists(st.integers(1, 5), min_size=0, max_size=2)))
    shape = (n, c) + spatial
    dtype = draw(st.sampled_from(DTYPES))
    eps = draw(st.sampled_from([1e-5, 1e-2, 1.0]))
    seed = draw(st.integers(0, 2**16))
    return shape, groups, dtype, eps, seed


def conditioning(x, invstd, dtype) -> float:
    """How much float32 rounding of x can grow: |x| * invstd (1 for float64)."""
    if dtype == np.float64:
        return 1.0
    return max(1.0, float(np.abs(x).max() * np.max(invstd)) / 8)


def _check_norm(impl_call, torch_call, x, params, g, dtype):
    """impl_call() -> (y, backward, invstd); torch_call(tx, *tparams) -> ty.

    torch runs in float64 (the exact answer); for float32 the tolerance grows with the
    conditioning |x| * invstd, which magnifies the rounding of x (torch's own float32
    result is no closer than ours there).
    """
    y, backward, invstd = impl_call()
    tx = t(x.astype(np.float64), True)
    tparams = tuple(t(p.astype(np.float64), True) for p in params)
    ty = torch_call(tx, *tparams)
    kappa = conditioning(x, invstd, dtype)
    np.testing.assert_allclose(y, ty.detach().numpy(), **tol(dtype, 1.0, kappa))
    grads = torch.autograd.grad(ty, (tx,) + tparams, torch.tensor(g.astype(np.float64)))
    for mine, theirs in zip(backward(), grads):
        assert mine.dtype == dtype
        np.testing.assert_allclose(mine, theirs.numpy(), **tol(dtype, np.sqrt(g.size), kappa))


@settings(max_examples=int(os.environ.get('NORM_EXAMPLES', 40)), deadline=None)
@given(problems())
def test_hypothesis_all_norms_match_torch_and_reference(problem):
    shape, groups, dtype, eps, seed = problem
    x, g = data(shape, dtype, seed), data(shape, dtype, seed + 1, 0.0)
    c, s = shape[1], int(np.prod(shape[2:]))
    w, b = affine(c, dtype, seed=seed + 2)

    def batch(impl):
        y, m, i = impl.batch_norm(x, None, None, w, b, True, eps=eps, return_stats=True)
        return y, lambda: impl.batch_norm_backward(g, x, w, m, i), i

    def group(impl):
        y, m, i = impl.group_norm(x, groups, w, b, eps, return_stats=True)
        return y, lambda: impl.group_norm_backward(g, x, groups, w, m, i), i

    def instance(impl):
        y, m, i = impl.instance_norm(x, None, None, w, b, eps=eps, return_stats=True)
        return y, lambda: impl.instance_norm_backward(g, x, w, m, i), i

    lshape = shape[1:]
    lw, lb = affine(lshape, dtype, seed=seed + 3)

    def layer(impl):
        y, m, i = impl.layer_norm(x, lshape, lw, lb, eps, return_stats=True)
        return y, lambda: impl.layer_norm_backward(g, x, lshape, lw, m, i), i

    runs = [(layer, lambda tx, tw, tb: F.layer_norm(tx, lshape, tw, tb, eps), (lw, lb))]
    if x.size // groups > 1:  # torch (and we) refuse a single value per group
        runs.append((group, lambda tx, tw, tb: F.group_norm(tx, groups, tw, tb, eps), (w, b)))
    if shape[0] * s > 1:
        runs.append((batch, lambda tx, tw, tb: F.batch_norm(tx, None, None, tw, tb, True,
                                                            eps=eps), (w, b)))
    if s > 1:
        runs.append((instance, lambda tx, tw, tb: F.instance_norm(tx, weight=tw, bias=tb,
                                                                  eps=eps), (w, b)))
    for ours, torch_call, params in runs:
        _check_norm(lambda ours=ours: ours(norm), torch_call, x, params, g, dtype)
        # the kernels against the living definition
        y, backward, invstd = ours(norm)
        y_ref, backward_ref, _ = ours(reference)
        kappa = conditioning(x, invstd, dtype)
        np.testing.assert_allclose(y, y_ref, **tol(dtype, 1.0, kappa))
        for mine, ref in zip(backward(), backward_ref()):
            np.testing.assert_allclose(mine, ref, **tol(dtype, np.sqrt(x.size), kappa))


# ---------------------------------------------------------------- validation

X = np.ones((2, 3, 4), np.float32)


@pytest.mark.parametrize("call,error,match", [
    (lambda: norm.batch_norm(np.ones(3, np.float32), training=True), ValueError, "x"),
    (lambda: norm.batch_norm(X.tolist(), training=True), TypeError, "x"),
    (lambda: norm.batch_norm(X.astype(np.int32), training=True), TypeError, "x"),
    (lambda: norm.batch_norm(X, weight=np.ones(4, np.float32), training=True), ValueError,
     "weight"),
    (lambda: norm.batch_norm(X, bias=np.ones(3), training=True), TypeError, "bias"),
    (lambda: norm.batch_norm(X), ValueError, "running_mean"),
    (lambda: norm.batch_norm(X, np.zeros(3, np.float32), np.ones(3), training=True),
     TypeError, "running_var"),
    (lambda: norm.batch_norm(X, np.zeros(4, np.float32), np.ones(4, np.float32),
                             training=True), ValueError, "running_mean"),
    (lambda: norm.batch_norm(X, np.zeros(6, np.float32)[::2], np.ones(3, np.float32),
                             training=True), ValueError, "running_mean"),
    (lambda: norm.batch_norm(np.ones((1, 3), np.float32), training=True), ValueError, "x"),
    (lambda: norm.batch_norm(X, training=True, eps=-1.0), ValueError, "eps"),
    (lambda: norm.batch_norm(X, training=True, momentum=float("nan")), ValueError, "momentum"),
    (lambda: norm.batch_norm_backward(np.ones((2, 3), np.float32), X, None,
                                      np.zeros(3, np.float32), np.ones(3, np.float32)),
     ValueError, "grad_out"),
    (lambda: norm.batch_norm_backward(X, X, None, np.zeros(2, np.float32),
                                      np.ones(3, np.float32)), ValueError, "mean"),
    (lambda: norm.batch_norm_backward(X, X, None, np.zeros(3, np.float32), np.ones(3)),
     TypeError, "invstd"),
    (lambda: norm.instance_norm(np.ones((2, 3), np.float32)), ValueError, "x"),
    (lambda: norm.instance_norm(np.ones((2, 3, 1), np.float32)), ValueError, "x"),
    (lambda: norm.instance_norm_backward(X, X, None, np.zeros(3, np.float32),
                                         np.ones(3, np.float32)), ValueError, "mean"),
    (lambda: norm.group_norm(X, 2), ValueError, "num_groups"),
    (lambda: norm.group_norm(X, 0), ValueError, "num_groups"),
    (lambda: norm.group_norm(X, 1.0), TypeError, "num_groups"),
    (lambda: norm.group_norm(np.ones((1, 3), np.float32), 3), ValueError, "x"),
    (lambda: norm.group_norm_backward(X, X, 3, None, np.zeros((2, 1), np.float32),
                                      np.ones((2, 3), np.float32)), ValueError, "mean"),
    (lambda: norm.layer_norm(X, (3,)), ValueError, "normalized_shape"),
    (lambda: norm.layer_norm(X, (2, 3, 4, 5)), ValueError, "normalized_shape"),
    (lambda: norm.layer_norm(X, ()), TypeError, "normalized_shape"),
    (lambda: norm.layer_norm(X, 4, weight=np.ones(3, np.float32)), ValueError, "weight"),
    (lambda: norm.layer_norm_backward(X, X, 4, None, np.zeros(2, np.float32),
                                      np.ones((2, 3), np.float32)), ValueError, "mean"),
])
def test_validation_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_readonly_running_stats_rejected_only_when_written():
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    rm.flags.writeable = False
    with pytest.raises(ValueError, match="running_mean"):
        norm.batch_norm(X, rm, rv, training=True)
    norm.batch_norm(X, rm, rv)  # eval reads them only


# ---------------------------------------------------------------- every backend
# Small shapes: in the tests the CUDA kernels run in Numba's simulator, a thread at a time.

class OnBackend:
    """:mod:`kernels.norm` with its array arguments moved to ``backend`` and its results
    brought back (results must come back as the backend's arrays)."""

    def __init__(self, backend: str):
        self.backend = backend

    def __getattr__(self, name):
        fn = getattr(norm, name)

        def call(*args, **kwargs):
            args = [self.move(a) for a in args]
            kwargs = {k: self.move(v) for k, v in kwargs.items()}
            out = fn(*args, **kwargs)
            for a in out if isinstance(out, tuple) else (out,):
                assert a is None or isinstance(a, np.ndarray) == (self.backend == "cpu")
            return to_host(out)

        return call

    def move(self, a):
        if isinstance(a, np.ndarray) and a.ndim == 0:  # to_backend makes a 0-d array 1-d
            return to_backend(a.reshape(1), self.backend).reshape(())
        return to_backend(a, self.backend)


def same(ours, cpu, dtype, scale=1.0):
    """Backend results against the CPU path's, element-wise (None matches None)."""
    for mine, theirs in zip(ours, cpu):
        assert (mine is None) == (theirs is None)
        if mine is not None:
            assert mine.dtype == dtype and mine.shape == theirs.shape
            np.testing.assert_allclose(mine, theirs, **tol(dtype, scale))


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_on_backend_updates_running_stats_in_place(backend, dtype):
    shape, c = (2, 3, 2, 3), 3
    w, b = affine(c, dtype)
    rm, rv = data(c, dtype, 7, 0.0, 1.0), np.abs(data(c, dtype, 8, 1.0, 0.5))
    trm, trv = t(rm), t(rv)
    crm, crv = rm.copy(), rv.copy()  # the CPU path's
    drm, drv = to_backend(rm, backend), to_backend(rv, backend)
    dw, db = to_backend(w, backend), to_backend(b, backend)
    for step in range(2):
        x, g = data(shape, dtype, 10 + step), data(shape, dtype, 20 + step, 0.0)
        dx, dg = to_backend(x, backend), to_backend(g, backend)
        out = norm.batch_norm(dx, drm, drv, dw, db, True, 0.2, 1e-4, return_stats=True)
        grads = norm.batch_norm_backward(dg, dx, dw, out[1], out[2])
        tx, tw, tb = t(x, True), t(w, True), t(b, True)
        ty = F.batch_norm(tx, trm, trv, tw, tb, True, 0.2, 1e-4)
        close(to_host(out[0]), ty, dtype)
        close(to_host(drm), trm, dtype)  # updated in place, on the device
        close(to_host(drv), trv, dtype)
        check_backward(to_host(grads), (tx, tw, tb), ty, g, dtype)
        cpu = norm.batch_norm(x, crm, crv, w, b, True, 0.2, 1e-4, return_stats=True)
        same(to_host(out), cpu, dtype)
        same(to_host((drm, drv)), (crm, crv), dtype)
        same(to_host(grads), norm.batch_norm_backward(g, x, w, *cpu[1:]), dtype, np.sqrt(g.size))
    # eval with the device's running statistics, no bias: constants in the backward
    y, mean, invstd = norm.batch_norm(dx, drm, drv, dw, None, return_stats=True)
    tx, tw = t(x, True), t(w, True)
    ty = F.batch_norm(tx, trm, trv, tw, None, False)
    close(to_host(y), ty, dtype)
    close(to_host(mean), trm, dtype)
    grads = norm.batch_norm_backward(dg, dx, dw, mean, invstd, training=False, has_bias=False)
    check_backward(to_host(grads), (tx, tw, None), ty, g, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_instance_norm_on_backend(backend, dtype):
    shape, c = (2, 3, 2, 3), 3
    x, g = data(shape, dtype, 30), data(shape, dtype, 40, 0.0)
    w, b = affine(c, dtype)
    rm, rv = np.zeros(c, dtype), np.ones(c, dtype)
    trm, trv = t(rm), t(rv)
    drm, drv = to_backend(rm, backend), to_backend(rv, backend)
    dx, dg, dw, db = (to_backend(a, backend) for a in (x, g, w, b))
    y, mean, invstd = norm.instance_norm(dx, drm, drv, dw, db, momentum=0.3,
                                         return_stats=True)
    tx, tw, tb = t(x, True), t(w, True), t(b, True)
    ty = F.instance_norm(tx, trm, trv, tw, tb, True, 0.3)
    close(to_host(y), ty, dtype)
    close(to_host(drm), trm, dtype)
    close(to_host(drv), trv, dtype)
    assert mean.shape == invstd.shape == shape[:2]
    check_backward(to_host(norm.instance_norm_backward(dg, dx, dw, mean, invstd)),
                   (tx, tw, tb), ty, g, dtype)
    # with the running statistics (batch norm in eval)
    tx = t(x, True)
    ty = F.instance_norm(tx, trm, trv, None, None, use_input_stats=False)
    y, mean, invstd = norm.instance_norm(dx, drm, drv, use_input_stats=False,
                                         return_stats=True)
    close(to_host(y), ty, dtype)
    grads = norm.instance_norm_backward(dg, dx, None, mean, invstd, use_input_stats=False)
    check_backward(to_host(grads), (tx, None, None), ty, g, dtype)


@pytest.mark.parametrize("dtype,with_affine", [(np.float32, True), (np.float64, False)])
def test_group_and_layer_norm_on_backend(backend, dtype, with_affine):
    impl = OnBackend(backend)
    x, g = data((2, 4, 2, 3), dtype), data((2, 4, 2, 3), dtype, 5, 0.0)
    w, b = affine(4, dtype, with_affine, with_affine)
    out = impl.group_norm(x, 2, w, b, 1e-3, return_stats=True)
    tx, tw, tb = t(x, True), t(w, with_affine), t(b, with_affine)
    ty = F.group_norm(tx, 2, tw, tb, 1e-3)
    close(out[0], ty, dtype)
    grads = impl.group_norm_backward(g, x, 2, w, *out[1:])
    check_backward(grads, (tx, tw, tb), ty, g, dtype)
    same(out, norm.group_norm(x, 2, w, b, 1e-3, return_stats=True), dtype)
    same(grads, norm.group_norm_backward(g, x, 2, w, *out[1:]), dtype, np.sqrt(g.size))
    for shape, normalized in (((2, 3, 4), (3, 4)), ((5,), 5)):
        x, g = data(shape, dtype), data(shape, dtype, 5, 0.0)
        nshape = (normalized,) if np.isscalar(normalized) else normalized
        w, b = affine(nshape, dtype, with_affine, with_affine)
        out = impl.layer_norm(x, normalized, w, b, return_stats=True)
        assert out[1].shape == out[2].shape == shape[:len(shape) - len(nshape)]
        tx, tw, tb = t(x, True), t(w, with_affine), t(b, with_affine)
        ty = F.layer_norm(tx, nshape, tw, tb)
        close(out[0], ty, dtype)
        grads = impl.layer_norm_backward(g, x, normalized, w, *out[1:])
        check_backward(grads, (tx, tw, tb), ty, g, dtype)
        same(grads, norm.layer_norm_backward(g, x, normalized, w, *out[1:]), dtype,
             np.sqrt(g.size))


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the simulator's 0 * inf
@pytest.mark.parametrize("dtype", DTYPES)
def test_eps_zero_constant_slice_on_backend(backend, dtype):
    """eps = 0 with a constant slice: y = bias from batch/instance norm (invstd = 0), nan
    from group/layer norm, as torch."""
    check_eps_zero_constant_slice(OnBackend(backend), np.full((2, 4, 2, 2), 1.5, dtype), dtype)


@pytest.mark.parametrize("offset,scale", [(3.0, 1e-3), (1e4, 1.0)])
def test_large_mean_float32_on_backend(backend, offset, scale):
    """float64 two-pass statistics and the mean applied as two float32 parts on every
    backend: a mean 3e3 or 1e4 standard deviations away normalizes to float32 precision
    (a float32 or one-pass variance would lose every digit, a mean rounded once to float32
    half an ulp of it)."""
    x = data((2, 3, 4, 4), np.float32, offset=offset, scale=scale)
    x64 = t(x.astype(np.float64))
    xb = to_backend(x, backend)
    y, mean, invstd = to_host(norm.batch_norm(xb, training=True, return_stats=True))
    np.testing.assert_allclose(invstd, 1 / np.sqrt(x64.numpy().var(axis=(0, 2, 3)) + 1e-5),
                               rtol=1e-6)
    for ours, theirs in [
            (y, F.batch_norm(x64, None, None, training=True)),
            (to_host(norm.group_norm(xb, 3)), F.group_norm(x64, 3)),
            (to_host(norm.layer_norm(xb, (4, 4))), F.layer_norm(x64, (4, 4)))]:
        ref = theirs.numpy()
        assert np.abs(ours - ref).max() <= 2e-6 * np.abs(ref).max()


def test_has_bias_on_backend(backend):
    impl = OnBackend(backend)
    x, g = data((2, 4, 3), np.float64), data((2, 4, 3), np.float64, 5)
    y, mean, invstd = impl.group_norm(x, 2, return_stats=True)
    gx, gw, gb = impl.group_norm_backward(g, x, 2, None, mean, invstd, has_bias=True)
    assert gw is None
    np.testing.assert_allclose(gb, g.sum(axis=(0, 2)), rtol=1e-12)
    w, _ = affine(4, np.float64)
    assert impl.group_norm_backward(g, x, 2, w, mean, invstd, has_bias=False)[2] is None


def _dev(a):
    return to_backend(np.asarray(a), "cuda")


XD = np.ones((2, 3, 4), np.float32)


@pytest.mark.skipif(not cuda_available(), reason="no CUDA backend")
@pytest.mark.parametrize("call,error,match", [
    (lambda: norm.batch_norm(_dev(np.ones(3, np.float32)), training=True), ValueError, "x"),
    (lambda: norm.batch_norm(_dev(XD.astype(np.int32)), training=True), TypeError, "x"),
    (lambda: norm.batch_norm(_dev(XD), weight=np.ones(3, np.float32), training=True),
     TypeError, "weight is a NumPy .host. array"),
    (lambda: norm.batch_norm(XD, weight=_dev(np.ones(3, np.float32)), training=True),
     TypeError, "x is a NumPy .host. array"),
    (lambda: norm.batch_norm(_dev(XD), weight=_dev(np.ones(4, np.float32)), training=True),
     ValueError, "weight"),
    (lambda: norm.batch_norm(_dev(XD), bias=_dev(np.ones(3)), training=True), TypeError,
     "bias"),
    (lambda: norm.batch_norm(_dev(XD)), ValueError, "running_mean"),
    (lambda: norm.batch_norm(_dev(XD), _dev(np.zeros(3, np.float32)), _dev(np.ones(3)),
                             training=True), TypeError, "running_var is float64 but x"),
    (lambda: norm.batch_norm(_dev(XD), _dev(np.zeros(4, np.float32)),
                             _dev(np.ones(4, np.float32)), training=True), ValueError,
     "running_mean must have shape"),
    (lambda: norm.batch_norm(_dev(XD), training=True, eps=-1.0), ValueError, "eps"),
    (lambda: norm.batch_norm(_dev(XD), training=True, momentum=float("nan")), ValueError,
     "momentum"),
    (lambda: norm.batch_norm_backward(_dev(np.ones((2, 3), np.float32)), _dev(XD), None,
                                      _dev(np.zeros(3, np.float32)),
                                      _dev(np.ones(3, np.float32))), ValueError, "grad_out"),
    (lambda: norm.batch_norm_backward(_dev(XD), _dev(XD), None, _dev(np.zeros(2, np.float32)),
                                      _dev(np.ones(3, np.float32))), ValueError, "mean"),
    (lambda: norm.instance_norm(_dev(np.ones((2, 3, 1), np.float32))), ValueError, "x"),
    (lambda: norm.group_norm(_dev(XD), 2), ValueError, "num_groups"),
    (lambda: norm.group_norm_backward(_dev(XD), _dev(XD), 3, None,
                                      _dev(np.zeros((2, 1), np.float32)),
                                      _dev(np.ones((2, 3), np.float32))), ValueError, "mean"),
    (lambda: norm.layer_norm(_dev(XD), (3,)), ValueError, "normalized_shape"),
    (lambda: norm.layer_norm_backward(_dev(XD), _dev(XD), 4, None,
                                      _dev(np.zeros(2, np.float32)),
                                      _dev(np.ones((2, 3), np.float32))), ValueError, "mean"),
])
def test_validation_on_device(call, error, match):
    """Device arrays are checked before any launch, naming the argument; a host array
    among device ones is refused."""
    with pytest.raises(error, match=match):
        call()
