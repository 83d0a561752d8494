"""Registries by name: one source for the CLI, config files and the server.

A registry is a typed mapping from a name to an object (a class, a factory, a spec). Registering a
name twice raises unless ``force=True``; looking up an unknown name raises
:class:`~modelsteal.errors.UnknownNameError` listing the known names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar, overload

from modelsteal.errors import InvalidParameterError, UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of objects of one kind (``"data set"``, ``"model"``, ``"recipe"``...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    @overload
    def register(self, name: str, obj: None = None, *, force: bool = False) -> Callable[[T], T]: ...
    @overload
    def register(self, name: str, obj: T, *, force: bool = False) -> T: ...

    def register(self, name: str, obj: T | None = None, *, force: bool = False) -> T | Callable:
        """Register ``obj`` under ``name``; without ``obj``, return a decorator that does."""
        if not isinstance(name, str) or not name or name != name.strip():
            raise InvalidParameterError(
                f"A {self.kind} name must be a non-empty string without surrounding spaces. "
                f"Got {name!r} instead."
            )

        def add(item: T) -> T:
            if name in self._items and not force:
                raise InvalidParameterError(
                    f"A {self.kind} named {name!r} is already registered. "
                    "Pass force=True to replace it."
                )
            self._items[name] = item
            return item

        return add if obj is None else add(obj)

    def get(self, name: str) -> T:
        """Return the object registered under ``name``."""
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise UnknownNameError(self.kind, str(name), self._items) from None

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        return [(n, self._items[n]) for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
