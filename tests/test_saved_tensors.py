"""Memory discipline of the custom autograd Functions: every tensor kept for backward goes
through ``save_for_backward`` (so ``saved_tensors_hooks`` such as ``save_on_cpu`` see it and the
version counter guards it), and what is kept is O(1) times the logits, Gumbel-Rao with
k = 100 included."""

from __future__ import annotations

import pytest
import torch

import gumbelkit as gk
from gumbelkit import distributions as Dist
from gumbelkit import estimators as E

SHAPE = (64, 50)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class _Offload:
    """Pack hook that moves every saved tensor into its own storage (as ``save_on_cpu``
    does) and records its size; the original is no longer referenced by the graph."""

    def __init__(self) -> None:
        self.bytes = 0
        self.count = 0

    def pack(self, t: torch.Tensor):
        self.bytes += t.numel() * t.element_size()
        self.count += 1
        return t.detach().clone()

    def unpack(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def hooks(self):
        return torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack)


def _calls():
    out = {
        "soft": lambda x: gk.gumbel_softmax(x, 0.5, generator=_gen(1)),
        "hard": lambda x: gk.gumbel_softmax(x, 0.5, hard=True, generator=_gen(1)),
        "sample": lambda x: gk.gumbel_softmax_sample(x, 0.5, generator=_gen(1)).hard,
        "rsample": lambda x: Dist.RelaxedOneHotCategoricalStraightThrough(0.5, logits=x).rsample(generator=_gen(1)),
    }
    for n in E.estimator_names("pathwise"):
        tau = 1.2 if n == "reinmax" else 0.5
        out["est." + n] = lambda x, n=n, tau=tau: E.sample(x, n, tau, generator=_gen(1)).output
    return out


CALLS = _calls()


def _ctx_tensors(root) -> list[str]:
    """Tensors kept as plain attributes on the custom Functions' ctx objects of the graph."""
    found, seen, todo = [], set(), [root]
    while todo:
        node = todo.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        for key, value in getattr(node, "__dict__", {}).items():
            values = value if isinstance(value, (tuple, list)) else (value,)
            if any(isinstance(v, torch.Tensor) for v in values):
                found.append(f"{type(node).__name__}.{key}")
        todo.extend(n for n, _ in node.next_functions)
    return found


@pytest.mark.parametrize("name", list(CALLS))
def test_every_saved_tensor_goes_through_the_hooks(name, kernel_path):
    # no tensor lives on a ctx as a plain attribute (the fused hard path kept its soft buffer
    # there, and a tensor tau was one too): everything goes through save_for_backward, so an
    # offloading hook sees it, and the backward that reads only the hook's copies gives the
    # gradient of a run without hooks
    x = torch.randn(SHAPE, generator=_gen(0)).requires_grad_(True)
    f = CALLS[name]
    hook = _Offload()
    with hook.hooks():
        y = f(x)
    assert _ctx_tensors(y.grad_fn) == []
    assert hook.count > 0
    cot = torch.randn(SHAPE, generator=_gen(2))
    (g_hooked,) = torch.autograd.grad(y, x, cot)
    (g_plain,) = torch.autograd.grad(f(x), x, cot)
    torch.testing.assert_close(g_hooked, g_plain)


def test_tensor_tau_is_not_a_ctx_attribute():
    x = torch.randn(SHAPE, generator=_gen(0)).requires_grad_(True)
    y = gk.gumbel_softmax(x, torch.full((SHAPE[0], 1), 0.5), generator=_gen(1))
    assert "SoftSample" in type(y.grad_fn).__name__ and _ctx_tensors(y.grad_fn) == []


def test_fused_hard_path_keeps_no_hidden_buffer():
    # the fused straight-through Function's soft sample is a saved tensor: a hook that drops
    # what it packs (returns a meta tensor) leaves no CPU buffer of the input's size but the
    # one-hot, which the hook's count of packed bytes accounts for
    x = torch.randn(SHAPE, generator=_gen(0)).requires_grad_(True)
    packed = []

    def pack(t):
        packed.append(t.numel())
        return t.to("meta")

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = gk.gumbel_softmax(x, 0.5, hard=True, generator=_gen(1))
    assert "HardSample" in type(y.grad_fn).__name__
    assert packed.count(x.numel()) == 2  # the logits and the soft sample y, nothing else
    assert _ctx_tensors(y.grad_fn) == []


@pytest.mark.parametrize("k", [10, 100])
def test_gumbel_rao_saves_o1_times_the_logits(k):
    # it used to save (2k + 1) x the logits (21x at k = 10, 201x at k = 100); now the logits, the
    # first perturbation, the indices and a seed or nothing: at most 3 x the logits' bytes
    x = torch.randn(SHAPE, generator=_gen(0)).requires_grad_(True)
    hook = _Offload()
    with hook.hooks():
        s = E.sample(x, "gumbel_rao", 0.5, generator=_gen(1), k=k)
    ratio = hook.bytes / (x.numel() * x.element_size())
    assert ratio <= 3.0, ratio
    (s.output * torch.randn(SHAPE, generator=_gen(2))).sum().backward()


@pytest.mark.parametrize("name", [n for n in CALLS if n.startswith("est.")] + ["soft", "hard"])
def test_saved_bytes_are_o1_times_the_logits(name):
    x = torch.randn(SHAPE, generator=_gen(0)).requires_grad_(True)
    hook = _Offload()
    with hook.hooks():
        CALLS[name](x)
    assert hook.bytes <= 3.0 * x.numel() * x.element_size()


@pytest.mark.parametrize("hard", [False, True])
def test_tensor_tau_changed_in_place_before_backward_raises(hard, kernel_path):
    # tau is saved through save_for_backward, so torch's version counter sees an in-place
    # change (it used to be a ctx attribute: the gradient was silently scaled)
    x = torch.randn(SHAPE, generator=_gen(0)).requires_grad_(True)
    tau = torch.full((SHAPE[0], 1), 0.5)
    y = gk.gumbel_softmax(x, tau, hard=hard, generator=_gen(1))
    tau.mul_(2.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()
