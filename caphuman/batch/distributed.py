"""Several processes (GPUs, machines) on one batch: who am I, which jobs are mine, wait for the others.

The processes are started by an existing launcher -- ``accelerate launch`` or ``torchrun`` -- which sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. Without them this is one
process (rank 0 of 1) and nothing here talks to anyone.

With them, the workers join a ``torch.distributed`` group on the **gloo** backend: it carries only a few
small control messages (same job file everywhere? is the output folder free? done?), never tensors,
so it needs no GPU memory and works the same on CPUs and GPUs. Its timeout is long (a rank that
finishes early waits at the final barrier for the slowest); a worker that dies is noticed by the
launcher, which stops the others, and its unfinished jobs are simply not done: the next run does them.

Jobs are split by :func:`assign`, a pure function of the job list and the world size -- never of the
manifest, which changes while workers start -- so no job can be given to two workers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Sequence

from caphuman.errors import InputError

#: How long a worker waits for the others at a barrier (the slowest worker's whole share of the work).
TIMEOUT = timedelta(days=7)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise InputError(f"${name} must be a whole number, got {value!r}") from None


@dataclass
class Dist:
    """This process's place in the run: ``rank`` of ``world`` processes, ``local_rank`` on its machine."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    group: bool = False

    @classmethod
    def from_env(cls) -> "Dist":
        world = _env_int("WORLD_SIZE", 1)
        rank = _env_int("RANK", 0)
        local = _env_int("LOCAL_RANK", rank)
        if world < 1 or not 0 <= rank < world:
            raise InputError(f"RANK={rank} / WORLD_SIZE={world} do not make sense")
        return cls(rank=rank, world=world, local_rank=local)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def init(self, timeout: timedelta = TIMEOUT) -> "Dist":
        """Join the gloo group (several processes only)."""
        if self.world == 1 or self.group:
            return self
        missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
        if missing:
            raise InputError(f"WORLD_SIZE={self.world} but {' and '.join(missing)} not set: start the workers with "
                             "`accelerate launch ... -m caphuman batch ...` or `torchrun ... -m caphuman batch ...`")
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo", rank=self.rank, world_size=self.world, timeout=timeout)
        self.group = True
        return self

    def barrier(self) -> None:
        if self.group:
            import torch.distributed as dist

            dist.barrier()

    def all_gather(self, obj: Any) -> list:
        if not self.group:
            return [obj]
        import torch.distributed as dist

        out: list = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        if not self.group:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]

    def close(self) -> None:
        if self.group:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self.group = False


def assign(sizes: Sequence[int], world: int) -> list[int]:
    """Rank of each job: in file order, each job goes to the rank with the fewest images so far (ties: the
    lowest rank). Equal jobs come out round-robin (job i -> rank i % world); a big sweep does not pile up
    on one rank with others. Deterministic: every worker computes the same split."""
    load = [0] * world
    out = []
    for n in sizes:
        r = min(range(world), key=lambda k: (load[k], k))
        out.append(r)
        load[r] += max(1, int(n))
    return out


__all__ = ["Dist", "TIMEOUT", "assign"]
