"""Methods by name: adding a method is one decorated class in its own file, imported in __init__."""

from __future__ import annotations

import copy

from shellvae.base.deprecation import deprecated_function
from shellvae.errors import ShellVAEError
from shellvae.base.registry import Registry

METHODS: Registry = Registry("method")


def register_method(cls):
    """Class decorator: make ``cls`` available by ``cls.name`` (``get_method``, ``--method``)."""
    return METHODS.add(cls.name, cls)


#: the released name of ``register_method``
register = deprecated_function("shellvae.register", register_method)


def get_method(method, **params):
    """A fresh method instance from a name (with hyperparameters, converted and range-checked) or
    from an instance.

    An instance is copied: methods carry training state (a Lagrange multiplier, a mode), and
    fitting must neither change the caller's object nor start from a previous fit's state.
    """
    if not isinstance(method, str):
        if params:
            raise ShellVAEError("pass hyperparameters either in the method instance or as params, not both.")
        return copy.deepcopy(method)
    cls = METHODS[method]
    return cls(**{key: cls.convert(key, value) for key, value in params.items()})
