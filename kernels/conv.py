"""2-D convolution forward and backward, as ``torch.nn.functional.conv2d`` and its autograd.

Arrays are NCHW, float32 or float64; the maths is defined in :mod:`kernels.reference.conv`.
Arguments are checked here, before any kernel runs; the CPU kernels
(:mod:`kernels.cpu.conv`) work on a zero-padded copy of the input.
"""

from __future__ import annotations

from functools import cached_property, lru_cache

import numpy as np
from numba import get_num_threads

from . import _alloc
from ._checks import array, flag, on_device

# The argument rules, shared with kernels.cuda.conv (see kernels._rules), imported back
# under their old names: code and tests that use kernels.conv._geometry keep working.
from ._rules.conv import (  # noqa: F401
    Geometry,
    _backward_args,
    _cached_geometry,
    _check_bias,
    _forward_args,
    _geometry,
    _geometry_of,
    _padding,
    _plain,
)


def _padded(x: np.ndarray, geo: Geometry, cpu) -> np.ndarray:
    """``x`` with the zero padding of ``geo`` (``x`` itself when there is none), in a
    scratch buffer (see :func:`kernels._alloc.scratch`): for use within a call only;
    ``cpu`` is the kernels' variant (see :func:`_cpu`)."""
    top, bottom, left, right = geo.pads
    if not any(geo.pads):
        return x
    N, C, H, W = x.shape
    xp = _alloc.scratch("conv.pad", (N, C, H + top + bottom, W + left + right), x.dtype)
    _pad(cpu, x, xp.reshape(-1), top, left, xp.shape[3])
    return xp


_ONE_PHASE = np.ones(1, dtype=np.uint8)


PAD_RUNS_MIN = 1 << 18  # input elements from which a stride-1 copy pads by runs


def _pad(cpu, x: np.ndarray, out: np.ndarray, top: int, left: int, pitch: int,
         whole: int = 0) -> None:
    """``out`` (flat) = ``x`` zero-padded by ``top``/``left`` into planes of row pitch
    ``pitch``, zeros past its end (the stride-phase split with one phase): by masked runs
    of a row (:func:`kernels.cpu.conv.pad_runs`) for large inputs, by elements for small
    ones (whose first call then compiles one copy kernel, not two). ``whole``: the
    elements of the tensor that ``x`` is a chunk of (every chunk then copies alike)."""
    rows = out.size // (x.shape[0] * x.shape[1] * pitch)
    if max(x.size, whole) >= PAD_RUNS_MIN:
        cpu.pad_runs(x, out, top, left, rows, pitch)
    else:
        cpu.pad_phases(x, out, top, left, 1, 1, rows, pitch, _ONE_PHASE)


def _split_phases(cpu, x, src, top, left, sh, sw, Hq, Wq, used, whole: int = 0) -> None:
    """``src`` = ``x`` padded and split into stride phases
    (:func:`kernels.cpu.conv.pad_phases`), both column phases of a row at once at a
    column stride of 2."""
    if sw == 2:
        cpu.pad_phase_pairs(x, src, top, left, sh, Hq, Wq, used)
    elif sh == sw == 1:
        _pad(cpu, x, src[:x.shape[0] * x.shape[1] * Hq * Wq], top, left, Wq, whole)
    else:
        cpu.pad_phases(x, src, top, left, sh, sw, Hq, Wq, used)


@lru_cache(maxsize=256)
def _affine(sizes: tuple[int, ...], strides: tuple[int, ...]) -> np.ndarray:
    """``sum_k i_k * strides[k]`` over the row-major grid ``i < sizes``, flattened: the
    tiled kernels' offset tables. Cached, since training repeats the same shapes.
    NOTE: shared between calls, so never written to."""
    out = np.zeros((), dtype=np.int64)
    for n, step in zip(sizes, strides):
        out = out[..., None] + np.arange(n, dtype=np.int64) * step
    return out.ravel()


