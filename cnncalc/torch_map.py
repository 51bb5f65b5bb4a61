"""What a PyTorch module or functional call is, in the layer language's records.

``torch_trace`` sees the calls; this module only names them: ``module_record`` for
modules, ``function_table`` for functional calls, with the sizes converted to the
sympy values that ``layers`` holds (one size when all dimensions agree, as ``k=3``).
torch is passed in, never imported here, so importing cnncalc stays light.
"""

from __future__ import annotations

from dataclasses import dataclass
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


def _own_forward(m) -> bool:
    """Whether ``m``'s class overrides the forward of the torch.nn class it extends (a
    LoRA linear, a channels-first layer norm): then its record would not say what it does."""
    base = next(c for c in type(m).__mro__ if c.__module__.startswith("torch."))
    return type(m).forward is not base.forward


def _drop_path(m) -> Fraction | None:
    """The probability of torchvision's ``StochasticDepth`` ("row" mode) or timm's
    ``DropPath``, known by name: a module that is an identity in eval mode, where the trace
    runs, and in training keeps one random scale a sample."""
    p = getattr(m, "p", getattr(m, "drop_prob", None))
    if (type(m).__name__ in ("StochasticDepth", "DropPath") and isinstance(p, (int, float))
            and not isinstance(p, bool) and getattr(m, "mode", "row") == "row"):
        return Fraction(str(p))
    return None


def module_kind(torch, m) -> str:
    """``record``: one row; ``unsupported``: one row, listed; ``transparent``: look inside."""
    nn = torch.nn
    if _drop_path(m) is not None:
        return "record"
    if not isinstance(m, torch.jit.ScriptModule) and _own_forward(m):
        return "transparent"
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
    p = _drop_path(m)
    if p is not None:
        return L.Elementwise("stochastic_depth", p)
    kind = _activation(torch, m)
    return L.Elementwise(kind) if kind else None


@dataclass(frozen=True)
class FunctionTable:
    """What the tracer knows of functional calls.

    ``rules``: function -> handler ``(args, kwargs, acts, out, out_dims)`` giving a record
    ``(layer, kind, merge)``, a list of products ``(kind, dims, macs)`` (one row each:
    an attention's QK^T and AV), or None (not a layer here: passed on). ``free``: calls
    known to do no multiply-adds (elementwise, views, indexing, reductions), passed on.
    ``constants``: calls that make a new tensor from an activation's shape only
    (``x.new_ones``). ``free_aten``: aten ops with no multiply-adds, by name, beyond
    those torch tags pointwise or views; an unknown call running anything else is named.
    """

    rules: dict
    free: frozenset
    constants: frozenset
    free_aten: frozenset


FREE_ATEN = frozenset("""
    _safe_softmax _softmax softmax _log_softmax log_softmax sum mean amax amin max min var
    std var_mean std_mean norm linalg_vector_norm cumsum cumprod prod argmax argmin logsumexp
    cat stack clone _to_copy copy_ copy contiguous detach alias lift_fresh zeros ones full
    empty empty_like zeros_like ones_like full_like new_zeros new_ones new_full new_empty
    new_empty_strided empty_strided scalar_tensor arange linspace constant_pad_nd roll index
    index_select gather scatter scatter_add scatter_reduce index_put index_put_ index_add
    masked_fill masked_fill_ masked_scatter masked_select where repeat repeat_interleave
    embedding _embedding_bag _embedding_bag_forward_only embedding_bag unsafe_split split
    split_with_sizes unsafe_split_with_sizes unbind chunk unsafe_chunk flip _unsafe_view
    topk sort argsort fill fill_ zero_ select_scatter slice_scatter diagonal_scatter
    native_dropout dropout bernoulli bernoulli_ rand rand_like randn randn_like triu tril
    _native_batch_norm_legit_no_training _native_batch_norm_legit native_batch_norm
    native_layer_norm native_group_norm pixel_shuffle pixel_unshuffle channel_shuffle
    native_channel_shuffle nonzero unique _unique2 bitwise_not logical_not any all eq ne
    _local_scalar_dense item is_nonzero one_hot count_nonzero diff meshgrid set_ resize_
    as_strided as_strided_ _reshape_alias expand_copy view_copy permute_copy
    _assert_async _assert_tensor_metadata sym_size sym_numel sym_stride
    upsample_nearest1d upsample_nearest2d upsample_nearest3d _upsample_nearest_exact1d
    _upsample_nearest_exact2d _upsample_nearest_exact3d upsample_linear1d upsample_bilinear2d
    upsample_trilinear3d upsample_bicubic2d _upsample_bilinear2d_aa _upsample_bicubic2d_aa
    im2col col2im max_pool1d max_pool2d max_pool3d max_pool2d_with_indices
    max_pool3d_with_indices avg_pool1d avg_pool2d avg_pool3d adaptive_avg_pool1d
    adaptive_avg_pool2d adaptive_avg_pool3d _adaptive_avg_pool2d _adaptive_avg_pool3d
    adaptive_max_pool1d adaptive_max_pool2d adaptive_max_pool3d fractional_max_pool2d
    fractional_max_pool3d
""".split())


