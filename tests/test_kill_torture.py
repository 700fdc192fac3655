"""The agent killed with SIGKILL at random moments while the uplink is cut and restored at random.

After every kill the outbox file must pass SQLite's ``quick_check``; at the end
every seq from 1 to the highest must have arrived at the broker or be covered by
a ``dropped`` record (decision 0005). CI runs a bounded number of kills; more on
demand::

    LINLI_TORTURE_KILLS=100 .venv/bin/python -m pytest tests/test_kill_torture.py

Half of the runs use the default ``commit_interval`` (readings wait in memory up
to 30 s), half a short one (readings spilled to disk all the time), so both the
memory path and the disk path are killed in the middle.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess

import pytest

from edge.simulate.modbus_pressure import PressureTransmitterSim
from tests.agent_helpers import BASE, config_text, linli
from tests.tcp_proxy import TcpProxy

KILLS = int(os.environ.get("LINLI_TORTURE_KILLS", "12"))
SEED = int(os.environ.get("LINLI_TORTURE_SEED", "20261206"))


@pytest.fixture
def transmitter():
    with PressureTransmitterSim(unit_id=1, profile=0.35) as sim:
        yield sim


def quick_check(path) -> list[tuple[str]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA quick_check").fetchall()
    finally:
        conn.close()


@pytest.mark.slow
@pytest.mark.timeout(60 + 12 * KILLS)
def test_random_sigkills_under_link_cuts_leave_no_unexplained_gap_and_a_sound_file(
        tmp_path, broker, transmitter, subscriber_factory):
    rng = random.Random(SEED)
    outbox = tmp_path / "outbox.db"
    with TcpProxy(broker.host, broker.port) as proxy:
        sub = subscriber_factory(broker.host, broker.port, BASE + "/#")
        text = config_text(port=proxy.port, outbox=outbox, serial_port=transmitter.port, interval="100ms")
        configs = [tmp_path / "spill.toml", tmp_path / "default.toml"]
        configs[0].write_text(text)                                          # commit_interval = "100ms"
        configs[1].write_text(text.replace('commit_interval = "100ms"\n', ""))   # the default, 30 s
        for kill in range(KILLS):
            proc = linli("--config", str(configs[kill % 2]), "run",
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            # A few random link changes, then the kill: anywhere from start-up to mid-stream.
            for _ in range(rng.randint(0, 3)):
                try:
                    proc.wait(timeout=rng.uniform(0.05, 0.8))
                    pytest.fail(f"the agent ended by itself: {proc.stderr.read().decode()}")
                except subprocess.TimeoutExpired:
                    pass
                proxy.cut() if rng.random() < 0.5 else proxy.restore()
            try:
                proc.wait(timeout=rng.uniform(0.0, 1.5))
                pytest.fail(f"the agent ended by itself: {proc.stderr.read().decode()}")
            except subprocess.TimeoutExpired:
                pass
            proc.kill()
            _, err = proc.communicate(timeout=10)
            assert proc.returncode == -signal.SIGKILL, err.decode()
            assert b"Traceback" not in err, err.decode()
            if outbox.exists():
                assert quick_check(outbox) == [("ok",)], f"after kill {kill + 1}"

        proxy.restore()
        before = max(sub.seqs(), default=0)
        proc = linli("--config", str(configs[1]), "run", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            def settled(_messages) -> bool:
                seqs = set(sub.seqs())   # this run is up (new seqs), and everything before is accounted for
                return max(seqs, default=0) > before + 5 and \
                    not set(range(1, max(seqs) + 1)) - seqs - sub.explained_seqs()

            sub.wait_for(settled, 60, "new seqs, and every seq arrived or explained")
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    assert quick_check(outbox) == [("ok",)]
    seqs = set(sub.seqs())
    assert max(seqs) > 10 * KILLS / 4, "too few records were made to prove anything"
    assert not set(range(1, max(seqs) + 1)) - seqs - sub.explained_seqs()
    # The explanations are restarts (what lived only in memory), never losses of stored records.
    assert {d.get("reason") for d in sub.dropped()} <= {"restart"}
