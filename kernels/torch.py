"""Our kernels inside PyTorch: autograd Functions, ``nn.Module``s and ``torch.optim``
optimizers that run :mod:`kernels` on zero-copy NumPy views of CPU tensors.

Needs torch, so ``import kernels`` never loads it; ``import kernels.torch`` does.

>>> import torch, kernels.torch as kt
>>> conv = kt.Conv2d(3, 8, 3, padding=1)          # a torch.nn.Conv2d: same init, state_dict
>>> opt = kt.Adam(conv.parameters(), lr=1e-3)     # a torch.optim.Adam: same state_dict
>>> conv(torch.ones(2, 3, 5, 5)).sum().backward()
>>> opt.step()

Tensors cross as ``t.detach().contiguous().numpy()`` (no copy for a contiguous CPU
tensor, and gradients never flow through the view); results come back as
``torch.from_numpy``. The modules subclass torch's, so constructor arguments,
initialization, parameters, buffers and ``state_dict`` are torch's; only ``forward``
runs our kernels. The optimizers subclass torch's: param groups, per-group ``lr``
(schedulers), hooks and ``state_dict`` are torch's, with state tensors sharing memory
with the arrays our fused kernels update. float32 and float64; other dtypes raise
TypeError.

CUDA tensors go to the CUDA backend zero-copy: the kernels get ``t.detach()`` itself
(its ``__cuda_array_interface__``) and launch on torch's current stream
(:func:`kernels.cuda._arrays.stream`); results come back with
``torch.as_tensor(device_array, device=t.device)``, again without a copy. NOTE: this
path runs only on a machine with a GPU (our test machines' torch is CPU-only); one GPU,
the current device. Tensors on other devices (``meta``, ...) raise NotImplementedError.
"""

from __future__ import annotations

import numpy as np
import torch

if not hasattr(torch, "autograd"):  # NOTE: run from inside kernels/, this file shadows torch
    raise ImportError("`import torch` found kernels/torch.py instead of PyTorch: run from "
                      "outside the kernels/ folder")

from torch.autograd.function import once_differentiable  # noqa: E402

import kernels  # noqa: E402
from kernels import optim as _optim  # noqa: E402

__all__ = ["conv2d", "max_pool2d", "batch_norm", "instance_norm", "group_norm", "layer_norm",
           "Conv2d", "MaxPool2d", "BatchNorm2d", "LayerNorm", "GroupNorm", "InstanceNorm2d",
           "SGD", "Adagrad", "RMSprop", "Adam", "AdamW"]

_DTYPES = (torch.float32, torch.float64)


# ---------------------------------------------------------------- tensors <-> arrays

