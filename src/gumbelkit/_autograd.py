r"""Every custom ``torch.autograd.Function`` of the library (private).

Each Function follows torch's current contract, so that it works under ``torch.func``
(``grad``, ``vmap``, ``jacrev``) and ``torch.compile``:

* ``forward`` takes no ``ctx``; ``setup_context`` saves what the backward needs, and every
  tensor it needs goes through ``ctx.save_for_backward`` (a tensor ``tau`` included), so that
  ``torch.autograd.graph.saved_tensors_hooks`` (``save_on_cpu``, activation offloading) see them
  and the version counter catches an in-place change between forward and backward. Only Python
  numbers, flags and PCG64 stream states (two ints) live on ``ctx`` as attributes.
* ``generate_vmap_rule = True``: ``forward`` and ``backward`` are deterministic given their
  inputs (the noise, or the stream that replays it, is an input) and use torch ops whenever a
  tensor is functorch-wrapped, so torch derives the batching rule.
* Inside, :func:`gumbelkit._kernels.numpy_path` chooses the numpy block kernels (plain CPU
  tensors, eager) or torch ops (everything else); both compute the same formulas.

Functions:

* :class:`SoftSample` -- :math:`y = \mathrm{softmax}(((\ell - \max\ell) + G)/\tau)` and its
  argmax; saves only ``y`` (and a tensor ``tau``). Backward
  :math:`\nabla_\ell = y \odot (\bar y - \langle \bar y, y\rangle) / \tau`.
* :class:`HardSample` -- the fused straight-through one-hot (CPU): returns the exact one-hot
  and saves the soft sample ``y`` (an output marked non-differentiable, so it is a saved
  tensor like any other); the first backward writes the gradient over ``y``'s buffer, so
  forward + backward peaks at the one-hot plus one buffer. A second backward
  (``retain_graph=True``) or a double backward recomputes ``y`` from the saved logits and the
  replayed noise.
* :class:`StraightThrough` -- forward the given exact one-hot, backward the gradient unchanged
  to the soft tensor.
* :class:`MixtureST` -- the straight-through estimators' mixture of softmax Jacobians
  (:mod:`gumbelkit.estimators`): the exact one-hot forward, and the backward
  :math:`\sum_m c_m (y_m \odot g - y_m (y_m^\top g)) / t_m` with
  :math:`y_m = \mathrm{softmax}((\ell + a_m)/t_m)`. It saves the logits and the estimator's
  few inputs (the sampled indices, Gumbel-Rao's first perturbation and its 0-d seed) and
  recomputes the :math:`y_m` one at a time, so it holds O(1) times the logits whatever the
  number of components (Gumbel-Rao with ``k = 100`` included).
* :class:`KSubsetMarginals` -- the exact inclusion marginals :math:`\mu` of the k-subset
  distribution :math:`p(S) \propto \exp\sum_{i\in S} x_i` (:mod:`gumbelkit._ksubset`); the
  backward is the exact Hessian-vector product of :math:`\log Z`, O(nk) (SIMPLE's gradient).
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor

from gumbelkit import _kernels, _ksubset
from gumbelkit._validation import check_valid, compute_dtype
from gumbelkit.noise import perturb

# ------------------------------------------------------------------------------ sampling


def soft_forward(
    logits: Tensor,
    tau: float | Tensor,
    dim: int,
    noise: Tensor | None,
    stream: _kernels.Stream | None,
    want_index: bool,
) -> tuple[Tensor, Tensor | None]:
    """``softmax(((logits - max) + G) / tau)`` in the compute dtype, and the argmax if asked.

    The noise is ``noise`` or the PCG64 ``stream`` (numpy path); no generator is drawn here.
    """
    z, ok, index, max_is_zero = perturb(logits, dim, noise=noise, stream=stream, want_index=want_index)
    assert z is not None  # (*, K, *) compute dtype
    check_valid(ok, logits, dim)
    if _kernels.numpy_path(z) and not isinstance(tau, Tensor):
        # a known maximum (0), or the library's own bounded noise with tau >= 1, lets the
        # softmax skip its shift (see the kernel); the argmax may come from the perturbation
        found = _kernels.softmax_numpy(
            z, dim, tau, want_index and index is None, bounded=noise is None, max_is_zero=max_is_zero
        )
        return z, (index if index is not None else found)
    if want_index and index is None:
        index = z.argmax(dim=dim)
    return _kernels.shifted_softmax(z, tau, dim), index


def _softmax_vjp(grad: Tensor, y: Tensor, dim: int, tau: float | Tensor) -> Tensor:
    """``y * (grad - sum(grad * y, dim)) / tau`` in torch ops (differentiable, vmap-able)."""
    g = y * (grad - (grad * y).sum(dim=dim, keepdim=True))
    return g / (tau.to(y.dtype) if isinstance(tau, Tensor) else tau)


class _Function(torch.autograd.Function):
    """Base of the Functions here. ``torch.autograd.Function.apply`` binds the arguments to
    ``forward``'s signature with ``inspect`` on every call (tens of microseconds, as much as a
    small sampler's whole forward); every call here passes all arguments positionally, so
    outside ``torch.func`` transforms that binding is skipped. ``torch.compile`` intercepts
    ``apply`` by name and traces ``forward`` / ``backward`` itself."""

    @classmethod
    def apply(cls, *args: Any) -> Any:  # type: ignore[override]
        if torch._C._are_functorch_transforms_active():
            return super().apply(*args)
        args = torch._functorch.utils.unwrap_dead_wrappers(args)
        return super(torch.autograd.Function, cls).apply(*args)  # type: ignore[misc]


def _no_index(like: Tensor) -> Tensor:
    return torch.zeros((0,), dtype=torch.long, device=like.device)


class SoftSample(_Function):
    """Soft Gumbel-Softmax sample (compute dtype) and argmax indices; saves only ``y``.

    Inputs: ``logits``, ``tau`` (a number, or a tensor that does not require grad),
    ``dim`` (non-negative), ``noise`` (a tensor or None), ``stream`` (PCG64 state or None;
    one of the two is given), ``want_index``.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(  # type: ignore[override]
        logits: Tensor,
        tau: float | Tensor,
        dim: int,
        noise: Tensor | None,
        stream: _kernels.Stream | None,
        want_index: bool,
    ) -> tuple[Tensor, Tensor]:
        y, index = soft_forward(logits, tau, dim, noise, stream, want_index)
        return y, (_no_index(y) if index is None else index)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor]) -> None:
        logits, tau, dim, _noise, _stream, _want = inputs
        y, index = output
        ctx.mark_non_differentiable(index)
        ctx.set_materialize_grads(False)  # no zero-filled gradient for the indices
        ctx.dim, ctx.in_dtype = dim, logits.dtype
        ctx.tensor_tau = isinstance(tau, Tensor)
        if ctx.tensor_tau:
            ctx.save_for_backward(y, tau)
        else:
            ctx.save_for_backward(y)
            ctx.tau = tau

    @staticmethod
    def backward(ctx: Any, grad_y: Tensor | None, grad_index: Tensor | None):  # type: ignore[override]
        if grad_y is None:
            return None, None, None, None, None, None
        if ctx.tensor_tau:
            y, tau = ctx.saved_tensors
        else:
            (y,) = ctx.saved_tensors
            tau = ctx.tau
        g = grad_y.to(y.dtype)
        if (
            not ctx.tensor_tau
            and not torch.is_grad_enabled()
            and _kernels.numpy_path(y)
            and _kernels.numpy_path(g)
        ):
            # numpy blocks; a double backward (create_graph=True) takes the torch ops below
            grad = _kernels.softmax_backward_numpy(g.detach(), y.detach(), ctx.dim, tau)
        else:
            grad = _softmax_vjp(g, y, ctx.dim, tau)
        return grad.to(ctx.in_dtype), None, None, None, None, None


