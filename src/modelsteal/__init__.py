"""modelsteal: measure and defend against model stealing.

The public surface lives in the subpackages: :mod:`modelsteal.targets`, :mod:`modelsteal.data`,
:mod:`modelsteal.models`, :mod:`modelsteal.attacks`, :mod:`modelsteal.metrics`.
"""

from modelsteal._version import __version__

__all__ = ["__version__"]
