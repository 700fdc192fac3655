"""How fast ``linli replay`` runs a street's year of water meters; asserts nothing.

Run: ``python tests/bench/bench_replay_street.py [--homes 300] [--days 365] [--repeat 1]``

The trace is what a street's concentrator gateway records: ``--homes`` water meters
read every hour for ``--days`` days (300 × 8,760 = 2.6 M rows), interleaved in time
order, each meter a few seconds to minutes past the hour as M-Bus polling spreads
them, in Europe/Madrid's time (the zone of the DAIAD trial, so both DST changes are
in it), written as ISO 8601 with the offset like ``tests/data/traces/daiad_household_week.csv``.
Each home uses water by a day/night pattern of its own (more in the morning and the
evening, little at night), with random amounts; some homes go away for a week, some
have a cistern leaking for a few days, some meters fall silent for hours. The seed is
fixed, so every run writes the same trace.

Each home has two to four counter rules: inactivity 12 h (at least 0.01 m³), silent
after 2 h, and for most homes more than 1.5 m³ a day, for a quarter of them water in
every hour for a day.

Figures:
- ``in-process``: :class:`edge.replay.TraceReplay` over the file, the median of ``--repeat`` runs,
  with the peak resident memory of this process (which also wrote the trace, a line at a time);
- ``command``: ``python -m edge.cli replay --json`` to /dev/null in a child process, the median of
  ``--repeat`` runs, interpreter start included, with the child's own peak resident memory (VmHWM).
"""

from __future__ import annotations

import argparse
import datetime
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import zoneinfo
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edge.config import load_config
from edge.replay import TraceReplay

ROOT = Path(__file__).resolve().parents[2]
ZONE = zoneinfo.ZoneInfo("Europe/Madrid")
START = datetime.datetime(2026, 1, 1, tzinfo=ZONE)
SEED = 20260105

#: How likely a home uses water in each local hour of the day (a person living alone).
HOURLY_USE = [0.05, 0.03, 0.02, 0.02, 0.03, 0.1, 0.45, 0.8, 0.7, 0.45, 0.4, 0.45,
              0.6, 0.5, 0.35, 0.3, 0.3, 0.4, 0.55, 0.7, 0.7, 0.6, 0.45, 0.15]

GATEWAY = """
[gateway]
id = "gw-street-07"
grid = "shimen2/xinfukangli/street"
timezone = "Europe/Madrid"

[[bus]]
name = "mbus-1"
kind = "serial"
port = "/dev/ttyUSB0"
baudrate = 2400
"""

HOME = """
[[sensor]]
id = "{home}"
driver = "mbus_meter"
bus = "mbus-1"
address = "{address}"
interval = "1h"

[[rule]]
id = "no-water-12h"
sensor = "{home}"
quantity = "volume"
kind = "inactivity"
min_increase = 0.01
window = "12h"

[[rule]]
id = "silent"
sensor = "{home}"
quantity = "volume"
kind = "stale"
after = "2h"
"""

DAILY_TOTAL = """
[[rule]]
id = "over-1500l"
sensor = "{home}"
quantity = "volume"
kind = "daily_total"
above = 1.5
"""

LEAK = """
[[rule]]
id = "leak"
sensor = "{home}"
quantity = "volume"
kind = "continuous_use"
bin = "1h"
window = "24h"
min_increase = 0.001
"""


def home_name(index: int) -> str:
    return f"home-{index + 1:03d}-water"


def write_config(path: Path, homes: int) -> int:
    """The street's config; returns how many rules it has."""
    parts, rules = [GATEWAY], 0
    for index in range(homes):
        home = home_name(index)
        parts.append(HOME.format(home=home, address=f"{10_000_000 + index}"))
        rules += 2
        if index % 3:
            parts.append(DAILY_TOTAL.format(home=home))
            rules += 1
        if index % 4 == 0:
            parts.append(LEAK.format(home=home))
            rules += 1
    path.write_text("".join(parts), encoding="utf-8")
    return rules