def _check(t, name: str) -> None:
    """A dense CPU or CUDA float32/float64 tensor, or a clear error naming ``name``."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.device.type not in ("cpu", "cuda"):
        raise NotImplementedError(f"{name} is on {t.device}: kernels.torch runs CPU and "
                                  "CUDA tensors only (use .cpu())")
    if t.layout != torch.strided:
        raise TypeError(f"{name} must be a dense tensor, got layout {t.layout}")
    if t.dtype not in _DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {t.dtype}")


def _array(t, name: str):
    """A NumPy view of ``t`` (a copy only when ``t`` is not contiguous), outside autograd;
    for a CUDA tensor, the detached tensor itself (the kernels read it zero-copy)."""
    if t is None:
        return None
    _check(t, name)
    t = t.detach().contiguous()
    return t if t.is_cuda else t.numpy()


def _in_place(t, name: str):
    """A view of a buffer that the kernel updates in place (running statistics): NumPy
    for a CPU tensor, the detached tensor for a CUDA one."""
    if t is None:
        return None
    _check(t, name)
    if not t.is_contiguous():
        raise ValueError(f"{name} is updated in place, so it must be contiguous")
    return t.detach() if t.is_cuda else t.detach().numpy()


def _same_dtype(input: torch.Tensor, **others) -> None:
    for name, t in others.items():
        if t is not None and isinstance(t, torch.Tensor) and t.dtype != input.dtype:
            raise TypeError(f"{name} is {t.dtype} but input is {input.dtype}")


def _tensor(a, like: torch.Tensor) -> torch.Tensor | None:
    """A kernel's result as a tensor on ``like``'s device, sharing its memory: NumPy
    arrays by ``from_numpy``, device arrays by their ``__cuda_array_interface__``."""
    if a is None or isinstance(a, torch.Tensor):
        return a
    if isinstance(a, np.ndarray):
        return torch.from_numpy(a)
    return torch.as_tensor(a, device=like.device)


def _grads(ctx, like, *grads):
    """The gradients autograd asked for (None for the others), as tensors."""
    return tuple(_tensor(g, like) if need and g is not None else None
                 for g, need in zip(grads, ctx.needs_input_grad))


# ---------------------------------------------------------------- autograd Functions

class Conv2dFunction(torch.autograd.Function):
    """``F.conv2d`` by :func:`kernels.conv2d`; the backward skips ``grad_x`` when the input
    needs none (a network's first layer)."""

    @staticmethod
    def forward(ctx, input, weight, bias, stride, padding, dilation, groups):
        geometry = (stride, padding, dilation, groups)
        y = kernels.conv2d(_array(input, "input"), _array(weight, "weight"),
                           _array(bias, "bias"), *geometry)
        ctx.save_for_backward(input, weight)
        ctx.geometry = geometry
        return _tensor(y, input)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        input, weight = ctx.saved_tensors
        gx, gw, gb = kernels.conv2d_backward(
            _array(grad_out, "grad_out"), _array(input, "input"), _array(weight, "weight"),
            *ctx.geometry, need_input_grad=ctx.needs_input_grad[0])
        return _grads(ctx, input, gx, gw, gb) + (None,) * 4


class MaxPool2dFunction(torch.autograd.Function):
    """``F.max_pool2d`` by :func:`kernels.max_pool2d`; the indices are torch's (flat in
    each H×W plane), so ``return_indices`` returns them as they are."""

    @staticmethod
    def forward(ctx, input, kernel_size, stride, padding, ceil_mode, return_indices):
        y, indices = kernels.max_pool2d(_array(input, "input"), kernel_size, stride, padding,
                                        ceil_mode=ceil_mode)
        indices = _tensor(indices, input)
        ctx.save_for_backward(indices)
        ctx.input_shape = tuple(input.shape)
        if return_indices:
            ctx.mark_non_differentiable(indices)
            return _tensor(y, input), indices
        return _tensor(y, input)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out, *_):
        (indices,) = ctx.saved_tensors
        gx = kernels.max_pool2d_backward(_array(grad_out, "grad_out"),
                                         indices if indices.is_cuda else indices.numpy(),
                                         ctx.input_shape)
        return (_tensor(gx, grad_out),) + (None,) * 5


class BatchNormFunction(torch.autograd.Function):
    """``F.batch_norm`` by :func:`kernels.batch_norm`: running statistics updated in place
    in the given buffers (as torch does), the saved mean/invstd reused by the backward."""

    @staticmethod
    def forward(ctx, input, running_mean, running_var, weight, bias, training, momentum, eps):
        y, mean, invstd = kernels.batch_norm(
            _array(input, "input"), _in_place(running_mean, "running_mean"),
            _in_place(running_var, "running_var"), _array(weight, "weight"),
            _array(bias, "bias"), training, momentum, eps, return_stats=True)
        ctx.save_for_backward(input, weight)
        ctx.stats, ctx.training, ctx.has_bias = (mean, invstd), training, bias is not None
        return _tensor(y, input)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        input, weight = ctx.saved_tensors
        gx, gw, gb = kernels.batch_norm_backward(
            _array(grad_out, "grad_out"), _array(input, "input"), _array(weight, "weight"),
            *ctx.stats, ctx.training, has_bias=ctx.has_bias)
        return _grads(ctx, input, gx, None, None, gw, gb) + (None,) * 3


