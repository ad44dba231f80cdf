"""Training methods, selectable by name. Each file holds one method; ``METHODS`` maps names to classes.

Importing a module registers its methods, so every method file is imported here.
"""

from shellvae.training.methods.base import Batch, Epoch, EpochPlan, Method, Objective, Schedule, hyperparameter
from shellvae.training.methods.registry import METHODS, get_method, register_method
from shellvae.training.methods.vanilla import Vanilla
from shellvae.training.methods.beta import BetaVAE
from shellvae.training.methods.annealing import KLAnneal
from shellvae.training.methods.cyclical import Cyclical
from shellvae.training.methods.free_bits import FreeBits
from shellvae.training.methods.bn_vae import BNVAE
from shellvae.training.methods.aggressive import Aggressive
from shellvae.training.methods.em import EM
from shellvae.training.methods.alternating import Alternating
from shellvae.training.methods.shell import Shell, ShellMethodBase
from shellvae.training.methods.ablations import ShellBoundary, ShellNone, ShellNorm
from shellvae.training.methods.lagrange import ShellLagrange

__all__ = [
    "EM", "METHODS", "BNVAE", "Aggressive", "Alternating", "Batch", "BetaVAE", "Cyclical", "Epoch", "EpochPlan",
    "FreeBits", "KLAnneal", "Method", "Objective", "Schedule", "Shell", "ShellBoundary", "ShellLagrange",
    "ShellMethodBase", "ShellNone", "ShellNorm", "Vanilla", "get_method", "hyperparameter", "register_method",
]
