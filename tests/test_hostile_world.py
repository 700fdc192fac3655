"""A live agent under hostile input: commands and control clients of any shape, and bad reloads.

The real ``linli run`` reads a pymodbus-served transmitter on a pty and publishes to a real
mosquitto. Hypothesis drives payloads at its ``cmd/<name>`` topics (random bytes, deep nesting,
oversized, long integers, not UTF-8, requests with any fields) and lines at its control socket,
while idle and trickling clients hold connections open. Every payload must get its reply, and
afterwards the agent must still answer commands, ``linli status`` must work, telemetry must still
flow, and, once stopped, every seq from 1 to the highest must have arrived.

Examples follow from each test's name (``derandomize``) and keep no database, as in
tests/test_fuzz_codecs.py; ``LINLI_FUZZ_SCALE`` multiplies their count for a deep run.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from itertools import count

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.commands import MAX_NAME, MAX_REQUEST
from edge.control import READ_DEADLINE, request
from edge.instance_lock import OutboxLock
from edge.simulate.modbus_pressure import PressureTransmitterSim
from tests.agent_helpers import BASE, GATEWAY, ROOT, config_text, linli
from tests.mqtt_helpers import wait_until
from tests.untouched import fingerprint, snapshot

SCALE = float(os.environ.get("LINLI_FUZZ_SCALE", "1"))
pytestmark = pytest.mark.timeout(180 * max(SCALE, 1))


def fuzz(examples: int):
    return settings(max_examples=max(1, round(examples * SCALE)), derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


# --- a live agent ---------------------------------------------------------------------------------------------
class LiveAgent:
    """``linli run`` on a config in ``tmp_path``; its log goes to a file (a pipe nobody reads would fill).

    ``sub`` sees the gateway's own topics (telemetry, status, health), ``answers`` its command replies:
    neither subscribes to the requests, which are not meant to match any schema.
    """

    def __init__(self, tmp_path, broker, transmitter, sub, answers):
        self.config = tmp_path / "edge.toml"
        self.config.write_text(config_text(port=broker.port, outbox=tmp_path / "outbox.db",
                                           serial_port=transmitter.port, interval="100ms"))
        self.socket = str(tmp_path / "control.sock")
        self.log = tmp_path / "agent.log"
        self.sub = sub
        self.answers = answers
        self.ids = count()
        self.operator = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="test-operator")
        self.operator.connect(broker.host, broker.port)
        self.operator.loop_start()
        with open(self.log, "wb") as log:
            self.proc = linli("--config", str(self.config), "run", stdout=subprocess.DEVNULL, stderr=log)

    def publish(self, name: str, payload: bytes | str) -> None:
        self.operator.publish(f"{BASE}/cmd/{name}", payload, qos=1).wait_for_publish(5)

    def replies(self, name: str) -> list[dict]:
        return [m.payload for m in self.answers.messages() if m.topic == f"{BASE}/cmd/{name}/reply"]

    def ask(self, name: str, payload: bytes | str, timeout: float = 10.0) -> dict:
        """Publish on ``cmd/<name>`` and return the one reply it gets."""
        before = len(self.replies(name))
        self.publish(name, payload)
        self.answers.wait_for(lambda _m: len(self.replies(name)) > before, timeout, f"a reply on cmd/{name}")
        [reply] = self.replies(name)[before:]
        return reply

    def ping(self) -> dict:
        request_id = f"ping-{next(self.ids)}"
        return self.ask("ping", json.dumps({"v": 1, "gateway": GATEWAY, "id": request_id, "name": "ping"}))

    def until_commands_answered(self) -> None:
        """The agent subscribes to cmd/+ just after its birth message: ping until a reply comes."""
        self.sub.wait_for(lambda m: any(x.kind == "status" for x in m), 20, "the birth message")
        for _attempt in range(40):
            with contextlib.suppress(AssertionError):
                self.ask("ping", json.dumps({"v": 1, "gateway": GATEWAY, "id": f"warm-up-{_attempt}",
                                             "name": "ping"}), timeout=0.5)
                return
        raise AssertionError("the agent never answered a ping")

    def more_seqs(self, than: int | None = None, how_many: int = 5) -> int:
        """Wait for ``how_many`` seqs beyond ``than`` (default: the highest so far); returns the new highest."""
        floor = max(self.sub.seqs(), default=0) if than is None else than
        self.sub.wait_for(lambda _m: max(self.sub.seqs(), default=0) >= floor + how_many, 20,
                          f"telemetry beyond seq {floor}")
        return max(self.sub.seqs())

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "edge.cli", "--config", str(self.config), *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)

    def stop(self) -> str:
        """SIGTERM; the agent must end cleanly. Returns its log."""
        self.operator.loop_stop()
        self.operator.disconnect()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        return self.log.read_text(errors="replace")


@pytest.fixture
def transmitter():
    with PressureTransmitterSim(unit_id=1, profile=0.35) as sim:
        yield sim


@pytest.fixture
def agent(tmp_path, broker, transmitter, subscriber_factory):
    sub = subscriber_factory(broker.host, broker.port, BASE + "/+", base=BASE)
    answers = subscriber_factory(broker.host, broker.port, BASE + "/cmd/+/reply", base=BASE)
    live = LiveAgent(tmp_path, broker, transmitter, sub, answers)
    try:
        live.more_seqs(0, 3)
        yield live
    finally:
        log = live.stop()
    assert live.proc.returncode == 0, log
    seqs = sub.seqs()
    assert sorted(set(seqs)) == list(range(1, max(seqs) + 1)), "every seq from 1 to the highest arrived"


def control_exchange(path: str, data: bytes, timeout: float = READ_DEADLINE + 5) -> dict:
    """Send raw bytes to the control socket and read its one reply line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # an early answer ends the exchange
            sock.sendall(data)
        return json.loads(sock.makefile("rb").readline())


