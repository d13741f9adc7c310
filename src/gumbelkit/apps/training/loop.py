r"""The one training loop, shared by every application.

An application supplies a small :class:`Task` (the model, how to fetch a batch, the step's loss,
evaluation and end-of-run outputs); :func:`run` does everything else: validation of the config,
the run directory, seeding, device, distributed setup, the data order, the temperature schedule,
the guards against non-finite values, metrics, terminal output, checkpoints and exact resumption.

Determinism contract (what makes ``--resume`` bitwise exact on CPU):

* the data order of epoch ``e`` is a permutation drawn from a fresh generator seeded with
  ``(seed, e)``, so it does not depend on what happened before;
* all randomness of a step comes from the loop's generator (passed in :class:`StepContext`), whose
  state, with the torch / numpy / python global states, goes into every checkpoint;
* tau is ``schedule(step)``, a pure function of the step;
* evaluation draws from its own freshly seeded generator, so it never shifts the training stream;
* a resumption must use the same trajectory-relevant config, torch thread count, number of
  processes and device type as the checkpoint's run (checked; the reason is given otherwise).

In a distributed run every rank holds the same generator state and draws randomness with the
*global* batch's shape (:meth:`StepContext.local` picks the rank's rows), so a 2-process run sees
the same data, binarization and noise as a 1-process run with the same global batch.

Faults (see ``docs/reliability.md``): before each optimizer step the loss and the gradients are
checked; a NaN/inf stops the run (``--on-nonfinite stop``, the default) with a message naming the
step, the cause and the last good checkpoint, or skips that optimizer step
(``--on-nonfinite skip``). A checkpoint is written only from finite parameters and optimizer
state. In a distributed run an exception on any rank makes every rank raise the same
:class:`~gumbelkit.apps.training.distributed.DistributedError`.
"""

from __future__ import annotations

import importlib.util
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from gumbelkit.apps.training.checkpoint import (
    CHECKPOINT_NAME,
    CheckpointError,
    atomic_write_text,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from gumbelkit.apps.training.config import CONFIG_NAME, TrainConfig, config_to_dict
from gumbelkit.apps.training.console import Console, format_duration
from gumbelkit.apps.training.distributed import (
    DistInfo,
    all_reduce_mean,
    average_gradients,
    broadcast_parameters,
    cleanup_distributed,
    init_distributed,
    max_divergence_across_ranks,
    rank_failures,
    shard_rows,
)
from gumbelkit.apps.training.errors import TrainingDiverged
from gumbelkit.apps.training.metrics import METRICS_NAME, MetricsLogger
from gumbelkit.apps.training.rundir import check_run_dir, prepare_run_dir
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

    def after_step(self, ctx: StepContext) -> dict[str, float]:
        """Called after every applied optimizer step with the step's context (``ctx.step`` counts
        the steps before it), e.g. the architecture update of a bi-level search; returns floats
        to log. Draw any randomness from ``ctx.generator`` to keep ``--resume`` exact. Nothing by
        default."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """State beyond the model and its optimizer that a checkpoint must hold (e.g. a GAN's
        discriminator and its optimizer, stepped inside :meth:`training_step`, or a search's
        architecture optimizer, stepped in :meth:`after_step`). Empty by default."""
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
    """``'auto'`` -> cuda when available, else cpu; an unavailable device is an error naming it.

    Raises:
        ValueError: a malformed name, or a device this machine does not have.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device {name!r} is not a device name; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available here; use --device cpu or auto")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f"device {name!r} requested but this machine has {count} CUDA device(s) "
                             f"(cuda:0 to cuda:{count - 1})")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} requested but MPS is not available here; use --device cpu or auto")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {name!r}: only cpu, cuda and mps are supported")
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


def _run_facts(device: torch.device, info: DistInfo) -> dict[str, Any]:
    """What a resumption must reproduce besides the config (saved in every checkpoint)."""
    return {"threads": torch.get_num_threads(), "world_size": info.world_size,
            "device_type": device.type, "torch": str(torch.__version__)}


