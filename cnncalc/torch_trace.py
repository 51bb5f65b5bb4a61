"""A live PyTorch model, analysed: run it once on the meta device and map what it calls.

The model runs on ``meta`` tensors (shapes only: no memory, no arithmetic) through
``torch.func.functional_call``, so the user's module and its weights are left as they
were. Forward hooks see each leaf module; a ``TorchFunctionMode`` sees every functional
call made outside them (``F.conv2d``, ``@``, ``torch.add``, ``x + y``). Each is mapped to
the layer record the layer language would build (``nn.Conv2d`` -> ``layers.Conv``) and
costed by :func:`quantities.cost` on the shape that actually reached it, so every
quantity and renderer works as for a spec.

The result is a flat list of rows in execution order, not a tree: a residual block is
its body, its shortcut and an ``add`` row, in the order the model ran them, and each
row records the rows that fed it (``Row.inputs``). Parameters are attributed to the
first operation that uses them, so the total is ``sum(p.numel())`` over the parameters
the forward pass touches; tensors computed only from parameters (a reshaped weight)
are weight preparation, not layers. Views (``view``, ``permute``, indexing) store
nothing new and get no row, except a flatten to one dimension, which the layer
language has. What cannot be mapped is kept in ``Analysis.unsupported`` by module name
and type (with a row holding its parameters but no MACs), never dropped silently.
(Not named from_torch.py: the package attribute ``cnncalc.from_torch`` is the function.)
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
import sys
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
from .quantities import ONE, Cost, Shape, Step, cost, matmul_cost, prod
from .torch_map import function_table, module_kind, module_record

MERGE = L.Residual((), "identity")
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

    ``layer`` is a layer record costed by ``quantities.cost``; without one, ``kind``
    names a row that has no record (``add``, ``cat``, ``matmul``, an unsupported module).
    ``params`` is what torch says the call owns (its parameters first used here).
    """

    name: str
    depth: int
    input_shape: Shape
    output_shape: Shape
    inputs: tuple[int, ...]
    params: int
    layer: Any = None
    kind: str = ""
    inner: int = 0  # the contracted size of a matmul
    frozen: bool = False  # its parameters all have requires_grad=False


@dataclass(frozen=True)
class TorchAnalysis(Analysis):
    """An :class:`Analysis` of a traced model; ``network`` holds its :class:`Call` s."""

    unsupported: tuple[Unsupported, ...] = ()
    freeze_given: str | None = None  # --freeze as given, before requires_grad=False adds rows

    def subs(self, values: dict) -> TorchAnalysis:
        """Only the batch can be a symbol here (torch shapes are numbers)."""
        known = {s.name for s in self.symbols}
        unknown = sorted(set(values) - known)
        if unknown:
            raise CnnCalcError(f"--subs: {', '.join(unknown)} is not a symbol of this analysis "
                               f"(its symbols: {', '.join(sorted(known)) or 'none'})")
        mapping = {L.symbol(k): sp.Integer(v) for k, v in values.items()}
        return _analysis(self.network, from_layout(self.input_shape, self.layout),
                         from_layout(self.output_shape, self.layout),
                         self.batch.xreplace(mapping), self.layout, self.name, self.unsupported,
                         {"optimizer": self.optimizer, "dtype": self.dtype,
                          "freeze": self.freeze_given})


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


def from_torch(model, input_shape, batch=1, *, layout: str = "chw", name: str | None = None,
               optimizer: str = "sgd", dtype: str = "float32", freeze=None) -> TorchAnalysis:
    """Analyse an ``nn.Module`` on an input of ``input_shape`` (without batch).

    ``input_shape`` is ``"3x224x224"`` or a tuple of numbers, in ``layout`` order;
    ``batch`` may be a symbol name (the model then runs at batch 1, which is exact
    for models whose rows do not mix samples). ``optimizer``, ``dtype`` and ``freeze``
    are as for :func:`cnncalc.analyze`.

    >>> import torch
    >>> a = from_torch(torch.nn.Conv2d(3, 16, 3, padding=1), "3x32x32")
    >>> a.total["params"], a.total["macs"]
    (448, 442368)
    """
    torch = _torch()
    if not isinstance(model, torch.nn.Module):
        raise CnnCalcError(f"from_torch needs a torch.nn.Module, got {type(model).__name__}")
    shape = parse_shape(input_shape, layout) if isinstance(input_shape, str) else from_layout(
        tuple(sp.sympify(d) for d in input_shape), layout)
    if any(not d.is_Integer for d in shape):
        raise CnnCalcError("--input: a PyTorch model needs numbers, not symbols "
                           f"(got {'x'.join(map(str, shape))})")
    if isinstance(batch, str):
        batch = parse_size(batch, "--batch")
    batch = sp.sympify(batch)
    if batch.is_number and (not batch.is_Integer or batch < 1):
        raise CnnCalcError(f"--batch must be a positive whole number, got {batch}")
    run_batch = int(batch) if batch.is_Integer else 1
    calls, out, unsupported = _Tracer(torch, model).run(tuple(int(d) for d in shape), run_batch)
    return _analysis(tuple(calls), shape, out, batch, layout, name or type(model).__name__,
                     tuple(unsupported), {"optimizer": optimizer, "dtype": dtype,
                                          "freeze": freeze})


