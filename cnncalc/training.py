"""What one training step costs on top of the forward pass: backward MACs and memory.

Pure functions over the analysed rows (which carry each layer's record and the
rows feeding it). Conventions, written once here and in docs/conventions.md:

* A tensor needs a gradient when some layer upstream of it has trainable
  parameters; the network's input never does. A layer takes part in the
  backward pass ("is in the graph") when its input needs a gradient or it has
  trainable parameters of its own.
* Backward MACs of a conv / linear layer: the input gradient (a transposed
  product with the same weights) and the weight gradient (input against output
  gradient) each cost as much as the forward; the first is skipped when the
  input needs no gradient (the first layer, everything below the lowest
  trainable layer), the second for a frozen layer. Bias gradients are sums,
  not MACs.
* Activations kept for backward are the tensors PyTorch's autograd saves
  (checked with ``torch.autograd.graph.saved_tensors_hooks``), each counted
  once: a tensor kept by two layers (a ReLU's output that the next conv also
  keeps as its input) is charged to the first. Parameters and running
  statistics that autograd also saves are model state, not counted here
  (instance norm's copies of them, repeated per sample, are counted).
* Memory is in bytes of one dtype for parameters, buffers, gradients,
  optimizer state and activations (no mixed precision). Norm statistics are
  kept in float32, max-pool indices in int64, dropout masks as bool.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from functools import singledispatch

import sympy as sp

from . import layers as L
from .errors import CnnCalcError
from .quantities import ONE, ZERO, prod, updated
from .receptive import channels_first

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
# optimizer -> state tensors per trainable parameter (Adam: first and second moments)
OPTIMIZER_STATE = {"sgd": 0, "momentum": 1, "adam": 2, "adamw": 2}
STAT_BYTES, INDEX_BYTES, MASK_BYTES = 4, 8, 1

QUANTITIES = ("backward_input_macs", "backward_weight_macs", "backward_recompute_macs",
              "saved_bytes", "param_bytes", "buffer_bytes", "grad_bytes", "optimizer_bytes",
              "training_bytes")
# what freezing changes (the rest, parameters and buffers, stays in memory either way)
SAVINGS = ("backward_macs", "grad_bytes", "optimizer_bytes", "saved_bytes", "training_bytes")


@dataclass(frozen=True)
class Keep:
    """One tensor a layer's backward reads: the layer's ``input`` or ``output``, or a
    private ``extra`` of ``elements`` items, ``itemsize`` bytes each (None: the dtype)."""

    role: str
    elements: sp.Expr = ZERO
    itemsize: int | None = None
    index: int = 0  # which input, for a layer with several
    for_grad_of: int | None = None  # kept only if this input needs a gradient
    tensor: object = None  # an extra that several rows may keep: counted once


_IN, _OUT = Keep("input"), Keep("output")
# Elementwise kinds: which side torch's backward formula reads.
_KEEPS_OUTPUT = {"relu", "sigmoid", "tanh", "softmax", "logsoftmax"}
_KEEPS_INPUT = {"relu6", "gelu", "silu", "elu", "leakyrelu", "hardswish", "hardsigmoid",
                "mish", "hardtanh", "softplus", "selu", "celu", "prelu"}


@singledispatch
def kept(layer, shape: tuple, out: tuple, batch: sp.Expr, weight_grad: bool) -> list[Keep]:
    """The tensors a layer in the graph keeps for backward (``shape`` and ``out``: its
    input and output, channels first, without batch)."""
    return []


@kept.register(L.Conv)
@kept.register(L.ConvTranspose)
def _conv(layer, shape, out, batch, weight_grad):
    # torch's convolution saves its input even when only the input gradient is wanted.
    return [_IN]


@kept.register
def _linear(layer: L.Linear, shape, out, batch, weight_grad):
    return [_IN] if weight_grad else []


@kept.register
def _pool(layer: L.Pool, shape, out, batch, weight_grad):
    if layer.mode == "max":
        return [_IN, Keep("extra", prod(out) * batch, INDEX_BYTES)]
    return [_IN]  # avg_pool's backward takes the input (for its geometry)


@kept.register
def _adaptive(layer: L.AdaptiveAvgPool, shape, out, batch, weight_grad):
    out_sizes = layer.output if isinstance(layer.output, tuple) else (layer.output,)
    return [] if all(o == 1 for o in out_sizes) else [_IN]  # the global case is a mean


def _stats(count: sp.Expr) -> Keep:
    """Mean and inverse standard deviation, ``count`` of each."""
    return Keep("extra", 2 * count, STAT_BYTES)


@kept.register
def _bn(layer: L.BatchNorm, shape, out, batch, weight_grad):
    return [_IN, _stats(shape[0])]


@kept.register
def _in(layer: L.InstanceNorm, shape, out, batch, weight_grad):
    # torch runs instance norm as a batch norm over N*C channels: the weight and the
    # running statistics are repeated N times first, and autograd keeps those copies
    # (temporaries, not the model state the conventions leave out)
    copies = int(layer.affine) + 2 * int(layer.track_running_stats)
    repeated = [Keep("extra", copies * batch * shape[0])] if copies else []
    return [_IN, _stats(batch * shape[0]), *repeated]


@kept.register
def _gn(layer: L.GroupNorm, shape, out, batch, weight_grad):
    return [_IN, _stats(batch * layer.groups)]


@kept.register
def _ln(layer: L.LayerNorm, shape, out, batch, weight_grad):
    if layer.channels:
        return [_IN, _stats(batch * prod(shape[1:]))]
    dims = len(shape) if layer.dims is None else layer.dims
    return [_IN, _stats(batch * prod(shape[:len(shape) - dims]))]


@kept.register
def _elementwise(layer: L.Elementwise, shape, out, batch, weight_grad):
    if layer.kind in _KEEPS_OUTPUT:
        return [_OUT]
    if layer.kind in _KEEPS_INPUT:
        return [_IN]
    if layer.kind == "softsign":  # x / (1 + |x|): x, and 1 + |x|
        return [_IN, Keep("extra", prod(out) * batch)]
    if layer.kind == "dropout" and layer.p != 0:
        return [Keep("extra", prod(out) * batch, MASK_BYTES)]
    if layer.kind == "stochastic_depth" and layer.p:
        return [Keep("extra", batch)]  # the noise, one value a sample, in the input's dtype
    return []


@kept.register
def _layer_scale(layer: L.LayerScale, shape, out, batch, weight_grad):
    return [_IN] if weight_grad else []  # x * gamma: x for gamma's gradient


@kept.register
def _merge(layer: L.Merge, shape, out, batch, weight_grad):
    # x * gate keeps each factor for the other's gradient. Concatenation and addition keep
    # nothing.
    if layer.kind != "mul":
        return []
    return [Keep("input", index=0, for_grad_of=1), Keep("input", index=1, for_grad_of=0)]


# -- memory layouts ---------------------------------------------------------------------
# Whether a tensor is a view or a copy, and so which storage a later layer keeps, depends
# on its strides. Four layouts are told apart, as torch lays them out:
#   DENSE  contiguous;
#   GAP    a channel slice of a DENSE tensor (``torch.chunk``): contiguous but for the
#          batch stride, so it flattens as a view;
#   LAST   channels-last strides, which ConvNeXt's LayerNorm2d (permute, layer_norm,
#          permute back) leaves and convs, norms, pools and activations carry on;
#   LAST_GAP  a channel slice of a LAST tensor.
DENSE, GAP, LAST, LAST_GAP = "dense", "gap", "last", "last_gap"
# Layers whose output takes channels-last strides from a channels-last input (torch's
# ``suggest_memory_format``); every other layer that computes writes a contiguous output.
_CARRY_LAST = (L.Conv, L.ConvTranspose, L.BatchNorm, L.GroupNorm, L.Pool, L.AdaptiveAvgPool,
               L.Upsample, L.Pad, L.LayerScale)


def _strided_sizes(layout: str, shape: tuple, batch: sp.Expr) -> tuple:
    """The sizes that make a tensor of this layout non-contiguous when all are above 1."""
    plane = prod(shape[1:])
    return {DENSE: (), GAP: (batch,), LAST: (shape[0], plane)}.get(layout, (plane, batch))


def contiguous(layout: str, shape: tuple, batch: sp.Expr) -> bool:
    """Whether a tensor of this layout and ``shape`` (channels first, without the batch) is
    contiguous all the same, because the dimensions its strides reorder have size 1.
    Symbolic sizes are taken to be above 1 (see :func:`_assumption`)."""
    sizes = _strided_sizes(layout, shape, batch)
    if layout == LAST_GAP:
        return all(s == 1 for s in sizes)
    return layout == DENSE or any(s == 1 for s in sizes)


def _assumption(layer, layout: str, shape: tuple, batch: sp.Expr) -> str | None:
    """What a copy charged for a non-contiguous tensor assumes of symbolic sizes."""
    sizes = _strided_sizes(layout, shape, batch)
    if isinstance(layer, L.Flatten) and layout == LAST_GAP:
        sizes = sizes[:1]  # a slice of 1x1 planes flattens as a view at any batch
    symbolic = [s for s in sizes if not s.is_number]
    if not symbolic:
        return None
    join = " or " if layout == LAST_GAP else " and "
    return join.join(f"{s} > 1" for s in symbolic)


def layout_of(layer, inputs: list[str], shape: tuple, batch: sp.Expr) -> str:
    """The layout of a layer's output from its inputs' (``shape``: the first input's)."""
    first = inputs[0] if inputs else DENSE
    last = first in (LAST, LAST_GAP) and not contiguous(first, shape, batch)
    if isinstance(layer, L.LayerNorm) and layer.channels:
        return LAST
    if isinstance(layer, L.ChannelSplit):
        if layer.parts == 1:
            return first
        return LAST_GAP if first in (LAST, LAST_GAP) else GAP
    if isinstance(layer, L.Flatten):
        return GAP if first in (GAP, LAST_GAP) and is_view(layer, first, shape, batch) \
            else DENSE
    if is_view(layer, first, shape, batch):
        return first
    if isinstance(layer, L.Merge) and layer.kind == "cat":
        # a concatenation keeps channels-last only when every input has it
        return LAST if all(i in (LAST, LAST_GAP) for i in inputs) else DENSE
    # torch's elementwise ops, an add or mul among them, follow their first input's strides
    # (a residual's add: its body's, as torchvision's ``out += identity``)
    carries = isinstance(layer, (*_CARRY_LAST, L.Merge, L.Residual)) or (
        isinstance(layer, L.Elementwise) and layer.kind != "softmax")
    return LAST if carries and last else DENSE


def is_view(layer, layout: str, shape: tuple, batch: sp.Expr) -> bool:
    """Whether the layer's output is its input, reshaped (no new memory): ``layout`` and
    ``shape`` are its input's."""
    if isinstance(layer, L.ChannelSplit):
        return True
    if isinstance(layer, L.Flatten):
        # channels-last strides do not merge into one dimension: flatten copies
        return layout == GAP or contiguous(layout, shape, batch) or prod(shape[1:]) == 1
    if isinstance(layer, L.Shuffle):
        # torchvision's shuffle is view, transpose, contiguous(), view: with one group, or
        # one channel a group, the transpose moves a dimension of size 1 and leaves a
        # contiguous tensor, which contiguous() returns as it is
        return ((layer.groups == 1 or layer.groups == shape[0])
                and contiguous(layout, shape, batch))
    if isinstance(layer, L.Elementwise):
        # stochastic depth and dropout with p = 0 return their input (torchvision's
        # StochasticDepth, torch's dropout)
        return layer.kind == "identity" or (
            layer.kind in ("stochastic_depth", "dropout") and layer.p == 0)
    return False


# -- freezing --------------------------------------------------------------------------

_KINDS: dict[str, tuple[type, ...]] = {
    "conv": (L.Conv,), "conv1d": (L.Conv,), "conv3d": (L.Conv,), "dwconv": (L.Conv,),
    "deconv": (L.ConvTranspose,), "deconv1d": (L.ConvTranspose,),
    "deconv3d": (L.ConvTranspose,), "bn": (L.BatchNorm,), "ln": (L.LayerNorm,),
    "in": (L.InstanceNorm,), "gn": (L.GroupNorm,),
    "norm": (L.BatchNorm, L.LayerNorm, L.InstanceNorm, L.GroupNorm), "fc": (L.Linear,),
}
_RANGE = re.compile(r"^(\d+)(?:\s*-\s*(\d+))?$")


def freeze_text(freeze) -> str | None:
    """``"0-6,bn"`` as given, or a list such as ``[range(7), "bn"]`` written that way."""
    if freeze is None or isinstance(freeze, str):
        return freeze
    parts = []
    for item in freeze:
        if isinstance(item, range):
            parts.append(f"{item.start}-{item.stop - 1}" if len(item) else "")
        else:
            parts.append(str(item))
    return ",".join(parts)


def frozen_rows(text: str, rows) -> frozenset[int]:
    """The rows that ``--freeze`` selects: index ranges (``0-6``, inclusive), single
    indices, layer kinds (``conv``, ``bn``, ``norm``, ``fc``, or a row type such as
    ``batch_norm2d``) and row names or block prefixes (``basic3`` is ``basic3.*``)."""
    chosen: set[int] = set()
    last = len(rows) - 1
    tokens = [t.strip() for t in text.split(",")]
    if not any(tokens):
        raise CnnCalcError("--freeze: give layer indices (0-6), kinds (conv, bn) or names")
    for token in tokens:
        if not token:
            raise CnnCalcError(f"--freeze: {text!r} has an empty item")
        m = _RANGE.match(token)
        if m:
            a = int(m.group(1))
            b = int(m.group(2)) if m.group(2) is not None else a
            if a > b:
                raise CnnCalcError(f"--freeze: {token} runs backwards (write {b}-{a})")
            if b > last:
                raise CnnCalcError(f"--freeze: {token} goes past the last layer, {last}")
            chosen.update(range(a, b + 1))
            continue
        chosen.update(_by_word(token, rows))
    return frozenset(chosen)


def _by_word(token: str, rows) -> set[int]:
    word = token.lower()
    kinds = _KINDS.get(L.ALIASES.get(word, word))
    found = {r.index for r in rows
             if (kinds is not None and isinstance(r.layer, kinds)) or r.type == word
             or r.name.lower() == word or r.name.lower().startswith(word + ".")}
    if found or kinds is not None:
        return found
    known = sorted(set(_KINDS) | {r.type for r in rows} | {r.name for r in rows})
    hint = difflib.get_close_matches(word, known, n=1)
    tip = f" (did you mean {hint[0]}?)" if hint else ""
    raise CnnCalcError(f"--freeze: {token!r} is not a layer index, kind or name{tip}")


# -- the walk --------------------------------------------------------------------------

def annotate(rows, batch: sp.Expr, frozen: frozenset[int], optimizer: str, dtype: str,
             layout: str, notes: list[str] | None = None) -> tuple:
    """The rows with trainable / frozen params and every training quantity filled in;
    what symbolic sizes are assumed to be is added to ``notes``."""
    if dtype not in DTYPE_BYTES:
        raise CnnCalcError(f"--dtype must be one of {', '.join(DTYPE_BYTES)}, got {dtype!r}")
    if optimizer not in OPTIMIZER_STATE:
        raise CnnCalcError(f"--optimizer must be one of {', '.join(OPTIMIZER_STATE)}, "
                           f"got {optimizer!r}")
    b, states = DTYPE_BYTES[dtype], OPTIMIZER_STATE[optimizer]
    needs_grad: list[bool] = []  # does row i's output need a gradient?
    tensor: list[int] = []  # the tensor row i outputs: its own index, or its input's (views)
    elements: dict[int, sp.Expr] = {}  # a tensor's size, batch included: keeping a view
    # keeps all of it
    charged: set = set()  # tensors already kept by an earlier row (-1: the input; a Keep's
    # ``tensor`` for one that has no row)
    layouts: list[str] = []  # the strides of the tensor row i outputs (see layout_of)
    # torch.utils.checkpoint's segments (from_torch): those with trainable weights, and
    # those whose backward runs (decided at their first row)
    trains = {r.segment for r in rows if r.segment >= 0 and r.params != 0
              and r.index not in frozen}
    rerun: dict[int, str] = {}  # segment -> its kind, if backward runs it again
    keeping: dict[int, int] = {}  # segment -> its last row whose layer keeps something
    dead: set[int] = set()  # reentrant segments none of whose inputs needs a gradient
    again: dict[int, set] = {}  # segment -> the tensors its run in backward holds
    out = []
    for row in rows:
        if row.checkpoint == "reentrant" and not any(needs_grad[i] for i in row.holds
                                                     if i >= 0):
            dead.add(row.segment)  # torch gives nothing in it a gradient (and warns)
        is_frozen = row.index in frozen
        trainable = ZERO if is_frozen else row.params
        weight_grad = not is_frozen and row.params != 0 and row.segment not in dead
        # (work on weights reads weights, whatever row came before it)
        grad_in = row.segment not in dead and any(
            needs_grad[i] for i in row.inputs if i >= 0 and (rows[i].once or not row.once))
        needs_grad.append(grad_in or weight_grad)
        shape = channels_first(row.input_shape, layout)
        out_shape = channels_first(row.output_shape, layout)
        src = tensor[row.inputs[0]] if row.inputs and row.inputs[0] >= 0 else -1
        if (row.inputs and row.inputs[0] < 0 and -1 not in elements and not row.once
                and not any(place == 0 for place, _, _ in row.fresh)):  # (not a new tensor)
            elements[-1] = prod(shape) * batch
        ins = [layouts[i] if i >= 0 else DENSE for i in row.inputs] or [DENSE]
        view = is_view(row.layer, ins[0], shape, batch)
        layouts.append(layout_of(row.layer, ins, shape, batch))
        for place, made, size in row.fresh:  # a view of a new tensor made from the input
            if view and place == 0:
                src = made
                elements.setdefault(made, size)
        tensor.append(src if view else row.index)
        if not view:
            # (weight-only work, done once whatever the batch, makes one tensor)
            elements[row.index] = row.out_elements if row.out_elements is not None else \
                prod(out_shape) * (ONE if row.once else batch)
        copies = not view and (isinstance(row.layer, L.Flatten) or (
            isinstance(row.layer, L.Shuffle) and row.layer.groups in (1, shape[0])))
        saved = ZERO
        if row.holds and row.segment not in dead and (
                row.segment in trains or any(needs_grad[i] for i in row.holds if i >= 0)):
            # a checkpointed segment keeps its inputs, and backward runs it again
            rerun[row.segment] = row.checkpoint
            for i in row.holds:
                which = tensor[i] if i >= 0 else -1
                if which not in charged:
                    charged.add(which)
                    saved += elements.get(which, prod(shape) * batch) * b
            again[row.segment] = {tensor[i] if i >= 0 else -1 for i in row.holds}
        held = ZERO  # what it keeps: for backward, or (checkpointed) while run again
        if grad_in or weight_grad:
            n = ONE if row.once else batch  # (work on weights: once a pass)
            keeps = [*(row.keeps if row.keeps is not None
                       else kept(row.layer, shape, out_shape, n, weight_grad)), *row.also]
            if (isinstance(row.layer, L.Linear) and len(shape) > 1 and keeps
                    and not contiguous(ins[0], shape, batch)):
                # torch's linear folds the leading dimensions into rows with reshape,
                # which copies a tensor whose strides do not allow it: the copy is kept
                keeps = [Keep("extra", prod(shape) * n)]
                copies = True
            # a checkpointed row keeps nothing now: backward makes it again (with its
            # segment's inputs, which the segment holds)
            pool = charged if row.segment < 0 else again.setdefault(row.segment, set())
            if row.segment >= 0 and keeps:
                keeping[row.segment] = row.index
            for keep in keeps:
                last = len(row.inputs) - 1  # (x * x: one input, kept for both)
                if keep.for_grad_of is not None:
                    other = row.inputs[min(keep.for_grad_of, last)] if row.inputs else -1
                    if other < 0 or not needs_grad[other]:
                        continue
                if keep.role == "extra":
                    if keep.tensor not in pool:
                        if keep.tensor is not None:  # (one that several rows may keep)
                            pool.add(keep.tensor)
                        held += keep.elements * (keep.itemsize or b)
                    continue
                size = None
                if keep.role == "output":
                    which = tensor[-1]
                elif not row.inputs:
                    which = -1
                else:
                    place = min(keep.index, last)
                    i = row.inputs[place]
                    which = tensor[i] if i >= 0 else -1
                    # a new tensor made from the input, or from a shape, by calls with no
                    # row (from_torch)
                    which, size = next(((t, n) for p, t, n in row.fresh if p == place),
                                       (which, None))
                    if row.once and size is None and (i < 0 or not rows[i].once):
                        continue  # work on weights reads a weight: model state
                if which not in pool:
                    pool.add(which)
                    held += (size if size is not None
                              else elements.get(which, prod(shape) * batch)) * (
                                  keep.itemsize or b)
        if row.segment < 0:
            saved += held
        assumed = _assumption(row.layer, ins[0], shape, batch) if copies else None
        if assumed and notes is not None:
            notes.append(f"{row.name}: the bytes kept count torch's copy of a strided "
                         f"tensor, made when {assumed} (at 1 it is a view)")
        grads = ZERO if row.segment in dead else trainable * b  # (None in torch)
        optim = states * grads
        # a product of two activations (attention's) has two input gradients, each as
        # costly as the product; its weights may have been counted by another row
        acts, weights = row.factors or (1, 1)
        if row.factors is not None:
            weight_grad = weights > 0 and not is_frozen
        out.append(updated(
            row, frozen=is_frozen, trainable_params=trainable,
            non_trainable_params=row.params - trainable,
            backward_input_macs=row.macs * acts if grad_in else ZERO,
            backward_weight_macs=row.macs * weights if weight_grad else ZERO,
            saved_bytes=saved, recompute_bytes=held if row.segment in rerun else ZERO,
            param_bytes=row.params * b, buffer_bytes=row.buffers * b,
            grad_bytes=grads, optimizer_bytes=optim,
            training_bytes=(row.params + row.buffers) * b + grads + optim + saved))
    return tuple(_recomputed(out, rerun, keeping))


def _recomputed(rows, rerun: dict[int, str], keeping: dict[int, int]):
    """Backward runs a checkpointed segment's forward again: whole, or (torch's early
    stop) until the last tensor it keeps is made, which a layer keeping its input (a
    conv, a linear layer) keeps before its product runs."""
    return [updated(r, backward_recompute_macs=r.macs) if r.segment in rerun and (
        rerun[r.segment] != "early" or r.index < keeping.get(r.segment, -1)) else r
        for r in rows]


def totals(rows) -> dict:
    total = {q: sp.Add(*(getattr(r, q) for r in rows)) for q in QUANTITIES}
    total["backward_macs"] = (total["backward_input_macs"] + total["backward_weight_macs"]
                              + total["backward_recompute_macs"])
    return total


def savings(frozen_total: dict, unfrozen_total: dict) -> dict:
    """What freezing saves: the same step with nothing frozen, minus this one."""
    return {q: unfrozen_total[q] - frozen_total[q] for q in SAVINGS}

