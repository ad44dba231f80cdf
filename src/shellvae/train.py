"""The one training loop every method uses.

Data lives in memory as tensors on the training device; a batch is an index slice of a seeded
permutation, so there is no per-sample Python work and no DataLoader. The method computes the
loss (and, for alternating methods, runs the step); the loop owns the data order, the
non-finite guard, per-epoch evaluation, checkpoints and the progress bar.

Data larger than memory (``MemmapTrainData``): the rows stay in a memory-mapped ``.npy`` file
and every batch is gathered from it (sorted row reads), shell-transformed and turned into a
tensor on its own; the in-memory ``TrainData`` stays the fast default. Under ``torchrun`` the
loop trains with DistributedDataParallel (see ``distributed.py``). Options: ``compile``
(``torch.compile`` of the model's forward) and ``amp`` (bf16 autocast of the forward on CUDA;
a no-op elsewhere). The optimiser is Adam, with the fused kernel where PyTorch has one.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from shellvae import io
from shellvae.errors import NonFiniteError, ShellVAEError
from shellvae.geometry import ClusterGeometry
from shellvae.methods import Batch, Method, TrainContext
from shellvae.metrics import evaluate
from shellvae.model import GaussianVAE, VAEOutput
from shellvae.shell import ShellView


@dataclass
class TrainData:
    """Training tensors: shell data and (for methods that need them) each row's cluster centre.

    Centres are kept as each row's cluster label plus the (K, D) table of centres, and gathered
    per batch: the same values as a full (N, D) tensor of centres, without its memory (188 MB on
    MNIST) and with the gather reading a table that stays in cache. ``centers`` (N, D) may still
    be given directly.
    """

    X: torch.Tensor
    centers: torch.Tensor | None = None
    labels: torch.Tensor | None = None  # (N,) cluster of each row, with ``table``
    table: torch.Tensor | None = None  # (K, D) cluster centres

    @classmethod
    def build(cls, X_shell: np.ndarray, geometry: ClusterGeometry | None, method: Method, device="cpu") -> TrainData:
        X = torch.as_tensor(X_shell, dtype=torch.float32, device=device)
        if not method.needs_centers:
            return cls(X)
        table = torch.as_tensor(geometry.centers_, dtype=torch.float32, device=device)
        labels = torch.as_tensor(np.asarray(geometry.labels_), dtype=torch.int64, device=device)
        return cls(X, labels=labels, table=table)

    def __len__(self) -> int:
        return len(self.X)

    @property
    def device(self) -> torch.device:
        return self.X.device

    @property
    def index_device(self) -> torch.device:
        """Where batch indices live: with the data."""
        return self.X.device

    def batches(self, steps: Iterable[torch.Tensor]) -> Iterator[Batch]:
        """The batch of each step's row indices, in order."""
        return map(self.batch, steps)

    def batch(self, idx: torch.Tensor) -> Batch:
        # index_select: the same rows as X[idx], in about half the time of advanced indexing
        if self.labels is not None:
            centers = self.table.index_select(0, self.labels.index_select(0, idx))
        else:
            centers = None if self.centers is None else self.centers.index_select(0, idx)
        return Batch(self.X.index_select(0, idx), centers)


#: ``MemmapTrainData`` reads about this many bytes of (float64) rows at once, so that a block and
#: its transform's temporaries stay in cache: 2,048 rows of 32 features (1,024-4,096 rows: 1.03-1.07x
#: the in-memory epoch on the GMM, against 1.15-1.17x batch by batch); MNIST's 784-wide rows get one
#: batch per read, which measured best there (larger blocks 1.29-1.52x). `python bench/memmap_read.py`
READ_BYTES = 2**19


