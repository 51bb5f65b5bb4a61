"""kernels.optim against torch.optim (computed here) and against the NumPy reference.

Every optimizer and hyperparameter combination runs 60 steps on a few parameter
arrays (one large enough for the parallel kernel, so its split among threads is
exercised); the gradient of each step is a fixed quadratic pull towards a target
plus seeded noise, computed from each side's own parameters, so any divergence
would feed back. Parameters are compared after every step.
"""

from __future__ import annotations

import functools
import inspect
import re

import numpy as np
import pytest
import torch
from backends import cuda_available, to_backend, to_host
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import optim
from kernels._checks import is_device
from kernels.cpu import optim as cpu
from kernels.reference import optim as ref

STEPS = 60
# the last two: serial and parallel kernels, blocks of unequal length
SHAPES = [(7,), (3, 5), (2, 3, 4), (cpu.PARALLEL_MIN // 2 + 123,),
          (cpu.PARALLEL_MIN + 123,)]
# parameters are O(1): float32 atol 1e-5 is ~1e-5 relative to their scale (60 steps of
# rounding, amplified where RMSprop's centered variance cancels, differ from torch's FMAs)
TOL = {np.float64: dict(rtol=1e-12, atol=1e-12), np.float32: dict(rtol=1e-5, atol=1e-5)}

CONFIGS = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.05, weight_decay=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.5, weight_decay=0.1, maximize=True)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05)),
    ("Adagrad", dict(lr=0.1, initial_accumulator_value=0.5)),
    ("Adagrad", dict(lr=0.1, weight_decay=0.1, maximize=True)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, momentum=0.9)),
    ("RMSprop", dict(lr=0.01, centered=True)),
    ("RMSprop", dict(lr=0.01, weight_decay=0.1)),
    # lerp's other side; with a 2-step memory square_avg - grad_avg**2 cancels badly for a
    # few elements, and a large eps bounds how much float32 rounding is amplified
    ("RMSprop", dict(lr=0.01, alpha=0.5, eps=0.1, momentum=0.5, centered=True)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("Adam", dict(lr=0.01, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, betas=(0.3, 0.9), maximize=True)),  # lerp's other side
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
]
IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for name, kw in CONFIGS]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    # NOTE: on a busy 2-core machine every multi-threaded torch op waits at a barrier for a
    # descheduled thread; one thread keeps this file fast (the answer does not change).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- the same problem on every side ------------------------------------------------------
def initial(dtype):
    rng = np.random.default_rng(1)
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


def gradients(dtype, maximize=False):
    """grad_fn(step, params): 0.5 * (p - target) + seeded noise, in ``dtype``; negated for
    ``maximize`` (so that the run still converges and float32 rounding stays small)."""
    rng = np.random.default_rng(2)
    targets = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    noise = [[rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(STEPS)]
    half = dtype(-0.5 if maximize else 0.5)
    return lambda t, params: [half * (p - c) + n for p, c, n in zip(params, targets, noise[t])]


def run_torch(name, kw, dtype):
    """torch's trajectory and final state (key -> array per parameter), computed once."""
    return _run_torch(name, tuple(sorted(kw.items())), dtype)


@functools.cache
def _run_torch(name, kw_items, dtype, steps=STEPS):
    kw = dict(kw_items)
    params = [torch.tensor(p, requires_grad=True) for p in initial(dtype)]
    opt = getattr(torch.optim, name)(params, **kw)
    grad_fn, out = gradients(dtype, kw.get("maximize", False)), []
    for t in range(steps):
        arrays = [p.detach().numpy() for p in params]
        for p, g in zip(params, grad_fn(t, arrays)):
            p.grad = torch.from_numpy(g)
        opt.step()
        out.append([p.detach().numpy().copy() for p in params])
    state = [{k: (int(v) if k == "step" else v.numpy().copy()) for k, v in opt.state[p].items()}
             for p in params]
    return out, state


def run_ours(name, kw, dtype, steps=STEPS):
    params = initial(dtype)
    opt = getattr(optim, name)(params, **kw)
    grad_fn, out = gradients(dtype, kw.get("maximize", False)), []
    for t in range(steps):
        opt.step(grad_fn(t, params))
        out.append([p.copy() for p in params])
    return out, opt


def run_reference(name, kw, dtype, steps=STEPS):
    """The NumPy reference, driven by a minimal loop that holds the state."""
    h = inspect.signature(getattr(optim, name)).bind(None, **kw)
    h.apply_defaults()
    h = dict(h.arguments)
    params, grad_fn, out = initial(dtype), gradients(dtype, kw.get("maximize", False)), []
    zeros = [np.zeros_like(p) for p in params]
    state = {"buf": [None] * len(params), "sum": [np.full_like(p, h.get(
        "initial_accumulator_value", 0)) for p in params],
        "a": [z.copy() for z in zeros], "b": [z.copy() for z in zeros],
        "c": [z.copy() for z in zeros]}
    for t in range(steps):
        for i, (p, g) in enumerate(zip(params, grad_fn(t, params))):
            a, b, c = state["a"][i], state["b"][i], state["c"][i]
            if name == "SGD":
                state["buf"][i] = ref.sgd(p, g, state["buf"][i], lr=h["lr"],
                                          momentum=h["momentum"], dampening=h["dampening"],
                                          weight_decay=h["weight_decay"],
                                          nesterov=h["nesterov"], maximize=h["maximize"])
            elif name == "Adagrad":
                ref.adagrad(p, g, state["sum"][i], step=t + 1, lr=h["lr"],
                            lr_decay=h["lr_decay"], weight_decay=h["weight_decay"],
                            eps=h["eps"], maximize=h["maximize"])
            elif name == "RMSprop":
                ref.rmsprop(p, g, a, b, c, lr=h["lr"], alpha=h["alpha"], eps=h["eps"],
                            weight_decay=h["weight_decay"], momentum=h["momentum"],
                            centered=h["centered"], maximize=h["maximize"])
            else:
                ref.adam(p, g, a, b, c, step=t + 1, lr=h["lr"], beta1=h["betas"][0],
                         beta2=h["betas"][1], eps=h["eps"], weight_decay=h["weight_decay"],
                         amsgrad=h["amsgrad"], maximize=h["maximize"],
                         decoupled_weight_decay=name == "AdamW")
        out.append([p.copy() for p in params])
    return out


def assert_trajectories(ours, theirs, dtype):
    assert len(ours) == len(theirs)
    for t, (a, b) in enumerate(zip(ours, theirs)):
        for x, y in zip(a, b):
            assert x.dtype == dtype
            np.testing.assert_allclose(x, y, **TOL[dtype], err_msg=f"step {t + 1}")


# -- trajectories --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("name", "kw"), CONFIGS, ids=IDS)
def test_follows_torch(name, kw, dtype):
    theirs, their_state = run_torch(name, kw, dtype)
    ours, opt = run_ours(name, kw, dtype)
    assert_trajectories(ours, theirs, dtype)
    # the state arrays match torch's too (same names)
    for i, state in enumerate(their_state):
        for key, value in state.items():
            if key != "step":  # float32 error grows with the state's scale (it sums grads)
                want = value
                atol = TOL[dtype]["rtol"] * np.abs(want).max()
                np.testing.assert_allclose(opt.state[i][key], want, rtol=TOL[dtype]["rtol"],
                                           atol=atol, err_msg=key)
            elif name != "SGD":
                assert opt.state[i]["step"] == int(value) == STEPS


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("name", "kw"), CONFIGS, ids=IDS)
def test_reference_follows_torch(name, kw, dtype):
    assert_trajectories(run_reference(name, kw, dtype), run_torch(name, kw, dtype)[0], dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("name", "kw"), CONFIGS, ids=IDS)
