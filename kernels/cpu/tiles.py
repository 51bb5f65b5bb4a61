"""The register-blocked convolution kernel over a flat source array ``src`` (see
:mod:`kernels.conv` for the layouts and the plan that feeds it).

Output ``tile`` covers P consecutive source elements starting at ``bases[tile]``; tap
``t`` adds ``off[t]``; block ``blk`` of FWD_COB output channels adds ``cbase[blk]`` (its
group's first input channel). The accumulators are explicit vectors
(:mod:`kernels.cpu._simd`): one per output channel of the block, P lanes each.
"""

from numba import njit, prange

from ._jit import U, parallel_and_serial
from ._simd import P, add_scalar, fma, lane, load, store, zeros

FWD_COB = 8  # output channels per block: 8 accumulators + 1 source vector in registers


@njit(cache=True)
def _store(y, o, lo, whole, v, bias):
    """``y[o + lo[p]] = v[p] + bias`` for the lanes that are outputs (``lo[p] >= 0``);
    one vector store when all P are, contiguous (``whole``)."""
    v = add_scalar(v, bias)
    if whole:
        store(y, U(o + lo[0]), v)
        return
    for p in range(P):
        if lo[p] >= 0:
            y[o + lo[p]] = lane(v, p)


def _forward(src, wt, tap, off, cbase, bases, tile_class, class_start, chan, b, y,
             ybase, lane_out, full, ystride_c):
    """y[ybase[tile] + c*ystride_c + lane_out[k, p]] = b[c] + sum_t wt[blk, tap[t], co % B]
    * src[cbase[co // FWD_COB] + bases[tile] + off[t] + p] for the real channel
    c = chan[co] (-1: a padding row, not stored) and the lanes p that are outputs
    (lane_out >= 0; ``full[k]``: all P are, contiguous), k = tile % len(full) (the
    map repeats: per image, or for every tile), over the taps t of the tile's class:
    class_start[k] <= t < class_start[k + 1] for k = tile_class[tile] (the taps that
    do not read padding).

    Loop nest: prange (tile, block of FWD_COB channels) > tap t > FWD_COB vector FMAs.

    Optimizations:
    - FWD_COB x P accumulators stay in vector registers for all taps: each tap loads
      P source values once (one vector load) and does FWD_COB broadcast FMAs;
    - ``wt`` is block-major, then tap-major (:func:`kernels.cpu.conv.tap_major`), so a
      block's weights are one contiguous run; each class's taps are listed in ``tap``
      (not a copy of the weights per class);
    - consecutive tasks share a tile, so its source stays in cache for all blocks;
    - taps that would read only zero padding are skipped (a tile's class lists the
      rest): half the work of an input gradient computed as a full correlation;
    - unsigned indices (``tap`` and ``off`` are uint64, ``wt`` flat): Numba emits no
      negative-index wraparound code for them;
    - results go straight to ``y`` (NCHW) with the bias, through the map of each lane's
      output: lanes past a row or past the batch are not stored."""
    ntile = bases.shape[0]
    nblk = chan.shape[0] // FWD_COB
    T = U(wt.shape[0] // chan.shape[0])  # taps of a row (wt is blocks x taps x FWD_COB)
    for task in prange(nblk * ntile):
        tile = task // nblk
        blk = task % nblk
        co0 = blk * FWD_COB
        a0 = U(cbase[blk] + bases[tile])
        wb0 = U(blk) * T * U(FWD_COB)
        cls = tile_class[tile]
        c0 = c1 = c2 = c3 = c4 = c5 = c6 = c7 = zeros(y)
        for t in range(U(class_start[cls]), U(class_start[cls + 1])):
            x = load(src, a0 + off[t])
            wb = wb0 + tap[t] * U(FWD_COB)
            c0 = fma(c0, wt[wb], x)
            c1 = fma(c1, wt[wb + U(1)], x)
            c2 = fma(c2, wt[wb + U(2)], x)
            c3 = fma(c3, wt[wb + U(3)], x)
            c4 = fma(c4, wt[wb + U(4)], x)
            c5 = fma(c5, wt[wb + U(5)], x)
            c6 = fma(c6, wt[wb + U(6)], x)
            c7 = fma(c7, wt[wb + U(7)], x)
        k = tile % full.shape[0]
        lo, whole, o = lane_out[k], full[k], ybase[tile]
        for j, v in enumerate((c0, c1, c2, c3, c4, c5, c6, c7)):
            c = chan[co0 + j]
            if c >= 0:
                _store(y, o + c * ystride_c, lo, whole, v, b[c])


forward, forward_serial = parallel_and_serial(_forward)
