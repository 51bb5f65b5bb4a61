"""A live PyTorch model, analysed: run it once on the meta device and map what it calls.

The model runs on ``meta`` tensors (shapes only: no memory, no arithmetic) through
``torch.func.functional_call``, so the user's module and its weights are left as they
were. Forward hooks see each leaf module; a ``TorchFunctionMode`` sees every functional
call made outside them (``F.conv2d``, ``@``, ``torch.add``, ``x + y``). Each is mapped to
the layer record the layer language would build (``nn.Conv2d`` -> ``layers.Conv``) and
costed by :func:`quantities.cost` on the shape that actually reached it, so every
quantity and renderer works as for a spec. A call with no rule that is not on the
explicit free list (``torch_map.FREE_NAMES``), and a built-in module with no record
(``nn.LSTM``), run under a ``TorchDispatchMode`` that records the aten ops they run:
their products become rows costed by ``torch.utils.flop_counter``'s own formulas (so
they equal ``FlopCounterMode``), and an op that is neither a product nor known free
puts the call in ``unsupported``. Nothing passes as free unless it is known to be.

The result is a flat list of rows in execution order, not a tree: a residual block is
its body, its shortcut and an ``add`` row, in the order the model ran them, and each
row records the rows that feed it (``Row.inputs``). Parameters are attributed to the
first operation that uses them, so the total is ``sum(p.numel())`` over the parameters
the forward pass touches; tensors computed only from parameters (a reshaped weight, an
indexed bias table) are weight preparation, not layers. Views store nothing new and get
no row, except a flatten to one dimension, which the layer language has. A first
dimension that is not the batch (windows, heads) scales the row. A forward that needs
real values runs on the CPU with zeros; a TorchScript module runs on the CPU under the
dispatch mode alone; symbolic sizes (``3xHxW``) run on fake tensors with torch's
symbolic shapes. (Not named from_torch.py: the package attribute ``cnncalc.from_torch``
is the function.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import inspect
import itertools
import logging
import os
import random
import re
import sys
import warnings
from dataclasses import dataclass
from typing import Any

import sympy as sp

from . import layers as L
from . import training
from .analysis import (
    Analysis,
    _change_formula,
    _product,
    _Walker,
    finish,
    from_layout,
    parse_shape,
    parse_size,
    to_layout,
)
from .errors import CnnCalcError
from .quantities import ONE, ZERO, Cost, Shape, Step, cost, prod
from .torch_map import function_table, module_kind, module_record

MERGES = {"add": L.Merge("add"), "cat": L.Merge("cat"), "mul": L.Merge("mul")}
MULS = frozenset(("mul", "mul_", "rmul", "imul"))  # x * y by name (func.__name__, unpadded)
# A kept tensor's size per sample stands for this symbol until the batch is known.
PER_SAMPLE = sp.Symbol("per_sample_batch", positive=True, integer=True)
NO_MACS = "not mapped: a row with its output and parameters, but no MACs"
FACTORY = re.compile(r"^([A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*):([A-Za-z_]\w*)$")


@dataclass(frozen=True)
class Unsupported:
    """Something in the model that cnncalc could not cost, and why."""

    name: str
    type: str
    reason: str


@dataclass(frozen=True)
class Call:
    """One counted operation of the forward pass, with the shapes torch produced.

    ``layer`` is a layer record costed by ``quantities.cost`` on ``record_shape`` (the
    input without its first dimension); without one, ``kind`` names a row that has no
    record (``add``, ``cat``, ``matmul``, an unsupported module) and ``macs`` holds its
    multiply-adds per sample. ``scale`` is the first dimension over the batch the model
    ran at (not 1 when a model folds windows or heads into it), ``once`` marks work on
    weights alone, done once whatever the batch. ``params`` is what torch says the call
    owns (its parameters first used here).
    """

    name: str
    depth: int
    input_shape: Shape
    output_shape: Shape
    inputs: tuple[int, ...]
    params: int
    layer: Any = None
    kind: str = ""
    frozen: bool = False  # its parameters all have requires_grad=False
    record_shape: Shape = ()
    scale: Any = ONE
    macs: Any = ZERO
    once: bool = False
    keeps: tuple | None = None  # what autograd keeps, extras per sample (see Row.keeps)
    fresh: tuple = ()  # inputs that are new tensors, not their producer's (see Row.fresh)
    also: tuple = ()  # what calls on weights before it keep (see Row.also)
    out_elements: Any = None  # its output tensor's elements per sample, if not its shape's
    factors: tuple[int, int] | None = None  # a product's (activations, trainable weights)
    # torch.utils.checkpoint (see Row.segment): its segment, and on the segment's first
    # row the rows whose outputs the segment keeps and its kind
    segment: int = -1
    holds: tuple[int, ...] = ()
    checkpoint: str = ""


@dataclass(frozen=True)
class TorchAnalysis(Analysis):
    """An :class:`Analysis` of a traced model; ``network`` holds its :class:`Call` s."""

    unsupported: tuple[Unsupported, ...] = ()
    freeze_given: str | None = None  # --freeze as given, before requires_grad=False adds rows
    # (``notes``, inherited, says how it was traced where that is not the usual way)

    def subs(self, values: dict) -> TorchAnalysis:
        """Values for the batch or the size symbols (``3xHxW``): every call's shapes and
        counts are formulas in them."""
        known = {s.name for s in self.symbols}
        unknown = sorted(set(values) - known)
        if unknown:
            raise CnnCalcError(f"--subs: {', '.join(unknown)} is not a symbol of this analysis "
                               f"(its symbols: {', '.join(sorted(known)) or 'none'})")
        mapping = {L.symbol(k): sp.Integer(v) for k, v in values.items()}
        calls = tuple(dataclasses.replace(c, **{
            f.name: _put(getattr(c, f.name), mapping) for f in dataclasses.fields(c)
            if f.name != "layer"}) for c in self.network)
        return _analysis(calls, _put(from_layout(self.input_shape, self.layout), mapping),
                         _put(from_layout(self.output_shape, self.layout), mapping),
                         self.batch.xreplace(mapping), self.layout, self.name, self.unsupported,
                         {"optimizer": self.optimizer, "dtype": self.dtype,
                          "freeze": self.freeze_given}, self.notes)


def _put(value, mapping: dict):
    """``value`` with ``mapping`` put into every formula it holds: a call's shapes and
    counts, and what it keeps (tuples of formulas, :class:`training.Keep` s)."""
    if isinstance(value, sp.Basic):
        return value.xreplace(mapping)
    if isinstance(value, tuple):
        items = [_put(v, mapping) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: _put(getattr(value, f.name), mapping)
                                             for f in dataclasses.fields(value) if f.init})
    return value


# -- entry points ----------------------------------------------------------------------

def _torch():
    try:
        import torch
    except ImportError:
        raise CnnCalcError("--torch needs PyTorch (pip install torch)") from None
    return torch


def load_factory(target: str, search: str | None = None):
    """``package.module:factory`` -> the ``nn.Module`` it builds (importing runs its code).

    The module is imported with importlib from ``search`` (default: the current
    directory) or ``sys.path``; ``factory`` is a function or an ``nn.Module`` subclass,
    called with no arguments, or a module instance, taken as it is.
    """
    torch = _torch()
    m = FACTORY.match(target.strip())
    if not m:
        raise CnnCalcError(f"--torch: {target!r} should look like package.module:factory")
    module_name, attr = m.groups()
    folder = os.path.abspath(search or os.getcwd())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise CnnCalcError(f"--torch: no module named {exc.name!r} (run from the folder "
                               "that holds it, or set PYTHONPATH)") from None
        raise CnnCalcError(f"--torch: importing {module_name} failed: {_one_line(exc)}") from None
    except Exception as exc:  # the user's module is broken: say where, in one line
        raise CnnCalcError(f"--torch: importing {module_name} failed: {_one_line(exc)}") from None
    factory = getattr(module, attr, None)
    if factory is None:
        import difflib
        names = [n for n in dir(module) if not n.startswith("_")]
        hint = difflib.get_close_matches(attr, names, n=1)
        tip = f" (did you mean {hint[0]}?)" if hint else ""
        raise CnnCalcError(f"--torch: module {module_name} has no {attr!r}{tip}")
    if isinstance(factory, torch.nn.Module):  # a model built at import time
        return factory
    if not callable(factory):
        raise CnnCalcError(f"--torch: {target} is a {type(factory).__name__}, not a function "
                           "or an nn.Module class")
    try:
        model = factory()
    except Exception as exc:
        raise CnnCalcError(f"--torch: {target}() raised {_one_line(exc)}") from None
    if not isinstance(model, torch.nn.Module):
        raise CnnCalcError(f"--torch: {target}() returned a {type(model).__name__}, "
                           "not a torch.nn.Module")
    return model


def from_torch(model, input_shape=None, batch=1, *, example_inputs=None, input_dtype=None,
               layout: str = "chw", name: str | None = None, optimizer: str = "sgd",
               dtype: str = "float32", freeze=None) -> TorchAnalysis:
    """Analyse an ``nn.Module`` on an input of ``input_shape`` (without batch).

    ``input_shape`` is ``"3x224x224"`` or a tuple of numbers, in ``layout`` order, or a
    list of those for a model with several positional inputs; ``input_dtype`` gives their
    dtypes (one for all or one per input, e.g. ``"int64"`` for token ids; default float32).
    ``example_inputs`` instead takes what the model is called with: a tensor, a tuple of
    tensors or a dict of keyword tensors; only their shapes and dtypes are read (the batch
    is their first dimension). ``batch`` may be a symbol name: the model then runs at
    batch 2 (exact for models whose rows do not mix samples), at batch 3 to check the
    formulas, and at batch 1, where a slice across the batch is contiguous, to name what
    differs there. ``optimizer``,
    ``dtype`` and ``freeze`` are as for :func:`cnncalc.analyze` (``dtype`` is the training
    memory's, not the input's).

    >>> import torch
    >>> a = from_torch(torch.nn.Conv2d(3, 16, 3, padding=1), "3x32x32")
    >>> a.total["params"], a.total["macs"]
    (448, 442368)
    """
    torch = _torch()
    if not isinstance(model, torch.nn.Module):
        raise CnnCalcError(f"from_torch needs a torch.nn.Module, got {type(model).__name__}")
    if example_inputs is not None:
        if input_shape is not None:
            raise CnnCalcError("give the input shape or example_inputs, not both")
        if not (isinstance(batch, int) and batch == 1):
            raise CnnCalcError("with example_inputs the batch is their first dimension: "
                               "leave batch out")
        args, kwargs, shape, batch = _examples(torch, example_inputs)
        run_batch = int(batch)
    else:
        if input_shape is None:
            raise CnnCalcError("from_torch needs the input shape or example_inputs")
        if isinstance(batch, str):
            batch = parse_size(batch, "--batch")
        batch = sp.sympify(batch)
        if batch.is_number and (not batch.is_Integer or batch < 1):
            raise CnnCalcError(f"--batch must be a positive whole number, got {batch}")
        run_batch = int(batch) if batch.is_Integer else SYMBOLIC_BATCH_RUN
        shapes = _input_shapes(input_shape, layout)
        dtypes = _input_dtypes(torch, input_dtype, len(shapes))
        if any(not d.is_Integer for s in shapes for d in s):
            return _symbolic(torch, model, shapes, dtypes, batch, layout, name, {
                "optimizer": optimizer, "dtype": dtype, "freeze": freeze})
        args = tuple(torch.zeros((run_batch, *(int(d) for d in s)), dtype=t, device="meta")
                     for s, t in zip(shapes, dtypes))
        kwargs, shape = {}, shapes[0]
    compiled = getattr(model, "_orig_mod", None)  # torch.compile's wrapper: its model
    if isinstance(compiled, torch.nn.Module):
        model = compiled
    tracer = _Tracer(torch, model, run_batch)
    if isinstance(model, torch.jit.ScriptModule):
        calls, out, unsupported = tracer.run_compiled(args, kwargs)
    else:
        calls, out, unsupported = tracer.run(args, kwargs)
    options = {"optimizer": optimizer, "dtype": dtype, "freeze": freeze}
    result = _analysis(tuple(calls), shape, out, batch, layout, name or type(model).__name__,
                       tuple(unsupported), options, tuple(tracer.notes))
    if batch.is_Integer:
        return result
    return _check_batch(result, lambda at: from_torch(
        model, shapes if len(shapes) > 1 else shapes[0], at, input_dtype=dtypes,
        layout="chw", **options), {})


def _input_shapes(given, layout: str) -> list[Shape]:
    """One shape or several (a list of shapes, one per positional input), channels first."""
    several = isinstance(given, (list, tuple)) and given and all(
        isinstance(g, (str, list, tuple)) for g in given)
    shapes = []
    for i, one in enumerate(given if several else [given]):
        where = f"--input {i + 1}" if several else "--input"
        try:
            shape = parse_shape(one, layout) if isinstance(one, str) else from_layout(
                tuple(sp.sympify(d) for d in one), layout)
        except CnnCalcError as exc:
            raise CnnCalcError(f"{where}: {exc}") from None
        except (TypeError, ValueError, sp.SympifyError):
            raise CnnCalcError(f"{where}: {one!r} is not a shape such as 3x32x32") from None
        if any(not (d.is_Integer and d >= 1 or d.is_Symbol) for d in shape):
            raise CnnCalcError(f"{where}: a PyTorch model needs positive numbers or size "
                               f"symbols (got {'x'.join(map(str, shape))})")
        shapes.append(shape)
    return shapes


def input_dtype_of(torch, text, where: str = "--input-dtype"):
    """``"int64"``, ``"torch.long"`` or a ``torch.dtype`` -> the ``torch.dtype``."""
    if isinstance(text, torch.dtype):
        return text
    value = getattr(torch, str(text).strip().removeprefix("torch."), None)
    if not isinstance(value, torch.dtype):
        raise CnnCalcError(f"{where}: {text!r} is not a torch dtype (e.g. float32, int64)")
    return value


def _input_dtypes(torch, given, count: int) -> list:
    if given is None:
        return [torch.float32] * count
    if isinstance(given, (str, torch.dtype)):
        return [input_dtype_of(torch, given)] * count
    given = list(given)
    if len(given) not in (1, count):
        raise CnnCalcError(f"--input-dtype: {len(given)} dtypes for {count} inputs "
                           "(give one for all, or one per input)")
    dtypes = [input_dtype_of(torch, g, f"--input-dtype {i + 1}") for i, g in enumerate(given)]
    return dtypes * count if len(dtypes) == 1 else dtypes


def _examples(torch, given):
    """Example inputs -> meta copies (shape and dtype only), the first's shape and batch."""
    if isinstance(given, torch.Tensor):
        given = (given,)
    if isinstance(given, dict):
        items, args, kwargs = [(f"example_inputs[{k!r}]", v) for k, v in given.items()], (), {}
    elif isinstance(given, (tuple, list)):
        items = [(f"example_inputs[{i}]", v) for i, v in enumerate(given)]
    else:
        raise CnnCalcError("example_inputs should be a tensor, a tuple of tensors or a dict "
                           f"of keyword tensors, got {type(given).__name__}")
    metas = []
    for where, v in items:
        if isinstance(v, torch.Tensor):
            if v.dim() == 0:
                raise CnnCalcError(f"{where}: a 0-d tensor has no batch dimension")
            v = torch.zeros(v.shape, dtype=v.dtype, device="meta")
        metas.append(v)
    tensors = [m for m in metas if isinstance(m, torch.Tensor)]
    if not tensors:
        raise CnnCalcError("example_inputs holds no tensor")
    if isinstance(given, dict):
        kwargs = dict(zip(given, metas))
    else:
        args, kwargs = tuple(metas), {}
    first = tensors[0]
    shape = tuple(sp.Integer(int(d)) for d in first.shape[1:])
    return args, kwargs, shape, sp.Integer(int(first.shape[0]))


