"""The conv kernels' copies into their layouts (kernels.cpu._layout, and the transposes
and aligned buffers of kernels.cpu._simd and kernels.cpu._jit), against NumPy."""

import numpy as np
import pytest
from numba import njit

from kernels.cpu._jit import CACHE_LINE, U, empty_lines
from kernels.cpu._layout import tap_major_blocks
from kernels.cpu._simd import (
    P,
    load,
    store,
    store_columns,
    store_rows,
    transpose_rows,
    transpose_rows_plus,
)

needs_16_lanes = pytest.mark.skipif(P != 16, reason="transpose_rows is for 16 lanes (AVX-512)")


@njit
def _transpose_into(src, a, step, cols, rows, out):
    t = transpose_rows(src, U(a), U(step), cols, rows)
    for k in range(16):
        store(out, U(16 * k), t[k])


@njit
def _scatter(src, a, step, cols, rows, dst, at, k0):
    store_columns(dst, at, k0, transpose_rows(src, U(a), U(step), cols, rows))


@njit
def _as_rows(src, dst, start, step, n, rows):
    store_rows(dst, start, step, transpose_rows(src, U(0), U(16), 16, 16), n, rows)


@needs_16_lanes
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("a, step, cols, rows", [(0, 16, 16, 16), (3, 49, 16, 16),
                                                 (5, 17, 7, 16), (11, 30, 13, 5),
                                                 (0, 20, 1, 1), (2, 40, 16, 0)])
def test_transpose_rows_gives_the_columns(dtype, a, step, cols, rows):
    """Column j of the 16 rows src[a + k*step:][:cols] (zeros past cols and rows), for
    each j: the four rounds of shuffles put every element in its place."""
    src = np.random.default_rng(0).standard_normal(a + 16 * step + 16).astype(dtype)
    out = np.full(256, np.nan, dtype)
    _transpose_into(src, a, step, cols, rows, out)
    ref = np.zeros((16, 16), dtype)
    for k in range(rows):
        ref[k, :cols] = src[a + k * step:a + k * step + cols]
    np.testing.assert_array_equal(out.reshape(16, 16), ref.T)


@njit
def _transpose_plus_into(src, a, step, cols, rows, v, out):
    t = transpose_rows_plus(src, U(a), U(step), cols, rows, load(v, U(0)))
    for k in range(16):
        store(out, U(16 * k), t[k])


@needs_16_lanes
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transpose_rows_plus_adds_lane_p_to_column_p(dtype):
    """A bias per channel on the way out of channels as lanes: column p of the rows plus
    v[p], the padding past cols and rows included (it holds v, not zeros)."""
    src = np.random.default_rng(4).standard_normal(400).astype(dtype)
    v = np.arange(16, dtype=dtype) * 10
    out = np.full(256, np.nan, dtype)
    _transpose_plus_into(src, 3, 21, 11, 9, v, out)
    rows = np.zeros((16, 16), dtype)
    for k in range(9):
        rows[k, :11] = src[3 + 21 * k:3 + 21 * k + 11]
    np.testing.assert_array_equal(out.reshape(16, 16), (rows + v).T)