class InstanceNormFunction(torch.autograd.Function):
    """``F.instance_norm`` by :func:`kernels.instance_norm`."""

    @staticmethod
    def forward(ctx, input, running_mean, running_var, weight, bias, use_input_stats,
                momentum, eps):
        y, mean, invstd = kernels.instance_norm(
            _array(input, "input"), _in_place(running_mean, "running_mean"),
            _in_place(running_var, "running_var"), _array(weight, "weight"),
            _array(bias, "bias"), use_input_stats, momentum, eps, return_stats=True)
        ctx.save_for_backward(input, weight)
        ctx.stats, ctx.use_input_stats = (mean, invstd), use_input_stats
        ctx.has_bias = bias is not None
        return _tensor(y, input)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        input, weight = ctx.saved_tensors
        gx, gw, gb = kernels.instance_norm_backward(
            _array(grad_out, "grad_out"), _array(input, "input"), _array(weight, "weight"),
            *ctx.stats, ctx.use_input_stats, has_bias=ctx.has_bias)
        return _grads(ctx, input, gx, None, None, gw, gb) + (None,) * 3


class GroupNormFunction(torch.autograd.Function):
    """``F.group_norm`` by :func:`kernels.group_norm`."""

    @staticmethod
    def forward(ctx, input, num_groups, weight, bias, eps):
        y, mean, invstd = kernels.group_norm(_array(input, "input"), num_groups,
                                             _array(weight, "weight"), _array(bias, "bias"),
                                             eps, return_stats=True)
        ctx.save_for_backward(input, weight)
        ctx.stats, ctx.num_groups, ctx.has_bias = (mean, invstd), num_groups, bias is not None
        return _tensor(y, input)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        input, weight = ctx.saved_tensors
        gx, gw, gb = kernels.group_norm_backward(
            _array(grad_out, "grad_out"), _array(input, "input"), ctx.num_groups,
            _array(weight, "weight"), *ctx.stats, has_bias=ctx.has_bias)
        return _grads(ctx, input, gx, None, gw, gb, None)


class LayerNormFunction(torch.autograd.Function):
    """``F.layer_norm`` by :func:`kernels.layer_norm`."""

    @staticmethod
    def forward(ctx, input, normalized_shape, weight, bias, eps):
        y, mean, invstd = kernels.layer_norm(_array(input, "input"), normalized_shape,
                                             _array(weight, "weight"), _array(bias, "bias"),
                                             eps, return_stats=True)
        ctx.save_for_backward(input, weight)
        ctx.stats, ctx.shape, ctx.has_bias = (mean, invstd), normalized_shape, bias is not None
        return _tensor(y, input)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        input, weight = ctx.saved_tensors
        gx, gw, gb = kernels.layer_norm_backward(
            _array(grad_out, "grad_out"), _array(input, "input"), ctx.shape,
            _array(weight, "weight"), *ctx.stats, has_bias=ctx.has_bias)
        return _grads(ctx, input, gx, None, gw, gb, None)


# ---------------------------------------------------------------- functional forms

def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """``torch.nn.functional.conv2d``; an unbatched ``C×H×W`` input works as in torch."""
    _check(input, "input")
    _same_dtype(input, weight=weight, bias=bias)
    if input.dim() == 3:
        return conv2d(input.unsqueeze(0), weight, bias, stride, padding, dilation,
                      groups).squeeze(0)
    return Conv2dFunction.apply(input, weight, bias, stride, padding, dilation, groups)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """``torch.nn.functional.max_pool2d``; ``dilation`` other than 1 is not supported."""
    _check(input, "input")
    if dilation not in (1, (1, 1), [1, 1]):
        raise ValueError(f"dilation must be 1 (our max_pool2d kernel has none), got {dilation!r}")
    if stride is None or (isinstance(stride, (tuple, list)) and not stride):
        stride = None  # torch: None or [] mean stride = kernel_size
    return MaxPool2dFunction.apply(input, kernel_size, stride, padding, bool(ceil_mode),
                                   bool(return_indices))


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """``torch.nn.functional.batch_norm``: in training, ``running_mean``/``running_var``
    (when given) are updated in place, as torch does."""
    _check(input, "input")
    _same_dtype(input, running_mean=running_mean, running_var=running_var, weight=weight,
                bias=bias)
    return BatchNormFunction.apply(input, running_mean, running_var, weight, bias,
                                   bool(training), momentum, eps)


