"""Property-based fuzzing of every decoder: whatever arrives on the wire, a codec answers with a value or a
``FrameError`` (or its protocol's ``DeviceFault`` for a well-formed error reply) — never another exception,
never a hang, never JSON that a broker's consumer cannot parse.

Frames are generated three ways: random bytes (the framing checks), frames built here field by field with a
correct length and checksum (so the damage reaches the record parser), and real published frames mutated,
truncated or extended with their length and checksum recomputed. Where the generator knows the truth (records
it encoded itself, an encoder round trip), the decoded fields are compared with it.

Runs are derandomized (the examples follow from each test's name) and keep no example database, so CI and
parallel workers see the same, repeatable examples; see docs/decisions/0004-hypothesis.md.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from drivers.codecs import cjt188, mbus, mbus_link, modbus
from drivers.codecs.cjt188 import CJT188Fault
from drivers.codecs.mbus import MBusApplicationError
from drivers.codecs.modbus import ModbusException
from drivers.errors import FrameError
from edge.decode import BadFrame, decode
from tests.fuzz_helpers import mutate, mutations

DATA = Path(__file__).parent / "data"
MBUS_FRAMES = [bytes.fromhex(path.read_text()) for path in sorted((DATA / "mbus").glob("*.hex"))]
CJT188_FRAMES = [bytes.fromhex(path.read_text()) for path in sorted((DATA / "cjt188").glob("*.hex"))]

#: Multiplies every test's example count: 1 in CI (a few seconds); a deep run sets e.g. LINLI_FUZZ_SCALE=20.
SCALE = float(os.environ.get("LINLI_FUZZ_SCALE", "1"))

pytestmark = pytest.mark.timeout(60 * max(SCALE, 1))


def fuzz(examples: int):
    """Repeatable, file-free hypothesis settings: a hang is caught by pytest-timeout, not a per-example deadline."""
    return settings(max_examples=max(1, round(examples * SCALE)), derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def json_clean(value) -> None:
    """What a decoder returns must survive strict JSON: no NaN or infinity, no bytes."""
    json.dumps(value, allow_nan=False)


#: (what, where, byte): set, delete or insert one byte, cut the frame short, or append a few bytes.
MUTATIONS = mutations(max_position=299, max_count=4)


# --- M-Bus ---------------------------------------------------------------------------------------------------------


def mbus_long(control: int, address: int, ci: int, user_data: bytes) -> bytes:
    """A long frame with length and checksum computed here, so every decoded byte is the generator's choice."""
    body = bytes([control, address, ci]) + user_data
    return bytes([0x68, len(body), len(body), 0x68]) + body + bytes([sum(body) % 256, 0x16])


def refit_mbus(frame: bytes) -> bytes:
    """A mutated long frame given a consistent length and checksum again."""
    if len(frame) < 9 or frame[0] != 0x68:
        return frame
    return mbus_long(frame[4], frame[5], frame[6], frame[7:-2][:252])


def check_mbus(frame: bytes) -> mbus.Response | None:
    try:
        response = mbus.decode_response(frame)
    except FrameError as error:
        assert error.offset is None or 0 <= error.offset <= len(frame)
        return None
    except MBusApplicationError as error:
        assert frame[6] == mbus.CI_APPLICATION_ERROR and error.code in (None, *range(256))
        return None
    for record in response.records:
        assert isinstance(record.quantity, str) and record.quantity
        assert record.function in mbus.FUNCTIONS
        assert min(record.storage, record.tariff, record.subunit) >= 0
        assert 0 <= record.offset < len(frame)
        assert not (isinstance(record.value, float) and not math.isfinite(record.value))
        json_clean(record.value)
    return response


@fuzz(200)
@given(st.binary(max_size=300))
def test_mbus_random_bytes(frame):
    try:
        mbus_link.parse_frame(frame)
    except FrameError as error:
        assert 0 <= error.offset <= len(frame)
    check_mbus(frame)


@fuzz(200)
@given(ci=st.sampled_from([0x72, 0x76, 0x78, 0x7A, 0x73, 0x70]) | st.integers(0, 255),
       user_data=st.binary(max_size=252))
