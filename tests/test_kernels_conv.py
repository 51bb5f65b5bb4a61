"""kernels.conv2d / conv2d_backward against torch autograd and the NumPy reference."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from backends import cuda_available, to_backend, to_host
from hypothesis import given, settings
from hypothesis import strategies as st

import kernels
from kernels.conv import _geometry
from kernels.cpu._simd import P as LANES
from kernels.reference import conv as ref

torch = pytest.importorskip("torch")
F = torch.nn.functional

pytestmark = pytest.mark.filterwarnings("ignore:Using padding=.same.")


def _clear_plans():
    for plan in (kernels.conv._tiled, kernels.conv._phased_input_grad):
        plan.cache_clear()


@pytest.fixture(autouse=True, scope="module")
def _few_channel_kernel_on_small_cases():
    """The tiled kernel for 3 or 4 output channels a group runs from FEW_MIN_MACS
    multiply-adds; CASES are smaller, so here it runs from 0, and the checks against
    torch cover it too."""
    saved = kernels.conv.FEW_MIN_MACS
    kernels.conv.FEW_MIN_MACS = 0
    _clear_plans()
    yield
    kernels.conv.FEW_MIN_MACS = saved
    _clear_plans()


def test_few_channel_kernel_from_its_threshold(monkeypatch):
    """Blocks of 4 output channels (with AVX-512) where a layer is large enough to repay
    compiling a second kernel: an RGB stem's strided input gradient and an RGB output
    layer, not LeNet conv1's input gradient at batch 64 (29.5M multiply-adds), whose first
    call then compiles only the forward's kernel."""
    from kernels.conv import FEW_MIN_MACS, _backward_as_forward, _phased_input_grad, _tiled
    from kernels.cpu._simd import P

    monkeypatch.setattr(kernels.conv, "FEW_MIN_MACS", 32_000_000)
    _clear_plans()
    try:
        assert FEW_MIN_MACS == 0  # (this module's fixture)
        stem = ((8, 3, 224, 224), (64, 3, 7, 7))
        geo = _geometry(np.empty(stem[0]), np.empty(stem[1]), 2, 3, 1, 1)
        assert _phased_input_grad(*stem, geo).few == (P == 16)
        rgb = ((8, 32, 112, 112), (3, 32, 3, 3))
        geo = _geometry(np.empty(rgb[0]), np.empty(rgb[1]), 1, 1, 1, 1)
        assert _tiled(*rgb, geo).few == (P == 16)
        x_shape, w_shape = (64, 3, 32, 32), (6, 3, 5, 5)
        geo = _geometry(np.empty(x_shape), np.empty(w_shape), 1, 0, 1, 1)
        wf_shape, geo_x = _backward_as_forward(w_shape, geo, x_shape[2:])
        assert not _tiled((64, 6, 28, 28), wf_shape, geo_x).few
    finally:
        _clear_plans()

TOL = {np.float32: dict(rtol=1e-4, atol=1e-4), np.float64: dict(rtol=1e-10, atol=1e-10)}

# x shape, w shape, keyword arguments
CASES = [
    ((2, 3, 8, 9), (4, 3, 3, 2), {}),
    ((2, 3, 8, 8), (5, 3, 3, 3), dict(padding=1)),
    ((2, 4, 9, 7), (6, 2, 3, 3), dict(stride=2, padding=1, groups=2)),
    ((1, 5, 10, 11), (5, 1, 3, 3), dict(padding=(1, 2), dilation=(2, 1), groups=5)),
    ((2, 4, 9, 9), (8, 1, 3, 3), dict(groups=4, stride=(2, 1))),  # depthwise, multiplier 2
    ((3, 8, 7, 7), (9, 8, 1, 1), dict(stride=(1, 2))),
    ((2, 3, 6, 6), (5, 3, 2, 4), dict(padding="same", dilation=(2, 1))),
    ((2, 3, 6, 7), (5, 3, 3, 2), dict(padding="valid")),
    ((2, 6, 12, 12), (7, 6, 5, 5), dict(stride=3, padding=2, dilation=2)),
    ((1, 2, 5, 5), (3, 2, 5, 5), {}),  # 1x1 output
    ((3, 6, 14, 14), (16, 6, 5, 5), {}),  # LeNet conv2
    ((2, 32, 7, 6), (32, 32, 3, 3), dict(padding=1)),
    ((16, 6, 9, 9), (8, 6, 3, 3), {}),  # batch lanes, whole output rows
    ((2, 3, 9, 9), (8, 3, 3, 3), dict(stride=(2, 1), padding=1)),  # width lanes, strided rows
    ((1, 64, 9, 8), (64, 32, 3, 3), dict(stride=2, padding=(1, 0), dilation=(1, 2), groups=2)),
    ((2, 8, 16, 18), (8, 8, 3, 3), dict(padding=(1, 0))),  # width lanes: OW = 16
    ((2, 8, 9, 10), (8, 8, 1, 1), dict(stride=2)),  # stride phases, one of four read
    ((2, 8, 11, 12), (16, 8, 3, 2), dict(stride=(3, 2), padding=(2, 1), dilation=(2, 3))),
    # 3 and 4 output channels: blocks of 4 (batch lanes, an output row's tiles), and an
    # RGB stem's strided input gradient
    ((16, 8, 12, 12), (3, 8, 3, 3), dict(padding=1)),
    ((2, 8, 20, 32), (3, 8, 3, 3), dict(padding=1)),
    ((2, 3, 23, 22), (8, 3, 7, 7), dict(stride=2, padding=3)),
    ((2, 6, 17, 19), (10, 3, 5, 3), dict(stride=(2, 3), padding=(2, 1), groups=2)),
    # depthwise, strided: the input gradient by stride phases
    ((2, 6, 11, 13), (6, 1, 3, 3), dict(stride=2, padding=1, groups=6)),
    ((2, 4, 20, 21), (4, 1, 5, 5), dict(stride=2, padding=2, groups=4)),  # runs of tiles
    ((2, 3, 7, 8), (3, 1, 1, 1), dict(stride=2, groups=3)),  # columns that no tap reaches
    ((2, 3, 8, 9), (3, 1, 2, 2), dict(stride=3, groups=3)),  # phases that no tap reaches
    ((3, 1, 12, 12), (6, 1, 5, 5), dict(padding=1)),  # one input channel, not grouped
    # depthwise 5x5 and more at stride 1: bands of rows (a last band short, columns masked)
    ((2, 3, 17, 18), (6, 1, 5, 5), dict(padding=2, groups=3)),
    ((1, 4, 16, 30), (4, 1, 7, 5), dict(padding=(3, 1), groups=4)),
    ((2, 5, 10, 15), (5, 1, 3, 3), dict(padding=1, groups=5)),  # 3 tiles: the last twice
    # ... and 3x3 and 5x5 at stride 2, by stride phases (odd and even sizes, multiplier 2)
    ((2, 3, 30, 33), (3, 1, 3, 3), dict(stride=2, padding=1, groups=3)),
    ((1, 4, 29, 32), (8, 1, 5, 5), dict(stride=2, padding=(2, 1), groups=4)),
    # depthwise on small planes at stride 1 keeping the width: the forward with channels
    # as the lanes, the weight gradient straight from x by masked loads (dilated;
    # multiplier 2, whose forward is by masks too, and two groups of vectors; fewer
    # output rows than input rows; a plane under a vector; a plane over
    # DW_CHANNELS_MAX_PLANE, by masks both ways)
    ((2, 20, 7, 7), (20, 1, 3, 3), dict(padding=2, dilation=2, groups=20)),
    ((2, 5, 11, 11), (5, 1, 3, 3), dict(padding=2, dilation=2, groups=5)),
    ((3, 6, 9, 9), (12, 1, 5, 5), dict(padding=2, groups=6)),
    ((2, 5, 6, 5), (5, 1, 3, 3), dict(padding=(0, 1), groups=5)),
    ((9, 3, 2, 2), (3, 1, 3, 3), dict(padding=1, groups=3)),
    # ... and otherwise channels as lanes (a block of 16 short, strided)
    ((2, 20, 8, 8), (20, 1, 3, 3), dict(groups=20)),
    ((3, 17, 9, 8), (17, 1, 5, 3), dict(stride=2, padding=(2, 1), groups=17)),
    # the weight gradient with channels as lanes: plain, strided and grouped, and a group's
    # channels padded to a whole block (48 of 64)
    ((2, 32, 12, 12), (64, 32, 3, 3), dict(padding=1)),
    ((2, 64, 23, 24), (128, 32, 3, 3), dict(stride=2, padding=1, groups=2)),
    ((1, 32, 16, 12), (48, 32, 3, 3), dict(padding=(1, 2), dilation=(1, 2))),
    ((2, 30, 10, 10), (64, 30, 3, 3), dict(padding=1)),  # 270 taps: 16 rows at a time, and 14
    # ... in blocks of 16 channels, for 16 to 32 a group (strided; a group's 24 padded to
    # 32; three blocks, which two threads sum in chunks)
    ((2, 64, 11, 11), (64, 32, 3, 3), dict(stride=2, padding=1, groups=2)),
    ((2, 32, 9, 9), (48, 16, 3, 3), dict(padding=1, groups=2)),
    ((2, 48, 8, 8), (48, 16, 3, 3), dict(padding=1, groups=3)),
    # grad_out transposed 16 channels at a time (a block short), or one by one where a
    # block of 16 would cross groups
    ((2, 32, 9, 9), (56, 32, 3, 3), dict(padding=1)),
    ((2, 64, 9, 9), (112, 32, 3, 3), dict(padding=1, groups=2)),
    # small maps: the output channels as the lanes, plain, grouped and strided, padded
    ((2, 16, 5, 5), (64, 16, 3, 3), dict(padding=1)),
    ((2, 32, 6, 6), (128, 16, 3, 3), dict(stride=2, padding=1, groups=2)),
    ((1, 8, 4, 4), (48, 8, 3, 3), dict(padding=1)),
    # ... and in blocks of 16 channels (LeNet's conv2; a block short: 12 of 16), in exact
    # sets of positions where taps read padding (at 16 lanes; an input gradient without
    # padding reads grad_out itself)
    ((2, 8, 4, 4), (12, 8, 3, 3), dict(padding=1)),
    ((3, 16, 4, 4), (16, 16, 3, 3), dict(padding=2)),
    ((2, 16, 3, 3), (16, 16, 2, 2), dict(padding=2)),  # corners that read only padding
]


