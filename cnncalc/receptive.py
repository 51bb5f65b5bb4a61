"""Receptive fields: which input pixels one output pixel of each layer can see.

Per spatial dimension we follow the interval ``[lo, hi]`` of input pixels that
output pixel 0 depends on, and the jump ``j``: how far apart (in input pixels)
neighbouring output pixels' fields are. The input starts at ``lo = hi = 0``,
``j = 1``. A window layer (conv or pooling) with kernel ``k``, dilation ``d``,
stride ``s`` and padding ``p`` maps

.. math:: lo' = lo - p j,\\quad hi' = hi + (d(k-1) - p) j,\\quad j' = s j

so the size ``r = hi - lo + 1`` grows by ``d(k-1) j`` (the textbook
``r' = r + (k-1) j``) and output pixel ``o`` sees ``[lo + o j, hi + o j]``
(before clipping to the image). Where branches merge (``add``, ``concat``) the
field is the union over the paths, so the largest wins. Fields are not clipped
to the image: padding makes ``lo`` negative. Normalisation statistics (which in
training mix every position) are ignored, as for a network in eval mode, and so
is a squeeze-and-excitation gate (a per-channel scale from global statistics):
the field follows the gated tensor. Upsampling leaves the grid (its output
pixels do not step evenly over the input's).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import singledispatch

import sympy as sp

from . import layers as L
from .quantities import ONE, ZERO, _spread, pad_sides
from .symbolic import same, tidy


@dataclass(frozen=True)
class ReceptiveField:
    """Output pixel 0 sees input pixels ``lo..hi`` per spatial dimension; pixel ``o``
    sees them shifted by ``o * jump``."""

    lo: tuple[sp.Expr, ...]
    hi: tuple[sp.Expr, ...]
    jump: tuple[sp.Expr, ...]

    @property
    def size(self) -> tuple[sp.Expr, ...]:
        return tuple(_tidy(_sum(h, -_sum(lo), 1)) for lo, h in zip(self.lo, self.hi))

    @property
    def start(self) -> tuple[sp.Expr, ...]:
        """The centre of output pixel 0's field, in input pixels (negative into padding)."""
        return tuple(_tidy(_sum(lo, h) / 2) for lo, h in zip(self.lo, self.hi))


def _tidy(value: sp.Expr) -> sp.Expr:
    """Polynomials in the layer's symbols are expanded (exact and quick); only a ``Max`` or
    ``Min`` from merged branches goes to ``simplify``, under its time budget."""
    value = sp.expand(value)
    return tidy(value) if value.has(sp.Max, sp.Min) else value


def _plus(a: sp.Expr, b: sp.Expr) -> sp.Expr:
    """``a + b``, left unevaluated when symbolic: with symbolic strides ``lo`` and ``hi``
    gain a term per layer, and sorting the whole sum again at every layer made the fields
    of a deep stack quadratic in its depth. :func:`_sum` collects such a sum in one go."""
    if a.is_Number and b.is_Number:  # is_number would walk the whole unevaluated sum
        return a + b
    return sp.Add(a, b, evaluate=False)


def _sum(*values: sp.Expr) -> sp.Expr:
    """The sum of ``values``, each flattened through its (unevaluated) sums first."""
    terms, todo = [], [sp.sympify(v) for v in values]
    while todo:
        value = todo.pop()
        if value.is_Add:
            todo += value.args
        else:
            terms.append(value)
    return sp.Add(*terms)


def _window(field: ReceptiveField, k, s, p, d) -> ReceptiveField:
    n = len(field.lo)
    k, s, p, d = (_spread(v, n, w) for v, w in ((k, "kernel"), (s, "stride"),
                                                (p, "padding"), (d, "dilation")))
    return ReceptiveField(
        lo=tuple(_plus(lo, -pi * j) for lo, pi, j in zip(field.lo, p, field.jump)),
        hi=tuple(_plus(h, (di * (ki - 1) - pi) * j)
                 for h, ki, pi, di, j in zip(field.hi, k, p, d, field.jump)),
        jump=tuple(si * j for si, j in zip(s, field.jump)))


@singledispatch
def propagate(layer, fields: tuple, spatial: tuple) -> ReceptiveField | None:
    """The field of a layer's output from its inputs' fields (``spatial``: the input's
    spatial sizes). Layers not written here (transposed convs, linear, flatten) leave the
    image's grid: None."""
    return None