def _check_resume(path: Path, payload: dict[str, Any], config: TrainConfig, device: torch.device,
                  info: DistInfo) -> None:
    """Refuse, with every reason, a resumption that would not be bitwise exact."""
    saved = payload["config"]
    reasons = config.resume_conflicts(saved)
    facts, now = payload.get("run", {}), _run_facts(device, info)
    if "threads" in facts and facts["threads"] != now["threads"]:
        reasons.append(f"the checkpoint's run used {facts['threads']} torch threads and this one would use "
                       f"{now['threads']} (reductions split differently; pass --threads {facts['threads']})")
    if "world_size" in facts and facts["world_size"] != now["world_size"]:
        reasons.append(f"the checkpoint's run had {facts['world_size']} process(es) and this one has "
                       f"{now['world_size']} (gradients are summed in a different order)")
    if "device_type" in facts and facts["device_type"] != now["device_type"]:
        reasons.append(f"the checkpoint's run was on {facts['device_type']} and this one is on "
                       f"{now['device_type']} (kernels round differently; pass --device {facts['device_type']})")
    saved_policy = saved.get("on_nonfinite", config.on_nonfinite)
    if saved_policy != config.on_nonfinite and config.on_nonfinite == "stop" and facts.get("skipped_steps", 0):
        reasons.append(f"on_nonfinite is 'stop' but the checkpoint's run already skipped "
                       f"{facts['skipped_steps']} step(s) under 'skip'")
    if reasons:
        raise CheckpointError(
            f"cannot resume from {path}: " + "; ".join(reasons) + ". The resumed run would differ from "
            "an uninterrupted one; start a new run instead (--overwrite, or another --out-dir)"
        )
    if facts.get("torch", torch.__version__) != torch.__version__ and info.is_main:
        print(f"warning: {path} was written by torch {facts['torch']}, this is torch {torch.__version__}; "
              "the resumed run may differ from an uninterrupted one in the last bits", file=sys.stderr)


def _nonfinite(named: Sequence[tuple[str, Tensor]]) -> str | None:
    """The first tensor holding a NaN or inf, as ``"<name> contains nan"``; ``None`` when all are finite."""
    if not named:
        return None
    flags = torch.stack([torch.isfinite(t).all() for _, t in named])  # (P,)
    if bool(flags.all()):  # one host sync for all the tensors
        return None
    name, t = named[int((~flags).nonzero()[0])]
    kind = "nan" if bool(torch.isnan(t).any()) else "inf"
    return f"{name} contains {kind}"


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> list[tuple[str, Tensor]]:
    out = []
    for i, state in enumerate(optimizer.state.values()):
        for k, v in state.items():
            if isinstance(v, Tensor) and v.is_floating_point():
                out.append((f"optimizer state {k} of parameter {i}", v))
    return out


def run(config: TrainConfig, make_task: Callable[[TrainConfig, torch.device], Task]) -> RunResult:
    """Train ``make_task(config, device)`` as ``config`` says and return the outcome.

    The config is expanded (:meth:`TrainConfig.apply_presets`) and validated first; nothing is
    written before every check has passed (config, run directory, checkpoint, the task's data).

    Args:
        config: the run configuration.
        make_task: builds the task; called after seeding, so model initialisation is seeded. It
            may raise ``ValueError`` for a config that does not fit its data (e.g. a subset
            larger than the dataset).

    Returns:
        :class:`RunResult`.

    Raises:
        ValueError: a bad config value or device, or an unusable run directory
            (:class:`~gumbelkit.apps.training.errors.RunDirectoryError`).
        CheckpointError: ``resume`` found an unreadable, unsafe or altered checkpoint, or one
            whose run cannot be continued bitwise with this config (the reasons are listed).
        TrainingDiverged: a loss, gradient or parameter became NaN or infinite (the last good
            checkpoint is kept; the message names the step, the cause and that checkpoint).
        OSError: a file could not be written (the message names it).
        DistributedError: in a distributed run, on every rank, when any rank failed.
    """
    t_start = time.perf_counter()
    config = config.apply_presets()
    config.validate()
    device = resolve_device(config.device)
    threads_before = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    failed = True
    info = DistInfo()
    try:
        info = init_distributed(device, config.dist_timeout)
        if device.type == "cuda" and info.enabled:
            device = torch.device("cuda", info.local_rank)
            torch.cuda.set_device(device)
        result = _run(config, make_task, device, info, t_start)
        failed = False
        return result
    finally:
        cleanup_distributed(info, failed=failed)  # no barrier after a failure: it could wait forever
        torch.set_num_threads(threads_before)  # a library call leaves the caller's setting alone


