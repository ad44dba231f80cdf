"""How big a reproduction run is: data sizes, epochs, seeds and grids, per profile.

- ``full`` follows the paper's protocol (docs/method.md §7): full datasets, 100 epochs, 3 seeds.
- ``quick`` is sized to finish each experiment in about 20 minutes on 2 CPU cores: data
  subsets, fewer epochs, 2 seeds. Every table and figure states the profile it came from.
- ``test`` is tiny (seconds), for the test suite; its numbers mean nothing.

Everything a profile sets ends up in each cell's configuration, so changing a profile never
reuses a cell trained under other settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from shellvae.errors import ShellVAEError


def phase_grid(step_exponent: float) -> tuple[float, ...]:
    """sigma^2 / lambda_max ratios: 0.1, 20, and 2^(k * step) in between (so 1 is on the grid)."""
    k = np.arange(np.ceil(np.log2(0.1) / step_exponent), np.floor(np.log2(20.0) / step_exponent) + 1)
    inner = [round(float(2.0 ** (i * step_exponent)), 6) for i in k]
    return (0.1, *[r for r in inner if 0.11 < r < 18.0], 20.0)  # no near-duplicates of the end points


@dataclass(frozen=True)
class Profile:
    """One size of run. ``sizes`` maps a dataset to (n_train, n_test); None = the whole split."""

    name: str
    seeds: int
    sizes: dict
    epochs: dict  # dataset -> epochs for the MLP/conv experiments
    phase_epochs: int  # vanilla and shell VAEs of the phase experiment
    linear_epochs: int  # the linear VAE of the phase experiment (cheap, converges slowly near the threshold)
    phase_ratios: tuple
    linear_lr: float = 3e-3  # Adam step of the phase experiment's linear VAE (batch 256)
    r_min_grid: tuple = (0.5, 0.7, 0.8, 0.9, 0.95)
    lambda_b_grid: tuple = (0.1, 1.0, 10.0, 100.0)
    eval_every: int = 1  # held-out metrics every this many epochs (and after the last)
    skip: dict = field(default_factory=dict)  # dataset -> methods Table 1 leaves out on it (compute), stated
    note: str = ""
    extra: dict = field(default_factory=dict)

    def size(self, dataset: str) -> tuple:
        return self.sizes.get(dataset, self.sizes["default"])

    def epochs_for(self, dataset: str) -> int:
        return self.epochs.get(dataset, self.epochs["default"])

    def describe(self, datasets=None, epochs: str | None = None) -> str:
        """One line per dataset: the sizes and epochs this profile uses (``epochs`` overrides the latter)."""
        parts = []
        for name in datasets or [k for k in self.sizes if k != "default"]:
            n_train, n_test = self.size(name)
            size = "full train/test split" if n_train is None else f"{n_train} train / {n_test} test"
            parts.append(f"{name}: {size}, {epochs or self.epochs_for(name)} epochs")
        return f"profile `{self.name}` ({self.seeds} seed(s)): " + "; ".join(parts) + (f". {self.note}" if self.note else "")


PROFILES = {
    "full": Profile(
        name="full", seeds=3,
        sizes={"default": (None, None), "synthetic": (40_000, 10_000)},
        epochs={"default": 100},
        phase_epochs=100, linear_epochs=300, phase_ratios=phase_grid(0.25), eval_every=5,
        skip={"cifar10": ("cyclical", "aggressive")},
        note="The paper's protocol: full datasets (synthetic: 50,000 samples split 40,000 / 10,000), 100 epochs; "
             "held-out metrics every 5 epochs (every epoch for Figure 1).",
    ),
    "quick": Profile(
        name="quick", seeds=2,
        sizes={"default": (4_000, 1_000), "synthetic": (8_000, 2_000)},
        epochs={"default": 20, "synthetic": 30},
        phase_epochs=60, linear_epochs=150, phase_ratios=phase_grid(0.5),
        note="Subsets and short training, sized for about 20 minutes per experiment on 2 CPU cores: "
             "numbers are indicative, not the paper's protocol.",
    ),
    "test": Profile(
        name="test", seeds=1,
        sizes={"default": (300, 100), "synthetic": (600, 200)},
        epochs={"default": 2},
        phase_epochs=3, linear_epochs=3, phase_ratios=(0.25, 1.0, 4.0),
        r_min_grid=(0.5, 0.9), lambda_b_grid=(1.0, 10.0),
        note="Tiny smoke-test profile: the numbers mean nothing.",
    ),
}


def get_profile(name: str, **overrides) -> Profile:
    if name not in PROFILES:
        raise ShellVAEError(f"unknown profile {name!r}: choose one of {', '.join(PROFILES)}.")
    profile = PROFILES[name]
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return replace(profile, **overrides) if overrides else profile
