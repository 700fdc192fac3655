"""``linli decode``: frames pasted from a sniffer, decoded by the drivers' codecs; bad ones exit 65."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


def decode(*args):
    done = subprocess.run([sys.executable, "-m", "edge.cli", "decode", *args], capture_output=True, text=True,
                          timeout=30, cwd=Path(__file__).parent.parent)
    return done.returncode, done.stdout, done.stderr


def test_mbus_short_frame_as_a_table():
    code, out, _ = decode("mbus", "10 5B 01 5C 16")
    assert code == 0
    assert "frame     short" in out and "address   1" in out


def test_a_real_mbus_long_frame_as_json():
    frame = sorted((DATA / "mbus").glob("*.hex"))[0].read_text()
    code, out, _ = decode("mbus", *frame.split(), "--json")
    body = json.loads(out)
    assert code == 0 and body["frame"] == "long" and len(body["header"]["id"]) == 8 and body["records"]


def test_a_real_cjt188_reply():
    frame = (DATA / "cjt188" / "foxedge_read_data_reply_2004_a.hex").read_text()
    code, out, _ = decode("cjt188", frame.strip(), "--json")
    body = json.loads(out)
    assert code == 0 and body["reading"]["volume_m3"] == 123.0 and body["reading"]["di_order"] == "2004"


@pytest.mark.parametrize("frame, expected", [
    ("01 03 00 02 00 03 A4 0B", {"frame": "request", "unit": 1, "function": 3, "address": 2, "count": 3}),
    ("01 83 02 C0 F1", {"frame": "exception", "code": 2}),
])
def test_modbus_request_and_exception(frame, expected):
    code, out, _ = decode("modbus", frame, "--json")
    body = json.loads(out)
    assert code == 0 and {k: body[k] for k in expected} == expected


@pytest.mark.parametrize("protocol, frame, offset", [
    ("modbus", "01 03 00 02 00 03 A4 0C", 6),          # CRC
    ("mbus", "10 5B 01 5D 16", 3),                      # checksum
    ("mbus", "10 5B 01 5C 17", 4),                      # stop byte
    ("cjt188", "68 10 01 00 00 05 08 00 00 01 03 90 1F 00 00 16", None),
])
def test_bad_frames_exit_65_with_the_offset(protocol, frame, offset):
    code, out, err = decode(protocol, *frame.split(), "--json")
    body = json.loads(out)
    assert code == 65 and body["error"] and "Traceback" not in err
    if offset is not None:
        assert body["offset"] == offset


def test_not_hex_is_a_bad_frame_too():
    code, _, err = decode("mbus", "zz 16")
    assert code == 65 and "not hex" in err
