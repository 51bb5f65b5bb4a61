"""``from_torch`` on attention, recurrent, token and other non-convolutional models.

The reference is torch itself: ``sum(p.numel())`` for parameters and
``torch.utils.flop_counter.FlopCounterMode`` on a real forward for MACs (FLOPs / 2), with
the math attention backend and oneDNN off, so that it sees every matrix product.
"""

from __future__ import annotations

import math
import warnings

import pytest

import cnncalc
from cnncalc.errors import CnnCalcError

torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional
from test_training import saved_by_torch  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402


def torch_count(model, *args, **kwargs) -> tuple[int, int]:
    """(parameters, MACs) by torch's own count on a real forward at these inputs."""
    counter = FlopCounterMode(display=False)
    onednn = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        with counter, sdpa_kernel([SDPBackend.MATH]):
            model(*args, **kwargs)
    finally:
        torch.backends.mkldnn.enabled = onednn
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops() // 2


def assert_exact(model, *args, **kwargs):
    """cnncalc on the example inputs equals torch's count and lists nothing."""
    model.eval()
    params, macs = torch_count(model, *args, **kwargs)
    got = cnncalc.from_torch(model, example_inputs=kwargs if kwargs else args)
    assert got.unsupported == ()
    assert (int(got.total["params"]), int(got.total["macs"])) == (params, macs)
    assert macs > 0
    return got


def saved_by_autograd(model, x) -> int:
    """The bytes autograd keeps for backward in a training step (see test_training)."""
    return saved_by_torch(model.train(), x)[0]


def row(got, name):
    """The first row of that name, inside any module."""
    return next(r for r in got.layers if r.name == name or r.name.endswith("." + name))


# -- scaled dot-product attention ------------------------------------------------------

class SDPA(nn.Module):
    def __init__(self, dim=16, heads=4, kv_heads=4, causal=False, mask=False):
        super().__init__()
        self.heads, self.kv_heads, self.causal, self.mask = heads, kv_heads, causal, mask
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim // heads * kv_heads)
        self.out = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        q = self.q(x).view(b, n, self.heads, -1).transpose(1, 2)
        k, v = self.kv(x).view(b, n, 2, self.kv_heads, -1).permute(2, 0, 3, 1, 4)
        mask = torch.ones(n, n, dtype=torch.bool).tril() if self.mask else None
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=self.causal,
                                           enable_gqa=self.kv_heads != self.heads)
        return self.out(y.transpose(1, 2).reshape(b, n, d))


@pytest.mark.parametrize("options", [{}, {"causal": True}, {"mask": True},
                                     {"kv_heads": 2}])
def test_scaled_dot_product_attention(options):
    model = SDPA(**options)
    got = assert_exact(model, torch.zeros(2, 6, 16))
    # QK^T and AV are rows of their own: 2 x 4 heads x 6 x 6 scores of 4-wide heads.
    assert row(got, "qk").macs == 2 * 4 * 6 * 6 * 4 == row(got, "av").macs


def test_sdpa_alone_is_not_dropped():
    class Bare(nn.Module):
        def forward(self, q):
            return F.scaled_dot_product_attention(q, q, q)
    assert_exact(Bare(), torch.zeros(1, 2, 5, 8))


# -- multi-head attention and transformer layers ---------------------------------------

@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("need_weights", [True, False])
def test_multihead_attention(batch_first, need_weights):
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(16, 4, batch_first=batch_first)

        def forward(self, x):
            return self.attn(x, x, x, need_weights=need_weights)[0]
    got = assert_exact(Block(), torch.zeros(3, 4, 16))  # 4 heads of 4
    # Rows by role, each its own: batches x 4 heads x length x length scores x 4.
    batches, length = (3, 4) if batch_first else (4, 3)
    assert [r.name for r in got.layers] == ["attn.in_proj", "attn.qk", "attn.av",
                                            "attn.out_proj"]
    assert row(got, "qk").macs == row(got, "av").macs == batches * 4 * length**2 * 4


def test_multihead_attention_other_key_sizes():
    class Cross(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(16, 2, kdim=8, vdim=12, batch_first=True)

        def forward(self, x, mem):
            return self.attn(x, mem, torch.zeros(*mem.shape[:2], 12))[0]
    assert_exact(Cross(), torch.zeros(2, 5, 16), torch.zeros(2, 7, 8))


def test_multihead_attention_fast_path_counts_as_the_slow_path():
    """In eval under no_grad torch takes a fused path; the arithmetic is the same."""
    model = _SelfAttention(nn.MultiheadAttention(16, 4, batch_first=True)).eval()
    x = torch.zeros(2, 5, 16)
    _, macs = torch_count(model, x)  # grad enabled: the slow path
    with torch.no_grad():
        got = cnncalc.from_torch(model, example_inputs=x)
    assert int(got.total["macs"]) == macs


class _SelfAttention(nn.Module):
    def __init__(self, attn):
        super().__init__()
        self.attn = attn

    def forward(self, x):
        return self.attn(x, x, x, need_weights=False)[0]


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_encoder_and_decoder_layers(norm_first):
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, batch_first=True,
                                                           norm_first=norm_first), 2)
    assert_exact(enc, torch.zeros(2, 5, 16))
    dec = nn.TransformerDecoderLayer(16, 2, 32, batch_first=True, norm_first=norm_first)
    assert_exact(dec, torch.zeros(2, 5, 16), torch.zeros(2, 7, 16))


def test_whole_transformer():
    model = nn.Transformer(16, 2, 1, 1, 32, batch_first=True)
    assert_exact(model, torch.zeros(1, 6, 16), torch.zeros(1, 4, 16))


# -- einsum and matrix products --------------------------------------------------------

@pytest.mark.parametrize("subscripts", ["bhqd,bhkd->bhqk", "bij,bjk->bik", "bnd,de->bne",
                                        "bhqd,bhqd->bhq", "bi,bj->bij"])
def test_einsum(subscripts):
    class E(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(6, 6))

        def forward(self, x):
            a = x + self.w.mean()  # the weight is used in every case
            shapes = subscripts.split("->")[0].split(",")
            ops = [a.reshape(-1)[:6 ** len(s)].reshape([6] * len(s)) if s != "de" else self.w
                   for s in shapes]
            return torch.einsum(subscripts, *ops)
    model = E()
    x = torch.zeros(6, 6, 6, 6)
    got = cnncalc.from_torch(model, example_inputs=x)
    _, macs = torch_count(model, x)
    assert int(got.total["macs"]) == macs
    assert got.unsupported == ()


