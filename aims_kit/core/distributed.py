"""Several processes, one run: what changes when training runs under ``torchrun`` or ``accelerate launch``.

Those launchers start one process per GPU (or CPU slot) and give each its ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE`` in the environment. Every process trains — the trainer shards
the batches and averages the gradients — but only the main process (rank 0) creates the run
folder, saves the adapter and writes records; the others learn the folder's path from it. A
plain notebook or ``python`` process is a world of one, and nothing here changes its behaviour.
"""

from __future__ import annotations

import os
from typing import Callable, TypeVar

T = TypeVar("T")


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """This process's GPU on its machine (0 outside a launcher)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    return rank() == 0


def _process_group() -> None:
    """Join the launcher's process group (gloo on CPU, NCCL on GPUs) the way the trainer will."""
    import torch
    from accelerate import PartialState

    PartialState(cpu=not torch.cuda.is_available())


def from_main(make: Callable[[], T]) -> T:
    """``make()`` on the main process only; every process returns its result (one broadcast)."""
    if world_size() == 1:
        return make()
    import torch.distributed as dist

    _process_group()
    value = [make() if is_main_process() else None]
    dist.broadcast_object_list(value, src=0)
    return value[0]


def gather_on_main(value: T) -> list[T] | None:
    """Every process's ``value`` in rank order on the main process, ``None`` on the others (``[value]`` alone)."""
    if world_size() == 1:
        return [value]
    import torch.distributed as dist

    _process_group()
    gathered = [None] * world_size() if is_main_process() else None
    dist.gather_object(value, gathered, dst=0)
    return gathered
