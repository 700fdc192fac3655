"""The fixed and the learned inactivity rule on the real homes of the DAIAD trial; asserts nothing.

Run: ``python tests/bench/bench_routine.py [--data DIR] [--incidents N]``

``DIR`` holds the trial's ``swm_trialA.zip`` and ``swm_trialA_extended.zip`` (default:
``../shared/data/daiad`` beside the repository). They become one trace of every home
(:mod:`tests.bench.daiad_trace`), and then, each in a child process timed with its
peak resident memory:

- ``linli replay --json`` with a config giving every home the fixed rule
  (``inactivity``, 10 L in 12 h) and the learned one (``routine``, defaults);
- ``linli evaluate --each-sensor`` with one meter's two rules applied to every home:
  without the sensitivity curve, with it, and with ``--incidents N`` (default 10),
  whose figures — false alarms per home per 30 days, detection delay — are printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench import daiad_trace  # noqa: E402
from tests.bench.bench_replay_street import GATEWAY  # noqa: E402  (a gateway with one M-Bus line, Madrid's time)
from tests.replay_helpers import measured_linli  # noqa: E402

HOME = """
[[sensor]]
id = "{sensor}"
driver = "mbus_meter"
bus = "mbus-1"
address = "{address}"
interval = "1h"

[[rule]]
id = "no-water-12h"
sensor = "{sensor}"
quantity = "volume"
kind = "inactivity"
min_increase = 0.01
window = "12h"

[[rule]]
id = "routine"
sensor = "{sensor}"
quantity = "volume"
kind = "routine"
"""


def linli(folder: Path, *args: str) -> tuple[str, float, float]:
    """Run ``linli`` in a child; its last line of output, wall seconds and its own peak resident MiB."""
    measured = measured_linli(folder / "peak", *args)
    if measured.returncode:
        raise SystemExit(f"linli {' '.join(args)} failed: {measured.stderr}")
    return measured.last_line, measured.seconds, measured.peak_kib / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "daiad")
    parser.add_argument("--incidents", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        trace = folder / "street.csv"
        daiad_trace.main([str(args.data / "swm_trialA.zip"), str(args.data / "swm_trialA_extended.zip"),
                          "--out", str(trace)])
        rows = sum(1 for _ in trace.open()) - 2
        sensors = sorted({line.split(",")[1] for line in trace.open() if line[0].isdigit()})
        every = folder / "every-home.toml"
        every.write_text(GATEWAY + "".join(HOME.format(sensor=sensor, address=10_000_000 + index)
                                           for index, sensor in enumerate(sensors)))
        one = folder / "one-home.toml"
        one.write_text(GATEWAY + HOME.format(sensor=sensors[0], address=10_000_000))
        print(f"{rows:,} readings of {len(sensors)} homes")
        _last, seconds, peak = linli(folder, "replay", "--config", str(every), str(trace), "--json")
        print(f"replay --json, both rules on every home: {seconds:.1f} s, {rows / seconds:,.0f} rows/s, "
              f"peak {peak:.1f} MiB")
        for label, extra in (("evaluate --no-curve", ["--no-curve"]), ("evaluate", []),
                             (f"evaluate --incidents {args.incidents}", ["--incidents", str(args.incidents)])):
            out, seconds, peak = linli(folder, "evaluate", "--config", str(one), str(trace), "--each-sensor", "--json",
                                       *extra)
            print(f"{label}: {seconds:.1f} s, {rows / seconds:,.0f} rows/s, peak {peak:.1f} MiB")
        for rule in json.loads(out)["rules"]:
            alarms, found = rule["alarms"], rule["incidents"]
            print(f"  {rule['rule']}: nuisance {alarms['nuisance']['per_30d']}, "
                  f"welfare {alarms['welfare']['per_30d']}, all {alarms['all']['per_30d']} per home per 30 days; "
                  f"{found['count']} incidents: median {found['median_delay_h']} h, "
                  f"p90 {found['p90_delay_h']} h, within 24 h {found['within_24h']}")
            for point in rule["curve"]:
                print(f"    {point['option']} = {point['value']}: nuisance {point['nuisance_per_30d']}, "
                      f"all {point['all_per_30d']}, median {point['median_delay_h']} h, "
                      f"within 24 h {point['within_24h']}")


if __name__ == "__main__":
    main()
