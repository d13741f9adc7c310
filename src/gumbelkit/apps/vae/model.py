r"""Jang et al.'s categorical VAE: ``L`` categorical latents with ``C`` classes each.

Encoder 784-512-256-(L x C) and a mirrored decoder (L x C)-256-512-784, ReLU, Bernoulli
likelihood (binary cross-entropy with logits), a factorised categorical prior (uniform, or learned
as Jang et al.'s paper does) with the KL computed analytically from the encoder's probabilities:

.. math::
    \mathcal{L}(x) = \mathbb{E}_{z \sim q(z|x)}[\log p(x|z)]
        - \sum_{l=1}^{L} \mathrm{KL}\big(q(z_l|x)\,\|\,p(z_l)\big),\qquad
    \mathrm{KL}(q_l\|p_l) = \sum_c q_{lc} (\log q_{lc} - \log p_{lc})

with :math:`p_{lc} = 1/C` (``prior="uniform"``) or :math:`p_l = \mathrm{softmax}(\pi_l)` for a
learned ``(L, C)`` parameter :math:`\pi` initialised at zero, i.e. uniform (``prior="learned"``).

Training replaces the discrete ``z`` by an estimator's sample (relaxed or straight-through);
evaluation uses exact one-hot samples.

References:
    1. E. Jang, S. Gu, B. Poole, *Categorical Reparameterization with Gumbel-Softmax*, ICLR 2017.
    2. Y. Burda, R. Grosse, R. Salakhutdinov, *Importance Weighted Autoencoders*, ICLR 2016
       (the importance-weighted bound on :math:`\log p(x)`).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import gumbelkit
from gumbelkit import estimators

__all__ = ["PRIORS", "CategoricalVAE", "ELBOTerms", "estimator_names", "iw_nll", "neg_elbo_discrete", "sample_latent"]

#: the prior of each latent variable: uniform over its C classes, or a learned categorical
PRIORS = ("uniform", "learned")

def estimator_names() -> list[str]:
    """Estimators the VAE trains with: the registry's pathwise ones (through :func:`sample_latent`)
    and its score-function ones (given the decoder loss)."""
    return list(estimators.estimator_names())


def sample_latent(logits: Tensor, estimator: str, tau: float, *, generator: torch.Generator | None = None,
                  **options: Any) -> Tensor:
    """A differentiable stand-in for a categorical sample: the estimator's ``hard`` output.

    Args:
        logits: ``(B, L, C)`` encoder logits.
        estimator: a name from :func:`estimator_names` (``gs`` gives the relaxed sample, the
            others an exact one-hot whose backward is the estimator's).
        tau: temperature (> 0; ReinMax needs >= 1).
        generator: the random source.
        options: estimator options (e.g. ``k`` for ``gumbel_rao``).

    Returns:
        ``(B, L, C)`` sample.
    """
    return estimators.sample(logits, estimator, tau, -1, generator=generator, **options).output


class ELBOTerms(NamedTuple):
    """Per-example terms, each ``(B,)``: ``loss = recon + kl`` (nats)."""

    loss: Tensor
    recon: Tensor
    kl: Tensor


class CategoricalVAE(nn.Module):
    """Encoder 784-512-256-(L*C), decoder (L*C)-256-512-784, ReLU.

    Args:
        latent_vars: ``L``, the number of categorical variables.
        categories: ``C``, the classes of each.
        hidden: the two hidden widths of the encoder (mirrored in the decoder).
        prior: ``"uniform"`` or ``"learned"`` (a parameter ``prior_logits`` of shape ``(L, C)``,
            zero at the start, trained with the rest through the KL term).

    Example:
        >>> vae = CategoricalVAE(20, 10)
        >>> vae.encode(torch.zeros(3, 784)).shape
        torch.Size([3, 20, 10])
    """

    def __init__(self, latent_vars: int = 20, categories: int = 10, hidden: tuple[int, int] = (512, 256),
                 data_dim: int = 784, prior: str = "uniform") -> None:
        super().__init__()
        if prior not in PRIORS:
            raise ValueError(f"prior must be one of {', '.join(PRIORS)}; got {prior!r}")
        if latent_vars < 1:
            raise ValueError(f"latent_vars (L) must be >= 1, got {latent_vars}")
        if categories < 2:
            raise ValueError(f"categories (C) must be >= 2, got {categories}")
        self.latent_vars, self.categories = latent_vars, categories
        h1, h2 = hidden
        k = latent_vars * categories
        self.encoder = nn.Sequential(nn.Linear(data_dim, h1), nn.ReLU(), nn.Linear(h1, h2), nn.ReLU(), nn.Linear(h2, k))
        self.decoder = nn.Sequential(nn.Linear(k, h2), nn.ReLU(), nn.Linear(h2, h1), nn.ReLU(), nn.Linear(h1, data_dim))
        self.prior = prior
        self.prior_logits = nn.Parameter(torch.zeros(latent_vars, categories)) if prior == "learned" else None

    def encode(self, x: Tensor) -> Tensor:
        """``(B, 784)`` -> ``(B, L, C)`` logits of :math:`q(z|x)`."""
        return self.encoder(x).view(-1, self.latent_vars, self.categories)

    def decode(self, z: Tensor) -> Tensor:
        """``(B, L, C)`` latents -> ``(B, 784)`` Bernoulli logits of :math:`p(x|z)`."""
        return self.decoder(z.flatten(-2))

    def kl_uniform(self, logits: Tensor) -> Tensor:
        """``(B, L, C)`` -> ``(B,)`` analytic :math:`\\sum_l \\mathrm{KL}(q_l \\| \\mathrm{Unif}(C))`."""
        log_q = F.log_softmax(logits, dim=-1)  # (B, L, C)
        return (log_q.exp() * log_q).sum((-2, -1)) + self.latent_vars * math.log(self.categories)

    def log_prior(self) -> Tensor | None:
        """``(L, C)`` log-probabilities of the learned prior; ``None`` for the uniform one."""
        return None if self.prior_logits is None else F.log_softmax(self.prior_logits, dim=-1)

    def kl(self, logits: Tensor) -> Tensor:
        """``(B, L, C)`` -> ``(B,)`` analytic :math:`\\sum_l \\mathrm{KL}(q_l \\| p_l)` to the model's prior."""
        log_p = self.log_prior()
        if log_p is None:
            return self.kl_uniform(logits)
        log_q = F.log_softmax(logits, dim=-1)  # (B, L, C)
        return (log_q.exp() * (log_q - log_p)).sum((-2, -1))

    def sample_prior(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """``(n, L)`` class indices drawn from the prior."""
        device = next(self.parameters()).device
        log_p = self.log_prior()
        if log_p is None:
            return torch.randint(0, self.categories, (n, self.latent_vars), generator=generator, device=device)
        probs = log_p.exp().expand(n, -1, -1).reshape(n * self.latent_vars, -1)
        return torch.multinomial(probs, 1, generator=generator).view(n, self.latent_vars)

    def terms(self, x: Tensor, z: Tensor, logits: Tensor) -> ELBOTerms:
        """Negative-ELBO terms for data ``x`` ``(B, 784)`` and latents ``z`` ``(B, L, C)``."""
        recon = F.binary_cross_entropy_with_logits(self.decode(z), x, reduction="none").sum(-1)  # (B,)
        kl = self.kl(logits)  # (B,)
        return ELBOTerms(recon + kl, recon, kl)


@torch.no_grad()
def neg_elbo_discrete(model: CategoricalVAE, x: Tensor, *, generator: torch.Generator | None = None) -> ELBOTerms:
    """Per-example -ELBO with one exact one-hot sample :math:`z \\sim q(z|x)` per example."""
    logits = model.encode(x)  # (B, L, C)
    z = gumbelkit.gumbel_softmax_sample(logits, 1.0, generator=generator).hard  # exact one-hot
    return model.terms(x, z, logits)


@torch.no_grad()
def iw_nll(model: CategoricalVAE, x: Tensor, m: int, *, generator: torch.Generator | None = None,
           chunk: int = 20_000) -> Tensor:
    r"""Per-example importance-weighted bound on :math:`-\log p(x)` with ``m`` samples.

    .. math::
        -\log p(x) \le -\log \frac{1}{m} \sum_{k=1}^{m}
            \frac{p(x|z_k)\, p(z_k)}{q(z_k|x)}, \qquad z_k \sim q(z|x),

    with the model's prior :math:`p(z)` (:math:`C^{-L}` when uniform). ``m = 1`` gives the -ELBO with a discrete sample; the bound
    tightens as ``m`` grows (Burda et al., 2016).

    Args:
        model: the VAE.
        x: ``(B, 784)`` binary data.
        m: importance samples per example (>= 1).
        generator: the random source.
        chunk: decoder rows per pass (bounds memory).

    Returns:
        ``(B,)`` bounds in nats.
    """
    if m < 1:
        raise ValueError(f"m must be >= 1, got {m}")
    log_q_all = F.log_softmax(model.encode(x), dim=-1)  # (B, L, C)
    B, L, C = log_q_all.shape
    log_p = model.log_prior()  # (L, C) or None (uniform)
    per = max(1, chunk // B)  # samples per decoder pass
    log_w = []
    for start in range(0, m, per):
        k = min(per, m - start)
        lq = log_q_all.unsqueeze(0).expand(k, B, L, C)  # (k, B, L, C)
        idx = gumbelkit.gumbel_max(lq, generator=generator)  # (k, B, L)
        z = F.one_hot(idx, C).to(x.dtype)  # (k, B, L, C)
        log_q = lq.gather(-1, idx.unsqueeze(-1)).squeeze(-1).sum(-1)  # (k, B)
        x_logits = model.decode(z.reshape(k * B, L, C)).view(k, B, -1)  # (k, B, 784)
        log_px = -F.binary_cross_entropy_with_logits(x_logits, x.expand(k, B, -1), reduction="none").sum(-1)
        if log_p is None:
            log_pz = torch.full_like(log_q, -L * math.log(C))
        else:
            log_pz = log_p.expand(k, B, L, C).gather(-1, idx.unsqueeze(-1)).squeeze(-1).sum(-1)  # (k, B)
        log_w.append(log_px + log_pz - log_q)  # (k, B)
    lw = torch.cat(log_w)  # (m, B)
    return -(torch.logsumexp(lw, dim=0) - math.log(m))
