"""What one layer costs: output shape, parameters, buffers and multiply-adds.

:func:`cost` is a pure function of a layer record, the shape reaching it
(channels first, no batch) and the batch size; it returns sympy expressions
and the worked steps (formula in named symbols, the values bound to them,
the result) that a renderer prints. Conventions, written once here:

* MACs count the multiply-accumulates of conv / linear layers only, times the
  batch; bias additions, norms, pooling and activations are not MACs.
* Output sizes use the exact floor formula
  ``floor((I + 2p - d(k - 1) - 1) / s) + 1`` (``ceil`` with ``ceil_mode``).
* Buffers are the running mean and variance of norms (``num_batches_tracked``,
  a single counter, is not counted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache, singledispatch

import sympy as sp

from .errors import ShapeError
from .layers import (
    AdaptiveAvgPool,
    BatchNorm,
    ChannelSplit,
    Conv,
    ConvTranspose,
    Elementwise,
    Flatten,
    GroupNorm,
    InstanceNorm,
    LayerNorm,
    LayerScale,
    Linear,
    Pad,
    Pool,
    Shuffle,
    Upsample,
    symbol,
)
from .symbolic import ceil_mode_size, named, window_size

Shape = tuple[sp.Expr, ...]
ZERO = sp.Integer(0)
ONE = sp.Integer(1)
DIM_NAMES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}


@dataclass(frozen=True)
class Step:
    """One line of a worked solution: ``quantity = formula = formula(bindings) = value``."""

    quantity: str
    formula: sp.Expr
    bindings: dict = field(hash=False)
    value: sp.Expr


@dataclass(frozen=True)
class Cost:
    type: str
    output_shape: Shape
    params: sp.Expr = ZERO
    buffers: sp.Expr = ZERO
    macs: sp.Expr = ZERO
    steps: tuple[Step, ...] = ()


def updated(record, **changes):
    """``dataclasses.replace`` for the frozen records that were checked when first built:
    a copy with ``changes``, without running ``__init__`` again (ten thousand rows were
    spending most of their analysis time there)."""
    new = object.__new__(type(record))
    new.__dict__.update(record.__dict__, **changes)
    return new


def prod(values) -> sp.Expr:
    result = ONE
    for v in values:
        result = result * v
    return result


def fmt_shape(shape: Shape) -> str:
    return "x".join(str(d) for d in shape) if shape else "()"


def _known(cond) -> bool:
    """True only when a sympy relation is decided True (unknown symbolic ones pass)."""
    return cond is sp.true or cond is True


def _spread(value, n: int, what: str) -> tuple[sp.Expr, ...]:
    if isinstance(value, tuple):
        if len(value) != n:
            raise ShapeError(f"{what} has {len(value)} sizes but the layer is {n}-D")
        return value
    return (value,) * n


def _spatial(shape: Shape, n: int, kind: str) -> tuple[sp.Expr, Shape]:
    if len(shape) != n + 1:
        dims = "x".join(("C",) + DIM_NAMES[n])
        raise ShapeError(f"{kind} expects a {dims} input, got {fmt_shape(shape)}")
    return shape[0], shape[1:]


def _check_divides(total: sp.Expr, groups: sp.Expr, what: str) -> None:
    q = total / groups
    if q.is_integer is False:
        raise ShapeError(f"{what} {total} is not divisible by groups={groups}")


@cache
def _window_formula(dim: str, names: tuple[str, ...], rounding) -> sp.Expr:
    """The textbook output-size formula in named symbols, built once and unevaluated:
    there is nothing in it to evaluate, and sympy's assumption queries to find that out
    cost more than the rest of a layer."""
    k, s, p, d = (symbol(x) for x in names)
    return rounding((symbol(f"{dim}_in") + 2 * p - d * (k - 1) - 1) / s, evaluate=False) + 1


def _window_steps(n: int, spatial: Shape, k, s, p, d, scalar: dict,
                  rounding=sp.floor) -> tuple[Shape, list[Step]]:
    """Output sizes of a sliding window, with one worked step per spatial dimension."""
    out, steps = [], []
    for i, name in enumerate(DIM_NAMES[n]):
        sub = "" if n == 1 else name.lower()
        names = tuple(key if scalar[key] else f"{key}_{sub}" for key in ("k", "s", "p", "d"))
        formula = _window_formula(name, names, rounding)
        syms = dict(zip(("k", "s", "p", "d"), (symbol(x) for x in names)))
        inp = symbol(f"{name}_in")
        bindings = {inp: spatial[i], syms["k"]: k[i], syms["s"]: s[i], syms["p"]: p[i],
                    syms["d"]: d[i]}
        value = window_size(spatial[i], k[i], s[i], p[i], d[i], rounding is sp.ceiling)
        if value is None:  # a size not known to be whole: the textbook formula as it is
            value = formula.xreplace(bindings)
        if value.is_number and value < 1:
            effective = d[i] * (k[i] - 1) + 1
            raise ShapeError(f"the {effective}-wide kernel (after dilation) is larger than "
                             f"the padded input ({spatial[i]} + 2*{p[i]} = "
                             f"{spatial[i] + 2 * p[i]}) along {name}")
        out.append(value)
        steps.append(Step(f"{name}_out", formula, bindings, value))
    return tuple(out), steps


@singledispatch
def cost(layer, shape: Shape, batch: sp.Expr) -> Cost:
    raise TypeError(f"no cost rule for {type(layer).__name__}")


@cost.register
def _conv(layer: Conv, shape: Shape, batch: sp.Expr) -> Cost:
    n = layer.ndim
    kind = f"conv{n}d"
    c_in, spatial = _spatial(shape, n, kind)
    groups = c_in if layer.groups is None else layer.groups
    c_out = layer.out if layer.out is not None else c_in * layer.multiplier
    _check_divides(c_in, groups, "input channels")
    _check_divides(c_out, groups, "output channels")
    k = _spread(layer.kernel, n, "kernel")
    s = _spread(layer.stride, n, "stride")
    d = _spread(layer.dilation, n, "dilation")
    scalar = {"k": not isinstance(layer.kernel, tuple), "s": not isinstance(layer.stride, tuple),
              "d": not isinstance(layer.dilation, tuple),
              "p": not isinstance(layer.padding, tuple)}
    steps: list[Step] = []
    if layer.padding == "same":
        if any(v != 1 for v in s):
            raise ShapeError("padding='same' needs stride 1 (as in PyTorch)")
        out_sp = spatial
        for i, name in enumerate(DIM_NAMES[n]):
            inp = symbol(f"{name}_in")
            steps.append(Step(f"{name}_out", inp, {inp: spatial[i]}, spatial[i]))
    else:
        p = (ZERO,) * n if layer.padding == "valid" else _spread(layer.padding, n, "padding")
        out_sp, steps = _window_steps(n, spatial, k, s, p, d, scalar)

    ks = [symbol("k")] if n == 1 else [symbol(f"k_{nm.lower()}") for nm in DIM_NAMES[n]]
    k_formula, k_bind = prod(ks), dict(zip(ks, k))
    cin_s, cout_s, g_s, n_s = symbol("C_in"), symbol("C_out"), symbol("g"), symbol("N")
    per_group = cin_s / g_s if groups != 1 else cin_s
    weights = k_formula * per_group * cout_s
    bind = {**k_bind, cin_s: c_in, cout_s: c_out, g_s: groups}
    p_formula = weights + cout_s if layer.bias else weights
    params = p_formula.xreplace(bind)
    steps.append(Step("params", p_formula, bind, params))

    outs = [symbol(f"{nm}_out") for nm in DIM_NAMES[n]]
    m_formula = weights * prod(outs) * (n_s if batch != 1 else ONE)
    m_bind = {**bind, **dict(zip(outs, out_sp)), n_s: batch}
    macs = m_formula.xreplace(m_bind)
    steps.append(Step("macs", m_formula, m_bind, macs))
    return Cost(kind, (c_out, *out_sp), params, ZERO, macs, tuple(steps))


@cost.register
def _deconv(layer: ConvTranspose, shape: Shape, batch: sp.Expr) -> Cost:
    n = layer.ndim
    kind = f"conv_transpose{n}d"
    c_in, spatial = _spatial(shape, n, kind)
    _check_divides(c_in, layer.groups, "input channels")
    _check_divides(layer.out, layer.groups, "output channels")
    k, s, p, op, d = (_spread(v, n, w) for v, w in (
        (layer.kernel, "kernel"), (layer.stride, "stride"), (layer.padding, "padding"),
        (layer.output_padding, "output_padding"), (layer.dilation, "dilation")))
    out_sp, steps = [], []
    for i, name in enumerate(DIM_NAMES[n]):
        if _known(sp.Ge(op[i], sp.Max(s[i], d[i]))):
            raise ShapeError(f"output_padding ({op[i]}) must be smaller than stride or "
                             f"dilation along {name}")
        inp = symbol(f"{name}_in")
        ks, ss, ps, ds, ops = (symbol(x) for x in ("k", "s", "p", "d", "o_p"))
        formula = (inp - 1) * ss - 2 * ps + ds * (ks - 1) + ops + 1
        bindings = {inp: spatial[i], ks: k[i], ss: s[i], ps: p[i], ds: d[i], ops: op[i]}
        value = formula.xreplace(bindings)
        if value.is_number and value < 1:
            raise ShapeError(f"padding {p[i]} leaves no output along {name}")
        out_sp.append(value)
        steps.append(Step(f"{name}_out", formula, bindings, value))
    cin_s, cout_s, g_s, n_s = symbol("C_in"), symbol("C_out"), symbol("g"), symbol("N")
    kprod = prod(k)
    weights = symbol("K") * cin_s * cout_s / g_s
    bind = {symbol("K"): kprod, cin_s: c_in, cout_s: layer.out, g_s: layer.groups}
    p_formula = weights + cout_s if layer.bias else weights
    params = p_formula.xreplace(bind)
    steps.append(Step("params", p_formula, bind, params))
    ins = [symbol(f"{nm}_in") for nm in DIM_NAMES[n]]
    # Each input element is scattered through the whole kernel: MACs scale with the input.
    m_formula = weights * prod(ins) * (n_s if batch != 1 else ONE)
    m_bind = {**bind, **dict(zip(ins, spatial)), n_s: batch}
    macs = m_formula.xreplace(m_bind)
    steps.append(Step("macs", m_formula, m_bind, macs))
    return Cost(kind, (layer.out, *out_sp), params, ZERO, macs, tuple(steps))


@cost.register
def _pool(layer: Pool, shape: Shape, batch: sp.Expr) -> Cost:
    n = layer.ndim
    kind = f"{layer.mode}_pool{n}d"
    c, spatial = _spatial(shape, n, kind)
    k = _spread(layer.kernel, n, "kernel")
    s = k if layer.stride is None else _spread(layer.stride, n, "stride")
    p = _spread(layer.padding, n, "padding")
    d = _spread(layer.dilation, n, "dilation")
    for i in range(n):
        if _known(sp.Gt(2 * p[i], k[i])):
            raise ShapeError(f"padding {p[i]} is more than half the kernel {k[i]} "
                             "(PyTorch refuses this)")
    scalar = {"k": not isinstance(layer.kernel, tuple),
              "s": not isinstance(layer.stride if layer.stride is not None else layer.kernel,
                                  tuple),
              "p": not isinstance(layer.padding, tuple), "d": not isinstance(layer.dilation,
                                                                             tuple)}
    rounding = sp.ceiling if layer.ceil_mode else sp.floor
    out_sp, steps = _window_steps(n, spatial, k, s, p, d, scalar, rounding)
    if layer.ceil_mode:
        # PyTorch drops a last window that would start in the right padding.
        out_sp = tuple(ceil_mode_size(o, spatial[i], s[i], p[i]) for i, o in enumerate(out_sp))
    return Cost(kind, (c, *out_sp), steps=tuple(steps))


@cost.register
def _adaptive(layer: AdaptiveAvgPool, shape: Shape, batch: sp.Expr) -> Cost:
    if len(shape) < 2:
        raise ShapeError(f"adaptive pooling needs spatial dimensions, got {fmt_shape(shape)}")
    n = len(shape) - 1
    out = _spread(layer.output, n, "output size")
    return Cost(f"adaptive_avg_pool{n}d", (shape[0], *out))


def _norm_params(affine: bool, count: sp.Expr, what: str) -> tuple[sp.Expr, tuple[Step, ...]]:
    if not affine:
        return ZERO, ()
    sym = symbol(what)
    formula = 2 * sym
    return 2 * count, (Step("params", formula, {sym: count}, 2 * count),)


@cost.register
def _bn(layer: BatchNorm, shape: Shape, batch: sp.Expr) -> Cost:
    if not shape:
        raise ShapeError("batch norm needs a channel dimension")
    c = shape[0]
    params, steps = _norm_params(layer.affine, c, "C")
    buffers = 2 * c if layer.track_running_stats else ZERO
    return Cost(f"batch_norm{max(1, len(shape) - 1)}d", shape, params, buffers, ZERO, steps)


@cost.register
def _ln(layer: LayerNorm, shape: Shape, batch: sp.Expr) -> Cost:
    if layer.channels:
        if len(shape) < 2:
            raise ShapeError(f"layer norm over channels needs spatial dimensions, got "
                             f"{fmt_shape(shape)}")
        params, steps = _norm_params(layer.affine, shape[0], "C")
        return Cost("layer_norm", shape, params, ZERO, ZERO, steps)
    dims = len(shape) if layer.dims is None else layer.dims
    if dims > len(shape):
        raise ShapeError(f"layer norm over the last {dims} dimensions of a "
                         f"{len(shape)}-D input {fmt_shape(shape)}")
    params, steps = _norm_params(layer.affine, prod(shape[len(shape) - dims:]), "D")
    return Cost("layer_norm", shape, params, ZERO, ZERO, steps)


@cost.register
def _in(layer: InstanceNorm, shape: Shape, batch: sp.Expr) -> Cost:
    if len(shape) < 2:
        raise ShapeError(f"instance norm needs spatial dimensions, got {fmt_shape(shape)}")
    c = shape[0]
    params, steps = _norm_params(layer.affine, c, "C")
    buffers = 2 * c if layer.track_running_stats else ZERO
    return Cost(f"instance_norm{len(shape) - 1}d", shape, params, buffers, ZERO, steps)


@cost.register
def _gn(layer: GroupNorm, shape: Shape, batch: sp.Expr) -> Cost:
    if not shape:
        raise ShapeError("group norm needs a channel dimension")
    _check_divides(shape[0], layer.groups, "channels")
    params, steps = _norm_params(layer.affine, shape[0], "C")
    return Cost("group_norm", shape, params, ZERO, ZERO, steps)


@cost.register
def _linear(layer: Linear, shape: Shape, batch: sp.Expr) -> Cost:
    if not shape:
        raise ShapeError("linear needs an input with at least one dimension")
    d_in = shape[-1]
    lead = prod(shape[:-1])
    i_s, o_s, n_s, r_s = symbol("D_in"), symbol("D_out"), symbol("N"), symbol("R")
    p_formula = i_s * o_s + o_s if layer.bias else i_s * o_s
    bind = {i_s: d_in, o_s: layer.out}
    params = p_formula.xreplace(bind)
    # Linear acts on the last dimension (as in PyTorch); leading ones multiply the work.
    m_formula = i_s * o_s * (r_s if lead != 1 else ONE) * (n_s if batch != 1 else ONE)
    m_bind = {**bind, r_s: lead, n_s: batch}
    macs = m_formula.xreplace(m_bind)
    steps = (Step("params", p_formula, bind, params), Step("macs", m_formula, m_bind, macs))
    return Cost("linear", (*shape[:-1], layer.out), params, ZERO, macs, steps)


@cost.register
def _flatten(layer: Flatten, shape: Shape, batch: sp.Expr) -> Cost:
    return Cost("flatten", (prod(shape),))


@cost.register
def _elementwise(layer: Elementwise, shape: Shape, batch: sp.Expr) -> Cost:
    return Cost(layer.kind, shape)


def name_sizes(c: Cost, shape: Shape, index: int) -> Cost:
    """``c`` with each spatial output size that grew long (symbolic strides: a term per
    earlier layer) replaced by a size named for row ``index`` (``H₃``), in the output
    shape, the counts and the worked steps, whose output-size step then reads as the
    name's definition. Exact: a name only stands for its definition."""
    out = c.output_shape
    if not 2 <= len(out) <= 4:
        return c
    names: dict[sp.Expr, sp.Expr] = {}
    for size, dim in zip(out[1:], DIM_NAMES[len(out) - 1]):
        if size not in names and size not in shape[1:]:
            new = named(size, dim, index)
            if new is not size:
                names[size] = new
    if not names:
        return c

    def swap(value):
        return value.xreplace(names) if isinstance(value, sp.Basic) else value

    steps = tuple(Step(s.quantity, s.formula, {k: swap(v) for k, v in s.bindings.items()},
                       swap(s.value)) for s in c.steps)
    return updated(c, output_shape=tuple(swap(d) for d in out), params=swap(c.params),
                   buffers=swap(c.buffers), macs=swap(c.macs), steps=steps)


