"""Launch arithmetic, in one place: every kernel is launched through these helpers."""

from __future__ import annotations

THREADS = 256  # threads per block for 1-D element-wise kernels
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
    return (bx, by, max(1, planes)), threads
