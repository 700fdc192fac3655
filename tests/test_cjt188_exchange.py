"""The CJ/T 188 wire exchange over a real pseudo-terminal: published and hand-built frames as the meter's side."""

from __future__ import annotations

import doctest
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

import drivers.codecs.cjt188_exchange
from drivers.codecs.cjt188 import (
    CJT188Fault,
    build_frame,
    di_bytes,
    parse_frame,
    read_address_request,
    read_data_request,
)
from drivers.codecs.cjt188_exchange import MAX_IGNORED_FRAMES, read_address, read_data, receive_frame
from drivers.errors import DeviceFault, FrameError, TransportTimeout
from drivers.options import validate_options
from drivers.transports.serial import SerialBus
from edge.simulate.line import SimulatedLine
from edge.simulate.pty import PtyPair

DATA = Path(__file__).parent / "data" / "cjt188"
FOX_ADDRESS = "00000805000001"      # foxedge_read_data_reply_2004_a: 123.00 m³, SER 00
TUTORIAL_ADDRESS = "78330011223344"  # tutorial_read_data_reply_2018: 556677.00 m³, SER 00


def published(name: str) -> bytes:
    return bytes.fromhex((DATA / f"{name}.hex").read_text())


def serial_bus(port: str, timeout: str = "300ms", baudrate: int = 9600, parity: str = "E") -> SerialBus:
    values, problems = validate_options(SerialBus.options, {"port": port, "baudrate": baudrate, "parity": parity,
                                                            "timeout": timeout})
    assert problems == []
    return SerialBus("meters", values)


def water_reply(address: str, ser: int, di_order: str = "2004", volume: str = "00 23 01 00",
                preamble: int = 2) -> bytes:
    """A 901F answer laid out from the standard's table: DI SER volume unit settlement unit clock ST."""
    payload = (di_bytes(0x901F, di_order) + bytes([ser]) + bytes.fromhex(volume) + b"\x2c"
               + bytes.fromhex("00 00 00 00") + b"\x2c" + bytes(7) + b"\x00\x00")
    return build_frame(0x10, address, 0x81, payload, preamble=preamble)


class Canned:
    """A meter on the simulated line that answers every request with what ``script(request)`` returns."""

    def __init__(self, script: Callable[[bytes], bytes | None]):
        self.script = script

    def answer(self, request: bytes) -> bytes | None:
        return self.script(request)


@pytest.fixture
def pty():
    with PtyPair() as pair:
        yield pair


@pytest.fixture
def pty_bus(pty):
    # Parity N: Linux refuses to reconfigure a pty set to even parity, which a read with another timeout does.
    with serial_bus(pty.path, "200ms", parity="N") as bus:
        yield bus


def line_with(script: Callable[[bytes], bytes | None], baudrate: int = 9600) -> SimulatedLine:
    return SimulatedLine([Canned(script)], baudrate=baudrate)


def test_module_doctest():
    assert doctest.testmod(drivers.codecs.cjt188_exchange).failed == 0


# --- receive_frame on a bare pty: bytes written by the test as the meter ----------------------------------------

def test_receives_a_published_reply_without_its_wake_up_bytes(pty, pty_bus):
    reply = published("foxedge_read_data_reply_2004_a")
    pty.write(reply)
    assert receive_frame(pty_bus, 0.2) == reply[3:]  # three FE in front


def test_skips_line_noise_before_the_start_byte(pty, pty_bus):
    reply = published("tutorial_read_data_reply_2018")
    pty.write(b"\x00\xff\x3c\x00\xfe\xfe" + reply)
    assert receive_frame(pty_bus, 0.2) == reply


def test_silence_is_a_timeout_naming_the_meter(pty_bus):
    with pytest.raises(TransportTimeout) as caught:
        receive_frame(pty_bus, 0.2, meter=FOX_ADDRESS)
    assert str(caught.value) == "no answer from CJ/T 188 meter 00000805000001 within 0.2 s"


def test_silence_after_a_broadcast_names_no_meter(pty_bus):
    with pytest.raises(TransportTimeout, match="^no answer from any CJ/T 188 meter within 0.2 s$"):
        receive_frame(pty_bus, 0.2)


def test_noise_without_a_frame_is_a_timeout_showing_the_bytes(pty, pty_bus):
    pty.write(b"\xfe\xfe\x00\xff")
    with pytest.raises(TransportTimeout, match=r"sent 4 byte\(s\) but no frame start \(68\) within 0.2 s: fe fe 00 ff"):
        receive_frame(pty_bus, 0.2, meter=FOX_ADDRESS)