def _torch(x, w, b, g, **kw):
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    y = F.conv2d(tx, tw, tb, **kw)
    y.backward(torch.tensor(g))
    return y.detach().numpy(), tx.grad.numpy(), tw.grad.numpy(), tb.grad.numpy()


def _tiled_cases(cases, dtype):
    """``(x, w, b, g, kw, plan)`` for the cases that the tiled kernels run (not depthwise,
    4 output channels a group or more), ``plan`` their :class:`kernels.conv._Tiled`."""
    from kernels.conv import _tiled

    for x_shape, w_shape, kw in cases:
        x, w, b, g = _data(x_shape, w_shape, dtype, **kw)
        geo = _geometry(x, w, kw.get("stride", 1), kw.get("padding", 0), kw.get("dilation", 1),
                        kw.get("groups", 1))
        if w_shape[1] > 1 and kernels.conv._tiled_ok(w_shape[0] // geo.groups):
            yield x, w, b, g, kw, _tiled(x.shape, w.shape, geo)


def _data(x_shape, w_shape, dtype, seed=0, **kw):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    out = F.conv2d(torch.tensor(x), torch.tensor(w), **kw).shape
    g = rng.standard_normal(tuple(out)).astype(dtype)
    return x, w, b, g


def _reference(x, w, b, g, stride=1, padding=0, dilation=1, groups=1):
    geo = _geometry(x, w, stride, padding, dilation, groups)
    args = geo.stride, geo.pads, geo.dilation, geo.groups
    return (ref.conv2d(x, w, b, *args),) + ref.conv2d_backward(g, x, w, *args)


def _check(got, want, dtype):
    names = ("y", "grad_x", "grad_w", "grad_b")
    for name, a, e in zip(names, got, want):
        assert a.dtype == dtype and a.shape == e.shape, name
        np.testing.assert_allclose(a, e, **TOL[dtype], err_msg=name)


@pytest.mark.parametrize("threads", ["serial", "parallel"])
@pytest.mark.parametrize("path", ["tiled", "direct"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape,w_shape,kw", CASES)
def test_conv2d_matches_torch_and_reference(x_shape, w_shape, kw, dtype, path, threads,
                                            monkeypatch):
    # every shape through each path: the tiled kernels, and the direct ones they fall back
    # on; each serial (a small convolution) and parallel (a large one)
    monkeypatch.setattr(kernels.conv, "_winograd_ok", lambda x, w_shape, geo: False)
    monkeypatch.setattr(kernels.conv, "_winograd_weight_grad_ok", lambda x, w_shape, geo: False)
    monkeypatch.setattr(kernels.conv, "_tiled_ok", lambda cout: path == "tiled")
    monkeypatch.setattr(kernels.conv, "INPUT_GRAD_MIN_CHANNELS", 1 if path == "tiled" else 1 << 62)
    monkeypatch.setattr(kernels.conv, "PARALLEL_MIN_MACS", 0 if threads == "parallel" else 1e30)
    x, w, b, g = _data(x_shape, w_shape, dtype, **kw)
    want = _torch(x, w, b, g, **kw)
    got = (kernels.conv2d(x, w, b, **kw),) + kernels.conv2d_backward(g, x, w, **kw)
    _check(got, want, dtype)
    _check(_reference(x, w, b, g, **kw), want, dtype)  # the living definition, too


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_pads_by_runs_from_their_threshold(dtype, monkeypatch):
    """Large stride-1 inputs are padded by masked runs of a row (kernels.cpu.conv's
    pad_runs), the rest element by element: with the threshold at 0 every case pads by
    runs, and still matches autograd."""
    monkeypatch.setattr(kernels.conv, "PAD_RUNS_MIN", 0)
    monkeypatch.setattr(kernels.conv, "PARALLEL_MIN_MACS", 0)
    for x_shape, w_shape, kw in CASES:
        x, w, b, g = _data(x_shape, w_shape, dtype, **kw)
        got = (kernels.conv2d(x, w, b, **kw),) + kernels.conv2d_backward(g, x, w, **kw)
        _check(got, _torch(x, w, b, g, **kw), dtype)


def test_chunks_of_images_pad_as_their_whole_tensor(monkeypatch):
    """A copy made a chunk of images at a time takes the kernel its whole tensor's size
    picks: with the threshold at the padded tensors' size, no chunk of one image pads by
    elements at stride 1, and the results still match autograd."""
    from kernels.conv import _tiled
    from kernels.cpu import conv

    def no_elements(x, out, top, left, sh, sw, *args):
        assert (sh, sw) != (1, 1), "a stride-1 chunk padded by elements"
        return real(x, out, top, left, sh, sw, *args)

    monkeypatch.setattr(kernels.conv, "WIDE_CHUNK_BYTES", 1)
    monkeypatch.setattr(kernels.conv, "PARALLEL_MIN_MACS", 0)
    real = conv.parallel.pad_phases
    monkeypatch.setattr(conv.parallel, "pad_phases", no_elements)
    _tiled.cache_clear()
    try:
        for x_shape, w_shape, kw in CASES:
            if x_shape[0] < 2 or w_shape[1] == 1:
                continue
            x, w, b, g = _data(x_shape, w_shape, np.float32, **kw)
            # every tensor padded (x, grad_out) qualifies; a chunk of it alone may not
            monkeypatch.setattr(kernels.conv, "PAD_RUNS_MIN", min(x.size, g.size))
            got = (kernels.conv2d(x, w, b, **kw),) + kernels.conv2d_backward(g, x, w, **kw)
            _check(got, _torch(x, w, b, g, **kw), np.float32)
    finally:
        _tiled.cache_clear()


def test_conv2d_without_bias_and_noncontiguous_input():
    x, w, _, g = _data((2, 3, 9, 8), (4, 3, 3, 3), np.float64)
    xt = np.asfortranarray(x)
    y = kernels.conv2d(xt, w, padding=1)
    np.testing.assert_allclose(y, F.conv2d(torch.tensor(x), torch.tensor(w), padding=1).numpy(),
                               **TOL[np.float64])


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3), groups=st.sampled_from([1, 2, 3]), cg=st.integers(1, 3),
       cog=st.integers(1, 5), h=st.integers(1, 12), wd=st.integers(1, 12),
       kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 3), sw=st.integers(1, 3),
       ph=st.integers(0, 2), pw=st.integers(0, 2), dh=st.integers(1, 2), dw=st.integers(1, 2),
       dtype=st.sampled_from([np.float32, np.float64]), tiled=st.booleans())
def test_conv2d_hypothesis(n, groups, cg, cog, h, wd, kh, kw, sh, sw, ph, pw, dh, dw, dtype,
                           tiled):
    if h + 2 * ph < dh * (kh - 1) + 1 or wd + 2 * pw < dw * (kw - 1) + 1:
        return  # no output: covered by the validation tests
    opts = dict(stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw), groups=groups)
    x, w, b, g = _data((n, groups * cg, h, wd), (groups * cog, cg, kh, kw), dtype, **opts)
    auto = kernels.conv._tiled_ok
    kernels.conv._tiled_ok = lambda cout: tiled
    try:
        got = (kernels.conv2d(x, w, b, **opts),) + kernels.conv2d_backward(g, x, w, **opts)
    finally:
        kernels.conv._tiled_ok = auto
    _check(got, _torch(x, w, b, g, **opts), dtype)