def test_mbus_random_user_data_in_a_valid_long_frame(ci, user_data):
    check_mbus(mbus_long(0x08, 1, ci, user_data))


@fuzz(200)
@given(seed=st.sampled_from(MBUS_FRAMES), mutations=MUTATIONS)
def test_mbus_mutated_real_frames(seed, mutations):
    mutated = mutate(seed, mutations)
    check_mbus(mutated)
    check_mbus(refit_mbus(mutated))


# Records built from the EN 13757-3 field tables, by a generator that knows what it wrote.
_FIXED_SIZES = {0x0: 0, 0x1: 1, 0x2: 2, 0x3: 3, 0x4: 4, 0x5: 4, 0x6: 6, 0x7: 8, 0x8: 0, 0x9: 1, 0xA: 2, 0xB: 3,
                0xC: 4, 0xE: 6}


@st.composite
def mbus_record(draw):
    """(bytes, storage, tariff, subunit, function, vifes) of one well-formed data record."""
    field = draw(st.sampled_from(sorted(_FIXED_SIZES) + [0x0D]))
    function = draw(st.integers(0, 3))
    storage = draw(st.integers(0, 1))
    tariff = subunit = 0
    difes = draw(st.lists(st.tuples(st.integers(0, 15), st.integers(0, 3), st.integers(0, 1)), max_size=3))
    encoded = bytearray([(0x80 if difes else 0) | storage << 6 | function << 4 | field])
    for index, (s, t, u) in enumerate(difes):
        more = 0x80 if index < len(difes) - 1 else 0
        encoded.append(more | u << 6 | t << 4 | s)
        storage |= s << (1 + 4 * index)
        tariff |= t << (2 * index)
        subunit |= u << index
    vifes = draw(st.lists(st.integers(0, 0x7F), max_size=3))
    kind = draw(st.sampled_from(["primary", "fd", "fb", "text", "maker"]))
    extension = 0x80 if vifes else 0
    if kind == "primary":
        encoded.append(extension | draw(st.integers(0, 0x7F).filter(lambda v: v not in (0x7B, 0x7C, 0x7D))))
    elif kind in ("fd", "fb"):
        encoded += bytes([0xFD if kind == "fd" else 0xFB, extension | draw(st.integers(0, 0x7F))])
    elif kind == "text":
        text = draw(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=6))
        encoded += bytes([extension | 0x7C, len(text)]) + text.encode()[::-1]
    else:
        encoded.append(extension | 0x7F)
    for index, code in enumerate(vifes):
        encoded.append((0x80 if index < len(vifes) - 1 else 0) | code)
    if field == 0x0D:
        kind_of_lvar = draw(st.sampled_from(["text", "bcd", "binary"]))
        if kind_of_lvar == "text":
            size = draw(st.integers(0, 12))
            encoded += bytes([size]) + draw(st.binary(min_size=size, max_size=size))
        elif kind_of_lvar == "bcd":
            size = draw(st.integers(0, 9))
            encoded += bytes([draw(st.sampled_from([0xC0, 0xD0])) + size]) + draw(st.binary(min_size=size,
                                                                                         max_size=size))
        else:
            lvar = draw(st.sampled_from([*range(0xE0, 0xF0), *range(0xF0, 0xF5)]))
            size = lvar - 0xE0 if lvar < 0xF0 else 4 * (lvar - 0xEC)
            encoded += bytes([lvar]) + draw(st.binary(min_size=size, max_size=size))
    elif field == 0x5:  # real32: the float strategy brings NaN, infinities and subnormals that random bytes rarely do
        real = st.floats(width=32).map(lambda number: struct.pack("<f", number))
        encoded += draw(real | st.binary(min_size=4, max_size=4))
    else:
        size = _FIXED_SIZES[field]
        encoded += draw(st.binary(min_size=size, max_size=size))
    return bytes(encoded), storage, tariff, subunit, mbus.FUNCTIONS[function], tuple(vifes), kind