@pytest.mark.parametrize("call", ["bmm", "baddbmm", "addmm", "matmul4d"])
def test_matrix_products_of_activations(call):
    class P(nn.Module):
        def forward(self, x):
            if call == "bmm":
                return torch.bmm(x, x.transpose(1, 2))
            if call == "baddbmm":
                return torch.baddbmm(x[:, :, :4], x, x.transpose(1, 2)[:, :, :4])
            if call == "addmm":
                return torch.addmm(x[0, :, :4], x[0], x[0].t()[:, :4])
            return x.view(3, 2, 4, 2) @ x.view(3, 2, 2, 4)
    model = P()
    assert_exact(model, torch.zeros(3, 4, 4))


# -- recurrent nets --------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("options", [{}, {"num_layers": 2, "bidirectional": True},
                                     {"batch_first": True}])
def test_recurrent(kind, options):
    model = getattr(nn, kind)(8, 6, **options)
    x = torch.zeros(5, 3, 8)
    got = assert_exact(model, x)
    assert all(r.macs for r in got.layers)


def test_lstm_with_projection():
    assert_exact(nn.LSTM(8, 6, num_layers=2, proj_size=4, bidirectional=True),
                 torch.zeros(5, 2, 8))


@pytest.mark.parametrize("kind", ["RNNCell", "LSTMCell", "GRUCell"])
def test_cells(kind):
    class Unroll(nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = getattr(nn, kind)(8, 6)

        def forward(self, x):
            h = None
            for t in range(x.shape[1]):
                h = self.cell(x[:, t], h)
            return h[0] if isinstance(h, tuple) else h
    assert_exact(Unroll(), torch.zeros(2, 4, 8))


class _AfterALinear(nn.Module):
    """A recurrent layer or an unrolled cell after a linear layer (so that its input has
    a gradient), from a zero initial state (made inside the call: it has no gradient) or
    from one computed from the input (it has)."""

    def __init__(self, kind, given_state=False, **options):
        super().__init__()
        self.pre, self.given_state = nn.Linear(8, 8), given_state
        cell = kind.endswith("Cell")
        self.rnn = getattr(nn, kind)(8, 6, **({} if cell else {"batch_first": True}),
                                     **options)
        self.states = options.get("num_layers", 1) * (2 if options.get("bidirectional") else 1)
        self.state = nn.Linear(8, 6 * self.states)

    def forward(self, x):
        x = self.pre(x)
        h = None
        if self.given_state:
            h = self.state(x.mean(1)).view(len(x), self.states, 6).transpose(0, 1)
            h = h[0] if isinstance(self.rnn, nn.RNNCellBase) else h.contiguous()
        if isinstance(self.rnn, nn.RNNCellBase):
            for t in range(x.shape[1]):
                h = self.rnn(x[:, t], h)
            return h
        return self.rnn(x, h)[0]


@pytest.mark.parametrize(("kind", "options", "given_state"), [
    ("RNN", {}, False), ("GRU", {}, False), ("LSTM", {}, False),
    ("LSTM", {"num_layers": 2, "bidirectional": True}, False),
    ("LSTM", {"proj_size": 4}, False), ("GRUCell", {}, False), ("RNNCell", {}, False),
    ("GRU", {"num_layers": 2, "bidirectional": True}, True), ("GRUCell", {}, True)])
def test_recurrent_backward_macs(kind, options, given_state):
    """The first step's product with a zero initial state has no input gradient (it was
    counted: 2 x 6 x 24 MACs too many for each LSTM layer and direction at batch 2); a
    state computed from the input has one."""
    model = _AfterALinear(kind, given_state, **options)
    got = cnncalc.from_torch(model, (5, 8), batch=2)
    assert int(got.total["backward_macs"]) == backward_macs(model, torch.randn(2, 5, 8))


def test_recurrent_rows_scale_with_a_symbolic_batch():
    model = nn.GRU(8, 6, batch_first=True)
    got = cnncalc.from_torch(model, "5x8", batch="N")
    _, macs = torch_count(model, torch.zeros(3, 5, 8))
    assert got.subs({"N": 3}).total["macs"] == macs


# -- token models, several inputs, dtypes ----------------------------------------------

class Tokens(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 16)
        self.bag = nn.EmbeddingBag(100, 8, mode="mean")
        self.head = nn.Linear(16 + 8, 3)

    def forward(self, ids):
        return self.head(torch.cat([self.emb(ids).mean(1), self.bag(ids)], 1))


def test_token_model_from_a_shape_and_a_dtype():
    model = Tokens()
    got = cnncalc.from_torch(model, "12", batch=2, input_dtype="int64")
    params, macs = torch_count(model, torch.zeros(2, 12, dtype=torch.long))
    assert got.unsupported == ()
    assert (int(got.total["params"]), int(got.total["macs"])) == (params, macs)
    assert row(got, "emb").params == 100 * 16 and row(got, "emb").macs == 0


def test_token_model_from_an_example_tensor_of_ids():
    assert_exact(Tokens(), torch.randint(0, 100, (4, 7)))


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(8, 4), nn.Conv2d(3, 4, 3)

    def forward(self, x, img, scale=None):
        y = self.a(x) + self.b(img).mean(dim=(2, 3)) * x.new_ones(())
        return y if scale is None else y * scale


def test_two_inputs_by_shape_tuple_and_dict():
    model = TwoInputs()
    params, macs = torch_count(model, torch.zeros(2, 8), torch.zeros(2, 3, 6, 6))
    by_shape = cnncalc.from_torch(model, ["8", (3, 6, 6)], batch=2)
    by_tuple = cnncalc.from_torch(model, example_inputs=(torch.ones(2, 8),
                                                         torch.ones(2, 3, 6, 6)))
    by_dict = cnncalc.from_torch(model, example_inputs={"x": torch.ones(2, 8),
                                                        "img": torch.ones(2, 3, 6, 6),
                                                        "scale": torch.ones(2, 4)})
    for got in (by_shape, by_tuple, by_dict):
        assert got.unsupported == ()  # the mean over (2, 3) is global pooling, no alarm
        assert (int(got.total["params"]), int(got.total["macs"])) == (params, macs)
    assert by_shape.input_shape == (8,)


def test_a_wrong_input_is_named():
    with pytest.raises(CnnCalcError, match=r"--input 2"):
        cnncalc.from_torch(TwoInputs(), ["8", "3x0x6"])
    with pytest.raises(CnnCalcError, match=r"--input-dtype 2: 'int65'"):
        cnncalc.from_torch(TwoInputs(), ["8", "3x6x6"], input_dtype=["float32", "int65"])
    with pytest.raises(CnnCalcError, match=r"example_inputs\[1\]: a 0-d tensor"):
        cnncalc.from_torch(TwoInputs(), example_inputs=(torch.zeros(2, 8), torch.tensor(1.0)))
    with pytest.raises(CnnCalcError, match="forward failed on a 2x7, 2x3x6x6 input"):
        cnncalc.from_torch(TwoInputs(), example_inputs=(torch.zeros(2, 7),
                                                        torch.zeros(2, 3, 6, 6)))


# -- parameters used elementwise or through indexing -----------------------------------

class WindowAttention(nn.Module):
    """Swin's attention, written out: a relative position bias table read by indexing,
    heads and windows folded into the first dimension, a shifted-window mask built with
    ``new_zeros``, and a layer scale."""

    def __init__(self, dim=16, heads=2, window=4):
        super().__init__()
        self.heads, self.window = heads, window
        self.table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window),
                                            indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + window - 1
        self.register_buffer("index", rel[..., 0] * (2 * window - 1) + rel[..., 1])
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x):  # x: B, H, W, C
        b, h, w, c = x.shape
        s = self.window
        win = x.view(b, h // s, s, w // s, s, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, s * s, c)
        q, k, v = self.qkv(win).reshape(-1, s * s, 3, self.heads, c // self.heads).permute(
            2, 0, 3, 1, 4)
        attn = q @ k.transpose(-2, -1)
        bias = self.table[self.index.view(-1)].view(s * s, s * s, -1).permute(2, 0, 1)
        mask = x.new_zeros((s * s, s * s))
        attn = (attn + bias.unsqueeze(0) + mask).softmax(-1)
        y = (attn @ v).transpose(1, 2).reshape(-1, s * s, c)
        return x + self.gamma * self.proj(y).view(b, h, w, c)


def test_window_attention_counts_the_bias_table_once():
    model = WindowAttention()
    got = assert_exact(model, torch.zeros(2, 8, 8, 16))
    # The attention products of the 2 x 4 windows: (4 x 16 scores) x 8 wide heads, x 2.
    assert row(got, "matmul").macs == 2 * 4 * 2 * 16 * 16 * 8


class GRN(nn.Module):
    """ConvNeXt-V2's global response normalisation: gamma and beta used elementwise."""

    def __init__(self, dim=8):
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def forward(self, x):
        y = self.dw(x).permute(0, 2, 3, 1)
        gx = torch.norm(y, p=2, dim=(1, 2), keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        return (self.gamma * (y * nx) + self.beta + y).permute(0, 3, 1, 2)


def test_grn_parameters_are_counted():
    assert_exact(GRN(), torch.zeros(2, 8, 5, 5))


# -- what cannot be costed is named ----------------------------------------------------

def test_an_unknown_op_is_named_not_dropped():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            y = F.interpolate(self.conv(x), scale_factor=2.0)  # no MACs: passes
            return F.bilinear(y, y, torch.zeros(2, 12, 12))
    got = cnncalc.from_torch(Odd(), "3x8x8")
    assert [(u.name, u.type) for u in got.unsupported] == [("bilinear", "bilinear")]
    assert "trilinear" in got.unsupported[0].reason


def test_a_same_shape_unknown_call_is_not_taken_as_elementwise():
    class Cumulative(nn.Module):
        def forward(self, x):
            return torch.linalg.matrix_exp(x)
    got = cnncalc.from_torch(Cumulative(), "4x4")
    assert [u.type for u in got.unsupported] == ["linalg_matrix_exp"]


# -- module forms ----------------------------------------------------------------------

def test_fx_graph_module():
    base = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 2))
    graph = torch.fx.symbolic_trace(base)
    x = torch.zeros(1, 3, 8, 8)
    got = assert_exact(graph, x)
    assert got.total["macs"] == cnncalc.from_torch(base, "3x8x8").total["macs"]


