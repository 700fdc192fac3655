"""M-Bus codec: real meter frames (libmbus test set), hand-built frames from the EN 13757 tables, mutation fuzzing."""

from __future__ import annotations

import doctest
import random
import struct
from pathlib import Path

import pytest

import drivers.codecs.mbus
import drivers.codecs.mbus_link
import drivers.codecs.mbus_vif
from drivers.codecs.mbus import Response, decode_response
from drivers.codecs.mbus_link import FrameCountBit, parse_frame, req_ud2, select_secondary, snd_nke
from drivers.errors import FrameError

DATA = Path(__file__).parent / "data" / "mbus"
REAL_FRAMES = ("EFE_Engelmann-WaterStar", "ELS_Elster-F96-Plus", "ACW_Itron-CYBLE-M-Bus-14", "GWF-MTKcoder")


def real_frame(name: str) -> bytes:
    return bytes.fromhex((DATA / f"{name}.hex").read_text())


def sum8(body: bytes) -> int:
    """The link-layer checksum written out from EN 13757-2: arithmetic sum, no carry."""
    total = 0
    for byte in body:
        total = (total + byte) % 256
    return total


def long_frame(ci: int, data_hex: str, control: int = 0x08, address: int = 1) -> bytes:
    """A long frame assembled here, independently of the codec's builder."""
    body = bytes([control, address, ci]) + bytes.fromhex(data_hex)
    return bytes([0x68, len(body), len(body), 0x68]) + body + bytes([sum8(body), 0x16])


# id 12345678, manufacturer EFE (0x14C5), version 1, medium water (7), access 0x2A, status 0, signature 0
HEADER = "78 56 34 12 c5 14 01 07 2a 00 00 00"


def records(records_hex: str, ci: int = 0x72) -> list:
    prefix = HEADER + " " if ci == 0x72 else ""
    return decode_response(long_frame(ci, prefix + records_hex)).records


def one(records_hex: str):
    (record,) = records(records_hex)
    return record


def fields(record) -> tuple:
    return record.quantity, record.value, record.unit, record.function, record.storage, record.tariff, record.subunit


# --- link layer -------------------------------------------------------------------------------------------------


def test_ack_short_and_control_frames_parse():
    assert parse_frame(b"\xe5").kind == "ack"
    short = parse_frame(bytes.fromhex("10 5b fe 59 16"))
    assert (short.kind, short.control, short.address) == ("short", 0x5B, 0xFE)
    control = parse_frame(bytes.fromhex("68 03 03 68 53 01 b1 05 16"))
    assert (control.kind, control.control, control.address, control.ci, control.data) == ("control", 0x53, 1, 0xB1, b"")


@pytest.mark.parametrize(
    ("frame_hex", "offset", "text"),
    [
        ("", 0, "empty"),
        ("e5 e5", 1, "unexpected"),
        ("10 5b 01 5c", 4, "truncated"),
        ("10 5b 01 5d 16", 3, "checksum"),
        ("10 5b 01 5c 17", 4, "stop byte"),
        ("10 5b 01 5c 16 00", 5, "unexpected"),
        ("68 03 04 68 53 01 b1 05 16", 2, "length bytes differ"),
        ("68 03 03 69 53 01 b1 05 16", 3, "second start"),
        ("68 02 02 68 53 01 54 16", 1, "below 3"),
        ("68 04 04 68 53 01 b1 05 16", 9, "truncated"),
        ("68 03 03 68 53 01 b1 06 16", 7, "checksum"),
        ("68 03 03 68 53 01 b1 05 00", 8, "stop byte"),
        ("a5 00", 0, "starts with 0xA5"),
    ],
)
def test_bad_frames_name_the_offending_byte(frame_hex, offset, text):
    with pytest.raises(FrameError, match=text) as caught:
        parse_frame(bytes.fromhex(frame_hex))
    assert caught.value.offset == offset


@pytest.mark.parametrize("address", [1, 17, 250])
def test_snd_nke_and_req_ud2_for_primary_addresses(address):
    assert snd_nke(address) == bytes([0x10, 0x40, address, (0x40 + address) % 256, 0x16])
    assert req_ud2(address, fcb=True) == bytes([0x10, 0x7B, address, (0x7B + address) % 256, 0x16])
    assert req_ud2(address, fcb=False) == bytes([0x10, 0x5B, address, (0x5B + address) % 256, 0x16])
    assert parse_frame(req_ud2(address, fcb=True)).address == address


