"""A circuit breaker per upstream: after repeated failures, fail fast instead of piling up on a sick server."""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum


class State(StrEnum):
    CLOSED = "closed"  # requests flow
    OPEN = "open"  # requests fail at once until reset_s has passed
    HALF_OPEN = "half_open"  # one trial request decides whether to close again


class CircuitBreaker:
    def __init__(self, failures: int, reset_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures, self.reset_s, self._clock = failures, reset_s, clock
        self._state = State.CLOSED
        self._consecutive = 0
        self._opened_at = 0.0
        self._trial_running = False

    @property
    def state(self) -> State:
        if self._state is State.OPEN and self._clock() - self._opened_at >= self.reset_s:
            self._state = State.HALF_OPEN
            self._trial_running = False
        return self._state

    def allow(self) -> bool:
        state = self.state
        if state is State.CLOSED:
            return True
        if state is State.HALF_OPEN and not self._trial_running:
            self._trial_running = True
            return True
        return False

    def retry_after(self) -> float:
        return max(0.0, self.reset_s - (self._clock() - self._opened_at))

    def abandon(self) -> None:
        """The trial request ended without success or failure: the next request may be the trial."""
        self._trial_running = False

    def success(self) -> None:
        self._state, self._consecutive, self._trial_running = State.CLOSED, 0, False

    def failure(self) -> None:
        self._consecutive += 1
        if self._state is State.HALF_OPEN or self._consecutive >= self.failures:
            self._state, self._opened_at, self._trial_running = State.OPEN, self._clock(), False
