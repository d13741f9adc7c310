r"""Gradient diagnostics inside a categorical VAE: each estimator against the true encoder gradient.

For an image :math:`x` with encoder logits :math:`\ell` (``(L, C)``) the reconstruction term
:math:`R(\ell) = \mathbb E_{z \sim q_\ell}[-\log p(x|z)]` has a true gradient with respect to
:math:`\ell` (the KL term is analytic and the same for every estimator, so it is left out). It is
computed

* exactly, by enumerating the :math:`C^L` latent configurations, when there are at most
  ``MAX_ENUMERATION`` of them (the 8 x 4 VAE of Liu et al.: 4096); the decoder is run once per
  configuration and shared by the images;
* otherwise by IndeCateR (unbiased) averaged over ``n_reference`` samples, whose standard error
  is reported as ``reference_floor``.

Each estimator is then drawn ``n_draws`` times per image at the given temperature and compared
with it: relative bias of the mean, cosine of the mean and of single draws, variance.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from gumbelkit import estimators
from gumbelkit.apps.vae.model import CategoricalVAE

__all__ = ["MAX_ENUMERATION", "encoder_gradient_stats", "exact_recon_gradient", "recon_per_example", "reference_gradient"]

#: enumerate the latent configurations up to this many (C^L)
MAX_ENUMERATION = 2**16


def recon_per_example(model: CategoricalVAE, x: Tensor, z: Tensor) -> Tensor:
    """``-log p(x|z)``: ``x`` ``(B, 784)``, ``z`` ``(n, B, L, C)`` -> ``(n, B)`` nats."""
    n, b = z.shape[:2]
    x_logits = model.decode(z.reshape(n * b, *z.shape[2:])).view(n, b, -1)  # (n, B, 784)
    return F.binary_cross_entropy_with_logits(x_logits, x.expand(n, b, -1), reduction="none").sum(-1)


def exact_recon_gradient(model: CategoricalVAE, x: Tensor, logits: Tensor) -> tuple[Tensor, Tensor]:
    """Exact ``R`` ``(B,)`` and ``dR/dlogits`` ``(B, L, C)`` by enumerating the ``C^L`` configurations."""
    _, latent, cats = logits.shape
    total = cats**latent
    if total > MAX_ENUMERATION:
        raise ValueError(f"{cats}^{latent} = {total} latent configurations exceed {MAX_ENUMERATION}; use the "
                         "IndeCateR reference")
    powers = cats ** torch.arange(latent - 1, -1, -1, device=x.device)
    idx = (torch.arange(total, device=x.device)[:, None] // powers) % cats  # (T, L)
    with torch.no_grad():
        x_logits = model.decode(F.one_hot(idx, cats).to(x.dtype))  # (T, 784), shared by the images
        # BCE with logits summed over pixels: sum softplus(l) - x . l
        recon = F.softplus(x_logits).sum(-1)[None, :] - x @ x_logits.T  # (B, T)
    theta = logits.detach().clone().requires_grad_(True)
    logq = torch.log_softmax(theta, -1)  # (B, L, C)
    lq = logq[:, torch.arange(latent, device=x.device)[:, None], idx.T].sum(1)  # (B, T)
    value = (lq.exp() * recon).sum(-1)  # (B,)
    (grad,) = torch.autograd.grad(value.sum(), theta)
    return value.detach(), grad


def _draws(model: CategoricalVAE, x: Tensor, logits: Tensor, estimator: str, tau: float, n: int,
           generator: torch.Generator, options: dict[str, Any]) -> Tensor:
    """``n`` independent estimates of ``dR/dlogits`` per image: ``(n, B, L, C)``."""
    theta = logits.detach().unsqueeze(0).expand(n, *logits.shape).clone().requires_grad_(True)
    spec = estimators.spec(estimator)
    if spec.kind == "score":
        flat = theta.reshape(n * x.shape[0], *logits.shape[1:])  # (n B, L, C): one estimate each
        xs = x.repeat(n, 1)  # (n B, 784)
        out = spec.fn(flat, lambda h: recon_per_example(model, xs, h), generator=generator, **options)
        loss = out.loss.sum()
    else:
        s = estimators.sample(theta, estimator, tau, -1, generator=generator, **options)
        loss = recon_per_example(model, x, s.output).sum()
    (g,) = torch.autograd.grad(loss, theta)
    return g


@torch.enable_grad()  # callable from evaluation code that runs under no_grad
def reference_gradient(model: CategoricalVAE, x: Tensor, *, n_reference: int = 64,
                       generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """The true ``dR/dlogits`` ``(B, L, C)`` (exact, or IndeCateR's mean) and its relative standard error ``(B,)``."""
    gen = generator if generator is not None else torch.Generator(device=x.device).manual_seed(0)
    with torch.no_grad():
        logits = model.encode(x)  # (B, L, C)
    _, latent, cats = logits.shape
    if cats**latent <= MAX_ENUMERATION:
        _, true = exact_recon_gradient(model, x, logits)
        return true, torch.zeros(x.shape[0], dtype=true.dtype, device=true.device)
    ref = _draws(model, x, logits, "indecater", 1.0, n_reference, gen, {})
    true = ref.mean(0)
    floor = (ref.var(0).sum((-2, -1)) / n_reference).sqrt() / true.norm(dim=(-2, -1)).clamp_min(1e-30)
    return true, floor


@torch.enable_grad()  # callable from evaluation code that runs under no_grad
def encoder_gradient_stats(model: CategoricalVAE, x: Tensor, estimator: str, tau: float, *, n_draws: int = 64,
                           n_reference: int = 64, generator: torch.Generator | None = None,
                           options: dict[str, Any] | None = None,
                           reference: tuple[Tensor, Tensor] | None = None) -> dict[str, float]:
    """Bias, cosine and variance of ``estimator``'s encoder-logit gradient of the reconstruction term.

    Args:
        model: the VAE (not modified; no parameter gradients are touched).
        x: ``(B, 784)`` images (a small fixed set, e.g. 20 validation images).
        estimator: a registered estimator name.
        tau: its temperature.
        n_draws: estimates per image.
        n_reference: IndeCateR samples per image for the reference when enumeration is too big.
        generator: random source.
        options: estimator options.
        reference: a precomputed ``(true_gradient (B, L, C), relative_floor (B,))`` from
            :func:`reference_gradient` for the same model and images (reused across estimators).

    Returns:
        ``grad_rel_bias`` (|mean - true| / |true|, averaged over images), ``grad_cos`` (cosine of
        the mean estimate with the true gradient), ``grad_cos_single`` (of single draws),
        ``grad_rel_var`` (trace of the covariance / |true|^2), ``grad_rel_bias2_unbiased``
        (squared relative bias with the Monte Carlo part removed: near 0, possibly negative,
        for an unbiased estimator), ``grad_true_norm``,
        ``reference_exact`` (1 if enumerated) and ``reference_floor`` (the reference's relative
        standard error; 0 when exact).
    """
    gen = generator if generator is not None else torch.Generator(device=x.device).manual_seed(0)
    opts = dict(options or {})
    with torch.no_grad():
        logits = model.encode(x)  # (B, L, C)
    _, latent, cats = logits.shape
    exact = 1.0 if cats**latent <= MAX_ENUMERATION else 0.0
    true, floor = reference if reference is not None else reference_gradient(model, x, n_reference=n_reference,
                                                                             generator=gen)
    g = _draws(model, x, logits, estimator, tau, n_draws, gen, opts)  # (n, B, L, C)
    mean = g.mean(0)
    tn = true.norm(dim=(-2, -1)).clamp_min(1e-30)  # (B,)
    rel_bias = (mean - true).norm(dim=(-2, -1)) / tn
    cos = (mean * true).sum((-2, -1)) / (mean.norm(dim=(-2, -1)) * tn).clamp_min(1e-30)
    cos1 = (g * true).sum((-2, -1)) / (g.norm(dim=(-2, -1)) * tn).clamp_min(1e-30)  # (n, B)
    rel_var = g.var(0).sum((-2, -1)) / tn**2
    # E|mean - ref|^2 = |bias|^2 + tr(Cov) / n + (the reference's own squared error, floor^2 |true|^2
    # for the IndeCateR reference, 0 when exact): an unbiased estimate of the squared relative bias
    rel_bias2 = ((mean - true).norm(dim=(-2, -1)) ** 2 - g.var(0).sum((-2, -1)) / n_draws) / tn**2 - floor**2
    return {
        "grad_rel_bias2_unbiased": float(rel_bias2.mean()),
        "grad_rel_bias": float(rel_bias.mean()),
        "grad_cos": float(cos.mean()),
        "grad_cos_single": float(cos1.mean()),
        "grad_rel_var": float(rel_var.mean()),
        "grad_true_norm": float(tn.mean()),
        "reference_exact": exact,
        "reference_floor": float(floor.mean()),
        "grad_draws": float(n_draws),
        "grad_images": float(x.shape[0]),
        "bias_noise_floor": float(math.sqrt(float(rel_var.mean()) / n_draws)),
    }
