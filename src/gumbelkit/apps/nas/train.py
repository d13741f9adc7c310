r"""Architecture search with GDAS and the retraining of cells, on :mod:`gumbelkit.apps.training`.

* :class:`SearchTask` -- the bi-level search: a weight step on a training batch (the loop's
  optimizer: SGD, Nesterov, cosine learning rate, gradient clip), then an architecture step on
  a validation batch (:meth:`SearchTask.after_step`: Adam on alpha), first order, as in GDAS.
  The architecture is drawn by :class:`gumbelkit.nn.ArchitectureSampler`: ``st_gs`` (GDAS, one
  operation per edge, tau linear from 10 to 0.1), any other pathwise estimator, ``softmax``
  (DARTS, every operation) or ``reinforce`` (score function with a leave-one-out baseline).
* :class:`RetrainTask` -- trains a fixed cell from scratch and reports test accuracy.
* :func:`main` -- the ``gumbelkit search`` command: ``gdas`` (search on Fashion-MNIST, retrain the
  found cell next to random cells and the all-conv cell), ``toy`` and ``teacher`` (known
  answers, :mod:`gumbelkit.apps.nas.known`), ``bench`` (the exhaustive mini-benchmark,
  :mod:`gumbelkit.apps.nas.bench`).

Example::

    gumbelkit search gdas --quick --out-dir runs/nas-quick      # seconds
    gumbelkit search gdas --out-dir runs/nas-gdas               # the committed protocol

References:
    1. X. Dong, Y. Yang, *Searching for a Robust Neural Architecture in Four GPU Hours*, CVPR 2019.
    2. X. Dong, Y. Yang, *NAS-Bench-201*, ICLR 2020.
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import random
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from gumbelkit import estimators
from gumbelkit.apps.nas import figures
from gumbelkit.apps.nas.data import DATASETS, ImageData, load_data
from gumbelkit.apps.nas.model import (
    NB201_OPS,
    CellNetwork,
    FixedCell,
    SearchNetwork,
    cell_edges,
    check_ops,
    genotype_str,
)
from gumbelkit.apps.provenance import git_state
from gumbelkit.apps.training import (
    CheckpointError,
    StepContext,
    StepOutput,
    Task,
    TrainConfig,
    TrainingDiverged,
    field_help,
    parse_config,
    run,
)
from gumbelkit.apps.training.distributed import average_gradients
from gumbelkit.nn import ArchitectureSample
from gumbelkit.schedules import ConstantTau, LinearTau, Schedule

__all__ = [
    "ArchConfig",
    "BilevelSearch",
    "CellConfig",
    "OptimConfig",
    "RetrainConfig",
    "RetrainTask",
    "SearchConfig",
    "SearchTask",
    "main",
    "provenance",
    "retrain",
    "search",
]

PROG = "gumbelkit search"
SEARCH_MODES = ("softmax", "reinforce")


def provenance(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The git commit (and whether the tree had changes), the command and the environment.

    The commit comes from :func:`gumbelkit.apps.provenance.git_state`, or from the ``COMMIT``
    file of a frozen copy of ``src/`` (a long run on ``PYTHONPATH=runs/frozen-<sha>/src`` keeps
    the code it started with while the worktree moves on)."""
    frozen = Path(__file__).resolve().parents[3] / "COMMIT"
    state = ({"commit": frozen.read_text().strip(), "dirty": False} if frozen.exists() else git_state())
    return {
        **state,
        "command": shlex.join(["gumbelkit", "search", *(argv or [])]),
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "threads": torch.get_num_threads(), "machine": platform.machine()},
    }