@fuzz(75)
@given(st.lists(mbus_record(), min_size=1, max_size=8), st.sampled_from([0x72, 0x78]))
def test_mbus_generated_records_decode_to_what_was_encoded(generated, ci):
    header = bytes.fromhex("78 56 34 12 c5 14 01 07 2a 00 00 00") if ci == 0x72 else b""
    user_data = header + b"".join(record[0] for record in generated)
    assume(len(user_data) <= 252)
    response = check_mbus(mbus_long(0x08, 1, ci, user_data))
    assert response is not None, "a well-formed record was refused"
    assert len(response.records) == len(generated)
    for record, (_, storage, tariff, subunit, function, vifes, kind) in zip(response.records, generated, strict=True):
        assert (record.storage, record.tariff, record.subunit, record.function) == (storage, tariff, subunit, function)
        assert record.vife == vifes
        if kind == "maker" or vifes[:1] == (0x7F,):
            assert record.quantity == "manufacturer_specific"


# A targeted strategy per risky field beats more examples: random bytes are NaN or infinite once in 256 draws,
# and only when a random DIF also says real32; here every example is a real32, and the float strategy tries
# NaN and the infinities first.
@fuzz(150)
@given(number=st.floats(width=32), vif=st.integers(0, 0x7F).filter(lambda v: v not in (0x7C, 0x7D)))
def test_mbus_real32_is_a_finite_number_or_none(number, vif):
    header = bytes.fromhex("78 56 34 12 c5 14 01 07 2a 00 00 00")
    response = check_mbus(mbus_long(0x08, 1, 0x72, header + bytes([0x05, vif]) + struct.pack("<f", number)))
    (record,) = response.records
    if vif == 0x16 and math.isfinite(number):  # volume in m3, exponent 0: the number as the meter meant it
        assert record.value == pytest.approx(number, rel=1e-6)
    if not math.isfinite(number):
        assert record.value is None or record.quantity in ("date", "datetime")


@fuzz(50)
@given(address=st.integers(0, 250), fcb=st.booleans(), secondary=st.text("0123456789F", min_size=8, max_size=8))
def test_mbus_requests_round_trip_through_the_link_parser(address, fcb, secondary):
    for frame in (mbus_link.snd_nke(address), mbus_link.req_ud2(address, fcb)):
        parsed = mbus_link.parse_frame(frame)
        assert (parsed.kind, parsed.address) == ("short", address)
    parsed = mbus_link.parse_frame(mbus_link.select_secondary(secondary))
    assert (parsed.ci, parsed.data[3::-1].hex().upper()) == (mbus_link.CI_SELECT_SECONDARY, secondary)


# --- CJ/T 188 ------------------------------------------------------------------------------------------------------


def cjt188_frame(meter_type: int, address: bytes, control: int, data: bytes, preamble: int = 0) -> bytes:
    """A frame put together here: 68 T A0..A6 C L DATA CS 16, checksum from the 68."""
    body = bytes([0x68, meter_type]) + address + bytes([control, len(data)]) + data
    return b"\xfe" * preamble + body + bytes([sum(body) % 256, 0x16])


def refit_cjt188(frame: bytes) -> bytes:
    start = 0
    while start < len(frame) and frame[start] == 0xFE:
        start += 1
    body = frame[start:-2]
    if len(body) < 11 or body[0] != 0x68:
        return frame
    return cjt188_frame(body[1], body[2:9], body[9], body[11:][:255], min(start, 4))


def check_cjt188(frame: bytes) -> None:
    for decoder in (cjt188.parse_frame, cjt188.decode_read_data_reply, cjt188.decode_read_address_reply):
        try:
            result = decoder(frame)
        except FrameError as error:
            assert error.offset is None or 0 <= error.offset <= len(frame)
            continue
        except CJT188Fault as fault:
            assert fault.control & cjt188.ERROR_BIT
            continue
        if decoder is cjt188.decode_read_data_reply:
            assert result.volume is not None and math.isfinite(result.volume)
            assert result.clock is None or len(result.clock) == 19


@fuzz(200)
@given(st.binary(max_size=80))
def test_cjt188_random_bytes(frame):
    check_cjt188(frame)


@fuzz(150)
@given(meter_type=st.integers(0, 255), address=st.binary(min_size=7, max_size=7), control=st.integers(0, 255),
       data=st.binary(max_size=40), preamble=st.integers(0, 4))
def test_cjt188_random_contents_in_a_valid_frame(meter_type, address, control, data, preamble):
    check_cjt188(cjt188_frame(meter_type, address, control, data, preamble))


