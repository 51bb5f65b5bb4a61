"""Property tests: random valid networks, independent formulas, random junk.

* (a) random valid specs, built layer by layer while tracking the shape here, analyse
  without error, and end in the shape tracked here;
* (b) per-layer params / MACs / activations / buffers sum to the totals;
* (c) the JSON document round-trips through ``json`` and carries the same totals;
* (d) junk text given to ``parse_layers`` parses or raises ``SpecError``, nothing else,
  and never hangs (and what parses analyses or raises ``CnnCalcError``);
* (e) a numeric conv's output size, params and MACs equal a direct Python computation.
"""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass

import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnncalc import CnnCalcError, SpecError, analyze, parse_layers
from cnncalc.analysis import QUANTITIES
from cnncalc.render.formats import to_dict

SETTINGS = settings(max_examples=80, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
GUARD_S = 10


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang(f"no answer within {GUARD_S} s")


def guarded(fn, *args, **kwargs):
    """Call ``fn`` with a SIGALRM guard, so a hang fails the example instead of the run."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(GUARD_S)
    try:
        return fn(*args, **kwargs)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# -- shapes tracked independently of cnncalc ---------------------------------------

@dataclass(frozen=True)
class Img:
    c: int
    h: int
    w: int


@dataclass(frozen=True)
class Flat:
    d: int


def divisors(n: int) -> list[int]:
    return [g for g in range(1, n + 1) if n % g == 0]


def window(size: int, k: int, s: int, p: int, d: int) -> int:
    """PyTorch's output size, written out independently."""
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def kv(draw, names: tuple[str, ...], value: str) -> str:
    """``k=3`` under one of the key's spellings."""
    return f"{draw(st.sampled_from(names))}={value}"


def size_text(draw, a: int, b: int) -> str:
    """A pair (a, b) as ``a`` (when equal), ``(a,b)`` or ``axb``."""
    if a == b and draw(st.booleans()):
        return str(a)
    return draw(st.sampled_from([f"({a},{b})", f"{a}x{b}", f"({a}, {b})"]))


@st.composite
def conv_layer(draw, x: Img, same_padding: bool = False) -> tuple[str, Img]:
    """A valid conv for input ``x``; with ``same_padding`` its output is what a 1x1
    projection with the same stride gives (as residual bodies need)."""
    g = draw(st.sampled_from(divisors(x.c)))
    cout = g * draw(st.integers(1, max(1, 24 // g)))
    if same_padding:
        kh, kw = draw(st.sampled_from([1, 3, 5])), draw(st.sampled_from([1, 3, 5]))
        d = draw(st.integers(1, 2))
        ph, pw = d * (kh - 1) // 2, d * (kw - 1) // 2
        s = draw(st.integers(1, 2))
        sh = sw = s
    else:
        kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
        d = draw(st.integers(1, 2))
        ph = pw = draw(st.integers(0, 2))
        sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
        if x.h + 2 * ph < d * (kh - 1) + 1:
            kh = 1
        if x.w + 2 * pw < d * (kw - 1) + 1:
            kw = 1
    bias = draw(st.booleans())
    parts = [str(cout) if draw(st.booleans()) else kv(draw, ("out", "out_channels"), str(cout)),
             kv(draw, ("k", "kernel_size"), size_text(draw, kh, kw)),
             kv(draw, ("s", "stride"), size_text(draw, sh, sw)),
             kv(draw, ("p", "padding"), size_text(draw, ph, pw)),
             kv(draw, ("d", "dilation"), str(d)),
             kv(draw, ("groups", "g"), str(g)), f"bias={'true' if bias else 'false'}"]
    head, rest = parts[0], draw(st.permutations(parts[1:]))
    name = draw(st.sampled_from(["conv", "conv2d", "Conv2d"]))
    out = Img(cout, window(x.h, kh, sh, ph, d), window(x.w, kw, sw, pw, d))
    return f"{name}({', '.join([head, *rest])})", out


@st.composite
def pool_layer(draw, x: Img) -> tuple[str, Img]:
    k = draw(st.integers(1, min(4, x.h, x.w)))
    p = draw(st.integers(0, k // 2))
    s = draw(st.one_of(st.none(), st.integers(1, 3)))
    kind = draw(st.sampled_from(["maxpool", "avgpool", "MaxPool2d", "avg_pool2d"]))
    args = [str(k)] + ([f"s={s}"] if s is not None else []) + [f"p={p}"]
    stride = k if s is None else s
    return f"{kind}({', '.join(args)})", Img(x.c, window(x.h, k, stride, p, 1),
                                              window(x.w, k, stride, p, 1))


ACTIVATIONS = ["relu", "relu6", "tanh", "sigmoid", "gelu", "silu", "softmax", "identity",
               "leakyrelu", "ReLU", "swish"]


@st.composite
def keep_layer(draw, x: Img | Flat) -> tuple[str, Img | Flat]:
    """A layer that keeps the shape."""
    choices = [st.sampled_from(ACTIVATIONS),
               st.sampled_from(["dropout", "dropout(0.1)", "dropout(p=0.5)", "dropout(0)",
                                "dropout(1)"]),
               st.sampled_from(["bn", "batchnorm2d", "bn(affine=false)",
                                "bn(track_running_stats=false)", "ln", "ln(affine=false)"])]
    if isinstance(x, Img):
        choices += [st.sampled_from(["in", "in(affine=true)", "instancenorm2d(track=true)"]),
                    st.sampled_from(divisors(x.c)).map(lambda g: f"gn({g})")]
    return draw(st.one_of(choices)), x


@st.composite
def residual_body_layer(draw, x: Img) -> tuple[str, Img]:
    kind = draw(st.sampled_from(["conv", "conv", "keep", "dwconv", "basic"]))
    if kind == "conv":
        return draw(conv_layer(x, same_padding=True))
    if kind == "dwconv":
        s = draw(st.integers(1, 2))
        return f"dwconv(k=3, s={s})", Img(x.c, (x.h - 1) // s + 1, (x.w - 1) // s + 1)
    if kind == "basic":
        out, s = draw(st.integers(1, 16)), draw(st.integers(1, 2))
        return f"basic({out}, s={s})", Img(out, (x.h - 1) // s + 1, (x.w - 1) // s + 1)
    text, _ = draw(keep_layer(x))
    return text, x


@st.composite
def residual_layer(draw, x: Img) -> tuple[str, Img]:
    body, y = [], x
    for _ in range(draw(st.integers(1, 4))):
        text, y = draw(residual_body_layer(y))
        body.append(text)
    options = ["", ", shortcut=auto", ", shortcut=conv", ", shortcut=none"]
    if y == x:
        options.append(", shortcut=identity")
    return f"residual({', '.join(body)}{draw(st.sampled_from(options))})", y


@st.composite
def block_layer(draw, x: Img) -> tuple[str, Img]:
    s = draw(st.integers(1, 2))
    h, w = (x.h - 1) // s + 1, (x.w - 1) // s + 1
    kind = draw(st.sampled_from(["basic", "bottleneck", "inverted"]))
    if kind == "basic":
        out = draw(st.integers(1, 32))
        return f"basic({out}, s={s})", Img(out, h, w)
    if kind == "bottleneck":
        width, e = draw(st.integers(1, 16)), draw(st.integers(1, 4))
        return f"bottleneck({width}, s={s}, expansion={e})", Img(width * e, h, w)
    out, t = draw(st.integers(1, 32)), draw(st.integers(1, 6))
    return f"inverted({out}, t={t}, s={s})", Img(out, h, w)


@st.composite
def next_layer(draw, x: Img | Flat) -> tuple[str, Img | Flat]:
    if isinstance(x, Flat):
        kind = draw(st.sampled_from(["fc", "fc", "keep"]))
        if kind == "fc":
            out = draw(st.integers(1, 64))
            name = draw(st.sampled_from(["fc", "linear", "Linear", "dense"]))
            bias = draw(st.sampled_from(["", ", bias=false", ", bias=true"]))
            return f"{name}({out}{bias})", Flat(out)
        return draw(keep_layer(x))
    kind = draw(st.sampled_from(["conv", "conv", "pool", "keep", "keep", "dwconv", "residual",
                                 "block", "gap", "adaptive", "flatten"]))
    if kind == "conv":
        return draw(conv_layer(x))
    if kind == "pool":
        return draw(pool_layer(x))
    if kind == "dwconv":
        k = draw(st.sampled_from([1, 3, 5]))
        s = draw(st.integers(1, 2))
        m = draw(st.integers(1, 2))
        p = (k - 1) // 2
        return (f"dwconv(k={k}, s={s}, p={p}, m={m})",
                Img(x.c * m, window(x.h, k, s, p, 1), window(x.w, k, s, p, 1)))
    if kind == "residual":
        return draw(residual_layer(x))
    if kind == "block":
        return draw(block_layer(x))
    if kind == "gap":
        return draw(st.sampled_from(["gap", "globalavgpool"])), Img(x.c, 1, 1)
    if kind == "adaptive":
        o = draw(st.integers(1, 7))
        return f"adaptiveavgpool({o})", Img(x.c, o, o)
    if kind == "flatten":
        return "flatten", Flat(x.c * x.h * x.w)
    return draw(keep_layer(x))


@dataclass(frozen=True)
class Net:
    spec: str
    input: str
    batch: int
    out: Img | Flat


@st.composite
def networks(draw) -> Net:
    x: Img | Flat = Img(draw(st.integers(1, 8)), draw(st.integers(1, 40)),
                        draw(st.integers(1, 40)))
    start = x
    items = []
    for _ in range(draw(st.integers(1, 7))):
        text, x = draw(next_layer(x))
        if text in ACTIVATIONS and draw(st.booleans()):  # shape-keeping: repeat it
            text += f"*{draw(st.integers(1, 3))}"
        items.append(text)
    seps = [draw(st.sampled_from([", ", ",", " -> ", "->", "\n", "; "]))
            for _ in items[1:]] + [""]
    spec = "".join(t + s for t, s in zip(items, seps))
    return Net(spec, f"{start.c}x{start.h}x{start.w}", draw(st.integers(1, 4)), x)


def expected_shape(x: Img | Flat) -> tuple[int, ...]:
    return (x.c, x.h, x.w) if isinstance(x, Img) else (x.d,)


# -- (a) + (b): valid networks analyse, end in the tracked shape, and rows sum to totals ---

@SETTINGS
@given(networks())
def test_random_valid_networks(net: Net):
    try:
        a = guarded(analyze, net.spec, input=net.input, batch=net.batch)
    except CnnCalcError as exc:  # the generator only builds valid networks
        raise AssertionError(f"valid network refused: {exc}\n{net.spec}") from exc
    assert tuple(int(d) for d in a.output_shape) == expected_shape(net.out), net.spec
    for q in ("params", "macs", "activations", "buffers", "trainable_params",
              "non_trainable_params"):
        assert sum(int(getattr(r, q)) for r in a.layers) == int(a.total[q]), q
    assert a.total["trainable_params"] + a.total["non_trainable_params"] == a.total["params"]
    for r in a.layers:
        assert r.activations == sp.Mul(*r.output_shape) * net.batch
        for q in ("params", "macs", "activations", "buffers"):
            v = getattr(r, q)
            assert v.is_Integer and v >= 0, (r.name, q, v)


# -- (c): JSON round trip -----------------------------------------------------------

@SETTINGS
@given(networks())
def test_json_round_trip(net: Net):
    a = guarded(analyze, net.spec, input=net.input, batch=net.batch)
    doc = to_dict(a)
    assert json.loads(json.dumps(doc)) == doc
    assert doc["batch"] == net.batch
    assert doc["input_shape"] == [int(d) for d in a.input_shape]
    assert len(doc["layers"]) == len(a.layers)
    for q in QUANTITIES:
        assert doc["total"][q] == int(a.total[q]), q
        assert isinstance(doc["total"][q], int)
    for q in ("params", "macs", "activations", "buffers"):
        assert sum(row[q] for row in doc["layers"]) == doc["total"][q], q
    assert [row["index"] for row in doc["layers"]] == list(range(len(a.layers)))
    assert doc["layers"][-1]["output_shape"] == list(expected_shape(net.out))


# -- symbolic: the same sums hold as expressions ------------------------------------

SYMBOLIC_LAYERS = ["conv(K, k=3, p=1)", "conv(2*K, k=1)", "conv(K, k=F, s=S, p=P)", "relu",
                   "bn", "dwconv(k=3, s=1)", "in", "ln", "dropout(0.2)",
                   "residual(conv(K, k=3, p=1), bn, relu)"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(SYMBOLIC_LAYERS), min_size=1, max_size=4),
       st.booleans(), st.sampled_from(["1", "N"]))
def test_symbolic_rows_sum_to_totals(layers, head, batch):
    spec = ", ".join(layers) + (", gap, flatten, fc(M)" if head else "")
    a = guarded(analyze, spec, input="CxHxW", batch=batch)
    for q in ("params", "macs", "activations", "buffers"):
        total = sp.Add(*(getattr(r, q) for r in a.layers))
        assert sp.expand(total - a.total[q]) == 0, q
    doc = to_dict(a)
    assert json.loads(json.dumps(doc)) == doc
    for q in ("params", "macs", "activations", "buffers"):
        v = doc["total"][q]
        assert v == (int(a.total[q]) if a.total[q].is_Integer else str(a.total[q]))


# -- (d): junk never escapes as anything but SpecError ----------------------------

ALPHABET = "convreluxbnfcgdpkms_0123456789.eE(),=-*/>+[] \n;#'\"×$@KHW"
TOKENS = ["conv", "conv1d", "conv3d", "deconv", "dwconv", "maxpool", "avgpool", "gap", "bn",
          "gn", "ln", "in", "fc", "flatten", "relu", "dropout", "residual", "basic",
          "bottleneck", "inverted", "adaptiveavgpool", "(", ")", "[", "]", ",", "->", ";",
          "\n", "*", "**", "/", "//", "+", "-", "=", "x", "k=", "s=", "p=", "d=", "groups=",
          "shortcut=", "bias=", "t=", "expansion=", "out=", "output_padding=", "same", "valid",
          "identity", "none", "true", "false", "0", "1", "2", "3", "7", "64", "1.5", "0.5",
          "1e13", "1e999999", "0e99999", "10", "99999999999999", "K", "F", "S", "'same'",
          "\"x\"", "#c\n", " ", "(3,3)", "3x3", "2**64", "*10000"]

VALUES = ["0", "1", "2", "3", "5", "64", "-1", "1.5", "0.5", "1e13", "K", "F", "2*K", "K-1",
          "K//2", "(3,3)", "(1,2,3)", "3x5", "true", "false", "same", "valid", "'same'",
          "identity", "conv", "none", "relu", "conv(4)", "(2,3,4,5)", "10**12", "2**40"]
KEYS = [None, None, None, "k", "s", "p", "d", "groups", "g", "bias", "out", "t", "expansion",
        "shortcut", "output_padding", "affine", "dims", "ceil_mode", "output", "m", "p", "zz"]

junk_text = st.text(alphabet=ALPHABET, max_size=80)
junk_tokens = st.lists(st.sampled_from(TOKENS), max_size=40).map("".join)


@st.composite
def junk_call(draw, depth: int = 0) -> str:
    """A layer call with random (often wrong) arguments: parses often, analyses rarely."""
    from cnncalc.layers import ALIASES, FORMS, LAYER_NAMES

    name = draw(st.sampled_from(LAYER_NAMES))
    params = FORMS.get(ALIASES.get(name, name), ((), None))[0]
    own = draw(st.permutations([p.name for p in params]))
    args = []
    for i in range(draw(st.integers(0, min(4, max(1, len(params)))))):
        if draw(st.integers(0, 5)) == 0 or i >= len(own):
            key = draw(st.sampled_from(KEYS))
        else:
            key = None if i == 0 and own[0] == params[0].name else own[i]
        if name == "residual" and depth < 2 and draw(st.booleans()):
            value = draw(junk_call(depth + 1))
        else:
            value = draw(st.sampled_from(VALUES))
        args.append(value if key is None else f"{key}={value}")
    text = f"{name}({', '.join(args)})" if args or draw(st.booleans()) else name
    if draw(st.integers(0, 5)) == 0:
        text += f"*{draw(st.sampled_from(['2', '3', '0', 'K', '1.5']))}"
    return text


junk_calls = st.lists(junk_call(), min_size=1, max_size=5).map(", ".join)


def _parse_or_spec_error(text: str):
    try:
        return guarded(parse_layers, text)
    except SpecError as exc:
        assert "\n" not in str(exc)
        assert 1 <= exc.column <= len(text.split("\n")[exc.line - 1]) + 1
        exc.excerpt()  # the CLI prints this too: it must not fail either
        return None


@settings(max_examples=100, deadline=None)
@given(st.one_of(junk_text, junk_tokens, junk_calls))
def test_junk_parses_or_raises_spec_error(text: str):
    _parse_or_spec_error(text)


@settings(max_examples=100, deadline=None)
@given(st.one_of(junk_calls, junk_tokens))
def test_junk_that_parses_analyses_or_raises_cnncalc_error(text: str):
    layers = _parse_or_spec_error(text)
    if layers is None or len(layers) > 30:
        return
    for shape in ("3x16x16", "CxHxW", "8", "4x10"):
        try:
            guarded(analyze, layers, input=shape)
        except CnnCalcError:
            pass


# -- (e): conv output size and params against a direct computation ------------------

@settings(max_examples=100, deadline=None)
@given(st.data())
def test_conv_matches_direct_formula(data):
    cin = data.draw(st.integers(1, 64), label="cin")
    g = data.draw(st.sampled_from(divisors(cin)), label="groups")
    cout = g * data.draw(st.integers(1, 8), label="cout/g")
    h = data.draw(st.integers(1, 128), label="H")
    w = data.draw(st.integers(1, 128), label="W")
    k = data.draw(st.integers(1, 11), label="k")
    s = data.draw(st.integers(1, 5), label="s")
    p = data.draw(st.integers(0, 5), label="p")
    d = data.draw(st.integers(1, 4), label="d")
    batch = data.draw(st.integers(1, 8), label="batch")
    spec = f"conv({cout}, k={k}, s={s}, p={p}, d={d}, groups={g})"
    fits = min(h, w) + 2 * p - d * (k - 1) - 1 >= 0
    try:
        a = guarded(analyze, spec, input=f"{cin}x{h}x{w}", batch=batch)
    except CnnCalcError as exc:
        assert not fits, f"{spec} on {cin}x{h}x{w} refused: {exc}"
        assert "layer 0 (conv1)" in str(exc)
        return
    assert fits, f"{spec} on {cin}x{h}x{w} accepted, but the window does not fit"
    ho = (h + 2 * p - d * (k - 1) - 1) // s + 1
    wo = (w + 2 * p - d * (k - 1) - 1) // s + 1
    row = a.layers[0]
    assert tuple(int(v) for v in row.output_shape) == (cout, ho, wo)
    assert row.params == k * k * (cin // g) * cout + cout
    assert row.macs == k * k * (cin // g) * cout * ho * wo * batch
    assert row.activations == cout * ho * wo * batch
    # the same layer without bias, via --no-bias and via bias=false
    assert analyze(spec, input=f"{cin}x{h}x{w}", bias=False).total["params"] == (
        k * k * (cin // g) * cout)
    nob = spec[:-1] + ", bias=false)"
    assert analyze(nob, input=f"{cin}x{h}x{w}").total["params"] == k * k * (cin // g) * cout


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 16), st.integers(1, 64), st.integers(1, 64), st.integers(1, 64),
       st.integers(1, 6), st.integers(1, 4), st.integers(0, 3), st.booleans())
def test_conv1d_and_linear_match_direct_formula(c, length, out, d_in, k, s, p, bias):
    spec = f"conv1d({out}, k={k}, s={s}, p={p}, bias={'true' if bias else 'false'})"
    if length + 2 * p >= k:
        a = analyze(spec, input=f"{c}x{length}")
        lo = (length + 2 * p - k) // s + 1
        assert tuple(a.output_shape) == (out, lo)
        assert a.total["params"] == k * c * out + (out if bias else 0)
        assert a.total["macs"] == k * c * out * lo
    a = analyze(f"fc({out}, bias={'true' if bias else 'false'})", input=str(d_in))
    assert a.total["params"] == d_in * out + (out if bias else 0)
    assert a.total["macs"] == d_in * out
