"""torchrun / DistributedDataParallel plumbing, PyTorch's own (no apex, no diffdist).

One process per device. ``--batch_size`` keeps upstream's meaning, per process;
the global batch is ``world_size × batch_size``. Outside torchrun everything
here degrades to a single process with rank 0, so the training code has one path.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from common.errors import UserError

BACKENDS = ("gloo", "nccl")


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(backend: str | None = None, device: str | None = None) -> tuple[DistContext, torch.device | None]:
    """Join the torchrun process group (a no-op outside torchrun).

    Returns the context and, under torchrun, this process's device (cuda:LOCAL_RANK
    with CUDA, else CPU). The backend defaults to nccl with CUDA and gloo without.
    """
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return DistContext(), None
    rank, world, local = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    use_cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
    backend = backend or ("nccl" if use_cuda else "gloo")
    if backend not in BACKENDS:
        raise UserError(f"--dist_backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "nccl" and not (use_cuda and dist.is_nccl_available()):
        raise UserError("--dist_backend nccl needs CUDA and an NCCL build of PyTorch; use --dist_backend gloo")
    if not dist.is_available():
        raise UserError("this PyTorch build has no torch.distributed: run without torchrun")
    dev = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistContext(rank=rank, world_size=world, local_rank=local), dev


def per_process_batch(batch_size: int, global_batch_size: int | None, world_size: int) -> int:
    """``--batch_size`` is per process (upstream); ``--global_batch_size`` must split evenly."""
    if global_batch_size is None:
        return batch_size
    if global_batch_size % world_size:
        raise UserError(f"--global_batch_size {global_batch_size} is not divisible by the world size {world_size}")
    return global_batch_size // world_size


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward makes the gradient contiguous.

    The all-gather's backward (an all-to-all under gloo) reads its incoming
    gradients as flat buffers; a strided gradient (after a transpose downstream)
    is then silently misread. Found by tests/test_distributed.py.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


def gather_rows(x: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """(n, ...) on every rank -> (world·n, ...), rank-major, with gradients flowing back to each rank.

    The backward sums, over ranks, the gradients that reach this rank's rows.
    """
    if not ctx.enabled:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat([_ContiguousGrad.apply(part) for part in all_gather(x.contiguous())])


def gather_tensor(x: torch.Tensor, ctx: DistContext) -> list[torch.Tensor]:
    """Gather same-shaped tensors without gradients (features for evaluation), as a rank-ordered list."""
    if not ctx.enabled:
        return [x]
    out = [torch.empty_like(x) for _ in range(ctx.world_size)]
    dist.all_gather(out, x.contiguous())
    return out


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