@pytest.mark.parametrize("compile_with", ["script", "trace"])
def test_torchscript_is_costed_by_what_it_runs(compile_with):
    base = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 2))
    x = torch.zeros(2, 3, 8, 8)
    compiled = torch.jit.script(base) if compile_with == "script" else torch.jit.trace(base, x)
    got = cnncalc.from_torch(compiled, example_inputs=x)
    params, macs = torch_count(base, x)
    assert (int(got.total["params"]), int(got.total["macs"])) == (params, macs)
    assert got.unsupported == () and "TorchScript" in got.notes[0]
    assert [r.type for r in got.layers] == ["convolution", "addmm"]


def test_a_forward_that_needs_values_runs_on_the_cpu_with_a_note():
    class Gate(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 4)

        def forward(self, x):
            y = self.a(x)
            if y.sum().item() >= 0:  # data-dependent control flow
                y = torch.relu(y)
            return self.b(y)
    model = Gate()
    got = cnncalc.from_torch(model, "8", batch=2)
    params, macs = torch_count(model, torch.zeros(2, 8))
    assert (int(got.total["params"]), int(got.total["macs"])) == (params, macs)
    assert any("CPU" in n for n in got.notes)
    assert math.prod(got.output_shape) == 4


class BiasFromAnMLP(nn.Module):
    """Swin-V2's continuous position bias: an MLP run on a buffer of coordinates, once
    per forward pass whatever the batch, then added to the attention scores."""

    def __init__(self, n=4, heads=2):
        super().__init__()
        self.register_buffer("coords", torch.zeros(1, n, n, 2))
        self.mlp = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, heads))
        self.heads = heads

    def forward(self, x):  # x: B, heads, n, d
        scores = x @ x.transpose(-2, -1)
        return scores + self.mlp(self.coords).permute(0, 3, 1, 2)


def test_work_on_weights_alone_is_counted_once_per_pass():
    model = BiasFromAnMLP()
    got = cnncalc.from_torch(model, "2x4x8", batch="N")
    for n in (1, 3):
        params, macs = torch_count(model, torch.zeros(n, 2, 4, 8))
        assert (int(got.subs({"N": n}).total["params"]),
                int(got.subs({"N": n}).total["macs"])) == (params, macs)
    assert got.unsupported == ()


