"""Convolution as a matrix: ``Ỹ = A X̃``, its backward pass ``B = Aᵀ`` as a convolution, ``C_x``.

The convolution is deep learning's: a cross-correlation, exactly
``torch.nn.functional.conv1d`` / ``conv2d`` without bias. With stride ``s`` and
zero padding ``p``, kernel ``W^{ij}`` reads input channel ``i`` into output
channel ``j`` (0-based positions here, 1-based in the symbols)

.. math:: y_{j,o} = \\sum_i \\sum_\\kappa w^{ij}_\\kappa \\, x_{i,\\, s o + \\kappa - p},
          \\qquad L_{out} = \\lfloor (L + 2p - k)/s \\rfloor + 1,

with ``x`` outside ``0..L-1`` read as zero. Everything is linear in ``X`` (so
``Ỹ = A X̃``) and in ``W`` (so ``Ỹ = C_x w̃``); ``X̃`` and ``Ỹ`` flatten channel
by channel, each channel row by row, as in the homework problems.

Backward: ``∂L/∂X̃ = Aᵀ ∂L/∂Ỹ``, and this is again a convolution: insert
``s - 1`` zeros between the entries of ``∂L/∂Y``, pad ``k - 1 - p`` on each side
(plus ``(L + 2p - k) mod s`` on the far side, the positions the forward stride
never reached), and correlate with every kernel flipped, ``W^{ij}`` now reading
channel ``j`` of ``∂L/∂Y`` into channel ``i`` of ``∂L/∂X``.

A 1-D problem is the 2-D one with height 1 (kernel height 1, no padding there);
only the names of the symbols differ. Symbols (all ``real=True``), 1-based:

* 1-D: weights ``w_κ^ij`` (printed ``w¹²₃``, LaTeX ``w^{12}_{3}``), inputs
  ``x_it``, outputs ``y_jt``, output gradients ``dy_jt`` = ``∂L/∂y_{jt}``.
* 2-D: weights ``w_ab^ij`` (row ``a``, column ``b``), inputs ``x^i_rc``,
  outputs ``y^j_rc``, gradients ``dy^j_rc``.

Indices are written side by side while every one of them is a single digit,
and separated by commas (``x_1,12``) otherwise.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import sympy as sp

from ..errors import CnnCalcError
from .result import Check, Derivation, Item
from .values import real_symbol

MAX_ENTRIES = 4_096  # 64×64: larger matrices take sympy seconds to print, and nobody reads them

Pads = tuple[tuple[int, int], tuple[int, int]]  # ((top, bottom), (left, right))


@dataclass(frozen=True)
class ConvGeometry:
    """A convolution's shape. 1-D problems are stored as height 1 and ``ndim = 1``."""

    size: tuple[int, int]
    in_channels: int
    out_channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    ndim: int

    @property
    def out_size(self) -> tuple[int, int]:
        """``⌊(n + 2p - k)/s⌋ + 1`` along each axis."""
        return tuple((n + 2 * p - k) // s + 1 for n, k, s, p in
                     zip(self.size, self.kernel, self.stride, self.padding))

    @property
    def axes(self) -> tuple[int, ...]:
        """The axes the user sees: only the width for 1-D."""
        return (1,) if self.ndim == 1 else (0, 1)


def geometry(size, in_channels: int = 1, out_channels: int = 1, kernel=3, stride=1,
             padding=0) -> ConvGeometry:
    """Validate a convolution's shape. ``size`` is a length ``L`` or a pair ``(H, W)``;
    ``kernel``, ``stride`` and ``padding`` are one integer or one per axis.

    >>> geometry(4, 2, 2, kernel=3).out_size
    (1, 2)
    """
    ndim = 1 if isinstance(size, int) else len(size)
    if ndim not in (1, 2):
        raise CnnCalcError(f"size: expected a length L or H x W, got {ndim} dimensions")
    names = ("length",) if ndim == 1 else ("height", "width")
    dims = _per_axis(size, ndim, "size")
    k, s, p = (_per_axis(v, ndim, n) for v, n in ((kernel, "kernel"), (stride, "stride"),
                                                 (padding, "padding")))
    for what, values, least in (("size", dims, 1), ("kernel", k, 1), ("stride", s, 1),
                                ("padding", p, 0)):
        for name, v in zip(names, values):
            if v < least:
                raise CnnCalcError(f"{what}: the {name} must be at least {least}, got {v}")
    for what, v in (("in-channels", in_channels), ("out-channels", out_channels)):
        if v < 1:
            raise CnnCalcError(f"{what} must be at least 1, got {v}")
    for name, n, kk, pp in zip(names, dims, k, p):
        if kk > n + 2 * pp:
            raise CnnCalcError(f"kernel {kk} is larger than the padded input along the {name}: "
                               f"{n} + 2·{pp} = {n + 2 * pp}")
    if ndim == 1:  # a row: height 1, kernel height 1, stride 1, no padding above or below
        dims, k, s, p = (1, *dims), (1, *k), (1, *s), (0, *p)
    return ConvGeometry(dims, in_channels, out_channels, k, s, p, ndim)


