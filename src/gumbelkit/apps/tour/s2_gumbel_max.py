"""Section 2: Gumbel-Max and Gumbel-top-k draw exactly from the right distributions."""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from scipy import stats

from gumbelkit.apps import plotting
from gumbelkit.apps.tour._report import Section, TourContext, chunks, fmt, fmt_p
from gumbelkit.functional import gumbel_max, gumbel_topk

TITLE = "Gumbel-Max is exact"
_CHUNK = 250_000  # draws per batch: bounds memory at a few tens of MB
_NEG_INF = -math.inf

# (name, logits, description). Logits are unnormalised on purpose (a constant shift is irrelevant).
_VECTORS: list[tuple[str, list[float], str]] = [
    ("skewed", [math.log(v) + 1.7 for v in (0.5, 0.25, 0.15, 0.07, 0.03)], "five categories"),
    ("tiny", [math.log(v) for v in (0.7, 0.2999, 1e-4)], "one category with p = 1e-4"),
    ("masked", [0.3, _NEG_INF, 1.2, _NEG_INF, -0.5, 0.0], "two categories masked with -inf"),
]
_TOPK_LOGITS = [math.log(v) for v in (0.35, 0.25, 0.2, 0.12, 0.08)]
_TOPK_K = 3


def plackett_luce(p: list[float], order: tuple[int, ...]) -> float:
    """Probability of drawing ``order`` first, second, ... without replacement (Plackett-Luce)."""
    prob, left = 1.0, 1.0
    for i in order:
        prob *= p[i] / left
        left -= p[i]
    return prob


def _counts(logits: torch.Tensor, n: int, gen: torch.Generator) -> np.ndarray:
    k = logits.numel()
    counts = torch.zeros(k, dtype=torch.long)
    for m in chunks(n, _CHUNK):
        idx = gumbel_max(logits.expand(m, k), generator=gen)  # (m,)
        counts += torch.bincount(idx, minlength=k)
    return counts.numpy()


