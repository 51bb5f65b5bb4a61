"""The fast CUDA launch path (``kernels.cuda._launch.launch``) against Numba's own.

On a real GPU (tier 3) our argument packing must engage for the kernels a training step
uses, and give bit-for-bit the results of Numba's launch path. In the simulator (CI)
the fast path must stay off, so that every CUDA test runs through Numba's launcher;
the packers themselves are checked against ctypes there too.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from backends import cuda_available

pytestmark = pytest.mark.skipif(not cuda_available(), reason="Numba's CUDA target is absent")


def on_gpu() -> bool:
    from numba import config

    return not config.ENABLE_CUDASIM


def test_simulator_uses_numbas_launcher():
    if on_gpu():
        pytest.skip("the simulator's behaviour")
    from kernels.cuda import _launch

    assert not _launch._fast_path_available()


def test_scalar_packers_follow_numbas_convention():
    from numba.core import types

    from kernels.cuda._launch import _packer, _same

    out: list = []
    _packer(types.float32)(np.float32(1.5), out)
    _packer(types.float64)(0.25, out)
    _packer(types.int64)(7, out)
    _packer(types.boolean)(True, out)
    assert [type(v) for v in out] == [ctypes.c_float, ctypes.c_double, ctypes.c_int64, bool]
    assert [getattr(v, "value", v) for v in out] == [1.5, 0.25, 7, True]
    assert _same(ctypes.c_float(1.5), ctypes.c_float(1.5))
    assert not _same(ctypes.c_float(1.5), ctypes.c_double(1.5))
    assert not _same(3, ctypes.c_int64(3))
    assert _packer(types.complex64) is None  # not packed: Numba's path


@pytest.mark.skipif(not on_gpu(), reason="tier 3: needs a CUDA GPU")
def test_fast_launch_engages_and_equals_numbas_launch():
    import torch

    import kernels
    from kernels import optim
    from kernels.cuda import _launch

    rng = np.random.default_rng(0)
    x, w, b = (rng.standard_normal(s, dtype=np.float32) for s in
               ((4, 3, 12, 12), (5, 3, 3, 3), (5,)))
    p, g = (rng.standard_normal(1000, dtype=np.float32) for _ in range(2))

    def run():
        tx, tw, tb = (torch.from_numpy(a).cuda() for a in (x, w, b))
        y = kernels.conv2d(tx, tw, tb, padding=1)
        grads = kernels.conv2d_backward(torch.as_tensor(y.copy_to_host()).cuda(), tx, tw,
                                        padding=1)
        tp = torch.from_numpy(p.copy()).cuda()
        opt = optim.Adam([tp], lr=0.1)
        for _ in range(3):
            opt.step([torch.from_numpy(g).cuda()])
        return [y.copy_to_host()] + [a.copy_to_host() for a in grads] + [tp.cpu().numpy()]

    first = run()  # Numba's path on each kernel's first call, then ours
    fast = run()
    plans = [plan for k in _launch._FAST.values() for plan in k.kinds.values()]
    assert plans and all(plan is not None for plan in plans)
    for k in _launch._FAST.values():
        k.enabled = False
    try:
        slow = run()
    finally:
        for k in _launch._FAST.values():
            k.enabled = True
    for a, b_, c in zip(first, fast, slow):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b_, c)
