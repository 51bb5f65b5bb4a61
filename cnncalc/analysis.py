"""Walk a network: per-layer rows and totals, numeric or symbolic.

Composite layers (``residual`` and the ResNet / MobileNetV2 blocks) are walked
here: their inner layers become rows one level deeper, followed by the
shortcut projection (if any) and the ``add`` that merges the branches.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from dataclasses import dataclass

import sympy as sp

from . import layers as L
from . import receptive, training
from .errors import CnnCalcError, ShapeError, SpecError
from .quantities import ONE, ZERO, Cost, Shape, Step, cost, fmt_shape, name_sizes, prod, updated
from .symbolic import input_symbols, named_in, same, witness

LAYOUTS = ("chw", "hwc")
A_IN, A_OUT = L.symbol("A_in"), L.symbol("A_out")  # activations in and out of a layer
QUANTITIES = ("params", "trainable_params", "non_trainable_params", "buffers", "macs",
              "activations")


@dataclass(frozen=True)
class Row:
    """One leaf layer. Shapes are in the analysis' layout, without the batch."""

    index: int
    name: str
    type: str
    depth: int
    input_shape: Shape
    output_shape: Shape
    params: sp.Expr
    trainable_params: sp.Expr
    non_trainable_params: sp.Expr
    buffers: sp.Expr
    macs: sp.Expr
    activations: sp.Expr
    memory_change: sp.Expr
    steps: tuple[Step, ...]
    # The graph, for the quantities that follow paths (training, receptive field):
    # the layer record (the Residual itself for an ``add``), and the rows feeding it
    # (-1 is the network's input).
    layer: object = None
    inputs: tuple[int, ...] = ()
    frozen: bool = False
    receptive_field: object = None  # a receptive.ReceptiveField, or None off the image
    # What autograd keeps for a row with no layer record to say it (training.Keep s;
    # from_torch's products of activations), or None: the record's rule
    keeps: tuple | None = None
    once: bool = False  # work on weights alone (from_torch): its tensors have no batch
    # Inputs that are new tensors made from their producer's output by calls with no row
    # (from_torch): (the input's place, the tensor's identity, its elements, batch included)
    fresh: tuple = ()
    # What calls on weights alone just before it keep (from_torch: Swin-V2's sigmoid of its
    # bias table), counted with the row; training.Keep extras
    also: tuple = ()
    # The elements of the tensor it outputs, batch included, where its shape is not that
    # tensor's (from_torch: the last product row of a call costed by its aten ops)
    out_elements: sp.Expr | None = None
    # A product's factors (from_torch): how many are activations and how many trainable
    # weights; the gradient of each costs the product's MACs. None: one of each at most
    # (an input gradient if the input needs one, a weight gradient if it has weights).
    factors: tuple[int, int] | None = None
    # A row run by torch.utils.checkpoint (from_torch): its segment's number (-1: none);
    # the segment's first row holds the rows whose outputs the segment keeps (its inputs)
    # and names its kind: "early" (backward runs it again until it has kept its last
    # tensor), "whole" (runs it all again), "reentrant" (runs it all again, and only if
    # one of its inputs needs a gradient)
    segment: int = -1
    holds: tuple[int, ...] = ()
    checkpoint: str = ""
    backward_input_macs: sp.Expr = ZERO
    backward_weight_macs: sp.Expr = ZERO
    backward_recompute_macs: sp.Expr = ZERO  # a checkpointed row's forward, run again
    # what a checkpointed row keeps while backward runs its segment again, until its own
    # backward (the training-step timeline holds it then)
    recompute_bytes: sp.Expr = ZERO
    saved_bytes: sp.Expr = ZERO
    param_bytes: sp.Expr = ZERO
    buffer_bytes: sp.Expr = ZERO
    grad_bytes: sp.Expr = ZERO
    optimizer_bytes: sp.Expr = ZERO
    training_bytes: sp.Expr = ZERO


