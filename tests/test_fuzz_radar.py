"""Property-based fuzzing of both radar parsers (see docs/decisions/0004-hypothesis.md for the settings).

Whatever the UART delivers, in whatever chunks: the stream parsers never raise, never hold more than one
frame's worth of bytes, and find every intact frame whose bytes the noise around it cannot be mistaken for;
the strict parsers behind ``linli decode`` answer with frames or a ``FrameError`` inside the input, and what
``decode`` returns survives strict JSON.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.codecs import mr60bha1, mr60bha2
from drivers.errors import FrameError
from edge.decode import BadFrame, decode
from tests.fuzz_helpers import mutate, mutations

DATA = Path(__file__).parent / "data" / "radar"
BHA1 = [bytes.fromhex(line.removeprefix("<< ")) for line in (DATA / "mr60bha1_vladkozlov69_dump.txt").read_text()
        .splitlines()]
BHA2 = [bytes.fromhex(line.replace(".", "")) for line in (DATA / "mr60bha2_esphome_issue3.txt").read_text()
        .splitlines()]
CODECS = {"mr60bha1": mr60bha1, "mr60bha2": mr60bha2}

SCALE = float(os.environ.get("LINLI_FUZZ_SCALE", "1"))
pytestmark = pytest.mark.timeout(60 * max(SCALE, 1))


def fuzz(examples: int):
    return settings(max_examples=max(1, round(examples * SCALE)), derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given positions (taken modulo its length), as reads of a UART would deliver it."""
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


def feed_all(codec, chunks: list[bytes]):
    parser = codec.StreamParser()
    frames = []
    for chunk in chunks:
        frames += parser.feed(chunk)
        assert len(parser.pending) < codec.MAX_FRAME_LENGTH
        for frame in frames:
            try:
                codec.values(frame)
            except FrameError:
                pass
    return parser, frames


@fuzz(300)
@given(st.sampled_from(sorted(CODECS)), st.binary(max_size=2000), st.lists(st.integers(0, 2000), max_size=20))
def test_random_bytes_in_random_chunks_never_raise_and_stay_bounded(name, data, cuts):
    parser, frames = feed_all(CODECS[name], chunked(data, cuts))
    consumed = sum(len(CODECS[name].build_frame(*_fields(name, f))) for f in frames)
    assert consumed + parser.skipped + len(parser.pending) == len(data)  # every byte is accounted for


def _fields(name, frame):
    return (frame.control, frame.command, frame.data) if name == "mr60bha1" else (frame.type, frame.data,
                                                                                    frame.frame_id)


def bha1_frames():
    return st.builds(mr60bha1.build_frame, st.integers(0, 255), st.integers(0, 255),
                     st.binary(max_size=mr60bha1.MAX_DATA_LENGTH))


def bha2_frames():
    return st.builds(mr60bha2.build_frame, st.integers(0, 0xFFFF), st.binary(max_size=64), st.integers(0, 0xFFFF))


@fuzz(200)
@given(st.lists(st.tuples(bha1_frames(), st.binary(max_size=8).map(lambda b: b.replace(b"\x53", b"\x00"))),
                min_size=1, max_size=12),
       st.lists(st.integers(0, 3000), max_size=30))
def test_mr60bha1_finds_every_frame_between_noise_without_a_header_byte(pairs, cuts):
    stream = b"".join(noise + frame for frame, noise in pairs)
    _, frames = feed_all(mr60bha1, chunked(stream, cuts))
    assert [mr60bha1.build_frame(f.control, f.command, f.data) for f in frames] == [frame for frame, _ in pairs]


@fuzz(200)
@given(st.lists(st.tuples(bha2_frames(), st.binary(max_size=8).map(lambda b: b.replace(b"\x01", b"\x00"))),
                min_size=1, max_size=12),
       st.lists(st.integers(0, 3000), max_size=30))
def test_mr60bha2_finds_every_frame_between_noise_without_a_start_byte(pairs, cuts):
    stream = b"".join(noise + frame for frame, noise in pairs)
    _, frames = feed_all(mr60bha2, chunked(stream, cuts))
    assert [mr60bha2.build_frame(f.type, f.data, f.frame_id) for f in frames] == [frame for frame, _ in pairs]


MUTATIONS = mutations(max_position=999, max_count=6)


@fuzz(300)
@given(st.sampled_from(sorted(CODECS)), st.integers(0, 15), st.integers(1, 6), MUTATIONS,
       st.lists(st.integers(0, 500), max_size=10))
def test_mutated_real_captures_lose_only_the_damaged_frames(name, first, count, mutations, cuts):
    captures = BHA1 if name == "mr60bha1" else BHA2
    codec = CODECS[name]
    clean = captures[first:first + count]
    damaged = mutate(b"".join(clean), mutations)
    # A damaged length field holds back the frames behind it until enough bytes arrived to disprove it (at
    # most one longest frame): the intact frames that follow must be longer than that to be all through.
    after = []
    while sum(map(len, after)) < codec.MAX_FRAME_LENGTH:
        after += captures[(first + count + len(after)) % len(captures):][:1]
    _, frames = feed_all(codec, chunked(damaged + b"".join(after), cuts))
    rebuilt = [codec.build_frame(*_fields(name, f)) for f in frames]
    # The intact frames after the damage always come through, last and in order.
    assert rebuilt[len(rebuilt) - len(after):] == after


@fuzz(300)
@given(st.sampled_from(sorted(CODECS)), st.integers(0, 15), MUTATIONS)
def test_decode_answers_with_json_or_a_bad_frame_inside_the_input(name, first, mutations):
    captures = BHA1 if name == "mr60bha1" else BHA2
    raw = mutate(b"".join(captures[first:first + 3]), mutations)
    if not raw:
        return
    try:
        result = decode(name, raw.hex())
    except BadFrame as bad:
        assert bad.offset is None or 0 <= bad.offset <= len(raw)
        return
    json.dumps(result, allow_nan=False)
    assert set(result) <= {"frames", "ignored"}
    for item in result["frames"]:
        assert item["kind"] in CODECS[name].KINDS and item["unit"] == CODECS[name].KINDS[item["kind"]]


@fuzz(200)
@given(st.sampled_from([0x0A14, 0x0A15, 0x0A16, 0x0F09]), st.floats(width=32) | st.sampled_from([3.4028235e38]),
       st.integers(0, 3))
def test_mr60bha2_values_are_finite_numbers_or_null(frame_type, number, flag):
    data = struct.pack("<If", flag, number) if frame_type == 0x0A16 else struct.pack("<f", number)
    [value] = mr60bha2.values(mr60bha2.parse_frame(mr60bha2.build_frame(frame_type, data)))
    json.dumps(value.value, allow_nan=False)
    if frame_type in (0x0A14, 0x0A15) and value.value is not None:
        assert struct.pack("<f", value.value) == struct.pack("<f", number)  # the shortest decimal is the same float32