@cost.register
def _upsample(layer: Upsample, shape: Shape, batch: sp.Expr) -> Cost:
    if len(shape) < 2:
        raise ShapeError(f"upsampling needs spatial dimensions, got {fmt_shape(shape)}")
    n = len(shape) - 1
    kind = f"upsample_{layer.mode}{n}d"
    if layer.size is not None:
        return Cost(kind, (shape[0], *_spread(layer.size, n, "size")))
    scale = _spread(layer.scale, n, "scale")
    steps, out = [], []
    for name, size, f in zip(DIM_NAMES[n], shape[1:], scale):
        inp, f_s = symbol(f"{name}_in"), symbol("f")
        formula = sp.floor(inp * f_s, evaluate=False)
        value = size * f if f.is_Integer else sp.floor(size * f)
        out.append(value)
        steps.append(Step(f"{name}_out", formula, {inp: size, f_s: f}, value))
    return Cost(kind, (shape[0], *out), steps=tuple(steps))


def pad_sides(padding, n: int) -> tuple[tuple[sp.Expr, sp.Expr], ...]:
    """(before, after) per spatial dimension, first to last, from ``pad``'s argument:
    one size for every side, one per dimension, or torch's ``F.pad`` order (last dimension
    first: left, right, top, bottom, ...)."""
    if not isinstance(padding, tuple):
        return ((padding, padding),) * n
    if len(padding) == n:
        return tuple((p, p) for p in padding)
    if len(padding) == 2 * n:
        pairs = [(padding[i], padding[i + 1]) for i in range(0, 2 * n, 2)]
        return tuple(reversed(pairs))
    raise ShapeError(f"pad has {len(padding)} sizes; a {n}-D input takes 1, {n} or {2 * n}")