@dataclass
class OptimConfig(TrainConfig):
    """The weights' optimizer: SGD with Nesterov momentum, cosine learning rate, gradient clip."""

    batch_size: int = field(default=64, metadata=field_help("batch size"))
    lr: float = field(default=0.025, metadata=field_help("the weights' SGD learning rate (cosine-annealed to --lr-min)"))
    lr_min: float = field(default=0.001, metadata=field_help("final weight learning rate"))
    momentum: float = field(default=0.9, metadata=field_help("SGD momentum (Nesterov)"))
    weight_decay: float = field(default=5e-4, metadata=field_help("the weights' weight decay"))
    grad_clip: float = field(default=5.0, metadata=field_help("clip the weights' gradient norm (0: no clipping)"))
    log_every: int = field(default=50, metadata=field_help("steps between metric lines"))
    progress: bool = field(default=False, metadata=field_help("show a progress bar"))
    threads: int = field(default=1, metadata=field_help("torch CPU threads (0: torch's default)"))

    def validate(self) -> None:
        super().validate()
        for name in ("lr_min", "weight_decay", "grad_clip", "momentum"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass
class ArchConfig(OptimConfig):
    """The architecture's estimator and optimizer (alternating with the weights' steps)."""

    estimator: str = field(default="st_gs", metadata=field_help("st_gs (GDAS) or another pathwise estimator; softmax (DARTS); reinforce"))
    tau0: float = field(default=10.0, metadata=field_help("tau at step 0 (linear schedule; GDAS: 10)"))
    tau_end: float = field(default=0.1, metadata=field_help("tau at the last step (GDAS: 0.1)"))
    arch_lr: float = field(default=3e-4, metadata=field_help("Adam learning rate of alpha (GDAS: 3e-4 for 240 epochs)"))
    arch_beta1: float = field(default=0.5, metadata=field_help("Adam beta1 of alpha (GDAS: 0.5)"))
    arch_weight_decay: float = field(default=1e-3, metadata=field_help("weight decay of alpha (GDAS: 1e-3)"))
    reinforce_samples: int = field(default=2, metadata=field_help("reinforce: architectures per step (leave-one-out baseline)"))
    record_every: int = field(default=0, metadata=field_help("steps between alpha snapshots (0: --log-every)"))

    def validate(self) -> None:
        super().validate()
        known = (*estimators.estimator_names("pathwise"), *SEARCH_MODES)
        if self.estimator not in known:
            raise ValueError(f"estimator must be one of {', '.join(known)}; got {self.estimator!r}")
        for name in ("tau0", "tau_end", "arch_lr"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive finite number, got {v}")
        floor = None if self.estimator in SEARCH_MODES else estimators.spec(self.estimator).tau_min
        if floor is not None and min(self.tau0, self.tau_end) < floor:
            raise ValueError(f"estimator {self.estimator!r} needs tau >= {floor:g}; got tau0={self.tau0}, tau_end={self.tau_end}")
        if not 0 <= self.arch_beta1 < 1:
            raise ValueError(f"arch_beta1 must be in [0, 1), got {self.arch_beta1}")
        if self.reinforce_samples < 2:
            raise ValueError(f"reinforce_samples must be >= 2 (leave-one-out baseline), got {self.reinforce_samples}")
        if self.record_every < 0:
            raise ValueError(f"record_every must be >= 0, got {self.record_every}")


@dataclass
class CellConfig(OptimConfig):
    """Data and search space shared by the search and the retraining."""

    dataset: str = field(default="fashion_mnist", metadata=field_help("digits, fashion_mnist or mnist", choices=DATASETS))
    size: int = field(default=14, metadata=field_help("image side: 14 average-pools 28 x 28 images by 2; 0 keeps the native size"))
    data_dir: str = field(default="", metadata=field_help("directory with the IDX files ('' = the default source)"))
    train_subset: int = field(default=0, metadata=field_help("use the first N training images (0: all)"))
    valid_subset: int = field(default=0, metadata=field_help("use the first N validation images (0: all)"))
    ops: str = field(default=",".join(NB201_OPS), metadata=field_help("candidate operations, comma-separated"))
    num_nodes: int = field(default=4, metadata=field_help("nodes per cell (4 nodes: 6 edges)"))
    channels: int = field(default=8, metadata=field_help("channels of the first stage"))
    stages: int = field(default=2, metadata=field_help("stages (channels double, resolution halves between stages)"))
    cells_per_stage: int = field(default=1, metadata=field_help("cells per stage"))

    def op_names(self) -> tuple[str, ...]:
        return check_ops([o.strip() for o in self.ops.split(",") if o.strip()])

    def validate(self) -> None:
        super().validate()
        self.op_names()
        if self.num_nodes < 2:
            raise ValueError(f"num_nodes must be >= 2, got {self.num_nodes}")
        for name in ("channels", "stages", "cells_per_stage"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("train_subset", "valid_subset"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass
class SearchConfig(CellConfig, ArchConfig):
    """The search on images: :class:`CellConfig` and :class:`ArchConfig`."""

    out_dir: str = field(default="runs/nas-search", metadata=field_help("directory for metrics, checkpoints, search.json"))
    epochs: int = field(default=10, metadata=field_help("passes over the training subset"))


@dataclass
class RetrainConfig(CellConfig):
    """Training a fixed cell from scratch: :class:`CellConfig` plus the genotype."""

    out_dir: str = field(default="runs/nas-retrain", metadata=field_help("directory for metrics, checkpoints, results.json"))
    epochs: int = field(default=10, metadata=field_help("passes over the training subset"))
    genotype: str = field(default="3,3,3,3,3,3", metadata=field_help("operation index per edge, comma-separated"))
    lr: float = field(default=0.05, metadata=field_help("SGD learning rate (cosine-annealed to --lr-min)"))
    lr_min: float = field(default=0.0, metadata=field_help("final learning rate"))
    test_subset: int = field(default=0, metadata=field_help("evaluate on the first N test images (0: all)"))

    def genotype_tuple(self) -> tuple[int, ...]:
        try:
            g = tuple(int(v) for v in self.genotype.split(","))
        except ValueError:
            raise ValueError(f"genotype must be comma-separated integers, got {self.genotype!r}") from None
        n_e, n_o = len(cell_edges(self.num_nodes)), len(self.op_names())
        if len(g) != n_e or not all(0 <= v < n_o for v in g):
            raise ValueError(f"genotype must be {n_e} indices in [0, {n_o}), got {self.genotype!r}")
        return g

    def validate(self) -> None:
        super().validate()
        self.genotype_tuple()
        if self.test_subset < 0:
            raise ValueError(f"test_subset must be >= 0, got {self.test_subset}")


def _cosine_lr(config: OptimConfig, step: int, total: int) -> float:
    return config.lr_min + 0.5 * (config.lr - config.lr_min) * (1.0 + math.cos(math.pi * min(step / max(total, 1), 1.0)))


def _sgd(config: OptimConfig, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    opt = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0,
                          weight_decay=config.weight_decay)
    if config.grad_clip > 0:
        def clip(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)

        opt.register_step_pre_hook(clip)  # right before every step: the loop owns backward and step
    return opt


def _subset(x: Tensor, n: int) -> Tensor:
    return x if n <= 0 else x[:n]


@torch.no_grad()
def accuracy(forward: Any, x: Tensor, y: Tensor, batch: int = 500) -> float:
    """Fraction of ``x`` classified correctly by ``forward`` (batches of ``batch``)."""
    correct = 0
    for s in range(0, len(x), batch):
        correct += int((forward(x[s : s + batch]).argmax(-1) == y[s : s + batch]).sum())
    return correct / max(len(x), 1)


class BilevelSearch(Task):
    """The alternating search, independent of the data: subclasses set ``model`` (with a
    ``sampler``, ``weight_parameters()`` and ``forward(x, arch)``), ``config`` (an
    :class:`ArchConfig`), ``device``, ``total`` (steps), and supply batches and a criterion.

    Step ``t``: the loop's weight step on a training batch (:meth:`training_step`), then the
    architecture step on a validation batch (:meth:`after_step`), first order as in GDAS.
    """

    model: Any
    config: ArchConfig
    device: torch.device
    total: int
    classification = True

    def _init_search(self) -> None:
        cfg = self.config
        self.schedule: Schedule = (ConstantTau(1.0) if cfg.estimator in SEARCH_MODES
                                   else LinearTau(cfg.tau0, cfg.tau_end, max(self.total - 1, 1)))
        self.arch_optimizer = torch.optim.Adam(self.model.sampler.parameters(), lr=cfg.arch_lr,
                                               betas=(cfg.arch_beta1, 0.999), weight_decay=cfg.arch_weight_decay)
        self.record_every = cfg.record_every or cfg.log_every
        self.history: list[dict[str, Any]] = []
        self.optimizer: torch.optim.Optimizer | None = None
        self._t0 = time.perf_counter()

    def criterion(self, out: Tensor, y: Tensor) -> Tensor:
        """The loss of a batch (cross-entropy by default)."""
        return F.cross_entropy(out, y)

    def valid_batch(self, ctx: StepContext) -> tuple[Tensor, Tensor]:
        """The architecture step's batch (drawn from ``ctx.generator``)."""
        raise NotImplementedError

    def make_optimizer(self, config: TrainConfig) -> torch.optim.Optimizer:
        self.optimizer = _sgd(self.config, self.model.weight_parameters())
        return self.optimizer

    def training_step(self, batch: tuple[Tensor, Tensor], ctx: StepContext) -> StepOutput:
        assert self.optimizer is not None
        for group in self.optimizer.param_groups:
            group["lr"] = _cosine_lr(self.config, ctx.step, self.total)
        x, y = batch
        arch = self.model.sampler(ctx.tau, generator=ctx.generator)
        out = self.model(x, arch)
        loss = self.criterion(out, y)
        metrics = {"train_acc": float((out.detach().argmax(-1) == y).float().mean())} if self.classification else {}
        return StepOutput(loss, metrics)

    def after_step(self, ctx: StepContext) -> dict[str, float]:
        """The architecture step on a validation batch (first order)."""
        x, y = self.valid_batch(ctx)
        sampler = self.model.sampler
        if self.config.estimator == "reinforce":
            n = self.config.reinforce_samples
            losses, log_probs = [], []
            for _ in range(n):
                arch = sampler(ctx.tau, generator=ctx.generator)
                with torch.no_grad():
                    losses.append(self.criterion(self.model(x, arch), y))
                log_probs.append(arch.log_prob.sum())
            values = torch.stack(losses)  # (n,)
            baseline = (values.sum() - values) / (n - 1)  # leave-one-out
            surrogate = ((values - baseline) * torch.stack(log_probs)).mean()
            (grad,) = torch.autograd.grad(surrogate, [sampler.alpha])
            valid_loss = float(values.mean())
        else:
            arch = sampler(ctx.tau, generator=ctx.generator)
            loss = self.criterion(self.model(x, arch), y)
            # only alpha's gradient: autograd skips the weights' gradients
            (grad,) = torch.autograd.grad(loss, [sampler.alpha])
            valid_loss = float(loss.detach())
        sampler.alpha.grad = grad  # replaces what the weight step's backward left there
        average_gradients([sampler.alpha], ctx.dist)
        self.arch_optimizer.step()
        probs = sampler.probs()
        if ctx.step % self.record_every == 0 or ctx.step + 1 == self.total:
            self.history.append({"step": ctx.step + 1, "tau": ctx.tau, "probs": probs.tolist()})
        entropy = float(-(probs * probs.clamp_min(1e-30).log()).sum(-1).mean())
        return {"arch_loss": valid_loss, "arch_entropy": entropy}

    def state_dict(self) -> dict[str, Any]:
        return {"arch_optimizer": self.arch_optimizer.state_dict(), "history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "arch_optimizer" in state:
            self.arch_optimizer.load_state_dict(state["arch_optimizer"])
            self.history = list(state.get("history", []))

    def search_results(self, step: int) -> dict[str, Any]:
        """What every search reports: the derived genotype, alpha, its history, the cost."""
        return {
            "estimator": self.config.estimator,
            "genotype": list(self.model.derive()),
            "probs": self.model.sampler.probs().tolist(),
            "alpha": self.model.sampler.alpha.detach().tolist(),
            "steps": step,
            "final_tau": float(self.schedule(max(step - 1, 0))),
            "history": self.history,
            "process_seconds": time.perf_counter() - self._t0,
            "config": dataclasses.asdict(self.config),
        }


class SearchTask(BilevelSearch):
    """The search of a cell on images (weights on the training split, alpha on the validation split)."""

    model: SearchNetwork
    config: SearchConfig

    def __init__(self, config: SearchConfig, device: torch.device, data: ImageData | None = None) -> None:
        self.config, self.device = config, device
        data = data if data is not None else load_data(config.dataset, size=config.size, data_dir=config.data_dir or None)
        self.train_x = _subset(data.train_x, config.train_subset).to(device)
        self.train_y = _subset(data.train_y, config.train_subset).to(device)
        self.valid_x = _subset(data.valid_x, config.valid_subset).to(device)
        self.valid_y = _subset(data.valid_y, config.valid_subset).to(device)
        self.ops = config.op_names()
        self.model = SearchNetwork(self.ops, config.num_nodes, config.estimator, config.channels, config.stages,
                                   config.cells_per_stage, data.train_x.shape[1], int(data.train_y.max()) + 1).to(device)
        # the schedules' length is the planned run; --max-steps only stops early (exact --resume)
        self.total = config.epochs * max(len(self.train_x) // config.batch_size, 1)
        self._init_search()

    def num_train_examples(self) -> int:
        return len(self.train_x)

    def get_batch(self, indices: Tensor, ctx: StepContext) -> tuple[Tensor, Tensor]:
        i = indices.to(self.device)
        return self.train_x[i], self.train_y[i]

    def valid_batch(self, ctx: StepContext) -> tuple[Tensor, Tensor]:
        idx = torch.randint(len(self.valid_x), (ctx.global_batch_size,), generator=ctx.generator,
                            device=self.device)
        idx = ctx.local(idx)
        return self.valid_x[idx], self.valid_y[idx]

    def _derived_forward(self, x: Tensor) -> Tensor:
        genotype = torch.tensor(self.model.derive(), device=self.device)
        w = F.one_hot(genotype, len(self.ops)).to(x.dtype)
        arch = ArchitectureSample(w, genotype, torch.zeros(len(genotype)), True)
        return self.model(x, arch)

    def evaluate(self, split: str, generator: torch.Generator) -> dict[str, float]:
        """Accuracy of the supernet with the derived (argmax) cell on the validation subset."""
        return {"supernet_acc": accuracy(self._derived_forward, self.valid_x, self.valid_y)}

    def finish(self, out_dir: Path, step: int) -> dict[str, Any]:
        cfg = self.config
        results = {"app": "nas-search", "ops": list(self.ops), "num_nodes": cfg.num_nodes,
                   **self.search_results(step)}
        results["genotype_str"] = genotype_str(results["genotype"], self.ops, cfg.num_nodes)
        results["supernet_valid_acc"] = self.evaluate("valid", torch.Generator())["supernet_acc"]
        (out_dir / "search.json").write_text(json.dumps(results, indent=1) + "\n")
        return results


class RetrainTask(Task):
    """Train a fixed cell from scratch; report validation and test accuracy."""

    model: CellNetwork

    def __init__(self, config: RetrainConfig, device: torch.device, data: ImageData | None = None) -> None:
        self.config, self.device = config, device
        self._t0 = time.perf_counter()
        data = data if data is not None else load_data(config.dataset, size=config.size, data_dir=config.data_dir or None)
        self.train_x = _subset(data.train_x, config.train_subset).to(device)
        self.train_y = _subset(data.train_y, config.train_subset).to(device)
        self.valid_x = _subset(data.valid_x, config.valid_subset).to(device)
        self.valid_y = _subset(data.valid_y, config.valid_subset).to(device)
        self.test_x = _subset(data.test_x, config.test_subset).to(device)
        self.test_y = _subset(data.test_y, config.test_subset).to(device)
        self.ops = config.op_names()
        self.genotype = config.genotype_tuple()
        self.model = CellNetwork(lambda c: FixedCell(c, config.num_nodes, self.ops, self.genotype), config.channels,
                                 config.stages, config.cells_per_stage, data.train_x.shape[1],
                                 int(data.train_y.max()) + 1).to(device)
        # the schedules' length is the planned run; --max-steps only stops early (exact --resume)
        self.total = config.epochs * max(len(self.train_x) // config.batch_size, 1)
        self.optimizer: torch.optim.Optimizer | None = None

    def num_train_examples(self) -> int:
        return len(self.train_x)

    def make_optimizer(self, config: TrainConfig) -> torch.optim.Optimizer:
        self.optimizer = _sgd(self.config, list(self.model.parameters()))
        return self.optimizer

    def get_batch(self, indices: Tensor, ctx: StepContext) -> tuple[Tensor, Tensor]:
        i = indices.to(self.device)
        return self.train_x[i], self.train_y[i]

    def training_step(self, batch: tuple[Tensor, Tensor], ctx: StepContext) -> StepOutput:
        assert self.optimizer is not None
        for group in self.optimizer.param_groups:
            group["lr"] = _cosine_lr(self.config, ctx.step, self.total)
        x, y = batch
        logits = self.model(x)
        return StepOutput(F.cross_entropy(logits, y), {"train_acc": float((logits.detach().argmax(-1) == y).float().mean())})

    def evaluate(self, split: str, generator: torch.Generator) -> dict[str, float]:
        x, y = (self.valid_x, self.valid_y) if split == "valid" else (self.test_x, self.test_y)
        return {"acc": accuracy(self.model, x, y)}

    def finish(self, out_dir: Path, step: int) -> dict[str, Any]:
        cfg = self.config
        results = {
            "app": "nas-retrain",
            "ops": list(self.ops),
            "genotype": list(self.genotype),
            "genotype_str": genotype_str(self.genotype, self.ops, cfg.num_nodes),
            "seed": cfg.seed,
            "steps": step,
            "valid_acc": self.evaluate("valid", torch.Generator())["acc"],
            "test_acc": self.evaluate("test", torch.Generator())["acc"],
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "process_seconds": time.perf_counter() - self._t0,
            "config": dataclasses.asdict(cfg),
        }
        (out_dir / "results.json").write_text(json.dumps(results, indent=1) + "\n")
        return results


def search(config: SearchConfig, data: ImageData | None = None) -> dict[str, Any]:
    """Run one search; returns the contents of ``search.json``."""
    config.validate()
    return run(config, lambda c, d: SearchTask(c, d, data)).outputs  # type: ignore[arg-type]


def retrain(config: RetrainConfig, data: ImageData | None = None) -> dict[str, Any]:
    """Train one fixed cell; returns the contents of ``results.json``."""
    config.validate()
    return run(config, lambda c, d: RetrainTask(c, d, data)).outputs  # type: ignore[arg-type]


def _cached(out_dir: Path, name: str) -> dict[str, Any] | None:
    path = out_dir / name
    return json.loads(path.read_text()) if path.exists() else None


# ---------------------------------------------------------------------------------------------
# `gumbelkit search gdas`: search, then retrain the found cell next to random and all-conv cells
# ---------------------------------------------------------------------------------------------


@dataclass
class GDASConfig(CellConfig):
    """The whole experiment: searches, then retraining of the found, random and all-conv cells."""

    out_dir: str = field(default="runs/nas-gdas", metadata=field_help("directory of every run (search-*/, retrain-*/)"))
    results_dir: str = field(default="", metadata=field_help("where summary.json, table.md and figures/ go ('' = --out-dir)"))
    overwrite: bool = field(default=False, metadata=field_help("replace an existing summary.json in --results-dir"))
    estimator: str = field(default="st_gs", metadata=field_help("the search's estimator (st_gs: GDAS)"))
    search_seeds: int = field(default=2, metadata=field_help("independent searches (seeds 0..N-1)"))
    search_epochs: int = field(default=15, metadata=field_help("epochs of each search over --search-train-subset"))
    search_train_subset: int = field(default=20_000, metadata=field_help("search: training images for the weights (0: all)"))
    lr: float = field(default=0.05, metadata=field_help("search: the weights' SGD learning rate (cosine to --lr-min)"))
    tau0: float = field(default=10.0, metadata=field_help("search: tau at step 0"))
    tau_end: float = field(default=0.1, metadata=field_help("search: tau at the last step"))
    arch_lr: float = field(default=3e-3, metadata=field_help("search: Adam learning rate of alpha"))
    arch_weight_decay: float = field(default=1e-3, metadata=field_help("search: weight decay of alpha"))
    train_subset: int = field(default=20_000, metadata=field_help("retraining: training images (0: all)"))
    retrain_seeds: int = field(default=3, metadata=field_help("seeds of every retrained cell"))
    retrain_epochs: int = field(default=10, metadata=field_help("epochs of each retraining"))
    retrain_lr: float = field(default=0.05, metadata=field_help("retraining: SGD learning rate (cosine to 0)"))
    random_cells: int = field(default=3, metadata=field_help("random cells (uniform operation per edge), each retrained with the retrain seeds"))
    test_subset: int = field(default=0, metadata=field_help("evaluate on the first N test images (0: all)"))
    render: bool = field(default=False, metadata=field_help("only redraw figures/ and table.md from --results-dir/summary.json"))
    quick: bool = field(default=False, metadata=field_help("tiny run for smoke tests (digits, 1 search, 2 seeds, a few epochs)"))

    def with_quick_defaults(self) -> GDASConfig:
        quick: dict[str, Any] = {"dataset": "digits", "size": 0, "channels": 8, "stages": 1, "search_seeds": 1,
                                 "search_epochs": 6, "search_train_subset": 0, "train_subset": 0,
                                 "retrain_seeds": 2, "retrain_epochs": 5, "random_cells": 2,
                                 "out_dir": "runs/nas-gdas-quick", "arch_lr": 0.05}
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        return dataclasses.replace(self, **{k: v for k, v in quick.items() if getattr(self, k) == defaults[k]})

    def validate(self) -> None:
        super().validate()
        for name in ("search_seeds", "search_epochs", "retrain_seeds", "retrain_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.random_cells < 0:
            raise ValueError(f"random_cells must be >= 0, got {self.random_cells}")
        if "conv3x3" not in self.op_names():
            raise ValueError("ops must include conv3x3 (the all-conv baseline cell)")
        self.search_config(0).validate()


    def _common(self) -> dict[str, Any]:
        # --overwrite here replaces summary.json only; finished runs are reused, never deleted
        names = {f.name for f in dataclasses.fields(CellConfig)} - {"out_dir", "epochs", "lr", "lr_min", "seed",
                                                                     "train_subset", "overwrite"}
        return {k: getattr(self, k) for k in names}

    def search_config(self, seed: int) -> SearchConfig:
        return SearchConfig(**self._common(), out_dir=str(Path(self.out_dir) / f"search-{seed}"), seed=seed,
                            epochs=self.search_epochs, train_subset=self.search_train_subset, lr=self.lr,
                            lr_min=self.lr_min, estimator=self.estimator, tau0=self.tau0, tau_end=self.tau_end,
                            arch_lr=self.arch_lr, arch_weight_decay=self.arch_weight_decay)

    def retrain_config(self, name: str, genotype: Sequence[int], seed: int) -> RetrainConfig:
        return RetrainConfig(**self._common(), out_dir=str(Path(self.out_dir) / f"retrain-{name}-seed{seed}"),
                             seed=seed, epochs=self.retrain_epochs, train_subset=self.train_subset,
                             genotype=",".join(str(g) for g in genotype), lr=self.retrain_lr,
                             test_subset=self.test_subset)


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    t = torch.tensor(list(values), dtype=torch.float64)
    return float(t.mean()), float(t.std()) if len(values) > 1 else 0.0


def run_gdas(config: GDASConfig, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The ``gumbelkit search gdas`` experiment; returns the summary (also written as JSON)."""
    config.validate()
    prov = provenance(["gdas", *(argv or [])])  # the code as it is when the run starts
    results_dir = Path(config.results_dir or config.out_dir)
    summary_path = results_dir / "summary.json"
    if summary_path.exists() and not config.overwrite and config.results_dir:
        raise ValueError(f"{summary_path} exists; pass --overwrite to replace it or choose another --results-dir")
    ops = config.op_names()
    n_edges = len(cell_edges(config.num_nodes))
    data = load_data(config.dataset, size=config.size, data_dir=config.data_dir or None)
    t0 = time.perf_counter()

    searches = []
    for s in range(config.search_seeds):
        sc = config.search_config(s)
        searches.append(_cached(Path(sc.out_dir), "search.json") or search(sc, data))
    cells: dict[str, tuple[int, ...]] = {}
    for s, r in enumerate(searches):
        cells[f"found{s}"] = tuple(r["genotype"])
    rng = random.Random(12345)  # the random cells are fixed by this seed, not by the search
    for i in range(config.random_cells):
        cells[f"random{i}"] = tuple(rng.randrange(len(ops)) for _ in range(n_edges))
    cells["allconv"] = (ops.index("conv3x3"),) * n_edges

    runs: dict[str, list[dict[str, Any]]] = {}
    for name, genotype in cells.items():
        runs[name] = []
        for seed in range(config.retrain_seeds):
            rc = config.retrain_config(name, genotype, seed)
            res = _cached(Path(rc.out_dir), "results.json") or retrain(rc, data)
            runs[name].append({"seed": seed, "test_acc": res["test_acc"], "valid_acc": res["valid_acc"],
                               "process_seconds": res["process_seconds"], "parameters": res["parameters"]})

    def group(prefix: str) -> dict[str, Any]:
        accs = [r["test_acc"] for name, rs in runs.items() if name.startswith(prefix) for r in rs]
        m, sd = _mean_std(accs)
        return {"test_acc_mean": m, "test_acc_std": sd, "n": len(accs), "test_acc": accs}

    summary: dict[str, Any] = {
        "app": "nas-gdas",
        **prov,
        "protocol": {k: v for k, v in dataclasses.asdict(config).items() if k not in ("out_dir", "results_dir", "overwrite")},
        "ops": list(ops),
        "num_nodes": config.num_nodes,
        "searches": [{"seed": s, "genotype": r["genotype"], "genotype_str": r["genotype_str"], "probs": r["probs"],
                      "history": r["history"], "supernet_valid_acc": r["supernet_valid_acc"],
                      "process_seconds": r["process_seconds"], "steps": r["steps"]} for s, r in enumerate(searches)],
        "cells": {name: {"genotype": list(g), "genotype_str": genotype_str(g, ops, config.num_nodes), "runs": runs[name]}
                  for name, g in cells.items()},
        "groups": {"found": group("found"), "random": group("random"), "allconv": group("allconv")},
        "process_seconds": time.perf_counter() - t0,
    }
    g = summary["groups"]
    spread = max(g["found"]["test_acc_std"], g["random"]["test_acc_std"])
    summary["found_minus_random"] = g["found"]["test_acc_mean"] - g["random"]["test_acc_mean"]
    summary["seed_spread"] = spread
    results_dir.mkdir(parents=True, exist_ok=True)

    summary["figures"] = figures.gdas_figures(summary, results_dir / "figures")
    summary_path.write_text(json.dumps(summary, indent=1) + "\n")
    (results_dir / "table.md").write_text(figures.gdas_table(summary))
    return summary


SUBCOMMANDS = {
    "gdas": "search a NAS-Bench-201-like cell with GDAS, retrain it next to random and all-conv cells",
    "toy": "exact known answer: six edges x five scalar maps, alpha trained alone",
    "teacher": "learned known answer: recover a teacher network's operations",
    "bench": "exhaustive mini-benchmark on 8x8 digits: every architecture trained, then searched",
    "publish": "copy the toy and teacher summaries from runs/ into results/, redraw every table and figure, "
               "write showcase.json",
}


def _usage() -> str:
    lines = [f"usage: {PROG} <experiment> [options]   ({PROG} <experiment> --help)", "", "experiments:"]
    return "\n".join(lines + [f"  {n:10s} {h}" for n, h in SUBCOMMANDS.items()])


def render_gdas(results_dir: Path) -> dict[str, Any]:
    """Redraw ``figures/`` and ``table.md`` from ``results_dir/summary.json`` (no training)."""
    path = results_dir / "summary.json"
    if not path.exists():
        raise ValueError(f"{path} not found; run the experiment first")
    summary = json.loads(path.read_text())
    figures.gdas_figures(summary, results_dir / "figures")
    (results_dir / "table.md").write_text(figures.gdas_table(summary))
    return summary


def _gdas_main(argv: Sequence[str]) -> int:
    config = parse_config(GDASConfig, argv, prog=f"{PROG} gdas", description=SUBCOMMANDS["gdas"])
    if config.quick:
        config = config.with_quick_defaults()
    if config.render:
        render_gdas(Path(config.results_dir or config.out_dir))
        print(f"redrew {config.results_dir or config.out_dir}/figures and table.md")
        return 0
    s = run_gdas(config, argv)
    g = s["groups"]
    print(f"found cell(s) {[c['genotype_str'] for c in s['searches']]}")
    for name in ("found", "random", "allconv"):
        print(f"  {name:8s} test acc {100 * g[name]['test_acc_mean']:.2f} +- {100 * g[name]['test_acc_std']:.2f} (n={g[name]['n']})")
    print(f"results in {config.results_dir or config.out_dir}/summary.json")
    return 0


def publish(runs: Path, results: Path) -> list[str]:
    """Copy the summaries of ``toy`` and ``teacher`` runs into ``results`` and render every table
    and figure of ``results`` from its JSON (nothing is trained). Returns the files written."""
    import shutil

    written: list[str] = []
    toys: dict[str, dict[str, Any]] = {}
    toy_runs = runs / "nas-toy"
    for d in sorted(toy_runs.iterdir()) if toy_runs.is_dir() else []:
        if (d / "summary.json").exists():
            (results / "toy").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(d / "summary.json", results / "toy" / f"{d.name}.json")
            written.append(str(results / "toy" / f"{d.name}.json"))
    for f in sorted((results / "toy").glob("*.json")) if (results / "toy").is_dir() else []:
        toys[f.stem] = json.loads(f.read_text())
    if toys:
        order = {n: i for i, n in enumerate(("st_gs", "gumbel_rao", "st", "softmax"))}
        toys = dict(sorted(toys.items(), key=lambda kv: order.get(kv[0], 99)))
        (results / "toy" / "toy.md").write_text(figures.toy_table(toys))
        written.append(str(results / "toy" / "toy.md"))
    for src, name in (("nas-teacher", "teacher"), ("nas-teacher-none", "teacher_with_none")):
        if (runs / src / "teacher.json").exists():
            (results / "teacher").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(runs / src / "teacher.json", results / "teacher" / f"{name}.json")
            written.append(str(results / "teacher" / f"{name}.json"))
    for f in sorted((results / "teacher").glob("*.json")) if (results / "teacher").is_dir() else []:
        f.with_suffix(".md").write_text(figures.teacher_table(json.loads(f.read_text())))
        written.append(str(f.with_suffix(".md")))
    bench = results / "bench"
    if (bench / "table.json").exists() and (bench / "compare.json").exists():
        written.append(figures.bench_figure(json.loads((bench / "table.json").read_text()),
                                            json.loads((bench / "compare.json").read_text()), bench / "figures"))
    if (results / "gdas" / "summary.json").exists():
        render_gdas(results / "gdas")
        written.append(str(results / "gdas"))
    if showcase(results) is not None:
        written.append(str(results / "showcase.json"))
    return written


GDAS_SOURCE = ("Dong & Yang, GDAS, CVPR 2019, on NAS-Bench-201 CIFAR-10 (a different benchmark, unavailable "
               "offline; 240-250 search epochs): not comparable")


def showcase(results: Path) -> dict[str, Any] | None:
    """The application's headline numbers for the tour, built from the committed JSON in
    ``results`` (``gdas/summary.json``, ``bench/compare.json``, ``toy/st_gs.json``,
    ``teacher/teacher.json``); written to ``results/showcase.json``. None if there is no GDAS run."""
    def load(rel: str) -> dict[str, Any] | None:
        f = results / rel
        return json.loads(f.read_text()) if f.is_file() else None

    gdas, bench, toy, teacher = (load(r) for r in ("gdas/summary.json", "bench/compare.json", "toy/st_gs.json",
                                                   "teacher/teacher.json"))
    if gdas is None:
        return None
    p, g = gdas["protocol"], gdas["groups"]
    headline: list[dict[str, Any]] = []

    def row(metric: str, ours: float, published: float | None = None, source: str | None = None) -> None:
        headline.append({"metric": metric, "ours": ours, "published": published, "published_source": source})

    if toy is not None:
        row(f"exact toy (6 edges x 5 maps, {toy['replicates']} searches): architectures recovered exactly (%)",
            100 * toy["exact_recovery"])
    if teacher is not None:
        row(f"teacher-student ({teacher['teachers']} teachers): parametric edges recovered (%)",
            100 * teacher["recovered_parametric"])
    if bench is not None:
        for m, label in (("gdas", "GDAS"), ("darts", "DARTS"), ("random", "random search")):
            if m in bench["summary"]:
                row(f"{bench['architectures']}-cell digits benchmark: {label}'s median rank percentile (lower is better)",
                    bench["summary"][m]["median_percentile"])
    data = f"{p['dataset']} {p['size']}x{p['size']}" if p.get("size") else p["dataset"]
    row(f"{data}: retrained test accuracy of the GDAS cells (%)", 100 * g["found"]["test_acc_mean"], 93.61,
        GDAS_SOURCE)
    row(f"{data}: retrained test accuracy of random cells (%)", 100 * g["random"]["test_acc_mean"])
    row(f"{data}: retrained test accuracy of the all-conv3x3 cell (%)", 100 * g["allconv"]["test_acc_mean"])
    out = {
        "app": "nas",
        "summary": (f"GDAS on {data}: {p['search_seeds']} searches x {p['search_epochs']} epochs, cells retrained "
                    f"{p['retrain_epochs']} epochs x {p['retrain_seeds']} seeds; known-answer checks and the "
                    "exhaustive digits benchmark"),
        "train_command": gdas["command"],
        "showcase_command": "gumbelkit search publish",
        "git_commit": gdas["commit"],
        "headline": headline,
        "figure": {"png": "gdas/figures/alpha_tau.png",
                   "caption": f"GDAS search on {data} (seed 0): softmax(alpha) of each edge's operations and tau."},
    }
    (results / "showcase.json").write_text(json.dumps(out, indent=1) + "\n")
    return out


def _publish_main(argv: Sequence[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog=f"{PROG} publish", description=SUBCOMMANDS["publish"])
    parser.add_argument("--runs", default="runs", help="where the toy (nas-toy/<estimator>/) and teacher runs are")
    parser.add_argument("--results", default="results/nas", help="the committed results directory")
    args = parser.parse_args(list(argv))
    for w in publish(Path(args.runs), Path(args.results)):
        print(w)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``gumbelkit search <experiment> [options]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        print(f"{PROG}: error: unknown experiment {name!r}; choose from: {', '.join(SUBCOMMANDS)}", file=sys.stderr)
        return 2
    try:
        if name == "gdas":
            return _gdas_main(rest)
        if name == "publish":
            return _publish_main(rest)
        if name in ("toy", "teacher"):
            from gumbelkit.apps.nas import known

            return known.main_toy(rest) if name == "toy" else known.main_teacher(rest)
        from gumbelkit.apps.nas import bench

        return bench.main(rest)
    except (ValueError, CheckpointError, TrainingDiverged) as exc:
        print(f"{PROG} {name}: error: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, TrainingDiverged) else 2
