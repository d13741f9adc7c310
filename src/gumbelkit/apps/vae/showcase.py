"""The VAE's committed showcase: reconstructions and headline numbers of one finished run.

``python -m gumbelkit.apps.vae.showcase RUN_DIR`` reads a finished ``gumbelkit train vae`` run
(``config.json``, ``results.json``, ``checkpoint.pt``), reconstructs one test image of each digit
(the first of each class in the test split, so nothing is picked by hand) through a one-hot code
z ~ q(z|x), and writes into ``results/vae/``:

* ``reconstructions.npz``: ``inputs`` and ``reconstructions`` (10, 28, 28) float32 (decoder
  means), ``codes`` (10, L) the sampled classes, ``test_index`` and ``labels`` (10,);
* ``reconstructions.png``: inputs over reconstructions, drawn with the shared plotting style;
* ``figures/showcase_{curves,code_usage,prior_samples}.png``: the run's own figures, copied;
* ``showcase.json``: the commands, the git commit, the run's test numbers next to the published
  one, and the figure's description. ``gumbelkit tour`` reads this file and the arrays; it does not
  retrain anything.

An existing showcase is never replaced without ``--overwrite``.

Example::

    gumbelkit train vae --estimator gs --epochs 50 --eval-every 5000 --checkpoint-every 2500 \\
        --threads 1 --out-dir runs/vae-gs-50ep
    python -m gumbelkit.apps.vae.showcase runs/vae-gs-50ep
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gumbelkit.apps.training import load_checkpoint
from gumbelkit.apps.vae.model import CategoricalVAE

__all__ = ["PUBLISHED_NEG_ELBO", "export", "main", "training_command"]

#: Jang et al. 2017, Table 1, "VAE (Cat.)": test -ELBO in nats after 100 epochs, per estimator.
PUBLISHED_NEG_ELBO = {"st": 110.9, "gs": 101.5, "st_gs": 107.8}
PUBLISHED_SOURCE = "Jang, Gu, Poole, Categorical Reparameterization with Gumbel-Softmax, ICLR 2017, Table 1"
DEFAULT_OUT = Path("results/vae")
_NOT_FLAGS = {"out_dir", "resume", "progress", "figures", "quick"}


def training_command(config: dict[str, Any]) -> str:
    """The ``gumbelkit train vae`` command line that reproduces ``config`` (non-default fields)."""
    from gumbelkit.apps.vae.train import VAEConfig

    defaults = {f.name: f.default for f in dataclasses.fields(VAEConfig)}
    parts = ["gumbelkit train vae"]
    for name, value in config.items():
        if name in _NOT_FLAGS or name not in defaults or value == defaults[name]:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + name.replace("_", "-"))
        else:
            parts.append(f"{flag} {value}")
    parts.append(f"--out-dir {config.get('out_dir', 'runs/vae')}")
    return " ".join(parts)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def _first_of_each_class(labels: torch.Tensor) -> list[int]:
    return [int(torch.nonzero(labels == c)[0]) for c in range(int(labels.max()) + 1)]


def export(run_dir: str | Path, out: str | Path = DEFAULT_OUT, *, overwrite: bool = False,
           seed: int = 0, train_commit: str | None = None) -> dict[str, Any]:
    """Write the showcase of the run in ``run_dir`` into ``out``; returns ``showcase.json``'s content.

    ``train_commit`` is the git commit the run trained at, when it differs from the current one.

    Raises:
        FileExistsError: ``out/showcase.json`` exists and ``overwrite`` is false.
        FileNotFoundError: the run directory lacks ``config.json``, ``results.json`` or its checkpoint.
    """
    from gumbelkit.apps.data.mnist import mnist_splits
    from gumbelkit.apps.vae import figures

    run_dir, out = Path(run_dir), Path(out)
    target = out / "showcase.json"
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass --overwrite to replace the committed showcase")
    for name in ("config.json", "results.json", "checkpoint.pt"):
        if not (run_dir / name).exists():
            raise FileNotFoundError(f"{run_dir / name} not found: RUN_DIR must be a finished `gumbelkit train vae` run")
    config = json.loads((run_dir / "config.json").read_text())
    results = json.loads((run_dir / "results.json").read_text())
    model = CategoricalVAE(config["latent_vars"], config["categories"], prior=config.get("prior", "uniform"))
    model.load_state_dict(load_checkpoint(run_dir / "checkpoint.pt")["model"])
    model.eval()
    splits = mnist_splits(config.get("data_dir") or None, binarization=config["binarization"])
    index = _first_of_each_class(splits.test_labels)
    x = splits.test[index]  # (10, 784)
    inputs, recs, codes = figures.reconstruction_arrays(model, x, torch.Generator().manual_seed(seed))
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "reconstructions.npz", inputs=inputs.astype(np.float32),
                        reconstructions=recs.astype(np.float32), codes=codes.astype(np.int64),
                        test_index=np.array(index, dtype=np.int64),
                        labels=splits.test_labels[index].numpy().astype(np.int64))
    est = results["estimator"]
    epochs = results["epochs"]
    test = results["test"]
    title = (f"{est}, {results['latent_vars']} x {results['categories']}, {epochs:g} epochs: "
             f"test -ELBO {test['neg_elbo']:.2f} nats")
    figures.draw_reconstructions(inputs, recs, out / "reconstructions.png", title=title)
    copied = {}
    for name in ("curves", "code_usage", "prior_samples"):
        src = run_dir / "figures" / f"{name}.png"
        if src.exists():
            (out / "figures").mkdir(exist_ok=True)
            copied[name] = f"figures/showcase_{name}.png"
            shutil.copyfile(src, out / copied[name])
    published = PUBLISHED_NEG_ELBO.get(est)
    showcase = {
        "app": "vae",
        "summary": f"Jang et al.'s categorical VAE ({results['latent_vars']} x {results['categories']}) "
                   f"on binarized MNIST, estimator {est}, {epochs:g} epochs, seed {config['seed']}",
        "train_command": training_command(config),
        "showcase_command": f"python -m gumbelkit.apps.vae.showcase {run_dir}",
        "git_commit": _git_commit(),
        "train_git_commit": train_commit or _git_commit(),
        "headline": [
            {"metric": "test -ELBO (nats, lower is better)", "ours": test["neg_elbo"],
             "published": published,
             "published_source": None if published is None else f"{PUBLISHED_SOURCE} (100 epochs)"},
            {"metric": f"test bound on -log p(x), m = {test['iw_samples']} (nats)", "ours": test["iw_nll"],
             "published": None, "published_source": None},
        ],
        "figure": {
            "kind": "image_rows",
            "file": "reconstructions.npz",
            "png": "reconstructions.png",
            "rows": {"input": "inputs", "reconstruction": "reconstructions"},
            "caption": "The first test image of each digit (top) and its reconstruction (bottom): the "
                       "decoder's mean given one one-hot code z ~ q(z|x) per image.",
        },
        "run_figures": copied,
        "run": {k: results[k] for k in ("estimator", "latent_vars", "categories", "steps", "epochs",
                                        "final_tau", "binarization", "test", "valid") if k in results},
        "config": config,
    }
    target.write_text(json.dumps(showcase, indent=1) + "\n")
    return showcase


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gumbelkit.apps.vae.showcase RUN_DIR [--out DIR] [--overwrite]``."""
    p = argparse.ArgumentParser(prog="python -m gumbelkit.apps.vae.showcase",
                                description="Write the VAE's committed showcase (reconstructions and "
                                            "headline numbers) from a finished run.")
    p.add_argument("run_dir", type=Path, help="a finished `gumbelkit train vae` run directory")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default: {DEFAULT_OUT})")
    p.add_argument("--overwrite", action="store_true", help="replace an existing showcase.json")
    p.add_argument("--seed", type=int, default=0, help="seed of the latent sample (default: 0)")
    p.add_argument("--train-commit", default=None, metavar="HASH",
                   help="the git commit the run trained at (default: the current one)")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        showcase = export(args.run_dir, args.out, overwrite=args.overwrite, seed=args.seed,
                          train_commit=args.train_commit)
    except (FileExistsError, FileNotFoundError) as exc:
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return 2
    h = showcase["headline"][0]
    print(f"wrote {args.out / 'showcase.json'}, reconstructions.npz, reconstructions.png: "
          f"test -ELBO {h['ours']:.2f} nats (published {h['published']})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
