"""torch.distributed helpers: process-group setup under ``torchrun``, a resumable sampler.

Single-process runs (no ``WORLD_SIZE`` in the environment, or ``WORLD_SIZE=1``) need no
process group and behave exactly like the 1-rank case of a distributed run: the same
sampler produces the same order.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

__all__ = [
    "DistInfo",
    "ResumableDistributedSampler",
    "all_gather_objects",
    "all_reduce_mean",
    "any_rank",
    "barrier",
    "broadcast_object",
    "cleanup_distributed",
    "init_distributed",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size``, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group that ``torchrun`` describes (env ``RANK``/``WORLD_SIZE``/...).

    Uses NCCL when CUDA is used and available, gloo otherwise. Without ``torchrun``
    (or with a world size of 1) nothing is initialized. Safe to call twice.

    Parameters
    ----------
    device : str
        The config's device (``auto``/``cpu``/``cuda``): picks the backend.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if world <= 1:
        return DistInfo(0, 1, 0, None)
    use_cuda = torch.cuda.is_available() and device != "cpu"
    backend = "nccl" if use_cuda else "gloo"
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
        log.info("joined process group: rank %d of %d (%s)", rank, world, backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local, dist.get_backend())


def cleanup_distributed() -> None:
    """Destroy the process group if this process created one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if _active():
        dist.barrier()


def all_reduce_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean of a tensor over all ranks (identity when not distributed)."""
    if not _active():
        return values
    out = values.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum of a tensor over all ranks (identity when not distributed)."""
    if not _active():
        return values
    out = values.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def any_rank(flag: bool, device: torch.device | str = "cpu") -> bool:
    """True if ``flag`` is true on any rank (so all ranks take the same branch)."""
    if not _active():
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def all_gather_objects(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` (``[obj]`` when not distributed)."""
    if not _active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not _active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


class ResumableDistributedSampler(Sampler[int]):
    """A :class:`torch.utils.data.DistributedSampler` work-alike that can resume mid-epoch.

    The epoch's order is a permutation drawn from ``torch.Generator().manual_seed(seed
    + epoch)``, padded (repeating its start) to a multiple of ``num_replicas``; rank
    ``r`` takes every ``num_replicas``-th index starting at ``r``. So a global batch of
    ``B`` per rank at step ``s`` covers positions ``[s*B*R, (s+1)*B*R)`` of the
    permutation whatever the world size ``R``: a 2-rank run with batch ``B`` sees the
    same samples per step as a 1-rank run with batch ``2B``.

    ``set_epoch(epoch, start=n)`` skips the first ``n`` indices of this rank's share
    (the batches already trained before a checkpoint), without loading them.

    Parameters
    ----------
    length : int
        Dataset size.
    num_replicas, rank : int
        World size and this rank.
    shuffle : bool
        Shuffle per epoch (else the natural order).
    seed : int
        Base seed of the shuffle.
    """

    def __init__(self, length: int, num_replicas: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0):
        if length < 1:
            raise ValueError(f"cannot sample from an empty dataset (length {length}).")
        self.length = int(length)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.epoch = 0
        self.start = 0
        self.num_samples = math.ceil(self.length / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Use ``epoch``'s order, beginning at this rank's ``start``-th index."""
        self.epoch = int(epoch)
        self.start = int(start)

    def indices(self) -> list[int]:
        """This rank's full index list for the current epoch (before ``start`` is skipped)."""
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.length, generator=g).tolist()
        else:
            order = list(range(self.length))
        pad = self.total_size - len(order)
        if pad > 0:
            order += (order * math.ceil(pad / len(order)))[:pad]
        return order[self.rank : self.total_size : self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices()[self.start :])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start)
