"""``gumbelkit dalle``: images from a caption with a trained stage-2 prior and its dVAE.

    gumbelkit dalle sample "ankle boot" --prior-dir runs/dalle-fashion --n 16 --out boots.png
    gumbelkit dalle evaluate --prior-dir runs/dalle-fashion --classifier-dir runs/clf-fashion

``sample`` writes a grid (PNG) and the images (``.npz``: ``images`` uint8 (N, 28, 28), ``labels``
int64 (N,)); ``evaluate`` generates ``--per-class`` images for every caption, writes
``generated.npz`` and ``evaluation.json`` (the fraction classified as the requested class, per class)
into ``--out-dir`` (default: the prior's directory). Train the parts with ``gumbelkit train dvae``,
``gumbelkit train classifier`` and ``gumbelkit train dalle``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = ["main"]

PROG = "gumbelkit dalle"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0] if __doc__ else None,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    s = sub.add_parser("sample", help="generate images for one caption (a class name)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("caption", help="the caption, a class name of the prior's dataset (e.g. 'seven', 'ankle boot')")
    s.add_argument("--prior-dir", required=True, help="run directory of `gumbelkit train dalle`")
    s.add_argument("--n", type=int, default=16, help="number of images")
    s.add_argument("--out", default="", help="PNG grid to write (default: <prior-dir>/samples/<caption>.png); the "
                                             "images go next to it as .npz")
    s.add_argument("--seed", type=int, default=0, help="seed of the sampler")
    s.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (1: the model itself)")
    e = sub.add_parser("evaluate", help="generate for every caption and score with a classifier",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    e.add_argument("--prior-dir", required=True, help="run directory of `gumbelkit train dalle`")
    e.add_argument("--classifier-dir", required=True, help="run directory of `gumbelkit train classifier`")
    e.add_argument("--per-class", type=int, default=100, help="images per caption")
    e.add_argument("--out-dir", default="", help="where generated.npz, evaluation.json and the grid go "
                                                 "(default: the prior's directory)")
    e.add_argument("--seed", type=int, default=0, help="seed of the sampler")
    e.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (1: the model itself)")
    return p


def _sample(args: argparse.Namespace) -> int:
    from gumbelkit.apps.dvae.figures import image_grid
    from gumbelkit.apps.dvae.prior import CaptionVocab, generate_images, load_prior

    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    prior = load_prior(args.prior_dir)
    vocab: CaptionVocab = prior.model.vocab
    cls = vocab.class_of(args.caption)
    g = torch.Generator().manual_seed(args.seed)
    torch.set_num_threads(1)
    images = generate_images(prior, torch.full((args.n,), cls, dtype=torch.long), temperature=args.temperature,
                             generator=g)
    out = Path(args.out) if args.out else Path(args.prior_dir) / "samples" / f"{args.caption.replace(' ', '_').replace('/', '_')}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out.with_suffix(".npz"), images=images, labels=np.full(args.n, cls, dtype=np.int64))
    from matplotlib.figure import Figure

    cols = min(args.n, 8)
    rows = (args.n + cols - 1) // cols
    fig = Figure(figsize=(cols * 0.8, rows * 0.8 + 0.3), layout="constrained")
    ax = fig.subplots()
    ax.imshow(image_grid(images.astype(np.float32) / 255.0, rows, cols), cmap="gray", vmin=0, vmax=1)
    ax.axis("off")
    ax.set_title(f'"{vocab.class_names[cls]}"', fontsize=9)
    fig.savefig(out, dpi=110)
    print(f'{args.n} images of "{vocab.class_names[cls]}" in {out} (arrays in {out.with_suffix(".npz")})')
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from gumbelkit.apps.dvae.prior import evaluate_generation, load_prior

    if args.per_class < 1:
        raise ValueError(f"--per-class must be >= 1, got {args.per_class}")
    torch.set_num_threads(1)
    prior = load_prior(args.prior_dir)
    out_dir = Path(args.out_dir or args.prior_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    res = evaluate_generation(prior, args.classifier_dir, out_dir, per_class=args.per_class,
                              temperature=args.temperature, seed=args.seed)
    (out_dir / "evaluation.json").write_text(json.dumps(res, indent=2) + "\n")
    worst = min(res["accuracy_per_class"].items(), key=lambda kv: kv[1])
    print(f"{100 * res['accuracy']:.1f}% of {len(res['accuracy_per_class']) * args.per_class} generated images "
          f"classified as their caption (lowest: {worst[0]!r} {100 * worst[1]:.0f}%; classifier test accuracy "
          f"{100 * res['classifier_test_accuracy']:.2f}%); {out_dir / 'evaluation.json'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``gumbelkit dalle``."""
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        return _sample(args) if args.action == "sample" else _evaluate(args)
    except ValueError as exc:
        print(f"{PROG} {args.action}: error: {exc}", file=sys.stderr)
        return 2