@needs_16_lanes
def test_store_columns_puts_each_column_where_the_table_says():
    src = np.arange(16 * 20, dtype=np.float32)
    at = np.random.default_rng(1).permutation(20)[:16].astype(np.int64) * 16
    table = np.r_[np.zeros(3, np.int64), at]  # read from k0 = 3
    dst = np.full(20 * 16, -1, np.float32)
    _scatter(src, 0, 20, 9, 16, dst, table, 3)
    want = np.full((20, 16), -1, np.float32)
    cols = np.zeros((16, 16), np.float32)
    cols[:9] = src.reshape(16, 20)[:, :9].T
    want[at // 16] = cols
    np.testing.assert_array_equal(dst.reshape(20, 16), want)


@needs_16_lanes
@pytest.mark.parametrize("n, rows", [(16, 16), (5, 16), (16, 3), (1, 1), (7, 0)])
def test_store_rows_writes_n_lanes_of_the_first_rows_only(n, rows):
    src = np.arange(256, dtype=np.float64)
    dst = np.full(30 * 16, -1.0)
    _as_rows(src, dst, 7, 29, n, rows)
    want = np.full(30 * 16, -1.0)
    for k in range(rows):
        want[7 + 29 * k:7 + 29 * k + n] = src.reshape(16, 16)[:n, k]
    np.testing.assert_array_equal(dst, want)


@njit
def _lines(n, like):
    a = empty_lines(n, like)
    return a.ctypes.data % CACHE_LINE, a.size


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_empty_lines_start_on_a_cache_line(dtype):
    """Inside a kernel NumPy's allocator starts some arrays half a line in."""
    like = np.zeros(1, dtype)
    for n in range(1, 300, 7):
        assert _lines(n, like) == (0, n)


def _tap_major_reference(w2, groups, cog, cogp, cb0, cb1, B):
    """Blocks cb0:cb1 of B rows, row blk*B + j = g*cogp + r holding w2[g*cog + r] (zeros
    for the padding rows r >= cog), tap-major: block, tap, row."""
    T = w2.shape[1]
    rows = np.zeros((groups * cogp, T), w2.dtype)
    for g in range(groups):
        rows[g * cogp:g * cogp + cog] = w2[g * cog:(g + 1) * cog]
    blocks = rows[cb0 * B:cb1 * B].reshape(cb1 - cb0, B, T)
    return blocks.transpose(0, 2, 1).ravel()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("groups, cog, T", [(1, 512, 9 * 40), (1, 70, 27), (2, 20, 6),
                                            (3, 16, 50), (1, 64, 1)])
def test_tap_major_blocks_match_numpy(dtype, groups, cog, T):
    B = 64
    cogp = -(-cog // B) * B
    ncb = groups * cogp // B
    w2 = np.random.default_rng(0).standard_normal((groups * cog, T)).astype(dtype)
    for cb0, cb1 in [(0, ncb), (ncb // 2, ncb)]:
        dst = np.full((cb1 - cb0) * T * B + 16, np.nan, dtype)
        tap_major_blocks(w2.ravel(), T, cog, cogp, cb0, cb1, B, dst, False, 1)
        want = _tap_major_reference(w2, groups, cog, cogp, cb0, cb1, B)
        np.testing.assert_array_equal(dst[:want.size], want)
        assert np.isnan(dst[want.size:]).all()  # nothing written past the blocks


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("groups, cog, cg, kk", [(1, 40, 512, 9), (1, 16, 70, 1), (2, 3, 20, 25),
                                                 (3, 5, 16, 49)])
def test_flipped_tap_major_blocks_match_numpy(dtype, groups, cog, cg, kk):
    """The input gradient's weights: w'[g*Cg + ci, co, k] = w[g*Cog + co, ci, KK-1-k]."""
    B = 64
    cgp = -(-cg // B) * B
    ncb = groups * cgp // B
    w = np.random.default_rng(1).standard_normal((groups * cog, cg, kk)).astype(dtype)
    flipped = w[:, :, ::-1].reshape(groups, cog, cg, kk).transpose(0, 2, 1, 3)
    w2 = flipped.reshape(groups * cg, cog * kk)  # rows: input channels; taps: (co, k)
    T = cog * kk
    for cb0, cb1 in [(0, ncb), (ncb - 1, ncb)]:
        dst = np.full((cb1 - cb0) * T * B + 16, np.nan, dtype)
        tap_major_blocks(w.ravel(), T, cg, cgp, cb0, cb1, B, dst, True, kk)
        want = _tap_major_reference(w2, groups, cg, cgp, cb0, cb1, B)
        np.testing.assert_array_equal(dst[:want.size], want)
        assert np.isnan(dst[want.size:]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, top, left, Hq, Wq", [((2, 3, 7, 7), 1, 1, 9, 9),
                                                      ((1, 2, 5, 37), 2, 0, 10, 40),
                                                      ((3, 1, 4, 16), 0, 3, 4, 19)])
def test_pad_runs_match_the_element_copy_and_numpy(dtype, shape, top, left, Hq, Wq):
    """The stride-1 copy by masked runs (large inputs) writes what the element copy does:
    x zero-padded by top/left into Hq x Wq planes, zeros past it (rows and columns)."""
    from kernels.cpu import conv

    x = np.random.default_rng(2).standard_normal(shape).astype(dtype)
    N, C, H, W = shape
    want = np.zeros((N, C, Hq, Wq), dtype)
    want[:, :, top:top + H, left:left + W] = x
    for cpu in (conv.parallel, conv.serial):
        runs = np.full(N * C * Hq * Wq, np.nan, dtype)
        elements = runs.copy()
        cpu.pad_runs(x, runs, top, left, Hq, Wq)
        cpu.pad_phases(x, elements, top, left, 1, 1, Hq, Wq, np.ones(1, np.uint8))
        np.testing.assert_array_equal(runs.reshape(want.shape), want)
        np.testing.assert_array_equal(elements, runs)