def run(ctx: TourContext) -> Section:
    """Chi-square tests of gumbel_max against softmax(logits) and of gumbel_topk against Plackett-Luce."""
    n = ctx.sizes.max_samples
    gen = ctx.generator(2)
    bar = ctx.bar(f"2 {TITLE}", total=len(_VECTORS) + 2)
    results: dict[str, dict] = {}
    for name, logits_list, desc in _VECTORS:
        logits = torch.tensor(logits_list, dtype=torch.float32)
        p = torch.softmax(logits.double(), -1).numpy()
        counts = _counts(logits, n, gen)
        live = p > 0
        chi = stats.chisquare(counts[live], n * p[live])
        results[name] = {
            "description": desc,
            "logits": [v if math.isfinite(v) else "-inf" for v in logits_list],
            "p": p.tolist(),
            "counts": counts.tolist(),
            "frequencies": (counts / n).tolist(),
            "samples": n,
            "chi2": float(chi.statistic),
            "df": int(live.sum() - 1),
            "pvalue": float(chi.pvalue),
            "masked_draws": int(counts[~live].sum()),
        }
        bar.update()

    # Gumbel-top-k against the Plackett-Luce probabilities of every ordered k-tuple
    nk = ctx.sizes.topk_samples
    tl = torch.tensor(_TOPK_LOGITS, dtype=torch.float32)
    pk = torch.softmax(tl.double(), -1).tolist()
    K = len(pk)
    tuples = list(itertools.permutations(range(K), _TOPK_K))
    code = {t: j for j, t in enumerate(tuples)}
    weights = torch.tensor([K**(_TOPK_K - 1 - i) for i in range(_TOPK_K)])
    lookup = torch.full((K**_TOPK_K,), -1, dtype=torch.long)
    for t, j in code.items():
        lookup[int(sum(t[i] * int(weights[i]) for i in range(_TOPK_K)))] = j
    tcounts = torch.zeros(len(tuples), dtype=torch.long)
    for m in chunks(nk, _CHUNK):
        idx = gumbel_topk(tl.expand(m, K), _TOPK_K, generator=gen)  # (m, k), first draw first
        cells = lookup[(idx * weights).sum(-1)]
        tcounts += torch.bincount(cells, minlength=len(tuples))
    tc = tcounts.numpy()
    exact = np.array([plackett_luce(pk, t) for t in tuples])
    chi_t = stats.chisquare(tc, nk * exact)
    topk = {
        "logits": _TOPK_LOGITS,
        "p": pk,
        "k": _TOPK_K,
        "samples": nk,
        "cells": len(tuples),
        "chi2": float(chi_t.statistic),
        "df": len(tuples) - 1,
        "pvalue": float(chi_t.pvalue),
        "max_abs_freq_error": float(np.abs(tc / nk - exact).max()),
    }
    bar.update()

    # Goodness of fit: exact p and observed frequency (markers on a log scale, no bars: a bar's
    # length on a log axis depends on where the axis starts), and below them each category's
    # standardised residual, where a deviation of a few standard errors would stand out.
    fig = plotting.figure(11, 4.4)
    axes = fig.subplots(2, len(_VECTORS), height_ratios=(2.2, 1.4), sharex="col")
    for j, (name, _, desc) in enumerate(_VECTORS):
        r = results[name]
        ax, ax_res = axes[0, j], axes[1, j]
        p_ = np.array(r["p"])
        xs = np.arange(len(p_))
        live = p_ > 0
        freq = np.array(r["frequencies"])
        ax.plot(xs[live], p_[live], "_", color="#cb181d", ms=16, mew=2, label="exact p = softmax(logits)")
        ax.plot(xs[live], freq[live], "o", color="#08519c", ms=4, label="gumbel_max frequency")
        ax.set_yscale("log")
        ax.set_ylim(3e-5, 2)
        ax.set_title(f"{desc}\nchi2 p = {fmt_p(r['pvalue'])}")
        plotting.style_axes(ax)
        z = plotting.standardised_residuals(r["counts"], p_, n)
        plotting.residual_panel(ax_res, xs[live], z[live], xlabel="category")
        for i in np.flatnonzero(~live):
            ax.text(i, 1e-4, "masked", ha="center", fontsize=7, rotation=90, color="#525252")
            ax_res.text(i, 0, f"{int(r['counts'][i])} draws", ha="center", va="center", fontsize=7,
                        rotation=90, color="#525252", bbox={"fc": "white", "ec": "none", "pad": 1})
        ax_res.set_xticks(xs)
        ax_res.set_xlim(-0.6, len(p_) - 0.4)
        if j:
            ax_res.set_ylabel("")
    axes[0, 0].set_ylabel("probability (log scale)")
    plotting.legend_outside(fig, [axes[0, 0], axes[1, 0]])
    f1 = ctx.save_figure(fig, "s2_gumbel_max", f"Top: frequencies of {n:,} gumbel_max draws (dots) against softmax(logits) (red marks), log scale, for three logit vectors. Bottom: each category's standardised residual (count minus n p, in standard errors); an exact sampler keeps about 95% of them inside the grey band. Masked categories are never drawn.")

    fig = plotting.figure(8.2, 4.6)
    ax, ax_res = fig.subplots(2, 1, height_ratios=(2.4, 1.2), sharex=True)
    ax.loglog(exact, tc / nk, "o", color="#08519c", ms=3.5, label=f"{len(tuples)} ordered {_TOPK_K}-tuples")
    lim = [exact.min() * 0.7, exact.max() * 1.4]
    ax.plot(lim, lim, color="#cb181d", lw=1, label="y = x")
    ax.set_ylabel("gumbel_topk frequency")
    ax.set_title(f"Gumbel-top-{_TOPK_K} of {K}: chi2 p = {fmt_p(chi_t.pvalue)}")
    plotting.style_axes(ax)
    plotting.residual_panel(ax_res, exact, plotting.standardised_residuals(tc, exact, nk),
                            xlabel="Plackett-Luce probability (exact)", stems=False)
    plotting.legend_outside(fig)
    f2 = ctx.save_figure(fig, "s2_gumbel_topk", f"Every ordered {_TOPK_K}-tuple drawn by gumbel_topk ({nk:,} draws) against its exact Plackett-Luce probability; below, each tuple's standardised residual.")
    bar.update()
    bar.close()

    numbers = {"gumbel_max": results, "gumbel_topk": topk}
    table = [
        (f"gumbel_max, {results[nm]['description']} ({n:,} draws)",
         f"chi2 = {fmt(results[nm]['chi2'])}, df = {results[nm]['df']}, p = {fmt_p(results[nm]['pvalue'])}")
        for nm, _, _ in _VECTORS
    ]
    table.append(("gumbel_max, draws of a masked category", str(results["masked"]["masked_draws"])))
    table.append(("gumbel_max, frequency of the p = 1e-4 category",
                  f"{fmt(results['tiny']['frequencies'][2])} (exact {fmt(results['tiny']['p'][2])})"))
    table.append((f"gumbel_topk, {len(tuples)} ordered tuples ({nk:,} draws)",
                  f"chi2 = {fmt(chi_t.statistic)}, df = {topk['df']}, p = {fmt_p(chi_t.pvalue)}"))
    pmin = min([r["pvalue"] for r in results.values()] + [topk["pvalue"]])
    paragraphs = [
        "Adding Gumbel noise to the logits and taking the argmax draws category i with probability "
        "exactly softmax(logits)_i: the chi-square tests below compare the counts with those "
        "probabilities, including a category of probability 1e-4 and masked categories, which are "
        f"never drawn ({results['masked']['masked_draws']} draws here).",
        f"Keeping the {_TOPK_K} largest perturbed logits instead of one draws {_TOPK_K} categories "
        "without replacement, in order, with the Plackett-Luce probabilities (first draw from p, "
        "the next from the rest renormalised); p-values are uniform on (0, 1) when the sampler is exact.",
    ]
    return Section(
        number=2, key="gumbel_max", title=TITLE, paragraphs=paragraphs, figures=[f1, f2],
        numbers=numbers, table=table,
        headline=f"{len(_VECTORS) + 1} chi-square tests, smallest p = {fmt_p(pmin)}; masked draws: "
        f"{results['masked']['masked_draws']}",
    )