@dataclass(frozen=True)
class Analysis:
    network: tuple
    input_shape: Shape
    output_shape: Shape
    batch: sp.Expr
    layout: str
    layers: tuple[Row, ...]
    total: dict
    memory_change: sp.Expr
    memory_step: Step
    name: str | None = None
    optimizer: str = "sgd"
    dtype: str = "float32"
    freeze: str | None = None
    freezing_saves: dict | None = None  # training.SAVINGS: unfrozen minus frozen
    notes: tuple[str, ...] = ()  # assumptions the figures rest on, said with them

    @property
    def symbols(self) -> list[sp.Symbol]:
        """Every free symbol of the analysis, sorted by name."""
        found: set[sp.Symbol] = set()
        for v in (*self.input_shape, self.batch, *self.total.values()):
            found |= getattr(v, "free_symbols", set())
        return sorted(input_symbols(found), key=lambda s: s.name)

    @property
    def named_sizes(self) -> list:
        """The sizes given names on the way (``H₃``, a ``symbolic.Size``, with its
        ``definition``), in row order: what a renderer lists under "where"."""
        return named_in(d for r in self.layers for d in r.output_shape)

    def subs(self, values: dict) -> Analysis:
        """The same network analysed again with some symbols given values."""
        return analyze(self.network, input=self.input_shape, batch=self.batch,
                       layout=self.layout, subs=values, name=self.name,
                       optimizer=self.optimizer, dtype=self.dtype, freeze=self.freeze)


# -- inputs --------------------------------------------------------------------------

_SIZE = re.compile(r"^(?:\d+|[A-Za-z_][A-Za-z_0-9]*)$")


def parse_size(text: str, what: str) -> sp.Expr:
    text = text.strip()
    if len(text) > 40:
        raise CnnCalcError(f"{what}: {text[:20]}… is absurdly large for a size")
    if not _SIZE.match(text):
        raise CnnCalcError(f"{what}: {text!r} is not a size (a whole number or a symbol "
                           "such as H)")
    if text.isdigit():
        value = int(text)
        if value < 1:
            raise CnnCalcError(f"{what}: sizes must be positive, got {value}")
        if value > L.MAX_VALUE:
            raise CnnCalcError(f"{what}: {value} is absurdly large (limit {L.MAX_VALUE:.0e})")
        return sp.Integer(value)
    return L.symbol(text)


def parse_shape(text: str, layout: str = "chw") -> Shape:
    """``"3x32x32"`` (C x H x W), ``"CxHxW"``, ``"64x64x128"`` with layout hwc, ``"784"``,
    ``"1x16Hx16W"``."""
    parts = re.split(r"\s*[x×,]\s*|\s+", text.strip())
    if "" in parts:
        raise CnnCalcError(f"--input: {text!r} has an empty size (write e.g. 3x32x32)")
    if len(parts) > 4:
        raise CnnCalcError(f"--input: {text!r} should be 1 to 4 sizes such as 3x32x32")
    shape = tuple(_input_size(p) for p in parts)
    return from_layout(shape, layout)


_MULTIPLE = re.compile(r"^(\d+)\*?([A-Za-z_][A-Za-z_0-9]*)$")


def _input_size(text: str) -> sp.Expr:
    """A size, or a multiple of a symbol (``16H``): U-Net's skips meet only at sizes that
    divide by 16, so ``1x16Hx16W`` is how its closed forms are asked for."""
    m = _MULTIPLE.match(text.strip())
    if m is None:
        return parse_size(text, "--input")
    return parse_size(m[1], "--input") * parse_size(m[2], "--input")


def from_layout(shape: Shape, layout: str) -> Shape:
    if layout == "hwc" and len(shape) > 1:
        return (shape[-1], *shape[:-1])
    return shape


def to_layout(shape: Shape, layout: str) -> Shape:
    if layout == "hwc" and len(shape) > 1:
        return (*shape[1:], shape[0])
    return shape


def parse_subs(text: str) -> dict[str, int]:
    """``"H=64,W=64"`` -> ``{"H": 64, "W": 64}``."""
    values: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, eq, value = part.partition("=")
        name, value = name.strip(), value.strip()
        if not eq or not re.match(r"^[A-Za-z_][A-Za-z_0-9]*$", name):
            raise CnnCalcError(f"--subs: {part!r} should look like H=64")
        if not value.isdigit():
            raise CnnCalcError(f"--subs: {name}={value} needs a whole number")
        values[name] = int(parse_size(value, f"--subs {name}"))
    return values


# -- blocks --------------------------------------------------------------------------

def _conv(out, k, s=ONE, p=ZERO, bias=False, groups=ONE):
    return L.Conv(2, out, k, s, p, ONE, groups, bias)