@pytest.mark.parametrize("address", [-1, 251, 252, 256, "5"])
def test_addresses_outside_the_primary_range_are_refused(address):
    with pytest.raises(ValueError, match="address"):
        snd_nke(address)


def test_frame_count_bit_toggles_only_on_answers_and_resets_after_snd_nke():
    fcb = FrameCountBit()
    sent = [req_ud2(3, fcb.value)]
    fcb.answered()
    sent.append(req_ud2(3, fcb.value))
    # No answer: the repeat carries the same bit.
    sent.append(req_ud2(3, fcb.value))
    fcb.answered()
    sent.append(req_ud2(3, fcb.value))
    fcb.reset()
    sent.append(req_ud2(3, fcb.value))
    assert [frame[1] & 0x20 for frame in sent] == [0x20, 0, 0, 0x20, 0x20]


def test_secondary_select_encodes_the_id_in_bcd_with_wildcards():
    frame = select_secondary("12345678")
    assert frame == long_frame(0x52, "78 56 34 12 ff ff ff ff", control=0x53, address=0xFD)
    full = select_secondary("0499025F", manufacturer="EFE", version=0, medium=6)
    assert full == long_frame(0x52, "5f 02 99 04 c5 14 00 06", control=0x53, address=0xFD)
    assert parse_frame(full).data == bytes.fromhex("5f 02 99 04 c5 14 00 06")


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"secondary_id": "1234567"}, "8 digits"),
        ({"secondary_id": "1234567A"}, "8 digits"),
        ({"secondary_id": "12345678", "manufacturer": "E1E"}, "three letters"),
        ({"secondary_id": "12345678", "medium": 256}, "medium"),
    ],
)
def test_secondary_select_refuses_bad_fields(kwargs, text):
    with pytest.raises(ValueError, match=text):
        select_secondary(**kwargs)


# --- real meters (libmbus test frames; expected values from libmbus's normalised XML) -------------------------


def test_engelmann_waterstar():
    answer = decode_response(real_frame("EFE_Engelmann-WaterStar"))
    header = answer.header
    assert (header.id, header.manufacturer, header.version, header.medium) == ("04990254", "EFE", 0, "warm_water")
    assert (header.access_no, header.status, header.signature) == (12, 0x27, 0)
    got = [fields(r) for r in answer.records]
    assert got[:10] == [
        ("fabrication_no", 4990254, "", "instantaneous", 0, 0, 0),
        ("datetime", "2014-03-13T12:10:00", "", "instantaneous", 0, 0, 0),
        ("volume", 0.332, "m3", "instantaneous", 0, 0, 0),
        ("volume", 0.331, "m3", "instantaneous", 1, 0, 0),
        ("volume", 0.332, "m3", "instantaneous", 2, 0, 0),
        ("date", "2013-12-31", "", "instantaneous", 1, 0, 0),
        ("date", "2014-12-31", "", "instantaneous", 0, 0, 0),
        ("volume_flow", 0.0, "m3/h", "instantaneous", 0, 0, 0),
        ("volume_flow", 2.07, "m3/h", "maximum", 0, 0, 0),
        ("on_time", 1191, "d", "instantaneous", 0, 0, 0),  # libmbus: 102902400 s
    ]
    assert got[10] == ("error_flags", 0, "", "instantaneous", 0, 0, 0)
    # Volume with VIFE 0x28 (increment per input pulse): flagged, so it is not mistaken for the meter reading.
    assert (answer.records[11].quantity, answer.records[11].vife) == ("volume", (0x28,))
    assert len(answer.records) == 12


