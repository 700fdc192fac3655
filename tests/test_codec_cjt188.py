"""CJ/T 188 codec: published frames, hand-built frames from the standard's field tables, and every rejection."""

from pathlib import Path

import pytest

from drivers.codecs import cjt188
from drivers.codecs.cjt188 import (
    CJT188Fault,
    StatusMapping,
    address_from_bytes,
    address_to_bytes,
    build_frame,
    decode_read_address_reply,
    decode_read_data_reply,
    parse_frame,
    read_address_request,
    read_data_request,
)
from drivers.errors import DeviceFault, FrameError

DATA = Path(__file__).parent / "data" / "cjt188"


def published(name: str) -> bytes:
    return bytes.fromhex((DATA / f"{name}.hex").read_text())


def water_payload(
    di: bytes = b"\x1f\x90",
    ser: int = 0,
    volume: str = "00 77 66 55",
    unit: int = 0x2C,
    settlement: str = "00 77 66 55",
    settlement_unit: int = 0x2C,
    clock: str = "31 01 22 11 05 15 20",
    st: str = "00 00",
) -> bytes:
    """A 901F water payload laid out field by field as the standard's table gives it."""
    return (di + bytes([ser]) + bytes.fromhex(volume) + bytes([unit]) + bytes.fromhex(settlement)
            + bytes([settlement_unit]) + bytes.fromhex(clock) + bytes.fromhex(st))


ADDRESS = "78330011223344"  # A0…A6 = 44 33 22 11 00 33 78


# --- published frames -------------------------------------------------------------------------------------------

def test_published_2018_reply_decodes_to_the_documented_values():
    reading = decode_read_data_reply(published("tutorial_read_data_reply_2018"), address=ADDRESS, ser=0)
    assert reading.meter_type == 0x10
    assert reading.address == ADDRESS
    assert reading.di_order == "2018"
    assert reading.volume == 556677.00 and reading.volume_unit == "m³" and reading.volume_m3 == 556677.0
    assert reading.settlement_volume == 556677.00 and reading.settlement_volume_m3 == 556677.0
    assert reading.clock == "2015-05-11T22:01:31"
    assert (reading.status.st0, reading.status.st1) == (0x21, 0x84)
    assert reading.status.valve == "closed"  # ST0 bits 0-1 = 01
    assert reading.status.battery_low is False  # ST0 bit 2 = 0


@pytest.mark.parametrize(("name", "address", "volume", "settlement", "st"), [
    ("foxedge_read_data_reply_2004_a", "00000805000001", 123.0, 0.0, (0x00, 0x00)),
    ("foxedge_read_data_reply_2004_b", "00002020120218", 2.0, 2.0, (0x00, 0xFF)),
])
def test_published_2004_replies_with_preamble_decode(name, address, volume, settlement, st):
    reading = decode_read_data_reply(published(name), address=address, di_order="2004")
    assert reading.di_order == "2004"
    assert reading.volume_m3 == volume
    assert reading.settlement_volume_m3 == settlement
    assert reading.clock is None  # the meter sends an unset, all-zero clock
    assert (reading.status.st0, reading.status.st1) == st
    assert reading.status.valve == "open"


def test_published_read_address_reply():
    assert decode_read_address_reply(published("foxedge_read_address_reply"), di_order="2004", ser=0) == \
        "00000805000001"


def test_request_builder_reproduces_the_published_request():
    assert read_data_request(ADDRESS, meter_type=0x10, ser=0, di_order="2018", preamble=4) == \
        published("tutorial_read_data_request_2018")


def test_published_frame_with_a_wrong_checksum_is_rejected_at_the_checksum():
    with pytest.raises(FrameError, match="carries 08, contents give 13") as caught:
        parse_frame(published("tutorial_read_data_reply_bad_checksum"))
    assert caught.value.offset == 4 + 33


def test_published_request_missing_its_control_byte_is_rejected_as_truncated():
    # Without C, the L byte read is 1F (the DI), so the frame falls far short of its announced length.
    with pytest.raises(FrameError, match="L=31 needs 44 bytes, got 15") as caught:
        parse_frame(published("foxedge_read_data_request_missing_control"))
    assert caught.value.offset == 15
    # With C=01 put back, the published checksum 39 is right and it is our own 2018-order request.
    repaired = published("foxedge_read_data_request_missing_control")
    repaired = repaired[:9] + b"\x01" + repaired[9:]
    assert repaired == read_data_request("00000805000001", ser=0, di_order="2018", preamble=0)


