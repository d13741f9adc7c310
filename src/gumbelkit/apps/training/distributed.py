"""Data-parallel training with ``torch.distributed``, launched by ``torchrun``.

``torchrun --nproc-per-node N -m gumbelkit.apps.cli train vae ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and the rendezvous address; :func:`init_distributed` joins the group (gloo on CPU,
nccl on CUDA). Rank 0 broadcasts its initial parameters; after each backward pass the gradients are
averaged across ranks with one all-reduce of a flat buffer, so every rank applies the same update
and parameters stay identical. Each rank holds an equal shard of every global batch (see
:func:`shard_rows`), so the averaged gradient is the gradient of the global-batch mean loss.

Failure is collective: work that can raise on some ranks only (a step, rank 0's checkpoint write
or validation) runs inside :func:`rank_failures`, which all-reduces an error flag when the work
ends. If any rank failed, every rank raises :class:`DistributedError` with the same one-line
cause (the failing rank's), so every process exits promptly with the same message and exit code,
and ``torchrun`` sees the failure. There is no barrier on the way out of a failure (a barrier in a
``finally`` waits forever for a rank stuck in its next all-reduce); the process group's timeout
(``--dist-timeout``) bounds the wait for a rank that died or hangs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = [
    "DistInfo",
    "DistributedError",
    "one_line",
    "rank_failures",
    "all_reduce_mean",
    "average_gradients",
    "max_divergence_across_ranks",
    "broadcast_parameters",
    "cleanup_distributed",
    "init_distributed",
    "shard_rows",
]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the job (``world_size == 1``: not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


class DistributedError(RuntimeError):
    """A rank failed; every rank raises this with the same message and exit code.

    Attributes:
        origin_rank: the (lowest) rank whose work raised, or ``None`` when the collective itself
            failed (another process died or timed out).
        exit_code: the exit code the failing rank's error maps to (see the CLI), the same on
            every rank.
    """

    def __init__(self, message: str, *, origin_rank: int | None = None, exit_code: int = 1) -> None:
        super().__init__(message)
        self.origin_rank = origin_rank
        self.exit_code = exit_code


def one_line(exc: BaseException) -> str:
    """An exception as one line: ``OSError``s name the path, others keep their first line."""
    if isinstance(exc, OSError) and exc.filename is not None:
        where = f"{exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 is not None else "")
        return f"{exc.strerror or type(exc).__name__}: {where}"
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def init_distributed(device: torch.device, timeout_s: float | None = None) -> DistInfo:
    """Join the process group when launched by ``torchrun``; a no-op otherwise.

    Args:
        device: the run's device (gloo on CPU, nccl on CUDA).
        timeout_s: how long a collective waits for the other ranks before failing.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        timeout = None if timeout_s is None else timedelta(seconds=timeout_s)
        dist.init_process_group(backend=backend, timeout=timeout)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank)


def cleanup_distributed(info: DistInfo, *, failed: bool = False) -> None:
    """Leave the process group: after a final barrier on success, at once after a failure."""
    if not (info.enabled and dist.is_initialized()):
        return
    if not failed:
        dist.barrier()
    try:
        dist.destroy_process_group()
    except Exception:  # noqa: BLE001  (tearing down after a failure must not mask it)
        if not failed:
            raise


def _exit_code(exc: BaseException) -> int:
    from gumbelkit.apps.training.errors import exit_code

    return exit_code(exc)


@contextmanager
def rank_failures(info: DistInfo, device: torch.device, where: str) -> Iterator[None]:
    """Run a block that may raise on some ranks only; every rank must enter it at the same point.

    Not distributed: the identity (the exception propagates as it is). Distributed: an exception
    inside the block is held back, an error flag is all-reduced, and if any rank failed every
    rank raises :class:`DistributedError` with the failing rank's one-line cause (chained to the
    original exception on that rank).

    Args:
        where: where the ranks are, for the message (e.g. ``"in step 13"``).
    """
    if not info.enabled:
        yield
        return
    error: Exception | None = None
    try:
        yield
    except Exception as exc:  # noqa: BLE001  (held back until every rank knows)
        error = exc
    on = device if device.type == "cuda" else torch.device("cpu")
    flag = torch.tensor([0 if error is None else 1], dtype=torch.int32, device=on)
    try:
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if int(flag.item()) == 0:
            return
        mine = None if error is None else (f"{type(error).__name__}: {one_line(error)}", _exit_code(error))
        gathered: list[tuple[str, int] | None] = [None] * info.world_size
        dist.all_gather_object(gathered, mine)
    except Exception as exc:  # noqa: BLE001  (the collective itself failed: a rank is gone)
        cause = error if error is not None else exc
        raise DistributedError(
            f"rank {info.rank} lost contact with the other processes {where} ({one_line(exc)})",
            exit_code=_exit_code(error) if error is not None else 1,
        ) from cause
    origin = next(r for r, m in enumerate(gathered) if m is not None)
    message, code = gathered[origin]  # type: ignore[misc]
    raise DistributedError(f"rank {origin} failed {where}: {message}", origin_rank=origin,
                           exit_code=code) from error


def shard_rows(batch_size: int, info: DistInfo) -> Tensor:
    """Positions ``rank, rank + W, rank + 2W, ...`` of a global batch held by this rank.

    Raises:
        ValueError: the global batch does not split evenly across ranks (unequal shards would
            weight examples unequally in the averaged gradient).
    """
    if batch_size % info.world_size:
        raise ValueError(
            f"batch_size={batch_size} must be divisible by the number of processes ({info.world_size})"
        )
    return torch.arange(info.rank, batch_size, info.world_size)


def broadcast_parameters(module: nn.Module, info: DistInfo) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if not info.enabled:
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)


def average_gradients(params: list[nn.Parameter], info: DistInfo) -> None:
    """Average ``.grad`` across ranks in place (one all-reduce over a flat buffer)."""
    if not info.enabled:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])  # (P,)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= info.world_size
    offset = 0
    for p, g in zip(params, grads, strict=True):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def all_reduce_mean(values: dict[str, float], info: DistInfo, device: torch.device) -> dict[str, float]:
    """Average scalar metrics across ranks (identity when not distributed)."""
    if not info.enabled or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    t /= info.world_size
    return {k: float(v) for k, v in zip(keys, t.tolist(), strict=True)}


@torch.no_grad()
def max_divergence_across_ranks(module: nn.Module, info: DistInfo) -> float:
    """Largest absolute difference between any rank's parameters and rank 0's (0.0 when in sync)."""
    if not info.enabled:
        return 0.0
    flat = torch.cat([p.detach().reshape(-1) for p in module.parameters()])  # (P,)
    ref = flat.clone()
    dist.broadcast(ref, src=0)
    diff = (flat - ref).abs().max().reshape(1)
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return float(diff)
