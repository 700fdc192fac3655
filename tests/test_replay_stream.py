"""``linli replay`` streams: memory does not grow with the trace, alarms come out as the rows come in.

Each test runs the real command in a child process: what is measured is what a technician's
laptop (or a Pi) would see.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

from tests.replay_helpers import FLAPPING_CONFIG, ROOT, T0, measured_linli, write_flapping_trace

#: Peak resident memory allowed for replaying LONG_ROWS rows. The streaming replay stays near 28 MiB whatever the
#: length; the replay that kept every transition took 494 MiB here (284 MiB with --json) for the same trace.
PEAK_BOUND_KIB = 100 * 1024
LONG_ROWS = 200_000


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(FLAPPING_CONFIG, encoding="utf-8")
    return path


def linli(*args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edge.cli", *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


def line_within(proc: subprocess.Popen, seconds: float) -> str:
    """The next line ``proc`` writes, waiting at most ``seconds`` for it."""
    ready, _, _ = select.select([proc.stdout], [], [], seconds)
    assert ready, f"no line from the replay within {seconds} s"
    line = proc.stdout.readline()
    assert line, f"the replay ended instead (exit {proc.wait()}): {proc.stderr.read()}"
    return line


def test_memory_stays_flat_however_many_transitions_a_trace_makes(tmp_path, config):
    trace = tmp_path / "long.csv"
    write_flapping_trace(trace, LONG_ROWS)
    run = measured_linli(tmp_path / "peak", "replay", "--config", str(config), str(trace))
    assert (run.returncode, run.stderr) == (0, "")
    assert run.lines == 1 + 2 * LONG_ROWS  # the header, every transition, the total
    assert run.last_line == f"{LONG_ROWS} readings replayed, {2 * LONG_ROWS - 1} alarm transitions"
    assert run.peak_kib < PEAK_BOUND_KIB, f"peak resident memory {run.peak_kib} kB"


def test_the_first_alarm_is_written_while_the_trace_is_still_being_written(tmp_path, config):
    fifo = tmp_path / "trace.csv"
    os.mkfifo(fifo)
    # Opened for reading and writing, the pipe does not wait for the replay to open it, and the replay
    # sees no end of the trace until this test closes it.
    writer = os.open(fifo, os.O_RDWR)
    proc = linli("replay", "--config", str(config), str(fifo), "--json")
    try:
        os.write(writer, f"ts,sensor,quantity,value\n{T0},pump-pressure,pressure,0.5\n".encode())
        first = json.loads(line_within(proc, 30))
        assert (first["alarm"], first["state"]) == ("pump-pressure/high", "raised")
        assert proc.poll() is None, "the replay still waits for the rest of the trace"
        os.write(writer, f"{T0 + 60_000},pump-pressure,pressure,0.05\n".encode())
        os.close(writer)
        writer = -1
        out, err = proc.communicate(timeout=60)
    finally:
        if writer >= 0:
            os.close(writer)
        proc.kill()
        proc.wait()
    assert (proc.returncode, err) == (0, "")
    assert [(t["alarm"], t["state"]) for t in map(json.loads, out.splitlines())] == [
        ("pump-pressure/low", "raised"), ("pump-pressure/high", "cleared")]


@pytest.mark.parametrize("extra", [(), ("--json",)], ids=["table", "json"])
def test_a_reader_that_stops_early_ends_the_replay_quietly(tmp_path, config, extra):
    # "linli replay … | head -1": the replay must stop at once, with no traceback and no error.
    trace = tmp_path / "long.csv"
    write_flapping_trace(trace, 20_000)
    proc = linli("replay", "--config", str(config), str(trace), *extra)
    try:
        assert line_within(proc, 30)
        proc.stdout.close()
        assert proc.wait(timeout=60) == 0
        assert proc.stderr.read() == ""
    finally:
        proc.kill()
        proc.wait()


def test_sensors_no_rule_watches_are_named_up_to_a_limit(tmp_path, config):
    trace = tmp_path / "stray.csv"
    trace.write_text("ts,sensor,quantity,value\n"
                     + "".join(f"{T0 + n * 1000},flat-{n:03d}-water,volume,1\n" for n in range(25))
                     + f"{T0 + 30_000},flat-000-water,volume,2\n")
    proc = linli("replay", "--config", str(config), str(trace))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert out == "26 readings replayed, 0 alarm transitions\n"
    assert err.splitlines() == [
        *(f"warning: no rule watches volume of sensor flat-{n:03d}-water in the trace" for n in range(20)),
        "warning: more sensors in the trace that no rule watches; only the first 20 are named",
    ]
