"""Optimizers over NumPy arrays, stepping exactly as ``torch.optim`` of the same name.

>>> import numpy as np
>>> from kernels.optim import SGD
>>> w = np.ones(3, dtype=np.float32)
>>> opt = SGD([w], lr=0.5)
>>> opt.step([np.full(3, 2, dtype=np.float32)])
>>> w
array([0., 0., 0.], dtype=float32)

Each optimizer is constructed with a list of parameter arrays (updated in place;
float32 or float64, C-contiguous and writeable, of any shape, 0-d scalars included,
as in torch; no two may share memory) and torch's hyperparameter names and defaults:
numbers (ints, floats, NumPy scalars; finite, and in torch's ranges) and bools, kept
as Python floats and bools. A string, a bool for a number or a number for a flag is
a TypeError naming the argument. ``step(grads)`` validates the gradients (count,
shape, dtype) and then runs one fused kernel per parameter. The per-step scalars
(bias corrections, decayed learning rates) are computed here in Python float64
and cast to the parameter's dtype, as torch does. ``state_dict()`` returns copies
of the state arrays, the hyperparameters and the step counts;
``load_state_dict()`` checks all of them as the constructor does (naming the key),
then restores them, so a loaded optimizer continues the same trajectory.
Hyperparameters live in ``opt.hyperparameters`` (a dict; change ``lr`` there for a
schedule).

Device arrays (anything with ``__cuda_array_interface__``: Numba, CuPy, PyTorch CUDA
tensors) work too: all parameters and gradients on the GPU, stepped by the fused CUDA
kernels of :mod:`kernels.cuda.optim` with the same arguments, so the trajectory is the
same. The state arrays then live on the device; ``state_dict()`` returns host (NumPy)
copies and ``load_state_dict()`` copies host or device arrays to the device.
"""

from __future__ import annotations

import numpy as np

from ._checks import FLOATS, count, flag, is_device, native, on_device, overlapping, real

__all__ = ["SGD", "Adagrad", "RMSprop", "Adam", "AdamW"]


def _cuda():
    """The CUDA kernels and state helpers, imported only for device parameters."""
    from .cuda import optim

    return optim


def _kernel(name: str, p, stream=None):
    """The kernel ``name`` sized for ``p``: the CPU one (serial for small arrays), or the
    CUDA one on ``stream`` for a device array; both take the same arguments.

    NOTE: imported on first step so that constructing an optimizer does not load Numba."""
    if is_device(p):
        return _cuda().kernel(name, p.size, stream)
    from .cpu import optim
    return optim.kernel(name, p.size)


def _flat(x):
    if len(x.shape) == 1:
        return x  # a device array's reshape costs microseconds a step even when a no-op
    return x.reshape(x.size)  # NOTE: not reshape(-1), which device arrays refuse


def _unused(p):
    """The array passed for a state buffer a step does not use (its flag is off, so no
    kernel reads or writes it): an empty flat view on the host (of a 0-d parameter too),
    ``p`` itself on the device, where slicing a view costs ~20 us a step."""
    return p if is_device(p) else _flat(p)[:0]


def _lerp_weights(dtype, w: float):
    """The scalars of torch's two-sided ``lerp`` with weight ``w``, in ``dtype``."""
    t = dtype.type
    return t(w), t(1) - t(w), bool(abs(t(w)) < 0.5)


def _sign(p: np.ndarray, h: dict):
    """-1 to maximize (the kernels multiply the gradient by it: exact), else 1."""
    return p.dtype.type(-1 if h["maximize"] else 1)


def _buffer(state: dict, name: str, p, fill: float = 0.0, stream=None):
    """The state array ``name`` of parameter ``p``, created (filled) on first use, on
    ``p``'s side (host or device)."""
    if state.get(name) is None:
        state[name] = (_cuda().full(p.shape, p.dtype, fill, stream) if is_device(p)
                       else np.full_like(p, fill))
    return state[name]


