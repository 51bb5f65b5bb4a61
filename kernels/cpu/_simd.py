"""Explicit SIMD vectors in Numba kernels: a block of ``P`` values of one dtype that lives
in vector registers, and the few operations the register-blocked kernels need.

Numba has no vector types, and LLVM's SLP vectorizer, which packs scalar variables into
vectors, compiled the 128-scalar conv tile for 50 s and still left loads unpacked. Here a
vector is an LLVM ``<P x float>`` value, so the kernel spells its accumulator block as 8
variables, compiles in about a second, and gets exactly one vector load and one
broadcast FMA per weight. Each function below is an ``@intrinsic``: it emits its LLVM
instructions inline in the calling kernel (cached to disk with it, like any Numba code).

>>> import numpy as np
>>> from numba import njit
>>> @njit
... def axpy(a, x, y):  # y[:P] += a * x[:P]
...     store(y, 0, fma(load(y, 0), a, load(x, 0)))
>>> x, y = np.arange(P, dtype=np.float32), np.ones(P, dtype=np.float32)
>>> axpy(2.0, x, y); y[:4].tolist()
[1.0, 3.0, 5.0, 7.0]

NOTE: Numba's disk cache keys a kernel by its own file, not by this one: after editing
this module, delete ``kernels/cpu/__pycache__`` (a kernel cached with other lanes would
index out of bounds). A new machine or CPU is a new cache entry, so users never meet it.
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model


def _lanes() -> int:
    """The lanes of a vector: one register of float32, 16 with AVX-512 and 8 without
    (AVX2), for the CPU Numba compiles for (``NUMBA_CPU_FEATURES``, else this one's).

    The tiled conv kernel keeps 8 accumulator vectors and a source vector in registers:
    with 16-lane vectors on AVX2 (16 registers of 8 lanes) they took every register and
    spilled, and the kernel ran at 40% of its AVX-512 speed per clock."""
    from numba import config

    try:
        if config.CPU_FEATURES:
            return 16 if "+avx512f" in config.CPU_FEATURES.split(",") else 8
        from llvmlite import binding

        return 16 if binding.get_host_cpu_features().get("avx512f", False) else 8
    except Exception:  # an unknown CPU: 8 lanes, right for AVX2 and safe elsewhere
        return 8


P = _lanes()  # float64 vectors of P lanes take two registers (LLVM splits them)


class Vector(types.Type):
    """``P`` values of ``dtype`` (a Numba scalar type) held in vector registers."""

    def __init__(self, dtype):
        self.dtype = dtype
        super().__init__(name=f"vector{P}({dtype})")


@register_model(Vector)
class _VectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        element = dmm.lookup(fe_type.dtype).get_value_type()
        super().__init__(dmm, fe_type, ir.VectorType(element, P))


def _check_array(arr, name, any_shape=False):
    if not (isinstance(arr, types.Array) and (any_shape or arr.ndim == 1 and arr.layout == "C")
            and isinstance(arr.dtype, types.Float)):
        raise TypeError(f"{name}: a 1-D contiguous float array, got {arr}")


def _vector_pointer(context, builder, arr_type, arr, index):
    """A ``<P x dtype>*`` to ``arr[index]`` (no bounds check: the plans guarantee it)."""
    data = context.make_array(arr_type)(context, builder, arr).data
    return builder.bitcast(builder.gep(data, [index]),
                           ir.VectorType(data.type.pointee, P).as_pointer())


def _align(context, dtype) -> int:
    return context.get_abi_sizeof(context.get_value_type(dtype))


def _mask_bits(context, builder, value, value_type):
    """An integer's low P bits as a ``<P x i1>`` lane mask (bit p for lane p)."""
    bits = context.cast(builder, value, value_type, types.int64)
    return builder.bitcast(builder.trunc(bits, ir.IntType(P)), ir.VectorType(ir.IntType(1), P))


def _splat(builder, vector_type, scalar):
    one = builder.insert_element(ir.Constant(vector_type, None), scalar,
                                 ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(one, ir.Constant(vector_type, None),
                                  ir.Constant(ir.VectorType(ir.IntType(32), P), None))


@intrinsic
def zeros(typingctx, like):
    """A vector of zeros of the dtype of the array ``like``."""
    _check_array(like, "like")
    vt = Vector(like.dtype)

    def codegen(context, builder, sig, args):
        return ir.Constant(context.get_value_type(vt), None)
    return vt(like), codegen


@intrinsic
def zero(typingctx, like):
    """A scalar 0 of the dtype of the array ``like`` (``np.zeros(1, dtype)[0]`` made the
    first compile of every kernel that used it compile NumPy's allocation too)."""
    _check_array(like, "like", any_shape=True)

    def codegen(context, builder, sig, args):
        return ir.Constant(context.get_value_type(like.dtype), 0)
    return like.dtype(like), codegen


@intrinsic
def load(typingctx, arr, index):
    """``arr[index:index + P]`` as a vector (any alignment)."""
    _check_array(arr, "arr")

    def codegen(context, builder, sig, args):
        ptr = _vector_pointer(context, builder, sig.args[0], args[0], args[1])
        return builder.load(ptr, align=_align(context, arr.dtype))
    return Vector(arr.dtype)(arr, index), codegen


@intrinsic
def store(typingctx, arr, index, v):
    """``arr[index:index + P] = v``."""
    _check_array(arr, "arr")
    if not isinstance(v, Vector) or v.dtype != arr.dtype:
        raise TypeError(f"v: a vector of {arr.dtype}, got {v}")

    def codegen(context, builder, sig, args):
        ptr = _vector_pointer(context, builder, sig.args[0], args[0], args[1])
        builder.store(args[2], ptr, align=_align(context, arr.dtype))
        return context.get_dummy_value()
    return types.void(arr, index, v), codegen


def _masked_load_call(context, builder, arr_type, arr, index, mask, passthru):
    """LLVM IR: ``arr[index + p]`` in the lanes ``p`` of the i1 vector ``mask``, the lanes
    of ``passthru`` (None: zeros) in the others, nothing read for them."""
    ptr = _vector_pointer(context, builder, arr_type, arr, index)
    vty = ptr.type.pointee
    bits = "f32" if arr_type.dtype == types.float32 else "f64"
    fn = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vty, [vty.as_pointer(), ir.IntType(32), mask.type,
                                              vty]),
        f"llvm.masked.load.v{P}{bits}.p0v{P}{bits}")
    return builder.call(fn, [ptr, ir.Constant(ir.IntType(32), _align(context, arr_type.dtype)),
                             mask, ir.Constant(vty, None) if passthru is None else passthru])


