"""kernels.torch against PyTorch itself, computed here: each autograd Function against
``torch.nn.functional`` (forward, gradients, running statistics; ``gradcheck`` in float64),
each module against the torch module it subclasses (same state), each optimizer against
``torch.optim``'s trajectory, a small CNN trained both ways, and DistributedDataParallel
(gloo, 2 processes) against single-process training on the full batch.
"""

from __future__ import annotations

import copy
import os
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import kernels
import kernels.torch as kt

DTYPES = [torch.float32, torch.float64]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    # NOTE: on a busy 2-core machine multi-threaded torch ops wait on descheduled threads
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tol(dtype, scale: float = 1.0) -> dict:
    """``scale``: the size of the sums behind a value (weight gradients sum many terms)."""
    return (dict(rtol=2e-4, atol=2e-5 * scale) if dtype == torch.float32
            else dict(rtol=1e-9, atol=1e-11 * scale))


def rand(*shape, dtype=torch.float64, seed=0, grad=True, offset=0.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=dtype) + offset).requires_grad_(grad)


def close(ours, theirs, dtype, scale=1.0):
    assert ours.dtype == theirs.dtype == dtype
    torch.testing.assert_close(ours.detach(), theirs.detach(), **tol(dtype, scale))


def clones(*tensors):
    """Independent leaf copies (same values, same requires_grad), None kept."""
    return [None if t is None else t.detach().clone().requires_grad_(t.requires_grad)
            for t in tensors]


def check(ours_fn, torch_fn, inputs, dtype, seed=99):
    """Forward and every input gradient of ``ours_fn(*inputs)`` vs ``torch_fn``."""
    mine, theirs = clones(*inputs), clones(*inputs)
    y, y_ref = ours_fn(*mine), torch_fn(*theirs)
    close(y, y_ref, dtype)
    g = rand(*y_ref.shape, dtype=dtype, seed=seed, grad=False)
    y.backward(g)
    y_ref.backward(g)
    scale = g.numel() ** 0.5
    for a, b in zip(mine, theirs):
        if b is not None and b.requires_grad:
            close(a.grad, b.grad, dtype, scale)
    return mine, theirs


# ---------------------------------------------------------------- conv2d