class LoRALinear(nn.Linear):
    """A built-in class whose forward does more than the built-in's: looked into."""

    def __init__(self):
        super().__init__(16, 16)
        self.a, self.b = nn.Parameter(torch.zeros(16, 2)), nn.Parameter(torch.zeros(2, 16))

    def forward(self, x):
        return super().forward(x) + (x @ self.a) @ self.b


def test_a_subclass_with_its_own_forward_is_looked_into():
    assert_exact(nn.Sequential(LoRALinear(), nn.ReLU()), torch.zeros(3, 16))


def test_a_compiled_model_is_analysed_as_its_model():
    model = nn.Sequential(nn.Linear(8, 4))
    got = cnncalc.from_torch(torch.compile(model), "8")
    assert int(got.total["macs"]) == 32 and got.unsupported == ()


# -- symbolic sizes --------------------------------------------------------------------

class Strided(nn.Module):
    """Strides, padding, pooling that floors, a residual add and a global pool."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.body = nn.Conv2d(8, 8, 3, padding=1)
        self.down = nn.Conv2d(8, 4, 5, stride=3)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        y = self.pool(F.relu(self.stem(x)))
        y = self.down(y + self.body(y))
        return self.head(y.mean(dim=(2, 3)))


def test_symbolic_sizes_from_torch_equal_torch_at_every_size():
    model = Strided()
    got = cnncalc.from_torch(model, "3xHxW")
    assert {s.name for s in got.symbols} == {"H", "W"}
    for h, w in [(32, 32), (45, 61), (100, 37), (224, 225)]:
        params, macs = torch_count(model, torch.zeros(1, 3, h, w))
        at = got.subs({"H": h, "W": w})
        assert (at.total["params"], at.total["macs"]) == (params, macs), (h, w)
        assert at.output_shape == (2,)


def test_symbolic_sizes_agree_with_the_spec_path():
    from test_zoo_torch import ZOO, build
    builder, _, _ = ZOO["resnet18"]
    got = cnncalc.from_torch(build(builder), "3xHxW")
    spec = cnncalc.analyze(model="resnet18", input="3xHxW")
    for h, w in [(64, 64), (97, 130)]:
        assert (got.subs({"H": h, "W": w}).total["macs"]
                == spec.subs({"H": h, "W": w}).total["macs"])


def test_a_model_that_fixes_its_size_is_refused_for_symbols():
    lenet = nn.Sequential(nn.Conv2d(3, 6, 5), nn.Flatten(), nn.Linear(6 * 28 * 28, 10))
    with pytest.raises(CnnCalcError, match="symbolic sizes"):
        cnncalc.from_torch(lenet, "3xHxW")


# -- convolutional shapes beyond a chain -----------------------------------------------

class UNet(nn.Module):
    """Down, up by a transposed conv and by interpolation, skips joined by cat."""

    def __init__(self):
        super().__init__()
        self.down1, self.down2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 16, 3, padding=1)
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.merge = nn.Conv2d(16, 8, 3, padding=1)
        self.out = nn.Conv2d(8 + 3, 2, 1)

    def forward(self, x):
        a = F.relu(self.down1(x))
        b = F.relu(self.down2(F.max_pool2d(a, 2)))
        c = F.relu(self.merge(torch.cat([self.up(b), a], dim=1)))
        c = F.interpolate(F.avg_pool2d(c, 2), scale_factor=2, mode="bilinear")
        return self.out(torch.cat([c, x], dim=1))


class SqueezeExcite(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3)
        self.fc1, self.fc2 = nn.Conv2d(16, 4, 1), nn.Conv2d(4, 16, 1)

    def forward(self, x):
        y = self.conv(x)
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(y, 1)))))
        return y * s  # a broadcast product: no multiply-adds, no alarm


@pytest.mark.parametrize("model", [UNet, SqueezeExcite])
def test_unet_and_squeeze_excite(model):
    assert_exact(model(), torch.zeros(2, 3, 16, 16))


def test_masked_attention_and_a_causal_transformer():
    attn = nn.MultiheadAttention(16, 2, batch_first=True)

    class Masked(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = attn

        def forward(self, x, pad):
            mask = torch.ones(5, 5, dtype=torch.bool).triu(1)
            return self.attn(x, x, x, attn_mask=mask, key_padding_mask=pad)[0]
    assert_exact(Masked(), torch.zeros(2, 5, 16), torch.zeros(2, 5, dtype=torch.bool))

    class Causal(nn.Module):
        def __init__(self):
            super().__init__()
            self.t = nn.Transformer(16, 2, 1, 1, 32, batch_first=True)

        def forward(self, src, tgt):
            mask = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1])
            return self.t(src, tgt, tgt_mask=mask, tgt_is_causal=True)
    assert_exact(Causal(), torch.zeros(1, 6, 16), torch.zeros(1, 4, 16))


def test_weight_work_is_costed_or_named():
    class Merged(nn.Module):
        """A LoRA weight merged in forward (a product of weights), and an inverse."""

        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.eye(8))
            self.a, self.b = nn.Parameter(torch.zeros(8, 2)), nn.Parameter(torch.zeros(2, 8))

        def forward(self, x):
            return F.linear(x, self.w + self.a @ self.b) @ torch.linalg.inv(self.w)
    model = Merged()
    got = cnncalc.from_torch(model, "8", batch="N")
    assert [u.type for u in got.unsupported] == ["linalg_inv"]
    _, macs = torch_count(model, torch.eye(8)[:3])
    # The merge (8 x 2 x 8) is counted once; the two 8 x 8 products per sample, N times.
    assert got.subs({"N": 3}).total["macs"] == macs == 8 * 2 * 8 + 3 * 2 * 8 * 8


# -- what a training step keeps ----------------------------------------------------------

def _encoder(**options):
    return nn.TransformerEncoderLayer(16, 2, 32, batch_first=True, dropout=0.0, **options)


KEPT = {
    # attention as torch's CPU flash kernel keeps it: query, key, value, output, log-sum-exp
    # (and a boolean mask as the float mask it becomes)
    "sdpa": (lambda: SDPA(), (5, 16)),
    "sdpa_causal": (lambda: SDPA(causal=True), (5, 16)),
    "sdpa_mask": (lambda: SDPA(mask=True), (5, 16)),
    "sdpa_grouped": (lambda: SDPA(kv_heads=2), (5, 16)),
    "multihead": (lambda: nn.MultiheadAttention(16, 2, batch_first=True), None),
    "encoder": (_encoder, (5, 16)),
    "encoder_norm_first": (lambda: _encoder(norm_first=True), (5, 16)),
    # products and functions with no module: x @ k^T, x * gate, gamma * x, norm, division
    "window": (lambda: WindowAttention(), (8, 8, 16)),
    "grn": (lambda: GRN(), (8, 5, 5)),
    "squeeze_excite": (lambda: SqueezeExcite(), (3, 16, 16)),
    "unet": (lambda: UNet(), (3, 16, 16)),
    # weight work whose backward keeps tensors (a sigmoid of a bias table), once a pass
    "bias_mlp": (lambda: _SigmoidBias(), (2, 4, 8)),
    "lora": (lambda: _MergedLoRA(), (16,)),
    # a tensor made by a call with no row (x.mean((2, 3))), kept by the next layer, through
    # a view (timm's heads pass it through nn.Identity) or not (ShuffleNetV2's)
    "pooled_head": (lambda: _PooledHead(None), (3, 6, 6)),
    "pooled_view_head": (lambda: _PooledHead(nn.Identity()), (3, 6, 6)),
    # weights and biases computed in the pass: NF-ResNet's standardized conv weight (kept
    # by the conv), EVA's concatenated qkv bias (not kept), ResMLP's addcmul(beta, alpha, x)
    "computed_weights": (lambda: _ComputedWeights(), (3, 6, 6)),
    # attention where the CPU leaves its flash kernel for the math path: a learned bias as
    # the mask (BEiT), 5-D inputs (Hiera); and a contiguous query, whose output the
    # transpose and reshape after it copy (EVA)
    "attention_paths": (lambda: _AttentionPaths(), (6, 16)),
    # a module, and a functional weight, used twice: counted once, a gradient each use
    "shared": (lambda: _Shared(), (3, 8, 8)),
    # a conv reading a tensor made from a shape (EdgeNeXt's position encoding) keeps it;
    # a linear layer on a transposed 3-D input (NextViT's) keeps the copy reshape makes
    "made_from_shapes": (lambda: _MadeFromShapes(), (8, 4, 4)),
    # LeViT's linear then batch norm over the tokens folded into the batch: a view, and
    # statistics a channel's
    "folded_norm": (lambda: _FoldedNorm(), (6, 8)),
    # a linear layer on the class token, x[:, 0:1] (XCiT): its rows fold as a view, and it
    # keeps the whole tensor it slices
    "class_token": (lambda: _ClassToken(), (5, 8)),
    # stochastic depth over patches folded into the batch (MobileViT): a scale a row;
    # x.max(1) keeps its int64 indices (VOLO's head)
    "folded_drop_path": (lambda: _FoldedDropPath(), (4, 6, 8)),
    # activation modules beyond the layer language's, and a leaf with no rule (PReLU)
    "activations": (lambda: nn.Sequential(
        nn.Linear(8, 8), nn.Hardtanh(), nn.Linear(8, 8), nn.Softplus(), nn.Linear(8, 8),
        nn.SELU(), nn.Linear(8, 8), nn.CELU(), nn.Linear(8, 8), nn.Softsign(),
        nn.Linear(8, 8), nn.PReLU(), nn.Linear(8, 8), nn.LogSoftmax(1)), (8,)),
}


class _SigmoidBias(BiasFromAnMLP):
    """Swin-V2's bias as it uses it: ``16 * sigmoid(mlp(coords))``, whose backward keeps
    the sigmoid's output, once a pass."""

    def forward(self, x):
        scores = x @ x.transpose(-2, -1)
        return scores + 16 * torch.sigmoid(self.mlp(self.coords).permute(0, 3, 1, 2))


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("name", list(KEPT))
def test_training_keeps_what_autograd_keeps(name, batch):
    """``--training``'s bytes kept for backward equal what autograd keeps in a real step,
    at batch 1 and 3 (calls with no module are run again with gradients to see it)."""
    torch.manual_seed(0)
    make, shape = KEPT[name]
    model = make()
    if isinstance(model, nn.MultiheadAttention):
        model, shape = _SelfAttention(model), (5, 16)
    got = cnncalc.from_torch(model, shape, batch=batch)
    assert not any("not counted" in note for note in got.notes)
    assert got.total["saved_bytes"].is_Integer  # (an exact count, not a float)
    assert int(got.total["saved_bytes"]) == saved_by_autograd(model, torch.randn(batch, *shape))


