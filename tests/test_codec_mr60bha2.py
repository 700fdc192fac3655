"""MR60BHA2 tiny frames: inverted-XOR header and data checksums, little-endian floats, real captured frames,
and the stream parser's resynchronisation."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from drivers.codecs.mr60bha2 import (
    MAX_FRAME_LENGTH,
    StreamParser,
    Value,
    build_frame,
    checksum,
    float32,
    parse_frame,
    parse_frames,
    values,
)
from drivers.errors import FrameError

CAPTURE = Path(__file__).parent / "data" / "radar" / "mr60bha2_esphome_issue3.txt"


def captured() -> list[bytes]:
    return [bytes.fromhex(line.replace(".", "")) for line in CAPTURE.read_text().splitlines()]


def test_the_published_frames_check_out_and_decode_as_nobody_in_range():
    frames = captured()
    assert len(frames) == 16
    parsed = [parse_frame(raw) for raw in frames]
    assert [build_frame(f.type, f.data, f.frame_id) for f in parsed] == frames
    assert parsed[8].frame_id == 0x6975 and parsed[8].type == 0x0A15
    kinds = {v.kind: v for f in parsed for v in values(f)}
    assert kinds == {"heart_rate": Value("heart_rate", 0.0, "bpm"),
                     "breathing_rate": Value("breathing_rate", 0.0, "1/min"),
                     "distance": Value("distance", None, "cm")}  # old firmware: range flag 0, no float


def test_the_stream_of_published_frames_parses_without_a_bad_byte():
    parser = StreamParser()
    assert len(parser.feed(b"".join(captured()))) == 16
    assert (parser.bad_checksum, parser.skipped, len(parser.pending)) == (0, 0, 0)


def test_checksums_are_the_inverted_xor_over_header_and_over_data():
    assert checksum(bytes.fromhex("01 69 75 00 04 0A 15")) == 0xF9
    assert checksum(b"") == 0xFF
    frame = build_frame(0x0A14, struct.pack("<f", 16.5))
    assert frame[7] == ~(0x01 ^ 0x00 ^ 0x00 ^ 0x00 ^ 0x04 ^ 0x0A ^ 0x14) & 0xFF
    assert frame[-1] == ~(frame[8] ^ frame[9] ^ frame[10] ^ frame[11]) & 0xFF


@pytest.mark.parametrize("frame_type, data, expected", [
    (0x0A15, struct.pack("<f", 72.3), Value("heart_rate", 72.3, "bpm")),
    (0x0A14, struct.pack("<f", 14.5), Value("breathing_rate", 14.5, "1/min")),
    (0x0A16, struct.pack("<If", 1, 123.4), Value("distance", 123.4, "cm")),
    (0x0A16, struct.pack("<If", 0, 123.4), Value("distance", None, "cm")),   # range flag 0: no target
    (0x0F09, struct.pack("<I", 1), Value("presence", True, None)),
    (0x0F09, b"\x00", Value("presence", False, None)),
    (0x0F09, b"\x00\x01", Value("presence", True, None)),                      # a flag in the second byte
    (0x0A15, bytes.fromhex("0000c07f"), Value("heart_rate", None, "bpm")),     # NaN is no measurement
])
def test_values(frame_type, data, expected):
    assert values(parse_frame(build_frame(frame_type, data, 7))) == [expected]


def test_little_endian_is_honoured():
    # 89.0 as float32 is 42 B2 00 00 big-endian; the wire carries it little-endian.
    assert float32(bytes.fromhex("0000b242")) == 89.0
    assert float32(bytes.fromhex("42b20000")) != 89.0


def test_other_types_are_valid_frames_without_a_value():
    assert values(parse_frame(build_frame(0x0A13, struct.pack("<3f", 0.1, 0.2, 0.3)))) == []
    with pytest.raises(FrameError, match="heart rate carries at least 4 data bytes, got 2"):
        values(parse_frame(build_frame(0x0A15, b"\x00\x00")))


@pytest.mark.parametrize("text, offset, words", [
    ("01 69 75 00 04 0A 15 F8 00 00 00 00 FF", 7, "header checksum mismatch: frame says F8, header gives F9"),
    ("01 69 75 00 04 0A 15 F9 00 00 00 00 FE", 12, "data checksum mismatch: frame says FE, data gives FF"),
    ("02 69 75", 0, "expected the start byte 01"),
    ("01 69 75 00 04 0A 15 F9 00 00", 10, "cut short: 10 of 13 bytes"),
])
def test_bad_frames_name_the_first_offending_byte(text, offset, words):
    with pytest.raises(FrameError) as error:
        parse_frames(bytes.fromhex(text))
    assert error.value.offset == offset
    assert words in str(error.value)


def test_a_length_beyond_any_report_is_refused_before_waiting_for_it():
    head = bytes.fromhex("01 00 00 10 00 0A 15")  # 4096 data bytes claimed
    raw = head + bytes((checksum(head),))
    with pytest.raises(FrameError, match="data length 4096") as error:
        parse_frames(raw)
    assert error.value.offset == 3
    parser = StreamParser()
    assert parser.feed(raw + build_frame(0x0A15, struct.pack("<f", 60.0))) != []
    assert parser.bad_length == 1


def test_frames_split_at_every_byte_come_out_once():
    stream = b"".join(captured()[:4])
    for cut in range(1, len(stream)):
        parser = StreamParser()
        assert len(parser.feed(stream[:cut]) + parser.feed(stream[cut:])) == 4, cut


def test_garbage_and_damaged_frames_before_good_ones():
    good = build_frame(0x0A15, struct.pack("<f", 70.0), 1)
    flipped = good[:-1] + bytes((good[-1] ^ 0xFF,))
    # A damaged frame with a good one inside its claimed data: only a byte-by-byte resync finds it.
    head = bytes.fromhex("01 00 00 00 0d 0a 15")
    nested = head + bytes((checksum(head),)) + good
    parser = StreamParser()
    frames = parser.feed(b"\x01\x01\xff" + flipped + nested + good)
    assert frames == [parse_frame(good)] * 2
    assert parser.bad_data_checksum == 2 and parser.bad_header_checksum >= 2


def test_the_buffer_stays_bounded():
    head = bytes.fromhex("01 00 00 01 00 0a 15")
    long_claim = head + bytes((checksum(head),))
    parser = StreamParser()
    for _ in range(50):
        parser.feed(long_claim + b"\x00" * 100)
        assert len(parser.pending) < MAX_FRAME_LENGTH
