"""Noticing, the moment it happens, that a worker thread ended without being asked to.

The core, the uplink, each bus and the control socket run on threads of their
own, and each handles what it can. One that ends anyway leaves a gateway that
looks alive — readings stop leaving, or a bus goes silent — until the systemd
watchdog gives up on it a minute later. The agent instead ends the process at
once with a non-zero status, and systemd starts a whole agent again.

The supervisor needs nothing from the worker classes: for each watched thread a
small daemon thread of its own joins it (a join costs nothing while the worker
runs) and, when the join returns for a thread the agent still expects to run,
calls ``on_death(thread)``. The agent stops expecting its threads before it
stops them (:meth:`Supervisor.release`), so a stop or a reload is not a death.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable


class Supervisor:
    """Calls ``on_death(thread)`` (on a watching thread) when a watched thread ends while still expected to run."""

    def __init__(self, on_death: Callable[[threading.Thread], None]):
        self._on_death = on_death
        self._lock = threading.Lock()
        self._expected: set[threading.Thread] = set()   # ending now would be a death
        self._watched: set[threading.Thread] = set()    # a watching thread is joining it

    def watch(self, threads: Iterable[threading.Thread]) -> None:
        """Expect these started threads to run until :meth:`release`; one that already ended is reported at once."""
        for thread in threads:
            with self._lock:
                self._expected.add(thread)
                if thread in self._watched:
                    continue
                self._watched.add(thread)
            threading.Thread(target=self._join, args=(thread,), name=f"{thread.name}-watch", daemon=True).start()

    def release(self) -> None:
        """Stop expecting any thread to run: what ends from now on was asked to, until the next :meth:`watch`."""
        with self._lock:
            self._expected.clear()

    def _join(self, thread: threading.Thread) -> None:
        thread.join()
        with self._lock:
            self._watched.discard(thread)
            died = thread in self._expected
            self._expected.discard(thread)
        if died:
            self._on_death(thread)


def reason(thread: threading.Thread) -> str:
    """Why ``thread`` ended, from the ``error`` the worker classes keep, as a log line shows it."""
    error = getattr(thread, "error", None)
    if error is None:
        return "it returned without being asked to stop"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