@pytest.mark.parametrize("name", list(KEPT))
def test_a_symbolic_batch_keeps_what_autograd_keeps(name):
    """With ``batch="N"`` the formulas equal autograd at batches 2 and 3, and at batch 1
    unless a note gives batch 1's figures."""
    torch.manual_seed(0)
    make, shape = KEPT[name]
    model = make()
    if isinstance(model, nn.MultiheadAttention):
        model, shape = _SelfAttention(model), (5, 16)
    got = cnncalc.from_torch(model, shape, batch="N")
    for batch in (2, 3) if got.notes else (1, 2, 3):
        assert (int(got.subs({"N": batch}).total["saved_bytes"])
                == saved_by_autograd(model, torch.randn(batch, *shape))), batch


@pytest.mark.parametrize("name", ["made_from_shapes", "squeeze_excite", "grn", "shared"])
def test_symbolic_sizes_keep_what_autograd_keeps_at_each_size(name):
    """``subs`` puts the sizes into what rows keep too (a tensor made from a shape kept
    ``48*H*W`` bytes after ``subs({"H": 8, "W": 12})``)."""
    make, shape = KEPT[name]
    model = make()
    got = cnncalc.from_torch(model, f"{shape[0]}xHxW")
    for h, w in [(8, 12), (11, 7)]:
        at = got.subs({"H": h, "W": w}).total["saved_bytes"]
        assert at == saved_by_autograd(model, torch.randn(1, shape[0], h, w)), (h, w)


class _FourierPositions(nn.Module):
    """EdgeNeXt's position encoding: made from ``zeros(B, H, W)`` (a constant made per
    sample), projected by a 1x1 conv whose weights train and whose input has no
    gradient; and the same from ``grid.expand(B, ...)``."""

    def __init__(self, expand=False):
        super().__init__()
        self.expand = expand
        self.embed, self.proj = nn.Conv2d(3, 8, 1), nn.Conv2d(4, 8, 1)

    def forward(self, x):
        b, _, h, w = x.shape
        if self.expand:
            grid = torch.arange(h * w, dtype=x.dtype, device=x.device).view(1, 1, h, w)
            grid = grid.expand(b, 2, h, w)
        else:
            grid = ~torch.zeros(b, h, w, dtype=torch.bool, device=x.device)
            grid = grid.cumsum(1, dtype=x.dtype)
            grid = torch.stack([grid, grid.transpose(1, 2).cumsum(1).transpose(1, 2)], 1)
        pos = self.proj(torch.cat([grid.sin(), grid.cos()], 1))
        return self.embed(x) + pos


