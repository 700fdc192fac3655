"""A fleet of gateways on one mosquitto: steady load, a broker restart, an outage. Prints figures, asserts nothing.

Run:  python tests/bench/bench_fleet.py [--gateways 2000] [--readings 20 --every 10] [--duration 60]
                                        [--scenarios steady,restart,outage] [--outage 600] [--processes N]
      python tests/bench/bench_fleet.py --ramp 2000,4000,8000 --scenarios steady,restart   (the largest fleet)

Every gateway is the real thing minus its sensors: its own outbox file (``buffer.outbox.Outbox``),
its own ``edge.uplink.Uplink`` with its own config, client id, Last Will and retained status, and
readings shaped as the core stores them. Many gateways share a process (tests/bench/fleet_host.py);
one writer thread per process plays the agent's core for all of them. The central side is one
subscriber on ``linli/#`` with a persistent session (tests/bench/fleet_watch.py) that records every
seq, and the broker is a mosquitto set up for thousands of clients (tests/bench/fleet_broker.py).

Scenarios, in the order given:
  steady   readings flow for ``--duration`` s: end-to-end latency (reading ts → subscriber), CPU, memory;
  restart  mosquitto stopped and started on the same port: how long until every gateway is back
           (its ``online`` status), and the peak connect rate (connections per second);
  outage   mosquitto down for ``--outage`` s while readings are stored, then the backlog drains:
           how long until the subscriber has every seq stored before the broker came back.
After each: every seq stored up to that point must arrive; unexplained gaps and duplicates are counted,
by the benchmark's own subscriber and by ``linli audit``'s ledger (``edge.audit``), a second one.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edge.audit.ledger import Ledger  # noqa: E402
from edge.audit.listener import Auditor  # noqa: E402
from tests.bench.fleet_broker import FleetBroker, process_usage, raise_open_files  # noqa: E402
from tests.bench.fleet_host import gateway_id, serve  # noqa: E402
from tests.bench.fleet_watch import Watcher  # noqa: E402

MiB = 2**20


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def wait_for(condition, timeout: float, poll: float = 0.25) -> float | None:
    """Seconds until ``condition()`` held, or None if it did not within ``timeout``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            return None
        time.sleep(poll)        # the pause between polls of other processes' counters
    return time.monotonic() - start


class Hosts:
    """The processes hosting the gateways, each answering over its own pipe."""

    def __init__(self, gateways: int, processes: int, settings: dict[str, Any]):
        context = multiprocessing.get_context("spawn")
        per = math.ceil(gateways / processes)
        self.pipes = []
        self.procs = []
        for first in range(0, gateways, per):
            parent, child = context.Pipe()
            proc = context.Process(target=serve, args=(first, min(per, gateways - first), settings, child),
                                   daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)
        for pipe in self.pipes:
            pipe.recv()

    def ask(self, command: str) -> list[Any]:
        for pipe in self.pipes:
            pipe.send((command,))
        return [pipe.recv() for pipe in self.pipes]

    def stats(self) -> dict[str, Any]:
        parts = self.ask("stats")
        tops = {gateway_id(part["first"] + i): top for part in parts for i, top in enumerate(part["tops"])}
        return {"connected": sum(p["connected"] for p in parts), "tops": tops,
                "unacked": sum(p["unacked"] for p in parts), "cpu": sum(p["cpu"] for p in parts),
                "rss": sum(p["rss"] for p in parts), "dead": sum(p["dead_uplinks"] for p in parts),
                "open_files": max(p["open_files"] for p in parts),
                "errors": sorted({e for p in parts for e in p["errors"]} |
                                 {p["writer_error"] for p in parts if p["writer_error"]})}

    def close(self) -> None:
        self.ask("stop")
        for proc in self.procs:
            proc.join(30)


