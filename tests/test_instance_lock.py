"""One agent per outbox: a second one exits 75 naming the first one's pid; a reload onto a held outbox is refused."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time

import pytest

from edge.agent import Agent
from edge.config import load_config
from edge.instance_lock import AgentAlreadyRunning, InstanceLockError, OutboxLock, lock_path
from edge.simulate.modbus_pressure import PressureTransmitterSim
from tests.agent_helpers import BASE, config_text, linli

pytestmark = pytest.mark.timeout(120)


# --- the lock on its own -------------------------------------------------------------------------------------
def test_a_second_lock_on_one_outbox_names_the_holders_pid_until_it_is_released(tmp_path):
    first = OutboxLock(tmp_path / "outbox.db").acquire()
    with pytest.raises(AgentAlreadyRunning) as refused:
        OutboxLock(tmp_path / "outbox.db").acquire()
    assert refused.value.exit_code == 75
    assert str(refused.value) == (f"another agent (pid {os.getpid()}) already runs on the outbox "
                                  f"{tmp_path / 'outbox.db'}: stop it first (systemctl stop linli-edge), "
                                  "or give this config another [buffer] path")
    first.release()
    OutboxLock(tmp_path / "outbox.db").acquire().release()


def test_two_spellings_of_one_outbox_share_one_lock(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "data")
    held = OutboxLock(tmp_path / "data" / "outbox.db").acquire()
    try:
        for spelling in (tmp_path / "link" / "outbox.db", tmp_path / "data" / ".." / "data" / "outbox.db"):
            with pytest.raises(AgentAlreadyRunning):
                OutboxLock(spelling).acquire()
    finally:
        held.release()
    assert lock_path(tmp_path / "link" / "outbox.db") == str(tmp_path / "data" / "outbox.db.lock")


@pytest.mark.parametrize("make", [
    lambda p: p.write_text("my notes about the outbox\n"),
    lambda p: p.mkdir(),
    lambda p: p.symlink_to(p.parent / "someone-elses-file"),
])
def test_something_else_where_the_lock_goes_is_refused_and_left_alone(tmp_path, make):
    where = tmp_path / "outbox.db.lock"
    make(where)
    before = (where.is_symlink(), where.is_dir(), where.read_bytes() if where.is_file() else None)
    with pytest.raises(InstanceLockError, match="holds something else; it is left alone") as refused:
        OutboxLock(tmp_path / "outbox.db").acquire()
    assert refused.value.exit_code == 73
    assert (where.is_symlink(), where.is_dir(), where.read_bytes() if where.is_file() else None) == before


def test_a_lock_file_that_cannot_be_made_is_logged_and_the_agent_goes_on(caplog):
    with caplog.at_level(logging.ERROR, logger="linli.lock"):
        lock = OutboxLock("/proc/self/linli/outbox.db").acquire()   # no directory can be made in /proc
    lock.release()
    assert "this agent is not guarded against a second one on the same outbox" in caplog.text


# --- real agents -----------------------------------------------------------------------------------------------
@pytest.fixture
def transmitter():
    with PressureTransmitterSim(unit_id=1, profile=0.35) as sim:
        yield sim


def write_config(tmp_path, name, broker, transmitter, outbox, control=None):
    path = tmp_path / name
    text = config_text(port=broker.port, outbox=outbox, serial_port=transmitter.port)
    if control is not None:
        text = text.replace(f'socket = "{outbox.parent / "control.sock"}"', f'socket = "{control}"')
    path.write_text(text)
    return path


def test_a_second_linli_run_exits_75_naming_the_running_ones_pid(tmp_path, broker, transmitter, subscriber_factory):
    sub = subscriber_factory(broker.host, broker.port, BASE + "/#")
    (tmp_path / "var").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "var")
    config = write_config(tmp_path, "edge.toml", broker, transmitter, tmp_path / "var" / "outbox.db")
    other = write_config(tmp_path, "other.toml", broker, transmitter, tmp_path / "alias" / "outbox.db",
                         control=tmp_path / "other.sock")
    first = linli("--config", str(config), "run", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        sub.wait_for(lambda _m: len(sub.seqs()) >= 3, 20, "readings from the first agent")
        for path, outbox in ((config, tmp_path / "var" / "outbox.db"), (other, tmp_path / "alias" / "outbox.db")):
            started = time.monotonic()
            second = linli("--config", str(path), "run", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            out, err = second.communicate(timeout=30)
            assert second.returncode == 75, err
            assert time.monotonic() - started < 10
            assert f"another agent (pid {first.pid}) already runs on the outbox {outbox}" in err
            assert "Traceback" not in err and out == ""
        seen = max(sub.seqs())
        sub.wait_for(lambda _m: max(sub.seqs()) > seen + 3, 10, "the first agent still delivering")
    finally:
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=30)
    assert first.returncode == 0, err.decode()
    seqs = sub.seqs()
    assert sorted(set(seqs)) == list(range(1, max(seqs) + 1)), "one agent, one run of seqs"
    assert len(seqs) == len(set(seqs)), "no seq published twice"


def test_a_reload_onto_an_outbox_another_agent_holds_keeps_the_running_config(tmp_path, broker, transmitter,
                                                                             subscriber_factory):
    sub = subscriber_factory(broker.host, broker.port, BASE + "/#")
    first = load_config(write_config(tmp_path, "edge.toml", broker, transmitter, tmp_path / "outbox.db"))
    moved = load_config(write_config(tmp_path, "moved.toml", broker, transmitter, tmp_path / "held.db"))
    held = OutboxLock(tmp_path / "held.db").acquire()
    agent = Agent(first)
    agent.start()
    try:
        sub.wait_for(lambda _m: sub.seqs(), 10, "readings")
        outbox, uplink = agent.outbox, agent.uplink
        with pytest.raises(AgentAlreadyRunning):
            agent.reload(moved)
        assert agent.config is first and agent.outbox is outbox and agent.uplink is uplink
        assert all(thread.is_alive() for thread in agent._threads().values())
        seen = max(sub.seqs())
        sub.wait_for(lambda _m: max(sub.seqs()) > seen + 3, 10, "readings after the refused reload")
        held.release()
        agent.reload(moved)                    # free now: the outbox moves, its lock with it
        assert agent.outbox.path == tmp_path / "held.db"
        OutboxLock(tmp_path / "outbox.db").acquire().release()
        with pytest.raises(AgentAlreadyRunning):
            OutboxLock(tmp_path / "held.db").acquire()
    finally:
        agent.stop(drain_timeout=5)
