"""``linli probe serial`` and ``linli scan mbus|cjt188`` against simulated devices behind real pseudo-terminals.

Every test runs the real command in its own process, the way a technician does, against a
:class:`SimulatedLine` with simulated meters (or pymodbus's server for Modbus). Each test starts its own
line. Simulated lines run 8N1 (``--parity N``): Linux refuses to reconfigure a pty set to even parity (it
drops the parity bit, then rejects it), which every read with another timeout does.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import threading
import time

import pytest

from drivers.codecs.cjt188 import read_address_request, read_data_request
from drivers.codecs.mbus_link import req_ud2, select_secondary
from drivers.codecs.modbus import read_registers_request
from drivers.transports.serial import SerialBus
from edge.cli.render import hex_dump
from edge.probe.tap import Recorder
from edge.simulate.cjt188_meter import Cjt188WaterMeter
from edge.simulate.line import SimulatedLine
from edge.simulate.mbus_meter import MbusWaterMeter
from edge.simulate.pty import PtyPair
from edge.simulate.modbus_pressure import PressureTransmitterSim
from tests.agent_helpers import linli

CHAR_MS = 10 / 2400 * 1000  # 2400 8N1
PROBE_KEYS = {"port", "protocol", "line", "request", "answer", "decoded", "error", "offset", "suspects", "exchanges"}


def run(*args: str, timeout: float = 60) -> tuple[int, str, str]:
    process = linli(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def probe_json(*args: str) -> tuple[int, dict]:
    code, out, err = run("probe", "serial", *args, "--json")
    assert err == "", err
    body = json.loads(out)
    assert set(body) == PROBE_KEYS
    return code, body


# --- M-Bus ---------------------------------------------------------------------------------------------------
def test_mbus_probe_shows_both_ways_with_timing_and_decodes_the_answer():
    meter = MbusWaterMeter(5, "12345675", start_m3=42.125)
    with SimulatedLine([meter, MbusWaterMeter(6, "12345676")], parity="N") as line:
        code, body = probe_json(line.path, "--parity", "N", "--protocol", "mbus", "--address", "5",
                                "--timeout", "0.3")
    assert code == 0 and body["error"] is None and body["line"] == "2400 8N1"
    assert body["request"]["hex"] == req_ud2(5, fcb=False).hex(" ")
    answer = bytes.fromhex(body["answer"]["hex"])
    assert answer == meter.replies[-1]
    first, last = body["answer"]["first_byte_ms"], body["answer"]["last_byte_ms"]
    # The line is paced like copper: the meter hears the whole 5-byte request before it answers, and each
    # byte of its answer takes one character time. (Lower bounds only: a busy machine may read late.)
    assert 5 * CHAR_MS <= first <= last
    assert last >= (5 + len(answer) - 1) * CHAR_MS
    decoded = body["decoded"]
    assert decoded["header"]["id"] == "12345675" and decoded["address"] == 5
    volumes = [r["value"] for r in decoded["records"] if r["quantity"] == "volume" and r["storage"] == 0]
    assert volumes == [42.125]
    assert body["exchanges"] == [{"request": body["request"], "answer": body["answer"]}]


def test_mbus_probe_by_secondary_id_selects_then_asks_253():
    with SimulatedLine([MbusWaterMeter(5, "12345675"), MbusWaterMeter(9, "87654321")], parity="N") as line:
        code, body = probe_json(line.path, "--parity", "N", "--protocol", "mbus", "--address", "87654321",
                                "--timeout", "0.3")
    assert code == 0, body["error"]
    select, data = body["exchanges"]
    assert select["request"]["hex"] == select_secondary("87654321").hex(" ")
    assert select["answer"]["hex"] == "e5"
    assert data["request"]["hex"] == req_ud2(253, fcb=False).hex(" ") == body["request"]["hex"]
    assert data["request"]["at_ms"] > select["request"]["at_ms"] + select["answer"]["last_byte_ms"]
    assert body["decoded"]["header"]["id"] == "87654321" and body["decoded"]["address"] == 9


def test_mbus_probe_to_254_with_two_meters_reports_the_collision():
    first, second = MbusWaterMeter(5, "12345675"), MbusWaterMeter(6, "12345676")
    with SimulatedLine([first, second], parity="N") as line:
        code, body = probe_json(line.path, "--parity", "N", "--protocol", "mbus", "--timeout", "0.3")
    assert code == 65
    assert body["request"]["hex"] == req_ud2(254, fcb=False).hex(" ")
    one = len(first.replies[-1])
    assert bytes.fromhex(body["answer"]["hex"]) == first.replies[-1] + second.replies[-1]
    assert body["offset"] == one and "more than one device answered" in body["error"]
    assert body["decoded"]["header"]["id"] == "12345675"  # the first answer is still shown decoded


def test_a_silent_meter_exits_69_with_the_usual_suspects():
    meter = MbusWaterMeter(5, "12345675")
    with SimulatedLine([meter], parity="N") as line:
        line.set_fault(meter, "silent")
        code, out, err = run("probe", "serial", line.path, "--parity", "N", "--protocol", "mbus", "--address", "5",
                             "--timeout", "0.2")
    assert code == 69
    assert "answer    none" in out
    assert "no answer from M-Bus address 5" in err
    assert "level converter" in err and "2400 8N1 was used" in err


def test_a_garbled_answer_exits_65_pointing_at_the_bad_byte():
    meter = MbusWaterMeter(5, "12345675")
    with SimulatedLine([meter], parity="N") as line:
        line.set_fault(meter, "garble")
        code, body = probe_json(line.path, "--parity", "N", "--protocol", "mbus", "--address", "5",
                                "--timeout", "0.3")
    sent = meter.replies[-1]
    received = bytes.fromhex(body["answer"]["hex"])
    assert code == 65 and body["decoded"] is None
    assert [i for i in range(len(sent)) if sent[i] != received[i]] == [len(sent) // 2]  # the line flipped one
    assert body["offset"] == len(sent) - 2 and "checksum" in body["error"]  # … which the checksum catches


def test_the_table_view_marks_the_offending_byte():
    meter = MbusWaterMeter(5, "12345675")
    with SimulatedLine([meter], parity="N") as line:
        line.set_fault(meter, "garble")
        code, out, err = run("probe", "serial", line.path, "--parity", "N", "--protocol", "mbus", "--address", "5",
                             "--timeout", "0.3")
    assert code == 65
    sent = meter.replies[-1]
    offset = len(sent) - 2  # the checksum: the line flipped a byte in the middle, which the checksum catches
    lines = out.splitlines()
    marker = next(i for i, line in enumerate(lines) if line.strip() == "^^")
    row, column = lines[marker - 1], lines[marker].index("^^")
    # A row is 10 spaces of indent, a 4-digit offset and two spaces, then "xx " per byte.
    assert int(row.split()[0], 16) + (column - 16) // 3 == offset
    assert row[column:column + 2] == f"{sent[offset]:02x}"  # the checksum byte itself was not the one flipped
    assert f"(at byte {offset})" in err


# --- CJ/T 188 ------------------------------------------------------------------------------------------------
def test_cjt188_probe_without_address_reads_it_by_broadcast():
    with SimulatedLine([Cjt188WaterMeter("00000805000001", meter_type="hot_water")], parity="N") as line:
        code, body = probe_json(line.path, "--parity", "N", "--protocol", "cjt188", "--timeout", "0.3")
    assert code == 0 and body["error"] is None
    assert body["request"]["hex"] == read_address_request(1, "2004").hex(" ")
    assert body["answer"]["hex"].startswith("fe fe fe fe 68")  # wake-up bytes are part of what came back
    assert body["decoded"]["address"] == "00000805000001" and body["decoded"]["meter_type"] == "hot_water"


def test_cjt188_probe_with_address_reads_the_water_data():
    meter = Cjt188WaterMeter("00000805000001", start_m3=123.45, di_order="2018")
    with SimulatedLine([meter, Cjt188WaterMeter("00000805000002")], parity="N") as line:
        code, body = probe_json(line.path, "--parity", "N", "--protocol", "cjt188", "--address", "00000805000001",
                                "--di-order", "2018", "--timeout", "0.3")
    assert code == 0, body["error"]
    assert body["request"]["hex"] == read_data_request("00000805000001", 0x10, 1, "2018").hex(" ")
    reading = body["decoded"]
    assert reading["volume"]["value_m3"] == 123.45 and reading["di_order"] == "2018" and reading["ser"] == 1


def test_cjt188_garbled_answer_offset_counts_the_wake_up_bytes():
    meter = Cjt188WaterMeter("00000805000001", preamble=4)
    with SimulatedLine([meter], parity="N") as line:
        line.set_fault(meter, "garble")
        code, body = probe_json(line.path, "--parity", "N", "--protocol", "cjt188", "--address", "00000805000001",
                                "--timeout", "0.3")
    answer = bytes.fromhex(body["answer"]["hex"])
    assert code == 65 and answer[:4] == b"\xfe" * 4
    assert body["offset"] == len(answer) - 2  # the checksum byte, counted from the first FE
    assert "checksum" in body["error"]


# --- Modbus ---------------------------------------------------------------------------------------------------
def test_modbus_probe_reads_registers_from_pymodbus(tmp_path):
    with PressureTransmitterSim(7, 0.35, link_dir=tmp_path) as transmitter:
        code, body = probe_json(transmitter.port, "--protocol", "modbus", "--address", "7", "--count", "7",
                                "--timeout", "0.3")
    assert code == 0 and body["line"] == "9600 8N1"
    assert body["request"]["hex"] == read_registers_request(7, 0, 7, 3).hex(" ")
    # Unit id, baud code (9600), unit code MPa, 3 decimals, 0.350 MPa, range 0–1.600 MPa.
    assert body["decoded"]["registers"] == [7, 3, 0, 3, 350, 0, 1600]


def test_modbus_exception_answer_is_an_answer(tmp_path):
    with PressureTransmitterSim(1, 0.35, link_dir=tmp_path) as transmitter:
        code, body = probe_json(transmitter.port, "--protocol", "modbus", "--register", "100", "--function", "4",
                                "--timeout", "0.3")
    assert code == 0
    assert body["decoded"]["frame"] == "exception" and body["decoded"]["code"] == 2


def test_modbus_wrong_unit_is_no_answer(tmp_path):
    with PressureTransmitterSim(1, 0.35, link_dir=tmp_path) as transmitter:
        code, body = probe_json(transmitter.port, "--protocol", "modbus", "--address", "2", "--timeout", "0.2")
    assert code == 69 and body["answer"] is None and body["decoded"] is None
    assert any("A and B" in suspect for suspect in body["suspects"])


# --- the port itself ------------------------------------------------------------------------------------------
def test_a_missing_port_exits_74(tmp_path):
    code, body = probe_json(str(tmp_path / "ttyUSB9"), "--protocol", "mbus")
    assert code == 74 and "does not exist" in body["error"] and body["exchanges"] == []
    assert body["line"] == "2400 8E1"  # the M-Bus factory setting, as no --baudrate/--parity was given


def test_a_port_held_by_another_process_exits_74():
    with SimulatedLine([MbusWaterMeter(5, "12345675")], parity="N") as line:
        holder = SerialBus("held", {"port": line.path, "baudrate": 2400, "parity": "E", "timeout": 0.2})
        with holder:
            code, out, err = run("probe", "serial", line.path, "--parity", "N", "--protocol", "mbus")
    assert code == 74 and "sent" not in out  # nothing was sent
    assert "in use by another process" in err


def test_options_of_another_protocol_are_a_usage_error():
    code, _out, err = run("probe", "serial", "/dev/null", "--protocol", "cjt188", "--register", "3")
    assert code == 64 and "--register applies to --protocol modbus only" in err
    code, _out, err = run("probe", "serial", "/dev/null", "--protocol", "mbus", "--address", "251")
    assert code == 64 and "M-Bus address" in err


# --- scans ----------------------------------------------------------------------------------------------------
def test_scan_mbus_finds_three_meters_and_a_collision():
    meters = [MbusWaterMeter(a, f"1000000{a}", manufacturer=m) for a, m in ((2, "LNL"), (4, "EFE"), (5, "ACW"))]
    twins = [MbusWaterMeter(7, "20000007"), MbusWaterMeter(7, "20000008")]
    with SimulatedLine(meters + twins, parity="N") as line:
        code, out, _err = run("scan", "mbus", line.path, "--parity", "N", "--from", "1", "--to", "8",
                              "--timeout", "0.1", "--json")
        assert code == 0
        body = json.loads(out)
        assert [(m["address"], m["id"], m["manufacturer"], m["medium"]) for m in body["found"]] == [
            (2, "10000002", "LNL", "water"), (4, "10000004", "EFE", "water"), (5, "10000005", "ACW", "water")]
        assert [c["address"] for c in body["collisions"]] == [7]
        assert body["scanned"] == 8 and body["interrupted"] is False
        code, out, _err = run("scan", "mbus", line.path, "--parity", "N", "--from", "1", "--to", "8",
                              "--timeout", "0.5")
    assert code == 0
    rows = out.splitlines()
    assert rows[1].split() == ["2", "10000002", "LNL", "water", "1"]
    assert rows[4].startswith("7") and "collision" in rows[4]
    assert rows[-1].startswith("3 meters found in")


def test_scan_mbus_finding_nothing_exits_69():
    with SimulatedLine([MbusWaterMeter(9, "12345679")], parity="N") as line:
        code, out, _err = run("scan", "mbus", line.path, "--parity", "N", "--from", "1", "--to", "3",
                              "--timeout", "0.05")
    assert code == 69 and out.splitlines()[-1].startswith("0 meters found")


def test_ctrl_c_prints_what_the_scan_found_so_far():
    meters = [MbusWaterMeter(a, f"1000000{a}") for a in (1, 2, 3)]
    with SimulatedLine(meters, parity="N") as line:
        process = linli("scan", "mbus", line.path, "--parity", "N", "--timeout", "2", stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE)
        try:
            seen = _lines_until(process, count=4, deadline=30)  # the header and three meters
            process.send_signal(signal.SIGINT)
            rest, _err = process.communicate(timeout=30)
        finally:
            process.kill()
    assert process.returncode == 130
    assert [line.split()[0] for line in seen[1:4]] == ["1", "2", "3"]
    assert "interrupted after" in rest.decode() and "3 meters found" in rest.decode()


def _lines_until(process: subprocess.Popen, count: int, deadline: float) -> list[str]:
    """The first ``count`` lines of ``process``'s stdout, waiting at most ``deadline`` seconds.

    Reads the pipe's file descriptor directly: a buffered readline could hold lines select() does not see.
    """
    data = b""
    fd = process.stdout.fileno()
    end = time.monotonic() + deadline
    while data.count(b"\n") < count:
        left = end - time.monotonic()
        assert left > 0, f"waited {deadline} s for {count} lines, got {data!r}"
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 4096)
            assert chunk, f"the scan ended early: {data!r}"
            data += chunk
    return data.decode().splitlines()[:count]


def test_scan_cjt188_reads_the_one_meter_in_either_edition():
    meter = Cjt188WaterMeter("00000805000001", meter_type="drinking_water", di_order="2018")
    with SimulatedLine([meter], parity="N") as line:
        code, out, _err = run("scan", "cjt188", line.path, "--parity", "N", "--timeout", "0.2", "--json")
    assert code == 0
    assert json.loads(out) == {"port": line.path, "address": "00000805000001", "meter_type": "drinking_water",
                               "di_order": "2018", "error": None, "suspects": []}


def test_scan_cjt188_with_two_meters_says_to_connect_one():
    meters = [Cjt188WaterMeter("00000805000001"), Cjt188WaterMeter("00000805000002")]
    with SimulatedLine(meters, parity="N") as line:
        code, _out, err = run("scan", "cjt188", line.path, "--parity", "N", "--timeout", "0.2")
    assert code == 65 and "more than one meter" in err


def test_scan_cjt188_without_a_meter_exits_69():
    with SimulatedLine([], parity="N") as line:
        code, _out, err = run("scan", "cjt188", line.path, "--parity", "N", "--timeout", "0.05",
                              "--di-order", "2004")
    assert code == 69 and "no answer" in err and "A and B" in err


# --- the recorder, in process -----------------------------------------------------------------------------------
def test_recorder_times_the_first_answer_byte_before_the_rest_has_come():
    with PtyPair() as pty, SerialBus("b", {"port": pty.path, "baudrate": 9600, "timeout": 5.0}) as bus:
        recorder = Recorder(bus)
        recorder.write(b"?")
        stamped_before_rest: list[bool] = []

        def device() -> None:
            pty.write(b"\x01")
            # Send the rest only once the recorder has stamped the first byte: a recorder that waited for all
            # four bytes before stamping would leave this loop only at its deadline.
            deadline = time.monotonic() + 5.0
            while recorder.exchanges[0].first_byte_ms is None and time.monotonic() < deadline:
                time.sleep(0.001)
            stamped_before_rest.append(recorder.exchanges[0].first_byte_ms is not None)
            pty.write(b"\x02\x03\x04")

        writer = threading.Thread(target=device)
        writer.start()
        data = recorder.read(4)
        writer.join()
        assert pty.read(1, timeout=1.0) == b"?"
    exchange = recorder.exchanges[0]
    assert data == bytes(exchange.answer) == b"\x01\x02\x03\x04"
    assert stamped_before_rest == [True]
    assert exchange.first_byte_ms <= exchange.last_byte_ms


@pytest.mark.parametrize("size, mark, tail", [(16, 16, "0010  ^^"), (3, 1, "         ^^"), (0, None, "0000  ")])
def test_hex_dump_marks(size, mark, tail):
    assert hex_dump(bytes(size), mark)[-1] == tail
