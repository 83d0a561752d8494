"""Exceptions raised by modelsteal.

Every error says what was wrong, what was received and what to do instead. Each subclasses the
closest built-in exception as well, so ``except ValueError`` and friends keep working.
"""

from __future__ import annotations

from collections.abc import Iterable


class ModelStealError(Exception):
    """Base class of every error raised on purpose by modelsteal."""


class InvalidParameterError(ModelStealError, ValueError):
    """A parameter is out of its allowed range or of the wrong type."""


class UnknownNameError(ModelStealError, LookupError):
    """A registry was asked for a name it does not hold."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        self.kind = kind
        self.name = name
        self.known = sorted(known)
        listing = ", ".join(self.known) if self.known else "(none registered)"
        super().__init__(f"Unknown {kind} {name!r}. Known {kind}s: {listing}.")

    def __str__(self) -> str:  # LookupError subclasses may quote args; keep the plain message
        return str(self.args[0])


class InputValidationError(ModelStealError, ValueError):
    """Inputs sent to a target (or a metric) have the wrong shape, dtype or non-finite values."""


class TargetContractError(ModelStealError, ValueError):
    """A target returned something that is not an (n, C) batch of probability vectors."""


class QueryBudgetExceeded(ModelStealError, RuntimeError):
    """A budgeted target was asked for more rows than its budget allows.

    Nothing of the refused batch is answered or counted, so the caller can ask for at most
    ``remaining`` rows and go on.
    """

    def __init__(self, *, budget: int, spent: int, requested: int) -> None:
        self.budget = budget
        self.spent = spent
        self.requested = requested
        self.remaining = budget - spent
        super().__init__(
            f"Query budget exceeded: the budget is {budget} rows, {spent} are spent and "
            f"{requested} more were asked for ({self.remaining} remain). "
            f"Ask for at most {self.remaining} rows, or raise the budget."
        )


class DataNotFoundError(ModelStealError, FileNotFoundError):
    """A data set's files are not in the data folder."""


class ChecksumMismatchError(ModelStealError, ValueError):
    """A data file's checksum differs from the published one."""
