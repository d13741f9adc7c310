"""Figures of the text GAN results, drawn from the results JSON alone (matplotlib ``Figure``, no pyplot).

* ``oracle_curves.png``: NLL_oracle and NLL_gen during MLE pre-training (per epoch) and during each
  adversarial run (per step).
* ``oracle_quality_diversity.png``: the (NLL_gen, NLL_oracle) plane with the MLE temperature
  frontier and each GAN run as a point; the title says whether any GAN point lies beyond it.
* ``austen_quality_diversity.png``: BLEU-4 against self-BLEU-4 on Jane Austen, same layout.

Drawn in the applications' shared style (:mod:`gumbelkit.apps.plotting`): legends outside the
axes, each estimator's colour and marker, saved at ``plotting.DPI``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.axes import Axes

from gumbelkit.apps import plotting

__all__ = ["write_all"]

SEQGAN_NLL_ORACLE = 8.736  # SeqGAN, Table 1
SEQGAN_MLE_NLL_ORACLE = 9.038
# Runs that share an estimator (different beta_max) keep its colour and marker, told apart by line style.
_REPEAT_LINESTYLES = ("-", "--", ":", "-.")


def _label(r: dict[str, Any]) -> str:
    return f"{r['estimator']}, beta_max={r['beta_max']:g}"


def _run_styles(gans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The shared estimator style of each GAN run (:func:`plotting.estimator_style`)."""
    seen: dict[str, int] = {}
    styles = []
    for r in gans:
        style = plotting.estimator_style(r["estimator"])
        k = seen.get(r["estimator"], 0)
        seen[r["estimator"]] = k + 1
        if k:
            style["linestyle"] = _REPEAT_LINESTYLES[k % len(_REPEAT_LINESTYLES)]
        styles.append(style)
    return styles


def oracle_curves(runs: dict[str, Any], path: Path) -> Path:
    mle, gans = runs["mle"], runs["gan"]
    fig = plotting.figure(13, 4.2)
    ax_mle, ax_o, ax_g = fig.subplots(1, 3)
    if mle is not None:
        per_epoch = mle["steps"] / mle["epochs"]
        xs = [r["step"] / per_epoch for r in mle["curve"]] + [mle["epochs"]]
        ax_mle.plot(xs, [r["nll_oracle"] for r in mle["curve"]] + [mle["final"]["nll_oracle"]], "o-", ms=3,
                    color="#08519c", label="MLE: NLL_oracle")
        ax_mle.plot(xs, [r["nll_gen"] for r in mle["curve"]] + [mle["final"]["nll_gen"]], "s-", ms=3,
                    color="#6baed6", label="MLE: NLL_gen")
        ax_mle.axhline(SEQGAN_MLE_NLL_ORACLE, color="gray", ls="--", lw=1, label="SeqGAN paper MLE NLL_oracle 9.038")
        ax_mle.set_xlabel("MLE epoch")
        ax_mle.set_ylabel("nats per token")
        ax_mle.set_title("MLE pre-training")
    for r, style in zip(gans, _run_styles(gans), strict=True):
        steps = [c["step"] for c in r["curve"]] + [r["steps"]]
        ax_o.plot(steps, [c["nll_oracle"] for c in r["curve"]] + [r["final"]["nll_oracle"]], ms=3,
                  label=f"GAN {_label(r)}", **style)
        ax_g.plot(steps, [c["nll_gen"] for c in r["curve"]] + [r["final"]["nll_gen"]], ms=3,
                  label=f"GAN {_label(r)}", **style)
    ax_o.axhline(SEQGAN_NLL_ORACLE, color="gray", ls=":", lw=1, label="SeqGAN paper GAN NLL_oracle 8.736")
    ax_o.set_title("adversarial training: NLL_oracle (quality)")
    ax_g.set_title("adversarial training: NLL_gen (diversity)")
    for ax in (ax_o, ax_g):
        ax.set_xlabel("adversarial step")
        ax.set_ylabel("nats per token")
    for ax in (ax_mle, ax_o, ax_g):
        plotting.style_axes(ax)
        plotting.integer_ticks(ax.xaxis)
    plotting.legend_outside(fig, where="below", ncols=3)
    ref = mle or (gans[0] if gans else None)
    if ref is not None:
        fig.suptitle(f"SeqGAN oracle (lower is better): curve points from {ref['config']['curve_samples']:,} samples "
                     f"and held-out sequences, end points from {ref['final']['n_samples']:,} samples",
                     fontsize=plotting.FONT + 1)
    return plotting.save(fig, path)


