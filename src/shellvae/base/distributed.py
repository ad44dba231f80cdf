"""Multi-process training with ``torch.distributed`` (DDP), launched by ``torchrun``.

    torchrun --nproc_per_node 2 -m shellvae train --distributed --data synthetic --out runs/ddp
    # several machines: torchrun --nnodes 2 --node_rank R --nproc_per_node G \\
    #     --rdzv_backend c10d --rdzv_endpoint HOST:PORT -m shellvae train --distributed ...

What changes with N processes (ranks), and what does not:

- Every rank loads the same data (loaders are seeded). The shell transform is deterministic;
  the cluster geometry (K-means) is computed once, on rank 0, and broadcast (``run_once``).
- Every epoch every rank draws the *same* seeded permutation; a global batch of ``batch_size``
  rows is split into N contiguous shards (sizes differ by at most one row), one per rank. DDP
  averages the gradients, so for a loss that is a batch mean of per-sample terms a step equals the
  single-process step on the global batch (exactly when ``batch_size`` is divisible by N). A last
  global batch with fewer rows than ranks is skipped (at most N - 1 rows an epoch).
- The reparameterisation noise is seeded ``seed + rank`` (rank 0 draws what a single process
  draws); model initialisation is rank 0's (DDP broadcasts it).
- The per-epoch training logs are averaged over ranks before the non-finite check, so every
  rank sees the same history and stops together; held-out metrics are computed on rank 0 and
  broadcast. Only rank 0 shows the progress bar and writes checkpoints and outputs.

Each method says how it runs under DDP (its ``ddp`` attribute, listed by ``shellvae train --help``):

- exact (the step equals the single-process step on the global batch, up to float rounding and
  the noise draws): vanilla, beta, kl_anneal, cyclical, the shell methods and free_bits. The
  shell methods' L_clu and free bits' per-dimension KL are means over the global batch
  (``global_batch_mean``: one differentiable all-reduce a step), so the boundary penalty and the
  floor, nonlinear in those means, see what one process sees; shell_lagrange's multiplier is
  updated from that global constraint, so it is the same on every rank.
- approximate: bn_vae (batch statistics of each rank's shard, running statistics of rank 0, as
  usual for DDP; PyTorch's SyncBatchNorm, which would make it exact, runs on GPUs only).
- not supported (a clear error): aggressive and em (their steps move encoder and decoder
  separately through ``model.encoder`` / ``model.decoder`` with a data-dependent number of inner
  steps, which would desynchronise the ranks' collective calls).

This module sits at the bottom of the package (it imports nothing of shellvae but the errors),
so the methods, the loop and the estimator can all use it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from shellvae.errors import ShellVAEError


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the process group."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def info() -> DistInfo | None:
    """The process group this process belongs to, or None when not distributed (or a group of one)."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    world = dist.get_world_size()
    if world < 2:
        return None
    local = os.environ.get("LOCAL_RANK")
    return DistInfo(dist.get_rank(), world, dist.get_rank() if local is None else int(local))


def is_main_process() -> bool:
    """True on rank 0 and in any non-distributed run."""
    group = info()
    return group is None or group.is_main


def launched_by_torchrun() -> bool:
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def init_from_env(backend: str | None = None, device: str = "cpu") -> tuple[DistInfo | None, str]:
    """Join the process group described by torchrun's environment (RANK, WORLD_SIZE, ...).

    ``backend`` defaults to "nccl" for a CUDA ``device`` and "gloo" otherwise. A CUDA device
    becomes ``cuda:LOCAL_RANK``. Returns (info, device); (None, device) outside torchrun.
    """
    if not launched_by_torchrun():
        return None, device
    cuda = str(device).startswith("cuda")
    if not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if cuda else "gloo"))
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    return info(), device


def check_method(method) -> None:
    """Raise a clear error for a method whose training step cannot run under DDP."""
    support = getattr(method, "ddp", "exact")
    if support not in ("exact", "approximate"):
        raise ShellVAEError(
            f"method {method.name!r} does not support distributed (DDP) training ({support}). Train it in a single "
            "process, or use a method that does (see `shellvae train --help`)."
        )


def broadcast_object(obj, src: int = 0):
    """``obj`` of rank ``src`` on every rank (pickled: only within one trusted process group)."""
    if info() is None:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def run_once(fn, *args, **kwargs):
    """Call ``fn`` on rank 0 only and hand its result to every rank (e.g. the K-means geometry).

    An exception on rank 0 is re-raised on every rank, so no rank waits forever.
    """
    group = info()
    if group is None:
        return fn(*args, **kwargs)
    result, error = None, None
    if group.is_main:
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 (handed to the other ranks, then raised everywhere)
            error = exc
    result, error = broadcast_object((result, error))
    if error is not None:
        raise error
    return result


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of ``tensor`` over ranks (in place; the tensor itself outside DDP)."""
    group = info()
    if group is None:
        return tensor
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.div_(group.world_size)


def all_gather_object(obj) -> list:
    group = info()
    if group is None:
        return [obj]
    out = [None] * group.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if info() is not None:
        dist.barrier()


def shard(indices: torch.Tensor, group: DistInfo | None) -> torch.Tensor | None:
    """This rank's contiguous share of a global batch's indices; None when the batch has fewer
    rows than ranks (every rank then skips it, so their collective calls stay in step)."""
    if group is None:
        return indices
    if len(indices) < group.world_size:
        return None
    return indices.tensor_split(group.world_size)[group.rank]


def wrap(model: torch.nn.Module, group: DistInfo | None) -> torch.nn.Module:
    """``model`` wrapped in DistributedDataParallel (the model itself outside DDP)."""
    if group is None:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device = next(model.parameters()).device
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def global_batch_mean(local_mean: torch.Tensor, local_rows: int) -> torch.Tensor:
    """The global batch's mean of a per-sample quantity, from this rank's shard mean; differentiable.

    For the terms that are a nonlinear function of a batch mean (the boundary penalty of L_clu,
    the free-bits floor of the per-dimension KL), the shard means are first combined into the
    global batch mean. Its gradient is exact under DDP: the backward of the differentiable
    all-reduce sums the ranks' gradients (x N) and DDP averages them (/ N), so each shard's rows
    get d f(mean) / d row, as in one process on the global batch. Outside DDP: ``local_mean``.
    """
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return local_mean
    rows = torch.full((1,), float(local_rows), dtype=local_mean.dtype, device=local_mean.device)
    total = _SumOverRanks.apply(torch.cat([(local_mean * local_rows).reshape(-1), rows]))  # sums and rows at once
    return (total[:-1] / total[-1]).reshape(local_mean.shape)


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) with its adjoint as backward: every rank's output depends on every rank's
    input, so each input's gradient is the sum of all ranks' output gradients."""

    @staticmethod
    def forward(ctx, tensor):
        out = tensor.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad
