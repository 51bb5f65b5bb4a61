"""Compile every CPU kernel ahead of time (``python -m kernels warmup``).

Each case calls the public API (``kernels.conv2d``, ``kernels.optim.Adam(...).step``, ...)
once. It picks shapes that take each code path: for a family whose
small jobs run serial copies of the kernels (conv2d, correlation, the activations and
losses, the optimizers), a small case and one above the family's threshold
(``kernels.conv.PARALLEL_MIN_MACS``, ``kernels.cpu.correlate.PARALLEL_MIN_WORK``,
``kernels.activation.PARALLEL_MIN``, ``kernels.cpu.optim.PARALLEL_MIN``), so that both
copies compile; for conv2d, each tile layout (batch lanes, width lanes, wide tiles),
strides 1, 2 and 3, padding, dilation, groups, depthwise and 1x1 layers, and the
backward with and without the input gradient. Numba keeps what it compiles in its
on-disk cache, so a warm run only loads it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import NamedTuple

import numpy as np

# family -> what the notice and the progress bar call it
FAMILIES = {
    "correlation": "correlation",
    "conv2d": "conv2d",
    "pooling": "pooling",
    "norms": "norms",
    "activations": "activations and losses",
    "optimizers": "optimizers",
}
ALIASES = {"correlate": "correlation", "conv": "conv2d", "pool": "pooling", "norm": "norms",
           "activation": "activations", "losses": "activations", "loss": "activations",
           "optim": "optimizers", "optimizer": "optimizers"}
DTYPES = {"float32": np.float32, "float64": np.float64}


class Case(NamedTuple):
    family: str
    dtype: str
    name: str
    run: Callable[[], object]


def parse_families(text: str | None) -> list[str]:
    """``"conv2d,pooling"`` -> ``["conv2d", "pooling"]`` (None or "all": every family, in
    order); an unknown name raises ValueError naming the known ones."""
    if text is None or text.strip().lower() == "all":
        return list(FAMILIES)
    chosen = []
    for part in text.split(","):
        name = part.strip().lower()
        if not name:
            continue
        name = ALIASES.get(name, name)
        if name not in FAMILIES:
            raise ValueError(f"unknown family {part.strip()!r}; choose from "
                             f"{', '.join(FAMILIES)} (or all)")
        if name not in chosen:
            chosen.append(name)
    if not chosen:
        raise ValueError(f"no family given; choose from {', '.join(FAMILIES)} (or all)")
    return [f for f in FAMILIES if f in chosen]


def _rand(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


# ---------------------------------------------------------------- the cases per family

def _correlation(dtype) -> Iterable[tuple[str, Callable]]:
    import kernels
    from kernels.cpu.correlate import PARALLEL_MIN_WORK

    rng = np.random.default_rng(0)
    side = 8
    while side * side * 25 < PARALLEL_MIN_WORK:
        side *= 2
    big, small = _rand(rng, (side, side), dtype), _rand(rng, (8, 8), dtype)
    k5, k3 = _rand(rng, (5, 5), dtype), _rand(rng, (3, 3), dtype)
    long_ = _rand(rng, (2 * PARALLEL_MIN_WORK // 8,), dtype)
    yield "correlate2d small", lambda: [kernels.correlate2d(small, k3, m)
                                        for m in ("full", "same", "valid")]
    yield "correlate2d small, wide kernel", lambda: kernels.correlate2d(k3, small)
    yield "correlate2d large", lambda: kernels.correlate2d(big, k5, "same")
    yield "correlate1d", lambda: (kernels.correlate1d(small[0], k3[0]),
                                  kernels.correlate1d(long_, k5[0].copy(), "valid"))


# name -> (large x shape, small x shape, w shape, keyword arguments): the large one at
# least PARALLEL_MIN_MACS multiply-adds (the parallel kernels), the small one below (serial)
CONV_CASES = {
    # (LeNet's conv1 on CIFAR: 6 output channels, which fill no block of channel lanes)
    "batch lanes": ((64, 3, 32, 32), (16, 3, 16, 16), (6, 3, 5, 5), {}),
    "width lanes": ((8, 16, 32, 32), (2, 16, 16, 16), (16, 16, 3, 3), dict(padding=1)),
    "wide tiles": ((8, 16, 28, 28), (2, 16, 12, 12), (16, 16, 3, 3), dict(padding=1)),
    "stride 2": ((8, 16, 32, 32), (2, 16, 16, 16), (16, 16, 3, 3), dict(stride=2, padding=1)),
    "stride 2, batch lanes": ((64, 32, 16, 16), (16, 32, 8, 8), (6, 32, 3, 3),
                              dict(stride=2, padding=1)),
    "stride 3, dilation 2": ((8, 16, 52, 52), (2, 16, 13, 13), (16, 16, 3, 3),
                             dict(stride=3, padding=2, dilation=2)),
    "groups 2": ((8, 16, 32, 32), (2, 16, 16, 16), (16, 8, 3, 3), dict(padding=1, groups=2)),
    # grouped wide tiles, a group of an image at a time (ResNeXt's 8 channels a group)
    "groups 8, stride 2": ((8, 64, 56, 56), (1, 64, 48, 48), (64, 8, 3, 3),
                           dict(stride=2, padding=1, groups=8)),  # (at 32x32, 8 lanes
    # took channels as lanes)
    # depthwise 3x3 and 5x5 at strides 1 and 2, and 7x7: bands of rows (a copy of the
    # kernel for each size and stride, and a general one)
    "depthwise": ((16, 32, 32, 32), (2, 32, 16, 16), (32, 1, 3, 3), dict(padding=1, groups=32)),
    "depthwise, stride 2": ((16, 32, 64, 64), (2, 32, 32, 32), (32, 1, 3, 3),
                            dict(stride=2, padding=1, groups=32)),
    "depthwise 5x5": ((16, 32, 32, 32), (2, 32, 16, 16), (32, 1, 5, 5),
                      dict(padding=2, groups=32)),
    "depthwise 5x5, stride 2": ((16, 32, 64, 64), (2, 32, 32, 32), (32, 1, 5, 5),
                                dict(stride=2, padding=2, groups=32)),
    "depthwise 7x7": ((16, 32, 32, 32), (2, 32, 16, 16), (32, 1, 7, 7),
                      dict(padding=3, groups=32)),
    # dilated, and small planes, at stride 1: straight from x by masked loads
    "depthwise, dilation 2": ((16, 32, 32, 32), (2, 32, 16, 16), (32, 1, 3, 3),
                              dict(padding=2, dilation=2, groups=32)),
    "depthwise, 7x7 map": ((128, 128, 7, 7), (1, 128, 7, 7), (128, 1, 3, 3),
                           dict(padding=1, groups=128)),
    # small planes at stride 2: channels as the lanes
    "depthwise, stride 2 to a 7x7 map": ((128, 128, 14, 14), (1, 128, 14, 14), (128, 1, 3, 3),
                                         dict(stride=2, padding=1, groups=128)),
    # other strided layers: plane by plane
    "depthwise 7x7, stride 2": ((16, 32, 64, 64), (2, 32, 32, 32), (32, 1, 7, 7),
                                dict(stride=2, padding=3, groups=32)),
    "1x1": ((8, 16, 32, 32), (2, 16, 8, 8), (32, 16, 1, 1), {}),
    # the weight gradient as one matrix product: 64 channels, planes of 512 positions
    "1x1, 64 channels": ((8, 64, 24, 24), (1, 64, 8, 8), (64, 64, 1, 1), {}),
    "1x1, stride 2": ((16, 16, 64, 64), (2, 16, 8, 8), (64, 16, 1, 1), dict(stride=2)),
    # an RGB stem: its strided input gradient's 3 channels in blocks of 4 (from
    # FEW_MIN_MACS)
    "7x7 stride 2 on 3 channels (a stem)": ((8, 3, 128, 128), (2, 3, 32, 32), (16, 3, 7, 7),
                                            dict(stride=2, padding=3)),
    "5x5 on one channel (LeNet conv1)": ((64, 1, 28, 28), (8, 1, 28, 28), (6, 1, 5, 5), {}),
    "5x5 (LeNet conv2)": ((64, 6, 14, 14), (8, 6, 14, 14), (16, 6, 5, 5), {}),
    # a 7x7 map: the output channels as the lanes (in exact sets: padded), and a 1x1 layer
    # at 14x14 (ResNet-50's), straight from x
    "7x7 map, 64 channels": ((8, 64, 7, 7), (1, 64, 7, 7), (64, 64, 3, 3), dict(padding=1)),
    "1x1 on a 14x14 map, 256 -> 64 channels": ((8, 256, 14, 14), (1, 256, 14, 14),
                                               (64, 256, 1, 1), {}),
    # ... 16 a group (ResNeXt's 32 groups), by class: the forward, the input gradient and
    # the weight gradient (32 blocks, which most thread counts share evenly)
    "7x7 map, 32 groups of 16 channels": ((8, 512, 7, 7), (1, 512, 7, 7), (512, 16, 3, 3),
                                          dict(padding=1, groups=32)),
    # ResNet's 3x3 layers: Winograd's F(2x2, 3x3) for the forward and both gradients
    # (at stride 2, the forward and the input gradient)
    "3x3, 64 channels": ((8, 64, 16, 16), (1, 64, 8, 8), (64, 64, 3, 3), dict(padding=1)),
    "3x3 stride 2, 128 channels": ((8, 128, 32, 32), (1, 128, 8, 8), (128, 128, 3, 3),
                                   dict(stride=2, padding=1)),
    # taps and outputs enough for the weight gradient with channels as lanes
    "3x3, 32 -> 64 channels": ((8, 32, 16, 16), (1, 32, 12, 12), (64, 32, 3, 3),
                               dict(padding=1)),
}


def _macs(x_shape, w_shape, **kw) -> int:
    from kernels.conv import _geometry

    geo = _geometry(np.empty(x_shape), np.empty(w_shape), kw.get("stride", 1),
                    kw.get("padding", 0), kw.get("dilation", 1), kw.get("groups", 1))
    return (x_shape[0] * w_shape[0] * geo.out_hw[0] * geo.out_hw[1]
            * int(np.prod(w_shape[1:])))


def conv_shapes() -> list[tuple[str, tuple, tuple, dict]]:
    """``(name, x_shape, w_shape, kwargs)`` of every conv2d case, large and small. Should
    ``PARALLEL_MIN_MACS`` change, the large images grow and the small ones shrink to stay
    on their side of it."""
    import kernels.conv as conv

    threshold = getattr(conv, "PARALLEL_MIN_MACS", 4_000_000)
    shapes = []
    for name, (large, small, w_shape, kw) in CONV_CASES.items():
        n, c, h, w = large
        while _macs((n, c, h, w), w_shape, **kw) < threshold:
            h, w = 2 * h, 2 * w
        shapes.append((name, (n, c, h, w), w_shape, kw))
        n, c, h, w = small
        while _macs((n, c, h, w), w_shape, **kw) >= threshold and n > 1:
            n = max(n // 2, 1)
        shapes.append((name + ", small", (n, c, h, w), w_shape, kw))
    return shapes


def _conv2d(dtype) -> Iterable[tuple[str, Callable]]:
    import kernels

    rng = np.random.default_rng(0)
    for name, x_shape, w_shape, kw in conv_shapes():
        def run(x_shape=x_shape, w_shape=w_shape, kw=kw):
            x, w = _rand(rng, x_shape, dtype), _rand(rng, w_shape, dtype)
            y = kernels.conv2d(x, w, _rand(rng, w_shape[:1], dtype), **kw)
            g = np.ones_like(y)
            kernels.conv2d_backward(g, x, w, **kw)
            kernels.conv2d_backward(g, x, w, need_input_grad=False, **kw)
        yield name, run


def _pooling(dtype) -> Iterable[tuple[str, Callable]]:
    import kernels

    rng = np.random.default_rng(0)
    x = _rand(rng, (4, 8, 16, 16), dtype)

    def max_pool(kernel, stride, padding):
        y, idx = kernels.max_pool2d(x, kernel, stride, padding)
        kernels.max_pool2d_backward(np.ones_like(y), idx, x.shape)

    def avg_pool(count_include_pad):
        y = kernels.avg_pool2d(x, 3, 2, 1, count_include_pad=count_include_pad)
        kernels.avg_pool2d_backward(np.ones_like(y), x.shape, 3, 2, 1,
                                    count_include_pad=count_include_pad)

    yield "max_pool2d 2x2", lambda: max_pool(2, 2, 0)
    yield "max_pool2d 3x3", lambda: max_pool(3, 2, 1)
    yield "avg_pool2d", lambda: (avg_pool(True), avg_pool(False))


def _norms(dtype) -> Iterable[tuple[str, Callable]]:
    import kernels

    rng = np.random.default_rng(0)
    x = _rand(rng, (4, 8, 6, 6), dtype)
    g = np.ones_like(x)
    w, b = _rand(rng, (8,), dtype), _rand(rng, (8,), dtype)

    def batch_norm():
        mean, var = np.zeros(8, dtype), np.ones(8, dtype)
        for training in (True, False):
            _, m, s = kernels.batch_norm(x, mean, var, w, b, training, return_stats=True)
            kernels.batch_norm_backward(g, x, w, m, s, training)

    def group_norm():
        _, m, s = kernels.group_norm(x, 2, w, b, return_stats=True)
        kernels.group_norm_backward(g, x, 2, w, m, s)
        _, m, s = kernels.instance_norm(x, None, None, w, b, return_stats=True)
        kernels.instance_norm_backward(g, x, w, m, s)

    def layer_norm():
        _, m, s = kernels.layer_norm(x, (6, 6), None, None, return_stats=True)
        kernels.layer_norm_backward(g, x, (6, 6), None, m, s)

    yield "batch_norm", batch_norm
    yield "group_norm, instance_norm", group_norm
    yield "layer_norm", layer_norm


def _activations(dtype) -> Iterable[tuple[str, Callable]]:
    import kernels
    from kernels.activation import PARALLEL_MIN

    rng = np.random.default_rng(0)
    classes = 64
    for name, rows in (("small", 8), ("large", -(-PARALLEL_MIN // classes))):
        def run(rows=rows):
            x = _rand(rng, (rows, classes), dtype)
            y = kernels.relu(x)
            kernels.relu_backward(y, x)
            w = _rand(rng, (classes, classes), dtype)
            y = kernels.linear(x, w, w[0])
            kernels.linear_backward(y, x, w)
            target = rng.integers(0, classes, rows)
            kernels.cross_entropy(x, target, label_smoothing=0.1)
            kernels.cross_entropy_backward(x, target)
        yield f"relu, linear, cross_entropy, {name}", run


def _optimizers(dtype) -> Iterable[tuple[str, Callable]]:
    from kernels import optim
    from kernels.cpu.optim import PARALLEL_MIN

    rng = np.random.default_rng(0)
    variants = {
        "SGD": [dict(lr=0.1), dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)],
        "Adagrad": [dict()],
        "RMSprop": [dict(), dict(momentum=0.9, centered=True)],
        "Adam": [dict(), dict(amsgrad=True)],
        "AdamW": [dict()],
    }
    for name, options in variants.items():
        def run(name=name, options=options):
            for kw in options:
                params = [_rand(rng, (16,), dtype), _rand(rng, (PARALLEL_MIN,), dtype)]
                opt = getattr(optim, name)(params, **kw)
                for _ in range(2):
                    opt.step([np.ones_like(p) for p in params])
        yield name, run


_CASES = {"correlation": _correlation, "conv2d": _conv2d, "pooling": _pooling,
          "norms": _norms, "activations": _activations, "optimizers": _optimizers}


def cases(families: Iterable[str], dtypes: Iterable[str]) -> list[Case]:
    """Every case of ``families`` for each dtype name, family by family."""
    return [Case(f, d, name, run) for f in families for d in dtypes
            for name, run in _CASES[f](DTYPES[d])]


# ---------------------------------------------------------------- counting and running

def _dispatchers() -> list:
    """The Numba CPU dispatchers of the kernels loaded so far (the modules' globals, and
    the namespaces that hold conv2d's parallel and serial kernels)."""
    import sys
    from types import SimpleNamespace

    from numba.core.registry import CPUDispatcher

    found = {}
    for mod_name, module in list(sys.modules.items()):
        if module is None or not (mod_name.startswith("kernels.cpu")
                                  or mod_name == "kernels._alloc"):
            continue
        for value in list(vars(module).values()):
            values = vars(value).values() if isinstance(value, SimpleNamespace) else [value]
            for v in values:
                v = getattr(v, "kernel", v)  # a kernel run in parts (kernels.cpu._parts)
                if isinstance(v, CPUDispatcher):
                    found[id(v)] = v
    return list(found.values())


def _loaded() -> int:
    """Kernel specializations loaded from Numba's on-disk cache so far in this process."""
    total = 0
    for d in _dispatchers():
        stats = getattr(d, "stats", None)
        if stats is not None:
            total += sum(stats.cache_hits.values())
    return total


class _Compiles:
    """Counts Numba's outermost compiles (a kernel's jitted helpers compile inside its own
    compile, and load from the cache with it), while registered."""

    def __init__(self):
        from numba.core import event

        class Listener(event.Listener):
            def on_start(inner, ev):
                self.depth += 1
                self.count += self.depth == 1

            def on_end(inner, ev):
                self.depth -= 1

        self.event, self.listener, self.depth, self.count = event, Listener(), 0, 0

    def __enter__(self):
        self.event.register("numba:compile", self.listener)
        return self

    def __exit__(self, *exc):
        self.event.unregister("numba:compile", self.listener)


def cache_dir() -> str | None:
    """Where Numba caches the kernels (``NUMBA_CACHE_DIR``, or beside the sources)."""
    from numba.core import config

    if config.CACHE_DIR:
        return str(config.CACHE_DIR)
    for d in _dispatchers():
        path = getattr(getattr(d, "stats", None), "cache_path", None)
        if path:
            return str(path)
    return None


class Result(NamedTuple):
    cases: int
    compiled: int  # kernel specializations (their helpers compile inside)
    loaded: int  # from the on-disk cache
    seconds: float


def warm(families: Iterable[str] | None = None, dtypes: Iterable[str] = ("float32", "float64"),
         on_case: Callable[[Case, int, int], None] | None = None) -> Result:
    """Run every case of ``families`` (all by default) in each of ``dtypes``, without the
    first-compile notice; ``on_case(case, index, total)`` is called before each case and
    once more, with ``case=None``, at the end."""
    from . import _notice

    start = time.perf_counter()
    todo = cases(parse_families(None) if families is None else families, dtypes)
    before = _loaded()
    with _notice.mute(), _Compiles() as compiles:
        for i, case in enumerate(todo):
            if on_case is not None:
                on_case(case, i, len(todo))
            case.run()
        if on_case is not None:
            on_case(None, len(todo), len(todo))
    return Result(len(todo), compiles.count, _loaded() - before, time.perf_counter() - start)
