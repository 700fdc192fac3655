"""``linli replay``: reading traces strictly, the trace-driven clock, and what the technician sees."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zoneinfo

import pytest

from edge.replay import replay
from edge.trace import MAX_LINE_BYTES, TraceError, format_ts, parse_ts, read_trace, trace_lines
from edge.rules import RuleConfig, RuleEngine
from tests.test_rules_scenarios import ROOT, gateway_config

HEADER = "ts,sensor,quantity,value\n"
T0 = 1_767_571_200_000  # 2026-01-05T08:00:00+08:00


def rows(text: str) -> list[dict]:
    return list(read_trace(io.StringIO(text), name="t.csv"))


def failure(text: str) -> str:
    with pytest.raises(TraceError) as caught:
        rows(text)
    assert caught.value.exit_code == 65
    return str(caught.value)


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=60)


# --- reading a trace -------------------------------------------------------------------------------------
def test_rows_become_readings_with_iso_or_epoch_times_bools_and_quality():
    found = rows("ts,quantity,sensor,value,quality,unit\n"
                 "2026-01-05T08:00:00+08:00,volume,m1,12.5,good,m3\n"
                 "# a comment line\n"
                 "\n"
                 "1767571200500,presence,bed,TRUE,,\n"
                 "2026-01-05T00:00:01Z,volume,m1,,bad,m3\n")
    assert found == [
        {"kind": "reading", "sensor": "m1", "quantity": "volume", "value": 12.5, "quality": "good", "ts": T0,
         "unit": "m3"},
        {"kind": "reading", "sensor": "bed", "quantity": "presence", "value": True, "quality": "good",
         "ts": T0 + 500},
        {"kind": "reading", "sensor": "m1", "quantity": "volume", "value": None, "quality": "bad", "ts": T0 + 1000,
         "unit": "m3"},
    ]


def test_equal_times_are_in_order():
    found = rows(HEADER + f"{T0},a,volume,1\n{T0},b,volume,2\n")
    assert [r["sensor"] for r in found] == ["a", "b"]


def test_rows_out_of_time_order_name_both_lines_counting_comments():
    message = failure(HEADER + f"{T0 + 1000},m1,volume,1\n# pause\n{T0},m1,volume,1\n")
    assert message.startswith("t.csv line 4: rows must be in time order")
    assert "on line 2" in message and str(T0) in message


@pytest.mark.parametrize(("line", "expected"), [
    ("2026-01-05T08:00,m1,volume,1", 'ts "2026-01-05T08:00" has no UTC offset'),
    ("yesterday,m1,volume,1", 'ts must be ISO 8601 with a UTC offset'),
    ("1767571200,m1,volume,1", "epoch seconds must be multiplied by 1000"),
    (f"{T0},m1,volume,1.2.3", 'value must be a number, true or false, got "1.2.3"'),
    (f"{T0},m1,volume,nan", 'got "nan"'),
    (f"{T0},m1,volume,inf", 'got "inf"'),
    (f"{T0},m1,volume,", "value is empty; only a reading of quality bad may have no value"),
    (f"{T0},,volume,1", "sensor is empty"),
    (f"{T0},m1,volume", "expected 4 fields like the header (ts,sensor,quantity,value), got 3"),
])
def test_a_bad_row_is_refused_with_its_line_number(line, expected):
    message = failure(HEADER + f"{T0},m1,volume,1\n" + line + "\n")
    assert message.startswith("t.csv line 3: ") and expected in message


def test_a_bad_quality_is_refused():
    assert 'quality must be good, uncertain or bad, got "ok"' in failure(
        "ts,sensor,quantity,value,quality\n" f"{T0},m1,volume,1,ok\n")


@pytest.mark.parametrize(("header", "expected"), [
    ("ts,sensor,value", "missing quantity"),
    ("ts,sensor,quantity,value,qualty", "unknown qualty"),
    ("ts,sensor,quantity,value,ts", "repeated ts"),
])
def test_a_bad_header_is_refused(header, expected):
    message = failure(header + "\n")
    assert message.startswith("t.csv line 1: bad header") and expected in message


def test_a_header_of_a_million_columns_is_refused_with_a_short_message():
    # Checked in linear time and named briefly: repeated or unknown names are listed up to five.
    assert failure("," * 1_000_000 + "\n") == (
        't.csv line 1: bad header (missing ts, sensor, quantity, value; unknown ""; repeated ""); '
        "expected the columns ts,sensor,quantity,value and optionally quality, unit")
    assert "unknown c0, c1, c2, c3, c4, …);" in failure(HEADER.strip() + "".join(f",c{n}" for n in range(100)) + "\n")


def test_an_empty_trace_is_refused():
    assert "t.csv is empty" in failure("")


@pytest.mark.parametrize(("ts", "expected"), [
    ("99999999999999999", 'ts "99999999999999999" is not between 1973 and 9000'),
    ("9" * 5000, 'ts "' + "9" * 40 + '…" is not between 1973 and 9000'),  # more digits than int() takes
    ("1900-01-01T00:00:00Z", 'ts "1900-01-01T00:00:00Z" is not between 1973 and 9000'),
    ("0001-01-01T00:00:00+08:00", 'ts "0001-01-01T00:00:00+08:00" is not between 1973 and 9000'),
    ("\u00b2", 'ts must be ISO 8601 with a UTC offset (2026-01-05T08:00:00+08:00) or epoch milliseconds, got "\u00b2"'),
])
def test_a_time_no_meter_recorded_is_refused(ts, expected):
    assert failure(HEADER + f"{ts},m1,volume,1\n").startswith(f"t.csv line 2: {expected}")


def test_a_field_in_a_message_is_cut_short_with_its_control_characters_escaped():
    message = failure(HEADER + f'{T0},m1,volume,"1\x1b[2J' + "x" * 100 + '"\n')
    assert message == 't.csv line 2: value must be a number, true or false, got "1\\x1b[2J' + "x" * 35 + '…"'


@pytest.mark.parametrize("after", [f"{T0},m1,volume,2\n", "# a comment\n", ""])
def test_a_quoted_field_left_open_is_refused_on_its_own_line(after):
    # Left open, it would swallow every line after it into one field.
    assert failure(HEADER + f'{T0},m1,volume,"1\n' + after) == (
        't.csv line 2: a quoted field is not closed on its line; is a " missing?')


def test_a_header_after_comment_lines_is_named_by_its_own_line():
    assert failure("# exported by the meter tool\n# 2026-01\nts,sensor,value\n").startswith(
        "t.csv line 3: bad header (missing quantity)")


def test_a_byte_order_mark_and_crlf_line_ends_read_as_plain_lines():
    data = b"\xef\xbb\xbf" + (HEADER + f"{T0},m1,volume,1.5\n").replace("\n", "\r\n").encode()
    found = list(read_trace(trace_lines(io.BytesIO(data), "traces/t.csv"), name="t.csv"))
    assert [(r["sensor"], r["value"], r["ts"]) for r in found] == [("m1", 1.5, T0)]


def test_bytes_that_are_not_utf8_are_named_by_line_and_byte():
    with pytest.raises(TraceError) as caught:
        list(trace_lines(io.BytesIO(b"ts\nok\nab\xffc\n"), "traces/t.csv"))
    assert str(caught.value) == "t.csv line 3: not UTF-8 text (byte 3 of the line); save the trace as UTF-8"


class EndlessLine:
    """A trace whose second line never ends; counts the bytes it hands out."""

    def __init__(self):
        self.given = 0

    def read(self, size: int) -> bytes:
        chunk = HEADER.encode() if self.given == 0 else b"7" * size
        self.given += len(chunk)
        return chunk


def test_an_overlong_line_is_refused_without_reading_the_rest_of_it():
    source = EndlessLine()
    with pytest.raises(TraceError) as caught:
        list(trace_lines(source, "t.csv"))
    assert str(caught.value) == (
        f"t.csv line 2: longer than {MAX_LINE_BYTES} bytes, so not a row of a trace; is it the right file?")
    assert source.given <= len(HEADER) + MAX_LINE_BYTES + 64 * 1024


def test_timestamps_round_trip_in_the_gateway_zone():
    zone = zoneinfo.ZoneInfo("Asia/Shanghai")
    assert format_ts(T0, zone) == "2026-01-05T08:00:00+08:00"
    assert format_ts(T0 + 7, zone) == "2026-01-05T08:00:00.007+08:00"
    assert parse_ts(format_ts(T0 + 7, zone)) == T0 + 7


# --- the trace-driven clock ------------------------------------------------------------------------------
def stale_engine() -> RuleEngine:
    rule = RuleConfig(id="silent", sensor="m1", quantity="volume", kind="stale", params={"after": 60.0})
    return RuleEngine([rule], timezone="Asia/Shanghai")


def reading(ts: int, value: float = 1.0, sensor: str = "m1") -> dict:
    return {"kind": "reading", "sensor": sensor, "quantity": "volume", "value": value, "quality": "good", "ts": ts}


def test_timers_fire_at_their_due_time_between_rows():
    # m1 reports at T0, then only m2 reports: the stale timer is due at T0+60 s, found by the row at T0+95 s.
    found = list(replay(stale_engine(),
                        [reading(T0), reading(T0 + 30_000, sensor="m2"), reading(T0 + 95_000, sensor="m2")]))
    assert [(t["alarm"], t["state"], t["ts"]) for t in found] == [("m1/silent", "raised", T0 + 60_000)]


def test_the_clock_stops_at_the_last_row():
    assert list(replay(stale_engine(), [reading(T0), reading(T0 + 59_999, sensor="m2")])) == []


def test_a_timer_due_exactly_at_a_row_fires_before_that_row_is_judged():
    # The row at the timer's due time is a good reading of m1 itself: the timer fires first, then the row clears.
    probe = stale_engine()
    probe.evaluate(reading(T0))
    due = probe.next_due()
    assert due is not None and due > T0
    found = list(replay(stale_engine(), [reading(T0), reading(due)]))
    assert [(t["state"], t["ts"]) for t in found] == [("raised", due), ("cleared", due)]


# --- the command -----------------------------------------------------------------------------------------
STALE_RULE = """
[[rule]]
id = "silent"
sensor = "flat-302-water"
quantity = "volume"
kind = "stale"
after = "1h"
severity = "critical"
"""
TRACE = ("ts,sensor,quantity,value\n"
         "2026-01-05T08:00:00+08:00,flat-302-water,volume,386.214\n"
         "2026-01-05T09:30:00+08:00,flat-301-water,volume,554.031\n"
         "2026-01-05T09:45:00+08:00,flat-302-water,volume,386.215\n")


def test_json_lines_carry_exactly_the_documented_keys(tmp_path):
    config = gateway_config(tmp_path, STALE_RULE)
    trace = tmp_path / "trace.csv"
    trace.write_text(TRACE)
    proc = run("replay", "--config", str(config), str(trace), "--json")
    assert proc.returncode == 0, proc.stderr
    found = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [list(t) for t in found] == [["alarm", "state", "ts", "severity", "value", "limit"]] * 2
    assert [(t["alarm"], t["state"], t["ts"], t["severity"]) for t in found] == [
        ("flat-302-water/silent", "raised", "2026-01-05T09:00:00+08:00", "critical"),
        ("flat-302-water/silent", "cleared", "2026-01-05T09:45:00+08:00", "critical"),
    ]
    # flat-301 has no rule here: the technician is told, on stderr so the JSON stays clean.
    assert "no rule watches volume of sensor flat-301-water" in proc.stderr


def test_the_table_shows_local_time_alarm_state_and_severity(tmp_path):
    config = gateway_config(tmp_path, STALE_RULE)
    trace = tmp_path / "trace.csv"
    trace.write_text(TRACE)
    # --config before the subcommand works too
    proc = run("--config", str(config), "replay", str(trace))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["time", "alarm", "state", "severity", "value", "limit"]
    assert lines[1].split()[:4] == ["2026-01-05T09:00:00+08:00", "flat-302-water/silent", "raised", "critical"]
    assert lines[2].split()[:3] == ["2026-01-05T09:45:00+08:00", "flat-302-water/silent", "cleared"]
    assert lines[3] == "3 readings replayed, 2 alarm transitions"


def test_a_missing_trace_exits_66_without_a_traceback(tmp_path):
    config = gateway_config(tmp_path, STALE_RULE)
    proc = run("replay", "--config", str(config), str(tmp_path / "nope.csv"))
    assert proc.returncode == 66
    assert f'no such file "{tmp_path / "nope.csv"}"' in proc.stderr and "Traceback" not in proc.stderr
    assert run("replay", "--config", str(config), str(tmp_path)).returncode == 66


def test_a_trace_out_of_order_stops_at_its_line_and_says_what_was_written_before(tmp_path):
    # Transitions are written as they happen, so those of the rows before the bad one are out already;
    # the message says the replay stopped there, so nobody takes them for the whole trace's.
    config = gateway_config(tmp_path, STALE_RULE)
    trace = tmp_path / "trace.csv"
    trace.write_text(TRACE + "2026-01-05T09:00:00+08:00,flat-302-water,volume,386.215\n")
    proc = run("replay", "--config", str(config), str(trace), "--json")
    assert proc.returncode == 65
    assert [json.loads(line)["state"] for line in proc.stdout.splitlines()] == ["raised", "cleared"]
    assert proc.stderr.splitlines() == [
        "error: trace.csv line 5: rows must be in time order, but 2026-01-05T09:00:00+08:00 is earlier than "
        "2026-01-05T01:45:00+00:00 on line 4",
        "  the replay stopped there: the 2 alarm transitions written before come from the rows before it",
    ]


def test_the_table_stops_without_a_total_when_a_row_is_bad(tmp_path):
    config = gateway_config(tmp_path, STALE_RULE)
    trace = tmp_path / "trace.csv"
    trace.write_text(TRACE + "2026-01-05T10:00:00+08:00,flat-302-water,volume,lots\n")
    proc = run("replay", "--config", str(config), str(trace))
    assert proc.returncode == 65
    assert [line.split()[2] for line in proc.stdout.splitlines()] == ["state", "raised", "cleared"]
    assert 'trace.csv line 5: value must be a number, true or false, got "lots"' in proc.stderr


def test_a_header_over_the_csv_limit_exits_65():
    with pytest.raises(TraceError, match=r"^t.csv line 1: not readable as CSV"):
        list(read_trace(io.StringIO("ts," + "x" * 200_000 + "\n"), name="t.csv"))


TOO_LONG = HEADER + "7" * (2 * MAX_LINE_BYTES) + "\n"


@pytest.mark.parametrize(("content", "expected"), [
    (HEADER + f"{T0},flat-302-water,volume\n",
     "line 2: expected 4 fields like the header (ts,sensor,quantity,value), got 3"),
    (HEADER + f"{T0},flat-302-water,volume,12,5\n",
     "line 2: expected 4 fields like the header (ts,sensor,quantity,value), got 5"),
    (HEADER + f"{T0},flat-302-water,volume,12.5m3\n", 'line 2: value must be a number, true or false, got "12.5m3"'),
    ("ts,sensor,quantity,value,quality\n" f"{T0},flat-302-water,volume,1,ok\n",
     'line 2: quality must be good, uncertain or bad, got "ok"'),
    (HEADER + f"{T0},flat-302-water,volume,1\n{T0 - 1000},flat-302-water,volume,1\n",
     f"line 3: rows must be in time order, but {T0 - 1000} is earlier than 2026-01-05T00:00:00+00:00 on line 2"),
    (HEADER + "2026-01-05T08:00,flat-302-water,volume,1\n",
     'line 2: ts "2026-01-05T08:00" has no UTC offset; add one like +08:00 or Z'),
    (HEADER.encode() + b"\xff\xfe1,m1,volume,1\n",
     "line 2: not UTF-8 text (byte 1 of the line); save the trace as UTF-8"),
    (HEADER + f'{T0},flat-302-water,volume,"1\n', 'line 2: a quoted field is not closed on its line; is a " missing?'),
    (HEADER + "# a comment, counted as a line\n" + f"{T0},flat-302-water,volume," + "7" * 200_000 + "\n",
     "line 3: not readable as CSV (field larger than field limit (131072))"),
    (TOO_LONG, f"line 2: longer than {MAX_LINE_BYTES} bytes, so not a row of a trace; is it the right file?"),
], ids=["few-fields", "many-fields", "number", "quality", "time-order", "no-offset", "not-utf8", "open-quote",
        "csv-field-limit", "long-line"])
def test_every_bad_row_exits_65_naming_its_line_and_writes_nothing_else(tmp_path, content, expected):
    config = gateway_config(tmp_path, STALE_RULE)
    trace = tmp_path / "trace.csv"
    trace.write_bytes(content if isinstance(content, bytes) else content.encode())
    proc = run("replay", "--config", str(config), str(trace))
    assert (proc.returncode, proc.stderr, proc.stdout) == (65, f"error: trace.csv {expected}\n", "")


def test_a_file_that_cannot_be_read_exits_74_naming_it(tmp_path):
    config = gateway_config(tmp_path, STALE_RULE)
    # The kernel answers any read at the start of a process's own memory file with EIO.
    proc = run("replay", "--config", str(config), "/proc/self/mem")
    assert (proc.returncode, proc.stderr) == (74, 'error: cannot read "/proc/self/mem": Input/output error\n')


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_a_file_without_read_permission_exits_74_naming_it(tmp_path):
    config = gateway_config(tmp_path, STALE_RULE)
    trace = tmp_path / "trace.csv"
    trace.write_text(TRACE)
    trace.chmod(0)
    proc = run("replay", "--config", str(config), str(trace))
    assert (proc.returncode, proc.stderr) == (74, f'error: cannot read "{trace}": permission denied\n')


def test_a_bad_config_exits_78(tmp_path):
    config = gateway_config(tmp_path, STALE_RULE.replace('"flat-302-water"', '"flat-999-water"'))
    trace = tmp_path / "trace.csv"
    trace.write_text(TRACE)
    proc = run("replay", "--config", str(config), str(trace))
    assert proc.returncode == 78 and "rule[0].sensor" in proc.stderr


def test_errors_speak_chinese_under_a_chinese_locale(tmp_path):
    config = gateway_config(tmp_path, STALE_RULE)
    trace = tmp_path / "trace.csv"
    trace.write_text(HEADER + "2026-01-05T08:00,flat-302-water,volume,1\n")
    proc = run("replay", "--config", str(config), str(trace), env={"LANGUAGE": "zh_CN"})
    assert proc.returncode == 65
    assert any("\u4e00" <= ch <= "\u9fff" for ch in proc.stderr), proc.stderr
