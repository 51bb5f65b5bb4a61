"""Layer records: one frozen dataclass per layer kind, built from syntax nodes.

Sizes are sympy expressions (integers or symbols with ``integer=True,
positive=True``); a size given once (``k=3``) is kept as a scalar and spread
over the spatial dimensions when the input's rank is known. Which names are
layers, their keys, aliases and defaults live here, in :data:`FORMS`.

Forms that hold layers (:data:`CONTAINERS`) are built here too: ``residual`` (a body
and a shortcut), ``concat`` and ``add`` (parallel :class:`Branches`), with ``save``
and the names it saves (:class:`Save`, :class:`Ref`) for skips between any two points.
``se`` and the ResNet / MobileNetV2 blocks are single records that the walk in
``analysis.py`` expands into the layers torchvision builds for them.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import sympy as sp

from . import spec as ast
from .errors import SpecError

MAX_VALUE = 10**12  # larger sizes are typos, not networks
MAX_LAYERS = 10_000  # after repetition; keeps every analysis well under a second per layer

Size = sp.Expr
Sizes = Size | tuple[Size, ...]


def symbol(name: str) -> sp.Symbol:
    """The one symbol used for a dimension name everywhere: a positive integer."""
    return sp.Symbol(name, integer=True, positive=True)


# -- the records -------------------------------------------------------------------

@dataclass(frozen=True)
class Conv:
    """``ndim``-D convolution. ``groups=None`` is depthwise: one group per input channel and
    ``out=None`` output channels = input channels x ``multiplier``."""

    ndim: int
    out: Size | None
    kernel: Sizes
    stride: Sizes = sp.Integer(1)
    padding: Sizes | str = sp.Integer(0)
    dilation: Sizes = sp.Integer(1)
    groups: Size | None = sp.Integer(1)
    bias: bool = True
    multiplier: Size = sp.Integer(1)


@dataclass(frozen=True)
class ConvTranspose:
    ndim: int
    out: Size
    kernel: Sizes
    stride: Sizes = sp.Integer(1)
    padding: Sizes = sp.Integer(0)
    output_padding: Sizes = sp.Integer(0)
    dilation: Sizes = sp.Integer(1)
    groups: Size = sp.Integer(1)
    bias: bool = True


@dataclass(frozen=True)
class Pool:
    """Max or average pooling; ``stride=None`` means the kernel size, as in PyTorch."""

    mode: str  # "max" | "avg"
    ndim: int
    kernel: Sizes
    stride: Sizes | None = None
    padding: Sizes = sp.Integer(0)
    dilation: Sizes = sp.Integer(1)
    ceil_mode: bool = False


@dataclass(frozen=True)
class AdaptiveAvgPool:
    """Average pooling to a fixed output size; ``gap`` is output size 1."""

    output: Sizes = sp.Integer(1)


@dataclass(frozen=True)
class BatchNorm:
    affine: bool = True
    track_running_stats: bool = True


@dataclass(frozen=True)
class LayerNorm:
    """Normalizes over the last ``dims`` dimensions (None: all but the batch), or with
    ``channels`` over the channels at each position (ConvNeXt's ``LayerNorm2d``)."""

    dims: int | None = None
    affine: bool = True
    channels: bool = False


@dataclass(frozen=True)
class InstanceNorm:
    affine: bool = False
    track_running_stats: bool = False


@dataclass(frozen=True)
class GroupNorm:
    groups: Size
    affine: bool = True


@dataclass(frozen=True)
class Linear:
    out: Size
    bias: bool = True


@dataclass(frozen=True)
class Flatten:
    pass


@dataclass(frozen=True)
class Elementwise:
    """A parameter-free layer that keeps the shape: activations, dropout, softmax, identity."""

    kind: str
    p: Fraction | None = None  # dropout probability


@dataclass(frozen=True)
class Residual:
    """``body`` plus a shortcut: ``auto`` projects (1x1 conv, + bn if the body has one) when
    the shape changes, ``identity`` never does, ``conv`` always does, ``none`` adds nothing."""

    body: tuple[Any, ...]
    shortcut: str = "auto"


@dataclass(frozen=True)
class BasicBlock:
    """torchvision ``BasicBlock``: 3x3 conv, bn, relu, 3x3 conv, bn, + shortcut, relu."""

    out: Size
    stride: Size = sp.Integer(1)
    bias: bool = False


@dataclass(frozen=True)
class Bottleneck:
    """torchvision ``Bottleneck`` (v1.5, stride on the 3x3): 1x1, 3x3, 1x1 to width*expansion."""

    width: Size
    stride: Size = sp.Integer(1)
    expansion: Size = sp.Integer(4)
    bias: bool = False
    groups: Size = sp.Integer(1)  # of the 3x3 conv: 32 in ResNeXt-50 32x4d


@dataclass(frozen=True)
class InvertedResidual:
    """torchvision MobileNetV2 ``InvertedResidual``: expand 1x1 (t), depthwise 3x3, project 1x1."""

    out: Size
    t: Size = sp.Integer(6)
    stride: Size = sp.Integer(1)


@dataclass(frozen=True)
class Branches:
    """Parallel branches from the tensor flowing in, merged by channel concatenation
    (``merge="cat"``) or addition (``"add"``). A branch is a tuple of layers; ``()`` is
    the tensor itself (``identity``), and a branch may start with a :class:`Ref` to a
    saved tensor. ``span`` is where it was written, for errors."""

    merge: str
    branches: tuple[tuple[Any, ...], ...]
    name: str | None = None
    span: tuple[int, int] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Save:
    """Names the tensor flowing here, for a later :class:`Ref` (U-Net, FPN skips)."""

    name: str


@dataclass(frozen=True)
class Ref:
    """The tensor saved under ``name``: the flow continues from it."""

    name: str
    span: tuple[int, int] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class SqueezeExcite:
    """torchvision ``SqueezeExcitation``: global average pool, 1x1 conv to ``squeeze``
    channels (or channels // ``reduce``), ``act``, 1x1 conv back, ``gate``, and the input
    multiplied by the gate."""

    squeeze: Size | None = None
    reduce: Size | None = None
    act: str = "relu"
    gate: str = "sigmoid"


@dataclass(frozen=True)
class Merge:
    """The row where branches meet: ``cat`` (channels), ``add`` or ``mul`` (a gate)."""

    kind: str


@dataclass(frozen=True)
class Upsample:
    """Nearest or bilinear upsampling by ``scale`` (output ``floor(size * scale)``) or to
    ``size``."""

    scale: Sizes | None = sp.Integer(2)
    size: Sizes | None = None
    mode: str = "nearest"


@dataclass(frozen=True)
class Pad:
    """Zero padding: ``padding`` per spatial dimension as (before, after) pairs, or one size
    for every side."""

    padding: Any = sp.Integer(1)


@dataclass(frozen=True)
class ChannelSplit:
    """Part ``index`` (from 0) of the channels cut into ``parts`` equal chunks
    (``torch.chunk``): a view, no copy."""

    parts: Size
    index: Size


@dataclass(frozen=True)
class Shuffle:
    """ShuffleNet's channel shuffle over ``groups``: a reordering copy (with one group, or
    one channel a group, a view of a contiguous input)."""

    groups: Size


@dataclass(frozen=True)
class LayerScale:
    """A learned per-channel scale (ConvNeXt's layer scale): one parameter a channel."""


Layer = (Conv | ConvTranspose | Pool | AdaptiveAvgPool | BatchNorm | LayerNorm | InstanceNorm
         | GroupNorm | Linear | Flatten | Elementwise | Residual | BasicBlock | Bottleneck
         | InvertedResidual | Branches | Save | Ref | SqueezeExcite | Merge | Upsample | Pad
         | ChannelSplit | Shuffle | LayerScale)


# -- values ------------------------------------------------------------------------

class _Values:
    """Turns value nodes into sympy values, raising errors that point into the source."""

    def __init__(self, source: str):
        self.source = source

    def error(self, message: str, node: ast.Node | ast.Arg) -> SpecError:
        if isinstance(node, ast.Arg):
            return SpecError(message, self.source, node.key_pos,
                             node.value.end - node.key_pos)
        return SpecError(message, self.source, node.pos, node.end - node.pos)

    def value(self, node: ast.Node) -> Any:
        if isinstance(node, ast.Num):
            if abs(node.value) > MAX_VALUE:
                raise self.error(f"{node.text} is absurdly large (limit {MAX_VALUE:.0e})", node)
            return sp.Rational(node.value.numerator, node.value.denominator)
        if isinstance(node, ast.Name):
            low = node.id.lower()
            if low in ("true", "false"):
                return low == "true"
            return symbol(node.id)
        if isinstance(node, ast.Str):
            return node.value
        if isinstance(node, ast.Tuple):
            return tuple(self.expr(item) for item in node.items)
        if isinstance(node, ast.Neg):
            return -self.expr(node.operand)
        if isinstance(node, ast.BinOp):
            left, right = self.expr(node.left), self.expr(node.right)
            if node.op == "+":
                result = left + right
            elif node.op == "-":
                result = left - right
            elif node.op == "*":
                result = left * right
            elif node.op == "/" or node.op == "//":
                if right == 0:
                    raise self.error("division by zero", node)
                result = left / right if node.op == "/" else sp.floor(left / right)
            else:  # "**"
                if not (right.is_Integer and 0 <= right <= 64):
                    raise self.error("exponents must be whole numbers from 0 to 64", node.right)
                result = left**right
            if result.is_number and abs(result) > MAX_VALUE:
                raise self.error(f"value {_short(result)} is absurdly large "
                                 f"(limit {MAX_VALUE:.0e})", node)
            return result
        if isinstance(node, ast.Call):
            raise self.error(f"expected a value, found the layer {node.name}(...)", node)
        raise self.error("expected a value", node)

    def expr(self, node: ast.Node) -> sp.Expr:
        v = self.value(node)
        if not isinstance(v, sp.Expr):
            kind = "a pair" if isinstance(v, tuple) else repr(v)
            raise self.error(f"expected a number or symbol, found {kind}", node)
        return v

    def size(self, node: ast.Node, minimum: int = 1) -> sp.Expr:
        v = self.expr(node)
        if v.is_number:
            shown = node.text if isinstance(node, ast.Num) else _short(v)
            if not v.is_Integer:
                raise self.error(f"expected a whole number, found {shown}", node)
            if v < minimum:
                what = "positive" if minimum == 1 else "zero or more"
                raise self.error(f"expected a {what} whole number, found {shown}", node)
        return v

    def sizes(self, node: ast.Node, minimum: int = 1) -> Sizes:
        if isinstance(node, ast.Tuple):
            if len(node.items) > 3:
                raise self.error("at most 3 spatial sizes (D, H, W)", node)
            return tuple(self.size(item, minimum) for item in node.items)
        return self.size(node, minimum)

    def boolean(self, node: ast.Node) -> bool:
        v = self.value(node)
        if isinstance(v, bool):
            return v
        if isinstance(v, sp.Expr) and v in (0, 1):
            return bool(v)
        raise self.error("expected true or false", node)

    def word(self, node: ast.Node, choices: tuple[str, ...]) -> str:
        text = node.id if isinstance(node, ast.Name) else (
            node.value if isinstance(node, ast.Str) else None)
        if text is None or text.lower() not in choices:
            raise self.error(f"expected one of {', '.join(choices)}", node)
        return text.lower()


def _short(value) -> str:
    """A number for a one-line message: long ones as 1.84e+19."""
    text = str(value)
    if len(text) <= 24:
        return text
    try:
        return f"{float(value):.3g}"
    except (OverflowError, TypeError, ValueError):
        return text[:20] + "…"


# -- the forms of the language -------------------------------------------------------

REQUIRED = object()


@dataclass(frozen=True)
class Param:
    name: str
    convert: Callable[[_Values, ast.Node], Any]
    default: Any = REQUIRED
    aliases: tuple[str, ...] = ()


def _size(v, n):
    return v.size(n)


def _sizes(v, n):
    return v.sizes(n)


def _nonneg(v, n):
    return v.sizes(n, minimum=0)


def _bool(v, n):
    return v.boolean(n)


def _padding(v, n):
    if isinstance(n, (ast.Name, ast.Str)):
        text = n.id if isinstance(n, ast.Name) else n.value
        word = text.lower()
        if word in ("same", "valid"):
            return word
        # A symbol (p=P) is a size; a string, or a name that reads like a typo, is not.
        hint = difflib.get_close_matches(word, ("same", "valid"), n=1, cutoff=0.6)
        if isinstance(n, ast.Str) or (hint and len(word) > 2):
            tip = f" (did you mean {hint[0]}?)" if hint else ""
            raise v.error(f"unknown padding {text!r}{tip}: give a size, same or valid", n)
    return v.sizes(n, minimum=0)


def _prob(v, n):
    p = v.expr(n)
    if not (p.is_number and 0 <= p <= 1):
        raise v.error(f"expected a probability between 0 and 1, found {p}", n)
    return Fraction(str(p))


def _small_int(v, n):
    d = v.expr(n)
    if not (d.is_Integer and 1 <= d <= 3):
        raise v.error("expected 1, 2 or 3 dimensions", n)
    return int(d)


def _shortcut(v, n):
    return v.word(n, ("auto", "identity", "conv", "none"))


def _index(v, n):
    return v.size(n, minimum=0)


def _scale(v, n):
    """An upsampling factor: a positive number (2, 1.5), or one per spatial dimension."""
    items = n.items if isinstance(n, ast.Tuple) else (n,)
    if len(items) > 3:
        raise v.error("at most 3 spatial sizes (D, H, W)", n)
    out = []
    for item in items:
        f = v.expr(item)
        if f.is_number and not f > 0:
            raise v.error(f"expected a positive scale factor, found {_short(f)}", item)
        out.append(f)
    return tuple(out) if isinstance(n, ast.Tuple) else out[0]


def _pad_sizes(v, n):
    """One size for every side, one per spatial dimension, or torch's F.pad pairs."""
    if isinstance(n, ast.Tuple):
        if len(n.items) > 6:
            raise v.error("at most 6 padding sizes (torch's order: left, right, top, "
                          "bottom, front, back)", n)
        return tuple(v.size(item, minimum=0) for item in n.items)
    return v.size(n, minimum=0)


def _mode(v, n):
    return v.word(n, ("nearest", "bilinear"))


def _act(v, n):
    word = v.word(n, ("relu", "relu6", "silu", "swish", "gelu", "hardswish"))
    return "silu" if word == "swish" else word


def _gate(v, n):
    return v.word(n, ("sigmoid", "hardsigmoid"))


def _name(v, n):
    if not isinstance(n, ast.Name):
        raise v.error("expected a name such as inception3a", n)
    return n.id


def _upsample(a):
    if a["size"] is not None and a["scale"] is not None:
        raise ValueError("give scale or size, not both")
    scale = None if a["size"] is not None else (
        sp.Integer(2) if a["scale"] is None else a["scale"])
    return Upsample(scale, a["size"], a["mode"])


def _se(a):
    if (a["squeeze"] is None) == (a["reduce"] is None):
        raise ValueError("give squeeze (its channels) or reduce=r (channels // r), one of them")
    return SqueezeExcite(a["squeeze"], a["reduce"], a["act"], a["gate"])


ONE, ZERO = sp.Integer(1), sp.Integer(0)
_K = ("kernel_size", "kernel")
_S = ("stride",)
_P = ("padding", "pad")
_D = ("dilation",)
_OUT = ("out_channels", "out_features", "channels")


def _conv_params(default_k: Any) -> tuple[Param, ...]:
    return (Param("out", _size, aliases=_OUT), Param("k", _sizes, default_k, _K),
            Param("s", _sizes, ONE, _S), Param("p", _padding, ZERO, _P),
            Param("d", _sizes, ONE, _D), Param("groups", _size, ONE, ("g",)),
            Param("bias", _bool, True))


def _conv(ndim):
    return lambda a: Conv(ndim, a["out"], a["k"], a["s"], a["p"], a["d"], a["groups"], a["bias"])


def _deconv(ndim):
    return lambda a: ConvTranspose(ndim, a["out"], a["k"], a["s"], a["p"], a["output_padding"],
                                   a["d"], a["groups"], a["bias"])


_DECONV_PARAMS = (Param("out", _size, aliases=_OUT), Param("k", _sizes, REQUIRED, _K),
                  Param("s", _sizes, ONE, _S), Param("p", _nonneg, ZERO, _P),
                  Param("output_padding", _nonneg, ZERO, ("op",)),
                  Param("groups", _size, ONE, ("g",)), Param("bias", _bool, True),
                  Param("d", _sizes, ONE, _D))

_POOL_PARAMS = (Param("k", _sizes, REQUIRED, _K), Param("s", _sizes, None, _S),
                Param("p", _nonneg, ZERO, _P), Param("d", _sizes, ONE, _D),
                Param("ceil_mode", _bool, False, ("ceil",)))


def _pool(mode, ndim):
    def build(a):
        if mode == "avg" and a["d"] != ONE:
            raise ValueError("average pooling has no dilation")
        return Pool(mode, ndim, a["k"], a["s"], a["p"], a["d"], a["ceil_mode"])
    return build


def _elementwise(kind):
    return (), lambda a: Elementwise(kind)


FORMS: dict[str, tuple[tuple[Param, ...], Callable[[dict], Any]]] = {
    "conv1d": (_conv_params(REQUIRED), _conv(1)),
    "conv": (_conv_params(sp.Integer(3)), _conv(2)),
    "conv3d": (_conv_params(REQUIRED), _conv(3)),
    "dwconv": ((Param("k", _sizes, sp.Integer(3), _K), Param("s", _sizes, ONE, _S),
                Param("p", _padding, ONE, _P), Param("d", _sizes, ONE, _D),
                Param("bias", _bool, True), Param("multiplier", _size, ONE, ("m",))),
               lambda a: Conv(2, None, a["k"], a["s"], a["p"], a["d"], None, a["bias"],
                              a["multiplier"])),
    "deconv1d": (_DECONV_PARAMS, _deconv(1)),
    "deconv": (_DECONV_PARAMS, _deconv(2)),
    "deconv3d": (_DECONV_PARAMS, _deconv(3)),
    "maxpool1d": (_POOL_PARAMS, _pool("max", 1)),
    "maxpool": (_POOL_PARAMS, _pool("max", 2)),
    "maxpool3d": (_POOL_PARAMS, _pool("max", 3)),
    "avgpool1d": (_POOL_PARAMS, _pool("avg", 1)),
    "avgpool": (_POOL_PARAMS, _pool("avg", 2)),
    "avgpool3d": (_POOL_PARAMS, _pool("avg", 3)),
    "gap": ((), lambda a: AdaptiveAvgPool(ONE)),
    "adaptiveavgpool": ((Param("output", _sizes, ONE, ("output_size", "size")),),
                        lambda a: AdaptiveAvgPool(a["output"])),
    "bn": ((Param("affine", _bool, True), Param("track_running_stats", _bool, True,
                                                 ("track",))),
           lambda a: BatchNorm(a["affine"], a["track_running_stats"])),
    "ln": ((Param("dims", _small_int, None),
            Param("affine", _bool, True, ("elementwise_affine",)),
            Param("channels", _bool, False, ("over_channels",))),
           lambda a: _layer_norm(a["dims"], a["affine"], a["channels"])),
    "ln2d": ((Param("affine", _bool, True, ("elementwise_affine",)),),
             lambda a: LayerNorm(None, a["affine"], True)),
    "in": ((Param("affine", _bool, False), Param("track_running_stats", _bool, False,
                                                  ("track",))),
           lambda a: InstanceNorm(a["affine"], a["track_running_stats"])),
    "gn": ((Param("groups", _size, aliases=("num_groups",)), Param("affine", _bool, True)),
           lambda a: GroupNorm(a["groups"], a["affine"])),
    "fc": ((Param("out", _size, aliases=_OUT), Param("bias", _bool, True)),
           lambda a: Linear(a["out"], a["bias"])),
    "flatten": ((), lambda a: Flatten()),
    "dropout": ((Param("p", _prob, Fraction(1, 2)),), lambda a: Elementwise("dropout", a["p"])),
    "droppath": ((Param("p", _prob, REQUIRED),),
                 lambda a: Elementwise("stochastic_depth", a["p"])),
    "upsample": ((Param("scale", _scale, None, ("scale_factor",)),
                  Param("size", _sizes, None, ("output_size",)),
                  Param("mode", _mode, "nearest")), _upsample),
    "pad": ((Param("p", _pad_sizes, ONE, _P),), lambda a: Pad(a["p"])),
    "split": ((Param("parts", _size, aliases=("chunks",)), Param("index", _index)),
              lambda a: _split(a["parts"], a["index"])),
    "shuffle": ((Param("groups", _size, sp.Integer(2), ("g",)),),
                lambda a: Shuffle(a["groups"])),
    "layerscale": ((), lambda a: LayerScale()),
    "se": ((Param("squeeze", _size, None, ("squeeze_channels",)),
            Param("reduce", _size, None, ("r", "reduction")), Param("act", _act, "relu"),
            Param("gate", _gate, "sigmoid", ("scale_activation",))), _se),
    "basic": ((Param("out", _size, aliases=_OUT), Param("s", _size, ONE, _S),
               Param("bias", _bool, False)),
              lambda a: BasicBlock(a["out"], a["s"], a["bias"])),
    "bottleneck": ((Param("width", _size, aliases=("planes",)), Param("s", _size, ONE, _S),
                    Param("expansion", _size, sp.Integer(4)), Param("bias", _bool, False),
                    Param("groups", _size, ONE, ("g",))),
                   lambda a: Bottleneck(a["width"], a["s"], a["expansion"], a["bias"],
                                        a["groups"])),
    "inverted": ((Param("out", _size, aliases=_OUT), Param("t", _size, sp.Integer(6),
                                                           ("expand_ratio",)),
                  Param("s", _size, ONE, _S)),
                 lambda a: InvertedResidual(a["out"], a["t"], a["s"])),
}
for _kind in ("relu", "relu6", "tanh", "sigmoid", "gelu", "silu", "elu", "leakyrelu",
              "hardswish", "hardsigmoid", "mish", "softmax", "identity"):
    FORMS[_kind] = _elementwise(_kind)

ALIASES = {
    "conv2d": "conv", "depthwise": "dwconv", "dwconv2d": "dwconv",
    "convtranspose2d": "deconv", "conv_transpose2d": "deconv", "deconv2d": "deconv",
    "convtranspose1d": "deconv1d", "conv_transpose1d": "deconv1d",
    "convtranspose3d": "deconv3d", "conv_transpose3d": "deconv3d",
    "maxpool2d": "maxpool", "max_pool2d": "maxpool", "max_pool1d": "maxpool1d",
    "max_pool3d": "maxpool3d", "avgpool2d": "avgpool", "avg_pool2d": "avgpool",
    "avg_pool1d": "avgpool1d", "avg_pool3d": "avgpool3d",
    "globalavgpool": "gap", "global_avg_pool": "gap",
    "adaptiveavgpool2d": "adaptiveavgpool", "adaptive_avg_pool2d": "adaptiveavgpool",
    "aap": "adaptiveavgpool",
    "batchnorm": "bn", "batchnorm1d": "bn", "batchnorm2d": "bn", "batchnorm3d": "bn",
    "batch_norm": "bn", "layernorm": "ln", "layer_norm": "ln",
    "instancenorm": "in", "instancenorm2d": "in", "instance_norm": "in",
    "groupnorm": "gn", "group_norm": "gn", "linear": "fc", "dense": "fc",
    "swish": "silu", "leaky_relu": "leakyrelu", "hardswish": "hardswish",
    "hard_swish": "hardswish", "hard_sigmoid": "hardsigmoid",
    "layernorm2d": "ln2d", "stochastic_depth": "droppath", "stochasticdepth": "droppath",
    "drop_path": "droppath", "interpolate": "upsample", "zeropad": "pad",
    "zeropad2d": "pad", "chunk": "split", "channel_shuffle": "shuffle",
    "layer_scale": "layerscale", "squeeze_excitation": "se", "squeezeexcitation": "se",
    "cat": "concat",
}
# Forms that hold layers: their arguments are branches, not values.
CONTAINERS = ("residual", "concat", "add")
LAYER_NAMES = sorted(set(FORMS) | set(ALIASES) | set(CONTAINERS) | {"save"})


def _layer_norm(dims, affine, channels):
    if channels and dims is not None:
        raise ValueError("give dims or channels=true, not both")
    return LayerNorm(dims, affine, channels)


def _split(parts, index):
    if index.is_number and parts.is_number and index >= parts:
        raise ValueError(f"index {index} is past the last of {parts} parts (they count "
                         "from 0)")
    return ChannelSplit(parts, index)


# -- building ------------------------------------------------------------------------

class _Builder:
    def __init__(self, source: str):
        self.v = _Values(source)
        self.count = 0
        self.saved: set[str] = set()  # tensor names saved so far, in reading order

    def items(self, node: ast.Node) -> list[Layer]:
        """One item of a layer list: a layer, or ``layer * N`` repeated."""
        if isinstance(node, ast.BinOp) and node.op == "*":
            layer_node, count_node = node.left, node.right
            if isinstance(layer_node, (ast.Num, ast.BinOp)) and isinstance(
                count_node, (ast.Call, ast.Name)
            ):
                layer_node, count_node = count_node, layer_node
            count = self.v.expr(count_node)
            if not count.is_Integer or count < 1:
                raise self.v.error("a repeat count must be a positive whole number", count_node)
            once = self.items(layer_node)
            if self.count + len(once) * (int(count) - 1) > MAX_LAYERS:
                raise self.v.error(f"more than {MAX_LAYERS:,} layers after repetition", node)
            self.count += len(once) * (int(count) - 1)
            return once * int(count)
        return [self.layer(node)]

    def layer(self, node: ast.Node) -> Layer:
        if isinstance(node, ast.Name):
            name, args = node.id, ()
            if name in self.saved:
                return Ref(name, (node.pos, node.end))
        elif isinstance(node, ast.Call):
            name, args = node.name, node.args
        else:
            raise self.v.error("expected a layer such as conv(16, k=3) or relu", node)
        self.count += 1
        if self.count > MAX_LAYERS:
            raise self.v.error(f"more than {MAX_LAYERS:,} layers", node)
        key = name.lower()
        key = ALIASES.get(key, key)
        name_node = ast.Name(node.pos, node.pos + len(name), name)
        if key == "residual":
            return self.residual(name_node, args)
        if key in ("concat", "add"):
            return self.branches(key, node, name_node, args)
        if key == "save":
            return self.save(name_node, args)
        if key not in FORMS:
            hint = difflib.get_close_matches(key, [*LAYER_NAMES, *self.saved], n=1)
            tip = f" (did you mean {hint[0]}?)" if hint else ""
            raise self.v.error(f"unknown layer {name!r}{tip}", name_node)
        params, build = FORMS[key]
        bound = self.bind(name, name_node, params, args)
        try:
            return build(bound)
        except ValueError as exc:
            raise self.v.error(f"{name}: {exc}", node) from None

    def bind(self, name: str, name_node: ast.Node, params: tuple[Param, ...],
             args: tuple[ast.Arg, ...]) -> dict[str, Any]:
        by_key = {}
        for p in params:
            for k in (p.name, *p.aliases):
                by_key[k.lower()] = p
        bound: dict[str, Any] = {}
        positional = 0
        for arg in args:
            if not params:
                raise self.v.error(f"{name} takes no arguments", arg if arg.key else arg.value)
            if arg.key is None:
                if positional >= len(params):
                    raise self.v.error(f"{name} takes at most {len(params)} positional "
                                       f"argument{'s' if len(params) != 1 else ''}", arg.value)
                p = params[positional]
                positional += 1
            else:
                p = by_key.get(arg.key.lower())
                if p is None:
                    keys = ", ".join(q.name for q in params) or "no arguments"
                    hint = difflib.get_close_matches(arg.key.lower(), list(by_key), n=1)
                    tip = f"did you mean {hint[0]}? " if hint else ""
                    raise self.v.error(f"unknown key {arg.key!r} for {name} ({tip}it takes: "
                                       f"{keys})", arg)
            if p.name in bound:
                raise self.v.error(f"{name}: {p.name} is given twice", arg)
            bound[p.name] = p.convert(self.v, arg.value)
        for p in params:
            if p.name not in bound:
                if p.default is REQUIRED:
                    raise self.v.error(f"{name} needs {p.name!r}", name_node)
                bound[p.name] = p.default
        return bound

    def residual(self, name_node: ast.Node, args: tuple[ast.Arg, ...]) -> Residual:
        body: list[Layer] = []
        shortcut = "auto"
        for arg in args:
            if arg.key is None:
                body.extend(self.items(arg.value))
            elif arg.key.lower() == "shortcut":
                shortcut = _shortcut(self.v, arg.value)
            else:
                raise self.v.error(f"unknown key {arg.key!r} for residual (it takes layers "
                                   "and shortcut=auto|identity|conv|none)", arg)
        if not body:
            raise self.v.error("residual needs at least one layer inside", name_node)
        return Residual(tuple(body), shortcut)

    def branches(self, merge: str, node: ast.Node, name_node: ast.Node,
                 args: tuple[ast.Arg, ...]) -> Branches:
        """``concat(b1, b2, ...)`` / ``add(...)``: each argument is one branch."""
        branches: list[tuple[Layer, ...]] = []
        label = None
        for arg in args:
            if arg.key is None:
                branches.append(self.branch(arg.value))
            elif arg.key.lower() == "name":
                label = _name(self.v, arg.value)
            else:
                raise self.v.error(f"unknown key {arg.key!r} for {name_node.id} (it takes "
                                   "branches and name=)", arg)
        if len(branches) < 2:
            raise self.v.error(f"{name_node.id} needs at least two branches (identity is the "
                               "tensor flowing in)", name_node)
        return Branches("cat" if merge == "concat" else "add", tuple(branches), label,
                        (node.pos, node.end))

    def branch(self, node: ast.Node) -> tuple[Layer, ...]:
        """One branch: ``identity`` (the tensor itself), a layer, a saved tensor's name,
        ``[a, b, ...]`` or ``a -> b -> ...``."""
        if isinstance(node, ast.Name) and node.id.lower() == "identity":
            return ()
        items = node.items if isinstance(node, (ast.Seq, ast.Tuple)) else (node,)
        layers: list[Layer] = []
        for item in items:
            layers.extend(self.items(item))
        return tuple(layers)

    def save(self, name_node: ast.Node, args: tuple[ast.Arg, ...]) -> Save:
        if len(args) != 1 or args[0].key is not None:
            raise self.v.error("save takes one name: save(skip1)", name_node)
        value = args[0].value
        label = _name(self.v, value)
        key = label.lower()
        if ALIASES.get(key, key) in LAYER_NAMES:
            raise self.v.error(f"{label!r} is a layer's name; save the tensor under "
                               "another", value)
        self.saved.add(label)
        return Save(label)


def build(network: ast.Network) -> tuple[Layer, ...]:
    """Turn a parsed network into layer records (repetitions expanded)."""
    b = _Builder(network.source)
    layers: list[Layer] = []
    for item in network.items:
        layers.extend(b.items(item))
    return tuple(layers)


def parse_layers(source: str) -> tuple[Layer, ...]:
    """Layer-language text -> layer records."""
    return build(ast.parse(source))
