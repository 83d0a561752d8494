"""modelsteal._jit: compiled functions with numba's disk cache where it can be written."""

from __future__ import annotations

import pytest


def test_compiled_functions_work_where_numba_cannot_cache(monkeypatch):
    """A read-only install run without a home: numba has nowhere to write its cache and refuses
    cache=True; ``jit`` then compiles without it instead of failing the import."""
    from numba import njit
    from numba.core import caching

    from modelsteal._jit import jit

    impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl  # numba renamed it
    monkeypatch.setattr(impl, "_locator_classes", [])

    def double(x):
        return 2 * x

    with pytest.raises(RuntimeError, match="no locator available"):
        njit(cache=True)(double)
    assert jit(nogil=True)(double)(21) == 42
