r"""Batch, layer, instance and group normalization, step by step, in exact arithmetic.

Every kind normalizes *slices* of a tensor to zero mean and unit variance, then
scales and shifts them with learned ``γ`` and ``β``:

.. math::  \mu = \frac1m \sum_{i=1}^m z_i, \quad
           \sigma^2 = \frac1m \sum_{i=1}^m (z_i - \mu)^2, \quad
           \hat z_i = \frac{z_i - \mu}{\sqrt{\sigma^2 + \varepsilon}}, \quad
           \tilde z_i = \gamma \hat z_i + \beta .

The kinds differ only in how the slices are cut from an N×C×H×W tensor
(Wu & He, *Group Normalization*, Fig. 2):

* batch:    one slice per channel: its N·H·W values across the whole batch;
* layer:    one slice per example: its C·H·W values;
* instance: one slice per example and channel: the H·W values of one map;
* group:    one slice per example and group of C/G channels: (C/G)·H·W values.

σ² is the *biased* variance (divide by m), as training-mode normalization uses;
PyTorch's running variance for inference takes the unbiased ``m/(m−1)·σ²``.
Arrays are ``numpy`` object arrays of sympy numbers, held internally in the
canonical order N×C×S₁×…; ``layout`` letters name the axes of what the user
gave (``CN``: features × batch as in the homework problems; ``NCHW``: PyTorch).

>>> d = normalize("[[1,3],[2,6]]", "batch", eps=0)
>>> d.result("ẑ")
Matrix([
[-1, 1],
[-1, 1]])
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import sympy as sp

from ..errors import CnnCalcError
from .result import Check, Derivation, Item
from .values import parse_array, shape_of

KINDS = ("batch", "layer", "instance", "group")
DEFAULT_EPS = sp.Rational(1, 100000)  # torch.nn.functional's default
DEFAULT_MOMENTUM = sp.Rational(1, 10)
DATA_LAYOUTS = {2: "CN", 3: "NCL", 4: "NCHW", 5: "NCDHW"}  # a matrix is features × batch
SHAPE_LAYOUTS = {2: "NC", 3: "NCL", 4: "NCHW", 5: "NCDHW"}  # --shape NxC: a linear layer's output
MAX_TERMS = 12  # a written-out sum longer than this is elided in the middle
MAX_SLICES = 24  # the worked solution details at most this many slices

_Z = sp.Symbol("z")  # "any value of the slice" in the worked ẑ step
_TITLES = {"batch": "Batch", "layer": "Layer", "instance": "Instance", "group": "Group"}


# --- layouts: the letters naming the axes the user wrote ----------------------------------------

def parse_layout(text: str | None, rank: int, defaults: dict[int, str], what: str) -> str:
    """Upper-case axis letters, one per axis: N batch, C channels, anything else spatial."""
    if text is None:
        if rank not in defaults:
            raise CnnCalcError(f"{what}: a {rank}-D array needs --layout to name its axes "
                               "(e.g. N for one feature over a batch, C for one example)")
        return defaults[rank]
    layout = text.strip().upper()
    if not re.fullmatch(r"[A-Z]+", layout):
        raise CnnCalcError(f"--layout: {text!r} should be axis letters such as CN, NC or NCHW")
    repeated = sorted({a for a in layout if layout.count(a) > 1})
    if repeated:
        raise CnnCalcError(f"--layout: {layout} names the axis {repeated[0]} twice")
    if len(layout) != rank:
        raise CnnCalcError(f"--layout: {layout} names {len(layout)} axes but the {what} has "
                           f"{rank}")
    return layout


def spatial_axes(layout: str) -> str:
    return "".join(a for a in layout if a not in "NC")


def _order(layout: str) -> list[int]:
    """Positions of N, C (those present) and then the spatial axes, in the user's layout."""
    return [layout.index(a) for a in "NC" if a in layout] + [
        i for i, a in enumerate(layout) if a not in "NC"]


def to_canonical(x: np.ndarray, layout: str) -> np.ndarray:
    """Reorder to N×C×S₁×…; a missing N or C axis becomes one of size 1."""
    x = np.transpose(x, _order(layout))
    if "N" not in layout:
        x = x[np.newaxis]
    if "C" not in layout:
        x = np.expand_dims(x, 1)
    return x


def from_canonical(x: np.ndarray, layout: str) -> np.ndarray:
    """The inverse of :func:`to_canonical`."""
    if "C" not in layout:
        x = np.squeeze(x, 1)
    if "N" not in layout:
        x = np.squeeze(x, 0)
    return np.transpose(x, np.argsort(_order(layout)))


def _dims(shape: Sequence, layout: str = "") -> str:
    return "×".join(_expr(s) for s in shape) + (f" ({layout})" if layout else "")


