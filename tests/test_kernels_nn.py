"""kernels.nn against torch.nn and autograd, computed here with the same weights.

Each layer's forward and backward (input and parameter gradients) is compared with
the torch module of the same name, in float64 (tight) and float32 (loose); so is a
whole LeNet's loss gradient. Checkpoints are checked for exact round trips,
atomic writes and clear errors.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from scipy import stats

from kernels import nn, optim

TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=2e-4, atol=2e-5)}
DTYPES = [np.float64, np.float32]
TORCH_DTYPE = {np.float64: torch.float64, np.float32: torch.float32}


def t(a: np.ndarray, grad: bool = False) -> torch.Tensor:
    return torch.tensor(a, requires_grad=grad)


def copy_into_torch(ours: nn.Module, theirs: torch.nn.Module, dtype) -> None:
    theirs.to(TORCH_DTYPE[dtype])
    theirs.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in ours.state_dict().items()})


def check_layer(ours: nn.Module, theirs: torch.nn.Module, x: np.ndarray, rng, dtype) -> None:
    """Forward, input gradient and parameter gradients of ``ours`` against ``theirs``."""
    copy_into_torch(ours, theirs, dtype)
    xt = t(x, grad=True)
    yt = theirs(xt)
    y = ours.forward(x)
    assert y.dtype == dtype and y.shape == tuple(yt.shape)
    np.testing.assert_allclose(y, yt.detach().numpy(), **TOL[dtype])
    g = rng.standard_normal(y.shape).astype(dtype)
    yt.backward(torch.from_numpy(g))
    gx = ours.backward(g)
    assert gx.dtype == dtype
    np.testing.assert_allclose(gx, xt.grad.numpy(), **TOL[dtype])
    named = dict(theirs.named_parameters())
    ours_named = [n for n, _ in ours.named_parameters()]
    assert ours_named == list(named)
    for name, grad in zip(ours_named, ours.gradients()):
        assert grad.dtype == dtype
        np.testing.assert_allclose(grad, named[name].grad.numpy(), **TOL[dtype], err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("stride,padding,bias", [(1, 0, True), (2, 1, True), (1, 2, False),
                                                 ((1, 2), (2, 0), True)])
def test_conv2d(dtype, stride, padding, bias):
    rng = np.random.default_rng(1)
    ours = nn.Conv2d(3, 5, (3, 4), stride, padding, bias, rng=rng, dtype=dtype)
    theirs = torch.nn.Conv2d(3, 5, (3, 4), stride, padding, bias=bias)
    check_layer(ours, theirs, rng.standard_normal((2, 3, 9, 10)).astype(dtype), rng, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_linear(dtype, bias):
    rng = np.random.default_rng(2)
    ours = nn.Linear(7, 4, bias, rng=rng, dtype=dtype)
    check_layer(ours, torch.nn.Linear(7, 4, bias=bias),
                rng.standard_normal((6, 7)).astype(dtype), rng, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layer,reference", [
    (lambda: nn.MaxPool2d(2), lambda: torch.nn.MaxPool2d(2)),
    (lambda: nn.MaxPool2d(3, stride=2), lambda: torch.nn.MaxPool2d(3, stride=2)),
    (lambda: nn.ReLU(), lambda: torch.nn.ReLU()),
    (lambda: nn.Flatten(), lambda: torch.nn.Flatten()),
], ids=["maxpool2", "maxpool3s2", "relu", "flatten"])
def test_layers_without_weights(dtype, layer, reference):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 4, 9, 8)).astype(dtype)
    check_layer(layer(), reference(), x, rng, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_layer(dtype, training):
    rng = np.random.default_rng(4)
    ours, theirs = nn.BatchNorm2d(4, eps=1e-3, momentum=0.2, dtype=dtype), \
        torch.nn.BatchNorm2d(4, eps=1e-3, momentum=0.2)
    # non-trivial affine parameters and running statistics
    ours.weight[:] = rng.uniform(0.5, 2, 4)
    ours.bias[:] = rng.standard_normal(4)
    ours.running_mean[:] = rng.standard_normal(4)
    ours.running_var[:] = rng.uniform(0.5, 2, 4)
    ours.train(training)
    theirs.train(training)
    x = (3 * rng.standard_normal((5, 4, 3, 3)) + 1).astype(dtype)
    check_layer(ours, theirs, x, rng, dtype)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        np.testing.assert_allclose(getattr(ours, name), getattr(theirs, name).numpy(),
                                   **TOL[dtype], err_msg=name)


def test_batchnorm_running_statistics_over_steps():
    """Several training batches, then eval: running statistics and eval output as torch."""
    rng = np.random.default_rng(5)
    ours, theirs = nn.BatchNorm2d(3, dtype=np.float64), torch.nn.BatchNorm2d(3).double()
    for step in range(4):
        x = (rng.standard_normal((6, 3, 4, 4)) * (step + 1) + step).astype(np.float64)
        ours.forward(x)
        theirs(t(x))
    np.testing.assert_allclose(ours.running_mean, theirs.running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(ours.running_var, theirs.running_var.numpy(), rtol=1e-12)
    assert int(ours.num_batches_tracked) == int(theirs.num_batches_tracked) == 4
    ours.eval()
    theirs.eval()
    x = rng.standard_normal((2, 3, 4, 4))
    np.testing.assert_allclose(ours.forward(x), theirs(t(x)).detach().numpy(), rtol=1e-12,
                               atol=1e-12)
    before = ours.running_mean.copy()
    ours.forward(x)  # eval leaves the running statistics alone
    np.testing.assert_array_equal(ours.running_mean, before)


def torch_lenet(in_channels, image_size, n_classes):
    pad = max(0, (32 - image_size) // 2)
    side = ((image_size + 2 * pad - 4) // 2 - 4) // 2
    T = torch.nn
    return T.Sequential(T.Conv2d(in_channels, 6, 5, padding=pad), T.ReLU(), T.MaxPool2d(2),
                        T.Conv2d(6, 16, 5), T.ReLU(), T.MaxPool2d(2), T.Flatten(),
                        T.Linear(16 * side * side, 120), T.ReLU(), T.Linear(120, 84), T.ReLU(),
                        T.Linear(84, n_classes))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("in_channels,image_size,n_classes", [(1, 28, 10), (3, 32, 7)])
def test_lenet_loss_gradient(dtype, in_channels, image_size, n_classes):
    rng = np.random.default_rng(6)
    model = nn.lenet5(in_channels, image_size, n_classes, rng=rng, dtype=dtype)
    reference = torch_lenet(in_channels, image_size, n_classes)
    copy_into_torch(model, reference, dtype)
    x = rng.random((8, in_channels, image_size, image_size)).astype(dtype)
    labels = rng.integers(0, n_classes, 8)

    loss_fn = nn.CrossEntropyLoss()
    loss = loss_fn(model(x), labels)
    assert model.backward(loss_fn.backward()) is None  # the first conv skips grad_x
    expected = torch.nn.functional.cross_entropy(reference(t(x)), torch.from_numpy(labels))
    expected.backward()
    assert math.isclose(loss, expected.item(), rel_tol=TOL[dtype]["rtol"])
    for (name, p), grad in zip(reference.named_parameters(), model.gradients()):
        assert grad.dtype == dtype
        np.testing.assert_allclose(grad, p.grad.numpy(), **TOL[dtype], err_msg=name)

    model.needs_input_grad = True  # now the input gradient too
    xt = t(x, grad=True)
    torch.nn.functional.cross_entropy(reference(xt), torch.from_numpy(labels)).backward()
    loss_fn(model(x), labels)
    np.testing.assert_allclose(model.backward(loss_fn.backward()), xt.grad.numpy(),
                               **TOL[dtype])


def test_state_dict_keys_match_torch():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, rng=np.random.default_rng(0)),
                          nn.BatchNorm2d(2), nn.ReLU())
    theirs = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2),
                                 torch.nn.ReLU())
    assert list(model.state_dict()) == list(theirs.state_dict())


@pytest.mark.parametrize("make,fan_in", [
    (lambda rng: nn.Conv2d(16, 64, 5, rng=rng), 16 * 25),
    (lambda rng: nn.Linear(400, 120, rng=rng), 400),
])
def test_init_matches_torch_formula(make, fan_in):
    """U(-b, b) with torch's bound for kaiming_uniform_(a=sqrt(5)) and for the bias."""
    layer = make(np.random.default_rng(7))
    w = torch.empty(layer.weight.shape)
    assert torch.nn.init._calculate_fan_in_and_fan_out(w)[0] == fan_in
    gain = torch.nn.init.calculate_gain("leaky_relu", math.sqrt(5))
    bound_w = gain * math.sqrt(3.0 / fan_in)
    bound_b = 1 / math.sqrt(fan_in)
    for a, bound in ((layer.weight, bound_w), (layer.bias, bound_b)):
        assert a.dtype == np.float32
        assert np.abs(a).max() <= bound * (1 + 1e-6)
        assert stats.kstest(a.ravel() / bound, stats.uniform(-1, 2).cdf).pvalue > 1e-3
    # seeded: the same generator state gives the same weights, another seed others
    np.testing.assert_array_equal(make(np.random.default_rng(7)).weight, layer.weight)
    assert not np.array_equal(make(np.random.default_rng(8)).weight, layer.weight)


