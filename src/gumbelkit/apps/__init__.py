"""Applications built on :mod:`gumbelkit.apps.training`, dispatched by ``gumbelkit train <app>``.

Each application lives in ``gumbelkit.apps.<name>`` with ``model.py`` and ``train.py``; its
``main(argv)`` parses a dataclass config and calls :func:`gumbelkit.apps.training.run`. Applications
are imported only when run.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

__all__ = ["APPS", "main"]

# name -> ("module:function", one-line help)
APPS: dict[str, tuple[str, str]] = {
    "vae": ("gumbelkit.apps.vae.train:main", "categorical VAE on binarized MNIST (Jang et al. 2017)"),
    "dvae": ("gumbelkit.apps.dvae.train:main", "DALL-E's discrete VAE (and a VQ-VAE) on MNIST / Fashion-MNIST"),
    "dalle": ("gumbelkit.apps.dvae.prior:main", "stage 2: a caption-conditioned transformer over a dVAE's codes"),
    "classifier": ("gumbelkit.apps.dvae.classifier:main", "a small CNN on real MNIST / Fashion-MNIST (scores generated images)"),
    "select": ("gumbelkit.apps.select.concrete:main", "concrete autoencoder: choose 50 pixels of MNIST / Fashion-MNIST (Abid et al. 2019)"),
    "glimpse": ("gumbelkit.apps.select.glimpse:main", "hard attention: classify an image from k of its 49 patches"),
    "l2x": ("gumbelkit.apps.select.l2x:main", "instance-wise feature selection on L2X's synthetic data (Chen et al. 2018)"),
    "textgan": ("gumbelkit.apps.textgan.train:main",
                "Gumbel-Softmax text GAN on SeqGAN's oracle or Jane Austen (RelGAN-style)"),
    "nas": ("gumbelkit.apps.nas.train:main",
            "architecture search with GDAS: `gumbelkit train nas gdas|toy|teacher|bench|publish` "
            "(the same as `gumbelkit search ...`)"),
}


def _usage() -> str:
    lines = ["usage: gumbelkit train <app> [options]   (gumbelkit train <app> --help)", "", "applications:"]
    lines += [f"  {name:12s} {help_}" for name, (_, help_) in APPS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``gumbelkit train <app> ...`` to the application's ``main(argv)``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = args[0], args[1:]
    if name not in APPS:
        print(f"gumbelkit train: error: unknown application {name!r}; choose from: {', '.join(APPS)}",
              file=sys.stderr)
        return 2
    module_name, func_name = APPS[name][0].split(":")
    return int(getattr(importlib.import_module(module_name), func_name)(rest) or 0)