@pytest.mark.parametrize("expand", [False, True])
def test_a_constant_made_per_sample_is_costed_per_sample(expand):
    """A conv on a tensor made from ``zeros(B, H, W)`` runs per sample: a symbolic batch's
    MACs and backward MACs counted it once a pass (the batch the trace ran at), and a
    numeric batch's backward gave it an input gradient."""
    model = _FourierPositions(expand)
    got = cnncalc.from_torch(model, "3x5x6", batch="N")
    for batch in (1, 2, 3):
        x = torch.randn(batch, 3, 5, 6)
        at = got.subs({"N": batch}).total
        assert int(at["macs"]) == torch_count(model, x)[1], batch
        assert int(at["backward_macs"]) == backward_macs(model, x), batch
        assert int(at["saved_bytes"]) == saved_by_autograd(model, x), batch


class _FixedBatchConstant(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 1)

    def forward(self, x):  # (a constant of first dimension 2, the traced batch, once)
        return x + self.conv(torch.ones(2, 4, 3, 3, device=x.device)).sum(0)


def test_a_symbolic_batch_that_does_not_hold_is_refused():
    with pytest.raises(CnnCalcError, match="do not hold at N = 3: the trace there gives"):
        cnncalc.from_torch(_FixedBatchConstant(), "4x3x3", batch="N")
    assert int(cnncalc.from_torch(_FixedBatchConstant(), "4x3x3", batch=3).total["macs"]) \
        == torch_count(_FixedBatchConstant(), torch.zeros(3, 4, 3, 3))[1]


class _TokensAfterTheFirst(nn.Module):
    """A linear layer on ``x[:, 1:]`` (the tokens after a class token), from a patch
    embedding: at batch 2 and up reshape copies the slice, and the layer keeps the copy;
    at batch 1 the slice is contiguous, and the layer keeps the whole of ``x``."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Conv2d(3, 8, 3, stride=2)
        self.mix = nn.Linear(8, 12)
        self.head = nn.Linear(12, 5)

    def forward(self, x):
        return self.head(self.mix(self.embed(x).flatten(2).transpose(1, 2))[:, 1:])


class _TokensAcrossTheBatch(nn.Module):
    """``x.permute(1, 0, 2).reshape(-1, d)``: a view at batch 1 (the trace shows it as a
    row there), a copy at every larger batch."""

    def __init__(self):
        super().__init__()
        self.a, self.fc = nn.Linear(12, 12), nn.Linear(12, 5)

    def forward(self, x):
        return self.fc(self.a(x).permute(1, 0, 2).reshape(-1, 12))


def test_batch_one_is_named_only_where_its_bytes_kept_differ():
    """Rows that only batch 1's trace shows (its activations differed) are no reason for
    a note: the bytes kept agree with autograd at every batch."""
    model = _TokensAcrossTheBatch()
    got = cnncalc.from_torch(model, (16, 12), batch="N")
    assert got.notes == ()
    for batch in (1, 2, 3):
        assert (int(got.subs({"N": batch}).total["saved_bytes"])
                == saved_by_autograd(model, torch.randn(batch, 16, 12)))


@pytest.mark.parametrize("sizes", [{}, {"H": 9, "W": 11}])
def test_a_symbolic_batch_is_traced_above_one_and_batch_one_is_named(sizes):
    """Traced at batch 1, the formula kept the whole of x at every batch (Swin's and
    MaxViT's were off by 0.3% at every batch above 1). The note gives batch 1's figures,
    which are autograd's."""
    model = _TokensAfterTheFirst()
    got = cnncalc.from_torch(model, "3xHxW" if sizes else "3x9x11", batch="N")
    for batch in (2, 3):
        assert (int(got.subs({"N": batch, **sizes}).total["saved_bytes"])
                == saved_by_autograd(model, torch.randn(batch, 3, 9, 11)))
    (note,) = got.notes
    at = (225, 257) if sizes else (9, 11)  # (a symbolic size's note is at the trace's)
    one = saved_by_autograd(model, torch.randn(1, 3, *at))
    formula = got.subs({"N": 1, **(dict(zip("HW", at)) if sizes else {})}).total["saved_bytes"]
    assert one != formula
    assert "N = 1" in note and f"kept for backward {one:,}, not {int(formula):,}" in note


def test_attention_dropout_keeps_the_math_paths_tensors():
    """With dropout, ``nn.MultiheadAttention`` trains by the math path (scores, softmax,
    mask). cnncalc counts a dropout mask as a bool, where the CPU keeps a float32 one:
    3 bytes an element more in torch, for the layer's three ``nn.Dropout`` s (5 x 16,
    5 x 32 and 5 x 16 elements a sample)."""
    torch.manual_seed(0)
    model = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True, dropout=0.1)
    for batch in (1, 3):
        got = cnncalc.from_torch(model, (5, 16), batch=batch)
        masks = batch * 5 * (16 + 32 + 16)
        assert int(got.total["saved_bytes"]) + 3 * masks == saved_by_autograd(
            model, torch.randn(batch, 5, 16))
        without = cnncalc.from_torch(_encoder(), (5, 16), batch=batch)
        assert got.total["saved_bytes"] > without.total["saved_bytes"] + masks


class _BiasMLPWithDropout(BiasFromAnMLP):
    """timm's Swin-V2-CR and MaxViT-rw position bias: its MLP has a dropout."""

    def __init__(self):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(0.125),
                                 nn.Linear(16, self.heads))


def test_a_dropout_in_work_on_weights_keeps_one_mask_a_pass():
    """The bias MLP's dropout mask (4 x 4 x 16 elements) is made once a pass, whatever
    the batch: it was counted once a sample (Swin-V2-CR-T: 11 MB too many at batch 2).
    (The CPU keeps it as float32: 3 bytes an element more than cnncalc's bool.)"""
    torch.manual_seed(0)
    model = _BiasMLPWithDropout()
    for batch in (1, 3):
        got = cnncalc.from_torch(model, (2, 4, 8), batch=batch)
        assert int(got.total["saved_bytes"]) + 3 * 4 * 4 * 16 == saved_by_autograd(
            model, torch.randn(batch, 2, 4, 8))


