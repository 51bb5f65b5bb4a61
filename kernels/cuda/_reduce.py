"""Block-level reductions in shared memory, shared by the kernels that reduce (norms,
cross-entropy).

Both are trees over ``blockDim.x`` (a power of two: see ``_launch.grid_rows``) values,
one per thread, staged in a shared array the caller allocates. Every thread of the
block must call them: their barriers sit in a loop whose trip count is the same for
all, never in a divergent branch.
"""

from __future__ import annotations

from numba import cuda


@cuda.jit(device=True)
def block_sum(buf, value):
    """Σ of every thread's ``value`` over the block (error ~log2(threads) ulp)."""
    lane = cuda.threadIdx.x
    buf[lane] = value
    cuda.syncthreads()
    step = cuda.blockDim.x // 2
    while step > 0:
        if lane < step:
            buf[lane] += buf[lane + step]
        cuda.syncthreads()
        step //= 2
    total = buf[0]
    cuda.syncthreads()  # buf is reused by the next call
    return total


@cuda.jit(device=True)
def block_max(buf, value):
    """The maximum of every thread's ``value`` over the block (a NaN loses unless it is
    the only value; in a softmax it reaches the result through exp anyway)."""
    lane = cuda.threadIdx.x
    buf[lane] = value
    cuda.syncthreads()
    step = cuda.blockDim.x // 2
    while step > 0:
        if lane < step:
            other = buf[lane + step]
            if other > buf[lane]:
                buf[lane] = other
        cuda.syncthreads()
        step //= 2
    total = buf[0]
    cuda.syncthreads()
    return total