@pytest.mark.parametrize("x_shape,w_shape", [((2, 1, 12, 12), (6, 1, 5, 5)),
                                             ((3, 6, 9, 9), (16, 6, 3, 3))])
def test_conv2d_backward_without_input_grad(x_shape, w_shape):
    """A first layer's backward skips grad_x, and the other gradients stay the same."""
    x, w, b, g = _data(x_shape, w_shape, np.float64)
    gx, gw, gb = kernels.conv2d_backward(g, x, w, need_input_grad=False)
    want = _torch(x, w, b, g)
    assert gx is None
    np.testing.assert_allclose(gw, want[2], **TOL[np.float64])
    np.testing.assert_allclose(gb, want[3], **TOL[np.float64])


@pytest.mark.parametrize("x_shape,w_shape,kw", [
    ((16, 6, 9, 9), (8, 6, 3, 3), {}),
    ((2, 32, 7, 6), (32, 32, 3, 3), dict(padding=1)),
    ((2, 4, 9, 9), (8, 1, 3, 3), dict(groups=4)),
    ((1, 64, 32, 32), (64, 64, 1, 1), {}),  # 1x1 weight gradient in one part (AVX-512)
    ((2, 64, 14, 14), (64, 64, 3, 3), dict(padding=1)),  # Winograd (AVX-512)
    ((2, 64, 7, 7), (64, 16, 3, 3), dict(padding=1, groups=4)),  # channel lanes, exact sets
    ((2, 48, 28, 28), (48, 1, 3, 3), dict(padding=1, groups=48)),  # depthwise
])
def test_conv2d_results_survive_later_calls_and_threads(x_shape, w_shape, kw):
    """The kernels reuse scratch buffers between calls (kernels._alloc.scratch): no result
    may live in one, so a later call, of the same shape or another, in this thread or
    another, must leave earlier results as torch computed them."""
    from concurrent.futures import ThreadPoolExecutor

    cases = [_data(x_shape, w_shape, np.float32, seed=s, **kw) for s in range(4)]

    def run(case, **opts):
        x, w, b, g = case
        return (kernels.conv2d(x, w, b, **opts),) + kernels.conv2d_backward(g, x, w, **opts)

    first = run(cases[0], **kw)
    second = run(cases[1], **kw)  # the same shapes in this thread: the same scratch buffers
    run(_data((3, 6, 14, 14), (16, 6, 5, 5), np.float32))  # other shapes, same buffers
    with ThreadPoolExecutor(3) as pool:
        rest = list(pool.map(lambda case: run(case, **kw), cases[1:] * 2))
    for got, case in zip([first, second] + rest, cases[:2] + cases[1:] * 2):
        _check(got, _torch(*case, **kw), np.float32)
    assert not any(np.shares_memory(a, b) for a, b in zip(first, second) if a is not None)


def test_reference_matches_torch_lenet_conv1():
    x, w, b, g = _data((2, 3, 32, 32), (6, 3, 5, 5), np.float64)
    _check(_reference(x, w, b, g), _torch(x, w, b, g), np.float64)


# ---- every backend (CUDA in Numba's simulator when there is no GPU): small cases ------------

# x shape, w shape, keyword arguments: few weights, since the CUDA weight gradient runs a
# block per weight element (each ~30 ms in the simulator)
BACKEND_CASES = [
    ((2, 3, 5, 5), (2, 3, 2, 2), dict(padding=1)),
    ((1, 4, 7, 6), (6, 2, 3, 2), dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)),
    ((1, 2, 5, 4), (2, 1, 3, 3), dict(padding="same", groups=2)),  # depthwise
    ((2, 5, 4, 4), (1, 5, 2, 1), dict(stride=2, padding="valid")),  # 5 input channels: 2 blocks
]


def _on(backend, *arrays):
    return [to_backend(a, backend) for a in arrays]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape,w_shape,kw", BACKEND_CASES)
def test_conv2d_backends_match_torch_and_cpu(x_shape, w_shape, kw, dtype, backend):
    x, w, b, g = _data(x_shape, w_shape, dtype, **kw)
    dx, dw, db, dg = _on(backend, x, w, b, g)
    got = to_host((kernels.conv2d(dx, dw, db, **kw),) + kernels.conv2d_backward(dg, dx, dw, **kw))
    _check(got, _torch(x, w, b, g, **kw), dtype)
    cpu = (kernels.conv2d(x, w, b, **kw),) + kernels.conv2d_backward(g, x, w, **kw)
    for name, a, c in zip(("y", "grad_x", "grad_w", "grad_b"), got, cpu):
        np.testing.assert_allclose(a, c, **TOL[dtype], err_msg=name)


def test_conv2d_backends_without_bias_or_input_grad(backend):
    x, w, b, g = _data((2, 2, 5, 6), (3, 2, 3, 2), np.float32)
    dx, dw, dg = _on(backend, x, w, g)
    y, want = to_host(kernels.conv2d(dx, dw)), _torch(x, w, np.zeros_like(b), g)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, want[0], **TOL[np.float32])
    gx, gw, gb = to_host(kernels.conv2d_backward(dg, dx, dw, need_input_grad=False))
    assert gx is None
    np.testing.assert_allclose(gw, want[2], **TOL[np.float32])
    np.testing.assert_allclose(gb, want[3], **TOL[np.float32])


@pytest.mark.skipif(not cuda_available(), reason="no CUDA backend")
@pytest.mark.parametrize("taps,xs,plan", [(2, 2048, (8, 4, 1, 2)), (64, 12, (2, 2, 1, 1))])
def test_conv2d_cuda_tap_chunks_small_tiles_and_plane_loops(taps, xs, plan, monkeypatch):
    """Shrunken shared buffers and grid: kernel taps staged in chunks (the last one
    partial), tiles cut down to fit, and all planes looped over by one z-slice of blocks."""
    from kernels.cuda import _launch
    from kernels.cuda import conv as cuda_conv

    monkeypatch.setattr(cuda_conv, "TAPS", taps)
    monkeypatch.setattr(cuda_conv, "XS", xs)
    monkeypatch.setattr(_launch, "MAX_GRID_Z", 1)
    kw = dict(stride=(1, 2), padding=(2, 1), dilation=(2, 1), groups=2)
    x, w, b, g = _data((1, 2, 5, 6), (2, 1, 3, 3), np.float64, **kw)
    assert cuda_conv._plan(*g.shape[2:], w.shape[2:], kw["stride"], kw["dilation"],
                           gather=False) == plan
    dx, dw, db, dg = _on("cuda", x, w, b, g)
    got = to_host((kernels.conv2d(dx, dw, db, **kw),) +
                  kernels.conv2d_backward(dg, dx, dw, **kw))
    _check(got, _torch(x, w, b, g, **kw), np.float64)


X = np.zeros((2, 4, 8, 8))
W = np.zeros((6, 4, 3, 3))


VALIDATION = [
    ((X[0], W), {}, ValueError, "x must have 4"),
    ((X, W[0]), {}, ValueError, "w must have 4"),
    ((X, W.astype(np.float32)), {}, TypeError, "w is float32"),
    ((X.astype(np.int64), W), {}, TypeError, "x must be float"),
    ((X, W, np.zeros(5)), {}, ValueError, "b has 5"),
    ((X, W, np.zeros(6, np.float32)), {}, TypeError, "b is float32"),
    ((X, W), dict(groups=3), ValueError, "groups"),
    ((X, np.zeros((6, 2, 3, 3))), dict(groups=4), ValueError, "groups"),  # 6 % 4
    ((X, np.zeros((6, 3, 3, 3))), {}, ValueError, "w has 3 input channels"),
    ((X, W), dict(groups=0), ValueError, "groups"),
    ((X, W), dict(groups=1.5), TypeError, "groups"),
    ((X, W), dict(stride=0), ValueError, "stride"),
    ((X, W), dict(dilation=(1, 0)), ValueError, "dilation"),
    ((X, W), dict(padding=-1), ValueError, "padding"),
    ((X, W), dict(padding="full"), ValueError, "padding"),
    ((X, W), dict(padding="same", stride=2), ValueError, "padding"),
    ((X, np.zeros((6, 4, 9, 3))), {}, ValueError, "w: the kernel"),
    ((X, W), dict(dilation=4), ValueError, "w: the kernel"),
    ((np.zeros((0, 4, 8, 8)), W), {}, ValueError, "x has a zero-sized"),
]


@pytest.mark.parametrize("args,kw,exc,match", VALIDATION + [
    (([[1.0]], W), {}, TypeError, "x must be a NumPy array"),
])
def test_conv2d_validation(args, kw, exc, match):
    with pytest.raises(exc, match=match):
        kernels.conv2d(*args, **kw)