def test_state_dict_round_trip(name, kw, dtype):
    whole, _ = run_ours(name, kw, dtype)
    grad_fn = gradients(dtype, kw.get("maximize", False))
    params = initial(dtype)
    opt = getattr(optim, name)(params, **kw)
    for t in range(25):
        opt.step(grad_fn(t, params))
    saved = opt.state_dict()
    opt.step(grad_fn(25, params))  # must not leak into the saved copy
    copies = [p.copy() for p in whole[24]]
    fresh = getattr(optim, name)(copies, lr=123.0)  # hyperparameters come from the dict
    fresh.load_state_dict(saved)
    assert fresh.hyperparameters == opt.hyperparameters
    for t in range(25, STEPS):
        fresh.step(grad_fn(t, copies))
        for x, y in zip(copies, whole[t]):
            np.testing.assert_array_equal(x, y)


# -- kernel against reference, random sizes and hyperparameters -----------------------------
SIZES = st.integers(1, 2 * cpu.PARALLEL_MIN)  # serial and parallel kernels
FLOATS = st.sampled_from([np.float32, np.float64])


@settings(max_examples=30, deadline=None)
@given(n=SIZES, dtype=FLOATS,
       step=st.integers(1, 1000), lr=st.floats(1e-4, 1.0), beta1=st.floats(0.0, 0.99),
       beta2=st.floats(0.0, 0.9999), wd=st.sampled_from([0.0, 0.05]),
       amsgrad=st.booleans(), maximize=st.booleans(), decoupled=st.booleans(),
       seed=st.integers(0, 2**16))
def test_adam_kernel_matches_reference(n, dtype, step, lr, beta1, beta2, wd, amsgrad,
                                       maximize, decoupled, seed):
    rng = np.random.default_rng(seed)
    p, g, m = (rng.standard_normal(n).astype(dtype) for _ in range(3))
    v, vmax = (np.abs(rng.standard_normal(n)).astype(dtype) for _ in range(2))
    cls = optim.AdamW if decoupled else optim.Adam
    ours = [p.copy(), m.copy(), v.copy(), vmax.copy()]
    opt = cls([ours[0]], lr=lr, betas=(beta1, beta2), weight_decay=wd, amsgrad=amsgrad,
              maximize=maximize)
    opt.load_state_dict({"hyperparameters": opt.hyperparameters, "state": [
        {"step": step - 1, "exp_avg": ours[1], "exp_avg_sq": ours[2],
         "max_exp_avg_sq": ours[3] if amsgrad else None}]})
    opt.step([g])
    ref.adam(p, g, m, v, vmax, step=step, lr=lr, beta1=beta1, beta2=beta2, eps=1e-8,
             weight_decay=wd, amsgrad=amsgrad, maximize=maximize,
             decoupled_weight_decay=decoupled)
    state = opt.state[0]
    for x, y in [(ours[0], p), (state["exp_avg"], m), (state["exp_avg_sq"], v)]:
        np.testing.assert_allclose(x, y, rtol=4 * np.finfo(dtype).eps, atol=0)
    if amsgrad:
        np.testing.assert_array_equal(state["max_exp_avg_sq"], vmax)


