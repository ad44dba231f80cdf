"""Differentiable collectives for loss terms under DDP (see ``shellvae.distributed``).

Apart from ``distributed.py`` so that the methods can import them at module level:
``python -m shellvae.distributed`` runs that module as ``__main__``, and importing it from the
package first would load it twice.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


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