def _first_lanes(builder, n):
    """LLVM IR: the ``<P x i1>`` mask of the first ``n`` lanes (an i64)."""
    i64 = ir.IntType(64)
    lanes = ir.Constant(ir.VectorType(i64, P), [ir.Constant(i64, k) for k in range(P)])
    return builder.icmp_signed("<", lanes, _splat(builder, ir.VectorType(i64, P), n))


def _masked_load(context, builder, arr_type, arr, index, n):
    """LLVM IR: ``arr[index:index + n]`` in the first ``n`` lanes (an i64), zeros in the rest,
    by a masked load (nothing past it is read)."""
    return _masked_load_call(context, builder, arr_type, arr, index, _first_lanes(builder, n),
                             None)


def _masked_store_call(context, builder, arr_type, arr, index, v, mask):
    """LLVM IR: ``arr[index + p] = v[p]`` in the lanes ``p`` of the i1 vector ``mask``
    (nothing written for the others)."""
    ptr = _vector_pointer(context, builder, arr_type, arr, index)
    vty = ptr.type.pointee
    bits = "f32" if arr_type.dtype == types.float32 else "f64"
    fn = cgutils.get_or_insert_function(
        builder.module,
        ir.FunctionType(ir.VoidType(), [vty, vty.as_pointer(), ir.IntType(32), mask.type]),
        f"llvm.masked.store.v{P}{bits}.p0v{P}{bits}")
    builder.call(fn, [v, ptr, ir.Constant(ir.IntType(32), _align(context, arr_type.dtype)),
                      mask])


@intrinsic
def load_first(typingctx, arr, index, n):
    """``arr[index:index + n]`` in the first ``n`` lanes (``n <= P``), zeros in the rest;
    reads nothing past ``index + n`` (a masked load: as fast as :func:`load` for n = P,
    and safe at the end of a row)."""
    _check_array(arr, "arr")

    def codegen(context, builder, sig, args):
        n = context.cast(builder, args[2], sig.args[2], types.int64)
        return _masked_load(context, builder, sig.args[0], args[0], args[1], n)
    return Vector(arr.dtype)(arr, index, n), codegen


