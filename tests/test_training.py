"""Training cost, freezing and receptive fields against independent references.

* Backward MACs: torch's own ``FlopCounterMode`` over ``loss.backward()`` (which
  counts ``convolution_backward`` / ``mm`` for the gradients autograd actually
  computes) and, symbolically, the transposed convolution and the weight-gradient
  correlation written out in sympy.
* Activations kept for backward: every tensor autograd saves, seen through
  ``torch.autograd.graph.saved_tensors_hooks``, deduplicated by storage, with the
  model's parameters and buffers left out.
* Gradients and optimizer state: ``p.grad`` and ``torch.optim``'s state after a step.
* Receptive fields: the support of the input gradient of a centre output pixel.

The torch models are the hand-written ones of ``test_zoo_torch.py``.
"""

from __future__ import annotations

import json

import pytest
import sympy as sp
from cli_helpers import run_ok
from hypothesis import given, settings
from hypothesis import strategies as st

import cnncalc
from cnncalc.layers import symbol
from cnncalc.training import DTYPE_BYTES, OPTIMIZER_STATE

torch = pytest.importorskip("torch")
nn = torch.nn
import test_zoo_torch as zoo  # noqa: E402  (after the importorskip, as its models need torch)
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

ZOO = {"lenet5": (zoo.lenet5, (3, 32, 32)), "resnet18": (zoo.resnet18, (3, 224, 224))}


def own_params(module) -> list:
    return list(module.parameters(recurse=False))


def freeze_like(model, analysis) -> None:
    """Set ``requires_grad=False`` on the torch modules of the rows cnncalc froze.

    Parameter-holding rows and modules come in the same order (torchvision's
    registration order); their sizes are checked to match one by one."""
    rows = [r for r in analysis.layers if r.params != 0]
    modules = [m for m in model.modules() if own_params(m)]
    assert len(rows) == len(modules)
    for row, module in zip(rows, modules):
        assert sum(p.numel() for p in own_params(module)) == row.params, row.name
        for p in own_params(module):
            p.requires_grad_(not row.frozen)


def build(name, device="cpu"):
    builder, shape = ZOO[name]
    with torch.device(device):
        model = builder()
    return model.train(), shape


# -- backward multiply-adds -------------------------------------------------------------

FREEZES = [("lenet5", None), ("lenet5", "0-6"), ("lenet5", "conv"), ("lenet5", "fc"),
           ("lenet5", "0-8"), ("resnet18", None), ("resnet18", "0-40"), ("resnet18", "bn"),
           ("resnet18", "0-65")]


@pytest.mark.parametrize(("name", "freeze"), FREEZES)
def test_backward_macs_match_torch_flop_counter(name, freeze):
    """Backward FLOPs that torch counts = 2 x (input-gradient + weight-gradient MACs)."""
    model, shape = build(name, "meta")
    a = cnncalc.analyze(model=name, freeze=freeze)
    freeze_like(model, a)
    x = torch.zeros((2, *shape), device="meta")  # batch 2: the counts scale with it
    loss = model(x).sum()
    with FlopCounterMode(display=False) as counter:
        loss.backward()
    a2 = cnncalc.analyze(model=name, freeze=freeze, batch=2)
    assert counter.get_total_flops() == 2 * int(a2.total["backward_macs"])
    assert a2.total["backward_macs"] == 2 * a.total["backward_macs"]