@settings(max_examples=20, deadline=None)
@given(n=SIZES, dtype=FLOATS,
       momentum=st.sampled_from([0.0, 0.9]), centered=st.booleans(),
       alpha=st.floats(0.0, 0.999), seed=st.integers(0, 2**16))
def test_rmsprop_kernel_matches_reference(n, dtype, momentum, centered, alpha, seed):
    rng = np.random.default_rng(seed)
    p, g, ga, buf = (rng.standard_normal(n).astype(dtype) for _ in range(4))
    sq = (ga * ga + np.abs(rng.standard_normal(n))).astype(dtype)  # keeps sq - ga^2 > 0
    opt = optim.RMSprop([p.copy()], lr=0.01, alpha=alpha, momentum=momentum,
                        centered=centered)
    opt.load_state_dict({"hyperparameters": opt.hyperparameters, "state": [
        {"step": 3, "square_avg": sq, "grad_avg": ga if centered else None,
         "momentum_buffer": buf if momentum else None}]})
    opt.step([g])
    ours = opt.params[0]
    ref.rmsprop(p, g, sq, ga, buf, lr=0.01, alpha=alpha, eps=1e-8, weight_decay=0,
                momentum=momentum, centered=centered, maximize=False)
    np.testing.assert_allclose(ours, p, rtol=4 * np.finfo(dtype).eps, atol=0)
    np.testing.assert_allclose(opt.state[0]["square_avg"], sq, rtol=0, atol=0)


def test_float32_stays_float32():
    p = np.ones(5, np.float32)
    opt = optim.Adam([p], amsgrad=True)
    opt.step([np.ones(5, np.float32)])
    assert p.dtype == np.float32
    assert all(v.dtype == np.float32 for k, v in opt.state[0].items() if k != "step")


def test_mixed_dtypes_and_lr_schedule():
    a, b = np.ones(3, np.float32), np.ones(2, np.float64)
    opt = optim.SGD([a, b], lr=0.5)
    opt.step([np.ones(3, np.float32), np.ones(2)])
    opt.hyperparameters["lr"] = 0.25
    opt.step([np.ones(3, np.float32), np.ones(2)])
    np.testing.assert_array_equal(a, 0.25)
    np.testing.assert_array_equal(b, 0.25)


def test_non_contiguous_gradient_is_accepted():
    p = np.zeros((3, 4))
    g = np.arange(12.0).reshape(4, 3).T
    optim.SGD([p], lr=1.0).step([g])
    np.testing.assert_array_equal(p, -g)


# -- validation ----------------------------------------------------------------------------
@pytest.mark.parametrize(("make", "error", "match"), [
    (lambda: optim.SGD(np.ones(3)), TypeError, "params"),
    (lambda: optim.SGD([]), ValueError, "params"),
    (lambda: optim.SGD([[1.0, 2.0]]), TypeError, r"params\[0\]"),
    (lambda: optim.SGD([np.ones(3, np.int64)]), TypeError, r"params\[0\]"),
    (lambda: optim.SGD([np.ones((3, 4))[:, ::2]]), ValueError, r"params\[0\].*contiguous"),
    (lambda: optim.SGD([np.ones(3)]).__class__([np.ones(3)], lr=-1), ValueError, "lr"),
    (lambda: optim.SGD([np.ones(3)], momentum=-0.1), ValueError, "momentum"),
    (lambda: optim.SGD([np.ones(3)], nesterov=True), ValueError, "nesterov"),
    (lambda: optim.SGD([np.ones(3)], momentum=0.9, dampening=0.1, nesterov=True),
     ValueError, "nesterov"),
    (lambda: optim.SGD([np.ones(3)], weight_decay=-1), ValueError, "weight_decay"),
    (lambda: optim.Adagrad([np.ones(3)], lr_decay=-1), ValueError, "lr_decay"),
    (lambda: optim.Adagrad([np.ones(3)], initial_accumulator_value=-1), ValueError,
     "initial_accumulator_value"),
    (lambda: optim.Adagrad([np.ones(3)], eps=-1), ValueError, "eps"),
    (lambda: optim.RMSprop([np.ones(3)], alpha=-1), ValueError, "alpha"),
    (lambda: optim.Adam([np.ones(3)], betas=(1.0, 0.999)), ValueError, "betas"),
    (lambda: optim.AdamW([np.ones(3)], betas=(0.9, -0.1)), ValueError, "betas"),
])
def test_constructor_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_read_only_param():
    p = np.ones(3)
    p.flags.writeable = False
    with pytest.raises(ValueError, match=r"params\[0\].*read-only"):
        optim.Adam([p])


@pytest.mark.parametrize(("grads", "error", "match"), [
    (np.ones(3), TypeError, "grads"),
    ([np.ones(3)], ValueError, "grads has 1"),
    ([np.ones(3), np.ones(3)], ValueError, r"grads\[1\].*shape"),
    ([np.ones(3), np.ones((2, 2), np.float32)], TypeError, r"grads\[1\].*float32"),
    ([np.ones(3, np.float32), np.ones((2, 2))], TypeError, r"grads\[0\]"),
    ([np.ones(3), [[1.0, 1.0], [1.0, 1.0]]], TypeError, r"grads\[1\]"),
    ((np.ones(3),), ValueError, "grads has 1"),
    ([np.ones(3), np.ones((2, 2)), np.ones(1)], ValueError, "grads has 3"),
    ([np.ones(3), None], TypeError, r"grads\[1\]"),
    ([np.float64(1.0), np.ones((2, 2))], ValueError, r"grads\[0\].*shape"),
    ([np.ones(3), np.ones((2, 2), np.int64)], TypeError, r"grads\[1\].*int64"),
    ([np.ones(3), np.ones(4)], ValueError, r"grads\[1\].*shape"),
    ("grads", TypeError, "grads"),
])
def test_step_errors_before_any_update(grads, error, match):
    a, b = np.ones(3), np.ones((2, 2))
    opt = optim.Adam([a, b])
    with pytest.raises(error, match=match):
        opt.step(grads)
    np.testing.assert_array_equal(a, 1.0)  # nothing ran
    assert opt.state[0]["step"] == 0


