"""Driver and configuration timings; prints figures, asserts nothing.

Run: ``python tests/bench/bench_drivers.py [--reads 500] [--pulses 20000] [--repeat 3]``

Figures:
- ``modbus_pressure``: latency of ``read()`` (one Modbus RTU request for unit,
  decimals and value) over a real pseudo-terminal to pymodbus's serial server
  (the simulator), at 9600 and 115200 Bd. "back to back" reads one after the
  other, so each read first waits out the Modbus inter-frame gap the bus
  enforces; "line idle" waits that gap before starting the clock, as a sensor
  polled every few seconds finds it. A pty moves bytes at memory speed whatever
  the baud rate, so these are lower bounds: the wire time of the bytes is
  printed beside them.
- ``pulse_meter``: µs per pulse and pulses/s, driving a gpiozero ``MockFactory``
  pin low and high in a tight loop; edge callbacks run synchronously on the
  calling thread, so this is gpiozero's event dispatch plus the driver's
  counting. Also the cost of a pulse rejected as chatter, and gpiozero alone.
- configuration: ``edge.config.load_config`` on ``deploy/edge.toml.example``
  (its ``/etc/linli`` files recreated in a temporary folder), repeated in this
  process and the first call in a fresh interpreter; and the wall time of
  ``python -c "import edge.config"`` minus ``python -c "pass"``.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

from gpiozero import DigitalInputDevice

from drivers.errors import DriverError
from drivers.modbus_pressure import ModbusPressure
from drivers.options import validate_options
from drivers.pulse_meter import PulseMeter
from drivers.transports.gpio import GpioBus
from drivers.transports.serial import SerialBus
from edge.config import load_config
from edge.simulate.modbus_pressure import PressureTransmitterSim

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "edge.toml.example"
BAUDRATES = (9600, 115200)
REQUEST_BYTES = 8   # unit, function, address, count, CRC
REPLY_BYTES = 11    # unit, function, byte count, 3 registers, CRC
WARMUP_READS = 20
PIN = 17


def validated(options: dict, raw: dict) -> dict:
    values, problems = validate_options(options, raw)
    if problems:
        raise SystemExit(f"bench_drivers: bad options {raw}: {problems}")
    return values


def summary_ms(samples_ns: list[int]) -> tuple[float, float, float]:
    """Median, 95th percentile (nearest rank) and maximum, in milliseconds."""
    ordered = sorted(samples_ns)
    p95 = ordered[math.ceil(0.95 * len(ordered)) - 1]
    return statistics.median(ordered) / 1e6, p95 / 1e6, ordered[-1] / 1e6


# --- modbus_pressure over a pty ---------------------------------------------------------------------

def timed_reads(driver: ModbusPressure, reads: int, before: Callable[[], None] | None) -> tuple[list[int], int]:
    """Nanoseconds per successful ``read()`` and the number of failed ones."""
    samples, failures = [], 0
    for _ in range(reads):
        if before is not None:
            before()
        started = time.perf_counter_ns()
        try:
            driver.read()
        except DriverError:
            failures += 1
            continue
        samples.append(time.perf_counter_ns() - started)
    return samples, failures


def bench_modbus(baudrate: int, reads: int, link_dir: Path) -> dict:
    with PressureTransmitterSim(1, 0.35, baudrate=baudrate, link_dir=link_dir) as sim:
        bus_options = validated(SerialBus.options, {"port": sim.port, "baudrate": baudrate, "timeout": "1s"})
        with SerialBus("rs485-1", bus_options) as bus:
            driver = ModbusPressure("pump-pressure", validated(ModbusPressure.options, {"address": 1}), bus)
            with driver:
                timed_reads(driver, WARMUP_READS, None)
                requests_before = len(sim.requests)
                back_to_back, failed_b2b = timed_reads(driver, reads, None)
                idle, failed_idle = timed_reads(driver, reads, bus.wait_frame_gap)
                requests = len(sim.requests) - requests_before
        return {
            "back_to_back": summary_ms(back_to_back),
            "idle": summary_ms(idle),
            "failed": failed_b2b + failed_idle,
            "requests_per_read": requests / (2 * reads),
            "frame_gap_ms": bus.frame_gap * 1e3,
            "wire_ms": (REQUEST_BYTES + REPLY_BYTES) * bus.char_time * 1e3,
        }


def report_modbus(reads: int, directory: Path) -> None:
    print(f"modbus_pressure read() over a pty to pymodbus {version('pymodbus')}'s serial server, "
          f"{reads} reads each, ms")
    print(f"  {'baud':>6} {'mode':<12} {'median':>7} {'p95':>7} {'max':>7}   {'gap':>5} {'wire':>6}  notes")
    for baudrate in BAUDRATES:
        link_dir = directory / f"rs485-{baudrate}"
        link_dir.mkdir()
        r = bench_modbus(baudrate, reads, link_dir)
        notes = f"{r['requests_per_read']:.2f} requests/read, {r['failed']} failed"
        for mode, label in (("back_to_back", "back to back"), ("idle", "line idle")):
            median, p95, worst = r[mode]
            print(f"  {baudrate:>6} {label:<12} {median:>7.2f} {p95:>7.2f} {worst:>7.2f}   "
                  f"{r['frame_gap_ms']:>5.2f} {r['wire_ms']:>6.2f}  {notes if mode == 'idle' else ''}")
    print(f"  gap: inter-frame silence the bus waits before a request; wire: {REQUEST_BYTES}-byte request + "
          f"{REPLY_BYTES}-byte reply on a real line (8N1), not spent on a pty\n")


# --- pulse_meter on MockFactory ---------------------------------------------------------------------

def drive_pulses(pin, pulses: int) -> float:
    """Seconds taken to close and open the switch (pull-up: low, then high) ``pulses`` times."""
    low, high = pin.drive_low, pin.drive_high
    started = time.perf_counter()
    for _ in range(pulses):
        low()
        high()
    return time.perf_counter() - started


def bench_meter(pulses: int, debounce: str) -> tuple[float, int]:
    with GpioBus("pins", {"pin_factory": "mock"}) as bus:
        options = validated(PulseMeter.options, {"pin": PIN, "litres_per_pulse": 10.0, "debounce": debounce})
        with PulseMeter("bench-water", options, bus) as meter:
            elapsed = drive_pulses(bus.factory.pin(PIN), pulses)
            return elapsed, meter.pulses


def bench_gpiozero_alone(pulses: int) -> tuple[float, None]:
    with GpioBus("pins", {"pin_factory": "mock"}) as bus, \
            DigitalInputDevice(PIN, pull_up=True, pin_factory=bus.factory):
        return drive_pulses(bus.factory.pin(PIN), pulses), None


def report_pulses(pulses: int, repeat: int) -> None:
    print(f"pulse_meter on gpiozero {version('gpiozero')} MockFactory, {pulses:,} pulses "
          f"(2 edges each), median of {repeat}")
    print(f"  {'case':<44} {'µs/pulse':>9} {'pulses/s':>10} {'counted':>8}")
    cases = (
        ("counted (debounce 0 ms: every closing counts)", lambda: bench_meter(pulses, "0ms")),
        ("debounce 20 ms (nearly all edges are chatter)", lambda: bench_meter(pulses, "20ms")),
        ("gpiozero alone (device, no callbacks)", lambda: bench_gpiozero_alone(pulses)),
    )
    for label, run in cases:
        results = [run() for _ in range(repeat)]
        elapsed = statistics.median(seconds for seconds, _ in results)
        counted = results[-1][1]
        shown = "—" if counted is None else f"{counted:,}"
        print(f"  {label:<44} {elapsed / pulses * 1e6:>9.2f} {pulses / elapsed:>10,.0f} {shown:>8}")
    print()


# --- configuration ----------------------------------------------------------------------------------

def example_config(directory: Path) -> Path:
    """The example config, its ``/etc/linli`` files made real in ``directory``, as tests/test_config.py does."""
    text = EXAMPLE.read_text(encoding="utf-8")
    for name in sorted(set(re.findall(r'"/etc/linli/([^"]+)"', text))):
        (directory / name).write_text("x")
    path = directory / "edge.toml"
    path.write_text(text.replace("/etc/linli/", f"{directory}/"), encoding="utf-8")
    return path


def wall_time(code: str, cwd: Path) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, done.stdout


_FIRST_LOAD = """\
import sys, time
started = time.perf_counter()
from edge.config import load_config
imported = time.perf_counter()
load_config(sys.argv[1]) if len(sys.argv) > 1 else None
print(imported - started, time.perf_counter() - imported)
"""


def report_config(directory: Path, loads: int, runs: int) -> None:
    path = example_config(directory)
    load_config(path)  # warm: modules imported, files in the page cache
    samples = []
    for _ in range(loads):
        started = time.perf_counter_ns()
        load_config(path)
        samples.append(time.perf_counter_ns() - started)
    median, p95, worst = summary_ms(samples)
    print(f"configuration: load_config(deploy/edge.toml.example), {EXAMPLE.stat().st_size:,} bytes, "
          f"2 buses, 2 sensors")
    print(f"  warm, in process, {loads} loads: median {median:.3f} ms, p95 {p95:.3f} ms, max {worst:.3f} ms")

    # Fresh interpreters: one untimed run first so .pyc files exist, as on an installed gateway.
    first_load = f"import sys; sys.argv[1:] = [{str(path)!r}]\n" + _FIRST_LOAD
    wall_time(first_load, directory)
    wall_time("import edge.config", directory)
    bare, imported, imports_in, first_loads = [], [], [], []
    for _ in range(runs):  # interleaved, so a change in machine load hits every figure alike
        bare.append(wall_time("pass", directory)[0])
        imported.append(wall_time("import edge.config", directory)[0])
        import_s, load_s = map(float, wall_time(first_load, directory)[1].split())
        imports_in.append(import_s)
        first_loads.append(load_s)
    m_bare, m_imported = statistics.median(bare), statistics.median(imported)
    print(f"  first load_config in a fresh interpreter, after import edge.config (it imports the bus and driver "
          f"modules the config names): median {statistics.median(first_loads) * 1e3:.1f} ms of {runs}")
    print(f'  python -c "pass": {m_bare * 1e3:.1f} ms; python -c "import edge.config": {m_imported * 1e3:.1f} ms; '
          f"import edge.config costs {(m_imported - m_bare) * 1e3:.1f} ms "
          f"(measured inside: {statistics.median(imports_in) * 1e3:.1f} ms), medians of {runs}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=500, help="timed read() calls per baud rate and mode")
    parser.add_argument("--pulses", type=int, default=20_000, help="pulses per pulse_meter run")
    parser.add_argument("--repeat", type=int, default=3, help="pulse_meter runs per figure; the median is printed")
    parser.add_argument("--loads", type=int, default=200, help="in-process load_config calls")
    parser.add_argument("--runs", type=int, default=5, help="fresh interpreters per start-up figure")
    args = parser.parse_args()
    load1, load5, _ = os.getloadavg()
    print(f"driver benchmark — {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load average {load1:.2f} / {load5:.2f}\n")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-drivers-") as tmp:
        directory = Path(tmp)
        report_modbus(args.reads, directory)
        report_pulses(args.pulses, args.repeat)
        config_dir = directory / "config"
        config_dir.mkdir()
        report_config(config_dir, args.loads, args.runs)
    print(f"\ntotal {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
