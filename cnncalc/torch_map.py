"""What a PyTorch module or functional call is, in the layer language's records.

``torch_trace`` sees the calls; this module only names them: ``module_record`` for
modules, ``function_table`` for functional calls, with the sizes converted to the
sympy values that ``layers`` holds (one size when all dimensions agree, as ``k=3``).
torch is passed in, never imported here, so importing cnncalc stays light.
"""

from __future__ import annotations

from fractions import Fraction

import sympy as sp

from . import layers as L
from .quantities import ONE, Shape


def size(v) -> sp.Integer:
    return sp.Integer(int(v))


def sizes(v):
    """An int or a tuple of ints as the layer language holds it: one size if all agree."""
    if isinstance(v, (tuple, list)):
        values = tuple(size(x) for x in v)
        return values[0] if len(set(values)) == 1 else values
    return size(v)


def padding(v):
    return v if isinstance(v, str) else sizes(v)


class Args:
    """A call's arguments by position or keyword, as torch's signatures name them."""

    def __init__(self, args, kwargs, names: str):
        self.values = dict(zip(names.split(), args))
        self.values.update(kwargs)

    def __call__(self, name: str, default=None):
        value = self.values.get(name, default)
        return default if value is None else value


# torch.nn class -> the layer language's kind (looked up as types by ``_activation``)
ACTIVATIONS = {"ReLU": "relu", "ReLU6": "relu6", "Tanh": "tanh", "Sigmoid": "sigmoid",
               "GELU": "gelu", "SiLU": "silu", "ELU": "elu", "LeakyReLU": "leakyrelu",
               "Hardswish": "hardswish", "Mish": "mish", "Softmax": "softmax",
               "Identity": "identity", "Hardsigmoid": "hardsigmoid", "Hardtanh": "hardtanh",
               "Softplus": "softplus", "LogSoftmax": "logsoftmax", "SELU": "selu",
               "CELU": "celu", "PReLU": "prelu", "Softsign": "softsign"}


def _activation(torch, m) -> str | None:
    """The kind of an activation module (``nn.ReLU`` -> ``relu``), or None."""
    for name, kind in ACTIVATIONS.items():
        if isinstance(m, getattr(torch.nn, name)):
            return kind
    return None


def module_kind(torch, m) -> str:
    """``record``: one row; ``unsupported``: one row, listed; ``transparent``: look inside."""
    nn = torch.nn
    if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._NormBase,
                      nn.LayerNorm, nn.GroupNorm, nn.modules.pooling._MaxPoolNd,
                      nn.modules.pooling._AvgPoolNd, nn.modules.pooling._AdaptiveAvgPoolNd,
                      nn.Flatten, nn.modules.dropout._DropoutNd)):
        return "record"
    if _activation(torch, m) is not None:
        return "record"
    if type(m).__module__.startswith("torch.") and not any(True for _ in m.children()):
        return "unsupported"  # a built-in leaf we have no rule for (built-ins with children:
        # Sequential, TransformerEncoderLayer, ... are looked into)
    return "transparent"


