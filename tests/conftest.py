"""Shared fixtures for the gumbelkit test suite: seeded generators, goodness-of-fit helpers,
and a hypothesis profile that is deterministic and has no per-example deadline."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch
from hypothesis import settings
from scipy import stats as sps

from gumbelkit import get_validate_args, set_validate_args

# Deterministic property-based tests: the same examples on every run and every machine, and no
# deadline (CI machines are shared and slow; a timing flake is not a numerics failure).
settings.register_profile(
    "gumbelkit", deadline=None, derandomize=True, database=None, print_blob=True
)
settings.load_profile("gumbelkit")


@pytest.fixture(autouse=True)
def _restore_validation() -> Iterator[None]:
    """Every test starts with data checks on, and a test that turns them off cannot leak."""
    old = get_validate_args()
    set_validate_args(True)
    yield
    set_validate_args(old)


@pytest.fixture
def gen() -> Callable[[int], torch.Generator]:
    """Factory of seeded CPU generators: ``gen(seed)``."""

    def make(seed: int) -> torch.Generator:
        return torch.Generator().manual_seed(seed)

    return make


@pytest.fixture(params=["numpy", "torch-ops"])
def kernel_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test on the numpy block path, and again on the torch-op path.

    On CPU in eager mode the samplers use numpy block kernels (PCG64 noise, numpy softmax,
    argmax, top-k and backward). CUDA, ``torch.compile`` and ``torch.func`` take the torch-op
    path instead (``torch.rand`` noise, torch softmax / argmax / top-k, the torch-op backward),
    which CPU-only CI would otherwise never run. The second parameter forces that whole path on
    CPU by making :func:`gumbelkit._kernels.numpy_path` answer False everywhere.
    """
    if request.param == "torch-ops":
        from gumbelkit import _kernels

        monkeypatch.setattr(_kernels, "numpy_path", lambda t: False)
    return str(request.param)


class Stats:
    """Goodness-of-fit checks used by the statistical tests (each asserts ``p > alpha``)."""

    @staticmethod
    def chisquare(counts: object, probs: object, alpha: float, what: str = "") -> float:
        """Pearson chi-square of observed ``counts`` against ``probs``.

        Categories with probability exactly 0 must have count exactly 0 and are then left out.
        Every remaining expected count must be >= 5 so the chi-square approximation holds.
        Returns the p-value; fails the test when ``p <= alpha`` (the false-failure rate).
        """
        c = np.asarray(counts, dtype=np.float64).ravel()
        p = np.asarray(probs, dtype=np.float64).ravel()
        assert c.shape == p.shape, (c.shape, p.shape)
        impossible = p == 0
        assert c[impossible].sum() == 0, (
            f"{what}: impossible categories were drawn: {c[impossible]}"
        )
        c, p = c[~impossible], p[~impossible]
        expected = c.sum() * p / p.sum()
        assert expected.min() >= 5, f"{what}: expected count {expected.min():.2f} < 5, draw more"
        pval = float(sps.chisquare(c, expected).pvalue)
        assert pval > alpha, f"{what}: chi-square p = {pval:.3g} <= alpha = {alpha:g}"
        return pval

    @staticmethod
    def chisquare_pvalue(counts: object, probs: object) -> float:
        """The p-value alone (for power checks that expect a rejection)."""
        c = np.asarray(counts, dtype=np.float64).ravel()
        p = np.asarray(probs, dtype=np.float64).ravel()
        keep = p > 0
        return float(sps.chisquare(c[keep], c[keep].sum() * p[keep] / p[keep].sum()).pvalue)

    @staticmethod
    def binom_two_sided(k: int, n: int, p: float, alpha: float, what: str = "") -> float:
        """Exact two-sided binomial test of ``k`` successes in ``n`` trials."""
        pval = float(sps.binomtest(int(k), int(n), p).pvalue)
        assert pval > alpha, (
            f"{what}: binomial p = {pval:.3g} <= alpha = {alpha:g} (k={k}, n={n}, p={p:g})"
        )
        return pval

    @staticmethod
    def z_bound(alpha: float) -> float:
        """Two-sided normal critical value: ``|z| > z_bound(alpha)`` has probability ``alpha``."""
        return float(sps.norm.isf(alpha / 2))

    @staticmethod
    def entropy(p: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """Shannon entropy (nats) with ``0 log 0 = 0``."""
        logp = torch.where(p > 0, p.log(), torch.zeros_like(p))
        return -(p * logp).sum(dim)


@pytest.fixture
def stats() -> type[Stats]:
    return Stats


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test: on a shared 2-core machine idle OpenMP workers spin and
    cost about 10x CPU in the training tests."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
