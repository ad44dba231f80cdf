"""Training methods, selectable by name. Each file holds one method; ``METHODS`` maps names to classes.

Importing a module registers its methods, so every method file is imported here.
"""

from shellvae.methods.base import Batch, Epoch, EpochPlan, Method, Objective, Schedule, hyperparameter
from shellvae.methods.registry import METHODS, get_method, register
from shellvae.methods.vanilla import Vanilla
from shellvae.methods.beta import BetaVAE
from shellvae.methods.annealing import KLAnneal
from shellvae.methods.cyclical import Cyclical
from shellvae.methods.free_bits import FreeBits
from shellvae.methods.bn_vae import BNVAE
from shellvae.methods.aggressive import Aggressive
from shellvae.methods.em import EM
from shellvae.methods.shell import Shell, ShellBase
from shellvae.methods.ablations import ShellBoundary, ShellNone, ShellNorm
from shellvae.methods.lagrange import ShellLagrange

__all__ = [
    "EM", "METHODS", "BNVAE", "Aggressive", "Batch", "BetaVAE", "Cyclical", "Epoch", "EpochPlan", "FreeBits",
    "KLAnneal", "Method", "Objective", "Schedule", "Shell", "ShellBase", "ShellBoundary", "ShellLagrange",
    "ShellNone", "ShellNorm", "Vanilla", "get_method", "hyperparameter", "register",
]