def expand(block, channels: sp.Expr) -> tuple:
    """A ResNet / MobileNetV2 block as the layers torchvision builds for it."""
    bn, relu = L.BatchNorm(), L.Elementwise("relu")
    if isinstance(block, L.BasicBlock):
        body = (_conv(block.out, 3, block.stride, 1, block.bias), bn, relu,
                _conv(block.out, 3, ONE, 1, block.bias), bn)
        project = block.stride != 1 or not same(channels, block.out)
        return (L.Residual(body, "conv" if project else "identity"), relu)
    if isinstance(block, L.Bottleneck):
        out = block.width * block.expansion
        body = (_conv(block.width, 1, bias=block.bias), bn, relu,
                _conv(block.width, 3, block.stride, 1, block.bias, block.groups), bn, relu,
                _conv(out, 1, bias=block.bias), bn)
        project = block.stride != 1 or not same(channels, out)
        return (L.Residual(body, "conv" if project else "identity"), relu)
    if isinstance(block, L.InvertedResidual):
        relu6 = L.Elementwise("relu6")
        hidden = channels * block.t
        expand_ = (_conv(hidden, 1), bn, relu6) if block.t != 1 else ()
        body = (*expand_, L.Conv(2, None, 3, block.stride, ONE, ONE, None, False), bn, relu6,
                _conv(block.out, 1), bn)
        if block.stride == 1 and same(channels, block.out):
            return (L.Residual(body, "identity"),)
        return body
    raise TypeError(block)


_BLOCK_STEMS = {L.BasicBlock: "basic", L.Bottleneck: "bottleneck",
                L.InvertedResidual: "inverted", L.Residual: "res", L.SqueezeExcite: "se"}


def _stem(layer) -> str:
    """The short name rows are numbered under: conv1, bn2, fc3, ..."""
    if isinstance(layer, L.Pool):
        return f"{layer.mode}pool"
    if isinstance(layer, L.AdaptiveAvgPool):
        return "gap" if layer.output == 1 else "pool"
    if isinstance(layer, L.Elementwise):
        return layer.kind
    if isinstance(layer, L.Merge):
        return layer.kind
    return {L.Conv: "conv", L.ConvTranspose: "deconv", L.BatchNorm: "bn", L.LayerNorm: "ln",
            L.InstanceNorm: "in", L.GroupNorm: "gn", L.Linear: "fc",
            L.Flatten: "flatten", L.Upsample: "up", L.Pad: "pad", L.ChannelSplit: "split",
            L.Shuffle: "shuffle", L.LayerScale: "scale"}[type(layer)]


def _strides(body: tuple, n: int) -> tuple[sp.Expr, ...]:
    """The total stride of a residual body, per spatial dimension (for its projection)."""
    total = [ONE] * n
    for layer in body:
        if isinstance(layer, (L.Conv, L.Pool)):
            s = layer.stride if layer.stride is not None else layer.kernel
            s = s if isinstance(s, tuple) else (s,) * n
            if len(s) == n:
                total = [a * b for a, b in zip(total, s)]
        elif isinstance(layer, (L.BasicBlock, L.Bottleneck, L.InvertedResidual)):
            total = [a * layer.stride for a in total]
        elif isinstance(layer, L.Residual):
            total = [a * b for a, b in zip(total, _strides(layer.body, n))]
        elif isinstance(layer, L.Branches):  # the branches agree, so the first says it
            total = [a * b for a, b in zip(total, _strides(layer.branches[0], n))]
    return tuple(total)


def _has_bn(body: tuple) -> bool:
    return any(isinstance(x, (L.BatchNorm, L.BasicBlock, L.Bottleneck, L.InvertedResidual))
               or (isinstance(x, L.Residual) and _has_bn(x.body))
               or (isinstance(x, L.Branches) and any(_has_bn(b) for b in x.branches))
               for x in body)


# -- the walk ------------------------------------------------------------------------