@pytest.mark.parametrize(("name", "expected"), [
    ("aixiwang_read_data_reply_2004",
     dict(address="00000000000012", di_order="2004", ser=0, volume_m3=1000.1, settlement_volume_m3=1000.1,
          clock=None, st=(0x00, 0xFF))),
    ("published_reply_unfilled_settlement_and_clock",
     dict(address="78331505104145", di_order="2004", ser=0xAA, volume_m3=5959.0, settlement_volume_m3=None,
          clock=None, st=(0x00, 0x00))),
    ("published_reply_2004_bad_clock",
     dict(address="00201809230001", di_order="2004", ser=1, volume_m3=0.6, settlement_volume_m3=0.6,
          clock=None, st=(0x00, 0x00))),
    ("published_reply_2004_zero_clock",
     dict(address="00000010000192", di_order="2004", ser=1, volume_m3=2222.0, settlement_volume_m3=0.0,
          clock=None, st=(0x00, 0x00))),
    ("published_reply_2004_status_23",
     dict(address="00924040000018", di_order="2004", ser=0, volume_m3=0.29, settlement_volume_m3=0.29,
          clock=None, st=(0x00, 0x23))),
    ("published_reply_2004_with_clock",
     dict(address="00201510270588", di_order="2004", ser=1, volume_m3=0.0, settlement_volume_m3=0.0,
          clock="2017-01-09T17:20:06", st=(0x00, 0x00))),
    ("published_reply_2018_ser_04",
     dict(address="78330007061326", di_order="2018", ser=4, volume_m3=68.0, settlement_volume_m3=0.0,
          clock=None, st=(0x00, 0x00))),
    ("published_reply_2018_with_clock",
     dict(address="00201707010069", di_order="2018", ser=2, volume_m3=0.0, settlement_volume_m3=0.0,
          clock="2017-08-19T16:54:59", st=(0x13, 0x01))),
    ("published_reply_2018_zero",
     dict(address="00001811775450", di_order="2018", ser=0, volume_m3=0.0, settlement_volume_m3=0.0,
          clock=None, st=(0x00, 0x00))),
])
def test_more_published_replies(name, expected):
    reading = decode_read_data_reply(published(name))
    got = dict(address=reading.address, di_order=reading.di_order, ser=reading.ser, volume_m3=reading.volume_m3,
               settlement_volume_m3=reading.settlement_volume_m3, clock=reading.clock,
               st=(reading.status.st0, reading.status.st1))
    assert got == expected
    assert reading.meter_type == 0x10


def test_more_published_requests_are_what_our_builders_send():
    assert read_data_request("00000000000012", ser=0, di_order="2004", preamble=0) == \
        published("aixiwang_read_data_request_2004")
    assert read_data_request("00201510270588", ser=1, di_order="2004", preamble=0) == \
        published("published_request_2004_ser_01")
    assert read_data_request("AAAAAAAAAAAAAA", ser=0xAA, di_order="2004", preamble=2) == \
        published("published_request_broadcast_read_data")
    assert read_address_request(preamble=4) == published("aixiwang_read_address_request")


def test_more_published_address_replies():
    assert decode_read_address_reply(published("aixiwang_read_address_reply"), di_order="2004") == "00000000000012"
    # Meter type AA in the answer and the DI in the 2018 order.
    frame = published("published_read_address_reply_type_aa_2018")
    assert decode_read_address_reply(frame) == "00000805000001"
    assert parse_frame(frame).meter_type_name == "type_0xAA"
    with pytest.raises(FrameError, match="2004 byte order"):
        decode_read_address_reply(frame, di_order="2004")


def test_malformed_published_frames_are_rejected():
    with pytest.raises(FrameError, match="6 FE wake-up bytes") as caught:
        parse_frame(published("published_reply_six_fe"))
    assert caught.value.offset == 4
    with pytest.raises(FrameError, match="truncated"):  # five address bytes: its L is read from the DI
        parse_frame(published("published_reply_address_five_bytes"))


# --- addresses, requests, framing ------------------------------------------------------------------------------