def test_elster_f96_plus_heat_meter_with_tariffs_and_invalid_bcd():
    answer = decode_response(real_frame("ELS_Elster-F96-Plus"))
    assert (answer.header.id, answer.header.manufacturer, answer.header.version) == ("44493951", "ELS", 47)
    assert (answer.header.medium, answer.header.access_no, answer.header.status) == ("heat_outlet", 161, 0x70)
    assert [fields(r) for r in answer.records] == [
        ("energy", 0, "Wh", "instantaneous", 0, 0, 0),
        ("energy", 0, "Wh", "instantaneous", 0, 1, 0),
        ("volume", 0.0, "m3", "instantaneous", 0, 2, 0),
        ("volume", 0.0, "m3", "instantaneous", 0, 0, 0),
        ("power", None, "W", "error", 0, 0, 0),  # BCD "DDDDEBBD": libmbus prints 13131113
        ("volume_flow", None, "m3/h", "error", 0, 0, 0),  # BCD "DDEBBD": libmbus prints 131.113
        ("flow_temperature", 22.7, "degC", "instantaneous", 0, 0, 0),
        ("return_temperature", 22.6, "degC", "instantaneous", 0, 0, 0),
        ("temperature_difference", 0.1, "K", "instantaneous", 0, 0, 0),
        ("operating_time", 730, "d", "instantaneous", 0, 0, 0),  # libmbus: 63072000 s
        ("datetime", "2014-03-13T13:09:00", "", "instantaneous", 0, 0, 0),
        ("energy", 0, "Wh", "instantaneous", 1, 0, 0),
        ("volume", 0.0, "m3", "instantaneous", 1, 0, 0),
        ("energy", 0, "Wh", "instantaneous", 1, 1, 0),
        ("volume", 0.0, "m3", "instantaneous", 1, 2, 0),
        ("date", "2013-05-31", "", "instantaneous", 1, 0, 0),
    ]


def test_itron_cyble_plain_text_manufacturer_vife_and_manufacturer_data():
    answer = decode_response(real_frame("ACW_Itron-CYBLE-M-Bus-14"))
    assert (answer.header.id, answer.header.manufacturer, answer.header.version) == ("09011523", "ACW", 20)
    assert (answer.header.medium, answer.header.access_no, answer.header.status) == ("water", 37, 0)
    assert [fields(r) for r in answer.records] == [
        ("fabrication_no", 9011523, "", "instantaneous", 0, 0, 0),
        ("plain_text", "09LA076755", "cust. ID", "instantaneous", 0, 0, 0),
        ("datetime", "2014-03-13T14:26:00", "", "instantaneous", 0, 0, 0),
        ("plain_text", 2516, "bat. time", "instantaneous", 0, 0, 0),
        ("volume", 0.031, "m3", "instantaneous", 0, 0, 0),
        # libmbus shows this record (VIF 0x93, VIFE 0x7F) as a volume of 0; its meaning is the maker's.
        ("manufacturer_specific", "00000000", "", "instantaneous", 0, 0, 0),
        ("volume", 0.031, "m3", "instantaneous", 1, 0, 0),
    ]
    assert answer.manufacturer_data == bytes.fromhex("00 01 1f")
    assert answer.more_records_follow is False


def test_gwf_mtkcoder_water_meter():
    answer = decode_response(real_frame("GWF-MTKcoder"))
    assert (answer.header.id, answer.header.manufacturer, answer.header.version) == ("00182007", "GWF", 53)
    assert (answer.address, answer.header.medium, answer.header.access_no) == (1, "water", 76)
    assert [fields(r) for r in answer.records] == [
        ("fabrication_no", 182007, "", "instantaneous", 0, 0, 0),
        ("volume", 269, "m3", "instantaneous", 0, 0, 0),
    ]


# --- hand-built records, from the EN 13757-3 DIF/DIFE/VIF tables ------------------------------------------------


@pytest.mark.parametrize(
    ("record_hex", "value"),
    [
        ("00 13", None),  # no data
        ("08 13", None),  # selection for readout
        ("01 13 fb", -0.005),  # int8, two's complement
        ("02 13 18 fc", -1.0),  # int16 0xFC18 = -1000
        ("03 13 40 e2 01", 123.456),  # int24
        ("04 13 ff ff ff 7f", 2147483.647),  # int32 maximum
        ("06 13 01 00 00 00 00 01", 1099511627.777),  # int48
        ("07 13 00 00 00 00 00 00 00 80", -(2**63) / 1000),  # int64 minimum
        ("05 13 " + struct.pack("<f", 1.5).hex(), 0.0015),  # real32
        ("09 13 99", 0.099),  # BCD 2
        ("0a 13 34 12", 1.234),  # BCD 4
        ("0b 13 56 34 f2", -23.456),  # BCD 6, leading F nibble = negative
        ("0c 13 78 56 34 12", 12345.678),  # BCD 8
        ("0e 13 12 90 78 56 34 12", 123456789.012),  # BCD 12
        ("0c 13 7a 56 34 12", None),  # BCD with a non-decimal digit
        ("0d 13 c2 34 12", 1.234),  # variable length, positive BCD
        ("0d 13 d2 34 12", -1.234),  # variable length, negative BCD
        ("0d 13 e2 18 fc", -1.0),  # variable length, 2-byte binary
        ("0d 13 f0 01" + " 00" * 15, 0.001),  # variable length, 16-byte binary
    ],
)
def test_data_field_codings(record_hex, value):
    record = one(record_hex)
    assert record.quantity == "volume"
    assert record.unit == "m3"
    assert record.value == value


