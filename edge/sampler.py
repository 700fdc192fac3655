"""One thread per bus: open the bus, poll its sensors in turn, never die.

A failing sensor produces ``quality: "bad"`` readings with the reason and is
retried with exponential backoff (capped), without holding up the other
sensors on the same bus for longer than one read. A bus that cannot be opened
(USB adapter pulled, port held by another process) is retried the same way,
and every sensor on it is reported bad meanwhile.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from drivers.base import Bus, Driver, Measurement
from drivers.errors import DriverError, TransportError, TransportTimeout
from edge.model import failure_records, reading_record

log = logging.getLogger("linli.sampler")

#: Longest wait between retries of a failing sensor or bus.
MAX_BACKOFF = 300.0

Emit = Callable[[dict[str, Any], dict[str, Any] | None], Any]


@dataclass
class SensorSlot:
    """A driver and its schedule on the bus thread."""

    sensor_id: str
    driver: Driver
    interval: float
    opened: bool = False
    failures: int = 0
    last_error: str | None = None
    last_good: float | None = None  # monotonic
    reads: int = 0
    quantities: tuple[str, ...] = field(default=())

    def backoff(self) -> float:
        """Next delay after ``failures`` failures in a row: interval, 2×, 4× … capped."""
        return min(self.interval * 2 ** max(self.failures - 1, 0), max(self.interval, MAX_BACKOFF))


class BusWorker(threading.Thread):
    """Owns one bus and every sensor on it."""

    def __init__(self, bus: Bus, slots: list[SensorSlot], emit: Emit, stamp: Callable[[], dict[str, Any]]):
        super().__init__(name=f"linli-bus-{bus.name}", daemon=True)
        self.bus = bus
        self.slots = slots
        self.emit = emit
        self.stamp = stamp
        self.heartbeat = time.monotonic()
        self.bus_open = threading.Event()
        self.bus_error: str | None = None
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)

    # --- thread -------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._open_bus_until_it_works()
            if not self._stop_event.is_set():
                self._poll()
                self._last_reads()
        except BaseException as exc:  # what a driver raises beyond Exception; the agent's supervision ends the process
            self.error = exc
            log.exception("bus %s thread failed", self.bus.name)
        finally:
            self._close_all()

    def _open_bus_until_it_works(self) -> None:
        failures = 0
        while not self._stop_event.is_set():
            self.heartbeat = time.monotonic()
            try:
                self.bus.open()
                self.bus_error = None
                self.bus_open.set()
                if failures:
                    log.info("bus %s open again", self.bus.name)
                return
            except DriverError as exc:
                failures += 1
                self.bus_error = str(exc)
                log.error("bus %s: %s", self.bus.name, exc)
                for slot in self.slots:
                    self._report_failure(slot, exc.reason, str(exc))
                shortest = min((s.interval for s in self.slots), default=1.0)
                delay = min(shortest * 2 ** (failures - 1), max(shortest, MAX_BACKOFF))
                self._wait(delay)

    def _poll(self) -> None:
        now = time.monotonic()
        # Spread first reads a little so sensors on one bus do not all fire at once.
        queue = [(now + i * 0.05, i) for i in range(len(self.slots))]
        heapq.heapify(queue)
        while not self._stop_event.is_set():
            self.heartbeat = time.monotonic()
            due, index = queue[0] if queue else (time.monotonic() + 1.0, -1)
            wait = due - time.monotonic()
            if wait > 0:
                self._wait(min(wait, 1.0))  # wake at least every second to beat the heartbeat
                continue
            heapq.heappop(queue)
            slot = self.slots[index]
            ok = self._read(slot)
            step = slot.interval if ok else slot.backoff()
            # Keep the cadence; after a long stall skip missed slots instead of bursting.
            nxt = due + step
            if nxt < time.monotonic():
                nxt = time.monotonic() + step
            heapq.heappush(queue, (nxt, index))

    def _last_reads(self) -> None:
        """On a clean stop, one more read of the drivers that count between reads (pulses, contact changes)."""
        for slot in self.slots:
            if slot.opened and slot.driver.read_at_stop:
                self._read(slot)

    def _read(self, slot: SensorSlot) -> bool:
        try:
            # Set before open(): a meter dead since start-up must not cost its neighbours retries either.
            slot.driver.failing = slot.failures > 0
            if not slot.opened:
                slot.driver.open()
                slot.opened = True
            measurements = slot.driver.read()
        except TransportTimeout as exc:
            # One silent device on a shared line says nothing about the port: do not reopen it.
            self._fail(slot, exc)
            return False
        except TransportError as exc:
            self._fail(slot, exc)
            self._recover_bus()
            return False
        except DriverError as exc:
            self._fail(slot, exc)
            return False
        except Exception as exc:  # a driver bug must not take the bus thread down
            log.exception("driver %s of sensor %s failed unexpectedly", slot.driver.name, slot.sensor_id)
            self._fail(slot, exc, reason="driver_bug")
            return False
        if slot.failures:
            log.info("sensor %s reads again after %d failures", slot.sensor_id, slot.failures)
        slot.failures = 0
        slot.last_error = None
        slot.last_good = time.monotonic()
        slot.reads += 1
        self._emit_measurements(slot, measurements)
        return True

    def _emit_measurements(self, slot: SensorSlot, measurements: list[Measurement]) -> None:
        stamp = self.stamp()
        # A read may return one quantity several times (each contact change): keep each name once.
        slot.quantities = tuple(dict.fromkeys(m.quantity for m in measurements)) or slot.quantities
        for m in measurements:
            self.emit(reading_record(slot.sensor_id, m, stamp), m.state)

    def _fail(self, slot: SensorSlot, exc: BaseException, reason: str | None = None) -> None:
        slot.failures += 1
        message = str(exc) or type(exc).__name__
        if slot.failures == 1 or message != slot.last_error:
            log.warning("sensor %s: %s", slot.sensor_id, message)
        slot.last_error = message
        if isinstance(exc, TransportError) and not isinstance(exc, TransportTimeout) and slot.opened:
            self._close_driver(slot)
        self._report_failure(slot, reason or getattr(exc, "reason", "driver_error"), message)

    def _report_failure(self, slot: SensorSlot, reason: str, message: str) -> None:
        quantities = slot.quantities or slot.driver.quantities
        for record in failure_records(slot.sensor_id, quantities, reason, message, self.stamp()):
            self.emit(record, None)

    def _recover_bus(self) -> None:
        """A transport error may mean the port vanished: reopen it (drivers reopen on their next read)."""
        reopen = getattr(self.bus, "reopen", None)
        if reopen is None:
            return
        try:
            reopen()
            self.bus_error = None
        except DriverError as exc:
            self.bus_error = str(exc)
            log.warning("bus %s: %s", self.bus.name, exc)

    def _close_driver(self, slot: SensorSlot) -> None:
        try:
            slot.driver.close()
        except Exception:
            log.exception("closing driver of %s", slot.sensor_id)
        slot.opened = False

    def _close_all(self) -> None:
        for slot in self.slots:
            if slot.opened:
                self._close_driver(slot)
        try:
            self.bus.close()
        except Exception:
            log.exception("closing bus %s", self.bus.name)

    def _wait(self, seconds: float) -> None:
        self._stop_event.wait(max(0.0, seconds))

    def status(self) -> dict[str, Any]:
        """Per-sensor state for health and the CLI."""
        now = time.monotonic()
        return {
            "bus": self.bus.name,
            "bus_error": self.bus_error,
            "sensors": {
                s.sensor_id: {
                    "ok": s.failures == 0 and s.last_good is not None,
                    "failures": s.failures,
                    "last_error": s.last_error,
                    "last_good_age_s": None if s.last_good is None else round(now - s.last_good, 1),
                    "reads": s.reads,
                }
                for s in self.slots
            },
        }