class _Walker:
    def __init__(self, batch: sp.Expr, layout: str, bias: bool):
        self.batch = batch
        self.layout = layout
        self.bias = bias
        self.rows: list[Row] = []
        self.current = -1  # the row whose output is the tensor flowing on (-1: the input)
        self.saved: dict[str, tuple[int, Shape]] = {}  # save(name): (row, shape)
        self.notes: list[str] = []  # assumptions the figures rest on

    def sequence(self, layers: tuple, shape: Shape, prefix: str, depth: int,
                 counts: dict[str, int] | None = None) -> Shape:
        """Rows for ``layers`` in order; ``counts`` numbers names within one container."""
        counts = {} if counts is None else counts

        def name_for(stem: str) -> str:
            counts[stem] = counts.get(stem, 0) + 1
            return f"{prefix}{stem}{counts[stem]}"

        for layer in layers:
            group = _BLOCK_STEMS.get(type(layer))
            if isinstance(layer, L.Save):
                self.saved[layer.name] = (self.current, shape)
            elif isinstance(layer, L.Ref):
                if layer.name not in self.saved:
                    raise ShapeError(f"no tensor was saved as {layer.name!r} before this",
                                     len(self.rows), layer.name, layer.span)
                self.current, shape = self.saved[layer.name]
            elif isinstance(layer, L.Branches):
                stem = layer.name or ("cat" if layer.merge == "cat" else "add")
                label = f"{prefix}{layer.name}" if layer.name else name_for(stem)
                shape = self.branches(layer, shape, label + ".", depth + 1)
            elif isinstance(layer, L.SqueezeExcite):
                shape = self.squeeze_excite(layer, shape, name_for(group) + ".", depth + 1)
            elif group is None:
                shape = self.leaf(layer, shape, name_for(_stem(layer)), depth)
            elif isinstance(layer, L.Residual):
                shape = self.residual(layer, shape, name_for(group) + ".", depth + 1)
            else:
                inner_prefix, inner_counts = name_for(group) + ".", {}
                for item in expand(layer, shape[0]):
                    if isinstance(item, L.Residual):
                        shape = self.residual(item, shape, inner_prefix, depth + 1,
                                              inner_counts)
                    else:
                        shape = self.sequence((item,), shape, inner_prefix, depth + 1,
                                              inner_counts)
        return shape

    def leaf(self, layer, shape: Shape, name: str, depth: int) -> Shape:
        if not self.bias and isinstance(layer, (L.Conv, L.ConvTranspose, L.Linear)):
            layer = dataclasses.replace(layer, bias=False)
        try:
            c = cost(layer, shape, self.batch)
        except ShapeError as exc:
            raise ShapeError(exc.message, len(self.rows), name) from None
        return self.add_row(c, name, shape, depth, layer)

    def add_row(self, c: Cost, name: str, shape: Shape, depth: int, layer=None,
                inputs: tuple[int, ...] | None = None, keeps: tuple | None = None,
                once: bool = False, fresh: tuple = (), also: tuple = (),
                out_elements: sp.Expr | None = None,
                factors: tuple[int, int] | None = None, segment: int = -1,
                holds: tuple[int, ...] = (), checkpoint: str = "") -> Shape:
        c = name_sizes(c, shape, len(self.rows))
        act_out = prod(c.output_shape) * self.batch
        change = _change((*shape, self.batch), (*c.output_shape, self.batch))
        steps = list(c.steps)
        if change != 0:
            shown = {A_IN: _product(to_layout(shape, self.layout), self.batch),
                     A_OUT: _product(to_layout(c.output_shape, self.layout), self.batch)}
            steps.append(Step("memory_change", _change_formula(), shown, change))
        self.rows.append(Row(
            index=len(self.rows), name=name, type=c.type, depth=depth,
            input_shape=to_layout(shape, self.layout),
            output_shape=to_layout(c.output_shape, self.layout),
            params=c.params, trainable_params=c.params, non_trainable_params=ZERO,
            buffers=c.buffers, macs=c.macs, activations=act_out,
            memory_change=change, steps=tuple(steps), layer=layer,
            inputs=(self.current,) if inputs is None else inputs, keeps=keeps, once=once,
            fresh=fresh, also=also, out_elements=out_elements, factors=factors,
            segment=segment, holds=holds, checkpoint=checkpoint))
        self.current = len(self.rows) - 1
        return c.output_shape

    def residual(self, res: L.Residual, shape: Shape, prefix: str, depth: int,
                 counts: dict[str, int] | None = None) -> Shape:
        source = self.current
        out = self.sequence(res.body, shape, prefix, depth, counts)
        body_end, shortcut_end = self.current, source
        changed = len(out) != len(shape) or not all(same(a, b) for a, b in zip(out, shape))
        mode = res.shortcut
        if mode == "identity" and changed:
            raise ShapeError(f"shortcut=identity, but the body turns {fmt_shape(shape)} into "
                             f"{fmt_shape(out)}", len(self.rows), prefix + "add")
        if mode == "conv" or (mode == "auto" and changed):
            if len(out) != len(shape):
                raise ShapeError(f"the body turns {fmt_shape(shape)} into {fmt_shape(out)}; "
                                 "no projection can match ranks (use shortcut=none)",
                                 len(self.rows), prefix + "shortcut")
            n = len(shape) - 1
            has_bn = _has_bn(res.body)
            if n == 0:
                projection: tuple = (L.Linear(out[0], bias=True),)
            else:
                strides = _strides(res.body, n)
                projection = (L.Conv(n, out[0], ONE, strides, ZERO, ONE, ONE, not has_bn),)
                projection += (L.BatchNorm(),) if has_bn else ()
            s_shape = shape
            self.current = source
            for layer in projection:
                s_shape = self.leaf(layer, s_shape, f"{prefix}shortcut.{_stem(layer)}", depth)
            shortcut_end = self.current
            if not all(same(a, b) for a, b in zip(out, s_shape)):
                raise ShapeError(f"the 1x1 projection gives {fmt_shape(s_shape)} but the body "
                                 f"gives {fmt_shape(out)} (use shortcut=none)",
                                 len(self.rows) - 1, prefix + "shortcut")
        if mode != "none":
            self.add_row(Cost("add", out), prefix + "add", out, depth, res,
                         (body_end, shortcut_end))
        else:
            self.current = body_end
        return out


    def branches(self, block: L.Branches, shape: Shape, prefix: str, depth: int) -> Shape:
        """Each branch from the tensor flowing in, then the row that concatenates (on
        channels) or adds them."""
        source = self.current
        ends, shapes = [], []
        for i, branch in enumerate(block.branches, 1):
            self.current = source
            shapes.append(self.sequence(branch, shape, f"{prefix}b{i}.", depth) if branch
                          else shape)
            ends.append(self.current)
        name = prefix + block.merge
        first = shapes[0]
        rest = slice(1, None) if block.merge == "cat" else slice(None)  # cat: channels differ
        for i, other in enumerate(shapes[1:], 2):
            pairs = list(zip(first[rest], other[rest]))
            if len(other) == len(first) and all(same(a, b) for a, b in pairs):
                continue
            what = "spatial sizes" if block.merge == "cat" else "shapes"
            verb = "concat" if block.merge == "cat" else "add"
            point = witness(sp.Add(*(a for a, _ in pairs)), sp.Add(*(b for _, b in pairs))) \
                if len(other) == len(first) else None
            if point is None or not all(a.subs(point) == b.subs(point)  # through H₃
                                        for a, b in pairs):
                raise ShapeError(f"{verb}: branch {i} gives {fmt_shape(other)} but branch 1 "
                                 f"gives {fmt_shape(first)} (their {what} must match)",
                                 len(self.rows), name, block.span)
            at = ", ".join(f"{k} = {v}" for k, v in point.items())
            self.notes.append(f"{name}: branch {i} gives {fmt_shape(other)} and branch 1 "
                              f"{fmt_shape(first)}, equal only for some sizes (such as {at}); "
                              "the figures hold for the sizes where they are")
        out = ((sp.Add(*(s[0] for s in shapes)), *first[1:]) if block.merge == "cat"
               else first)
        self.add_row(Cost(block.merge, out), name, shape, depth, L.Merge(block.merge),
                     tuple(ends))
        return out

    def squeeze_excite(self, se: L.SqueezeExcite, shape: Shape, prefix: str,
                       depth: int) -> Shape:
        """torchvision's SqueezeExcitation: pool, 1x1 conv, act, 1x1 conv, gate, x * gate."""
        source = self.current
        if len(shape) < 2:
            raise ShapeError(f"squeeze-and-excitation needs spatial dimensions, got "
                             f"{fmt_shape(shape)}", len(self.rows), prefix + "gap1")
        squeeze = se.squeeze if se.squeeze is not None else sp.floor(shape[0] / se.reduce)
        if squeeze.is_number and squeeze < 1:
            raise ShapeError(f"{shape[0]} channels // {se.reduce} leaves no squeeze "
                             "channels", len(self.rows), prefix + "conv1")
        n = len(shape) - 1
        body = (L.AdaptiveAvgPool(ONE), L.Conv(n, squeeze, ONE), L.Elementwise(se.act),
                L.Conv(n, shape[0], ONE), L.Elementwise(se.gate))
        self.sequence(body, shape, prefix, depth)
        self.add_row(Cost("mul", shape), prefix + "mul", shape, depth, L.Merge("mul"),
                     (source, self.current))
        return shape


