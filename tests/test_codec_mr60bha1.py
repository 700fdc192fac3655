"""MR60BHA1 frames: checksums and values by the manual, a real captured stream, and the stream parser's
resynchronisation (garbage, false headers, bad sums, frames split or grouped across reads)."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.codecs.mr60bha1 import (
    MAX_FRAME_LENGTH,
    QUERY_PRESENCE,
    StreamParser,
    Value,
    build_frame,
    checksum,
    parse_frame,
    parse_frames,
    values,
)
from drivers.errors import FrameError

DUMP = Path(__file__).parent / "data" / "radar" / "mr60bha1_vladkozlov69_dump.txt"


def captured() -> list[bytes]:
    return [bytes.fromhex(line.removeprefix("<< ")) for line in DUMP.read_text().splitlines()]


def test_every_captured_frame_checks_out_and_the_stream_parses_to_the_same_frames():
    frames = captured()
    assert len(frames) == 65
    parser = StreamParser()
    parsed = parser.feed(b"".join(frames))
    assert [build_frame(f.control, f.command, f.data) for f in parsed] == frames  # our builder agrees byte for byte
    assert (parser.frames, parser.bad_checksum, parser.skipped, len(parser.pending)) == (65, 0, 0, 0)


def test_captured_frames_with_unchanged_meaning():
    # 80 02 movement: 00 none; 03 is an early-firmware code the current manual does not list → null, not a guess.
    assert values(parse_frame(bytes.fromhex("53 59 80 02 00 01 00 2F 54 43"))) == [Value("movement", 0, None)]
    assert values(parse_frame(bytes.fromhex("53 59 80 02 00 01 03 32 54 43"))) == [Value("movement", None, None)]
    # 80 03 body-movement parameter and the waveforms are valid frames without a published kind.
    assert values(parse_frame(bytes.fromhex("53 59 80 03 00 01 7D AD 54 43"))) == []


@pytest.mark.parametrize("frame, expected", [
    ("53 59 80 01 00 01 01 2F 54 43", Value("presence", True, None)),
    ("53 59 80 01 00 01 00 2E 54 43", Value("presence", False, None)),
    ("53 59 80 81 00 01 01 AF 54 43", Value("presence", True, None)),          # answer to the presence query
    ("53 59 80 02 00 01 02 31 54 43", Value("movement", 2, None)),
    ("53 59 80 04 00 02 01 2C 5F 54 43", Value("distance", 300, "cm")),        # big-endian: 0x012C
    ("53 59 85 02 00 01 59 8D 54 43", Value("heart_rate", 89, "bpm")),
    ("53 59 81 02 00 01 10 40 54 43", Value("breathing_rate", 16, "1/min")),
    ("53 59 84 01 00 01 01 33 54 43", Value("in_bed", True, None)),
    ("53 59 84 01 00 01 02 34 54 43", Value("in_bed", None, None)),            # "none": real-time mode
    ("53 59 84 02 00 01 01 34 54 43", Value("sleep_state", 1, None)),
    ("53 59 84 02 00 01 03 36 54 43", Value("sleep_state", None, None)),
])
def test_values_by_the_manual(frame, expected):
    assert values(parse_frame(bytes.fromhex(frame))) == [expected]


def test_checksum_is_the_low_byte_of_the_sum_and_the_query_frame_is_right():
    assert checksum(bytes.fromhex("53 59 85 02 00 01 59")) == (0x53 + 0x59 + 0x85 + 0x02 + 0x01 + 0x59) & 0xFF
    assert build_frame(0x80, 0x81, b"\x0f") == QUERY_PRESENCE


@pytest.mark.parametrize("text, offset, words", [
    ("53 59 85 02 00 01 59 8E 54 43", 7, "checksum mismatch: frame says 8E, bytes sum to 8D"),
    ("53 59 85 02 00 01 59 8D 54 44", 9, "does not end with 54 43 but 54 44"),
    ("53 59 85 02 00 01 59 8D 43 54", 8, "does not end with 54 43 but 43 54"),
    ("53 58 85 02", 1, "expected the frame header 53 59"),
    ("53 59 85 02 00 01 59", 7, "cut short: 7 of 10 bytes"),
    ("53 59 85 02 10 00", 4, "data length 4096"),
    ("53 59 85 02 00 01 59 8D 54 43 00", 10, "expected the frame header"),
])
def test_bad_frames_name_the_first_offending_byte(text, offset, words):
    with pytest.raises(FrameError) as error:
        parse_frames(bytes.fromhex(text))
    assert error.value.offset == offset
    assert words in str(error.value)


def test_a_known_kind_with_the_wrong_length_is_a_frame_error():
    with pytest.raises(FrameError, match="heart rate carries 1 data byte, got 2"):
        values(parse_frame(build_frame(0x85, 0x02, b"\x40\x41")))


def test_frames_split_at_every_byte_come_out_once():
    stream = b"".join(captured()[:6])
    for cut in range(1, len(stream)):
        parser = StreamParser()
        frames = parser.feed(stream[:cut]) + parser.feed(stream[cut:])
        assert len(frames) == 6, cut
        assert parser.skipped == 0


def test_byte_by_byte_and_all_at_once_agree():
    stream = b"".join(captured())
    parser = StreamParser()
    one_by_one = [frame for byte in stream for frame in parser.feed(bytes((byte,)))]
    assert one_by_one == StreamParser().feed(stream)


def test_garbage_false_headers_and_bad_sums_are_skipped_byte_by_byte():
    heart = build_frame(0x85, 0x02, b"\x48")
    bad_sum = heart[:7] + b"\x00" + heart[8:]
    # A false header whose length field would swallow the real frame behind it if the parser trusted it.
    false_header = b"\x53\x59\x85\x02\x00\x05"
    # A damaged frame with a real one starting inside it: only a byte-by-byte resync finds it.
    nested = b"\x53\x59\x85\x02\x00\x0a" + heart
    stream = b"\x00\xff\x53" + bad_sum + false_header + heart + nested + b"\x54\x43\x53"
    parser = StreamParser()
    frames = parser.feed(stream)
    assert frames == [parse_frame(heart)] * 2
    assert parser.bad_checksum >= 1
    assert parser.pending == bytearray(b"\x53")  # a trailing 53 may be the next frame's start


def test_the_buffer_stays_bounded_whatever_arrives():
    parser = StreamParser()
    for _ in range(200):
        parser.feed(b"\x53\x59\x00\x00\x00\x3f" + b"\x53" * 50)  # headers that claim long frames, never finished
        assert len(parser.pending) < MAX_FRAME_LENGTH