def _expr(value) -> str:
    """A size as a person writes it: ``2·N``, ``C/2``."""
    return sp.sstr(value).replace("*", "·")


# --- slicing: which values share one μ and σ² -------------------------------------------------

@dataclass(frozen=True)
class Slicing:
    """The slices on the canonical N×C×S₁×… tensor.

    Channels fall into ``groups`` consecutive groups of ``C/groups``, pooled within
    a group: ``groups = C`` keeps channels apart, ``groups = 1`` pools all of them.
    """

    over_batch: bool
    groups: int
    over_spatial: tuple[bool, ...]

    def stats_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The keepdims shape of μ and σ², with the channel axis counting groups."""
        n, _, *spatial = shape
        return (1 if self.over_batch else n, self.groups,
                *(1 if r else s for r, s in zip(self.over_spatial, spatial)))

    def view(self, x: np.ndarray) -> np.ndarray:
        """x as N×groups×(C/groups)×S₁×…, so that each slice is a box."""
        n, c, *spatial = x.shape
        return x.reshape(n, self.groups, c // self.groups, *spatial)

    def box(self, index: tuple[int, ...]) -> tuple:
        """The view's index of the slice whose statistics sit at ``index``."""
        head = (slice(None) if self.over_batch else index[0], index[1], slice(None))
        return head + tuple(slice(None) if r else i
                            for r, i in zip(self.over_spatial, index[2:]))


def kind_slicing(kind: str, channels: int, n_spatial: int, groups: int | None) -> Slicing:
    """The slicing each named kind uses (see the module docstring)."""
    everywhere = (True,) * n_spatial
    if kind == "batch":
        return Slicing(True, channels, everywhere)
    if kind == "layer":
        return Slicing(False, 1, everywhere)
    if kind == "instance":
        if not n_spatial:
            raise CnnCalcError(
                "instance norm needs spatial axes: without them each (example, feature) "
                "slice holds a single value, so μ = z, σ² = 0 and ẑ = 0 everywhere (0/0 "
                "with ε = 0); give an N×C×H×W tensor, or --layout with spatial axes")
        return Slicing(False, channels, everywhere)
    if groups is None:
        raise CnnCalcError("group norm needs --groups G (G must divide the channel count)")
    if groups < 1 or channels % groups:
        raise CnnCalcError(f"--groups {groups} does not divide the {channels} channels")
    return Slicing(False, groups, everywhere)


def axes_slicing(axes: str, layout: str, channels: int) -> Slicing:
    """The slicing that reduces over the named axes: letters of the layout or 0-based indices."""
    names = [a.strip() for a in re.split(r"[,\s]+", axes.strip()) if a.strip()]
    if len(names) == 1 and names[0].isalpha():
        names = list(names[0])
    letters = set()
    for name in names:
        if name.isdigit() and int(name) < len(layout):
            letters.add(layout[int(name)])
        elif name.upper() in layout:
            letters.add(name.upper())
        else:
            raise CnnCalcError(f"--axes: {name!r} is not an axis of the layout {layout} "
                               f"(letters or indices 0–{len(layout) - 1})")
    if not letters:
        raise CnnCalcError("--axes: name at least one axis to reduce over")
    return Slicing("N" in letters, 1 if "C" in letters else channels,
                   tuple(a in letters for a in spatial_axes(layout)))


def reduced_letters(slicing: Slicing, layout: str) -> str:
    """The user's axis letters a slicing reduces over (channel groups count as C)."""
    over = {"N": slicing.over_batch, "C": slicing.groups == 1}
    over.update(zip(spatial_axes(layout), slicing.over_spatial))
    return ",".join(a for a in layout if over[a])


# --- the mathematics ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Normalized:
    """Everything computed, in canonical order (statistics in keepdims form)."""

    slicing: Slicing
    m: int
    mean: np.ndarray
    var: np.ndarray
    zhat: np.ndarray
    ztilde: np.ndarray


def slices(x: np.ndarray, slicing: Slicing):
    """(statistics index, the slice's values in order) for every slice."""
    view = slicing.view(x)
    for index in np.ndindex(*slicing.stats_shape(x.shape)):
        yield index, list(view[slicing.box(index)].ravel())


def statistics(x: np.ndarray, slicing: Slicing) -> tuple[int, np.ndarray, np.ndarray]:
    """m, and μ and the biased σ² of every slice (keepdims, canonical)."""
    shape = slicing.stats_shape(x.shape)
    mean, var = np.empty(shape, dtype=object), np.empty(shape, dtype=object)
    m = x.size // int(np.prod(shape))
    for index, values in slices(x, slicing):
        mean[index] = _tidy(sp.Add(*values) / m)
        var[index] = _tidy(sp.Add(*[(v - mean[index]) ** 2 for v in values]) / m)
    return m, mean, var


