"""``gumbelkit train l2x``: instance-wise feature selection on L2X's synthetic datasets.

An explainer scores the 10 features of each point, a k-subset estimator of
:mod:`gumbelkit.subsets` turns the scores into a mask, and a predictor sees only the masked
input; both train together on the soft labels (Chen et al. 2018). At test the mask is the top-k
scores. The metric ranks the features by the explainer's scores: per point, the median rank of
the truly relevant ones (1.5 / 2.5 / 2.5 / 3.0 is perfect for XOR / orange skin / additive /
switch).

Example::

    gumbelkit train l2x --dataset xor --selector l2x --seed 0     # 10^6 points, 1 epoch: ~1 min
    gumbelkit train l2x --dataset switch --selector simple --quick

Outputs in ``--out-dir``: ``metrics.jsonl``, ``config.json``, ``checkpoint.pt`` and
``results.json`` (median-rank mean / sd, accuracy, the command and git commit).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gumbelkit.apps.select.common import (
    SUBSET_SELECTORS,
    QuickResult,
    environment,
    provenance,
    quick_result,
    run_main,
    select,
)
from gumbelkit.apps.select.data import L2X_DATASETS, L2X_K, l2x_synthetic, true_features
from gumbelkit.apps.select.metrics import median_rank
from gumbelkit.apps.select.model import L2XExplainer, L2XPredictor, l2_penalty
from gumbelkit.apps.training import (
    StepContext,
    StepOutput,
    Task,
    TrainConfig,
    field_help,
    run,
)
from gumbelkit.schedules import ConstantTau

__all__ = ["L2XConfig", "L2XTask", "OPTIMAL_MEDIAN_RANK", "QuickResult", "main", "quick_run", "train"]

PROG = "gumbelkit train l2x"
#: median rank of a perfect explainer: the mean of ranks 1..k
OPTIMAL_MEDIAN_RANK = {name: (k + 1) / 2 for name, k in L2X_K.items()}


@dataclass
class L2XConfig(TrainConfig):
    """The L2X run: :class:`~gumbelkit.apps.training.TrainConfig` plus the fields below."""

    out_dir: str = field(default="runs/l2x", metadata=field_help("directory for metrics, checkpoint, results"))
    dataset: str = field(default="xor", metadata=field_help("synthetic dataset", choices=L2X_DATASETS))
    selector: str = field(default="l2x", metadata=field_help("k-subset estimator", choices=SUBSET_SELECTORS))
    epochs: int = field(default=1, metadata=field_help("passes over the training set (L2X: 1)"))
    batch_size: int = field(default=1000, metadata=field_help("batch size (L2X: 1000)"))
    n_train: int = field(default=1_000_000, metadata=field_help("training points (L2X: 10^6), drawn with seed 2 * --seed"))
    n_valid: int = field(default=100_000, metadata=field_help("validation points scored (L2X: 10^5), drawn with seed 2 * --seed + 1"))
    tau: float = field(default=0.1, metadata=field_help("selector temperature (L2X: 0.1; SIMPLE has none)"))
    k: int = field(default=0, metadata=field_help("features selected (0: the dataset's number of relevant ones)"))
    l2: float = field(default=1e-3, metadata=field_help("L2 penalty on the hidden layers' weights (Keras l2)"))
    checkpoint_every: int = field(default=100_000, metadata=field_help("steps between checkpoints (the last step always saves)"))
    quick: bool = field(default=False, metadata=field_help("tiny run (20,000 points, 5,000 scored): seconds"))

    def validate(self) -> None:
        super().validate()
        if self.dataset not in L2X_DATASETS:
            raise ValueError(f"dataset must be one of {', '.join(L2X_DATASETS)}; got {self.dataset!r}")
        if self.selector not in SUBSET_SELECTORS:
            raise ValueError(f"selector must be one of {', '.join(SUBSET_SELECTORS)}; got {self.selector!r}")
        if not (self.tau > 0 and np.isfinite(self.tau)):
            raise ValueError(f"tau must be a positive finite number, got {self.tau}")
        if not 0 <= self.k <= 10:
            raise ValueError(f"k must be in 0..10 (0: the dataset's default), got {self.k}")
        for name in ("n_train", "n_valid"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be >= 2, got {getattr(self, name)}")
        if self.l2 < 0:
            raise ValueError(f"l2 must be >= 0, got {self.l2}")

    @property
    def subset_size(self) -> int:
        return self.k or L2X_K[self.dataset]

    def with_quick_defaults(self) -> L2XConfig:
        """``--quick``: fewer points, one thread; fields set on the command line win."""
        quick: dict[str, Any] = {"n_train": 20_000, "n_valid": 5_000, "batch_size": 100, "epochs": 2,
                                 "out_dir": "runs/l2x-quick", "threads": 1, "log_every": 50}
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        return dataclasses.replace(self, **{k: v for k, v in quick.items() if getattr(self, k) == defaults[k]})


class L2XModel(nn.Module):
    """Explainer + predictor (both in one module, so one optimizer and one checkpoint hold them)."""

    def __init__(self, dataset: str) -> None:
        super().__init__()
        act = "relu" if dataset in ("xor", "orange") else "selu"
        self.explainer = L2XExplainer(10, act)
        self.predictor = L2XPredictor(10, act)


class L2XTask(Task):
    """Data, step and evaluation of one L2X run (see :mod:`gumbelkit.apps.training`)."""

    model: L2XModel

    def __init__(self, config: L2XConfig, device: torch.device, argv: Sequence[str] | None = None) -> None:
        self.config, self.device, self.argv = config, device, argv
        self.provenance = provenance(PROG, argv)  # at the start: the code that runs
        self._t0 = time.perf_counter()
        train = l2x_synthetic(config.dataset, config.n_train, seed=2 * config.seed)
        self.valid = l2x_synthetic(config.dataset, config.n_valid, seed=2 * config.seed + 1)
        self.x, self.y = train.x.to(device), train.y.to(device)
        self.model = L2XModel(config.dataset).to(device)
        self.schedule = ConstantTau(config.tau)
        self.k = config.subset_size

    def num_train_examples(self) -> int:
        return len(self.x)

    def get_batch(self, indices: Tensor, ctx: StepContext) -> tuple[Tensor, Tensor]:
        i = indices.to(self.device)
        return self.x[i], self.y[i]

    def training_step(self, batch: tuple[Tensor, Tensor], ctx: StepContext) -> StepOutput:
        x, y = batch
        scores = self.model.explainer(x)  # (B, 10)
        mask = ctx.local(select(ctx.to_global(scores), self.k, self.config.selector, ctx.tau,
                                generator=ctx.generator))  # (B, 10)
        logits = self.model.predictor(x * mask)  # (B, 2)
        ce = -(y * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()  # soft labels
        reg = l2_penalty(self.model.explainer, self.model.predictor, weight=self.config.l2)
        return StepOutput(ce + reg, {"ce": float(ce.detach())})

    @torch.no_grad()
    def scores(self, x: Tensor) -> Tensor:
        """The explainer's feature scores ``(N, 10)``, in batches (eval mode)."""
        self.model.eval()
        return torch.cat([self.model.explainer(x[s : s + 10_000].to(self.device)) for s in range(0, len(x), 10_000)])

    @torch.no_grad()
    def evaluate(self, split: str, generator: torch.Generator) -> dict[str, float]:
        """Median rank (mean, sd) and the predictor on the top-k mask: accuracy and cross entropy."""
        v = self.valid
        s = self.scores(v.x)
        ranks = median_rank(s.cpu().numpy(), true_features(self.config.dataset, v.branch).numpy(),
                            np.random.default_rng(self.config.seed))
        top = torch.zeros_like(s).scatter_(1, s.topk(self.k, dim=1).indices, 1.0)
        logits = torch.cat([self.model.predictor(v.x[i : i + 10_000].to(self.device) * top[i : i + 10_000])
                            for i in range(0, len(v.x), 10_000)])
        y = v.y.to(self.device)
        ce = -(y * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()
        acc = (logits.argmax(-1) == y.argmax(-1)).float().mean()
        # how often the top-k mask is exactly the point's relevant set
        truth = torch.zeros_like(s).scatter_(1, true_features(self.config.dataset, v.branch).to(self.device), 1.0)
        exact = (top == truth).all(dim=1).float().mean() if self.k == truth.sum(1)[0] else torch.tensor(float("nan"))
        return {"median_rank_mean": float(ranks.mean()), "median_rank_sd": float(ranks.std()),
                "accuracy_topk_mask": float(acc), "ce_topk_mask": float(ce), "exact_set_fraction": float(exact)}

    def finish(self, out_dir: Path, step: int) -> dict[str, Any]:
        cfg = self.config
        valid = self.evaluate("valid", torch.Generator().manual_seed(cfg.seed + 2))
        results: dict[str, Any] = {
            "app": "l2x",
            "dataset": cfg.dataset,
            "selector": cfg.selector,
            "k": self.k,
            "seed": cfg.seed,
            "data_seeds": {"train": 2 * cfg.seed, "valid": 2 * cfg.seed + 1},
            "tau": cfg.tau,
            "steps": step,
            "n_train": cfg.n_train,
            "n_valid": cfg.n_valid,
            "optimal_median_rank": OPTIMAL_MEDIAN_RANK[cfg.dataset] if cfg.k in (0, L2X_K[cfg.dataset]) else None,
            "valid": valid,
            "process_seconds": time.perf_counter() - self._t0,
            **self.provenance,
            "config": dataclasses.asdict(cfg),
            "environment": environment(self.device),
        }
        (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        return results


def train(config: L2XConfig, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run L2X as ``config`` says; returns the results dict."""
    return run(config, lambda c, d: L2XTask(c, d, argv)).outputs  # type: ignore[arg-type]


def _summary(config: L2XConfig, results: dict[str, Any]) -> str:
    v = results["valid"]
    return (f"l2x {config.dataset} / {config.selector}: median rank {v['median_rank_mean']:.3f} "
            f"+- {v['median_rank_sd']:.3f} (optimum {OPTIMAL_MEDIAN_RANK[config.dataset]}), top-k accuracy "
            f"{v['accuracy_topk_mask']:.3f}; results in {config.out_dir}/results.json")


def main(argv: Sequence[str] | None = None) -> int:
    """``gumbelkit train l2x [options]``; ``--help`` lists every option with its default."""
    return run_main(L2XConfig, argv, prog=PROG, doc=__doc__, train=train, summary=_summary)


def quick_run(out_dir: str | Path, dataset: str = "xor", selector: str = "l2x", seed: int = 0) -> QuickResult:
    """``--quick`` run (seconds). Returns the results (no figure)."""
    config = L2XConfig(out_dir=str(out_dir), dataset=dataset, selector=selector, seed=seed, quick=True, progress=False)
    return quick_result(config, train)