class _Checkpointed(nn.Module):
    def __init__(self, reentrant, early_stop=True):
        super().__init__()
        self.a, self.b, self.reentrant = nn.Linear(8, 8), nn.Linear(8, 8), reentrant
        self.options = {} if reentrant else {"early_stop": early_stop}

    def forward(self, x):
        from torch.utils.checkpoint import checkpoint
        return checkpoint(lambda y: self.b(torch.relu(self.a(y))), x,
                          use_reentrant=self.reentrant, **self.options)


@pytest.mark.parametrize(("reentrant", "early_stop"), [(False, True), (False, False),
                                                      (True, None)])
@pytest.mark.parametrize("first", [False, True])
def test_activation_checkpointing_keeps_and_runs_again_what_torch_does(reentrant,
                                                                        early_stop, first):
    """Layers run by ``torch.utils.checkpoint``: each segment keeps its input; backward
    runs its forward again (the non-reentrant kind stops before the last linear layer's
    product unless told not to, the reentrant kind runs it all, and gives nothing a
    gradient when its input needs none: ``first``). Against autograd and
    ``FlopCounterMode`` over ``backward()``; the note says where, the forward is costed
    as it is, and checkpoint is left as it was."""
    import torch.utils.checkpoint as module
    before = (module.CheckpointFunction, module._checkpoint_without_reentrant_generator)
    torch.manual_seed(0)
    model = nn.Sequential(*([] if first else [nn.Linear(8, 8)]),
                          _Checkpointed(reentrant, early_stop), nn.ReLU(),
                          _Checkpointed(reentrant, early_stop), nn.Linear(8, 4))
    for batch in (1, 3):
        got = cnncalc.from_torch(model, (8,), batch=batch)
        x = torch.randn(batch, 8)
        with warnings.catch_warnings():  # (torch's, for a reentrant one with no gradient)
            warnings.simplefilter("ignore", UserWarning)
            assert int(got.total["saved_bytes"]) == saved_by_autograd(model, x)
            assert int(got.total["backward_macs"]) == backward_macs(model, x)
        assert int(got.total["macs"]) == torch_count(model, x)[1]
    (note,) = got.notes
    assert note.startswith("0, 2: run by" if first else "1, 3: run by torch.utils.checkpoint")
    assert (module.CheckpointFunction, module._checkpoint_without_reentrant_generator) == before


@pytest.mark.parametrize(("reentrant", "early_stop"), [(False, True), (False, False),
                                                      (True, None)])
def test_a_checkpointed_segment_run_again_holds_what_it_would_have_kept(reentrant,
                                                                        early_stop):
    """While backward runs a segment again, its layers keep what they would have kept
    without checkpointing, less the segment's inputs, which it held: against autograd on
    the same layers with and without checkpointing. The training-step timeline holds
    it from the segment's last layer's backward on, one layer less at each step."""
    from cnncalc.charts import timeline

    def model(checkpointed):
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(8, 8), _Checkpointed(reentrant, early_stop)
                             if checkpointed else _Checkpointed(reentrant).requires_grad_(),
                             nn.ReLU(), _Checkpointed(reentrant, early_stop), nn.Linear(8, 4))
    with_, without = model(True), model(True)
    for block in (without[1], without[3]):  # the same layers, run as they are
        block.forward = lambda x, block=block: block.b(torch.relu(block.a(x)))
    x = torch.randn(3, 8)
    got = cnncalc.from_torch(with_, (8,), batch=3)
    again = sum(int(r.recompute_bytes) for r in got.layers)
    assert again > 0
    assert saved_by_autograd(with_, x) + again == saved_by_autograd(without, x)
    steps = timeline(got)
    held = {name: v for name, v in zip(steps.steps, steps.saved)}
    for s in (0, 1):  # (backward runs in reverse: the segment's last layer first)
        *before, last = [r for r in got.layers if r.segment == s]
        assert held[f"{last.name} ←"] == held[f"{before[-1].name} ←"] + int(
            before[-1].saved_bytes) + int(before[-1].recompute_bytes)
        assert held[f"{last.name} ←"] >= sum(int(r.recompute_bytes) for r in before) > 0


class _Tagger(nn.Module):
    """Token ids through an embedding (whose backward keeps the ids, as int64) and an LSTM."""

    def __init__(self, recurrent=True):
        super().__init__()
        self.emb = nn.Embedding(50, 16)
        self.lstm = nn.LSTM(16, 24, batch_first=True) if recurrent else None
        self.fc = nn.Linear(24 if recurrent else 16, 5)

    def forward(self, ids):
        x = self.emb(ids)
        return self.fc(self.lstm(x)[0] if self.lstm is not None else x)


def test_embedding_keeps_its_ids_and_a_recurrent_net_is_named():
    """An embedding keeps its int64 ids; what an LSTM's kernel keeps depends on the backend
    (oneDNN's workspace on the CPU), so it is named in a note and not counted; the linear
    layer after it keeps the LSTM's output, its own size (not its products' rows')."""
    ids = torch.randint(0, 50, (3, 7))
    plain = _Tagger(recurrent=False)
    got = cnncalc.from_torch(plain, (7,), batch=3, input_dtype="int64")
    assert got.notes == ()
    assert int(got.total["saved_bytes"]) == saved_by_autograd(plain, ids) == 3 * 7 * (8 + 16 * 4)
    got = cnncalc.from_torch(_Tagger(), (7,), batch=3, input_dtype="int64")
    assert [n for n in got.notes if "lstm (LSTM): the bytes its backward keeps are not counted"
            in n]
    assert int(got.total["saved_bytes"]) == 3 * 7 * (8 + 24 * 4)