def test_load_state_dict_errors():
    p = np.ones(3)
    opt = optim.Adam([p])
    opt.step([np.ones(3)])
    good = opt.state_dict()
    with pytest.raises(ValueError, match="state_dict"):
        optim.SGD([np.ones(3)]).load_state_dict(good)  # other hyperparameters
    with pytest.raises(ValueError, match="state_dict has state for 1"):
        optim.Adam([np.ones(3), np.ones(3)]).load_state_dict(good)
    bad = opt.state_dict()
    bad["state"][0]["exp_avg"] = np.ones(4)
    with pytest.raises(ValueError, match="exp_avg"):
        optim.Adam([np.ones(3)]).load_state_dict(bad)
    bad = opt.state_dict()
    bad["state"][0]["exp_avg"] = np.ones(3, np.float32)
    with pytest.raises(TypeError, match="float64"):
        optim.Adam([np.ones(3)]).load_state_dict(bad)
    bad = opt.state_dict()
    bad["state"][0]["bogus"] = np.ones(3)
    with pytest.raises(ValueError, match="bogus"):
        optim.Adam([np.ones(3)]).load_state_dict(bad)


# -- every backend: device parameters (CUDA in the simulator, so few steps, small arrays) ---
BACKEND_STEPS = 3
BACKEND_SHAPE = (3, 5)
# every option of each optimizer at least once (indices into CONFIGS)
PICKED = (0, 2, 3, 5, 7, 8, 9, 11, 13, 14, 16, 17, 18, 20)


def small_problem(dtype, maximize=False):
    """(start, grad_fn) as :func:`initial` and :func:`gradients`, for one small parameter."""
    rng = np.random.default_rng(3)
    start, target = (rng.standard_normal(BACKEND_SHAPE).astype(dtype) for _ in range(2))
    noise = [rng.standard_normal(BACKEND_SHAPE).astype(dtype) for _ in range(BACKEND_STEPS)]
    half = dtype(-0.5 if maximize else 0.5)
    return start, lambda t, p: half * (p - target) + noise[t]


def run_on(backend, name, kw, dtype, steps=BACKEND_STEPS):
    """Our optimizer on :func:`small_problem`, with the parameter on ``backend``: the
    trajectory (host copies) and the optimizer."""
    start, grad_fn = small_problem(dtype, kw.get("maximize", False))
    p = to_backend(start.copy(), backend)
    opt, out = getattr(optim, name)([p], **kw), []
    for t in range(steps):
        opt.step([to_backend(grad_fn(t, to_host(p)), backend)])
        out.append(np.array(to_host(p)))  # a copy: p changes in place
    return out, opt


def run_torch_small(name, kw, dtype):
    start, grad_fn = small_problem(dtype, kw.get("maximize", False))
    p = torch.tensor(start, requires_grad=True)
    opt, out = getattr(torch.optim, name)([p], **kw), []
    for t in range(BACKEND_STEPS):
        p.grad = torch.from_numpy(grad_fn(t, p.detach().numpy()))
        opt.step()
        out.append(p.detach().numpy().copy())
    return out


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("name", "kw"), [CONFIGS[i] for i in PICKED],
                         ids=[IDS[i] for i in PICKED])
def test_follows_torch_on_backend(backend, name, kw, dtype):
    """The same trajectory as torch.optim's and as our CPU kernels', and the same state."""
    ours, opt = run_on(backend, name, kw, dtype)
    for t, (x, y) in enumerate(zip(ours, run_torch_small(name, kw, dtype))):
        assert x.dtype == dtype
        np.testing.assert_allclose(x, y, **TOL[dtype], err_msg=f"step {t + 1}")
    cpu_run, cpu_opt = run_on("cpu", name, kw, dtype)
    eps = np.finfo(dtype).eps  # NOTE: not exact on a GPU, where NVVM contracts a*b+c to FMA
    np.testing.assert_allclose(ours, cpu_run, rtol=16 * eps, atol=16 * eps)
    mine, cpu_state = opt.state_dict()["state"][0], cpu_opt.state[0]
    assert set(mine) == set(cpu_state) and mine["step"] == cpu_state["step"]
    for key in set(mine) - {"step"}:
        assert isinstance(mine[key], np.ndarray) and mine[key].dtype == dtype
        np.testing.assert_allclose(mine[key], cpu_state[key], rtol=16 * eps, atol=16 * eps,
                                   err_msg=key)
    if backend == "cuda":  # the state lives on the device
        assert all(is_device(v) for k, v in opt.state[0].items() if k != "step")


# 0-d parameters (scalars, as torch allows) mixed with ordinary ones
SCALAR_SHAPES = [(), (2, 3), ()]
SCALAR_STEPS = 4


