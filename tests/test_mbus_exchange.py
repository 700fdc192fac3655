"""M-Bus exchanges over a real pseudo-terminal: canned answers (real meter frames from libmbus's set) on a
simulated line, and what the master does with noise, echoes, silence, partial and wrong answers."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Iterator

import pytest

from drivers.codecs.mbus import MBusApplicationError
from drivers.codecs.mbus_exchange import (
    MAX_NOISE_BYTES,
    AnswerTimeout,
    receive_frame,
    request_ud2,
    select_secondary,
    send_nke,
)
from drivers.errors import FrameError, TransportTimeout
from drivers.options import validate_options
from drivers.transports.serial import SerialBus
from edge.simulate.line import SimulatedLine

DATA = Path(__file__).parent / "data" / "mbus"
ACK = b"\xe5"


def real_frame(name: str) -> bytes:
    return bytes.fromhex((DATA / f"{name}.hex").read_text())


ENGELMANN = real_frame("EFE_Engelmann-WaterStar")  # RSP_UD from primary address 0x0B
GWF = real_frame("GWF-MTKcoder")  # RSP_UD from primary address 1


def sum8(body: bytes) -> int:
    return sum(body) % 256


def short(control: int, address: int) -> bytes:
    """A short frame written out from EN 13757-2, independently of the codec."""
    return bytes([0x10, control, address, sum8(bytes([control, address])), 0x16])


def long_frame(control: int, address: int, ci: int, data: bytes = b"") -> bytes:
    body = bytes([control, address, ci]) + data
    return bytes([0x68, len(body), len(body), 0x68]) + body + bytes([sum8(body), 0x16])


def with_control(frame: bytes, control: int) -> bytes:
    return long_frame(control, frame[5], frame[6], frame[7:-2])


class Canned:
    """A device that answers every request with the next of ``answers`` (``None``: keeps quiet)."""

    def __init__(self, *answers: bytes | None):
        self.answers = list(answers)

    def answer(self, request: bytes) -> bytes | None:
        return self.answers.pop(0) if self.answers else None


@contextlib.contextmanager
def rig(*answers: bytes | None, baudrate: int = 9600, timeout: str = "200ms",
        fault: str | None = None) -> Iterator[tuple[SimulatedLine, SerialBus]]:
    device = Canned(*answers)
    values, problems = validate_options(
        SerialBus.options, {"port": "-", "baudrate": baudrate, "parity": "E", "timeout": timeout})
    assert problems == []
    with SimulatedLine([device], baudrate=baudrate) as line, SerialBus("mbus", {**values, "port": line.path}) as bus:
        line.set_fault(device, fault)
        yield line, bus


# --- requests as they go on the wire -------------------------------------------------------------------------

def test_req_ud2_goes_out_with_the_frame_count_bit_and_decodes_a_real_answer():
    with rig(ENGELMANN, ENGELMANN) as (line, bus):
        response = request_ud2(bus, 0x0B, fcb=True)
        request_ud2(bus, 0x0B, fcb=False)
    assert line.requests == [short(0x7B, 0x0B), short(0x5B, 0x0B)]
    assert (response.address, response.header.id, response.header.manufacturer) == (0x0B, "04990254", "EFE")
    volumes = [(r.value, r.storage) for r in response.records if r.quantity == "volume"]
    assert volumes == [(0.332, 0), (0.331, 1), (0.332, 2)]


def test_snd_nke_is_acknowledged():
    with rig(ACK) as (line, bus):
        assert send_nke(bus, 5) is None
    assert line.requests == [short(0x40, 5)]


def test_select_secondary_sends_the_id_least_significant_byte_first():
    with rig(ACK, None) as (line, bus):
        assert select_secondary(bus, "12345678") is True
        assert select_secondary(bus, "87654321", manufacturer="EFE", version=1, medium=7) is False
    assert line.requests == [
        long_frame(0x53, 0xFD, 0x52, bytes([0x78, 0x56, 0x34, 0x12, 0xFF, 0xFF, 0xFF, 0xFF])),
        long_frame(0x53, 0xFD, 0x52, bytes([0x21, 0x43, 0x65, 0x87, 0xC5, 0x14, 0x01, 0x07])),
    ]


# --- silence and partial answers --------------------------------------------------------------------------------

def test_silence_is_a_timeout_naming_the_address_and_the_wait():
    with rig() as (_, bus):
        started = time.monotonic()
        with pytest.raises(AnswerTimeout, match=r"^no answer from M-Bus address 5 within 0.2 s$") as caught:
            request_ud2(bus, 5, fcb=True)
        assert time.monotonic() - started >= 0.2
    assert isinstance(caught.value, TransportTimeout) and caught.value.received == b""


def test_selected_meter_is_named_in_the_timeout():
    with rig() as (_, bus), pytest.raises(AnswerTimeout, match="the M-Bus meter selected at address 253"):
        send_nke(bus, 253)


def test_a_partial_answer_says_how_many_bytes_arrived():
    with rig(GWF[:20]) as (_, bus), pytest.raises(AnswerTimeout) as caught:
        request_ud2(bus, 1, fcb=True)
    assert str(caught.value).startswith("M-Bus address 1 sent 20 of 33 bytes of a frame (68 1b 1b 68 08 01 72")
    assert caught.value.received == GWF[:20]


def test_select_with_a_partial_answer_is_not_taken_for_no_meter():
    with rig(b"\x10\x08") as (_, bus), pytest.raises(AnswerTimeout, match="sent 2 of 5 bytes"):
        select_secondary(bus, "12345678")


def test_a_long_answer_may_take_longer_than_the_timeout_on_the_wire():
    # 87 bytes at 2400 Bd take 400 ms, twice the timeout: what counts is that bytes keep coming.
    with rig(ENGELMANN, baudrate=2400, timeout="200ms") as (_, bus):
        started = time.monotonic()
        response = request_ud2(bus, 0x0B, fcb=True)
        assert time.monotonic() - started >= len(ENGELMANN) * 11 / 2400
    assert response.header.id == "04990254"


# --- what is not a frame ------------------------------------------------------------------------------------------

def test_line_noise_before_the_answer_is_skipped():
    with rig(ENGELMANN, fault="noise") as (_, bus):
        assert request_ud2(bus, 0x0B, fcb=True).header.id == "04990254"


@pytest.mark.parametrize(
    "noise",
    [
        bytes([0x68, 0x01, 0x02, 0x03]),   # a 68 without "L L 68" after it
        bytes([0x10, 0x00, 0x68, 0x1B]),   # a 10 without checksum and stop byte: the real 68 hides inside
        bytes([0x68, 0x10]),               # both, overlapping
    ],
)
def test_false_start_bytes_in_noise_are_skipped(noise):
    with rig(noise + GWF) as (_, bus):
        assert request_ud2(bus, 1, fcb=True).header.id == "00182007"


def test_receive_frame_returns_ack_short_and_long_frames_as_read():
    ack_answer, short_answer = ACK, short(0x7B, 5)
    with rig(ack_answer, short_answer, GWF) as (_, bus):
        found = []
        for _ in range(3):
            bus.write(short(0x5B, 1))
            found.append(receive_frame(bus, source="test"))
    assert found == [ack_answer, short_answer, GWF]


def test_only_noise_then_silence_is_a_timeout_showing_the_noise():
    with rig(bytes([0x00, 0xFF, 0x3C])) as (_, bus), pytest.raises(AnswerTimeout) as caught:
        send_nke(bus, 5)
    assert str(caught.value) == ("no M-Bus frame from M-Bus address 5 within 0.2 s, only 3 bytes of line noise"
                                 " (00 ff 3c)")


def test_endless_noise_is_a_frame_error_not_a_hang():
    with rig(bytes(MAX_NOISE_BYTES + 10)) as (_, bus), pytest.raises(FrameError, match="without an M-Bus frame start"):
        request_ud2(bus, 5, fcb=True)


def test_an_echoing_level_converter_is_tolerated():
    request = short(0x7B, 1)
    with rig(request + GWF) as (_, bus):
        assert request_ud2(bus, 1, fcb=True).header.id == "00182007"


# --- answers that are frames, but the wrong ones ---------------------------------------------------------------

def test_an_answer_from_another_address_is_refused():
    with rig(ENGELMANN) as (_, bus), pytest.raises(FrameError) as caught:
        request_ud2(bus, 5, fcb=True)
    assert str(caught.value).startswith("answer to REQ_UD2 for M-Bus address 5 came from address 11")
    assert caught.value.offset == 5


@pytest.mark.parametrize("address", [253, 254])
def test_at_253_and_254_any_answering_address_is_fine(address):
    with rig(ENGELMANN) as (_, bus):
        assert request_ud2(bus, address, fcb=True).address == 0x0B


@pytest.mark.parametrize("control", [0x18, 0x28, 0x38])
def test_rsp_ud_with_access_demand_or_busy_bits_is_accepted(control):
    with rig(with_control(GWF, control)) as (_, bus):
        assert request_ud2(bus, 1, fcb=True).header.id == "00182007"


def test_an_answer_that_is_not_rsp_ud_is_refused():
    with rig(with_control(GWF, 0x53)) as (_, bus), pytest.raises(FrameError, match="control field 0x53, not RSP_UD"):
        request_ud2(bus, 1, fcb=True)


@pytest.mark.parametrize(("answer", "what"), [(ACK, "an ACK (E5)"), (short(0x0B, 1), "a short frame")])
def test_req_ud2_answered_without_data_is_refused(answer, what):
    with rig(answer) as (_, bus), pytest.raises(FrameError) as caught:
        request_ud2(bus, 1, fcb=True)
    assert str(caught.value) == f"M-Bus address 1 answered REQ_UD2 with {what} instead of its data (RSP_UD)"


def test_snd_nke_answered_with_data_is_refused():
    with rig(GWF) as (_, bus), pytest.raises(FrameError, match="SND_NKE with a long frame instead of an ACK"):
        send_nke(bus, 1)


def test_a_garbled_answer_is_a_frame_error_naming_the_meter():
    with rig(GWF, fault="garble") as (_, bus), pytest.raises(FrameError) as caught:
        request_ud2(bus, 1, fcb=True)
    assert str(caught.value).startswith("M-Bus address 1 answered with a broken frame: M-Bus checksum is")
    assert caught.value.offset == len(GWF) - 2


def test_an_application_error_is_a_device_fault():
    busy = long_frame(0x08, 1, 0x70, bytes([0x08]))
    with rig(busy) as (_, bus), pytest.raises(MBusApplicationError, match="application too busy"):
        request_ud2(bus, 1, fcb=True)