# --- the three cases of the issue ----------------------------------------------------------------------------
def test_a_nested_bracket_command_gets_an_error_reply_and_telemetry_continues(agent):
    agent.until_commands_answered()
    reply = agent.ask("ping", b"[" * 100_000 + b"]" * 100_000)
    assert (reply["id"], reply["ok"]) == (None, False)
    assert reply["error"] == f"the request is 200000 bytes; at most {MAX_REQUEST} are read"
    reply = agent.ask("ping", b"[" * 30_000 + b"]" * 30_000)     # under the size limit: the parser's depth
    assert reply["error"] == "the request is nested too deeply to be read"
    assert agent.ping()["ok"] is True
    agent.more_seqs()


def test_a_command_name_whose_reply_topic_mqtt_cannot_carry_is_dropped_not_fatal(agent):
    agent.until_commands_answered()
    longest = "n" * (65_535 - len(f"{BASE}/cmd/"))     # the longest topic a broker delivers
    agent.publish(longest, b'{"v": 1}')
    # Sent after it on the same connection: by the time this is answered, the long one was handled.
    assert agent.ask(longest[:MAX_NAME], b"{}")["error"].startswith("the request must be an object with an id")
    assert agent.replies(longest) == []
    assert agent.ping()["ok"] is True and agent.proc.poll() is None
    agent.more_seqs()


def test_six_idle_control_connections_do_not_lock_out_linli_status(agent):
    with contextlib.ExitStack() as stack:
        for _ in range(6):
            stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)).connect(agent.socket)
        started = time.monotonic()
        done = agent.cli("status")
        assert done.returncode == 0, done.stderr
        assert "pump-pressure" in done.stdout
        assert time.monotonic() - started < READ_DEADLINE, "served at once, not after the idle ones"


# --- fuzzing ---------------------------------------------------------------------------------------------------
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=30)

REQUESTS = st.fixed_dictionaries(
    {"v": st.sampled_from([1, 2, "1", None]), "gateway": st.sampled_from([GATEWAY, "gw-other", ""]),
     "id": st.text(max_size=140), "name": st.sampled_from(["ping", "health", "away", "alarm_ack", "x"])},
    optional={"args": JSON_VALUES})

HOSTILE_PAYLOADS = st.one_of(
    st.binary(max_size=2_000),
    st.binary(min_size=1, max_size=300).map(lambda b: b"\xff" + b),                       # never UTF-8
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    REQUESTS.map(lambda r: json.dumps(r).encode()),
    st.integers(1, 120_000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 3_000).map(lambda n: b'{"id": "deep", "args": ' + b'{"a": ' * n + b"1" + b"}" * n + b"}"),
    st.integers(4_000, 9_000).map(lambda d: f'{{"v": 1, "id": "long", "n": {"9" * d}}}'.encode()),
    st.integers(MAX_REQUEST - 4, MAX_REQUEST + 4).map(lambda n: b"{" + b" " * (n - 2) + b"}"),
)


