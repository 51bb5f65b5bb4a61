"""The conv kernels' copies into their layouts (kernels.cpu._layout), against NumPy."""

import numpy as np
import pytest

from kernels.cpu._layout import tap_major_blocks


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
