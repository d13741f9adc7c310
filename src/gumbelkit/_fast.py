r"""Fast paths behind :mod:`gumbelkit.noise` and :mod:`gumbelkit.functional` (private).

Where the time goes on CPU, and what this module does about it
---------------------------------------------------------------
* **Random bits.** ``torch.rand(..., dtype=float64)`` on CPU runs torch's Mersenne Twister one
  element at a time (about 7 ns per float64 on the 2-core machine of the benchmark); so does
  ``exponential_()`` that ``torch.nn.functional.gumbel_softmax`` uses (about 20 ns). On CPU we
  draw the same 53-bit uniforms, :math:`W = \lfloor u / 2^{11} \rfloor\, 2^{-53}` for a 64-bit
  word :math:`u`, from numpy's PCG64 generator (about 2.3 ns each). Its 128-bit state and
  increment come from four 63-bit draws of the caller's ``torch.Generator`` (or torch's default
  generator), so ``torch.manual_seed`` and ``generator=`` keep their meaning: the same seed
  gives the same samples. Other devices keep ``torch.rand``.
* **Passes over memory.** The noise is made in blocks of :data:`BLOCK` elements whose float64
  scratch stays in the L2 cache; each block goes ``W -> E -> log E -> logits + G`` and lands
  directly in the output buffer. No float64 tensor of the full size, and no separate noise /
  perturbed copies, ever exist.
* **Threads.** The block arithmetic (noise, softmax, argmax, top-k, one-hot, backward) is numpy
  ufuncs, which release the GIL and never start an OpenMP team (torch's ``log``, ``exp`` and
  ``softmax`` fork one per call even for small tensors, which stalls for milliseconds on a loaded
  machine). Large tensors are split into at most ``torch.get_num_threads()`` contiguous parts,
  one per thread; part ``j`` advances its PCG64 copy to its first element, so the result is one
  logical stream and does not depend on the number of threads. A forked child re-creates the pool.
* **Autograd.** :class:`GumbelSoftmaxFunction` saves only the soft sample; its backward is
  :math:`\nabla_\ell = y \odot (\bar y - \langle \bar y, y\rangle) / \tau`, computed by blocks.
  :class:`GumbelSoftmaxHardFunction` (``hard=True``) keeps its soft sample private and writes the
  gradient over it, so forward + backward peaks at the one-hot plus one buffer.
* **Validation** reads the per-slice maximum the sampler computes anyway (finite exactly when
  the slice is valid, since the noise is finite) instead of three passes over the logits.
* ``torch.compile``: while dynamo traces, every function here falls back to torch ops
  (:func:`compiling`), since numpy generators and threads cannot be traced.

Float32 results may differ from torch's own softmax in the last bits (numpy's ``exp``); the
per-element noise recipe (:func:`_exponential_block` and :func:`perturb_into`) is shared by
:func:`gumbelkit.noise.gumbel_noise` and the fused samplers, so ``logits + gumbel_noise(...)``
and the fused path agree bit for bit.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import Tensor

from gumbelkit._validation import compute_dtype, get_validate_args

#: Elements per noise block: the float64 scratch (512 KiB) stays in L2 with the output slice.
BLOCK = 1 << 16
#: Smallest number of elements per thread (smaller draws run on the calling thread alone).
MIN_PER_THREAD = 1 << 18

_E_FLOOR = 2.0**-54  # E for W = 0 (documented: W = 0 is read as 2^-54, so E > 0 and G is finite)
_MASK128 = (1 << 128) - 1


class _Source(threading.local):
    """Per-thread PCG64 generator and float64 scratch block (numpy generators are not re-entrant)."""

    def __init__(self) -> None:
        self.bitgen = np.random.PCG64(0)
        self.gen = np.random.Generator(self.bitgen)
        self.buf = np.empty(BLOCK, dtype=np.float64)

    def seek(self, state: int, inc: int, offset: int) -> None:
        """Set the stream to ``(state, inc)`` advanced by ``offset`` draws (one per float64)."""
        self.bitgen.state = {
            "bit_generator": "PCG64",
            "state": {"state": state, "inc": inc},
            "has_uint32": 0,
            "uinteger": 0,
        }
        if offset:
            self.bitgen.advance(offset)


_local: _Source | None = None
_pool: ThreadPoolExecutor | None = None
_pool_pid = -1
_pool_lock = threading.Lock()


def _draw_state(generator: torch.Generator | None) -> tuple[int, int]:
    """128-bit PCG64 state and odd increment from 4 x 63 bits of ``generator`` (torch's default if None)."""
    r = [int(v) for v in torch.empty(4, dtype=torch.int64).random_(generator=generator).tolist()]
    state = ((r[0] << 63) | r[1]) & _MASK128
    inc = ((((r[2] << 63) | r[3]) << 1) | 1) & _MASK128  # PCG streams need an odd increment
    return state, inc


def _get_pool(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_pid
    with _pool_lock:  # created on first large draw, never at import time
        # a forked child (e.g. a DataLoader worker) inherits the pool object but not its threads
        if _pool is None or _pool._max_workers < workers or _pool_pid != os.getpid():
            # a replaced pool is not shut down: another thread may still be submitting to it
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gumbelkit")
            _pool_pid = os.getpid()
        return _pool


def _run_blocks(
    n: int,
    generator: torch.Generator | None,
    body: Callable[[np.ndarray, int, int], None],
    stream: tuple[int, int] | None = None,
) -> None:
    """Call ``body(W, start, stop)`` for consecutive blocks covering ``range(n)``.

    ``W`` holds the 53-bit uniforms of elements ``start:stop`` of one PCG64 stream, in a float64
    scratch array that ``body`` may overwrite. Blocks of different parts run in parallel. The
    stream is drawn from ``generator`` unless given (to replay an earlier draw).
    """
    global _local
    if _local is None:
        _local = _Source()
    local = _local
    state, inc = _draw_state(generator) if stream is None else stream

    def work(lo: int, hi: int) -> None:
        src = local  # this thread's generator and scratch
        src.seek(state, inc, lo)
        gen, buf = src.gen, src.buf
        for start in range(lo, hi, BLOCK):
            stop = min(hi, start + BLOCK)
            w = buf[: stop - start]
            gen.random(out=w)  # W in [0, 1) on the 2^-53 grid
            body(w, start, stop)

    _parallel(n, MIN_PER_THREAD, BLOCK, work)


def _parallel(n: int, min_per_part: int, align: int, work: Callable[[int, int], None]) -> None:
    """Run ``work(lo, hi)`` over a split of ``range(n)`` into at most ``torch.get_num_threads()``
    parts of at least ``min_per_part`` items, boundaries on multiples of ``align``; the calling
    thread takes the first part, pool threads the others."""
    parts = max(1, min(torch.get_num_threads(), n // max(1, min_per_part)))
    if parts == 1:
        work(0, n)
        return
    per = -(-n // parts // align) * align
    bounds = [(lo, min(n, lo + per)) for lo in range(0, n, per)]
    pool = _get_pool(len(bounds) - 1)
    futures = [pool.submit(work, lo, hi) for lo, hi in bounds[1:]]
    work(*bounds[0])
    for f in futures:
        f.result()


def _exponential_block(w: np.ndarray) -> np.ndarray:
    """In place: uniforms ``W`` -> ``E = -log(1 - W)``, with ``W = 0`` giving :math:`2^{-54}`."""
    np.subtract(1.0, w, out=w)  # V = 1 - W is exact on the 2^-53 grid, so log V keeps tiny E precise
    np.log(w, out=w)  # -E
    np.negative(w, out=w)  # E >= 0; E = 0 only for W = 0
    np.maximum(w, _E_FLOOR, out=w)  # W = 0 would give E = 0 and an infinite Gumbel value
    return w


def compiling() -> bool:
    """Whether ``torch.compile`` is tracing (it cannot trace numpy generators or threads)."""
    is_compiling = getattr(torch.compiler, "is_compiling", None)  # torch >= 2.3
    return bool(is_compiling is not None and is_compiling())


def cpu_fast(device: torch.device) -> bool:
    """Whether the numpy block paths serve ``device``: CPU, outside ``torch.compile`` tracing
    (which gets the torch-op paths instead)."""
    return device.type == "cpu" and not compiling()


def uses_fast_source(device: torch.device) -> bool:
    """Whether noise on ``device`` comes from the PCG64 block source or ``torch.rand``."""
    return cpu_fast(device)


def _np_view(t: Tensor) -> np.ndarray:
    return t.detach().view(-1).numpy()


def perturb_into(
    out: Tensor,
    logits: Tensor | None,
    generator: torch.Generator | None,
    stream: tuple[int, int] | None = None,
) -> Tensor:
    """Fill contiguous CPU ``out`` (float32 / float64) with ``logits + G`` (``G`` if logits is None).

    ``G = round(-log E)`` with ``E = -log(1 - W)`` computed in float64 from a 53-bit uniform ``W``
    (see :mod:`gumbelkit.noise`); the sum is taken in ``out``'s dtype. ``logits`` is a contiguous
    tensor of ``out``'s shape (float16 / float32 / float64; bfloat16 is converted first).
    """
    o = _np_view(out)
    lg = None
    if logits is not None:
        if logits.dtype == torch.bfloat16:  # numpy has no bfloat16
            logits = logits.float()
        lg = _np_view(logits)

    def body(w: np.ndarray, start: int, stop: int) -> None:
        _exponential_block(w)
        np.log(w, out=w)  # log E = -G, in float64
        ob = o[start:stop]
        np.negative(w, out=ob, casting="same_kind")  # G, rounded once to the output dtype
        if lg is not None:
            np.add(ob, lg[start:stop], out=ob, casting="same_kind")  # logits + G

    _run_blocks(o.size, generator, body, stream)
    return out


def exponential_into(out: Tensor, generator: torch.Generator | None) -> Tensor:
    """Fill contiguous CPU ``out`` (float32 / float64) with ``E = -log(1 - W)``, rounded once."""
    o = _np_view(out)

    def body(w: np.ndarray, start: int, stop: int) -> None:
        o[start:stop] = _exponential_block(w)

    _run_blocks(o.size, generator, body)
    return out


def perturbed(
    logits: Tensor,
    noise: Tensor | None,
    generator: torch.Generator | None,
    stream: tuple[int, int] | None = None,
) -> Tensor:
    """A fresh contiguous ``logits + G`` in the compute dtype, without autograd history."""
    cdt = compute_dtype(logits.dtype)
    logits = logits.detach()
    if noise is None:
        if uses_fast_source(logits.device):
            z = torch.empty(logits.shape, dtype=cdt, device=logits.device)
            return perturb_into(z, logits.contiguous(), generator, stream)
        from gumbelkit.noise import gumbel_noise

        g = gumbel_noise(logits.shape, dtype=cdt, device=logits.device, generator=generator)
        return g.add_(logits)  # fresh and contiguous
    z = torch.empty(logits.shape, dtype=cdt, device=logits.device)  # contiguous: softmax in place
    return torch.add(logits.to(cdt), noise.detach().to(cdt), out=z)


def _diagnose(logits: Tensor, dim: int) -> None:
    """Re-run the full data checks to raise the precise error (only called on a bad max)."""
    from gumbelkit._validation import check_logits

    check_logits(logits, dim)


def check_max(zmax: Tensor, logits: Tensor, dim: int) -> None:
    """Data validation folded into the max the sampler computes anyway.

    ``max(logits + G)`` over ``dim`` is finite exactly when the slice has no NaN, no ``+inf`` and
    at least one finite entry, because ``G`` is finite; only then is the full (3-pass) check run
    to name the problem.
    """
    if get_validate_args() and not bool(torch.isfinite(zmax).all()):
        _diagnose(logits, dim)


def _layout(shape: torch.Size, dim: int) -> tuple[int, int, int]:
    """(outer, K, inner) such that a contiguous tensor is an (outer, K, inner) array."""
    k = shape[dim]
    inner = 1
    for s_ in shape[dim + 1 :]:
        inner *= s_
    outer = 1
    for s_ in shape[:dim]:
        outer *= s_
    return outer, k, inner


def _groups(
    arrays: tuple[np.ndarray, ...],
    fn: Callable[..., None],
) -> None:
    """Call ``fn(axis, *blocks)`` on blocks of whole category slices of (outer, K, inner) arrays.

    ``inner == 1``: blocks of rows, ``(rows, K)``, reduced along axis 1, about :data:`BLOCK`
    elements each (in cache). Otherwise one ``(K, inner)`` slab per outer index, axis 0.
    Parts of the outer range run on the thread pool.
    """
    outer, k, inner = arrays[0].shape
    if inner == 1:
        flat = [a.reshape(outer, k) for a in arrays]
        rows = max(1, BLOCK // max(k, 1))

        def work(lo: int, hi: int) -> None:
            with np.errstate(all="ignore"):  # only reached with invalid data, which is reported
                for r0 in range(lo, hi, rows):
                    r1 = min(hi, r0 + rows)
                    fn(1, r0, r1, *[a[r0:r1] for a in flat])

        _parallel(outer, max(1, MIN_PER_THREAD // max(k, 1)), 1, work)
    else:

        def work(lo: int, hi: int) -> None:
            with np.errstate(all="ignore"):
                for i in range(lo, hi):
                    fn(0, i, i + 1, *[a[i] for a in arrays])

        _parallel(outer, max(1, MIN_PER_THREAD // max(k * inner, 1)), 1, work)


#: Up to this many categories, row reductions loop over the columns: numpy's reductions
#: along a short last axis pay a per-row overhead (about 8x slower at K = 10).
_SMALL_K = 32


def _max1(a: np.ndarray) -> np.ndarray:
    """Row maxima of ``a`` (rows, K) as (rows, 1); NaN propagates."""
    if a.shape[1] > _SMALL_K:
        return a.max(axis=1, keepdims=True)
    m = a[:, 0].copy()
    for j in range(1, a.shape[1]):
        np.maximum(m, a[:, j], out=m)
    return m[:, None]


def _argmax1(a: np.ndarray) -> np.ndarray:
    """First index of each row's maximum of ``a`` (rows, K)."""
    return _argmax_max1(a)[0]


def _argmax_max1(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First index of each row's maximum of ``a`` (rows, K), and a per-row maximum that is NaN
    whenever the row holds a NaN (so one finiteness check of it validates the row)."""
    if a.shape[1] > _SMALL_K:
        idx = a.argmax(axis=1)  # numpy's argmax returns the first NaN, so the value below is NaN
        return idx, np.take_along_axis(a, idx[:, None], axis=1)[:, 0]
    m = a[:, 0].copy()
    idx = np.zeros(a.shape[0], dtype=np.int64)
    for j in range(1, a.shape[1]):
        np.copyto(idx, j, where=a[:, j] > m)  # strict: the first maximum wins
        np.maximum(m, a[:, j], out=m)  # propagates NaN, unlike the strict comparison above
    return idx, m


def _sum(a: np.ndarray, axis: int) -> np.ndarray:
    # along rows numpy sums pairwise; down a (K, inner) slab it accumulates row by row, so use
    # float64 there to keep the normaliser accurate for large K
    if axis == 1:
        if a.shape[1] > _SMALL_K:
            return a.sum(axis=1, keepdims=True)
        t = a[:, 0].copy()
        for j in range(1, a.shape[1]):
            np.add(t, a[:, j], out=t)
        return t[:, None]
    return a.sum(axis=0, keepdims=True, dtype=np.float64).astype(a.dtype)


def _argmax_axis0(a: np.ndarray) -> np.ndarray:
    """First index of the maximum down each column of ``a`` (K, inner), like ``argmax(axis=0)``.

    numpy's and torch's argmax along a leading axis run strided and are several times slower:
    this keeps a running maximum over chunks of rows (contiguous max passes) and resolves only
    the columns a chunk improves. Strict ``>`` keeps the first maximum; NaN never wins (NaN data
    is reported by the caller's finiteness check).
    """
    k = a.shape[0]
    best = a[0].copy()
    idx = np.zeros(a.shape[1], dtype=np.int64)
    rows = 256
    for k0 in range(0, k, rows):
        chunk = a[k0 : k0 + rows]
        cm = chunk.max(axis=0)
        cols = np.nonzero(cm > best)[0]
        if cols.size:
            idx[cols] = np.ascontiguousarray(chunk[:, cols].T).argmax(axis=1) + k0
            best[cols] = cm[cols]
    return idx


def softmax_numpy(
    z: Tensor, dim: int, tau: float, want_index: bool
) -> tuple[Tensor | None, bool]:
    """In place: ``z <- softmax((z - max z) / tau)`` along ``dim`` (contiguous CPU float32 / 64).

    Returns the argmax of the input (first maximum; ``dim`` removed) if asked, and whether every
    slice had a finite maximum. numpy ufuncs on blocks of whole slices: no OpenMP fork per op.
    """
    outer, k, inner = _layout(z.shape, dim)
    z3 = z.numpy().reshape(outer, k, inner)
    index = None
    if want_index:
        index = torch.empty(z.shape[:dim] + z.shape[dim + 1 :], dtype=torch.int64)
    idx3 = None if index is None else index.numpy().reshape(outer, 1, inner)
    bad: list[bool] = []

    def fn(axis: int, lo: int, hi: int, a: np.ndarray) -> None:
        m = _max1(a) if axis == 1 else a.max(axis=0, keepdims=True)
        if idx3 is not None:
            if axis == 1:
                idx3.reshape(outer, inner)[lo:hi, 0] = _argmax1(a)
            else:
                idx3[lo, 0] = _argmax_axis0(a)
        if not np.isfinite(m).all():
            bad.append(True)
        np.subtract(a, m, out=a)  # <= 0: tiny tau cannot overflow to +inf
        if tau != 1.0:
            np.divide(a, a.dtype.type(tau), out=a)
        np.exp(a, out=a)
        np.divide(a, _sum(a, axis), out=a)

    _groups((z3,), fn)
    return index, not bad


def argmax_numpy(z: Tensor, dim: int) -> tuple[Tensor, bool]:
    """First argmax along ``dim`` of contiguous CPU ``z``, and whether every maximum is finite."""
    outer, k, inner = _layout(z.shape, dim)
    z3 = z.numpy().reshape(outer, k, inner)
    index = torch.empty(z.shape[:dim] + z.shape[dim + 1 :], dtype=torch.int64)
    idx2 = index.numpy().reshape(outer, inner)
    bad: list[bool] = []

    def fn(axis: int, lo: int, hi: int, a: np.ndarray) -> None:
        if axis == 1:
            am, m = _argmax_max1(a)  # m is NaN for a row with NaN logits (folded validation)
            idx2[lo:hi, 0] = am
        else:
            m = a.max(axis=0, keepdims=True)
            idx2[lo] = _argmax_axis0(a)
        if not np.isfinite(m).all():
            bad.append(True)

    _groups((z3,), fn)
    return index, not bad


def topk_numpy(z: Tensor, dim: int, k: int) -> tuple[Tensor, bool]:
    """Indices of the ``k`` largest entries along the last-like ``dim`` (inner size 1), largest
    first, and whether all of them are finite. Blocks of rows: ``argpartition`` then a sort of
    the ``k`` survivors, no OpenMP fork."""
    outer, n, inner = _layout(z.shape, dim)
    assert inner == 1
    z2 = z.numpy().reshape(outer, n)
    index = torch.empty(z.shape[:dim] + (k,) + z.shape[dim + 1 :], dtype=torch.int64)
    idx2 = index.numpy().reshape(outer, k)
    bad: list[bool] = []

    def fn(axis: int, lo: int, hi: int, a: np.ndarray) -> None:
        part = np.argpartition(a, n - k, axis=1)[:, n - k :]  # the k largest, unordered
        vals = np.take_along_axis(a, part, axis=1)
        order = np.argsort(-vals, axis=1, kind="stable")  # largest first
        idx2[lo:hi] = np.take_along_axis(part, order, axis=1)
        if not np.isfinite(vals).all():
            bad.append(True)

    _groups((z2.reshape(outer, n, 1),), fn)
    return index, not bad


def one_hot(index: Tensor, shape: torch.Size, dim: int, dtype: torch.dtype) -> Tensor:
    """Exact one-hot (every entry 0 or 1) of ``index`` along ``dim``, contiguous CPU ``dtype``.

    The zero fill is split over the thread pool (no OpenMP fork) and the ones are written with
    one indexed store per slice; bfloat16 is built in float32 and converted (0 and 1 are exact).
    """
    wide = torch.float32 if dtype == torch.bfloat16 else dtype
    out = torch.empty(shape, dtype=wide)
    flat = out.numpy().reshape(-1)
    _parallel(flat.size, MIN_PER_THREAD, BLOCK, lambda lo, hi: flat[lo:hi].fill(0))
    outer, k, inner = _layout(shape, dim)
    idx = index.reshape(outer, 1, inner).numpy()
    np.put_along_axis(flat.reshape(outer, k, inner), idx, 1, axis=1)
    return out.to(dtype)


def softmax_backward_numpy(
    grad_y: Tensor, y: Tensor, dim: int, tau: float, in_place: bool = False
) -> Tensor:
    """``y * (grad_y - sum(grad_y * y, dim)) / tau`` by blocks (contiguous CPU tensors).

    ``in_place=True`` writes the result over ``y`` (whose owner no longer needs it).
    """
    out = y if in_place else torch.empty(y.shape, dtype=y.dtype)
    outer, k, inner = _layout(y.shape, dim)
    arrs = tuple(t.numpy().reshape(outer, k, inner) for t in (out, grad_y.contiguous(), y))

    def fn(axis: int, lo: int, hi: int, g: np.ndarray, gy: np.ndarray, yb: np.ndarray) -> None:
        if axis == 1:  # a block of whole rows, in cache
            t = np.multiply(gy, yb) if in_place else np.multiply(gy, yb, out=g)
            s = _sum(t, 1)
            np.subtract(gy, s, out=t)
            np.multiply(t, yb, out=g)  # elementwise: safe when g is yb
        else:  # a (K, inner) slab: chunks of rows, so no temporary of the slab's size
            rows = max(1, BLOCK // yb.shape[1])
            acc = np.zeros((1, yb.shape[1]), dtype=np.float64)
            for k0 in range(0, yb.shape[0], rows):
                acc += (gy[k0 : k0 + rows] * yb[k0 : k0 + rows]).sum(axis=0, dtype=np.float64)
            s = acc.astype(yb.dtype)
            for k0 in range(0, yb.shape[0], rows):
                t = np.subtract(gy[k0 : k0 + rows], s)
                np.multiply(t, yb[k0 : k0 + rows], out=g[k0 : k0 + rows])
        if tau != 1.0:
            np.divide(g, g.dtype.type(tau), out=g)

    _groups(arrs, fn)
    return out


def use_numpy_path(z_like: Tensor, tau: float | Tensor) -> bool:
    return cpu_fast(z_like.device) and not isinstance(tau, Tensor)


def soft_sample(
    logits: Tensor,
    tau: float | Tensor,
    dim: int,
    noise: Tensor | None,
    generator: torch.Generator | None,
    want_index: bool,
) -> tuple[Tensor, Tensor | None]:
    """``softmax((logits + G) / tau)`` along ``dim`` computed in place; optionally the argmax.

    Returns the soft sample in the compute dtype (float32 / float64) and the index of
    ``argmax(logits + G)`` (``None`` unless ``want_index``).
    """
    z = perturbed(logits, noise, generator)  # (*, K, *) contiguous, compute dtype
    if use_numpy_path(z, tau):
        assert not isinstance(tau, Tensor)
        idx, ok = softmax_numpy(z, dim, tau, want_index)
        if not ok and get_validate_args():
            _diagnose(logits, dim)
        return z, idx
    index = None
    if want_index:
        zmax, index = z.max(dim=dim, keepdim=True)  # first maximum, as argmax
    else:
        zmax = z.amax(dim=dim, keepdim=True)
    check_max(zmax, logits, dim)
    if isinstance(tau, Tensor):
        z.sub_(zmax).div_(tau.to(z.dtype))
    elif tau < 1.0:
        # shifting by the max first keeps (z - max) / tau <= 0: tiny tau cannot overflow to +inf
        z.sub_(zmax).div_(tau)
    elif tau != 1.0:
        z.div_(tau)  # tau > 1 shrinks finite values; softmax subtracts its own max
    torch._softmax(z, dim, False, out=z)
    return z, (None if index is None else index.squeeze(dim))


class GumbelSoftmaxFunction(torch.autograd.Function):
    """Soft Gumbel-Softmax sample and argmax index; backward saves only the soft sample.

    Forward: ``y = softmax((logits + G) / tau)`` (in the logits' dtype) and ``argmax(logits + G)``.
    Backward: ``grad_logits = y * (grad_y - sum(grad_y * y, dim)) / tau`` in one kernel. ``tau``
    is a number or a tensor that does not require grad.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        logits: Tensor,
        tau: float | Tensor,
        dim: int,
        noise: Tensor | None,
        generator: torch.Generator | None,
        want_index: bool,
    ) -> tuple[Tensor, Tensor]:
        y, index = soft_sample(logits, tau, dim, noise, generator, want_index)
        ctx.save_for_backward(y)
        ctx.tau = tau
        ctx.dim = dim
        ctx.in_dtype = logits.dtype
        if index is None:
            index = torch.empty(0, dtype=torch.long, device=logits.device)
        ctx.mark_non_differentiable(index)
        return y.to(logits.dtype), index

    @staticmethod
    def backward(ctx, grad_y: Tensor, grad_index: Tensor | None):  # type: ignore[override]
        (y,) = ctx.saved_tensors
        tau = ctx.tau
        if use_numpy_path(y, tau) and not torch.is_grad_enabled():
            # numpy blocks; a double backward (create_graph=True) takes the torch ops below
            grad = softmax_backward_numpy(grad_y.detach().to(y.dtype), y.detach(), ctx.dim, tau)
            return grad.to(ctx.in_dtype), None, None, None, None, None
        grad = torch._softmax_backward_data(grad_y.to(y.dtype), y, ctx.dim, y.dtype)
        if isinstance(tau, Tensor):
            grad.div_(tau.to(y.dtype))  # tau broadcasts to the logits' shape (checked)
        elif tau != 1.0:
            grad.div_(tau)
        return grad.to(ctx.in_dtype), None, None, None, None, None


class GumbelSoftmaxHardFunction(torch.autograd.Function):
    """Straight-through hard Gumbel-Softmax whose soft sample never outlives the backward pass.

    Forward returns the exact one-hot of ``argmax(logits + G)`` and the index. The soft sample
    ``y`` is kept privately (it is never returned), so the first backward writes the gradient
    ``y * (g - sum(g * y)) / tau`` over ``y``'s own buffer: after the forward pass only the
    one-hot and ``y`` exist, and the backward allocates nothing of the input's size. A second
    backward (``retain_graph=True``) or a double backward recomputes ``y`` from the logits and
    the replayed noise stream (or the given ``noise``). CPU, ``tau`` a number.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        logits: Tensor,
        tau: float,
        dim: int,
        noise: Tensor | None,
        generator: torch.Generator | None,
    ) -> tuple[Tensor, Tensor]:
        stream = _draw_state(generator) if noise is None else None
        z = perturbed(logits, noise, generator, stream)
        index, ok = softmax_numpy(z, dim, tau, want_index=True)  # z is now y
        if not ok and get_validate_args():
            _diagnose(logits, dim)
        assert index is not None
        hard = one_hot(index, z.shape, dim, logits.dtype)
        ctx.y = z
        ctx.stream, ctx.tau, ctx.dim, ctx.in_dtype = stream, tau, dim, logits.dtype
        ctx.save_for_backward(logits, noise)
        ctx.mark_non_differentiable(index)
        return hard, index

    @staticmethod
    def _recompute(ctx, logits: Tensor, noise: Tensor | None) -> Tensor:
        z = perturbed(logits, noise, None, ctx.stream)
        softmax_numpy(z, ctx.dim, ctx.tau, want_index=False)
        return z

    @staticmethod
    def backward(ctx, grad_hard: Tensor, grad_index: Tensor | None):  # type: ignore[override]
        logits, noise = ctx.saved_tensors
        tau, dim = ctx.tau, ctx.dim
        none = (None, None, None, None)
        if torch.is_grad_enabled():  # double backward: y as a differentiable function of logits
            cdt = compute_dtype(logits.dtype)
            g = (
                noise.to(cdt)
                if noise is not None
                else perturb_into(torch.empty(logits.shape, dtype=cdt), None, None, ctx.stream)
            )
            y = torch.softmax((logits.to(cdt) + g) / tau, dim)
            grad = torch._softmax_backward_data(grad_hard.to(cdt), y, dim, cdt) / tau
            return (grad.to(ctx.in_dtype), *none)
        y = ctx.y
        ctx.y = None  # consumed: its buffer becomes the gradient
        if y is None:
            y = GumbelSoftmaxHardFunction._recompute(ctx, logits, noise)
        grad = softmax_backward_numpy(grad_hard.detach().to(y.dtype), y, dim, tau, in_place=True)
        return (grad.to(ctx.in_dtype), *none)
