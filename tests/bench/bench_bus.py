"""Poll cycle of a shared meter bus against the line's theoretical limit; prints figures, asserts nothing.

Run: ``python tests/bench/bench_bus.py [--meters 20] [--baudrate 2400] [--sweeps 3]``

Twenty simulated water meters hang on one simulated line (``edge.simulate.line``:
a pseudo-terminal whose answers are paced at the line's character time, so a
2400 Bd 8E1 line takes 4.58 ms per byte as copper does). The agent's own bus
thread (``edge.sampler.BusWorker``) polls them with the real drivers, every
meter due at once, and the time from one reading of a meter to its next is the
poll cycle. The theoretical limit is the wire time of every byte of every
request and answer, plus the silence the protocol demands between frames
(3.5 characters before each request, and the slave's 11-bit turn-around).

Then one meter goes silent: while it is failing it gets one attempt per read
(no retries), so it costs the others at most one timeout per sweep — and
with backoff it is not asked every sweep at all.

Scenarios: CJ/T 188 (both DI orders, 4 FE preamble), M-Bus primary
addressing, M-Bus secondary addressing (select + REQ_UD2 per read).
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections import defaultdict
from typing import Any, Callable

from drivers.options import validate_options
from drivers.registry import driver_class
from drivers.transports.serial import SerialBus
from edge.sampler import BusWorker, SensorSlot
from edge.simulate.cjt188_meter import Cjt188WaterMeter
from edge.simulate.line import SimulatedLine
from edge.simulate.mbus_meter import MbusWaterMeter

#: The shortest turn-around EN 13757-2 allows an M-Bus slave; the simulated line answers after it for
#: both protocols (CJ/T 188 sets none, and real meters take longer).
TURNAROUND_BITS = 11


def cjt188_meters(n: int) -> list[tuple[Any, dict[str, Any]]]:
    meters = []
    for i in range(n):
        address = f"{20260000000000 + i + 1:014d}"
        order = "2004" if i % 2 else "2018"
        meters.append((Cjt188WaterMeter(address, di_order=order, start_m3=12.3 + i, flow=6.0),
                       {"address": address, "di_order": order}))
    return meters


def mbus_meters(n: int, secondary: bool) -> list[tuple[Any, dict[str, Any]]]:
    meters = []
    for i in range(n):
        sim = MbusWaterMeter(i + 1, f"{31000000 + i + 1:08d}", start_m3=40.0 + i, flow=6.0)
        meters.append((sim, {"address": sim.secondary_id if secondary else sim.primary}))
    return meters


def run_bus(driver_name: str, meters, baudrate: int, timeout: str, sweeps: int,
            silent: int | None = None) -> dict[str, Any]:
    """Poll the line with the agent's bus thread until every meter was read ``sweeps`` + 1 times."""
    with SimulatedLine([sim for sim, _ in meters], baudrate=baudrate) as line:
        bus_values, problems = validate_options(
            SerialBus.options, {"port": line.path, "baudrate": baudrate, "parity": "E", "timeout": timeout})
        assert not problems, problems
        bus = SerialBus("bench", bus_values)
        cls = driver_class(driver_name)
        slots = []
        for i, (_, raw) in enumerate(meters):
            values, problems = validate_options(cls.options, raw)
            assert not problems, problems
            slots.append(SensorSlot(f"m{i}", cls(f"m{i}", values, bus), interval=0.1))
        if silent is not None:
            line.set_fault(meters[silent][0], "silent")
        seen: dict[str, list[float]] = defaultdict(list)
        first_quantity: dict[str, str] = {}
        done = threading.Event()
        healthy = [s.sensor_id for i, s in enumerate(slots) if i != silent]

        def emit(record: dict[str, Any], _state) -> None:
            sensor, quantity = record["sensor"], record["quantity"]
            if record["quality"] != "good" or first_quantity.setdefault(sensor, quantity) != quantity:
                return
            seen[sensor].append(time.monotonic())
            if all(len(seen[s]) > sweeps for s in healthy):
                done.set()

        worker = BusWorker(bus, slots, emit, stamp=lambda: {"ts": int(time.time() * 1000)})
        worker.start()
        done.wait(600)
        worker.stop()
        traffic, char_time = list(line.traffic), line.char_time
    cycles = [b - a for s in healthy for a, b in zip(seen[s], seen[s][1:], strict=False)]
    # One sweep of traffic: every exchange between two successive readings of the first healthy meter.
    start, end = seen[healthy[0]][-2], seen[healthy[0]][-1]
    sweep = [(req, ans) for at, req, ans in traffic if start <= at < end]
    return {"cycle": statistics.median(cycles), "cycle_max": max(cycles),
            "bytes_per_sweep": sum(req + ans for req, ans in sweep), "exchanges_per_sweep": len(sweep),
            "char_time": char_time}


def wire_limit(result: dict[str, Any], turnaround_bits: int, baudrate: int) -> tuple[float, float]:
    """(bytes only, bytes plus the protocol's minimum silences) of one sweep, in seconds."""
    wire = result["bytes_per_sweep"] * result["char_time"]
    gaps = result["exchanges_per_sweep"] * (3.5 * result["char_time"] + turnaround_bits / baudrate)
    return wire, wire + gaps


def report(title: str, driver: str, make: Callable[[], list], args, turnaround_bits: int, timeout: str) -> None:
    healthy = run_bus(driver, make(), args.baudrate, timeout, args.sweeps)
    wire, with_gaps = wire_limit(healthy, turnaround_bits, args.baudrate)
    silent = run_bus(driver, make(), args.baudrate, timeout, args.sweeps, silent=args.meters // 2)
    print(f"{title}: {args.meters} meters at {args.baudrate} Bd 8E1, bus timeout {timeout}")
    print(f"  poll cycle, all answering   median {healthy['cycle']:.2f} s  (max {healthy['cycle_max']:.2f} s)")
    print(f"  one sweep on the wire       {healthy['exchanges_per_sweep']} exchanges, "
          f"{healthy['bytes_per_sweep']} bytes")
    print(f"  line limit                  {wire:.2f} s bytes only, {with_gaps:.2f} s with the protocol's gaps"
          f"  -> the cycle is {100 * healthy['cycle'] / with_gaps:.0f} % of the limit")
    print(f"  one meter silent            median {silent['cycle']:.2f} s  (max {silent['cycle_max']:.2f} s)"
          f"  = {silent['cycle'] - healthy['cycle']:+.2f} s per sweep")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=20)
    parser.add_argument("--baudrate", type=int, default=2400)
    parser.add_argument("--sweeps", type=int, default=3)
    args = parser.parse_args()
    report("CJ/T 188", "cjt188_meter", lambda: cjt188_meters(args.meters), args, TURNAROUND_BITS, "500ms")
    report("M-Bus primary", "mbus_meter", lambda: mbus_meters(args.meters, secondary=False), args,
           TURNAROUND_BITS, "300ms")
    report("M-Bus secondary", "mbus_meter", lambda: mbus_meters(args.meters, secondary=True), args,
           TURNAROUND_BITS, "300ms")


if __name__ == "__main__":
    main()
