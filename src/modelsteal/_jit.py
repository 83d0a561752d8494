"""``jit``: numba's ``njit`` with its on-disk cache wherever numba can keep one.

Compiled functions are cached next to their source (``__pycache__``), else in the user's cache
folder, or in ``$NUMBA_CACHE_DIR`` when set, so a process compiles them once per machine rather
than once per start. Where none of these can be written (a read-only install run by a user
without a home), numba refuses ``cache=True`` at decoration; the functions are then compiled
without the cache, at their first call in each process, instead of failing the import.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from numba import njit

__all__ = ["jit"]


def jit(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """``numba.njit(cache=True, **options)``, or without the cache where numba has no place
    to write it."""

    def wrap(fn: Callable[..., Any]) -> Any:
        try:
            return njit(cache=True, **options)(fn)
        except RuntimeError:  # "cannot cache function …: no locator available"
            return njit(**options)(fn)

    return wrap