def _betas(value, name: str) -> tuple[float, float]:
    """Adam's ``betas``: two numbers in [0, 1), as floats."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{name} must be a pair of numbers in [0, 1), got {value!r}")
    return tuple(real(b, f"{name}[{k}]", minimum=0.0, below=1.0) for k, b in enumerate(value))


# what each kind of hyperparameter must be (the value checked, named)
_RULES = {"nonnegative": lambda v, name: real(v, name, minimum=0.0),
          "real": real, "flag": flag, "betas": _betas}


class _Optimizer:
    """Shared machinery: parameter and gradient checks, step counts, state dicts."""

    _buffers: tuple[str, ...] = ()  # names of the per-parameter state arrays
    _hyper: dict[str, str] = {}  # hyperparameter -> its kind in _RULES

    @classmethod
    def _checked(cls, hyperparameters: dict, where: str = "") -> dict:
        """``hyperparameters`` checked (TypeError or ValueError naming the key, prefixed by
        ``where``) and normalized: numbers as floats, flags as bools, betas a tuple."""
        out = {}
        for key, kind in cls._hyper.items():
            name = f"{where}[{key!r}]" if where else key
            out[key] = _RULES[kind](hyperparameters[key], name)
        cls._check_together(out, where)
        return out

    @classmethod
    def _check_together(cls, h: dict, where: str) -> None:
        """Checks across hyperparameters (SGD's nesterov)."""

    def __init__(self, params, **hyperparameters):
        checked = self._checked(hyperparameters)  # first, as torch does
        if isinstance(params, np.ndarray) or not isinstance(params, (list, tuple)):
            raise TypeError("params must be a list of arrays, got "
                            f"{type(params).__name__}")
        if not params:
            raise ValueError("params is an empty list")
        self._device = on_device(*params)  # then every parameter must be on the device
        self._stream = None
        if self._device:
            from .cuda import _arrays

            # zero-copy Numba views of the caller's arrays (torch tensors, CuPy, ...)
            self._arrays = [_arrays.device(p, f"params[{i}]") for i, p in enumerate(params)]
            self._stream = _arrays.stream(*params)
        for i, p in enumerate([] if self._device else params):
            name = f"params[{i}]"
            if not isinstance(p, np.ndarray):
                raise TypeError(f"{name} must be a NumPy array, got {type(p).__name__}")
            if p.dtype.type not in FLOATS:
                raise TypeError(f"{name} must be float32 or float64, got {p.dtype}")
            native(name, p.dtype)
            if not p.flags.c_contiguous:
                raise ValueError(f"{name} must be C-contiguous (it is updated in place)")
            if not p.flags.writeable:
                raise ValueError(f"{name} is read-only (it is updated in place)")
        self.params = list(params)
        if not self._device:
            self._arrays = self.params
        shared = overlapping(self._arrays)  # each parameter is updated in place, once
        if shared is not None:
            i, j = shared
            raise ValueError(f"params[{i}] and params[{j}] share memory (the same array "
                             "twice, or overlapping views of one buffer): each parameter "
                             "must be its own array")
        self.hyperparameters = checked
        self.state = [{"step": 0} for _ in self.params]

    # -- per-optimizer -------------------------------------------------------------------
    @classmethod
    def update(cls, p, g, state: dict, h: dict, stream=None) -> None:
        """One step of one parameter ``p`` in place, from its checked gradient ``g``:
        ``state`` holds ``"step"`` (already counted) and the state arrays (created here on
        first use), ``h`` the hyperparameters. ``p`` and ``g`` are NumPy arrays, or Numba
        device arrays stepped on ``stream``. Shared with ``kernels.torch``'s optimizers."""
        raise NotImplementedError

    # -- public --------------------------------------------------------------------------
    def step(self, grads) -> None:
        """Update every parameter and its state in place from ``grads`` (one per parameter)."""
        if isinstance(grads, np.ndarray) or not isinstance(grads, (list, tuple)):
            raise TypeError(f"grads must be a list of arrays, got {type(grads).__name__}")
        if len(grads) != len(self.params):
            raise ValueError(f"grads has {len(grads)} arrays but there are "
                             f"{len(self.params)} parameters")
        checked = []
        for i, (p, g) in enumerate(zip(self._arrays, grads)):
            name = f"grads[{i}]"
            if isinstance(g, np.generic):  # NumPy arithmetic on 0-d arrays gives scalars
                g = np.asarray(g)
            if self._device:
                from .cuda._arrays import device

                g = device(g, name)  # on the GPU too (a NumPy array is refused), zero-copy
            elif not isinstance(g, np.ndarray):
                where = "is on the GPU but the parameters are NumPy arrays" if is_device(g) \
                    else f"must be a NumPy array, got {type(g).__name__}"
                raise TypeError(f"{name} {where}")
            if g.dtype != p.dtype:
                raise TypeError(f"{name} is {g.dtype} but params[{i}] is {p.dtype}")
            if g.shape != p.shape:
                raise ValueError(f"{name} has shape {g.shape} but params[{i}] has {p.shape}")
            # NOTE: not np.ascontiguousarray(g) always, which makes a 0-d gradient 1-d
            checked.append(g if self._device or g.flags.c_contiguous
                           else np.ascontiguousarray(g))
        for p, g, state in zip(self._arrays, checked, self.state):
            state["step"] += 1
            self.update(p, g, state, self.hyperparameters, self._stream)

    def state_dict(self) -> dict:
        """``{"hyperparameters": {...}, "state": [{"step": int, name: array, ...}, ...]}``
        (copies: later steps do not change it; NumPy arrays for device state too)."""
        return {"hyperparameters": dict(self.hyperparameters),
                "state": [{k: self._host_copy(v) for k, v in s.items()} for s in self.state]}

    def _host_copy(self, v):
        if is_device(v):
            return _cuda().to_host(v, self._stream)
        return v.copy() if isinstance(v, np.ndarray) else v

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore hyperparameters, step counts and state arrays (copied) from ``state_dict``."""
        if not isinstance(state_dict, dict) or set(state_dict) != {"hyperparameters", "state"}:
            raise ValueError("state_dict must be a dict with keys 'hyperparameters' and 'state'")
        hyper, states = state_dict["hyperparameters"], state_dict["state"]
        if not isinstance(hyper, dict):
            raise TypeError("state_dict['hyperparameters'] must be a dict, got "
                            f"{type(hyper).__name__}")
        if set(hyper) != set(self.hyperparameters):
            raise ValueError(f"state_dict hyperparameters {sorted(hyper)} do not match "
                             f"{type(self).__name__}'s {sorted(self.hyperparameters)}")
        hyper = self._checked(hyper, "state_dict['hyperparameters']")
        if not isinstance(states, (list, tuple)):
            raise TypeError(f"state_dict['state'] must be a list, got {type(states).__name__}")
        if len(states) != len(self.params):
            raise ValueError(f"state_dict has state for {len(states)} parameters, "
                             f"this optimizer has {len(self.params)}")
        # every entry checked before any is copied (to the device): all or nothing
        for i, (p, s) in enumerate(zip(self._arrays, states)):
            where = f"state_dict['state'][{i}]"
            if not isinstance(s, dict):
                raise TypeError(f"{where} must be a dict, got {type(s).__name__}")
            unknown = set(s) - {"step", *self._buffers}
            if "step" not in s or unknown:
                raise ValueError(f"state_dict state[{i}] needs 'step' and only "
                                 f"{list(self._buffers)}, got {sorted(s)}")
            count(s["step"], f"{where}['step']")
            for name in self._buffers:
                v = s.get(name)
                if v is None:
                    continue
                key = f"{where}[{name!r}]"
                if not (isinstance(v, np.ndarray) or is_device(v)):
                    raise TypeError(f"{key} must be an array, got {type(v).__name__}")
                if v.dtype != p.dtype:
                    raise TypeError(f"{key} is {v.dtype} but params[{i}] is {p.dtype}")
                if tuple(v.shape) != tuple(p.shape):
                    raise ValueError(f"{key} has shape {tuple(v.shape)} but params[{i}] has "
                                     f"{tuple(p.shape)}")
        loaded = []
        for s in states:
            new = {"step": count(s["step"], "step")}
            for name in self._buffers:
                v = s.get(name)
                if v is None:
                    continue
                if is_device(v):
                    v = self._host_copy(v)
                # a copy, like torch's load
                new[name] = (_cuda().to_device(v, self._stream) if self._device
                             else np.array(v, order="C"))
            loaded.append(new)
        self.hyperparameters = hyper
        self.state = loaded

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters.items())
        return f"{type(self).__name__}({len(self.params)} params, {args})"


class SGD(_Optimizer):
    """``torch.optim.SGD``: momentum (the buffer starts as the first gradient), dampening,
    Nesterov, weight decay, maximize."""

    _buffers = ("momentum_buffer",)

    _hyper = {"lr": "nonnegative", "momentum": "nonnegative", "dampening": "real",
              "weight_decay": "nonnegative", "nesterov": "flag", "maximize": "flag"}

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0,
                 nesterov=False, *, maximize=False):
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening,
                         weight_decay=weight_decay, nesterov=nesterov, maximize=maximize)

    @classmethod
    def _check_together(cls, h, where):
        if h["nesterov"] and (h["momentum"] <= 0 or h["dampening"] != 0):
            raise ValueError(f"{where + ': ' if where else ''}nesterov needs momentum > 0 "
                             "and dampening = 0")

    @classmethod
    def update(cls, p, g, state, h, stream=None):
        t = p.dtype.type
        use_momentum = h["momentum"] != 0
        first = state.get("momentum_buffer") is None
        buf = _buffer(state, "momentum_buffer", p, 0, stream) if use_momentum else _unused(p)
        _kernel("sgd", p, stream)(
            _flat(p), _flat(g), _flat(buf), t(-h["lr"]), t(h["momentum"]),
            t(1 - h["dampening"]), t(h["weight_decay"]), _sign(p, h),
            use_momentum, first, h["nesterov"], h["weight_decay"] != 0)


class Adagrad(_Optimizer):
    """``torch.optim.Adagrad``: lr / (1 + (step - 1) * lr_decay), accumulator start value."""

    _buffers = ("sum",)

    _hyper = {"lr": "nonnegative", "lr_decay": "nonnegative", "weight_decay": "nonnegative",
              "initial_accumulator_value": "nonnegative", "eps": "nonnegative",
              "maximize": "flag"}

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0,
                 initial_accumulator_value=0, eps=1e-10, *, maximize=False):
        super().__init__(params, lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                         initial_accumulator_value=initial_accumulator_value, eps=eps,
                         maximize=maximize)
        for p, state in zip(self._arrays, self.state):  # torch fills it at construction
            _buffer(state, "sum", p, self.hyperparameters["initial_accumulator_value"],
                    self._stream)

    @classmethod
    def update(cls, p, g, state, h, stream=None):
        t = p.dtype.type
        clr = h["lr"] / (1 + (state["step"] - 1) * h["lr_decay"])
        state_sum = _buffer(state, "sum", p, h["initial_accumulator_value"], stream)
        _kernel("adagrad", p, stream)(
            _flat(p), _flat(g), _flat(state_sum), t(-clr), t(h["weight_decay"]), t(h["eps"]),
            _sign(p, h), h["weight_decay"] != 0)


class RMSprop(_Optimizer):
    """``torch.optim.RMSprop``: smoothing ``alpha``, momentum, centered (subtract the
    squared running mean of the gradient)."""

    _buffers = ("square_avg", "grad_avg", "momentum_buffer")

    _hyper = {"lr": "nonnegative", "alpha": "nonnegative", "eps": "nonnegative",
              "weight_decay": "nonnegative", "momentum": "nonnegative", "centered": "flag",
              "maximize": "flag"}

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                 centered=False, *, maximize=False):
        super().__init__(params, lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                         momentum=momentum, centered=centered, maximize=maximize)

    @classmethod
    def update(cls, p, g, state, h, stream=None):
        t = p.dtype.type
        centered, use_momentum = h["centered"], h["momentum"] > 0
        square_avg = _buffer(state, "square_avg", p, 0, stream)
        grad_avg = _buffer(state, "grad_avg", p, 0, stream) if centered else _unused(p)
        buf = _buffer(state, "momentum_buffer", p, 0, stream) if use_momentum else _unused(p)
        _kernel("rmsprop", p, stream)(
            _flat(p), _flat(g), _flat(square_avg), _flat(grad_avg), _flat(buf), t(-h["lr"]),
            t(h["alpha"]), t(1 - h["alpha"]), *_lerp_weights(p.dtype, 1 - h["alpha"]),
            t(h["eps"]), t(h["weight_decay"]), t(h["momentum"]), _sign(p, h), centered,
            use_momentum, h["weight_decay"] != 0)


class Adam(_Optimizer):
    """``torch.optim.Adam`` (Kingma & Ba, Algorithm 1, with bias correction; AMSGrad keeps
    the running max of the raw second moment)."""

    _buffers = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _decoupled = False

    _hyper = {"lr": "nonnegative", "betas": "betas", "eps": "nonnegative",
              "weight_decay": "nonnegative", "amsgrad": "flag", "maximize": "flag"}

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, maximize=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, maximize=maximize)

    @classmethod
    def update(cls, p, g, state, h, stream=None):
        t = p.dtype.type
        beta1, beta2 = h["betas"]
        step, lr, wd = state["step"], h["lr"], h["weight_decay"]
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        exp_avg = _buffer(state, "exp_avg", p, 0, stream)
        exp_avg_sq = _buffer(state, "exp_avg_sq", p, 0, stream)
        vmax = _buffer(state, "max_exp_avg_sq", p, 0, stream) if h["amsgrad"] else _unused(p)
        decoupled = cls._decoupled and wd != 0
        _kernel("adam", p, stream)(
            _flat(p), _flat(g), _flat(exp_avg), _flat(exp_avg_sq), _flat(vmax),
            t(-lr / bias_correction1), t(beta2), t(1 - beta2),
            *_lerp_weights(p.dtype, 1 - beta1), t(bias_correction2**0.5),
            t(h["eps"]), t(wd), t(1 - lr * wd if decoupled else 1), _sign(p, h),
            h["amsgrad"], wd != 0 and not cls._decoupled)


class AdamW(Adam):
    """``torch.optim.AdamW``: Adam with decoupled weight decay (param *= 1 - lr * wd)."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, maximize=maximize)
