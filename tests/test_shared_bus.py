"""One RS-485 line, several meters, the agent's bus thread: a garbling meter and a pulled adapter.

The silent-meter cases live with each driver's tests (tests/test_mbus_meter.py,
tests/test_cjt188_meter.py); here the line itself misbehaves.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

from drivers.cjt188_meter import Cjt188Meter
from drivers.codecs.cjt188 import parse_frame
from drivers.options import validate_options
from drivers.transports.serial import SerialBus
from edge.sampler import BusWorker, SensorSlot
from edge.simulate.cjt188_meter import Cjt188WaterMeter
from edge.simulate.line import SimulatedLine
from tests.mqtt_helpers import wait_until

ADDRESSES = ("00000000000101", "00000000000102", "00000000000103")


class Recorder:
    """What the bus thread emits, counted per (sensor, quality, reason) of the volume readings."""

    def __init__(self):
        self.records: list[dict] = []
        self._lock = threading.Lock()

    def __call__(self, record: dict, _state) -> None:
        with self._lock:
            self.records.append(record)

    def volumes(self) -> list[dict]:
        with self._lock:
            return [r for r in self.records if r["quantity"] == "volume"]

    def count(self, sensor: str, quality: str = "good", reason: str | None = None, after: int = 0) -> int:
        return sum(1 for r in self.volumes()[after:] if r["sensor"] == sensor and r["quality"] == quality
                   and (reason is None or r.get("reason") == reason))


def start_worker(line: SimulatedLine, recorder: Recorder) -> BusWorker:
    values, problems = validate_options(
        SerialBus.options, {"port": line.path, "baudrate": 9600, "parity": "E", "timeout": "1s"})
    assert problems == []
    bus = SerialBus("rs485-2", values)
    slots = []
    for address in ADDRESSES:
        options, problems = validate_options(Cjt188Meter.options, {"address": address, "di_order": "2004"})
        assert problems == []
        slots.append(SensorSlot(address, Cjt188Meter(address, options, bus), interval=0.1))
    worker = BusWorker(bus, slots, recorder, stamp=lambda: {"ts": int(time.time() * 1000)})
    worker.start()
    return worker


def test_a_garbling_meter_is_reported_as_such_and_its_neighbours_keep_reading():
    meters = [Cjt188WaterMeter(address, start_m3=float(i + 1)) for i, address in enumerate(ADDRESSES)]
    recorder = Recorder()
    with SimulatedLine(meters, baudrate=9600) as line:
        worker = start_worker(line, recorder)
        try:
            wait_until(lambda: all(recorder.count(a) for a in ADDRESSES), 10.0, "a first good round")
            line.set_fault(meters[1], "garble")
            mark = len(recorder.volumes())
            wait_until(lambda: recorder.count(ADDRESSES[1], "bad", after=mark) >= 3
                       and min(recorder.count(a, after=mark) for a in (ADDRESSES[0], ADDRESSES[2])) >= 5,
                       15.0, "the garbling meter to fail three times while the others read")
            line.set_fault(meters[1], None)
            mark = len(recorder.volumes())
            wait_until(lambda: recorder.count(ADDRESSES[1], after=mark), 15.0, "the healed meter to read again")
        finally:
            worker.stop()
    bad = [r for r in recorder.volumes() if r["sensor"] == ADDRESSES[1] and r["quality"] == "bad"]
    assert {r["reason"] for r in bad} == {"frame"}
    assert "checksum" in bad[0]["error"] and bad[0]["error"].endswith("(after 3 attempts)")
    # Neighbours never failed and never read a wrong value.
    for i in (0, 2):
        assert recorder.count(ADDRESSES[i], "bad") == 0
        assert {r["value"] for r in recorder.volumes() if r["sensor"] == ADDRESSES[i]} == {float(i + 1)}
    # A garbled answer is retried, but once failing the meter gets one request per read.
    asked = Counter(parse_frame(r).address for r in line.requests)
    assert asked[ADDRESSES[1]] <= recorder.count(ADDRESSES[1]) + 3 + (len(bad) - 1)


def test_a_pulled_adapter_marks_every_meter_bad_and_reading_resumes_when_it_is_back():
    meters = [Cjt188WaterMeter(address, start_m3=float(i + 1)) for i, address in enumerate(ADDRESSES)]
    recorder = Recorder()
    with SimulatedLine(meters, baudrate=9600) as line:
        worker = start_worker(line, recorder)
        try:
            wait_until(lambda: all(recorder.count(a) for a in ADDRESSES), 10.0, "a first good round")
            line.unplug()
            mark = len(recorder.volumes())
            wait_until(lambda: all(recorder.count(a, "bad", after=mark) for a in ADDRESSES), 15.0,
                       "every meter to be reported bad")
            assert worker.bus_error is not None and "does not exist" in worker.bus_error
            line.plug_in()
            mark = len(recorder.volumes())
            wait_until(lambda: all(recorder.count(a, after=mark) for a in ADDRESSES), 30.0,
                       "every meter to read again on the new adapter")
        finally:
            worker.stop()
    reasons = {r["reason"] for r in recorder.volumes() if r["quality"] == "bad"}
    assert reasons <= {"transport", "timeout"} and "transport" in reasons
    assert worker.status()["bus_error"] is None