class HardSample(_Function):
    """Straight-through hard Gumbel-Softmax whose soft sample lives only in its saved tensors.

    Inputs: ``logits``, ``tau`` (a number), ``dim``, ``noise`` (tensor or None), ``stream``
    (PCG64 state, used when ``noise`` is None). Outputs: the exact one-hot (logits' dtype), the
    indices and the soft sample ``y`` (both non-differentiable; callers drop ``y``).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(  # type: ignore[override]
        logits: Tensor,
        tau: float,
        dim: int,
        noise: Tensor | None,
        stream: _kernels.Stream | None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        y, index = soft_forward(logits, tau, dim, noise, stream, want_index=True)
        assert index is not None
        return _kernels.one_hot(index, logits, dim), index, y

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor, Tensor]) -> None:
        logits, tau, dim, noise, stream = inputs
        _hard, index, y = output
        ctx.mark_non_differentiable(index, y)
        ctx.set_materialize_grads(False)  # no zero-filled gradients for the indices and y
        ctx.save_for_backward(logits, noise, y)
        ctx.tau, ctx.dim, ctx.stream = tau, dim, stream
        ctx.consumed = False  # y's buffer becomes the first backward's gradient

    @staticmethod
    def backward(ctx: Any, grad_hard: Tensor | None, grad_index: Any, grad_y: Any):  # type: ignore[override]
        none = (None, None, None, None)
        if grad_hard is None:
            return (None, *none)
        logits, noise, y = ctx.saved_tensors
        tau, dim = ctx.tau, ctx.dim
        cdt = compute_dtype(logits.dtype)
        if torch.is_grad_enabled():
            # double backward: y as a differentiable function of the logits (noise constant)
            z = perturb(logits, dim, noise=noise, stream=ctx.stream).z
            assert z is not None
            xc = logits.to(cdt)
            const = torch.where(torch.isneginf(z), torch.zeros_like(z), z - xc.detach())
            yd = _kernels.shifted_softmax(xc + const, tau, dim)
            return (_softmax_vjp(grad_hard.to(cdt), yd, dim, tau).to(logits.dtype), *none)
        g = grad_hard.to(cdt)
        if _kernels.numpy_path(y) and _kernels.numpy_path(g):
            if ctx.consumed:  # a second backward: y's buffer holds the first gradient
                y, _ = soft_forward(logits, tau, dim, noise, ctx.stream, want_index=False)
            ctx.consumed = True
            # numpy writes do not bump y's version counter; the flag above guards a replay
            grad = _kernels.softmax_backward_numpy(g.detach(), y.detach(), dim, tau, in_place=True)
        else:
            grad = _softmax_vjp(g, y, dim, tau)
        return (grad.to(logits.dtype), *none)


class StraightThrough(_Function):
    """Forward: the given exact one-hot. Backward: the incoming gradient, unchanged, to ``soft``.

    ``hard - soft.detach() + soft`` is not exactly one-hot in float16 / bfloat16 (``(1 - s) + s``
    rounds), so the one-hot is returned as is and the gradient is routed by hand.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(soft: Tensor, hard: Tensor) -> Tensor:  # type: ignore[override]
        return hard.view_as(hard)  # a view, not a copy (torch's copy forks an OpenMP team)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return grad, None


