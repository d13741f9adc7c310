"""Figures of the text GAN results, drawn from the results JSON alone (matplotlib ``Figure``, no pyplot).

* ``oracle_curves.png``: NLL_oracle and NLL_gen during MLE pre-training (per epoch) and during each
  adversarial run (per step).
* ``oracle_quality_diversity.png``: the (NLL_gen, NLL_oracle) plane with the MLE temperature
  frontier and each GAN run as a point; the title says whether any GAN point lies beyond it.
* ``austen_quality_diversity.png``: BLEU-4 against self-BLEU-4 on Jane Austen, same layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

__all__ = ["write_all"]

_DPI = 100
SEQGAN_NLL_ORACLE = 8.736  # SeqGAN, Table 1
SEQGAN_MLE_NLL_ORACLE = 9.038


def _label(r: dict[str, Any]) -> str:
    return f"{r['estimator']}, beta_max={r['beta_max']:g}"


def oracle_curves(runs: dict[str, Any], path: Path) -> Path:
    mle, gans = runs["mle"], runs["gan"]
    fig = Figure(figsize=(13, 3.8), layout="constrained")
    ax_mle, ax_o, ax_g = fig.subplots(1, 3)
    if mle is not None:
        per_epoch = mle["steps"] / mle["epochs"]
        xs = [r["step"] / per_epoch for r in mle["curve"]] + [mle["epochs"]]
        ax_mle.plot(xs, [r["nll_oracle"] for r in mle["curve"]] + [mle["final"]["nll_oracle"]], "o-", ms=3,
                    label="NLL_oracle")
        ax_mle.plot(xs, [r["nll_gen"] for r in mle["curve"]] + [mle["final"]["nll_gen"]], "s-", ms=3, label="NLL_gen")
        ax_mle.axhline(SEQGAN_MLE_NLL_ORACLE, color="gray", ls=":", label="SeqGAN paper MLE 9.038")
        ax_mle.set_xlabel("MLE epoch")
        ax_mle.set_ylabel("nats per token")
        ax_mle.set_title("MLE pre-training", fontsize=10)
        ax_mle.legend(fontsize=8)
    for r in gans:
        steps = [c["step"] for c in r["curve"]] + [r["steps"]]
        line = ax_o.plot(steps, [c["nll_oracle"] for c in r["curve"]] + [r["final"]["nll_oracle"]], "o-", ms=2,
                         label=_label(r))[0]
        ax_g.plot(steps, [c["nll_gen"] for c in r["curve"]] + [r["final"]["nll_gen"]], "o-", ms=2,
                  color=line.get_color(), label=_label(r))
    ax_o.axhline(SEQGAN_NLL_ORACLE, color="gray", ls=":", label="SeqGAN paper 8.736")
    ax_o.set_title("adversarial training: NLL_oracle (quality)", fontsize=10)
    ax_g.set_title("adversarial training: NLL_gen (diversity)", fontsize=10)
    for ax in (ax_o, ax_g):
        ax.set_xlabel("adversarial step")
        ax.set_ylabel("nats per token")
    if gans:
        ax_o.legend(fontsize=7)
    ref = mle or (gans[0] if gans else None)
    if ref is not None:
        fig.suptitle(f"SeqGAN oracle (lower is better): curve points from {ref['config']['curve_samples']:,} samples "
                     f"and held-out sequences, end points from {ref['final']['n_samples']:,} samples", fontsize=10)
    fig.savefig(path, dpi=_DPI)
    return path


def _plane(ax: Any, frontier: list[dict[str, Any]], points: list[tuple[str, float, float]], x: str, y: str) -> None:
    pts = sorted(frontier, key=lambda f: f["tau"])
    ax.plot([f[x] for f in pts], [f[y] for f in pts], "k.-", label="MLE at temperature tau (frontier)")
    for f in pts:
        ax.annotate(f"{f['tau']:g}", (f[x], f[y]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    markers = "os^vDP*X"
    for i, (name, px, py) in enumerate(points):
        ax.plot([px], [py], markers[i % len(markers)], ms=7, label=name)


def oracle_plane(runs: dict[str, Any], path: Path, verdict: str) -> Path:
    mle, gans = runs["mle"], runs["gan"]
    fig = Figure(figsize=(7.5, 5.5), layout="constrained")
    ax = fig.subplots()
    if mle is not None:
        _plane(ax, mle["frontier"], [(f"GAN {_label(g)}", g["final"]["nll_gen"], g["final"]["nll_oracle"]) for g in gans],
               "nll_gen", "nll_oracle")
    ax.axhline(SEQGAN_NLL_ORACLE, color="gray", ls=":", label="SeqGAN paper NLL_oracle 8.736 (no NLL_gen)")
    ax.set_xlabel("NLL_gen: generator's NLL of held-out oracle data (lower: more diverse)")
    ax.set_ylabel("NLL_oracle: oracle's NLL of samples (lower: better quality)")
    ax.legend(fontsize=7)
    ax.set_title(verdict, fontsize=9, wrap=True)
    fig.savefig(path, dpi=_DPI)
    return path


def austen_plane(runs: dict[str, Any], path: Path) -> Path:
    mle, gans = runs["mle"], runs["gan"]
    fig = Figure(figsize=(7, 5), layout="constrained")
    ax = fig.subplots()
    if mle is not None:
        _plane(ax, mle["frontier"], [(f"GAN {_label(g)}", g["final"]["self_bleu4"], g["final"]["bleu4"]) for g in gans],
               "self_bleu4", "bleu4")
    ax.set_xlabel("self-BLEU-4 (lower: more diverse)")
    ax.set_ylabel("BLEU-4 against held-out sentences (higher: closer to the text)")
    ax.legend(fontsize=7)
    ax.set_title("Jane Austen: quality against diversity", fontsize=10)
    fig.savefig(path, dpi=_DPI)
    return path


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
