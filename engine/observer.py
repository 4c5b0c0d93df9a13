"""Measurements the engine reports while it works, for metrics or tests.

The engine calls an ``EngineObserver`` and does not depend on how the
numbers are stored, so it imports no metrics library. ``NullObserver`` is the
default and drops everything.
"""

from __future__ import annotations

from typing import Protocol


class EngineObserver(Protocol):
    """Receives one call per event; each call must be cheap and must not raise."""

    def batch_committed(self, commands: int, seconds: float) -> None:
        """Record a batch of ``commands`` whose transaction committed in ``seconds``."""

    def batch_failed(self, commands: int, seconds: float) -> None:
        """Record a batch of ``commands`` whose transaction failed after ``seconds``, so its callers got a 503."""


class NullObserver:
    """An ``EngineObserver`` that drops every measurement."""

    def batch_committed(self, commands: int, seconds: float) -> None:
        pass

    def batch_failed(self, commands: int, seconds: float) -> None:
        pass


NULL_OBSERVER = NullObserver()