def module_record(torch, m, out_shape: Shape):
    """The layer record the layer language would write for module ``m`` (None: none)."""
    nn = torch.nn
    if isinstance(m, nn.modules.conv._ConvTransposeNd):
        return L.ConvTranspose(len(m.kernel_size), size(m.out_channels), sizes(m.kernel_size),
                               sizes(m.stride), sizes(m.padding), sizes(m.output_padding),
                               sizes(m.dilation), size(m.groups), m.bias is not None)
    if isinstance(m, nn.modules.conv._ConvNd):
        return L.Conv(len(m.kernel_size), size(m.out_channels), sizes(m.kernel_size),
                      sizes(m.stride), padding(m.padding), sizes(m.dilation),
                      size(m.groups), m.bias is not None)
    if isinstance(m, nn.Linear):
        return L.Linear(size(m.out_features), m.bias is not None)
    if isinstance(m, nn.modules.instancenorm._InstanceNorm):
        return L.InstanceNorm(m.affine, m.track_running_stats)
    if isinstance(m, nn.modules.batchnorm._NormBase):
        return L.BatchNorm(m.affine, m.track_running_stats)
    if isinstance(m, nn.LayerNorm):
        return L.LayerNorm(len(m.normalized_shape), m.elementwise_affine)
    if isinstance(m, nn.GroupNorm):
        return L.GroupNorm(size(m.num_groups), m.affine)
    if isinstance(m, (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd)):
        ndim = next(n for n in (1, 2, 3)
                    if isinstance(m, (getattr(nn, f"MaxPool{n}d"), getattr(nn, f"AvgPool{n}d"))))
        if isinstance(m, nn.modules.pooling._MaxPoolNd):
            return L.Pool("max", ndim, sizes(m.kernel_size), sizes(m.stride),
                          sizes(m.padding), sizes(m.dilation), m.ceil_mode)
        return L.Pool("avg", ndim, sizes(m.kernel_size), sizes(m.stride), sizes(m.padding),
                      ONE, m.ceil_mode)
    if isinstance(m, nn.modules.pooling._AdaptiveAvgPoolNd):
        return L.AdaptiveAvgPool(sizes(out_shape[1:]))
    if isinstance(m, nn.Flatten):
        return L.Flatten() if len(out_shape) == 1 else None
    if isinstance(m, nn.modules.dropout._DropoutNd):
        return L.Elementwise("dropout", Fraction(str(m.p)))
    kind = _activation(torch, m)
    return L.Elementwise(kind) if kind else None


