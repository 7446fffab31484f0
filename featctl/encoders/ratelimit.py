"""Pacing for paid APIs: requests/min and tokens/min limits, retry-after, backoff with jitter."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


class RateLimiter:
    """Spaces requests so that neither ``rpm`` nor ``tpm`` is ever exceeded, from the first second.

    Each request reserves the next free slot of both limits (one request is 60/rpm seconds of the
    request rate, n tokens are 60·n/tpm seconds of the token rate) and waits for it, so concurrent
    senders share the limits in the order they asked, and a steady run sends at the limit itself.
    A 429's retry-after pauses every sender, not only the one that got it.
    """

    def __init__(self, rpm: float | None = None, tpm: float | None = None, *,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.rpm, self.tpm = rpm, tpm
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._next_request = self._next_token = clock()
        self.waited = 0.0

    def acquire(self, tokens: int) -> None:
        """Block until a request of ``tokens`` may be sent."""
        with self._lock:
            now = self._clock()
            start = max(now, self._next_request, self._next_token)
            if self.rpm:
                self._next_request = start + 60.0 / self.rpm
            if self.tpm:
                self._next_token = start + 60.0 * tokens / self.tpm
            wait = start - now
            self.waited += wait
        if wait > 0:
            self._sleep(wait)

    def pause(self, seconds: float) -> None:
        """Nobody sends for ``seconds`` (the server said so)."""
        with self._lock:
            until = self._clock() + seconds
            self._next_request = max(self._next_request, until)
            self._next_token = max(self._next_token, until)


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds a server asked us to wait: ``retry-after-ms`` first, then ``retry-after`` (seconds)."""
    if not headers:
        return None
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue  # an HTTP date: rare for these APIs; fall back to backoff
        if seconds >= 0:
            return seconds
    return None


def backoff(attempt: int, base: float, cap: float = 60.0) -> float:
    """Exponential backoff with full jitter after the ``attempt``-th failure (1-based)."""
    return random.uniform(0, min(cap, base * 2 ** (attempt - 1)))
