"""``gumbelkit train glimpse``: classify an image from k of its 49 4 x 4 patches.

A selector network scores the 49 patches of each image and a k-subset estimator of
:mod:`gumbelkit.subsets` picks ``k`` of them (hard attention); a classifier sees only those
patches (and which ones they are) and both train together. ``--selector sequential`` instead
picks one patch at a time with a categorical estimator of :mod:`gumbelkit.estimators`
(straight-through Gumbel-Softmax by default), each choice seeing the patches chosen so far.
At test the selection is deterministic (top-k scores, or the argmax at each step).

Because selector and classifier train together, the *choice* of patches can carry the label.
An EVAL-X-style evaluator (Jethani et al. 2021), a classifier trained once on random masks
(``--selector evalx``), scores every selection without that loophole; pass its checkpoint with
``--evaluator``. The same evaluator gives the baselines: k random patches, and the k patches
nearest the centre. ``--selector random`` / ``centre`` train a classifier on those fixed policies.
``--train-against evaluator`` trains the selector through the frozen evaluator instead of a
classifier of its own (REAL-X, Jethani et al. 2021), so the choice of patches cannot carry the
label: what it selects must be informative to a classifier that never saw the selector.

Example::

    gumbelkit train glimpse --selector evalx --out-dir runs/glimpse/evalx-mnist
    gumbelkit train glimpse --selector st_topk --k 10 --evaluator runs/glimpse/evalx-mnist/evaluator.pt
    gumbelkit train glimpse --quick

Outputs in ``--out-dir``: ``metrics.jsonl``, ``config.json``, ``checkpoint.pt``,
``results.json`` and ``figures/glimpses.png`` (the chosen patches on test images).
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

from gumbelkit import estimators
from gumbelkit.apps.data.images import DATASETS, image_splits
from gumbelkit.apps.select.common import (
    SUBSET_SELECTORS,
    QuickResult,
    environment,
    provenance,
    quick_result,
    run_main,
    select,
)
from gumbelkit.apps.select.data import patch_mask_to_pixels
from gumbelkit.apps.select.model import MaskedClassifier, PatchScorer
from gumbelkit.apps.training import (
    StepContext,
    StepOutput,
    Task,
    TrainConfig,
    field_help,
    run,
)
from gumbelkit.schedules import ExponentialTau

__all__ = ["GLIMPSE_SELECTORS", "GlimpseConfig", "GlimpseTask", "centre_patches", "main", "quick_run"]

PROG = "gumbelkit train glimpse"
PATCH, SIDE = 4, 28
GRID = SIDE // PATCH  # 7
N_PATCHES = GRID * GRID  # 49
GLIMPSE_SELECTORS = (*SUBSET_SELECTORS, "sequential", "random", "centre", "evalx")
EVAL_KS = (1, 2, 5, 10, 20, 49)


@dataclass
class GlimpseConfig(TrainConfig):
    """The glimpse run: :class:`~gumbelkit.apps.training.TrainConfig` plus the fields below."""

    out_dir: str = field(default="runs/glimpse", metadata=field_help("directory for metrics, checkpoint, results, figures"))
    dataset: str = field(default="mnist", metadata=field_help("image dataset", choices=DATASETS))
    selector: str = field(default="st_topk", metadata=field_help("patch selection policy", choices=GLIMPSE_SELECTORS))
    k: int = field(default=10, metadata=field_help("patches seen, of 49"))
    epochs: int = field(default=10, metadata=field_help("passes over the training images"))
    tau0: float = field(default=1.0, metadata=field_help("initial temperature"))
    tau_end: float = field(default=0.1, metadata=field_help("final temperature (geometric decay over the run)"))
    seq_estimator: str = field(default="st_gs", metadata=field_help("categorical estimator of --selector sequential"))
    width: int = field(default=16, metadata=field_help("channels of the first convolution (the second has twice as many)"))
    train_subset: int = field(default=0, metadata=field_help("use only the first N training images (0: all 50,000)"))
    test_subset: int = field(default=0, metadata=field_help("evaluate on the first N test images (0: all 10,000)"))
    evaluator: str = field(default="", metadata=field_help("EVAL-X evaluator checkpoint (evaluator.pt of an --selector evalx run)"))
    train_against: str = field(default="own", metadata=field_help("the classifier the selector trains through: 'own' (trained jointly) or 'evaluator' (frozen, REAL-X)", choices=("own", "evaluator")))
    data_dir: str = field(default="", metadata=field_help("directory with the IDX files ('' = the default source)"))
    figures: bool = field(default=True, metadata=field_help("draw the chosen patches on test images"))
    checkpoint_every: int = field(default=5000, metadata=field_help("steps between checkpoints (the last step always saves)"))
    quick: bool = field(default=False, metadata=field_help("tiny run (5,000 images, 2 epochs): seconds"))

    def validate(self) -> None:
        super().validate()
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {', '.join(DATASETS)}; got {self.dataset!r}")
        if self.selector not in GLIMPSE_SELECTORS:
            raise ValueError(f"selector must be one of {', '.join(GLIMPSE_SELECTORS)}; got {self.selector!r}")
        if not 1 <= self.k <= N_PATCHES:
            raise ValueError(f"k must be in 1..{N_PATCHES}, got {self.k}")
        for name in ("tau0", "tau_end"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"{name} must be a positive finite number, got {getattr(self, name)}")
        pathwise = estimators.estimator_names("pathwise")
        if self.seq_estimator not in pathwise:
            raise ValueError(f"seq_estimator must be one of {', '.join(pathwise)}; got {self.seq_estimator!r}")
        for name in ("train_subset", "test_subset"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.evaluator and not Path(self.evaluator).is_file():
            raise ValueError(f"evaluator checkpoint not found: {self.evaluator}")
        if self.train_against not in ("own", "evaluator"):
            raise ValueError(f"train_against must be 'own' or 'evaluator', got {self.train_against!r}")
        if self.train_against == "evaluator" and not (self.evaluator and self.selector in (*SUBSET_SELECTORS, "sequential")):
            raise ValueError("train_against='evaluator' needs --evaluator and a trained selector "
                             f"({', '.join((*SUBSET_SELECTORS, 'sequential'))})")

    def with_quick_defaults(self) -> GlimpseConfig:
        quick: dict[str, Any] = {"train_subset": 5000, "test_subset": 1000, "epochs": 2, "out_dir": "runs/glimpse-quick",
                                 "threads": 1, "log_every": 10, "figures": False, "width": 8}
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        return dataclasses.replace(self, **{k: v for k, v in quick.items() if getattr(self, k) == defaults[k]})


def centre_patches(k: int) -> Tensor:
    """The ``k`` patches whose centres are nearest the image centre (ties by index): ``(k,)``."""
    c = torch.arange(GRID, dtype=torch.float64) * PATCH + (PATCH - 1) / 2  # patch centres
    d2 = (c[:, None] - (SIDE - 1) / 2) ** 2 + (c[None, :] - (SIDE - 1) / 2) ** 2  # (7, 7)
    order = sorted(range(N_PATCHES), key=lambda i: (float(d2.flatten()[i]), i))
    return torch.tensor(order[:k])


def random_patch_mask(batch: int, k: int, generator: torch.Generator, device: torch.device) -> Tensor:
    """``(B, 49)`` masks of ``k`` uniformly random patches."""
    keys = torch.rand(batch, N_PATCHES, generator=generator, device=device)
    return torch.zeros(batch, N_PATCHES, device=device).scatter_(1, keys.topk(k, dim=1).indices, 1.0)


class GlimpseModel(nn.Module):
    """The selector (none for the fixed policies) and the classifier of the partly seen image."""

    def __init__(self, selector: str, width: int) -> None:
        super().__init__()
        self.kind = selector
        self.scorer: PatchScorer | None = None
        if selector in SUBSET_SELECTORS:
            self.scorer = PatchScorer(1, width)  # sees the whole image
        elif selector == "sequential":
            self.scorer = PatchScorer(2, width)  # sees what was chosen so far, and where
        self.classifier: nn.Module = MaskedClassifier(10, width)

    def patch_mask(self, x: Tensor, k: int, tau: float, *, generator: torch.Generator | None = None,
                   seq_estimator: str = "st_gs", fixed: Tensor | None = None) -> Tensor:
        """``(B, 49)`` patch mask: differentiable in training, exact (top-k / argmax) in eval."""
        if self.kind in SUBSET_SELECTORS:
            assert self.scorer is not None
            scores = self.scorer(x)  # (B, 49)
            if self.training:
                return select(scores, k, self.kind, tau, generator=generator)
            return torch.zeros_like(scores).scatter_(1, scores.topk(k, dim=1).indices, 1.0)
        if self.kind == "sequential":
            assert self.scorer is not None
            m = x.new_zeros(x.shape[0], N_PATCHES)
            for _ in range(k):
                pm = patch_mask_to_pixels(m, PATCH, SIDE)
                logits = self.scorer(torch.cat([x * pm, pm], dim=-1)).masked_fill(m.detach() > 0.5, -math.inf)
                if self.training:
                    choice = estimators.sample(logits, seq_estimator, tau, -1, generator=generator).output  # (B, 49)
                else:
                    choice = F.one_hot(logits.argmax(dim=-1), N_PATCHES).to(x.dtype)
                m = m + choice
            return m
        assert fixed is not None
        return fixed

    def classify(self, x: Tensor, patch_mask: Tensor) -> Tensor:
        return self.classifier(x, patch_mask_to_pixels(patch_mask, PATCH, SIDE))


def load_evaluator(path: str | Path, dataset: str, device: torch.device) -> MaskedClassifier:
    """The frozen EVAL-X evaluator saved by an ``--selector evalx`` run."""
    payload = torch.load(path, map_location=device, weights_only=True)
    if payload.get("dataset") != dataset:
        raise ValueError(f"the evaluator {path} was trained on {payload.get('dataset')!r}, not {dataset!r}")
    ev = MaskedClassifier(10, int(payload["width"]), int(payload["hidden"])).to(device)
    ev.load_state_dict(payload["state_dict"])
    return ev.requires_grad_(False).eval()


class GlimpseTask(Task):
    """Data, step and evaluation of one glimpse run."""

    model: GlimpseModel

    def __init__(self, config: GlimpseConfig, device: torch.device, argv: Sequence[str] | None = None) -> None:
        self.config, self.device, self.argv = config, device, argv
        self.provenance = provenance(PROG, argv)  # at the start: the code that runs
        self._t0 = time.perf_counter()
        s = image_splits(config.dataset, config.data_dir or None)
        n_train = config.train_subset or len(s.train)
        n_test = config.test_subset or len(s.test)
        self.train_x, self.train_y = s.train[:n_train].to(device), s.train_labels[:n_train].to(device)
        self.valid_x, self.valid_y = s.valid[:n_test].to(device), s.valid_labels[:n_test].to(device)
        self.test_x, self.test_y = s.test[:n_test].to(device), s.test_labels[:n_test].to(device)
        self.model = GlimpseModel(config.selector, config.width).to(device)
        if config.train_against == "evaluator":
            # REAL-X: the classifier is the frozen evaluator; only the selector learns
            self.model.classifier = load_evaluator(config.evaluator, config.dataset, device)
        self.steps_per_epoch = max(n_train // config.batch_size, 1)
        total = config.max_steps or config.epochs * self.steps_per_epoch
        rate = math.log(config.tau0 / config.tau_end) / max(total - 1, 1)
        self.schedule = ExponentialTau(tau0=config.tau0, tau_end=min(config.tau0, config.tau_end), rate=rate, every=1)
        self.centre = torch.zeros(N_PATCHES, device=device).scatter_(0, centre_patches(config.k).to(device), 1.0)

    def num_train_examples(self) -> int:
        return len(self.train_x)

    def get_batch(self, indices: Tensor, ctx: StepContext) -> tuple[Tensor, Tensor]:
        i = indices.to(self.device)
        return self.train_x[i], self.train_y[i]

    def _train_mask(self, x: Tensor, ctx: StepContext) -> Tensor:
        cfg = self.config
        b = ctx.global_batch_size
        if cfg.selector == "random":
            return ctx.local(random_patch_mask(b, cfg.k, ctx.generator, self.device))
        if cfg.selector == "evalx":
            # a random subset of random size: each patch kept with probability r ~ U(0, 1)
            r = torch.rand(b, 1, generator=ctx.generator, device=self.device)
            return ctx.local((torch.rand(b, N_PATCHES, generator=ctx.generator, device=self.device) < r).float())
        if cfg.selector == "centre":
            return self.centre.expand(x.shape[0], -1)
        # sampled selectors draw the global batch's noise (identical on every rank)
        return self.model.patch_mask(x, cfg.k, ctx.tau, generator=ctx.generator, seq_estimator=cfg.seq_estimator)

    def training_step(self, batch: tuple[Tensor, Tensor], ctx: StepContext) -> StepOutput:
        x, y = batch
        m = self._train_mask(x, ctx)  # (B, 49)
        loss = F.cross_entropy(self.model.classify(x, m), y)
        return StepOutput(loss, {})

    @torch.no_grad()
    def test_masks(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """The policy's test-time masks ``(N, 49)`` (deterministic except ``random`` / ``evalx``)."""
        self.model.eval()
        cfg = self.config
        out = []
        for s in range(0, len(x), 1000):
            xb = x[s : s + 1000]
            if cfg.selector in ("random", "evalx"):
                out.append(random_patch_mask(len(xb), cfg.k, generator, self.device))
            elif cfg.selector == "centre":
                out.append(self.centre.expand(len(xb), -1))
            else:
                out.append(self.model.patch_mask(xb, cfg.k, 1.0))
        return torch.cat(out)

    @staticmethod
    @torch.no_grad()
    def accuracy(classifier: nn.Module, x: Tensor, y: Tensor, masks: Tensor) -> float:
        classifier.eval()
        correct = 0
        for s in range(0, len(x), 1000):
            logits = classifier(x[s : s + 1000], patch_mask_to_pixels(masks[s : s + 1000], PATCH, SIDE))
            correct += int((logits.argmax(-1) == y[s : s + 1000]).sum())
        return correct / len(x)

    def evaluate(self, split: str, generator: torch.Generator) -> dict[str, float]:
        x, y = (self.valid_x, self.valid_y) if split == "valid" else (self.test_x, self.test_y)
        return {"accuracy": self.accuracy(self.model.classifier, x, y, self.test_masks(x, generator))}

    def _evaluator(self) -> nn.Module | None:
        cfg = self.config
        if cfg.selector == "evalx":
            return self.model.classifier
        if not cfg.evaluator:
            return None
        return load_evaluator(cfg.evaluator, cfg.dataset, self.device)

    def finish(self, out_dir: Path, step: int) -> dict[str, Any]:
        cfg = self.config
        g = torch.Generator(device=self.device).manual_seed(cfg.seed + 2)
        masks = self.test_masks(self.test_x, g)  # (N, 49)
        test: dict[str, Any] = {"accuracy": self.accuracy(self.model.classifier, self.test_x, self.test_y, masks)}
        test["mask_only_accuracy"] = _mask_only_accuracy(masks, self.test_y, cfg.seed)
        usage = masks.mean(dim=0)
        evaluator = self._evaluator()
        baselines: dict[str, Any] = {}
        if evaluator is not None:
            test["evalx_accuracy"] = self.accuracy(evaluator, self.test_x, self.test_y, masks)
            gb = torch.Generator(device=self.device).manual_seed(cfg.seed + 3)
            for k in sorted({*EVAL_KS, cfg.k}):
                rnd = random_patch_mask(len(self.test_x), k, gb, self.device)
                cen = torch.zeros(N_PATCHES, device=self.device).scatter_(0, centre_patches(k).to(self.device), 1.0)
                baselines[str(k)] = {
                    "random_patches": self.accuracy(evaluator, self.test_x, self.test_y, rnd),
                    "centre_patches": self.accuracy(evaluator, self.test_x, self.test_y,
                                                    cen.expand(len(self.test_x), -1)),
                }
        if cfg.selector == "evalx":
            clf = self.model.classifier
            torch.save({"state_dict": clf.state_dict(), "width": cfg.width, "hidden": clf.hidden, "dataset": cfg.dataset},
                       out_dir / "evaluator.pt")
        figures: dict[str, str] = {}
        if cfg.figures and cfg.selector != "evalx":
            figures["glimpses"] = str(draw_glimpses(self.test_x[:8].cpu(), masks[:8].cpu(), out_dir / "figures" / "glimpses.png",
                                                    f"{cfg.dataset}, {cfg.selector}, k = {cfg.k}"))
        results: dict[str, Any] = {
            "app": "glimpse",
            "dataset": cfg.dataset,
            "selector": cfg.selector,
            "seq_estimator": cfg.seq_estimator if cfg.selector == "sequential" else None,
            "train_against": cfg.train_against,
            "k": cfg.k,
            "seed": cfg.seed,
            "steps": step,
            "epochs": step / self.steps_per_epoch,
            "final_tau": float(self.schedule(max(step - 1, 0))),
            "test": test,
            "valid": self.evaluate("valid", torch.Generator(device=self.device).manual_seed(cfg.seed + 4)),
            "evaluator_baselines": baselines,
            "evaluator": cfg.evaluator or (str(out_dir / "evaluator.pt") if cfg.selector == "evalx" else None),
            "patch_usage": usage.cpu().tolist(),
            "test_masks_first_100": masks[:100].nonzero()[:, 1].reshape(min(100, len(masks)), -1).cpu().tolist()
            if cfg.selector not in ("evalx",) else None,
            "figures": figures,
            "process_seconds": time.perf_counter() - self._t0,
            **self.provenance,
            "config": dataclasses.asdict(cfg),
            "environment": environment(self.device),
        }
        (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        return results


def _mask_only_accuracy(masks: Tensor, y: Tensor, seed: int) -> float:
    """How well the *choice* of patches alone predicts the label (logistic regression on the
    49-bit masks, fitted on half the test images, scored on the other half): label leakage."""
    from sklearn.linear_model import LogisticRegression

    m, t = masks.cpu().numpy(), y.cpu().numpy()
    half = len(m) // 2
    if len(np.unique(m[:half], axis=0)) < 2:
        return float(np.mean(t[half:] == np.bincount(t[:half]).argmax()))  # a fixed mask says nothing
    clf = LogisticRegression(max_iter=500, random_state=seed).fit(m[:half], t[:half])
    return float(clf.score(m[half:], t[half:]))


def draw_glimpses(images: Tensor, masks: Tensor, path: Path, title: str) -> Path:
    """Test images, dimmed, with the chosen patches shown at full contrast and outlined."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    fig = Figure(figsize=(1.5 * len(images), 1.8), layout="constrained")
    axes = fig.subplots(1, len(images))
    for ax, img, m in zip(np.atleast_1d(axes), images, masks, strict=True):
        pix = patch_mask_to_pixels(m[None], PATCH, SIDE)[0]
        shown = img * (0.25 + 0.75 * pix)
        ax.imshow(shown.reshape(SIDE, SIDE).numpy(), cmap="Greys", vmin=0, vmax=1)
        for p in m.nonzero().flatten().tolist():
            r, c = divmod(p, GRID)
            ax.add_patch(Rectangle((c * PATCH - 0.5, r * PATCH - 0.5), PATCH, PATCH, fill=False, ec="#d95f0e", lw=1.0))
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def train(config: GlimpseConfig, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run one glimpse configuration; returns the results dict."""
    return run(config, lambda c, d: GlimpseTask(c, d, argv)).outputs  # type: ignore[arg-type]


def _summary(config: GlimpseConfig, results: dict[str, Any]) -> str:
    t = results["test"]
    extra = f", EVAL-X {t['evalx_accuracy']:.4f}" if "evalx_accuracy" in t else ""
    base = results["evaluator_baselines"].get(str(config.k), {})
    extra += f", random patches {base['random_patches']:.4f}" if base else ""
    return (f"glimpse {config.dataset} / {config.selector}, k={config.k}: test accuracy {t['accuracy']:.4f}{extra}, "
            f"label from the mask alone {t['mask_only_accuracy']:.3f}; results in {config.out_dir}/results.json")


def main(argv: Sequence[str] | None = None) -> int:
    """``gumbelkit train glimpse [options]``; ``--help`` lists every option with its default."""
    return run_main(GlimpseConfig, argv, prog=PROG, doc=__doc__, train=train, summary=_summary)


def quick_run(out_dir: str | Path, dataset: str = "mnist", selector: str = "st_topk", seed: int = 0) -> QuickResult:
    """``--quick`` run (seconds)."""
    config = GlimpseConfig(out_dir=str(out_dir), dataset=dataset, selector=selector, seed=seed, quick=True,
                           progress=False)
    return quick_result(config, train)