def _symbolic(torch, model, shapes, dtypes, batch, layout, name, options) -> TorchAnalysis:
    """Sizes given as symbols (``3xHxW``): the model runs once on fake tensors whose sizes
    are torch's own symbols, and each row's shapes and counts are torch's formulas in them.
    The result is checked against the numeric trace at two sizes; a model that fixes a
    size (a linear layer sized for 32x32) is refused, naming the size it needs."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import (
        DimDynamic,
        ShapeEnv,
        StatelessSymbolicContext,
    )
    symbols = sorted({d for s in shapes for d in s if not d.is_Integer}, key=str)
    hints = {d: 224 + 32 * i for i, d in enumerate(symbols)}
    env = ShapeEnv(duck_shape=False)
    fake = FakeTensorMode(shape_env=env)
    run_batch = int(batch) if batch.is_Integer else SYMBOLIC_BATCH_RUN
    args, names = [], {}
    for s, t in zip(shapes, dtypes):
        dynamic = [DimDynamic.STATIC] + [DimDynamic.STATIC if d.is_Integer else
                                         DimDynamic.DYNAMIC for d in s]
        real = torch.empty((run_batch, *(int(hints.get(d, d)) for d in s)), dtype=t,
                           device="meta")
        ft = fake.from_tensor(real, symbolic_context=StatelessSymbolicContext(
            dynamic_sizes=dynamic))
        for d, fd in zip(s, ft.shape[1:]):
            if not d.is_Integer:
                names[fd.node.expr] = d
        args.append(ft)
    tracer = _Tracer(torch, model, run_batch, fake=fake, names=names)
    log = logging.getLogger("torch._subclasses.fake_tensor")
    level, log.level = log.level, logging.CRITICAL  # its failures are ours to report
    try:
        calls, out, unsupported = tracer.run(tuple(args), {})
    finally:
        log.setLevel(level)
    for ours, theirs in ((d, e) for e, d in names.items()):
        fixed = env.replacements.get(theirs)
        if fixed is not None:
            value = _sympy_size(fixed, names) if fixed.free_symbols else fixed
            raise CnnCalcError(f"--input: the model fixes {ours} = {value}; give that number, "
                               "or a model whose sizes can vary")
    _check_guards(env, names, hints)
    result = _analysis(tuple(calls), shapes[0], out, batch, layout,
                       name or type(model).__name__, tuple(unsupported), options,
                       tuple(tracer.notes))

    def numeric(step: int, at):  # the numeric trace at the hints + step, batch at
        sizes = {d: hints[d] + step for d in symbols}
        given = [tuple(int(d.xreplace(sizes)) for d in s) for s in shapes]
        return from_torch(model, given if len(given) > 1 else given[0], batch=at,
                          input_dtype=list(dtypes), layout="chw", **options)
    for step in (0, 32, 1):  # the formulas, against the numeric trace (an odd size too)
        values = {d: hints[d] + step for d in symbols}
        if not batch.is_Integer:
            values[batch] = run_batch
        traced = numeric(step, run_batch)
        for q in ("params", "macs", "activations"):
            if sp.simplify(result.total[q].xreplace(values) - traced.total[q]) != 0:
                raise CnnCalcError(f"--input: the model's {q} do not follow one formula in "
                                   f"{', '.join(map(str, symbols))} (torch specialised a size "
                                   "on the way); give numbers")
    if batch.is_Integer:
        return result
    return _check_batch(result, functools.partial(numeric, 1),
                        {d: hints[d] + 1 for d in symbols})


# A symbolic batch runs the model at this batch: at batch 1 a slice across the batch is
# contiguous, so reshapes that copy at every larger batch are views, and a tensor whose
# first dimension is 1 cannot be told from a per-sample one.
SYMBOLIC_BATCH_RUN = 2
_CHECKED = (("params", "params"), ("macs", "MACs"), ("backward_macs", "backward MACs"),
            ("activations", "activations"), ("saved_bytes", "kept for backward"))


def _check_batch(result: TorchAnalysis, trace, sizes: dict) -> TorchAnalysis:
    """A symbolic batch's formulas (traced at batch 2), against ``trace(batch)``, the
    numeric trace at ``sizes`` for the size symbols. At batch 3 they must agree: a tensor
    taken as made once a pass that is made per sample (or the reverse) is refused. At
    batch 1 they may not (a linear layer on a slice across the batch keeps reshape's copy
    at batch 2 and up, the slice's whole storage at 1): a note gives batch 1's bytes. (The
    other counts are the formulas' there: at batch 1 the trace cannot tell a tensor made
    per sample from one made once, and shows some views as rows.)"""
    n, where = result.batch, "".join(f", {k} = {v}" for k, v in sizes.items())

    def differences(at: int, checked) -> str:
        numeric, values, found = trace(at), {**sizes, n: at}, []
        for q, label in checked:
            formula = sp.sympify(result.total[q]).xreplace(values)
            if sp.simplify(formula - numeric.total[q]) != 0:
                found.append(f"{label} {int(numeric.total[q]):,}, not {int(formula):,}")
        return "; ".join(found)
    wrong = differences(3, _CHECKED)
    if wrong:
        raise CnnCalcError(f"--batch: the formulas in {n} do not hold at {n} = 3{where}: "
                           f"the trace there gives {wrong}; give a number")
    at_one = differences(1, [("saved_bytes", "kept for backward")])
    if not at_one:
        return result
    note = (f"the formulas are for {n} >= 2: at {n} = 1{where}, the trace gives {at_one} "
            "(across a batch of one a slice is contiguous, so views and copies differ)")
    return dataclasses.replace(result, notes=(*result.notes, note))


GUARD_SIZES = (*range(224, 240), 256, 288, 301)  # every remainder mod 16, near the trace's


def _check_guards(env, names: dict, hints: dict) -> None:
    """Refuse formulas that hold for only some sizes. Where a size's formula depends on a
    remainder (a ceil_mode pool: whether the last window starts inside the input), torch
    takes the branch of the size it traced and records the condition as a guard; the
    formulas are then wrong for the other remainders, though right at the sizes traced.
    A guard that fails at sizes of the traced one's magnitude (every remainder mod 16)
    is such a condition; lower bounds (a map of at least 3 rows) hold there. ``names``:
    torch's size symbols -> the user's."""
    order = sorted(names, key=str)
    points = list(itertools.product(GUARD_SIZES, repeat=len(order)))
    if len(points) > 400:  # three sizes or more: a fixed sample of the grid
        points = random.Random(0).sample(points, 400)
    for guard in getattr(env, "guards", ()):
        expr = guard.expr
        if not expr.free_symbols or not expr.free_symbols <= names.keys():
            continue
        for point in points:
            try:
                holds = bool(expr.xreplace(dict(zip(order, map(sp.Integer, point)))))
            except TypeError:  # not decidable from the sizes alone: not ours to judge
                break
            if not holds:
                traced = ", ".join(f"{names[t]} = {hints[names[t]]}" for t in order)
                at = ", ".join(f"{names[t]} = {v}" for t, v in zip(order, point))
                raise CnnCalcError(
                    "--input: the model's sizes follow one formula for some input sizes "
                    f"and another for others (traced at {traced}, its formulas fail at "
                    f"{at}); give numbers")


def _attention_roles(ops: list[str]) -> list[str] | None:
    """Multi-head attention's products by role: last the projection out, before it AV and
    QK^T (two batched products), and before them the projections in."""
    if len(ops) < 4 or any(op not in ("bmm", "baddbmm") for op in ops[-3:-1]):
        return None
    return ["in_proj"] * (len(ops) - 3) + ["qk", "av", "out_proj"]


@functools.lru_cache(maxsize=4096)
def _agree(a, b) -> bool:
    """Two shapes as formulas (cnncalc's nested floors, torch's single FloorDiv): equal
    where sympy shows it, or else at every point of a grid of sizes (they are exact
    formulas of the same geometry, so a wrong record differs on it)."""
    if not isinstance(a, tuple) or len(a) != len(b):
        return False
    symbols = sorted(set().union(*(sp.sympify(d).free_symbols for d in a + b)), key=str)
    if not symbols:
        return False
    for point in itertools.product((33, 64, 97, 128, 224, 225, 301), repeat=len(symbols)):
        values = dict(zip(symbols, point))
        if any(sp.sympify(x).xreplace(values) != sp.sympify(y).xreplace(values)
               for x, y in zip(a, b)):
            return False
    return True


def _sympy_size(expr, names: dict) -> sp.Expr:
    """One of torch's size expressions in the user's symbols, with floor() for FloorDiv."""
    if expr in names:
        return names[expr]
    if expr.is_Integer:
        return sp.Integer(int(expr))
    if expr.is_Rational:
        return sp.Rational(int(expr.p), int(expr.q))
    if expr.is_Symbol:
        raise CnnCalcError(f"a size depends on the data ({expr}), not only on the input's "
                           "sizes: give numbers")
    args = [_sympy_size(a, names) for a in expr.args]
    kind = type(expr).__name__
    if kind == "FloorDiv":
        return sp.floor(args[0] / args[1])
    if kind == "CeilDiv":
        return sp.ceiling(args[0] / args[1])
    if kind in ("Mod", "PythonMod"):
        return sp.Mod(args[0], args[1])
    if kind in ("CleanDiv", "IntTrueDiv"):
        return args[0] / args[1]
    if kind in ("Max",):
        return sp.Max(*args)
    if kind in ("Min",):
        return sp.Min(*args)
    if isinstance(expr, (sp.Add, sp.Mul, sp.Pow)):
        return expr.func(*args)
    raise CnnCalcError(f"torch gives a size as {kind}(...), which has no formula here: "
                       "give numbers")


# -- from calls to rows ----------------------------------------------------------------

def _cost(call: Call, batch: sp.Expr) -> Cost:
    n = call.scale if call.once else batch * call.scale
    if call.layer is not None:
        c = cost(call.layer, call.record_shape, n)
        if c.params != call.params:  # shared or unusual weights: torch's count wins
            c = dataclasses.replace(c, params=sp.Integer(call.params),
                                    steps=tuple(s for s in c.steps if s.quantity != "params"))
        return dataclasses.replace(c, output_shape=call.output_shape)
    if call.macs:
        m_s, n_s = L.symbol("M"), L.symbol("N")
        formula = m_s * (n_s if n != 1 else ONE)
        bind = {m_s: call.macs, n_s: n}
        macs = formula.xreplace(bind)
        return Cost(call.kind, call.output_shape, sp.Integer(call.params), ZERO, macs,
                    (Step("macs", formula, bind, macs),))
    return Cost(call.kind, call.output_shape, sp.Integer(call.params))


def _analysis(calls: tuple[Call, ...], shape: Shape, out: Shape, batch: sp.Expr, layout: str,
              name: str | None, unsupported: tuple[Unsupported, ...],
              options: dict, notes: tuple[str, ...] = ()) -> TorchAnalysis:
    """Rows from the calls, then the same totals, training and receptive-field pass as a spec."""
    walker = _Walker(batch, layout, True)
    for call in calls:
        # An add or cat row carries the merge record the spec path's rows do (the graph
        # passes read the merge from it); quantities come from the call itself.
        layer = MERGES.get(call.kind) if call.layer is None else call.layer
        keeps = None if call.keeps is None else tuple(
            dataclasses.replace(k, elements=sp.sympify(k.elements).xreplace({PER_SAMPLE: batch}))
            for k in call.keeps)
        fresh = tuple((place, key, sp.sympify(size).xreplace({PER_SAMPLE: batch}))
                      for place, key, size in call.fresh)
        own = None if call.out_elements is None else sp.sympify(
            call.out_elements).xreplace({PER_SAMPLE: batch})
        walker.add_row(_cost(call, batch), call.name, call.input_shape, call.depth, layer,
                       call.inputs, keeps, call.once, fresh, call.also, own, call.factors,
                       call.segment, call.holds, call.checkpoint)
    # Parameters with requires_grad=False freeze their rows, as --freeze would.
    given = training.freeze_text(options["freeze"])
    frozen = [str(i) for i, call in enumerate(calls) if call.frozen]
    if frozen:
        options = {**options, "freeze": ",".join(([given] if given else []) + frozen)}
    rows, total, freeze, saves = finish(walker.rows, shape, batch, layout, **options)
    overall = sp.simplify(100 * (prod(out) - prod(shape)) / prod(shape))
    a_in, a_out = L.symbol("A_in"), L.symbol("A_out")
    step = Step("memory_change", _change_formula(),
                {a_in: _product(to_layout(shape, layout), ONE),
                 a_out: _product(to_layout(out, layout), ONE)}, overall)
    return TorchAnalysis(network=calls, input_shape=to_layout(shape, layout),
                         output_shape=to_layout(out, layout), batch=batch, layout=layout,
                         layers=rows, total=total, memory_change=overall, memory_step=step,
                         name=name, optimizer=options["optimizer"], dtype=options["dtype"],
                         freeze=freeze, freezing_saves=saves, unsupported=unsupported,
                         freeze_given=given, notes=notes)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().split("\n")[0]
    text = text if len(text) <= 160 else text[:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- the trace -------------------------------------------------------------------------

class _NeedsValues(Exception):
    """The forward failed on meta tensors in a way that real values would avoid."""


def _flat(value):
    """Every leaf of nested args, kwargs and results."""
    if isinstance(value, (tuple, list)):
        for v in value:
            yield from _flat(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _flat(v)
    else:
        yield value


def _key(t) -> int:
    """A tensor's storage, the unit autograd's saved bytes are counted in."""
    return t.untyped_storage()._cdata


@functools.cache
def _taint_mode(torch):
    """A dispatch mode that adds to ``keys`` the storages of every output of an aten op
    that read one of them: what was computed from the activations."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Taint(TorchDispatchMode):
        def __init__(self, keys: set):
            super().__init__()
            self.keys = keys

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if any(isinstance(t, torch.Tensor) and _key(t) in self.keys
                   for t in _flat((args, kwargs))):
                self.keys.update(_key(t) for t in _flat(out) if isinstance(t, torch.Tensor))
            return out

    return Taint


@contextlib.contextmanager
def _flash_attention(torch):
    """``F.scaled_dot_product_attention`` runs as torch's CPU flash kernel, which torch uses
    on the CPU (CUDA's keeps the same): the query, key, value, output and log-sum-exp are
    kept, and a boolean mask as the float mask it becomes. On the meta and fake tensors of
    a trace it would take the math path, which keeps the scores too. The module attribute
    is swapped (a function mode would not see the call inside ``nn.MultiheadAttention``'s
    functional forward). Where torch's CPU takes the math path (attention dropout, a
    mask that needs a gradient, inputs that are not 4-D), so does this
    (``nn.MultiheadAttention`` runs with its dropout; a model's own call passes what it
    passes in eval mode, where the trace runs: usually none)."""
    F = torch.nn.functional
    original = F.scaled_dot_product_attention

    def flash(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
              enable_gqa=False):
        qkv = (query, key, value)
        if (dropout_p > 0 or (attn_mask is not None and attn_mask.requires_grad)
                or any(t.dim() != 4 or t.stride(-1) != 1 for t in qkv)
                or len({t.shape[-1] for t in qkv}) > 1):
            # where the CPU takes the math path too: the flash kernel takes 4-D inputs with
            # one head size and unit last strides, and has no dropout or mask gradient
            return original(query, key, value, attn_mask, dropout_p, is_causal, scale=scale,
                            enable_gqa=enable_gqa)
        if attn_mask is not None and attn_mask.dtype == torch.bool:
            attn_mask = torch.zeros(attn_mask.shape, dtype=query.dtype,
                                    device=query.device).masked_fill(attn_mask.logical_not(),
                                                                     float("-inf"))
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            query, key, value, dropout_p, is_causal, attn_mask=attn_mask, scale=scale)[0]

    F.scaled_dot_product_attention = flash
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original


