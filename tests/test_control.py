"""The control socket on its own: requests, bad requests, many and slow clients, a stale socket, a second agent."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time

import pytest

from edge.commands import MAX_REQUEST, Commands
from edge.control import MAX_CLIENTS, AgentUnreachable, ControlServer, request

#: The unit tests' whole-request deadline, shorter than the agent's so that they run quickly.
DEADLINE = 1.0


def crash(args):
    raise RecursionError("a handler bug")


@pytest.fixture
def server(tmp_path):
    srv = ControlServer(str(tmp_path / "control.sock"),
                        Commands("gw-1", {"ping": lambda args: {"echo": args}, "crash": crash}),
                        read_deadline=DEADLINE)
    srv.open()
    srv.start()
    yield srv
    srv.stop()


@contextlib.contextmanager
def idle_clients(path: str, count: int):
    """``count`` connections that send nothing, closed at the end."""
    with contextlib.ExitStack() as stack:
        clients = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
            sock.settimeout(10)
            sock.connect(path)
            clients.append(sock)
        yield clients


def exchange(path: str, data: bytes, timeout: float = 10.0) -> dict:
    """Send ``data`` raw and read the one reply line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the server may answer before all is sent
            sock.sendall(data)
        return json.loads(sock.makefile("rb").readline())


def test_a_request_gets_the_command_tables_reply(server):
    reply = request(server.path, "ping", {"n": 1})
    assert reply["ok"] is True and reply["result"] == {"echo": {"n": 1}} and reply["gateway"] == "gw-1"
    assert request(server.path, "reboot")["error"].startswith('unknown command "reboot"')


def test_a_malformed_request_is_answered_not_fatal(server):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(server.path)
        sock.sendall(b"{not json\n")
        answer = sock.recv(4096)
    assert b'"ok": false' in answer and b"bad request" in answer
    assert request(server.path, "ping")["ok"] is True, "the server still serves"


def test_the_socket_is_for_the_service_group_only(server):
    import os
    import stat
    assert stat.S_IMODE(os.stat(server.path).st_mode) == 0o660


def test_a_stale_socket_from_a_killed_agent_is_replaced(tmp_path):
    path = tmp_path / "control.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()                                     # the file stays, nobody listens: what kill -9 leaves
    srv = ControlServer(str(path), Commands("gw-1", {"ping": lambda a: 1}))
    srv.open()
    srv.start()
    try:
        assert request(str(path), "ping")["result"] == 1
    finally:
        srv.stop()
    assert not path.exists(), "a clean stop removes the socket"


def test_a_second_agent_does_not_steal_a_live_socket(server):
    second = ControlServer(server.path, Commands("gw-1", {}))
    with pytest.raises(OSError, match="another agent already serves"):
        second.open()
    assert request(server.path, "ping")["ok"] is True


def test_no_agent_is_a_clear_error(tmp_path):
    with pytest.raises(AgentUnreachable, match="the agent is not running"):
        request(str(tmp_path / "none.sock"), "ping")


def test_six_idle_clients_do_not_lock_out_a_technician(tmp_path):
    srv = ControlServer(str(tmp_path / "control.sock"), Commands("gw-1", {"ping": lambda args: {"echo": args}}),
                        read_deadline=10)
    srv.open()
    srv.start()
    try:
        with idle_clients(srv.path, 6):
            started = time.monotonic()
            assert request(srv.path, "ping", {"n": 2})["result"] == {"echo": {"n": 2}}
            assert time.monotonic() - started < 5, "answered at once, not after the idle ones time out"
    finally:
        srv.stop()