def function_table(torch, value=int) -> FunctionTable:
    """The rules, the free calls and the constants (see :class:`FunctionTable`);
    ``value`` reads an activation's size (an int, or a formula for symbolic sizes)."""
    F, T = torch.nn.functional, torch.Tensor
    table = {}

    def on(funcs, handler):
        for f in funcs:
            table[f] = handler

    def conv(ndim):
        def h(args, kwargs, acts, out, dims):
            a = Args(args, kwargs, "input weight bias stride padding dilation groups")
            w = a("weight")
            return (L.Conv(ndim, size(w.shape[0]), sizes(tuple(w.shape[2:])),
                           sizes(a("stride", 1)), padding(a("padding", 0)),
                           sizes(a("dilation", 1)), size(a("groups", 1)),
                           a("bias") is not None), f"conv{ndim}d", False)
        return h

    def deconv(ndim):
        def h(args, kwargs, acts, out, dims):
            a = Args(args, kwargs,
                     "input weight bias stride padding output_padding groups dilation")
            w, g = a("weight"), a("groups", 1)
            return (L.ConvTranspose(ndim, size(w.shape[1] * g), sizes(tuple(w.shape[2:])),
                                    sizes(a("stride", 1)), sizes(a("padding", 0)),
                                    sizes(a("output_padding", 0)), sizes(a("dilation", 1)),
                                    size(g), a("bias") is not None),
                    f"conv_transpose{ndim}d", False)
        return h

    def linear(args, kwargs, acts, out, dims):
        a = Args(args, kwargs, "input weight bias")
        return L.Linear(size(a("weight").shape[0]), a("bias") is not None), "linear", False

    def matmul(swap):
        def h(args, kwargs, acts, out, dims):
            left, right = (args[1], args[0]) if swap else (args[0], args[1])
            if right is not acts[0] and right.dim() == 2 and left is acts[0]:
                return L.Linear(size(right.shape[1]), False), "linear", False
            inner = value(left.shape[-1]) if left.dim() > 1 else value(left.shape[0])
            return [("matmul", dims, _numel(dims) * inner)]
        return h

    def added_product(names: str):
        """addmm, baddbmm: ``beta * input + alpha * (m1 @ m2)``, the product's MACs."""
        def h(args, kwargs, acts, out, dims):
            a = Args(args, kwargs, names)
            return [("matmul", dims, _numel(dims) * value(a("mat1", a("batch1")).shape[-1]))]
        return h

    def sdpa(args, kwargs, acts, out, dims):
        """Scaled dot-product attention: QK^T and AV, as the math backend multiplies them
        (grouped-query keys and values are repeated to the query's heads)."""
        a = Args(args, kwargs, "query key value")
        q, k, v = a("query"), a("key"), a("value")
        heads = tuple(value(d) for d in q.shape[:-2])
        n_q, e, n_k, e_v = (value(d) for d in (q.shape[-2], q.shape[-1], k.shape[-2],
                                                v.shape[-1]))
        scores = (*heads, n_q, n_k)
        return [("qk", scores, _numel(scores) * e), ("av", dims, _numel(scores) * e_v)]

    def merge(kind):
        def h(args, kwargs, acts, out, dims):
            return None, kind, True
        return h

    def elementwise(kind):
        def h(args, kwargs, acts, out, dims):
            return L.Elementwise(kind), kind, False
        return h

    def new_activation(kind):
        """A new tensor made with no multiply-adds (padding, interpolation): a row of its
        own, as its module (``nn.ZeroPad2d``, ``nn.Upsample``) and the layer language's
        ``pad`` and ``upsample`` get, so its activations are counted."""
        def h(args, kwargs, acts, out, dims):
            return None, kind, False
        return h

    def dropout(args, kwargs, acts, out, dims):
        p = Args(args, kwargs, "input p")("p", 0.5)
        return L.Elementwise("dropout", Fraction(str(p))), "dropout", False

    def pool(mode, ndim):
        def h(args, kwargs, acts, out, dims):
            a = Args(args, kwargs, "input kernel_size stride padding "
                     + ("dilation ceil_mode" if mode == "max" else "ceil_mode"))
            k = sizes(a("kernel_size"))
            s = a("stride")
            s = k if s is None or s == [] or s == () else sizes(s)
            d = sizes(a("dilation", 1)) if mode == "max" else ONE
            return (L.Pool(mode, ndim, k, s, sizes(a("padding", 0)), d,
                           bool(a("ceil_mode", False))), f"{mode}_pool{ndim}d", False)
        return h

    def adaptive(args, kwargs, acts, out, dims):
        return L.AdaptiveAvgPool(sizes(out[1:])), f"adaptive_avg_pool{len(out) - 1}d", False

    def batch_norm(args, kwargs, acts, out, dims):
        a = Args(args, kwargs, "input running_mean running_var weight bias")
        return (L.BatchNorm(a("weight") is not None, a("running_mean") is not None),
                "batch_norm", False)

    def instance_norm(args, kwargs, acts, out, dims):
        a = Args(args, kwargs, "input running_mean running_var weight bias")
        return (L.InstanceNorm(a("weight") is not None, a("running_mean") is not None),
                "instance_norm", False)

    def layer_norm(args, kwargs, acts, out, dims):
        a = Args(args, kwargs, "input normalized_shape weight bias")
        shape = a("normalized_shape")
        n = len(shape) if isinstance(shape, (tuple, list, torch.Size)) else 1
        return L.LayerNorm(n, a("weight") is not None), "layer_norm", False

    def group_norm(args, kwargs, acts, out, dims):
        a = Args(args, kwargs, "input num_groups weight bias")
        return L.GroupNorm(size(a("num_groups")), a("weight") is not None), "group_norm", False

    def flatten(args, kwargs, acts, out, dims):
        # to one dimension a sample, keeping the batch (LeViT's flatten(0, 1) folds the
        # batch into the rows instead: a view, no layer)
        if (len(out) == 1 and acts[0].dim() > 2 and acts[0] is args[0]
                and dims[0] == value(acts[0].shape[0])):
            return L.Flatten(), "flatten", False
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
    on([torch.addmm, T.addmm], added_product("input mat1 mat2"))
    on([torch.baddbmm, T.baddbmm], added_product("input batch1 batch2"))
    on([F.scaled_dot_product_attention], sdpa)
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
    on([F.pad], new_activation("pad"))
    on([F.interpolate, F.upsample, F.upsample_nearest, F.upsample_bilinear],
       new_activation("upsample"))
    on([F.batch_norm], batch_norm)
    on([F.instance_norm], instance_norm)
    on([F.layer_norm], layer_norm)
    on([F.group_norm], group_norm)
    on([torch.flatten, T.flatten, T.view, T.reshape, torch.reshape], flatten)
    return FunctionTable(table, frozenset(_free(torch)), frozenset(_constants(torch)),
                         FREE_ATEN)