@pytest.mark.parametrize("groups", [1, 4, 16])
def test_grouped_conv_backward_macs_group_by_group(groups):
    """For grouped (and depthwise) convs torch's FlopCounterMode counts the weight gradient
    as if ungrouped (groups + 1 times the forward in all, not 2), so the reference here is
    built from ungrouped pieces it counts right: per group, ``conv2d_input`` and
    ``conv2d_weight`` of that group's channels."""
    n, c, k, hw = 2, 16, 3, 8
    a = cnncalc.analyze(f"conv({c}, k=1), conv({c}, k={k}, p=1, groups={groups}, bias=false)",
                        input=f"{c}x{hw}x{hw}", batch=n)
    row = a.layers[1]
    x = torch.zeros(n, c, hw, hw, device="meta")
    w = torch.zeros(c, c // groups, k, k, device="meta")
    g = torch.zeros(n, c, hw, hw, device="meta")
    per = c // groups
    with FlopCounterMode(display=False) as counter:
        for i in range(groups):
            part = slice(i * per, (i + 1) * per)
            torch.nn.grad.conv2d_input(x[:, part].shape, w[part], g[:, part], padding=1)
            torch.nn.grad.conv2d_weight(x[:, part], w[part].shape, g[:, part], padding=1)
    assert counter.get_total_flops() == 2 * int(row.backward_input_macs
                                                + row.backward_weight_macs)
    assert row.backward_input_macs == row.backward_weight_macs == row.macs


def test_backward_macs_rules_on_rows():
    """No input gradient for the first layer or below the lowest trainable one; no
    weight gradient for a frozen layer; otherwise each equals the forward MACs."""
    a = cnncalc.analyze(model="resnet18", freeze="0-40")
    lowest = min(r.index for r in a.layers if r.params != 0 and not r.frozen)
    for r in a.layers:
        assert r.backward_weight_macs == (0 if r.frozen else r.macs)
        if r.index <= lowest:
            assert r.backward_input_macs == 0
    assert all(r.backward_input_macs == r.macs for r in a.layers if r.index > lowest)
    full = cnncalc.analyze(model="resnet18")
    assert full.layers[0].backward_input_macs == 0
    assert full.total["backward_weight_macs"] == full.total["macs"]
    assert full.total["backward_input_macs"] == full.total["macs"] - full.layers[0].macs


def test_backward_macs_symbolic_conv():
    """The input gradient of a conv is the transposed conv of the output gradient (its MACs
    from cnncalc's own deconv rule), the weight gradient a correlation of the input with
    the output gradient: k*k*C*K per output pixel, written out here."""
    a = cnncalc.analyze("conv(C1, k=3, p=1), conv(K, k=F, s=S, p=P)", input="CxHxW",
                        batch="N")
    C1, K, F, S, P, H, W, N = (symbol(s) for s in ("C1", "K", "F", "S", "P", "H", "W", "N"))
    h_out = sp.floor((H + 2 * P - F) / S) + 1
    w_out = sp.floor((W + 2 * P - F) / S) + 1
    conv2 = a.layers[1]
    weight_grad = (K * C1 * F**2) * (N * h_out * w_out)
    assert sp.simplify(conv2.backward_weight_macs - weight_grad) == 0
    transposed = cnncalc.analyze("deconv(C1, k=F, s=S, p=P)", input=(K, h_out, w_out),
                                 batch="N")
    assert sp.simplify(conv2.backward_input_macs - transposed.total["macs"]) == 0
    assert a.layers[0].backward_input_macs == 0  # the network's input needs no gradient


# -- activations kept for backward --------------------------------------------------------

def saved_by_torch(model, x) -> tuple[int, list]:
    """Bytes of the distinct storages autograd saves in one forward, without the model's
    parameters and buffers (model state, counted apart)."""
    state = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in state:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    return sum(seen.values()), out


@pytest.mark.parametrize(("name", "freeze"), [("lenet5", None), ("lenet5", "0-6"),
                                              ("lenet5", "conv"), ("lenet5", "fc"),
                                              ("lenet5", "3-9"), ("resnet18", None),
                                              ("resnet18", "0-40"), ("resnet18", "bn")])
def test_saved_activations_match_autograd(name, freeze):
    torch.manual_seed(0)
    model, shape = build(name)
    a = cnncalc.analyze(model=name, freeze=freeze, batch=2)
    freeze_like(model, a)
    saved, _ = saved_by_torch(model, torch.randn(2, *shape))
    assert int(a.total["saved_bytes"]) == saved


def test_inplace_relu_saves_the_same():
    """torchvision's ReLU(inplace=True) overwrites the BN output it would copy: the kept
    bytes do not change (BN keeps its input, the ReLU its output either way)."""
    model, shape = build("resnet18")
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = True
    saved, _ = saved_by_torch(model, torch.randn(1, *shape))
    assert int(cnncalc.analyze(model="resnet18").total["saved_bytes"]) == saved


def test_dropout_mask_differs_on_cpu():
    """The one layer that differs: cnncalc counts dropout's mask as bool (1 byte, what
    ``native_dropout`` keeps on a GPU); torch's CPU path multiplies by a mask in the
    activation dtype, so it keeps 4 bytes per element in float32."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 32), nn.ReLU(), nn.Dropout(0.5),
                          nn.Linear(32, 10)).train()
    a = cnncalc.analyze("flatten, fc(32), relu, dropout(0.5), fc(10)", input="3x4x4", batch=5)
    saved, _ = saved_by_torch(model, torch.randn(5, 3, 4, 4))
    mask = 5 * 32
    assert saved == int(a.total["saved_bytes"]) + mask * (4 - 1)
    kept = []
    x = torch.randn(5, 32, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t):
        torch.native_dropout(x, 0.5, True)
    assert [(t.dtype, t.numel() * t.element_size()) for t in kept] == [(torch.bool, mask)]


@pytest.mark.parametrize(("spec", "module"), [
    ("gelu", nn.GELU()), ("silu", nn.SiLU()), ("sigmoid", nn.Sigmoid()), ("tanh", nn.Tanh()),
    ("relu6", nn.ReLU6()), ("elu", nn.ELU()), ("leakyrelu", nn.LeakyReLU()),
    ("avgpool(2)", nn.AvgPool2d(2)), ("maxpool(3, s=2, p=1)", nn.MaxPool2d(3, 2, 1)),
    ("adaptiveavgpool(3)", nn.AdaptiveAvgPool2d(3)), ("gap", nn.AdaptiveAvgPool2d(1)),
    ("ln", nn.LayerNorm([6, 6, 6])), ("ln(dims=1)", nn.LayerNorm(6)), ("gn(3)", nn.GroupNorm(3, 6)),
    ("in", nn.InstanceNorm2d(6)), ("bn", nn.BatchNorm2d(6)),
    ("in(affine=true)", nn.InstanceNorm2d(6, affine=True)),  # (the per-sample copies of
    ("in(track_running_stats=true)", nn.InstanceNorm2d(6, track_running_stats=True)),
    ("in(affine=true, track_running_stats=true)",  # the weight and the statistics)
     nn.InstanceNorm2d(6, affine=True, track_running_stats=True)),
    ("deconv(4, k=3, s=2)", nn.ConvTranspose2d(6, 4, 3, 2)),
])
def test_each_layer_kind_keeps_what_autograd_saves(spec, module):
    """After a trainable 1x1 conv (so the layer's input needs a gradient), each layer
    kind keeps what torch saves for it; the conv keeps the network's input."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 1), module).train()
    a = cnncalc.analyze(f"conv(6, k=1), {spec}", input="3x6x6", batch=3)
    saved, _ = saved_by_torch(model, torch.randn(3, 3, 6, 6))
    assert int(a.total["saved_bytes"]) == saved


def test_bfloat16_halves_the_float_tensors():
    """In bfloat16 activations take 2 bytes; max-pool indices stay int64."""
    model, shape = build("lenet5")
    model = model.to(torch.bfloat16)
    a = cnncalc.analyze(model="lenet5", dtype="bfloat16", batch=2)
    saved, _ = saved_by_torch(model, torch.randn(2, *shape, dtype=torch.bfloat16))
    assert int(a.total["saved_bytes"]) == saved
    assert int(a.total["param_bytes"]) == sum(p.numel() * p.element_size()
                                               for p in model.parameters())


def test_saved_bytes_symbolic_in_batch_and_size():
    """Symbolic input and batch: kept bytes are linear in N, and substituting numbers
    gives the numeric analysis."""
    a = cnncalc.analyze("conv(16,k=3,p=1), bn, relu, maxpool(2), conv(32,k=3,p=1), relu",
                        input="CxHxW", batch="N", freeze="0-1")
    N = symbol("N")
    saved = a.total["saved_bytes"]
    assert sp.diff(saved, N, 2) == 0 and sp.diff(saved, N) != 0
    numeric = cnncalc.analyze("conv(16,k=3,p=1), bn, relu, maxpool(2), conv(32,k=3,p=1), relu",
                              input="3x32x32", batch=4, freeze="0-1")
    values = {symbol("C"): 3, symbol("H"): 32, symbol("W"): 32, N: 4}
    for key in ("saved_bytes", "training_bytes", "backward_macs", "grad_bytes"):
        assert sp.sympify(a.total[key]).xreplace(values) == numeric.total[key], key


# -- gradients and optimizer state ---------------------------------------------------------

OPTIMIZERS = {"sgd": lambda ps: torch.optim.SGD(ps, lr=0.1),
              "momentum": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
              "adam": lambda ps: torch.optim.Adam(ps), "adamw": lambda ps: torch.optim.AdamW(ps)}


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("freeze", [None, "0-6", "fc"])
def test_gradients_and_optimizer_state_match_torch(optimizer, freeze):
    """After one step: the bytes of ``p.grad`` and of the optimizer's state tensors (its
    ``step`` counters aside) equal cnncalc's gradient and optimizer-state bytes."""
    torch.manual_seed(0)
    model, shape = build("lenet5")
    a = cnncalc.analyze(model="lenet5", optimizer=optimizer, freeze=freeze)
    freeze_like(model, a)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = OPTIMIZERS[optimizer](trainable)
    model(torch.randn(2, *shape)).sum().backward()
    opt.step()
    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters()
                if p.grad is not None)
    state = sum(t.numel() * t.element_size() for s in opt.state.values()
                for k, t in s.items() if torch.is_tensor(t) and k != "step")
    assert int(a.total["trainable_params"]) == sum(p.numel() for p in trainable)
    assert int(a.total["grad_bytes"]) == grads
    assert int(a.total["optimizer_bytes"]) == state
    assert a.total["training_bytes"] == (a.total["param_bytes"] + a.total["buffer_bytes"]
                                         + grads + state + a.total["saved_bytes"])


# -- freezing ------------------------------------------------------------------------------

def test_freeze_by_kind_name_and_range():
    a = cnncalc.analyze(model="resnet18", freeze="bn")
    bns = [r for r in a.layers if r.type == "batch_norm2d"]
    assert all(r.frozen for r in bns) and not any(r.frozen for r in a.layers
                                                    if r.type != "batch_norm2d")
    assert a.total["non_trainable_params"] == sum(r.params for r in bns)
    b = cnncalc.analyze(model="resnet18", freeze="basic1, 0-3")
    assert {r.index for r in b.layers if r.frozen} == set(range(4)) | {
        r.index for r in b.layers if r.name.startswith("basic1.")}
    c = cnncalc.analyze(model="lenet5", freeze=[range(0, 7), "fc"])
    assert c.freeze == "0-6,fc" and c.total["trainable_params"] == 0
    assert c.total["backward_macs"] == 0 and c.total["saved_bytes"] == 0


def test_freezing_saves_is_the_difference():
    frozen = cnncalc.analyze(model="resnet18", freeze="0-40", optimizer="adam")
    free = cnncalc.analyze(model="resnet18", optimizer="adam")
    for key, value in frozen.freezing_saves.items():
        assert value == free.total[key] - frozen.total[key], key
    # seed 003 problem 4: what fine-tuning only the top costs, against training it all
    assert frozen.freezing_saves["optimizer_bytes"] == 2 * 4 * frozen.total[
        "non_trainable_params"]
    assert free.freezing_saves is None


SMALL_RESNET = ("conv(8,k=3,p=1), bn, relu, basic(8), basic(16, s=2), maxpool(2), gap, "
                "flatten, fc(10)")


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 22), st.integers(0, 22), st.sampled_from(list(OPTIMIZER_STATE)),
       st.sampled_from(list(DTYPE_BYTES)))
