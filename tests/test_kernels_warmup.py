"""The first-compile notice (kernels._notice) and ``python -m kernels warmup``.

The notice tests run in subprocesses with ``NUMBA_CACHE_DIR`` on a fresh folder, so that
Numba really compiles; each compiles only the cheap activation kernels.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kernels import _notice, warmup

ROOT = Path(__file__).resolve().parents[1]
NOTICE = "kernels: compiling the activation and loss kernels"

# relu twice (a second float32 kernel of the family too), with a marker line between
TWICE = """
import sys
import numpy as np
import kernels
x = np.linspace(-1, 1, 10)
kernels.relu(x)
sys.stderr.write("MARK\\n"); sys.stderr.flush()
kernels.relu(x)
kernels.relu_backward(x, x)
kernels.relu(x.astype(np.float32))
"""

# the activations' public calls, small (serial) and large (parallel), in float32
CALLS = """
import numpy as np
import kernels
from kernels.activation import PARALLEL_MIN
for rows in (8, PARALLEL_MIN // 16):
    x = np.random.default_rng(0).standard_normal((rows, 16)).astype(np.float32)
    kernels.relu_backward(kernels.relu(x), x)
    t = np.arange(rows) % 16
    kernels.cross_entropy(x, t)
    kernels.cross_entropy_backward(x, t, label_smoothing=0.1)
print("ok")
"""


def _python(args, cache, **env):
    environ = {k: v for k, v in os.environ.items() if k != _notice.QUIET_ENV}
    environ.update(NUMBA_CACHE_DIR=str(cache), **env)
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=600)


def _notices(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("kernels: compiling")]


def test_notice_once_per_family_and_not_from_the_cache(tmp_path):
    first = _python(["-c", TWICE], tmp_path)
    assert first.returncode == 0, first.stderr
    before, after = first.stderr.split("MARK\n")
    assert _notices(before) == [_notice.message("activation and loss")]
    assert before.startswith(NOTICE) and "python -m kernels warmup" in before
    assert not _notices(after)  # the family was seen: float32 and relu_backward compile silently
    again = _python(["-c", TWICE], tmp_path)  # everything loads from the filled cache
    assert again.returncode == 0 and not _notices(again.stderr), again.stderr


def test_kernels_quiet(tmp_path):
    done = _python(["-c", TWICE], tmp_path, KERNELS_QUIET="1")
    assert done.returncode == 0 and not _notices(done.stderr), done.stderr


def test_warmup_then_nothing_compiles(tmp_path):
    done = _python(["-m", "kernels", "warmup", "--families", "activations", "--dtype",
                    "float32"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert not _notices(done.stderr)  # the warmup reports on its own
    summary = done.stdout.strip().splitlines()[-1]
    assert summary.startswith("kernels warmup: activations in float32") and " s; " in summary
    assert " 0 kernels compiled" not in summary and str(tmp_path) in summary
    after = _python(["-c", CALLS], tmp_path)
    assert after.returncode == 0 and after.stdout.strip() == "ok", after.stderr
    assert not _notices(after.stderr), after.stderr
    again = _python(["-m", "kernels", "warmup", "--families", "activation", "--dtype",
                     "float32", "--quiet"], tmp_path)
    assert again.returncode == 0 and not again.stdout and not again.stderr


def test_help_lists_warmup(tmp_path):
    done = _python(["-m", "kernels", "--help"], tmp_path)
    assert done.returncode == 0 and "warmup" in done.stdout, done.stderr
    done = _python(["-m", "kernels", "warmup", "--help"], tmp_path)
    assert done.returncode == 0
    assert all(f in done.stdout for f in ("--dtype", "--families", "--quiet", "conv2d"))


@pytest.mark.parametrize("argv", [["warmup", "--families", "conv3d"],
                                  ["warmup", "--dtype", "float16"], ["warmup", "--bad"]])
def test_bad_arguments_exit_2_with_one_line(argv, capsys):
    from kernels.__main__ import main

    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "error:" in err, err


@pytest.mark.parametrize("error,code,text", [(KeyboardInterrupt, 130, "interrupted"),
                                             (RuntimeError("boom"), 1, "RuntimeError: boom")])
def test_interrupt_and_errors_are_one_line(error, code, text, monkeypatch, capsys):
    from kernels.__main__ import main

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(warmup, "warm", fail)
    assert main(["warmup", "--families", "pooling"]) == code
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and text in err and "Traceback" not in err, err


def test_families():
    assert warmup.parse_families(None) == list(warmup.FAMILIES)
    assert warmup.parse_families("optim, conv,conv2d") == ["conv2d", "optimizers"]
    with pytest.raises(ValueError, match="unknown family 'x'"):
        warmup.parse_families("pooling,x")
    modules = {"kernels.cpu.conv": "conv2d", "kernels.cpu.tiles": "conv2d",
               "kernels.cpu.pool": "pooling", "kernels.cpu.norm": "norm",
               "kernels.cpu.optim": "optimizer", "kernels.cpu.correlate": "correlation",
               "kernels.cuda.conv": "CUDA conv2d", "numpy": None}
    for module, family in modules.items():
        fn = type("F", (), {"__module__": module})()
        assert _notice.family_of(type("D", (), {"py_func": fn})()) == family


def test_conv_cases_straddle_the_parallel_threshold():
    """Each conv2d case comes large (the parallel kernels) and small (the serial ones)."""
    from kernels.conv import PARALLEL_MIN_MACS

    shapes = warmup.conv_shapes()
    assert len(shapes) == 2 * len(warmup.CONV_CASES)
    for name, x_shape, w_shape, kw in shapes:
        macs = warmup._macs(x_shape, w_shape, **kw)
        assert (macs < PARALLEL_MIN_MACS) == name.endswith(", small"), (name, macs)


def _layout(x_shape, w_shape, kw) -> str:
    """The kernels that ``kernels.conv2d`` runs a case's forward on."""
    from kernels.conv import _depthwise, _geometry, _tiled, _tiled_ok, _winograd_ok

    x, w = np.empty(x_shape, np.float32), np.empty(w_shape, np.float32)
    geo = _geometry(x, w, kw.get("stride", 1), kw.get("padding", 0), kw.get("dilation", 1),
                    kw.get("groups", 1))
    if w_shape[1] == 1:
        from kernels.cpu.depthwise import ROWS_COPIES

        plan = _depthwise(x_shape, w_shape, geo)
        if plan.by_rows:  # a copy for the size and stride, or the general kernel
            key = (*w_shape[2:], geo.stride[0])
            return f"depthwise rows {key if key in ROWS_COPIES else 'general'}"
        if plan.by_channels:
            return "depthwise channels" + (", weight grad by masks" if plan.by_masks else "")
        return "depthwise masks" if plan.by_masks else "depthwise planes"
    if not _tiled_ok(w_shape[0] // geo.groups):
        return "direct"
    if _winograd_ok(x, w_shape, geo):
        return "winograd" + (", stride 2" if geo.stride == (2, 2) else "")
    plan = _tiled(x_shape, w_shape, geo)
    if plan.channel_lanes:
        return (("channel lanes, blocks of 16" if plan.narrow else "channel lanes")
                + (", exact" if plan.exact else ""))
    if plan.wide and plan._by_groups:
        return "wide tiles by groups"
    return "batch lanes" if plan.batch_lanes else "wide tiles" if plan.wide else "width lanes"


def test_conv_cases_take_every_layout_large_and_small():
    """Each layout of the conv2d kernels runs in a large case and a small one, so the
    warmup compiles its parallel and serial calls (and Winograd's, in a large one): a
    case picked for one layout moves to another when the plan's choice changes (blocks
    of 16 channel lanes took the batch lanes' cases, and a user's first LeNet conv1
    compiled after the warmup)."""
    seen = {(_layout(x_shape, w_shape, kw), name.endswith(", small"))
            for name, x_shape, w_shape, kw in warmup.conv_shapes()}
    from kernels.cpu._simd import P
    from kernels.cpu.depthwise import ROWS_COPIES

    for layout in ("batch lanes", "width lanes", "wide tiles", "wide tiles by groups",
                   "channel lanes",
                   "channel lanes, blocks of 16",
                   *(["channel lanes, blocks of 16, exact", "channel lanes, exact"]
                     if P == 16 else []),
                   "depthwise rows general",
                   *(f"depthwise rows {key}" for key in ROWS_COPIES), "depthwise masks",
                   *(["depthwise channels", "depthwise channels, weight grad by masks"]
                     if P == 16 else []),  # (16 lanes only)
                   "depthwise planes"):
        assert {(layout, False), (layout, True)} <= seen, layout
    # F(2x2, 3x3), with AVX-512: one large case (it has no serial kernels), at stride 1
    # and 2 (whose input gradient is Winograd's too)
    from kernels.conv import _geometry, _winograd_input_grad_ok

    assert (("winograd", False) in seen) == (P == 16)
    assert (("winograd, stride 2", False) in seen) == (P == 16)
    x_shape, _, w_shape, kw = warmup.CONV_CASES["3x3 stride 2, 128 channels"]
    x = np.empty(x_shape, np.float32)
    geo = _geometry(x, np.empty(w_shape), kw["stride"], kw["padding"], 1, 1)
    assert _winograd_input_grad_ok(x, w_shape, geo) == (P == 16)
    # the strided input gradient in blocks of 4 channels (an RGB stem's; the large case)
    from kernels.conv import _phased_input_grad

    for name, x_shape, w_shape, kw in warmup.conv_shapes():
        if name == "7x7 stride 2 on 3 channels (a stem)":
            geo = _geometry(np.empty(x_shape), np.empty(w_shape), kw["stride"], kw["padding"],
                            1, 1)
            assert _phased_input_grad(x_shape, w_shape, geo).few == (P == 16)
    # and the 1x1 weight gradient as one matrix product
    from kernels.conv import _pointwise_weight_grad_ok

    x_shape, w_shape = next((x, w) for name, x, w, kw in warmup.conv_shapes()
                            if name == "1x1, 64 channels")
    x = np.empty(x_shape, np.float32)
    geo = _geometry(x, np.empty(w_shape), 1, 0, 1, 1)
    assert _pointwise_weight_grad_ok(x, w_shape, geo) == (P == 16)
    # the weight gradient by class (16 lanes; in 32 blocks, direct on most thread counts)
    from kernels.conv import _tiled

    exact = set()
    for name, x_shape, w_shape, kw in warmup.conv_shapes():
        geo = _geometry(np.empty(x_shape), np.empty(w_shape), kw.get("stride", 1),
                        kw.get("padding", 0), 1, kw.get("groups", 1))
        plan = _tiled(x_shape, w_shape, geo)
        blocks = plan._weight_grad_cols_plan[1] // 16 if plan._wg_cols else 0
        if plan._wg_cols and plan._wg_exact and blocks % 8 == 0 and blocks >= 32:
            exact.add(name.endswith(", small"))
    assert exact == ({False, True} if P == 16 else set())
    # and the weight gradient in blocks of 16 channels (LeNet's conv2, large and small)

    for name, x_shape, w_shape, _ in warmup.conv_shapes():
        if name.startswith("5x5 (LeNet conv2)"):
            plan = _tiled(x_shape, w_shape, _geometry(np.empty(x_shape), np.empty(w_shape),
                                                      1, 0, 1, 1))
            assert plan._wg_cols == (P == 16) and (P != 16 or plan._wgc_block == 16)


def test_notice_never_raises(monkeypatch):
    """A broken event or stream is ignored: a notice must not break a compile."""
    monkeypatch.setattr(_notice, "_seen", set())
    _notice._on_compile(object())  # no .data
    _notice._on_compile(type("E", (), {"data": {"dispatcher": 42}})())

    class Broken:
        def write(self, text):
            raise OSError("closed")

    monkeypatch.setattr(sys, "__stderr__", Broken())
    monkeypatch.delenv(_notice.QUIET_ENV, raising=False)
    fn = type("F", (), {"__module__": "kernels.cpu.pool"})()
    _notice._on_compile(type("E", (), {"data": {"dispatcher": type("D", (), {"py_func": fn})()}})())
    assert "pooling" in _notice._seen