# ------------------------------------------------------------------------------ estimators


class MixturePlan(Protocol):
    """What :class:`MixtureST` needs from an estimator: Python numbers only (no tensors).

    ``components`` terms; term ``m`` has temperature ``tau(m)``, coefficients ``c_hard(m)`` (the
    one-hot's gradient) and ``c_soft(m)`` (the relaxed output's, its true Jacobian), and a
    constant shift: ``shift(xs, indices, aux, start, stop)`` returns the shifts of terms
    ``start .. stop - 1`` as a ``(stop - start, *, K)`` tensor (``None`` for all zero), such that
    term ``m``'s logits are ``x + shift[m]``; ``xs`` is ``x - max x`` (detached, compute dtype,
    categories last) and ``aux`` the extra tensors the estimator passed to :class:`MixtureST`.
    """

    components: int

    def tau(self, m: int) -> float: ...

    def c_hard(self, m: int) -> float: ...

    def c_soft(self, m: int) -> float: ...

    def shift(
        self, xs: Tensor, indices: Tensor, aux: tuple[Tensor, ...], start: int, stop: int
    ) -> Tensor | None: ...


#: Terms are computed a chunk at a time, about this many elements each: few torch ops for
#: small tensors, bounded scratch memory for large ones (nothing of it is saved for backward).
CHUNK_ELEMENTS = 1 << 18