def _per_axis(value, ndim: int, what: str) -> tuple[int, ...]:
    values = (value,) * ndim if isinstance(value, int) else tuple(value)
    if len(values) != ndim or not all(isinstance(v, int) for v in values):
        raise CnnCalcError(f"{what}: expected one integer or {ndim} integers, got {value!r}")
    return values


def check_size(g: ConvGeometry, jacobian: bool = False) -> None:
    """Refuse a matrix too large to print or to check symbolically, before building anything
    (a huge size must fail at once, not hang)."""
    rows, taps = g.out_channels * _area(g.out_size), _area(g.kernel)
    sizes = [("A", rows, g.in_channels * _area(g.size)),
             ("the weights", g.in_channels * g.out_channels, taps)]
    if jacobian:
        sizes.append(("C_x", rows, g.out_channels * g.in_channels * taps))
    for name, r, c in sizes:
        if r * c > MAX_ENTRIES:
            raise CnnCalcError(f"{name} would be {r}×{c} = {r * c:,} entries; the limit is "
                               f"{MAX_ENTRIES:,} so that it can be printed and verified "
                               "symbolically (use a smaller size, kernel or fewer channels)")


# Symbols ------------------------------------------------------------------------------------

def _index(parts: tuple[int, ...], limits: tuple[int, ...]) -> str:
    """1-based indices side by side (``12``) while every index of the family stays one digit
    (``limits`` are the counts), comma-separated (``1,12``) otherwise, so a name never reads
    two ways."""
    return ("" if all(n <= 9 for n in limits) else ",").join(str(p + 1) for p in parts)


def _channels(g: ConvGeometry, letter: str, count: int, shape: tuple[int, int]) -> list:
    """``x_12`` (1-D: channel, position) or ``x^1_23`` (2-D: channel; row, column)."""
    def name(ch, r, c):
        if g.ndim == 1:
            return f"{letter}_{_index((ch, c), (count, shape[1]))}"
        return f"{letter}^{ch + 1}_{_index((r, c), shape)}"

    return [sp.Matrix(*shape, lambda r, c, ch=ch: real_symbol(name(ch, r, c)))
            for ch in range(count)]


def input_symbols(g: ConvGeometry) -> list[sp.Matrix]:
    """``X`` one channel at a time: ``x_it`` (1-D, a 1×L row) or ``x^i_rc`` (2-D)."""
    return _channels(g, "x", g.in_channels, g.size)


def output_symbols(g: ConvGeometry) -> list[sp.Matrix]:
    return _channels(g, "y", g.out_channels, g.out_size)


def grad_symbols(g: ConvGeometry) -> list[sp.Matrix]:
    """``∂L/∂Y`` one output channel at a time, named ``dy_jt`` / ``dy^j_rc``."""
    return _channels(g, "dy", g.out_channels, g.out_size)


def weight_symbols(g: ConvGeometry) -> dict[tuple[int, int], sp.Matrix]:
    """``W^{ij}`` (reads input channel ``i`` into output channel ``j``) for every pair."""
    def name(i, j, a, b):
        where = str(b + 1) if g.ndim == 1 else _index((a, b), g.kernel)
        return f"w_{where}^{_pair(g, i, j)}"

    return {(i, j): sp.Matrix(*g.kernel, lambda a, b, i=i, j=j: real_symbol(name(i, j, a, b)))
            for i in range(g.in_channels) for j in range(g.out_channels)}


def _pair(g: ConvGeometry, i: int, j: int) -> str:
    """The channel pair ``ij`` of ``W^{ij}`` (``i,j`` once a channel count passes 9)."""
    return f"{i + 1}{_sep(g)}{j + 1}"