def _numel(dims):
    n = 1
    for d in dims:
        n *= d
    return n


# Calls with no multiply-adds, by name on torch, torch.Tensor and torch.nn.functional:
# views and indexing, elementwise arithmetic, reductions, data movement (interpolation
# included: its arithmetic is elementwise, as a norm's is), type changes.
FREE_NAMES = """
    view_as reshape_as permute transpose t T mT squeeze unsqueeze contiguous expand
    expand_as __getitem__ __setitem__ narrow select chunk split unbind unflatten movedim
    moveaxis swapaxes flatten view reshape size dim numel shape dtype device is_contiguous
    __len__ __iter__ __bool__ __format__ __repr__ __hash__ __eq__ __ne__ __lt__ __le__
    __gt__ __ge__ __and__ __or__ __invert__ __neg__ __abs__ __pos__ eq ne lt le gt ge
    mul mul_ __mul__ __rmul__ __imul__ div div_ __truediv__ __rtruediv__ __itruediv__
    __floordiv__ sub sub_ __sub__ __rsub__ __isub__ __pow__ __rpow__ pow pow_ neg abs exp
    exp_ log log_ sqrt rsqrt sin cos erf clamp clamp_ clip clamp_min clamp_max maximum
    minimum where masked_fill masked_fill_ sign reciprocal floor ceil round trunc frac
    sum mean amax amin max min var std norm logsumexp cumsum argmax argmin all any softmax
    log_softmax normalize pad roll repeat repeat_interleave tile flip stack hstack vstack
    gather scatter index_select masked_select take to type type_as float double half
    bfloat16 int long bool detach clone cpu requires_grad_ get_device element_size
    fill_ zero_ copy_ unfold tril triu diagonal chunk tensor_split split_with_sizes
    embedding one_hot dropout dropout1d dropout2d dropout3d alpha_dropout feature_alpha_dropout
    relu relu_ gelu silu sigmoid tanh hardswish hardsigmoid leaky_relu elu selu celu mish
    softplus logsigmoid hardtanh relu6 softsign tanhshrink threshold glu addcmul addcdiv
    lerp nan_to_num square log2 log1p expm1 atan atan2 sinh cosh arange zeros ones
    interpolate upsample upsample_nearest upsample_bilinear pixel_shuffle pixel_unshuffle
""".split()


def _free(torch):
    T, F = torch.Tensor, torch.nn.functional
    for name in FREE_NAMES:
        for owner in (torch, T, F):
            f = getattr(owner, name, None)
            if callable(f) and not isinstance(f, type):
                yield f
            elif hasattr(type(f), "__get__") and hasattr(f, "__get__"):
                yield f.__get__  # a property (x.shape): torch sees its getter


def _constants(torch):
    T = torch.Tensor
    for name in ("new_zeros", "new_ones", "new_full", "new_empty", "new_tensor"):
        yield getattr(T, name)
    for name in ("zeros_like", "ones_like", "full_like", "empty_like", "rand_like",
                 "randn_like", "randint_like"):
        yield getattr(torch, name)
