"""How long a failed job waits before its next attempt."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from .errors import InvalidOptionError


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter and a cap.

    After attempt ``n`` fails, the job waits ``min(cap, base * factor ** (n - 1))`` seconds,
    moved up or down by at most ``jitter`` of itself so that jobs that failed together do
    not all come back at the same instant. The defaults give about 2, 4, 8, 16 s ... up to
    an hour.
    """

    base: float = 2.0
    factor: float = 2.0
    cap: float = 3600.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        # Written as "not (ok)" so that NaN, which fails every comparison, is refused too.
        if not (0 <= self.base < math.inf and 0 <= self.cap < math.inf):
            raise InvalidOptionError("backoff base and cap must not be negative")
        if not (1 <= self.factor < math.inf):
            raise InvalidOptionError("backoff factor must be at least 1")
        if not (0 <= self.jitter < 1):
            raise InvalidOptionError("backoff jitter must be in [0, 1)")

    @classmethod
    def fixed(cls, seconds: float) -> Backoff:
        """The same wait after every failure."""
        return cls(base=seconds, factor=1.0, cap=seconds, jitter=0.0)

    @classmethod
    def none(cls) -> Backoff:
        """Retry at once."""
        return cls(base=0.0, factor=1.0, cap=0.0, jitter=0.0)

    def bounds(self, attempt: int) -> tuple[float, float]:
        """The shortest and longest wait after attempt ``attempt`` (1-based) fails."""
        nominal = self._nominal(attempt)
        return nominal * (1 - self.jitter), nominal * (1 + self.jitter)

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """The wait in seconds after attempt ``attempt`` (1-based) fails."""
        nominal = self._nominal(attempt)
        return nominal * (1 - self.jitter + 2 * self.jitter * rand())

    def _nominal(self, attempt: int) -> float:
        if attempt < 1:
            raise InvalidOptionError(f"attempt must be at least 1, got {attempt}")
        if self.base == 0 or self.cap == 0:
            return 0.0
        # In logarithms: factor ** (attempt - 1) overflows a float long before any cap does.
        log_raw = math.log(self.base) + (attempt - 1) * math.log(self.factor)
        if log_raw >= math.log(self.cap):
            return self.cap
        return self.base * self.factor ** (attempt - 1)  # below the cap, so no overflow
