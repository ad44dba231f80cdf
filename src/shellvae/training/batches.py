"""Where training batches come from: rows held as one tensor on the training device, or read
batch by batch from a memory-mapped array (data larger than memory).

A batch is an index slice of a seeded permutation, so there is no per-sample Python work and no
DataLoader. For methods that need them (``needs_centers``), a batch carries each row's cluster
centre, looked up in the run's ``FeasibleRegion`` by row index.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from shellvae.errors import ShellVAEError
from shellvae.training.methods import Batch, Method
from shellvae.core.region import FeasibleRegion
from shellvae.core.shell import ShellView


@dataclass
class TrainData:
    """Training rows in memory: shell data, and (for methods that need them) the region whose
    centres are gathered per batch: the same values as a full (N, D) tensor of centres, without its
    memory (188 MB on MNIST) and with the gather reading a (K, D) table that stays in cache."""

    X: torch.Tensor
    region: FeasibleRegion | None = None

    @classmethod
    def build(cls, X_shell: np.ndarray, region: FeasibleRegion | None, method: Method, device="cpu") -> TrainData:
        X = torch.as_tensor(X_shell, dtype=torch.float32, device=device)
        return cls(X, region if method.needs_centers else None)

    def __len__(self) -> int:
        return len(self.X)

    @property
    def index_device(self) -> torch.device:
        """Where batch indices live: with the data."""
        return self.X.device

    def batches(self, steps: Iterable[torch.Tensor]) -> Iterator[Batch]:
        """The batch of each step's row indices, in order."""
        return map(self.batch, steps)

    def batch(self, idx: torch.Tensor) -> Batch:
        # index_select: the same rows as X[idx], in about half the time of advanced indexing
        centers = None if self.region is None else self.region.centers(idx)
        return Batch(self.X.index_select(0, idx), centers)


#: ``MemmapTrainData`` reads about this many bytes of (float64) rows at once, so that a block and
#: its transform's temporaries stay in cache (measured by `python bench/memmap_read.py`;
#: docs/performance.md)
READ_BYTES = 2**19


@dataclass
class MemmapTrainData:
    """Training rows read batch by batch from a memory-mapped array, never loaded whole.

    ``view`` is a ``shell.ShellView`` of the raw (data-space) rows, e.g. of
    ``np.load(path, mmap_mode="r")``, optionally restricted to the training rows (so a split
    needs no copy). A batch reads its rows in increasing file order (sequential, page-cache
    friendly), applies the fitted shell transform to those rows only and returns a float32
    tensor in batch order: the same values as ``TrainData.build(shell.transform(source[rows]))``.
    """

    view: ShellView
    region: FeasibleRegion | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    read_rows: int = 4096  # rows read and transformed at once by ``batches`` (several steps' worth)

    @classmethod
    def build(cls, source: np.ndarray, region: FeasibleRegion, method: Method, device="cpu",
              rows: np.ndarray | None = None, read_rows: int | None = None) -> MemmapTrainData:
        """``source``: the raw rows; ``region``: fitted on them; ``rows``: the training rows of
        ``source``; ``read_rows``: rows read and transformed at once (default: about ``READ_BYTES``
        of float64 rows)."""
        if source.ndim != 2:
            raise ShellVAEError(f"memory-mapped training data must be 2-D (n_samples, n_features), got {source.shape}.")
        view = ShellView(source, region.shell_, rows)
        if method.needs_centers and len(region.geometry_.labels_) != len(view):
            raise ShellVAEError(f"the geometry has {len(region.geometry_.labels_)} labels for {len(view)} training rows.")
        if read_rows is None:
            read_rows = max(1, READ_BYTES // (8 * source.shape[1]))
        return cls(view, region if method.needs_centers else None, torch.device(device), read_rows)

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
        centers = None if self.region is None else self.region.centers(pos, device=self.device)
        sizes = [len(idx) for idx in block]
        for i, x_step in enumerate(x.split(sizes)):
            yield Batch(x_step, None if centers is None else centers.split(sizes)[i])

    def batch(self, idx: torch.Tensor) -> Batch:
        """One batch on its own (``batches`` reads many at once)."""
        return next(self._read([idx]))
