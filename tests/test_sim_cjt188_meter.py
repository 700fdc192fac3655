"""The simulated CJ/T 188 water meter, checked by decoding its answers with the codec (no line, no pty)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from drivers.codecs.cjt188 import (
    CJT188Fault,
    build_frame,
    decode_read_address_reply,
    decode_read_data_reply,
    di_bytes,
    parse_frame,
    read_address_request,
    read_data_request,
)
from edge.simulate.bcd import bcd_bytes
from edge.simulate.cjt188_meter import UNIT_L, UNIT_M3, Cjt188WaterMeter

ADDRESS = "00000805000001"
BEIJING = timezone(timedelta(hours=8))


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ask(meter: Cjt188WaterMeter, ser: int = 0, di_order: str = "2004", preamble: int = 4, **request) -> bytes | None:
    return meter.answer(read_data_request(request.pop("address", ADDRESS), ser=ser, di_order=di_order,
                                          preamble=preamble, **request))


@pytest.mark.parametrize("edition", ["2004", "2018"])
def test_answers_read_data_in_its_editions_byte_order_and_echoes_ser(edition):
    meter = Cjt188WaterMeter(ADDRESS, di_order=edition, start_m3=123.45)
    raw = ask(meter, ser=0x5C, di_order=edition)
    reading = decode_read_data_reply(raw, address=ADDRESS, di_order=edition, ser=0x5C)
    assert (reading.meter_type, reading.address, reading.control) == (0x10, ADDRESS, 0x81)
    assert (reading.volume, reading.volume_unit, reading.volume_m3) == (123.45, "m³", 123.45)
    assert reading.settlement_volume_m3 == 123.45
    assert (reading.status.valve, reading.status.battery_low) == ("open", False)
    payload = parse_frame(raw).data
    assert payload[:2] == di_bytes(0x901F, edition)


@pytest.mark.parametrize("preamble", range(5))
def test_accepts_requests_with_0_to_4_wake_up_bytes(preamble):
    meter = Cjt188WaterMeter(ADDRESS, start_m3=1.0)
    assert decode_read_data_reply(ask(meter, preamble=preamble), address=ADDRESS).volume_m3 == 1.0


@pytest.mark.parametrize("preamble", [0, 4])
def test_puts_its_own_wake_up_bytes_before_its_answers(preamble):
    raw = ask(Cjt188WaterMeter(ADDRESS, preamble=preamble))
    assert raw[:preamble] == b"\xfe" * preamble and raw[preamble] == 0x68
    assert parse_frame(raw).start == preamble


def test_stays_silent_for_other_meters_other_types_garbled_requests_and_answers():
    meter = Cjt188WaterMeter(ADDRESS)
    assert ask(meter, address="00000805000002") is None
    assert ask(meter, meter_type=0x11) is None  # a hot-water request; this is a cold-water meter
    garbled = bytearray(read_data_request(ADDRESS))
    garbled[-2] ^= 0xFF  # checksum
    assert meter.answer(bytes(garbled)) is None
    assert meter.answer(ask(meter)) is None  # its own answer, heard on the shared line
    assert meter.answer(b"\x00\xff\x3c") is None  # line noise


def test_answers_the_wildcard_meter_type():
    assert decode_read_data_reply(ask(Cjt188WaterMeter(ADDRESS), meter_type=0xAA), address=ADDRESS).address == ADDRESS


@pytest.mark.parametrize("edition", ["2004", "2018"])
def test_other_byte_order_ignored_by_default(edition):
    meter = Cjt188WaterMeter(ADDRESS, di_order=edition)
    other = "2018" if edition == "2004" else "2004"
    assert ask(meter, di_order=other) is None


def test_other_byte_order_answered_with_an_error_reply_when_so_configured():
    meter = Cjt188WaterMeter(ADDRESS, di_order="2018", other_order="error", battery_low=True)
    with pytest.raises(CJT188Fault) as caught:
        decode_read_data_reply(ask(meter, ser=9, di_order="2004"), address=ADDRESS)
    assert caught.value.control == 0xC1
    assert caught.value.status == bytes([0x04, 0x00])  # the meter's status: battery low
    assert parse_frame(ask(meter, ser=9, di_order="2004")).data[0] == 9  # SER echoed first


def test_other_byte_order_answered_in_its_own_order_when_so_configured():
    meter = Cjt188WaterMeter(ADDRESS, di_order="2018", other_order="answer")
    reading = decode_read_data_reply(ask(meter, ser=3, di_order="2004"), address=ADDRESS, ser=3)
    assert reading.di_order == "2018"


def test_unknown_di_gets_an_error_reply_echoing_ser():
    meter = Cjt188WaterMeter(ADDRESS)
    request = build_frame(0x10, ADDRESS, 0x01, di_bytes(0x907F, "2004") + b"\x21", preamble=2)
    raw = meter.answer(request)
    frame = parse_frame(raw)
    assert frame.control == 0xC1 and frame.data == bytes([0x21, 0x00, 0x00])
    with pytest.raises(CJT188Fault, match="error reply C=C1"):
        decode_read_data_reply(raw, address=ADDRESS)


def test_unsupported_control_code_gets_an_error_reply():
    raw = Cjt188WaterMeter(ADDRESS).answer(build_frame(0x10, ADDRESS, 0x04, b"\xa0\x17\x05\x99", preamble=0))
    assert parse_frame(raw).control == 0xC4


def test_error_reply_on_demand_then_healed():
    meter = Cjt188WaterMeter(ADDRESS, start_m3=2.0)
    meter.set_error_reply(b"\x5a\x01")
    with pytest.raises(CJT188Fault) as caught:
        decode_read_data_reply(ask(meter), address=ADDRESS)
    assert caught.value.status == b"\x5a\x01"
    meter.set_error_reply(None)
    assert decode_read_data_reply(ask(meter), address=ADDRESS).volume_m3 == 2.0


@pytest.mark.parametrize(("edition", "asked"), [("2004", "2004"), ("2018", "2018"), ("2018", "2004")])
def test_read_address_by_broadcast(edition, asked):
    meter = Cjt188WaterMeter(ADDRESS, di_order=edition, other_order="answer")
    raw = meter.answer(read_address_request(ser=4, di_order=asked))
    assert decode_read_address_reply(raw, di_order=edition, ser=4) == ADDRESS


def test_broadcast_in_the_other_order_is_never_an_error_reply():
    meter = Cjt188WaterMeter(ADDRESS, di_order="2018", other_order="error")
    assert meter.answer(read_address_request(di_order="2004")) is None


@pytest.mark.parametrize(("unit", "start_m3", "shown", "symbol"), [
    (UNIT_L, 12.345, 12345.0, "L"),
    (UNIT_M3, 12.345, 12.34, "m³"),   # two decimals: the register shows the last full 10 litres
    (0x2A, 12.345, 1234.5, "L×10"),
    (0x2E, 123456.0, 1234.56, "m³×100"),
    (0x2B, 0.099, 0.99, "L×100"),
])
def test_volume_units(unit, start_m3, shown, symbol):
    reading = decode_read_data_reply(ask(Cjt188WaterMeter(ADDRESS, unit=unit, start_m3=start_m3)))
    assert (reading.volume, reading.volume_unit) == (shown, symbol)
    assert start_m3 - 0.01 < reading.volume_m3 <= start_m3


def test_a_non_volume_unit_plays_a_meter_that_reports_energy():
    reading = decode_read_data_reply(ask(Cjt188WaterMeter(ADDRESS, unit=0x05, start_m3=42.0)))
    assert (reading.volume, reading.volume_unit, reading.volume_m3) == (42.0, "kWh", None)


def test_register_rolls_over_like_the_meters_wheels():
    reading = decode_read_data_reply(ask(Cjt188WaterMeter(ADDRESS, start_m3=1_000_001.5)))
    assert reading.volume == 1.5


def test_volume_grows_with_flow_and_settlement_follows_settle():
    clock = Clock()
    meter = Cjt188WaterMeter(ADDRESS, flow=10.0, start_m3=5.0, unit=UNIT_L, clock=clock)
    clock.now += 60.0  # one minute at 10 L/min
    reading = decode_read_data_reply(ask(meter))
    assert (reading.volume, reading.settlement_volume) == (5010.0, 5000.0)
    assert meter.settle() == pytest.approx(5.010)
    meter.set_flow(lambda t: 30.0 if t < 90.0 else 0.0)  # t: seconds since the meter started
    clock.now += 120.0
    reading = decode_read_data_reply(ask(meter))
    assert (reading.volume, reading.settlement_volume) == (5025.0, 5010.0)  # 30 s of the new draw


def test_a_meter_without_a_settlement_day_fills_the_field_with_ff():
    meter = Cjt188WaterMeter(ADDRESS, start_m3=3.0)
    meter.forget_settlement()
    raw = ask(meter)
    assert parse_frame(raw).data[8:13] == b"\xff\xff\xff\xff\x2c"
    reading = decode_read_data_reply(raw)
    assert (reading.volume_m3, reading.settlement_volume, reading.settlement_volume_m3) == (3.0, None, None)
    meter.settle()
    assert decode_read_data_reply(ask(meter)).settlement_volume_m3 == 3.0


def test_volume_is_consistent_while_other_threads_read_and_change_it():
    meter = Cjt188WaterMeter(ADDRESS, flow=6000.0, unit=UNIT_L)
    seen: list[float] = []
    errors: list[BaseException] = []

    def poll():
        try:
            for _ in range(200):
                seen.append(decode_read_data_reply(ask(meter)).volume_m3)
        except BaseException as exc:  # reported below: a thread's failure must fail the test
            errors.append(exc)

    pollers = [threading.Thread(target=poll) for _ in range(3)]
    for thread in pollers:
        thread.start()
    for rate in (0.0, 6000.0) * 50:
        meter.set_flow(rate)
    for thread in pollers:
        thread.join()
    assert errors == [] and len(seen) == 600
    assert meter.volume_m3() >= max(seen) > 0


def test_status_bytes_from_valve_and_battery_or_raw():
    meter = Cjt188WaterMeter(ADDRESS, valve_open=False, battery_low=True)
    status = decode_read_data_reply(ask(meter)).status
    assert (status.st0, status.valve, status.battery_low) == (0x05, "closed", True)
    meter.set_valve(True)
    meter.set_battery_low(False)
    assert decode_read_data_reply(ask(meter)).status.st0 == 0x00
    meter.set_status_bytes((0x03, 0x80))
    status = decode_read_data_reply(ask(meter)).status
    assert (status.st0, status.st1, status.valve) == (0x03, 0x80, "abnormal")


@pytest.mark.parametrize("offset", [0.0, -3600.0, 86400.0 * 40])
def test_clock_is_beijing_time_plus_the_offset(offset):
    reading = decode_read_data_reply(ask(Cjt188WaterMeter(ADDRESS, clock_offset_s=offset)))
    expected = datetime.now(BEIJING).replace(tzinfo=None) + timedelta(seconds=offset)
    assert abs((datetime.fromisoformat(reading.clock) - expected).total_seconds()) < 2.0


def test_unset_clock_is_all_zeros():
    meter = Cjt188WaterMeter(ADDRESS)
    meter.set_clock_offset(None)
    assert decode_read_data_reply(ask(meter)).clock is None
    assert parse_frame(ask(meter)).data[13:20] == bytes(7)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"address": "0805000001"}, "14 decimal digits"),
    ({"meter_type": "steam"}, "meter_type must be one of"),
    ({"di_order": "auto"}, "di_order must be"),
    ({"other_order": "shout"}, "other_order must be one of"),
    ({"unit": 0x2F}, "unit must be a CJ/T 188 unit code"),
    ({"preamble": 5}, "preamble must be 0–4"),
])
def test_constructor_refuses_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Cjt188WaterMeter(**{"address": ADDRESS, **kwargs})


def test_bcd_bytes_refuses_what_does_not_fit():
    assert bcd_bytes(5, 1) == b"\x05"
    with pytest.raises(ValueError, match="does not fit"):
        bcd_bytes(100, 1)
    with pytest.raises(ValueError, match="does not fit"):
        bcd_bytes(-1, 2)