def test_address_a0_is_least_significant():
    assert address_to_bytes("12345678901234") == bytes([0x34, 0x12, 0x90, 0x78, 0x56, 0x34, 0x12])
    assert address_from_bytes(bytes([0x34, 0x12, 0x90, 0x78, 0x56, 0x34, 0x12])) == "12345678901234"
    assert address_to_bytes("aaaaaaaaaaaaaa") == b"\xaa" * 7
    assert address_from_bytes(b"\xaa" * 7) == "AAAAAAAAAAAAAA"


@pytest.mark.parametrize("bad", ["1234567890123", "123456789012345", "1234567890123x", "１２３４５６７８９０１２３４"])
def test_bad_address_strings_are_refused(bad):
    with pytest.raises(ValueError, match="14 decimal digits"):
        address_to_bytes(bad)


def test_non_bcd_address_in_a_frame_names_its_offset():
    frame = bytearray(build_frame(0x10, ADDRESS, 0x81, preamble=1))
    frame[4] = 0x3A  # A1: FE 68 T A0 A1
    frame[-2] = sum(frame[1:-2]) & 0xFF
    with pytest.raises(FrameError, match="not BCD") as caught:
        parse_frame(bytes(frame))
    assert caught.value.offset == 4


@pytest.mark.parametrize("di_order,di", [("2004", "90 1f"), ("2018", "1f 90")])
def test_read_data_request_byte_order_and_checksum(di_order, di):
    request = read_data_request("12345678901234", ser=7, di_order=di_order, preamble=0)
    assert request[:11].hex(" ") == "68 10 34 12 90 78 56 34 12 01 03"
    assert request[11:14].hex(" ") == f"{di} 07"
    assert request[14] == sum(request[:14]) % 256
    assert request[15] == 0x16


def test_read_address_request_goes_to_the_broadcast_address():
    request = read_address_request(ser=3, di_order="2018", preamble=2)
    assert request[:3] == b"\xfe\xfe\x68"
    assert request[3:11] == b"\xaa" * 8  # type AA and address AA×7
    assert request[11:16].hex(" ") == "03 03 0a 81 03"
    assert request[16] == sum(request[2:16]) % 256


@pytest.mark.parametrize("preamble", range(5))
def test_preamble_is_emitted_and_skipped(preamble):
    raw = build_frame(0x20, ADDRESS, 0x81, b"\x01\x02", preamble=preamble)
    assert raw[:preamble] == b"\xfe" * preamble and raw[preamble] == 0x68
    frame = parse_frame(raw)
    assert (frame.meter_type_name, frame.address, frame.control, frame.data, frame.start) == \
        ("heat", ADDRESS, 0x81, b"\x01\x02", preamble)


def test_more_than_four_preamble_bytes_is_a_frame_error():
    with pytest.raises(FrameError, match="5 FE") as caught:
        parse_frame(b"\xfe" + build_frame(0x10, ADDRESS, 0x81, preamble=4))
    assert caught.value.offset == 4


@pytest.mark.parametrize("kwargs", [{"preamble": 5}, {"preamble": -1}, {"data": bytes(256)}, {"control": 256}])
def test_build_frame_refuses_out_of_range_fields(kwargs):
    args = {"meter_type": 0x10, "address": ADDRESS, "control": 0x01} | kwargs
    with pytest.raises(ValueError):
        build_frame(**args)


def test_request_builders_refuse_unknown_byte_order_and_ser():
    with pytest.raises(ValueError, match="di_order"):
        read_data_request(ADDRESS, di_order="auto")
    with pytest.raises(ValueError, match="SER"):
        read_data_request(ADDRESS, ser=256)


@pytest.mark.parametrize(("mutate", "message", "offset"), [
    (lambda f: f[:-1], "truncated", 15),
    (lambda f: f + b"\x00", "too long", 16),
    (lambda f: f[:-1] + b"\x17", "not 16", 15),
    (lambda f: b"\x69" + f[1:], "not 68", 0),
    (lambda f: f[:8], "truncated", 8),
    (lambda f: b"", "no frame", 0),
])
def test_framing_errors_carry_the_offset(mutate, message, offset):
    raw = read_data_request(ADDRESS, preamble=0)
    with pytest.raises(FrameError, match=message) as caught:
        parse_frame(mutate(raw))
    assert caught.value.offset == offset