def scalar_problem(dtype, maximize=False):
    """(starts, grad_fn) for :data:`SCALAR_SHAPES`; the gradients are 0-d arrays for the
    0-d parameters (NumPy arithmetic on them would give scalars: ``np.asarray``)."""
    rng = np.random.default_rng(4)
    start, target = ([np.asarray(rng.standard_normal(s), dtype) for s in SCALAR_SHAPES]
                     for _ in range(2))
    noise = [[np.asarray(rng.standard_normal(s), dtype) for s in SCALAR_SHAPES]
             for _ in range(SCALAR_STEPS)]
    half = dtype(-0.5 if maximize else 0.5)
    return start, lambda t, ps: [np.asarray(half * (p - c) + n, dtype)
                                 for p, c, n in zip(ps, target, noise[t])]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("name", "kw"), CONFIGS, ids=IDS)
def test_scalar_params_follow_torch(name, kw, dtype):
    """0-d parameters and gradients, among 2-d ones, step in place along torch.optim's
    trajectory, and keep 0-d state arrays as torch does: every configuration on the CPU."""
    _check_scalar_params(name, kw, dtype, "cpu")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("name", "kw"), [CONFIGS[i] for i in PICKED],
                         ids=[IDS[i] for i in PICKED])
def test_scalar_params_follow_torch_on_every_backend(backend, name, kw, dtype):
    """The same on every backend (the CUDA simulator is slow: the PICKED configurations)."""
    _check_scalar_params(name, kw, dtype, backend)


def _check_scalar_params(name, kw, dtype, backend):
    start, grad_fn = scalar_problem(dtype, kw.get("maximize", False))
    ps = [to_backend(p.copy(), backend) for p in start]
    opt = getattr(optim, name)(ps, **kw)
    tps = [torch.tensor(p, requires_grad=True) for p in start]
    topt = getattr(torch.optim, name)(tps, **kw)
    for t in range(SCALAR_STEPS):
        opt.step([to_backend(g, backend) for g in grad_fn(t, [to_host(p) for p in ps])])
        for tp, g in zip(tps, grad_fn(t, [tp.detach().numpy() for tp in tps])):
            tp.grad = torch.from_numpy(g)
        topt.step()
        for i, (p, tp) in enumerate(zip(ps, tps)):
            x = to_host(p)
            assert isinstance(x, np.ndarray) and x.shape == SCALAR_SHAPES[i]
            assert x.dtype == dtype
            np.testing.assert_allclose(x, tp.detach().numpy(), **TOL[dtype],
                                       err_msg=f"step {t + 1}, params[{i}]")
    for i, (state, tp) in enumerate(zip(opt.state_dict()["state"], tps)):
        for key, value in topt.state[tp].items():
            if key == "step":
                assert state["step"] == int(value) == SCALAR_STEPS
            elif value is not None:
                assert state[key].shape == SCALAR_SHAPES[i], key
                np.testing.assert_allclose(state[key], value.numpy(), **TOL[dtype],
                                           err_msg=key)


@pytest.mark.parametrize(("name", "kw"), [CONFIGS[i] for i in PICKED],
                         ids=[IDS[i] for i in PICKED])
def test_scalar_params_through_kernels_torch(name, kw):
    """kernels.torch's optimizers (which share the per-parameter update) on 0-d tensors."""
    import kernels.torch as kt

    start, grad_fn = scalar_problem(np.float32, kw.get("maximize", False))
    ours, theirs = ([torch.tensor(p, requires_grad=True) for p in start] for _ in range(2))
    opts = getattr(kt, name)(ours, **kw), getattr(torch.optim, name)(theirs, **kw)
    for t in range(SCALAR_STEPS):
        for ps, opt in zip((ours, theirs), opts):
            for p, g in zip(ps, grad_fn(t, [p.detach().numpy() for p in ps])):
                p.grad = torch.from_numpy(g)
            opt.step()
        for x, y in zip(ours, theirs):
            assert x.shape == y.shape
            np.testing.assert_allclose(x.detach().numpy(), y.detach().numpy(),
                                       **TOL[np.float32], err_msg=f"step {t + 1}")
    for x, y in zip(ours, theirs):
        assert {k: v.shape for k, v in opts[0].state[x].items()} == \
            {k: v.shape for k, v in opts[1].state[y].items()}


@pytest.mark.parametrize(("name", "kw"), [("SGD", dict(lr=0.1)), ("Adam", dict(lr=0.1))])
def test_scalar_param_numpy_scalar_grad(name, kw):
    """A NumPy scalar (what arithmetic on a 0-d array gives) is a 0-d gradient."""
    p, q = np.array(1.0), np.array(1.0)
    getattr(optim, name)([p], **kw).step([np.float64(0.5)])
    getattr(optim, name)([q], **kw).step([np.array(0.5)])
    assert p.shape == () and p == q != 1.0
    with pytest.raises(TypeError, match=r"grads\[0\] is float32"):
        getattr(optim, name)([p], **kw).step([np.float32(0.5)])


@pytest.mark.parametrize(("name", "kw"), [("Adam", dict(lr=0.01, amsgrad=True)),
                                          ("RMSprop", dict(lr=0.01, momentum=0.9,
                                                           centered=True))])
def test_state_dict_round_trip_on_backend(backend, name, kw):
    """A host state dict taken from an optimizer, loaded into a fresh one on the same
    backend, continues the same trajectory exactly (and later steps do not leak into it)."""
    dtype = np.float32
    whole, opt = run_on(backend, name, kw, dtype, steps=2)
    saved = opt.state_dict()
    start, grad_fn = small_problem(dtype)
    opt.step([to_backend(grad_fn(2, whole[1]), backend)])  # must not change `saved`
    p = to_backend(whole[1].copy(), backend)
    fresh = getattr(optim, name)([p], lr=123.0)  # hyperparameters come from the dict
    fresh.load_state_dict(saved)
    fresh.step([to_backend(grad_fn(2, whole[1]), backend)])
    np.testing.assert_array_equal(to_host(p), to_host(opt.params[0]))


