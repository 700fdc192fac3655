"""The fleet benchmark's broker: one mosquitto on loopback, configured for thousands of clients.

Unlike :class:`edge.simulate.broker.LocalBroker` (made for one gateway and a test
subscriber) it lifts the limits a fleet hits first: the broker's open-file limit
(raised to the hard limit before ``exec``, or set to ``open_files`` to see what a
lower one does), ``max_connections -1``, and a deep queue
for the one central subscriber. It keeps ``persistence true`` so that a restart
keeps the subscriber's session and the messages queued for it, as a central broker
must, or a broker restart would itself make gaps the gateways could not explain.
``stop()``/``start()`` restart it on the same port; ``usage()`` reads its CPU time and
memory from ``/proc``.
"""

from __future__ import annotations

import getpass
import os
import resource
import subprocess
import tempfile
import time
from pathlib import Path

from edge.simulate.broker import accepts_connections, end_process, find_mosquitto, free_port

START_TIMEOUT = 20.0
STOP_TIMEOUT = 30.0          # writing the persistence file of a large queue takes a moment
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def raise_open_files(limit: int | None = None) -> int:
    """Set this process's open-file limit to ``limit`` (default: the hard limit); returns the new soft limit."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft = hard if limit is None else min(limit, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


def process_usage(pid: int) -> tuple[float, int, int]:
    """CPU seconds (user + system), RSS and peak RSS in bytes of process ``pid``, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS      # utime, stime (fields 14, 15 of stat)
    rss = peak = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("VmHWM:"):
            peak = int(line.split()[1]) * 1024
    return cpu, rss, peak


class FleetBroker:
    """mosquitto on ``127.0.0.1:port`` with a config for a fleet; a ``with`` block runs it."""

    def __init__(self, port: int | None = None, open_files: int | None = None):
        self.host = "127.0.0.1"
        self.open_files = open_files        # the broker's open-file limit; None: the hard limit
        self.port = port or free_port(self.host)
        executable = find_mosquitto()
        if executable is None:
            raise RuntimeError("mosquitto is needed: apt-get install mosquitto")
        self.executable = executable
        self._tmp = tempfile.TemporaryDirectory(prefix="linli-fleet-broker-")
        self.workdir = Path(self._tmp.name)
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> FleetBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._tmp.cleanup()

    def _config(self) -> Path:
        path = self.workdir / "mosquitto.conf"
        path.write_text("\n".join([
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "max_connections -1",
            # The central subscriber may lag behind a drained backlog: queue for it rather than drop.
            "max_queued_messages 0",
            "max_queued_bytes 0",
            "persistence true",
            f"persistence_location {self.workdir}/",
            "autosave_interval 0",
            f"log_dest file {self.workdir / 'mosquitto.log'}",
            "log_type error", "log_type warning", "log_type notice",
            "connection_messages false",
            f"user {getpass.getuser()}",
        ]) + "\n")
        return path

    def start(self) -> None:
        """Start mosquitto (on the same port as before) and return once it accepts connections."""
        config = self._config()
        with open(self.workdir / "mosquitto.stderr", "ab") as stderr:
            self.proc = subprocess.Popen([self.executable, "-c", str(config)], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
                                         preexec_fn=lambda: raise_open_files(self.open_files))
        deadline = time.monotonic() + START_TIMEOUT
        while not accepts_connections(self.host, self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not start on port {self.port}: "
                                   f"{(self.workdir / 'mosquitto.log').read_text(errors='replace')[-500:]}")
            time.sleep(0.02)       # the pause between probes of a port nobody signals

    def stop(self) -> None:
        """SIGTERM (mosquitto saves its persistence file), then wait for it to end."""
        proc, self.proc = self.proc, None
        if proc is not None:
            end_process(proc, STOP_TIMEOUT)

    def usage(self) -> tuple[float, int, int]:
        """The running broker's CPU seconds, RSS and peak RSS (bytes)."""
        return process_usage(self.proc.pid)