def test_every_hostile_command_is_answered_and_the_agent_carries_on(agent):
    agent.until_commands_answered()
    first = agent.more_seqs()
    topics = count()

    @fuzz(80)
    @given(payload=HOSTILE_PAYLOADS)
    def answered(payload):
        name = f"fuzz-{next(topics)}"          # one topic per example: its reply cannot be another's
        reply = agent.ask(name, payload)
        assert reply["ok"] is False and reply["name"] == name and reply["error"]

    answered()
    assert agent.proc.poll() is None, "the agent is alive"
    assert agent.ping()["ok"] is True
    agent.more_seqs(first)


CONTROL_LINES = st.one_of(
    st.binary(max_size=2_000).map(lambda b: b.replace(b"\n", b"") + b"\n"),
    JSON_VALUES.map(lambda v: json.dumps(v).encode() + b"\n"),
    st.fixed_dictionaries({"name": st.sampled_from(["status", "health", "away", "alarm_ack", "a/b", ""]),
                           "args": JSON_VALUES}).map(lambda r: json.dumps(r).encode() + b"\n"),
    st.integers(1, 70_000).map(lambda n: b"[" * n + b"\n"),
)


def test_hostile_control_clients_leave_linli_status_working(agent):
    trickled: dict = {}

    def slowloris(sock):
        """A byte every second: a per-read timeout would never fire; the request deadline must."""
        with sock:
            sock.settimeout(1.0)
            started = time.monotonic()
            for byte in b'{"name": "status"}':
                with contextlib.suppress(TimeoutError):
                    if sock.recv(1, socket.MSG_PEEK):
                        break                  # cut off: the reply is there to be read
                sock.send(bytes([byte]))
            sock.settimeout(10)
            trickled.update(json.loads(sock.makefile("rb").readline()), after=time.monotonic() - started)

    trickling = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    trickling.connect(agent.socket)            # before the idle ones: served first, it takes a slot
    trickler = threading.Thread(target=slowloris, args=(trickling,))
    trickler.start()
    with contextlib.ExitStack() as stack:
        idle = []
        for _ in range(40):                    # far beyond the bound of clients served at once
            sock = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
            sock.connect(agent.socket)
            idle.append(sock)
        sock = idle[-1]
        sock.settimeout(2)
        assert json.loads(sock.makefile("rb").readline())["busy"] is True, "refused at once, not queued"

        @fuzz(60)
        @given(line=CONTROL_LINES)
        def answered(line):
            reply = control_exchange(agent.socket, line)
            assert isinstance(reply.get("ok"), bool)

        answered()
        done = agent.cli("status")
        assert done.returncode == 0, done.stderr
    trickler.join(30)
    assert trickled["error"] == f"bad request: no complete request line within {READ_DEADLINE:g} s"
    assert trickled["after"] < READ_DEADLINE + 2
    assert agent.proc.poll() is None
    agent.until_commands_answered()
    agent.more_seqs()


# --- bad reloads -----------------------------------------------------------------------------------------------
def test_a_sighup_with_a_config_the_agent_cannot_use_keeps_it_running(agent, tmp_path):
    good = agent.config.read_text()
    held = OutboxLock(tmp_path / "held.db").acquire()
    try:
        for bad in (good.replace('commit_interval = "100ms"', 'commit_interval = "100ms"\nmax_mb = nan'),
                    good + "x = " + "[" * 5_000 + "]" * 5_000 + "\n",
                    good.replace(str(tmp_path / "outbox.db"), str(tmp_path / "held.db"))):
            agent.config.write_text(bad)
            mark = agent.log.stat().st_size
            agent.proc.send_signal(signal.SIGHUP)
            wait_until(lambda mark=mark: b"reload refused" in agent.log.read_bytes()[mark:], 15, "the refusal")
            agent.more_seqs()
    finally:
        held.release()
    log = agent.log.read_text()
    assert "max_mb: expected a finite number, got nan" in log
    assert "nested more than 32 deep" in log
    assert f"another agent (pid {os.getpid()}) already runs on the outbox {tmp_path / 'held.db'}" in log
    assert agent.proc.poll() is None


