"""Released names that changed: the old name keeps working for a while and says what replaces it.

Only a name a release carried gets an alias here (issue 24: names that agree); every alias warns with
a ``DeprecationWarning`` naming the new name, so a user's code is moved before the alias goes.
"""

from __future__ import annotations

import functools
import warnings


def _warn(old: str, new: str) -> None:
    warnings.warn(f"{old} is deprecated: use {new}.", DeprecationWarning, stacklevel=3)


def deprecated_function(old: str, new_function):
    """``old``, a released function name, calling ``new_function`` after a warning."""
    @functools.wraps(new_function)
    def alias(*args, **kwargs):
        _warn(old, new_function.__name__)
        return new_function(*args, **kwargs)
    alias.__doc__ = f"Deprecated alias of ``{new_function.__name__}``."
    alias.__name__ = alias.__qualname__ = old.rpartition(".")[2]
    return alias


def deprecated_attribute(old: str, new: str) -> property:
    """A read-only property ``old`` that warns and reads the attribute ``new``."""
    def get(self):
        _warn(f"{type(self).__name__}.{old}", f"{type(self).__name__}.{new}")
        return getattr(self, new)
    return property(get, doc=f"Deprecated alias of ``{new}``.")