CONV = [dict(), dict(stride=2, padding=1), dict(padding=(1, 2), dilation=2),
        dict(groups=2, stride=(1, 2)), dict(padding="same", dilation=(2, 1)),
        dict(padding="valid", groups=4)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kw", CONV, ids=str)
def test_conv2d_matches_torch(kw, bias, dtype):
    groups = kw.get("groups", 1)
    x = rand(2, 4, 9, 8, dtype=dtype, seed=1)
    w = rand(6 if groups != 4 else 8, 4 // groups, 3, 3, dtype=dtype, seed=2)
    b = rand(w.shape[0], dtype=dtype, seed=3) if bias else None
    check(lambda x, w, b: kt.conv2d(x, w, b, **kw), lambda x, w, b: F.conv2d(x, w, b, **kw),
          [x, w, b], dtype)


def test_conv2d_first_layer_and_unbatched_input(monkeypatch):
    """An input that needs no gradient gets none (the backward skips grad_x); a C×H×W
    input works as in torch."""
    asked = []
    backward = kernels.conv2d_backward

    def spy(*args, need_input_grad=True, **kw):
        asked.append(need_input_grad)
        return backward(*args, need_input_grad=need_input_grad, **kw)

    monkeypatch.setattr(kernels, "conv2d_backward", spy)
    x, w = rand(2, 3, 6, 6, seed=1, grad=False), rand(4, 3, 3, 3, seed=2)
    (w_ref,) = clones(w)
    kt.conv2d(x, w, padding=1).square().sum().backward()
    F.conv2d(x, w_ref, padding=1).square().sum().backward()
    assert x.grad is None and asked == [False]
    close(w.grad, w_ref.grad, torch.float64)
    check(lambda x, w: kt.conv2d(x, w, stride=2), lambda x, w: F.conv2d(x, w, stride=2),
          [rand(3, 7, 7, seed=4), rand(5, 3, 2, 2, seed=5)], torch.float64)


def test_conv2d_gradcheck():
    x, w, b = rand(2, 4, 6, 5, seed=1), rand(4, 2, 3, 2, seed=2), rand(4, seed=3)
    assert torch.autograd.gradcheck(
        lambda x, w, b: kt.conv2d(x, w, b, stride=(2, 1), padding=1, dilation=(1, 2),
                                  groups=2), (x, w, b))


# ---------------------------------------------------------------- max_pool2d

POOL = [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
        dict(kernel_size=(3, 2), stride=(2, 1), ceil_mode=True),
        dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", POOL, ids=str)
def test_max_pool2d_matches_torch(kw, dtype):
    x = rand(2, 3, 9, 8, dtype=dtype, seed=1)
    check(lambda x: kt.max_pool2d(x, **kw), lambda x: F.max_pool2d(x, **kw), [x], dtype)
    y, i = kt.max_pool2d(x, **kw, return_indices=True)
    y_ref, i_ref = F.max_pool2d(x, **kw, return_indices=True)
    assert torch.equal(i, i_ref) and torch.equal(y, y_ref)
    assert not i.requires_grad and y.requires_grad


def test_max_pool2d_gradcheck():
    x = rand(2, 2, 7, 6, seed=4)  # distinct values: no ties, so max is differentiable
    assert torch.autograd.gradcheck(lambda x: kt.max_pool2d(x, 3, 2, 1, ceil_mode=True), (x,))


# ---------------------------------------------------------------- norms (functional)

def norm_args(c, dtype, affine, seed=5):
    if not affine:
        return None, None
    return rand(c, dtype=dtype, seed=seed, offset=1.0), rand(c, dtype=dtype, seed=seed + 1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_matches_torch_with_running_stats(training, affine, dtype):
    w, b = norm_args(3, dtype, affine)
    rm, rv = rand(3, dtype=dtype, seed=7, grad=False), rand(3, dtype=dtype, seed=8,
                                                              grad=False).abs() + 0.5
    rm_ref, rv_ref = rm.clone(), rv.clone()
    for step in range(2):  # running statistics carried over two batches
        x = rand(4, 3, 5, 6, dtype=dtype, seed=10 + step, offset=2.0)
        check(lambda x, w, b: kt.batch_norm(x, rm, rv, w, b, training, 0.2, 1e-4),
              lambda x, w, b: F.batch_norm(x, rm_ref, rv_ref, w, b, training, 0.2, 1e-4),
              [x, w, b], dtype)
        close(rm, rm_ref, dtype)
        close(rv, rv_ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("mode", ["input_stats", "tracked", "running"])
def test_instance_norm_matches_torch(mode, affine, dtype):
    w, b = norm_args(3, dtype, affine)
    rm = rv = rm_ref = rv_ref = None
    if mode != "input_stats":
        rm, rv = rand(3, dtype=dtype, seed=7, grad=False), torch.ones(3, dtype=dtype) * 1.5
        rm_ref, rv_ref = rm.clone(), rv.clone()
    use_input_stats = mode != "running"
    x = rand(2, 3, 5, 4, dtype=dtype, seed=10, offset=1.0)
    check(lambda x, w, b: kt.instance_norm(x, rm, rv, w, b, use_input_stats, 0.3, 1e-5),
          lambda x, w, b: F.instance_norm(x, rm_ref, rv_ref, w, b, use_input_stats, 0.3, 1e-5),
          [x, w, b], dtype)
    if rm is not None:
        close(rm, rm_ref, dtype)
        close(rv, rv_ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", [True, False])
def test_group_and_layer_norm_match_torch(affine, dtype):
    x = rand(3, 6, 4, 5, dtype=dtype, seed=10, offset=1.0)
    w, b = norm_args(6, dtype, affine)
    check(lambda x, w, b: kt.group_norm(x, 3, w, b, 1e-4),
          lambda x, w, b: F.group_norm(x, 3, w, b, 1e-4), [x, w, b], dtype)
    shape = (4, 5)
    w, b = (rand(*shape, dtype=dtype, seed=3), rand(*shape, dtype=dtype, seed=4)) \
        if affine else (None, None)
    check(lambda x, w, b: kt.layer_norm(x, shape, w, b), lambda x, w, b: F.layer_norm(
        x, shape, w, b), [x, w, b], dtype)


def test_norms_gradcheck():
    x = rand(2, 4, 3, 3, seed=1, offset=1.0)
    w, b = rand(4, seed=2, offset=1.0), rand(4, seed=3)
    rm, rv = torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    for fn in [lambda x, w, b: kt.batch_norm(x, rm, rv, w, b, training=True),
               lambda x, w, b: kt.batch_norm(x, rm, rv, w, b, training=False),
               lambda x, w, b: kt.instance_norm(x, None, None, w, b),
               lambda x, w, b: kt.group_norm(x, 2, w, b)]:
        assert torch.autograd.gradcheck(fn, (x, w, b))
    lw, lb = rand(3, 3, seed=4), rand(3, 3, seed=5)
    assert torch.autograd.gradcheck(lambda x, w, b: kt.layer_norm(x, (3, 3), w, b), (x, lw, lb))


# ---------------------------------------------------------------- modules

MODULES = [
    ("Conv2d", (4, 6, 3), dict(stride=2, padding=1, bias=False)),
    ("Conv2d", (4, 6, (3, 2)), dict(padding="same", dilation=2, groups=2)),
    ("MaxPool2d", (3,), dict(stride=2, padding=1, ceil_mode=True)),
    ("BatchNorm2d", (4,), dict()),
    ("BatchNorm2d", (4,), dict(affine=False, momentum=None)),
    ("BatchNorm2d", (4,), dict(track_running_stats=False)),
    ("LayerNorm", ([4, 7, 6],), dict()),
    ("LayerNorm", (6,), dict(elementwise_affine=False)),
    ("LayerNorm", ([7, 6],), dict(bias=False)),
    ("GroupNorm", (2, 4), dict()),
    ("GroupNorm", (4, 4), dict(affine=False)),
    ("InstanceNorm2d", (4,), dict()),
    ("InstanceNorm2d", (4,), dict(affine=True, track_running_stats=True)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, args, kw", MODULES, ids=[f"{n}{a}{k}" for n, a, k in MODULES])
def test_module_matches_torch_module(name, args, kw, dtype):
    if name != "MaxPool2d":  # the only one without parameters or buffers
        kw = dict(kw, dtype=dtype)
    torch.manual_seed(0)
    ref = getattr(nn, name)(*args, **kw)
    torch.manual_seed(0)
    ours = getattr(kt, name)(*args, **kw)
    assert isinstance(ours, getattr(nn, name))
    for (k, a), (k_ref, b) in zip(ours.state_dict().items(), ref.state_dict().items()):
        assert k == k_ref and torch.equal(a, b)  # torch's own initialization
    with torch.no_grad():  # non-trivial affine parameters, the same on both
        for p in ref.parameters():
            p.copy_(rand(*p.shape, dtype=dtype, seed=p.numel(), grad=False) * 0.5 + 1)
    ours.load_state_dict(ref.state_dict())
    for step, training in enumerate([True, True, False]):
        ours.train(training)
        ref.train(training)
        x = rand(3, 4, 7, 6, dtype=dtype, seed=step, offset=1.0)
        check(ours, ref, [x], dtype)
        for (k, a), b in zip(ours.state_dict().items(), ref.state_dict().values()):
            assert a.dtype == b.dtype, k
            torch.testing.assert_close(a, b, **tol(dtype, 10.0))
        for p, p_ref in zip(ours.parameters(), ref.parameters()):
            close(p.grad, p_ref.grad, dtype, 10.0)
            p.grad = p_ref.grad = None


def test_unsupported_configurations_fail_at_construction():
    with pytest.raises(ValueError, match="padding_mode"):
        kt.Conv2d(3, 4, 3, padding=1, padding_mode="reflect")
    with pytest.raises(ValueError, match="dilation"):
        kt.MaxPool2d(3, dilation=2)
    with pytest.raises(ValueError, match="dilation"):
        kt.max_pool2d(rand(1, 1, 5, 5), 2, dilation=2)
    with pytest.raises(ValueError, match="fused"):
        kt.Adam([rand(3)], fused=True)
    with pytest.raises(ValueError, match="differentiable"):
        kt.SGD([rand(3)], lr=0.1, differentiable=True)


def test_bad_tensors_give_clear_errors():
    x, w = rand(1, 2, 5, 5, dtype=torch.float32), rand(3, 2, 3, 3, dtype=torch.float32)
    with pytest.raises(TypeError, match="input must be float32 or float64"):
        kt.conv2d(x.half(), w.half())
    with pytest.raises(TypeError, match="weight is torch.float64"):
        kt.conv2d(x, w.double())
    with pytest.raises(NotImplementedError, match="CPU and CUDA tensors only"):
        kt.conv2d(torch.empty(1, 2, 5, 5, device="meta"), w)
    with pytest.raises(NotImplementedError, match="CPU and CUDA tensors only"):
        kt.SGD([torch.empty(3, device="meta", requires_grad=True)], lr=0.1)
    with pytest.raises(TypeError, match="params\\[0\\] must be float32 or float64"):
        kt.Adam([torch.ones(3, dtype=torch.float16, requires_grad=True)])
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        kt.group_norm(np.ones((2, 4, 3)), 2)
    p = rand(3)
    opt = kt.Adam([p])
    opt.state[p].update(step=torch.tensor(0.0), exp_avg=torch.zeros(2, dtype=p.dtype),
                        exp_avg_sq=torch.zeros(2, dtype=p.dtype))
    p.grad = torch.ones_like(p)
    with pytest.raises(ValueError, match="state 'exp_avg' has shape"):
        opt.step()


def test_running_stats_that_require_grad_are_detached_and_updated():
    x = rand(4, 3, 5, 5, seed=1)
    rm, rm_ref = torch.zeros(3, dtype=torch.float64, requires_grad=True), torch.zeros(3).double()
    rv, rv_ref = torch.ones(3, dtype=torch.float64), torch.ones(3).double()
    y = kt.batch_norm(x, rm, rv, training=True)
    F.batch_norm(x, rm_ref, rv_ref, training=True)
    close(rm.detach(), rm_ref, torch.float64)
    close(rv, rv_ref, torch.float64)
    y.sum().backward()
    assert rm.grad is None


# ---------------------------------------------------------------- optimizers

OPTIMS = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, maximize=True)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.01)),
    ("Adagrad", dict(lr=0.1, initial_accumulator_value=0.5, maximize=True)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, momentum=0.9, weight_decay=0.01)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, centered=True, momentum=0.5)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.3, 0.9), maximize=True)),
    ("Adam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
]
STEPS = 60


def problem(dtype):
    """Leaf parameters (one non-contiguous, one never used so its grad stays None) and a
    loss of them at each step, evaluated on each side's own parameters."""
    params = [rand(4, 3, 3, 3, dtype=dtype, seed=1), rand(5, 7, dtype=dtype, seed=2),
              rand(5, dtype=dtype, seed=3), rand(2, 5, dtype=dtype, seed=4).t(),
              rand(3, dtype=dtype, seed=5)]
    params = [p.detach().requires_grad_() for p in params]
    assert not params[3].is_contiguous()

    def loss(ps, step):
        w1, w2, b, w3, _ = ps
        img = rand(6, 3, 5, 5, dtype=dtype, seed=100 + step, grad=False)
        vec = rand(6, 3, dtype=dtype, seed=200 + step, grad=False)
        h = torch.cat([F.conv2d(img, w1, padding=1).tanh().mean((2, 3)), vec], 1)
        out = torch.tanh(h @ w2.t() + b) @ w3
        return (out - 0.5).square().mean() + 0.01 * w2.square().sum()
    return params, loss


def groups(ps, lr):
    """Two param groups, the first with its own lr."""
    return [{"params": ps[:1], "lr": lr * 0.5}, {"params": ps[1:]}]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, kw", OPTIMS, ids=[f"{n}-{k}" for n, k in OPTIMS])
def test_optimizer_follows_torch_trajectory(name, kw, dtype):
    params, loss = problem(dtype)
    ours_p, ref_p = clones(*params), clones(*params)
    ours = getattr(kt, name)(groups(ours_p, kw["lr"]), **kw)
    ref = getattr(torch.optim, name)(groups(ref_p, kw["lr"]), **kw)
    assert isinstance(ours, torch.optim.Optimizer)
    sched = torch.optim.lr_scheduler.StepLR(ours, step_size=20, gamma=0.5)
    sched_ref = torch.optim.lr_scheduler.StepLR(ref, step_size=20, gamma=0.5)
    for step in range(STEPS):
        if step == STEPS // 2:  # state_dict round trip into a fresh optimizer
            saved, saved_sched = copy.deepcopy(ours.state_dict()), sched.state_dict()
            ours = getattr(kt, name)(groups(ours_p, kw["lr"]), **kw)
            ours.load_state_dict(saved)
            sched = torch.optim.lr_scheduler.StepLR(ours, step_size=20, gamma=0.5)
            sched.load_state_dict(saved_sched)
        for opt, ps in [(ours, ours_p), (ref, ref_p)]:
            opt.zero_grad()
            # maximize climbs -loss, so that both runs still converge (bounded rounding)
            (loss(ps, step) * (-1 if kw.get("maximize") else 1)).backward()
        kept = {k: v for k, v in ours.state.get(ours_p[1], {}).items() if k != "step"}
        ours.step()
        ref.step()
        sched.step()
        sched_ref.step()
        for k, v in kept.items():  # updated in place: the same tensors
            assert ours.state[ours_p[1]][k] is v
        for p, q in zip(ours_p, ref_p):
            assert p.dtype == dtype and p.shape == q.shape
            torch.testing.assert_close(p.detach(), q.detach(), **tol(dtype, 5.0))
    mine, theirs = ours.state_dict(), ref.state_dict()
    assert mine["param_groups"] == theirs["param_groups"]
    assert mine["state"].keys() == theirs["state"].keys()  # the unused one: only Adagrad's
    for i, s in theirs["state"].items():
        assert mine["state"][i].keys() == s.keys()
        for k, v in s.items():
            assert mine["state"][i][k].dtype == v.dtype
            torch.testing.assert_close(mine["state"][i][k], v, **tol(dtype, 5.0))


@pytest.mark.parametrize("name, kw", [("SGD", dict(lr=0.05, momentum=0.9)),
                                      ("RMSprop", dict(lr=0.01, centered=True)),
                                      ("Adam", dict(lr=0.01, amsgrad=True))])
def test_optimizer_state_dict_crosses_with_torch_and_closure_works(name, kw):
    """A torch.optim state_dict loads into ours (and ours into torch's), mid-run, and
    ``step(closure)`` evaluates the closure and returns its loss, as torch."""
    params, loss = problem(torch.float64)
    ours_p, ref_p = clones(*params), clones(*params)
    ref = getattr(torch.optim, name)(ref_p, **kw)
    ours = getattr(kt, name)(ours_p, **kw)
    for step in range(10):
        if step == 5:  # swap states: each continues from the other's
            mine = copy.deepcopy(ours.state_dict())
            ours.load_state_dict(copy.deepcopy(ref.state_dict()))
            ref.load_state_dict(mine)
        losses = []
        for opt, ps in [(ours, ours_p), (ref, ref_p)]:
            def closure(opt=opt, ps=ps, step=step):
                opt.zero_grad()
                value = loss(ps, step)
                value.backward()
                return value
            losses.append(opt.step(closure))
        torch.testing.assert_close(losses[0], losses[1], **tol(torch.float64))
        for p, q in zip(ours_p, ref_p):
            torch.testing.assert_close(p, q, **tol(torch.float64))


# ---------------------------------------------------------------- training

def small_cnn(lib):
    """A small CNN from ``lib``'s modules (``torch.nn`` or ``kernels.torch``)."""
    return nn.Sequential(
        # NOTE: no bias before batch norm: its gradient is 0 up to rounding, which Adam
        # would blow up to full-size steps in different directions on the two sides
        lib.Conv2d(3, 8, 3, padding=1, bias=False), lib.BatchNorm2d(8), nn.ReLU(),
        lib.MaxPool2d(2), lib.Conv2d(8, 8, 3, stride=2, padding=1, groups=2, bias=False),
        lib.InstanceNorm2d(8, affine=True), nn.ReLU(), lib.Conv2d(8, 6, 1),
        lib.GroupNorm(3, 6), lib.LayerNorm([6, 2, 2]), nn.Flatten(), nn.Linear(24, 5))


def train(model, opt, xs, ys):
    losses = []
    for x, y in zip(xs, ys):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("opt_name, kw", [("SGD", dict(lr=0.1, momentum=0.9)),
                                          ("Adam", dict(lr=0.01))])
def test_small_cnn_trains_as_torch(opt_name, kw):
    torch.manual_seed(0)
    ours = small_cnn(kt)
    torch.manual_seed(0)
    ref = small_cnn(nn)
    xs = [rand(8, 3, 8, 8, dtype=torch.float32, seed=s, grad=False) for s in range(5)]
    ys = [torch.randint(0, 5, (8,), generator=torch.Generator().manual_seed(s))
          for s in range(5)]
    losses = train(ours, getattr(kt, opt_name)(ours.parameters(), **kw), xs, ys)
    losses_ref = train(ref, getattr(torch.optim, opt_name)(ref.parameters(), **kw), xs, ys)
    np.testing.assert_allclose(losses, losses_ref, rtol=1e-4)
    for (k, a), b in zip(ours.state_dict().items(), ref.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4, msg=k)
    ours.eval()
    ref.eval()
    torch.testing.assert_close(ours(xs[0]), ref(xs[0]), rtol=1e-3, atol=1e-4)


# ---------------------------------------------------------------- distributed data parallel

DDP_STEPS = 3


def ddp_model():
    """Small, so that each spawned process loads few compiled kernels. Group norm, not
    batch norm: batch statistics would differ per shard."""
    torch.manual_seed(0)
    return nn.Sequential(kt.Conv2d(3, 4, 3, padding=1), kt.GroupNorm(2, 4), nn.ReLU(),
                         kt.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 5)).double()