def _tidy(value):
    """Numbers as they are; symbolic values factored (σ² = (w − 3)²/4 has a readable root)."""
    value = sp.sympify(value)
    return sp.factor(value) if value.free_symbols else value


def _is_zero(value) -> bool:
    value = sp.sympify(value)
    return value == 0 or (not value.is_Rational and sp.simplify(value) == 0)


def normalize_canonical(x: np.ndarray, slicing: Slicing, gamma: np.ndarray, beta: np.ndarray,
                        eps, describe=str) -> Normalized:
    """μ, σ², ẑ and z̃ = γ ẑ + β; γ and β broadcast against the canonical x.

    A slice with σ² + ε = 0 (constant values, ε = 0) makes ẑ a 0/0; that is
    exactly why the built-in functions add an ε > 0, and it is refused here.
    """
    m, mean, var = statistics(x, slicing)
    for index in np.ndindex(*var.shape):
        if _is_zero(var[index] + eps):
            raise CnnCalcError(
                f"{describe(index)} has zero variance (all its {m} values equal "
                f"{sp.sstr(mean[index])}), so ẑ = (z − μ)/√(σ² + ε) is 0/0 with ε = 0; a "
                "positive ε (e.g. --eps 1e-5, PyTorch's default) is what prevents this")
    root = np.frompyfunc(sp.sqrt, 1, 1)(var + eps)
    view = slicing.view(x)
    zhat = ((view - np.expand_dims(mean, 2)) / np.expand_dims(root, 2)).reshape(x.shape)
    tidy = np.frompyfunc(_tidy, 1, 1)
    zhat = tidy(zhat)
    ztilde = tidy(gamma * zhat + beta)
    return Normalized(slicing, m, mean, var, zhat, ztilde)


def running_statistics(mean: np.ndarray, var: np.ndarray, m: int, momentum
                       ) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's running mean and variance after one training batch, from their
    initial 0 and 1: ``r ← (1 − momentum)·r + momentum·s`` with the *unbiased*
    variance ``m/(m − 1)·σ²`` for ``s``."""
    keep = 1 - momentum
    return (keep * 0 + momentum * mean,
            keep * 1 + momentum * sp.Rational(m, m - 1) * var)


# --- reading what the user gave ---------------------------------------------------------------

def _exact(value):
    """A number as an exact sympy value: the float 0.1 is 1/10, as the user wrote it."""
    if isinstance(value, float):
        return sp.Rational(repr(value))
    return sp.sympify(value, rational=True)


def as_array(data, what: str = "data") -> np.ndarray:
    """An object array of exact sympy values from text or (nested) numbers."""
    if isinstance(data, str):
        data = parse_array(data, what)
    elif isinstance(data, np.ndarray):
        data = data.tolist()
    shape = shape_of(data, what)
    array = np.empty(shape, dtype=object)
    for index in np.ndindex(*shape):
        value = data
        for i in index:
            value = value[i]
        array[index] = _exact(value)
    return array


def scalar(value, what: str, default) -> sp.Expr:
    """A single exact value (a number or a name) such as ε or the momentum."""
    if value is None:
        return default
    values = as_array(value, what).ravel()
    if len(values) != 1:
        raise CnnCalcError(f"{what}: expected one value, got {len(values)}")
    result = values[0]
    if result.is_number and result < 0:
        raise CnnCalcError(f"{what} must not be negative, got {sp.sstr(result)}")
    return result


def affine(values, what: str, shape: tuple[int, ...], layout: str, elementwise: bool,
           default) -> np.ndarray:
    """γ or β, broadcastable against the canonical tensor of ``shape``.

    One value per channel (or a single value for all); with ``elementwise`` (layer
    norm, as ``nn.LayerNorm``) also one value per element of an example.
    """
    n, c, *spatial = shape
    if values is None:
        return np.full((1, c) + (1,) * len(spatial), default, dtype=object)
    flat = as_array(values, what).ravel()
    if len(flat) == 1:
        flat = np.repeat(flat, c)
    if len(flat) == c:
        return flat.reshape((1, c) + (1,) * len(spatial))
    per_example = c * int(np.prod(spatial, dtype=int))
    if elementwise and len(flat) == per_example and spatial:
        user = [1 if a == "N" else s for a, s in zip(layout, _user_shape(shape, layout))]
        return to_canonical(flat.reshape(user), layout)
    unit = "channels" if spatial else "features"
    alternative = (f" (or {per_example}, one per element of an example as nn.LayerNorm)"
                   if elementwise and spatial else "")
    raise CnnCalcError(f"{what} has {len(flat)} values but there are {c} {unit}{alternative}")


def _user_shape(shape: tuple[int, ...], layout: str) -> tuple[int, ...]:
    """The canonical shape back in the user's layout."""
    named = {"N": shape[0], "C": shape[1], **dict(zip(spatial_axes(layout), shape[2:]))}
    return tuple(named[a] for a in layout)


