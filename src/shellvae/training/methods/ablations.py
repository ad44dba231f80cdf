"""Ablations of the shell method (the paper's Table 2): which penalty prevents collapse?

Spherical VAE with Cluster-Aware Feasible Regions (arXiv 2603.10935 v4), §4.3 / docs/method.md §7.
Each keeps the shell data, the cluster geometry and the KL schedule of ``shell`` and switches
penalties off, so a comparison differs in nothing else. ``shell`` itself is the full method.
"""

from dataclasses import dataclass

from shellvae.training.methods.registry import register_method
from shellvae.training.methods.shell import Shell


@register_method
@dataclass(repr=False)
class ShellNone(Shell):
    name = "shell_none"
    summary = "ablation: shell data and geometry, no penalties (L_clu only logged)"
    reference = "arXiv 2603.10935 v4, Table 2"

    use_boundary: bool = False
    use_norm: bool = False


@register_method
@dataclass(repr=False)
class ShellBoundary(Shell):
    name = "shell_boundary"
    summary = "ablation: cluster-aware boundary penalty only (no decoder norm penalty)"
    reference = "arXiv 2603.10935 v4, Table 2"

    use_norm: bool = False


@register_method
@dataclass(repr=False)
class ShellNorm(Shell):
    name = "shell_norm"
    summary = "ablation: decoder norm penalty only (no boundary penalty)"
    reference = "arXiv 2603.10935 v4, Table 2"

    use_boundary: bool = False
