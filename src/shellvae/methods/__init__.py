"""Training methods, selectable by name. Each file holds one method; ``METHODS`` maps names to classes."""

from shellvae.methods.base import Batch, Method, TrainContext
from shellvae.methods.registry import METHODS, get_method, register
from shellvae.methods.shell import Shell
from shellvae.methods.vanilla import Vanilla

__all__ = ["METHODS", "Batch", "Method", "Shell", "TrainContext", "Vanilla", "get_method", "register"]
