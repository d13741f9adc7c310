r"""DALL-E's discrete VAE at MNIST scale, and a VQ-VAE on the same encoder and decoder.

The encoder maps a 28 x 28 image to a 7 x 7 grid of logits over ``K`` codes (two stride-2
convolutions and residual blocks); the decoder starts with a 1 x 1 convolution from ``K`` channels,
which *is* the codebook (column ``k`` of its weight is code ``k``'s vector), then mirrors the
encoder with transposed convolutions. During training the one-hot code at each grid position is
replaced by an estimator's sample along the channel dimension (``dim=1``); evaluation and the
stage-2 prior use one-hot codes. The objective is the negative ELBO with a uniform prior over the
codes, the KL term weighted by :math:`\beta` during training:

.. math::
    \mathcal{L}_\beta(x) = \mathbb{E}_{z \sim q(z|x)}[-\log p(x|z)]
        + \beta \sum_{h,w} \mathrm{KL}\big(q(z_{hw}|x)\,\|\,\mathrm{Unif}(K)\big),
    \qquad \mathrm{KL}(q\,\|\,\mathrm{Unif}) = \sum_k q_k \log q_k + \log K .

The VQ-VAE baseline (``VQ``) swaps the encoder's last layer for one that emits a vector of the
codebook's dimension, picks the nearest code (its one-hot posterior has KL :math:`\log K` to the
uniform prior at every position), passes gradients straight through, and adds the codebook and
commitment losses :math:`\lVert \mathrm{sg}(z_e) - e\rVert^2 + \beta_c \lVert z_e - \mathrm{sg}(e)\rVert^2`.
Its codebook starts from k-means on encoder outputs (without it, codes collapse).

References:
    1. A. Ramesh et al., *Zero-Shot Text-to-Image Generation*, ICML 2021 (the dVAE).
    2. A. van den Oord, O. Vinyals, K. Kavukcuoglu, *Neural Discrete Representation Learning*,
       NeurIPS 2017 (VQ-VAE).
    3. E. Jang, S. Gu, B. Poole, ICLR 2017; C. J. Maddison, A. Mnih, Y. W. Teh, ICLR 2017.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gumbelkit.apps.dvae import likelihood as lik

__all__ = [
    "DVAE",
    "GRID",
    "Codes",
    "code_statistics",
    "kl_uniform",
    "kmeans",
]

#: The latent grid of a 28 x 28 image (two stride-2 stages).
GRID = 7


class _ResBlock(nn.Module):
    """``x + conv1x1(relu(conv3x3(relu(x))))`` with a bottleneck of half the width."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(), nn.Conv2d(width, width // 2, 3, padding=1), nn.ReLU(), nn.Conv2d(width // 2, width, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class Codes(NamedTuple):
    """One-hot codes and their indices: ``onehot`` ``(B, K, 7, 7)``, ``indices`` ``(B, 7, 7)``."""

    onehot: Tensor
    indices: Tensor


def kl_uniform(logits: Tensor) -> Tensor:
    r"""``(B, K, H, W)`` logits -> ``(B,)`` :math:`\sum_{h,w} \mathrm{KL}(q_{hw} \| \mathrm{Unif}(K))` in nats."""
    log_q = F.log_softmax(logits, dim=1)  # (B, K, H, W)
    K = logits.shape[1]
    return (log_q.exp() * log_q).sum(1).flatten(1).sum(1) + logits.shape[2] * logits.shape[3] * math.log(K)


