"""``linli decode``: frames pasted from a sniffer, decoded by the drivers' codecs; bad ones exit 65."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from drivers.codecs.mbus_link import select_secondary
from edge.decode import decode

DATA = Path(__file__).parent / "data"


def run(*args):
    done = subprocess.run([sys.executable, "-m", "edge.cli", "decode", *args], capture_output=True, text=True,
                          timeout=30, cwd=Path(__file__).parent.parent)
    return done.returncode, done.stdout, done.stderr


def test_mbus_short_frame_as_a_table():
    code, out, _ = run("mbus", "10 5B 01 5C 16")
    assert code == 0
    assert "frame     short" in out and "address   1" in out and "function  REQ_UD2" in out


def test_a_real_mbus_answer_as_json_has_the_issue_shape():
    frame = (DATA / "mbus" / "EFE_Engelmann-WaterStar.hex").read_text()
    code, out, _ = run("mbus", *frame.split(), "--json")
    assert code == 0
    body = json.loads(out)
    assert body["header"] == {"id": "04990254", "manufacturer": "EFE", "version": 0, "access_no": 12, "status": 0x27,
                              "medium": "warm_water", "medium_code": 6, "signature": 0}
    assert body["records"][2] == {"quantity": "volume", "value": 0.332, "unit": "m3", "function": "instantaneous",
                                  "storage": 0, "tariff": 0, "subunit": 0, "vife": [], "error": None}
    assert body["records"][8]["function"] == "maximum"
    assert body["records"][9] == {"quantity": "on_time", "value": 102902400, "unit": "s", "function": "instantaneous",
                                  "storage": 0, "tariff": 0, "subunit": 0, "vife": [], "error": None}
    assert body["records"][11]["vife"] == [0x28]


def test_mbus_masters_requests_and_a_meters_application_error():
    assert decode("mbus", "10 40 05 45 16") == {"protocol": "mbus", "frame": "short", "control": 0x40,
                                                 "function": "SND_NKE", "address": 5}
    assert decode("mbus", "e5") == {"protocol": "mbus", "frame": "ack"}
    select = decode("mbus", select_secondary("04990254", manufacturer="EFE", medium=6).hex())
    assert select["select"] == {"id": "04990254", "manufacturer": "EFE", "version": None, "medium": "warm_water"}
    assert decode("mbus", "68 06 06 68 53 fe 51 01 7a 08 25 16")["records"][0]["quantity"] == "bus_address"
    busy = decode("mbus", (DATA / "mbus" / "error-frames" / "application_busy.hex").read_text())
    assert busy["application_error"]["code"] == 8 and "busy" in busy["application_error"]["message"]


def test_a_real_cjt188_reply_has_the_issue_shape():
    frame = (DATA / "cjt188" / "tutorial_read_data_reply_2018.hex").read_text()
    code, out, _ = run("cjt188", frame.strip(), "--json")
    assert code == 0
    assert json.loads(out) == {
        "protocol": "cjt188", "meter_type": "cold_water", "address": "78330011223344", "control": 0x81,
        "frame": "reply", "di": "901F", "di_order": "2018", "ser": 0,
        "volume": {"value": 556677.0, "unit": "m3", "value_m3": 556677.0},
        "settlement_volume": {"value": 556677.0, "unit": "m3", "value_m3": 556677.0},
        "clock": "2015-05-11T22:01:31", "clock_raw": "31 01 22 11 05 15 20",
        "status": {"st0": 0x21, "st1": 0x84, "valve": "closed", "battery_low": False},
    }


def test_cjt188_volume_is_shown_in_the_meters_unit_and_in_m3():
    # Hand-built 2004-order reply from meter 12345678901234: 1234.56 L current, settlement unfilled (FF).
    payload = "90 1f 00 56 34 12 00 29 ff ff ff ff 2c 00 00 00 00 00 00 00 00 00"
    body = bytes.fromhex("68 10 34 12 90 78 56 34 12 81 16 " + payload)
    frame = body + bytes([sum(body) & 0xFF, 0x16])
    decoded = decode("cjt188", frame.hex())
    assert decoded["volume"] == {"value": 1234.56, "unit": "L", "value_m3": 1.23456}
    assert decoded["settlement_volume"] == {"value": None, "unit": "m3", "value_m3": None}
    assert decoded["clock"] is None


@pytest.mark.parametrize(("name", "expected"), [
    ("tutorial_read_data_request_2018", {"frame": "request", "di": "901F", "di_order": "2018", "ser": 0}),
    ("aixiwang_read_address_request", {"frame": "request", "address": "AAAAAAAAAAAAAA", "di_order": "2004"}),
    ("foxedge_read_address_reply", {"frame": "reply", "address": "00000805000001", "di": "810A"}),
])
def test_cjt188_requests_and_address_replies(name, expected):
    decoded = decode("cjt188", (DATA / "cjt188" / f"{name}.hex").read_text())
    assert {key: decoded[key] for key in expected} == expected


def test_cjt188_error_reply_is_decoded_not_bad():
    body = bytes.fromhex("68 10 34 12 90 78 56 34 12 c1 03 00 5a 01")
    decoded = decode("cjt188", (body + bytes([sum(body) & 0xFF, 0x16])).hex())
    assert (decoded["frame"], decoded["status"]) == ("error_reply", "5a 01")


@pytest.mark.parametrize("frame, expected", [
    ("01 03 00 02 00 03 A4 0B", {"frame": "request", "unit": 1, "function": 3, "address": 2, "count": 3}),
    ("01 83 02 C0 F1", {"frame": "exception", "code": 2}),
    ("01 03 06 00 00 00 00 01 5e a1 1d", {"frame": "response", "registers": [0, 0, 350]}),
])
def test_modbus_request_answer_and_exception(frame, expected):
    code, out, _ = run("modbus", frame, "--json")
    body = json.loads(out)
    assert code == 0 and {k: body[k] for k in expected} == expected


@pytest.mark.parametrize("protocol, frame, offset", [
    ("modbus", "01 03 00 02 00 03 A4 0C", 6),          # CRC
    ("modbus", "01 03 00 02 00 00 65 CB", 0),          # a read of no registers
    ("mbus", "10 5B 01 5D 16", 3),                      # checksum
    ("mbus", "10 5B 01 5C 17", 4),                      # stop byte
    ("cjt188", "68 10 01 00 00 05 08 00 00 01 03 90 1F 00 00 16", None),
])
def test_bad_frames_exit_65_with_the_offset(protocol, frame, offset):
    code, out, err = run(protocol, *frame.split(), "--json")
    body = json.loads(out)
    assert code == 65 and body["error"] and "Traceback" not in err
    if offset is not None:
        assert body["offset"] == offset


def test_not_hex_is_a_bad_frame_too():
    code, _, err = run("mbus", "zz 16")
    assert code == 65 and "not hex" in err
