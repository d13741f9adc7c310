"""``gumbelkit train select``: the concrete autoencoder's choice of k = 50 pixels.

A selector picks ``k`` pixels for the whole dataset and a small decoder reconstructs the image
from them (Abid, Balin, Zou 2019). The protocol: the official test set of MNIST or Fashion-MNIST
split into its first 4,000 images (training; the last 10% of them validate) and last 6,000
(test); temperature 10 -> 0.01 geometrically over the run; at test each selector row takes its
argmax. The selected pixels are scored by an ExtraTrees classifier (50 trees) and a 1-nearest-
neighbour classifier trained on the 4,000 and tested on the 6,000, and by the decoder's
reconstruction error.

Selectors: ``concrete`` (the paper's ``k`` independent Concrete rows; a pixel may be chosen
twice) or a k-subset estimator of :mod:`gumbelkit.subsets` over one logit per pixel (always
``k`` distinct pixels).

Example::

    gumbelkit train select --dataset mnist --selector concrete --seed 0
    gumbelkit train select --dataset fashion_mnist --quick

Outputs in ``--out-dir``: ``metrics.jsonl``, ``config.json``, ``checkpoint.pt``,
``results.json`` (accuracies, MSE, the selected pixels, command and commit) and
``figures/selected.png``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gumbelkit.apps.data.images import DATASETS, image_splits
from gumbelkit.apps.select.common import (
    SUBSET_SELECTORS,
    QuickResult,
    environment,
    provenance,
    quick_result,
    run_main,
)
from gumbelkit.apps.select.model import CAEDecoder, ConcreteSelector, SubsetPixelSelector
from gumbelkit.apps.training import (
    StepContext,
    StepOutput,
    Task,
    TrainConfig,
    field_help,
    run,
)
from gumbelkit.schedules import ExponentialTau

__all__ = ["CAE_SELECTORS", "PUBLISHED_ACCURACY", "SelectConfig", "SelectTask", "main", "pixel_scores", "quick_run"]

PROG = "gumbelkit train select"
CAE_SELECTORS = ("concrete", *SUBSET_SELECTORS)
#: Abid et al. 2019: ExtraTrees accuracy on the 50 pixels the concrete autoencoder selects
PUBLISHED_ACCURACY = {"mnist": 0.906, "fashion_mnist": 0.677}


@dataclass
class SelectConfig(TrainConfig):
    """The concrete-selection run: :class:`~gumbelkit.apps.training.TrainConfig` plus the fields below."""

    out_dir: str = field(default="runs/select", metadata=field_help("directory for metrics, checkpoint, results, figures"))
    dataset: str = field(default="mnist", metadata=field_help("image dataset", choices=DATASETS))
    selector: str = field(default="concrete", metadata=field_help("pixel selector", choices=CAE_SELECTORS))
    k: int = field(default=50, metadata=field_help("pixels to select"))
    epochs: int = field(default=300, metadata=field_help("passes over the 3,600 training images (Abid et al.: 300)"))
    batch_size: int = field(default=16, metadata=field_help("batch size (Abid et al.'s code: max(N // 256, 16) = 16)"))
    tau0: float = field(default=10.0, metadata=field_help("initial temperature"))
    tau_end: float = field(default=0.01, metadata=field_help("final temperature (reached at the last step)"))
    hidden: int = field(default=75, metadata=field_help("decoder hidden units"))
    n_fit: int = field(default=4000, metadata=field_help("images of the official test set used for training (the rest test)"))
    data_dir: str = field(default="", metadata=field_help("directory with the IDX files ('' = the default source)"))
    trees: int = field(default=50, metadata=field_help("ExtraTrees estimators"))
    checkpoint_every: int = field(default=20_000, metadata=field_help("steps between checkpoints (the last step always saves)"))
    log_every: int = field(default=1000, metadata=field_help("steps between metric lines"))
    figures: bool = field(default=True, metadata=field_help("draw the selected pixels"))
    quick: bool = field(default=False, metadata=field_help("tiny run (20 epochs of 1,000 images): seconds"))

    def validate(self) -> None:
        super().validate()
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {', '.join(DATASETS)}; got {self.dataset!r}")
        if self.selector not in CAE_SELECTORS:
            raise ValueError(f"selector must be one of {', '.join(CAE_SELECTORS)}; got {self.selector!r}")
        if not 1 <= self.k <= 784:
            raise ValueError(f"k must be in 1..784, got {self.k}")
        for name in ("tau0", "tau_end"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"{name} must be a positive finite number, got {getattr(self, name)}")
        if not 20 <= self.n_fit <= 9980:
            raise ValueError(f"n_fit must be in 20..9980, got {self.n_fit}")
        for name in ("hidden", "trees"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def with_quick_defaults(self) -> SelectConfig:
        quick: dict[str, Any] = {"epochs": 20, "batch_size": 64, "n_fit": 1000, "out_dir": "runs/select-quick",
                                 "threads": 1, "log_every": 50, "figures": False}
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        return dataclasses.replace(self, **{k: v for k, v in quick.items() if getattr(self, k) == defaults[k]})


class CAE(nn.Module):
    """Selector + decoder."""

    def __init__(self, selector: str, k: int, hidden: int, d: int = 784) -> None:
        super().__init__()
        self.selector: ConcreteSelector | SubsetPixelSelector
        if selector == "concrete":
            self.selector = ConcreteSelector(d, k)
            n_in = k
        else:
            self.selector = SubsetPixelSelector(d, k, selector)
            n_in = d
        self.decoder = CAEDecoder(n_in, d, hidden)

    def forward(self, x: Tensor, tau: float, generator: torch.Generator | None = None) -> Tensor:
        return self.decoder(self.selector(x, tau, generator))


def _splits(config: SelectConfig) -> dict[str, Tensor]:
    s = image_splits(config.dataset, config.data_dir or None)
    n_fit = config.n_fit
    n_valid = n_fit // 10  # the last 10% of the training images validate (Abid et al.)
    test_x, test_y = s.test, s.test_labels
    return {"train": test_x[: n_fit - n_valid], "valid": test_x[n_fit - n_valid : n_fit],
            "fit": test_x[:n_fit], "fit_y": test_y[:n_fit],
            "test": test_x[n_fit:], "test_y": test_y[n_fit:]}


def pixel_scores(pixels: np.ndarray, data: dict[str, Tensor], trees: int, seed: int) -> dict[str, float]:
    """ExtraTrees and 1-NN accuracy using only ``pixels`` (fit on ``fit``, scored on ``test``)."""
    from sklearn.ensemble import ExtraTreesClassifier
    from sklearn.neighbors import KNeighborsClassifier

    xf, yf = data["fit"][:, pixels].numpy(), data["fit_y"].numpy()
    xt, yt = data["test"][:, pixels].numpy(), data["test_y"].numpy()
    et = ExtraTreesClassifier(n_estimators=trees, random_state=seed, n_jobs=1).fit(xf, yf)
    nn1 = KNeighborsClassifier(n_neighbors=1, n_jobs=1).fit(xf, yf)
    return {"extratrees_accuracy": float(et.score(xt, yt)), "knn1_accuracy": float(nn1.score(xt, yt))}


class SelectTask(Task):
    """Data, step and evaluation of the concrete autoencoder."""

    model: CAE

    def __init__(self, config: SelectConfig, device: torch.device, argv: Sequence[str] | None = None) -> None:
        self.config, self.device, self.argv = config, device, argv
        self.provenance = provenance(PROG, argv)  # at the start: the code that runs
        self._t0 = time.perf_counter()
        self.data = _splits(config)
        self.train_x = self.data["train"].to(device)
        self.model = CAE(config.selector, config.k, config.hidden).to(device)
        self.steps_per_epoch = max(len(self.train_x) // config.batch_size, 1)
        total = config.max_steps or config.epochs * self.steps_per_epoch
        # geometric tau0 -> tau_end over the run: tau0 * exp(-r t) with r = ln(tau0 / tau_end) / (total - 1)
        rate = math.log(config.tau0 / config.tau_end) / max(total - 1, 1)
        self.schedule = ExponentialTau(tau0=config.tau0, tau_end=config.tau_end, rate=rate, every=1)

    def num_train_examples(self) -> int:
        return len(self.train_x)

    def get_batch(self, indices: Tensor, ctx: StepContext) -> Tensor:
        return self.train_x[indices.to(self.device)]

    def training_step(self, batch: Tensor, ctx: StepContext) -> StepOutput:
        recon = self.model(batch, ctx.tau, ctx.generator)
        loss = F.mse_loss(recon, batch)
        return StepOutput(loss, {})

    @torch.no_grad()
    def evaluate(self, split: str, generator: torch.Generator) -> dict[str, float]:
        """Reconstruction MSE (per pixel) of ``split`` with the test-time (argmax / top-k) selection."""
        self.model.eval()
        x = self.data[split].to(self.device)
        return {"mse": float(F.mse_loss(self.model(x, 1.0), x))}

    def finish(self, out_dir: Path, step: int) -> dict[str, Any]:
        cfg = self.config
        self.model.eval()
        pixels = self.model.selector.selected().cpu().numpy()
        test = {**self.evaluate("test", torch.Generator()), **pixel_scores(pixels, self.data, cfg.trees, cfg.seed)}
        # reconstruction baselines: the training images' mean image; the best linear map from the selected pixels
        test["mse_mean_image"] = float(((self.data["test"] - self.data["train"].mean(dim=0)) ** 2).mean())
        test["mse_linear_from_pixels"] = _linear_mse(pixels, self.data)
        valid = self.evaluate("valid", torch.Generator())
        rng = np.random.default_rng(cfg.seed)
        random_pixels = np.sort(rng.choice(784, size=cfg.k, replace=False))
        baseline = pixel_scores(random_pixels, self.data, cfg.trees, cfg.seed)
        figures: dict[str, str] = {}
        if cfg.figures:
            figures["selected"] = str(_draw_selection(pixels, self.data["test"][:8], out_dir / "figures" / "selected.png",
                                                      f"{cfg.dataset}: {len(pixels)} pixels ({cfg.selector})"))
        sel = self.model.selector
        results: dict[str, Any] = {
            "app": "select",
            "dataset": cfg.dataset,
            "selector": cfg.selector,
            "k": cfg.k,
            "seed": cfg.seed,
            "steps": step,
            "epochs": step / self.steps_per_epoch,
            "final_tau": float(self.schedule(max(step - 1, 0))),
            "distinct_pixels": int(len(pixels)),
            "selected_pixels": pixels.tolist(),
            "mean_max_prob": sel.mean_max_prob() if isinstance(sel, ConcreteSelector) else None,
            "test": test,
            "valid": valid,
            "random_pixels_baseline": {**baseline, "pixels": random_pixels.tolist()},
            "published_extratrees_accuracy": PUBLISHED_ACCURACY[cfg.dataset],
            "split": {"fit": cfg.n_fit, "train": len(self.train_x), "valid": len(self.data["valid"]),
                      "test": len(self.data["test"]), "source": "official test set: first n_fit / rest"},
            "figures": figures,
            "process_seconds": time.perf_counter() - self._t0,
            **self.provenance,
            "config": dataclasses.asdict(cfg),
            "environment": environment(self.device),
        }
        (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        return results


def _linear_mse(pixels: np.ndarray, data: dict[str, Tensor]) -> float:
    """Test MSE of the least-squares linear reconstruction (with intercept) from the selected pixels."""
    def design(x: Tensor) -> Tensor:
        return torch.cat([x[:, pixels].double(), torch.ones(len(x), 1, dtype=torch.float64)], dim=1)

    # gelsd (SVD, minimum norm): a selected pixel that is 0 in every training image makes the design
    # rank-deficient, where the default gelsy gave thread-dependent solutions
    w = torch.linalg.lstsq(design(data["train"]), data["train"].double(), driver="gelsd").solution  # (k + 1, 784)
    return float(((design(data["test"]) @ w - data["test"].double()) ** 2).mean())


def _draw_selection(pixels: np.ndarray, images: Tensor, path: Path, title: str) -> Path:
    """The selected pixels on a mean image, and a few test images with only those pixels shown."""
    from matplotlib.figure import Figure

    mask = np.zeros(784)
    mask[pixels] = 1.0
    fig = Figure(figsize=(1.6 * (len(images) + 1), 2.0), layout="constrained")
    axes = fig.subplots(1, len(images) + 1)
    axes[0].imshow(mask.reshape(28, 28), cmap="Reds", vmin=0, vmax=1)
    axes[0].set_title("selected", fontsize=8)
    for ax, img in zip(axes[1:], images, strict=True):
        shown = np.where(mask > 0, img.numpy(), np.nan)
        ax.imshow(img.numpy().reshape(28, 28), cmap="Greys", alpha=0.15)
        ax.imshow(shown.reshape(28, 28), cmap="viridis", vmin=0, vmax=1)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def train(config: SelectConfig, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the concrete selection as ``config`` says; returns the results dict."""
    return run(config, lambda c, d: SelectTask(c, d, argv)).outputs  # type: ignore[arg-type]


def _summary(config: SelectConfig, results: dict[str, Any]) -> str:
    t, b = results["test"], results["random_pixels_baseline"]
    return (f"select {config.dataset} / {config.selector}: {results['distinct_pixels']} pixels, ExtraTrees "
            f"{t['extratrees_accuracy']:.4f} (random pixels {b['extratrees_accuracy']:.4f}, published "
            f"{PUBLISHED_ACCURACY[config.dataset]}), 1-NN {t['knn1_accuracy']:.4f}, test MSE {t['mse']:.4f}; "
            f"results in {config.out_dir}/results.json")


def main(argv: Sequence[str] | None = None) -> int:
    """``gumbelkit train select [options]``; ``--help`` lists every option with its default."""
    return run_main(SelectConfig, argv, prog=PROG, doc=__doc__, train=train, summary=_summary)


def quick_run(out_dir: str | Path, dataset: str = "mnist", selector: str = "concrete", seed: int = 0) -> QuickResult:
    """``--quick`` run (seconds)."""
    config = SelectConfig(out_dir=str(out_dir), dataset=dataset, selector=selector, seed=seed, quick=True,
                          progress=False)
    return quick_result(config, train)