@intrinsic
def store_masked(typingctx, arr, index, v, mask):
    """``arr[index + p] = v[p]`` for the lanes ``p`` whose bit is set in the integer
    ``mask`` (bit p for lane p; nothing is written, or read, for the others)."""
    _check_array(arr, "arr")
    if not isinstance(v, Vector) or v.dtype != arr.dtype:
        raise TypeError(f"v: a vector of {arr.dtype}, got {v}")

    def codegen(context, builder, sig, args):
        _masked_store_call(context, builder, sig.args[0], args[0], args[1], args[2],
                           _mask_bits(context, builder, args[3], sig.args[3]))
        return context.get_dummy_value()
    return types.void(arr, index, v, mask), codegen



@njit(cache=True, inline="always")
def store_first(arr, index, v, n):
    """``arr[index:index + n]`` = the first ``n`` lanes of ``v`` (``n <= P``; nothing past
    them is written): a plain store when ``n == P``, else a masked one."""
    if n == P:
        store(arr, index, v)
    else:
        store_masked(arr, index, v, ((1 << P) - 1) >> (P - n))

@intrinsic
def load_even(typingctx, arr, index, n):
    """``arr[index], arr[index + 2], ...``: the even elements of ``arr[index:index + n]``
    (``n <= 2*P``; nothing past it is read), zeros past them: one stride-2 row of a stride
    phase, from two masked loads and a shuffle."""
    _check_array(arr, "arr")

    def codegen(context, builder, sig, args):
        ptr = _vector_pointer(context, builder, sig.args[0], args[0], args[1])
        vty = ptr.type.pointee
        i64, i32 = ir.IntType(64), ir.IntType(32)
        n = context.cast(builder, args[2], sig.args[2], types.int64)
        name = "f32" if arr.dtype == types.float32 else "f64"
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vty, [vty.as_pointer(), i32,
                                                  ir.VectorType(ir.IntType(1), P), vty]),
            f"llvm.masked.load.v{P}{name}.p0v{P}{name}")
        halves = []
        for h in range(2):
            lanes = ir.Constant(ir.VectorType(i64, P), [ir.Constant(i64, h * P + k)
                                                        for k in range(P)])
            mask = builder.icmp_signed("<", lanes, _splat(builder, ir.VectorType(i64, P), n))
            part = builder.bitcast(builder.gep(builder.bitcast(ptr, vty.element.as_pointer()),
                                               [ir.Constant(i64, h * P)]), vty.as_pointer())
            halves.append(builder.call(fn, [part, ir.Constant(i32, _align(context, arr.dtype)),
                                            mask, ir.Constant(vty, None)]))
        return builder.shuffle_vector(halves[0], halves[1], ir.Constant(
            ir.VectorType(i32, P), [ir.Constant(i32, 2 * k) for k in range(P)]))
    return Vector(arr.dtype)(arr, index, n), codegen