def _change(before: Shape, after: Shape) -> sp.Expr:
    """``100*(A_out - A_in)/A_in`` for activations ``A = prod(sizes)``, as
    ``100*A_out/A_in - 100`` with the factors the two share cancelled by hand: no
    ``simplify`` (seconds per row on nested floors), and no evaluated ``1/size`` of a sum
    (sympy's power of a sum queries the sign of every term)."""
    if all(d.is_number for d in (*before, *after)):
        return 100 * prod(after) / prod(before) - 100
    top = Counter(f for d in after for f in _factors(d))
    bottom = Counter(f for d in before for f in _factors(d))
    common = top & bottom
    top, bottom = top - common, bottom - common
    if all(not f.is_Add for f in bottom):  # 1/H, 1/ceiling(H/4): cheap to evaluate
        return 100 * sp.Mul(*top.elements()) / sp.Mul(*bottom.elements()) - 100
    # 1/(floor(N/S**n) + 1) left unevaluated: Mul would rebuild and evaluate each power
    return sp.Mul(100, *top.elements(), *(sp.Pow(f, -1, evaluate=False)
                                          for f in bottom.elements()), evaluate=False) - 100


def _factors(product: sp.Expr) -> list[sp.Expr]:
    """``8*C*H**2`` -> ``[8, C, H, H]``: the factors of a product, powers spelled out."""
    out = []
    for factor in sp.Mul.make_args(product):
        base, exponent = factor.as_base_exp()
        out += [base] * int(exponent) if exponent.is_Integer and exponent > 0 else [factor]
    return out


