"""How fast ``linli replay`` runs a year of one water meter, and how much memory long traces need; asserts nothing.

Run: ``python tests/bench/bench_replay.py [--repeat N] [--rows 10000,100000,1000000]``

The trace is 35,040 rows — a reading every 15 minutes for 365 days — of a senior's
meter: water in the morning, at noon and in the evening, a leak for two days in
spring, a week away in summer. The config carries the community's four meter rules
(inactivity 12 h, water in every half-hour of a day, more than 2 m³ a day, silent
meter), so every row goes through every timer and bin.

Figures (median of ``--repeat`` runs, default 3):
- ``in-process``: :class:`edge.replay.TraceReplay` — reading the CSV and running the rules;
- ``rules only``: the same readings already parsed, through :func:`edge.replay.replay`;
- ``command``: ``python -m edge.cli replay --json`` end to end, interpreter start included.

Then, once each, the memory a long trace needs: for each of ``--rows``, a trace of the
pump pressure swinging across two limits every minute (two transitions a row) replayed
by ``linli replay`` (table and ``--json``) in a child process whose output is read as it
comes; printed are its peak resident memory (VmHWM from its own /proc/self/status) and
the wall time, interpreter start included.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edge.config import load_config
from edge.replay import TraceReplay, replay
from edge.rules import RuleEngine
from edge.trace import read_trace
from tests.replay_helpers import FLAPPING_CONFIG, measured_linli, write_flapping_trace

ROWS = 365 * 96
START = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=8)))

CONFIG = """
[gateway]
id = "gw-0042"
grid = "shimen2/xinfukangli/b07"

[[bus]]
name = "gpio"
kind = "gpio"
pin_factory = "mock"

[[sensor]]
id = "flat-302-water"
driver = "pulse_meter"
bus = "gpio"
pin = 17
litres_per_pulse = 1.0
interval = "15m"

[[rule]]
id = "no-water-12h"
sensor = "flat-302-water"
quantity = "volume"
kind = "inactivity"
min_increase = 0.01
window = "12h"

[[rule]]
id = "leak"
sensor = "flat-302-water"
quantity = "volume"
kind = "continuous_use"
bin = "30m"
window = "24h"
min_increase = 0.001

[[rule]]
id = "over-2m3"
sensor = "flat-302-water"
quantity = "volume"
kind = "daily_total"
above = 2.0

[[rule]]
id = "silent"
sensor = "flat-302-water"
quantity = "volume"
kind = "stale"
after = "1h"
"""


def write_trace(path: Path) -> None:
    """A year of one household's meter, deterministic."""
    volume = 386.214
    lines = ["ts,sensor,quantity,value"]
    for i in range(ROWS):
        moment = START + datetime.timedelta(minutes=15 * i)
        day, slot = divmod(i, 96)
        away = 200 <= day < 207
        if not away and slot in (27, 28, 48, 72, 73, 84):  # 06:45, 07:00, 12:00, 18:00, 18:15, 21:00
            volume += 0.012 + (day % 7) * 0.002
        if 90 <= day < 92:  # a dripping tap: 1.5 L every quarter-hour for two days
            volume += 0.0015
        lines.append(f"{int(moment.timestamp() * 1000)},flat-302-water,volume,{volume:.4f}")
    path.write_text("\n".join(lines) + "\n")


def median_seconds(run, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def count(iterable) -> int:
    return sum(1 for _ in iterable)


def long_traces(folder: Path, rows: list[int]) -> None:
    """Peak memory and time of ``linli replay`` on traces of ``rows`` rows, two transitions each."""
    config_path = folder / "pump.toml"
    config_path.write_text(FLAPPING_CONFIG)
    print("long traces, two transitions a row: rows, output, peak RSS (VmHWM), wall time")
    for size in rows:
        trace_path = folder / f"flapping-{size}.csv"
        write_flapping_trace(trace_path, size)
        for extra in ((), ("--json",)):
            run = measured_linli(folder / "peak", "replay", "--config", str(config_path), str(trace_path), *extra)
            shown = "--json" if extra else "table"
            print(f"  {size:>9,} rows  {shown:<6}  exit {run.returncode}, {run.lines:,} lines, "
                  f"peak {run.peak_kib / 1024:.1f} MiB, {run.seconds:.1f} s")
        trace_path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rows", default="10000,100000,1000000",
                        help="lengths of the long traces, comma-separated (default: %(default)s)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        config_path, trace_path = Path(folder) / "edge.toml", Path(folder) / "year.csv"
        config_path.write_text(CONFIG)
        write_trace(trace_path)
        config = load_config(config_path)

        def in_process() -> TraceReplay:
            replayed = TraceReplay(config, str(trace_path))
            count(replayed)
            return replayed

        seconds, replayed = median_seconds(in_process, args.repeat)
        print(f"in-process: {replayed.rows} rows, {replayed.transitions} transitions in {seconds:.3f} s "
              f"({replayed.rows / seconds:,.0f} rows/s)")

        with open(trace_path) as file:
            readings = list(read_trace(file))
        seconds, found = median_seconds(
            lambda: count(replay(RuleEngine(config.rules, timezone=config.gateway.timezone), readings)), args.repeat)
        print(f"rules only: {len(readings)} readings in {seconds:.3f} s ({len(readings) / seconds:,.0f} readings/s)")

        command = [sys.executable, "-m", "edge.cli", "replay", "--config", str(config_path), str(trace_path), "--json"]
        seconds, proc = median_seconds(lambda: subprocess.run(command, capture_output=True, text=True), args.repeat)
        print(f"command:    exit {proc.returncode}, {len(proc.stdout.splitlines())} lines in {seconds:.3f} s "
              "(python start-up included)")

        long_traces(Path(folder), [int(size) for size in args.rows.split(",")])


if __name__ == "__main__":
    main()