def flatten(channels: list[sp.Matrix]) -> sp.Matrix:
    """Channel-major, then row-major: ``[x11, x12, x13, x14, x21, ...]ᵀ``."""
    return sp.Matrix([v for m in channels for v in m])


def flat_weights(g: ConvGeometry) -> sp.Matrix:
    """``w̃`` in PyTorch's ``weight.flatten()`` order: output channel, input channel, tap."""
    w = weight_symbols(g)
    return sp.Matrix([v for j in range(g.out_channels) for i in range(g.in_channels)
                      for v in w[i, j]])


# The correlation: one index rule (the taps) for A, C_x and the backward convolution ----------

def _taps(n: int, k: int, s: int, before: int, after: int) -> list[tuple[int, int, int]]:
    """Along one axis, the triples ``(o, κ, t)`` with ``t = s·o + κ - before`` inside ``0..n-1``:
    output ``o`` reads input ``t`` through kernel tap ``κ``. Padding (possibly negative, a crop)
    is never stored; positions outside the input are simply skipped, i.e. read as zero."""
    n_out = (n + before + after - k) // s + 1
    return [(o, kk, s * o + kk - before) for o in range(n_out) for kk in range(k)
            if 0 <= s * o + kk - before < n]


def _taps2(size, kernel, stride, pads: Pads):
    rows = _taps(size[0], kernel[0], stride[0], *pads[0])
    cols = _taps(size[1], kernel[1], stride[1], *pads[1])
    return [((o1, o2), (k1, k2), (t1, t2)) for (o1, k1, t1), (o2, k2, t2)
            in itertools.product(rows, cols)]