# --- presenting ---------------------------------------------------------------------------------

def _shown(a: np.ndarray):
    """A row Matrix, Matrix or N-D Array, as the rank asks."""
    if a.ndim == 0:
        return a.item()
    if a.ndim == 1:
        return sp.Matrix([list(a)])
    if a.ndim == 2:
        return sp.Matrix(a.tolist())
    return sp.Array(a.tolist())


def _shown_stats(stats: np.ndarray, layout: str, slicing: Slicing):
    """Statistics in the user's layout: keepdims for a matrix, else the kept axes only."""
    user = from_canonical(stats, layout)
    if user.ndim <= 2:
        return _shown(user)
    over = {"N": slicing.over_batch, "C": False,
            **dict(zip(spatial_axes(layout), slicing.over_spatial))}
    return _shown(np.squeeze(user, tuple(i for i, a in enumerate(layout) if over[a])))


def _term(value, first: bool) -> str:
    value = sp.sympify(value)
    text = sp.sstr(value)
    if first:
        return text
    if value.is_Number and value < 0:
        return f" - {sp.sstr(-value)}"
    return f" + ({text})" if value.is_Add else f" + {text}"


def _sum(values: Sequence) -> str:
    """``12 + 14 - 5``, elided in the middle when long."""
    if len(values) > MAX_TERMS:
        head, tail = values[:MAX_TERMS - 2], values[-1:]
        return ("".join(_term(v, i == 0) for i, v in enumerate(head)) + " + …"
                + _term(tail[0], False))
    return "".join(_term(v, i == 0) for i, v in enumerate(values))


def _minus(a, b) -> str:
    """``a - b`` written out, with the brackets it needs."""
    a, b = sp.sympify(a), sp.sympify(b)
    left = f"({sp.sstr(a)})" if a.is_Add else sp.sstr(a)
    if b == 0:
        return left
    if b.is_Number and b < 0:
        return f"{left} + {sp.sstr(-b)}"
    return f"{left} - ({sp.sstr(b)})" if b.is_Add else f"{left} - {sp.sstr(b)}"


def _centred(value, mean) -> str:
    """``(z - μ)`` in brackets, or just ``z`` (``(-5)``) when μ = 0."""
    return _atom(value) if mean == 0 else f"({_minus(value, mean)})"


def _atom(value) -> str:
    """sympy's text for a value, bracketed unless it is a whole number, a name or a root."""
    value = sp.sympify(value)
    text = sp.sstr(value)
    simple = value.is_Integer or value.is_Symbol or (value.is_Pow and value.exp == sp.S.Half)
    return text if simple and not text.startswith("-") else f"({text})"


def _ratio(numerator_text: str, total, m: int, result) -> str:
    """``(…)/m = total/m = result``, skipping a repeated form."""
    text = f"({numerator_text})/{m}"
    middle = f"{_atom(total)}/{m}"
    if middle != text:
        text += f" = {middle}"
    return text + ("" if sp.sstr(result) == middle else f" = {sp.sstr(result)}")


def _values(values: Sequence) -> str:
    shown = [sp.sstr(v) for v in values]
    if len(shown) > MAX_TERMS:
        shown = shown[:MAX_TERMS - 2] + ["…", shown[-1]]
    return "(" + ", ".join(shown) + ")"


@dataclass(frozen=True)
class _Names:
    """How slices and channels are named in the output (1-based, as in the homework problems)."""

    slicing: Slicing
    layout: str
    channels: int

    @property
    def unit(self) -> str:
        return "channel" if spatial_axes(self.layout) else "feature"

    def slice(self, index: tuple[int, ...]) -> str:
        s = self.slicing
        parts = []
        if not s.over_batch and "N" in self.layout:
            parts.append(f"example {index[0] + 1}")
        if s.groups == self.channels and self.channels > 1:
            parts.append(f"{self.unit} {index[1] + 1}")
        elif 1 < s.groups < self.channels:
            size = self.channels // s.groups
            parts.append(f"group {index[1] + 1} ({self.unit}s {index[1] * size + 1}–"
                         f"{(index[1] + 1) * size})")
        parts += [f"{a} = {i + 1}" for a, r, i in
                  zip(spatial_axes(self.layout), s.over_spatial, index[2:]) if not r]
        text = ", ".join(parts) or "the whole tensor"
        return text[0].upper() + text[1:]

    def subscript(self, index: tuple[int, ...]) -> str:
        s = self.slicing
        kept = [index[0]] if not s.over_batch and "N" in self.layout else []
        kept += [index[1]] if s.groups > 1 else []
        kept += [i for r, i in zip(s.over_spatial, index[2:]) if not r]
        return ",".join(str(i + 1) for i in kept)


