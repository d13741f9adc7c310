r"""Compute kernels behind :mod:`gumbelkit.noise`, :mod:`gumbelkit._autograd` and
:mod:`gumbelkit.functional` (private): numpy block kernels and their thread pool, the torch-op
helpers shared by every sampler, and the one place that chooses between the two.

Two paths, one recipe
---------------------
* **numpy block path**: CPU tensors in eager mode, outside ``torch.compile`` tracing and outside
  ``torch.func`` transforms (:func:`numpy_path`). The kernels below.
* **torch-op path**: every other device (CUDA), ``torch.compile`` (numpy generators and threads
  cannot be traced) and ``torch.func`` transforms (functorch-wrapped tensors have no numpy
  view): noise from ``torch.rand``, softmax, argmax, top-k and the backward as torch ops.

Both compute the same values up to the last bits of ``exp`` (numpy's versus torch's); the noise
differs between them for the same seed (see :mod:`gumbelkit.noise`).

Where the time goes on CPU, and what the numpy path does about it
-----------------------------------------------------------------
* **Random bits.** ``torch.rand(..., dtype=float64)`` on CPU runs torch's Mersenne Twister one
  element at a time (about 7 ns per float64 on the 2-core machine of the benchmark); so does
  ``exponential_()`` that ``torch.nn.functional.gumbel_softmax`` uses (about 20 ns). Here the same
  53-bit uniforms, :math:`W = \lfloor u / 2^{11} \rfloor\, 2^{-53}` for a 64-bit word :math:`u`,
  come from numpy's PCG64 generator (about 2.3 ns each). Its 128-bit state and increment (a
  :data:`Stream`) come from four 63-bit draws of the caller's ``torch.Generator`` (or torch's
  default generator), so ``torch.manual_seed`` and ``generator=`` keep their meaning.
* **Passes over memory.** The noise is made in blocks of :data:`BLOCK` elements whose float64
  scratch stays in the L2 cache; each block goes ``W -> E -> log E -> l + G`` (float64), is
  shifted by its per-slice maximum (which makes the samplers shift invariant) and lands, rounded
  once, in the output buffer; the argmax and top-k of ``gumbel_max`` / ``gumbel_topk`` are
  taken on the block itself, with no output at all. No float64 tensor of the full size, and no
  separate noise / perturbed copies, ever exist.
* **Threads.** The block arithmetic is numpy ufuncs, which release the GIL and never start an
  OpenMP team (torch's ``log``, ``exp`` and ``softmax`` fork one per call even for small
  tensors, which stalls for milliseconds on a loaded machine). Large tensors are split into at
  most ``torch.get_num_threads()`` contiguous parts, one per thread; part ``j`` advances its
  PCG64 copy to its first element, so the result is one logical stream and does not depend on
  the number of threads. A forked child re-creates the pool.
* **Validation** reads the per-slice maximum of the logits that the shift needs anyway: it is
  finite exactly when the slice is valid (no NaN, no ``+inf``, one category not masked).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

#: Elements per noise block: the float64 scratch (512 KiB) stays in L2 with the output slice.
BLOCK = 1 << 16
#: Smallest number of elements per thread (smaller draws run on the calling thread alone).
MIN_PER_THREAD = 1 << 18
#: A PCG64 stream: 128-bit state and odd increment. Replaying it replays the noise.
Stream = tuple[int, int]

E_FLOOR = 2.0**-54  # E for W = 0 (documented: W = 0 is read as 2^-54, so E > 0 and G is finite)
#: Slices whose maximum logit lies in [-SHIFT_FREE, SHIFT_FREE] get ``l + G`` unshifted (layouts other
#: than rows): near the maximum it is then rounded at most 2 bits coarser than ``(l - max) + G``
#: (|z| < 2^6 instead of about 2^4), and the pass over the logits for their maxima is saved.
SHIFT_FREE = 32.0
_MASK128 = (1 << 128) - 1

# ------------------------------------------------------------------------------ the path choice


_is_compiling = getattr(torch.compiler, "is_compiling", None)  # torch >= 2.3
_peek_transforms = torch._C._functorch.peek_interpreter_stack
_is_wrapped = torch._C._functorch.is_functorch_wrapped_tensor


def compiling() -> bool:
    """Whether ``torch.compile`` (dynamo) is tracing."""
    return bool(_is_compiling is not None and _is_compiling())


def in_transform(t: Tensor | None = None) -> bool:
    """Whether a ``torch.func`` transform (grad, vmap, jacrev, ...) is active, or ``t`` is a
    functorch-wrapped tensor. Never called while compiling (see :func:`numpy_path`)."""
    if _peek_transforms() is not None:
        return True
    return t is not None and _is_wrapped(t)


def numpy_path(t: Tensor) -> bool:
    """Whether the numpy block kernels serve ``t``: a plain CPU tensor in eager mode.

    The tests force the torch-op path by replacing this function (``tests/conftest.py``).
    """
    return t.device.type == "cpu" and not compiling() and not in_transform(t)


def data_checks_possible() -> bool:
    """Whether data-dependent checks can raise here: not under ``torch.compile`` (they use
    ``torch._assert_async`` there) and not inside ``torch.func`` transforms (skipped)."""
    return not compiling() and not in_transform()


# ------------------------------------------------------------------------------ torch-op helpers


def shifted_softmax(z: Tensor, tau: float | Tensor, dim: int) -> Tensor:
    r""":math:`\mathrm{softmax}(z / \tau)` along ``dim``, shifted by the (detached) maximum.

    ``(z - max z) / tau <= 0``, so a tiny ``tau`` cannot overflow to ``+inf``; ``-inf`` entries
    give exactly 0. Differentiable in ``z`` (and in a tensor ``tau``; masked entries are kept out
    of the division so that ``d/dtau`` never meets ``0 * inf``).
    """
    zmax = z.detach().amax(dim=dim, keepdim=True)
    if isinstance(tau, Tensor) and tau.requires_grad:
        finite = torch.isfinite(z)
        zero = torch.zeros((), dtype=z.dtype, device=z.device)
        s = torch.where(finite, z - zmax, zero) / tau.to(z.dtype)
        s = torch.where(finite, s, torch.full_like(s, -torch.inf))
    else:
        s = (z - zmax) / (tau.to(z.dtype) if isinstance(tau, Tensor) else tau)
    if z.device.type != "cpu":
        return torch.softmax(s, dim=dim)
    # exp / sum by hand on CPU: torch.softmax's CPU kernel starts an OpenMP team on every call,
    # even for a few elements, which stalls for milliseconds on a loaded machine
    e = s.exp()  # entries in [0, 1], the maximum exactly 1
    return e / e.sum(dim=dim, keepdim=True)


def one_hot(indices: Tensor, like: Tensor, dim: int, dtype: torch.dtype | None = None) -> Tensor:
    """Exact one-hot of ``indices`` (``dim`` removed) with ``like``'s shape and device.

    In ``like``'s dtype unless ``dtype`` is given (``torch.bool`` for a mask); every entry is
    exactly 0 or 1 in every dtype. The numpy path splits the zero fill over the thread pool;
    the torch ops compare with ``arange(K)`` (no in-place scatter, so it works under ``vmap``).
    """
    dtype = like.dtype if dtype is None else dtype
    d = dim % like.ndim
    if dtype != torch.bool and numpy_path(like) and numpy_path(indices):
        return _one_hot_numpy(indices, like.shape, d, dtype)
    k = like.shape[d]
    categories = torch.arange(k, device=like.device).view((k,) + (1,) * (like.ndim - 1 - d))
    mask = indices.unsqueeze(d) == categories  # (*, K, *)
    return mask if dtype == torch.bool else mask.to(dtype)


# ------------------------------------------------------------------------------ PCG64 blocks


class _Source(threading.local):
    """Per-thread PCG64 generator and float64 scratch block (numpy generators are not re-entrant)."""

    def __init__(self) -> None:
        self.bitgen = np.random.PCG64(0)
        self.gen = np.random.Generator(self.bitgen)
        self.buf = np.empty(BLOCK, dtype=np.float64)
        self.buf2 = np.empty(BLOCK, dtype=np.float64)

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


def draw_stream(generator: torch.Generator | None) -> Stream:
    """A fresh :data:`Stream` from 4 x 63 bits of ``generator`` (torch's default if None)."""
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
    if len(bounds) == 1:
        work(0, n)
        return
    pool = _get_pool(len(bounds) - 1)
    futures = [pool.submit(work, lo, hi) for lo, hi in bounds[1:]]
    work(*bounds[0])
    for f in futures:
        f.result()


def _run_blocks(
    n: int,
    stream: Stream,
    body: Callable[[np.ndarray, int, int], None],
    unit: int = 1,
    offset: int = 0,
    piece: int = 1,
) -> None:
    """Call ``body(W, start, stop)`` for consecutive blocks covering ``range(n)``.

    ``W`` holds the 53-bit uniforms of elements ``start:stop`` of the PCG64 ``stream``, in a
    float64 scratch array that ``body`` may overwrite. With ``unit <= BLOCK`` every block (and
    every thread's part) is a whole number of units of ``unit`` elements; a larger ``unit`` is
    cut into pieces of at most :data:`BLOCK` that never cross a unit boundary, and start on a
    multiple of ``piece`` (a row) and never cross one when ``piece`` exceeds the block.
    ``offset`` skips that many draws of the stream first (to replay part of an earlier draw).
    """
    global _local
    if _local is None:
        _local = _Source()
    local = _local
    state, inc = stream
    if unit <= BLOCK:
        step = (BLOCK // unit) * unit
    else:
        step = (BLOCK // piece) * piece if piece <= BLOCK else BLOCK
    align = step if unit <= BLOCK else unit

    def work(lo: int, hi: int) -> None:
        src = local  # this thread's generator and scratch
        src.seek(state, inc, offset + lo)
        gen, buf = src.gen, src.buf
        start = lo
        while start < hi:
            stop = min(hi, start + step)
            if unit > BLOCK:
                stop = min(stop, (start // unit + 1) * unit)  # stay inside one unit
                if piece > BLOCK:
                    stop = min(stop, (start // piece + 1) * piece)  # and inside one row
            w = buf[: stop - start]
            gen.random(out=w)  # W in [0, 1) on the 2^-53 grid
            body(w, start, stop)
            start = stop

    _parallel(n, MIN_PER_THREAD, align, work)


def exponential_block(w: np.ndarray) -> np.ndarray:
    """In place: uniforms ``W`` -> ``E = -log(1 - W)``, with ``W = 0`` giving :math:`2^{-54}`."""
    np.subtract(1.0, w, out=w)  # V = 1 - W is exact on the 2^-53 grid, so log V keeps tiny E precise
    np.log(w, out=w)  # -E
    np.negative(w, out=w)  # E >= 0; E = 0 only for W = 0
    np.maximum(w, E_FLOOR, out=w)  # W = 0 would give E = 0 and an infinite Gumbel value
    return w


def _log_e_unfloored(w: np.ndarray) -> np.ndarray:
    """In place: uniforms ``W`` -> ``log E`` with ``E = -log(1 - W)``, one pass fewer than
    :func:`exponential_block` + log: no floor, so ``W = 0`` (probability :math:`2^{-53}`) gives
    ``-inf``. Callers check their block's maxima anyway and replay a block that has one with
    :func:`_replay_log_e` (the floored recipe), so the results are those of the floored noise."""
    np.subtract(1.0, w, out=w)
    np.log(w, out=w)  # log(1 - W) = -E
    np.negative(w, out=w)
    with np.errstate(divide="ignore"):
        np.log(w, out=w)
    return w


def _replay_log_e(stream: Stream, start: int, stop: int) -> np.ndarray:
    """``log E`` (floored, as :func:`gumbel_into` draws it) of draws ``start:stop`` of ``stream``."""
    bitgen = np.random.PCG64(0)
    bitgen.state = {
        "bit_generator": "PCG64",
        "state": {"state": stream[0], "inc": stream[1]},
        "has_uint32": 0,
        "uinteger": 0,
    }
    bitgen.advance(start)
    w = np.random.Generator(bitgen).random(stop - start)
    exponential_block(w)
    return np.log(w, out=w)


def _np_view(t: Tensor) -> np.ndarray:
    return t.detach().view(-1).numpy()


def layout(shape: torch.Size | tuple[int, ...], dim: int) -> tuple[int, int, int]:
    """(outer, K, inner) such that a contiguous tensor is an (outer, K, inner) array."""
    k = shape[dim]
    inner = 1
    for s_ in shape[dim + 1 :]:
        inner *= s_
    outer = 1
    for s_ in shape[:dim]:
        outer *= s_
    return outer, k, inner


def rows_layout(shape: torch.Size | tuple[int, ...], dim: int) -> bool:
    """Whether ``dim`` is a run of whole rows of at most :data:`BLOCK` categories (inner size 1),
    the layout whose perturbation, argmax and top-k :func:`perturb_into` fuses."""
    _, k, inner = layout(shape, dim)
    return inner == 1 and 0 < k <= BLOCK


def gumbel_into(out: Tensor, stream: Stream) -> Tensor:
    """Fill contiguous CPU ``out`` (float32 / float64) with Gumbel noise ``G = -log E``.

    ``E = -log(1 - W)`` and ``log E`` are computed in float64 from a 53-bit uniform ``W`` and
    rounded once to ``out``'s dtype (see :mod:`gumbelkit.noise`).
    """
    o = _np_view(out)

    def body(w: np.ndarray, start: int, stop: int) -> None:
        exponential_block(w)
        np.log(w, out=w)  # log E = -G, in float64
        np.negative(w, out=o[start:stop], casting="same_kind")  # G, rounded once

    _run_blocks(o.size, stream, body)
    return out


def exponential_into(out: Tensor, stream: Stream, offset: int = 0) -> Tensor:
    """Fill contiguous CPU ``out`` (float32 / float64) with ``E = -log(1 - W)``, rounded once,
    from draws ``offset, offset + 1, ...`` of ``stream``."""
    o = _np_view(out)

    def body(w: np.ndarray, start: int, stop: int) -> None:
        o[start:stop] = exponential_block(w)

    _run_blocks(o.size, stream, body, offset=offset)
    return out


class PerturbResult(NamedTuple):
    """What :func:`perturb_into` found: ``ok`` (every slice's maximum is finite: no NaN, no
    ``+inf``, one category not masked), the argmax ``indices`` if asked and computed on the
    way (else None), and ``max_is_zero``: every slice of the output has maximum exactly 0."""

    ok: bool
    indices: Tensor | None
    max_is_zero: bool


def perturb_into(
    out: Tensor | None,
    logits: Tensor,
    dim: int,
    stream: Stream,
    want_index: bool = False,
    topk: int = 0,
) -> PerturbResult:
    r"""Perturbed logits shifted by their per-slice maximum, block by block, from ``stream``.

    ``logits`` is contiguous (any float dtype; half precision is widened to float32); ``out``
    (contiguous, float32 / float64, the logits' shape) receives the values, or is None when only
    the argmax ``indices`` are wanted. The shift makes the sample independent of a constant added
    to the logits: a float32 ``logits + G`` is rounded to the ulp of the logits (0.06 at 1e6).

    * Categories last (rows of ``K <= BLOCK``): ``z = (l + G) - max(l + G)`` computed in float64
      on each block of rows while it is in cache and rounded once (so every slice's maximum is
      exactly 0 and the softmax needs no shift of its own); the argmax comes from the same pass,
      and with ``topk = k`` and no ``out`` the ``k`` largest, first first, as ``indices`` (then
      ``ok`` also says every slice has ``k`` finite values).
    * Otherwise, indices only: a running float64 argmax of ``l + G`` down each slab, or with
      ``topk = k`` a running top ``k`` per column (:func:`_topk_stream`).
    * Otherwise, values: ``z = l + G`` in one pass when every slice maximum is within
      :data:`SHIFT_FREE` of 0 (the maxima come from the same pass); else ``z = (l - max l) + G``
      with the slice maxima of a first pass over the logits. Computed in float64, rounded once.

    ``G`` is the noise :func:`gumbel_into` draws from the same stream; the results equal those
    of ``(logits - max) + gumbel_noise(...)`` up to the last bit of the rounding.
    """
    if logits.dtype not in (torch.float32, torch.float64):
        logits = logits.float()
    lg = _np_view(logits)
    o = None if out is None else _np_view(out)
    outer, k, inner = layout(logits.shape, dim)
    index = None
    bad: list[bool] = []
    if topk and out is None and not rows_layout(logits.shape, dim):
        index = torch.empty(logits.shape[:dim] + (topk,) + logits.shape[dim + 1 :], dtype=torch.int64)
        _topk_stream(lg, index.numpy().reshape(outer, topk, inner), outer, k, inner, stream, bad)
        return PerturbResult(not bad, index, False)
    if topk and out is None:
        index = torch.empty(logits.shape[:dim] + (topk,) + logits.shape[dim + 1 :], dtype=torch.int64)
        top = index.numpy().reshape(outer, topk)

        def rows_topk(w: np.ndarray, start: int, stop: int) -> None:
            for attempt in range(2):
                if attempt:  # a non-finite value: replay the block with the floored noise
                    w = _replay_log_e(stream, start, stop)
                else:
                    _log_e_unfloored(w)
                with np.errstate(invalid="ignore", over="ignore"):
                    np.subtract(lg[start:stop], w, out=w)  # l + G in float64
                    w2 = w.reshape(-1, k)
                    part = np.argpartition(w2, k - topk, axis=1)[:, k - topk :]  # the k largest
                    vals = np.take_along_axis(w2, part, axis=1)
                    order = np.argsort(-vals, axis=1, kind="stable")  # largest first
                    top[start // k : stop // k] = np.take_along_axis(part, order, axis=1)
                    if np.isfinite(vals).all():
                        return
            bad.append(True)

        _run_blocks(lg.size, stream, rows_topk, unit=k)
        return PerturbResult(not bad, index, False)
    if want_index or out is None:
        index = torch.empty(logits.shape[:dim] + logits.shape[dim + 1 :], dtype=torch.int64)
    idx = None if index is None else index.numpy().reshape(-1)
    if inner == 1 and 0 < k <= BLOCK:

        def rows(w: np.ndarray, start: int, stop: int) -> None:
            for attempt in range(2):
                if attempt:  # a non-finite maximum: replay the block with the floored noise
                    w = _replay_log_e(stream, start, stop)
                else:
                    _log_e_unfloored(w)  # log E = -G, float64
                with np.errstate(invalid="ignore", over="ignore"):  # invalid slices are reported
                    np.subtract(lg[start:stop], w, out=w)  # l + G in float64: no rounding to l's ulp
                    w2 = w.reshape(-1, k)
                    r0, r1 = start // k, stop // k
                    if idx is not None or k > _SMALL_K:
                        am = w2.argmax(axis=1)  # the first NaN wins, so a NaN row is reported
                        m = np.take_along_axis(w2, am[:, None], axis=1)
                        if idx is not None:
                            idx[r0:r1] = am
                    else:
                        m = _max1(w2)
                    ok = bool(np.isfinite(m).all())
                    if ok or attempt:
                        if o is not None:
                            np.subtract(w2, m, out=o[start:stop].reshape(-1, k), casting="same_kind")
                        if not ok:
                            bad.append(True)
                        return

        _run_blocks(lg.size, stream, rows, unit=k)
        return PerturbResult(not bad, index, True)
    if o is None:
        assert idx is not None
        _argmax_stream(lg, idx, outer, k, inner, stream, bad)
        return PerturbResult(not bad, index, False)
    if _unshifted_values(lg, o, outer, k, inner, stream):
        return PerturbResult(True, None, False)
    # a large offset, NaN or a fully masked slice: again, the same noise, shifted by the maxima
    m3 = slice_max(logits, dim)  # (outer, 1, inner)
    ok = bool(np.isfinite(m3).all())
    mflat = m3.reshape(outer, inner)
    s = k * inner

    def body(w: np.ndarray, start: int, stop: int) -> None:
        exponential_block(w)
        np.log(w, out=w)  # log E = -G, float64
        assert _local is not None
        t = _local.buf2[: stop - start]  # this thread's second float64 scratch: l - max
        with np.errstate(invalid="ignore", over="ignore"):  # invalid slices are reported
            for a, b in _segments(start, stop, s, inner):
                _shift_segment(t, lg, mflat, a, b, k, inner, base=start)
            np.subtract(t, w, out=o[start:stop], casting="same_kind")  # (l - m) + G, rounded once

    _run_blocks(o.size, stream, body, unit=1)
    return PerturbResult(ok, None, False)


def _unshifted_values(lg: np.ndarray, o: np.ndarray, outer: int, k: int, inner: int, stream: Stream) -> bool:
    """``o = l + G`` (float64, rounded once) in one pass, with the slice maxima of ``l`` taken
    from the same blocks while they are in cache; True if every maximum is within
    :data:`SHIFT_FREE` of 0 (finite, no NaN), when these values are as good as shifted ones."""
    s = k * inner
    maxima: dict[int, np.ndarray] = {}  # per thread: running (outer, inner) maxima

    def body(w: np.ndarray, start: int, stop: int) -> None:
        exponential_block(w)
        np.log(w, out=w)  # log E = -G, float64
        with np.errstate(invalid="ignore", over="ignore"):
            np.subtract(lg[start:stop], w, out=o[start:stop], casting="same_kind")  # l + G, rounded once
        mx = maxima.get(threading.get_ident())
        if mx is None:
            mx = maxima.setdefault(threading.get_ident(), np.full((outer, inner), -np.inf, dtype=lg.dtype))
        for a, b in _segments(start, stop, s, inner):
            if a % s == 0 and (b - a) % s == 0:  # whole slabs
                o0, o1 = a // s, b // s
                np.maximum(mx[o0:o1], lg[a:b].reshape(o1 - o0, k, inner).max(axis=1), out=mx[o0:o1])
            elif a % inner == 0 and (b - a) % inner == 0:  # whole rows of one slab
                np.maximum(mx[a // s], lg[a:b].reshape(-1, inner).max(axis=0), out=mx[a // s])
            else:  # part of one row
                c0 = a % inner
                seg = mx[a // s, c0 : c0 + (b - a)]
                np.maximum(seg, lg[a:b], out=seg)

    _run_blocks(o.size, stream, body, unit=1)
    m = np.maximum.reduce(list(maxima.values())) if maxima else np.zeros(1)
    return bool((np.abs(m) <= SHIFT_FREE).all())  # False for NaN and -inf


def _argmax_stream(
    lg: np.ndarray, idx: np.ndarray, outer: int, k: int, inner: int, stream: Stream, bad: list[bool]
) -> None:
    """``idx`` = argmax over the K rows of each (K, inner) slab of ``l + G`` (float64), keeping a
    running maximum per column: no perturbed copy is written. Threads take whole slabs."""
    s = k * inner
    best = np.full((outer, inner), -np.inf)
    idx2 = idx.reshape(outer, inner)
    idx2.fill(0)
    nan = np.zeros(outer, dtype=bool)

    def body(w: np.ndarray, start: int, stop: int) -> None:
        exponential_block(w)
        np.log(w, out=w)
        with np.errstate(invalid="ignore", over="ignore"):
            np.subtract(lg[start:stop], w, out=w)  # l + G, float64
            o0 = start // s
            if stop - start >= s and start % s == 0:  # whole (small) slabs
                w3 = w.reshape(-1, k, inner)
                am = w3.argmax(axis=1)  # (n, inner), the first maximum
                best[o0 : o0 + w3.shape[0]] = np.take_along_axis(w3, am[:, None, :], axis=1)[:, 0]
                idx2[o0 : o0 + w3.shape[0]] = am
                return
            k0, c0 = (start % s) // inner, start % inner
            if c0 == 0 and (stop - start) % inner == 0:  # whole rows of one slab
                chunk = w.reshape(-1, inner)
                cm = chunk.max(axis=0)
                nan[o0] |= bool(np.isnan(cm).any())
                cols = np.nonzero(cm > best[o0])[0]  # strict: the first maximum wins
                if cols.size:
                    idx2[o0, cols] = np.ascontiguousarray(chunk[:, cols].T).argmax(axis=1) + k0
                    best[o0, cols] = cm[cols]
            else:  # part of one row
                c1 = c0 + (stop - start)
                nan[o0] |= bool(np.isnan(w).any())
                better = w > best[o0, c0:c1]
                idx2[o0, c0:c1][better] = k0
                best[o0, c0:c1][better] = w[better]

    if s <= BLOCK:
        _run_blocks(lg.size, stream, body, unit=s)
    else:
        _run_blocks(lg.size, stream, body, unit=s, piece=inner)
    if nan.any() or not np.isfinite(best).all():
        bad.append(True)


def _topk_stream(
    lg: np.ndarray, top: np.ndarray, outer: int, k: int, inner: int, stream: Stream, bad: list[bool]
) -> None:
    """``top`` (outer, m, inner) = the ``m`` largest of ``l + G`` (float64) over the K rows of each
    (K, inner) slab, largest first, with no perturbed copy written: whole slabs at once, else a
    running top ``m`` per column that a block of rows only touches in the columns where its
    maximum beats the current m-th largest (after the first rows, few). Threads take whole slabs."""
    m = top.shape[1]
    s = k * inner
    best = np.full((outer, inner, m), -np.inf)  # per column: the m largest so far, unordered
    arg = np.zeros((outer, inner, m), dtype=np.int64)
    floor = np.full((outer, inner), -np.inf)  # per column: the smallest of its m
    nan = np.zeros(outer, dtype=bool)

    def merge(o0: int, k0: int, c0: int, chunk: np.ndarray) -> None:
        """Fold rows ``k0:k0 + r`` (columns ``c0:c0 + ncol``) of slab ``o0`` into its top m."""
        r, ncol = chunk.shape
        cm = chunk.max(axis=0)  # NaN propagates
        nan[o0] |= bool(np.isnan(cm).any())
        cols = np.nonzero(cm > floor[o0, c0 : c0 + ncol])[0]
        if not cols.size:
            return
        gc = cols + c0
        vals = np.concatenate([best[o0, gc], chunk[:, cols].T], axis=1)  # (n, m + r)
        rows = np.concatenate([arg[o0, gc], np.broadcast_to(np.arange(k0, k0 + r), (cols.size, r))], axis=1)
        part = np.argpartition(vals, r, axis=1)[:, r:]  # the m largest of the m + r
        best[o0, gc] = np.take_along_axis(vals, part, axis=1)
        arg[o0, gc] = np.take_along_axis(rows, part, axis=1)
        floor[o0, gc] = best[o0, gc].min(axis=1)

    def body(w: np.ndarray, start: int, stop: int) -> None:
        exponential_block(w)
        np.log(w, out=w)
        with np.errstate(invalid="ignore", over="ignore"):
            np.subtract(lg[start:stop], w, out=w)  # l + G, float64: no rounding to l's ulp
            o0 = start // s
            if stop - start >= s and start % s == 0:  # whole (small) slabs: the top m directly
                w3 = np.ascontiguousarray(w.reshape(-1, k, inner).transpose(0, 2, 1))  # (n, inner, K)
                part = np.argpartition(w3, k - m, axis=2)[:, :, k - m :]
                n = w3.shape[0]
                best[o0 : o0 + n] = np.take_along_axis(w3, part, axis=2)
                arg[o0 : o0 + n] = part
                return
            k0, c0 = (start % s) // inner, start % inner
            if c0 == 0 and (stop - start) % inner == 0:  # whole rows of one slab
                merge(o0, k0, 0, w.reshape(-1, inner))
            else:  # part of one row
                merge(o0, k0, c0, w.reshape(1, -1))

    if s <= BLOCK:
        _run_blocks(lg.size, stream, body, unit=s)
    else:
        _run_blocks(lg.size, stream, body, unit=s, piece=inner)
    order = np.argsort(-best, axis=2, kind="stable")  # largest first
    top[...] = np.take_along_axis(arg, order, axis=2).transpose(0, 2, 1)
    if nan.any() or not np.isfinite(best).all():
        bad.append(True)


def _segments(start: int, stop: int, s: int, inner: int) -> list[tuple[int, int]]:
    """Split ``[start, stop)`` so that each piece is whole slabs, or whole rows of one slab, or
    part of one row (``s`` elements per slab, ``inner`` per row)."""
    out: list[tuple[int, int]] = []
    a = start
    while a < stop:
        if a % s == 0 and stop - a >= s:  # whole slabs
            b = a + (stop - a) // s * s
        else:
            slab_end = min(stop, (a // s + 1) * s)
            if a % inner == 0 and slab_end - a >= inner:  # whole rows of one slab
                b = a + (slab_end - a) // inner * inner
            else:  # part of one row
                b = min(slab_end, (a // inner + 1) * inner)
        out.append((a, b))
        a = b
    return out


def _shift_segment(
    o: np.ndarray, lg: np.ndarray, m: np.ndarray, a: int, b: int, k: int, inner: int, base: int = 0
) -> None:
    """``o[a - base:b - base] = lg[a:b] - max`` for one piece from :func:`_segments` (``m`` is
    (outer, inner))."""
    s = k * inner
    dst = o[a - base : b - base]
    if a % s == 0 and (b - a) % s == 0:
        o0, o1 = a // s, b // s
        np.subtract(lg[a:b].reshape(o1 - o0, k, inner), m[o0:o1, None, :], out=dst.reshape(o1 - o0, k, inner))
    elif a % inner == 0 and (b - a) % inner == 0:
        np.subtract(lg[a:b].reshape(-1, inner), m[a // s][None, :], out=dst.reshape(-1, inner))
    else:
        c0 = a % inner
        np.subtract(lg[a:b], m[a // s, c0 : c0 + (b - a)], out=dst)


def slice_max(x: Tensor, dim: int) -> np.ndarray:
    """Per-slice maximum along ``dim`` of contiguous CPU ``x`` as an (outer, 1, inner) array;
    NaN propagates (numpy's ``maximum``)."""
    outer, k, inner = layout(x.shape, dim)
    x3 = x.detach().numpy().reshape(outer, k, inner)
    out = np.empty((outer, 1, inner), dtype=x3.dtype)

    def fn(axis: int, lo: int, hi: int, a: np.ndarray) -> None:
        if axis == 1:
            out.reshape(outer, inner)[lo:hi, 0] = _max1(a)[:, 0]
        elif axis == 2:
            np.max(a, axis=1, keepdims=True, out=out[lo:hi])
        else:
            _colmax(a, out[lo, 0])

    _groups((x3,), fn)
    return out


def _colmax(a: np.ndarray, out: np.ndarray) -> None:
    """``out = a.max(axis=0)`` for a (K, inner) array, by chunks of rows (contiguous passes)."""
    out[...] = a[0]
    rows = max(1, BLOCK // max(a.shape[1], 1))
    for k0 in range(1, a.shape[0], rows):
        np.maximum(out, a[k0 : k0 + rows].max(axis=0), out=out)


def _groups(
    arrays: tuple[np.ndarray, ...],
    fn: Callable[..., None],
) -> None:
    """Call ``fn(axis, lo, hi, *blocks)`` on blocks of whole category slices of (outer, K, inner)
    arrays, for the outer indices ``lo:hi``.

    * ``inner == 1``: blocks of rows, ``(rows, K)``, reduced along axis 1, about :data:`BLOCK`
      elements each (in cache);
    * small slabs (``K * inner`` below ``BLOCK / 4``): blocks of slabs, ``(n, K, inner)``,
      reduced along axis 1, passed with ``axis=2`` (one numpy call per block, not per slab);
    * otherwise one ``(K, inner)`` slab per outer index, reduced along axis 0.

    Parts of the outer range run on the thread pool.
    """
    outer, k, inner = arrays[0].shape
    if inner > 1 and k * inner < BLOCK // 4:
        slabs = max(1, BLOCK // (k * inner))

        def work3(lo: int, hi: int) -> None:
            with np.errstate(all="ignore"):
                for o0 in range(lo, hi, slabs):
                    o1 = min(hi, o0 + slabs)
                    fn(2, o0, o1, *[a[o0:o1] for a in arrays])

        _parallel(outer, max(1, MIN_PER_THREAD // max(k * inner, 1)), 1, work3)
        return
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
        # the value at the argmax: numpy's argmax is several times faster than its max along a
        # short axis, and it returns the first NaN, so NaN still propagates
        return np.take_along_axis(a, a.argmax(axis=1)[:, None], axis=1)
    m = a[:, 0].copy()
    for j in range(1, a.shape[1]):
        np.maximum(m, a[:, j], out=m)
    return m[:, None]


def _argmax1(a: np.ndarray) -> np.ndarray:
    """First index of each row's maximum of ``a`` (rows, K), as numpy's argmax (first maximum;
    a NaN, which the callers' checks report, wins). Measured faster than a loop over the
    columns for every K (about 2x at K = 10, 4x at K = 32)."""
    return a.argmax(axis=1)


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
    is reported by the caller's check).
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
    z: Tensor, dim: int, tau: float, want_index: bool, bounded: bool, max_is_zero: bool = False
) -> Tensor | None:
    """In place: ``z <- softmax(z / tau)`` along ``dim`` (contiguous CPU float32 / 64).

    The pass that subtracts each slice's maximum is skipped when it is known to be harmless:
    ``max_is_zero`` (every slice's maximum is exactly 0, as :func:`perturb_into` leaves it), or
    ``bounded`` (every entry is at most ``GUMBEL_NOISE_MAX`` and each slice has one at least
    ``GUMBEL_NOISE_MIN``: ``(logits - max) + G`` with the library's own noise) with ``tau >= 1``,
    where ``exp(z / tau)`` can neither overflow (``e^37.4`` times any K) nor lose the largest
    entry.

    Returns the argmax of the input (first maximum; ``dim`` removed) if asked. numpy ufuncs on
    blocks of whole slices: no OpenMP fork per op.
    """
    outer, k, inner = layout(z.shape, dim)
    z3 = z.numpy().reshape(outer, k, inner)
    index = None
    if want_index:
        index = torch.empty(z.shape[:dim] + z.shape[dim + 1 :], dtype=torch.int64)
    idx3 = None if index is None else index.numpy().reshape(outer, 1, inner)
    shift = not (max_is_zero or (bounded and tau >= 1.0))

    def fn(axis: int, lo: int, hi: int, a: np.ndarray) -> None:
        if idx3 is not None:
            if axis == 1:
                idx3.reshape(outer, inner)[lo:hi, 0] = _argmax1(a)
            elif axis == 2:
                idx3[lo:hi, 0] = a.argmax(axis=1)
            else:
                idx3[lo, 0] = _argmax_axis0(a)
        if axis == 2:  # a block of small slabs (n, K, inner)
            if shift:
                np.subtract(a, a.max(axis=1, keepdims=True), out=a)
            if tau != 1.0:
                np.divide(a, a.dtype.type(tau), out=a)
            np.exp(a, out=a)
            np.divide(a, a.sum(axis=1, keepdims=True), out=a)
            return
        if axis == 1:
            if shift:
                np.subtract(a, _max1(a), out=a)  # <= 0: tiny tau cannot overflow to +inf
            if tau != 1.0:
                np.divide(a, a.dtype.type(tau), out=a)
            np.exp(a, out=a)
            np.divide(a, _sum(a, 1), out=a)
            return
        # a (K, inner) slab: chunks of rows in cache, one pass for shift + scale + exp + sum
        m = None
        if shift:
            m = np.empty(a.shape[1], dtype=a.dtype)
            _colmax(a, m)
        rows = max(1, BLOCK // max(a.shape[1], 1))
        acc = np.zeros(a.shape[1], dtype=np.float64)
        for k0 in range(0, a.shape[0], rows):
            c = a[k0 : k0 + rows]
            if m is not None:
                np.subtract(c, m, out=c)
            if tau != 1.0:
                np.divide(c, c.dtype.type(tau), out=c)
            np.exp(c, out=c)
            acc += c.sum(axis=0, dtype=np.float64)
        total = acc.astype(a.dtype)
        for k0 in range(0, a.shape[0], rows):
            c = a[k0 : k0 + rows]
            np.divide(c, total, out=c)

    _groups((z3,), fn)
    return index


def argmax_numpy(z: Tensor, dim: int) -> Tensor:
    """First argmax along ``dim`` of contiguous CPU ``z``."""
    outer, k, inner = layout(z.shape, dim)
    z3 = z.numpy().reshape(outer, k, inner)
    index = torch.empty(z.shape[:dim] + z.shape[dim + 1 :], dtype=torch.int64)
    idx2 = index.numpy().reshape(outer, inner)

    def fn(axis: int, lo: int, hi: int, a: np.ndarray) -> None:
        if axis == 1:
            idx2[lo:hi, 0] = _argmax1(a)
        elif axis == 2:
            idx2[lo:hi] = a.argmax(axis=1)
        else:
            idx2[lo] = _argmax_axis0(a)

    _groups((z3,), fn)
    return index


def topk_numpy(z: Tensor, dim: int, k: int) -> tuple[Tensor, bool]:
    """Indices of the ``k`` largest entries along ``dim`` of contiguous CPU ``z`` whose categories
    are contiguous (inner size 1), largest first, and whether all of them are finite. Blocks of
    rows: ``argpartition`` then a sort of the ``k`` survivors, no OpenMP fork."""
    outer, n, inner = layout(z.shape, dim)
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


def _one_hot_numpy(index: Tensor, shape: torch.Size, dim: int, dtype: torch.dtype) -> Tensor:
    wide = torch.float32 if dtype == torch.bfloat16 else dtype
    out = torch.empty(shape, dtype=wide)
    flat = out.numpy().reshape(-1)
    _parallel(flat.size, MIN_PER_THREAD, BLOCK, lambda lo, hi: flat[lo:hi].fill(0))
    outer, k, inner = layout(shape, dim)
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
    outer, k, inner = layout(y.shape, dim)
    arrs = tuple(t.numpy().reshape(outer, k, inner) for t in (out, grad_y.contiguous(), y))

    def fn(axis: int, lo: int, hi: int, g: np.ndarray, gy: np.ndarray, yb: np.ndarray) -> None:
        if axis == 2:  # a block of small slabs (n, K, inner)
            s = (gy * yb).sum(axis=1, keepdims=True)
            np.multiply(np.subtract(gy, s), yb, out=g)
        elif axis == 1:  # a block of whole rows, in cache
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