def _rows_as_view(t) -> bool:
    """Whether ``t``'s leading dimensions fold into one as a view (``reshape(-1, C)``, as a
    linear layer does): each one's stride is the next one's times its size, dimensions
    of size 1 aside."""
    dims = [(n, s) for n, s in zip(t.shape[:-1], t.stride()[:-1]) if n != 1]
    return all(s == s2 * n2 for (_, s), (n2, s2) in zip(dims, dims[1:]))


def _as_flash_lays_out(out, query):
    """The attention output as the CPU's flash kernel lays it out, its dimensions in the
    query's order of strides (a query transposed from (N, L, heads, E) gives an output
    that transposes back as a view; a contiguous one, an output that reshape copies):
    what later calls view or copy depends on it. The trace's own output is the math
    path's, contiguous."""
    order = sorted(range(4), key=lambda d: -query.stride(d))
    back = sorted(range(4), key=order.__getitem__)
    return out.permute(order).contiguous().permute(back)


def _count_mode(torch, free_aten, dims_of, value, factors_of):
    """A dispatch mode that records each aten op a call runs: its name, its FLOPs by
    ``torch.utils.flop_counter``'s own formulas (so a row equals FlopCounterMode's count),
    its output's dimensions, whether it is known to do no multiply-adds, and for a
    product its factors (see :meth:`_Tracer.factors`). A tensor the call makes from a
    shape (an RNN's zero initial state), or from such tensors alone by free ops, is no
    factor: it has no gradient."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    known: dict = {}

    def free(func) -> bool:
        if func not in known:
            name = str(func._overloadpacket).rpartition(".")[2]
            known[func] = (func.is_view or torch.Tag.pointwise in func.tags
                           or name in free_aten)
        return known[func]

    class Count(TorchDispatchMode):
        def __init__(self, ops: list):
            super().__init__()
            self.ops = ops
            self.made: dict[int, object] = {}  # tensors made from shapes (held: ids stay)

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            rule = flop_registry.get(func._overloadpacket)
            flops = value(rule(*args, **kwargs, out_val=out)) if rule else 0
            dims = dims_of(out) if flops != 0 and isinstance(out, torch.Tensor) else ()
            name = str(func._overloadpacket).rpartition(".")[2]
            self.ops.append((name, flops, dims, free(func),
                             factors_of(name, args, self.made) if flops != 0 else None))
            ins = [t for t in _flat((args, kwargs)) if isinstance(t, torch.Tensor)]
            if (not ins or free(func)) and all(id(t) in self.made for t in ins):
                self.made.update((id(t), t) for t in _flat(out) if isinstance(t, torch.Tensor))
            return out

    return Count


@contextlib.contextmanager
def _checkpoints_seen(torch, tracer):
    """Tells ``tracer`` where each segment that the model runs through
    ``torch.utils.checkpoint.checkpoint`` starts (``segment_start``, given the segment's
    inputs) and ends (``segment_end``), however it was imported: its two paths
    (reentrant or not) are looked up in its module when it runs."""
    module = torch.utils.checkpoint
    names = ("CheckpointFunction", "_checkpoint_without_reentrant_generator")
    saved = {n: getattr(module, n, None) for n in names}

    class Reentrant:
        @staticmethod
        def apply(function, preserve, *args):
            start = tracer.segment_start(args, "reentrant")
            with warnings.catch_warnings():  # (that no input needs a gradient)
                warnings.simplefilter("ignore", UserWarning)
                out = saved["CheckpointFunction"].apply(function, preserve, *args)
            tracer.segment_end(start)
            return out

    inner = saved["_checkpoint_without_reentrant_generator"]
    signature = inspect.signature(inner) if inner is not None else None

    def generator(*args, **kwargs):  # (checkpoint runs the segment at its yield)
        given = signature.bind(*args, **kwargs).arguments
        forced = getattr(module, "_enable_checkpoint_early_stop", None)
        early = given.get("early_stop", True) if forced is None else forced
        start = tracer.segment_start((given.get("args", ()), given.get("kwargs", {})),
                                     "early" if early else "whole")
        yield from inner(*args, **kwargs)
        tracer.segment_end(start)
    try:
        for name, value in zip(names, (Reentrant, generator)):
            if saved[name] is not None:
                setattr(module, name, value)
        yield
    finally:
        for name, value in saved.items():
            if value is not None:
                setattr(module, name, value)


class _Tracer:
    """Runs the model once on meta tensors and turns what it calls into :class:`Call` s."""

    def __init__(self, torch, model, batch: int, fake=None, names=None):
        self.torch, self.model, self.batch = torch, model, batch
        self.fake, self.sizes = fake, names or {}  # symbolic sizes: torch's -> the user's
        self.names = {id(m): n for n, m in model.named_modules()}
        self.kinds = {id(m): module_kind(torch, m) for m in model.modules()}
        self.calls: list[Call] = []
        self.unsupported: list[Unsupported] = []
        self.notes: list[str] = []
        self.derived: dict[int, frozenset[str]] = {}  # tensors computed from weights only
        # derived tensors made from shapes and buffers whose first dimension is the batch
        # (EdgeNeXt's Fourier position encoding, zeros(B, H, W) on): a row on them runs
        # per sample
        self.batched: set[int] = set()
        # torch.utils.checkpoint's segments: (where, first row, end row, the rows whose
        # outputs it keeps, its kind)
        self.segments: list[tuple] = []
        self.state: set[int] = set()  # the storages of the parameters and buffers
        self.weight_names: dict[int, frozenset[str]] = {}  # their parameter names
        self.sdpa = torch.nn.functional.scaled_dot_product_attention
        self.added = {torch.addmm, torch.Tensor.addmm, torch.baddbmm, torch.Tensor.baddbmm}
        self.keep: list = []  # holds every tensor seen, so that ids are never reused
        self.producer: dict[int, int] = {}  # activation tensor -> the row that made it
        self.made: dict[int, set[int]] = {}  # row -> the storages of its outputs
        self.pending: list = []  # what calls on weights keep, for the next row to count
        self.numel: dict[str, int] = {}
        self.frozen: set[str] = set()
        self.last_claim: set[str] = set()
        self.claimed: set[str] = set()
        self.stack: list[str] = []  # the modules the forward pass is inside
        self.open: list = []  # (module, its aten ops, the mode recording them)
        self.quiet = 0  # > 0 inside a module that is one row
        self.busy = False  # our own tensor calls in hooks are not the model's
        self.probing = False  # kept() is running a call or module again
        self.used: dict[str, int] = {}
        table = function_table(torch, self.value)
        self.functions, self.free, self.constants = table.rules, table.free, table.constants
        self.Count = _count_mode(torch, table.free_aten, self.dims, self.value, self.factors)

    def value(self, v):
        """An int, or torch's symbolic size as a sympy formula in the user's symbols."""
        if isinstance(v, int):
            return v
        expr = v.node.expr
        return int(expr) if expr.is_Integer else _sympy_size(expr, self.sizes)

    def dims(self, t) -> tuple:
        return tuple(self.value(d) for d in t.shape)

    def run(self, args, kwargs):
        """Trace on meta tensors; if the forward needs real values, on the CPU with zeros."""
        try:
            return self._run(args, kwargs, "fake" if self.fake else "meta")
        except _NeedsValues as exc:
            again = _Tracer(self.torch, self.model, self.batch)
            result = again._run(args, kwargs, "cpu")
            self.notes[:] = again.notes + [
                "traced on the CPU with zero inputs (its forward needs real values: "
                f"{exc})"]
            return result

    def run_compiled(self, args, kwargs):
        """A TorchScript module hides its modules and calls from Python: run it once on
        the CPU with zeros and cost the aten ops it ran (its parameters as a whole)."""
        torch, model = self.torch, self.model
        args = tuple(torch.zeros(v.shape, dtype=v.dtype) if isinstance(v, torch.Tensor)
                     else v for v in args)
        kwargs = {k: torch.zeros(v.shape, dtype=v.dtype) if isinstance(v, torch.Tensor)
                  else v for k, v in kwargs.items()}
        ops: list = []
        training = model.training
        model.eval()
        try:
            with torch.no_grad(), self.Count(ops):
                y = model(*args, **kwargs)
        except Exception as exc:
            dims = ", ".join("x".join(map(str, t.shape)) for t in _flat((args, kwargs))
                             if isinstance(t, torch.Tensor))
            raise CnnCalcError(f"the TorchScript model failed on a {dims} input: "
                               f"{_one_line(exc)}") from None
        finally:
            model.train(training)
        first = next(t for t in _flat((args, kwargs)) if isinstance(t, torch.Tensor))
        outs = [t for t in _flat(y) if isinstance(t, torch.Tensor)]
        params = sum(p.numel() for p in model.parameters())
        if not self.costed("", ops, first, [], outs, params, False):
            self.add(type(model).__name__.lower(), first, (outs or [first])[0], [], outs,
                     params, None, "script")
        strange = sorted({op[0] for op in ops if not op[3] and not op[1]})
        if strange:
            self.unsupported.append(Unsupported("", "TorchScript", "runs "
                                                + ", ".join(strange) + ", which have no rule "
                                                "(no MACs counted for them)"))
        self.notes.append("a TorchScript module: run once on the CPU with zero inputs and "
                          "costed by the aten operations it ran, one row per matrix product "
                          "(its parameters counted as a whole)")
        return self.calls, self.shown(outs[0])[0] if outs else (), self.unsupported

    def _run(self, args, kwargs, device: str):
        torch, model = self.torch, self.model
        weights = {}

        def copy(w):
            if device == "fake":
                return self.fake.from_tensor(torch.empty_like(w, device="meta"), static_shapes=True)
            return torch.empty_like(w, device="meta") if device == "meta" else w
        for n, p in model.named_parameters():
            weights[n] = copy(p)
            self.numel[n] = p.numel()
            if not p.requires_grad:
                self.frozen.add(n)
            self.derived[id(weights[n])] = frozenset((n,))
        for n, b in model.named_buffers():
            weights[n] = copy(b)
            self.derived[id(weights[n])] = frozenset()
        self.keep += list(weights.values())
        self.state = {_key(w) for w in weights.values()}
        self.weight_names = {_key(w): self.derived[id(w)] for w in weights.values()}

        def real(v):
            if isinstance(v, torch.Tensor):
                if device != "fake":
                    v = torch.zeros(v.shape, dtype=v.dtype, device=device)
                self.producer[id(v)] = -1
                self.made.setdefault(-1, set()).add(_key(v))
                self.keep.append(v)
            return v
        args = tuple(real(v) for v in args)
        kwargs = {k: real(v) for k, v in kwargs.items()}
        tracer = self

        class Mode(torch.overrides.TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                if tracer.busy or not tracer.stack or tracer.quiet:
                    return func(*args, **kwargs)
                ops = None
                if (func in tracer.free or func in tracer.constants or func in tracer.functions
                        and not tracer.on_weights(args, kwargs)):
                    result = func(*args, **kwargs)
                    if func is tracer.sdpa and device != "cpu" and result.dim() == 4:
                        result = _as_flash_lays_out(result, args[0] if args else
                                                    kwargs["query"])
                else:  # not known here: record the aten ops it runs
                    ops = []
                    with tracer.Count(ops):
                        result = func(*args, **kwargs)
                tracer.busy = True
                try:
                    tracer.function(func, args, kwargs, result, ops)
                finally:
                    tracer.busy = False
                return result

        training = {m: m.training for m in model.modules()}
        # the model's own tensors, put back after: functional_call leaves a module that is
        # reached by two paths (CoaT's shared position encodings) holding the trace's
        state = [(slots, name, t) for m in model.modules()
                 for slots in (m._parameters, m._buffers) for name, t in slots.items()]
        handles = []
        model.eval()  # batch norm at batch 1 and dropout: eval runs the same layers
        try:
            for m in model.modules():
                handles += [m.register_forward_pre_hook(self.enter),
                            m.register_forward_hook(self.leave)]
            with torch.no_grad(), self.fake or contextlib.nullcontext(), Mode(), \
                    _checkpoints_seen(torch, self):
                y = torch.func.functional_call(model, weights, args, kwargs)
        except CnnCalcError:
            raise
        except Exception as exc:  # the user's forward pass failed: say how, in one line
            if device == "meta" and "meta" in str(exc).lower():
                raise _NeedsValues(_one_line(exc)) from None
            if device == "fake":
                raise CnnCalcError("--input: the model cannot run with symbolic sizes "
                                   f"({_one_line(exc)}); give numbers") from None
            dims = ", ".join("x".join(map(str, t.shape)) for t in _flat((args, kwargs))
                             if isinstance(t, torch.Tensor))
            raise CnnCalcError(f"the model's forward failed on a {dims} input: "
                               f"{_one_line(exc)}") from None
        finally:
            while self.open:
                self.open.pop()[2].__exit__(None, None, None)
            for h in handles:
                h.remove()
            for m, mode in training.items():
                m.training = mode
            for slots, name, t in state:
                slots[name] = t
        self._mark_segments()
        outs = [t for t in _flat(y) if isinstance(t, torch.Tensor)]
        out = self.shown(outs[0])[0] if outs else ()
        if self.pending and self.calls:  # weight work after the last row: counted with it
            last = self.calls[-1]
            self.calls[-1] = dataclasses.replace(last, also=last.also + tuple(self.pending))
        self._unused()
        return self.calls, out, self.unsupported

    def segment_start(self, args, kind: str) -> tuple:
        """A torch.utils.checkpoint segment starts: where, its first row, the rows whose
        outputs are its inputs (what it keeps for backward; -1, the model's input), and
        its kind (see Row.checkpoint)."""
        ins = [t for t in _flat(args) if isinstance(t, self.torch.Tensor)
               and id(t) not in self.derived]
        last = len(self.calls) - 1
        where = self.stack[-1] if self.stack and self.stack[-1] else "the model's forward"
        return where, len(self.calls), tuple(dict.fromkeys(
            self.producer.get(id(t), last) for t in ins)), kind

    def segment_end(self, start: tuple) -> None:
        where, first, holds, kind = start
        if len(self.calls) > first:  # (a segment of calls with no row changes nothing)
            self.segments.append((where, first, len(self.calls), holds, kind))

    def _mark_segments(self) -> None:
        """Rows run by torch.utils.checkpoint: each keeps nothing of its own, its segment
        keeps its inputs, and backward runs it again (see training.annotate)."""
        if not self.segments:
            return
        for k, (_, first, end, holds, kind) in enumerate(
                sorted(self.segments, key=lambda s: (s[1], -s[2]))):
            if self.calls[first].segment >= 0:
                continue  # (a segment inside another: the outer one decides)
            for i in range(first, end):
                self.calls[i] = dataclasses.replace(
                    self.calls[i], segment=k, holds=holds if i == first else (),
                    checkpoint=kind if i == first else "")
        places = list(dict.fromkeys(where for where, *_ in self.segments))
        more = f" and {len(places) - 3} more" if len(places) > 3 else ""
        self.notes.append(
            f"{', '.join(places[:3])}{more}: run by torch.utils.checkpoint: each segment "
            "keeps only its inputs, and backward runs its forward again (what its layers "
            "keep meanwhile is in --plot's timeline, not in the totals; the random-number "
            "state torch keeps for it is not counted)")

    def on_weights(self, args, kwargs) -> bool:
        """Whether a call reads weights only (a LoRA merge: its products run once)."""
        tensors = [t for t in _flat((args, kwargs)) if isinstance(t, self.torch.Tensor)]
        return bool(tensors) and all(id(t) in self.derived for t in tensors)

    def shown(self, t, once: bool = False) -> tuple[Shape, Shape, sp.Expr]:
        """A tensor's shape as a row shows it, its shape per sample (no first dimension),
        and its first dimension over the batch the model ran at. A first dimension that
        is not the batch (windows or heads folded into it) is shown as that ratio, so
        that the row's activations stay exact."""
        dims = t if isinstance(t, tuple) else self.dims(t)
        if not dims:
            return (), (), sp.Rational(1, 1 if once else self.batch)
        rest = tuple(sp.sympify(d) for d in dims[1:])
        if once:
            return tuple(sp.sympify(d) for d in dims), rest, sp.sympify(dims[0])
        if dims[0] == self.batch:
            return rest, rest, ONE
        scale = sp.sympify(dims[0]) / self.batch
        return (scale, *rest), rest, scale

    # -- modules ---------------------------------------------------------------------

    def enter(self, module, args):
        if self.probing:  # (a module run again by kept: not the model's own pass)
            return
        self.stack.append(self.names.get(id(module), ""))
        kind = self.kinds.get(id(module), "transparent")
        if kind != "transparent":
            if kind == "unsupported" and not self.quiet:  # no rule: see what it runs
                ops: list = []
                mode = self.Count(ops)
                mode.__enter__()
                self.open.append((module, ops, mode))
            self.quiet += 1

    def leave(self, module, args, output):
        if self.probing:
            return
        name = self.stack.pop()
        if self.kinds.get(id(module), "transparent") == "transparent":
            return
        self.quiet -= 1
        ops = None
        if self.open and self.open[-1][0] is module:
            _, ops, mode = self.open.pop()
            mode.__exit__(None, None, None)
        if self.quiet:
            return
        self.busy = True
        try:
            start = len(self.calls)
            keeps = self.leaf_kept(module, name, args) if ops is not None else None
            self.module(module, name, args, output, ops)
            self.attach(start, keeps)
        finally:
            self.busy = False

    def leaf_kept(self, module, name: str, args) -> tuple | None:
        """What a built-in leaf with no rule (``nn.Embedding``, ``nn.PReLU``'s kin) keeps:
        its forward runs again as :meth:`kept` runs a call (autograd's formulas are the
        same on every device). A recurrent net's kernel keeps a workspace that depends on
        the backend (oneDNN's on the CPU, cuDNN's): not counted, and said in a note."""
        if isinstance(module, self.torch.nn.RNNBase):
            self.notes.append(f"{name or type(module).__name__.lower()} "
                              f"({type(module).__name__}): the bytes its backward keeps are "
                              "not counted (its kernel's workspace depends on the backend)")
            return None
        acts = [t for t in _flat(args)
                if isinstance(t, self.torch.Tensor) and id(t) not in self.derived]
        if not acts:
            return None
        prefix = f"{name}." if name else ""
        weights = {n: p.detach().requires_grad_(f"{prefix}{n}" not in self.frozen)
                   for n, p in module.named_parameters()}  # (sharing the state's storage)

        def forward(*inputs):
            return self.torch.func.functional_call(module, weights, inputs)
        return self.kept(forward, args, {}, acts,
                         trains=any(w.requires_grad for w in weights.values()))

    def module(self, module, name: str, args, output, ops):
        Tensor = self.torch.Tensor
        ins = [t for t in _flat(args) if isinstance(t, Tensor)]
        outs = [t for t in _flat(output) if isinstance(t, Tensor)]
        if not outs:
            return
        acts = [t for t in ins if id(t) not in self.derived]
        # a module run on weights or buffers only: weight preparation, once a pass
        once = not acts and not any(id(t) in self.batched for t in ins)
        params = self.claim([*module.parameters(), *ins])
        kind = type(module).__name__
        label = name or kind.lower()
        layer = module_record(self.torch, module, self.shown(outs[0], once)[1])
        if once:
            names = frozenset(self.last_claim).union(*(self.derived[id(t)] for t in ins))
            for o in outs:
                self.derived[id(o)] = names
                self.keep.append(o)
        first = (acts or ins or outs)[0]
        if layer is None and ops is not None:
            if self.costed(label, ops, first, acts, outs, params, once):
                return
            strange = sorted({op[0] for op in ops if not op[3]})
            if not strange:  # an embedding, a shuffle: data movement only, no MACs
                self.add(label, first, outs[0], acts, outs, params, None, kind.lower(),
                         once=once)
                return
            self.unsupported.append(Unsupported(label, kind, NO_MACS + " (it runs "
                                                + ", ".join(strange) + ")"))
        elif layer is None and self.kinds.get(id(module)) == "unsupported":
            self.unsupported.append(Unsupported(label, kind, NO_MACS))
        # a module called again (shared weights): its parameters counted at the first
        # call, but each call adds its own weight gradient
        shared = (not params and isinstance(layer, (L.Conv, L.ConvTranspose, L.Linear))
                  and any((f"{name}.{n}" if name else n) not in self.frozen
                          for n, _ in module.named_parameters()))
        factors = None
        if not (acts or once):  # on tensors made from a shape, per sample: no input grad
            factors = (0, 1)
        elif shared:
            factors = (1, 1)
        self.add(label, first, outs[0], acts or ins[:1], outs, params, layer, kind.lower(),
                 once=once, factors=factors)

    # -- functions -------------------------------------------------------------------

    def function(self, func, args, kwargs, result, ops):
        Tensor = self.torch.Tensor
        tensors = [t for t in _flat((args, kwargs)) if isinstance(t, Tensor)]
        outs = [t for t in _flat(result) if isinstance(t, Tensor)]
        if not outs:
            return
        acts = [t for t in tensors if id(t) not in self.derived]
        where = self.stack[-1]
        stem = getattr(func, "__name__", "call").strip("_")
        label = f"{where}.{stem}" if where else stem
        if not acts or func in self.constants:  # weights, or a constant made like a tensor
            names = frozenset().union(*(self.derived.get(id(t), frozenset())
                                        for t in tensors if func not in self.constants))
            first = (tensors or outs)[0]  # arithmetic on weights: once per pass
            # (made from shapes and buffers alone, its first dimension the batch's: a
            # constant made per sample, as zeros(B, H, W) or grid.expand(B, ...) is; at
            # batch 1 that cannot be told from a constant made once, as XCiT's (1, H, W))
            batched = [o for o in outs if not names and o.dim() and self.batch > 1
                       and self.value(o.shape[0]) == self.batch]
            if ops and any(op[1] != 0 for op in ops):  # its products: rows, with the
                # parameters (claimed only where a row shows them: W + A @ B's W is
                # counted by the product that uses W + A @ B)
                self.costed(label, ops, first, [], [], self.claim(tensors), not batched)
            else:
                strange = sorted({op[0] for op in ops or () if not op[3]})
                if strange:
                    self.unsupported.append(Unsupported(
                        label, stem, f"not mapped: runs {', '.join(strange)} on weights, "
                        "which have no rule (no MACs counted)"))
                if func not in self.constants:  # what autograd keeps of it
                    self.pending += self.kept(func, args, kwargs, [], True, outs) or ()
            for o in outs:
                if id(o) not in self.producer:
                    self.derived[id(o)] = names
                    self.keep.append(o)
            self.batched.update(id(o) for o in batched)
            return
        out_rest = self.shown(outs[0])[1]
        handler = self.functions.get(func)
        mapped = handler(args, kwargs, acts, out_rest, self.dims(outs[0])) if handler else None
        params = self.claim(tensors)
        if isinstance(mapped, list):  # products of activations: one row each
            start, keeps = len(self.calls), self.kept(func, args, kwargs, acts)
            # (attention's two products: each of two activations; a matmul's factors)
            factors = (2, 0) if func is self.sdpa else self.factors(
                "addmm" if func in self.added else "mm", args)
            for i, (kind, dims, macs) in enumerate(mapped):
                rows_in = acts if i == 0 else []
                self.add(f"{where}.{kind}" if where else kind, acts[0], dims, rows_in,
                         outs if i == len(mapped) - 1 else [], params if i == 0 else 0,
                         None, "matmul", macs=sp.sympify(macs) / self.batch,
                         factors=factors)
            self.attach(start, keeps)
            return
        if mapped is None:
            if ops is not None:  # an unknown call: cost what it ran, or name it
                if stem == "multi_head_attention_forward":  # rows named by their role
                    label = where or "attention"
                start, keeps = len(self.calls), self.kept(func, args, kwargs, acts)
                if self.costed(label, ops, acts[0], acts, outs, params, False,
                               stem == "multi_head_attention_forward"):
                    self.attach(start, keeps)
                    return
                label = f"{where}.{stem}" if where else stem
                strange = sorted({op[0] for op in ops if not op[3]})
                if strange:
                    self.unsupported.append(Unsupported(
                        label, stem, f"not mapped: runs {', '.join(strange)}, which have no "
                        "rule (a row with its output, but no MACs)"))
                    self.add(label, acts[0], outs[0], acts, outs, params, None, stem)
                    return
            if params:  # x * gamma, x + beta: its parameters are counted here, no MACs
                # (x * gamma keeps x for gamma's gradient, as a layer scale; what others
                # keep, addcmul(beta, alpha, x)'s x, is seen by running them again)
                scale = L.LayerScale() if stem in MULS and len(acts) == 1 else None
                keeps = None if scale else self.kept(func, args, kwargs, acts)
                self.add(label, acts[0], outs[0], acts, outs, params, scale, stem)
                self.attach(len(self.calls) - 1, keeps)
                return
            if stem in MULS and len({id(a) for a in acts}) > 1:
                # x * gate: a row, as the layer language's squeeze-and-excitation has, that
                # keeps each factor for the other's gradient
                first = next((a for a in acts if a.shape == outs[0].shape), acts[0])
                self.add(label, first, outs[0], acts, outs, 0, None, "mul")
                return
            keeps = self.kept(func, args, kwargs, acts)
            if keeps:  # free of MACs, but its backward keeps tensors: a row that says so
                first = next((a for a in acts if a.shape == outs[0].shape), acts[0])
                self.add(label, first, outs[0], acts, outs, 0, None, stem)
                self.attach(len(self.calls) - 1, keeps)
                return
            self.pass_on(acts, outs)
            return
        layer, kind, merge = mapped
        if merge and len(acts) < 2 and not params:
            self.pass_on(acts, outs)  # x + constant: not a merge of two branches
            return
        label = f"{where}.{kind}" if where else kind
        shared = False
        if isinstance(layer, (L.Conv, L.ConvTranspose, L.Linear)):
            # a weight computed in the pass (NF-ResNet's standardized one, a merged W + AB)
            # is kept as the model's own weights are (state): by a conv always, by a
            # linear layer for its input's gradient
            needs = 0 if isinstance(layer, L.Linear) else None
            w = args[1] if len(args) > 1 else kwargs.get("weight")  # (not the bias)
            if (isinstance(w, self.torch.Tensor) and id(w) in self.derived
                    and _key(w) not in self.state):
                self.pending.append(training.Keep("extra", self.elements(w), for_grad_of=needs,
                                                  tensor=("storage", _key(w))))
            # a weight used again: counted at its first use, but each use has a gradient
            shared = not params and isinstance(w, self.torch.Tensor) and self.trains(w)
        self.add(label, outs[0] if merge else acts[0], outs[0], acts, outs, params, layer,
                 kind, factors=(1, 1) if shared else None)

    def kept(self, func, args, kwargs, acts, rowless: bool = False, outs=(),
             trains: bool = False) -> tuple | None:
        """What autograd keeps for backward when ``func`` runs with every floating-point
        activation needing a gradient: ``func`` runs again, with grad on, on copies of its
        activations and of its trainable weights, under ``saved_tensors_hooks``. Each kept
        storage is:

        - one of the call's activations: a Keep of the row input it comes from (for the
          row that ``add`` makes of ``acts``);
        - its output;
        - the model's parameters and buffers: state, not counted;
        - a new tensor: an extra, per sample if it was computed from an activation (a
          dispatch mode follows which storages are), else once (a mask made from a shape).

        Attention runs as torch's CPU flash kernel, whatever the device of the trace (see
        :func:`_flash_attention`). ``rowless``: a call on weights alone, which gets no
        row; its output, if kept, is an extra too. ``trains``: ``func`` holds trainable
        weights of its own (a module's). None: the call could not run again (said in a
        note)."""
        torch = self.torch
        floats = [a for a in acts if a.is_floating_point()]
        weights = [t for t in _flat((args, kwargs))
                   if isinstance(t, torch.Tensor) and id(t) in self.derived]
        trainable = [t for t in weights if t.is_floating_point() and self.trains(t)]
        if not floats and not trainable and not trains:
            return ()
        trained = {}  # the trainable weights (the state itself, sharing its storage, or
        # a copy) and copies of the other weights and buffers
        with torch.enable_grad():  # (copies, not leaves: in-place calls may run on them)
            copies = {id(a): a.detach().requires_grad_() * 1 for a in floats}
            for t in weights:
                trained[id(t)] = t.clone()  # a buffer: a call run again may change it
            for t in trainable:
                w = t.detach().requires_grad_()
                trained[id(t)] = w if _key(t) in self.state else w * 1
        alias = {_key(w): _key(t) for t in _flat((args, kwargs))
                 if isinstance(t, torch.Tensor) and (w := trained.get(id(t))) is not None}

        def swap(v):
            if isinstance(v, (tuple, list)):
                return type(v)(swap(x) for x in v)
            if isinstance(v, dict):
                return {k: swap(x) for k, x in v.items()}
            if not isinstance(v, torch.Tensor):
                return v
            return copies.get(id(v), trained.get(id(v), v))

        packed = []
        tainted = {_key(c) for c in copies.values()}
        try:
            with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(
                    lambda t: packed.append(t) or t, lambda t: t), \
                    _flash_attention(torch), _taint_mode(torch)(tainted):
                if func is self.sdpa:
                    func = torch.nn.functional.scaled_dot_product_attention
                if func is torch.nn.functional.multi_head_attention_forward:
                    kwargs = {**kwargs, "training": True}  # its attention dropout, if any
                self.probing = True
                result = func(*swap(args), **swap(kwargs))
        except Exception as exc:  # noqa: BLE001 - the model's own call: say so, go on
            stem = getattr(func, "__name__", "call").strip("_")
            self.notes.append(f"{stem}: the bytes its backward keeps are not counted (it "
                              f"failed when run again with gradients: {_one_line(exc)})")
            return None
        finally:
            self.probing = False
        last = len(self.calls) - 1
        rows = list(dict.fromkeys(self.producer.get(id(a), last) for a in acts))
        place, remade = {}, {}
        for a in acts:
            row = self.producer.get(id(a), last)
            if id(a) not in copies:  # token ids: kept as they are, in their own dtype
                place[_key(a)] = rows.index(row)
                continue
            if _key(a) in self.made.get(row, ()):
                place[_key(copies[id(a)])] = rows.index(row)
            else:  # made from the row's output by free calls (x.mean() + eps): its own
                remade[_key(copies[id(a)])] = _key(a)
        results = [t for t in _flat(result) if isinstance(t, torch.Tensor)]
        output = {_key(t) for t in results[:1]}  # the row's (max's indices: an extra)
        if rowless:  # its output, kept by a later call too: the same tensor
            alias.update({_key(r): _key(o) for r, o in zip(results, outs)})
        keeps, seen = [], set()
        for t in packed:
            k = _key(t)
            known = alias.get(k)  # a tensor of the trace (the probe's own die with it)
            if (known or k) in seen or (known or k) in self.state:
                continue
            seen.add(known or k)
            if k in place:
                keeps.append(training.Keep("input", index=place[k], itemsize=None
                                           if t.is_floating_point() else t.element_size()))
            elif k in remade:
                keeps.append(training.Keep("extra", self.per_sample(t),
                                           tensor=("storage", remade[k])))
            elif k in output and not rowless:
                keeps.append(training.Keep("output"))
            else:
                size = self.per_sample(t) if k in tainted else self.elements(t)
                keeps.append(training.Keep("extra", size, None if t.is_floating_point()
                                           else t.element_size(),
                                           tensor=("storage", known) if known else None))
        return tuple(keeps)

    def trains(self, t) -> bool:
        """Whether a tensor is (or is computed from) a parameter that needs a gradient."""
        return bool(self.derived.get(id(t), frozenset()) - self.frozen)

    def attach(self, start: int, keeps: tuple | None) -> None:
        """Give the rows from ``start`` on (one call's) what the call keeps: its inputs to
        the first row (which reads them), its output and new tensors to the last."""
        if not keeps or start >= len(self.calls):
            return
        first, last = self.calls[start], self.calls[-1]
        ins = tuple(k for k in keeps if k.role == "input")
        rest = tuple(k for k in keeps if k.role != "input")
        if start == len(self.calls) - 1:
            self.calls[start] = dataclasses.replace(first, keeps=ins + rest)
            return
        self.calls[start] = dataclasses.replace(first, keeps=ins)
        self.calls[-1] = dataclasses.replace(last, keeps=rest)

    def pass_on(self, acts, outs) -> None:
        """An elementwise step or a view: its output is the same activation, carried on."""
        for o in outs:
            same = next((a for a in acts if a.shape == o.shape), acts[0])
            self.producer[id(o)] = self.producer.get(id(same), len(self.calls) - 1)
            self.keep.append(o)

    def costed(self, label: str, ops, first, acts, outs, params: int, once: bool,
               attention: bool = False) -> bool:
        """Rows for the multiply-adds a call or module ran, one per aten op, output shape
        and contracted size, summed over repeats such as a recurrent net's time steps (the
        row's shape then leads with the count); False if it ran none."""
        groups: dict = {}
        for i, (name, flops, dims, _, factors) in enumerate(ops):
            if flops != 0:  # (an attention's products each once: none merged)
                key = (name.strip("_"), dims, sp.sympify(flops) / (2 * prod(dims)),
                       i if attention else 0, factors)
                total, count = groups.get(key, (0, 0))
                groups[key] = (total + flops, count + 1)
        if not groups:
            return False
        roles = _attention_roles([key[0] for key in groups]) if attention else None
        for i, ((name, dims, _, _, factors), (flops, count)) in enumerate(groups.items()):
            macs = sp.sympify(flops) / 2 / (1 if once else self.batch)
            if count > 1:
                dims = (count * dims[0], *dims[1:]) if dims else (count,)
            row = roles[i] if roles else name
            self.add(f"{label}.{row}" if label else row, first, dims,
                     acts if i == 0 else [], outs if i == len(groups) - 1 else [],
                     params if i == 0 else 0, None, name, macs=macs, once=once,
                     factors=factors)
        return True

    def factors(self, name: str, args, made=()) -> tuple[int, int]:
        """A product's factors: how many are activations (each gets a gradient as costly as
        the product) and how many trainable weights (the same); ``addmm``'s added term
        is not one, nor a tensor in ``made`` (made from a shape). A weight is known by its
        storage (a transposed view of it included)."""
        tensors = [a for a in (args[1:3] if name in ("addmm", "baddbmm", "addbmm", "addmv")
                               else args[:2])
                   if isinstance(a, self.torch.Tensor) and id(a) not in made]
        acts = weights = 0
        for t in tensors:
            names = self.weight_names.get(_key(t), self.derived.get(id(t)))
            if names is None:
                acts += 1
            elif names - self.frozen:
                weights += 1
        return acts, weights

    # -- bookkeeping -----------------------------------------------------------------

    def claim(self, tensors) -> int:
        """Parameters behind ``tensors`` not yet counted by an earlier row: count them here."""
        names = set()
        for t in tensors:
            names |= self.derived.get(id(t), frozenset())
        new = names - self.claimed
        self.claimed |= new
        self.last_claim = new
        return sum(self.numel[n] for n in new)

    def add(self, label: str, first, out, ins, outs, params: int, layer, kind: str,
            macs=ZERO, once: bool = False, factors: tuple[int, int] | None = None,
            keeps: tuple | None = None) -> None:
        """A row: ``first`` is the tensor it reads, ``out`` the tensor (or dimensions) it
        makes; ``ins`` give the rows that feed it (none: the row before)."""
        in_shape, record, scale = self.shown(first, once)
        out_shape, out_rest, _ = self.shown(out, once)
        if macs:  # counted on the whole tensors: per sample already
            scale = ONE
        if layer is not None:
            try:
                made = cost(layer, record, ONE).output_shape
            except CnnCalcError as exc:
                made = f"an error ({exc})"
            if made != out_rest and not _agree(made, out_rest):
                self.unsupported.append(Unsupported(label, kind, f"cnncalc's rule gives "
                                                    f"{made}, torch gives {out_rest}"))
                layer = None
        count = self.used.get(label, 0) + 1
        self.used[label] = count
        name = label if count == 1 else f"{label}#{count}"
        last = len(self.calls) - 1
        inputs = tuple(dict.fromkeys(self.producer.get(id(t), last) for t in ins)) or (last,)
        frozen = bool(params) and self.last_claim <= self.frozen
        fresh = self.fresh(ins, inputs, last)
        if (isinstance(layer, L.Linear) and isinstance(first, self.torch.Tensor)
                and first.dim() > 2 and not _rows_as_view(first)):
            # torch's linear folds the leading dimensions with reshape, which copies a
            # tensor whose strides do not allow a view: the copy is what it keeps
            copy = sp.sympify(self.value(first.numel())) / self.batch * PER_SAMPLE
            fresh = ((0, ("copy", len(self.calls)), copy),
                     *(f for f in fresh if f[0] != 0))
        if isinstance(layer, L.BatchNorm) and scale != 1 and keeps is None and record:
            # a batch norm over rows that fold the batch with tokens (LeViT's on (N*L, C)):
            # its statistics are a channel's, whatever the rows
            keeps = (training.Keep("input"),
                     training.Keep("extra", 2 * record[0], training.STAT_BYTES))
        if (isinstance(layer, L.Elementwise) and layer.kind == "stochastic_depth"
                and layer.p and scale != 1):
            # one random scale a row of the folded batch (MobileViT's patches)
            keeps = (training.Keep("extra", scale * PER_SAMPLE),)
        also, self.pending = tuple(self.pending), []
        # a product's row that stands for its call's output (an LSTM's last): that tensor
        own = None if isinstance(out, self.torch.Tensor) or not outs else (
            self.elements(outs[0]) if once else self.per_sample(outs[0]))
        self.calls.append(Call(name, name.count("."), in_shape, out_shape, inputs, params,
                               layer, kind, frozen, record, scale, macs, once,
                               fresh=fresh, also=also,
                               out_elements=own, factors=factors, keeps=keeps))
        for o in outs:
            self.producer[id(o)] = len(self.calls) - 1
            self.keep.append(o)
        self.made[len(self.calls) - 1] = {_key(o) for o in outs}

    def fresh(self, ins, inputs, last) -> tuple:
        """The inputs that are not their producing row's output but a new tensor made from
        it by calls that get no row (``x.mean((2, 3))``, a reshape that copies), or made
        from a shape (EdgeNeXt's Fourier position encoding, which a conv then reads): (the
        input's place, its storage, its elements), so that what a row keeps of it is
        counted as that tensor. Weights are not: they are model state. A tensor made from
        a shape is per sample if its first dimension is the batch, else once."""
        found = []
        for t in ins:
            row = self.producer.get(id(t), last)
            place = inputs.index(row)
            if (not isinstance(t, self.torch.Tensor) or any(p == place for p, _, _ in found)
                    or _key(t) in self.made.get(row, ()) or _key(t) in self.state
                    or self.derived.get(id(t))):
                continue
            constant = id(t) in self.derived
            once = constant and (t.dim() == 0 or self.value(t.shape[0]) != self.batch)
            found.append((place, ("storage", _key(t)),
                          self.elements(t) if once else self.per_sample(t)))
        return tuple(found)

    def elements(self, t) -> sp.Expr:
        """The elements of a tensor's whole storage (what keeping any view of it keeps)."""
        return sp.sympify(self.value(t.untyped_storage().nbytes())) / t.element_size()

    def per_sample(self, t) -> sp.Expr:
        """:meth:`elements` of an activation, as a multiple of the batch to come."""
        return self.elements(t) / self.batch * PER_SAMPLE

    def _unused(self) -> None:
        """Parameters no counted operation used are listed by their module, not hidden."""
        owners: dict[str, int] = {}
        for n in self.numel:
            if n not in self.claimed:
                owner = n.rpartition(".")[0]
                owners[owner] = owners.get(owner, 0) + self.numel[n]
        modules = dict(self.model.named_modules())
        for owner, count in owners.items():
            kind = type(modules.get(owner, self.model)).__name__
            self.unsupported.append(Unsupported(owner or kind.lower(), kind,
                                                f"{count:,} parameters not used by any counted "
                                                "operation (not in the totals)"))