def function_table(torch):
    """Functional calls -> handlers ``(args, kwargs, acts, out_shape) -> (layer, kind,
    inner, merge)`` or None (not a layer here); the view functions (no row); and the
    elementwise products and quotients (a parameter there is a scale: no MACs)."""
    F, T = torch.nn.functional, torch.Tensor
    table = {}

    def on(funcs, handler):
        for f in funcs:
            table[f] = handler

    def conv(ndim):
        def h(args, kwargs, acts, out):
            a = Args(args, kwargs, "input weight bias stride padding dilation groups")
            w = a("weight")
            return (L.Conv(ndim, size(w.shape[0]), sizes(tuple(w.shape[2:])),
                           sizes(a("stride", 1)), padding(a("padding", 0)),
                           sizes(a("dilation", 1)), size(a("groups", 1)),
                           a("bias") is not None), f"conv{ndim}d", 0, False)
        return h

    def deconv(ndim):
        def h(args, kwargs, acts, out):
            a = Args(args, kwargs,
                      "input weight bias stride padding output_padding groups dilation")
            w, g = a("weight"), a("groups", 1)
            return (L.ConvTranspose(ndim, size(w.shape[1] * g), sizes(tuple(w.shape[2:])),
                                    sizes(a("stride", 1)), sizes(a("padding", 0)),
                                    sizes(a("output_padding", 0)), sizes(a("dilation", 1)),
                                    size(g), a("bias") is not None),
                    f"conv_transpose{ndim}d", 0, False)
        return h

    def linear(args, kwargs, acts, out):
        a = Args(args, kwargs, "input weight bias")
        return L.Linear(size(a("weight").shape[0]), a("bias") is not None), "linear", 0, False

    def matmul(swap):
        def h(args, kwargs, acts, out):
            left, right = (args[1], args[0]) if swap else (args[0], args[1])
            if right is not acts[0] and right.dim() == 2 and left is acts[0]:
                return L.Linear(size(right.shape[1]), False), "linear", 0, False
            return None, "matmul", int(left.shape[-1]), False
        return h

    def merge(kind):
        def h(args, kwargs, acts, out):
            return None, kind, 0, True
        return h

    def elementwise(kind):
        def h(args, kwargs, acts, out):
            return L.Elementwise(kind), kind, 0, False
        return h

    def dropout(args, kwargs, acts, out):
        p = Args(args, kwargs, "input p")("p", 0.5)
        return L.Elementwise("dropout", Fraction(str(p))), "dropout", 0, False

    def pool(mode, ndim):
        def h(args, kwargs, acts, out):
            a = Args(args, kwargs, "input kernel_size stride padding "
                      + ("dilation ceil_mode" if mode == "max" else "ceil_mode"))
            k = sizes(a("kernel_size"))
            s = a("stride")
            s = k if s is None or s == [] or s == () else sizes(s)
            d = sizes(a("dilation", 1)) if mode == "max" else ONE
            return (L.Pool(mode, ndim, k, s, sizes(a("padding", 0)), d,
                           bool(a("ceil_mode", False))), f"{mode}_pool{ndim}d", 0, False)
        return h

    def adaptive(args, kwargs, acts, out):
        return L.AdaptiveAvgPool(sizes(out[1:])), f"adaptive_avg_pool{len(out) - 1}d", 0, False

    def batch_norm(args, kwargs, acts, out):
        a = Args(args, kwargs, "input running_mean running_var weight bias")
        return (L.BatchNorm(a("weight") is not None, a("running_mean") is not None),
                "batch_norm", 0, False)

    def instance_norm(args, kwargs, acts, out):
        a = Args(args, kwargs, "input running_mean running_var weight bias")
        return (L.InstanceNorm(a("weight") is not None, a("running_mean") is not None),
                "instance_norm", 0, False)

    def layer_norm(args, kwargs, acts, out):
        a = Args(args, kwargs, "input normalized_shape weight bias")
        shape = a("normalized_shape")
        dims = len(shape) if isinstance(shape, (tuple, list, torch.Size)) else 1
        return L.LayerNorm(dims, a("weight") is not None), "layer_norm", 0, False

    def group_norm(args, kwargs, acts, out):
        a = Args(args, kwargs, "input num_groups weight bias")
        return L.GroupNorm(size(a("num_groups")), a("weight") is not None), "group_norm", 0, False

    def flatten(args, kwargs, acts, out):
        if len(out) == 1 and acts[0].dim() > 2:
            return L.Flatten(), "flatten", 0, False
        return None

    for n in (1, 2, 3):
        on([getattr(torch, f"conv{n}d"), getattr(F, f"conv{n}d")], conv(n))
        on([getattr(torch, f"conv_transpose{n}d"), getattr(F, f"conv_transpose{n}d")], deconv(n))
        on([getattr(F, f"max_pool{n}d"), getattr(torch, f"max_pool{n}d")], pool("max", n))
        on([getattr(F, f"avg_pool{n}d")], pool("avg", n))
        on([getattr(F, f"adaptive_avg_pool{n}d")], adaptive)
    on([F.linear], linear)
    on([torch.matmul, T.matmul, T.__matmul__, torch.mm, T.mm, torch.bmm, T.bmm], matmul(False))
    on([T.__rmatmul__], matmul(True))
    on([torch.add, T.add, T.add_, T.__add__, T.__radd__, T.__iadd__], merge("add"))
    on([torch.cat, torch.concat], merge("cat"))
    for kind, funcs in {
        "relu": [F.relu, F.relu_, torch.relu, torch.relu_, T.relu, T.relu_],
        "relu6": [F.relu6], "gelu": [F.gelu], "silu": [F.silu], "elu": [F.elu],
        "leakyrelu": [F.leaky_relu], "hardswish": [F.hardswish], "mish": [F.mish],
        "sigmoid": [torch.sigmoid, T.sigmoid, F.sigmoid],
        "tanh": [torch.tanh, T.tanh, F.tanh],
        "softmax": [F.softmax, torch.softmax, T.softmax],
    }.items():
        on(funcs, elementwise(kind))
    on([F.dropout, F.dropout1d, F.dropout2d, F.dropout3d], dropout)
    on([F.batch_norm], batch_norm)
    on([F.instance_norm], instance_norm)
    on([F.layer_norm], layer_norm)
    on([F.group_norm], group_norm)
    on([torch.flatten, T.flatten, T.view, T.reshape, torch.reshape], flatten)
    views = {T.view_as, T.reshape_as, T.permute, torch.permute, T.transpose, torch.transpose,
             T.t, T.squeeze, T.unsqueeze, torch.squeeze, torch.unsqueeze, T.contiguous,
             T.expand, T.expand_as, T.__getitem__, T.narrow, T.select, T.chunk, T.split,
             T.unbind, torch.chunk, torch.split, torch.unbind, T.unflatten, T.movedim,
             T.flatten, torch.flatten, T.view, T.reshape, torch.reshape}
    scales = {torch.mul, T.mul, T.__mul__, T.__rmul__, T.mul_, T.__imul__, torch.div, T.div,
              T.__truediv__, T.__rtruediv__, torch.sub, T.sub, T.__sub__, T.__rsub__}
    return table, views, scales