def ddp_data():
    xs = [rand(8, 3, 8, 8, seed=s, grad=False) for s in range(DDP_STEPS)]
    ys = [torch.randint(0, 5, (8,), generator=torch.Generator().manual_seed(s))
          for s in range(DDP_STEPS)]
    return xs, ys


def ddp_worker(rank, world_size, init_file, out):
    """One DDP process: its shard of each batch, gradients averaged over the processes."""
    import numba
    import torch.distributed as dist

    torch.set_num_threads(1)
    numba.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world_size)
    try:
        ddp = nn.parallel.DistributedDataParallel(ddp_model())
        xs, ys = ddp_data()
        train(ddp, kt.Adam(ddp.parameters(), lr=0.01),
              [x.chunk(world_size)[rank] for x in xs], [y.chunk(world_size)[rank] for y in ys])
        if rank == 0:
            torch.save(ddp.module.state_dict(), out)
    finally:
        dist.destroy_process_group()
    # NOTE: leave without the interpreter's teardown: now and then a worker died there,
    # after its work, of "terminate called without an active exception" (a C++ thread
    # of the runtime torch, gloo and Numba share, destroyed while joinable), and the
    # test failed on a process that had done everything asked of it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def test_distributed_data_parallel_equals_full_batch_training(tmp_path, monkeypatch):
    """DDP (gloo, 2 CPU processes) around kernels.torch modules and optimizer equals one
    process on the full batch: the shards' mean losses average to the full batch's."""
    import torch.distributed as dist
    import torch.multiprocessing as mp

    assert dist.is_available() and dist.is_gloo_available()
    # first, so that any kernel compiles here, once, and the processes load it from the cache
    model = ddp_model()
    initial = copy.deepcopy(model.state_dict())
    train(model, kt.Adam(model.parameters(), lr=0.01), *ddp_data())
    out = str(tmp_path / "out.pt")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the spawned processes inherit it
    mp.spawn(ddp_worker, args=(2, str(tmp_path / "store"), out), nprocs=2)
    trained = torch.load(out)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(trained[k], v, rtol=1e-9, atol=1e-11, msg=k)
    assert not torch.equal(trained["0.weight"], initial["0.weight"])