@propagate.register
def _conv(layer: L.Conv, fields, spatial):
    field = fields[0]
    if field is None or len(field.lo) != layer.ndim:
        return None
    pad = layer.padding
    if pad == "valid":
        pad = ZERO
    elif pad == "same":  # PyTorch pads d(k-1) in total, the smaller half first
        k = _spread(layer.kernel, layer.ndim, "kernel")
        d = _spread(layer.dilation, layer.ndim, "dilation")
        pad = tuple(sp.floor(di * (ki - 1) / 2) for ki, di in zip(k, d))
    return _window(field, layer.kernel, layer.stride, pad, layer.dilation)


@propagate.register
def _pool(layer: L.Pool, fields, spatial):
    field = fields[0]
    if field is None or len(field.lo) != layer.ndim:
        return None
    stride = layer.kernel if layer.stride is None else layer.stride
    return _window(field, layer.kernel, stride, layer.padding, layer.dilation)


@propagate.register
def _adaptive(layer: L.AdaptiveAvgPool, fields, spatial):
    """Global pooling is one window over everything; otherwise only the uniform case
    (input a multiple of the output) has a single field."""
    field = fields[0]
    if field is None:
        return None
    out = _spread(layer.output, len(spatial), "output size")
    k = []
    for size, o in zip(spatial, out):
        if o == 1:
            k.append(size)
        elif (size / o).is_integer:
            k.append(size / o)
        else:
            return None
    return _window(field, tuple(k), tuple(k), ZERO, ONE)


def _same_field(layer, fields, spatial):
    """Norms and activations act position by position."""
    return fields[0]


for _kind in (L.BatchNorm, L.LayerNorm, L.InstanceNorm, L.GroupNorm, L.Elementwise,
              L.ChannelSplit, L.Shuffle, L.LayerScale):
    propagate.register(_kind, _same_field)


@propagate.register
def _pad(layer: L.Pad, fields, spatial):
    """Output pixel 0 is input pixel ``-before``: the field shifts by ``before`` jumps."""
    field = fields[0]
    if field is None:
        return None
    sides = pad_sides(layer.padding, len(field.lo))
    return ReceptiveField(
        lo=tuple(lo - b * j for lo, (b, _), j in zip(field.lo, sides, field.jump)),
        hi=tuple(h - b * j for h, (b, _), j in zip(field.hi, sides, field.jump)),
        jump=field.jump)


@propagate.register
def _merge(layer: L.Merge, fields, spatial):
    if layer.kind == "mul":  # a gate: the field of the gated tensor
        return fields[0]
    return _add(layer, fields, spatial)


@propagate.register
def _add(layer: L.Residual, fields, spatial):
    """The union over the branches: the widest reach on each side."""
    if any(f is None for f in fields) or len({len(f.lo) for f in fields}) != 1:
        return None
    first = fields[0]
    for other in fields[1:]:
        if not all(same(a, b) for a, b in zip(first.jump, other.jump)):
            return None
    return ReceptiveField(
        lo=tuple(sp.Min(*(_sum(f.lo[i]) for f in fields)) for i in range(len(first.lo))),
        hi=tuple(sp.Max(*(_sum(f.hi[i]) for f in fields)) for i in range(len(first.hi))),
        jump=first.jump)


def fields(rows, input_shape: tuple, layout: str = "chw") -> list[ReceptiveField | None]:
    """The field of every row (``input_shape`` channels first, without batch)."""
    n = len(input_shape) - 1
    start = ReceptiveField((ZERO,) * n, (ZERO,) * n, (ONE,) * n) if n >= 1 else None
    out: list[ReceptiveField | None] = []
    for row in rows:
        shape = channels_first(row.input_shape, layout)
        inputs = tuple(start if i < 0 else out[i] for i in row.inputs)
        out.append(propagate(row.layer, inputs, tuple(shape[1:])) if inputs else None)
    return out


def channels_first(shape: tuple, layout: str) -> tuple:
    return (shape[-1], *shape[:-1]) if layout == "hwc" and len(shape) > 1 else tuple(shape)


def is_global(layer) -> bool:
    """Global average pooling: its field is the whole feature map by construction."""
    if not isinstance(layer, L.AdaptiveAvgPool):
        return False
    out = layer.output if isinstance(layer.output, tuple) else (layer.output,)
    return all(o == 1 for o in out)


def total(rows) -> tuple[ReceptiveField | None, int | None]:
    """The field of the last row still on the image grid: global pooling, and what acts
    on its 1x1 result only (ConvNeXt's norm after the pool, an SE gate), aside."""
    pooled: set[int] = set()
    for row in rows:
        if is_global(row.layer) or (row.inputs and all(i in pooled for i in row.inputs)):
            pooled.add(row.index)
    for row in reversed(rows):
        if row.receptive_field is not None and row.index not in pooled:
            return row.receptive_field, row.index
    return None, None