def _slice_steps(x: np.ndarray, result: Normalized, names: _Names, eps) -> list[Item]:
    """μ, σ² and ẑ of each slice with the arithmetic written out."""
    steps = []
    view_hat = result.slicing.view(result.zhat)
    for count, (index, values) in enumerate(slices(x, result.slicing)):
        if count == MAX_SLICES:
            remaining = int(np.prod(result.mean.shape)) - MAX_SLICES
            steps.append(Item("…", f"{remaining} more slices, computed the same way"))
            break
        sub, mean, var = names.subscript(index), result.mean[index], result.var[index]
        note, tag = names.slice(index), f"_{sub}" if sub else ""
        squares = [f"{_centred(v, mean)}²" for v in values]
        if len(squares) > MAX_TERMS:
            squares = squares[:MAX_TERMS - 2] + ["…", squares[-1]]
        steps += [
            Item(f"μ{tag}", _ratio(_sum(values), sp.Add(*values), result.m, mean), note,
                 rf"\mu_{{{sub}}}"),
            Item(f"σ²{tag}", _ratio(" + ".join(squares), result.var[index] * result.m,
                                     result.m, var), note, rf"\sigma^2_{{{sub}}}"),
            Item(f"ẑ{tag}", f"{_centred(_Z, mean)}/√({sp.sstr(var)} + {sp.sstr(eps)}) = "
                 f"{_centred(_Z, mean)}/{_atom(sp.sqrt(var + eps))} → "
                 f"{_values(list(view_hat[result.slicing.box(index)].ravel()))}", note,
                 rf"\hat z_{{{sub}}}"),
        ]
    return steps


def _affine_steps(result: Normalized, gamma: np.ndarray, beta: np.ndarray,
                  names: _Names) -> list[Item]:
    """z̃ = γ ẑ + β, one line per channel (or one line for elementwise γ, β)."""
    if gamma.size != gamma.shape[1] or beta.size != beta.shape[1]:
        return [Item("z̃", "γ ⊙ ẑ + β, one γ and β per element of an example (nn.LayerNorm)",
                     latex=r"\tilde z")]
    steps = []
    for c in range(gamma.shape[1]):
        if c == MAX_SLICES:
            steps.append(Item("…", f"{gamma.shape[1] - c} more {names.unit}s the same way"))
            break
        g, b = gamma.flat[c], beta.flat[c]
        values = list(result.ztilde[:, c].ravel())
        steps.append(Item(f"z̃ ({names.unit} {c + 1})",
                          f"{sp.sstr(g)}·ẑ{_term(b, False)} → {_values(values)}",
                          latex=rf"\tilde z_{{{c + 1}}}"))
    return steps


# --- what the command verifies ------------------------------------------------------------------

def _mean_var(values: Sequence) -> tuple[sp.Expr, sp.Expr]:
    mean = sp.Add(*values) / len(values)
    return mean, sp.Add(*[(v - mean) ** 2 for v in values]) / len(values)


def _checks(result: Normalized, gamma: np.ndarray, beta: np.ndarray, eps) -> tuple[Check, ...]:
    """Zero mean and variance σ²/(σ² + ε) of ẑ in every slice; for slices inside one
    channel also mean β and variance γ²σ²/(σ² + ε) of z̃."""
    s = result.slicing
    moments = [(index, _mean_var(values)) for index, values in slices(result.zhat, s)]
    target = "1 (ε = 0)" if eps == 0 else "σ²/(σ² + ε)"
    checks = [
        Check("every slice of ẑ has mean 0", all(_is_zero(mean) for _, (mean, _) in moments)),
        Check(f"every slice of ẑ has (biased) variance {target}",
              all(_is_zero(var - result.var[i] / (result.var[i] + eps))
                  for i, (_, var) in moments)),
    ]
    channels = result.zhat.shape[1]
    if s.groups == channels and gamma.size == channels and beta.size == channels:
        holds = True
        for index, values in slices(result.ztilde, s):
            g, b = gamma.flat[index[1]], beta.flat[index[1]]
            mean, var = _mean_var(values)
            v = result.var[index]
            holds = holds and _is_zero(mean - b) and _is_zero(var - g**2 * v / (v + eps))
        checks.append(Check("every slice of z̃ has mean β and variance γ²σ²/(σ² + ε) of its "
                            "channel", holds))
    return tuple(checks)