def _out_shape(size, kernel, stride, pads: Pads) -> tuple[int, int]:
    return tuple((n + b + a - k) // s + 1 for n, k, s, (b, a) in zip(size, kernel, stride, pads))


def correlate(inputs: list[sp.Matrix], kernels: dict, stride=(1, 1), pads: Pads = ((0, 0), (0, 0)),
              out_channels: int | None = None) -> list[sp.Matrix]:
    """Multi-channel cross-correlation, entry by entry:
    ``out[b][o] = Σ_a Σ_κ kernels[a, b][κ] · inputs[a][s·o + κ - pad]``.

    ``kernels[a, b]`` reads channel ``a`` into channel ``b``; ``pads`` may be negative (a crop).
    """
    size, kernel = inputs[0].shape, next(iter(kernels.values())).shape
    shape = _out_shape(size, kernel, stride, pads)
    count = out_channels if out_channels is not None else 1 + max(b for _, b in kernels)
    out = [sp.zeros(*shape) for _ in range(count)]
    taps = _taps2(size, kernel, stride, pads)
    for (a, b), w in kernels.items():
        for o, kk, t in taps:
            out[b][o] += w[kk] * inputs[a][t]
    return out


def _symmetric(padding) -> Pads:
    return tuple((p, p) for p in padding)


def conv_matrix(g: ConvGeometry) -> sp.Matrix:
    """``A`` with ``Ỹ = A X̃``: row ``(j, o)`` holds ``W^{ij}`` in the block of input channel
    ``i``, tap ``κ`` in column ``(i, s·o + κ - p)``; taps landing in the padding are dropped.

    >>> conv_matrix(geometry(3, kernel=2))
    Matrix([
    [w_1^11, w_2^11,      0],
    [     0, w_1^11, w_2^11]])
    """
    check_size(g)
    a = sp.zeros(g.out_channels * _area(g.out_size), g.in_channels * _area(g.size))
    taps = _taps2(g.size, g.kernel, g.stride, _symmetric(g.padding))
    for (i, j), w in weight_symbols(g).items():
        for o, kk, t in taps:
            a[_flat(j, o, g.out_size), _flat(i, t, g.size)] += w[kk]
    return a


def jacobian_matrix(g: ConvGeometry) -> sp.Matrix:
    """``C_x = ∂Ỹ/∂w̃`` with ``Ỹ = C_x w̃`` (``w̃`` as in :func:`flat_weights`). Row ``(j, o)``
    holds, in the columns of ``W^{ij}``, the input patch that tap reads: block diagonal, one
    identical block per output channel."""
    check_size(g, jacobian=True)
    per_kernel = _area(g.kernel)
    c = sp.zeros(g.out_channels * _area(g.out_size), g.out_channels * g.in_channels * per_kernel)
    x = input_symbols(g)
    taps = _taps2(g.size, g.kernel, g.stride, _symmetric(g.padding))
    for j, i in itertools.product(range(g.out_channels), range(g.in_channels)):
        first = (j * g.in_channels + i) * per_kernel
        for o, kk, t in taps:
            c[_flat(j, o, g.out_size), first + kk[0] * g.kernel[1] + kk[1]] += x[i][t]
    return c


def _area(shape) -> int:
    return shape[0] * shape[1]


def _flat(channel: int, pos: tuple[int, int], shape: tuple[int, int]) -> int:
    return (channel * shape[0] + pos[0]) * shape[1] + pos[1]


# Backward -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class BackwardConv:
    """The convolution that maps ``∂L/∂Y`` to ``∂L/∂X``.

    ``kernels[j, i]`` reads channel ``j`` of ``∂L/∂Y`` into channel ``i`` of ``∂L/∂X`` and is
    ``W^{ij}`` flipped along every axis; ``dilation`` is the stride (``s - 1`` zeros between
    neighbours); ``pads`` are ``((top, bottom), (left, right))`` of the dilated gradient.
    """

    kernels: dict[tuple[int, int], sp.Matrix]
    dilation: tuple[int, int]
    pads: Pads
    in_channels: int  # of ∂L/∂X, i.e. the forward input channels

    def apply(self, grads: list[sp.Matrix]) -> list[sp.Matrix]:
        """Dilate, then correlate with stride 1 (padding, even negative, handled by the taps)."""
        return correlate([dilate(m, self.dilation) for m in grads], self.kernels, (1, 1),
                         self.pads, self.in_channels)


def backward_conv(g: ConvGeometry) -> BackwardConv:
    """Pads ``k - 1 - p`` before and ``k - 1 - p + (n + 2p - k) mod s`` after, per axis."""
    check_size(g)
    pads = tuple((k - 1 - p, k - 1 - p + (n + 2 * p - k) % s)
                 for n, k, s, p in zip(g.size, g.kernel, g.stride, g.padding))
    kernels = {(j, i): flip(w) for (i, j), w in weight_symbols(g).items()}
    return BackwardConv(kernels, g.stride, pads, g.in_channels)


def flip(m: sp.Matrix) -> sp.Matrix:
    """Reverse every axis (a 180° rotation in 2-D)."""
    return sp.Matrix(*m.shape, lambda r, c: m[m.rows - 1 - r, m.cols - 1 - c])


def dilate(m: sp.Matrix, step: tuple[int, int]) -> sp.Matrix:
    """Insert ``step - 1`` zeros between neighbouring entries along each axis."""
    out = sp.zeros((m.rows - 1) * step[0] + 1, (m.cols - 1) * step[1] + 1)
    for r, c in itertools.product(range(m.rows), range(m.cols)):
        out[r * step[0], c * step[1]] = m[r, c]
    return out


def pad(m: sp.Matrix, pads: Pads) -> sp.Matrix:
    """Zero-pad (or, for a negative amount, crop) each side; for showing the worked solution."""
    (top, bottom), (left, right) = pads
    out = sp.zeros(m.rows + top + bottom, m.cols + left + right)
    for r, c in itertools.product(range(m.rows), range(m.cols)):
        if 0 <= r + top < out.rows and 0 <= c + left < out.cols:
            out[r + top, c + left] = m[r, c]
    return out


def _same(a: sp.Matrix, b: sp.Matrix) -> bool:
    """Exact equality of two matrices of polynomials."""
    return a.shape == b.shape and all(sp.expand(u - v) == 0 for u, v in zip(a, b))


# The derivation -----------------------------------------------------------------------------

def matrix_derivation(g: ConvGeometry, backward: bool = False, jacobian: bool = False
                      ) -> Derivation:
    """Everything ``cnncalc matrix`` prints: ``A``, and on request ``B``, the backward
    convolution and ``C_x``, each with the checks that were run on it."""
    check_size(g, jacobian)
    x, w = input_symbols(g), weight_symbols(g)
    a = conv_matrix(g)
    x_flat = flatten(x)
    y_flat = a * x_flat
    forward = flatten(correlate(x, w, g.stride, _symmetric(g.padding), g.out_channels))
    y_names = flatten(output_symbols(g))
    inputs = [*_channel_items(g, "X", x, latex="X%s"), *_kernel_items(g, w)]
    steps = [*_size_steps(g), _row_step(g),
             Item("Ỹ", y_flat, f"A X̃, rows [{_ends(y_names)}]", r"\tilde{Y}")]
    results = [Item("A", a, f"Ỹ = A X̃; columns X̃ = [{_ends(x_flat)}]ᵀ, rows Ỹ = "
                            f"[{_ends(y_names)}]ᵀ", "A")]
    checks = [Check("A X̃ equals the sliding-window cross-correlation of X, entry by entry",
                    _same(y_flat, forward))]
    notes = _notes(g)
    if backward:
        part = _backward_part(g, a)
        inputs += part.inputs
        steps += part.steps
        results += part.results
        checks += part.checks
        notes += part.notes
    if jacobian:
        c = jacobian_matrix(g)
        w_flat = flat_weights(g)
        results += [Item("w̃", w_flat.T, "the weights flattened as torch's weight.flatten(): "
                                         "output channel, input channel, tap", r"\tilde{w}^T"),
                    Item("C_x", c, "Ỹ = C_x w̃ = ∂Ỹ/∂w̃, the Jacobian of the output with "
                                   "respect to the weights", "C_x")]
        checks.append(Check("C_x w̃ = A X̃ (both are Ỹ)", _same(c * w_flat, y_flat)))
        notes.append(_jacobian_note(g))
    return Derivation(_title(g, backward, jacobian), tuple(results), tuple(steps),
                      tuple(checks), tuple(notes), tuple(inputs))


def _backward_part(g: ConvGeometry, a: sp.Matrix) -> Derivation:
    """The ``--backward`` items, to be merged into the forward derivation."""
    grads = grad_symbols(g)
    conv = backward_conv(g)
    b = a.T
    dx_flat = b * flatten(grads)
    dx = _unflatten(dx_flat, g.in_channels, g.size)
    dilated = [dilate(m, conv.dilation) for m in grads]
    steps = []
    if any(s > 1 for s in g.stride):
        steps += _channel_items(g, "∂L/∂Y dilated", dilated, "zeros inserted between entries")
    steps += _channel_items(g, "∂L/∂Y padded", [pad(m, conv.pads) for m in dilated],
                            "the input of the backward convolution")
    steps.append(Item("∂L/∂X̃", dx_flat, "B ∂L/∂Ỹ", r"\frac{\partial L}{\partial \tilde{X}}"))
    results = [Item("B", b, "∂L/∂X̃ = B ∂L/∂Ỹ, and B = Aᵀ because ∂Ỹ/∂X̃ = A", "B"),
               *_channel_items(g, "∂L/∂X", dx, "", r"\frac{\partial L}{\partial X%s}"),
               *_backward_kernel_items(g, conv)]
    if any(s > 1 for s in g.stride):
        results.append(Item("dilation", _axes(g, conv.dilation),
                            "∂L/∂Y with stride−1 zeros inserted between neighbours"))
    results += [Item("padding", _axes(g, conv.pads), _padding_note(g)),
                Item("channel mapping", _mapping(g))]
    claim = ("∂L/∂X̃ = Aᵀ ∂L/∂Ỹ equals the convolution above (dilate, pad, correlate with the "
             "flipped, channel-swapped kernels), entry by entry")
    checks = [Check(claim, _same(flatten(conv.apply(grads)), dx_flat))]
    given = _channel_items(g, "∂L/∂Y", grads, "dy = ∂L/∂y", r"\frac{\partial L}{\partial Y%s}")
    return Derivation("backward", tuple(results), tuple(steps), tuple(checks),
                      tuple(_backward_notes(g)), tuple(given))


def _unflatten(v: sp.Matrix, channels: int, shape) -> list[sp.Matrix]:
    n = _area(shape)
    return [sp.Matrix(*shape, list(v[c * n:(c + 1) * n])) for c in range(channels)]


def _axes(g: ConvGeometry, per_axis: tuple):
    """A per-axis value as the user sees it: the width's alone for 1-D."""
    values = tuple(per_axis[ax] for ax in g.axes)
    return values[0] if g.ndim == 1 else values


# Presentation helpers (strings and labelled items only; no maths below) ----------------------

def _channel_items(g: ConvGeometry, label: str, channels: list[sp.Matrix], note: str = "",
                   latex: str | None = None) -> list[Item]:
    """1-D: one matrix, a row per channel (as the homework writes X). 2-D: one item per channel;
    ``latex`` marks with ``%s`` where the channel's superscript goes."""
    if g.ndim == 1:
        return [Item(label, sp.Matrix.vstack(*channels), note,
                     None if latex is None else latex % "")]
    return [Item(f"{label} (channel {c + 1})", m, note,
                 None if latex is None else latex % f"^{{({c + 1})}}")
            for c, m in enumerate(channels)]


def _kernel_items(g: ConvGeometry, w: dict) -> list[Item]:
    """1-D: ``W^{ij}`` stacked over ``i`` for each output channel ``j`` (the homework's ``W^{i1}``);
    2-D: one ``W^{ij}`` per pair."""
    if g.ndim == 1:
        return [Item(f"W^{{i{_sep(g)}{j + 1}}}", sp.Matrix.vstack(
                    *(w[i, j] for i in range(g.in_channels))),
                     f"row i: the kernel reading input channel i into output channel {j + 1}",
                     f"W^{{i{_sep(g)}{j + 1}}}") for j in range(g.out_channels)]
    return [Item(f"W^{{{_pair(g, i, j)}}}", m, f"reads input channel {i + 1} into output "
                 f"channel {j + 1}", f"W^{{{_pair(g, i, j)}}}") for (i, j), m in w.items()]


def _backward_kernel_items(g: ConvGeometry, conv: BackwardConv) -> list[Item]:
    """1-D: ``K^{ji}`` stacked over ``j`` for each ``∂L/∂X`` channel ``i`` (torch's weight of
    the backward conv, ``[i]``); 2-D: one ``K^{ji}`` per pair."""
    k, sep = conv.kernels, _sep(g)
    if g.ndim == 1:
        return [Item(f"K^{{j{sep}{i + 1}}}", sp.Matrix.vstack(
                    *(k[j, i] for j in range(g.out_channels))),
                     f"computes ∂L/∂X channel {i + 1}: row j reads ∂L/∂Y channel j with "
                     f"W^{{{i + 1}{sep}j}} flipped", f"K^{{j{sep}{i + 1}}}")
                for i in range(g.in_channels)]
    return [Item(f"K^{{{j + 1}{sep}{i + 1}}}", k[j, i], f"reads ∂L/∂Y channel {j + 1} into "
                 f"∂L/∂X channel {i + 1}: W^{{{_pair(g, i, j)}}} rotated by 180°",
                 f"K^{{{j + 1}{sep}{i + 1}}}")
            for i, j in itertools.product(range(g.in_channels), range(g.out_channels))]


def _sep(g: ConvGeometry) -> str:
    return "" if max(g.in_channels, g.out_channels) <= 9 else ","


def _mapping(g: ConvGeometry) -> str:
    return (f"the backward convolution has {g.out_channels} input channel(s) (those of ∂L/∂Y) "
            f"and {g.in_channels} output channel(s) (those of ∂L/∂X): the kernel reading "
            "∂L/∂Y channel j into ∂L/∂X channel i is K^{ji} = W^{ij} flipped"
            + (" (reversed)" if g.ndim == 1 else " (rotated by 180°)")
            + " — input and output channel roles swapped")


def _padding_note(g: ConvGeometry) -> str:
    axes = "(before, after)" if g.ndim == 1 else "((top, bottom), (left, right))"
    extra = any((n + 2 * p - k) % s for n, k, s, p in
                zip(g.size, g.kernel, g.stride, g.padding))
    return (f"{axes} zeros around the dilated ∂L/∂Y: k−1−p each side"
            + (", plus (n+2p−k) mod s after, the inputs the last stride step skipped"
               if extra else "")
            + ("; negative means crop" if any(k - 1 - p < 0 for k, p in
                                               zip(g.kernel, g.padding)) else ""))


def _size_steps(g: ConvGeometry) -> list[Item]:
    names = ("L",) if g.ndim == 1 else ("H", "W")
    items = []
    for name, ax in zip(names, g.axes):
        n, k, s, p = g.size[ax], g.kernel[ax], g.stride[ax], g.padding[ax]
        items.append(Item(f"{name}_out", f"⌊({name} + 2p − k)/s⌋ + 1 = ⌊({n} + 2·{p} − {k})/{s}⌋"
                                         f" + 1 = {g.out_size[ax]}",
                          "output size (the floor drops a last partial window)"))
    return items


def _row_step(g: ConvGeometry) -> Item:
    where = "s·o + κ − p" if g.ndim == 1 else "(s·o_r + a − p, s·o_c + b − p)"
    return Item("row (j, o) of A", f"for every input channel i and kernel tap κ, w_κ^ij goes to "
                                   f"the column of x_i at {where}; taps that land in the "
                                   "padding are dropped (they multiply zeros)")


def _ends(v: sp.Matrix) -> str:
    items = list(v)
    shown = items if len(items) <= 6 else [*items[:3], "…", *items[-2:]]
    return ", ".join(str(s) for s in shown)


def _title(g: ConvGeometry, backward: bool, jacobian: bool) -> str:
    size = f"length {g.size[1]}" if g.ndim == 1 else f"{g.size[0]}x{g.size[1]}"
    kernel = _pretty_axes(g, g.kernel, "x")
    what = ", backward" * backward + ", Jacobian" * jacobian
    return (f"Convolution as a matrix: {g.ndim}-D, {size}, {g.in_channels}→{g.out_channels} "
            f"channels, kernel {kernel}, stride {_pretty_axes(g, g.stride, 'x')}, padding "
            f"{_pretty_axes(g, g.padding, 'x')}{what}")


def _pretty_axes(g: ConvGeometry, values, sep: str) -> str:
    return sep.join(str(values[ax]) for ax in g.axes)


def _notes(g: ConvGeometry) -> list[str]:
    w = "w_κ^ij" if g.ndim == 1 else "w_ab^ij"
    notes = ["Convolution means cross-correlation, as torch.nn.functional.conv"
             f"{g.ndim}d (no bias): the kernel is not flipped in the forward pass.",
             f"{w} is tap {'κ' if g.ndim == 1 else '(a, b)'} of W^ij, the kernel reading input "
             "channel i into output channel j (torch's weight[j−1, i−1]); indices are 1-based.",
             "X̃ and Ỹ are flattened channel by channel, each channel "
             + ("left to right." if g.ndim == 1 else "row by row.")]
    if _is_homework_problem(g):
        notes.append("The convolutional-networks homework, problem 3 (a), labels the rows of Ỹ "
                     "as y11, y12, y13, y14; they are y11, y12, y21, y22 (2 channels of length "
                     "2). The backpropagation homework, problem 5 (a), has a typo in A's "
                     "second row: it must hold w^11 and w^21 (output channel 1), not w^12 and "
                     "w^22.")
    return notes


def _backward_notes(g: ConvGeometry) -> list[str]:
    notes = ["Every backward kernel is flipped: K^ji reads ∂L/∂Y channel j in reverse order "
             "(rotated by 180° in 2-D), because x_t meets w_κ at output o = (t − κ + p)/s, "
             "so moving forward in x moves backward in the kernel."]
    if any(s > 1 for s in g.stride):
        notes.append("With stride s > 1 the gradient is dilated first (s − 1 zeros between "
                     "entries): this is torch's conv_transpose with the same stride.")
    if _is_homework_problem(g):
        notes.append("The convolutional-networks homework, problem 3 (c), leaves the second "
                     "kernel unflipped ([w_1^21 w_2^21 w_3^21; "
                     "w_1^22 w_2^22 w_3^22]); it is [w_3^21 w_2^21 w_1^21; w_3^22 w_2^22 w_1^22] "
                     "(∂L/∂x_21 = w_1^21 dy_11 + w_1^22 dy_21 needs w_1 at the last tap). "
                     "The backpropagation homework, problem 5 (c), has it right.")
    return notes


def _jacobian_note(g: ConvGeometry) -> str:
    note = "C_x depends only on X: column (j, i, κ) holds the entries of x_i that tap κ meets."
    full = g.padding[1] == g.kernel[1] - 1 and g.stride[1] == 1
    if g.ndim == 1 and g.in_channels == g.out_channels == 1 and full:
        note += (" With one channel and full padding p = k − 1 this is the homework's "
                 "w ⋆ x = C_x w (x fixed, w sliding over it), scipy.signal.correlate(x, w).")
    return note


def _is_homework_problem(g: ConvGeometry) -> bool:
    """The convolutional-networks homework, problem 3 (and the backpropagation
    homework, problem 5): length 4, 2 → 2 channels, kernel 3, no padding, stride 1."""
    return (g.ndim, g.size[1], g.in_channels, g.out_channels, g.kernel[1], g.stride[1],
            g.padding[1]) == (1, 4, 2, 2, 3, 1, 0)