def _run(config: TrainConfig, make_task: Callable[[TrainConfig, torch.device], Task],
         device: torch.device, info: DistInfo, t_start: float) -> RunResult:
    out_dir = Path(config.out_dir)
    ckpt_path = out_dir / CHECKPOINT_NAME
    notes: list[str] = []
    logger = MetricsLogger(out_dir / METRICS_NAME, enabled=False)
    with rank_failures(info, device, "while setting up"):
        # Every check first (nothing is written until they all pass) ...
        rows = shard_rows(config.batch_size, info)
        if info.is_main:
            check_run_dir(out_dir, resume=config.resume, overwrite=config.overwrite)
        payload: dict[str, Any] | None = None
        if config.resume and (ckpt_path.exists() or ckpt_path.is_symlink()):
            payload = load_checkpoint(ckpt_path)
            _check_resume(ckpt_path, payload, config, device, info)
        elif config.resume:
            notes.append(f"--resume: no checkpoint at {ckpt_path}; starting from step 0")
        seed_everything(config.seed)
        task = make_task(config, device)
        model = task.model
        n = task.num_train_examples()
        steps_per_epoch = n // config.batch_size
        if steps_per_epoch < 1:
            raise ValueError(f"batch_size={config.batch_size} exceeds the training set size {n}")
        total = config.max_steps or config.epochs * steps_per_epoch
        # ... then the state ...
        named_params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        params = [p for _, p in named_params]
        optimizer = task.make_optimizer(config)
        generator = torch.Generator(device=device).manual_seed(config.seed + 1)
        generators = {"train": generator}
        step, skipped = 0, 0
        resumed_from: int | None = None
        if payload is not None:
            model.load_state_dict(payload["model"])
            optimizer.load_state_dict(payload["optimizer"])
            task.load_state_dict(payload.get("task", {}))
            restore_rng_state(payload["rng"], generators)
            step = resumed_from = int(payload["step"])
            skipped = int(payload.get("run", {}).get("skipped_steps", 0))
        # ... then the run directory (rank 0 writes).
        if info.is_main:
            notes += prepare_run_dir(out_dir, overwrite=config.overwrite and not config.resume)
            atomic_write_text(out_dir / CONFIG_NAME, _json(config_to_dict(config)))
            tensorboard = config.logger == "tensorboard" or (
                config.logger == "auto" and importlib.util.find_spec("tensorboard") is not None)
            if tensorboard:
                notes.append(f"TensorBoard events go to {out_dir / 'tensorboard'} (--logger jsonl turns them off)")
            logger = MetricsLogger(out_dir / METRICS_NAME, resume_step=resumed_from, tensorboard=tensorboard)
    broadcast_parameters(model, info)

    console = Console(total, step, enabled=info.is_main, progress=config.progress)
    for note in notes:
        console.write(note)
    where = f"from step {resumed_from}" if resumed_from is not None else "from scratch"
    console.status(f"training {total} steps ({steps_per_epoch} per epoch) on {device}"
                  + (f" x {info.world_size} processes" if info.enabled else "")
                  + f", {where}; run directory {out_dir}")

    last_ckpt: int | None = resumed_from

    def stop(step_no: int, epoch: int, tau: float, cause: str, *, applied: bool) -> TrainingDiverged:
        kept = (f"the last good checkpoint is {ckpt_path} (step {last_ckpt})" if last_ckpt is not None
                else "no checkpoint was written yet")
        if applied:  # the parameters themselves are bad: skipping cannot help
            advice = "start a new run with a lower --lr"
        else:
            cause += "; the optimizer step was not applied"
            advice = "resume with --on-nonfinite skip to skip such steps, or start a new run with a lower --lr"
        return TrainingDiverged(f"stopped in step {step_no} of {total} (epoch {epoch}, tau {tau:.4g}): "
                                f"{cause}; {kept}; to go on: {advice}")

    def save() -> None:
        save_checkpoint(ckpt_path, {
            "step": step,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "task": task.state_dict(),
            "rng": capture_rng_state(generators),
            "config": config_to_dict(config),
            "run": {**_run_facts(device, info), "skipped_steps": skipped},
        })

    def eval_generator() -> torch.Generator:
        return torch.Generator(device=device).manual_seed(config.seed + 2)

    perm_epoch, perm = -1, torch.empty(0, dtype=torch.long)
    window: dict[str, float] = {}
    window_steps, window_t0, window_examples = 0, time.perf_counter(), 0
    consecutive = 0
    try:
        while step < total:
            epoch, pos = divmod(step, steps_per_epoch)
            if epoch != perm_epoch:
                perm_epoch, perm = epoch, epoch_permutation(n, config.seed, epoch)
            global_idx = perm[pos * config.batch_size : (pos + 1) * config.batch_size]  # (B,)
            tau = float(task.schedule(step))
            ctx = StepContext(step, epoch, tau, generator, rows, config.batch_size, info)
            model.train()
            with rank_failures(info, device, f"in step {step + 1}"):
                try:
                    optimizer.zero_grad(set_to_none=True)
                    batch = task.get_batch(global_idx[rows], ctx)
                    out = task.training_step(batch, ctx)
                    local_loss = float(out.loss.detach())
                    if math.isfinite(local_loss):
                        out.loss.backward()
                except Exception as exc:
                    exc.add_note(f"in step {step + 1} of {total}")
                    raise
            loss_value = all_reduce_mean({"loss": local_loss}, info, device)["loss"]
            # The guard: every rank decides alike (the loss and the gradients are all-reduced).
            cause = None
            if not math.isfinite(loss_value):
                bad = _nonfinite(named_params)
                if bad is not None:
                    raise stop(step + 1, epoch, tau, f"the loss is {loss_value} because the parameter "
                               f"{bad} (the optimizer step of step {step} made it so)", applied=True)
                cause = f"the loss is {loss_value}"
            else:
                average_gradients(params, info)
                bad = _nonfinite([(n_, p.grad) for n_, p in named_params if p.grad is not None])
                if bad is not None:
                    cause = f"the gradient of {bad} (the loss, {loss_value:.6g}, is finite)"
            if cause is not None:
                if config.on_nonfinite != "skip" or consecutive >= config.max_skipped_steps:
                    if config.on_nonfinite == "skip":
                        cause += (f" ({consecutive + 1} non-finite steps in a row, more than "
                                  f"--max-skipped-steps {config.max_skipped_steps})")
                    raise stop(step + 1, epoch, tau, cause, applied=False)
                optimizer.zero_grad(set_to_none=True)
                skipped += 1
                consecutive += 1
                console.write(f"warning: step {step + 1}: {cause}; skipped its optimizer step "
                              f"({skipped} skipped so far)")
            else:
                if config.grad_clip:
                    # the optimizer's own parameters: a GAN's generator loss also reaches the discriminator
                    torch.nn.utils.clip_grad_norm_(
                        [p for group in optimizer.param_groups for p in group["params"]], config.grad_clip)
                optimizer.step()
                with rank_failures(info, device, f"after step {step + 1}"):
                    extra = task.after_step(ctx)
                consecutive = 0
                window_steps += 1
                for k, v in {"loss": loss_value, **out.metrics, **extra}.items():
                    window[k] = window.get(k, 0.0) + float(v)
            step += 1
            window_examples += config.batch_size
            elapsed = max(time.perf_counter() - window_t0, 1e-9)
            console.step(step, loss_value, tau, window_examples / elapsed)

            last = step == total
            is_ckpt = step % config.checkpoint_every == 0 or last
            is_log = step % config.log_every == 0 or is_ckpt
            is_eval = bool(config.eval_every and step % config.eval_every == 0) or last
            record: dict[str, float] = {}
            means: dict[str, float] = {}
            if is_log:
                means = {k: v / max(window_steps, 1) for k, v in window.items()}
                means = {**all_reduce_mean({k: v for k, v in means.items() if k != "loss"}, info, device),
                         **({"loss": means["loss"]} if "loss" in means else {})}
                rate = window_examples / elapsed
                record = {**means, "tau": tau, "epoch": epoch, "examples_per_s": rate}
                if config.on_nonfinite == "skip":
                    record["skipped_steps"] = skipped
            if is_ckpt:
                # A checkpoint is written only from finite state (the guard above makes this hold;
                # the check makes it a rule).
                bad = _nonfinite([*named_params, *_optimizer_tensors(optimizer)])
                if bad is not None:
                    raise stop(step, epoch, tau, f"{bad} before the checkpoint", applied=True)
            if is_log or is_eval or is_ckpt:
                with rank_failures(info, device, f"after step {step}"):
                    if info.is_main:
                        if is_log:
                            logger.log(step, "train", record)
                            console.train_record(step, epoch, means, tau, record["examples_per_s"])
                        if is_eval:
                            model.eval()
                            with torch.no_grad():
                                valid = task.evaluate("valid", eval_generator())
                            if valid:
                                logger.log(step, "valid", valid)
                                console.valid_record(step, valid)
                        if is_ckpt:
                            save()
                if is_ckpt:
                    last_ckpt = step
            if is_log:
                window, window_steps, window_examples, window_t0 = {}, 0, 0, time.perf_counter()
    finally:
        console.close()
        logger.close()  # nothing logs after the loop; flushes TensorBoard even after a failure

    if info.enabled:
        # A cheap end-of-run check of the data-parallel invariant: every rank holds rank 0's weights.
        divergence = max_divergence_across_ranks(model, info)
        if info.is_main:
            atomic_write_text(out_dir / "distributed.json", _json(
                {"world_size": info.world_size, "backend": str(torch.distributed.get_backend()),
                 "max_abs_param_difference_across_ranks": divergence}))
        # Leave the group before rank 0's end-of-run work, which may take longer than the
        # process group's timeout; the other ranks are done.
        cleanup_distributed(info)
    outputs: dict[str, Any] = {}
    if info.is_main:
        model.eval()
        outputs = task.finish(out_dir, step)
        console.status(f"done: {step} steps in {format_duration(time.perf_counter() - t_start)}; "
                       f"run directory {out_dir}")
    return RunResult(out_dir, step, resumed_from, time.perf_counter() - t_start, outputs)


def _json(values: dict[str, Any]) -> str:
    import json

    return json.dumps(values, indent=2) + "\n"
