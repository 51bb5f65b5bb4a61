"""Launch arithmetic, in one place: every kernel is launched through these helpers."""

from __future__ import annotations

THREADS = 256  # threads per block for 1-D element-wise kernels
MAX_GRID_Z = 65535  # CUDA's limit on gridDim.z: kernels with planes on z loop beyond it
MAX_GRID_Y = 65535  # and on gridDim.y: 2-D grids taller than this are launched in parts
TILE = 16  # side of a 2-D thread block (16 x 16 = 256 threads)


def blocks(n: int, threads: int = THREADS) -> int:
    """Blocks of ``threads`` that cover ``n`` items (at least one)."""
    return max(1, -(-int(n) // threads))


def grid_1d(n: int, threads: int = THREADS) -> tuple[int, int]:
    """``(blocks, threads)`` for a kernel with one thread per item."""
    return blocks(n, threads), threads


def grid_2d(rows: int, cols: int, tile: int = TILE) -> tuple[tuple[int, int], tuple[int, int]]:
    """``((blocks_x, blocks_y), (tile, tile))`` for a ``rows x cols`` output, x along
    the columns (contiguous, so neighbouring threads touch neighbouring memory)."""
    return (blocks(cols, tile), blocks(rows, tile)), (tile, tile)


def grid_planes(planes: int, rows: int, cols: int,
                tile: int = TILE) -> tuple[tuple[int, int, int], tuple[int, int]]:
    """2-D tiles over ``rows x cols``, with the grid's z axis over ``planes`` (N*C)."""
    (bx, by), threads = grid_2d(rows, cols, tile)
    return (bx, by, z_blocks(planes)), threads


def z_blocks(planes: int) -> int:
    """Blocks along z for ``planes`` planes: one each, up to :data:`MAX_GRID_Z` (the
    kernels stride over the rest)."""
    return max(1, min(int(planes), MAX_GRID_Z))


def grid_rows(rows: int, cols: int, threads: int = THREADS) -> tuple[int, int]:
    """``(rows, t)`` for a kernel with one block per row and a shared-memory tree reduction
    across the row: ``t`` is the smallest power of two covering ``cols`` (at most
    ``threads``), so a short row does not leave most of a block idle."""
    t = 1
    while t < min(int(cols), threads):
        t *= 2
    return max(1, int(rows)), t


def row_parts(rows: int, tile: int = TILE) -> range:
    """The first rows of the launches of a :func:`grid_2d` kernel over ``rows`` rows, each
    at most :data:`MAX_GRID_Y` blocks tall."""
    return range(0, max(1, int(rows)), MAX_GRID_Y * tile)


# ---------------------------------------------------------------- launching

def launch(kernel, grid, block, stream, *args) -> None:
    """``kernel[grid, block, stream](*args)``, with less host overhead on a real GPU.

    Numba's launch path re-derives everything per call (launch configuration, each
    argument's type and its conversion), about 40 us for one array argument and 70 us
    for six, which on small layers is many times the kernel. Once a kernel has been
    launched through Numba with arguments of one kind (dtypes, ranks, scalar types), we
    look up the compiled overload and pack later calls' arguments ourselves, in Numba's
    own calling convention, and hand them to ``cuda.core.launch``: about 10 us. The
    packing is checked against Numba's own (``_Kernel._prepare_args``) on that first
    call, and a mismatch, or a Numba without these internals, keeps Numba's path. The
    simulator always takes Numba's path.
    """
    fast = _FAST.get(kernel)
    if fast is None:
        fast = _FAST[kernel] = _FastKernel(kernel)
    fast(grid, block, stream, args)


class _FastKernel:
    """One kernel's fast launches, by argument kind (see :func:`launch`)."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.kinds: dict[tuple, object] = {}  # kind -> (cufunc kernel, packers) or None
        self.enabled = _fast_path_available()

    def __call__(self, grid, block, stream, args):
        if not self.enabled:
            self.kernel[grid, block, stream](*args)
            return
        kind = tuple(_kind(a) for a in args)
        plan = self.kinds.get(kind, _UNSEEN)
        if plan is _UNSEEN:
            self.kernel[grid, block, stream](*args)  # compiles if need be
            self.kinds[kind] = self._plan(grid, block, stream, args)
            return
        if plan is None:
            self.kernel[grid, block, stream](*args)
            return
        cufunc, packers = plan
        packed = []
        for pack, a in zip(packers, args):
            pack(a, packed)
        _core_launch(_core_stream(stream), _config(grid, block), cufunc, *packed)

    def _plan(self, grid, block, stream, args):
        """The compiled overload and argument packers for ``args``' kind, if our packing
        equals Numba's for these arguments; else None (Numba's path for this kind)."""
        try:
            types = tuple(self.kernel.typeof_pyval(a) for a in args)
            overload = self.kernel.overloads[types]
            packers = [_packer(t) for t in overload.argument_types]
            if any(p is None for p in packers):
                return None
            ours, theirs = [], []
            for pack, a in zip(packers, args):
                pack(a, ours)
            for t, a in zip(overload.argument_types, args):
                overload._prepare_args(t, a, stream, [], theirs)
            if len(ours) != len(theirs) or not all(map(_same, ours, theirs)):
                return None
            return overload._codelibrary.get_cufunc().kernel, packers
        except Exception:  # noqa: BLE001 - any surprise in Numba's internals: its own path
            return None


_FAST: dict = {}
_UNSEEN = object()
_CONFIGS: dict = {}
_STREAMS: dict = {}


def _fast_path_available() -> bool:
    from numba import config

    if config.ENABLE_CUDASIM:
        return False
    try:
        global _core_launch, _LaunchConfig, _to_core_stream
        from numba.cuda.cudadrv.driver import _to_core_stream
        from numba.cuda.dispatcher import LaunchConfig as _LaunchConfig
        from numba.cuda.dispatcher import launch as _core_launch
    except ImportError:
        return False
    return True


def _kind(a):
    """What selects a compiled overload: dtype, rank and C-contiguity of an array, the
    Python type of a scalar."""
    dtype = getattr(a, "dtype", None)
    if dtype is None or not hasattr(a, "shape"):
        return type(a)
    return dtype, len(a.shape), a.is_c_contiguous() if hasattr(a, "is_c_contiguous") else None


def _config(grid, block):
    key = (grid, block)
    config = _CONFIGS.get(key)
    if config is None:
        config = _CONFIGS[key] = _LaunchConfig(grid=grid, block=block, shmem_size=0)
    return config


def _core_stream(stream):
    key = id(stream)
    hit = _STREAMS.get(key)
    if hit is None or hit[0] is not stream:
        hit = _STREAMS[key] = (stream, _to_core_stream(stream))  # keeps ``stream`` alive
    return hit[1]


def _packer(ty):
    """A function appending one argument of Numba type ``ty`` to the packed list, as
    ``_Kernel._prepare_args`` does; None for a type we do not pack."""
    import ctypes

    try:
        from numba.cuda import types  # numba-cuda's own type classes
    except ImportError:
        from numba.core import types

    if isinstance(ty, types.Array):
        def pack_array(a, out):
            out += (0, 0, a.size, a.dtype.itemsize, a.device_ctypes_pointer.value)
            out += a.shape
            out += a.strides
        return pack_array
    if isinstance(ty, types.Boolean):
        return lambda v, out: out.append(v)
    if isinstance(ty, types.Integer):
        c = getattr(ctypes, f"c_{ty}")
        return lambda v, out: out.append(c(v))
    if ty == types.float32:
        return lambda v, out: out.append(ctypes.c_float(v))
    if ty == types.float64:
        return lambda v, out: out.append(ctypes.c_double(v))
    return None


def _same(x, y) -> bool:
    if type(x) is not type(y):
        return False
    return x.value == y.value if hasattr(x, "value") and not isinstance(x, int) else x == y
