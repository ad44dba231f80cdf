"""shellvae: VAEs that cannot silently collapse.

Implements "Spherical VAE with Cluster-Aware Feasible Regions" (arXiv 2603.10935 v4), its
baselines, collapse diagnostics and a non-collapse certificate, for vectors (``ShellVAE``) and token
sequences (``SequenceVAE``). docs/method.md gives each equation and where it lives in the code.

The subpackages follow the data flow, each importing only those before it (tests/test_layers.py):

    base -> data -> core -> training -> evaluation -> estimators -> reporting -> experiments -> cli

Every public name is importable from here.
"""

from shellvae.core.geometry import ClusterGeometry
from shellvae.core.model import ARCHITECTURES, GaussianVAE, mlp_vae, register_architecture
from shellvae.core.region import DualAscent, FeasibleRegion
from shellvae.core.sequence_model import LanguageModel, SequenceVAEModel, language_model, sequence_vae
from shellvae.core.sequence_region import SequenceRegion
from shellvae.core.shell import SphericalShell
from shellvae.data import DATASETS, Dataset, load_dataset, make_gmm, register_dataset
from shellvae.data.sequences import SequenceDataset, TopicChains, Vocabulary, make_topic_chains, make_topic_corpus
from shellvae.data.fortunes import load_fortunes
from shellvae.data.text import load_sequences, load_text
from shellvae.errors import DataError, EmptyFeasibleRegionWarning, NonFiniteError, NotFittedError, ShellVAEError
from shellvae.estimators.sequence_vae import SequenceVAE
from shellvae.estimators.shell_vae import ShellVAE
from shellvae.evaluation.any_model import certify_model
from shellvae.evaluation.certificate import Certificate, certify
from shellvae.evaluation.metric_registry import (METRICS, metrics_for, per_row, register_per_row_metric,
                                                 register_whole_set_metric, whole_set)
from shellvae.evaluation.metrics import evaluate
from shellvae.evaluation.sequence_certificate import SequenceCertificate, certify_sequence_model
from shellvae.training.methods import (BNVAE, EM, METHODS, Aggressive, BetaVAE, Cyclical, FreeBits, KLAnneal, Method,
                                       Shell, ShellBoundary, ShellLagrange, ShellNone, ShellNorm, Vanilla, get_method,
                                       hyperparameter, register_method)
from shellvae.training.methods.registry import register

__version__ = "0.1.0"

__all__ = [
    "ARCHITECTURES", "Aggressive", "BNVAE", "BetaVAE", "Certificate", "ClusterGeometry", "Cyclical", "DATASETS",
    "DataError", "Dataset", "DualAscent", "EM", "EmptyFeasibleRegionWarning", "FeasibleRegion", "FreeBits",
    "GaussianVAE", "KLAnneal", "LanguageModel", "METHODS", "METRICS", "Method", "NonFiniteError", "NotFittedError",
    "SequenceCertificate", "SequenceDataset", "SequenceRegion", "SequenceVAE", "SequenceVAEModel", "Shell",
    "ShellBoundary", "ShellLagrange", "ShellNone", "ShellNorm", "ShellVAE", "ShellVAEError", "SphericalShell",
    "TopicChains", "Vanilla", "Vocabulary", "certify", "certify_model", "certify_sequence_model", "evaluate",
    "get_method", "hyperparameter", "language_model", "load_dataset", "load_fortunes", "load_sequences", "load_text",
    "make_gmm", "make_topic_chains", "make_topic_corpus", "metrics_for", "mlp_vae", "recommend",
    "register_architecture", "register_dataset", "register_method", "register_per_row_metric",
    "register_whole_set_metric", "sequence_vae",
    # deprecated aliases of released names (each warns): register_method, register_*_metric
    "per_row", "register", "whole_set",
]


def __getattr__(name):
    # ``recommend`` trains a grid through the experiments layer (cells, executors, tables): imported when
    # first used, so ``import shellvae`` stays as light as the estimators need
    if name == "recommend":
        from shellvae.experiments.recommend_data import recommend

        return recommend
    raise AttributeError(f"module 'shellvae' has no attribute {name!r}")
