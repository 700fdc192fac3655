"""Long replays made on the fly, and the peak memory of the process that replays them.

``python -m tests.replay_helpers REPORT ARG...`` runs ``linli ARG...`` in this process, then
writes the process's peak resident memory (VmHWM from /proc/self/status, in kB) to the file
REPORT: what the command needed at its worst, interpreter included, as the kernel counted it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from edge.cli import main

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_767_571_200_000  # 2026-01-05T08:00:00+08:00

#: The pump room's pressure with a rule on each side of it: a reading across both limits moves two alarms.
FLAPPING_CONFIG = """
[gateway]
id = "gw-0042"
grid = "shimen2/xinfukangli/b07"
timezone = "Asia/Shanghai"

[[bus]]
name = "rs485-1"
kind = "serial"
port = "/dev/ttyUSB0"

[[sensor]]
id = "pump-pressure"
driver = "modbus_pressure"
bus = "rs485-1"
address = 1
interval = "3s"

[[rule]]
id = "low"
sensor = "pump-pressure"
quantity = "pressure"
kind = "threshold"
below = 0.1

[[rule]]
id = "high"
sensor = "pump-pressure"
quantity = "pressure"
kind = "threshold"
above = 0.3
"""


def write_flapping_trace(path: Path, rows: int) -> None:
    """A reading a minute swinging between 0.5 and 0.05 MPa: ``2 * rows - 1`` transitions (one on the first row)."""
    with open(path, "w", encoding="utf-8") as file:
        file.write("ts,sensor,quantity,value\n")
        for row in range(rows):
            file.write(f"{T0 + row * 60_000},pump-pressure,pressure,{0.05 if row % 2 else 0.5}\n")


@dataclass
class Measured:
    """What one ``linli`` run in a child process gave."""

    returncode: int
    peak_kib: int
    seconds: float
    lines: int       # lines written to stdout
    last_line: str
    stderr: str


def measured_linli(report: Path, *args: str) -> Measured:
    """Run ``linli *args`` in a child process, reading its stdout as it comes; its peak memory, time and output."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "tests.replay_helpers", str(report), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines, last_line = 0, ""
    for line in proc.stdout:  # counted as it comes, so the reader never holds the whole output either
        lines, last_line = lines + 1, line
    stderr = proc.stderr.read()
    returncode = proc.wait()
    seconds = time.perf_counter() - started
    return Measured(returncode, int(report.read_text()), seconds, lines, last_line.rstrip("\n"), stderr)


def peak_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("/proc/self/status has no VmHWM line")


if __name__ == "__main__":
    code = main(sys.argv[2:])
    Path(sys.argv[1]).write_text(str(peak_kib()), encoding="ascii")
    sys.exit(code)