def _plane(ax: Axes, frontier: list[dict[str, Any]], gans: list[dict[str, Any]], x: str, y: str) -> None:
    """The MLE temperature frontier (points labelled with tau) and each GAN run's end point."""
    pts = sorted(frontier, key=lambda f: f["tau"])
    ax.plot([f[x] for f in pts], [f[y] for f in pts], "k.-", label="MLE at temperature tau (frontier)")
    # tau labels off the curve, on the side away from where a GAN point beats the frontier
    # (above-right of a falling curve, below-right of a rising one)
    rising = len(pts) > 1 and (pts[-1][x] - pts[0][x]) * (pts[-1][y] - pts[0][y]) > 0
    for f in pts:
        ax.annotate(f"{f['tau']:g}", (f[x], f[y]), textcoords="offset points", xytext=(4, -4 if rising else 4),
                    va="top" if rising else "bottom", fontsize=plotting.FONT - 1.5)
    for g, style in zip(gans, _run_styles(gans), strict=True):
        # open markers: GAN runs that end at the same point stay visible on top of each other
        ax.plot([g["final"][x]], [g["final"][y]], marker=style["marker"], color=style["color"], ls="none", ms=8,
                mew=1.6, markerfacecolor="none", label=f"GAN {_label(g)}")


def oracle_plane(runs: dict[str, Any], path: Path, verdict: str) -> Path:
    mle, gans = runs["mle"], runs["gan"]
    fig = plotting.figure(7.5, 6.3)
    ax = fig.subplots()
    if mle is not None:
        _plane(ax, mle["frontier"], gans, "nll_gen", "nll_oracle")
    ax.axhline(SEQGAN_NLL_ORACLE, color="gray", ls=":", lw=1, label="SeqGAN paper NLL_oracle 8.736 (no NLL_gen)")
    ax.set_xlabel("NLL_gen: generator's NLL of held-out oracle data (lower: more diverse)")
    ax.set_ylabel("NLL_oracle: oracle's NLL of samples (lower: better quality)")
    ax.set_title(verdict, wrap=True)
    plotting.style_axes(ax)
    plotting.legend_outside(fig, where="below", ncols=2)
    return plotting.save(fig, path)


def austen_plane(runs: dict[str, Any], path: Path) -> Path:
    mle, gans = runs["mle"], runs["gan"]
    fig = plotting.figure(7.5, 5.8)
    ax = fig.subplots()
    if mle is not None:
        _plane(ax, mle["frontier"], gans, "self_bleu4", "bleu4")
    ax.set_xlabel("self-BLEU-4 (lower: more diverse)")
    ax.set_ylabel("BLEU-4 against held-out sentences (higher: closer to the text)")
    ax.set_title("Jane Austen: quality against diversity")
    plotting.style_axes(ax)
    plotting.legend_outside(fig, where="below", ncols=2)
    return plotting.save(fig, path)


def write_all(runs: dict[str, dict[str, Any]], out: Path, verdict: str = "") -> list[Path]:
    """Draw every figure whose runs exist; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if "oracle" in runs:
        written += [oracle_curves(runs["oracle"], out / "oracle_curves.png"),
                    oracle_plane(runs["oracle"], out / "oracle_quality_diversity.png", verdict)]
    if "austen" in runs:
        written.append(austen_plane(runs["austen"], out / "austen_quality_diversity.png"))
    return written
