r"""``gumbelkit train classifier``: a small CNN trained on real MNIST / Fashion-MNIST images.

It scores generated images (the fraction classified as the class they were asked for) and is
trained only on the real training split, on grey levels, like the images the dVAE decoder emits
(for MNIST, the Bernoulli means). Its own test accuracy is in ``results.json`` (for MNIST also on
the fixed-binarized test images the dVAE is trained on).

Example::

    gumbelkit train classifier --dataset fashion_mnist --epochs 3 --out-dir runs/clf-fashion
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gumbelkit.apps.data import CLASS_NAMES, DATASETS, image_splits, mnist_splits
from gumbelkit.apps.training import (
    CheckpointError,
    StepContext,
    StepOutput,
    Task,
    TrainConfig,
    TrainingDiverged,
    config_from_dict,
    load_checkpoint,
    parse_config,
    run,
)
from gumbelkit.apps.training.loop import CHECKPOINT_NAME

__all__ = ["ClassifierConfig", "ImageClassifier", "load_classifier", "main", "predict"]

PROG = "gumbelkit train classifier"


class ImageClassifier(nn.Module):
    """conv(16) - pool - conv(32) - pool - 128 - classes, ReLU; input ``(B, 784)`` in ``[0, 1]``."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 16, 14, 14)
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, 7, 7)
            nn.Flatten(), nn.Linear(32 * 49, 128), nn.ReLU(), nn.Linear(128, classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.view(-1, 1, 28, 28) * 2.0 - 1.0)  # (B, classes) logits


@torch.no_grad()
def predict(model: ImageClassifier, images: Tensor) -> Tensor:
    """``(N, 784)`` float in ``[0, 1]`` or ``(N, 28, 28)`` uint8 -> ``(N,)`` predicted classes."""
    if images.dtype == torch.uint8:
        images = images.reshape(len(images), -1).float() / 255.0
    model.eval()
    return torch.cat([model(images[s : s + 1000]).argmax(1) for s in range(0, len(images), 1000)])


@dataclass
class ClassifierConfig(TrainConfig):
    """The classifier run: :class:`~gumbelkit.apps.training.TrainConfig` plus the fields below."""

    out_dir: str = field(default="runs/classifier", metadata={"help": "directory for metrics, checkpoint, results"})
    dataset: str = field(default="mnist", metadata={"help": "'mnist' or 'fashion_mnist'", "choices": DATASETS})
    epochs: int = field(default=3, metadata={"help": "passes over the training set"})
    batch_size: int = field(default=64, metadata={"help": "batch size"})
    data_dir: str = field(default="", metadata={"help": "directory with the IDX files ('' = the default source)"})
    train_subset: int = field(default=0, metadata={"help": "use only the first N training images (0: all 50,000)"})
    test_subset: int = field(default=0, metadata={"help": "evaluate on the first N test images (0: all 10,000)"})
    quick: bool = field(default=False, metadata={"help": "tiny smoke run (2,000 images, 150 steps): seconds"})

    def validate(self) -> None:
        super().validate()
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {', '.join(DATASETS)}; got {self.dataset!r}")
        for name in ("train_subset", "test_subset"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def with_quick_defaults(self) -> ClassifierConfig:
        quick: dict[str, Any] = {"train_subset": 2000, "test_subset": 1000, "max_steps": 150, "log_every": 50,
                                 "checkpoint_every": 150, "out_dir": "runs/classifier-quick", "threads": 1}
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        return dataclasses.replace(self, **{k: v for k, v in quick.items() if getattr(self, k) == defaults[k]})


class ClassifierTask(Task):
    model: ImageClassifier

    def __init__(self, config: ClassifierConfig, device: torch.device) -> None:
        self.config, self.device = config, device
        self._t0 = time.perf_counter()
        s = image_splits(config.dataset, config.data_dir or None)
        n_train, n_test = config.train_subset or len(s.train), config.test_subset or len(s.test)
        self.x, self.y = s.train[:n_train].to(device), s.train_labels[:n_train].to(device)
        self.eval_sets = {"valid": (s.valid[:n_test], s.valid_labels[:n_test]),
                          "test": (s.test[:n_test], s.test_labels[:n_test])}
        if config.dataset == "mnist":
            b = mnist_splits(config.data_dir or None, binarization="fixed")
            self.eval_sets["test_binarized"] = (b.test[:n_test], b.test_labels[:n_test])
        self.model = ImageClassifier(len(CLASS_NAMES[config.dataset])).to(device)

    def num_train_examples(self) -> int:
        return len(self.x)

    def get_batch(self, indices: Tensor, ctx: StepContext) -> tuple[Tensor, Tensor]:
        i = indices.to(self.device)
        return self.x[i], self.y[i]

    def training_step(self, batch: tuple[Tensor, Tensor], ctx: StepContext) -> StepOutput:
        x, y = batch
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        return StepOutput(loss, {"accuracy": float((logits.argmax(1) == y).float().mean())})

    def evaluate(self, split: str, generator: torch.Generator) -> dict[str, float]:
        x, y = self.eval_sets[split]
        pred = predict(self.model, x.to(self.device)).cpu()
        return {"accuracy": float((pred == y).float().mean())}

    def finish(self, out_dir: Path, step: int) -> dict[str, Any]:
        from gumbelkit.apps.dvae.train import _argv_of, _git_commit

        g = torch.Generator()
        results: dict[str, Any] = {
            "app": "classifier", "dataset": self.config.dataset, "steps": step,
            "accuracy": {split: self.evaluate(split, g)["accuracy"] for split in self.eval_sets},
            "test_examples": len(self.eval_sets["test"][1]),
            "process_seconds": time.perf_counter() - self._t0,
            "git_commit": _git_commit(),
            "command": "gumbelkit train classifier " + " ".join(_argv_of(self.config)),
            "config": dataclasses.asdict(self.config),
        }
        (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        return results


def load_classifier(run_dir: str | Path, device: torch.device | str = "cpu") -> tuple[ImageClassifier, dict[str, Any]]:
    """The trained classifier of ``run_dir`` and its ``results.json``.

    Raises:
        ValueError: the directory holds no finished classifier run.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "results.json").is_file() or not (run_dir / CHECKPOINT_NAME).is_file():
        raise ValueError(f"{run_dir} is not a finished classifier run (needs results.json and {CHECKPOINT_NAME}); "
                         "train one with `gumbelkit train classifier --dataset NAME --out-dir DIR`")
    config = config_from_dict(ClassifierConfig, json.loads((run_dir / "config.json").read_text()))
    model = ImageClassifier(len(CLASS_NAMES[config.dataset]))
    model.load_state_dict(load_checkpoint(run_dir / CHECKPOINT_NAME)["model"])
    return model.to(device).eval(), json.loads((run_dir / "results.json").read_text())


def main(argv: Sequence[str] | None = None) -> int:
    """``gumbelkit train classifier [options]``."""
    try:
        config = parse_config(ClassifierConfig, argv, prog=PROG, description=__doc__.split("\n\n")[0] if __doc__ else None)
        if config.quick:
            config = config.with_quick_defaults()
        results = run(config, lambda c, d: ClassifierTask(c, d)).outputs  # type: ignore[arg-type]
    except (ValueError, CheckpointError, TrainingDiverged) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, TrainingDiverged) else 2
    if results:
        acc = ", ".join(f"{k} {100 * v:.2f}%" for k, v in results["accuracy"].items())
        print(f"classifier on {config.dataset}: accuracy {acc}; results in {config.out_dir}/results.json")
    return 0
