"""``kernels.correlate1d`` / ``correlate2d`` against scipy.signal, torch and the NumPy reference."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.signal
import torch
from backends import cuda_available, to_backend, to_host
from hypothesis import given, settings
from hypothesis import strategies as st

import kernels
from kernels.cpu import correlate as cpu
from kernels.reference import correlate as ref

MODES = ("full", "valid", "same")
DTYPES = (np.float32, np.float64)
FAST = settings(max_examples=60, deadline=None)


def tolerance(a: np.ndarray, v: np.ndarray) -> dict:
    """A bound on the rounding of ``v.size`` products summed in ``a``'s dtype."""
    eps = np.finfo(a.dtype).eps
    scale = float(np.abs(a).max() * np.abs(v).max()) * v.size
    return {"rtol": 0.0, "atol": 4 * eps * scale + 1e-300}


def check(ours: np.ndarray, expected: np.ndarray, a: np.ndarray, v: np.ndarray) -> None:
    assert ours.dtype == a.dtype
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, **tolerance(a, v))


def scipy64(fn, a, v, mode):
    """scipy's answer in float64, the yardstick for both dtypes."""
    return fn(a.astype(np.float64), v.astype(np.float64), mode)


def torch_full2d(a: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Full correlation through torch: conv2d is a correlation; pad by the kernel size - 1."""
    m2, n2 = v.shape
    x = torch.from_numpy(a.astype(np.float64))[None, None]
    w = torch.from_numpy(v.astype(np.float64))[None, None]
    return torch.nn.functional.conv2d(x, w, padding=(m2 - 1, n2 - 1))[0, 0].numpy()


# ---- every small shape, every mode, both dtypes --------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_correlate2d_matches_scipy_on_every_small_shape(dtype):
    rng = np.random.default_rng(0)
    for m1, n1, m2, n2 in itertools.product(range(1, 5), repeat=4):
        a = rng.standard_normal((m1, n1)).astype(dtype)
        v = rng.standard_normal((m2, n2)).astype(dtype)
        for mode in MODES:
            try:
                expected = scipy64(scipy.signal.correlate2d, a, v, mode)
            except ValueError:  # 'valid' with neither input the larger along both axes
                with pytest.raises(ValueError, match="valid"):
                    kernels.correlate2d(a, v, mode)
                continue
            check(kernels.correlate2d(a, v, mode), expected, a, v)


@pytest.mark.parametrize("dtype", DTYPES)
def test_correlate1d_matches_scipy_on_every_small_shape(dtype):
    rng = np.random.default_rng(1)
    for n1, n2 in itertools.product(range(1, 10), repeat=2):
        a = rng.standard_normal(n1).astype(dtype)
        v = rng.standard_normal(n2).astype(dtype)
        for mode in MODES:
            for method in ("direct", "fft"):
                expected = scipy.signal.correlate(a.astype(np.float64), v.astype(np.float64),
                                                  mode, method=method)
                check(kernels.correlate1d(a, v, mode), expected, a, v)


def test_same_mode_centres_differ_between_1d_and_2d_for_even_kernels():
    # scipy.signal.correlate starts 'same' at (n2 - 1) // 2, correlate2d at n2 // 2.
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    v = np.array([1.0, 10.0])
    one = kernels.correlate1d(a, v, "same")
    two = kernels.correlate2d(a[None], v[None], "same")[0]
    np.testing.assert_array_equal(one, scipy.signal.correlate(a, v, "same"))
    np.testing.assert_array_equal(two, scipy.signal.correlate2d(a[None], v[None], "same")[0])
    # full: [10, 21, 32, 43, 54, 5]
    np.testing.assert_array_equal(one, [10.0, 21.0, 32.0, 43.0, 54.0])
    np.testing.assert_array_equal(two, [21.0, 32.0, 43.0, 54.0, 5.0])
    # odd kernels agree
    w = np.array([1.0, 10.0, 100.0])
    np.testing.assert_array_equal(kernels.correlate1d(a, w, "same"),
                                  kernels.correlate2d(a[None], w[None], "same")[0])


# ---- bigger and random shapes ---------------------------------------------------------------

@FAST
@given(m1=st.integers(1, 24), n1=st.integers(1, 40), m2=st.integers(1, 9),
       n2=st.integers(1, 9), mode=st.sampled_from(MODES), dtype=st.sampled_from(DTYPES),
       swap=st.booleans(), seed=st.integers(0, 2**16))
def test_correlate2d_random_shapes(m1, n1, m2, n2, mode, dtype, swap, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m1, n1)).astype(dtype)
    v = rng.standard_normal((m2, n2)).astype(dtype)
    if swap:  # the larger array second: exercises scipy's swap and our flipped path
        a, v = v, a
    try:
        expected = scipy64(scipy.signal.correlate2d, a, v, mode)
    except ValueError:
        with pytest.raises(ValueError, match="valid"):
            kernels.correlate2d(a, v, mode)
        return
    check(kernels.correlate2d(a, v, mode), expected, a, v)


@FAST
@given(n1=st.integers(1, 300), n2=st.integers(1, 300), mode=st.sampled_from(MODES),
       dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**16))
def test_correlate1d_random_lengths(n1, n2, mode, dtype, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(n1).astype(dtype)
    v = rng.standard_normal(n2).astype(dtype)
    check(kernels.correlate1d(a, v, mode), scipy64(scipy.signal.correlate, a, v, mode), a, v)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_long_signal_spans_several_parallel_tiles(dtype, mode):
    rng = np.random.default_rng(2)
    a = rng.standard_normal(3 * cpu.TILE + 17).astype(dtype)
    v = rng.standard_normal(401).astype(dtype)  # enough work for the parallel build
    assert a.size * v.size >= cpu.PARALLEL_MIN_WORK
    check(kernels.correlate1d(a, v, mode), scipy64(scipy.signal.correlate, a, v, mode), a, v)
    # and with the roles swapped (the kernel longer than the signal)
    check(kernels.correlate1d(v, a, mode), scipy64(scipy.signal.correlate, v, a, mode), v, a)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("k", [(3, 3), (15, 15), (4, 6)])
def test_image_sized_correlate2d(dtype, mode, k):
    rng = np.random.default_rng(3)
    a = rng.standard_normal((70, 130)).astype(dtype)
    v = rng.standard_normal(k).astype(dtype)
    check(kernels.correlate2d(a, v, mode), scipy64(scipy.signal.correlate2d, a, v, mode), a, v)


@pytest.mark.parametrize("dtype", DTYPES)
def test_parallel_and_serial_builds_agree_exactly(dtype):
    rng = np.random.default_rng(8)
    a = rng.standard_normal((300, 301)).astype(dtype)
    v = rng.standard_normal((9, 8)).astype(dtype)
    (r0, h), (c0, w) = ref.window2d("same", a.shape, v.shape)
    assert h * w * v.size >= cpu.PARALLEL_MIN_WORK  # kernels.correlate2d takes the parallel one
    par, ser = np.empty((h, w), dtype), np.empty((h, w), dtype)
    cpu.correlate2d_window(a, v, r0, c0, par)
    cpu.correlate2d_window_serial(a, v, r0, c0, ser)
    np.testing.assert_array_equal(par, ser)  # same order of additions: bit for bit
    check(kernels.correlate2d(a, v, "same"), scipy64(scipy.signal.correlate2d, a, v, "same"),
          a, v)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("k", [(3, 3), (15, 15), (1, 7), (7, 1), (2, 5)])
def test_builds_agree_with_scipy_on_benchmark_kernels(dtype, mode, k):
    # Passes of 3 taps, then 1 or 2 single taps (kernel widths 3, 15, 7, 1, 5), rows of
    # the ring outside the image (full, same), and more rows than ROW_BLOCKS.
    rng = np.random.default_rng(11)
    a = rng.standard_normal((3 * cpu.ROW_BLOCKS + 5, 61)).astype(dtype)
    v = rng.standard_normal(k).astype(dtype)
    (r0, h), (c0, w) = ref.window2d(mode, a.shape, v.shape)
    expected = scipy64(scipy.signal.correlate2d, a, v, mode)
    par, ser = np.empty((h, w), dtype), np.empty((h, w), dtype)
    cpu.correlate2d_window(a, v, r0, c0, par)
    cpu.correlate2d_window_serial(a, v, r0, c0, ser)
    np.testing.assert_array_equal(par, ser)
    check(par, expected, a, v)
    check(kernels.correlate2d(a, v, mode), expected, a, v)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_wide_image_spans_several_column_tiles(dtype, mode):
    # Each tile's ring starts at its own column, with zeros only at the image's edges.
    rng = np.random.default_rng(12)
    a = rng.standard_normal((5, 2 * cpu.TILE + 7)).astype(dtype)
    v = rng.standard_normal((3, 4)).astype(dtype)
    check(kernels.correlate2d(a, v, mode), scipy64(scipy.signal.correlate2d, a, v, mode), a, v)
    check(kernels.correlate2d(a[:, ::-1], v, mode),
          scipy64(scipy.signal.correlate2d, a[:, ::-1], v, mode), a, v)


def test_float32_stays_float32_and_non_contiguous_inputs_work():
    rng = np.random.default_rng(4)
    big = rng.standard_normal((20, 30)).astype(np.float32)
    a, v = big[::2, ::3], big[:3, 1:8:2].T  # strided views
    out = kernels.correlate2d(a, v, "same")
    assert out.dtype == np.float32 and out.flags.c_contiguous
    check(out, scipy64(scipy.signal.correlate2d, a, v, "same"), a, v)
    out1 = kernels.correlate1d(big[0, ::-1], big[1, :5])
    check(out1, scipy64(scipy.signal.correlate, big[0, ::-1], big[1, :5], "full"),
          big[0], big[1, :5])


def test_matches_torch_conv2d():
    rng = np.random.default_rng(5)
    for dtype in DTYPES:
        a = rng.standard_normal((17, 23)).astype(dtype)
        v = rng.standard_normal((5, 4)).astype(dtype)
        check(kernels.correlate2d(a, v), torch_full2d(a, v), a, v)


def test_integer_valued_inputs_are_exact():
    a = np.arange(12.0).reshape(3, 4)
    v = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]])
    np.testing.assert_array_equal(kernels.correlate2d(a, v), scipy.signal.correlate2d(a, v))
    np.testing.assert_array_equal(kernels.correlate1d(np.array([3.0, 2.0, 1.0]),
                                                      np.array([4.0, 6.0, 3.0, 9.0])),
                                  [27.0, 27.0, 33.0, 27.0, 14.0, 4.0])


# ---- the reference (the living definition) and the kernel body as plain Python --------------

@pytest.mark.parametrize("mode", MODES)
def test_reference_matches_scipy_and_torch(mode):
    rng = np.random.default_rng(6)
    for shape1, shape2 in [((6, 9), (3, 4)), ((2, 3), (5, 7)), ((5, 5), (5, 5)), ((1, 8), (1, 2))]:
        a, v = rng.standard_normal(shape1), rng.standard_normal(shape2)
        np.testing.assert_allclose(ref.full2d(a, v), torch_full2d(a, v), rtol=0, atol=1e-12)
        np.testing.assert_allclose(ref.correlate2d(a, v, mode),
                                   scipy.signal.correlate2d(a, v, mode), rtol=0, atol=1e-12)
        np.testing.assert_allclose(ref.correlate1d(a[0], v[0], mode),
                                   scipy.signal.correlate(a[0], v[0], mode), rtol=0, atol=1e-12)


def test_kernel_body_runs_as_plain_python():
    # What NUMBA_DISABLE_JIT=1 would run: the same function, uncompiled.
    rng = np.random.default_rng(7)
    a, v = rng.standard_normal((5, 7)), rng.standard_normal((3, 2))
    (r0, h), (c0, w) = ref.window2d("same", a.shape, v.shape)
    out = np.empty((h, w))
    cpu._correlate2d_window(a, v, r0, c0, out)
    np.testing.assert_allclose(out, scipy.signal.correlate2d(a, v, "same"), rtol=0, atol=1e-12)


# ---- validation: errors name the argument, before any kernel runs -----------------------------

def test_errors_name_the_argument():
    x32 = np.ones(5, np.float32)
    x64 = np.ones(5)
    im = np.ones((4, 4))
    with pytest.raises(TypeError, match="^v is float64"):
        kernels.correlate1d(x32, x64)
    with pytest.raises(TypeError, match="^in2 is float32"):
        kernels.correlate2d(im, im.astype(np.float32))
    with pytest.raises(TypeError, match="^a must be float32 or float64"):
        kernels.correlate1d(np.arange(3), x64)
    with pytest.raises(TypeError, match="^in1 must be a NumPy array"):
        kernels.correlate2d([[1.0, 2.0]], im)
    with pytest.raises(ValueError, match="^a must have 1 dimensions"):
        kernels.correlate1d(im, x64)
    with pytest.raises(ValueError, match="^v must have 1 dimensions"):
        kernels.correlate1d(x64, im)
    with pytest.raises(ValueError, match="^in2 must have 2 dimensions"):
        kernels.correlate2d(im, x64)
    with pytest.raises(ValueError, match="^in1 has a zero-sized dimension"):
        kernels.correlate2d(np.ones((0, 3)), im)
    with pytest.raises(ValueError, match="^mode must be one of"):
        kernels.correlate1d(x64, x64, "circular")
    with pytest.raises(ValueError, match="^mode must be one of"):
        kernels.correlate2d(im, im, mode="Full")


def test_valid_mode_needs_one_input_larger_along_both_axes_as_scipy():
    a, v = np.ones((3, 5)), np.ones((4, 2))
    with pytest.raises(ValueError):
        scipy.signal.correlate2d(a, v, "valid")
    with pytest.raises(ValueError, match="mode 'valid'"):
        kernels.correlate2d(a, v, "valid")
    # equal along one axis is fine, in either order
    b = np.arange(12.0).reshape(3, 4)
    for x, y in [(b, np.ones((3, 2))), (np.ones((3, 2)), b)]:
        np.testing.assert_allclose(kernels.correlate2d(x, y, "valid"),
                                   scipy.signal.correlate2d(x, y, "valid"))


# ---- every backend (CUDA in Numba's simulator when there is no GPU): small cases ------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_correlate2d_backends_match_scipy_and_cpu(backend, dtype):
    # the second array larger along both axes, or along one only: the CUDA path then
    # correlates the other way round and stores the window reversed
    rng = np.random.default_rng(9)
    for shape1, shape2 in [((4, 7), (3, 2)), ((2, 3), (4, 5)), ((5, 5), (5, 1)), ((1, 6), (3, 3))]:
        a = rng.standard_normal(shape1).astype(dtype)
        v = rng.standard_normal(shape2).astype(dtype)
        for mode in MODES:
            if mode == "valid" and shape1 == (1, 6):
                continue  # neither input the larger along both axes: an error (tested above)
            got = to_host(kernels.correlate2d(to_backend(a, backend), to_backend(v, backend),
                                              mode))
            check(got, scipy64(scipy.signal.correlate2d, a, v, mode), a, v)
            np.testing.assert_allclose(got, kernels.correlate2d(a, v, mode), **tolerance(a, v))


@pytest.mark.parametrize("dtype", DTYPES)
def test_correlate1d_backends_match_scipy_and_cpu(backend, dtype):
    # 66 and 70 taps: more than one chunk of taps staged in the CUDA kernel's shared memory
    rng = np.random.default_rng(10)
    for n1, n2 in [(9, 4), (3, 8), (1, 1), (70, 66), (66, 70)]:
        a = rng.standard_normal(n1).astype(dtype)
        v = rng.standard_normal(n2).astype(dtype)
        for mode in MODES:
            got = to_host(kernels.correlate1d(to_backend(a, backend), to_backend(v, backend),
                                              mode))
            check(got, scipy64(scipy.signal.correlate, a, v, mode), a, v)
            np.testing.assert_allclose(got, kernels.correlate1d(a, v, mode), **tolerance(a, v))


@pytest.mark.skipif(not cuda_available(), reason="no CUDA backend")
def test_errors_on_device_arrays_name_the_argument():
    def dev(a):
        return to_backend(a, "cuda")

    x32, x64, im = np.ones(5, np.float32), np.ones(5), np.ones((4, 4))
    with pytest.raises(TypeError, match="^v is float64"):
        kernels.correlate1d(dev(x32), dev(x64))
    with pytest.raises(TypeError, match="^in2 is float32"):
        kernels.correlate2d(dev(im), dev(im.astype(np.float32)))
    with pytest.raises(TypeError, match="^a must be float32 or float64"):
        kernels.correlate1d(dev(np.arange(3)), dev(x64))
    with pytest.raises(ValueError, match="^a must have 1 dimensions"):
        kernels.correlate1d(dev(im), dev(x64))
    with pytest.raises(ValueError, match="^in2 must have 2 dimensions"):
        kernels.correlate2d(dev(im), dev(x64))
    with pytest.raises(ValueError, match="^mode must be one of"):
        kernels.correlate1d(dev(x64), dev(x64), "circular")
    with pytest.raises(ValueError, match="mode 'valid'"):
        kernels.correlate2d(dev(np.ones((3, 5))), dev(np.ones((4, 2))), "valid")
    # one array on the host, the other on the GPU
    with pytest.raises(TypeError, match="^v is a NumPy \\(host\\) array"):
        kernels.correlate1d(dev(x64), x64)
    with pytest.raises(TypeError, match="^in1 is a NumPy \\(host\\) array"):
        kernels.correlate2d(im, dev(im))
