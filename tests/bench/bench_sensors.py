"""Sensors of the pump room and the bedroom: I2C reads, radar stream parsing, alarm outputs, contact edges.

Prints figures, asserts nothing.

Run: ``python tests/bench/bench_sensors.py [--reads 1000] [--ads-reads 300] [--ads-seconds 6]
[--radar-kib 1024] [--cycles 2000] [--edges 20000] [--repeat 3]``

Figures:
- ``ads1115_loop``: latency of ``read()`` (one single-shot conversion: config
  read, config write with OS = 1, a sleep of one conversion period, config
  polled until OS = 1, conversion register read) on the simulated ADS1115 of
  ``edge.simulate.i2c_chips`` behind ``FakeSMBus``, a 4–20 mA transmitter at
  12 mA on AIN0, at 8, 128, 475 and 860 SPS; the conversion time 1/DR beside
  it, and the I2C transactions, config polls and bytes per read counted from
  ``FakeSMBus.transfers``. The fake bus moves bytes at memory speed, so the
  time of those bytes on a real 100 kHz bus (9 bits per byte, address bytes
  included, start/stop conditions not) is printed beside, not included.
- ``honeywell_pressure``: latency of ``read()`` on the simulated HSC (a 2-byte
  read, or 4 with temperature). "back to back" reads again at once, so the
  sensor (which measures every 0.5 ms) has only stale data and the driver waits
  1 ms and reads again; "fresh data" waits one update period before starting
  the clock, as a sensor read every few seconds finds it.
- radar stream parsers (``mr60bha1`` and ``mr60bha2`` ``StreamParser``): MB/s and
  frames/s fed 4 KiB chunks of the frames the repo's radar simulators send per
  tick (built with the codecs' ``build_frame``), intact and with 2 % of the
  frames damaged by one random byte; beside it, the radar's real data rate and
  how many times faster than that the parser is.
- ``Outputs.offer()``: latency of one alarm transition offered to two outputs
  on gpiozero's MockFactory (through ``GpioBus``, as the agent opens them):
  raise (a buzzer on, and an LED starting to blink on gpiozero's thread, or a
  relay on) and clear (both off, the blink thread stopped), and a transition of
  an alarm neither output follows. Logging is not configured, so the output's
  INFO line is not formatted.
- ``contact``: µs per edge driving a MockFactory pin low and high; edge
  callbacks run synchronously on the calling thread, so this is gpiozero's
  dispatch plus the driver's debouncing under its lock. gpiozero alone (a
  no-op edge callback) beside it.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import platform
import random
import statistics
import time
from collections.abc import Callable
from importlib.metadata import version
from types import ModuleType
from typing import Any

from gpiozero import InputDevice

from drivers.ads1115_loop import Ads1115Loop
from drivers.codecs import mr60bha1, mr60bha2
from drivers.codecs.ads1115 import REG_CONFIG
from drivers.contact import Contact
from drivers.honeywell_pressure import HoneywellPressure
from drivers.options import validate_options
from drivers.transports.gpio import GpioBus
from drivers.transports.i2c import I2cBus
from edge.config import BusConfig, OutputConfig
from edge.outputs import Outputs
from edge.simulate.i2c_chips import Ads1115, FakeSMBus, HoneywellHsc, LoopTransmitter
from edge.simulate.radar import Mr60bha1Simulator, Mr60bha2Simulator

ADS_RATES = (8, 128, 475, 860)
SLOW_OSCILLATOR = 0.10
ADS_ADDRESS, HSC_ADDRESS = 0x48, 0x28
I2C_HZ = 100_000
BITS_PER_BYTE = 9          # 8 data bits and the acknowledge
WARMUP_READS = 10
CHUNK = 4096
CORRUPTED = 0.02
#: The radars' own pace: the MR60BHA1 reports on a 1 s cadence, the MR60BHA2 about 8 times a second.
RADAR_PERIOD = {"mr60bha1": 1.0, "mr60bha2": 0.125}
UART_BYTES_PER_S = 115200 / 10  # 8N1
CONTACT_PIN = 5
BUZZER_PIN, SECOND_PIN = 18, 23
chatter_log = logging.getLogger("linli.drivers.contact")


def validated(options: dict, raw: dict) -> dict:
    values, problems = validate_options(options, raw)
    if problems:
        raise SystemExit(f"bench_sensors: bad options {raw}: {problems}")
    return values


def percentile(ordered: list[int], fraction: float) -> int:
    """Nearest-rank percentile of an already sorted list."""
    return ordered[math.ceil(fraction * len(ordered)) - 1]


def summary(samples_ns: list[int], fraction: float = 0.95, scale: float = 1e6) -> tuple[float, float, float]:
    """Median, the ``fraction`` percentile and maximum, in ms (``scale`` 1e6) or µs (1e3)."""
    ordered = sorted(samples_ns)
    return statistics.median(ordered) / scale, percentile(ordered, fraction) / scale, ordered[-1] / scale


def timed(call: Callable[[], Any], count: int, before: Callable[[], None] | None = None) -> list[int]:
    """Nanoseconds of each of ``count`` calls; ``before`` runs untimed ahead of each."""
    samples = []
    for _ in range(count):
        if before is not None:
            before()
        started = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - started)
    return samples


def wire_ms(bytes_per_read: float) -> float:
    return bytes_per_read * BITS_PER_BYTE / I2C_HZ * 1e3


def traffic(smbus: FakeSMBus, reads: int) -> tuple[float, float]:
    """(transactions, bytes on the wire including each transaction's address byte) per read."""
    transfers = list(smbus.transfers)
    return len(transfers) / reads, sum(1 + len(t.data) for t in transfers) / reads


# --- ads1115_loop ------------------------------------------------------------------------------------

def bench_ads(data_rate: int, reads: int, rate_error: float = 0.0) -> dict[str, Any]:
    loop = LoopTransmitter(shunt_ohms=150.0, span=(0.0, 1.6))
    loop.set_pressure(0.8)  # 12 mA, 1.8 V
    smbus = FakeSMBus(Ads1115(ADS_ADDRESS, {0: loop}, rate_error=rate_error))
    options = validated(Ads1115Loop.options, {"address": ADS_ADDRESS, "channel": 0, "data_rate": data_rate,
                                               "shunt_ohms": 150.0, "span": [0.0, 1.6]})
    with I2cBus("i2c", validated(I2cBus.options, {}), smbus=smbus) as bus:
        with Ads1115Loop("pump-pressure", options, bus) as driver:
            timed(driver.read, WARMUP_READS)
            smbus.transfers.clear()
            samples = timed(driver.read, reads)
            driver.read()
    transactions, wire_bytes = traffic(smbus, reads + 1)
    config_pointer_writes = smbus.count(ADS_ADDRESS, "w", bytes([REG_CONFIG]))
    # Each read reads the config register once before starting the conversion; the rest are polls.
    polls = config_pointer_writes / (reads + 1) - 1
    return {"latency": summary(samples), "transactions": transactions, "bytes": wire_bytes, "polls": polls}


def report_ads(max_reads: int, seconds: float) -> None:
    print(f"ads1115_loop read() on FakeSMBus + Ads1115 + LoopTransmitter (12 mA), ms; "
          f"reads per rate: {max_reads}, at most {seconds:g} s of conversions")
    print(f"  {'SPS':>4} {'osc':>5} {'reads':>5} {'1/DR':>7} {'median':>7} {'p95':>7} {'max':>7} {'med-1/DR':>8}   "
          f"{'trans/read':>10} {'polls':>5} {'bytes':>5} {'100kHz bus':>10}")
    for rate, rate_error in [(rate, 0.0) for rate in ADS_RATES] + [(rate, SLOW_OSCILLATOR) for rate in (128, 860)]:
        reads = min(max_reads, max(20, math.ceil(seconds * rate)))
        r = bench_ads(rate, reads, rate_error)
        median, p95, worst = r["latency"]
        period = 1e3 / rate
        osc = f"{100 * rate_error:+.0f}%"
        print(f"  {rate:>4} {osc:>5} {reads:>5} {period:>7.3f} {median:>7.3f} {p95:>7.3f} {worst:>7.3f} "
              f"{median - period:>8.3f}   {r['transactions']:>10.2f} {r['polls']:>5.2f} {r['bytes']:>5.1f} "
              f"{wire_ms(r['bytes']):>10.3f}")
    print("  osc: the chip's oscillator that much slower than nominal (the datasheet allows ±10 %), so a "
          "conversion outlasts 1/DR and the driver polls again after 1/8 of a period")
    print(f"  100kHz bus: bytes/read × {BITS_PER_BYTE} bits / 100 kHz, the time those bytes take on a real bus "
          "(not spent on the fake one; add it to the median)\n")


# --- honeywell_pressure ------------------------------------------------------------------------------

def bench_honeywell(temperature: bool, reads: int, fresh: bool) -> dict[str, Any]:
    chip = HoneywellHsc(HSC_ADDRESS, p_min=0.0, p_max=1.6, pressure=0.8)
    smbus = FakeSMBus(chip)
    options = validated(HoneywellPressure.options, {"address": HSC_ADDRESS, "p_min": 0.0, "p_max": 1.6,
                                                     "unit": "bar", "temperature": temperature})
    wait = (lambda: time.sleep(chip.update_period)) if fresh else None
    with I2cBus("i2c", validated(I2cBus.options, {}), smbus=smbus) as bus:
        with HoneywellPressure("pump-pressure-digital", options, bus) as driver:
            time.sleep(chip.startup)  # the part's power-up time before its first measurement
            timed(driver.read, WARMUP_READS, wait)
            smbus.transfers.clear()
            samples = timed(driver.read, reads, wait)
    transactions, wire_bytes = traffic(smbus, reads)
    return {"latency": summary(samples), "transactions": transactions, "bytes": wire_bytes}


def report_honeywell(reads: int) -> None:
    print(f"honeywell_pressure read() on FakeSMBus + HoneywellHsc (measures every 0.5 ms), {reads} reads each, ms")
    print(f"  {'read':<7} {'mode':<13} {'median':>7} {'p95':>7} {'max':>7}   {'trans/read':>10} {'bytes':>5} "
          f"{'100kHz bus':>10}")
    for temperature in (False, True):
        for fresh, label in ((False, "back to back"), (True, "fresh data")):
            r = bench_honeywell(temperature, reads, fresh)
            median, p95, worst = r["latency"]
            size = "4 bytes" if temperature else "2 bytes"
            print(f"  {size:<7} {label:<13} {median:>7.3f} {p95:>7.3f} {worst:>7.3f}   {r['transactions']:>10.2f} "
                  f"{r['bytes']:>5.1f} {wire_ms(r['bytes']):>10.3f}")
    print("  back to back: the data is stale, the driver sleeps 1 ms and reads again (about 2 transactions)\n")


# --- radar stream parsers ----------------------------------------------------------------------------

def radar_ticks(model: str, count: int) -> list[list[bytes]]:
    """The frames the repo's simulator sends on each of ``count`` ticks, values drifting as a sleeper's do."""
    if model == "mr60bha1":
        sim: Any = Mr60bha1Simulator()
        for tick in range(count):
            values = {**sim.defaults, "heart_rate": 60 + tick % 15, "breathing_rate": 12 + tick % 6,
                            "distance": 55 + tick % 20, "movement": 1 + (tick // 30) % 2,
                            "body_movement": tick % 7}
            values["presence"] = tick % 600 < 590
            yield sim.frames_for_tick(tick, values)
        return
    sim = Mr60bha2Simulator()
    for tick in range(count):
        yield sim.frames_for_tick(tick, {**sim.defaults, "heart_rate": 60.0 + (tick % 150) / 10,
                                         "breathing_rate": 12.0 + (tick % 60) / 10,
                                         "distance": 45.0 + (tick % 100) / 10, "presence": tick % 600 < 590})


def radar_stream(model: str, size: int, corrupted: float, seed: int = 0) -> tuple[bytes, int, int, int]:
    """(stream, intact frames, damaged frames, ticks) of about ``size`` bytes; damage is one byte changed."""
    rng = random.Random(seed)
    parts, total, intact, damaged, ticks = [], 0, 0, 0, 0
    for frames in radar_ticks(model, 1 << 30):
        ticks += 1
        for frame in frames:
            if rng.random() < corrupted:
                at = rng.randrange(len(frame))
                frame = frame[:at] + bytes(((frame[at] + rng.randrange(1, 256)) & 0xFF,)) + frame[at + 1:]
                damaged += 1
            else:
                intact += 1
            parts.append(frame)
            total += len(frame)
        if total >= size:
            return b"".join(parts), intact, damaged, ticks
    raise AssertionError("unreachable: the tick generator is endless")


def parse_all(codec: ModuleType, stream: bytes) -> tuple[float, int]:
    """Seconds to feed ``stream`` in :data:`CHUNK`-byte chunks to a new parser, and the frames it found."""
    parser = codec.StreamParser()
    feed = parser.feed
    found = 0
    started = time.perf_counter()
    for at in range(0, len(stream), CHUNK):
        found += len(feed(stream[at:at + CHUNK]))
    return time.perf_counter() - started, found


def report_radar(size: int, repeat: int) -> None:
    print(f"radar StreamParser.feed() in {CHUNK // 1024} KiB chunks, ~{size / 2**20:g} MiB of simulator ticks, "
          f"median of {repeat}")
    print(f"  {'codec':<9} {'damaged':>7} {'MB/s':>6} {'frames/s':>9} {'found/intact':>14}   "
          f"{'radar B/s':>9} {'× radar':>8} {'CPU per radar-s':>15}")
    for model, codec in (("mr60bha1", mr60bha1), ("mr60bha2", mr60bha2)):
        for corrupted in (0.0, CORRUPTED):
            stream, intact, damaged, ticks = radar_stream(model, size, corrupted)
            runs = [parse_all(codec, stream) for _ in range(repeat)]
            seconds = statistics.median(s for s, _ in runs)
            found = runs[-1][1]
            radar_rate = len(stream) / (ticks * RADAR_PERIOD[model])
            rate = len(stream) / seconds
            print(f"  {model:<9} {100 * damaged / (intact + damaged):>6.1f}% {rate / 1e6:>6.2f} "
                  f"{found / seconds:>9,.0f} {f'{found:,}/{intact:,}':>14}   {radar_rate:>9,.0f} "
                  f"{rate / radar_rate:>8,.0f} {1e6 * radar_rate / rate:>12.0f} µs")
    print(f"  radar B/s: the simulators' bytes per tick at the radar's own pace (MR60BHA1 1 tick/s, MR60BHA2 "
          f"8 ticks/s); the UART itself carries at most {UART_BYTES_PER_S:,.0f} B/s (115200 Bd 8N1)\n")


# --- Outputs.offer() ---------------------------------------------------------------------------------

def bench_outputs(second_kind: str, cycles: int) -> dict[str, tuple[float, float, float]]:
    bus = BusConfig("gpio", "gpio", validated(GpioBus.options, {"pin_factory": "mock"}))
    configs = [OutputConfig("pump-room-buzzer", "buzzer", "gpio", BUZZER_PIN, ("pump-pressure/*",)),
               OutputConfig(f"pump-room-{second_kind}", second_kind, "gpio", SECOND_PIN, ("pump-pressure/*",))]
    outputs = Outputs(configs, [bus], lambda _output: None)
    outputs.open()
    raised = {"alarm": "pump-pressure/low", "state": "raised", "severity": "critical"}
    cleared = {"alarm": "pump-pressure/low", "state": "cleared", "severity": "critical"}
    elsewhere = {"alarm": "flat-302-water/no-water", "state": "raised", "severity": "critical"}
    try:
        raise_ns, clear_ns = [], []
        for _ in range(cycles):
            for transition, samples in ((raised, raise_ns), (cleared, clear_ns)):
                started = time.perf_counter_ns()
                outputs.offer(transition)
                samples.append(time.perf_counter_ns() - started)
        ignored_ns = timed(lambda: outputs.offer(elsewhere), cycles)
        if any(output.pattern != "off" for output in outputs.outputs):
            raise SystemExit("bench_sensors: an output is still on after the last clear")
    finally:
        outputs.close()
    return {"raise": summary(raise_ns, 0.99, 1e3), "clear": summary(clear_ns, 0.99, 1e3),
            "not followed": summary(ignored_ns, 0.99, 1e3)}


def report_outputs(cycles: int) -> None:
    print(f"Outputs.offer() on gpiozero {version('gpiozero')} MockFactory, {cycles} raise/clear cycles, µs")
    print(f"  {'outputs':<34} {'transition':<13} {'median':>7} {'p99':>7} {'max':>8}")
    for second_kind, label in (("led", "buzzer steady + LED blinking"), ("relay", "buzzer steady + relay steady")):
        for name, (median, p99, worst) in bench_outputs(second_kind, cycles).items():
            print(f"  {label:<34} {name:<13} {median:>7.1f} {p99:>7.1f} {worst:>8.1f}")
    print("  an LED blinks on a gpiozero thread: raise starts it, clear stops and joins it\n")


# --- contact edges -----------------------------------------------------------------------------------

def drive_edges(pin, edges: int) -> float:
    """Seconds taken to drive the pin low then high, ``edges`` edges in all (pull-up: closed, then open)."""
    low, high = pin.drive_low, pin.drive_high
    started = time.perf_counter()
    for _ in range(edges // 2):
        low()
        high()
    return time.perf_counter() - started


def bench_contact(edges: int, debounce: str) -> tuple[float, int]:
    with GpioBus("pins", validated(GpioBus.options, {"pin_factory": "mock"})) as bus:
        options = validated(Contact.options, {"pin": CONTACT_PIN, "quantity": "pump_running", "debounce": debounce})
        # With debounce 0 every one of the edges is a change and the read warns that all but 64 were dropped:
        # expected here, so the warning is kept off the figures.
        chatter_log.setLevel(logging.ERROR)
        with Contact("jockey-pump", options, bus) as contact:
            elapsed = drive_edges(bus.factory.pin(CONTACT_PIN), edges)
            activations = contact.read()[-1].value
            return elapsed, activations


def bench_gpiozero_alone(edges: int) -> tuple[float, None]:
    with GpioBus("pins", validated(GpioBus.options, {"pin_factory": "mock"})) as bus, \
            InputDevice(CONTACT_PIN, pull_up=True, pin_factory=bus.factory) as device:
        device.pin.edges = "both"
        device.pin.when_changed = lambda _ticks, _state: None
        return drive_edges(bus.factory.pin(CONTACT_PIN), edges), None


def report_contact(edges: int, repeat: int) -> None:
    print(f"contact on gpiozero MockFactory, {edges:,} edges, median of {repeat}")
    print(f"  {'case':<55} {'µs/edge':>8} {'edges/s':>10} {'activations':>11}")
    cases = (
        ("debounce 0 ms (every edge an accepted change)", lambda: bench_contact(edges, "0ms")),
        ("debounce 50 ms (every edge a bounce: change cancelled)", lambda: bench_contact(edges, "50ms")),
        ("gpiozero alone (InputDevice, no-op edge callback)", lambda: bench_gpiozero_alone(edges)),
    )
    for label, run in cases:
        results = [run() for _ in range(repeat)]
        elapsed = statistics.median(seconds for seconds, _ in results)
        counted = results[-1][1]
        shown = "—" if counted is None else f"{counted:,}"
        print(f"  {label:<55} {elapsed / edges * 1e6:>8.2f} {edges / elapsed:>10,.0f} {shown:>11}")
    print("  activations: activations_last_hour after the run (every closing counts once it is accepted)\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=1000, help="timed honeywell_pressure reads per case")
    parser.add_argument("--ads-reads", type=int, default=300, help="timed ads1115_loop reads per data rate, at most")
    parser.add_argument("--ads-seconds", type=float, default=6.0,
                        help="fewer ads1115_loop reads at a slow data rate: at most this many seconds of conversions")
    parser.add_argument("--radar-kib", type=int, default=1024, help="size of each radar stream parsed")
    parser.add_argument("--cycles", type=int, default=2000, help="raise/clear cycles offered to the outputs")
    parser.add_argument("--edges", type=int, default=20_000, help="edges per contact run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per radar and contact figure; the median")
    args = parser.parse_args()
    load1, load5, _ = os.getloadavg()
    print(f"sensor benchmark — {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load average {load1:.2f} / {load5:.2f}\n")
    started = time.perf_counter()
    report_ads(args.ads_reads, args.ads_seconds)
    report_honeywell(args.reads)
    report_radar(args.radar_kib * 1024, args.repeat)
    report_outputs(args.cycles)
    report_contact(args.edges, args.repeat)
    print(f"total {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