# --- the two derivations ------------------------------------------------------------------------

def _choose_slicing(kind, axes, layout: str, channels: int, n_spatial: int, groups) -> Slicing:
    if kind is not None and kind not in KINDS:
        raise CnnCalcError(f"--kind: {kind!r} is not one of {', '.join(KINDS)}")
    if axes is None:
        if kind is None:
            raise CnnCalcError("give --kind batch|layer|instance|group (or --axes to reduce "
                               "over named axes)")
        return kind_slicing(kind, channels, n_spatial, groups)
    chosen = axes_slicing(axes, layout, channels)
    if kind is not None:
        expected = kind_slicing(kind, channels, n_spatial, groups)
        if expected != chosen:
            raise CnnCalcError(f"--axes {axes} reduces over {reduced_letters(chosen, layout)}, "
                               f"but {kind} norm reduces over "
                               f"{reduced_letters(expected, layout) or 'channel groups'} in "
                               f"the layout {layout}; give one of --kind and --axes")
    return chosen


def _slice_description(kind: str | None, slicing: Slicing, layout: str, unit: str) -> str:
    spatial = " and spatial positions" if spatial_axes(layout) else ""
    if kind == "batch":
        return f"one slice per {unit}: its values over the batch{spatial}"
    if kind == "layer":
        return f"one slice per example: all its {unit}s{spatial}"
    if kind == "instance":
        return "one slice per example and channel: the spatial positions of one map"
    if kind == "group":
        return f"one slice per example and group of C/G consecutive {unit}s{spatial}"
    return f"slices reduced over the axes {reduced_letters(slicing, layout)}"


def _layout_note(layout: str) -> str:
    if layout == "CN":
        return ("Layout CN: rows are features (channels), columns are the examples of the "
                "batch, as in the homework problems; --layout NC reads a batch × features matrix.")
    return (f"Layout {layout}: N is the batch, C the channels (features), "
            f"{', '.join(spatial_axes(layout)) or 'no'} spatial axes; --layout names the "
            "axes in the order written (e.g. NC, NHWC).")


def _decimal(value) -> str:
    """``1/10`` as ``0.1`` where that is exact, else sympy's form."""
    value = sp.sympify(value)
    if value.is_Rational and sp.Rational(repr(float(value))) == value:
        return repr(float(value)).removesuffix(".0")
    return sp.sstr(value)


def _fraction(value, what: str, default) -> sp.Expr:
    result = scalar(value, what, default)
    if result.is_number and result > 1:
        raise CnnCalcError(f"{what} must lie between 0 and 1, got {sp.sstr(result)}")
    return result