def test_meter_type_names():
    assert {code: cjt188.METER_TYPES[code] for code in (0x10, 0x11, 0x12, 0x13, 0x20, 0x30)} == {
        0x10: "cold_water", 0x11: "hot_water", 0x12: "drinking_water", 0x13: "reclaimed_water",
        0x20: "heat", 0x30: "gas"}
    assert parse_frame(build_frame(0x55, ADDRESS, 0x81)).meter_type_name == "type_0x55"


# --- read-data replies built from the field table --------------------------------------------------------------

def reply(payload: bytes, control: int = 0x81, address: str = ADDRESS, preamble: int = 2) -> bytes:
    return build_frame(0x10, address, control, payload, preamble=preamble)


@pytest.mark.parametrize("di_order,di", [("2004", b"\x90\x1f"), ("2018", b"\x1f\x90")])
def test_auto_detects_the_di_byte_order(di_order, di):
    assert decode_read_data_reply(reply(water_payload(di=di))).di_order == di_order
    assert decode_read_data_reply(reply(water_payload(di=di)), di_order=di_order).di_order == di_order


def test_reply_in_the_other_byte_order_than_configured_is_a_frame_error():
    with pytest.raises(FrameError, match="1f 90 is not 901F in the 2004 byte order") as caught:
        decode_read_data_reply(reply(water_payload(di=b"\x1f\x90")), di_order="2004")
    assert caught.value.offset == 2 + 11


def test_reply_with_another_di_is_a_frame_error():
    with pytest.raises(FrameError, match="not 901F in either byte order"):
        decode_read_data_reply(reply(water_payload(di=b"\x90\x2f")))


@pytest.mark.parametrize("payload", [water_payload() + b"\x00", water_payload()[:-1]])
def test_reply_length_other_than_the_901f_payload_is_a_frame_error(payload):
    with pytest.raises(FrameError, match="22 expected") as caught:
        decode_read_data_reply(reply(payload))
    assert type(caught.value) is FrameError
    assert caught.value.offset == 2 + 10


def test_reply_from_another_meter_or_with_another_ser_is_a_frame_error():
    with pytest.raises(FrameError, match="from meter 78330011223344, but 12345678901234 was asked"):
        decode_read_data_reply(reply(water_payload()), address="12345678901234")
    with pytest.raises(FrameError, match="but 12345678901234 was asked"):
        decode_read_data_reply(reply(bytes([0x00, 0x5A, 0x01]), control=0xC1), address="12345678901234")
    with pytest.raises(FrameError, match="SER 5 does not match request SER 6"):
        decode_read_data_reply(reply(water_payload(ser=5)), ser=6)


def test_reply_with_a_control_code_that_does_not_answer_read_data_is_a_frame_error():
    with pytest.raises(FrameError, match="83 does not answer request 01"):
        decode_read_data_reply(reply(water_payload(), control=0x83))


@pytest.mark.parametrize("control", [0xC1, 0xC3])
def test_error_reply_raises_a_device_fault_carrying_the_status(control):
    # Error reply laid out as SER followed by the two status bytes.
    raw = reply(bytes([0x00, 0x5A, 0x01]), control=control)
    decode = decode_read_data_reply if control == 0xC1 else decode_read_address_reply
    with pytest.raises(CJT188Fault, match=f"error reply C={control:02X}, status 5a 01") as caught:
        decode(raw)
    assert isinstance(caught.value, DeviceFault) and caught.value.reason == "device_fault"
    assert (caught.value.control, caught.value.status) == (control, b"\x5a\x01")


@pytest.mark.parametrize(("unit", "symbol", "m3"), [
    (0x29, "L", 12.3456),
    (0x2A, "L×10", 123.456),
    (0x2B, "L×100", 1234.56),
    (0x2C, "m³", 12345.6),
    (0x2D, "m³×10", 123456.0),
    (0x2E, "m³×100", 1234560.0),
])
def test_volume_units_convert_to_m3(unit, symbol, m3):
    reading = decode_read_data_reply(reply(water_payload(volume="60 45 23 01", unit=unit)))
    assert reading.volume == 12345.60
    assert reading.volume_unit == symbol
    assert reading.volume_m3 == pytest.approx(m3)


def test_non_volume_unit_keeps_value_but_has_no_m3():
    reading = decode_read_data_reply(reply(water_payload(unit=0x05)))
    assert (reading.volume, reading.volume_unit, reading.volume_m3) == (556677.0, "kWh", None)


