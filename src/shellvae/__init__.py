"""shellvae: VAEs that cannot silently collapse.

Implements "Spherical VAE with Cluster-Aware Feasible Regions" (arXiv 2603.10935 v4), its
baselines, collapse diagnostics and a non-collapse certificate. docs/method.md gives each
equation and where it lives in the code.
"""

from shellvae.any_model import certify_model
from shellvae.certificate import Certificate, certify
from shellvae.data import DATASETS, Dataset, load_dataset, make_gmm, register_dataset
from shellvae.errors import DataError, EmptyFeasibleRegionWarning, NonFiniteError, ShellVAEError
from shellvae.estimator import ShellVAE
from shellvae.geometry import ClusterGeometry
from shellvae.methods import METHODS, Method, Shell, Vanilla, get_method, hyperparameter, register
from shellvae.metrics import METRICS, evaluate, per_row, whole_set
from shellvae.model import ARCHITECTURES, GaussianVAE, mlp_vae, register_architecture
from shellvae.region import DualAscent, FeasibleRegion
from shellvae.sequence import SequenceVAE, certify_sequence_model
from shellvae.shell import SphericalShell

__version__ = "0.1.0"

__all__ = [
    "ARCHITECTURES", "DATASETS", "METHODS", "METRICS", "Certificate", "ClusterGeometry", "DataError", "Dataset",
    "DualAscent", "EmptyFeasibleRegionWarning", "FeasibleRegion", "GaussianVAE", "Method", "NonFiniteError",
    "SequenceVAE", "Shell", "ShellVAE", "ShellVAEError", "SphericalShell", "Vanilla", "certify", "certify_model",
    "certify_sequence_model", "evaluate", "get_method", "hyperparameter", "load_dataset", "make_gmm", "mlp_vae",
    "per_row", "register", "register_architecture", "register_dataset", "whole_set",
]