class _MergedLoRA(nn.Module):
    """A weight merged once a pass, ``W + A @ B``: its product's two factors are weights,
    and each gets a gradient."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(16, 16))
        self.a, self.b = nn.Parameter(torch.zeros(16, 2)), nn.Parameter(torch.zeros(2, 16))

    def forward(self, x):
        return F.linear(x, self.w + self.a @ self.b)


@pytest.mark.parametrize("name", ["sdpa", "sdpa_grouped", "window", "encoder", "multihead",
                                  "squeeze_excite", "bias_mlp", "lora", "computed_weights",
                                  "attention_paths", "shared"])
def test_backward_macs_count_each_factors_gradient(name):
    """A product of two activations (attention's scores and output) has two input
    gradients, each as costly as the product; ``nn.MultiheadAttention``'s output
    projection, costed by its aten ops, has its weight gradient. Against
    ``FlopCounterMode`` over ``backward()`` (math attention, oneDNN off)."""
    torch.manual_seed(0)
    make, shape = KEPT.get(name, (_MergedLoRA, (16,)))
    model = make()
    if isinstance(model, nn.MultiheadAttention):
        model, shape = _SelfAttention(model), (5, 16)
    got = cnncalc.from_torch(model, shape, batch=2)
    assert int(got.total["backward_macs"]) == backward_macs(model, torch.randn(2, *shape)) > 0


def backward_macs(model, x) -> int:
    """MACs of a training step's ``backward()`` by ``FlopCounterMode`` (math attention,
    oneDNN off)."""
    onednn = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        with sdpa_kernel([SDPBackend.MATH]):
            out = model.train()(x)
            with FlopCounterMode(display=False) as counter:
                out.sum().backward()
    finally:
        torch.backends.mkldnn.enabled = onednn
    return counter.get_total_flops() // 2


def test_a_weight_merged_with_a_product_counts_every_parameter():
    """``F.linear(x, W + A @ B)``: the sum on weights has no row of its own, so W counts
    with the linear layer that uses it (it was claimed by the sum and lost: 64 of 320)."""
    got = assert_exact(_MergedLoRA(), torch.zeros(2, 16))
    assert int(got.total["params"]) == 320


class _PooledHead(nn.Module):
    def __init__(self, between):
        super().__init__()
        self.conv, self.between, self.fc = nn.Conv2d(3, 8, 3), between, nn.Linear(8, 4)

    def forward(self, x):
        pooled = torch.relu(self.conv(x)).mean((2, 3))
        return self.fc(pooled if self.between is None else self.between(pooled))


class _ComputedWeights(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.q_bias, self.v_bias = nn.Parameter(torch.zeros(8)), nn.Parameter(torch.zeros(8))
        self.register_buffer("k_bias", torch.zeros(8))
        self.qkv = nn.Parameter(torch.randn(24, 8))
        self.alpha, self.beta = nn.Parameter(torch.ones(24)), nn.Parameter(torch.zeros(24))

    def forward(self, x):
        w = F.batch_norm(self.conv.weight.reshape(1, 8, -1), None, None, training=True,
                         momentum=0.0).reshape_as(self.conv.weight)
        y = F.conv2d(x, w, self.conv.bias).mean((2, 3))
        y = F.linear(y, self.qkv, torch.cat((self.q_bias, self.k_bias, self.v_bias)))
        return torch.addcmul(self.beta, self.alpha, y)


class _AttentionPaths(nn.Module):
    def __init__(self, dim=16, heads=2):
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.bias = nn.Parameter(torch.zeros(heads, 6, 6))

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=self.bias)  # math path
        y = F.scaled_dot_product_attention(y.unsqueeze(2), k.unsqueeze(2), v.unsqueeze(2))
        y = F.scaled_dot_product_attention(y.squeeze(2).contiguous(), k, v)
        return self.proj(y.transpose(1, 2).reshape(b, n, d))


class _Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.conv = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.w = nn.Parameter(torch.randn(8, 8))

    def forward(self, x):
        y = self.conv(torch.relu(self.conv(self.stem(x)))).mean((2, 3))
        return F.linear(torch.relu(F.linear(y, self.w)), self.w)


class _MadeFromShapes(nn.Module):
    def __init__(self):
        super().__init__()
        self.pos, self.q = nn.Conv2d(4, 8, 1), nn.Linear(8, 8)

    def forward(self, x):
        b, c, h, w = x.shape
        grid = torch.arange(h * w, dtype=x.dtype, device=x.device).view(1, 1, h, w)
        x = x + self.pos(grid.expand(b, 4, h, w) * 1.0)
        return self.q(x.flatten(2).transpose(1, 2))


class _FoldedNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear, self.bn = nn.Linear(8, 16), nn.BatchNorm1d(16)

    def forward(self, x):
        x = self.linear(x)
        return self.bn(x.flatten(0, 1)).reshape_as(x)


def test_folding_the_batch_into_rows_is_a_view_not_a_flatten():
    """``x.flatten(0, 1)`` folds the batch into the rows: no flatten row, nothing listed
    (it was listed as a flatten whose rule disagreed with torch)."""
    got = cnncalc.from_torch(_FoldedNorm(), (6, 8), batch=2)
    assert got.unsupported == ()
    assert [r.type for r in got.layers] == ["linear", "batch_norm1d"]


class _ClassToken(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm, self.fc = nn.LayerNorm(8), nn.Linear(8, 8)

    def forward(self, x):
        return self.fc(self.norm(x)[:, 0:1])


class DropPath(nn.Module):
    """timm's, as it runs in training: one random scale a sample (a row here)."""

    def __init__(self, drop_prob):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x):
        if not self.training:
            return x
        keep = 1 - self.drop_prob
        noise = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep).div_(keep)
        return x * noise


class _FoldedDropPath(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.drop = nn.Linear(8, 8), DropPath(0.25)

    def forward(self, x):  # x: B, patches, tokens, C
        b, p, n, c = x.shape
        y = self.drop(self.fc(x.reshape(b * p, n, c))).reshape(b, p, n, c)
        return y.max(1)[0]


@pytest.mark.parametrize(("name", "frozen"), [
    ("squeeze_excite", "conv."), ("squeeze_excite", "fc"), ("sdpa", "q."), ("sdpa", "kv."),
    ("grn", "dw."), ("grn", "gamma"), ("computed_weights", "conv.")])
def test_frozen_parameters_keep_what_autograd_keeps(name, frozen):
    """Parameters with requires_grad=False change what autograd keeps (no input kept for a
    frozen weight's gradient, nothing kept upstream of every trainable one): the calls run
    again with gradients see the same."""
    torch.manual_seed(0)
    make, shape = KEPT[name]
    model = make()
    for n, p in model.named_parameters():
        if n.startswith(frozen):
            p.requires_grad_(False)
    got = cnncalc.from_torch(model, shape, batch=2)
    assert int(got.total["saved_bytes"]) == saved_by_autograd(model, torch.randn(2, *shape))