def test_clients_beyond_the_bound_get_an_immediate_busy_reply_and_request_retries(server):
    with idle_clients(server.path, MAX_CLIENTS) as holding, idle_clients(server.path, 3) as extra:
        for sock in extra:
            sock.settimeout(DEADLINE / 2)      # far less than the deadline: the refusal comes at once
            reply = json.loads(sock.makefile("rb").readline())
            assert reply["busy"] is True and reply["ok"] is False
            assert f"already serves {MAX_CLIENTS} local clients" in reply["error"]
        started = time.monotonic()
        assert request(server.path, "ping")["ok"] is True, "retried until an idle client ran out of time"
        assert time.monotonic() - started < DEADLINE + 2
        for sock in holding:                   # each idle client was told why it was dropped
            reply = json.loads(sock.makefile("rb").readline())
            assert reply["error"] == f"bad request: no complete request line within {DEADLINE:g} s"


def test_a_client_trickling_bytes_is_cut_off_at_the_deadline_while_others_are_served(server):
    reply: dict = {}

    def slowloris():
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(server.path)
            sock.settimeout(0.2)
            stream = sock.makefile("rb")
            for byte in b'{"name": "ping", "args": {"n": 1}}':
                try:
                    sock.send(bytes([byte]))
                except OSError:                # cut off: the reply waits to be read
                    break
                with contextlib.suppress(TimeoutError):
                    if sock.recv(1, socket.MSG_PEEK):
                        break
            sock.settimeout(10)
            reply.update(json.loads(stream.readline()))

    started = time.monotonic()
    trickler = threading.Thread(target=slowloris)
    trickler.start()
    assert request(server.path, "ping")["ok"] is True
    trickler.join(10)
    assert reply["error"] == f"bad request: no complete request line within {DEADLINE:g} s"
    assert time.monotonic() - started < DEADLINE + 1
    assert time.monotonic() - server.heartbeat < 1.5, "the accepting thread kept beating"


@pytest.mark.parametrize("data, error", [
    (b"[" * 70_000 + b"\n", f"bad request: the line is longer than {MAX_REQUEST} bytes"),
    (b"[" * 60_000 + b"\n", "bad request: the request is nested too deeply to be read"),
    (b"\xff\xfe\x00garbage\n", "bad request: the request is not UTF-8 text (byte 0 is invalid)"),
    (b'["ping"]\n', 'bad request: expected {"name": "<command>", "args": {...}} on one line'),
    (b'{"name": "a/b"}\n', 'bad request: expected {"name": "<command>", "args": {...}} on one line'),
    (b'{"name": "ping", "args": 1' + b"0" * 5_000 + b"}\n", "args must be a JSON object"),
    (b'{"name": "crash"}\n', "internal error: a handler bug"),
])
def test_hostile_requests_are_answered_and_the_server_goes_on(server, data, error):
    assert exchange(server.path, data)["error"] == error
    assert request(server.path, "ping")["ok"] is True
    assert server.is_alive() and server.error is None


def test_a_regular_file_at_the_socket_path_is_left_alone(tmp_path):
    path = tmp_path / "control.sock"
    path.write_bytes(b"someone's notes\n")
    srv = ControlServer(str(path), Commands("gw-1", {}))
    with pytest.raises(OSError, match="exists and is not a socket; it is left alone"):
        srv.open()
    assert path.read_bytes() == b"someone's notes\n"


def test_stop_removes_only_its_own_socket(server):
    path = server.path
    replaced = path + ".new"
    with open(replaced, "w") as f:
        f.write("not ours")
    import os
    os.replace(replaced, path)                 # someone put a file where the socket was
    server.stop()
    with open(path) as f:
        assert f.read() == "not ours"


def test_an_agent_busy_beyond_the_callers_timeout_is_unreachable(tmp_path):
    srv = ControlServer(str(tmp_path / "control.sock"), Commands("gw-1", {"ping": lambda a: 1}), max_clients=1,
                        read_deadline=10)
    srv.open()
    srv.start()
    try:
        with idle_clients(srv.path, 1):
            with pytest.raises(AgentUnreachable, match="stayed busy with other local clients for 0.5 s"):
                request(srv.path, "ping", timeout=0.5)
    finally:
        srv.stop()