def _chunks(plan: MixturePlan, numel: int) -> list[tuple[int, int]]:
    size = max(1, min(plan.components, CHUNK_ELEMENTS // max(numel, 1)))
    return [(a, min(plan.components, a + size)) for a in range(0, plan.components, size)]


def _column(values: list[float], like: Tensor) -> Tensor | float:
    """The per-term numbers as a float when equal, else a ``(M, 1, ..., 1)`` tensor."""
    if all(v == values[0] for v in values):
        return values[0]
    t = torch.tensor(values, dtype=like.dtype, device=like.device)
    return t.reshape((-1,) + (1,) * (like.ndim - 1))


def _terms(
    x: Tensor, xs: Tensor, plan: MixturePlan, indices: Tensor, aux: tuple[Tensor, ...], start: int, stop: int
) -> Tensor:
    """``softmax((x + a_m) / t_m)`` for terms ``start .. stop - 1``: ``(M, *, K)`` (``x`` may
    carry a graph)."""
    a = plan.shift(xs, indices, aux, start, stop)
    z = x.unsqueeze(0) if a is None else x.unsqueeze(0) + a  # (1 or M, *, K)
    z = z.expand(stop - start, *x.shape)
    t = _column([plan.tau(m) for m in range(start, stop)], z)
    return _kernels.shifted_softmax(z, t, -1)


class MixtureST(_Function):
    """Outputs ``(hard, soft)``: the exact one-hot of ``indices`` and the relaxed
    :math:`\\sum_m c^{soft}_m y_m`; both backpropagate through the mixture of softmax Jacobians.

    Inputs: ``x`` ``(*, K)`` logits with categories last, ``indices`` ``(*)``, the ``plan``
    (:class:`MixturePlan`), then the plan's auxiliary tensors. Computation runs in float32 for
    half inputs. Twice differentiable: under ``create_graph=True`` the backward rebuilds the
    terms from ``x`` with autograd on (the shifts and temperatures are constants).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, indices: Tensor, plan: MixturePlan, *aux: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        xc = x.detach().to(compute_dtype(x.dtype))
        xs = xc - xc.amax(dim=-1, keepdim=True)
        soft = torch.zeros_like(xc)
        for start, stop in _chunks(plan, xc.numel()):
            cs = [plan.c_soft(m) for m in range(start, stop)]
            if all(c == 0.0 for c in cs):
                continue
            y = _terms(xc, xs, plan, indices, aux, start, stop)  # (M, *, K)
            soft = soft + (y * _column(cs, y)).sum(dim=0)
        hard = _kernels.one_hot(indices, x, -1)
        return hard, soft.to(x.dtype)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor]) -> None:
        x, indices, plan, *aux = inputs
        ctx.save_for_backward(x, indices, *aux)
        ctx.set_materialize_grads(False)  # an unused output gets no zero-filled gradient
        ctx.plan = plan

    @staticmethod
    def backward(ctx: Any, grad_hard: Tensor | None, grad_soft: Tensor | None):  # type: ignore[override]
        x, indices, *aux_list = ctx.saved_tensors
        aux = tuple(aux_list)
        plan: MixturePlan = ctx.plan
        cdt = compute_dtype(x.dtype)
        xc = x.to(cdt)  # with create_graph=True this keeps the graph to x
        xs = (xc - xc.amax(dim=-1, keepdim=True)).detach()
        gh = None if grad_hard is None else grad_hard.to(cdt)
        gs = None if grad_soft is None else grad_soft.to(cdt)
        total: Tensor | None = None
        for start, stop in _chunks(plan, xc.numel()):
            ms = range(start, stop)
            w: Tensor | None = None
            if gh is not None:
                w = gh * _column([plan.c_hard(m) / plan.tau(m) for m in ms], gh.unsqueeze(0))
            if gs is not None:
                ws = gs * _column([plan.c_soft(m) / plan.tau(m) for m in ms], gs.unsqueeze(0))
                w = ws if w is None else w + ws
            if w is None:
                continue
            y = _terms(xc, xs, plan, indices, aux, start, stop)  # recomputed, not stored
            jac = (y * (w - (y * w).sum(dim=-1, keepdim=True))).sum(dim=0)
            total = jac if total is None else total + jac
        gx = None if total is None else total.to(x.dtype)
        return (gx, None, None, *([None] * len(aux)))


# ------------------------------------------------------------------------------ k-subsets


class KSubsetMarginals(_Function):
    """``mu = P(t in S)`` under :math:`p(S) \\propto \\exp\\sum_{t\\in S} x_t`, ``|S| = k``.

    Forward and backward are O(nk) log-space dynamic programmes (categories last, compute dtype).
    The backward is the exact Hessian-vector product of :math:`\\log Z`; under
    ``create_graph=True`` it recomputes the tables from ``x`` with a twice-differentiable
    recursion, so second derivatives are exact too. Returns ``(mu, A, B)``; the tables are
    non-differentiable by-products (the sampler reuses ``A``).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:  # type: ignore[override]
        return _ksubset.marginals(x, k)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
        x, k = inputs
        mu, a, b = output
        ctx.k = k  # a Python int, not a tensor
        ctx.save_for_backward(x, mu, a, b)
        ctx.mark_non_differentiable(a, b)

    @staticmethod
    def backward(ctx: Any, grad_mu: Tensor, grad_a: Tensor | None, grad_b: Tensor | None) -> tuple[Tensor, None]:  # type: ignore[override]
        x, mu, a, b = ctx.saved_tensors
        k = ctx.k
        if torch.is_grad_enabled():
            # double backward: rebuild everything from x so that the graph reaches x
            mu, a, b = _ksubset.marginals(x, k, graph=True)
            return _ksubset.marginals_hvp(x, grad_mu, k, mu, a, b, graph=True), None
        return _ksubset.marginals_hvp(x, grad_mu, k, mu, a, b), None