class Home:
    """One home's meter and habits."""

    def __init__(self, index: int, rng: random.Random, days: int):
        self.name = home_name(index)
        self.volume = round(rng.uniform(50, 900), 3)
        self.appetite = rng.uniform(0.8, 1.25)          # how much more or less than usual this person uses
        self.away = self._stretch(rng, days, 0.3, 7 * 24)
        self.leak = self._stretch(rng, days, 0.15, 3 * 24)
        self.silent = self._stretch(rng, days, 0.2, rng.randint(3, 30))

    @staticmethod
    def _stretch(rng: random.Random, days: int, chance: float, hours: int) -> range:
        if rng.random() >= chance or days * 24 <= hours:
            return range(0)
        start = rng.randrange(days * 24 - hours)
        return range(start, start + hours)

    def reading(self, hour: int, local_hour: int, rng: random.Random) -> str | None:
        """The meter's value after ``hour`` as the trace writes it; ``None`` while the meter is silent."""
        if hour not in self.away and rng.random() < HOURLY_USE[local_hour] * self.appetite:
            self.volume += rng.uniform(0.008, 0.06)
        if hour in self.leak:
            self.volume += 0.0015
        return None if hour in self.silent else f"{self.volume:.3f}"


def write_trace(path: Path, homes: int, days: int) -> int:
    """The street's interleaved year, deterministic; returns the number of rows."""
    rng = random.Random(SEED)
    street = [Home(index, rng, days) for index in range(homes)]
    # Each meter is read at its own second of the hour, as a poll of the line reaches it.
    second_of_hour = sorted(((rng.randrange(3600), home) for home in street), key=lambda pair: pair[0])
    rows = 0
    with open(path, "w", encoding="utf-8") as file:
        file.write("ts,sensor,quantity,value\n")
        for hour in range(days * 24):
            top = (START.astimezone(datetime.timezone.utc) + datetime.timedelta(hours=hour)).astimezone(ZONE)
            offset = top.isoformat()[19:]
            prefix = top.strftime("%Y-%m-%dT%H")
            lines = []
            for second, home in second_of_hour:
                value = home.reading(hour, top.hour, rng)
                if value is not None:
                    minute, sec = divmod(second, 60)
                    lines.append(f"{prefix}:{minute:02d}:{sec:02d}{offset},{home.name},volume,{value}\n")
            file.write("".join(lines))
            rows += len(lines)
    return rows


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--homes", type=int, default=300)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--skip-command", action="store_true", help="time the in-process replay only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        config_path, trace_path = Path(folder) / "street.toml", Path(folder) / "street.csv"
        rules = write_config(config_path, args.homes)
        started = time.perf_counter()
        rows = write_trace(trace_path, args.homes, args.days)
        print(f"trace: {args.homes} homes, {rules} rules, {rows:,} rows, {trace_path.stat().st_size / 2**20:.0f} MiB "
              f"(written in {time.perf_counter() - started:.1f} s)")
        config = load_config(config_path)

        times, replayed = [], None
        for _ in range(args.repeat):
            started = time.perf_counter()
            replayed = TraceReplay(config, str(trace_path))
            for _transition in replayed:
                pass
            times.append(time.perf_counter() - started)
        seconds = statistics.median(times)
        print(f"in-process: {replayed.rows:,} rows, {replayed.transitions:,} transitions in {seconds:.1f} s "
              f"({replayed.rows / seconds:,.0f} rows/s), peak RSS {peak_mib():.1f} MiB")
        if args.skip_command:
            return

        report = Path(folder) / "peak"
        command = [sys.executable, "-m", "tests.replay_helpers", str(report),
                   "replay", "--config", str(config_path), str(trace_path), "--json"]
        times, peaks, code = [], [], 0
        for _ in range(args.repeat):
            started = time.perf_counter()
            code = subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, check=False).returncode
            times.append(time.perf_counter() - started)
            peaks.append(int(report.read_text()) / 1024)
        seconds = statistics.median(times)
        print(f"command:    exit {code}, {rows:,} rows in {seconds:.1f} s ({rows / seconds:,.0f} rows/s, "
              f"python start-up included), peak RSS {max(peaks):.1f} MiB")


if __name__ == "__main__":
    main()