def _inside(o: int, stride: int, dil: int, pad: int, size: int, k: int) -> tuple[int, int]:
    """``(lo, hi)``: the kernel offsets ``lo <= i < hi`` whose input row (or column) for
    output row ``o`` is inside the input, not padding."""
    lo = max(0, -(-(pad - o * stride) // dil))
    hi = min(k, (size - 1 + pad - o * stride) // dil + 1)
    return lo, max(lo, hi)


@lru_cache(maxsize=128)
def _tap_classes(grid, per_position, H, W, Cg, KH, KW, sh, sw, dh, dw, top, left):
    """``(order, tile_class, class_start)``: each forward tile's taps, without those that
    read only zero padding.

    A tile's window rows (and, when the tile is one output position, its columns) that
    fall inside the input form a range; tiles with the same ranges share a class, whose
    taps are ``order[class_start[c]:class_start[c + 1]]`` (indices into ``w[co].ravel()``).
    ``grid`` is the tiles' (oh, ow, q) with batch lanes, else (n, oh, owt)."""

    classes: dict = {}
    if per_position:  # one output position per tile: rows and columns
        OH, OW, nq = grid
        keys = [_inside(oh, sh, dh, top, H, KH) + _inside(ow, sw, dw, left, W, KW)
                for oh in range(OH) for ow in range(OW)]
        ids = np.array([classes.setdefault(k, len(classes)) for k in keys], dtype=np.int64)
        tile_class = np.repeat(ids, nq)
    else:  # a tile spans columns: rows only
        N, OH, nw = grid
        keys = [_inside(oh, sh, dh, top, H, KH) + (0, KW) for oh in range(OH)]
        ids = np.array([classes.setdefault(k, len(classes)) for k in keys], dtype=np.int64)
        tile_class = np.tile(np.repeat(ids, nw), N)
    taps = np.arange(Cg * KH * KW).reshape(Cg, KH, KW)
    parts = [taps[:, h0:h1, w0:w1].ravel() for h0, h1, w0, w1 in classes]
    class_start = np.concatenate([[0], np.cumsum([p.size for p in parts])]).astype(np.int64)
    return np.concatenate(parts), tile_class, class_start


@lru_cache(maxsize=128)
def _phase_offsets(Cg, KH, KW, dh, dw, sh, sw, Hq, Wq) -> np.ndarray:
    """The source offset of each tap (ci, kh, kw) in the stride-phase layout (see
    :func:`kernels.cpu.conv.pad_phases`): the tap reads phase ``(kh*dh % sh, kw*dw % sw)``
    at row ``kh*dh // sh`` and column ``kw*dw // sw``. NOTE: cached, never written to."""
    r, q = np.arange(KH) * dh, np.arange(KW) * dw
    plane = Hq * Wq
    rows = (r % sh) * sw * plane + (r // sh) * Wq
    cols = (q % sw) * plane + q // sw
    chans = np.arange(Cg) * sh * sw * plane
    return (chans[:, None, None] + rows[None, :, None] + cols[None, None, :]).ravel()


@lru_cache(maxsize=128)
def _used_phases(KH, KW, dh, dw, sh, sw) -> np.ndarray:
    """Which stride phases some tap reads (a 1x1 stride-2 layer reads one of four)."""
    used = np.zeros(sh * sw, dtype=np.uint8)
    for kh in range(KH):
        for kw in range(KW):
            used[(kh * dh % sh) * sw + kw * dw % sw] = 1
    return used


@lru_cache(maxsize=128)
def _schedule(classes: tuple, ntile: int, strides: tuple | None = None,
              phases: tuple | None = None):
    """``(tap, off, tile_class, class_start)`` for the tiled forward kernel's ``ntile``
    tiles: the taps of each tile class (:func:`_tap_classes`; one class of every tap when
    ``classes[0]``, the grid, is None) as indices into ``w[co].ravel()`` and as source
    offsets (``strides`` per step in ci, kh, kw, or the :func:`_phase_offsets` of
    ``phases``), both uint64 (see :mod:`kernels.cpu.tiles`). Cached: with many classes (an
    input gradient's padding) gathering the offsets, or weights, per call took a third of
    the call."""
    taps = tuple(classes[4:7])
    if classes[0] is None:
        order = np.arange(taps[0] * taps[1] * taps[2], dtype=np.int64)
        tile_class, class_start = np.zeros(ntile, np.int64), np.array([0, order.size])
    else:
        order, tile_class, class_start = _tap_classes(*classes)
    offsets = _affine(taps, strides) if phases is None else _phase_offsets(*phases)
    return order.astype(np.uint64), offsets[order].astype(np.uint64), tile_class, class_start


def _tile_sets(tile_class: np.ndarray, ntile: int, in_order: bool = False,
               few: bool = False) -> np.ndarray:
    """The tiles that the kernel computes together (:func:`kernels.cpu.tiles.tile_sets_of`):
    sets of FWD_R, or of FEW_R for the few-channel kernel (:func:`_few`)."""
    from .cpu.tiles import FEW_R, FWD_R, tile_sets_of

    return tile_sets_of(tile_class, ntile, in_order, FEW_R if few else FWD_R)


def _few(channels: int, macs: int) -> tuple[bool, int]:
    """``(few, block)``: whether a tiled convolution of ``channels`` output channels a
    group (at most 4: an RGB output, a stem's input gradient) runs on the few-channel
    kernel (:func:`kernels.cpu.tiles.forward_few`: blocks of 4 channels, sets of 6 tiles,
    where blocks of 8 waste 5 of 8 FMAs on 3 channels), from FEW_MIN_MACS multiply-adds;
    and its block of output channels."""
    from .cpu.tiles import FEW_COB, FWD_COB, P

    few = P == 16 and channels <= FEW_COB and macs >= FEW_MIN_MACS
    return few, FEW_COB if few else FWD_COB


def _tiled_kernel(cpu, few: bool):
    """The tiled kernel: :func:`kernels.cpu.tiles.forward`, or the few-channel one."""
    return cpu.tiled_few if few else cpu.tiled


@lru_cache(maxsize=128)
def _channel_rows(Co: int, G: int, cogp: int) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, chan)``: the row of each output channel in the tiled kernels' layout,
    where each group's channels are padded to ``cogp``, and the inverse map (the real
    channel of each row, -1 for padding)."""
    Cog = Co // G
    rows = (np.arange(G)[:, None] * cogp + np.arange(Cog)).ravel()
    chan = np.full(G * cogp, -1, dtype=np.int64)
    chan[rows] = np.arange(Co)
    return rows, chan


def _lane_map(ybase_rel: np.ndarray, valid: np.ndarray):
    """``(seg_off, seg_mask, nseg)``, the tiled kernel's store maps (see
    :func:`kernels.cpu.tiles._forward1`), from each lane's output offset (``ybase_rel``,
    ntile x P) and whether it is an output: the lanes of a tile whose outputs lie the
    same distance after them (one output row's, say) form a segment, stored with one
    masked vector store."""
    ntile, P = ybase_rel.shape
    never = np.iinfo(np.int64).max
    d = np.where(valid, ybase_rel - np.arange(P), never)
    ds = np.sort(d, axis=1)
    first = np.ones(ds.shape, dtype=bool)
    first[:, 1:] = ds[:, 1:] != ds[:, :-1]
    first &= ds != never
    nseg = first.sum(axis=1)
    seg_off = np.zeros((ntile, max(1, int(nseg.max(initial=0)))), dtype=np.int64)
    rows, cols = np.nonzero(first)
    seg_off[rows, np.cumsum(first, axis=1)[rows, cols] - 1] = ds[rows, cols]
    bits = np.left_shift(1, np.arange(P, dtype=np.int64))
    seg_mask = np.stack([((d == seg_off[:, s, None]) & (s < nseg)[:, None]) @ bits
                         for s in range(seg_off.shape[1])], axis=1)
    return seg_off, seg_mask.astype(np.int64), nseg.astype(np.int64)


@lru_cache(maxsize=128)
def _row_outputs(N, Co, OH, OW, OWr):
    """Where the forward kernel stores with width lanes, straight into NCHW ``y``:
    ``(ybase, stores)`` for tiles (n, oh, owt): each image's first output, and the
    store maps of one image's tiles (:func:`_lane_map`; lanes past OW store nothing; the
    kernel repeats the maps: a map per tile would take as much memory as the output)."""
    from .cpu.tiles import P

    ybase = np.repeat(_affine((N,), (Co * OH * OW,)), OH * (OWr // P))
    ow = np.arange(OWr).reshape(-1, P)  # (tiles per row, P)
    rel = (np.arange(OH)[:, None, None] * OW + ow[None]).reshape(-1, P)
    return ybase, _lane_map(rel, (ow < OW)[None].repeat(OH, 0).reshape(-1, P))


@lru_cache(maxsize=128)
def _wide_outputs(N, Co, OH, OW, Wp, ntile):
    """As :func:`_row_outputs`, for wide tiles: tile t of an image covers the outputs
    ``a = t*P + p`` of its plane laid out with pitch Wp, which are ``(a // Wp, a % Wp)``
    where ``a % Wp < OW`` and ``a // Wp < OH``."""
    from .cpu.tiles import P

    ybase = np.repeat(_affine((N,), (Co * OH * OW,)), ntile)
    a = np.arange(ntile * P).reshape(ntile, P)
    oh, ow = a // Wp, a % Wp
    return ybase, _lane_map(oh * OW + ow, (ow < OW) & (oh < OH))


@lru_cache(maxsize=128)
def _lane_outputs(nrows, ntile, P):
    """``(chan, ybase, stores)`` that store every row and lane in the lane
    layout ``out[row, tile*P + p]`` (one store map, the same for every tile)."""
    return (np.arange(nrows, dtype=np.int64), _affine((ntile,), (P,)),
            _lane_map(np.arange(P, dtype=np.int64)[None], np.ones((1, P), dtype=bool)))


BATCH_LANES_MARGIN = 0.1  # of the lanes: what the copies into and out of batch lanes cost
WIDE_CHUNK_BYTES = 2 << 20  # of the stride-phase copy made and computed on at once
CHANNEL_LANES_MARGIN = 0.05  # the same for the channels as lanes (ahead from 28x28 down)
# multiply-adds from which 3 or 4 output channels a group take the tiled kernel in blocks
# of 4 (:attr:`_Tiled.few`): below, a layer takes under a millisecond in blocks of 8 too,
# and a second kernel would add its 0.65 s of compiling to the first call (LeNet conv1's
# input gradient, 29.5M at batch 64, compiles only the forward's kernel)
FEW_MIN_MACS = 32_000_000
MACS_PER_S = 50e9  # a core's multiply-adds a second in the tiled kernels, about
COPY_BYTES_PER_S = 5e9  # a core's bytes a second in a layout copy, about


def _chunk_images(N: int, image_bytes: int, threads: int) -> int:
    """Images a chunk of a copy-then-compute pass (:meth:`_Tiled._wide_chunks`,
    :meth:`_Tiled._source_chunks`, :class:`_PhasedInputGrad`): about WIDE_CHUNK_BYTES of
    copies, a multiple of ``threads`` (so that the copy, split by image, and the kernel,
    split by tile, give each thread the same images: a thread that overwrites source
    lines another core has just read waits for them to be taken back from it, and on a
    VM whose cores share no cache that made the copy of a stride-2 128-channel layer 6
    times slower, 0.4 ms against 2.4 ms)."""
    per = max(1, WIDE_CHUNK_BYTES // image_bytes)
    return min(-(-per // threads) * threads, N)


class _Tiled:
    """The plan of one convolution's register-blocked forward kernel
    (:mod:`kernels.cpu.tiles`) and row-dot weight gradient
    (:func:`kernels.cpu.conv.weight_grad_rows`): built from shapes only, once per shape
    (see :func:`_tiled`), so that a call does little more than copy and launch.

    The forward kernel computes P (16 with AVX-512, else 8) outputs at once, from P
    consecutive elements of a
    flat source array. Two layouts make an output tile contiguous:

    - batch lanes: ``src[((c*Hp + h)*Wp + w)*Nb + n]``, the batch (rounded up to ``Nb``,
      a multiple of P) innermost; any stride, no wasted lanes when P divides N;
    - width lanes (stride 1 along the width): the padded NCHW input with rows of pitch
      ``Wq``, a tile being P neighbours in an output row (``OW`` rounded up to ``OWr``;
      ``Wq`` is wide enough that the extra lanes read zeros);
    - wide tiles: the padded input split into its ``sh*sw`` stride phases, each a plane
      of pitch ``Wq = ceil(Wp / sw)`` (:func:`kernels.cpu.conv.pad_phases`; at stride 1
      the padded NCHW input itself), a tile being P consecutive outputs of an image's
      plane laid out with that pitch (``oh*Wq + ow``), which runs on across rows; the
      lanes of the ``Wq - OW`` columns past each row are computed and not stored.

    The layout with fewer wasted lanes wins. Output channels are padded per group to a
    multiple of FWD_COB (of FEW_COB where there are at most that many); ``rows[c]`` is
    channel ``c``'s row in the kernels' output.
    """

    def __init__(self, x_shape: tuple, w_shape: tuple, geo: Geometry):
        from .cpu.tiles import CL_C, P

        N, C, H, W = x_shape
        Co, Cg, KH, KW = w_shape
        (OH, OW), sw, G = geo.out_hw, geo.stride[1], geo.groups
        top, bottom, left, right = geo.pads
        self.x_shape, self.w_shape, self.geo, self.P = x_shape, w_shape, geo, P
        self.dims = N, C, Cg, KH, KW, H + top + bottom, W + left + right
        self.Nb, self.OWr = -(-N // P) * P, -(-OW // P) * P
        # the layout that wastes the fewest lanes; wide tiles waste the Wq - OW columns
        # past each row: 2 of 58 on a 64->64 3x3 layer at 56x56, where tiles of a row
        # waste 8 of 64, and 1 of 29 at stride 2, where batch lanes waste 8 of 16 at b8
        sh = geo.stride[0]
        self.Hq, self.Wq = -(-(H + top + bottom) // sh), -(-(W + left + right) // sw)
        waste_batch = (self.Nb - N) / self.Nb
        waste_rows = (self.OWr - OW) / self.OWr if sw == 1 else 1.0
        per_image = -(-((OH - 1) * self.Wq + OW) // P) * P  # lanes of an image's wide tiles
        waste_wide = 1 - OH * OW / per_image
        # batch lanes also cost two transposing copies: they must waste less by a margin
        self.batch_lanes = waste_batch + BATCH_LANES_MARGIN <= min(waste_rows, waste_wide)
        self.wide = not self.batch_lanes and waste_wide < waste_rows
        self.cog = Co // G
        # small maps: the output channels as the lanes, in blocks of CL_C*P channels or,
        # where that wastes fewer, of P (LeNet's 16), where they waste less by a margin
        # (7x7 planes waste 15 of 64 lanes as tiles at their padded pitch; batch lanes
        # count their copies' margin too)
        waste_blocks = _padding_share(self.cog, CL_C * P)
        self.narrow = _padding_share(self.cog, P) < waste_blocks
        self.cl_block = P if self.narrow else CL_C * P
        self.channel_lanes = (_padding_share(self.cog, self.cl_block) + CHANNEL_LANES_MARGIN
                              <= min(waste_rows, waste_wide, waste_batch + BATCH_LANES_MARGIN))
        self.macs = N * Co * OH * OW * Cg * KH * KW
        self.few, self.block = _few(self.cog, self.macs)
        self.cogp = -(-self.cog // self.block) * self.block
        self.rows, self.chan = _channel_rows(Co, G, self.cogp)
        self.out_shape = (N, Co, OH, OW)
        self._by_threads: dict[tuple, object] = {}  # chunks and buffers, by kernel, threads
        self._schedules: dict[int, tuple] = {}

    @property
    def cpu(self):
        """The kernels' variant for this convolution's size (see :func:`_cpu`)."""
        return _cpu(self.macs)

    def _tap_strides(self, row_pitch: int, plane_rows: int, lane_pitch: int):
        """The source stride of a step in ci, kh and kw."""
        (dh, dw) = self.geo.dilation
        return (plane_rows * row_pitch * lane_pitch, dh * row_pitch * lane_pitch,
                dw * lane_pitch)

    def _channel_blocks(self, B: int) -> tuple[int, np.ndarray, np.ndarray]:
        """For the kernels with channels as lanes, in blocks of ``B`` channels: each
        group's channel count padded to whole blocks, each channel's row in that padded
        layout, and each block's group base in the stride-phase source."""
        G, Cg = self.geo.groups, self.w_shape[1]
        cogp = -(-self.cog // B) * B
        plane = self.geo.stride[0] * self.geo.stride[1] * self.Hq * self.Wq
        rows, _ = _channel_rows(self.out_shape[1], G, cogp)
        return cogp, rows, np.repeat(np.arange(G, dtype=np.int64) * Cg * plane, cogp // B)

    def _cbase(self, group_stride: int, cob: int) -> np.ndarray:
        """The source offset of each block of ``cob`` output channels (its group's)."""
        G, Cg = self.geo.groups, self.w_shape[1]
        return np.repeat(np.arange(G, dtype=np.int64) * Cg * group_stride, self.cogp // cob)

    @cached_property
    def _forward_plan(self) -> tuple:
        """What :meth:`forward` launches with, apart from the arrays: ``(src_size, Wq,
        tap, off, cbase, bases, tile_sets, tile_class, class_start, chan, ybase, stores,
        ystride_c)``, ``stores`` being the store maps (:func:`_lane_map`); ``Wq`` is the
        source's row pitch (0 with batch lanes)."""
        N, C, Cg, KH, KW, Hp, Wp = self.dims
        (OH, OW), (sh, sw), dw = self.geo.out_hw, self.geo.stride, self.geo.dilation[1]
        top, left, P, Nb, OWr = self.geo.pads[0], self.geo.pads[2], self.P, self.Nb, self.OWr
        Co = self.out_shape[1]
        if self.batch_lanes:
            src_size, Wq = C * Hp * Wp * Nb, 0
            strides, cbase = self._tap_strides(Wp, Hp, Nb), self._cbase(Hp * Wp * Nb, self.block)
            bases = _affine((OH, OW, Nb // P), (sh * Wp * Nb, sw * Nb, P))
            grid = (OH, OW, Nb // P)
            chan, ybase, stores = _lane_outputs(self.chan.size, bases.size, P)
            ystride_c = bases.size * P
        elif self.wide:
            Wq, image = self.Wq, C * sh * sw * self.Hq * self.Wq
            ntile = -(-((OH - 1) * Wq + OW) // P)
            src_size, strides = None, None  # a chunk's (see _forward_wide_in_chunks)
            cbase = self._cbase(image // C, self.block)
            bases = _affine((N, ntile), (image, P))
            grid = None  # one class: a tile spans rows, and the padding is real zeros
            chan, (ybase, stores) = self.chan, _wide_outputs(N, Co, OH, OW, Wq, ntile)
            ystride_c = OH * OW
        else:
            Wq = max(Wp, OWr + (KW - 1) * dw)
            src_size = N * C * Hp * Wq
            strides, cbase = self._tap_strides(Wq, Hp, 1), self._cbase(Hp * Wq, self.block)
            bases = _affine((N, OH, OWr // P), (C * Hp * Wq, sh * Wq, P))
            grid = (N, OH, OWr // P)
            chan, (ybase, stores) = self.chan, _row_outputs(N, Co, OH, OW, OWr)
            ystride_c = OH * OW
        tap, off, tile_class, class_start = _schedule(
            (grid, self.batch_lanes, *self.x_shape[2:], Cg, KH, KW, sh, sw,
             *self.geo.dilation, top, left), bases.size, strides,
            self._phases if self.wide else None)
        # wide tiles: an image's tiles in sets of their own, so that a chunk of images
        # (:meth:`_forward_wide_in_chunks`) computes only from its own copy
        tile_sets = _tile_sets(np.repeat(np.arange(N), bases.size // N) if self.wide
                               else tile_class, bases.size, in_order=self.wide, few=self.few)
        return (src_size, Wq, tap, off, cbase, bases, tile_sets, tile_class, class_start, chan,
                ybase, stores, ystride_c)

    @property
    def _phases(self) -> tuple:
        """The :func:`_phase_offsets` key of this convolution's stride-phase layout."""
        Cg, KH, KW = self.w_shape[1:]
        return (Cg, KH, KW, *self.geo.dilation, *self.geo.stride, self.Hq, self.Wq)

    def _phase_split(self, x: np.ndarray, src: np.ndarray, whole: int = 0) -> None:
        """``src`` (at least N*C*sh*sw*Hq*Wq) = ``x`` padded and split into stride phases
        (``whole``: see :func:`_pad`)."""
        (sh, sw), (dh, dw), KH, KW = self.geo.stride, self.geo.dilation, *self.w_shape[2:]
        _split_phases(self.cpu, x, src, self.geo.pads[0], self.geo.pads[2], sh, sw, self.Hq,
                      self.Wq, _used_phases(KH, KW, dh, dw, sh, sw), whole)

    def _weights(self, w: np.ndarray) -> np.ndarray:
        return _tile_weights(w.reshape(w.shape[0], -1), self.geo.groups, self.cogp, self.block)

    def _wide_chunks(self, threads: int) -> list[tuple[int, int, int, int, np.ndarray]]:
        """``(n0, n1, s0, s1, bases)``: the images whose stride-phase copy is made at once,
        the tile sets then computed (those of these images), and the tiles' bases in the
        copy, which starts at image n0 (:func:`_chunk_images`)."""
        chunks = self._by_threads.get(("wide", threads))
        if chunks is not None:
            return chunks
        N = self.dims[0]
        per = _chunk_images(N, self._image * 4, threads)
        bases, tile_sets = self._forward_plan[5], self._forward_plan[6]
        sets = tile_sets.shape[0] // N  # an image's (see _forward_plan)
        chunks = [(n0, min(N, n0 + per), n0 * sets, min(N, n0 + per) * sets,
                   bases - n0 * self._image) for n0 in range(0, N, per)]
        self._by_threads[("wide", threads)] = chunks
        return chunks

    @property
    def _image(self) -> int:
        """Elements of an image's stride-phase copy."""
        return self.dims[1] * self.geo.stride[0] * self.geo.stride[1] * self.Hq * self.Wq

    def _forward_wide_in_chunks(self, x, w, b):
        """The wide-tile forward a few images at a time, each chunk's stride-phase copy
        made into the same scratch buffer and computed on while it is in cache (a
        256-channel 56x56 input's 26 MB copy, made whole, went out to memory and back;
        copied chunk by chunk into one buffer of 26 MB, each chunk's lines came in from
        memory to be written, and went back: 6.3 ms against 3.1 ms a forward)."""
        cpu = self.cpu
        (_, _, tap, off, cbase, _, tile_sets, tile_class, class_start, chan,
         ybase, stores, ystride_c) = self._forward_plan
        (sh, sw), (dh, dw), (KH, KW) = self.geo.stride, self.geo.dilation, self.w_shape[2:]
        image, chunks = self._image, self._wide_chunks(_threads(cpu))
        src = _alloc.scratch("conv.src", (chunks[0][1] - chunks[0][0]) * image + self.P,
                             x.dtype)
        used = _used_phases(KH, KW, dh, dw, sh, sw)
        wt, b = self._weights(w), _readonly(b)
        y = _alloc.empty(self.out_shape, w.dtype)
        for n0, n1, s0, s1, bases in chunks:
            size = (n1 - n0) * image
            _split_phases(cpu, x[n0:n1], src[:size], self.geo.pads[0], self.geo.pads[2], sh,
                          sw, self.Hq, self.Wq, used, x.size)
            src[size:size + self.P] = 0  # read by the last tile's lanes past its plane
            _tiled_kernel(cpu, self.few)(src, wt, tap, off, cbase, bases, tile_sets[s0:s1],
                                         tile_class, class_start, chan, b, y.reshape(-1),
                                         ybase, *stores, ystride_c)
        return y

    @property
    def _by_groups(self) -> bool:
        """Whether the wide-tile forward runs a group of an image at a time
        (:func:`kernels.cpu.tiles.forward_groups`): grouped, in blocks of 8 channels."""
        return self.geo.groups > 1 and not self.few

    @cached_property
    def _group_bases(self) -> np.ndarray:
        """Each wide tile's offset in its image's copy (not the whole batch's)."""
        return self._forward_plan[5] % self._image

    def _forward_wide_by_groups(self, x, w, b):
        from .cpu.tiles import FWD_COB

        (_, _, tap, off, _, bases, tile_sets, tile_class, class_start, chan, ybase, stores,
         ystride_c) = self._forward_plan
        (sh, sw), (dh, dw), (KH, KW) = self.geo.stride, self.geo.dilation, self.w_shape[2:]
        y = _alloc.empty(self.out_shape, w.dtype)
        G, cpu = self.geo.groups, self.cpu
        size = self.x_shape[1] // G * sh * sw * self.Hq * self.Wq  # a group's copy
        bufs = _part_buffers(cpu, size + self.P, x.dtype, "conv.src")
        bufs[:, size:] = 0  # read by the last tile's lanes past its plane
        cpu.tiled_groups(x, self._weights(w), tap, off, self._group_bases, tile_sets,
                         tile_class, class_start, chan, _readonly(b), y.reshape(-1), ybase,
                         *stores, ystride_c, G, _used_phases(KH, KW, dh, dw, sh, sw),
                         self.geo.pads[0], self.geo.pads[2], sh, sw, self.Hq, self.Wq, bufs,
                         np.zeros(chan.size // G // FWD_COB, dtype=np.int64))
        return y

    @cached_property
    def _x_is_source(self) -> bool:
        """Whether the wide-tile and row-dot kernels can read ``x`` itself: a 1x1 layer at
        stride 1 without padding, whose planes are whole tiles (so no tile reads past the
        array). Its stride-phase layout is ``x``, and the copy took a quarter of a 1x1
        256->64 layer's time."""
        N, C, Cg, KH, KW, Hp, Wp = self.dims
        return (self.wide and self.geo.stride == (1, 1) and not any(self.geo.pads)
                and KH == KW == 1 and Hp * Wp % self.P == 0)

    @cached_property
    def _x_is_phase_layout(self) -> bool:
        """Whether ``x`` is its own stride-phase layout (stride 1, no padding): the weight
        gradient's kernels, which read no element past an image's outputs, then read it
        (its copy took 0.8 ms of a 1x1 1024->256 layer's 16.6 at 14x14)."""
        return self.geo.stride == (1, 1) and not any(self.geo.pads)

    @property
    def _channels_source(self) -> bool:
        """Whether :func:`kernels.cpu.tiles.forward_channels` reads a copy of ``x`` padded
        (planes of ``Hp x Wp``), or ``x`` itself, unpadded. Each lane broadcasts one
        source element, so a stride is only the positions' step in it: no stride-phase
        split (at stride 2 the split made a third of the 32-group layers' time, the
        padded copy about half as long)."""
        return any(self.geo.pads)

    def _channels_split(self, threads: int) -> tuple[int, int]:
        """``(Tp, Tc)``: the parts of the batch and of the channel blocks that the
        ``threads`` share in :func:`kernels.cpu.tiles.forward_channels`. Each thread
        copies the weights of its 1/Tc of the blocks and the source of its 1/Tp of the
        batch; the split with the least time per thread wins, counting the copies at
        COPY_BYTES_PER_S and the sums at MACS_PER_S, slowed by any imbalance (3 blocks
        on 2 threads: 2 and 1)."""
        N, C, Cg, KH, KW, _, _ = self.dims
        B, G = self.cl_block, self.geo.groups
        ncb = G * -(-self.cog // B)
        itemsize = 4  # NOTE: the float32 sizes; float64 only doubles every copy
        wbytes = ncb * B * Cg * KH * KW * itemsize
        sbytes = N * C * self.dims[5] * self.dims[6] * itemsize if self._channels_source else 0

        def cost(tp: int, tc: int) -> float:
            imbalance = -(-ncb // tc) * tc / ncb * (-(-N // tp) * tp / N)
            return (imbalance * self.macs / (threads * MACS_PER_S)
                    + (wbytes / tc + sbytes / tp) / COPY_BYTES_PER_S)

        splits = [(threads // tc, tc) for tc in range(1, threads + 1)
                  if threads % tc == 0 and tc <= ncb and threads // tc <= N] or [(1, 1)]
        return min(splits, key=lambda s: cost(*s))

    def _channels_schedule(self, threads: int) -> tuple:
        """``(Tc, pixsrc, pixy, pset, set_class, tap, off, class_start, by_position)`` for
        :func:`kernels.cpu.tiles.forward_channels` on ``threads``: each part of the batch's
        output positions, cut into sets of CL_X or CLN_X (a part's last set repeating its last
        position), and each set's class of taps (see :func:`_inside`). Where some taps read
        padding, the positions come in the order (oh, ow, image), so that a set holds the
        same position of several images and skips the taps that read only padding."""
        from .cpu.tiles import CL_X, CLN_X

        X = CLN_X if self.narrow else CL_X
        cached = self._schedules.get(threads)
        if cached is not None:
            return cached
        Tp, Tc = self._channels_split(threads)
        N, C, Cg, KH, KW = self.dims[:5]
        (OH, OW), (sh, sw), (dh, dw) = self.geo.out_hw, self.geo.stride, self.geo.dilation
        H, W = self.x_shape[2:]
        top, left = self.geo.pads[0], self.geo.pads[2]
        Hp, Wp = self.dims[5:]
        plane, copy = Hp * Wp, self._channels_source
        rows = np.array([_inside(o, sh, dh, top, H, KH) for o in range(OH)])
        cols = np.array([_inside(o, sw, dw, left, W, KW) for o in range(OW)])
        # some taps of some positions read only padding: the order (oh, ow, image) lets
        # sets skip them; otherwise (image, oh, ow), whose sets read one line a tap (for a
        # 1x1 layer, six images' lines took 1.5 times as long)
        padded = (rows != (0, KH)).any() or (cols != (0, KW)).any()
        pixsrc, pixy, ranges, pset = [], [], [], [0]
        for ip in range(Tp):
            n0, n1 = ip * N // Tp, (ip + 1) * N // Tp
            grid = np.meshgrid(np.arange(n0, n1), np.arange(OH), np.arange(OW), indexing="ij")
            n, oh, ow = (a.transpose(1, 2, 0) if padded else a for a in grid)
            n, oh, ow = n.ravel(), oh.ravel(), ow.ravel()
            pad = -oh.size % X  # the last set repeats its last position
            oh, ow, n = (np.r_[a, np.repeat(a[-1:], pad)] for a in (oh, ow, n))
            pixsrc.append((n - (n0 if copy else 0)) * C * plane + oh * sh * Wp + ow * sw)
            pixy.append(n * self.out_shape[1] * OH * OW + oh * OW + ow)
            r, c = rows[oh].reshape(-1, X, 2), cols[ow].reshape(-1, X, 2)
            ranges.append(np.stack([r[..., 0].min(1), r[..., 1].max(1), c[..., 0].min(1),
                                    c[..., 1].max(1)], axis=1))
            pset.append(pset[-1] + oh.size // X)
        keys, set_class = np.unique(np.concatenate(ranges), axis=0, return_inverse=True)
        taps = np.arange(Cg * KH * KW).reshape(Cg, KH, KW)
        lists = [taps[:, h0:h1, w0:w1].ravel() for h0, h1, w0, w1 in keys]
        tap = np.concatenate(lists).astype(np.uint64)
        class_start = np.r_[0, np.cumsum([t.size for t in lists])].astype(np.int64)
        off = _affine((Cg, KH, KW), (plane, dh * Wp, dw))[tap.astype(np.int64)].astype(np.uint64)
        cached = self._schedules[threads] = (
            Tc, np.concatenate(pixsrc).astype(np.int64), np.concatenate(pixy).astype(np.int64),
            np.array(pset, dtype=np.int64), set_class.ravel().astype(np.int64), tap, off,
            class_start, bool(padded))
        return cached

    @property
    def exact(self) -> bool:
        """Whether the channels-as-lanes forward runs in exact sets
        (:meth:`_exact_schedule`): on 16 lanes, where some taps read padding (without, it
        reads ``x`` itself already); blocks of CL_C*P channels in float32 only."""
        return self.P == 16 and self._channels_source

    @cached_property
    def _position_classes(self) -> tuple[np.ndarray, np.ndarray]:
        """``(keys, pos_class)``: the classes of output positions by the kernel rows and
        columns that read the input (``keys[k] = (kh0, kh1, kw0, kw1)``), and each
        position's class (row-major)."""
        (OH, OW), (sh, sw), (dh, dw) = self.geo.out_hw, self.geo.stride, self.geo.dilation
        H, W = self.x_shape[2:]
        KH, KW = self.w_shape[2:]
        rows = np.array([_inside(o, sh, dh, self.geo.pads[0], H, KH) for o in range(OH)])
        cols = np.array([_inside(o, sw, dw, self.geo.pads[2], W, KW) for o in range(OW)])
        keys, pos_class = np.unique(np.concatenate([np.repeat(rows, OW, axis=0),
                                                    np.tile(cols, (OH, 1))], axis=1),
                                    axis=0, return_inverse=True)
        return keys, pos_class.ravel()

    def _pair_sources(self, n: np.ndarray, p: np.ndarray) -> np.ndarray:
        """The first source element in ``x`` of image ``n``'s output position ``p``
        (row-major), before its image's plane where the position's first taps read
        padding (negative for the first image)."""
        OW, (sh, sw) = self.geo.out_hw[1], self.geo.stride
        C, H, W = self.x_shape[1:]
        return (n * C * H * W + (p // OW * sh - self.geo.pads[0]) * W + p % OW * sw
                - self.geo.pads[2])

    def _class_taps(self, keys: np.ndarray, multiple: int = 1) -> tuple:
        """``(tap, off, class_start)``: each class's taps (indices into a row of ``w``)
        and their offsets in ``x``, class after class, each class's padded to a multiple
        of ``multiple`` with tap id ``Cg*KH*KW`` at its first tap's offset (a class of
        positions that read only padding has none)."""
        Cg, KH, KW = self.w_shape[1:]
        H, W = self.x_shape[2:]
        dh, dw = self.geo.dilation
        taps_of = np.arange(Cg * KH * KW).reshape(Cg, KH, KW)
        lists = [taps_of[:, h0:h1, w0:w1].ravel() for h0, h1, w0, w1 in keys]
        offs = _affine((Cg, KH, KW), (H * W, dh * W, dw))
        pads = [np.full(-t.size % multiple, Cg * KH * KW) for t in lists]
        tap = np.concatenate([np.r_[t, p] for t, p in zip(lists, pads)]).astype(np.uint64)
        off = np.concatenate([np.r_[offs[t], np.full(p.size, offs[t[0]] if t.size else 0)]
                              for t, p in zip(lists, pads)]).astype(np.uint64)
        class_start = np.r_[0, np.cumsum([t.size + p.size for t, p in zip(lists, pads)])]
        return tap, off, class_start.astype(np.int64)

    def _exact_schedule(self, threads: int) -> tuple | None:
        """:meth:`_channels_schedule` for :func:`kernels.cpu.tiles.forward_channels` with
        ``exact``: a part's (image, position) pairs sorted by class (the taps that read
        the image), then by image and position, in sets of CLE_X (CL_X for a block of
        CL_C*P channels; a class's last set repeating its last pair), so each set
        computes exactly its taps and reads ``x`` itself; ``pixy`` holds each pair's
        slot. A set of one position's 8 images read 8 planes 4 KiB apart (one L1 set),
        where 8 positions of an image read one run. ``pixsrc`` and ``off`` count in
        ``x`` (:meth:`_pair_sources`: a negative one the kernel's unsigned sums wrap).
        None unless :attr:`exact`. The split with the least time per thread wins, as in
        :meth:`_channels_split`, the sums counted tap by tap and no source copied."""
        from .cpu.tiles import CL_X, CLE_X

        key = ("exact", threads)
        if key in self._schedules:
            return self._schedules[key]
        self._schedules[key] = None
        if not self.exact:
            return None
        N, C, Cg, KH, KW = self.dims[:5]
        OH, OW = self.geo.out_hw
        X, B = (CLE_X, self.P) if self.narrow else (CL_X, self.cl_block)
        ncb = self.geo.groups * -(-self.cog // B)
        keys, pos_class = self._position_classes
        taps = Cg * (keys[:, 1] - keys[:, 0]) * (keys[:, 3] - keys[:, 2])
        npos = np.bincount(pos_class, minlength=len(keys))  # positions a class

        def sets(n: int) -> np.ndarray:  # the sets of each class for n images
            return -(-npos * n // X)

        def cost(tp: int, tc: int) -> float:
            macs = -(-ncb // tc) * (sets(-(-N // tp)) * taps).sum() * X * B
            return macs / MACS_PER_S + ncb * B * Cg * KH * KW * 4 / tc / COPY_BYTES_PER_S

        splits = [(threads // tc, tc) for tc in range(1, threads + 1)
                  if threads % tc == 0 and tc <= ncb and threads // tc <= N] or [(1, 1)]
        Tp, Tc = min(splits, key=lambda s: cost(*s))
        by_class = np.argsort(pos_class, kind="stable")
        first = np.r_[0, np.cumsum(npos)]  # each class's first position in by_class
        pixsrc, slot, set_class, pset = [], [], [], [0]
        for ip in range(Tp):
            n0, n1 = ip * N // Tp, (ip + 1) * N // Tp
            for k in range(len(keys)):
                n, p = (a.ravel() for a in np.meshgrid(np.arange(n0, n1),
                                                       by_class[first[k]:first[k + 1]],
                                                       indexing="ij"))
                pad = -n.size % X  # the last set repeats its last pair
                n, p = np.r_[n, np.repeat(n[-1:], pad)], np.r_[p, np.repeat(p[-1:], pad)]
                pixsrc.append(self._pair_sources(n, p))
                slot.append((n - n0) * OH * OW + p)
                set_class.append(np.full(n.size // X, k))
            pset.append(pset[-1] + sets(n1 - n0).sum())
        tap, off, class_start = self._class_taps(keys)
        cached = self._schedules[key] = (
            Tc, np.concatenate(pixsrc).astype(np.int64), np.concatenate(slot).astype(np.int64),
            np.array(pset, dtype=np.int64), np.concatenate(set_class).astype(np.int64), tap,
            off, class_start, False)
        return cached

    def _forward_by_channels(self, x, w, b, flip=False):
        from .cpu.tiles import CL_X, CLN_X

        cpu, threads = self.cpu, _threads(self.cpu)
        # (a wide block in float64: its weights, past L2 for a 256-channel 3x3 layer,
        # stream in again for each set, and exact sets are more sets: 6% slower)
        exact = (self._exact_schedule(threads) if self.narrow or x.dtype.itemsize == 4
                 else None)
        copy = self._channels_source and exact is None
        Tc, pixsrc, pixy, pset, set_class, tap, off, class_start, by_position = \
            exact or self._channels_schedule(threads)
        Hp, Wp = self.dims[5:]
        buffers = self._by_threads.get(("channels", threads, copy))
        if buffers is None:
            N, C, Cg, KH, KW = self.dims[:5]
            P = self.P
            src_part = -(-N // (pset.size - 1)) * C * Hp * Wp if copy else 0
            # the most output positions a part has
            nslots = (-(-N // (pset.size - 1)) * self.out_shape[2] * self.out_shape[3] if exact
                      else np.diff(pset).max() * (CLN_X if self.narrow else CL_X))
            w_part = (Cg * KH * KW + nslots) * self.cl_block  # a block's weights, its sums
            # rows of whole cache lines: no two threads write one line
            buffers = self._by_threads[("channels", threads, copy)] = (
                ((pset.size - 1) * Tc, -(-src_part // P) * P), ((pset.size - 1) * Tc,
                                                                -(-w_part // P) * P))
        srcs = _alloc.scratch("conv.src", buffers[0], x.dtype)
        wts = _alloc.scratch("conv.weights", buffers[1], x.dtype)
        y = _alloc.empty(self.out_shape, x.dtype)
        cpu.by_channels(x, w, _readonly(b), y, srcs, wts, self.geo.pads[0], self.geo.pads[2],
                        Hp, Wp, self.geo.groups, Tc, copy, pixsrc, pixy, pset, set_class, tap,
                        off, class_start, flip, by_position, self.narrow, exact is not None)
        return y

    def forward_flipped(self, g: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        """:meth:`forward` with the weights :func:`_flipped` from ``w``: the input gradient
        of the convolution with ``w`` (see :func:`_backward_as_forward`). The kernel with
        channels as lanes reads ``w`` itself (flipping a 512-channel 3x3 layer's weights
        took 1.8 ms)."""
        if self.channel_lanes:
            return self._forward_by_channels(g, w, b, flip=True)
        return self.forward(g, _flipped(w, self.geo.groups), b)

    def forward(self, x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        if self.channel_lanes:
            return self._forward_by_channels(x, w, b)
        cpu = self.cpu
        (src_size, Wq, tap, off, cbase, bases, tile_sets, tile_class, class_start, chan, ybase,
         stores, ystride_c) = self._forward_plan
        N, C, _, _, _, Hp, Wp = self.dims
        top, left = self.geo.pads[0], self.geo.pads[2]
        if self.wide and not self._x_is_source:
            if self._by_groups:
                return self._forward_wide_by_groups(x, w, b)
            return self._forward_wide_in_chunks(x, w, b)
        if self._x_is_source:
            src = x.reshape(-1)
        elif self.batch_lanes:
            # NOTE: not zeroed: each tile's taps skip the padding (see _tap_classes), and
            # lanes past N only feed outputs that are dropped
            src = _alloc.scratch("conv.src", src_size, w.dtype)
            cpu.to_batch_lanes(x, src, top, left, Hp, Wp, self.Nb)
        else:
            src = _alloc.scratch("conv.src", src_size, w.dtype)
            plane = N * C * Hp * Wq
            _pad(cpu, x, src[:plane], top, left, Wq)
            src[plane:] = 0
        wt = self._weights(w)
        y = _alloc.empty(self.out_shape, w.dtype)
        if self.batch_lanes:
            # NOTE: stored in the lane layout, then transposed: lanes are images, and 16
            # stores a whole feature map apart cost as much as the extra pass
            out = _alloc.scratch("conv.out", (chan.size, ystride_c), w.dtype)
            _tiled_kernel(cpu, self.few)(src, wt, tap, off, cbase, bases, tile_sets,
                                         tile_class, class_start, chan,
                                         _zeros(chan.size, w.dtype), out.reshape(-1), ybase,
                                         *stores, ystride_c)
            cpu.from_lanes(out, y, b, self.rows, self.Nb)
            return y
        _tiled_kernel(cpu, self.few)(src, wt, tap, off, cbase, bases, tile_sets, tile_class,
                                     class_start, chan, _readonly(b), y.reshape(-1), ybase,
                                     *stores, ystride_c)
        return y

    @property
    def _wg_batch_lanes(self) -> bool:
        """Whether the weight gradient runs on batch lanes: only where they make long rows
        (a whole output row of every image); strided, a row would be one output position,
        so it runs on the stride phases (on a 128-channel 3x3 stride-2 layer, 284 -> 40
        ms)."""
        return self.batch_lanes and self.geo.stride[1] == 1

    @cached_property
    def _weight_grad_plan(self) -> tuple:
        """What :meth:`weight_grad` launches with, apart from the arrays: ``(off, cbase,
        spans, lanes_length)``, ``off`` padded to a multiple of WG_TB and ``spans`` the
        rows cut into pieces (:func:`_pieces`)."""
        from .cpu.conv import WG_COB, WG_TB

        N, C, Cg, KH, KW, Hp, Wp = self.dims
        (OH, OW), (sh, sw), Nb = self.geo.out_hw, self.geo.stride, self.Nb
        if self._wg_batch_lanes:
            strides, cbase = self._tap_strides(Wp, Hp, Nb), self._cbase(Hp * Wp * Nb, WG_COB)
            lanes_length = OH * OW * Nb
            rowbase = _affine((OH,), (sh * Wp * Nb,))
            rowg, length = _affine((OH,), (OW * Nb,)), OW * Nb
            off = _affine((Cg, KH, KW), strides)
        else:  # the stride-phase layout: a row is an image's whole plane at pitch Wq
            Wq, image = self.Wq, C * sh * sw * self.Hq * self.Wq
            off, cbase = _phase_offsets(*self._phases), self._cbase(image // C, WG_COB)
            lanes_length = N * OH * Wq
            rowbase = _affine((N,), (image,))
            rowg, length = _affine((N,), (OH * Wq,)), (OH - 1) * Wq + OW
        off = np.concatenate([off, np.zeros(-off.size % WG_TB, dtype=off.dtype)])
        return off, cbase, _pieces(rowbase, rowg, length), lanes_length

    @cached_property
    def _wg_cols(self) -> bool:
        """Whether the weight gradient runs with channels as lanes
        (:func:`kernels.cpu.conv.weight_grad_cols`): where there are taps enough to repay
        grad_out's transposing copy (a 1x1 64->256 layer's took as long as the sums)
        and channels that fill their blocks. Small planes too: a 512-channel 3x3
        layer's at 7x7 took 10.8 ms, by rows 18.0 ms (4x4: 5.0 and 11.1 ms)."""
        taps = self.w_shape[1] * self.w_shape[2] * self.w_shape[3]
        least = WGCN_MIN_TAPS if self._wgc_narrow else WGC_MIN_TAPS
        return taps >= least and _padding_share(self.cog, self._wgc_block) <= 0.25

    @cached_property
    def _wgc_narrow(self) -> bool:
        """Whether :meth:`_weight_grad_by_columns` runs in blocks of 16 channels
        (:func:`kernels.cpu.conv.weight_grad_cols_narrow`, with 16 lanes), for up to 32
        channels a group that blocks of WGC_C*P would pad more."""
        from .cpu.conv import WGC_C

        return (self.P == 16 and self.cog <= 32
                and _padding_share(self.cog, 16) < _padding_share(self.cog, WGC_C * self.P))

    @property
    def _wgc_block(self) -> int:
        """The channels a block of :meth:`_weight_grad_by_columns`."""
        from .cpu.conv import WGC_C

        return 16 if self._wgc_narrow else WGC_C * self.P

    @cached_property
    def _weight_grad_cols_plan(self) -> tuple:
        """``(rows, width, off, cbase)`` for :func:`kernels.cpu.conv.weight_grad_cols`:
        each channel's column in the transposed grad_out (its group's padded to WGC_C*P),
        the width, the taps' offsets in the stride-phase layout (a multiple of WGC_K), and
        each block's group base."""
        from .cpu.conv import WGC_K, WGCN_K

        cogp, rows, cbase = self._channel_blocks(self._wgc_block)
        off = _phase_offsets(*self._phases)
        K = WGCN_K if self._wgc_narrow else WGC_K
        off = np.concatenate([off, np.zeros(-off.size % K, dtype=off.dtype)])
        return rows, self.geo.groups * cogp, off.astype(np.int64), cbase

    def _cols_chunks(self, threads: int) -> list[tuple]:
        """``(n0, n1, rowsrc, prow)`` for each of the :meth:`_source_chunks`: the source
        offset of each output row of its images in the chunk's copy, and those rows cut
        into pieces of about WGC_PIECE outputs."""
        chunks = self._by_threads.get(("cols", threads))
        if chunks is None:
            (OH, OW), Wq = self.geo.out_hw, self.Wq
            per = max(1, -(-WGC_PIECE // OW))
            chunks = []
            for n0, n1 in self._source_chunks(threads):
                rowsrc = (np.arange(n1 - n0)[:, None] * self._image + np.arange(OH) * Wq)
                nrow = (n1 - n0) * OH
                chunks.append((n0, n1, rowsrc.ravel().astype(np.int64),
                               np.r_[np.arange(0, nrow, per), nrow].astype(np.int64)))
            self._by_threads[("cols", threads)] = chunks
        return chunks

    @cached_property
    def _rows_in_runs(self) -> bool:
        """Whether each block of 16 channels has 16 consecutive columns in
        :meth:`_weight_grad_cols_plan`'s layout (a group's channels are, when they fill
        whole blocks of 16; the last block may be short)."""
        rows = self._weight_grad_cols_plan[0]
        first = np.repeat(rows[::16], 16)[:rows.size]  # each channel's block's first column
        return bool((rows - first == np.arange(rows.size) % 16).all())

    @cached_property
    def _column_channels(self) -> np.ndarray:
        """The channel of each column of :meth:`_weight_grad_cols_plan`'s layout (-1:
        padding)."""
        rows, width = self._weight_grad_cols_plan[:2]
        cols = np.full(width, -1, dtype=np.int64)
        cols[rows] = np.arange(rows.size)
        return cols

    def _source_chunks(self, threads: int) -> list[tuple[int, int]]:
        """``(n0, n1)``: the images of each chunk of the weight gradient's stride-phase copy
        (:func:`_chunk_images`), copied into one buffer and summed over while in cache
        (made whole, a 256-channel 56x56 input's 26 MB copy went out to memory and back);
        one chunk of every image where the kernels read ``x`` itself."""
        N = self.dims[0]
        if self._x_is_phase_layout:
            return [(0, N)]
        per = _chunk_images(N, self._image * 4, threads)
        return [(n0, min(N, n0 + per)) for n0 in range(0, N, per)]

    def _rows_chunks(self, threads: int) -> list[tuple]:
        """``(n0, n1, spans)`` for each of the :meth:`_source_chunks`: the row-dot weight
        gradient's spans (:func:`_pieces`) of its images, at their offsets in the chunk's
        copy."""
        chunks = self._by_threads.get(("rows", threads))
        if chunks is None:
            sbase, gbase, slen, _ = self._weight_grad_plan[2]  # a span an image
            chunks = self._by_threads[("rows", threads)] = [
                (n0, n1, _pieces(sbase[n0:n1] - sbase[n0], gbase[n0:n1], slen[0]))
                for n0, n1 in self._source_chunks(threads)]
        return chunks

    def _chunk_source(self, x: np.ndarray, n0: int, n1: int, per: int) -> np.ndarray:
        """Images ``n0 <= n < n1`` of ``x`` padded and split into stride phases, in a
        scratch buffer of ``per`` images that every chunk reuses (or ``x`` itself:
        :meth:`_x_is_phase_layout`)."""
        if self._x_is_phase_layout:
            return x.reshape(-1)
        src = _alloc.scratch("conv.src", per * self._image, x.dtype)
        self._phase_split(x[n0:n1], src, x.size)
        return src

    @property
    def _wg_exact(self) -> bool:
        """Whether the weight gradient by columns runs by class
        (:func:`kernels.cpu.conv.weight_grad_exact`): blocks of 16 channels on 16 lanes,
        where some taps read padding."""
        return self._wgc_narrow and any(self.geo.pads)

    @cached_property
    def _weight_grad_exact_plan(self) -> tuple:
        """``(pixsrc, slot, pair_start, tap, off, class_start, cbase)`` for
        :func:`kernels.cpu.conv.weight_grad_exact`: the (image, position) pairs class by
        class (by image, then position: grad_out's rows in order), each pair's first
        source element in ``x`` and its row of the position-major grad_out, the classes'
        taps (a multiple of WGCN_K each), and each block's group's first channel."""
        from .cpu.conv import WGCN_K

        N, _, H, W = self.x_shape
        OH, OW = self.geo.out_hw
        keys, pos_class = self._position_classes
        pixsrc, slot, pair_start = [], [], [0]
        for k in range(len(keys)):
            n, p = (a.ravel() for a in np.meshgrid(np.arange(N), np.flatnonzero(pos_class == k),
                                                   indexing="ij"))
            pixsrc.append(self._pair_sources(n, p))
            slot.append(n * OH * OW + p)
            pair_start.append(pair_start[-1] + n.size)
        tap, off, class_start = self._class_taps(keys, WGCN_K)
        cogp, _, _ = self._channel_blocks(16)
        G, Cg = self.geo.groups, self.w_shape[1]
        cbase = np.repeat(np.arange(G, dtype=np.int64) * Cg * H * W, cogp // 16)
        return (np.concatenate(pixsrc).astype(np.int64), np.concatenate(slot).astype(np.int64),
                np.array(pair_start, dtype=np.int64), tap, off, class_start, cbase)

    def _weight_grad_by_columns(self, x: np.ndarray, g: np.ndarray) -> np.ndarray:

        cpu = self.cpu
        rows, width, off, cbase = self._weight_grad_cols_plan
        N = self.dims[0]
        OH, OW = self.geo.out_hw
        B, threads = self._wgc_block, _threads(cpu)
        ncb = width // B
        gw = np.empty((self.w_shape[0], int(np.prod(self.w_shape[1:]))), dtype=g.dtype)
        direct = ncb % threads == 0 or ncb >= 4 * threads  # blocks enough for every thread
        if direct and self._wg_exact:
            cpu.weight_grad_exact(x, np.ascontiguousarray(g), *self._weight_grad_exact_plan, gw,
                                  self._column_channels)
            return gw.reshape(self.w_shape)
        gt = _alloc.scratch("conv.lanes", (N * OH * OW, width), g.dtype)
        if width > rows.size:  # the padding columns are read
            gt.fill(0)
        cpu.to_position_major(g, gt, rows, self._rows_in_runs)
        kernel = cpu.weight_grad_cols_narrow if self._wgc_narrow else cpu.weight_grad_cols
        chunks = self._cols_chunks(threads)
        nchunk = 0 if direct else _wg_chunks(chunks[0][3].size - 1, off.size * width, cpu)
        part = _alloc.scratch("conv.part", (nchunk, off.size, width), g.dtype)
        for n0, n1, rowsrc, prow in chunks:
            src = self._chunk_source(x, n0, n1, chunks[0][1] - chunks[0][0])
            kernel(src, gt[n0 * OH * OW:n1 * OH * OW], off, cbase, rowsrc, OW, prow, part, gw,
                   self._column_channels, n0 > 0)
        if not direct:  # the pieces in chunks too, summed after
            cpu.sum_column_parts(part, self._column_channels, gw, B, -(-threads // ncb))
        return gw.reshape(self.w_shape)

    def weight_grad(self, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        """grad_w as dot products of grad_out's rows with the shifted source rows (see
        :func:`kernels.cpu.conv.weight_grad_rows`), or with channels as lanes where that
        is faster (:meth:`_wg_cols`). A row is a run of outputs that is
        contiguous in both: with batch lanes, an output row of all images (or one output
        position when strided); otherwise a whole plane in the stride-phase layout of
        pitch ``Wq`` (an image's output positions at ``oh*Wq + ow``, zero gradient past
        OW)."""
        if self._wg_cols:
            return self._weight_grad_by_columns(x, g)
        cpu = self.cpu
        off, cbase, spans, lanes_length = self._weight_grad_plan
        N, C, _, _, _, Hp, Wp = self.dims
        top, left, Nb = self.geo.pads[0], self.geo.pads[2], self.Nb
        gl = _alloc.scratch("conv.lanes", (self.chan.size, lanes_length), g.dtype)
        if self._wg_batch_lanes:
            cpu.to_batch_lanes_rows(g, gl, self.rows, Nb)
        else:
            cpu.to_pitch_rows(g, gl, self.rows, self.Wq)
        if self.chan.size > self.rows.size:
            gl[self.chan < 0] = 0
        if self._wg_batch_lanes:
            src = _alloc.scratch("conv.src", C * Hp * Wp * Nb, g.dtype)
            if Nb != N or any(self.geo.pads):  # padding and lanes past N are read here
                src.fill(0)
            cpu.to_batch_lanes(x, src, top, left, Hp, Wp, Nb)
            chunks = [(0, N, spans)]
        else:
            chunks = self._rows_chunks(_threads(cpu))
        nchunk = _wg_chunks(chunks[0][2][3].size - 1, gl.shape[0] * off.size, cpu)
        part = _alloc.scratch("conv.part", (nchunk, gl.shape[0], off.size), np.float64)
        for n0, n1, chunk_spans in chunks:
            if not self._wg_batch_lanes:
                src = self._chunk_source(x, n0, n1, chunks[0][1] - chunks[0][0])
            cpu.weight_grad_rows(src, gl, off, cbase, *chunk_spans, part, n0 > 0)
        gw = np.empty((self.w_shape[0], int(np.prod(self.w_shape[1:]))), dtype=g.dtype)
        cpu.sum_row_parts(part, self.rows, gw)
        return gw.reshape(self.w_shape)


WG_PIECE = 1024  # outputs a weight-gradient piece sweeps at least (see _pieces)


def _pieces(rowbase: np.ndarray, rowg: np.ndarray, length: int):
    """``(sbase, gbase, slen, piece)`` for :func:`kernels.cpu.conv.weight_grad_rows`: the
    rows (source and grad_out offsets, ``length`` long) grouped into pieces of at least
    WG_PIECE outputs where rows are shorter (a 7x7 plane's 61; a 56x56 plane's 3246 is a
    piece of its own: cutting it into shorter spans cost 7-20%)."""
    slen = np.full(rowbase.size, length, dtype=np.int64)
    per = max(1, -(-WG_PIECE // length))  # rows a piece
    piece = np.r_[np.arange(0, rowbase.size, per), rowbase.size]
    return rowbase, rowg, slen, piece.astype(np.int64)


def _padding_share(n: int, block: int) -> float:
    """The share of ``n`` rounded up to whole blocks that is padding."""
    return -n % block / (n + -n % block)


WGC_MIN_TAPS = 256  # taps from which the weight gradient runs by columns
# ... in blocks of 16 channels (16 or 32 a group): faster than the rows' dot products
# from 128 taps on (one thread: a 1x1 144->32 layer at 28x28, 0.62 against 0.80 ms; LeNet's
# conv2, 150 taps, 0.36 against 0.48; ResNeXt's 16-channel groups at 14x14, 144 taps,
# 3.2 against 4.6)
WGCN_MIN_TAPS = 128
WGC_PIECE = 1024  # outputs a piece of the weight gradient by columns

WG_PART_BYTES = 32 << 20  # the float64 partial sums of the chunks, at most


def _wg_chunks(npiece: int, weights: int, cpu) -> int:
    """Chunks of pieces for the weight gradient: a piece each, up to four a thread (each
    block of channels then sweeps a piece's source while it is in L2; more tasks cost
    more than they balance), fewer where each chunk's float64 copy of the weights would
    take too much memory; at least one."""
    return max(1, min(npiece, 4 * _threads(cpu), WG_PART_BYTES // (8 * weights)))


def _threads(cpu) -> int:
    """The threads the kernels ``cpu`` run on: Numba's count for the parallel ones."""
    return get_num_threads() if cpu is _backends()[0] else 1


class _PhasedInputGrad:
    """The plan of a strided convolution's input gradient in one launch of the tiled
    kernel: the sub-pixel decomposition, each stride phase of the (padded) input being a
    stride-1 correlation of grad_out with the taps that land on it.

    Input position ``(i*sh + ph, j*sw + pw)`` gets ``w[co, ci, kh, kw] * g[oh, ow]`` from
    the taps with ``kh*dh % sh == ph`` and ``kw*dw % sw == pw``, at ``oh = i - kh*dh // sh``
    and ``ow = j - kw*dw // sw``. So the kernel's source is grad_out padded by the largest
    shifts ``(Rt, Rl)`` at row pitch ``Gq = Wq + Rl``; its output tiles are P consecutive
    positions of one phase plane (Hq x Wq, at that pitch), one tile class per phase listing
    its taps, so every multiply-add is one of the convolution's (the stride-1 problem on a
    zero-spread grad_out did sh*sw times as many) and a phase no tap reaches is zeros.
    The phases are stored in the layout of :func:`kernels.cpu.conv.pad_phases`, then
    gathered into grad_x, a chunk of images at a time (:func:`_chunk_images`): each
    chunk's padded grad_out and phases in the same two buffers, while they are in cache
    (whole, a 256-channel 56x56 layer's 26 MB of phases went out to memory and back)."""

    def __init__(self, x_shape: tuple, w_shape: tuple, geo: Geometry):
        from .cpu.tiles import P

        N, C, H, W = x_shape
        Co, Cg, KH, KW = w_shape
        G, Cog = geo.groups, Co // geo.groups
        # grad_x's channels are the kernel's outputs: an RGB stem's 3 in blocks of 4 (the
        # 7x7 stride-2 stem at 224x224, batch 8: 44-63 -> 19-20 ms)
        self.few, self.block = _few(Cg, _macs(x_shape, w_shape, geo))
        block = self.block
        (sh, sw), (dh, dw), (OH, OW) = geo.stride, geo.dilation, geo.out_hw
        top, bottom, left, right = geo.pads
        Hq, Wq = -(-(H + top + bottom) // sh), -(-(W + left + right) // sw)
        Rt, Rl = (KH - 1) * dh // sh, (KW - 1) * dw // sw
        Gh, Gq = Hq + Rt, Wq + Rl
        S, plane = sh * sw, Hq * Wq
        ntile = -(-((Hq - 1) * Gq + Wq) // P)  # per image and phase
        taps, offs = [], []
        for phase in range(S):
            ph, pw = divmod(phase, sw)
            co, kh, kw = np.meshgrid(np.arange(Cog), [k for k in range(KH) if k * dh % sh == ph],
                                     [k for k in range(KW) if k * dw % sw == pw], indexing="ij")
            taps.append((co * KH * KW + kh * KW + kw).ravel())
            offs.append((co * Gh * Gq + (Rt - kh * dh // sh) * Gq + (Rl - kw * dw // sw)).ravel())
        self.tap = np.concatenate(taps).astype(np.uint64)
        self.off = np.concatenate(offs).astype(np.uint64)
        self.class_start = np.concatenate([[0], np.cumsum([t.size for t in taps])])
        self.bases = _affine((N, S, ntile), (Co * Gh * Gq, 0, P))
        self.tile_class = np.tile(np.repeat(np.arange(S), ntile), N)
        self.tile_sets = _tile_sets(self.tile_class, self.bases.size, in_order=True,
                                    few=self.few)
        self.cgp = -(-Cg // block) * block
        self.rows, self.chan = _channel_rows(C, G, self.cgp)
        self.cbase = np.repeat(np.arange(G, dtype=np.int64) * Cog * Gh * Gq, self.cgp // block)
        a = np.arange(ntile * P).reshape(ntile, P)
        i, j = a // Gq, a % Gq
        rel = (np.arange(S)[:, None, None] * plane + i * Wq + j).reshape(-1, P)
        valid = np.broadcast_to((i < Hq) & (j < Wq), (S, ntile, P)).reshape(-1, P)
        self.stores = _lane_map(rel, valid)
        self.ybase = np.repeat(_affine((N,), (C * S * plane,)), S * ntile)
        self.dims = (N, C, H, W, Co, Cg, KH, KW, G, Cog, Gh, Gq, Rt, Rl, Hq, Wq)
        self.geo, self.macs = geo, N * Co * OH * OW * Cg * KH * KW
        self._by_threads: dict[int, list] = {}

    def _image_chunks(self, threads: int) -> list[tuple]:
        """``(n0, n1, s0, s1, bases, ybase)``: the images of a chunk, their tile sets (an
        image's phases are runs of tiles of their own), and the tiles' offsets in the
        chunk's buffers, which start at image n0."""
        chunks = self._by_threads.get(threads)
        if chunks is None:
            N, C, H, W, Co, Cg, KH, KW, G, Cog, Gh, Gq, Rt, Rl, Hq, Wq = self.dims
            src_image = Co * Gh * Gq
            out_image = C * self.geo.stride[0] * self.geo.stride[1] * Hq * Wq
            per = _chunk_images(N, (src_image + out_image) * 4, threads)
            sets = self.tile_sets.shape[0] // N
            chunks = self._by_threads[threads] = [
                (n0, min(N, n0 + per), n0 * sets, min(N, n0 + per) * sets,
                 self.bases - n0 * src_image, self.ybase - n0 * out_image)
                for n0 in range(0, N, per)]
        return chunks

    def __call__(self, g: np.ndarray, w: np.ndarray) -> np.ndarray:
        from .cpu.tiles import P

        N, C, H, W, Co, Cg, KH, KW, G, Cog, Gh, Gq, Rt, Rl, Hq, Wq = self.dims
        (sh, sw), cpu = self.geo.stride, _cpu(self.macs)
        chunks = self._image_chunks(_threads(cpu))
        per = chunks[0][1]
        image, out_image = Co * Gh * Gq, C * sh * sw * Hq * Wq
        src = _alloc.scratch("conv.src", per * image + P, g.dtype)
        yph = _alloc.scratch("conv.out", per * out_image, g.dtype)
        # the weights as a forward convolution's: rows are input channels, taps (co, kh, kw)
        wf = w.reshape(G, Cog, Cg, KH * KW).transpose(0, 2, 1, 3).reshape(G * Cg, -1)
        wt = _tile_weights(wf, G, self.cgp, self.block)
        kernel = _tiled_kernel(cpu, self.few)
        grad_x = np.empty((N, C, H, W), dtype=g.dtype)
        for n0, n1, s0, s1, bases, ybase in chunks:
            size = (n1 - n0) * image
            _pad(cpu, g[n0:n1], src[:size], Rt, Rl, Gq, g.size)
            src[size:size + P] = 0  # read by the last tile's lanes past its plane
            kernel(src, wt, self.tap, self.off, self.cbase, bases, self.tile_sets[s0:s1],
                   self.tile_class, self.class_start, self.chan, _zeros(C, g.dtype), yph,
                   ybase, *self.stores, sh * sw * Hq * Wq)
            cpu.unphase(yph, grad_x[n0:n1], self.geo.pads[0], self.geo.pads[2], sh, sw, Hq,
                        Wq)
        return grad_x


class _Depthwise:
    """The plan of a convolution with one input channel a group (depthwise layers, and a
    grayscale input) for the plane-by-plane kernels of :mod:`kernels.cpu.depthwise`: each
    plane padded and split into stride phases of ``Hq x Wq``, its outputs ``ntile`` tiles
    of P positions at row pitch ``Wq``."""

    def __init__(self, x_shape: tuple, w_shape: tuple, geo: Geometry):
        from .cpu import depthwise
        from .cpu.tiles import P

        N, C, H, W = x_shape
        Co, _, KH, KW = w_shape
        (sh, sw), (dh, dw), (OH, OW) = geo.stride, geo.dilation, geo.out_hw
        top, bottom, left, right = geo.pads
        self.Hq, self.Wq = -(-(H + top + bottom) // sh), -(-(W + left + right) // sw)
        self.ntile = -(-((OH - 1) * self.Wq + OW) // P)
        self.off = _phase_offsets(1, KH, KW, dh, dw, sh, sw, self.Hq, self.Wq).astype(np.uint64)
        a = np.arange(self.ntile * P).reshape(self.ntile, P)
        oh, ow = a // self.Wq, a % self.Wq
        self.stores = _lane_map(oh * OW + ow, (ow < OW) & (oh < OH))
        self.geo, self.w_shape = geo, w_shape
        self.geometry = (top, left, sh, sw, self.Hq, self.Wq)
        self.P = P
        self.buffer = sh * sw * self.Hq * self.Wq + depthwise.DW_R * P  # a part's plane
        self.cog = Co // C
        # bands of rows (:func:`kernels.cpu.depthwise.forward_rows`) at stride 1, and the
        # 3x3 and 5x5 ones at stride 2, whose loads it saves, two tiles at a time (on one
        # thread, 3x3 at 56x56: 2.9 against 3.3 ms; 3x3 at 14x14, 0.40 against 0.50; 5x5,
        # 240 channels at 28x28: 1.35 against 1.95; at stride 2, 5x5 at 56x56, 144
        # channels: 1.65-1.92 against 1.89-2.78; 3x3: 1.08-1.38 against 1.53-2.12), where
        # a row's chunks of P columns waste few lanes: from 14 columns (a 7x7 plane's
        # rows in chunks would waste 9 of 16 lanes, its tiles across rows 3 of 16)
        self.by_rows = (geo.dilation == (1, 1) and OW >= DW_ROWS_MIN_WIDTH
                        and (geo.stride == (1, 1) and min(KH, KW) >= DW_ROWS_MIN_KERNEL
                             or (KH, KW, sh) in depthwise.ROWS_COPIES and sw == sh))
        # small planes' forward: 16 channels as the lanes (transposed in and out, in
        # registers; 1152 channels, 5x5 at 7x7: 0.25 against 0.39 ms by masked loads;
        # 960, 3x3: 0.14 against 0.17)
        self.by_channels = (P == 16 and self.cog == 1 and not self.by_rows
                            and OH * OW <= DW_CHANNELS_MAX_PLANE)
        # narrower planes at stride 1 whose output rows have the input's pitch: straight
        # from x by masked loads (:mod:`kernels.cpu.depthwise`'s ``forward_masked``): the
        # forward of those that channels as lanes do not take, and the weight gradient of
        # all (960 channels, 3x3 at 7x7, forward+backward: 0.53 against 0.56 ms with
        # channels as the lanes; 1152, 5x5: 1.03 against 1.04)
        self.by_masks = geo.stride == (1, 1) and OW == W and not self.by_rows
        if self.by_masks:
            self.mask_off, self.masks = _plane_masks(H, W, OH, KH, KW, top, left, dh, dw, P)
        # A depthwise multiply-add costs several of a dense one's (a plane's padding,
        # stores and overhead, for a few taps): the work that decides parallel or serial.
        self.work = N * Co * OH * OW * KH * KW * DEPTHWISE_MAC_COST

    def forward(self, x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        from .cpu import depthwise

        cpu = _cpu(self.work)
        N, Co = x.shape[0], w.shape[0]
        y = _alloc.empty((N, Co) + self.geo.out_hw, x.dtype)
        T = self.off.size
        if self.by_channels:
            cpu.dw_forward_channels(x, np.ascontiguousarray(w.reshape(self.w_shape[0],
                                                                      *self.w_shape[2:])),
                                    b, y, self.geo.pads[0], self.geo.pads[2], *self.geo.stride,
                                    *self.geo.dilation, depthwise.chunks(cpu is not _serial()))
            return y
        if self.by_masks:
            cpu.dw_forward_masked(x, np.ascontiguousarray(w.reshape(Co, -1)), b, y,
                                  self.mask_off, self.masks, self.cog)
            return y
        if self.by_rows:
            top, left, _, _, Hq, Wq = self.geometry
            KH, KW = self.w_shape[2:]
            bufs = _part_buffers(cpu, depthwise.rows_buffer(Hq, Wq, KH, self.geo.stride[0]),
                                 x.dtype)
            cpu.dw_forward_rows(x, np.ascontiguousarray(w.reshape(Co, -1)), b, y, top, left,
                                Hq, Wq, KH, KW, self.geo.stride[0], self.cog,
                                depthwise.chunks(cpu is not _serial()), bufs)
            return y
        cpu.dw_forward(x, np.ascontiguousarray(w.reshape(Co, -1)), b, y.reshape(-1),
                       int(np.prod(self.geo.out_hw)), 0, *self.geometry, self.off,
                       _affine((T,), (1,)), _ONE_GROUP[T], 0, self.cog, self.ntile,
                       *self.stores, depthwise.chunks(cpu is not _serial()),
                       _part_buffers(cpu, self.buffer, x.dtype))
        return y

    def weight_grad(self, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        N, Co = g.shape[:2]
        if self.by_masks:
            gw = np.empty((Co, self.mask_off.size), dtype=np.float64)
            cpu = _cpu(self.work)
            cpu.dw_weight_grad_masked(x, g, gw, self.mask_off, self.masks, self.cog,
                                      _part_buffers(cpu, self.mask_off.size * self.P, x.dtype))
            return gw.astype(g.dtype).reshape(self.w_shape)
        if self.by_channels:
            gw = np.empty((Co,) + self.w_shape[2:], dtype=np.float64)
            _cpu(self.work).dw_weight_grad_channels(x, g, gw, self.geo.pads[0],
                                                    self.geo.pads[2], *self.geo.stride,
                                                    *self.geo.dilation)
            return gw.astype(g.dtype).reshape(self.w_shape)
        gw = np.empty((Co, self.off.size), dtype=np.float64)
        cpu, P = _cpu(self.work), self.P
        cpu.dw_weight_grad(x, g.reshape(N, Co, -1), gw, *self.geometry, self.off, self.cog,
                           self.ntile, *self.stores, _part_buffers(cpu, self.buffer, x.dtype),
                           _part_buffers(cpu, (self.ntile + 3) * P, x.dtype, "dw.grad"),
                           _part_buffers(cpu, self.off.size, np.float64, "dw.sums"))
        return gw.astype(g.dtype).reshape(self.w_shape)


def _part_buffers(cpu, size: int, dtype, name: str = "dw.buf") -> np.ndarray:
    """A scratch buffer of ``size`` elements for each part of a kernel of ``cpu`` (rows of
    whole lines: no two threads write one): the kernels without reference counts
    allocate nothing (see :data:`kernels.cpu._jit.WITH_NRT`)."""
    from .cpu.tiles import P

    return _alloc.scratch(name, (_threads(cpu), -(-size // P) * P), dtype)


def _plane_masks(H, W, OH, KH, KW, top, left, dh, dw, P) -> tuple[np.ndarray, np.ndarray]:
    """``(off, masks)`` of :func:`kernels.cpu.depthwise.forward_masked` for an ``H x W``
    plane and ``OH x W`` outputs at stride 1: tap t's offset from an output's position
    to its input's, and, for each vector v of P outputs (rounded up to whole groups of
    DW_MASKED_V) and tap t, the bits of the lanes whose input is inside the plane."""
    from .cpu.depthwise import DW_MASKED_V

    nvec = -(-OH * W // P)
    a = np.arange(-(-nvec // DW_MASKED_V) * DW_MASKED_V * P)
    oh, ow = a // W, a % W
    kh, kw = np.divmod(np.arange(KH * KW), KW)
    ih, iw = oh[:, None] + kh * dh - top, ow[:, None] + kw * dw - left
    inside = (a[:, None] < OH * W) & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
    bits = (inside.reshape(-1, P, KH * KW) << np.arange(P)[:, None]).sum(axis=1)
    return ((kh * dh - top) * W + kw * dw - left).astype(np.int64), bits.astype(np.int64)


class _DepthwiseInputGrad:
    """The plan of a strided depthwise layer's input gradient (one output channel a group;
    at stride 2 undilated, :func:`_depthwise_input_grad2`), by stride phases as
    :class:`_PhasedInputGrad`: each phase of the padded input is a
    stride-1 depthwise correlation of grad_out, padded by the largest shifts ``(Rt, Rl)``
    at row pitch ``Gq = Wq + Rl``, with the taps that land on it: one launch of the
    depthwise kernel, a tap group a phase (each plane of grad_out padded once for all),
    then the phases gathered into grad_x."""

    def __init__(self, x_shape: tuple, w_shape: tuple, geo: Geometry):
        from .cpu.tiles import P

        N, C, H, W = x_shape
        KH, KW = w_shape[2:]
        (sh, sw), (dh, dw) = geo.stride, geo.dilation
        top, bottom, left, right = geo.pads
        Hq, Wq = -(-(H + top + bottom) // sh), -(-(W + left + right) // sw)
        Rt, Rl = (KH - 1) * dh // sh, (KW - 1) * dw // sw
        Gq = Wq + Rl
        ntile = -(-((Hq - 1) * Gq + Wq) // P)
        a = np.arange(ntile * P).reshape(ntile, P)
        i, j = a // Gq, a % Gq
        stores = _lane_map(i * Wq + j, (i < Hq) & (j < Wq))
        self.phase_taps, offs = [], []  # a phase's taps (into w[c].ravel()) and offsets
        for phase in range(sh * sw):
            ph, pw = divmod(phase, sw)
            kh = np.array([k for k in range(KH) if k * dh % sh == ph], dtype=np.int64)
            kw = np.array([k for k in range(KW) if k * dw % sw == pw], dtype=np.int64)
            self.phase_taps.append((kh[:, None] * KW + kw).ravel())
            offs.append(((Rt - kh * dh // sh)[:, None] * Gq + (Rl - kw * dw // sw)).ravel())
        sizes = [t.size for t in self.phase_taps]
        self.args = (Rt, Rl, 1, 1, Hq + Rt, Gq, np.concatenate(offs).astype(np.uint64),
                     np.concatenate(self.phase_taps), np.r_[0, np.cumsum(sizes)].astype(np.int64),
                     Hq * Wq, 1, ntile, *stores)
        self.dims = N, C, H, W, Hq, Wq
        self.geo = geo
        self.work = N * C * geo.out_hw[0] * geo.out_hw[1] * KH * KW * DEPTHWISE_MAC_COST

    def __call__(self, g: np.ndarray, w: np.ndarray) -> np.ndarray:
        from .cpu import depthwise
        from .cpu.tiles import P

        N, C, H, W, Hq, Wq = self.dims
        (sh, sw), cpu = self.geo.stride, _cpu(self.work)
        S = sh * sw
        yph = _alloc.scratch("conv.out", N * C * S * Hq * Wq, g.dtype)
        Rt, Rl, _, _, Hr, Gq = self.args[:6]
        cpu.dw_forward(g, np.ascontiguousarray(w.reshape(C, -1)), _zeros(C, g.dtype), yph,
                       S * Hq * Wq, 0, *self.args, depthwise.chunks(cpu is not _serial()),
                       _part_buffers(cpu, Hr * Gq + depthwise.DW_R * P, g.dtype))
        grad_x = np.empty((N, C, H, W), dtype=g.dtype)
        cpu.unphase(yph, grad_x, self.geo.pads[0], self.geo.pads[2], sh, sw, Hq, Wq)
        return grad_x


def _depthwise_input_grad2(g: np.ndarray, w: np.ndarray, x_shape: tuple,
                           geo: Geometry) -> np.ndarray:
    """grad_x of an undilated stride-2 depthwise layer (one output channel a group) by
    :func:`kernels.cpu.depthwise.input_grad2`, row by row of grad_x: grad_out's plane padded
    by the most that a tap reaches past it (``Rt`` rows above, ``Rl`` columns left; rows
    and columns after, to the last read)."""
    from .cpu import depthwise
    from .cpu.tiles import P

    N, C, H, W = x_shape
    KH, KW = w.shape[2:]
    OH, OW = geo.out_hw
    top, left = geo.pads[0], geo.pads[2]
    Rt, Rl = max(0, -((top - KH + 1) // 2)), max(0, -((left - KW + 1) // 2))
    last_u = -(-((W + 1) // 2) // (2 * P)) * 2 * P - 1  # the last column pair computed
    Gq = Rl + max(OW, last_u + (1 + left) // 2 + 1)
    Gh = Rt + max(OH, (H - 1 + top) // 2 + 1)
    cpu = _cpu(N * C * OH * OW * KH * KW * DEPTHWISE_MAC_COST)
    grad_x = np.empty(x_shape, dtype=g.dtype)
    cpu.dw_input_grad2(g, np.ascontiguousarray(w.reshape(C, KH, KW)), grad_x, top, left, Rt,
                       Rl, Gh, Gq, depthwise.chunks(cpu is not _serial()),
                       _part_buffers(cpu, Gh * Gq + 2 * P, g.dtype))
    return grad_x


@lru_cache(maxsize=64)
def _depthwise_input_grad(x_shape: tuple, w_shape: tuple, geo: Geometry):
    return _DepthwiseInputGrad(x_shape, w_shape, geo)


class _OneGroup(dict):
    """``[0, T]``: every tap one group (see :func:`kernels.cpu.depthwise._forward`)."""

    def __missing__(self, T: int) -> np.ndarray:
        self[T] = np.array([0, T], dtype=np.int64)
        return self[T]


_ONE_GROUP = _OneGroup()


def _serial():
    return _backends()[1]


@lru_cache(maxsize=64)
def _depthwise(x_shape: tuple, w_shape: tuple, geo: Geometry) -> _Depthwise:
    return _Depthwise(x_shape, w_shape, geo)


WEIGHTS_PARALLEL_MIN = 1 << 20  # weights that the relayout copies in parallel, at least


def _tile_weights(w: np.ndarray, groups: int, padded: int, block: int = 0) -> np.ndarray:
    """The tiled kernels' weights, flat, from ``w`` (rows x taps): each group's rows padded
    to ``padded``, in blocks of ``block`` rows (FWD_COB by default), each block tap-major
    (see :func:`kernels.cpu.conv.tap_major`), in a scratch buffer (9 MB of new pages a
    call cost a 512-channel layer 1 ms of page faults)."""
    from .cpu import conv
    from .cpu.tiles import FWD_COB

    B = block or FWD_COB
    wt = _alloc.scratch("conv.weights", (groups * padded // B, w.shape[1], B), w.dtype)
    cpu = conv.parallel if w.size >= WEIGHTS_PARALLEL_MIN else conv.serial
    cpu.tap_major(np.ascontiguousarray(w), wt, groups)
    return wt.reshape(-1)


@lru_cache(maxsize=64)
def _phased_input_grad(x_shape: tuple, w_shape: tuple, geo: Geometry) -> _PhasedInputGrad:
    return _PhasedInputGrad(x_shape, w_shape, geo)


@lru_cache(maxsize=64)
def _tiled(x_shape: tuple, w_shape: tuple, geo: Geometry) -> _Tiled:
    """The :class:`_Tiled` plan of a convolution: training repeats the same shapes, and
    building the plan's tables costs as much as a small layer's kernels."""
    return _Tiled(x_shape, w_shape, geo)


WINOGRAD_CHUNK_BYTES = 1 << 20  # a chunk's transformed inputs and sums: in a core's L2
WINOGRAD_WEIGHT_CHUNK_BYTES = 1 << 20  # the weight gradient's chunk: V, its transpose, G
WINOGRAD_MAX_WEIGHT_BYTES = 16 << 20  # transformed weights: each chunk reads them all, so
# they must stay in the L3 cache (32 MB here); 768 channels' 38 MB took 27 ms at 7x7, the
# tiled kernels 20
WINOGRAD_INPUT_S = 4e-9  # seconds a core takes to transform one channel of one tile, about
WINOGRAD_OUTPUT_S = 1.2e-9  # to transform one channel of one tile's sums back
WINOGRAD_WEIGHT_S = 9e-9  # and to transform one 3x3 kernel of the weights
WINOGRAD_TRANSPOSE_S = 1e-9  # to transpose one channel of one tile's transformed input
WINOGRAD_GRAD_S = 1.5e-9  # to transform one channel of one tile's gradient
WINOGRAD_GAIN = 0.9  # the estimated time against the tiled kernels' from which it is used


class _Winograd:
    """The plan of a 3x3 convolution by F(2x2, 3x3) (:mod:`kernels.cpu.winograd`): 16
    multiply-adds a 2x2 output tile and channel pair where the tiled kernels do 36; at
    stride 2, ``nx`` = 25 (:func:`kernels.cpu.winograd._input_chunk2`).

    Work is split into parts, one a thread: part ``(ip, ic)`` takes the tiles
    ``pset[ip]:pset[ip + 1]`` (whole sets of SET tiles) and the blocks
    ``kset[ic]:kset[ic + 1]`` of KB output channels, in the split whose busiest part has
    the least to do. Many tiles split by tiles; few split by output channels, each part
    then transforming the same inputs (1.2 ms of a 512-channel 7x7 layer's 8; done once
    into a shared chunk, it measured slower): a 7x7 map's 128 tiles at batch 8 are three
    sets, and 14x14's nine split as four and five on two threads."""

    def __init__(self, x_shape: tuple, w_shape: tuple, geo: Geometry):
        N, C = x_shape[:2]
        self.K, self.C = w_shape[0], C
        self.out_shape = (N, self.K, *geo.out_hw)
        self.tiles = N * ((geo.out_hw[0] + 1) // 2) * ((geo.out_hw[1] + 1) // 2)
        self.top, self.left = geo.pads[0], geo.pads[2]
        self.stride, self.W = geo.stride[0], x_shape[3]
        self.nx = 25 if self.stride == 2 else 16
        self._by_threads: dict = {}

    def _split(self, threads: int) -> tuple:
        """``(nt, Tc, pset, kset, Kr)``: the chunk's tiles, the parts' split (see the class)
        and the most output channels a part has."""
        if threads not in self._by_threads:
            from .cpu.winograd import KB, SET

            nset, nkb = -(-self.tiles // SET), -(-self.K // KB)

            def part_time(Tp: int) -> float:  # the busiest part's, estimated
                sets, blocks = -(-nset // Tp), -(-nkb // (threads // Tp))
                return sets * SET * self.nx * (blocks * KB * self.C / MACS_PER_S
                                               + self.C * WINOGRAD_INPUT_S / 16)

            Tp = min((t for t in range(1, threads + 1) if threads % t == 0), key=part_time)
            Tc = threads // Tp
            pset = np.array([nset * i // Tp * SET for i in range(Tp)] + [self.tiles])
            kset = np.array([nkb * i // Tc for i in range(Tc + 1)])
            Kr = int(np.diff(kset).max()) * KB
            per_tile = 4 * self.nx * (self.C + Kr)  # bytes of V and M (nx floats each)
            nt = max(1, WINOGRAD_CHUNK_BYTES // (per_tile * SET)) * SET
            nt = min(nt, -(-int(np.diff(pset).max()) // SET) * SET)
            self._by_threads[threads] = nt, Tc, pset, kset, Kr
        return self._by_threads[threads]

    def forward(self, x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self._run(x, w, b, False)

    def forward_flipped(self, g: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        """As :meth:`_Tiled.forward_flipped`: ``w`` is the weights whose input gradient
        this is (the weight transform reads them flipped; no flipped copy is made)."""
        return self._run(g, w, b, True)

    def _weight_split(self, threads: int) -> tuple:
        """``(nt, Tc, pset, kset)``: the weight gradient's chunk of tiles, and its parts'
        split (:func:`_weight_grad_split`): part ``(ip, ic)`` takes the tiles
        ``pset[ip]:pset[ip + 1]`` and the output channels ``kset[ic]:kset[ic + 1]``."""
        key = ("weights", threads)
        if key not in self._by_threads:
            from .cpu._outer import WC, WK
            from .cpu.winograd import SET

            Tp, Tc = _weight_grad_split(self.tiles, self.K, self.C, threads)
            nset, nkb = -(-self.tiles // SET), -(-self.K // WK)
            pset = np.array([nset * i // Tp * SET for i in range(Tp)] + [self.tiles])
            kset = np.array([nkb * i // Tc * WK for i in range(Tc + 1)])
            Cp, Kr = -(-self.C // WC) * WC, int(np.diff(kset).max())
            per_tile = 64 * (self.C + Cp + Kr)  # bytes of V, its transpose and G
            nt = max(1, WINOGRAD_WEIGHT_CHUNK_BYTES // (per_tile * SET)) * SET
            nt = min(nt, -(-int(np.diff(pset).max()) // SET) * SET)
            self._by_threads[key] = nt, Tc, pset, kset
        return self._by_threads[key]

    def weight_grad(self, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        """grad_w of the convolution for the upstream gradient ``g`` (with AVX-512 only:
        its transposes take 16 x 16 blocks; at stride 1 only; see
        :func:`_winograd_weight_grad_ok`)."""
        from .cpu import winograd
        from .cpu._outer import WC, WK
        from .cpu.winograd import pitch

        nt, Tc, pset, kset = self._weight_split(_threads(_backends()[0]))
        Tp, dt = len(pset) - 1, x.dtype
        parts = Tp * Tc
        Cp, Kw, Kr = -(-self.C // WC) * WC, -(-self.K // WK) * WK, int(np.diff(kset).max())
        dubuf = _alloc.scratch("conv.winograd.du", (Tp, 16 * pitch(Kw * Cp)), dt)
        vbuf = _alloc.scratch("conv.winograd.v", (parts, 16 * pitch(self.C * nt)), dt)
        vtbuf = _alloc.scratch("conv.winograd.vt", (parts, 16 * pitch(nt * Cp)), dt)
        gbuf = _alloc.scratch("conv.winograd.m", (parts, 16 * pitch(Kr * nt)), dt)
        rbuf = _alloc.scratch("conv.winograd.rows", (parts, pitch(self._row_floats())), dt)
        gw = np.empty((self.K, self.C, 3, 3), dtype=dt)
        winograd.weight_grad(np.ascontiguousarray(x), np.ascontiguousarray(g), gw, dubuf, vbuf,
                             vtbuf, gbuf, rbuf, self.top, self.left, nt, Tc, pset, kset)
        return gw

    def _row_floats(self) -> int:
        """The row buffer's floats: a tile row's input rows, zero padded (split by parity
        at stride 2, :func:`kernels.cpu.winograd._input_chunk2`)."""
        from .cpu.winograd import row_half

        TW = (self.out_shape[3] + 1) // 2
        if self.stride == 2:
            return 10 * row_half(self.W, self.left, TW)
        return 4 * (2 * TW + 2)

    def _plan_and_buffers(self, dt) -> tuple:
        """``(nt, Tc, pset, kset, ut, vbuf, mbuf, rbuf)``: the split among this machine's
        threads (:meth:`_split`) and the products' buffers, ``ut`` shared, the rest one
        per part."""
        from .cpu.winograd import KB, pitch

        nt, Tc, pset, kset, Kr = self._split(_threads(_backends()[0]))
        parts, nx = (len(pset) - 1) * Tc, self.nx
        ut = _alloc.scratch("conv.winograd.u", 16 * pitch(int(kset[-1]) * KB * self.C), dt)
        vbuf = _alloc.scratch("conv.winograd.v", (parts, nx * pitch(self.C * nt)), dt)
        mbuf = _alloc.scratch("conv.winograd.m", (parts, nx * pitch(Kr * nt)), dt)
        rbuf = _alloc.scratch("conv.winograd.rows", (parts, pitch(self._row_floats())), dt)
        return nt, Tc, pset, kset, ut, vbuf, mbuf, rbuf

    def _run(self, x: np.ndarray, w: np.ndarray, b: np.ndarray, flip: bool) -> np.ndarray:
        from .cpu import winograd

        nt, Tc, pset, kset, ut, vbuf, mbuf, rbuf = self._plan_and_buffers(x.dtype)
        y = np.empty(self.out_shape, dtype=x.dtype)
        winograd.forward(np.ascontiguousarray(x), np.ascontiguousarray(w), _readonly(b), y,
                         flip, ut, vbuf, mbuf, rbuf, self.top, self.left, nt, Tc, pset, kset,
                         self.stride)
        return y


class _WinogradInputGrad(_Winograd):
    """The plan of a 3x3 stride-2 convolution's input gradient by
    :func:`kernels.cpu.winograd.input_grad2`: tiles of 4x4 grad_x positions, 25
    multiply-adds a tile and channel pair where the phased tiled kernel does 36; grad_out's
    channels are its products' inputs, grad_x's their outputs, split among the threads
    as :class:`_Winograd`'s."""

    def __init__(self, x_shape: tuple, w_shape: tuple, geo: Geometry):
        N, C, H, W = x_shape
        self.K, self.C = C, w_shape[0]
        self.out_shape = tuple(x_shape)
        self.tiles = N * -(-H // 4) * -(-W // 4)
        self.top, self.left, self.OW = geo.pads[0], geo.pads[2], geo.out_hw[1]
        self.stride, self.nx = 2, 25
        self._by_threads: dict = {}

    def _row_floats(self) -> int:
        """The row buffer's floats: a tile row's 3 rows of grad_out, zero padded."""
        from .cpu.winograd import grad_row_pitch

        return 3 * grad_row_pitch(self.OW, self.left, -(-self.out_shape[3] // 4))

    def __call__(self, g: np.ndarray, w: np.ndarray) -> np.ndarray:
        from .cpu import winograd

        nt, Tc, pset, kset, ut, vbuf, mbuf, rbuf = self._plan_and_buffers(g.dtype)
        gx = np.empty(self.out_shape, dtype=g.dtype)
        winograd.input_grad2(np.ascontiguousarray(g), np.ascontiguousarray(w), gx, ut, vbuf,
                             mbuf, rbuf, self.top, self.left, nt, Tc, pset, kset)
        return gx


def _winograd_fits(w_shape: tuple, geo: Geometry) -> bool:
    """Whether :class:`_Winograd` can run a convolution: 3x3, one group, stride 1 or 2."""
    return (tuple(w_shape[2:]) == (3, 3) and geo.groups == 1 and geo.dilation == (1, 1)
            and geo.stride in ((1, 1), (2, 2)))


def _winograd_case(x: np.ndarray, w_shape: tuple, geo: Geometry):
    """``(K, C, tiles, direct multiply-adds)`` of a convolution :class:`_Winograd` may
    run, or None: one it fits, float32 on AVX-512, large enough for the threads, and its
    transformed weights within WINOGRAD_MAX_WEIGHT_BYTES."""
    if x.dtype != np.float32 or not _winograd_fits(w_shape, geo):  # (before any
        return None  # import: conv2d asks this of every call)
    from .cpu._simd import P

    if P != 16:
        return None
    K, C = w_shape[:2]
    N, (OH, OW) = x.shape[0], geo.out_hw
    direct = 9 * K * C * N * OH * OW
    if direct < PARALLEL_MIN_MACS or 64 * K * C > WINOGRAD_MAX_WEIGHT_BYTES:
        return None
    return K, C, N * ((OH + 1) // 2) * ((OW + 1) // 2), direct


def _winograd_ok(x: np.ndarray, w_shape: tuple, geo: Geometry) -> bool:
    """Whether :class:`_Winograd` runs this convolution: one it fits, in float32 on
    AVX-512 (its 24 accumulators of 16 floats need the 32 vector registers; float64's
    would spill), with its estimated time (products, transforms) well below the tiled
    kernels' (a 7x7 map's tiles waste a quarter of their outputs; with few input
    channels, an RGB image's, the output transform takes a large share), and its
    transformed weights (16 floats a 3x3 kernel) within WINOGRAD_MAX_WEIGHT_BYTES."""
    case = _winograd_case(x, w_shape, geo)
    if case is None:
        return False
    K, C, tiles, direct = case
    nx = 25 if geo.stride == (2, 2) else 16  # the transform's positions
    return _winograd_time(nx, K, C, tiles) < WINOGRAD_GAIN * direct / MACS_PER_S


def _winograd_time(nx: int, outputs: int, inputs: int, tiles: int) -> float:
    """The estimated seconds of :func:`kernels.cpu.winograd.forward` or ``input_grad2``
    on one core: ``nx`` products a tile and channel pair (output channels in blocks of KB,
    tiles in sets of SET), the input and output transforms (``nx`` values a tile and
    channel) and the weight transform."""
    from .cpu.winograd import KB, SET

    products = nx * (-(-outputs // KB) * KB) * inputs * (-(-tiles // SET) * SET)
    return (products / MACS_PER_S + nx / 16 * tiles * (inputs * WINOGRAD_INPUT_S
                                                       + outputs * WINOGRAD_OUTPUT_S)
            + outputs * inputs * WINOGRAD_WEIGHT_S)


WINOGRAD_SUMS_BYTES = 16 << 20  # the weight gradient's sums, all threads', split by tiles


def _weight_grad_split(tiles: int, K: int, C: int, threads: int) -> tuple[int, int]:
    """``(Tp, Tc)``: the Winograd weight gradient split among ``threads`` by tiles (each
    part summing all 16 x K x C products of its own) or, where those sums would pass
    WINOGRAD_SUMS_BYTES or the tiles are few, by output channels (the parts then
    transforming the same inputs)."""
    from .cpu._outer import WC, WK
    from .cpu.winograd import SET

    sums = 64 * (-(-K // WK) * WK) * (-(-C // WC) * WC) * threads
    if sums > WINOGRAD_SUMS_BYTES or -(-tiles // SET) < 2 * threads:
        return 1, threads
    return threads, 1


def _winograd_weight_grad_ok(x: np.ndarray, w_shape: tuple, geo: Geometry) -> bool:
    """Whether :meth:`_Winograd.weight_grad` runs this convolution's weight gradient: as
    :func:`_winograd_ok`, estimated with its own padding (channels in blocks of WC and
    WK) and its own costs: the transposed input and the gradient's transform (each part
    transforming all inputs where split by channels), and the sums of all 16 x K x C
    products, zeroed and summed after (once for each part where split by tiles)."""
    case = _winograd_case(x, w_shape, geo) if geo.stride == (1, 1) else None
    if case is None:
        return False
    from .cpu._outer import WC, WK
    from .cpu.winograd import SET

    K, C, tiles, direct = case
    Cp, Kw = -(-C // WC) * WC, -(-K // WK) * WK
    Tp, Tc = _weight_grad_split(tiles, K, C, get_num_threads())
    sums = 2 * Tp * 64 * Kw * Cp  # bytes zeroed, and read to be summed
    estimate = (16 * Kw * Cp * (-(-tiles // SET) * SET) / MACS_PER_S
                + tiles * (Tc * (C * WINOGRAD_INPUT_S + Cp * WINOGRAD_TRANSPOSE_S)
                           + K * WINOGRAD_GRAD_S)
                + K * C * WINOGRAD_WEIGHT_S + sums / COPY_BYTES_PER_S)
    return estimate < WINOGRAD_GAIN * direct / MACS_PER_S


def _winograd_input_grad_ok(x: np.ndarray, w_shape: tuple, geo: Geometry) -> bool:
    """Whether :class:`_WinogradInputGrad` runs this convolution's input gradient: a
    stride-2 one :func:`_winograd_case` takes, estimated as :func:`_winograd_ok` (its
    input transform reading 3x3 patches of grad_out, its output transform writing 4x4
    blocks) against the phased tiled kernel's, whose lanes run past each phase plane's
    rows (:class:`_PhasedInputGrad`: at 14x14, 320 lanes for 196 positions, and 2x
    Winograd's time on 512 channels)."""
    case = _winograd_case(x, w_shape, geo) if geo.stride == (2, 2) else None
    if case is None:
        return False
    from .cpu._simd import P

    K, C, _, direct = case
    N, H, W = x.shape[0], x.shape[2], x.shape[3]
    top, bottom, left, right = geo.pads
    Hq, Wq = -(-(H + top + bottom) // 2), -(-(W + left + right) // 2)
    lanes = 4 * -(-((Hq - 1) * (Wq + 1) + Wq) // P) * P  # the phased kernel's, an image
    direct = direct * max(1.0, lanes / (H * W))
    tiles = N * -(-H // 4) * -(-W // 4)
    return _winograd_time(25, C, K, tiles) < WINOGRAD_GAIN * direct / MACS_PER_S


POINTWISE_CHUNK = 1024  # positions a chunk of the 1x1 weight gradient: 256 KB of 64 channels
# positions of a plane from which it runs: its sums are read and written back after each
# chunk, at most a plane (2048 -> 512 at 7x7: 10.5-11.2 ms, the rows 4.1-4.4; at 14x14,
# 1024 -> 256: 5.2-5.4 against 4.2-4.5)
POINTWISE_MIN_PLANE = 512


def _pointwise_weight_grad_ok(x: np.ndarray, w_shape: tuple, geo: Geometry) -> bool:
    """Whether :func:`_pointwise_weight_grad` runs this convolution's weight gradient: 1x1,
    stride 1, no padding, one group, float32 with AVX-512 (its transposes take 16 x 16
    blocks), planes of POINTWISE_MIN_PLANE positions or more, work enough for the
    threads, and the
    transposed side's channels (the fewer) filling most of their blocks of WC (24 of 64:
    3.1 ms against the rows' 2.8 on MobileNet's 24 -> 144 at 56x56)."""
    if x.dtype != np.float32 or tuple(w_shape[2:]) != (1, 1) or geo.groups != 1:
        return False
    if geo.stride != (1, 1) or any(geo.pads) or geo.dilation != (1, 1):
        return False
    from .cpu._outer import WC
    from .cpu._simd import P

    N, C, H, W = x.shape
    return (P == 16 and H * W >= POINTWISE_MIN_PLANE
            and N * C * w_shape[0] * H * W >= PARALLEL_MIN_MACS
            and _padding_share(min(C, w_shape[0]), WC) <= 0.25)


def _pointwise_weight_grad(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """grad_w of a 1x1 convolution by :func:`kernels.cpu.pointwise.weight_grad`, each
    thread's sums over its images and chunks added after. The transposed copy is the
    smaller of the input and grad_out: with more input channels than output ones, the
    sums are grad_w's transpose, of grad_out transposed (256 -> 64 at 56x56: 6.3 ms
    transposing the input, 5.2-5.6 by the rows)."""
    if x.shape[1] > g.shape[1]:
        return _pointwise_weight_grad(g, x).transpose(1, 0, 2, 3).copy()
    from .cpu import pointwise
    from .cpu._outer import WC, WK

    N, C, H, W = x.shape
    K, dt = g.shape[1], x.dtype
    parts = min(_threads(_backends()[0]), N * -(-H * W // POINTWISE_CHUNK))
    Cp, Kw = -(-C // WC) * WC, -(-K // WK) * WK
    dubuf = _alloc.scratch("conv.pointwise.du", (parts, Kw * Cp), dt)
    vtbuf = _alloc.scratch("conv.pointwise.vt", (parts, POINTWISE_CHUNK * Cp), dt)
    gbuf = _alloc.scratch("conv.pointwise.g", (parts, WK * POINTWISE_CHUNK), dt)
    pointwise.weight_grad(np.ascontiguousarray(x), np.ascontiguousarray(g), dubuf, vtbuf,
                          gbuf, POINTWISE_CHUNK)
    sums = dubuf.sum(axis=0, dtype=np.float64) if parts > 1 else dubuf[0]
    # NOTE: a copy always: one part's sums are the scratch buffer, which the next call
    # overwrites (np.ascontiguousarray returned that buffer itself where K and C fill
    # whole blocks, so a kept grad_w changed under its caller)
    return sums.reshape(Kw, Cp)[:K, :C].astype(dt, copy=True).reshape(K, C, 1, 1)


@lru_cache(maxsize=64)
def _winograd(x_shape: tuple, w_shape: tuple, geo: Geometry) -> _Winograd:
    return _Winograd(x_shape, w_shape, geo)


@lru_cache(maxsize=64)
def _winograd_input_grad(x_shape: tuple, w_shape: tuple, geo: Geometry) -> _WinogradInputGrad:
    return _WinogradInputGrad(x_shape, w_shape, geo)


def _readonly(b: np.ndarray) -> np.ndarray:
    """A read-only view of the bias: the tiled kernel's bias is always one (often the
    shared :func:`_zeros`), so Numba compiles one specialization, not a second for
    writable arrays (a second 1-3 s on a first call)."""
    if not b.flags.writeable:
        return b
    view = b.view()
    view.flags.writeable = False
    return view


@lru_cache(maxsize=64)
def _zeros(n: int, dtype) -> np.ndarray:
    """A shared read-only zero vector (the bias of a kernel whose caller adds its own)."""
    z = np.zeros(n, dtype=dtype)
    z.flags.writeable = False
    return z


PARALLEL_MIN_MACS = 4_000_000  # ~100 us on one core: below, a convolution runs serially
DW_ROWS_MIN_WIDTH = 14  # output columns from which a depthwise forward runs in bands of rows
DW_ROWS_MIN_KERNEL = 3  # and kernel rows and columns
DW_CHANNELS_MAX_PLANE = 100  # output positions up to which depthwise has channels as lanes
DEPTHWISE_MAC_COST = 8  # a depthwise layer's multiply-add against a dense one's, in time


def _macs(x_shape, w_shape, geo: Geometry) -> int:
    """Multiply-adds of the forward convolution (each gradient costs about as much)."""
    return x_shape[0] * w_shape[0] * geo.out_hw[0] * geo.out_hw[1] * int(np.prod(w_shape[1:]))


def _cpu(macs: int):
    """The CPU kernels for a convolution of ``macs`` multiply-adds: all parallel, or all
    serial for a small one, where waking the threads costs more than they save (and the
    first call then compiles only the serial kernels, a tenth of the time)."""
    parallel, serial = _backends()
    return parallel if macs >= PARALLEL_MIN_MACS else serial


@lru_cache(maxsize=1)
def _backends() -> tuple:
    """``(parallel, serial)``: the CPU kernels (imported on first use; an import statement
    a call took 2-3 us)."""
    from .cpu import conv

    return conv.parallel, conv.serial


@lru_cache(maxsize=64)
def _tiled_ok(cout_per_group: int) -> bool:
    """The tiled kernels pad each group's output channels to a multiple of 8, or of 4 with
    AVX-512 (:func:`_few`); below 4, or 3 (an RGB output's 3 of 4), the direct kernels
    waste less (depthwise layers, a grayscale input's gradient). Cached: it is asked on
    every call, and an import statement a call costs microseconds."""
    from .cpu.tiles import P

    return cout_per_group >= (3 if P == 16 else 4)


INPUT_GRAD_MIN_CHANNELS = 3  # input channels per group: the input gradient's rows, padded to
# 8 in the tiled kernel; at 3 (an RGB stem: 7x7 s2 at 224x224) it takes half the direct
# kernel's time, at 1 (depthwise) three times


def _backward_as_forward(w_shape: tuple, geo: Geometry, x_hw):
    """grad_x of a stride-1 convolution is itself a convolution: of grad_out, padded by
    ``d*(K-1) - p``, with the flipped kernel and in/out channels swapped per group
    (:func:`_flipped`). Returns ``(w'.shape, geo')``, or None where that padding would be
    negative."""
    Co, Cg, KH, KW = w_shape
    if geo.stride != (1, 1):
        return None
    (dh, dw), (top, bottom, left, right) = geo.dilation, geo.pads
    pads = ((KH - 1) * dh - top, (KH - 1) * dh - bottom, (KW - 1) * dw - left,
            (KW - 1) * dw - right)
    if min(pads) < 0:
        return None
    G = geo.groups
    return (G * Cg, Co // G, KH, KW), Geometry((1, 1), pads, geo.dilation, G, tuple(x_hw))


def _flipped(w: np.ndarray, groups: int) -> np.ndarray:
    """The weights of :func:`_backward_as_forward`'s convolution:
    ``w'[g*Cg + ci, co, kh, kw] = w[g*Cog + co, ci, KH-1-kh, KW-1-kw]``."""
    Co, Cg, KH, KW = w.shape
    wf = w[:, :, ::-1, ::-1].reshape(groups, Co // groups, Cg, KH, KW).transpose(0, 2, 1, 3, 4)
    return np.ascontiguousarray(wf.reshape(groups * Cg, Co // groups, KH, KW))


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """``y = F.conv2d(x, w, b, stride, padding, dilation, groups)``.

    ``x`` is ``N×C_in×H×W``, ``w`` is ``C_out×(C_in/groups)×KH×KW``, ``b`` is ``C_out`` or
    None; ``padding`` is an int, a pair, ``"valid"`` or ``"same"``.

    >>> x = np.arange(9.0).reshape(1, 1, 3, 3)
    >>> conv2d(x, np.ones((1, 1, 2, 2)), np.array([0.5]))[0, 0].tolist()
    [[8.5, 12.5], [20.5, 24.5]]
    """
    if on_device(x, w, b):
        from .cuda.conv import conv2d as cuda_conv2d
        return cuda_conv2d(x, w, b, stride, padding, dilation, groups)
    x, w, b, geo = _forward_args(x, w, b, stride, padding, dilation, groups, array)
    if b is None:
        b = np.zeros(w.shape[0], dtype=x.dtype)
    if w.shape[1] == 1:
        return _depthwise(x.shape, w.shape, geo).forward(x, w, _readonly(b))
    if _winograd_ok(x, w.shape, geo):
        return _winograd(x.shape, w.shape, geo).forward(x, w, b)
    if _tiled_ok(w.shape[0] // geo.groups):
        return _tiled(x.shape, w.shape, geo).forward(x, w, b)
    y = np.empty((x.shape[0], w.shape[0]) + geo.out_hw, dtype=x.dtype)
    cpu = _cpu(_macs(x.shape, w.shape, geo))
    xp = _padded(x, geo, cpu)
    Hp, Wp = xp.shape[2:]
    cpu.forward(xp.reshape(xp.shape[0], xp.shape[1], Hp * Wp), w, b, y, Wp, *geo.dilation,
                geo.groups, *geo.segments(Wp))
    return y


def conv2d_backward(grad_out, x, w, stride=1, padding=0, dilation=1, groups=1, *,
                    need_input_grad=True):
    """``(grad_x, grad_w, grad_b)``: the gradients of :func:`conv2d` (as torch autograd)
    for the upstream gradient ``grad_out`` of the output's shape.

    ``need_input_grad=False`` skips ``grad_x`` (returned as None), as autograd does for a
    network's first layer, whose input needs no gradient.

    >>> x, w = np.arange(9.0).reshape(1, 1, 3, 3), np.ones((1, 1, 2, 2))
    >>> gx, gw, gb = conv2d_backward(np.ones((1, 1, 2, 2)), x, w)
    >>> gx[0, 0].tolist(), gw[0, 0].tolist(), gb.tolist()
    ([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]], [[8.0, 12.0], [20.0, 24.0]], [4.0])
    """
    need_input_grad = flag(need_input_grad, "need_input_grad")
    if on_device(grad_out, x, w):
        from .cuda.conv import conv2d_backward as cuda_conv2d_backward
        return cuda_conv2d_backward(grad_out, x, w, stride, padding, dilation, groups,
                                    need_input_grad)
    grad_out, x, w, geo = _backward_args(grad_out, x, w, stride, padding, dilation, groups,
                                         array)
    Co, Cg = w.shape[:2]
    grad_b = _bias_grad(grad_out, _cpu(_macs(x.shape, w.shape, geo)))
    depthwise = Cg == 1 and geo.groups > 1  # (a one-channel input: the direct kernels)
    tiled_w = depthwise or _tiled_ok(Co // geo.groups)
    grad_w = None
    if _pointwise_weight_grad_ok(x, w.shape, geo):
        grad_w, tiled_w = _pointwise_weight_grad(x, grad_out), True
    elif tiled_w:
        plan = (_depthwise if depthwise else _winograd
                if _winograd_weight_grad_ok(x, w.shape, geo) else _tiled)
        grad_w = plan(x.shape, w.shape, geo).weight_grad(x, grad_out)
    grad_x, tiled_x = None, False
    if (need_input_grad and depthwise and Co == x.shape[1] and geo.stride == (2, 2)
            and geo.dilation == (1, 1)):
        grad_x, tiled_x = _depthwise_input_grad2(np.ascontiguousarray(grad_out), w, x.shape,
                                                 geo), True
    elif need_input_grad and depthwise and Co == x.shape[1] and geo.stride != (1, 1):
        grad_x, tiled_x = _depthwise_input_grad(x.shape, w.shape, geo)(grad_out, w), True
    elif need_input_grad and depthwise:
        # grad_x of a stride-1 depthwise layer (one output channel a group) is one too
        as_forward = _backward_as_forward(w.shape, geo, x.shape[2:])
        tiled_x = as_forward is not None and Co == x.shape[1]
        if tiled_x:
            wf_shape, geo_x = as_forward
            grad_x = _depthwise(grad_out.shape, wf_shape, geo_x).forward(
                grad_out, _flipped(w, geo.groups), _zeros(x.shape[1], x.dtype))
    elif need_input_grad and _winograd_input_grad_ok(x, w.shape, geo):
        grad_x, tiled_x = _winograd_input_grad(x.shape, w.shape, geo)(grad_out, w), True
    elif need_input_grad and geo.stride != (1, 1):
        tiled_x = Cg >= INPUT_GRAD_MIN_CHANNELS
        if tiled_x:
            grad_x = _phased_input_grad(x.shape, w.shape, geo)(grad_out, w)
    elif need_input_grad:
        as_forward = _backward_as_forward(w.shape, geo, x.shape[2:])
        tiled_x = as_forward is not None and Cg >= INPUT_GRAD_MIN_CHANNELS
        if tiled_x:
            wf_shape, geo_x = as_forward
            plan = _winograd if _winograd_ok(grad_out, wf_shape, geo_x) else _tiled
            grad_x = plan(grad_out.shape, wf_shape, geo_x).forward_flipped(
                grad_out, w, _zeros(x.shape[1], x.dtype))
    if (tiled_x or not need_input_grad) and tiled_w:
        return grad_x, grad_w, grad_b
    direct_x, direct_w = _direct_backward(grad_out, x, w, geo, not tiled_w,
                                          need_input_grad and not tiled_x)
    return (grad_x if tiled_x else direct_x), (grad_w if tiled_w else direct_w), grad_b


def _bias_grad(grad_out: np.ndarray, cpu) -> np.ndarray:
    """grad_out summed per channel (accumulated in float64), in grad_out's dtype."""
    N, C = grad_out.shape[:2]
    sums = np.empty(C, dtype=np.float64)
    cpu.channel_sums(grad_out.reshape(N, C, -1), sums)
    return sums.astype(grad_out.dtype)


def _direct_backward(grad_out, x, w, geo, want_w: bool, want_x: bool):
    """``(grad_x, grad_w)`` from the direct kernels of :mod:`kernels.cpu.conv` (None where
    not wanted): depthwise layers, few channels, and strided input gradients."""
    cpu = _cpu(_macs(x.shape, w.shape, geo))
    xp = _padded(x, geo, cpu)
    N, C, Hp, Wp = xp.shape
    seg = geo.segments(Wp)
    OH, OW = geo.out_hw
    if seg[2] == OW:
        ga = grad_out.reshape(N, w.shape[0], OH * OW)
    else:
        ga = _alloc.scratch("conv.wide", (N, w.shape[0], OH * seg[2]), x.dtype)
        ga.fill(0)
        cpu.widen(grad_out, ga, seg[2])
    grad_w = grad_x = None
    if want_w:
        grad_w = np.empty_like(w)
        grad_b = np.empty(w.shape[0], dtype=x.dtype)
        cpu.grad_weight(ga, xp.reshape(N, C, Hp * Wp), grad_w, grad_b, Wp, *geo.dilation,
                        geo.groups, *seg)
    if want_x:
        gxp = np.zeros((N, C, Hp * Wp), dtype=x.dtype)
        cpu.grad_input(ga, w, gxp, Wp, *geo.dilation, geo.groups, *seg)
        grad_x = _cropped(gxp.reshape(N, C, Hp, Wp), x, geo, cpu)
    return grad_x, grad_w


def _cropped(gxp: np.ndarray, x: np.ndarray, geo: Geometry, cpu) -> np.ndarray:
    """The gradient w.r.t. the padded input, with the padding cut off."""
    if gxp.shape == x.shape:
        return gxp
    grad_x = np.empty_like(x)
    cpu.crop(gxp, grad_x, geo.pads[0], geo.pads[2])
    return grad_x