@pytest.mark.parametrize(("code", "base", "factor"), [
    (0x02, "kWh", 0.001), (0x08, "kWh", 1000.0), (0x0B, "kWh", 1 / 3600), (0x11, "kWh", 1e6 / 3600),
    (0x35, "m3/h", 1.0), (0x32, "m3/h", 0.001),
])
def test_unit_table_families(code, base, factor):
    assert cjt188.UNITS[code].base == base
    assert cjt188.UNITS[code].factor == pytest.approx(factor)


def test_unknown_unit_code_of_the_volume_is_a_frame_error_at_the_unit_byte():
    with pytest.raises(FrameError, match="unknown unit code 2F") as caught:
        decode_read_data_reply(reply(water_payload(unit=0x2F)))
    assert caught.value.offset == 2 + 11 + 7
    # The settlement volume with a unit nobody knows is left out; the current volume still counts.
    reading = decode_read_data_reply(reply(water_payload(settlement_unit=0x2F)))
    assert (reading.settlement_volume, reading.settlement_volume_unit, reading.volume_m3) == (None, "", 556677.0)


def test_non_bcd_volume_is_a_frame_error_at_the_bad_byte():
    with pytest.raises(FrameError, match="byte 7A at offset 18 is not BCD") as caught:
        decode_read_data_reply(reply(water_payload(volume="00 00 7A 00")))
    assert caught.value.offset == 2 + 11 + 3 + 2


@pytest.mark.parametrize("clock", ["00 00 00 31 02 26 20", "ff ff ff ff ff ff ff", "60 20 20 00 00 00 00"])
def test_a_clock_that_is_no_date_reads_as_none_and_the_volume_still_decodes(clock):
    # 31 February, an unfilled clock, second 60: a meter without a working clock still measures water.
    reading = decode_read_data_reply(reply(water_payload(clock=clock)))
    assert (reading.clock, reading.volume_m3) == (None, 556677.0)


def test_an_unfilled_settlement_volume_is_none_and_the_volume_still_decodes():
    reading = decode_read_data_reply(reply(water_payload(settlement="ff ff ff ff", settlement_unit=0xFF)))
    assert (reading.settlement_volume, reading.settlement_volume_m3) == (None, None)
    assert (reading.volume, reading.volume_m3) == (556677.0, 556677.0)


@pytest.mark.parametrize(("st0", "valve", "battery_low"), [
    (0x00, "open", False), (0x01, "closed", False), (0x03, "abnormal", False), (0x02, "unknown_10", False),
    (0x04, "open", True), (0x07, "abnormal", True),
])
def test_default_status_mapping(st0, valve, battery_low):
    status = decode_read_data_reply(reply(water_payload(st=f"{st0:02x} 00"))).status
    assert (status.valve, status.battery_low) == (valve, battery_low)


def test_configurable_status_mapping():
    # A vendor that keeps the valve in ST1 bits 4-5 (10 = open, 01 = closed) and battery low in ST1 bit 7.
    mapping = StatusMapping(valve_byte=1, valve_shift=4, valve_states={0b10: "open", 0b01: "closed"},
                            battery_byte=1, battery_bit=7)
    status = decode_read_data_reply(reply(water_payload(st="07 90")), status_mapping=mapping).status
    assert (status.valve, status.battery_low) == ("closed", True)
    status = decode_read_data_reply(reply(water_payload(st="00 20")), status_mapping=mapping).status
    assert (status.valve, status.battery_low) == ("open", False)
    with pytest.raises(ValueError, match="valve_byte"):
        StatusMapping(valve_byte=2)


def test_read_address_reply_checks():
    good = build_frame(0x10, "12345678901234", 0x83, b"\x0a\x81\x09")
    assert decode_read_address_reply(good, di_order="2018", ser=9) == "12345678901234"
    with pytest.raises(FrameError, match="not 810A"):
        decode_read_address_reply(build_frame(0x10, "12345678901234", 0x83, b"\x90\x1f\x09"))
    with pytest.raises(FrameError, match="3 expected"):
        decode_read_address_reply(build_frame(0x10, "12345678901234", 0x83, b"\x0a\x81"))
    with pytest.raises(FrameError, match="broadcast address"):
        decode_read_address_reply(build_frame(0x10, "AAAAAAAAAAAAAA", 0x83, b"\x0a\x81\x00"))
