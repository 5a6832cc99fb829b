"""Exceptions with messages that say how to fix the problem.

The CLI maps :class:`InputError` to exit code 2 and prints its message on one line;
anything else is an internal error (exit 1).
"""

from __future__ import annotations


class DecayrecError(Exception):
    """Base class of every error decayrec raises on purpose."""


class InputError(DecayrecError, ValueError):
    """The user's input (a file, an option, a time) cannot be used; the message says why and how to fix it."""

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}; {fix}" if fix else problem)


class StoreError(DecayrecError):
    """The event store is missing, locked, or of an incompatible schema version."""


class MissingExtraError(DecayrecError, ImportError):
    """An optional dependency is not installed; the message names the extra."""

    def __init__(self, module: str, extra: str):
        super().__init__(f"{module} is not installed; install it with: pip install 'decayrec[{extra}]'")


def require(module: str, extra: str):
    """Import an optional dependency or raise an error naming the extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(module, extra) from exc
