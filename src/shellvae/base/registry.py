"""Named registries: methods, datasets, metrics and experiments are each registered where they are
defined, and everything that lists them (the CLI's choices and help, the docs' tables, the
tests) reads the registry instead of keeping a list of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from shellvae.errors import ShellVAEError

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one kind by name, in registration order; ``aliases`` are other spellings of a name."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def add(self, name: str, entry: T, aliases: tuple[str, ...] = ()) -> T:
        for key in (name, *aliases):
            if key in self._entries or key in self._aliases:
                raise RuntimeError(f"{self.kind} {key!r} registered twice")
        self._entries[name] = entry
        self._aliases.update({alias: name for alias in aliases})
        return entry

    def remove(self, name: str) -> T:
        """Take ``name`` (and its aliases) out again, e.g. after an example registered a throwaway entry."""
        self._aliases = {alias: target for alias, target in self._aliases.items() if target != name}
        return self._entries.pop(name)

    def canonical(self, name: str) -> str:
        """The registered name for ``name`` or one of its aliases; a clear error for anything else."""
        name = self._aliases.get(name, name)
        if name not in self._entries:
            raise ShellVAEError(f"unknown {self.kind} {name!r}; available: {', '.join(self._entries)}.")
        return name

    def __getitem__(self, name: str) -> T:
        return self._entries[self.canonical(name)]

    def get(self, name: str, default=None):
        name = self._aliases.get(name, name)
        return self._entries.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def items(self):
        return self._entries.items()

    def values(self):
        return self._entries.values()

    def names(self) -> list[str]:
        return list(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"