@pytest.mark.parametrize("call,error,match", [
    (lambda: nn.Conv2d(0, 4, 3, rng=np.random.default_rng()), ValueError, "in_channels"),
    (lambda: nn.Conv2d(1, 4.0, 3, rng=np.random.default_rng()), TypeError, "out_channels"),
    (lambda: nn.Conv2d(1, 4, 3, rng=0), TypeError, "rng"),
    (lambda: nn.Conv2d(1, 4, (3, 3, 3), rng=np.random.default_rng()), TypeError,
     "kernel_size"),
    (lambda: nn.Conv2d(1, 4, 3, padding=-1, rng=np.random.default_rng()), ValueError,
     "padding"),
    (lambda: nn.Linear(3, 4, rng=np.random.default_rng(), dtype=np.int32), TypeError, "dtype"),
    (lambda: nn.BatchNorm2d(2, eps=-1), ValueError, "eps"),
    (lambda: nn.Sequential(nn.ReLU(), "relu"), TypeError, r"layers\[1\]"),
    (lambda: nn.lenet5(n_classes=1, rng=np.random.default_rng()), ValueError, "n_classes"),
    (lambda: nn.CrossEntropyLoss()(np.zeros((2, 3)), np.zeros(2)), TypeError, "labels"),
    (lambda: nn.Linear(3, 4, rng=np.random.default_rng())(np.zeros((2, 5), np.float32)),
     ValueError, "features"),
])
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ---------------------------------------------------------------- checkpoints