def test_freezing_more_never_costs_more(a, b, optimizer, dtype):
    """Freezing a range saves something of every kind or nothing, never less than zero;
    the columns add up to the totals; trainable + frozen params = params."""
    lo, hi = min(a, b), max(a, b)
    x = cnncalc.analyze(SMALL_RESNET, input="3x16x16", batch=2, freeze=f"{lo}-{hi}",
                        optimizer=optimizer, dtype=dtype)
    assert all(v >= 0 for v in x.freezing_saves.values())
    assert x.total["trainable_params"] + x.total["non_trainable_params"] == x.total["params"]
    for key in ("backward_input_macs", "backward_weight_macs", "saved_bytes", "grad_bytes",
                "optimizer_bytes", "training_bytes"):
        assert x.total[key] == sum(getattr(r, key) for r in x.layers), key
    wider = cnncalc.analyze(SMALL_RESNET, input="3x16x16", batch=2, freeze=f"0-{hi}",
                            optimizer=optimizer, dtype=dtype)
    for key in ("backward_macs", "grad_bytes", "optimizer_bytes", "saved_bytes"):
        assert wider.total[key] <= x.total[key], key


def test_subs_keeps_the_training_settings():
    a = cnncalc.analyze("conv(8,k=3), relu, conv(8,k=3)", input="3xHxW", optimizer="adam",
                        dtype="float16", freeze="0")
    b = a.subs({"H": 16, "W": 16})
    assert (b.optimizer, b.dtype, b.freeze) == ("adam", "float16", "0")
    assert b.layers[0].frozen and b.total["optimizer_bytes"] == 2 * 2 * (8 * 8 * 9 + 8)