@pytest.mark.skipif(not cuda_available(), reason="Numba's CUDA target is absent")
def test_device_errors_before_any_update():
    a, b = to_backend(np.ones(3), "cuda"), to_backend(np.ones((2, 2)), "cuda")
    with pytest.raises(TypeError, match=r"params\[1\] is a NumPy .host. array"):
        optim.SGD([a, np.ones(3)])
    opt = optim.Adam([a, b])
    for grads, error, match in [
            ([np.ones(3), to_backend(np.ones((2, 2)), "cuda")], TypeError,
             r"grads\[0\] is a NumPy .host. array"),
            ([a, to_backend(np.ones((2, 2), np.float32), "cuda")], TypeError,
             r"grads\[1\] is float32"),
            ([a, to_backend(np.ones(4), "cuda")], ValueError, r"grads\[1\] has shape")]:
        with pytest.raises(error, match=match):
            opt.step(grads)
    with pytest.raises(TypeError, match=r"grads\[0\] is on the GPU"):
        optim.SGD([np.ones(3)]).step([a])
    np.testing.assert_array_equal(to_host(a), 1.0)  # nothing ran
    assert opt.state[0]["step"] == 0


# -- the harder bad calls: named errors before anything runs ----------------------------------
NAN, INF = float("nan"), float("inf")
BAD_HYPERPARAMETERS = [  # (optimizer, keyword arguments, error, the name in the message)
    ("SGD", dict(lr="0.1"), TypeError, "lr"),
    ("SGD", dict(lr=True), TypeError, "lr"),
    ("SGD", dict(lr=None), TypeError, "lr"),
    ("SGD", dict(lr=np.array([0.1])), TypeError, "lr"),
    ("SGD", dict(lr=1j), TypeError, "lr"),
    ("SGD", dict(lr=10**400), ValueError, "lr"),  # float() raises OverflowError
    ("SGD", dict(lr=NAN), ValueError, "lr"),
    ("SGD", dict(lr=INF), ValueError, "lr"),
    ("SGD", dict(momentum="0.9"), TypeError, "momentum"),
    ("SGD", dict(momentum=np.bool_(True)), TypeError, "momentum"),
    ("SGD", dict(dampening="0"), TypeError, "dampening"),
    ("SGD", dict(dampening=NAN), ValueError, "dampening"),
    ("SGD", dict(weight_decay="0"), TypeError, "weight_decay"),
    ("SGD", dict(weight_decay=-INF), ValueError, "weight_decay"),
    ("SGD", dict(momentum=0.9, nesterov="False"), TypeError, "nesterov"),
    ("SGD", dict(maximize="False"), TypeError, "maximize"),
    ("SGD", dict(maximize=1), TypeError, "maximize"),
    ("Adagrad", dict(lr="0.01"), TypeError, "lr"),
    ("Adagrad", dict(lr_decay="0"), TypeError, "lr_decay"),
    ("Adagrad", dict(lr_decay=INF), ValueError, "lr_decay"),
    ("Adagrad", dict(weight_decay=False), TypeError, "weight_decay"),
    ("Adagrad", dict(initial_accumulator_value="0"), TypeError, "initial_accumulator_value"),
    ("Adagrad", dict(initial_accumulator_value=NAN), ValueError, "initial_accumulator_value"),
    ("Adagrad", dict(eps="1e-10"), TypeError, "eps"),
    ("RMSprop", dict(alpha="0.99"), TypeError, "alpha"),
    ("RMSprop", dict(alpha=NAN), ValueError, "alpha"),
    ("RMSprop", dict(eps="1e-8"), TypeError, "eps"),
    ("RMSprop", dict(momentum="0"), TypeError, "momentum"),
    ("RMSprop", dict(weight_decay=-1e-3), ValueError, "weight_decay"),
    ("RMSprop", dict(centered="yes"), TypeError, "centered"),
    ("Adam", dict(lr="1e-3"), TypeError, "lr"),
    ("Adam", dict(betas=("0.9", 0.999)), TypeError, r"betas\[0\]"),
    ("Adam", dict(betas=(0.9, "0.999")), TypeError, r"betas\[1\]"),
    ("Adam", dict(betas=(True, 0.999)), TypeError, r"betas\[0\]"),
    ("Adam", dict(betas=0.9), TypeError, "betas"),
    ("Adam", dict(betas="ab"), TypeError, "betas"),
    ("Adam", dict(betas=(0.9,)), TypeError, "betas"),
    ("Adam", dict(betas=(0.9, 0.99, 0.999)), TypeError, "betas"),
    ("Adam", dict(betas=(0.9, NAN)), ValueError, r"betas\[1\]"),
    ("Adam", dict(betas=(0.9, 1 - 1e-17)), ValueError, r"betas\[1\]"),  # 1.0 as a float
    ("Adam", dict(eps="1e-8"), TypeError, "eps"),
    ("Adam", dict(eps=INF), ValueError, "eps"),
    ("Adam", dict(weight_decay="0"), TypeError, "weight_decay"),
    ("Adam", dict(amsgrad="True"), TypeError, "amsgrad"),
    ("Adam", dict(maximize=None), TypeError, "maximize"),
    ("AdamW", dict(weight_decay="0.01"), TypeError, "weight_decay"),
    ("AdamW", dict(betas=[0.9, -0.1]), ValueError, r"betas\[1\]"),
    ("AdamW", dict(amsgrad=0), TypeError, "amsgrad"),
]


