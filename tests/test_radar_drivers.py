"""The radar drivers end to end: a simulated radar streaming (and damaging) frames over a real pty, read by
the driver through SerialBus as the bus thread would; staleness, silence, garbage; ``linli decode``."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import re
import time
import tomllib
from pathlib import Path

import pytest

from drivers.errors import FrameError, TransportTimeout
from drivers.mr60bha1 import Mr60bha1
from drivers.mr60bha2 import Mr60bha2
from drivers.options import validate_options
from drivers.registry import driver_class
from drivers.transports.serial import SerialBus
from edge.config import validate
from edge.simulate.pty import PtyPair
from edge.simulate.radar import Mr60bha1Simulator, Mr60bha2Simulator

ROOT = Path(__file__).parent.parent


def wait_until(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


def open_driver(cls, path, **options):
    bus = SerialBus("radar", {"port": path, "baudrate": 115200, "parity": "N"})
    bus.open()
    values, problems = validate_options(cls.options, options)
    assert problems == []
    driver = cls("bed-12", values, bus)
    driver.open()
    return bus, driver


def after_ticks(sim, count):
    start = sim.tick
    wait_until(lambda: sim.tick >= start + count)


def published(measurements):
    return {m.quantity: (m.value, m.quality, m.reason) for m in measurements}


@pytest.fixture
def radar1():
    sim = Mr60bha1Simulator(period=0.01, corruption=0.25, seed=7, heart_rate=89, breathing_rate=17, distance=75)
    sim.silent = True  # nothing is sent before the driver listens, so every damaged tick is seen
    with sim:
        bus, driver = open_driver(Mr60bha1, sim.path, stale_after=2, silence="1s")
        sim.silent = False
        yield sim, driver
        bus.close()


def test_mr60bha1_values_arrive_through_corruption_and_every_flipped_sum_is_rejected(radar1):
    sim, driver = radar1
    after_ticks(sim, 150)
    got = published(driver.read())
    assert got == {"presence": (True, "good", None), "movement": (1, "good", None), "distance": (75, "good", None),
                   "heart_rate": (89, "good", None), "breathing_rate": (17, "good", None)}
    sim.silent = True

    def every_frame_accounted_for() -> bool:
        # The pty hands written bytes to the reader through a kernel work queue: under load the last ones
        # come a moment after the write returned, so keep draining until they are all in.
        driver.read()
        return driver.parser.frames + driver.parser.bad_checksum == sim.stats["frames"] + sim.stats["answers"]

    # Every frame sent is accounted for: parsed, or the one whose sum was flipped (plus answers to queries).
    wait_until(every_frame_accounted_for, timeout=0.8)
    assert min(sim.stats[damage] for damage in ("checksum", "garbage", "split", "group")) >= 2
    assert driver.parser.bad_checksum == sim.stats["checksum"]
    assert driver.invalid == 0


def test_a_heart_rate_not_refreshed_for_stale_after_reads_is_stale_never_old(radar1):
    sim, driver = radar1
    after_ticks(sim, 4)
    assert published(driver.read())["heart_rate"] == (89, "good", None)
    sim.set(heart_rate=None)  # the radar stops reporting it (the person left its range)
    after_ticks(sim, 4)
    driver.read()           # refreshed at most by the tick in flight: one read without it
    after_ticks(sim, 4)
    driver.read()
    after_ticks(sim, 4)
    got = published(driver.read())
    assert got["heart_rate"] == (None, "bad", "stale")
    assert got["breathing_rate"] == (17, "good", None)
    assert got["presence"] == (True, "good", None)  # reported on change: holds while the radar streams


def test_a_silent_radar_is_a_timeout_and_nothing_old_is_published_after_it(radar1):
    sim, driver = radar1
    after_ticks(sim, 4)
    driver.read()
    sim.silent = True
    driver.read()  # takes what was sent before the radar fell silent
    # Bytes already on their way may still arrive: the silence counts from the last of them, so read until it is
    # reported rather than sleeping a fixed time past the first read.
    deadline = time.monotonic() + 10
    while True:
        try:
            driver.read()
        except TransportTimeout as exc:
            assert re.search(r"MR60BHA1 radar on .* sent nothing for \d+ s — unplugged", str(exc)), exc
            break
        assert time.monotonic() < deadline, "a silent radar was never reported"
    sim.set(presence=True)
    sim.silent = False
    after_ticks(sim, 1)
    first = published(driver.read())
    # Presence is reported only on change: the driver asked for it again; the heart rate comes every 3rd tick.
    assert first["heart_rate"][0] in (None, 89)
    assert first["heart_rate"] != (89, "bad", "stale")
    wait_until(lambda: published(driver.read())["presence"] == (True, "good", None))


def test_bytes_without_a_frame_are_a_frame_error():
    with PtyPair() as pty:
        bus, driver = open_driver(Mr60bha1, pty.path, silence="0.5s")
        try:
            deadline = time.monotonic() + 0.7
            while time.monotonic() < deadline:
                pty.write(b"\x00\xf0\x53\x59\x85\x02\x00\x01\x59\x00\x54\x43")  # bad sum every time
                time.sleep(0.05)
            with pytest.raises(FrameError, match=r"sent \d+ bytes in \d+ s but no valid frame \(bad checksums: \d+"):
                driver.read()
        finally:
            bus.close()


def test_mr60bha2_end_to_end_with_zero_rates_and_nobody():
    sim = Mr60bha2Simulator(period=0.01, corruption=0.25, seed=11, heart_rate=64.5, breathing_rate=12.0,
                            distance=88.25)
    sim.silent = True
    with sim:
        bus, driver = open_driver(Mr60bha2, sim.path, silence="1s")
        try:
            sim.silent = False
            after_ticks(sim, 40)
            assert published(driver.read()) == {"presence": (True, "good", None), "distance": (88.25, "good", None),
                                                "heart_rate": (64.5, "good", None),
                                                "breathing_rate": (12.0, "good", None)}
            sim.set(presence=False, heart_rate=0.0, breathing_rate=0.0, distance=0.0)
            after_ticks(sim, 3)
            driver.read()
            after_ticks(sim, 3)
            assert published(driver.read()) == {"presence": (False, "good", None),
                                                "distance": (None, "bad", "no_target"),
                                                "heart_rate": (None, "bad", "not_measured"),
                                                "breathing_rate": (None, "bad", "not_measured")}
            sim.silent = True
            # Drain until the last bytes the pty was still handing over are in (see the MR60BHA1 test).
            wait_until(lambda: (driver.read(), driver.parser.bad_data_checksum == sim.stats["checksum"])[1],
                       timeout=0.8)
            assert sim.stats["checksum"] > 0
        finally:
            bus.close()


def test_options_are_validated_and_name_the_quantities():
    assert driver_class("mr60bha1") is Mr60bha1 and driver_class("mr60bha2") is Mr60bha2
    _, problems = validate_options(Mr60bha2.options, {"publish": ["heart_rate", "heart_rate"], "stale_after": 0})
    assert problems == [("publish", "list each quantity once, at least one"),
                        ("stale_after", "must be at least 1, got 0")]
    _, problems = validate_options(Mr60bha2.options, {"publish": ["in_bed"]})
    assert "this radar reports presence, distance, heart_rate, breathing_rate" in problems[0][1]
    assert Mr60bha1.quantities_for({"publish": ["in_bed", "sleep_state"]}) == ("in_bed", "sleep_state")
    assert Mr60bha1.bus_kind == Mr60bha2.bus_kind == "serial"


def test_sample_configs_are_valid():
    minimal = (ROOT / "tests" / "data" / "configs" / "minimal.toml").read_text()
    for cls in (Mr60bha1, Mr60bha2):
        config = validate(tomllib.loads(minimal + (ROOT / "drivers" / cls.name / "sample.toml").read_text()))
        [bus], [sensor] = config.buses, config.sensors
        assert (sensor.driver, bus.options["baudrate"], bus.options["parity"]) == (cls.name, 115200, "N")
        driver = cls(sensor.id, sensor.options, SerialBus(bus.name, bus.options))
        assert driver.stale_after == 3 and driver.silence == 10.0 and driver.publish == cls.quantities


def run_decode(*args):
    done = subprocess.run([sys.executable, "-m", "edge.cli", "decode", *args], capture_output=True, text=True,
                          timeout=30, cwd=ROOT)
    return done.returncode, done.stdout, done.stderr


def test_linli_decode_mr60bha1_json_has_the_issue_shape():
    code, out, _ = run_decode("mr60bha1", "53 59 85 02 00 01 59 8D 54 43", "53 59 81 02 00 01 10 40 54 43",
                              "53 59 80 04 00 02 01 2C 5F 54 43", "--json")
    assert code == 0
    assert json.loads(out) == {"frames": [{"kind": "heart_rate", "value": 89, "unit": "bpm"},
                                          {"kind": "breathing_rate", "value": 16, "unit": "1/min"},
                                          {"kind": "distance", "value": 300, "unit": "cm"}]}


def test_linli_decode_mr60bha2_real_capture_and_a_bad_frame():
    code, out, _ = run_decode("mr60bha2", "01.69.75.00.04.0A.15.F9.00.00.00.00.FF", "--json")
    assert (code, json.loads(out)) == (0, {"frames": [{"kind": "heart_rate", "value": 0.0, "unit": "bpm"}]})
    code, out, _ = run_decode("mr60bha2", "01 69 75 00 04 0A 15 F9 00 00 00 00 FE", "--json")
    assert code == 65
    assert json.loads(out) == {"error": "data checksum mismatch: frame says FE, data gives FF", "offset": 12}
    code, _, err = run_decode("mr60bha1", "53 59 85 02 00 01 59 8E 54 43")
    assert code == 65 and "checksum mismatch" in err and "(at byte 7)" in err


def test_a_bad_value_in_the_second_frame_is_reported_at_its_place_in_the_input():
    code, out, _ = run_decode("mr60bha1", "53 59 85 02 00 01 59 8D 54 43", "53 59 85 02 00 02 40 41 B6 54 43", "--json")
    assert code == 65
    assert json.loads(out) == {"error": "heart rate carries 1 data byte, got 2", "offset": 16}


def test_a_lost_presence_change_is_corrected_by_the_periodic_query():
    # Presence comes only on change; if that one frame is corrupted, the driver's own query puts it right.
    from drivers.codecs import mr60bha1
    from drivers.mr60bha1 import REASK_EVERY

    breath = mr60bha1.build_frame(mr60bha1.BREATH, 0x02, bytes((15,)))
    with PtyPair() as pty:
        bus, driver = open_driver(Mr60bha1, pty.path, publish=["presence", "breathing_rate"])
        try:
            assert pty.read(64, timeout=1.0) == mr60bha1.QUERY_PRESENCE     # asked at open
            pty.write(mr60bha1.build_frame(mr60bha1.HUMAN, mr60bha1.PRESENCE, b"\x01") + breath)
            wait_until(lambda: published(driver.read())["presence"] == (True, "good", None))
            nobody = bytearray(mr60bha1.build_frame(mr60bha1.HUMAN, mr60bha1.PRESENCE, b"\x00"))
            nobody[-3] ^= 0xFF                                               # the change frame arrives damaged
            pty.write(bytes(nobody) + breath)
            queries = b""
            for _ in range(REASK_EVERY):
                assert published(driver.read())["presence"] == (True, "good", None)   # not known to be wrong yet
                queries += pty.read(64, timeout=0.05)
            assert mr60bha1.QUERY_PRESENCE in queries
            pty.write(mr60bha1.build_frame(mr60bha1.HUMAN, 0x81, b"\x00") + breath)  # the answer: nobody
            wait_until(lambda: published(driver.read())["presence"] == (False, "good", None))
        finally:
            bus.close()


def test_a_heart_rate_older_than_max_age_is_stale_even_within_stale_after_reads():
    from drivers.codecs import mr60bha2

    heart = mr60bha2.build_frame(mr60bha2.HEART_RATE, struct.pack("<f", 70.0))
    breath = mr60bha2.build_frame(mr60bha2.BREATHING_RATE, struct.pack("<f", 14.0))
    with PtyPair() as pty:
        bus, driver = open_driver(Mr60bha2, pty.path, publish=["heart_rate", "breathing_rate"],
                                  stale_after=100, max_age="1s")
        try:
            pty.write(heart + breath)
            wait_until(lambda: published(driver.read())["heart_rate"] == (70.0, "good", None))
            deadline = time.monotonic() + 1.2
            while time.monotonic() < deadline:   # the radar keeps sending breathing, no heart rate
                pty.write(breath)
                time.sleep(0.1)                  # the radar's own pace: time passing is the point here
            got = published(driver.read())
        finally:
            bus.close()
    assert got == {"heart_rate": (None, "bad", "stale"), "breathing_rate": (14.0, "good", None)}
