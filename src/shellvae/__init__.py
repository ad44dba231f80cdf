"""shellvae: VAEs that cannot silently collapse.

Implements "Spherical VAE with Cluster-Aware Feasible Regions" (arXiv 2603.10935 v4), its
baselines, collapse diagnostics and a non-collapse certificate. See METHOD.md in the docs for
each equation and where it lives in the code.
"""

from shellvae.data import Dataset, load_dataset, make_gmm
from shellvae.errors import DataError, EmptyFeasibleRegionWarning, NonFiniteError, ShellVAEError
from shellvae.estimator import ShellVAE
from shellvae.geometry import ClusterGeometry
from shellvae.methods import METHODS, Method, Shell, Vanilla, get_method
from shellvae.metrics import Certificate, certify, evaluate
from shellvae.model import GaussianVAE, mlp_vae
from shellvae.shell import SphericalShell

__version__ = "0.1.0"

__all__ = [
    "METHODS", "Certificate", "ClusterGeometry", "DataError", "Dataset", "EmptyFeasibleRegionWarning",
    "GaussianVAE", "Method", "NonFiniteError", "Shell", "ShellVAE", "ShellVAEError", "SphericalShell", "Vanilla",
    "certify", "evaluate", "get_method", "load_dataset", "make_gmm", "mlp_vae",
]
