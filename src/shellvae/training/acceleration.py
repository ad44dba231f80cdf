"""What makes a training step faster without changing what it computes: fused Adam, bf16
autocast of the forward on CUDA, ``torch.compile`` of forward and loss as one graph, and
flushing subnormal floats to zero on the CPU. The loop applies them; nothing here is patched
onto a method or a model: the compiled loss is a new function and autocast a wrapping module.
"""

from __future__ import annotations

import contextlib
import warnings

import torch
from torch import nn

from shellvae.training.methods.base import ForwardLoss
from shellvae.core.contract import VAEOutput

#: torch.compile's modes, accepted as ``compile=`` (True is "default")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def adam(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """Adam, with PyTorch's fused kernel when every parameter's device supports it (one kernel for
    all parameters instead of ~10 small ops each: the largest single cost of a small VAE's step)."""
    params = list(model.parameters())
    devices = {p.device.type for p in params}
    if devices <= {"cpu", "cuda"} and all(p.dtype.is_floating_point for p in params):
        try:
            return torch.optim.Adam(params, lr=lr, fused=True)
        except (RuntimeError, ValueError, TypeError):  # an older PyTorch without fused CPU Adam
            pass
    return torch.optim.Adam(params, lr=lr)


class AutocastForward(nn.Module):
    """Runs a VAE's forward under bf16 autocast on CUDA; the outputs come back as float32, so the
    loss terms (sums over data dimensions, exponentials of log-variances) stay in full precision.
    ``encoder`` / ``decoder`` are the wrapped model's, so alternating methods still reach them."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    @property
    def encoder(self) -> nn.Module:
        return self.model.encoder

    @property
    def decoder(self) -> nn.Module:
        return self.model.decoder

    def forward(self, x: torch.Tensor):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = self.model(x)
        return VAEOutput(*(None if t is None else t.float() for t in out)) if isinstance(out, VAEOutput) else out


def with_amp(model: nn.Module, amp: bool) -> nn.Module:
    """``model`` wrapped in ``AutocastForward`` when ``amp`` is asked for and it lives on CUDA."""
    return AutocastForward(model) if amp and next(model.parameters()).device.type == "cuda" else model


def compiled(forward_loss: ForwardLoss, compile: bool | str) -> ForwardLoss:
    """``forward_loss`` itself, or (``compile``) its ``torch.compile`` d version.

    Forward and loss form one graph, so the loss terms' small ops fuse with the network's; the
    methods' per-epoch Python weights (KL schedule, multiplier) are not specialised on by
    torch >= 2.6 (``torch._dynamo.config.specialize_float = False``), so the graph is not recompiled
    every epoch. The optimiser step stays eager (fused Adam). If the compiler itself fails (a
    ``BackendCompilerFailed``, raised before the step computes anything), the run warns once and
    goes on eager. A string is torch.compile's mode ("reduce-overhead" replays CUDA graphs).
    """
    if not compile:
        return forward_loss
    graph = torch.compile(forward_loss, mode=None if compile is True else compile)
    failed = []

    def forward_loss_compiled(*args):
        if not failed:
            try:
                return graph(*args)
            except torch._dynamo.exc.BackendCompilerFailed as exc:
                # the compiler broke (e.g. Triton on a new GPU) before this step ran anything:
                # say so once and finish the run eager rather than lose it
                failed.append(exc)
                first_line = str(exc).strip().splitlines()[-1][:300]
                warnings.warn(f"torch.compile failed ({type(exc).__name__}: {first_line}); training continues without "
                              "compiling. Pass compile=False to skip the attempt.", RuntimeWarning, stacklevel=2)
        return forward_loss(*args)

    return forward_loss_compiled


def denormals_flushed() -> bool:
    """Whether this thread flushes subnormal floats to zero (PyTorch has a setter but no getter)."""
    return float(torch.full((1,), 1e-39) * 1.0) == 0.0


@contextlib.contextmanager
def flushing_denormals(enabled: bool):
    """Flush subnormals to zero in this thread's CPU arithmetic for the block, then restore the mode.

    A collapsing VAE drives weights and activations into the subnormal range, where CPU
    arithmetic is many times slower (``bench/shell_overhead.py --denormals``); no value that
    small matters to the result.
    """
    before = denormals_flushed()
    if enabled and not before:
        torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if enabled and not before:
            torch.set_flush_denormal(False)
