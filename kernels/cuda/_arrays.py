"""Device arrays: zero-copy views, validation before any launch, and torch's stream.

Every host wrapper in this package takes its array arguments through :func:`device`,
allocates outputs with :func:`empty` / :func:`zeros`, and launches on :func:`stream`.
"""

from __future__ import annotations

import numpy as np
from numba import config, cuda

from .._checks import check_meta, is_device


def device(x, name: str, ndim: int | tuple[int, ...] | None = None, dtype=None,
           floats: bool = True):
    """``x`` as a Numba device array, zero-copy, checked like :func:`kernels._checks.array`.

    Anything exposing ``__cuda_array_interface__`` is accepted. A PyTorch tensor that
    requires grad refuses to expose it: we say to ``.detach()`` it. Non-contiguous
    arrays are refused (a kernel writes or reads them flat).
    """
    if isinstance(x, np.ndarray):
        raise TypeError(f"{name} is a NumPy (host) array but the other arguments are on "
                        "the GPU: pass all arrays on one device")
    if not is_device(x):
        raise TypeError(f"{name} must be a CUDA array (all arguments on one device), got "
                        f"{type(x).__name__}")
    try:
        d = x if config.ENABLE_CUDASIM else cuda.as_cuda_array(x)
    except RuntimeError as err:  # torch: "Can't get __cuda_array_interface__ on Variable..."
        if "requires grad" in str(err):
            raise TypeError(f"{name} is a tensor that requires grad: pass {name}.detach()"
                            ) from None
        raise TypeError(f"{name} is not a usable CUDA array: {err}") from None
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a CUDA array, got {type(x).__name__} ({err})"
                        ) from None
    check_meta(name, d.dtype, tuple(d.shape), ndim, dtype, floats)
    if not d.is_c_contiguous():
        raise ValueError(f"{name} must be C-contiguous on the GPU (e.g. tensor.contiguous())")
    return d


def stream(*arrays):
    """The stream to launch on: PyTorch's current stream when any argument is a torch
    tensor (its ``__cuda_array_interface__`` carries no stream, so we join torch's
    ordering instead of racing it), else Numba's default stream."""
    for a in arrays:
        if type(a).__module__.startswith("torch"):
            import torch

            return cuda.external_stream(torch.cuda.current_stream().cuda_stream)
    return cuda.default_stream()


def empty(shape, dtype, s=None):
    return cuda.device_array(tuple(int(n) for n in shape), dtype=dtype, stream=s or 0)


def zeros(shape, dtype, s=None):
    """A zero-filled device array (filled on the device, no host transfer)."""
    from .elementwise import fill

    out = empty(shape, dtype, s)
    fill(out, 0, s)
    return out