def small_model(seed=0, n_classes=3):
    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Conv2d(1, 2, 3, rng=rng), nn.BatchNorm2d(2), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * 3 * 3, n_classes, rng=rng))


def train(model, opt, steps, seed):
    rng = np.random.default_rng(seed)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(steps):
        x = rng.random((4, 1, 8, 8), dtype=np.float32)
        loss_fn(model(x), rng.integers(0, 3, 4))
        model.backward(loss_fn.backward())
        opt.step(model.gradients())


@pytest.mark.parametrize("amsgrad", [False, True])
def test_checkpoint_continues_bit_identically(tmp_path, amsgrad):
    model = small_model()
    opt = optim.Adam(model.parameters(), lr=0.01, betas=(0.8, 0.99), amsgrad=amsgrad)
    train(model, opt, 3, seed=1)
    nn.save(tmp_path / "ckpt.npz", model, opt, epoch=3, history=[0.5, 0.25], name="x")
    train(model, opt, 4, seed=2)

    other = small_model(seed=9)
    other_opt = optim.Adam(other.parameters(), lr=0.5)
    meta = nn.load(tmp_path / "ckpt.npz", other, other_opt)
    assert meta == nn.load_meta(tmp_path / "ckpt.npz") == {"epoch": 3, "history": [0.5, 0.25],
                                                          "name": "x"}
    assert other_opt.hyperparameters == opt.hyperparameters
    train(other, other_opt, 4, seed=2)
    for (name, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    for s, o in zip(opt.state_dict()["state"], other_opt.state_dict()["state"]):
        assert s.keys() == o.keys() and s["step"] == o["step"] == 7
        for k in s:
            np.testing.assert_array_equal(s[k], o[k])


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    model = small_model()
    nn.save(path, model, epoch=1)
    good = path.read_bytes()

    def broken(f, **arrays):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        nn.save(path, small_model(seed=1), epoch=2)
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["ckpt.npz"]  # no temporary file left behind
    monkeypatch.undo()
    assert nn.load(path, model) == {"epoch": 1}


def test_load_errors(tmp_path):
    model = small_model()
    opt = optim.Adam(model.parameters())
    path = tmp_path / "ckpt.npz"
    with pytest.raises(FileNotFoundError, match="ckpt.npz"):
        nn.load(path, model)
    nn.save(path, model, opt)

    before = model.state_dict()
    with pytest.raises(nn.CheckpointError, match="does not match the model"):
        nn.load(path, small_model(n_classes=4))  # shapes differ
    with pytest.raises(nn.CheckpointError, match="does not match the model"):
        nn.load(path, nn.Sequential(nn.Linear(2, 2, rng=np.random.default_rng())))  # names
    with pytest.raises(nn.CheckpointError, match="SGD"):
        nn.load(path, model, optim.SGD(model.parameters()))
    nn.save(path, model)
    with pytest.raises(nn.CheckpointError, match="no optimizer"):
        nn.load(path, model, opt)
    for name, a in model.state_dict().items():
        np.testing.assert_array_equal(a, before[name])  # failed loads change nothing

    data = path.read_bytes()
    for bad in (data[: len(data) // 2], b"not a zip file at all",
                data[:200] + bytes(b ^ 0xFF for b in data[200:260]) + data[260:]):
        path.write_bytes(bad)
        with pytest.raises(nn.CheckpointError, match="ckpt.npz"):
            nn.load(path, model)
    np.savez(path, x=np.zeros(2))
    with pytest.raises(nn.CheckpointError, match="not a"):
        nn.load(path, model)
    with pytest.raises(TypeError, match="meta"):
        nn.save(path, model, when=object())