def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats=True, momentum=0.1, eps=1e-5):
    """``torch.nn.functional.instance_norm``."""
    _check(input, "input")
    _same_dtype(input, running_mean=running_mean, running_var=running_var, weight=weight,
                bias=bias)
    return InstanceNormFunction.apply(input, running_mean, running_var, weight, bias,
                                      bool(use_input_stats), momentum, eps)


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """``torch.nn.functional.group_norm``."""
    _check(input, "input")
    _same_dtype(input, weight=weight, bias=bias)
    return GroupNormFunction.apply(input, num_groups, weight, bias, eps)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """``torch.nn.functional.layer_norm``."""
    _check(input, "input")
    _same_dtype(input, weight=weight, bias=bias)
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    return LayerNormFunction.apply(input, shape, weight, bias, eps)


# ---------------------------------------------------------------- modules

class Conv2d(torch.nn.Conv2d):
    """``torch.nn.Conv2d`` whose forward runs :func:`conv2d`; ``padding_mode="zeros"``
    only (the kernels pad with zeros)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._supported()

    def _supported(self) -> None:
        if self.padding_mode != "zeros":
            raise ValueError(f"padding_mode={self.padding_mode!r} is not supported: "
                             "kernels.torch.Conv2d pads with zeros only")

    def forward(self, input):
        self._supported()
        return conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation,
                      self.groups)


class MaxPool2d(torch.nn.MaxPool2d):
    """``torch.nn.MaxPool2d`` whose forward runs :func:`max_pool2d` (``ceil_mode`` and
    ``return_indices`` work; ``dilation`` must be 1)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.dilation not in (1, (1, 1), [1, 1]):
            raise ValueError(f"dilation={self.dilation!r} is not supported: our max_pool2d "
                             "kernel has no dilation")

    def forward(self, input):
        return max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation,
                          ceil_mode=self.ceil_mode, return_indices=self.return_indices)


class BatchNorm2d(torch.nn.BatchNorm2d):
    """``torch.nn.BatchNorm2d`` whose forward runs :func:`batch_norm`, with torch's
    bookkeeping (``num_batches_tracked``, ``momentum=None`` as a cumulative average)."""

    def forward(self, input):
        self._check_input_dim(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        use_batch = self.training or (self.running_mean is None and self.running_var is None)
        track = not self.training or self.track_running_stats
        return batch_norm(input, self.running_mean if track else None,
                          self.running_var if track else None, self.weight, self.bias,
                          use_batch, factor, self.eps)


class LayerNorm(torch.nn.LayerNorm):
    """``torch.nn.LayerNorm`` whose forward runs :func:`layer_norm`."""

    def forward(self, input):
        return layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)


class GroupNorm(torch.nn.GroupNorm):
    """``torch.nn.GroupNorm`` whose forward runs :func:`group_norm`."""

    def forward(self, input):
        return group_norm(input, self.num_groups, self.weight, self.bias, self.eps)


class InstanceNorm2d(torch.nn.InstanceNorm2d):
    """``torch.nn.InstanceNorm2d`` whose forward runs :func:`instance_norm` (unbatched
    ``C×H×W`` input too, as torch)."""

    def forward(self, input):
        self._check_input_dim(input)
        if input.dim() == 3:
            return self.forward(input.unsqueeze(0)).squeeze(0)
        if self.affine and input.size(1) != self.num_features:
            raise ValueError(f"expected input's size at dim=1 to match num_features "
                             f"({self.num_features}), but got: {input.size(1)}.")
        return instance_norm(input, self.running_mean, self.running_var, self.weight,
                             self.bias, self.training or not self.track_running_stats,
                             self.momentum if self.momentum is not None else 0.0, self.eps)


# ---------------------------------------------------------------- optimizers

def _scalar(v):
    """A hyperparameter as a Python number (torch allows tensor ``lr`` and ``betas``)."""
    if isinstance(v, torch.Tensor):
        return v.item()
    if isinstance(v, tuple):
        return tuple(_scalar(x) for x in v)
    return v


def _kernel_array(t: torch.Tensor):
    """What ``kernels.optim``'s update steps in place: a NumPy view of a CPU tensor, or a
    zero-copy Numba view of a CUDA one (by its ``__cuda_array_interface__``)."""
    if not t.is_cuda:
        return t.numpy()
    from kernels.cuda import _arrays

    return _arrays.device(t, "tensor")


def _kernel_stream(p: torch.Tensor):
    """torch's current stream for a CUDA parameter (None on the CPU)."""
    if not p.is_cuda:
        return None
    from kernels.cuda import _arrays

    return _arrays.stream(p)