def test_variable_length_text_is_sent_reversed():
    assert one("0d fd 0e 05 33 2e 31 2e 32").value == "2.1.3"
    assert one("0d fd 0e 05 33 2e 31 2e 32").quantity == "firmware_version"


@pytest.mark.parametrize(
    ("record_hex", "quantity", "value", "unit"),
    [
        ("04 03 e8 03 00 00", "energy", 1000, "Wh"),
        ("04 06 e8 03 00 00", "energy", 1000000, "Wh"),
        ("04 0e 01 00 00 00", "energy", 1000000, "J"),
        ("04 16 01 00 00 00", "volume", 1, "m3"),
        ("04 1b 05 00 00 00", "mass", 5, "kg"),
        ("04 20 10 00 00 00", "on_time", 16, "s"),
        ("04 22 10 00 00 00", "on_time", 16, "h"),
        ("04 25 10 00 00 00", "operating_time", 16, "min"),
        ("04 2d 07 00 00 00", "power", 700, "W"),
        ("04 3c 07 00 00 00", "volume_flow", 0.07, "m3/h"),
        ("02 5a 63 01", "flow_temperature", 35.5, "degC"),
        ("02 5e 2c 01", "return_temperature", 30.0, "degC"),
        ("02 61 2c 01", "temperature_difference", 3.0, "K"),
        ("02 65 0c fe", "external_temperature", -5.0, "degC"),
        ("02 68 c4 09", "pressure", 2.5, "bar"),
        ("01 7a 05", "bus_address", 5, ""),
        ("0c 78 78 56 34 12", "fabrication_no", 12345678, ""),
        ("02 fd 17 04 00", "error_flags", 4, ""),
        ("04 fb 01 0c 00 00 00", "energy", 12, "MWh"),
        ("02 fb 1a 5c 02", "relative_humidity", 60.4, "%RH"),
        ("02 fd 48 e6 00", "voltage", 23.0, "V"),
    ],
)
def test_value_information(record_hex, quantity, value, unit):
    record = one(record_hex)
    assert (record.quantity, record.unit) == (quantity, unit)
    assert record.value == pytest.approx(value, rel=1e-12)


def test_dates_and_invalid_date_times():
    assert one("02 6c 21 21").value == "2017-01-01"  # type G, day 1, month 1, year 17 split 3+4 bits
    assert one("04 6d 3b 17 9f 2c").value == "2020-12-31T23:59:00"  # type F
    assert one("04 6d bb 17 9f 2c").value is None  # IV bit set: the meter says the time is invalid
    assert one("02 6c 00 00").value is None
    assert one("05 6d 3b 17 9f 2c").value is None  # real32-coded: not a type F date-time


def test_function_field_and_dife_chain():
    assert [r.function for r in records("04 13 01 00 00 00 14 13 01 00 00 00 24 13 01 00 00 00 34 13 01 00 00 00")] == [
        "instantaneous",
        "maximum",
        "minimum",
        "error",
    ]
    # DIF storage LSB 1; DIFE 1: storage 3, tariff 1, subunit 1; DIFE 2: storage 2, subunit 1.
    record = one("c4 d3 42 13 01 00 00 00")
    assert (record.storage, record.tariff, record.subunit) == (1 + (3 << 1) + (2 << 5), 1, 1 + (1 << 1))


def test_nothing_is_parsed_after_manufacturer_data():
    answer = decode_response(long_frame(0x72, HEADER + " 04 13 01 00 00 00 0f 04 13 02 00 00 00"))
    assert [r.value for r in answer.records] == [0.001]
    assert answer.manufacturer_data == bytes.fromhex("04 13 02 00 00 00")
    assert answer.more_records_follow is False
    more = decode_response(long_frame(0x72, HEADER + " 2f 2f 04 13 01 00 00 00 1f"))
    assert ([r.value for r in more.records], more.manufacturer_data, more.more_records_follow) == ([0.001], b"", True)