def bcd(digits: str) -> bytes:
    return bytes.fromhex(digits)[::-1]


@fuzz(100)
@given(address=st.text("0123456789", min_size=14, max_size=14), preamble=st.integers(0, 4),
       di_order=st.sampled_from(["2004", "2018"]),
       volume=st.integers(0, 99_999_999), settlement=st.integers(0, 99_999_999),
       unit=st.sampled_from(sorted(cjt188.UNITS)) | st.integers(0, 255), clock=st.binary(min_size=7, max_size=7),
       st0=st.integers(0, 255), st1=st.integers(0, 255), ser=st.integers(0, 255))
def test_cjt188_generated_901f_replies_decode_to_what_was_encoded(address, preamble, di_order, volume, settlement,
                                                                  unit, clock, st0, st1, ser):
    payload = (cjt188.di_bytes(cjt188.DI_READ_DATA, di_order) + bytes([ser]) + bcd(f"{volume:08d}") + bytes([unit])
               + bcd(f"{settlement:08d}") + bytes([0x2C]) + clock + bytes([st0, st1]))
    frame = cjt188_frame(0x10, bytes.fromhex(address)[::-1], 0x81, payload, preamble)
    if unit not in cjt188.UNITS:
        with pytest.raises(FrameError, match="unknown unit code"):
            cjt188.decode_read_data_reply(frame)
        return
    reading = cjt188.decode_read_data_reply(frame, address=address, di_order=di_order, ser=ser)
    assert (reading.address, reading.di_order, reading.ser) == (address, di_order, ser)
    assert (reading.volume, reading.settlement_volume) == (volume / 100, settlement / 100)
    assert reading.volume_unit == cjt188.UNITS[unit].symbol
    assert (reading.status.st0, reading.status.st1) == (st0, st1)
    assert reading.clock == cjt188.meter_clock(clock)


@fuzz(200)
@given(seed=st.sampled_from(CJT188_FRAMES), mutations=MUTATIONS)
def test_cjt188_mutated_published_frames(seed, mutations):
    mutated = mutate(seed, mutations)
    check_cjt188(mutated)
    check_cjt188(refit_cjt188(mutated))


@fuzz(100)
@given(meter_type=st.integers(0, 255), address=st.text("0123456789", min_size=14, max_size=14),
       control=st.integers(0, 255), data=st.binary(max_size=255), preamble=st.integers(0, 4))
def test_cjt188_build_frame_round_trips_through_parse_frame(meter_type, address, control, data, preamble):
    frame = cjt188.build_frame(meter_type, address, control, data, preamble)
    assert frame == cjt188_frame(meter_type, bytes.fromhex(address)[::-1], control, data, preamble)
    assert cjt188.parse_frame(frame) == cjt188.Frame(meter_type, address, control, data, start=preamble)


@fuzz(50)
@given(address=st.text("0123456789", min_size=14, max_size=14), ser=st.integers(0, 255),
       di_order=st.sampled_from(["2004", "2018"]), preamble=st.integers(0, 4))
def test_cjt188_requests_round_trip(address, ser, di_order, preamble):
    parsed = cjt188.parse_frame(cjt188.read_data_request(address, ser=ser, di_order=di_order, preamble=preamble))
    assert (parsed.address, parsed.control, parsed.start) == (address, cjt188.READ_DATA, preamble)
    assert cjt188.detect_di_order(parsed.data, cjt188.DI_READ_DATA) == di_order and parsed.data[2] == ser


# --- Modbus RTU ----------------------------------------------------------------------------------------------------


