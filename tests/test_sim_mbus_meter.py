"""The simulated M-Bus water meter: what it answers, checked by decoding its frames with the codec."""

from __future__ import annotations

import datetime
import threading

import pytest

from drivers.codecs.mbus import decode_response
from drivers.codecs.mbus_link import req_ud2, select_secondary, short_frame, snd_nke
from drivers.options import validate_options
from drivers.transports.serial import SerialBus
from edge.simulate.line import SimulatedLine
from edge.simulate.mbus_meter import MbusWaterMeter

ACK = b"\xe5"


class Clock:
    """A hand-moved monotonic clock, so volumes can be checked to the litre."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def meter(**options) -> MbusWaterMeter:
    options.setdefault("clock", Clock())
    return MbusWaterMeter(options.pop("primary", 5), options.pop("secondary_id", "12345678"), **options)


def readout(device: MbusWaterMeter, address: int = 5, fcb: bool = True):
    answer = device.answer(req_ud2(address, fcb))
    assert answer is not None
    return decode_response(answer)


def by_name(response) -> dict:
    """(quantity, function, storage) -> (value, unit) of every record."""
    return {(r.quantity, r.function, r.storage): (r.value, r.unit) for r in response.records}


def test_a_readout_is_a_water_meter_telegram_the_codec_reads():
    clock = Clock()
    device = meter(clock=clock, start_m3=1234.567, flow=6.0, temperature_c=11.3, on_hours=100,
                   fabrication_no=31415926, settlement_m3=1200.0, settlement_day=datetime.date(2026, 10, 31),
                   manufacturer="ABC", version=3)
    clock.now += 7200.0  # two hours at 6 L/min: 720 L
    response = readout(device)
    assert (response.address, response.ci, response.more_records_follow) == (5, 0x72, False)
    header = response.header
    assert (header.id, header.manufacturer, header.version, header.medium, header.access_no, header.status) == (
        "12345678", "ABC", 3, "water", 1, 0)
    assert by_name(response) == {
        ("fabrication_no", "instantaneous", 0): (31415926, ""),
        ("volume", "instantaneous", 0): (1235.287, "m3"),
        ("volume", "instantaneous", 1): (1200.0, "m3"),
        ("date", "instantaneous", 1): ("2026-10-31", ""),
        ("volume_flow", "instantaneous", 0): (0.36, "m3/h"),  # 6 L/min = 360 L/h
        ("volume_flow", "maximum", 0): (0.36, "m3/h"),
        ("flow_temperature", "instantaneous", 0): (11.3, "degC"),
        ("on_time", "instantaneous", 0): (102 * 3600, "s"),
        ("error_flags", "instantaneous", 0): (0, ""),
    }


def test_volume_grows_with_the_flow_profile():
    clock = Clock()
    # 12 L/min for the first 30 s, then nothing: 6 L whatever the time after.
    device = meter(clock=clock, start_m3=10.0, flow=lambda t: 12.0 if t < 30 else 0.0)
    assert device.volume_m3() == 10.0
    clock.now += 15.0
    assert device.volume_m3() == 10.003
    clock.now += 600.0
    assert device.volume_m3() == 10.006
    device.set_flow(60.0)  # a burst pipe: 1 L/s from now on
    clock.now += 10.0
    assert device.volume_m3() == 10.016
    assert by_name(readout(device))[("volume", "instantaneous", 0)] == (10.016, "m3")
    assert by_name(readout(device, fcb=False))[("volume_flow", "instantaneous", 0)] == (3.6, "m3/h")


def test_peak_flow_and_status_and_error_flags_follow_the_meter():
    clock = Clock()
    device = meter(clock=clock, flow=lambda t: 20.0 if t < 10 else 2.0)
    readout(device)
    clock.now += 60
    device.status, device.error_flags = 0x04, 0x81  # power low; meter-specific flag bits
    response = readout(device, fcb=False)
    assert by_name(response)[("volume_flow", "instantaneous", 0)] == (0.12, "m3/h")
    assert by_name(response)[("volume_flow", "maximum", 0)] == (1.2, "m3/h")
    assert response.header.status == 0x04
    assert by_name(response)[("error_flags", "instantaneous", 0)] == (0x81, "")


def test_same_frame_count_bit_repeats_the_telegram_a_toggled_one_gets_the_next():
    clock = Clock()
    device = meter(clock=clock, flow=6.0)
    first = device.answer(req_ud2(5, fcb=True))
    clock.now += 60
    repeat = device.answer(req_ud2(5, fcb=True))
    fresh = device.answer(req_ud2(5, fcb=False))
    assert repeat == first  # byte for byte: the master lost our answer
    assert decode_response(fresh).header.access_no == decode_response(first).header.access_no + 1
    assert by_name(decode_response(fresh))[("volume", "instantaneous", 0)] == (0.006, "m3")
    assert list(device.replies) == [first, first, fresh]


def test_snd_nke_resets_the_frame_count_bit():
    device = meter()
    first = device.answer(req_ud2(5, fcb=True))
    assert device.answer(snd_nke(5)) == ACK
    after_reset = device.answer(req_ud2(5, fcb=True))
    assert decode_response(after_reset).header.access_no == 2
    # Broadcast without reply: resets silently.
    assert device.answer(snd_nke(255)) is None
    assert decode_response(device.answer(req_ud2(5, fcb=True))).header.access_no == 3
    assert first != after_reset


def test_request_without_frame_count_valid_is_always_answered_fresh():
    device = meter()
    no_fcv = short_frame(0x4B, 5)  # REQ_UD2 with FCV = 0: the meter ignores the frame-count bit
    assert [decode_response(device.answer(no_fcv)).header.access_no for _ in range(3)] == [1, 2, 3]


@pytest.mark.parametrize("address", [4, 6, 253])
def test_requests_for_other_addresses_are_ignored(address):
    device = meter()
    assert device.answer(snd_nke(address)) is None
    assert device.answer(req_ud2(address, True)) is None
    assert not device.replies


def test_broadcast_with_reply_is_answered():
    device = meter()
    assert device.answer(snd_nke(254)) == ACK
    assert readout(device, address=254).address == 5


def test_a_corrupted_request_is_ignored():
    request = bytearray(req_ud2(5, True))
    request[3] ^= 0x01  # checksum
    assert meter().answer(bytes(request)) is None


@pytest.mark.parametrize(
    ("mask", "manufacturer", "version", "medium", "selected"),
    [
        ("12345678", None, None, None, True),
        ("1234FFFF", None, None, None, True),
        ("FFFFFFF8", "LNL", 1, 7, True),
        ("12345679", None, None, None, False),
        ("12345678", "EFE", None, None, False),
        ("12345678", None, 2, None, False),
        ("12345678", None, None, 6, False),
    ],
)
def test_secondary_selection_matches_id_with_wildcards_and_the_other_fields(mask, manufacturer, version, medium,
                                                                            selected):
    device = meter()
    reply = device.answer(select_secondary(mask, manufacturer, version, medium))
    assert (reply, device.selected) == ((ACK, True) if selected else (None, False))


def test_selected_meter_answers_at_253_until_deselected():
    device = meter()
    assert device.answer(req_ud2(253, True)) is None
    assert device.answer(select_secondary("12345678")) == ACK
    assert readout(device, address=253).header.id == "12345678"
    # A selection of another meter deselects this one, without a word.
    assert device.answer(select_secondary("87654321")) is None
    assert not device.selected
    assert device.answer(req_ud2(253, False)) is None
    # SND_NKE to 253 is acknowledged by the selected meter and ends its selection.
    device.answer(select_secondary("12345678"))
    assert device.answer(snd_nke(253)) == ACK
    assert not device.selected
    assert device.answer(snd_nke(253)) is None


def test_records_spread_over_several_telegrams():
    single = meter()
    device = meter(telegrams=3)
    telegrams = [decode_response(device.answer(req_ud2(5, fcb=bit))) for bit in (True, False, True)]
    assert [t.more_records_follow for t in telegrams] == [True, True, False]
    assert [t.header.access_no for t in telegrams] == [1, 2, 3]
    records = [r for t in telegrams for r in t.records]
    assert [r.quantity for r in records] == [r.quantity for r in readout(single).records]
    # A repeat inside the sequence gets the same telegram; after the last one it starts again.
    assert device.answer(req_ud2(5, fcb=True)) == device.replies[-1]
    again = decode_response(device.answer(req_ud2(5, fcb=False)))
    assert (again.more_records_follow, again.records[0].quantity) == (True, "fabrication_no")


@pytest.mark.parametrize(
    ("args", "options", "message"),
    [
        ((251, "12345678"), {}, "primary address must be 0–250"),
        ((5, "1234567"), {}, "secondary id must be 8 digits"),
        ((5, "1234567F"), {}, "secondary id must be 8 digits"),
        ((5, "12345678"), {"start_m3": 100000.0}, "start_m3 must be"),
        ((5, "12345678"), {"telegrams": 0}, "telegrams must be at least 1"),
        ((5, "12345678"), {"manufacturer": "L1L"}, "manufacturer must be three letters"),
    ],
)
def test_constructor_refuses_what_a_meter_cannot_be(args, options, message):
    with pytest.raises(ValueError, match=message):
        MbusWaterMeter(*args, **options)


def test_volume_can_be_read_while_the_line_thread_answers():
    device = MbusWaterMeter(5, "12345678", flow=600.0)
    seen: list[float] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.append(device.volume_m3())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        answers = [device.answer(req_ud2(5, fcb=bool(i % 2))) for i in range(200)]
    finally:
        stop.set()
        watcher.join()
    assert all(answers) and seen
    assert seen == sorted(seen)  # a register never runs backwards


def test_answers_on_a_real_line_through_a_serial_port():
    device = MbusWaterMeter(7, "24681357", start_m3=42.0)
    with SimulatedLine([device], baudrate=9600) as line:
        values, problems = validate_options(
            SerialBus.options, {"port": line.path, "baudrate": 9600, "parity": "E", "timeout": "300ms"})
        assert problems == []
        with SerialBus("mbus", values) as bus:
            bus.write(req_ud2(7, fcb=True))
            head = bus.read(4)
            frame = head + bus.read(head[1] + 2)
    response = decode_response(frame)
    assert (response.header.id, by_name(response)[("volume", "instantaneous", 0)]) == ("24681357", (42.0, "m3"))