# -- receptive field ------------------------------------------------------------------------

def dependency_model(model):
    """The same geometry with every dependency visible in the gradient: max pooling sends
    gradient only to its arg-max, so it becomes an average pool over the same window
    (which depends on every element, as the max may); weights are positive and BN is in
    eval mode (its training statistics would mix every position). Works on a model
    built on the meta device: it is moved to the CPU and every value set here."""
    model = model.to_empty(device="cpu")
    _average_pools(model)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.constant_(m.weight, 1.0 / m.weight[0].numel())
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()
    return model.eval()


def _average_pools(model) -> None:
    for name, child in model.named_children():
        if isinstance(child, nn.MaxPool2d):
            setattr(model, name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding))
        else:
            _average_pools(child)


def on_meta(builder):
    with torch.device("meta"):
        return builder()


def supports(model, modules: dict, x) -> dict:
    """For each ``modules`` entry, per spatial dimension, the first and last input pixel
    on which the centre output pixel of that module depends (where the input gradient
    is not zero), and the centre's position. One forward pass serves them all."""
    captured = {}
    handles = [m.register_forward_hook(lambda m, i, o, key=key: captured.setdefault(key, o))
               for key, m in modules.items()]
    x = x.clone().requires_grad_(True)
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    found = {}
    for key, out in captured.items():
        centre = [(s - 1) // 2 for s in out.shape[2:]]
        (grad,) = torch.autograd.grad(out[0, :, centre[0], centre[1]].sum(), x,
                                      retain_graph=True)
        reach = grad[0].abs().sum(0)
        rows = torch.nonzero(reach.sum(1)).flatten()
        cols = torch.nonzero(reach.sum(0)).flatten()
        found[key] = ([(int(rows.min()), int(rows.max())), (int(cols.min()), int(cols.max()))],
                      centre)
    return found


def predicted(field, centre, spatial) -> list[tuple[int, int]]:
    """cnncalc's field of output pixel ``centre``, clipped to the image."""
    out = []
    for lo, hi, j, o, size in zip(field.lo, field.hi, field.jump, centre, spatial):
        out.append((max(0, int(lo + o * j)), min(size - 1, int(hi + o * j))))
    return out


def check_fields(model, shape, a, modules):
    """``modules``: row index -> the torch module whose output that row is."""
    found = supports(model, modules, torch.rand(1, *shape) + 0.5)
    assert set(found) == set(modules)
    for index, (got, centre) in found.items():
        field = a.layers[index].receptive_field
        assert got == predicted(field, centre, shape[1:]), a.layers[index].name


def test_receptive_field_lenet5_every_layer():
    model = dependency_model(on_meta(zoo.lenet5))
    a = cnncalc.analyze(model="lenet5")
    check_fields(model, (3, 32, 32), a, {i: model[i] for i in range(6)})
    # By hand: conv 5 (jump 1), pool 5 + 1 = 6 (jump 2), conv 6 + 4*2 = 14, pool 14 + 2 = 16.
    assert a.total["receptive_field"].size == (16, 16)
    assert a.total["receptive_field_layer"] == 5


def test_receptive_field_vgg16_small_input():
    features = dependency_model(on_meta(zoo.vgg16)[0])  # its 13 convs, 13 ReLUs, 5 pools
    a = cnncalc.analyze(model="vgg16", input="3x64x64")  # the same 31 rows come first
    check_fields(features, (3, 64, 64), a, {i: features[i] for i in (*range(0, 31, 3), 30)})
    assert cnncalc.analyze(model="vgg16").total["receptive_field"].size == (212, 212)


def test_receptive_field_resnet18_stages():
    model = dependency_model(on_meta(zoo.resnet18))
    a = cnncalc.analyze(model="resnet18", input="3x128x128")
    ends = {r.name: r.index for r in a.layers}
    stages = {ends["maxpool1"]: model.maxpool, ends["basic2.relu2"]: model.layer1,
              ends["basic4.relu2"]: model.layer2, ends["basic6.relu2"]: model.layer3,
              ends["basic8.relu2"]: model.layer4}
    check_fields(model, (3, 128, 128), a, stages)
    assert cnncalc.analyze(model="resnet18").total["receptive_field"].size == (435, 435)


class Branchy(nn.Module):
    """The spec of ``test_receptive_field_branching_spec`` by hand: a stem conv, a residual
    whose body has a dilated conv, then a strided residual with a 1x1 projection."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.body1 = nn.Sequential(nn.Conv2d(4, 4, 2, dilation=2, padding=1), nn.ReLU(),
                                   nn.Conv2d(4, 4, 3, padding=1))
        self.body2 = nn.Sequential(nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ReLU(),
                                   nn.Conv2d(8, 8, 5, padding=2))
        self.project = nn.Conv2d(4, 8, 1, stride=2)
        self.add1, self.add2 = nn.Identity(), nn.Identity()  # hook points for the sums

    def forward(self, x):
        x = self.stem(x)
        x = self.add1(x + self.body1(x))
        return self.add2(self.body2(x) + self.project(x))


def test_receptive_field_branching_spec():
    spec = ("conv(4, k=3, p=1), residual(conv(4, k=2, d=2, p=1), relu, conv(4, k=3, p=1)), "
            "residual(conv(8, k=3, s=2, p=1), relu, conv(8, k=5, p=2))")
    a = cnncalc.analyze(spec, input="3x33x33")
    model = dependency_model(Branchy())
    adds = [r.index for r in a.layers if r.type == "add"]
    body1 = [r.index for r in a.layers if r.name.startswith("res1.conv")]
    check_fields(model, (3, 33, 33), a, {0: model.stem, body1[0]: model.body1[0],
                                         adds[0]: model.add1, adds[1]: model.add2})
    assert a.total["receptive_field_layer"] == adds[1]
    # By hand: stem [-1, 1]; dilated k=2 conv [-2, 2]; k=3 conv [-3, 3] (the identity path
    # [-1, 1] lies inside); strided k=3 conv [-4, 4] with jump 2; k=5 conv [-8, 8]; the
    # projection [-3, 3]. The union is [-8, 8]: 17 pixels, centred on pixel 0.
    field = a.total["receptive_field"]
    assert field.size == (17, 17) and field.jump == (2, 2) and field.start == (0, 0)


def test_receptive_field_symbolic():
    """Textbook recurrence r' = r + (k - 1) j, j' = s j, with symbols."""
    a = cnncalc.analyze("conv(8, k=F, s=S, p=P), conv(8, k=G, p=Q)", input="3xHxW")
    F, S, G = symbol("F"), symbol("S"), symbol("G")
    field = a.total["receptive_field"]
    assert sp.simplify(field.size[0] - (F + (G - 1) * S)) == 0
    assert field.jump == (S, S)
    b = cnncalc.analyze("conv(8,k=3,p=1), residual(conv(8, k=3, p=1), conv(8,k=3,p=1))",
                        input="8xHxW")
    assert b.total["receptive_field"].size == (7, 7)


# -- the CLI -------------------------------------------------------------------------------

def test_cli_training_table(capsys):
    out = run_ok(["params", "--model", "resnet18", "--training", "--optimizer", "adam",
                  "--freeze", "0-40", "--receptive-field"], capsys)
    for text in ("∂x MACs", "∂W MACs", "kept for ∂", "optimizer adam", "freezing saves",
                 "receptive field", "435 input pixels"):
        assert text in out, text


def test_cli_json_always_has_the_new_keys(capsys):
    doc = json.loads(run_ok(["params", "--model", "lenet5", "--format", "json"], capsys))
    assert doc["total"]["receptive_field"] == {"size": [16, 16], "jump": [4, 4],
                                               "start": [7.5, 7.5], "layer": 5}
    first = doc["layers"][0]
    assert first["receptive_field"] == {"size": [5, 5], "jump": [1, 1], "start": [2, 2]}
    assert first["frozen"] is False and first["backward_input_macs"] == 0
    assert doc["training"] == {"optimizer": "sgd", "dtype": "float32", "freeze": None,
                               "freezing_saves": None}
    for key in ("backward_input_macs", "backward_weight_macs", "saved_bytes", "grad_bytes",
                "optimizer_bytes", "training_bytes"):
        assert doc["total"][key] == sum(r[key] for r in doc["layers"]), key


def test_cli_symbolic_training_json(capsys):
    doc = json.loads(run_ok(["params", "--input", "CxHxW", "--batch", "N", "--layers",
                             "conv(16,k=3,p=1), relu", "--training", "--dtype", "float16",
                             "--format", "json"], capsys))
    assert doc["total"]["saved_bytes"] == "2*C*H*N*W + 32*H*N*W"
    assert doc["layers"][0]["receptive_field"]["size"] == [3, 3]


def test_cli_csv_and_markdown_with_flags(capsys):
    out = run_ok(["params", "--model", "lenet5", "--training", "--receptive-field",
                  "--format", "csv"], capsys)
    header = out.splitlines()[0].split(",")
    assert "backward_weight_macs" in header and "receptive_field" in header
    md = run_ok(["params", "--model", "lenet5", "--freeze", "conv", "--format", "markdown"],
                capsys)
    assert "∂W MACs" in md and "- freezing saves:" in md


def test_dropout_of_zero_is_its_input():
    """torch's dropout with p = 0 returns its input, with no mask: nothing kept, and a
    later layer keeps the tensor before it (the ReLU's output, already counted)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 10), nn.ReLU(), nn.Dropout(0.0), nn.Linear(10, 5))
    saved, _ = saved_by_torch(model.train(), torch.randn(3, 20))
    a = cnncalc.analyze("fc(10), relu, dropout(0), fc(5)", input="20", batch=3)
    assert int(a.total["saved_bytes"]) == saved == 3 * (20 + 10) * 4
