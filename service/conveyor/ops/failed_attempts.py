"""A limit on failed authentication attempts per client, in one process.

Each process counts on its own: N server processes let a client fail up to N x ``limit``
times within a window (docs/api.md says so).

Contract: a client (the caller's choice of key: an IP address, say) may fail at most
``limit`` times within any ``window`` seconds. Once it has, :meth:`FailedAttempts.check`
returns how many seconds remain until the oldest of those failures leaves the window, and
the caller refuses the request without looking at its credentials (HTTP 429 with
Retry-After); a request with the right key is refused too until then, so a client cannot
keep guessing by slipping a valid key in between. Successes neither count nor reset.

Memory is bounded: each client keeps at most ``limit`` times, and at most ``max_clients``
clients are kept; past that the client that failed least recently is forgotten (under a
flood from more addresses than that, a forgotten client starts again from zero: the bound
on memory wins over the count). The clock is injectable (monotonic seconds), for tests.
Safe to call from threads and from coroutines: each call holds a lock for a few dict
operations and never awaits.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable

DEFAULT_LIMIT = 10
DEFAULT_WINDOW = 60.0  # seconds
DEFAULT_MAX_CLIENTS = 10_000


class FailedAttempts:
    """Failed attempts per client within a sliding window (see the module's contract)."""

    def __init__(
        self,
        *,
        limit: int = DEFAULT_LIMIT,
        window: float = DEFAULT_WINDOW,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        if window <= 0:
            raise ValueError(f"window must be positive, got {window}")
        if max_clients < 1:
            raise ValueError(f"max_clients must be at least 1, got {max_clients}")
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        self._clock = clock
        self._lock = threading.Lock()
        # Client -> the times of its failures within the window, oldest first; clients in the
        # order of their last failure, least recent first.
        self._failures: OrderedDict[Hashable, deque[float]] = OrderedDict()

    def check(self, client: Hashable) -> float | None:
        """None if ``client`` may try now; else the seconds until it may (always > 0)."""
        now = self._clock()
        with self._lock:
            times = self._failures.get(client)
            if times is None:
                return None
            self._expire(times, now)
            if not times:
                del self._failures[client]
                return None
            if len(times) < self.limit:
                return None
            return max(times[0] + self.window - now, 1e-3)

    def count(self, client: Hashable) -> int:
        """How many times ``client`` failed within the window, up to ``limit``."""
        now = self._clock()
        with self._lock:
            times = self._failures.get(client)
            if times is None:
                return 0
            self._expire(times, now)
            return len(times)

    def failed(self, client: Hashable) -> None:
        """Count a failed attempt of ``client`` now."""
        now = self._clock()
        with self._lock:
            times = self._failures.pop(client, None)
            if times is None:
                times = deque(maxlen=self.limit)
            self._expire(times, now)
            times.append(now)
            self._failures[client] = times  # now the most recent
            # Forget clients whose last failure left the window (they are at the front), and
            # the least recent ones past the bound.
            while self._failures:
                _, oldest = next(iter(self._failures.items()))
                if len(self._failures) <= self.max_clients and oldest[-1] > now - self.window:
                    break
                self._failures.popitem(last=False)

    def __len__(self) -> int:
        """How many clients are remembered (a few may hold only expired failures)."""
        with self._lock:
            return len(self._failures)

    def _expire(self, times: deque[float], now: float) -> None:
        while times and times[0] <= now - self.window:
            times.popleft()