def crc16(data: bytes) -> bytes:
    """CRC-16/MODBUS from the specification, independent of pymodbus."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc.to_bytes(2, "little")


def check_modbus(frame: bytes, unit: int, function: int, count: int) -> list[int] | None:
    try:
        return modbus.decode_registers_response(frame, unit, function, count)
    except FrameError as error:
        assert error.offset is None or 0 <= error.offset <= len(frame)
    except ModbusException as fault:
        assert len(frame) == 5 and frame[1] == function | 0x80 and fault.code == frame[2]
    return None


@fuzz(200)
@given(frame=st.binary(max_size=260), unit=st.integers(1, 247), function=st.sampled_from([3, 4]),
       count=st.integers(1, 125))
def test_modbus_random_bytes(frame, unit, function, count):
    check_modbus(frame, unit, function, count)


@fuzz(100)
@given(unit=st.integers(1, 247), function=st.sampled_from([3, 4]),
       registers=st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=125))
def test_modbus_answers_built_here_decode_to_their_registers(unit, function, registers):
    body = bytes([unit, function, 2 * len(registers)]) + b"".join(r.to_bytes(2, "big") for r in registers)
    assert modbus.decode_registers_response(body + crc16(body), unit, function, len(registers)) == registers


@fuzz(150)
@given(unit=st.integers(1, 247), function=st.sampled_from([3, 4]),
       registers=st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=20), mutations=MUTATIONS)
def test_modbus_mutated_answers_with_the_crc_recomputed(unit, function, registers, mutations):
    body = bytes([unit, function, 2 * len(registers)]) + b"".join(r.to_bytes(2, "big") for r in registers)
    mutated = mutate(body, mutations)
    check_modbus(mutated + crc16(mutated), unit, function, len(registers))
    check_modbus(mutate(body + crc16(body), mutations), unit, function, len(registers))


@fuzz(50)
@given(unit=st.integers(1, 247), function=st.sampled_from([3, 4]), code=st.integers(0, 255))
def test_modbus_exception_answers_are_device_faults(unit, function, code):
    body = bytes([unit, function | 0x80, code])
    with pytest.raises(ModbusException) as caught:
        modbus.decode_registers_response(body + crc16(body), unit, function, 1)
    assert caught.value.code == code and str(caught.value)


# --- linli decode ----------------------------------------------------------------------------------------------------


def check_cli(protocol: str, frame: bytes) -> None:
    try:
        json_clean(decode(protocol, frame.hex(" ")))
    except BadFrame as error:
        assert str(error) and (error.offset is None or 0 <= error.offset <= len(frame))


@fuzz(200)
@given(protocol=st.sampled_from(["mbus", "cjt188", "modbus"]), frame=st.binary(min_size=1, max_size=120))
def test_decode_cli_random_bytes(protocol, frame):
    check_cli(protocol, frame)


@fuzz(150)
@given(protocol=st.sampled_from(["mbus", "cjt188"]), which=st.integers(0, 999), mutations=MUTATIONS)
def test_decode_cli_mutated_real_frames(protocol, which, mutations):
    seeds = MBUS_FRAMES if protocol == "mbus" else CJT188_FRAMES
    mutated = mutate(seeds[which % len(seeds)], mutations)
    refit = refit_mbus(mutated) if protocol == "mbus" else refit_cjt188(mutated)
    for frame in (mutated, refit):
        if frame:
            check_cli(protocol, frame)


@fuzz(200)
@given(unit=st.integers(0, 255), function=st.sampled_from([3, 4, 0x83, 0x84]) | st.integers(0, 255),
       words=st.lists(st.integers(0, 0xFFFF), min_size=2, max_size=2), good_crc=st.booleans())
def test_decode_cli_modbus_requests(unit, function, words, good_crc):
    # Eight bytes are a read request to a sniffer: every unit, address and count, with a right or wrong CRC.
    body = bytes([unit, function]) + b"".join(word.to_bytes(2, "big") for word in words)
    check_cli("modbus", body + (crc16(body) if good_crc else b"\x00\x00"))


@fuzz(50)
@given(text=st.text(max_size=60))
def test_decode_cli_random_text(text):
    for protocol in ("mbus", "cjt188", "modbus"):
        try:
            json_clean(decode(protocol, text))
        except BadFrame as error:
            assert str(error)


@pytest.mark.parametrize("protocol, frames", [("mbus", MBUS_FRAMES), ("cjt188", CJT188_FRAMES)])
def test_every_stored_frame_gives_clean_json_or_a_bad_frame(protocol, frames):
    decoded = 0
    for frame in frames:
        try:
            json_clean(decode(protocol, frame.hex()))
            decoded += 1
        except BadFrame:
            pass
    assert decoded >= len(frames) - 4  # the few malformed frames kept on purpose
