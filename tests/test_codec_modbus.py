"""Modbus RTU codec: frames against published examples and an independent CRC, transact over a real pty."""

from __future__ import annotations

import doctest
import threading
import time

import pytest

import drivers.codecs.modbus
from drivers.codecs.modbus import (
    ModbusException,
    decode_registers_response,
    expected_response_length,
    read_registers,
    read_registers_request,
    transact,
)
from drivers.errors import DeviceFault, FrameError, TransportTimeout
from drivers.options import validate_options
from drivers.transports.serial import SerialBus
from edge.simulate.pty import PtyPair


def crc16_modbus(data: bytes) -> bytes:
    """CRC-16/MODBUS written out from the spec (poly 0xA001 reflected, init 0xFFFF), low byte first."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc.to_bytes(2, "little")


def with_crc(hex_text: str) -> bytes:
    body = bytes.fromhex(hex_text)
    return body + crc16_modbus(body)


# --- requests -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("unit", "address", "count", "function", "expected"),
    [
        (1, 0x0002, 3, 3, "01 03 00 02 00 03 A4 0B"),  # the transmitter read this project makes
        (1, 0x0000, 2, 3, "01 03 00 00 00 02 C4 0B"),  # common in vendor manuals
        (0x11, 0x006B, 3, 3, "11 03 00 6B 00 03 76 87"),  # Modbus tutorial example (unit 17, 40108–40110)
    ],
)
def test_request_bytes_match_published_frames(unit, address, count, function, expected):
    assert read_registers_request(unit, address, count, function) == bytes.fromhex(expected)


def test_input_register_request_uses_function_4_and_a_valid_crc():
    frame = read_registers_request(unit=7, address=0x0100, count=2, function=4)
    assert frame == with_crc("07 04 01 00 00 02")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"unit": 0, "address": 0, "count": 1}, "unit must be 1–247 for a read, got 0"),
        ({"unit": 248, "address": 0, "count": 1}, "unit must be 1–247 for a read, got 248"),
        ({"unit": 1, "address": 0, "count": 0}, "count must be 1–125, got 0"),
        ({"unit": 1, "address": 0, "count": 126}, "count must be 1–125, got 126"),
        ({"unit": 1, "address": 65535, "count": 2}, "registers 65535…65536 lie outside 0–65535"),
        ({"unit": 1, "address": 0, "count": 1, "function": 6},
         "function must be 3 (holding registers) or 4 (input registers), got 6"),
    ],
)
def test_request_refuses_impossible_reads(kwargs, message):
    with pytest.raises(ValueError) as err:
        read_registers_request(**kwargs)
    assert str(err.value) == message


def test_expected_response_length():
    assert expected_response_length(3, 3) == 11
    assert expected_response_length(4, 1) == 7
    assert expected_response_length(3, 125) == 255


# --- responses ------------------------------------------------------------------------------------

def test_decodes_the_tutorial_response():
    # Published answer to "11 03 00 6B 00 03 76 87": registers AE41, 5652, 4340.
    frame = bytes.fromhex("11 03 06 AE 41 56 52 43 40 49 AD")
    assert decode_registers_response(frame, unit=0x11, function=3, count=3) == [0xAE41, 0x5652, 0x4340]


def test_decodes_a_transmitter_answer():
    frame = with_crc("01 03 06 00 00 00 03 01 5E")  # MPa, 3 decimals, 350
    assert decode_registers_response(frame, unit=1, function=3, count=3) == [0, 3, 350]


def test_decodes_input_register_answer():
    frame = with_crc("05 04 02 FF CE")
    assert decode_registers_response(frame, unit=5, function=4, count=1) == [0xFFCE]


def test_bad_crc_is_a_frame_error_at_the_crc():
    frame = bytearray(with_crc("01 03 06 00 00 00 03 01 5E"))
    frame[-1] ^= 0xFF
    with pytest.raises(FrameError) as err:
        decode_registers_response(bytes(frame), unit=1, function=3, count=3)
    assert err.value.offset == 9
    assert str(err.value).startswith("CRC mismatch: frame carries ")
    assert err.value.reason == "frame"


def test_corrupted_data_byte_fails_the_crc():
    frame = bytearray(with_crc("01 03 06 00 00 00 03 01 5E"))
    frame[8] ^= 0x01  # 350 → 351 on the wire
    with pytest.raises(FrameError, match="CRC mismatch"):
        decode_registers_response(bytes(frame), unit=1, function=3, count=3)


def test_answer_from_another_unit():
    frame = with_crc("02 03 06 00 00 00 03 01 5E")
    with pytest.raises(FrameError) as err:
        decode_registers_response(frame, unit=1, function=3, count=3)
    assert str(err.value) == "answer came from unit 2, but unit 1 was asked"
    assert err.value.offset == 0


def test_answer_for_another_function():
    frame = with_crc("01 04 06 00 00 00 03 01 5E")
    with pytest.raises(FrameError) as err:
        decode_registers_response(frame, unit=1, function=3, count=3)
    assert str(err.value) == "answer is for function 4, but function 3 was asked"
    assert err.value.offset == 1


def test_byte_count_disagreeing_with_the_request():
    frame = with_crc("01 03 04 00 00 00 03 01 5E")  # right length for 3 registers, says 4 bytes
    with pytest.raises(FrameError) as err:
        decode_registers_response(frame, unit=1, function=3, count=3)
    assert str(err.value) == "answer says 4 data bytes, 6 expected for 3 register(s)"
    assert err.value.offset == 2


def test_truncated_frame():
    frame = with_crc("01 03 06 00 00 00 03 01 5E")[:7]
    with pytest.raises(FrameError) as err:
        decode_registers_response(frame, unit=1, function=3, count=3)
    assert str(err.value) == "answer truncated: 7 of 11 bytes"
    assert err.value.offset == 7


def test_trailing_bytes():
    frame = with_crc("01 03 06 00 00 00 03 01 5E") + b"\x00"
    with pytest.raises(FrameError) as err:
        decode_registers_response(frame, unit=1, function=3, count=3)
    assert str(err.value) == "answer too long: 1 byte(s) after the 11-byte frame"
    assert err.value.offset == 11


def test_exception_response_is_a_device_fault_naming_the_register():
    frame = bytes.fromhex("01 83 02 C0 F1")
    assert frame == with_crc("01 83 02")
    with pytest.raises(ModbusException) as err:
        decode_registers_response(frame, unit=1, function=3, count=1, address=4)
    assert isinstance(err.value, DeviceFault)
    assert str(err.value) == "device 1 answered Modbus exception 2 (illegal data address) for register 0x0004"
    assert (err.value.unit, err.value.code, err.value.reason) == (1, 2, "device_fault")


def test_exception_response_for_a_range_and_an_unknown_code():
    with pytest.raises(ModbusException) as err:
        decode_registers_response(with_crc("09 84 0C"), unit=9, function=4, count=3, address=0x10)
    assert str(err.value) == "device 9 answered Modbus exception 12 (unknown exception) for registers 0x0010–0x0012"


def test_exception_response_with_bad_crc_is_not_trusted():
    with pytest.raises(FrameError, match="CRC mismatch"):
        decode_registers_response(bytes.fromhex("01 83 02 C0 F0"), unit=1, function=3, count=1)


# --- transact over a real pseudo-terminal ---------------------------------------------------------

class Peer(threading.Thread):
    """The device end of a pty: reads each request, then writes the scripted answer (or nothing)."""

    def __init__(self, pty: PtyPair, answers: list[bytes]):
        super().__init__(daemon=True)
        self.pty = pty
        self.answers = answers
        self.requests: list[bytes] = []
        self.arrivals: list[float] = []
        self.sent_at: list[float] = []

    def run(self):
        for answer in self.answers:
            request = self.pty.read(8, timeout=5.0)
            self.arrivals.append(time.monotonic())
            self.requests.append(request)
            if answer:
                self.pty.write(answer)
                self.sent_at.append(time.monotonic())


def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.001)


@pytest.fixture
def pty():
    with PtyPair() as pair:
        yield pair


def open_bus(path: str, **options) -> SerialBus:
    values, problems = validate_options(SerialBus.options, {"port": path, **options})
    assert problems == []
    bus = SerialBus("rs485", values)
    bus.open()
    return bus


def test_transact_reads_a_normal_answer(pty):
    answer = with_crc("01 03 06 00 00 00 03 01 5E")
    peer = Peer(pty, [answer])
    peer.start()
    with open_bus(pty.path, timeout="2s") as bus:
        assert read_registers(bus, unit=1, address=2, count=3) == [0, 3, 350]
    peer.join(5)
    assert peer.requests == [bytes.fromhex("01 03 00 02 00 03 A4 0B")]


def test_transact_reads_a_five_byte_exception_answer(pty):
    peer = Peer(pty, [with_crc("01 83 02")])
    peer.start()
    with open_bus(pty.path, timeout="2s") as bus:
        frame = transact(bus, read_registers_request(1, 2, 3), unit=1)
    assert frame == bytes.fromhex("01 83 02 C0 F1")


def test_no_answer_is_a_timeout(pty):
    peer = Peer(pty, [b""])
    peer.start()
    with open_bus(pty.path, timeout="100ms") as bus:
        with pytest.raises(TransportTimeout) as err:
            transact(bus, read_registers_request(1, 2, 3), unit=1)
    assert str(err.value) == "no answer from Modbus unit 1 within 0.1 s"
    assert err.value.reason == "timeout"


def test_partial_header_is_a_timeout(pty):
    peer = Peer(pty, [bytes.fromhex("01 03")])
    peer.start()
    with open_bus(pty.path, timeout="100ms") as bus:
        with pytest.raises(TransportTimeout) as err:
            transact(bus, read_registers_request(1, 2, 3), unit=1)
    assert str(err.value) == "Modbus unit 1 sent only 2 byte(s) within 0.1 s: 01 03"


def test_partial_body_is_a_timeout(pty):
    peer = Peer(pty, [with_crc("01 03 06 00 00 00 03 01 5E")[:7]])
    peer.start()
    with open_bus(pty.path, timeout="100ms") as bus:
        with pytest.raises(TransportTimeout) as err:
            transact(bus, read_registers_request(1, 2, 3), unit=1)
    assert str(err.value) == "Modbus unit 1 sent 7 of 11 bytes within 0.1 s: 01 03 06 00 00 00 03"


def test_unknown_function_in_header_is_a_frame_error(pty):
    peer = Peer(pty, [bytes.fromhex("01 63 00 00 00")])
    peer.start()
    with open_bus(pty.path, timeout="1s") as bus, pytest.raises(FrameError) as err:
        transact(bus, read_registers_request(1, 2, 3), unit=1)
    assert str(err.value) == "answer from unit 1 has unexpected function code 99"
    assert err.value.offset == 1


def test_stale_input_is_dropped_before_the_request(pty):
    answer = with_crc("01 03 02 01 5E")
    peer = Peer(pty, [answer])
    with open_bus(pty.path, timeout="2s") as bus:
        stale = with_crc("01 03 02 00 07") + b"\xff"  # a late answer to some earlier request, and noise
        pty.write(stale)
        wait_until(lambda: pty.waiting_at_device() == len(stale))
        peer.start()
        assert read_registers(bus, unit=1, address=4, count=1) == [350]


def test_requests_are_separated_by_the_inter_frame_gap(pty):
    answer = with_crc("01 03 02 01 5E")
    peer = Peer(pty, [answer, answer])
    peer.start()
    # At 1200 Bd 8N1 a character takes 8.3 ms, so the gap is 29 ms: large against scheduling noise.
    with open_bus(pty.path, baudrate=1200, timeout="2s") as bus:
        read_registers(bus, unit=1, address=4, count=1)
        read_registers(bus, unit=1, address=4, count=1)
        gap = bus.frame_gap
    peer.join(5)
    assert gap == pytest.approx(3.5 * 10 / 1200)
    assert peer.arrivals[1] - peer.sent_at[0] >= gap


@pytest.mark.parametrize("module", [drivers.codecs.modbus])
def test_documentation_examples_hold(module):
    results = doctest.testmod(module)
    assert results.attempted > 0
    assert results.failed == 0
