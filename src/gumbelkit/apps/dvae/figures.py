"""Figures of the dVAE and its stage-2 prior (matplotlib, drawn on ``Figure`` objects, no global backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from gumbelkit.apps.dvae.train import DVAETask

__all__ = ["image_grid", "write_caption_grids", "write_dvae_figures"]


def image_grid(images: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """``(N, 28, 28)`` images -> one ``(rows*29-1, cols*29-1)`` array with 1-pixel gaps."""
    out = np.ones((rows * 29 - 1, cols * 29 - 1), dtype=np.float32)
    for i, img in enumerate(images[: rows * cols]):
        r, c = divmod(i, cols)
        out[r * 29 : r * 29 + 28, c * 29 : c * 29 + 28] = img
    return out


def _save(fig: Figure, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return str(path)


@torch.no_grad()
def write_dvae_figures(task: DVAETask, out_dir: Path, records: Sequence[dict[str, Any]],
                       test_codes: torch.Tensor) -> dict[str, str]:
    """Reconstructions through the argmax codes, the code-usage histogram, the tau / KL-weight curves."""
    fig_dir = out_dir / "figures"
    model, cfg = task.model, task.config
    x = task.data["test"][:16]
    recon = model.decode_indices(model.argmax_codes(x).indices).cpu().numpy()  # (16, 784)
    pair = np.concatenate([x.cpu().numpy(), recon]).reshape(-1, 28, 28)
    fig = Figure(figsize=(8, 1.3), layout="constrained")
    ax = fig.subplots()
    ax.imshow(image_grid(pair, 2, 16), cmap="gray_r" if cfg.dataset == "mnist" else "gray", vmin=0, vmax=1)
    ax.axis("off")
    ax.set_title(f"{cfg.dataset} test images (top) and reconstructions from their 7x7 argmax codes (bottom), "
                 f"{cfg.estimator}, K={cfg.codes}", fontsize=8)
    out = {"reconstructions": _save(fig, fig_dir / "reconstructions.png")}

    counts = torch.bincount(test_codes.reshape(-1), minlength=model.codes).numpy()
    fig = Figure(figsize=(6, 2.8), layout="constrained")
    ax = fig.subplots()
    order = np.sort(counts)[::-1]
    ax.bar(np.arange(model.codes), order / order.sum(), width=1.0, color="#3182bd")
    used = int((counts > 0).sum())
    ax.set_xlabel("code (sorted by frequency)")
    ax.set_ylabel("share of test positions")
    ax.set_yscale("log")
    ax.set_title(f"code usage on the test set: {used} of {model.codes} codes used", fontsize=9)
    out["code_usage"] = _save(fig, fig_dir / "code_usage.png")

    total = max(task.total_steps, 1)
    steps = np.linspace(0, total - 1, 400).astype(int)
    fig = Figure(figsize=(6, 2.8), layout="constrained")
    ax = fig.subplots()
    ax.plot(steps, [task.schedule(int(s)) for s in steps], label="tau (schedule)", color="#d95f0e")
    ax.plot(steps, [task.kl_weight(int(s)) for s in steps], label="KL weight", color="#31a354")
    logged = [r for r in records if r.get("split") == "train" and "tau" in r]
    if logged:
        ax.scatter([r["step"] for r in logged], [r["tau"] for r in logged], s=6, color="#a63603", label="tau (logged)")
    ax.set_xlabel("step")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title(f"tau {task.schedule(0):g} -> {task.schedule(total - 1):.4g}; KL weight ramp", fontsize=9)
    out["schedules"] = _save(fig, fig_dir / "schedules.png")
    return out


def write_caption_grids(images: np.ndarray, labels: np.ndarray, class_names: Sequence[str], path: Path,
                        per_class: int = 10, title: str = "", predicted: np.ndarray | None = None) -> str:
    """One row of generated images per caption (``images`` uint8 ``(N, 28, 28)``, ``labels`` ``(N,)``)."""
    n_cls = len(class_names)
    fig = Figure(figsize=(per_class * 0.55 + 1.6, n_cls * 0.6 + 0.4), layout="constrained")
    axes = fig.subplots(n_cls, 1, squeeze=False)[:, 0]
    for c, ax in enumerate(axes):
        sel = np.flatnonzero(labels == c)[:per_class]
        ax.imshow(image_grid(images[sel].astype(np.float32) / 255.0, 1, per_class), cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        name = class_names[c]
        if predicted is not None and len(sel):
            name += f" ({100 * float(np.mean(predicted[np.flatnonzero(labels == c)] == c)):.0f}%)"
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)