# ---------------------------------------------------------------- on a real GPU (tier 3)

needs_torch_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="tier 3: needs a CUDA GPU for torch (KERNELS_TEST_GPU=1 on a machine with one)")


@needs_torch_cuda
@pytest.mark.parametrize("opt_name, kw", [("SGD", dict(lr=0.1, momentum=0.9)),
                                          ("Adam", dict(lr=0.01))])
def test_small_cnn_trains_as_torch_on_cuda(opt_name, kw, monkeypatch):
    """CUDA tensors run our CUDA kernels (on torch's stream, zero-copy, outputs from
    torch's allocator) and train as torch does on the same GPU, in full float32 (cuDNN's
    convolutions would otherwise round their inputs to TF32)."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    torch.manual_seed(0)
    ours = small_cnn(kt).cuda()
    torch.manual_seed(0)
    ref = small_cnn(nn).cuda()
    xs = [rand(8, 3, 8, 8, dtype=torch.float32, seed=s, grad=False).cuda() for s in range(5)]
    ys = [torch.randint(0, 5, (8,), generator=torch.Generator().manual_seed(s)).cuda()
          for s in range(5)]
    losses = train(ours, getattr(kt, opt_name)(ours.parameters(), **kw), xs, ys)
    losses_ref = train(ref, getattr(torch.optim, opt_name)(ref.parameters(), **kw), xs, ys)
    np.testing.assert_allclose(losses, losses_ref, rtol=1e-4)
    for (k, a), b in zip(ours.state_dict().items(), ref.state_dict().values()):
        assert a.is_cuda
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4, msg=k)