def normalize(data, kind: str | None = None, *, layout: str | None = None,
              axes: str | None = None, groups: int | None = None, gamma=None, beta=None,
              eps=None, momentum=None) -> Derivation:
    """μ, σ², ẑ and z̃ of ``data`` (text or nested numbers), worked step by step.

    ``layout`` letters name the axes of ``data`` (default CN for a matrix:
    features × batch; NCL, NCHW, NCDHW for 3- to 5-D); ``axes`` reduces over
    named axes instead of a ``kind``. ``gamma``/``beta``: one value per channel
    (or one for all; default 1 and 0); ``eps`` defaults to PyTorch's 1e-5.
    """
    user = as_array(data, "data")
    if user.ndim == 0:
        raise CnnCalcError("data: give a matrix (features × batch) or an N×C×H×W tensor, "
                           "not a single number")
    layout = parse_layout(layout, user.ndim, DATA_LAYOUTS, "data")
    x = to_canonical(user, layout)
    channels = x.shape[1]
    slicing = _choose_slicing(kind, axes, layout, channels, x.ndim - 2, groups)
    eps = scalar(eps, "--eps", DEFAULT_EPS)
    momentum = _fraction(momentum, "--momentum", DEFAULT_MOMENTUM)
    gamma = affine(gamma, "--gamma", x.shape, layout, kind == "layer", sp.Integer(1))
    beta = affine(beta, "--beta", x.shape, layout, kind == "layer", sp.Integer(0))
    names = _Names(slicing, layout, channels)
    result = normalize_canonical(x, slicing, gamma, beta, eps, names.slice)

    def stats(a):
        return _shown_stats(a, layout, slicing)

    keep = "×".join(str(d) for d in from_canonical(result.mean, layout).shape)
    results = [
        Item("μ", stats(result.mean), f"slice means, broadcast shape {keep}", r"\mu"),
        Item("σ²", stats(result.var), "biased slice variances (divide by m)", r"\sigma^2"),
        Item("ẑ", _shown(from_canonical(result.zhat, layout)), "(z − μ)/√(σ² + ε)", r"\hat z"),
        Item("z̃", _shown(from_canonical(result.ztilde, layout)), "γ ẑ + β", r"\tilde z"),
    ]
    steps = _slice_steps(x, result, names, eps) + _affine_steps(result, gamma, beta, names)
    is_batch = kind == "batch" or (kind is None and slicing == kind_slicing(
        "batch", channels, x.ndim - 2, None))
    notes = [_layout_note(layout),
             f"σ² is the biased variance (divide by m = {result.m}), as normalization in "
             "training mode uses; PyTorch's running variance takes the unbiased "
             "m/(m − 1)·σ².",
             "Slices, examples and features are numbered from 1, as in the homework problems."]
    if is_batch and result.m > 1:
        run_mean, run_var = running_statistics(result.mean, result.var, result.m, momentum)
        mom = _decimal(momentum)
        results += [
            Item("running_mean", stats(run_mean), f"(1 − {mom})·0 + {mom}·μ: PyTorch's "
                 "running mean after this batch, from its initial 0"),
            Item("running_var", stats(run_var), f"(1 − {mom})·1 + {mom}·{result.m}/"
                 f"{result.m - 1}·σ²: running variance (unbiased) after this batch, from 1"),
        ]
        notes.append("In inference (model.eval()) batch norm normalizes with running_mean "
                     "and running_var instead of μ and σ², so an example's output does not "
                     "depend on the rest of its batch (see --shape).")
    elif not is_batch:
        notes.append("This normalization computes the same statistics in training and in "
                     "inference; it keeps no running statistics.")
    what = ("a matrix (features × batch)" if layout == "CN" else
            "a matrix (batch × features)" if layout == "NC" else f"an array ({layout})")
    # NOTE: the shape after the noun, so the article never meets a number (a 2, an 8)
    title = (f"{_TITLES[kind]} normalization" if kind else "Normalization over "
             f"{reduced_letters(slicing, layout)}") + f" of {what} of shape {_dims(user.shape)}"
    inputs = (
        Item("z", _shown(user), _slice_description(kind, slicing, layout, names.unit)),
        Item("γ", tuple(gamma.ravel()), "scale", r"\gamma"),
        Item("β", tuple(beta.ravel()), "shift", r"\beta"),
        Item("ε", eps, "added to σ² under the square root", r"\varepsilon"),
        Item("m", result.m, "values per slice"),
    )
    return Derivation(title, tuple(results), tuple(steps), _checks(result, gamma, beta, eps),
                      tuple(notes), inputs)


# --- the shapes of the statistics ---------------------------------------------------------------

def _infer_shape_layout(parts: list[str]) -> str | None:
    """``NxHxWxC`` names its own layout when every size is a distinct single letter."""
    letters = "".join(parts)
    if all(len(p) == 1 and p.isalpha() for p in parts) and len(set(letters)) == len(letters):
        return letters
    return None


def _prod(values) -> sp.Expr:
    return sp.Mul(*values)


def _kind_shapes(kind: str, dims: dict, layout: str, G, momentum) -> list[Item]:
    """Shapes, counts and the training/inference story of one kind."""
    N, C = dims["N"], dims["C"]
    S = [dims[a] for a in spatial_axes(layout)]
    keep = {"batch": {"C": C}, "layer": {"N": N}, "instance": {"N": N, "C": C},
            "group": {"N": N, "C": G}}[kind]
    shape = tuple(keep.get(a, sp.Integer(1)) for a in layout)
    m = {"batch": N * _prod(S), "layer": C * _prod(S), "instance": _prod(S),
         "group": C / G * _prod(S)}[kind]
    per = {"batch": f"one per channel ({_expr(_prod(shape))})",
           "layer": f"one per example ({_expr(_prod(shape))})",
           "instance": f"one per example and channel ({_expr(_prod(shape))})",
           "group": f"one per example and group of C/G channels ({_expr(_prod(shape))})"}[kind]
    view = (f", on the view {_dims((N, G, C / G, *S))} of the input" if kind == "group"
            else "")
    shape_note = f"{_dims(shape)} in {layout}: {per}, each over m values{view}"
    if kind == "instance" and not S:
        shape_note += ("; degenerate without spatial axes: each slice is one value, so "
                       "σ² = 0 and ẑ = 0")
    params = {"batch": C, "layer": C * _prod(S), "instance": sp.Integer(0), "group": C}[kind]
    params_note = {
        "batch": "this many of each: nn.BatchNorm has one γ and one β per channel",
        "layer": "this many of each: nn.LayerNorm over all non-batch axes has one per "
                 "element; GroupNorm(1, C) is the same normalization with C of each",
        "instance": "nn.InstanceNorm's default affine=False has none; affine=True has C "
                    "of each",
        "group": "this many of each: nn.GroupNorm has one γ and one β per channel, not "
                 "per group"}[kind]
    buffers = 2 * C if kind == "batch" else sp.Integer(0)
    buffers_note = {
        "batch": "running_mean and running_var, C each; num_batches_tracked not counted",
        "instance": "none by default; 2·C with track_running_stats=True",
    }.get(kind, "no running statistics")
    mom = _decimal(momentum)
    if kind == "batch":
        training = ("μ and σ² of the current batch, σ² biased (divide by m); then running_mean "
                    f"← (1 − {mom})·running_mean + {mom}·μ and running_var ← (1 − {mom})·"
                    f"running_var + {mom}·m/(m − 1)·σ², the unbiased variance "
                    f"(momentum = {mom})")
        inference = ("running_mean and running_var replace μ and σ²: fixed numbers, so each "
                     "example is normalized independently of the others in its batch and the "
                     "test batch size does not change any output (a batch of 1 works)")
    else:
        training = "μ and σ² of each example alone (biased σ²); no running statistics"
        inference = ("the same computation as in training: an example's output never depends "
                     "on the other examples, so the batch size does not matter")
        if kind == "instance":
            inference += (" (PyTorch default track_running_stats=False; with True, running "
                          "statistics of C values are kept and used in eval mode, as in "
                          "batch norm)")
    return [
        Item(f"{kind}: μ, σ²", shape, shape_note),
        Item(f"{kind}: m", m, "values behind each statistic"),
        Item(f"{kind}: γ, β", params, params_note),
        Item(f"{kind}: buffers", buffers, buffers_note),
        Item(f"{kind}: training", training),
        Item(f"{kind}: inference", inference),
    ]


