"""Methods by name: adding a method is one decorated class in its own file, imported in __init__."""

from __future__ import annotations

import copy

from shellvae.errors import ShellVAEError

METHODS: dict[str, type] = {}


def register(cls):
    if cls.name in METHODS:
        raise RuntimeError(f"method name {cls.name!r} registered twice")
    METHODS[cls.name] = cls
    return cls


def get_method(method, **params):
    """A fresh method instance from a name (with hyperparameters) or from an instance.

    An instance is copied: methods carry training state (a Lagrange multiplier, a mode), and
    fitting must neither change the caller's object nor start from a previous fit's state.
    """
    if not isinstance(method, str):
        if params:
            raise ShellVAEError("pass hyperparameters either in the method instance or as params, not both.")
        return copy.deepcopy(method)
    if method not in METHODS:
        raise ShellVAEError(f"unknown method {method!r}; available: {', '.join(sorted(METHODS))}.")
    cls = METHODS[method]
    try:
        return cls(**params)
    except TypeError as exc:
        allowed = ", ".join(cls().params()) or "none"
        raise ShellVAEError(f"bad hyperparameters for method {method!r}: {exc}. Allowed: {allowed}.") from None
