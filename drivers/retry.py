"""Bounded retries of one request on a shared bus.

A request that timed out or came back garbled is repeated up to ``retries``
more times — unless the device is already failing (:attr:`Driver.failing`),
in which case it gets exactly one attempt, so that a dead meter costs its
neighbours on the bus at most one timeout per sweep.

>>> calls = []
>>> def flaky():
...     calls.append(1)
...     if len(calls) < 3:
...         raise TransportTimeout("no answer from meter 5 within 0.2 s")
...     return "ok"
>>> with_retries(flaky, attempts=3), len(calls)
('ok', 3)
>>> calls.clear()
>>> with_retries(flaky, attempts=2)
Traceback (most recent call last):
drivers.errors.TransportTimeout: no answer from meter 5 within 0.2 s (after 2 attempts)
"""

from __future__ import annotations

from typing import Callable, TypeVar

from drivers.errors import DriverError, FrameError, TransportTimeout

T = TypeVar("T")


def _retry_on_timeout_or_frame(exc: DriverError) -> bool:
    return isinstance(exc, (TransportTimeout, FrameError))


def with_retries(
    request: Callable[[], T],
    attempts: int,
    retryable: Callable[[DriverError], bool] = _retry_on_timeout_or_frame,
) -> T:
    """Call ``request`` until it returns, at most ``attempts`` times.

    Only errors for which ``retryable`` is true are retried; the last one is
    re-raised — a timeout or frame error with the number of attempts in its
    message (same frame offset), anything else unchanged.
    """
    attempt = 1
    while True:
        try:
            return request()
        except DriverError as exc:
            if not retryable(exc) or attempt >= attempts:
                if attempt == 1 or not isinstance(exc, (FrameError, TransportTimeout)):
                    raise
                raise _after_attempts(exc, attempt) from exc
        attempt += 1


def attempts_for(driver, retries: int) -> int:
    """How many tries ``driver`` gets for one request now: one while it is failing."""
    return 1 if getattr(driver, "failing", False) else 1 + retries


def _after_attempts(exc: FrameError | TransportTimeout, attempts: int) -> DriverError:
    message = f"{exc} (after {attempts} attempts)"
    if isinstance(exc, FrameError):
        return FrameError(message, offset=exc.offset)
    return TransportTimeout(message)