def _change_formula() -> sp.Expr:
    """``100*(A_out - A_in)/A_in``, kept in the order a worked solution writes it."""
    return sp.Mul(100, A_OUT - A_IN, evaluate=False) / A_IN


def _product(shape: Shape, batch: sp.Expr) -> sp.Expr:
    """``C*H*W*N`` kept unevaluated, so a worked step shows the factors."""
    factors = [*shape, batch] if batch != 1 else list(shape)
    if len(factors) == 1:
        return factors[0]
    return sp.Mul(*factors, evaluate=False)


# -- the entry point -----------------------------------------------------------------

def _free_symbols(value) -> set[sp.Symbol]:
    """Every symbol in layer records, shapes and sizes (walked like ``_subs_layer``)."""
    if isinstance(value, sp.Basic):
        return set(value.free_symbols)
    if isinstance(value, tuple):
        return set().union(*(_free_symbols(x) for x in value))
    if dataclasses.is_dataclass(value):
        return _free_symbols(tuple(getattr(value, f.name) for f in dataclasses.fields(value)))
    return set()


def _subs_layer(layer, mapping: dict):
    if isinstance(layer, sp.Basic):
        return layer.xreplace(mapping)
    if isinstance(layer, tuple):
        return tuple(_subs_layer(x, mapping) for x in layer)
    if dataclasses.is_dataclass(layer):
        return dataclasses.replace(layer, **{
            f.name: _subs_layer(getattr(layer, f.name), mapping)
            for f in dataclasses.fields(layer)})
    return layer


def finish(rows, shape: Shape, batch: sp.Expr, layout: str, *, optimizer: str = "sgd",
           dtype: str = "float32", freeze=None,
           notes: list[str] | None = None) -> tuple[tuple[Row, ...], dict, str | None,
                                                    dict | None]:
    """Walked rows -> (rows with receptive fields, freezing and training quantities,
    totals, the freeze text, what freezing saves or None). ``shape`` is the network's
    input, channels first; the training pass adds its assumptions to ``notes``."""
    rows = tuple(rows)
    fields = receptive.fields(rows, shape, layout)
    rows = tuple(updated(r, receptive_field=f) for r, f in zip(rows, fields))
    freeze = training.freeze_text(freeze)
    frozen = training.frozen_rows(freeze, rows) if freeze is not None else frozenset()
    unfrozen = None
    if frozen:
        unfrozen = training.totals(training.annotate(rows, batch, frozenset(), optimizer,
                                                     dtype, layout))
    rows = training.annotate(rows, batch, frozen, optimizer, dtype, layout, notes)
    total = {q: sp.Add(*(getattr(r, q) for r in rows)) for q in QUANTITIES}
    total.update(training.totals(rows))
    total["receptive_field"], total["receptive_field_layer"] = receptive.total(rows)
    saves = training.savings(total, unfrozen) if unfrozen is not None else None
    return rows, total, freeze, saves


