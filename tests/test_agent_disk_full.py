"""The agent on a disk that fills up mid-run: alarms still go out at once, nothing is lost unannounced.

The agent runs in a mount namespace of its own (``unshare --mount``, root only)
with its outbox folder on a small tmpfs, half-filled by a filler file. The test
fills the rest through ``/proc/PID/root`` (the agent's view of the file system),
drops the pressure below the rule's floor (an alarm must be stored before it is
published — and published from memory when it cannot be), and later frees the space.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess

import pytest

from edge.simulate.modbus_pressure import PressureTransmitterSim
from tests.agent_helpers import BASE, ROOT, config_text, linli, low_pressure_rule
from tests.mqtt_helpers import wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                                reason="needs root and unshare(1) to give the agent a small disk of its own")

TMPFS_KB = 2048


class Pump:
    """The main's pressure, set by the test."""

    def __init__(self) -> None:
        self.mpa = 0.35

    def __call__(self, _t: float) -> float:
        return self.mpa


def test_on_a_full_disk_the_alarm_is_published_at_once_and_what_waited_is_stored_once_space_returns(
        tmp_path, broker, subscriber_factory):
    pump = Pump()
    spool = tmp_path / "spool"                      # the tmpfs goes here, inside the agent's namespace only
    spool.mkdir()
    with PressureTransmitterSim(unit_id=1, profile=pump) as sim:
        config = tmp_path / "edge.toml"
        config.write_text(config_text(port=broker.port, outbox=spool / "outbox.db", serial_port=sim.port,
                                      interval="100ms").replace('commit_interval = "100ms"', 'commit_interval = "1s"')
                          .replace(f'socket = "{spool / "control.sock"}"', f'socket = "{tmp_path / "control.sock"}"')
                          + low_pressure_rule(clear_above="0.12", severity='"critical"'))
        sub = subscriber_factory(broker.host, broker.port, BASE + "/#")
        script = (f"mount -t tmpfs -o size={TMPFS_KB}k linli-test {spool} && "
                  f"exec {_python()} -m edge.cli --config {config} run")
        proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            sub.wait_for(lambda _m: sub.messages("telemetry"), 20, "readings")
            inside = f"/proc/{proc.pid}/root{spool}"
            assert os.path.exists(f"{inside}/outbox.db"), "the outbox is on the agent's own tmpfs"
            _fill(f"{inside}/filler")
            # The link is up: readings are acknowledged in milliseconds and never need the disk. An alarm does.
            pump.mpa = 0.05
            raised = sub.wait_for(lambda _m: any(m.payload["alarm"] == "pump-pressure/low"
                                                 for m in sub.messages("alarm")), 10, "the alarm, disk full")
            alarm = next(m for m in raised if m.kind == "alarm" and m.payload["alarm"] == "pump-pressure/low")
            assert alarm.received_ms - alarm.payload["ts"] < 2000      # not held back by the full disk
            # Stored after all (the write-ahead log's own space is reused after a checkpoint), or said not to be.
            # A reading may be waiting in memory for its acknowledgement at any moment: nothing pending is a
            # moment to wait for, not a snapshot to take.
            def stored_or_said() -> bool:
                outbox = _status(config)["outbox"]
                return outbox["disk_full"] or outbox["pending"] == 0

            wait_until(stored_or_said, 10, "the alarm stored, or the full disk reported")

            os.unlink(f"{inside}/filler")               # space returns
            pump.mpa = 0.35                             # the clearing is stored as usual
            sub.wait_for(lambda _m: any(m.payload["state"] == "cleared" for m in sub.messages("alarm")), 10,
                         "the alarm cleared")
            wait_until(lambda: not _status(config)["outbox"]["disk_full"], 10, "the outbox to write again")
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err
    seqs = set(sub.seqs())
    assert not set(range(1, max(seqs) + 1)) - seqs - sub.explained_seqs()


def _python() -> str:
    import sys
    return sys.executable


def _fill(path: str) -> None:
    """Write until the file system says no more."""
    with open(path, "wb") as filler:
        try:
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        except OSError:
            pass


def _status(config) -> dict:
    proc = linli("--config", str(config), "status", "--json", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    return json.loads(out)