class DVAE(nn.Module):
    """Convolutional discrete VAE: 28 x 28 image <-> 7 x 7 grid of codes from a codebook of ``K``.

    Args:
        codes: ``K``, the codebook size.
        width: channels of the hidden layers (and the dimension of each code vector).
        likelihood: ``"bernoulli"``, ``"logistic"`` or ``"logit_laplace"`` (see
            :mod:`gumbelkit.apps.dvae.likelihood`).
        vq: build the VQ-VAE variant (the encoder emits ``width``-dimensional vectors and the
            nearest code is chosen) instead of the categorical dVAE.
        res_blocks: residual blocks in the encoder and in the decoder.

    Example:
        >>> m = DVAE(codes=16, width=8)
        >>> m.encode(torch.zeros(2, 784)).shape
        torch.Size([2, 16, 7, 7])
        >>> m.decode(torch.zeros(2, 16, 7, 7)).shape
        torch.Size([2, 1, 28, 28])
    """

    def __init__(self, codes: int = 512, width: int = 64, likelihood: str = "bernoulli", *, vq: bool = False,
                 res_blocks: int = 2) -> None:
        super().__init__()
        if codes < 2:
            raise ValueError(f"codes (K) must be >= 2, got {codes}")
        if width < 2 or width % 2:
            raise ValueError(f"width must be an even number >= 2, got {width}")
        if res_blocks < 0:
            raise ValueError(f"res_blocks must be >= 0, got {res_blocks}")
        self.codes, self.width, self.likelihood, self.vq = codes, width, lik._check(likelihood), vq
        self.encoder = nn.Sequential(
            nn.Conv2d(1, width, 4, stride=2, padding=1),  # (B, W, 14, 14)
            nn.ReLU(),
            nn.Conv2d(width, width, 4, stride=2, padding=1),  # (B, W, 7, 7)
            *[_ResBlock(width) for _ in range(res_blocks)],
            nn.ReLU(),
            nn.Conv2d(width, width if vq else codes, 1),  # (B, K or W, 7, 7)
        )
        # the codebook: a one-hot code k picks column k of the weight (plus the bias)
        self.codebook = nn.Conv2d(codes, width, 1)
        self.decoder = nn.Sequential(
            *[_ResBlock(width) for _ in range(res_blocks)],
            nn.ReLU(),
            nn.ConvTranspose2d(width, width, 4, stride=2, padding=1),  # (B, W, 14, 14)
            nn.ReLU(),
            nn.ConvTranspose2d(width, lik.channels(likelihood), 4, stride=2, padding=1),  # (B, C_out, 28, 28)
        )

    # -- the categorical dVAE -------------------------------------------------------------------

    def encode(self, x: Tensor) -> Tensor:
        """``(B, 784)`` in ``[0, 1]`` -> ``(B, K, 7, 7)`` logits of :math:`q(z|x)` (``(B, W, 7, 7)``
        encoder vectors for the VQ-VAE)."""
        return self.encoder(x.view(-1, 1, 28, 28) * 2.0 - 1.0)  # centred input

    def decode(self, z: Tensor) -> Tensor:
        """``(B, K, 7, 7)`` codes (one-hot or relaxed) -> ``(B, C_out, 28, 28)`` likelihood parameters."""
        return self.decoder(self.codebook(z))

    def decode_vectors(self, e: Tensor) -> Tensor:
        """``(B, W, 7, 7)`` code vectors (without the codebook's bias) -> decoder output."""
        assert self.codebook.bias is not None
        return self.decoder(e + self.codebook.bias.view(1, -1, 1, 1))

    def nll(self, out: Tensor, x: Tensor) -> Tensor:
        """``(B,)`` :math:`-\\log p(x|z)` in nats for decoder output ``out`` and data ``x`` ``(B, 784)``."""
        return lik.neg_log_likelihood(self.likelihood, out, x)

    def mean_image(self, out: Tensor) -> Tensor:
        """``(B, 784)`` reconstruction in ``[0, 1]`` from a decoder output."""
        return lik.mean_image(self.likelihood, out)

    # -- codes ----------------------------------------------------------------------------------

    def code_vectors(self) -> Tensor:
        """``(K, W)`` the codebook's vectors (the 1 x 1 convolution's weight columns)."""
        return self.codebook.weight[:, :, 0, 0].T

    def quantize(self, e: Tensor) -> Tensor:
        """``(B, W, 7, 7)`` encoder vectors -> ``(B, 7, 7)`` indices of the nearest codes (VQ-VAE)."""
        flat = e.movedim(1, -1).reshape(-1, self.width)  # (B*49, W)
        book = self.code_vectors()  # (K, W)
        d = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ book.T + book.pow(2).sum(1))  # (B*49, K)
        return d.argmin(1).view(e.shape[0], e.shape[2], e.shape[3])

    def vq_forward(self, x: Tensor, commitment: float = 0.25) -> tuple[Tensor, Tensor, Tensor]:
        """VQ-VAE pass: ``(decoder output, (B,) codebook + commitment loss, (B, 7, 7) indices)``.

        The decoder sees the chosen code vectors with the encoder's gradient passed straight through.
        """
        z_e = self.encode(x)  # (B, W, 7, 7)
        idx = self.quantize(z_e.detach())  # (B, 7, 7)
        z_q = F.embedding(idx, self.code_vectors()).movedim(-1, 1)  # (B, W, 7, 7)
        codebook = (z_q - z_e.detach()).pow(2).flatten(1).sum(1)  # (B,) moves the codes
        commit = (z_e - z_q.detach()).pow(2).flatten(1).sum(1)  # (B,) keeps the encoder near them
        z_st = z_e + (z_q - z_e).detach()  # value z_q, gradient to z_e
        return self.decode_vectors(z_st), codebook + commitment * commit, idx

    @torch.no_grad()
    def argmax_codes(self, x: Tensor) -> Codes:
        """The deterministic codes of ``x``: the mode of :math:`q(z|x)` (nearest code for VQ)."""
        h = self.encode(x)
        idx = self.quantize(h) if self.vq else h.argmax(1)  # (B, 7, 7)
        return Codes(self.one_hot(idx), idx)

    def one_hot(self, idx: Tensor) -> Tensor:
        """``(B, 7, 7)`` indices -> ``(B, K, 7, 7)`` float one-hot codes."""
        return F.one_hot(idx, self.codes).movedim(-1, 1).to(self.codebook.weight.dtype)

    @torch.no_grad()
    def decode_indices(self, idx: Tensor) -> Tensor:
        """``(B, 7, 7)`` code indices -> ``(B, 784)`` reconstruction in ``[0, 1]``."""
        return self.mean_image(self.decode(self.one_hot(idx)))