def statistic_shapes(shape: str, kind: str | None = None, *, groups=None,
                     layout: str | None = None, momentum=None) -> Derivation:
    """The shapes of μ and σ² each kind computes on an input ``shape`` (``NxCxHxW``,
    ``NxC``, numbers or names), their parameters and buffers, training vs inference."""
    from ..analysis import parse_size

    if kind is not None and kind not in KINDS:
        raise CnnCalcError(f"--kind: {kind!r} is not one of {', '.join(KINDS)}")
    parts = [p for p in re.split(r"[x×,\s]+", shape.strip()) if p]
    if not 2 <= len(parts) <= 5:
        raise CnnCalcError(f"--shape: {shape!r} should be 2 to 5 sizes such as NxC or NxCxHxW")
    layout = parse_layout(layout if layout is not None else _infer_shape_layout(parts),
                          len(parts), SHAPE_LAYOUTS, "--shape")
    if "N" not in layout or "C" not in layout:
        raise CnnCalcError(f"--shape: the layout {layout} needs a batch axis N and a channel "
                           "axis C (name them so, or give --layout)")
    dims = {a: parse_size(p, "--shape") for a, p in zip(layout, parts)}
    kinds = KINDS if kind is None else (kind,)
    G = sp.Symbol("G", integer=True, positive=True)
    if groups is not None:
        G = parse_size(str(groups), "--groups")
    if "group" in kinds and G.is_Integer and dims["C"].is_Integer and dims["C"] % G:
        raise CnnCalcError(f"--groups {G} does not divide the {dims['C']} channels")
    momentum = _fraction(momentum, "--momentum", DEFAULT_MOMENTUM)
    results = [item for k in kinds for item in _kind_shapes(k, dims, layout, G, momentum)]
    notes = [
        "Shapes are the keepdims (broadcastable) form, in the layout of --shape; group norm "
        "writes G where the channels were.",
        "Normalization divides by the biased σ² (over m values); PyTorch's running variance "
        "uses the unbiased m/(m − 1)·σ².",
    ]
    if "batch" in kinds:
        notes.append("The layout matters only for where the 1s stand: for a conv output "
                     "N×H×W×C (TensorFlow, the backpropagation homework, problem 4) batch "
                     "norm's μ is 1×1×1×C, in PyTorch's N×C×H×W it is 1×C×1×1: the same C "
                     "values (--layout NHWC prints the former).")
    # NOTE: the shape after the noun, so the article never meets a number (a 2, an 8)
    title = ("Normalization statistics of an input of shape "
             f"{_dims(tuple(dims.values()), layout)}")
    inputs = (Item("input", tuple(dims.values()), f"layout {layout}"),)
    if "group" in kinds and G.is_Integer:
        inputs += (Item("G", G, "channel groups"),)
    elif "group" in kinds:
        notes.append("G is the number of channel groups, a divisor of C (--groups gives it).")
    return Derivation(title, tuple(results), (), (), tuple(notes), inputs)
