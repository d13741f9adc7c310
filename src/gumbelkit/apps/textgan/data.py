r"""SeqGAN's synthetic oracle: the fixed LSTM, its exact scorer, and the oracle data sets.

The oracle (Yu et al. 2017) is a random LSTM (vocabulary 5000, embedding and hidden 32) whose
parameters ship as a ``.npz`` file (keys ``embedding``, ``W_*``, ``U_*``, ``b_*`` for the gates
``i, f, o, c``, ``W_out``, ``b_out``). With row vectors, one step from the previous token's
embedding ``x``:

.. math::
    i &= \sigma(x W_i + h U_i + b_i), \quad f = \sigma(x W_f + h U_f + b_f), \quad
    o = \sigma(x W_o + h U_o + b_o) \\
    c &\leftarrow f \odot c + i \odot \tanh(x W_c + h U_c + b_c), \quad h = o \odot \tanh(c),
    \quad \ell = h W_{out} + b_{out}

from ``h = c = 0`` and ``x = embedding[0]`` (the start token, not part of the sequence).
Its per-token negative log-likelihood is the benchmark's quality metric:

.. math::
    \mathrm{NLL}_{oracle}(S) = \frac{1}{|S|} \sum_{s \in S} \frac{1}{T} \sum_{t=1}^{T}
    -\log p_{oracle}(s_t \mid s_{<t})

Sequences sampled from the oracle itself score about 5.75 nats (published "Real": 5.750);
uniform tokens score about 11.44; SeqGAN's random generator 10.310.

References:
    1. L. Yu, W. Zhang, J. Wang, Y. Yu, *SeqGAN: Sequence Generative Adversarial Nets with
       Policy Gradient*, AAAI 2017 (the oracle, the protocol, Table 1).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from gumbelkit.functional import gumbel_max

__all__ = [
    "DEFAULT_ORACLE",
    "ORACLE_KEYS",
    "Oracle",
    "OracleData",
    "find_oracle",
    "load_oracle",
    "oracle_data",
]

#: Where the repository's tests and results look for the oracle, relative to the repository root.
DEFAULT_ORACLE = Path("..") / "shared" / "data" / "seqgan_oracle_lstm32.npz"
GATES = ("i", "f", "o", "c")
ORACLE_KEYS = ("embedding", *(f"{m}_{g}" for g in GATES for m in ("W", "U", "b")), "W_out", "b_out")
START_TOKEN = 0


def find_oracle(path: str | Path | None = None) -> Path:
    """The oracle file: ``path`` if given, else ``seqgan_oracle_lstm32.npz`` in the directory named by
    the environment variable ``GUMBELKIT_SHARED_DATA``, else ``../shared/data/`` relative to the
    working directory (a checkout's root).

    Raises:
        FileNotFoundError: naming the path and the ``--oracle`` option.
    """
    shared = os.environ.get("GUMBELKIT_SHARED_DATA")
    p = Path(path) if path else (Path(shared) / DEFAULT_ORACLE.name if shared else DEFAULT_ORACLE)
    if not p.is_file():
        raise FileNotFoundError(
            f"SeqGAN oracle file not found at {p}; pass its path with --oracle PATH "
            "(the seqgan_oracle_lstm32.npz parameter file)"
        )
    return p


class Oracle(nn.Module):
    """The SeqGAN oracle LSTM with fixed parameters (no gradients), computed in ``dtype``.

    Args:
        params: the arrays of the ``.npz`` file (:data:`ORACLE_KEYS`).
        dtype: float64 by default, so scores are exact to far below the reported digits.

    Example:
        >>> oracle = load_oracle("seqgan_oracle_lstm32.npz")  # doctest: +SKIP
        >>> oracle.nll(oracle.sample(1000, generator=torch.Generator().manual_seed(0))).mean()  # doctest: +SKIP
        tensor(5.75..., dtype=torch.float64)
    """

    embedding: Tensor
    W: Tensor
    U: Tensor
    b: Tensor
    W_out: Tensor
    b_out: Tensor

    def __init__(self, params: dict[str, np.ndarray], dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        missing = [k for k in ORACLE_KEYS if k not in params]
        if missing:
            raise ValueError(f"oracle parameters are missing {missing}; expected keys {list(ORACLE_KEYS)}")

        def t(a: np.ndarray) -> Tensor:
            return torch.as_tensor(np.asarray(a), dtype=dtype)

        emb = t(params["embedding"])
        self.vocab_size, self.emb_dim = emb.shape
        self.hidden = int(params["U_i"].shape[0])
        self.register_buffer("embedding", emb)  # (V, E)
        # Fused gates in the order i, f, o, c: x @ W (E, 4H) + h @ U (H, 4H) + b (4H,)
        self.register_buffer("W", torch.cat([t(params[f"W_{g}"]) for g in GATES], 1))
        self.register_buffer("U", torch.cat([t(params[f"U_{g}"]) for g in GATES], 1))
        self.register_buffer("b", torch.cat([t(params[f"b_{g}"]) for g in GATES], 0))
        self.register_buffer("W_out", t(params["W_out"]))  # (H, V)
        self.register_buffer("b_out", t(params["b_out"]))  # (V,)

    def _step(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        H = self.hidden
        z = x @ self.W + h @ self.U + self.b  # (B, 4H)
        i, f, o = torch.sigmoid(z[:, :H]), torch.sigmoid(z[:, H : 2 * H]), torch.sigmoid(z[:, 2 * H : 3 * H])
        c = f * c + i * torch.tanh(z[:, 3 * H :])
        h = o * torch.tanh(c)
        return h @ self.W_out + self.b_out, h, c  # logits (B, V)

    @torch.no_grad()
    def log_probs(self, tokens: Tensor) -> Tensor:
        """``log p(s_t | s_<t)`` of each token: ``tokens (N, T)`` -> ``(N, T)``."""
        n, steps = tokens.shape
        h = c = self.embedding.new_zeros(n, self.hidden)
        x = self.embedding[START_TOKEN].expand(n, -1)
        out = []
        for s in range(steps):
            logits, h, c = self._step(x, h, c)
            out.append(torch.log_softmax(logits, -1).gather(1, tokens[:, s : s + 1]))  # (N, 1)
            x = self.embedding[tokens[:, s]]
        return torch.cat(out, 1)

    @torch.no_grad()
    def nll(self, tokens: Tensor | np.ndarray, chunk: int = 1000) -> Tensor:
        """Per-sequence mean negative log-likelihood (nats per token), ``(N, T)`` -> ``(N,)``.

        ``nll(S).mean()`` is :math:`\\mathrm{NLL}_{oracle}(S)`.
        """
        tokens = self._check_tokens(tokens)
        parts = [-self.log_probs(tokens[s : s + chunk]).mean(1) for s in range(0, len(tokens), chunk)]
        return torch.cat(parts)

    def _check_tokens(self, tokens: Tensor | np.ndarray) -> Tensor:
        t = torch.as_tensor(np.asarray(tokens) if not isinstance(tokens, Tensor) else tokens)
        if t.dim() != 2 or t.dtype.is_floating_point or t.dtype == torch.bool:
            raise ValueError(f"tokens must be an integer array of shape (N, T), got {tuple(t.shape)} {t.dtype}")
        if len(t) and (int(t.min()) < 0 or int(t.max()) >= self.vocab_size):
            raise ValueError(f"tokens must lie in [0, {self.vocab_size}), got [{int(t.min())}, {int(t.max())}]")
        return t.long().to(self.embedding.device)

    @torch.no_grad()
    def sample(self, n: int, length: int = 20, *, generator: torch.Generator | None = None,
               chunk: int = 1000) -> Tensor:
        """``n`` exact samples of length ``length`` (Gumbel-Max at every step), ``(n, length)`` int64.

        Drawn ``chunk`` rows at a time (the logits of 10,000 rows in float64 would take 400 MB).
        """
        parts = [self._sample(min(chunk, n - s), length, generator) for s in range(0, n, chunk)]
        return torch.cat(parts) if parts else torch.zeros(0, length, dtype=torch.long)

    def _sample(self, n: int, length: int, generator: torch.Generator | None) -> Tensor:
        h = c = self.embedding.new_zeros(n, self.hidden)
        x = self.embedding[START_TOKEN].expand(n, -1)
        out = []
        for _ in range(length):
            logits, h, c = self._step(x, h, c)
            tok = gumbel_max(logits, -1, generator=generator)  # (n,)
            out.append(tok)
            x = self.embedding[tok]
        return torch.stack(out, 1)


def load_oracle(path: str | Path | None = None, dtype: torch.dtype = torch.float64) -> Oracle:
    """Load the oracle LSTM from its ``.npz`` file (see :func:`find_oracle` for the default path)."""
    with np.load(find_oracle(path), allow_pickle=False) as z:
        return Oracle({k: z[k] for k in z.files}, dtype=dtype)


@dataclass(frozen=True)
class OracleData:
    """The benchmark's data: ``train`` and a disjoint ``heldout`` set, each ``(N, T)`` int64."""

    train: Tensor
    heldout: Tensor
    train_seed: int
    heldout_seed: int


def oracle_data(oracle: Oracle, n_train: int = 10_000, n_heldout: int = 10_000, length: int = 20,
                train_seed: int = 88, heldout_seed: int = 89) -> OracleData:
    """Sample the training set and a held-out set from the oracle with fixed seeds.

    A held-out sequence equal to a training sequence is dropped and replaced by a fresh draw
    from the same stream, so the two sets are disjoint (at T = 20 such collisions are rare).
    The defaults take 10,000 + 10,000 sequences (SeqGAN's seed is 88).
    """
    g = torch.Generator().manual_seed(train_seed)
    train = oracle.sample(n_train, length, generator=g).cpu()
    seen = {tuple(r) for r in train.tolist()}
    g = torch.Generator().manual_seed(heldout_seed)
    kept: list[Tensor] = []
    have = 0
    while have < n_heldout:
        batch = oracle.sample(n_heldout - have, length, generator=g).cpu()
        fresh = torch.tensor([tuple(r) not in seen for r in batch.tolist()], dtype=torch.bool)
        for r in batch[fresh].tolist():
            seen.add(tuple(r))
        kept.append(batch[fresh])
        have += int(fresh.sum())
    return OracleData(train, torch.cat(kept)[:n_heldout], train_seed, heldout_seed)
