r"""The one training loop, shared by every application.

An application supplies a small :class:`Task` (the model, how to fetch a batch, the step's loss,
evaluation and end-of-run outputs); :func:`run` does everything else: seeding, device, distributed
setup, the data order, the temperature schedule, the NaN guard, metrics, the progress bar,
checkpoints and exact resumption.

Determinism contract (what makes ``--resume`` bitwise exact on CPU):

* the data order of epoch ``e`` is a permutation drawn from a fresh generator seeded with
  ``(seed, e)``, so it does not depend on what happened before;
* all randomness of a step comes from the loop's generator (passed in :class:`StepContext`), whose
  state, with the torch / numpy / python global states, goes into every checkpoint;
* tau is ``schedule(step)``, a pure function of the step;
* evaluation draws from its own freshly seeded generator, so it never shifts the training stream.

In a distributed run every rank holds the same generator state and draws randomness with the
*global* batch's shape (:meth:`StepContext.local` picks the rank's rows), so a 2-process run sees
the same data, binarization and noise as a 1-process run with the same global batch.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from gumbelkit.apps.training.checkpoint import (
    CheckpointError,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from gumbelkit.apps.training.config import TrainConfig
from gumbelkit.apps.training.distributed import (
    DistInfo,
    all_reduce_mean,
    average_gradients,
    broadcast_parameters,
    cleanup_distributed,
    init_distributed,
    max_divergence_across_ranks,
    shard_rows,
)
from gumbelkit.apps.training.metrics import MetricsLogger, Progress
from gumbelkit.schedules import ConstantTau, Schedule

__all__ = [
    "CHECKPOINT_NAME",
    "RunResult",
    "StepContext",
    "StepOutput",
    "Task",
    "TrainingDiverged",
    "epoch_permutation",
    "resolve_device",
    "run",
    "seed_everything",
]

CHECKPOINT_NAME = "checkpoint.pt"
# Fields that may differ between a run and its resumption without changing its parameters.
_RESUMABLE_CHANGES = {"resume", "progress", "threads", "out_dir", "checkpoint_every", "log_every",
                      "eval_every", "epochs", "max_steps", "device"}


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class StepOutput(NamedTuple):
    """What a training step returns: the scalar loss to minimise and floats to log."""

    loss: Tensor
    metrics: dict[str, float]


@dataclass
class StepContext:
    """What the loop tells a step.

    Attributes:
        step: optimizer steps done before this one.
        epoch: the current epoch.
        tau: the temperature ``schedule(step)``.
        generator: the training generator; identical on every rank, so draw with the *global*
            batch's shape and keep your rows with :meth:`local`.
        rows: ``(B_local,)`` positions of this rank's examples within the global batch.
        global_batch_size: ``B``.
        dist: the distributed setting.
    """

    step: int
    epoch: int
    tau: float
    generator: torch.Generator
    rows: Tensor
    global_batch_size: int
    dist: DistInfo

    def local(self, t: Tensor) -> Tensor:
        """This rank's rows of a tensor drawn with the global batch's leading size."""
        return t if not self.dist.enabled else t[self.rows.to(t.device)]

    def to_global(self, t: Tensor) -> Tensor:
        """Place this rank's rows into a zero tensor with the global batch's leading size.

        Lets a sampler that draws noise with its input's shape draw the global batch's noise;
        gradients flow back to ``t``. The identity when not distributed.
        """
        if not self.dist.enabled:
            return t
        full = t.new_zeros((self.global_batch_size, *t.shape[1:]))
        return full.index_put((self.rows.to(t.device),), t)


@dataclass
class RunResult:
    """What :func:`run` returns (on every rank; ``outputs`` only on rank 0)."""

    out_dir: Path
    step: int
    resumed_from: int | None
    wall_seconds: float
    outputs: dict[str, Any]


class Task:
    """The application-specific part of a training run. Subclass and fill in.

    Attributes:
        model: the ``nn.Module`` being trained (already on the run's device).
        schedule: ``tau = schedule(step)``; a constant 1 by default.
    """

    model: nn.Module
    schedule: Schedule = ConstantTau(1.0)

    def num_train_examples(self) -> int:
        """Size of the training set."""
        raise NotImplementedError

    def get_batch(self, indices: Tensor, ctx: StepContext) -> Any:
        """This rank's batch for the training-set ``indices`` (``(B_local,)``)."""
        raise NotImplementedError

    def training_step(self, batch: Any, ctx: StepContext) -> StepOutput:
        """The loss of one batch (mean over the rank's examples) and metrics to log."""
        raise NotImplementedError

    def make_optimizer(self, config: TrainConfig) -> torch.optim.Optimizer:
        """Adam at ``config.lr`` by default."""
        return torch.optim.Adam(self.model.parameters(), lr=config.lr)

    def state_dict(self) -> dict[str, Any]:
        """State beyond the model and its optimizer that a checkpoint must hold (e.g. a GAN's
        discriminator and its optimizer, stepped inside :meth:`training_step`). Empty by default."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (called on ``--resume``)."""

    def evaluate(self, split: str, generator: torch.Generator) -> dict[str, float]:
        """Metrics on ``split`` (``"valid"``); run on rank 0 only. Empty by default."""
        return {}

    def finish(self, out_dir: Path, step: int) -> dict[str, Any]:
        """End-of-run outputs (test evaluation, figures, results file); rank 0 only."""
        return {}


def resolve_device(name: str) -> torch.device:
    """``'auto'`` -> cuda when present else cpu; ``'cuda'`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} requested but CUDA is not available; use --device cpu")
    return device


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global RNG and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002  (seeding the global RNG is the point)
    torch.manual_seed(seed)


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    """The data order of ``epoch``: a function of ``(seed, epoch)`` only."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(n, generator=g)


def _check_resume_config(saved: dict[str, Any], config: TrainConfig) -> None:
    current = dataclasses.asdict(config)
    diff = sorted(
        k for k in set(saved) | set(current)
        if k not in _RESUMABLE_CHANGES and saved.get(k) != current.get(k)
    )
    if diff:
        details = ", ".join(f"{k}: checkpoint {saved.get(k)!r} vs now {current.get(k)!r}" for k in diff)
        raise CheckpointError(f"cannot resume: the checkpoint was written with a different config ({details})")


def run(config: TrainConfig, make_task: Callable[[TrainConfig, torch.device], Task]) -> RunResult:
    """Train ``make_task(config, device)`` as ``config`` says and return the outcome.

    Args:
        config: the validated run configuration.
        make_task: builds the task; called after seeding, so model initialisation is seeded.

    Returns:
        :class:`RunResult`.

    Raises:
        TrainingDiverged: the loss became NaN or infinite (the previous checkpoint is kept).
        CheckpointError: ``--resume`` found an unreadable or unsafe checkpoint, or one written
            with a different config.
    """
    t_start = time.perf_counter()
    device = resolve_device(config.device)
    threads_before = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    info = init_distributed(device)
    if device.type == "cuda" and info.enabled:
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    try:
        return _run(config, make_task, device, info, t_start)
    finally:
        cleanup_distributed(info)
        torch.set_num_threads(threads_before)  # a library call leaves the caller's setting alone


def _run(config: TrainConfig, make_task: Callable[[TrainConfig, torch.device], Task],
         device: torch.device, info: DistInfo, t_start: float) -> RunResult:
    out_dir = Path(config.out_dir)
    ckpt_path = out_dir / CHECKPOINT_NAME
    rows = shard_rows(config.batch_size, info)
    seed_everything(config.seed)
    task = make_task(config, device)
    model = task.model
    broadcast_parameters(model, info)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = task.make_optimizer(config)
    generator = torch.Generator(device=device).manual_seed(config.seed + 1)
    generators = {"train": generator}

    n = task.num_train_examples()
    steps_per_epoch = n // config.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size={config.batch_size} exceeds the training set size {n}")
    total = config.max_steps or config.epochs * steps_per_epoch

    step = 0
    resumed_from: int | None = None
    if config.resume and ckpt_path.exists():
        payload = load_checkpoint(ckpt_path)
        _check_resume_config(payload["config"], config)
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        task.load_state_dict(payload.get("task", {}))
        restore_rng_state(payload["rng"], generators)
        step = resumed_from = int(payload["step"])
    elif config.resume and info.is_main:
        print(f"--resume: no checkpoint at {ckpt_path}; starting from step 0", file=sys.stderr)

    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    logger = MetricsLogger(out_dir / "metrics.jsonl", enabled=info.is_main, resume_step=resumed_from)
    progress = Progress(total, step, config.batch_size, enabled=config.progress and info.is_main)

    def save() -> None:
        if info.is_main:
            save_checkpoint(ckpt_path, {
                "step": step,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "task": task.state_dict(),
                "rng": capture_rng_state(generators),
                "config": dataclasses.asdict(config),
            })

    def eval_generator() -> torch.Generator:
        return torch.Generator(device=device).manual_seed(config.seed + 2)

    perm_epoch, perm = -1, torch.empty(0, dtype=torch.long)
    window: dict[str, float] = {}
    window_steps, window_t0 = 0, time.perf_counter()
    try:
        while step < total:
            epoch, pos = divmod(step, steps_per_epoch)
            if epoch != perm_epoch:
                perm_epoch, perm = epoch, epoch_permutation(n, config.seed, epoch)
            global_idx = perm[pos * config.batch_size : (pos + 1) * config.batch_size]  # (B,)
            tau = float(task.schedule(step))
            ctx = StepContext(step, epoch, tau, generator, rows, config.batch_size, info)
            model.train()
            batch = task.get_batch(global_idx[rows], ctx)
            out = task.training_step(batch, ctx)
            loss_value = all_reduce_mean({"loss": float(out.loss.detach())}, info, device)["loss"]
            if not math.isfinite(loss_value):
                kept = f"the last good checkpoint is {ckpt_path}" if ckpt_path.exists() else "no checkpoint was written yet"
                raise TrainingDiverged(
                    f"loss became {loss_value} at step {step} (epoch {epoch}, tau={tau:.4g}); stopping. "
                    f"{kept}; try a lower --lr or a higher minimum tau"
                )
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            average_gradients(params, info)
            if config.grad_clip:
                # the optimizer's own parameters: a GAN's generator loss also reaches the discriminator
                torch.nn.utils.clip_grad_norm_(
                    [p for group in optimizer.param_groups for p in group["params"]], config.grad_clip)
            optimizer.step()
            step += 1
            progress.update(loss_value, tau)

            window_steps += 1
            for k, v in {"loss": loss_value, **out.metrics}.items():
                window[k] = window.get(k, 0.0) + float(v)
            last = step == total
            if step % config.log_every == 0 or step % config.checkpoint_every == 0 or last:
                elapsed = max(time.perf_counter() - window_t0, 1e-9)
                means = {k: v / window_steps for k, v in window.items()}
                means = {**all_reduce_mean({k: v for k, v in means.items() if k != "loss"}, info, device),
                         "loss": means["loss"]}
                logger.log(step, "train", {**means, "tau": tau, "epoch": epoch,
                                           "examples_per_s": window_steps * config.batch_size / elapsed})
                window, window_steps, window_t0 = {}, 0, time.perf_counter()
            if config.eval_every and step % config.eval_every == 0 and not last and info.is_main:
                model.eval()
                logger.log(step, "valid", task.evaluate("valid", eval_generator()))
            if step % config.checkpoint_every == 0 or last:
                save()
    finally:
        progress.close()

    if info.enabled:
        # A cheap end-of-run check of the data-parallel invariant: every rank holds rank 0's weights.
        divergence = max_divergence_across_ranks(model, info)
        if info.is_main:
            (out_dir / "distributed.json").write_text(json.dumps(
                {"world_size": info.world_size, "backend": str(torch.distributed.get_backend()),
                 "max_abs_param_difference_across_ranks": divergence}, indent=2) + "\n")
    outputs: dict[str, Any] = {}
    if info.is_main:
        model.eval()
        outputs = task.finish(out_dir, step)
    logger.close()
    return RunResult(out_dir, step, resumed_from, time.perf_counter() - t_start, outputs)