def kmeans(points: Tensor, k: int, iters: int = 10, *, generator: torch.Generator | None = None) -> Tensor:
    """Lloyd's k-means: ``(N, D)`` points -> ``(k, D)`` centroids (k-means++ seeding).

    An empty cluster is re-seeded at the point farthest from its centroid, so every centroid
    ends on data.
    """
    n = points.shape[0]
    if n < k:
        raise ValueError(f"k-means needs at least k={k} points, got {n}")
    first = int(torch.randint(n, (1,), generator=generator))
    cent = [points[first]]
    d2 = (points - cent[0]).pow(2).sum(1)  # (N,)
    for _ in range(1, k):
        # k-means++: next centroid drawn with probability proportional to the squared distance
        probs = d2 / d2.sum() if float(d2.sum()) > 0 else torch.full_like(d2, 1.0 / n)
        j = int(torch.multinomial(probs, 1, generator=generator))
        cent.append(points[j])
        d2 = torch.minimum(d2, (points - points[j]).pow(2).sum(1))
    c = torch.stack(cent)  # (k, D)
    for _ in range(iters):
        dist = points.pow(2).sum(1, keepdim=True) - 2 * points @ c.T + c.pow(2).sum(1)  # (N, k)
        assign = dist.argmin(1)  # (N,)
        counts = torch.bincount(assign, minlength=k).to(points.dtype)  # (k,)
        sums = torch.zeros_like(c).index_add_(0, assign, points)  # (k, D)
        empty = counts == 0
        c = torch.where(empty.unsqueeze(1), c, sums / counts.clamp(min=1).unsqueeze(1))
        if bool(empty.any()):
            far = dist.gather(1, assign.unsqueeze(1)).squeeze(1).topk(int(empty.sum())).indices
            c[empty] = points[far]
    return c


def code_statistics(indices: Tensor, codes: int) -> dict[str, float]:
    """Codebook usage of ``indices`` (any shape, values in ``[0, K)``).

    Returns:
        ``perplexity`` (exp of the entropy of the code frequencies, between 1 and ``K``),
        ``codes_used`` and ``dead_codes`` (counts), ``percent_used``.
    """
    counts = torch.bincount(indices.reshape(-1), minlength=codes).double()
    p = counts / counts.sum()
    nz = p[p > 0]
    entropy = float(-(nz * nz.log()).sum())
    used = int((counts > 0).sum())
    return {"perplexity": math.exp(entropy), "codes_used": float(used), "dead_codes": float(codes - used),
            "percent_used": 100.0 * used / codes}