@pytest.mark.skipif(not cuda_available(), reason="no CUDA backend")
@pytest.mark.parametrize("args,kw,exc,match", VALIDATION)
def test_conv2d_validation_on_device(args, kw, exc, match):
    with pytest.raises(exc, match=match):
        kernels.conv2d(*_on("cuda", *args), **kw)


def test_conv2d_backward_validation(backend):
    g, x, w = _on(backend, np.zeros((2, 6, 6, 6)), X, W)
    g32, g3 = _on(backend, np.zeros((2, 6, 6, 6), np.float32), np.zeros((6, 6, 6)))
    with pytest.raises(ValueError, match="grad_out has shape"):
        kernels.conv2d_backward(g, x, w, padding=1)
    with pytest.raises(TypeError, match="grad_out is float32"):
        kernels.conv2d_backward(g32, x, w)
    with pytest.raises(ValueError, match="grad_out must have 4"):
        kernels.conv2d_backward(g3, x, w)
    with pytest.raises(ValueError, match="groups"):
        kernels.conv2d_backward(g, x, w, groups=4)


@pytest.mark.skipif(not cuda_available(), reason="no CUDA backend")
def test_mixed_host_and_device_arrays_are_refused():
    x, w, b = _on("cuda", X, W, np.zeros(6))
    g = np.zeros((2, 6, 6, 6))
    with pytest.raises(TypeError, match="^w is a NumPy \\(host\\) array"):
        kernels.conv2d(x, W)
    with pytest.raises(TypeError, match="^x is a NumPy \\(host\\) array"):
        kernels.conv2d(X, w, b)
    with pytest.raises(TypeError, match="^b is a NumPy \\(host\\) array"):
        kernels.conv2d(x, w, np.zeros(6))
    with pytest.raises(TypeError, match="^grad_out is a NumPy \\(host\\) array"):
        kernels.conv2d_backward(g, x, w)


def test_scratch_buffers_are_reused_aligned_and_capped(monkeypatch):
    """kernels._alloc.scratch: 64-byte aligned, the same memory for the same name (so a
    call does not page-fault a fresh buffer), other memory for another name or thread,
    and large temporaries not kept."""
    import threading

    from kernels import _alloc

    a = _alloc.scratch("test.a", (3, 100), np.float32)
    b = _alloc.scratch("test.a", 100, np.float64)  # fits: the same buffer
    c = _alloc.scratch("test.b", 10, np.float32)
    assert a.ctypes.data % 64 == 0 and b.ctypes.data % 64 == 0
    assert a.shape == (3, 100) and b.shape == (100,) and b.dtype == np.float64
    assert np.shares_memory(a, b) and not np.shares_memory(a, c)
    other = []
    t = threading.Thread(target=lambda: other.append(_alloc.scratch("test.a", 10, np.float32)))
    t.start()
    t.join()
    assert not np.shares_memory(a, other[0])
    monkeypatch.setattr(_alloc, "SCRATCH_MAX_BYTES", 1000)
    big1 = _alloc.scratch("test.big", 1000, np.float32)
    big2 = _alloc.scratch("test.big", 1000, np.float32)
    assert not np.shares_memory(big1, big2) and big1.ctypes.data % 64 == 0