@pytest.mark.parametrize(("name", "kw", "error", "match"), BAD_HYPERPARAMETERS,
                         ids=[f"{n}-{kw}" for n, kw, _, _ in BAD_HYPERPARAMETERS])
def test_bad_hyperparameters_are_named(name, kw, error, match):
    with pytest.raises(error, match=match):
        getattr(optim, name)([np.ones(3)], **kw)


@pytest.mark.parametrize(("name", "kw"), [
    ("SGD", dict(lr=1, momentum=np.float32(0.5), dampening=np.int64(0), weight_decay=0,
                 nesterov=np.bool_(False), maximize=np.bool_(True))),
    ("Adagrad", dict(lr=np.float64(0.1), lr_decay=np.int32(0), initial_accumulator_value=1,
                     eps=0)),
    ("RMSprop", dict(lr=np.float16(0.01), alpha=1, eps=np.float32(1e-8), momentum=0,
                     centered=np.bool_(True))),
    ("Adam", dict(lr=1, betas=[np.float32(0.5), 0], eps=np.float64(1e-8), weight_decay=0)),
    ("AdamW", dict(lr=np.int64(1), betas=(0, np.float64(0.9)), weight_decay=1)),
])
def test_numbers_of_any_real_type_are_accepted(name, kw):
    """Ints, Python floats and NumPy scalars are accepted, as torch accepts them; they are
    kept as Python floats (and bools, and a tuple of betas): JSON-ready, one type."""
    ours, theirs = np.ones(3), torch.ones(3, dtype=torch.float64, requires_grad=True)
    opt = getattr(optim, name)([ours], **kw)
    for key, value in opt.hyperparameters.items():
        want = tuple if key == "betas" else bool if isinstance(kw.get(key), np.bool_) else None
        if want is not None:
            assert type(value) is want, key
        elif key in kw and not isinstance(kw[key], bool):
            assert type(value) is float and value == float(kw[key]), key
    their_kw = {k: (tuple(float(b) for b in v) if k == "betas"
                    else bool(v) if isinstance(v, np.bool_) else float(v))
                for k, v in kw.items()}
    topt = getattr(torch.optim, name)([theirs], **their_kw)
    for _ in range(3):
        opt.step([np.full(3, 0.5)])
        theirs.grad = torch.full((3,), 0.5, dtype=torch.float64)
        topt.step()
    np.testing.assert_allclose(ours, theirs.detach().numpy(), **TOL[np.float64])


def _aliases():
    """(params, the indices in the message): the same array twice, overlapping views."""
    a, b, buf = np.ones(3), np.ones(4), np.zeros(12)
    return [([a, b, a], (0, 2)),
            ([b, a, a], (1, 2)),
            ([buf[:6], buf[4:]], (0, 1)),
            ([buf[8:], b, buf[:9]], (0, 2)),
            ([buf, buf.reshape(3, 4)], (0, 1)),
            ([buf[5:7], a, buf[6, ...]], (0, 2)),  # a 0-d view inside another
            ([a, buf[:4], b, buf[4:8], buf[:2].reshape(2, 1)], (1, 4))]


@pytest.mark.parametrize("name", ["SGD", "Adagrad", "RMSprop", "Adam", "AdamW"])
@pytest.mark.parametrize("case", range(len(_aliases())))
def test_aliased_params_are_refused(name, case):
    params, (i, j) = _aliases()[case]
    with pytest.raises(ValueError, match=rf"params\[{i}\] and params\[{j}\] share memory"):
        getattr(optim, name)(params)


def test_disjoint_views_of_one_buffer_are_accepted():
    buf = np.zeros(12)
    parts = [buf[:4], buf[4:5].reshape(()), buf[5:].reshape(7, 1)]
    opt = optim.SGD(parts, lr=1.0)
    opt.step([np.ones(4), np.ones(()), np.ones((7, 1))])
    np.testing.assert_array_equal(buf, -1.0)


def test_aliased_params_on_backend(backend):
    """Device arrays by their pointer ranges (``__cuda_array_interface__``)."""
    a, b = to_backend(np.ones(3), backend), to_backend(np.zeros(10), backend)
    cases = [([a, b, a], (0, 2)), ([b[:6], a, b[4:]], (0, 2)), ([b[:5], b[5:], b], (0, 2))]
    for params, (i, j) in cases:
        with pytest.raises(ValueError, match=rf"params\[{i}\] and params\[{j}\]"):
            optim.Adam(params)
    optim.Adam([b[:5], b[5:], a]).step([to_backend(np.ones(5), backend),
                                          to_backend(np.ones(5), backend),
                                          to_backend(np.ones(3), backend)])
    assert (to_host(b) < 0).all()


def _loaded_adam():
    opt = optim.Adam([np.ones(3), np.ones(())], amsgrad=True)
    opt.step([np.ones(3), np.ones(())])
    return opt


def _set(path, value):
    """A state_dict edit: ``value`` at the key path (a callable value is called with the
    old one)."""
    def edit(sd):
        *head, last = path
        d = functools.reduce(lambda d, k: d[k], head, sd)
        d[last] = value(d[last]) if callable(value) else value
    return edit


