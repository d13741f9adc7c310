"""Figures of a trained categorical VAE (matplotlib, small PNGs).

Drawn on ``matplotlib.figure.Figure`` objects, not pyplot, so importing this module leaves the
process's matplotlib backend alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import gumbelkit
from gumbelkit.apps import plotting
from gumbelkit.apps.training.metrics import read_metrics
from gumbelkit.apps.vae.model import CategoricalVAE

__all__ = ["draw_reconstructions", "reconstruction_arrays", "write_all"]


def _images(flat: np.ndarray) -> np.ndarray:
    """(N, 784) -> (N, 28, 28)."""
    return flat.reshape(-1, 28, 28)


def _grid(images: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(rows*cols, 784) -> (rows*28, cols*28) mosaic."""
    return images.reshape(rows, cols, 28, 28).transpose(0, 2, 1, 3).reshape(rows * 28, cols * 28)


def curves(metrics_path: Path, path: Path) -> None:
    """Training loss and validation -ELBO (top), and tau (bottom), against the step."""
    records = read_metrics(metrics_path)
    train = [r for r in records if r["split"] == "train"]
    valid = [r for r in records if r["split"] == "valid"]
    fig = plotting.figure(7.5, 4.2)
    ax, ax_tau = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    steps = [r["step"] for r in train]
    ax.plot(steps, [r["loss"] for r in train], color="#3182bd", lw=1, label="train loss (the estimator's sample)")
    if valid:
        ax.plot([r["step"] for r in valid], [r["neg_elbo"] for r in valid], "o-", color="#e6550d", ms=4,
                label="valid -ELBO (one-hot z)")
    ax.set_ylabel("nats")
    losses = [r["loss"] for r in train if isinstance(r["loss"], float)]
    if losses:  # the first steps' losses (~550 nats) would flatten the rest of the curve
        ax.set_ylim(min(losses) - 5, np.percentile(losses, 95) + 10)
    taus = [r["tau"] for r in train]
    ax_tau.plot(steps, taus, color="#525252", lw=1.2, label="tau (schedule)")
    plotting.zero_based(ax_tau, taus)  # a constant tau stays a flat line at its value
    ax_tau.set_ylabel("tau")
    ax_tau.set_xlabel("step")
    for a in (ax, ax_tau):
        plotting.style_axes(a)
        plotting.integer_ticks(a.xaxis)
    plotting.legend_outside(fig, where="below", ncols=3)
    plotting.save(fig, path)


@torch.no_grad()
def reconstruction_arrays(model: CategoricalVAE, x: torch.Tensor, generator: torch.Generator
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs ``(N, 28, 28)``, decoder means ``(N, 28, 28)`` given one-hot z ~ q(z|x), codes ``(N, L)``."""
    s = gumbelkit.gumbel_softmax_sample(model.encode(x), 1.0, generator=generator)
    rec = torch.sigmoid(model.decode(s.hard))
    return _images(x.cpu().numpy()), _images(rec.cpu().numpy()), s.hard.argmax(-1).cpu().numpy()


def draw_reconstructions(inputs: np.ndarray, outputs: np.ndarray, path: Path, *, title: str | None = None) -> None:
    """Inputs (top row) over their reconstructions (bottom row)."""
    n = len(inputs)
    fig = plotting.figure(0.62 * n + 1.2, 1.75 if title else 1.45)
    plotting.image_rows(fig, [inputs, outputs], ["input", "reconstruction"], title=title)
    plotting.save(fig, path)


def reconstructions(model: CategoricalVAE, x: torch.Tensor, path: Path, generator: torch.Generator) -> None:
    """Top row: test images; bottom row: decoder means given one-hot z ~ q(z|x)."""
    inputs, outputs, _ = reconstruction_arrays(model, x[:12], generator)
    draw_reconstructions(inputs, outputs, path, title="test images and their reconstructions (one-hot z ~ q(z|x))")


@torch.no_grad()
def prior_samples(model: CategoricalVAE, path: Path, generator: torch.Generator) -> None:
    """Decoder means for 64 latents drawn from the model's prior."""
    idx = model.sample_prior(64, generator=generator)  # (64, L)
    C = model.categories
    imgs = torch.sigmoid(model.decode(F.one_hot(idx, C).float()))
    fig = plotting.figure(4, 4.2)
    ax = fig.subplots()
    ax.imshow(_grid(imgs.cpu().numpy(), 8, 8), cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
    ax.set_title("samples from the prior (decoder means)", fontsize=plotting.FONT + 1)
    plotting.save(fig, path)


@torch.no_grad()
def code_usage(model: CategoricalVAE, x: torch.Tensor, path: Path) -> None:
    """Average posterior q(z_l = c | x) over test images, per variable l and class c."""
    q = torch.cat([F.softmax(model.encode(x[s : s + 1000]), -1) for s in range(0, len(x), 1000)]).mean(0)
    fig = plotting.figure(4.8, 4.2)
    ax = fig.subplots()
    im = ax.imshow(q.cpu().numpy(), aspect="auto", cmap="viridis", vmin=0)
    ax.set_xlabel("class c")
    ax.set_ylabel("latent variable l")
    plotting.integer_ticks(ax.xaxis)
    plotting.integer_ticks(ax.yaxis)
    ax.set_title("mean q(z_l = c | x) over test images")
    plotting.style_axes(ax, grid=False)
    fig.colorbar(im, ax=ax)
    plotting.save(fig, path)


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
