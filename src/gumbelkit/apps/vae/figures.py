"""Figures of a trained categorical VAE (matplotlib, small PNGs).

Drawn on ``matplotlib.figure.Figure`` objects, not pyplot, so importing this module leaves the
process's matplotlib backend alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

import gumbelkit
from gumbelkit.apps.training.metrics import read_metrics
from gumbelkit.apps.vae.model import CategoricalVAE

__all__ = ["write_all"]

_DPI = 80


def _grid(images: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(rows*cols, 784) -> (rows*28, cols*28) mosaic."""
    return images.reshape(rows, cols, 28, 28).transpose(0, 2, 1, 3).reshape(rows * 28, cols * 28)


def curves(metrics_path: Path, path: Path) -> None:
    """Training -ELBO (the estimator's objective), validation -ELBO and tau against the step."""
    records = read_metrics(metrics_path)
    train = [r for r in records if r["split"] == "train"]
    valid = [r for r in records if r["split"] == "valid"]
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss (estimator's sample)")
    if valid:
        ax.plot([r["step"] for r in valid], [r["neg_elbo"] for r in valid], "o-", label="valid -ELBO (one-hot z)")
    ax.set_xlabel("step")
    ax.set_ylabel("nats")
    losses = [r["loss"] for r in train if isinstance(r["loss"], float)]
    if losses:
        ax.set_ylim(min(losses) - 5, np.percentile(losses, 95) + 10)
    ax2 = ax.twinx()
    ax2.plot([r["step"] for r in train], [r["tau"] for r in train], color="gray", ls="--", label="tau")
    ax2.set_ylabel("tau")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)


@torch.no_grad()
def reconstructions(model: CategoricalVAE, x: torch.Tensor, path: Path, generator: torch.Generator) -> None:
    """Top row: test images; bottom row: decoder means given one-hot z ~ q(z|x)."""
    x = x[:12]
    z = gumbelkit.gumbel_softmax_sample(model.encode(x), 1.0, generator=generator).hard
    rec = torch.sigmoid(model.decode(z))
    mosaic = _grid(torch.cat([x, rec]).cpu().numpy(), 2, len(x))
    fig = Figure(figsize=(len(x) * 0.6, 1.4))
    ax = fig.subplots()
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
    ax.set_title("test images (top) and reconstructions (bottom)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)


@torch.no_grad()
def prior_samples(model: CategoricalVAE, path: Path, generator: torch.Generator) -> None:
    """Decoder means for 64 latents drawn from the uniform prior."""
    L, C = model.latent_vars, model.categories
    device = next(model.parameters()).device
    idx = torch.randint(0, C, (64, L), generator=generator, device=device)
    imgs = torch.sigmoid(model.decode(F.one_hot(idx, C).float()))
    fig = Figure(figsize=(4, 4))
    ax = fig.subplots()
    ax.imshow(_grid(imgs.cpu().numpy(), 8, 8), cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
    ax.set_title("samples from the prior (decoder means)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)


@torch.no_grad()
def code_usage(model: CategoricalVAE, x: torch.Tensor, path: Path) -> None:
    """Average posterior q(z_l = c | x) over test images, per variable l and class c."""
    q = torch.cat([F.softmax(model.encode(x[s : s + 1000]), -1) for s in range(0, len(x), 1000)]).mean(0)
    fig = Figure(figsize=(4.5, 3.5))
    ax = fig.subplots()
    im = ax.imshow(q.cpu().numpy(), aspect="auto", cmap="viridis", vmin=0)
    ax.set_xlabel("class c")
    ax.set_ylabel("latent variable l")
    ax.set_title("mean q(z_l = c | x) over test images", fontsize=8)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)


def write_all(model: CategoricalVAE, test_x: torch.Tensor, out_dir: Path,
              *, generator: torch.Generator) -> dict[str, str]:
    """Write the four figures into ``out_dir/figures``; returns name -> path."""
    fig_dir = Path(out_dir) / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: fig_dir / f"{name}.png" for name in ("curves", "reconstructions", "prior_samples", "code_usage")}
    curves(Path(out_dir) / "metrics.jsonl", paths["curves"])
    reconstructions(model, test_x, paths["reconstructions"], generator)
    prior_samples(model, paths["prior_samples"], generator)
    code_usage(model, test_x, paths["code_usage"])
    return {k: str(v) for k, v in paths.items()}