def test_cases_cover_every_tile_layout():
    """CASES run the tiled kernel in each of its three layouts (batch lanes, tiles of an
    output row, wide tiles across rows, strided ones on the stride phases, grouped ones a
    group of an image at a time), each also with 3 or 4 output channels a group (blocks
    of 4, with AVX-512), so each layout's outputs are checked above."""
    from kernels.conv import _tiled, _tiled_ok
    from kernels.cpu._simd import P

    layouts = set()
    for x_shape, w_shape, kw in CASES:
        x, w = np.zeros(x_shape, np.float32), np.zeros(w_shape, np.float32)
        geo = _geometry(x, w, kw.get("stride", 1), kw.get("padding", 0), kw.get("dilation", 1),
                        kw.get("groups", 1))
        plan = _tiled(x_shape, w_shape, geo)
        layout = "batch" if plan.batch_lanes else "wide" if plan.wide else "rows"
        layouts.add(layout + (" strided" if geo.stride != (1, 1) else ""))
        if plan.few and _tiled_ok(w_shape[0] // geo.groups):
            layouts.add(layout + " few" + (" grouped" if geo.groups > 1 else ""))
        if plan.wide and not plan.channel_lanes and plan._by_groups:  # a group at a time
            layouts.add("wide by groups" + (" strided" if geo.stride != (1, 1) else ""))
    few = {"batch few", "rows few", "wide few", "wide few grouped"} if P == 16 else set()
    assert {"batch", "rows", "wide", "wide strided", "wide by groups strided"} | few <= layouts


def test_cases_cover_the_phased_input_gradient():
    """The strided CASES take grad_x through the stride-phase decomposition
    (kernels.conv._PhasedInputGrad) with a phase that no tap reaches (all zeros), unequal
    strides and dilation, and (with AVX-512) 3 channels a group in blocks of 4, plain and
    grouped, so the gradient checks above cover those paths."""
    from kernels.conv import INPUT_GRAD_MIN_CHANNELS, _phased_input_grad
    from kernels.cpu._simd import P

    seen = set()
    for x_shape, w_shape, kw in CASES:
        x, w = np.zeros(x_shape, np.float32), np.zeros(w_shape, np.float32)
        geo = _geometry(x, w, kw.get("stride", 1), kw.get("padding", 0), kw.get("dilation", 1),
                        kw.get("groups", 1))
        if geo.stride == (1, 1):
            continue
        plan = _phased_input_grad(x_shape, w_shape, geo)
        if (np.diff(plan.class_start) == 0).any():
            seen.add("empty phase")
        if geo.stride[0] != geo.stride[1] and max(geo.dilation) > 1:
            seen.add("unequal strides, dilated")
        if plan.few and w_shape[1] >= INPUT_GRAD_MIN_CHANNELS:
            seen.add("blocks of 4" + (", grouped" if geo.groups > 1 else ""))
    few = {"blocks of 4", "blocks of 4, grouped"} if P == 16 else set()
    assert seen == {"empty phase", "unequal strides, dilated"} | few


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_phased_input_gradient_in_chunks_of_images(dtype, monkeypatch):
    """The strided input gradient pads grad_out and gathers the phases a few images at a
    time, in the same buffers; with chunks of one image (two on two threads) each chunk's
    tile sets hold tiles of its own images only, and grad_x matches autograd."""
    from kernels.conv import _phased_input_grad

    monkeypatch.setattr(kernels.conv, "WIDE_CHUNK_BYTES", 1)
    _phased_input_grad.cache_clear()
    try:
        checked = 0
        for x_shape, w_shape, kw in CASES:
            x, w, b, g = _data(x_shape, w_shape, dtype, **kw)
            geo = _geometry(x, w, kw.get("stride", 1), kw.get("padding", 0),
                            kw.get("dilation", 1), kw.get("groups", 1))
            if (geo.stride == (1, 1) or w_shape[1] < kernels.conv.INPUT_GRAD_MIN_CHANNELS
                    or x_shape[0] < 2):
                continue
            plan = _phased_input_grad(x.shape, w.shape, geo)
            ntile = plan.bases.size // x_shape[0]  # an image's, all phases
            for threads in (1, 2):
                chunks = plan._image_chunks(threads)
                assert [n1 - n0 for n0, n1, *_ in chunks[:-1]] == [threads] * (len(chunks) - 1)
                for n0, n1, s0, s1, bases, ybase in chunks:
                    tiles = plan.tile_sets[s0:s1].ravel()
                    assert set(tiles // ntile) == set(range(n0, n1))
                    assert min(bases[tiles].min(), ybase[tiles].min()) >= 0
            checked += 1
            gx = kernels.conv2d_backward(g, x, w, **kw)[0]
            np.testing.assert_allclose(gx, _torch(x, w, b, g, **kw)[1], **TOL[dtype])
        assert checked >= 3
    finally:
        _phased_input_grad.cache_clear()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weight_gradient_in_chunks_of_images(dtype, monkeypatch):
    """The weight gradient on the stride-phase layout copies a few images at a time into
    one buffer and adds each chunk's sums to the last's, by rows and by columns (at
    stride 1 without padding it reads x itself); with chunks of one image grad_w matches
    autograd."""
    from kernels.conv import _tiled
    from kernels.cpu.conv import WGC_C
    from kernels.cpu.tiles import P

    monkeypatch.setattr(kernels.conv, "WIDE_CHUNK_BYTES", 1)
    _tiled.cache_clear()
    # one block of channels for two threads, on the parallel kernels: the columns' sums
    # in parts, summed after; and columns read from x itself (stride 1, no padding)
    extra = [((4, 32, 24, 24), (WGC_C * P, 32, 3, 3), dict(padding=1)),
             ((2, 32, 10, 10), (64, 32, 3, 3), {})]
    try:
        seen = set()
        for x, w, b, g, kw, plan in _tiled_cases(CASES + extra, dtype):
            x_shape = x.shape
            if plan._wg_batch_lanes or x_shape[0] < 2:
                continue
            kind = "columns" if plan._wg_cols else "rows"
            if plan._wg_cols:
                seen.add("in runs" if plan._rows_in_runs else "one by one")
            if plan._x_is_phase_layout:  # x itself, every image at once
                assert plan._source_chunks(1) == [(0, x_shape[0])]
                kind += " from x"
            else:
                assert plan._source_chunks(1) == [(n, n + 1) for n in range(x_shape[0])]
            seen.add(kind)
            ncb = plan._weight_grad_cols_plan[1] // (WGC_C * P)
            threads = kernels.conv._threads(plan.cpu)
            if plan._wg_cols and ncb % threads and ncb < 4 * threads:
                seen.add("columns in parts")
                assert len(plan._source_chunks(threads)) > 1 or x_shape[0] <= threads
            gw = kernels.conv2d_backward(g, x, w, **kw)[1]
            np.testing.assert_allclose(gw, _torch(x, w, b, g, **kw)[2], **TOL[dtype])
        assert {"columns", "rows", "columns from x", "rows from x", "in runs",
                "one by one"} <= seen
        assert "columns in parts" in seen or numba.get_num_threads() == 1
    finally:
        _tiled.cache_clear()


def test_cases_cover_the_channel_lane_kernels_and_depthwise_kernels():
    """CASES run the forward and take grad_w with the channels as the lanes (plain,
    grouped and strided, with padded channel blocks, and grad_w in blocks of 16 channels
    with 16 lanes), and run the depthwise kernels
    strided (the input gradient at stride 2 by rows of grad_x, at other strides by stride
    phases, with a phase that no tap reaches), by bands of rows (the
    3x3 and 5x5 kernels' copies at strides 1 and 2, and the general one), by masked loads
    (with a multiplier), with channels as lanes and plane by plane, so the checks above
    cover those paths."""
    from kernels.conv import (
        INPUT_GRAD_MIN_CHANNELS,
        _backward_as_forward,
        _depthwise,
        _depthwise_input_grad,
        _tiled,
    )
    from kernels.cpu.tiles import P

    seen = set()
    for x_shape, w_shape, kw in CASES:
        x, w = np.zeros(x_shape, np.float32), np.zeros(w_shape, np.float32)
        geo = _geometry(x, w, kw.get("stride", 1), kw.get("padding", 0), kw.get("dilation", 1),
                        kw.get("groups", 1))
        plan = _depthwise(x_shape, w_shape, geo) if w_shape[1] == 1 else None
        if plan and plan.by_rows:
            # (3x3 and 5x5 run copies of the kernel with the size and stride constants)
            size = w_shape[2:] if w_shape[2:] in ((3, 3), (5, 5)) else "other"
            seen.add(f"depthwise rows {size} stride {geo.stride[0]}")
        if plan and plan.by_channels:
            seen.add("depthwise channels" + (" strided" if geo.stride != (1, 1) else "")
                     + (", weight grad by masks" if plan.by_masks else ""))
        elif plan and plan.by_masks:
            seen.add("depthwise masks" + (" multiplier" if w_shape[0] != x_shape[1] else ""))
        if plan and not plan.by_rows and not plan.by_channels and not plan.by_masks:
            seen.add("depthwise planes" + (" strided" if geo.stride != (1, 1) else ""))
        if w_shape[1] == 1 and geo.groups > 1 and geo.stride != (1, 1):
            if w_shape[0] != x_shape[1]:
                seen.add("depthwise strided, multiplier")
            elif geo.stride == (2, 2) and geo.dilation == (1, 1):
                seen.add("depthwise input grad at stride 2 by rows" + (
                    " 1x1" if w_shape[2:] == (1, 1) else ""))
            else:
                seen.add("depthwise input grad by phases")
                if any(taps.size == 0 for taps in
                       _depthwise_input_grad(x_shape, w_shape, geo).phase_taps):
                    seen.add("depthwise empty phase")
        elif w_shape[0] // geo.groups >= 4 and _tiled(x_shape, w_shape, geo)._wg_cols:
            cog = w_shape[0] // geo.groups
            block = _tiled(x_shape, w_shape, geo)._wgc_block
            seen.add("columns" + (" narrow" if block == 16 else "")
                     + (" grouped strided" if geo.groups > 1 and geo.stride != (1, 1) else "")
                     + (" padded" if cog % block else ""))
            if _tiled(x_shape, w_shape, geo)._wg_exact:
                seen.add("columns exact" + (" strided" if geo.stride != (1, 1) else ""))
        if w_shape[0] // geo.groups >= 4 and _tiled(x_shape, w_shape, geo).channel_lanes:
            seen.add("channel lanes" + (" grouped strided" if geo.groups > 1 and geo.stride
                                        != (1, 1) else "") + (" padded" if w_shape[0] % 64
                                                               else ""))
            if _tiled(x_shape, w_shape, geo).narrow:  # blocks of 16 channels
                seen.add("channel lanes narrow" + (" padded" if w_shape[0] // geo.groups % 16
                                                   else ""))
            if _tiled(x_shape, w_shape, geo).exact:
                seen.add("channel lanes exact" + (" strided" if geo.stride != (1, 1) else ""))
                if not _tiled(x_shape, w_shape, geo).narrow:
                    seen.add("channel lanes exact wide")
        as_forward = _backward_as_forward(w_shape, geo, x_shape[2:])
        if as_forward and w_shape[1] >= INPUT_GRAD_MIN_CHANNELS:
            plan = _tiled((x_shape[0], w_shape[0]) + geo.out_hw, *as_forward)
            if plan.channel_lanes and plan.narrow:
                seen.add("channel lanes narrow flipped" + (" exact" if plan.exact else ""))
    assert {"depthwise strided, multiplier", "depthwise input grad at stride 2 by rows",
            "depthwise input grad at stride 2 by rows 1x1", "depthwise input grad by phases",
            "depthwise empty phase", "depthwise rows (3, 3) stride 1",
            "depthwise rows (5, 5) stride 1", "depthwise rows other stride 1",
            "depthwise rows (3, 3) stride 2", "depthwise rows (5, 5) stride 2",
            "depthwise planes strided",
            "depthwise masks", "depthwise masks multiplier",
            *(["depthwise channels", "depthwise channels strided",  # (16 lanes only)
                "depthwise channels, weight grad by masks", "columns narrow",
                "columns narrow grouped strided", "columns narrow padded"]
              if P == 16 else []), "columns",
            "columns grouped strided", "columns padded", "channel lanes",
            "channel lanes grouped strided", "channel lanes padded", "channel lanes narrow",
            "channel lanes narrow padded", "channel lanes narrow flipped",
            *(["channel lanes exact", "channel lanes exact strided",  # (16 lanes only)
               "channel lanes exact wide",
               "channel lanes narrow flipped exact", "columns exact", "columns exact strided"]
              if P == 16 else [])} <= seen


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_wide_forward_in_chunks_of_images(dtype, monkeypatch):
    """The wide-tile forward copies and computes a few images at a time into one buffer;
    with chunks of one image, each chunk's tile sets hold tiles of its own images only
    (an image's last set, short of FWD_R tiles, repeats one)."""
    from kernels.conv import _tiled
    from kernels.cpu.tiles import FWD_R

    monkeypatch.setattr(kernels.conv, "WIDE_CHUNK_BYTES", 1)
    _tiled.cache_clear()
    try:
        chunked = straddled = 0
        for x, w, b, g, kw, plan in _tiled_cases(CASES, dtype):
            x_shape = x.shape
            if not plan.wide or plan.channel_lanes or plan._x_is_source or x_shape[0] < 2:
                continue
            chunked += 1
            ntile = plan._forward_plan[5].size // x_shape[0]
            tile_sets = plan._forward_plan[6]
            assert len(plan._wide_chunks(1)) == x_shape[0]
            for threads in (1, 2):
                # with threads, a chunk holds as many images (each thread copies the
                # images it computes on)
                for n0, n1, s0, s1, bases in plan._wide_chunks(threads):
                    assert n1 - n0 == threads or n1 == x_shape[0]
                    tiles = tile_sets[s0:s1].ravel()
                    assert set(tiles // ntile) == set(range(n0, n1))
                    assert bases[tiles].min() >= 0
            straddled += FWD_R > 1 and ntile % FWD_R != 0
            np.testing.assert_allclose(kernels.conv2d(x, w, b, **kw), _torch(x, w, b, g, **kw)[0],
                                       **TOL[dtype])
        # (with 8 lanes, fewer of the CASES take the wide tiles)
        assert chunked >= (3 if FWD_R > 1 else 2) and (FWD_R == 1 or straddled >= 1)
    finally:
        _tiled.cache_clear()


CHANNEL_LANE_CASES = [  # (x_shape, w_shape, kw): padded and strided, 1x1 read from x itself
    ((5, 16, 7, 7), (64, 16, 3, 3), dict(padding=1)),
    ((2, 32, 9, 9), (192, 16, 3, 3), dict(padding=1, groups=2)),
    ((3, 300, 4, 4), (64, 300, 1, 1), {}),
    ((2, 32, 6, 6), (128, 32, 3, 3), dict(padding=1)),
    ((3, 12, 9, 9), (100, 6, 3, 3), dict(stride=2, padding=2, groups=2)),
    ((4, 8, 6, 6), (64, 8, 5, 5), dict(padding=4, dilation=2)),
    ((3, 24, 7, 7), (130, 24, 1, 1), {}),
    # blocks of 16 channels in exact sets (16 lanes): 5 images, strided, dilated
    ((5, 32, 7, 7), (32, 16, 3, 3), dict(padding=1, groups=2)),
    ((3, 64, 9, 8), (64, 32, 3, 3), dict(stride=2, padding=(2, 1), groups=2)),
    ((2, 16, 6, 7), (16, 16, 3, 3), dict(padding=2, dilation=2)),
]


@pytest.mark.parametrize("threads", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_channel_lanes_forward_in_parts(threads, dtype, monkeypatch):
    """The channels-as-lanes forward split among threads: each part copies its own
    weights (flipped for an input gradient) and source, whatever the split of the batch
    and of the channel blocks; and the weight gradient by columns for every thread count
    (with fewer channel blocks than threads, it sums chunks of pieces after)."""
    from kernels.conv import _tiled

    monkeypatch.setattr(kernels.conv, "_threads", lambda cpu: threads)
    for x_shape, w_shape, kw in CHANNEL_LANE_CASES:
        x, w, b, g = _data(x_shape, w_shape, dtype, **kw)
        geo = _geometry(x, w, kw.get("stride", 1), kw.get("padding", 0), kw.get("dilation", 1),
                        kw.get("groups", 1))
        y, gx, gw, _ = _torch(x, w, b, g, **kw)
        plan = _tiled(x.shape, w.shape, geo)
        plan.__dict__["channel_lanes"] = True
        try:
            np.testing.assert_allclose(plan.forward(x, w, b), y, **TOL[dtype])
        finally:
            del plan.__dict__["channel_lanes"]
        # the input gradient as the forward of the flipped weights, read from w itself
        as_forward = kernels.conv._backward_as_forward(w.shape, geo, x.shape[2:])
        if as_forward is not None:
            back = _tiled(g.shape, *as_forward)
            back.__dict__["channel_lanes"] = True
            try:
                np.testing.assert_allclose(back.forward_flipped(g, w, np.zeros_like(x[0, :, 0, 0])),
                                           gx, **TOL[dtype])
            finally:
                del back.__dict__["channel_lanes"]
        # the weight gradient by columns: straight into grad_w, or in chunks summed after
        if plan._wg_cols:
            np.testing.assert_allclose(plan.weight_grad(x, g), gw, **TOL[dtype])


def test_channel_lanes_split_and_classes():
    """Each split of the threads covers the batch and the channel blocks once, the cheaper
    copies win, and a set of positions computes the taps whose kernel row and column each
    read the input for some position of it (the others read only padding)."""
    from kernels.conv import _tiled
    from kernels.cpu.tiles import CL_X

    x, w = np.zeros((8, 32, 7, 7), np.float32), np.zeros((256, 32, 3, 3), np.float32)
    plan = _tiled(x.shape, w.shape, _geometry(x, w, 1, 1, 1, 1))
    # weights 295 KB, source 82 KB: the batch is split, each thread copying all weights
    assert plan._channels_split(2) == (1, 2)
    assert plan._channels_split(4) == (1, 4)
    assert plan._channels_split(8) == (2, 4)  # 4 blocks of 64 channels
    Tc, pixsrc, pixy, pset, set_class, tap, off, class_start, by_position = \
        plan._channels_schedule(4)
    assert (Tc, pset.tolist()) == (4, [0, -(-8 * 49 // CL_X)])
    assert sorted(set(pixy.tolist())) == sorted(
        n * 256 * 49 + i for n in range(8) for i in range(49))
    # the order the kernel's transposing store relies on: slot p*8 + n is image n's
    # position p (padding is read, so positions come first); the last set repeats
    q = np.arange(8 * 49)
    assert by_position and (pixy[q] == q % 8 * 256 * 49 + q // 8).all()
    assert (pixy[8 * 49:] == pixy[8 * 49 - 1]).all()
    oh, ow = pixy % 49 // 7, pixy % 7
    for s, c in enumerate(set_class):
        slots = range(s * CL_X, (s + 1) * CL_X)
        rows = {kh for kh in range(3) for q in slots if 0 <= oh[q] + kh - 1 < 7}
        cols = {kw for kw in range(3) for q in slots if 0 <= ow[q] + kw - 1 < 7}
        want = {(ci * 3 + kh) * 3 + kw for ci in range(32) for kh in rows for kw in cols}
        assert set(tap[class_start[c]:class_start[c + 1]].tolist()) == want
    assert np.diff(class_start)[set_class].sum() < 0.9 * set_class.size * 32 * 9


@pytest.mark.skipif(LANES != 16, reason="exact sets run with 16 lanes (AVX-512) only")
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_channel_lanes_exact_sets(threads):
    """Exact sets: each part's sets hold each of its (image, position) pairs, by slot,
    with the pair's own class (the taps that read the image, and no other), every tap
    of a set reading inside its image in ``x``; a class's last set repeats a pair. The
    weight gradient by class visits each pair once with its class's taps."""
    from kernels.conv import _tiled
    from kernels.cpu.tiles import CL_X, CLE_X

    for x_shape, w_shape, kw in [((5, 32, 7, 7), (32, 16, 3, 3), dict(padding=1, groups=2)),
                                 ((3, 64, 9, 8), (64, 32, 3, 3),
                                  dict(stride=2, padding=(2, 1), groups=2)),
                                 ((2, 16, 6, 7), (16, 16, 3, 3), dict(padding=2, dilation=2)),
                                 ((5, 16, 7, 7), (64, 16, 3, 3), dict(padding=1))]:  # (wide)
        x, w = np.zeros(x_shape, np.float32), np.zeros(w_shape, np.float32)
        geo = _geometry(x, w, kw.get("stride", 1), kw["padding"], kw.get("dilation", 1),
                        kw.get("groups", 1))
        plan = _tiled(x_shape, w_shape, geo)
        assert plan.exact
        X = CLE_X if plan.narrow else CL_X
        N, C, H, W = x_shape
        Cg, KH, KW = w_shape[1:]
        (OH, OW), (sh, sw), (dh, dw) = geo.out_hw, geo.stride, geo.dilation
        top, left = geo.pads[0], geo.pads[2]
        Tc, pixsrc, slot, pset, set_class, tap, off, class_start, by_position = \
            plan._exact_schedule(threads)
        Tp = pset.size - 1
        assert not by_position and Tp * Tc <= threads and Tp <= N
        for ip in range(Tp):
            n0, n1 = ip * N // Tp, (ip + 1) * N // Tp
            q = np.arange(pset[ip] * X, pset[ip + 1] * X)
            assert sorted(set(slot[q].tolist())) == list(range((n1 - n0) * OH * OW))
            n, p = n0 + slot[q] // (OH * OW), slot[q] % (OH * OW)
            oh, ow = p // OW, p % OW
            assert (pixsrc[q] == n * C * H * W + (oh * sh - top) * W + ow * sw - left).all()
            for s in range(pset[ip], pset[ip + 1]):
                taps = tap[class_start[set_class[s]]:class_start[set_class[s] + 1]]
                ci, kh, kwi = taps // (KH * KW), taps // KW % KH, taps % KW
                for k in range(s * X, (s + 1) * X):
                    h, j = oh[k - q[0]] * sh - top, ow[k - q[0]] * sw - left
                    want = {(c * KH + a) * KW + b for c in range(Cg) for a in range(KH)
                            for b in range(KW) if 0 <= h + a * dh < H and 0 <= j + b * dw < W}
                    assert set(taps.tolist()) == want
                    # ... read inside the image, by the offsets
                    at = pixsrc[k] + off[class_start[set_class[s]]:class_start[set_class[s] + 1]
                                         ].astype(np.int64)
                    assert (at == n[k - q[0]] * C * H * W + ci * H * W + (h + kh * dh) * W
                            + j + kwi * dw).all()
        # the weight gradient's pairs: each once, by class, with the class's taps (a
        # multiple of 12, the rest tap id T, reading the class's first tap's element)
        pixsrc, slot, pair_start, tap, off, class_start, cbase = plan._weight_grad_exact_plan
        T = Cg * KH * KW
        assert sorted(slot.tolist()) == list(range(N * OH * OW))
        n, p = slot // (OH * OW), slot % (OH * OW)
        h, j = p // OW * sh - top, p % OW * sw - left
        assert (pixsrc == n * C * H * W + h * W + j).all()
        for k in range(pair_start.size - 1):
            taps = tap[class_start[k]:class_start[k + 1]].astype(np.int64)
            offs = off[class_start[k]:class_start[k + 1]].astype(np.int64)
            assert taps.size % 12 == 0 and (offs[taps == T] == offs[0]).all()
            real, offs = taps[taps < T], offs[taps < T]
            ci, kh, kwi = real // (KH * KW), real // KW % KH, real % KW
            assert (offs == ci * H * W + kh * dh * W + kwi * dw).all()
            for i in range(pair_start[k], pair_start[k + 1]):
                want = {(c * KH + a) * KW + b for c in range(Cg) for a in range(KH)
                        for b in range(KW) if 0 <= h[i] + a * dh < H and 0 <= j[i] + b * dw < W}
                assert set(real.tolist()) == want


def _geo(x, w, kw):
    return _geometry(x, w, kw.get("stride", 1), kw.get("padding", 0), kw.get("dilation", 1),
                     kw.get("groups", 1))


WINOGRAD_CASES = [c for c in CASES if kernels.conv._winograd_fits(
    c[1], _geo(np.zeros(c[0]), np.zeros(c[1]), c[2]))] + [
    ((3, 40, 13, 11), (24, 40, 3, 3), dict(padding=1)),  # odd output: tiles cropped
    ((2, 19, 9, 16), (36, 19, 3, 3), {}),  # no padding
    ((2, 16, 15, 15), (70, 16, 3, 3), dict(padding=2)),  # rows and columns past the input
    ((1, 24, 30, 7), (17, 24, 3, 3), dict(padding=(1, 0))),  # tile rows of 3 tiles
    ((2, 20, 20, 20), (9, 20, 3, 3), dict(padding="same")),
    ((1, 8, 3, 40), (8, 8, 3, 3), dict(padding=(0, 1))),  # one tile row, 20 tiles of it
    # stride 2 (the forward and the input gradient): 25 positions
    ((2, 16, 56, 56), (24, 16, 3, 3), dict(stride=2, padding=1)),  # ResNet's, odd left
    ((2, 19, 9, 16), (36, 19, 3, 3), dict(stride=2)),  # even left: parities swap
    ((3, 40, 13, 11), (24, 40, 3, 3), dict(stride=2, padding=1)),  # odd output: cropped
    ((2, 16, 15, 15), (70, 16, 3, 3), dict(stride=2, padding=2)),
    ((1, 24, 30, 7), (17, 24, 3, 3), dict(stride=2, padding=(1, 0))),
    ((2, 8, 10, 10), (8, 8, 3, 3), dict(stride=2, padding=(2, 3))),
    ((2, 16, 58, 58), (16, 16, 3, 3), dict(stride=2)),  # input columns no tile reads
    ((1, 8, 3, 80), (8, 8, 3, 3), dict(stride=2, padding=(0, 1))),  # one tile row of 20
    ((2, 16, 12, 12), (16, 16, 3, 3), dict(stride=2, padding=3)),  # grad_out columns skipped
]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_winograd_matches_torch(dtype, threads, monkeypatch):
    """F(2x2, 3x3) for every 3x3 stride-1 case, forward, input gradient (the forward of
    the flipped weights, read from w itself) and weight gradient, and the stride-2
    forward and input gradient (25 positions), against autograd:
    whatever the split among threads (by tiles, or by output channels when tiles are
    few) and the chunks (one set of tiles each here: chunk ends fall mid-row and
    mid-image)."""
    from kernels.conv import _Winograd
    from kernels.cpu._simd import P

    monkeypatch.setattr(kernels.conv, "_threads", lambda cpu: threads)
    for chunk in (1, 1 << 20):
        monkeypatch.setattr(kernels.conv, "WINOGRAD_CHUNK_BYTES", chunk)
        monkeypatch.setattr(kernels.conv, "WINOGRAD_WEIGHT_CHUNK_BYTES", chunk)
        # the weight gradient split by output channels (one set of sums), then by tiles
        # where there are enough (each part's own sums, added after)
        monkeypatch.setattr(kernels.conv, "WINOGRAD_SUMS_BYTES", 0 if chunk == 1 else 1 << 40)
        for x_shape, w_shape, kw in WINOGRAD_CASES:
            x, w, b, g = _data(x_shape, w_shape, dtype, **kw)
            geo = _geo(x, w, kw)
            y, gx, gw, _ = _torch(x, w, b, g, **kw)
            plan = _Winograd(x.shape, w.shape, geo)
            np.testing.assert_allclose(plan.forward(x, w, b), y, **TOL[dtype],
                                       err_msg=f"{x_shape} {w_shape} {kw}")
            if geo.stride != (1, 1):
                gx_w = kernels.conv._WinogradInputGrad(x.shape, w.shape, geo)(g, w)
                np.testing.assert_allclose(gx_w, gx, **TOL[dtype],
                                           err_msg=f"{x_shape} {w_shape} {kw}")
                continue
            if P == 16:  # (its transposes take 16 x 16 blocks: conv2d uses it with AVX-512)
                np.testing.assert_allclose(plan.weight_grad(x, g), gw, **TOL[dtype],
                                           err_msg=f"{x_shape} {w_shape} {kw}")
            wf_shape, geo_x = kernels.conv._backward_as_forward(w.shape, geo, x.shape[2:])
            zeros = np.zeros(x_shape[1], dtype)
            gx_w = _Winograd(g.shape, wf_shape, geo_x).forward_flipped(g, w, zeros)
            np.testing.assert_allclose(gx_w, gx, **TOL[dtype], err_msg=f"{x_shape} {w_shape}")


def test_winograd_weight_grad_fold_ignores_what_the_output_held():
    """The fold ``grad_w = G^T dU G`` of each part's sums, against NumPy's, into an output
    array full of NaN (it is allocated uninitialized: accumulators started from one of
    its elements times 0 made every sum NaN when that memory held a NaN)."""
    from kernels.cpu import winograd
    from kernels.cpu._outer import WC
    from kernels.cpu._parts import run_parts

    K, C, parts = 5, 3, 2
    Cp = -(-C // WC) * WC
    xs = winograd.pitch(K * Cp)
    rng = np.random.default_rng(0)
    du = rng.standard_normal((parts, 16 * xs)).astype(np.float32)
    gw = np.full((K, C, 3, 3), np.nan, np.float32)
    run_parts(winograd._weight_grad_out, 1, du, gw)
    G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
    sums = du.astype(np.float64).sum(0)[:16 * xs].reshape(16, xs)[:, :K * Cp]
    sums = sums.reshape(4, 4, K, Cp)[..., :C]
    want = np.einsum("ia,ijkc,jb->kcab", G, sums, G)
    np.testing.assert_allclose(gw, want, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(LANES != 16, reason="Winograd runs with 16 lanes (AVX-512) only; its "
                                       "sets are 3*P tiles")
def test_winograd_splits_and_chunks():
    """Many tiles are split among the threads by tiles, few (a 7x7 map) by output
    channels; a chunk's V and M stay within WINOGRAD_CHUNK_BYTES where a set allows."""
    from kernels.conv import WINOGRAD_CHUNK_BYTES, _Winograd
    from kernels.cpu.winograd import KB, SET

    x, w = np.zeros((8, 64, 56, 56), np.float32), np.zeros((64, 64, 3, 3), np.float32)
    plan = _Winograd(x.shape, w.shape, _geometry(x, w, 1, 1, 1, 1))
    nt, Tc, pset, kset, Kr = plan._split(2)
    assert (Tc, pset.tolist(), kset.tolist(), Kr) == (1, [0, 65 * SET, 8 * 28 * 28], [0, 8],
                                                     64)
    assert nt % SET == 0 and nt * 64 * (64 + 64) <= WINOGRAD_CHUNK_BYTES
    x, w = np.zeros((8, 512, 7, 7), np.float32), np.zeros((512, 512, 3, 3), np.float32)
    plan = _Winograd(x.shape, w.shape, _geometry(x, w, 1, 1, 1, 1))
    nt, Tc, pset, kset, Kr = plan._split(2)
    assert (Tc, pset.tolist(), kset.tolist(), Kr, nt) == (2, [0, 128], [0, 32, 64], 256, SET)
    assert 64 // KB == 8
    # the weight gradient: by tiles where each thread's sums of all 16 x K x C products
    # stay small, else by output channels (in blocks of WK)
    from kernels.conv import _weight_grad_split
    from kernels.cpu._outer import WK

    assert _weight_grad_split(8 * 28 * 28, 64, 64, 2) == (2, 1)
    assert _weight_grad_split(8 * 4 * 4, 512, 512, 2) == (1, 2)  # 2 x 17 MB of sums
    assert _weight_grad_split(40, 64, 64, 2) == (1, 2)  # one set of tiles
    nt, Tc, pset, kset = plan._weight_split(2)
    assert (Tc, pset.tolist(), kset.tolist()) == (2, [0, 128], [0, 258, 516])
    assert kset[1] % WK == 0


def test_winograd_runs_the_resnet_3x3_layers():
    """conv2d takes F(2x2, 3x3) for ResNet's 3x3 layers at batch 8, stride 1 and 2,
    where it can (float32 with AVX-512), and never for stride 3, grouped, dilated, 5x5,
    float64 or tiny ones; conv2d_backward for the stride-1 weight gradients up to 256
    channels."""
    from kernels.conv import _winograd_ok
    from kernels.cpu._simd import P

    def ok(x_shape, w_shape, dtype=np.float32, **kw):
        x, w = np.zeros(x_shape, dtype), np.zeros(w_shape, dtype)
        return _winograd_ok(x, w_shape, _geo(x, w, kw))

    def weights_ok(x_shape, w_shape, **kw):
        x, w = np.zeros(x_shape, np.float32), np.zeros(w_shape, np.float32)
        return kernels.conv._winograd_weight_grad_ok(x, w_shape, _geo(x, w, kw))

    for c, hw in ((64, 56), (128, 28), (256, 14), (512, 7)):
        assert ok((8, c, hw, hw), (c, c, 3, 3), padding=1) == (P == 16)
        # the weight gradient's sums of 512 channels fill the cache: tiled at 7x7
        assert weights_ok((8, c, hw, hw), (c, c, 3, 3), padding=1) == (P == 16 and c < 512)
    assert not ok((8, 64, 56, 56), (64, 64, 3, 3), np.float64, padding=1)
    def input_ok(x_shape, w_shape, **kw):
        x, w = np.zeros(x_shape, np.float32), np.zeros(w_shape, np.float32)
        return kernels.conv._winograd_input_grad_ok(x, w_shape, _geo(x, w, kw))

    for c, hw in ((128, 56), (256, 28), (512, 14)):  # the first of each stage's blocks
        s2 = dict(stride=2, padding=1)
        assert ok((8, c, hw, hw), (c, c, 3, 3), **s2) == (P == 16 and c < 512)
        assert input_ok((8, c, hw, hw), (c, c, 3, 3), **s2) == (P == 16)
        assert not weights_ok((8, c, hw, hw), (c, c, 3, 3), **s2)
        assert not input_ok((8, c, hw, hw), (c, c, 3, 3), padding=1)
    assert not ok((8, 128, 57, 57), (128, 128, 3, 3), stride=3, padding=1)
    assert not ok((8, 128, 56, 56), (128, 4, 3, 3), padding=1, groups=32)
    assert not ok((8, 64, 56, 56), (64, 64, 3, 3), padding=2, dilation=2)
    assert not ok((8, 64, 56, 56), (64, 64, 5, 5), padding=2)
    assert not ok((2, 8, 10, 10), (8, 8, 3, 3), padding=1)
    assert not ok((8, 3, 224, 224), (64, 3, 3, 3), padding=1)  # 3 input channels
    assert not ok((8, 768, 7, 7), (768, 768, 3, 3), padding=1)  # 38 MB of weights


POINTWISE_CASES = [
    ((2, 19, 16, 16), 37),  # channels in no whole block: K past its blocks of 6, C of 64
    ((3, 64, 8, 6), 256),
    ((2, 70, 4, 12), 71),  # two blocks of 64 input channels, the second 6 of them
    ((1, 5, 16, 1), 6),  # one column
    ((2, 40, 8, 8), 9),  # more input channels than output ones: grad_out transposed
    ((2, 24, 5, 7), 30),  # planes of 35 positions: a transposed block of 3 columns
]


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_pointwise_weight_grad_matches_torch(threads, monkeypatch):
    """A 1x1 layer's weight gradient as one matrix product (the input transposed a chunk
    of positions at a time), against autograd in float64: whatever the split of the
    images and chunks among threads and the chunk size (a chunk of 16 positions; 1024)."""
    from kernels.cpu._simd import P

    if P != 16:
        pytest.skip("needs 16 float32 lanes (AVX-512): conv2d does not use it on AVX2")
    monkeypatch.setattr(kernels.conv, "_threads", lambda cpu: threads)
    for chunk in (16, 1024):
        monkeypatch.setattr(kernels.conv, "POINTWISE_CHUNK", chunk)
        for x_shape, K in POINTWISE_CASES:
            x, w, b, g = _data(x_shape, (K, x_shape[1], 1, 1), np.float64)
            x, g = x.astype(np.float32), g.astype(np.float32)
            _, _, gw, _ = _torch(x.astype(np.float64), w, b, g.astype(np.float64))
            got = kernels.conv._pointwise_weight_grad(x, g)
            assert got.dtype == np.float32 and got.shape == w.shape
            np.testing.assert_allclose(got, gw, **TOL[np.float32], err_msg=f"{x_shape} {K}")


def test_pointwise_weight_grad_runs_the_expanding_1x1_layers():
    """conv2d_backward takes the 1x1 matrix product for ResNet's 1x1 layers at 56x56 and
    28x28 (float32 on AVX-512), and the rows elsewhere: 7x7 and 14x14 planes (too few
    positions to repay the sums' round trip), MobileNet's 24-channel side (padded to 64),
    strided, padded, float64 or tiny layers."""
    from kernels.conv import _pointwise_weight_grad_ok
    from kernels.cpu._simd import P

    def ok(x_shape, K, dtype=np.float32, **kw):
        x, w = np.zeros(x_shape, dtype), np.zeros((K, x_shape[1], 1, 1), dtype)
        return _pointwise_weight_grad_ok(x, w.shape, _geo(x, w, kw))

    for C, K, hw in ((64, 256, 56), (128, 512, 28), (64, 64, 56), (256, 64, 56),
                     (56, 144, 56), (64, 128, 30)):
        assert ok((8, C, hw, hw), K) == (P == 16)
    assert not ok((8, 24, 56, 56), 144)
    assert not ok((8, 144, 56, 56), 24)
    assert not ok((8, 256, 14, 14), 1024)
    assert not ok((8, 512, 7, 7), 2048)
    assert not ok((8, 256, 56, 56), 512, stride=2)
    assert not ok((8, 64, 56, 56), 256, padding=1)
    assert not ok((8, 64, 56, 56), 256, np.float64)
    assert not ok((1, 8, 16, 16), 16)


@pytest.mark.parametrize("OH,OW,KH,H,top,sh,dh", [
    (7, 7, 5, 7, 2, 1, 1),  # EfficientNet's 5x5 at 7x7: a group an output row
    (7, 7, 3, 7, 1, 1, 1),
    (10, 10, 3, 10, 1, 1, 1),  # rows of 10: groups straight through the plane
    (4, 7, 3, 7, 1, 2, 1),  # strided
    (7, 7, 3, 7, 2, 1, 2),  # dilated
    (3, 3, 5, 3, 3, 1, 1),  # rows that read only padding
])
def test_depthwise_channels_position_groups(OH, OW, KH, H, top, sh, dh):
    """The depthwise channels-as-lanes forward's groups of 8 positions cover every output
    position once, in order, each group's taps holding every kernel row that reads the
    input for a position of it (of its row, where a group is a row), and the groups an
    output row each only where that computes fewer lanes times taps."""
    from kernels.cpu.depthwise import _position_groups

    KW = 3
    gq, gk = _position_groups(OH, OW, KH, KW, H, top, sh, dh)
    rows = [{kh for kh in range(KH) if 0 <= oh * sh + kh * dh - top < H} for oh in range(OH)]
    by_row = len(gq) == OH * -(-OW // 8)
    covered = {}
    for g, q0 in enumerate(gq):
        end = (q0 // OW + 1) * OW if by_row else q0 + 8
        for q in range(q0, min(end, q0 + 8, OH * OW)):
            covered[q] = g
        need = set().union(*(rows[q // OW] for q in range(q0, min(end, q0 + 8, OH * OW))))
        got = set(range(gk[g, 0] // KW, gk[g, 1] // KW)) if gk[g, 1] > gk[g, 0] else set()
        assert gk[g, 0] % KW == 0 and gk[g, 1] % KW == 0 and need <= got
    assert sorted(covered) == list(range(OH * OW)) and list(gq) == sorted(gq)
    lanes_taps = {True: sum(-(-OW // 8) * 8 * len(r) for r in rows),
                  False: sum(8 * len(set().union(*rows[q0 // OW:min(q0 + 7, OH * OW - 1) // OW
                                                      + 1]))
                             for q0 in range(0, OH * OW, 8))}
    assert by_row == (lanes_taps[True] < lanes_taps[False])
    if (OH, OW, KH) == (7, 7, 5):
        assert by_row and [int(k) for k in (gk[:, 1] - gk[:, 0]) // KW] == [3, 4, 5, 5, 5, 4, 3]