@dataclass
class MemmapTrainData:
    """Training rows read batch by batch from a memory-mapped array, never loaded whole.

    ``view`` is a ``shell.ShellView`` of the raw (data-space) rows, e.g. of
    ``np.load(path, mmap_mode="r")``, optionally restricted to the training rows (so a split
    needs no copy). A batch reads its rows in increasing file order (sequential, page-cache
    friendly), applies the fitted shell transform to those rows only and returns a float32
    tensor in batch order: the same values as ``TrainData.build(shell.transform(source[rows]))``.
    Cluster centres come from the geometry's per-row labels (one small integer per row).
    """

    view: ShellView
    labels: torch.Tensor | None = None  # (N,) cluster of each training row (methods that need centres)
    table: torch.Tensor | None = None  # (K, D) cluster centres
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    read_rows: int = 4096  # rows read and transformed at once by ``batches`` (several steps' worth)

    @classmethod
    def build(cls, source: np.ndarray, shell, geometry: ClusterGeometry | None, method: Method, device="cpu",
              rows: np.ndarray | None = None, read_rows: int | None = None) -> MemmapTrainData:
        """``source``: the raw rows; ``shell``: a fitted SphericalShell; ``rows``: the training rows of
        ``source``; ``read_rows``: rows read and transformed at once (see ``batches``; default: about
        ``READ_BYTES`` of float64 rows)."""
        if source.ndim != 2:
            raise ShellVAEError(f"memory-mapped training data must be 2-D (n_samples, n_features), got {source.shape}.")
        view = ShellView(source, shell, rows)
        labels = table = None
        if method.needs_centers:
            if len(geometry.labels_) != len(view):
                raise ShellVAEError(f"the geometry has {len(geometry.labels_)} labels for {len(view)} training rows.")
            # int32 labels: 4 bytes a row, whatever the width of the data
            labels = torch.as_tensor(np.asarray(geometry.labels_, dtype=np.int32))
            table = torch.as_tensor(geometry.centers_, dtype=torch.float32, device=device)
        if read_rows is None:
            read_rows = max(1, READ_BYTES // (8 * source.shape[1]))
        return cls(view, labels, table, torch.device(device), read_rows)

    @property
    def source(self) -> np.ndarray:
        return self.view.source

    def __len__(self) -> int:
        return len(self.view)

    @property
    def index_device(self) -> torch.device:
        """Batch indices stay on the CPU: they address the file (no device round trip per batch)."""
        return torch.device("cpu")

    def batches(self, steps: Iterable[torch.Tensor]) -> Iterator[Batch]:
        """The batch of each step's row indices, in order, read ``read_rows`` rows at a time.

        The rows of several consecutive steps are gathered and shell-transformed in one go (one
        sorted read, one NumPy transform), then split into the steps' batches: the per-call cost
        of NumPy, ~60 us a batch, is paid once per block instead of once per step.
        """
        block: list[torch.Tensor] = []
        rows = 0
        for idx in steps:
            block.append(idx)
            rows += len(idx)
            if rows >= self.read_rows:
                yield from self._read(block)
                block, rows = [], 0
        if block:
            yield from self._read(block)

    def _read(self, block: list[torch.Tensor]) -> Iterator[Batch]:
        pos = torch.cat(block).cpu()
        x = torch.from_numpy(self.view.take(pos.numpy()).astype(np.float32)).to(self.device)
        centers = None
        if self.labels is not None:
            centers = self.table.index_select(0, self.labels[pos].to(self.device, torch.int64))
        sizes = [len(idx) for idx in block]
        for i, x_step in enumerate(x.split(sizes)):
            yield Batch(x_step, None if centers is None else centers.split(sizes)[i])

    def batch(self, idx: torch.Tensor) -> Batch:
        """One batch on its own (``batches`` reads many at once)."""
        return next(self._read([idx]))


def train(
    model: GaussianVAE,
    method: Method,
    data: TrainData | MemmapTrainData,
    ctx: TrainContext,
    *,
    geometry: ClusterGeometry | None = None,
    X_val: torch.Tensor | ShellView | None = None,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    eval_every: int = 1,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    compile: bool | str = False,
    amp: bool = False,
    flush_denormal: bool = True,
) -> list[dict]:
    """Train ``model`` in place for ``ctx.n_epochs`` epochs; returns the per-epoch history.

    Each history row holds the epoch's mean of every logged loss term (``train_*``), the KL
    weight used, timings, and, every ``eval_every`` epochs, the held-out metrics of
    ``metrics.evaluate`` on ``X_val`` (``val_*``). With ``checkpoint`` set, the full training
    state is saved atomically after every epoch; ``resume=True`` continues from it and reaches
    the same parameters as an uninterrupted run.

    ``compile``: ``torch.compile`` the method's ``forward_loss`` (the model's forward and every
    loss term, one graph) for this run (opt-in: compiling takes seconds to a minute; see
    docs/performance.md for when it pays); a string is passed as torch.compile's ``mode`` (e.g.
    "reduce-overhead": CUDA graphs). ``amp``: run the forward in
    bfloat16 autocast on CUDA (losses stay float32); ignored on other devices.
    ``flush_denormal``: treat float32 values below 1.2e-38 as 0 in this thread's CPU arithmetic
    while training (the previous mode is restored after). A collapsing VAE drives weights and
    activations into that subnormal range, where CPU arithmetic is many times slower (measured
    with ``bench/shell_overhead.py --denormals``); no value that small matters to the result.
    When a ``torch.distributed`` process group of several ranks is initialised (``torchrun``), training
    is data-parallel: see ``shellvae.distributed`` for what that changes.
    """
    from shellvae import distributed  # imported here: `python -m shellvae.distributed` runs it as __main__

    if X_val is not None and geometry is None:
        raise ValueError("held-out metrics (X_val) need the cluster geometry: pass geometry=")
    state = distributed.info()
    if state is not None:
        distributed.check_method(method)
    device = data.index_device
    optimizer = _adam(model, lr)
    order = torch.Generator().manual_seed(seed)  # the epochs' batch order (the same on every rank)
    inner = torch.Generator().manual_seed(seed + 1)  # extra batches for alternating methods' inner steps
    rank = 0 if state is None else state.rank
    torch.manual_seed(seed + rank)  # the reparameterisation noise
    n = len(data)
    local_size = batch_size if state is None else -(-batch_size // state.world_size)
    ctx.sample_batch = lambda: data.batch(torch.randint(n, (min(local_size, n),), generator=inner).to(device))
    history: list[dict] = []
    start = 0
    if resume and checkpoint is not None and Path(checkpoint).exists():
        start, history = _restore(checkpoint, model, optimizer, method, order, inner, rank)
    net = distributed.wrap(model, state)
    main = state is None or state.is_main
    bar = tqdm(range(start, ctx.n_epochs), initial=start, total=ctx.n_epochs, disable=not progress or not main,
               desc=f"{method.name}", unit="epoch", leave=False)
    with _autocast_forward(model, amp), _compiled_loss(method, compile), _flushing_denormals(flush_denormal), \
            _epoch_schedule(method):
        for epoch in bar:
            ctx.epoch = epoch
            schedule = method.fix_schedule(ctx)  # the loss reads this, never the epoch (see Method.schedule)
            net.train()
            t0 = time.perf_counter()
            perm = torch.randperm(n, generator=order).to(device)
            step_logs = _StepLogs(-(-n // batch_size))
            steps = (distributed.shard(perm[i:i + batch_size], state) for i in range(0, n, batch_size))
            for batch in data.batches(idx for idx in steps if idx is not None):
                step_logs.add(method.train_step(net, optimizer, batch, ctx))
            row = {"epoch": epoch + 1, "kl_weight": schedule["kl_weight"]}
            row.update(_epoch_means(step_logs, epoch))
            _check_parameters(model, epoch)
            row["train_time_s"] = time.perf_counter() - t0
            method.after_epoch(ctx, row)
            if X_val is not None and ((epoch + 1) % eval_every == 0 or epoch + 1 == ctx.n_epochs):
                t1 = time.perf_counter()
                metrics = distributed.run_once(evaluate, model, X_val, geometry, ctx.r_min, ctx.r_max, seed=seed)
                row.update({f"val_{k}": v for k, v in metrics.items()})
                row["eval_time_s"] = time.perf_counter() - t1
            history.append(row)
            if checkpoint is not None:
                _save(checkpoint, model, optimizer, method, order, inner, epoch + 1, history, state)
            bar.set_postfix(loss=f"{row['train_loss']:.3g}", kl=f"{row.get('val_kl', row['train_kl']):.3f}",
                            au=row.get("val_active_units", "-"))
    bar.close()
    return history


def _adam(model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
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


@contextlib.contextmanager
def _autocast_forward(model: torch.nn.Module, amp: bool):
    """With ``amp`` on CUDA, temporarily run ``model.forward`` under bf16 autocast (restored after)."""
    if not (amp and next(model.parameters()).device.type == "cuda"):
        yield
        return
    own = vars(model).get("forward")  # an instance-level forward of the caller's, restored after
    base = model.forward

    def forward(x):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = base(x)
        # the loss terms (sums over the data dims, exp of log-variances) stay in float32
        return VAEOutput(*(t.float() for t in out)) if isinstance(out, VAEOutput) else out

    model.forward = forward
    try:
        yield
    finally:
        if own is None:
            del model.forward
        else:
            model.forward = own


@contextlib.contextmanager
def _compiled_loss(method: Method, compile: bool | str):
    """With ``compile``, temporarily replace ``method.forward_loss`` by its ``torch.compile`` d version.

    Forward and loss form one graph, so the loss terms' small ops fuse with the network's; the
    methods' per-epoch Python weights (KL schedule, multiplier) are not specialised on by
    torch >= 2.6 (``torch._dynamo.config.specialize_float = False``), so the graph is not recompiled
    every epoch. The optimiser step stays eager (fused Adam). If the compiler itself fails (a
    ``BackendCompilerFailed``, raised before the step computes anything), the run warns once and
    goes on eager.
    """
    if not compile:
        yield
        return
    eager = method.forward_loss
    # a string is torch.compile's mode: "reduce-overhead" replays CUDA graphs (launch-bound small nets on a GPU)
    compiled = torch.compile(eager, mode=None if compile is True else compile)
    failed = []

    def forward_loss(*args):
        if not failed:
            try:
                return compiled(*args)
            except torch._dynamo.exc.BackendCompilerFailed as exc:
                # the compiler itself broke (e.g. Triton on a new GPU) before this step ran anything:
                # say so once and finish the run eager rather than lose it
                failed.append(exc)
                first_line = str(exc).strip().splitlines()[-1][:300]
                warnings.warn(f"torch.compile failed ({type(exc).__name__}: {first_line}); training continues without "
                              "compiling. Pass compile=False to skip the attempt.", RuntimeWarning, stacklevel=2)
        return eager(*args)

    method.forward_loss = forward_loss
    try:
        yield
    finally:
        del method.forward_loss


@contextlib.contextmanager
def _epoch_schedule(method: Method):
    """Release the method's frozen schedule after training, so a later direct call of
    ``method.loss`` evaluates its schedule afresh."""
    try:
        yield
    finally:
        method.fix_schedule(None)


def _denormals_flushed() -> bool:
    """Whether this thread flushes subnormal floats to zero (PyTorch has a setter but no getter)."""
    return float(torch.full((1,), 1e-39) * 1.0) == 0.0


@contextlib.contextmanager
def _flushing_denormals(enabled: bool):
    """Flush subnormals to zero for the block (this thread's CPU arithmetic), then restore the mode."""
    before = _denormals_flushed()
    if enabled and not before:
        torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if enabled and not before:
            torch.set_flush_denormal(False)


class _StepLogs:
    """Every step's logged terms, one row of a preallocated table each: no small tensor per term
    and step lives until the epoch's end (thousands of them, between the steps' large temporaries,
    kept the C heap from shrinking: +80 MB on a 1M-row epoch)."""

    def __init__(self, max_steps: int):
        self.max_steps, self.keys, self.table, self.count = max_steps, None, None, 0

    def add(self, logs: dict[str, torch.Tensor]) -> None:
        if self.table is None:
            self.keys = list(logs)
            first = next(iter(logs.values()))
            self.table = torch.empty(len(self.keys), self.max_steps, device=first.device)
        self.table[:, self.count] = torch.stack([logs[key].float() for key in self.keys])
        self.count += 1

    def values(self) -> torch.Tensor:
        """(terms, steps) of the steps taken."""
        return self.table[:, :self.count]


def _epoch_means(step_logs: _StepLogs, epoch: int) -> dict[str, float]:
    """Mean of each logged term over the epoch's steps (and over ranks under DDP); a non-finite
    value stops training (every rank sees the same reduced values, so all stop together)."""
    from shellvae import distributed

    if not step_logs.count:
        raise ShellVAEError("no training step was taken: there are fewer training rows than processes.")
    keys = step_logs.keys
    values = distributed.all_reduce_mean(step_logs.values().clone()).cpu()  # one transfer for every term and step
    bad = ~torch.isfinite(values)
    if bad.any():
        step = int(bad.any(dim=0).nonzero()[0])  # the earliest bad step; its first bad term ('loss' comes last)
        k = int(bad[:, step].nonzero()[0])
        raise NonFiniteError(
            f"training diverged: term '{keys[k]}' became non-finite at epoch {epoch + 1}, step {step + 1}. "
            "Parameters of the last finished epoch are kept in the checkpoint (if one was set). "
            "Try a smaller learning rate or penalty weights, or check the data scale."
        )
    return {f"train_{key}": float(v) for key, v in zip(keys, values.mean(dim=1))}


def _check_parameters(model: torch.nn.Module, epoch: int) -> None:
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            raise NonFiniteError(
                f"training diverged: parameter '{name}' became non-finite in epoch {epoch + 1} "
                "(a non-finite gradient). The checkpoint keeps the last finite epoch."
            )


def _save(path, model, optimizer, method, order, inner, epoch, history, state=None) -> None:
    from shellvae import distributed

    rng = torch.get_rng_state()
    device = next(model.parameters()).device
    # noise drawn on a GPU comes from that device's own generator
    cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    rng_ranks = distributed.all_gather_object((rng, cuda_rng)) if state is not None else None
    if state is not None and not state.is_main:
        return  # only rank 0 writes
    payload = {
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "method_state": io.to_safe(method.state_dict()),
        "order_rng": order.get_state(),
        "inner_rng": inner.get_state(),
        "torch_rng": rng,
        "cuda_rng": cuda_rng,
        "history": history,
    }
    if rng_ranks is not None:  # each rank's noise stream, for an exact resume
        payload["torch_rng_ranks"] = [cpu for cpu, _ in rng_ranks]
        payload["cuda_rng_ranks"] = [cuda for _, cuda in rng_ranks]
    io.save(path, payload, kind="checkpoint")


def _restore(path, model, optimizer, method, order, inner, rank: int = 0) -> tuple[int, list[dict]]:
    state = io.load(path, kind="checkpoint")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    method.load_state_dict(io.from_safe(state["method_state"]))
    order.set_state(state["order_rng"])
    inner.set_state(state["inner_rng"])
    ranks = state.get("torch_rng_ranks")
    torch.set_rng_state(ranks[rank] if ranks is not None and rank < len(ranks) else state["torch_rng"])
    cuda_ranks = state.get("cuda_rng_ranks")
    cuda_rng = cuda_ranks[rank] if cuda_ranks is not None and rank < len(cuda_ranks) else state.get("cuda_rng")
    device = next(model.parameters()).device
    if cuda_rng is not None and device.type == "cuda":  # a GPU run resumed on a GPU: its noise stream too
        torch.cuda.set_rng_state(cuda_rng, device)
    return state["epoch"], state["history"]