@cost.register
def _pad(layer: Pad, shape: Shape, batch: sp.Expr) -> Cost:
    if len(shape) < 2:
        raise ShapeError(f"pad needs spatial dimensions, got {fmt_shape(shape)}")
    sides = pad_sides(layer.padding, len(shape) - 1)
    return Cost("pad", (shape[0], *(s + a + b for s, (a, b) in zip(shape[1:], sides))))


@cost.register
def _split(layer: ChannelSplit, shape: Shape, batch: sp.Expr) -> Cost:
    if not shape:
        raise ShapeError("split needs a channel dimension")
    c = shape[0]
    if (c / layer.parts).is_integer is False:
        raise ShapeError(f"{c} channels do not split into {layer.parts} equal parts")
    if (layer.index - layer.parts).is_nonnegative:
        raise ShapeError(f"part {layer.index} is past the last of {layer.parts} parts "
                         "(they count from 0)")
    return Cost("split", (c / layer.parts, *shape[1:]))


@cost.register
def _shuffle(layer: Shuffle, shape: Shape, batch: sp.Expr) -> Cost:
    if not shape:
        raise ShapeError("channel shuffle needs a channel dimension")
    _check_divides(shape[0], layer.groups, "channels")
    return Cost("channel_shuffle", shape)


@cost.register
def _layer_scale(layer: LayerScale, shape: Shape, batch: sp.Expr) -> Cost:
    if not shape:
        raise ShapeError("layer scale needs a channel dimension")
    c_s = symbol("C")
    return Cost("layer_scale", shape, shape[0], steps=(Step("params", c_s, {c_s: shape[0]},
                                                             shape[0]),))


def matmul_cost(output_shape: Shape, inner: sp.Expr, batch: sp.Expr,
                params: sp.Expr = ZERO) -> Cost:
    """A product of two tensors (``a @ b``, ``torch.bmm``): ``inner`` MACs per output element.

    Used for products that are not a linear layer on the input (``activation @ activation``
    in attention, ``weight @ x``); the output's first dimension is the batch.
    """
    r_s, k_s, n_s = symbol("R"), symbol("K"), symbol("N")
    formula = r_s * k_s * (n_s if batch != 1 else ONE)
    bind = {r_s: prod(output_shape), k_s: inner, n_s: batch}
    macs = formula.xreplace(bind)
    return Cost("matmul", output_shape, params, ZERO, macs, (Step("macs", formula, bind, macs),))