def test_a_sighup_with_paths_on_files_the_agent_did_not_make_keeps_it_running_and_the_files_intact(agent, tmp_path):
    good = agent.config.read_text()
    strangers = tmp_path / "strangers"
    strangers.mkdir()
    (strangers / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (strangers / "notes.sock").write_text("not a socket\n")
    before = snapshot(strangers)
    for bad in (good.replace(str(tmp_path / "outbox.db"), str(strangers / "passwd")),
                good.replace(str(tmp_path / "control.sock"), str(strangers / "notes.sock")),
                good + f"x = {'9' * 5_000}\n"):
        agent.config.write_text(bad)
        mark = agent.log.stat().st_size
        agent.proc.send_signal(signal.SIGHUP)
        wait_until(lambda mark=mark: b"reload refused" in agent.log.read_bytes()[mark:], 15, "the refusal")
        agent.more_seqs()
    log = agent.log.read_text()
    assert f'buffer.path: "{strangers / "passwd"}" is a text file of 32 bytes, not an outbox' in log
    assert f'control.socket: "{strangers / "notes.sock"}" is a regular file, not a socket' in log
    assert "a number of more than 4300 digits" in log
    assert snapshot(strangers) == before
    agent.config.write_text(good)
    assert agent.cli("status").returncode == 0, "the running config's control socket still answers"


def a_fresh_database_of_another_program(path) -> None:
    """Killed before its first checkpoint: its tables are in its WAL, its main file's header looks empty.

    No header can tell it from an outbox in the same state (buffer/fileinfo.py), so the checker
    passes it; the outbox refuses it once it opens it and finds tables that are not its own.
    """
    script = ("import os, sqlite3, sys; conn = sqlite3.connect(sys.argv[1]); conn.execute('PRAGMA journal_mode=WAL'); "
              "conn.execute('CREATE TABLE contacts (name TEXT)'); conn.commit(); os._exit(0)")
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, timeout=60)


def test_a_sighup_onto_a_file_the_outbox_refuses_to_open_keeps_the_running_config(
        tmp_path, broker, transmitter, subscriber_factory):
    sub = subscriber_factory(broker.host, broker.port, BASE + "/+", base=BASE)
    answers = subscriber_factory(broker.host, broker.port, BASE + "/cmd/+/reply", base=BASE)
    live = LiveAgent(tmp_path, broker, transmitter, sub, answers)
    try:
        live.more_seqs(0, 3)
        a_fresh_database_of_another_program(tmp_path / "contacts.db")
        before = fingerprint(tmp_path / "contacts.db")
        live.config.write_text(live.config.read_text().replace(str(tmp_path / "outbox.db"),
                                                               str(tmp_path / "contacts.db")))
        mark = live.log.stat().st_size
        live.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: b"reload" in live.log.read_bytes()[mark:] and (
            b"refused" in live.log.read_bytes()[mark:] or live.proc.poll() is not None), 20, "the reload's outcome")
        assert live.proc.poll() is None, "the agent is alive"
        live.more_seqs()
        assert fingerprint(tmp_path / "contacts.db") == before
    finally:
        live.stop()


def test_a_sighup_onto_a_socket_another_process_serves_keeps_the_running_control_socket(
        tmp_path, broker, transmitter, subscriber_factory):
    sub = subscriber_factory(broker.host, broker.port, BASE + "/+", base=BASE)
    answers = subscriber_factory(broker.host, broker.port, BASE + "/cmd/+/reply", base=BASE)
    live = LiveAgent(tmp_path, broker, transmitter, sub, answers)
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        live.more_seqs(0, 3)
        wait_until(lambda: live.cli("status").returncode == 0, 20, "the control socket")
        other.bind(str(tmp_path / "other.sock"))   # a socket: the checker passes it; someone answers on it
        other.listen()
        live.config.write_text(live.config.read_text().replace(live.socket, str(tmp_path / "other.sock")))
        mark = live.log.stat().st_size
        live.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: b"control socket" in live.log.read_bytes()[mark:]
                   or b"reload refused" in live.log.read_bytes()[mark:], 20, "the reload's outcome")
        assert request(live.socket, "health")["ok"], "the running control socket still answers"
    finally:
        other.close()
        live.stop()
    assert live.proc.returncode == 0
