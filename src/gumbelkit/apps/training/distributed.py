"""Data-parallel training with ``torch.distributed``, launched by ``torchrun``.

``torchrun --nproc-per-node N -m gumbelkit.apps.cli train vae ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and the rendezvous address; :func:`init_distributed` joins the group (gloo on CPU,
nccl on CUDA). Rank 0 broadcasts its initial parameters; after each backward pass the gradients are
averaged across ranks with one all-reduce of a flat buffer, so every rank applies the same update
and parameters stay identical. Each rank holds an equal shard of every global batch (see
:func:`shard_rows`), so the averaged gradient is the gradient of the global-batch mean loss.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = [
    "DistInfo",
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


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group when launched by ``torchrun``; a no-op otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank)


def cleanup_distributed(info: DistInfo) -> None:
    """Leave the process group (after a final barrier)."""
    if info.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


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
