"""``linli decode`` on captures: real frames wrapped in random garbage, from hex, stdin and raw files, in pieces."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest
from pymodbus.framer import FramerRTU

from drivers.codecs import mr60bha1, mr60bha2, modbus
from edge.capture import CaptureScanner
from edge.decode import parse_hex
from tests.agent_helpers import linli

DATA = Path(__file__).parent / "data"


def _radar_lines(name: str, codec, prefix: str = "") -> list[bytes]:
    frames = []
    for line in (DATA / "radar" / name).read_text().splitlines():
        try:
            raw = parse_hex(line.removeprefix(prefix))
            codec.parse_frame(raw)
        except Exception:
            continue              # a line the dump cut short
        frames.append(raw)
    return frames[:6]


def _modbus_answer(unit: int, registers: list[int]) -> bytes:
    body = bytes((unit, 3, 2 * len(registers))) + b"".join(r.to_bytes(2, "big") for r in registers)
    return body + FramerRTU.compute_CRC(body).to_bytes(2, "big")


REAL_FRAMES = {
    "mbus": [parse_hex((DATA / "mbus" / name).read_text())
             for name in ("abb_delta.hex", "EDC.hex", "GWF-MTKcoder.hex")],
    "cjt188": [parse_hex((DATA / "cjt188" / name).read_text()) for name in (
        "published_reply_2004_with_clock.hex", "foxedge_read_address_reply.hex",
        "published_reply_2018_with_clock.hex")],
    "modbus": [modbus.read_registers_request(1, 2, 3), _modbus_answer(1, [350, 7, 0]),
               modbus.read_registers_request(17, 0, 1, 4)],
    "mr60bha1": _radar_lines("mr60bha1_vladkozlov69_dump.txt", mr60bha1, "<< "),
    "mr60bha2": _radar_lines("mr60bha2_esphome_issue3.txt", mr60bha2),
}


def garbage(rng: random.Random, size: int) -> bytes:
    return bytes(rng.randrange(256) for _ in range(size))


def wrapped(protocol: str, seed: int) -> tuple[bytes, list[tuple[int, bytes]], list[tuple[int, int]]]:
    """Garbage, frame, garbage, frame, … garbage: the capture, where each frame is, and the garbage ranges."""
    rng = random.Random(seed)
    capture, frames, skipped = bytearray(), [], []
    for frame in REAL_FRAMES[protocol]:
        noise = garbage(rng, rng.randint(1, 40))
        skipped.append((len(capture), len(noise)))
        capture += noise
        frames.append((len(capture), frame))
        capture += frame
    tail = garbage(rng, rng.randint(1, 40))
    skipped.append((len(capture), len(tail)))
    return bytes(capture + tail), frames, skipped


def scan(protocol: str, capture: bytes, pieces: list[int] | None = None):
    scanner = CaptureScanner(protocol)
    found, at = [], 0
    for size in pieces or [len(capture)]:
        found += scanner.feed(capture[at:at + size])
        at += size
    found += scanner.feed(capture[at:]) + scanner.finish()
    return [(f.offset, f.raw) for f in found], scanner.skipped


@pytest.mark.parametrize("protocol", sorted(REAL_FRAMES))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_real_frames_in_garbage_are_found_with_the_garbage_reported(protocol, seed):
    assert len(REAL_FRAMES[protocol]) >= 3
    capture, frames, skipped = wrapped(protocol, seed)
    assert scan(protocol, capture) == (frames, skipped)


@pytest.mark.parametrize("protocol", sorted(REAL_FRAMES))
def test_the_same_frames_are_found_whatever_the_reads_are_cut_into(protocol):
    capture, frames, skipped = wrapped(protocol, 7)
    rng = random.Random(protocol)
    for _ in range(20):
        cuts = [rng.randint(0, 9) for _ in range(len(capture))]
        assert scan(protocol, capture, cuts) == (frames, skipped)
    assert scan(protocol, capture, [1] * len(capture)) == (frames, skipped)


def decode(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    proc = linli("decode", *args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(stdin, timeout=60)
    return proc.returncode, out, err


def test_a_meter_frame_wrapped_in_garbage_decodes_from_hex_arguments():
    capture, frames, _skipped = wrapped("mbus", 11)
    status, out, err = decode("mbus", capture.hex(" "), "--json")
    assert status == 0, err
    result = json.loads(out)
    assert [(f["offset"], f["length"]) for f in result["frames"]] == [(o, len(f)) for o, f in frames]
    assert result["frames"][0]["decoded"]["header"]["manufacturer"] == "ABB"
    covered = sum(f["length"] for f in result["frames"]) + sum(s["length"] for s in result["skipped"])
    assert covered == result["bytes"] == len(capture)


def test_hex_on_standard_input_alone_or_with_a_dash():
    capture, frames, skipped = wrapped("cjt188", 5)
    for args in ((), ("-",)):
        status, out, _err = decode("cjt188", *args, "--json", stdin=capture.hex(" ") + "\n")
        result = json.loads(out)
        assert status == 0
        assert [(s["offset"], s["length"]) for s in result["skipped"]] == skipped
        assert [f["decoded"]["address"] for f in result["frames"]][0] == "00201510270588"


def test_a_raw_capture_file_larger_than_one_read_is_streamed(tmp_path):
    rng = random.Random(3)
    frame = REAL_FRAMES["mr60bha1"][0]
    head = garbage(rng, 64 * 1024 - 4)              # the frame straddles the first read's end
    head = head.replace(b"\x53\x59", b"\x00\x00")   # random bytes could start a frame's header
    capture = head + frame + garbage(rng, 100).replace(b"\x53\x59", b"\x00\x00") + frame
    path = tmp_path / "capture.bin"
    path.write_bytes(capture)
    status, out, _err = decode("mr60bha1", "--file", str(path), "--json")
    result = json.loads(out)
    assert status == 0
    assert [f["offset"] for f in result["frames"]] == [len(head), len(head) + len(frame) + 100]
    assert result["skipped"] == [{"offset": 0, "length": len(head)},
                                 {"offset": len(head) + len(frame), "length": 100}]


def test_the_text_view_lists_frames_and_skipped_ranges_in_order():
    status, out, _err = decode("mr60bha1", "00 13 53 59 85 02 00 01 59 8D 54 43 77")
    lines = out.splitlines()
    assert status == 0
    assert lines[0].startswith("skipped") and "0-1" in lines[0]
    assert lines[1].startswith("frame") and "at byte 2, 10 bytes" in lines[1]
    assert any("heart_rate" in line for line in lines)
    assert lines[-2].startswith("skipped") and "at 12" in lines[-2]
    assert lines[-1] == "1 frame, 3 bytes skipped, in 13 bytes"


def test_no_frame_at_all_is_exit_65_with_the_single_frame_message(tmp_path):
    status, _out, err = decode("mr60bha1", "00 13 44")
    assert status == 65 and "expected the frame header 53 59 at byte 0, got 00 13" in err
    path = tmp_path / "noise.bin"
    path.write_bytes(bytes(70 * 1024))
    status, out, _err = decode("mbus", "--file", str(path), "--json")
    assert status == 65 and json.loads(out)["error"] == f"no mbus frame in the {70 * 1024} bytes"
    status, _out, err = decode("mbus", "--file", str(tmp_path / "absent.bin"))
    assert status == 66 and "absent.bin" in err


def test_a_single_clean_frame_is_decoded_as_before():
    status, out, _err = decode("mbus", "10 7B 05 80 16", "--json")
    assert status == 0 and json.loads(out)["function"] == "REQ_UD2" and "skipped" not in json.loads(out)