class _KernelStep:
    """``step`` for a ``torch.optim`` subclass: each parameter with a gradient goes
    through ``kernels.optim``'s fused update, in place on views of ``p`` and ``p.grad``
    (NumPy for CPU tensors; zero-copy device views, on torch's current stream, for CUDA
    ones), with the state tensors of ``self.state[p]`` (torch's keys) as its arrays."""

    _counts_steps = True  # torch keeps a "step" tensor (not SGD)

    def _numpy_optimizer(self, group) -> type:
        raise NotImplementedError

    def add_param_group(self, param_group) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        for flag in ("fused", "capturable", "differentiable"):
            if group.get(flag):
                raise ValueError(f"{flag}=True is not supported: kernels.torch."
                                 f"{type(self).__name__} runs our fused CPU kernels")
        for i, p in enumerate(group["params"]):
            _check(p, f"params[{i}]")

    @torch.no_grad()
    def step(self, closure=None):
        """One optimization step; ``closure`` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            rule = self._numpy_optimizer(group)
            h = {k: _scalar(v) for k, v in group.items() if k != "params"}
            for p in group["params"]:
                if p.grad is not None:
                    self._kernel_step(p, rule, h)
        return loss

    def _kernel_step(self, p: torch.Tensor, rule, h: dict) -> None:
        if p.grad.is_sparse:
            raise TypeError(f"{type(self).__name__} does not support sparse gradients")
        _check(p.grad, "grad")
        grad = _kernel_array(p.grad.detach().contiguous())
        view = p.detach()
        work_tensor = view if view.is_contiguous() else view.contiguous()
        work = _kernel_array(work_tensor)
        state = self.state.get(p, {})  # NOTE: not self.state[p], which would add an entry
        arrays = {}
        for name in rule._buffers:
            if state.get(name) is not None:
                if state[name].shape != p.shape:  # the kernel would read past its end
                    raise ValueError(f"state {name!r} has shape {tuple(state[name].shape)}, "
                                     f"but its parameter has {tuple(p.shape)}")
                if not state[name].is_contiguous() or state[name].dtype != p.dtype:
                    state[name] = state[name].to(p.dtype).contiguous()
                arrays[name] = _kernel_array(state[name].detach())
        if self._counts_steps:
            if "step" not in state:
                state["step"] = torch.tensor(0.0)
            state["step"] += 1
            arrays["step"] = int(_scalar(state["step"]))
        rule.update(work, grad, arrays, h, _kernel_stream(p))
        for name in rule._buffers:  # created by the update on its first step
            if name in arrays and state.get(name) is None:
                state[name] = _tensor(arrays[name], p)
        if state:  # SGD without momentum keeps no state, as in torch
            self.state[p] = state
        if work_tensor is not view:  # the kernel updated a copy
            view.copy_(work_tensor)


class SGD(_KernelStep, torch.optim.SGD):
    """``torch.optim.SGD`` stepping with :class:`kernels.optim.SGD`'s kernel."""

    _counts_steps = False

    def _numpy_optimizer(self, group):
        return _optim.SGD


class Adagrad(_KernelStep, torch.optim.Adagrad):
    """``torch.optim.Adagrad`` stepping with :class:`kernels.optim.Adagrad`'s kernel."""

    def _numpy_optimizer(self, group):
        return _optim.Adagrad


class RMSprop(_KernelStep, torch.optim.RMSprop):
    """``torch.optim.RMSprop`` stepping with :class:`kernels.optim.RMSprop`'s kernel."""

    def _numpy_optimizer(self, group):
        return _optim.RMSprop


class Adam(_KernelStep, torch.optim.Adam):
    """``torch.optim.Adam`` stepping with :class:`kernels.optim.Adam`'s kernel (or
    AdamW's, with ``decoupled_weight_decay=True``)."""

    def _numpy_optimizer(self, group):
        return _optim.AdamW if group.get("decoupled_weight_decay") else _optim.Adam


class AdamW(_KernelStep, torch.optim.AdamW):
    """``torch.optim.AdamW`` stepping with :class:`kernels.optim.AdamW`'s kernel."""

    def _numpy_optimizer(self, group):
        return _optim.AdamW