class Run:
    """One fleet against one broker, through the scenarios asked for."""

    def __init__(self, args: argparse.Namespace, gateways: int):
        self.args = args
        self.gateways = gateways
        self.figures: dict[str, Any] = {"gateways": gateways}

    def __call__(self) -> dict[str, Any]:
        args = self.args
        processes = args.processes or math.ceil(self.gateways / args.per_process)
        self.figures["processes"] = processes
        with FleetBroker(open_files=args.broker_open_files) as broker:
            self.broker = broker
            self.watch = Watcher(broker.host, broker.port)
            # The central side's reference consumer (linli audit) as a second, independent subscriber.
            self.auditor = Auditor(broker.host, broker.port, client_id="linli-fleet-bench-audit", persistent=True,
                                   ledger=Ledger(from_start=True), reconnect_min=0.1, reconnect_max=0.5)
            self.auditor.start()
            settings = {"host": broker.host, "port": broker.port, "readings": args.readings, "every": args.every,
                        "keepalive": args.keepalive, "reconnect_min": args.reconnect_min,
                        "reconnect_max": args.reconnect_max}
            started = time.monotonic()
            self.hosts = Hosts(self.gateways, processes, settings)
            try:
                up = wait_for(lambda: self.hosts.stats()["connected"] == self.gateways, args.settle)
                self.figures["start_s"] = up if up is not None else math.nan
                self.figures["started_in_s"] = time.monotonic() - started
                if up is None:
                    stats = self.hosts.stats()
                    self.figures["broken"] = f"{stats['connected']} of {self.gateways} gateways connected: " + \
                        "; ".join(stats["errors"][:3])
                    return self.figures
                for scenario in args.scenarios:
                    getattr(self, scenario)()
                    self.check(scenario)
            finally:
                self.hosts.close()
                self.watch.close()
                self.auditor.close()
        return self.figures

    def say(self, text: str) -> None:
        print(f"  [{self.gateways} gateways] {text}", flush=True)

    # --- scenarios ------------------------------------------------------------------------------------------
    def steady(self) -> None:
        self.watch.reset_latencies()
        records0, messages0 = self.watch.records, self.watch.messages
        broker0, hosts0, t0 = self.broker.usage()[0], self.hosts.stats()["cpu"], time.monotonic()
        watch0 = process_usage(os.getpid())[0]
        self.say(f"steady state for {self.args.duration:g} s")
        time.sleep(self.args.duration)
        elapsed = time.monotonic() - t0
        broker_cpu, broker_rss, _ = self.broker.usage()
        stats = self.hosts.stats()
        p50, p99, count = self.watch.latency()
        self.figures.update({
            "records_per_s": (self.watch.records - records0) / elapsed,
            "messages_per_s": (self.watch.messages - messages0) / elapsed,
            "broker_cpu_pct": 100 * (broker_cpu - broker0) / elapsed, "broker_rss_mib": broker_rss / MiB,
            "hosts_cpu_pct": 100 * (stats["cpu"] - hosts0) / elapsed, "hosts_rss_mib": stats["rss"] / MiB,
            "watch_cpu_pct": 100 * (process_usage(os.getpid())[0] - watch0) / elapsed,
            "watch_rss_mib": process_usage(os.getpid())[1] / MiB,
            "latency_p50_ms": p50, "latency_p99_ms": p99, "latency_samples": count,
            "open_files_per_process": stats["open_files"]})

    def restart(self) -> None:
        self.say("broker restart")
        self.broker.stop()
        up_ms = now_ms()
        self.broker.start()
        self._back_after("restart", up_ms)

    def outage(self) -> None:
        self.say(f"broker down for {self.args.outage:g} s")
        self.broker.stop()
        time.sleep(self.args.outage)
        stats = self.hosts.stats()
        self.figures["outage_backlog_records"] = stats["unacked"]
        tops = stats["tops"]
        up_ms, t0 = now_ms(), time.monotonic()
        self.broker.start()
        self._back_after("outage", up_ms)
        drained = wait_for(lambda: self.watch.behind(tops) == 0, self.args.settle + self.args.outage)
        self.figures["outage_drain_s"] = (time.monotonic() - t0) if drained is not None else math.nan
        self.figures["outage_broker_peak_rss_mib"] = self.broker.usage()[2] / MiB

    def _back_after(self, label: str, up_ms: int) -> None:
        """Every gateway's first ``online`` status since ``up_ms``, when the broker was being started."""
        back = wait_for(lambda: len(self.watch.online_since(up_ms)) == self.gateways, self.args.settle)
        onlines = self.watch.online_since(up_ms)
        per_second = Counter((ts - up_ms) // 1000 for ts in onlines)
        self.figures[f"{label}_back"] = len(onlines)
        self.figures[f"{label}_reconnect_s"] = (onlines[-1] - up_ms) / 1000 if back is not None else math.nan
        self.figures[f"{label}_peak_connects_per_s"] = max(per_second.values(), default=0)

    def check(self, scenario: str) -> None:
        """Every seq stored so far must reach the subscriber; count what did not, and what came twice."""
        tops = self.hosts.stats()["tops"]
        wait_for(lambda: self.watch.behind(tops) == 0, self.args.settle)
        audit = self.watch.audit(tops)
        self.figures[f"{scenario}_audit"] = audit
        self.say(f"after {scenario}: {audit['records']} records, {audit['unexplained_gaps']} unexplained gaps "
                 f"in {audit['gateways_with_gaps']} gateways, {audit['duplicates']} duplicates")
        ledger = self._ledger_up_to(tops)
        self.figures[f"{scenario}_ledger"] = ledger
        self.say(f"after {scenario}, linli audit's ledger: {ledger['records']} records from {ledger['gateways']} "
                 f"gateways, {ledger['unexplained']} unexplained, {ledger['duplicates']} duplicates, "
                 f"{ledger['short']} gateways short of their top seq")

    def _ledger_up_to(self, tops: dict[str, int]) -> dict[str, int]:
        """The audit ledger's totals once it has every gateway's seqs up to ``tops`` (or ``--settle`` passed)."""
        def short(report: dict[str, Any]) -> int:
            last = {row["gateway"]: row["seq_last"] or 0 for row in report["gateways"]}
            return sum(last.get(gw, 0) < top for gw, top in tops.items())

        wait_for(lambda: short(self.auditor.report()) == 0, self.args.settle, poll=1.0)
        report = self.auditor.report()
        rows = report["gateways"]
        return {"gateways": len(rows), "records": sum(r["records"] for r in rows),
                "unexplained": report["unexplained"], "duplicates": sum(r["duplicates"] for r in rows),
                "short": short(report)}


# --- printing ---------------------------------------------------------------------------------------------------
def fmt(value: Any, spec: str = ".0f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return format(value, spec)


def report(figures: dict[str, Any]) -> None:
    f = figures
    print(f"\n{f['gateways']} gateways in {f['processes']} processes: all connected {fmt(f.get('start_s'), '.1f')} s "
          f"after the processes were up ({fmt(f.get('started_in_s'), '.1f')} s from launch)")
    if "broken" in f:
        print(f"  BROKEN: {f['broken']}")
        return
    if "latency_p99_ms" in f:
        print(f"  steady: {fmt(f['records_per_s'])} records/s in {fmt(f['messages_per_s'])} messages/s; "
              f"latency p50 {fmt(f['latency_p50_ms'])} ms, "
              f"p99 {fmt(f['latency_p99_ms'])} ms ({f['latency_samples']} readings)")
        print(f"          broker CPU {fmt(f['broker_cpu_pct'], '.1f')} %, RSS {fmt(f['broker_rss_mib'], '.1f')} MiB; "
              f"gateway processes CPU {fmt(f['hosts_cpu_pct'], '.1f')} % (of one core), "
              f"RSS {fmt(f['hosts_rss_mib'])} MiB in all; subscriber CPU {fmt(f['watch_cpu_pct'], '.1f')} %, "
              f"RSS {fmt(f['watch_rss_mib'])} MiB; "
              f"open files per process {f['open_files_per_process']}")
    for label in ("restart", "outage"):
        if f"{label}_back" in f:
            print(f"  {label}: {f[f'{label}_back']}/{f['gateways']} back online, the last "
                  f"{fmt(f[f'{label}_reconnect_s'], '.1f')} s after the broker was; peak "
                  f"{f[f'{label}_peak_connects_per_s']} connections/s")
    if "outage_drain_s" in f:
        print(f"  outage: backlog {f['outage_backlog_records']} records drained "
              f"{fmt(f['outage_drain_s'], '.1f')} s after the broker came back; broker peak RSS since "
              f"{fmt(f['outage_broker_peak_rss_mib'], '.1f')} MiB")
    for key, audit in f.items():
        if key.endswith("_audit"):
            ledger = f[f"{key[:-6]}_ledger"]
            print(f"  check after {key[:-6]}: {audit['records']} records, {audit['unexplained_gaps']} unexplained "
                  f"gaps, {audit['duplicates']} duplicates; linli audit: {ledger['records']} records, "
                  f"{ledger['unexplained']} unexplained, {ledger['duplicates']} duplicates")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gateways", type=int, default=2000)
    p.add_argument("--readings", type=int, default=20, help="readings per round per gateway")
    p.add_argument("--every", type=float, default=10.0, help="seconds between a gateway's rounds")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of steady state")
    p.add_argument("--outage", type=float, default=600.0, help="seconds the broker is down in the outage")
    p.add_argument("--scenarios", default="steady,restart,outage",
                   type=lambda s: [x for x in s.split(",") if x])
    p.add_argument("--processes", type=int, default=0, help="default: gateways / --per-process")
    p.add_argument("--per-process", type=int, default=100, help="gateways per process when --processes is not given")
    p.add_argument("--broker-open-files", type=int, help="mosquitto's open-file limit (default: the hard limit)")
    p.add_argument("--keepalive", type=float, default=60.0)
    p.add_argument("--reconnect-min", type=float, default=1.0, help="the agent's default mqtt.reconnect_min")
    p.add_argument("--reconnect-max", type=float, default=60.0, help="the agent's default mqtt.reconnect_max")
    p.add_argument("--settle", type=float, default=300.0, help="seconds to wait for connects and deliveries")
    p.add_argument("--ramp", type=lambda s: [int(x) for x in s.split(",")],
                   help="fleet sizes to try in turn, each through --scenarios; stops at the first that breaks")
    p.add_argument("--p99-limit", type=float, default=1000.0, help="ms: a ramp stops above this latency p99")
    args = p.parse_args(argv)
    unknown = set(args.scenarios) - {"steady", "restart", "outage"}
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse(argv)
    raise_open_files()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
          f"load average now {os.getloadavg()[0]:.2f}")
    print(f"each gateway: {args.readings} readings every {args.every:g} s; reconnect backoff "
          f"{args.reconnect_min:g}–{args.reconnect_max:g} s with jitter; keepalive {args.keepalive:g} s", flush=True)
    results = []
    if args.ramp:
        for size in args.ramp:
            figures = Run(args, size)()
            report(figures)
            results.append(figures)
            if "broken" in figures or (figures.get("latency_p99_ms") or 0) > args.p99_limit:
                print(f"  stopping the ramp at {size} gateways")
                break
    else:
        figures = Run(args, args.gateways)()
        report(figures)
        results.append(figures)
    return results


if __name__ == "__main__":
    main()
