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
