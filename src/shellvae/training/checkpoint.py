"""Checkpoints of a training run: everything needed to resume it exactly.

A checkpoint holds the model, the optimiser, the method's learned state (a multiplier, a mode),
the random streams (batch order, inner batches, the noise of every rank, on the CPU and the
GPU) and the history so far; it is written atomically after every epoch (``storage.save``) and read
without running code (``storage.load``). A resumed run reaches the same parameters as an
uninterrupted one.
"""

from __future__ import annotations

import contextlib

import torch

from shellvae.base import distributed, storage
from shellvae.errors import ShellVAEError


def save(path, model, optimizer, method, order: torch.Generator, inner: torch.Generator, epoch: int,
         history: list[dict]) -> None:
    """Write the state after ``epoch`` epochs (only rank 0 writes; every rank hands it its noise stream)."""
    group = distributed.info()
    rng = torch.get_rng_state()
    device = next(model.parameters()).device
    # noise drawn on a GPU comes from that device's own generator
    cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    rng_ranks = distributed.all_gather_object((rng, cuda_rng)) if group is not None else None
    if group is not None and not group.is_main:
        return
    payload = {
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "method_state": storage.to_safe(method.state_dict()),
        "order_rng": order.get_state(),
        "inner_rng": inner.get_state(),
        "torch_rng": rng,
        "cuda_rng": cuda_rng,
        "history": history,
    }
    if rng_ranks is not None:  # each rank's noise stream, for an exact resume
        payload["torch_rng_ranks"] = [cpu for cpu, _ in rng_ranks]
        payload["cuda_rng_ranks"] = [cuda for _, cuda in rng_ranks]
    storage.save(path, payload, kind="checkpoint")


def restore(path, model, optimizer, method, order: torch.Generator, inner: torch.Generator,
            rank: int = 0) -> tuple[int, list[dict]]:
    """Load a checkpoint into the run's objects; returns (epochs done, history so far)."""
    saved = storage.load(path, kind="checkpoint")
    with storage.reading(path, "checkpoint"), _refusing_bad_state(path):  # a tampered field: one error naming the file
        return _restore(saved, model, optimizer, method, order, inner, rank)


@contextlib.contextmanager
def _refusing_bad_state(path):
    """torch refuses a damaged state (an RNG state of the wrong size, an optimiser without its parameter
    groups) with a RuntimeError or a ValueError: one ShellVAEError naming the file instead."""
    try:
        yield
    except RuntimeError as exc:
        raise ShellVAEError(f"{path}: the checkpoint's saved state does not fit this run ({str(exc)[:200]}); it "
                            "was altered or damaged. Delete it to start afresh.") from None


def _restore(saved, model, optimizer, method, order, inner, rank):
    if type(saved["epoch"]) is not int or not isinstance(saved["history"], list):
        raise ValueError(f"epoch={saved['epoch']!r} and a history list expected")
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    method.load_state_dict(storage.from_safe(saved["method_state"]))
    order.set_state(saved["order_rng"])
    inner.set_state(saved["inner_rng"])
    ranks = saved.get("torch_rng_ranks")
    torch.set_rng_state(ranks[rank] if ranks is not None and rank < len(ranks) else saved["torch_rng"])
    cuda_ranks = saved.get("cuda_rng_ranks")
    cuda_rng = cuda_ranks[rank] if cuda_ranks is not None and rank < len(cuda_ranks) else saved.get("cuda_rng")
    device = next(model.parameters()).device
    if cuda_rng is not None and device.type == "cuda":  # a GPU run resumed on a GPU: its noise stream too
        torch.cuda.set_rng_state(cuda_rng, device)
    return saved["epoch"], saved["history"]


def describe(path) -> tuple[dict[str, tuple], int]:
    """(parameter shapes, epochs done) of a checkpoint, to check it fits a run before resuming."""
    saved = storage.load(path, kind="checkpoint")
    with storage.reading(path, "checkpoint"):
        epoch = saved.get("epoch", -1)
        if type(epoch) is not int:
            raise TypeError(f"epoch={epoch!r} is not an integer")
        return {k: tuple(v.shape) for k, v in saved.get("model", {}).items()}, epoch