def test_manufacturer_specific_vif_is_never_read_as_a_quantity():
    assert fields(one("02 7f 34 12")) == ("manufacturer_specific", "1234", "", "instantaneous", 0, 0, 0)
    extended = one("02 ff 01 34 12")
    assert (extended.quantity, extended.value, extended.vife) == ("manufacturer_specific", "1234", (1,))


def test_ci_0x76_sends_every_multi_byte_field_msb_first():
    # Hand-built: the HEADER frame and two records of a CI 0x72 answer, each multi-byte field byte-reversed.
    mode1 = decode_response(long_frame(0x72, HEADER + " 04 13 01 02 00 00 02 6c bf 1c"))
    mode2 = decode_response(long_frame(0x76, "12 34 56 78 14 c5 01 07 2a 00 00 00 04 13 00 00 02 01 02 6c 1c bf"))
    assert mode2.header == mode1.header
    assert [fields(r) for r in mode2.records] == [fields(r) for r in mode1.records]
    assert [r.value for r in mode2.records] == [0.513, "2013-12-31"]


def test_ci_0x78_has_no_fixed_header():
    answer = decode_response(long_frame(0x78, "04 13 01 00 00 00"))
    assert answer.header is None
    assert [r.value for r in answer.records] == [0.001]


@pytest.mark.parametrize(
    ("frame", "offset", "text"),
    [
        (long_frame(0x51, HEADER), 6, "CI 0x51"),
        (long_frame(0x72, "78 56 34 12 c5 14"), 13, "fixed header"),
        (long_frame(0x72, "7a 56 34 12" + HEADER[11:]), 7, "not BCD"),
        (long_frame(0x72, HEADER + " 04 13 01 00"), 23, "truncated"),
        (long_frame(0x72, HEADER + " 84"), 20, "DIFE missing"),
        (long_frame(0x72, HEADER + " 0d 13 f5 00"), 21, "LVAR 0xF5"),
        (long_frame(0x72, HEADER + " 84 80 80 80 80 80 80 80 80 80 80 00 13"), 30, "more than 10 DIFEs"),
        (bytes.fromhex("10 5b 01 5c 16"), 0, "short frame"),
    ],
)
def test_bad_user_data_raises_frame_error_with_offset(frame, offset, text):
    with pytest.raises(FrameError, match=text) as caught:
        decode_response(frame)
    assert caught.value.offset == offset


# --- robustness ------------------------------------------------------------------------------------------------


def _refit(frame: bytearray) -> bytes:
    """Give a mutated long frame a consistent length and checksum, so the record decoder sees the damage."""
    body = bytes(frame[4:-2])[:255]
    return bytes([0x68, len(body), len(body), 0x68]) + body + bytes([sum8(body), 0x16])


def test_mutated_and_random_frames_raise_only_frame_error():
    rng = random.Random(13757)
    seeds = [real_frame(name) for name in REAL_FRAMES]
    outcomes = {"decoded": 0, "frame_error": 0}
    for _ in range(4000):
        frame = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(frame))
            action = rng.random()
            if action < 0.6:
                frame[at] = rng.randrange(256)
            elif action < 0.8:
                del frame[at]
            else:
                frame.insert(at, rng.randrange(256))
        candidates = [bytes(frame)]
        if len(frame) > 9 and frame[0] == 0x68:
            candidates.append(_refit(frame))
        candidates.append(bytes(rng.randrange(256) for _ in range(rng.randint(0, 40))))
        for candidate in candidates:
            try:
                assert isinstance(decode_response(candidate), Response)
                outcomes["decoded"] += 1
            except FrameError as error:
                assert error.offset is None or 0 <= error.offset <= len(candidate)
                outcomes["frame_error"] += 1
    # Both paths must really have been taken, or the fuzzing proved nothing.
    assert outcomes["decoded"] > 500
    assert outcomes["frame_error"] > 500


@pytest.mark.parametrize("module", [drivers.codecs.mbus, drivers.codecs.mbus_link, drivers.codecs.mbus_vif])
def test_documentation_examples_hold(module):
    results = doctest.testmod(module)
    assert results.attempted > 0
    assert results.failed == 0
