"""Section 3: what the temperature does to a Gumbel-Softmax sample."""

from __future__ import annotations

import math

import numpy as np
import torch

from gumbelkit.apps import plotting
from gumbelkit.apps.tour._report import Section, TourContext, fmt, rounded
from gumbelkit.apps.tour.html import slider_html
from gumbelkit.functional import gumbel_softmax_sample

TITLE = "Temperature"
P3 = (0.6, 0.3, 0.1)
SHOW_TAUS = (0.1, 0.5, 1.0, 2.0, 10.0)
# the logit vector of the interactive slider (probabilities 0.4, 0.25, ...)
SLIDER_P = (0.4, 0.25, 0.15, 0.1, 0.06, 0.04)

_CORNERS = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, math.sqrt(3) / 2]])


def _entropy(y: torch.Tensor) -> torch.Tensor:
    return -torch.special.xlogy(y, y).sum(-1)  # 0 log 0 = 0


def run(ctx: TourContext) -> Section:
    """Samples on the simplex and E[max entry] / entropy against tau; adds the tau slider."""
    gen = ctx.generator(3)
    logits = torch.tensor(P3, dtype=torch.float64).log()
    taus = np.logspace(-2, 2, ctx.sizes.tau_curve_points)
    bar = ctx.bar(f"3 {TITLE}", total=len(SHOW_TAUS) + len(taus) + 1)

    m = ctx.sizes.simplex_points
    points: dict[float, np.ndarray] = {}
    shown: dict[str, dict[str, float]] = {}
    for tau in SHOW_TAUS:
        s = gumbel_softmax_sample(logits.expand(m, 3), tau=tau, generator=gen)
        points[tau] = s.soft.numpy()
        bar.update()

    e_max, e_ent, argmax_freq = [], [], []
    nc = ctx.sizes.tau_curve_samples
    for tau in taus:
        s = gumbel_softmax_sample(logits.expand(nc, 3), tau=float(tau), generator=gen)
        e_max.append(float(s.soft.max(-1).values.mean()))
        e_ent.append(float(_entropy(s.soft).mean()))
        argmax_freq.append(float((s.indices == 0).double().mean()))
        bar.update()
    for tau in SHOW_TAUS:
        s = gumbel_softmax_sample(logits.expand(nc, 3), tau=tau, generator=gen)
        shown[f"{tau:g}"] = {
            "expected_max_entry": float(s.soft.max(-1).values.mean()),
            "expected_entropy": float(_entropy(s.soft).mean()),
            "fraction_within_0.05_of_a_vertex": float((s.soft.max(-1).values > 0.95).double().mean()),
        }

    fig = plotting.figure(12, 2.9)
    axes = fig.subplots(1, len(SHOW_TAUS))
    for ax, tau in zip(axes, SHOW_TAUS, strict=True):
        xy = points[tau] @ _CORNERS  # barycentric -> plane
        ax.fill(_CORNERS[:, 0], _CORNERS[:, 1], facecolor="#f7f7f7", edgecolor="#555555", lw=0.8)
        ax.scatter(xy[:, 0], xy[:, 1], s=3, alpha=0.35, color="#08519c", lw=0)
        for (cx, cy), lab in zip(_CORNERS, [f"p={v:g}" for v in P3], strict=True):
            ax.text(cx, cy + (0.05 if cy > 0 else -0.09), lab, ha="center", fontsize=7)
        ax.set_title(f"tau = {tau:g}", fontsize=10)
        ax.set_aspect("equal")
        ax.set_xlim(-0.1, 1.1)
        ax.set_ylim(-0.15, 1.0)
        ax.axis("off")
    f1 = ctx.save_figure(fig, "s3_simplex", f"{m:,} Gumbel-Softmax samples of p = {P3} on the 2-simplex at five temperatures: near the corners (one-hot) at small tau, near the centre (uniform) at large tau.")

    fig = plotting.figure(11, 3.4)
    ax1, ax2 = fig.subplots(1, 2)
    measured = "measured: mean over draws"
    one_hot, uniform = "limit tau -> 0 (one-hot)", "limit tau -> inf (uniform)"
    ax1.semilogx(taus, e_max, "o-", ms=3, color="#08519c", label=measured)
    ax1.axhline(1.0, color="#cb181d", ls=":", lw=1, label=one_hot)
    ax1.axhline(1 / 3, color="#31a354", ls=":", lw=1, label=uniform)
    ax1.set_ylim(0, 1.08)
    ax1.set_xlabel("tau (log scale)")
    ax1.set_title("Expected largest entry E[max_i y_i] (limits 1 and 1/3)")
    ax2.semilogx(taus, e_ent, "o-", ms=3, color="#08519c", label=measured)
    ax2.axhline(0.0, color="#cb181d", ls=":", lw=1, label=one_hot)
    ax2.axhline(math.log(3), color="#31a354", ls=":", lw=1, label=uniform)
    ax2.set_ylim(-0.04, 1.12 * math.log(3))
    ax2.set_xlabel("tau (log scale)")
    ax2.set_title(f"Expected entropy in nats (limits 0 and ln 3 = {math.log(3):.4f})")
    for ax in (ax1, ax2):
        plotting.style_axes(ax)
    plotting.legend_outside(fig)
    f2 = ctx.save_figure(fig, "s3_tau_curves", f"Expected largest entry and expected entropy of a Gumbel-Softmax sample of p = {P3} against tau ({nc:,} draws per tau).")
    bar.update()
    bar.close()

    slider_logits = [math.log(v) for v in SLIDER_P]
    numbers = {
        "p": list(P3),
        "simplex_points_per_tau": m,
        "samples_per_tau": nc,
        "tau_grid": rounded(taus.tolist()),
        "expected_max_entry": e_max,
        "expected_entropy": e_ent,
        "argmax_frequency_of_category_0": argmax_freq,
        "at_shown_taus": shown,
        "limits": {"max_entry_tau_to_0": 1.0, "max_entry_tau_to_inf": 1 / 3,
                   "entropy_tau_to_0": 0.0, "entropy_tau_to_inf": math.log(3)},
        "slider": {"p": list(SLIDER_P), "logits": slider_logits},
    }
    table = [
        (f"tau = {t}: E[max entry], E[entropy], share within 0.05 of a corner",
         f"{fmt(v['expected_max_entry'])}, {fmt(v['expected_entropy'])}, "
         f"{fmt(v['fraction_within_0.05_of_a_vertex'])}")
        for t, v in shown.items()
    ]
    table.append(("argmax of the sample = category 0 (p = 0.6), range over all taus",
                  f"{fmt(min(argmax_freq))} .. {fmt(max(argmax_freq))}"))
    paragraphs = [
        "The temperature tau decides how soft a Gumbel-Softmax sample is: at small tau the samples "
        "sit in the corners of the simplex (almost one-hot), at large tau they crowd at the centre "
        "(almost uniform), whatever p is.",
        "Which corner a sample is nearest to does not depend on tau: its argmax is an exact "
        "Gumbel-Max draw, so category 0 wins about 60% of the time at every temperature.",
    ]
    return Section(
        number=3, key="temperature", title=TITLE, paragraphs=paragraphs, figures=[f1, f2],
        numbers=numbers, table=table,
        extra_html=slider_html(slider_logits, [f"p={v:g}" for v in SLIDER_P]),
        headline=f"E[max]: {fmt(e_max[0], 3)} at tau={taus[0]:g}, {fmt(e_max[-1], 3)} at tau={taus[-1]:g}",
    )