def test_a_broken_off_header_is_a_timeout_with_the_count(pty, pty_bus):
    pty.write(b"\xfe\x68\x10\x01\x00\x00")
    with pytest.raises(TransportTimeout, match="sent only 5 of the 11 header bytes within 0.2 s: 68 10 01 00 00"):
        receive_frame(pty_bus, 0.2, meter=FOX_ADDRESS)


def test_a_broken_off_answer_is_a_timeout_with_the_count(pty, pty_bus):
    reply = published("foxedge_read_data_reply_2004_a")[3:]  # 35 bytes: L = 0x16
    pty.write(reply[:20])
    with pytest.raises(TransportTimeout, match="CJ/T 188 meter 00000805000001 sent 20 of 35 frame bytes within 0.2 s"):
        receive_frame(pty_bus, 0.2, meter=FOX_ADDRESS)


def test_endless_noise_is_a_frame_error_not_an_endless_read(pty, pty_bus):
    pty.write(bytes([0x55]) * 40)
    with pytest.raises(FrameError, match="sent 33 bytes without a frame start"):
        receive_frame(pty_bus, 0.2)


# --- read_data / read_address through the simulated line --------------------------------------------------------

def test_read_data_sends_the_request_and_decodes_the_published_2004_reply():
    with line_with(lambda request: published("foxedge_read_data_reply_2004_a"), baudrate=2400) as line, \
            serial_bus(line.path, "500ms", baudrate=2400) as bus:
        reading = read_data(bus, FOX_ADDRESS, 0x10, "2004", 4, 0)
    assert (reading.address, reading.di_order, reading.volume_m3, reading.settlement_volume_m3) == \
        (FOX_ADDRESS, "2004", 123.0, 0.0)
    assert line.requests == [read_data_request(FOX_ADDRESS, 0x10, 0, "2004", 4)]


def test_read_data_in_2018_order_without_preamble_decodes_the_published_2018_reply():
    with line_with(lambda request: published("tutorial_read_data_reply_2018")) as line, \
            serial_bus(line.path) as bus:
        reading = read_data(bus, TUTORIAL_ADDRESS, 0x10, "2018", 0, 0)
    assert (reading.di_order, reading.volume_m3, reading.clock) == ("2018", 556677.0, "2015-05-11T22:01:31")
    assert line.requests == [published("tutorial_read_data_request_2018")[4:]]  # the published request, no FE


def test_reply_order_auto_takes_an_answer_in_the_other_order():
    with line_with(lambda request: water_reply(FOX_ADDRESS, 0, "2018")) as line, serial_bus(line.path) as bus:
        assert read_data(bus, FOX_ADDRESS, 0x10, "2004", 4, 0, reply_order="auto").di_order == "2018"
        with pytest.raises(FrameError, match="1f 90 is not 901F in the 2004 byte order"):
            read_data(bus, FOX_ADDRESS, 0x10, "2004", 4, 0)


def test_a_lone_answer_with_another_ser_is_taken_at_the_timeout():
    # The published reply carries SER 00; this request is SER 01. Nothing else comes: a meter that does not
    # echo SER (or an answer one request late) — the answer is taken, and its SER tells the caller which.
    with line_with(lambda request: published("foxedge_read_data_reply_2004_a")) as line, \
            serial_bus(line.path) as bus:
        reading = read_data(bus, FOX_ADDRESS, 0x10, "2004", 4, 1)
        assert reading.ser == 0
        assert read_data(bus, FOX_ADDRESS, 0x10, "2004", 4, 2, check_ser=False).ser == 0


def test_a_lone_answer_with_another_ser_from_another_meter_is_still_a_timeout():
    with line_with(lambda request: water_reply("00000805000002", 0)) as line, serial_bus(line.path) as bus:
        with pytest.raises(TransportTimeout) as caught:
            read_data(bus, FOX_ADDRESS, 0x10, "2004", 4, 1)
    assert str(caught.value) == ("no answer from CJ/T 188 meter 00000805000001 within 0.3 s "
                                 "(ignored a late answer from meter 00000805000002)")


def test_a_late_answer_before_the_real_one_is_ignored():
    def late_then_real(request: bytes) -> bytes:
        ser = parse_frame(request).data[2]
        return water_reply(FOX_ADDRESS, ser - 1, volume="00 99 00 00") + water_reply(FOX_ADDRESS, ser)

    with line_with(late_then_real) as line, serial_bus(line.path) as bus:
        reading = read_data(bus, FOX_ADDRESS, 0x10, "2004", 4, 7)
    assert (reading.ser, reading.volume) == (7, 123.0)


