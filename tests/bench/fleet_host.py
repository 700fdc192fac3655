"""One process of the fleet benchmark: many gateways, each the real ``Uplink`` on its own ``Outbox``.

Each gateway has its own outbox file, config, client id, last will, retained
status and subscription to its commands, as an agent would; it sends no ``health``
messages (an agent sends one a minute). What an agent's core does for its one outbox
(the only writer: add readings, apply the acknowledgements the uplink hands over,
commit when due) one :class:`Writer` thread does here for every outbox of the
process: uplink threads only put their acknowledged seqs on its queue.

The parent talks to :func:`serve` over a pipe: ``("stats",)`` answers with
:func:`Fleet.stats`; ``("pause",)`` stops new readings; ``("stop",)`` ends the
uplinks, closes the outboxes and ends the process.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import resource
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from buffer.outbox import Outbox, Priority
from edge.commands import Commands
from edge.config import Config, GatewayConfig, MqttConfig
from edge.uplink import Uplink
from tests.bench.fleet_broker import raise_open_files
from tests.mqtt_helpers import BOOT, reading

GRID = "bench/fleet"


def gateway_id(index: int) -> str:
    return f"gw-{index:05d}"


class Writer(threading.Thread):
    """The outboxes' one writer thread: adds each gateway's readings on its schedule, applies acks, commits."""

    def __init__(self, paths: list[Path], readings: int, every: float):
        super().__init__(name="fleet-writer", daemon=True)
        self.paths = paths
        self.outboxes: list[Outbox] = []
        self.readings = readings
        self.every = every
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.opened = threading.Event()     # set once every outbox is open (or opening failed: see error)
        self.go = threading.Event()         # set once the uplinks exist: start reading
        self.producing = True
        #: Per gateway, the highest seq stored so far and how many readings are not yet acknowledged.
        self.top = [0] * len(paths)
        self.unacked = [0] * len(paths)
        self.error: BaseException | None = None
        self._due: list[float] = []
        self._round = 0

    def on_acked(self, slot: int):
        """What gateway ``slot``'s uplink calls with acknowledged seqs (on its thread): hand them over only."""
        return lambda seqs: self.inbox.put((slot, seqs))

    def run(self) -> None:
        try:
            # Opened on this thread: an outbox's writer side (its SQLite connection) stays on one thread.
            self.outboxes = [Outbox(path) for path in self.paths]
            self.opened.set()
            self.go.wait()
            # Each gateway's first round at a random moment of the period: gateways do not read in lockstep.
            now = time.monotonic()
            self._due = [now + random.random() * self.every for _ in self.outboxes]
            self._loop()
        except BaseException as exc:  # noqa: BLE001 - reported by stats(); the benchmark shows it
            self.error = exc
        finally:
            self.opened.set()
            for outbox in self.outboxes:
                outbox.close()

    def _loop(self) -> None:
        next_sweep = time.monotonic() + 1.0
        while True:
            now = time.monotonic()
            wait = max(0.0, min(min(self._due, default=now + 1.0), next_sweep) - now)
            try:
                item = self.inbox.get(timeout=wait)
            except queue.Empty:
                item = None
            while item is not None:
                if item == "stop":
                    return
                slot, seqs = item
                self.outboxes[slot].ack(seqs)
                self.unacked[slot] -= len(seqs)
                try:
                    item = self.inbox.get_nowait()
                except queue.Empty:
                    item = None
            now = time.monotonic()
            if self.producing:
                for slot, due in enumerate(self._due):
                    if due <= now:
                        self._read(slot)
                        self._due[slot] = due + self.every
            if now >= next_sweep:
                # The core's "commit when due", for every outbox once a second.
                next_sweep = now + 1.0
                for outbox in self.outboxes:
                    if outbox.commit_due():
                        outbox.commit()

    def _read(self, slot: int) -> None:
        """One round of the gateway's meters: ``readings`` readings stamped now, as the core stores them."""
        outbox = self.outboxes[slot]
        now_ms = time.time_ns() // 1_000_000
        for meter in range(self.readings):
            record = reading(self._round, sensor=f"meter-{meter:02d}")
            record["ts"] = now_ms
            self.top[slot] = outbox.add(record, Priority.TELEMETRY)
        self.unacked[slot] += self.readings
        self._round += 1


class Fleet:
    """Gateways ``first`` … ``first + count - 1`` in this process."""

    def __init__(self, first: int, count: int, settings: dict[str, Any]):
        self.first = first
        self.tmp = tempfile.TemporaryDirectory(prefix="linli-fleet-")
        paths = [Path(self.tmp.name) / f"{gateway_id(index)}.db" for index in range(first, first + count)]
        self.writer = Writer(paths, settings["readings"], settings["every"])
        self.writer.start()
        self.writer.opened.wait()
        if self.writer.error is not None:
            raise self.writer.error
        self.uplinks: list[Uplink] = []
        for slot, outbox in enumerate(self.writer.outboxes):
            gateway = gateway_id(first + slot)
            config = Config(GatewayConfig(id=gateway, grid=GRID), MqttConfig(
                host=settings["host"], port=settings["port"], keepalive=settings["keepalive"],
                reconnect_min=settings["reconnect_min"], reconnect_max=settings["reconnect_max"]))
            # A command handler, so that each gateway subscribes to its cmd/# as an agent does.
            commands = Commands(gateway, {"ping": lambda args: {"pong": True}})
            uplink = Uplink(config, outbox, self.writer.on_acked(slot), version="bench", boot_id=BOOT,
                            commands=commands)
            outbox.on_available = uplink.wake
            self.uplinks.append(uplink)

    def start(self) -> None:
        for uplink in self.uplinks:
            uplink.start()
        self.writer.go.set()

    def stats(self) -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        rss = 0
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
        statuses = [u.status() for u in self.uplinks]
        errors = sorted({s["last_error"] for s in statuses if not s["connected"] and s["last_error"]})
        return {
            "first": self.first,
            "connected": sum(s["connected"] for s in statuses),
            "dead_uplinks": sum(not u.is_alive() for u in self.uplinks),
            "tops": list(self.writer.top),
            "unacked": sum(self.writer.unacked),
            "cpu": usage.ru_utime + usage.ru_stime,
            "rss": rss,
            "open_files": len(os.listdir("/proc/self/fd")),
            "errors": errors[:3],
            "writer_error": repr(self.writer.error) if self.writer.error else None,
        }

    def stop(self) -> None:
        self.writer.producing = False
        for uplink in self.uplinks:
            uplink.stop(0)
        self.writer.inbox.put("stop")       # the writer closes the outboxes
        self.writer.join(60)
        self.tmp.cleanup()


def serve(first: int, count: int, settings: dict[str, Any], conn) -> None:
    """The child process's body: host the gateways, answer the parent until told to stop."""
    raise_open_files()
    # Thousands of uplinks saying "cannot connect" during an outage is noise here; the figures say it.
    logging.getLogger("linli").setLevel(logging.ERROR)
    random.seed(first)
    fleet = Fleet(first, count, settings)
    fleet.start()
    conn.send(("started", first))
    while True:
        command = conn.recv()
        if command[0] == "stats":
            conn.send(fleet.stats())
        elif command[0] == "pause":
            fleet.writer.producing = False
            conn.send(("paused", first))
        elif command[0] == "stop":
            fleet.stop()
            conn.send(("stopped", first))
            return
