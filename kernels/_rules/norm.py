"""The argument rules of the norms, shared by :mod:`kernels.norm` and
:mod:`kernels.cuda.norm`: torch's checks on a call's shapes, the hyperparameters
(momentum, eps, num_groups, normalized_shape), and that the running statistics are two
buffers. Shapes, numbers and addresses only, so both backends use them.
"""

from __future__ import annotations

import math

import numpy as np

from .._checks import positive, real, shares_memory


def _batch_checks(shape, training, running_mean, running_var) -> None:
    """torch's checks on a batch-norm call; shapes only, so both backends share them."""
    shape = tuple(shape)
    if training and int(np.prod(shape)) // shape[1] < 2:
        raise ValueError(f"x: expected more than 1 value per channel when training, "
                         f"got shape {shape}")
    if not training and (running_mean is None or running_var is None):
        raise ValueError("running_mean and running_var must be given when training=False")


def _group_checks(shape, groups: int) -> None:
    """torch's check on a group-norm call: more than one value per (n, group)."""
    shape = tuple(shape)
    if int(np.prod(shape)) // groups == 1:
        raise ValueError(f"x: expected more than 1 value per channel when training, "
                         f"got shape {shape} with {groups} groups")


def _momentum(momentum) -> float:
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float, np.floating)):
        raise TypeError(f"momentum must be a finite number, got {momentum!r}")
    if not math.isfinite(momentum):
        raise ValueError(f"momentum must be a finite number, got {momentum!r}")
    return float(momentum)


def _eps(eps) -> float:
    """``eps`` as a float: a number (not a string such as ``"1e-5"``), finite, >= 0."""
    return positive(real(eps, "eps"), "eps", allow_zero=True)


def _distinct_running(running_mean, running_var) -> None:
    """Refuse one buffer as both running statistics (the same array, or overlapping
    views of one), host or device: each is the other's input and output."""
    if running_mean is not None and running_var is not None \
            and shares_memory(running_mean, running_var):
        raise ValueError("running_mean and running_var share memory (the same array, or "
                         "overlapping views of one buffer): pass two separate arrays")


def _groups(num_groups, channels: int) -> int:
    if isinstance(num_groups, bool) or not isinstance(num_groups, (int, np.integer)):
        raise TypeError(f"num_groups must be an int, got {num_groups!r}")
    if num_groups < 1 or channels % num_groups:
        raise ValueError(f"num_groups must be positive and divide the {channels} channels "
                         f"of x, got {num_groups}")
    return int(num_groups)


def _normalized_shape(normalized_shape, x) -> tuple[int, ...]:
    shape = ((normalized_shape,) if isinstance(normalized_shape, (int, np.integer))
             else tuple(normalized_shape))
    if not shape or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool)
                            for s in shape):
        raise TypeError(f"normalized_shape must be an int or a non-empty sequence of ints, "
                        f"got {normalized_shape!r}")
    shape = tuple(int(s) for s in shape)
    if len(shape) > x.ndim or x.shape[x.ndim - len(shape):] != shape:
        raise ValueError(f"normalized_shape {shape} must match the trailing dimensions "
                         f"of x, shape {x.shape}")
    return shape