@intrinsic
def gather_rows(typingctx, arr, index, s1, n1, s2, n2):
    """Lane ``l`` = ``arr[index + (l % 8)*s1 + (l // 8)*s2]`` where ``l % 8 < n1`` and
    ``l // 8 < n2``, zero elsewhere (nothing read there): 8 strided rows of ``P // 8``
    columns in one gather, such as one tap of a block of 8 filters for 2 input channels
    (its lanes then stored as 16 consecutive floats).

    >>> import numpy as np
    >>> @njit
    ... def rows(a, out):  # rows of 10, two of them, from a[1]
    ...     store(out, 0, gather_rows(a, 1, 10, 2, 3, 1))
    >>> out = np.empty(P, np.float32); rows(np.arange(40, dtype=np.float32), out)
    >>> out[:3].tolist()
    [1.0, 11.0, 0.0]
    """
    _check_array(arr, "arr")

    def codegen(context, builder, sig, args):
        i64, i32 = ir.IntType(64), ir.IntType(32)
        index, s1, n1, s2, n2 = (context.cast(builder, v, t, types.int64)
                                 for v, t in zip(args[1:], sig.args[1:]))
        ptr = _vector_pointer(context, builder, sig.args[0], args[0], index)
        vty = ptr.type.pointee
        elem = vty.element
        size = context.get_abi_sizeof(elem)
        v64 = ir.VectorType(i64, P)
        row = ir.Constant(v64, [ir.Constant(i64, k % 8) for k in range(P)])
        col = ir.Constant(v64, [ir.Constant(i64, k // 8) for k in range(P)])
        offsets = builder.add(builder.mul(row, _splat(builder, v64, s1)),
                              builder.mul(col, _splat(builder, v64, s2)))
        base = _splat(builder, v64, builder.ptrtoint(ptr, i64))
        addresses = builder.add(base, builder.mul(offsets, _splat(
            builder, v64, ir.Constant(i64, size))))
        pointers = builder.inttoptr(addresses, ir.VectorType(elem.as_pointer(), P))
        mask = builder.and_(builder.icmp_signed("<", row, _splat(builder, v64, n1)),
                            builder.icmp_signed("<", col, _splat(builder, v64, n2)))
        name = "f32" if arr.dtype == types.float32 else "f64"
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vty, [pointers.type, i32, mask.type, vty]),
            f"llvm.masked.gather.v{P}{name}.v{P}p0{name}")
        return builder.call(fn, [pointers, ir.Constant(i32, _align(context, arr.dtype)), mask,
                                 ir.Constant(vty, None)])
    return Vector(arr.dtype)(arr, index, s1, n1, s2, n2), codegen


@intrinsic
def load_masked(typingctx, arr, index, mask, v):
    """``arr[index + p]`` in the lanes ``p`` whose bit is set in the integer ``mask``, and
    ``v``'s lanes in the others (nothing is read for them)."""
    _check_array(arr, "arr")
    if not isinstance(v, Vector) or v.dtype != arr.dtype:
        raise TypeError(f"v: a vector of {arr.dtype}, got {v}")

    def codegen(context, builder, sig, args):
        lanes = _mask_bits(context, builder, args[2], sig.args[2])
        return _masked_load_call(context, builder, sig.args[0], args[0], args[1], lanes,
                                 args[3])
    return v(arr, index, mask, v), codegen


@intrinsic
def fma(typingctx, acc, s, v):
    """``acc + s * v`` lane by lane, fused (one rounding, as ``fastmath={"contract"}``
    gave the scalar kernels); ``s`` is a vector, or a scalar broadcast to every lane (cast
    to the vector's dtype)."""
    if not isinstance(acc, Vector) or v != acc or (isinstance(s, Vector) and s != acc):
        raise TypeError(f"acc, s and v: vectors of one dtype (s may be a scalar), got "
                        f"{acc}, {s} and {v}")

    def codegen(context, builder, sig, args):
        vty = args[0].type
        if isinstance(sig.args[1], Vector):
            factor = args[1]
        else:
            factor = _splat(builder, vty, context.cast(builder, args[1], sig.args[1],
                                                       acc.dtype))
        bits = "f32" if acc.dtype == types.float32 else "f64"
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty] * 3),
                                            f"llvm.fma.v{P}{bits}")
        return builder.call(fn, [factor, args[2], args[0]])
    return acc(acc, s, v), codegen


@intrinsic
def total(typingctx, v):
    """The sum of the lanes, added pairwise (halving the vector each step)."""
    if not isinstance(v, Vector):
        raise TypeError(f"v: a vector, got {v}")

    def codegen(context, builder, sig, args):
        x, width = args[0], P
        i32 = ir.IntType(32)
        while width > 1:
            width //= 2
            lo = builder.shuffle_vector(x, x, ir.Constant(ir.VectorType(i32, width),
                                                          list(range(width))))
            hi = builder.shuffle_vector(x, x, ir.Constant(ir.VectorType(i32, width),
                                                          list(range(width, 2 * width))))
            x = builder.fadd(lo, hi)
        return builder.extract_element(x, ir.Constant(i32, 0))
    return v.dtype(v), codegen


def _lanes_constant(lanes: list[int]):
    """LLVM IR: the i32 vector of ``lanes``, a shuffle's selection."""
    i32 = ir.IntType(32)
    return ir.Constant(ir.VectorType(i32, len(lanes)), [ir.Constant(i32, k) for k in lanes])


def _shuffle(lanes: list[int]):
    """The intrinsic ``(u, v) -> w[lanes[0]], w[lanes[1]], ...`` of ``w`` = u then v."""

    @intrinsic
    def shuffle(typingctx, u, v):
        if not isinstance(u, Vector) or u != v:
            raise TypeError(f"u and v: vectors of one dtype, got {u} and {v}")

        def codegen(context, builder, sig, args):
            return builder.shuffle_vector(args[0], args[1], _lanes_constant(lanes))
        return u(u, v), codegen
    return shuffle