BAD_STATE = [  # (edit, error, the key in the message)
    (_set(("state", 0, "step"), -1), ValueError, "['state'][0]['step']"),
    (_set(("state", 1, "step"), 2.5), ValueError, "['state'][1]['step']"),
    (_set(("state", 0, "step"), NAN), ValueError, "['state'][0]['step']"),
    (_set(("state", 0, "step"), INF), ValueError, "['state'][0]['step']"),
    (_set(("state", 0, "step"), 10**400), ValueError, "['state'][0]['step']"),
    (_set(("state", 0, "step"), 2.0**60), ValueError, "['state'][0]['step']"),
    (_set(("state", 0, "step"), "3"), TypeError, "['state'][0]['step']"),
    (_set(("state", 0, "step"), True), TypeError, "['state'][0]['step']"),
    (_set(("state", 0, "step"), None), TypeError, "['state'][0]['step']"),
    (_set(("state", 0, "step"), np.array([3])), TypeError, "['state'][0]['step']"),
    (_set(("hyperparameters", "lr"), NAN), ValueError, "['hyperparameters']['lr']"),
    (_set(("hyperparameters", "lr"), INF), ValueError, "['hyperparameters']['lr']"),
    (_set(("hyperparameters", "lr"), -0.1), ValueError, "['hyperparameters']['lr']"),
    (_set(("hyperparameters", "lr"), "0.1"), TypeError, "['hyperparameters']['lr']"),
    (_set(("hyperparameters", "eps"), -1e-8), ValueError, "['hyperparameters']['eps']"),
    (_set(("hyperparameters", "eps"), NAN), ValueError, "['hyperparameters']['eps']"),
    (_set(("hyperparameters", "weight_decay"), INF), ValueError,
     "['hyperparameters']['weight_decay']"),
    (_set(("hyperparameters", "betas"), (0.9, 1.0)), ValueError,
     "['hyperparameters']['betas'][1]"),
    (_set(("hyperparameters", "betas"), (NAN, 0.9)), ValueError,
     "['hyperparameters']['betas'][0]"),
    (_set(("hyperparameters", "betas"), 0.9), TypeError, "['hyperparameters']['betas']"),
    (_set(("hyperparameters", "amsgrad"), "no"), TypeError, "['hyperparameters']['amsgrad']"),
    (_set(("hyperparameters",), [("lr", 0.1)]), TypeError, "['hyperparameters']"),
    (_set(("state",), "state"), TypeError, "['state']"),
    (_set(("state", 1), [1.0]), TypeError, "['state'][1]"),
    (_set(("state", 0, "exp_avg"), np.ones(4)), ValueError, "['state'][0]['exp_avg']"),
    (_set(("state", 1, "exp_avg_sq"), np.ones(1)), ValueError, "['state'][1]['exp_avg_sq']"),
    (_set(("state", 0, "max_exp_avg_sq"), np.ones((3, 1))), ValueError,
     "['state'][0]['max_exp_avg_sq']"),
    (_set(("state", 0, "exp_avg"), lambda v: v.astype(np.float32)), TypeError,
     "['state'][0]['exp_avg']"),
    (_set(("state", 1, "exp_avg"), lambda v: v.astype(np.int64)), TypeError,
     "['state'][1]['exp_avg']"),
    (_set(("state", 0, "exp_avg"), [0.0, 0.0, 0.0]), TypeError, "['state'][0]['exp_avg']"),
    (_set(("state", 1, "exp_avg"), 0.0), TypeError, "['state'][1]['exp_avg']"),
]


@pytest.mark.parametrize(("edit", "error", "key"), BAD_STATE,
                         ids=[f"{k}-{e.__name__}-{i}" for i, (_, e, k) in enumerate(BAD_STATE)])
def test_bad_state_dict_is_named_and_changes_nothing(edit, error, key):
    opt = _loaded_adam()
    bad = opt.state_dict()
    edit(bad)
    fresh = _loaded_adam()
    fresh.hyperparameters["lr"] = 0.5  # a later schedule step: must survive the failed load
    before = fresh.state_dict()
    with pytest.raises(error, match=re.escape(key)):
        fresh.load_state_dict(bad)
    after = fresh.state_dict()
    assert after["hyperparameters"] == before["hyperparameters"]
    for x, y in zip(after["state"], before["state"]):
        assert x.keys() == y.keys() and x["step"] == y["step"]
        for k in set(x) - {"step"}:
            np.testing.assert_array_equal(x[k], y[k])


def test_sgd_nesterov_from_state_dict():
    sd = optim.SGD([np.ones(3)], momentum=0.9, nesterov=True).state_dict()
    sd["hyperparameters"]["momentum"] = 0
    with pytest.raises(ValueError, match=re.escape("state_dict['hyperparameters']: nesterov")):
        optim.SGD([np.ones(3)]).load_state_dict(sd)


@pytest.mark.parametrize("step", [3, np.int64(3), np.uint8(3), 3.0, np.float32(3.0),
                                  np.array(3), np.array(3.0)])
def test_step_counts_of_any_integer_type_load(step):
    """ints, NumPy integers, integral floats (torch keeps its steps as float tensors) and
    0-d arrays of them (as a checkpoint reads them) load, as a Python int."""
    opt = _loaded_adam()
    sd = opt.state_dict()
    sd["state"][0]["step"] = step
    opt.load_state_dict(sd)
    assert type(opt.state[0]["step"]) is int and opt.state[0]["step"] == 3