def test_a_late_answer_of_another_meter_and_an_echo_of_the_request_are_ignored():
    def echo_late_real(request: bytes) -> bytes:
        return request + water_reply("00000805000002", 0, volume="00 99 00 00") + water_reply(FOX_ADDRESS, 0)

    with line_with(echo_late_real) as line, serial_bus(line.path) as bus:
        assert read_data(bus, FOX_ADDRESS, 0x10, "2004", 4, 0).volume == 123.0


def test_too_many_frames_that_are_not_the_answer_is_a_frame_error():
    late = water_reply("00000805000002", 0, preamble=0)
    with line_with(lambda request: late * (MAX_IGNORED_FRAMES + 1)) as line, serial_bus(line.path) as bus:
        with pytest.raises(FrameError, match=f"{MAX_IGNORED_FRAMES + 1} frames on the line did not answer"):
            read_data(bus, FOX_ADDRESS, 0x10, "2004", 4, 0)


def test_stale_input_is_flushed_before_the_request(pty, pty_bus):
    pty.write(water_reply(FOX_ADDRESS, 0, volume="00 99 00 00"))  # same SER: only the flush keeps it out
    deadline = time.monotonic() + 2.0
    while pty.waiting_at_device() == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert pty.waiting_at_device() > 0
    request = read_data_request(FOX_ADDRESS, 0x10, 0, "2004", 4)
    heard: list[bytes] = []

    def meter():
        heard.append(pty.read(len(request), timeout=2.0))
        pty.write(water_reply(FOX_ADDRESS, 0))

    responder = threading.Thread(target=meter)
    responder.start()
    try:
        reading = read_data(pty_bus, FOX_ADDRESS, 0x10, "2004", 4, 0)
    finally:
        responder.join()
    assert heard == [request]
    assert reading.volume == 123.0


def test_error_reply_is_a_device_fault_with_the_status():
    with line_with(lambda request: build_frame(0x10, FOX_ADDRESS, 0xC1, b"\x00\x5a\x01")) as line, \
            serial_bus(line.path) as bus:
        with pytest.raises(CJT188Fault) as caught:
            read_data(bus, FOX_ADDRESS, 0x10, "2004", 4, 0)
    assert isinstance(caught.value, DeviceFault)
    assert caught.value.status == b"\x5a\x01"
    assert "meter 00000805000001 answered with error reply C=C1, status 5a 01" in str(caught.value)


def test_garbled_answer_is_a_frame_error():
    garbled = bytearray(published("foxedge_read_data_reply_2004_a"))
    garbled[20] ^= 0x5A
    with line_with(lambda request: bytes(garbled)) as line, serial_bus(line.path) as bus:
        with pytest.raises(FrameError, match="checksum mismatch"):
            read_data(bus, FOX_ADDRESS, 0x10, "2004", 4, 0)


def test_read_data_refuses_an_order_it_cannot_send():
    with pytest.raises(ValueError, match="di_order must be one of 2004, 2018"):
        read_data(None, FOX_ADDRESS, 0x10, "auto", 4, 0)


def only_2018_read_address(request: bytes) -> bytes | None:
    frame = parse_frame(request)
    if frame.data[:2] != di_bytes(0x810A, "2018"):
        return None
    return build_frame(0x10, FOX_ADDRESS, 0x83, frame.data, preamble=3)


def test_read_address_auto_asks_in_both_orders():
    with line_with(only_2018_read_address) as line, serial_bus(line.path) as bus:
        assert read_address(bus, "auto", preamble=2, ser=5) == FOX_ADDRESS
    assert line.requests == [read_address_request(5, "2004", preamble=2), read_address_request(5, "2018", preamble=2)]


def test_read_address_decodes_the_published_reply():
    with line_with(lambda request: published("foxedge_read_address_reply")) as line, serial_bus(line.path) as bus:
        assert read_address(bus, "2004") == FOX_ADDRESS
    assert line.requests == [read_address_request(0, "2004")]


def test_read_address_in_one_order_times_out_when_nobody_answers_it():
    with line_with(only_2018_read_address) as line, serial_bus(line.path) as bus:
        with pytest.raises(TransportTimeout, match="^no answer from any CJ/T 188 meter within 0.3 s$"):
            read_address(bus, "2004")
    assert len(line.requests) == 1
