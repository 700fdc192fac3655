"""Turn the DAIAD trial's smart-water-meter readings into one ``linli replay`` trace of every home.

Run: ``python tests/bench/daiad_trace.py ZIP [ZIP ...] --out street.csv``

The DAIAD trial A data (Alicante, 2016–2017; https://github.com/DAIAD/data, CC BY-SA
4.0) is a ``;``-separated CSV inside each zip: ``user key;datetime;meter reading;diff``,
the datetime in local time (Europe/Madrid) without an offset, the reading a cumulative
volume in litres. The trace has every home interleaved in time order: sensor
``daiad-<first 8 hex digits of the key>``, quantity ``volume``, the value in m³, the
time in epoch milliseconds (an hour that occurs twice when the clocks go back is read
as its first occurrence). A reading repeated at the same second keeps the last value;
the data's glitches (negative or huge jumps) stay, as a gateway would see them.
Anything derived from the data must name its source and keep its licence.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import io
import sys
import zipfile
import zoneinfo
from collections.abc import Iterator
from pathlib import Path

ZONE = zoneinfo.ZoneInfo("Europe/Madrid")


def readings(archive: Path) -> Iterator[tuple[int, str, float]]:
    """``(epoch ms, sensor, m³)`` of every row of every CSV in ``archive``."""
    with zipfile.ZipFile(archive) as opened:
        for name in opened.namelist():
            if not name.endswith(".csv"):
                continue
            with opened.open(name) as raw:
                rows = csv.reader(io.TextIOWrapper(raw, encoding="utf-8"), delimiter=";")
                next(rows)   # the header: "user key;datetime;meter reading;diff", or V1..V4 in the extension
                for key, when, litres, _diff in rows:
                    local = datetime.datetime.strptime(when, "%d/%m/%Y %H:%M:%S").replace(tzinfo=ZONE)
                    yield int(local.timestamp()) * 1000, f"daiad-{key[:8]}", float(litres) / 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archives", nargs="+", type=Path, help="swm_trialA.zip, swm_trialA_extended.zip")
    parser.add_argument("--out", type=Path, required=True, help="the trace to write")
    args = parser.parse_args(argv)
    latest: dict[tuple[int, str], float] = {}
    for archive in args.archives:
        for ts, sensor, value in readings(archive):
            latest[(ts, sensor)] = value
    with args.out.open("w", encoding="utf-8") as out:
        out.write("# Derived from the DAIAD trial A smart water meter data, https://github.com/DAIAD/data, "
                  "CC BY-SA 4.0\nts,sensor,quantity,value\n")
        for (ts, sensor), value in sorted(latest.items()):
            out.write(f"{ts},{sensor},volume,{value:.3f}\n")
    print(f"{len(latest)} readings of {len({sensor for _ts, sensor in latest})} homes -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