# u[h], v[h], u[h + 1], v[h + 1], ... from lane h = 0 (low) or P/2 (high): two vectors'
# lanes interleaved; and the even or odd lanes of u then v
_INTERLEAVE_LOW = [k // 2 + (k % 2) * P for k in range(P)]
_INTERLEAVE_HIGH = [P // 2 + k // 2 + (k % 2) * P for k in range(P)]
interleave_low, interleave_high = _shuffle(_INTERLEAVE_LOW), _shuffle(_INTERLEAVE_HIGH)
evens, odds = _shuffle([2 * k for k in range(P)]), _shuffle([2 * k + 1 for k in range(P)])


def _lanewise(instruction: str):
    """An intrinsic ``op(u, v)``: the LLVM ``instruction`` (``fadd``, ``fsub``) lane by
    lane on two vectors of one dtype."""
    @intrinsic
    def op(typingctx, u, v):
        if not isinstance(u, Vector) or u != v:
            raise TypeError(f"u and v: vectors of one dtype, got {u} and {v}")

        def codegen(context, builder, sig, args):
            return getattr(builder, instruction)(args[0], args[1])
        return u(u, v), codegen
    return op


add, sub = _lanewise("fadd"), _lanewise("fsub")  # u + v, u - v lane by lane


@intrinsic
def larger(typingctx, u, v):
    """``u[p] if u[p] > v[p] else v[p]`` lane by lane: a running maximum that drops NaN in
    ``u`` (not the IEEE maximum, whose NaN rules differ)."""
    if not isinstance(u, Vector) or u != v:
        raise TypeError(f"u and v: vectors of one dtype, got {u} and {v}")

    def codegen(context, builder, sig, args):
        return builder.select(builder.fcmp_ordered(">", args[0], args[1]), args[0], args[1])
    return u(u, v), codegen


@intrinsic
def add_scalar(typingctx, v, s):
    """``v + s`` lane by lane (the scalar cast to the vector's dtype)."""
    if not isinstance(v, Vector):
        raise TypeError(f"v: a vector, got {v}")

    def codegen(context, builder, sig, args):
        scalar = context.cast(builder, args[1], sig.args[1], v.dtype)
        return builder.fadd(args[0], _splat(builder, args[0].type, scalar))
    return v(v, s), codegen


@intrinsic
def lane(typingctx, v, i):
    """``v[i]``, one lane as a scalar."""
    if not isinstance(v, Vector) or not isinstance(i, types.Integer):
        raise TypeError(f"lane(vector, int), got ({v}, {i})")

    def codegen(context, builder, sig, args):
        index = builder.trunc(args[1], ir.IntType(32)) if args[1].type.width > 32 else args[1]
        return builder.extract_element(args[0], index)
    return v.dtype(v, i), codegen


@njit(cache=True, inline="always")
def copy_run(src, start, dst, at, n):
    """``dst[at:at + n] = src[start:start + n]``, P elements a step, the last masked (reads
    nothing past it): a depthwise plane's rows into its buffer (scalar copies took a third
    of a 7x7 plane's time)."""
    full = (1 << P) - 1
    for k in range(0, n, P):
        m = min(P, n - k)
        if m == P:
            store(dst, at + k, load(src, start + k))
        else:
            mask = full >> (P - m)
            store_masked(dst, at + k, load_masked(src, start + k, mask, zeros(dst)), mask)


@njit(cache=True, inline="always")
def copy_even(src, start, dst, at, n):
    """``dst[at:at + n] = src[start:start + 2*n - 1:2]`` (reads nothing past it): a row of a
    stride-2 phase, P elements a step (a scalar copy took half a strided depthwise
    layer's time)."""
    for k in range(0, n, P):
        c = start + 2 * k
        store_first(dst, at + k, load_even(src, c, min(2 * P, src.shape[0] - c)),
                    min(P, n - k))


@njit(cache=True, inline="always")
def interleave_run(src, a, b, dst, at, n):
    """``dst[at + 2k] = src[a + k]`` and ``dst[at + 2k + 1] = src[b + k]`` for the ``n``
    elements of ``dst[at:at + n]``, 2*P a step, the last masked (reads nothing past what
    it needs): a grad_x row from its two stride-2 phase rows (a scalar copy took a fifth
    of a stride-2 layer's input gradient)."""
    full = (1 << P) - 1
    for k in range(0, n, 2 * P):
        m = n - k  # outputs left
        u = load_first(src, a + k // 2, min(P, (m + 1) // 2))
        v = load_first(src, b + k // 2, min(P, m // 2))
        lo, hi = interleave_low(u, v), interleave_high(u, v)
        if m >= 2 * P:
            store(dst, at + k, lo)
            store(dst, at + k + P, hi)
        else:
            store_masked(dst, at + k, lo, full >> (P - min(P, m)))
            if m > P:
                store_masked(dst, at + k + P, hi, full >> (2 * P - m))


@njit(cache=True, inline="always")
def deinterleave_run(src, start, dst, a, b, n):
    """``dst[a + k] = src[start + 2k]`` and ``dst[b + k] = src[start + 2k + 1]`` for the
    ``n`` elements of ``src[start:start + n]``, 2*P a step, the last masked (reads nothing
    past them): a row into its two stride-2 phase rows at once, each element loaded once
    (:func:`copy_even` a phase at a time loads each twice)."""
    for k in range(0, n, 2 * P):
        m = n - k  # inputs left
        u = load_first(src, start + k, min(P, m))
        v = load_first(src, start + k + P, max(0, min(P, m - P)))
        store_first(dst, a + k // 2, evens(u, v), min(P, (m + 1) // 2))
        if m > 1:
            store_first(dst, b + k // 2, odds(u, v), min(P, m // 2))


# The 16 x 16 transpose's rounds, as selections from two vectors (u then v): the low and
# high interleaves of single lanes and of lane pairs within each 128-bit quarter, then of
# quarters (lanes of quarters (0, 2) or (1, 3) of u, then the same of v)
_SINGLES_LOW, _SINGLES_HIGH = ([x for q in range(4) for k in (h, h + 1)
                                for x in (4 * q + k, P + 4 * q + k)] for h in (0, 2))
_DOUBLES_LOW, _DOUBLES_HIGH = ([x for q in range(4) for src in (0, P)
                                for x in (src + 4 * q + h, src + 4 * q + h + 1)] for h in (0, 2))
_QUARTERS_EVEN, _QUARTERS_ODD = ([x for src, q in ((0, h), (0, h + 2), (P, h), (P, h + 2))
                                  for x in range(src + 4 * q, src + 4 * q + 4)] for h in (0, 1))
# after the four rounds, result k holds column _COLUMN[k]
_COLUMN = [0, 8, 4, 12, 1, 9, 5, 13, 2, 10, 6, 14, 3, 11, 7, 15]


def _transposed(context, builder, result, rows):
    """LLVM IR: the tuple of the 16 columns of 16 vectors of 16 lanes, in four rounds of
    16 shuffles: lanes within quarters (unpcklps/unpckhps), lane pairs within quarters
    (unpcklpd/unpckhpd), then quarters twice (vshuff32x4). Interleaving whole vectors
    four times took 1.7 times as long: each of its shuffles crosses quarters."""
    def sel(u, v, lanes):
        return builder.shuffle_vector(u, v, _lanes_constant(lanes))

    r = list(rows)
    r = [sel(r[i & ~1], r[i | 1], _SINGLES_HIGH if i % 2 else _SINGLES_LOW) for i in range(16)]
    r = [sel(r[i // 4 * 4 + i % 4 // 2], r[i // 4 * 4 + i % 4 // 2 + 2],
             _DOUBLES_HIGH if i % 2 else _DOUBLES_LOW) for i in range(16)]
    r = [sel(r[i // 8 * 8 + i % 8 // 2], r[i // 8 * 8 + i % 8 // 2 + 4],
             _QUARTERS_ODD if i % 2 else _QUARTERS_EVEN) for i in range(16)]
    r = [sel(r[i // 2], r[i // 2 + 8], _QUARTERS_ODD if i % 2 else _QUARTERS_EVEN)
         for i in range(16)]
    columns = [None] * 16
    for k, c in enumerate(_COLUMN):
        columns[c] = r[k]
    return context.make_tuple(builder, result, columns)


def _transpose_rows(plus: bool):
    """``transpose_rows``, or with ``plus`` ``transpose_rows_plus``."""
    def typer(typingctx, src, a, step, cols, rows, *v):
        _check_array(src, "src")
        vt = Vector(src.dtype)
        if plus and v[0] != vt:
            raise TypeError(f"v: a vector of {src.dtype}, got {v[0]}")
        result = types.UniTuple(vt, 16)

        def codegen(context, builder, sig, args):
            i64 = ir.IntType(64)
            a, step, cols, nrows = (context.cast(builder, v, t, types.int64)
                                    for v, t in zip(args[1:5], sig.args[1:5]))
            zero = ir.Constant(i64, 0)
            loaded = []
            for k in range(16):
                count = builder.select(builder.icmp_signed(">", nrows, ir.Constant(i64, k)),
                                       cols, zero)
                at = builder.add(a, builder.mul(step, ir.Constant(i64, k)))
                row = _masked_load(context, builder, sig.args[0], args[0], at, count)
                loaded.append(builder.fadd(row, args[5]) if plus else row)
            return _transposed(context, builder, result, loaded)
        return result(src, a, step, cols, rows, *v), codegen
    return typer


@intrinsic
def transpose_rows(typingctx, src, a, step, cols, rows):
    """The 16 columns, as a tuple of vectors, of the 16 rows ``src[a + k*step:][:cols]``
    (zeros past ``cols``, and for ``k >= rows``; nothing past them is read), P == 16 only:
    16 masked loads and 64 shuffles for 256 elements, where a scalar copy takes a load and
    a store each. (An intrinsic: written as Numba functions, each use took 0.7 s to
    compile.)"""
    return _transpose_rows(False)(typingctx, src, a, step, cols, rows)


@intrinsic
def transpose_rows_plus(typingctx, src, a, step, cols, rows, v):
    """:func:`transpose_rows` of the rows plus ``v`` (lane p of every row, so ``v[p]`` is
    added to column p): a bias per output channel added on the way out of a
    channels-as-lanes layout (where the padding past ``cols`` and ``rows`` holds ``v``,
    not zeros)."""
    return _transpose_rows(True)(typingctx, src, a, step, cols, rows, v)


def _check_columns(t, dst):
    if not (isinstance(t, types.UniTuple) and len(t) == 16 and t.dtype == Vector(dst.dtype)):
        raise TypeError(f"t: 16 vectors of {dst.dtype} (transpose_rows' columns), got {t}")


@intrinsic
def store_columns(typingctx, dst, at, k0, t):
    """``dst[at[k0 + k]:][:P] = t[k]`` for each of the 16 vectors of ``t``: the columns of
    :func:`transpose_rows` stored where a table says, by 16 stores (a loop indexing the
    tuple at run time made it pick each vector by a jump table: a third of the
    depthwise small-plane copy's time)."""
    _check_array(dst, "dst")
    _check_columns(t, dst)

    def codegen(context, builder, sig, args):
        table = context.make_array(sig.args[1])(context, builder, args[1]).data
        k0 = context.cast(builder, args[2], sig.args[2], types.int64)
        for k in range(16):
            index = builder.load(builder.gep(table, [builder.add(k0, ir.Constant(k0.type, k))]))
            ptr = _vector_pointer(context, builder, sig.args[0], args[0], index)
            builder.store(builder.extract_value(args[3], k), ptr, align=_align(context, dst.dtype))
        return context.get_dummy_value()
    return types.void(dst, at, k0, t), codegen


@intrinsic
def store_rows(typingctx, dst, start, step, t, n, rows):
    """``dst[start + k*step:][:n] = t[k][:n]`` for ``k < rows`` (``n <= P``; nothing past
    them is written): the columns of :func:`transpose_rows` stored as rows, by plain
    stores when ``n == P``, masked ones otherwise."""
    _check_array(dst, "dst")
    _check_columns(t, dst)
    if not all(isinstance(a, types.Integer) for a in (start, step, n, rows)):
        raise TypeError(f"start, step, n and rows: integers, got {start}, {step}, {n}, {rows}")

    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        start, step, n, rows = (context.cast(builder, v, ty, types.int64) for v, ty in
                                zip((args[1], args[2], args[4], args[5]),
                                    (sig.args[1], sig.args[2], sig.args[4], sig.args[5])))
        mask = _first_lanes(builder, n)
        for k in range(16):
            with builder.if_then(builder.icmp_signed(">", rows, ir.Constant(i64, k))):
                at = builder.add(start, builder.mul(step, ir.Constant(i64, k)))
                _masked_store_call(context, builder, sig.args[0], args[0], at,
                                   builder.extract_value(args[3], k), mask)
        return context.get_dummy_value()
    return types.void(dst, start, step, t, n, rows), codegen