def analyze(network=None, input=None, batch=1, *, layout: str = "chw", bias: bool = True,
            subs: dict | None = None, model: str | None = None,
            name: str | None = None, optimizer: str = "sgd", dtype: str = "float32",
            freeze=None) -> Analysis:
    """Analyse a network: per-layer shapes, params, MACs, activations, memory change,
    the receptive field, and what a training step costs (``cnncalc.training``).

    ``network`` is layer-language text, a tuple of layer records, or None with
    ``model=`` naming a zoo network. ``input`` is a shape string (``"3xHxW"``)
    or a tuple in channels-first order; ``batch`` an int or a symbol name.
    Every quantity is a sympy expression. ``freeze`` (``"0-6"``, ``"conv"``, or a list
    of indices, ranges and words) makes layers non-trainable; ``optimizer`` (sgd,
    momentum, adam, adamw) and ``dtype`` (float32, float16, bfloat16) size the
    training memory.

    >>> a = analyze("conv(16, k=3, p=1)", input="3xHxW")
    >>> a.layers[0].output_shape, a.total["params"]
    ((16, H, W), 448)
    """
    if layout not in LAYOUTS:
        raise CnnCalcError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if dtype not in training.DTYPE_BYTES:
        raise CnnCalcError(f"dtype must be one of {', '.join(training.DTYPE_BYTES)}, "
                           f"got {dtype!r}")
    if optimizer not in training.OPTIMIZER_STATE:
        raise CnnCalcError(f"optimizer must be one of {', '.join(training.OPTIMIZER_STATE)}, "
                           f"got {optimizer!r}")
    if model is not None:
        from .zoo import get
        entry = get(model)
        network = entry.spec
        name = name or entry.name
        if input is None:
            input = to_layout(parse_shape(entry.input), layout)
    if network is None:
        raise CnnCalcError("give a network: layer-language text or model=NAME")
    if input is None:
        raise CnnCalcError("give an input shape such as 3x32x32")
    layers = L.parse_layers(network) if isinstance(network, str) else tuple(network)
    shape = parse_shape(input, layout) if isinstance(input, str) else from_layout(
        tuple(sp.sympify(d) for d in input), layout)
    if isinstance(batch, str):
        batch = parse_size(batch, "--batch")
    batch = sp.sympify(batch)
    if batch.is_number and (not batch.is_Integer or batch < 1):
        raise CnnCalcError(f"--batch must be a positive whole number, got {batch}")
    if subs:
        known = _free_symbols((layers, shape, batch))
        unknown = sorted(set(subs) - {s.name for s in known})
        if unknown:
            names = ", ".join(sorted(s.name for s in known)) or "none"
            raise CnnCalcError(f"--subs: {', '.join(unknown)} is not a symbol of this analysis "
                               f"(its symbols: {names})")
        mapping = {L.symbol(k): sp.Integer(v) for k, v in subs.items()}
        layers = _subs_layer(layers, mapping)
        shape = tuple(d.xreplace(mapping) for d in shape)
        batch = batch.xreplace(mapping)
    walker = _Walker(batch, layout, bias)
    try:
        out = walker.sequence(layers, shape, "", 0)
    except ShapeError as exc:
        if exc.span is None or not isinstance(network, str):
            raise
        start, end = exc.span
        raise SpecError(f"layer {exc.index} ({exc.name}): {exc.message}", network, start,
                        end - start) from None
    rows, total, freeze, saves = finish(walker.rows, shape, batch, layout,
                                        optimizer=optimizer, dtype=dtype, freeze=freeze,
                                        notes=walker.notes)
    overall = _change(shape, out)
    step = Step("memory_change", _change_formula(),
                {A_IN: _product(to_layout(shape, layout), ONE),
                 A_OUT: _product(to_layout(out, layout), ONE)}, overall)
    return Analysis(network=layers, input_shape=to_layout(shape, layout),
                    output_shape=to_layout(out, layout), batch=batch, layout=layout,
                    layers=rows, total=total, memory_change=overall, memory_step=step,
                    name=name, optimizer=optimizer, dtype=dtype, freeze=freeze,
                    freezing_saves=saves, notes=tuple(walker.notes))