# -- from calls to rows ----------------------------------------------------------------

def _cost(call: Call, batch: sp.Expr) -> Cost:
    if call.layer is not None:
        c = cost(call.layer, call.input_shape, batch)
        if c.params != call.params:  # shared or unusual weights: torch's count wins
            c = dataclasses.replace(c, params=sp.Integer(call.params),
                                    steps=tuple(s for s in c.steps if s.quantity != "params"))
        return c
    if call.kind == "matmul":
        return matmul_cost(call.output_shape, sp.Integer(call.inner), batch,
                           sp.Integer(call.params))
    return Cost(call.kind, call.output_shape, sp.Integer(call.params))


def _analysis(calls: tuple[Call, ...], shape: Shape, out: Shape, batch: sp.Expr, layout: str,
              name: str | None, unsupported: tuple[Unsupported, ...],
              options: dict) -> TorchAnalysis:
    """Rows from the calls, then the same totals, training and receptive-field pass as a spec."""
    walker = _Walker(batch, layout, True)
    for call in calls:
        # An add row carries a Residual record, as the spec path's add rows do (the graph
        # passes read the merge from it); quantities come from the call itself.
        layer = MERGE if call.kind == "add" and call.layer is None else call.layer
        walker.add_row(_cost(call, batch), call.name, call.input_shape, call.depth, layer,
                       call.inputs)
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
                         freeze_given=given)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().split("\n")[0]
    text = text if len(text) <= 160 else text[:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- the trace -------------------------------------------------------------------------

def _shape(t) -> Shape:
    return tuple(sp.Integer(int(d)) for d in t.shape[1:])


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


class _Tracer:
    """Runs the model once on meta tensors and turns what it calls into :class:`Call` s."""

    def __init__(self, torch, model):
        self.torch, self.model = torch, model
        self.names = {id(m): n for n, m in model.named_modules()}
        self.calls: list[Call] = []
        self.unsupported: list[Unsupported] = []
        self.derived: dict[int, frozenset[str]] = {}  # tensors computed from weights only
        self.keep: list = []  # holds those tensors, so that their ids stay theirs
        self.producer: dict[int, int] = {}  # activation tensor -> the row that made it
        self.numel: dict[str, int] = {}
        self.frozen: set[str] = set()
        self.last_claim: set[str] = set()
        self.claimed: set[str] = set()
        self.stack: list[str] = []  # the modules the forward pass is inside
        self.quiet = 0  # > 0 inside a module that is one row
        self.busy = False  # our own tensor calls in hooks are not the model's
        self.used: dict[str, int] = {}
        self.functions, self.views, self.scales = function_table(torch)

    def run(self, shape: tuple[int, ...], batch: int):
        torch, model = self.torch, self.model
        meta = {}
        for n, p in model.named_parameters():
            meta[n] = torch.empty_like(p, device="meta")
            self.numel[n] = p.numel()
            if not p.requires_grad:
                self.frozen.add(n)
            self.derived[id(meta[n])] = frozenset((n,))
        for n, b in model.named_buffers():
            meta[n] = torch.empty_like(b, device="meta")
            self.derived[id(meta[n])] = frozenset()
        self.keep += list(meta.values())
        x = torch.zeros((batch, *shape), device="meta")
        self.producer[id(x)] = -1
        tracer = self

        class Mode(torch.overrides.TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                result = func(*args, **(kwargs or {}))
                if not tracer.busy and tracer.stack and not tracer.quiet:
                    tracer.busy = True
                    try:
                        tracer.function(func, args, kwargs or {}, result)
                    finally:
                        tracer.busy = False
                return result

        training = {m: m.training for m in model.modules()}
        handles = []
        for m in model.modules():
            handles += [m.register_forward_pre_hook(self.enter),
                        m.register_forward_hook(self.leave)]
        model.eval()  # batch norm at batch 1 and dropout: eval runs the same layers
        try:
            with torch.no_grad(), Mode():
                y = torch.func.functional_call(model, meta, (x,))
        except CnnCalcError:
            raise
        except Exception as exc:  # the user's forward pass failed: say how, in one line
            dims = "x".join(map(str, (batch, *shape)))
            raise CnnCalcError(f"the model's forward failed on a {dims} input: "
                               f"{_one_line(exc)}") from None
        finally:
            for h in handles:
                h.remove()
            for m, mode in training.items():
                m.training = mode
        outs = [t for t in _flat(y) if isinstance(t, torch.Tensor)]
        out = _shape(outs[0]) if outs else ()
        self._unused()
        return self.calls, out, self.unsupported

    # -- modules ---------------------------------------------------------------------

    def enter(self, module, args):
        self.stack.append(self.names.get(id(module), ""))
        if module_kind(self.torch, module) != "transparent":
            self.quiet += 1

    def leave(self, module, args, output):
        name = self.stack.pop()
        if module_kind(self.torch, module) == "transparent":
            return
        self.quiet -= 1
        if self.quiet:
            return
        self.busy = True
        try:
            self.module(module, name, args, output)
        finally:
            self.busy = False

    def module(self, module, name: str, args, output):
        Tensor = self.torch.Tensor
        ins = [t for t in _flat(args) if isinstance(t, Tensor)]
        outs = [t for t in _flat(output) if isinstance(t, Tensor)]
        if not outs:
            return
        out_shape = _shape(outs[0])
        in_shape = _shape(ins[0]) if ins else out_shape
        params = self.claim(module.parameters())
        kind = type(module).__name__
        label = name or kind.lower()
        layer = module_record(self.torch, module, out_shape)
        if layer is None and module_kind(self.torch, module) == "unsupported":
            self.unsupported.append(Unsupported(label, kind, NO_MACS))
        self.add(label, in_shape, out_shape, ins[:1], outs, params, layer, kind.lower())

    # -- functions -------------------------------------------------------------------

    def function(self, func, args, kwargs, result):
        Tensor = self.torch.Tensor
        tensors = [t for t in _flat((args, kwargs)) if isinstance(t, Tensor)]
        outs = [t for t in _flat(result) if isinstance(t, Tensor)]
        if not outs:
            return
        acts = [t for t in tensors if id(t) not in self.derived]
        if not acts:  # weight preparation or a constant: no layer
            names = frozenset().union(*(self.derived[id(t)] for t in tensors))
            for o in outs:
                if id(o) not in self.producer:
                    self.derived[id(o)] = names
                    self.keep.append(o)
            return
        in_shape, out_shape = _shape(acts[0]), _shape(outs[0])
        where = self.stack[-1]
        stem = getattr(func, "__name__", "call").strip("_")
        handler = self.functions.get(func)
        mapped = handler(args, kwargs, acts, out_shape) if handler else None
        if mapped is None:
            params = self.claim(tensors)
            if handler is None and (params or (out_shape != in_shape
                                               and func not in self.views)):
                label = f"{where}.{stem}" if where else stem
                if out_shape != in_shape:
                    self.unsupported.append(Unsupported(label, stem, "not mapped: a call "
                                                        "that changes the shape"))
                elif func not in self.scales:  # x * gamma has no MACs; anything else might
                    self.unsupported.append(Unsupported(label, stem, NO_MACS))
                self.add(label, in_shape, out_shape, acts, outs, params, None, stem)
            else:  # a view, or an elementwise step that is not a layer: pass the tensor on
                for o in outs:
                    self.producer[id(o)] = self.producer.get(id(acts[0]), len(self.calls) - 1)
            return
        layer, kind, inner, merge = mapped
        params = self.claim(tensors)
        if merge and len(acts) < 2 and not params:
            for o in outs:  # x + constant: not a merge of two branches
                self.producer[id(o)] = self.producer.get(id(acts[0]), len(self.calls) - 1)
            return
        label = f"{where}.{kind}" if where else kind
        self.add(label, out_shape if merge else in_shape, out_shape, acts, outs, params,
                 layer, kind, inner)

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

    def add(self, label: str, in_shape: Shape, out_shape: Shape, ins, outs, params: int,
            layer, kind: str, inner: int = 0) -> None:
        if layer is not None:
            try:
                made = cost(layer, in_shape, ONE).output_shape
            except CnnCalcError as exc:
                made = f"an error ({exc})"
            if made != out_shape:
                self.unsupported.append(Unsupported(label, kind, f"cnncalc's rule gives "
                                                    f"{made}, torch gives {out_shape}"))
                layer = None
        count = self.used.get(label, 0) + 1
        self.used[label] = count
        name = label if count == 1 else f"{label}#{count}"
        last = len(self.calls) - 1
        inputs = tuple(dict.fromkeys(self.producer.get(id(t), last) for t in ins)) or (last,)
        frozen = bool(params) and self.last_claim <= self.frozen
        self.calls.append(Call(name, name.count("."), in_shape, out_shape, inputs, params,
                               layer, kind, inner, frozen))
        for o in outs:
            self.producer[id(o)] = len(self.calls) - 1

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
