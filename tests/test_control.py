"""The control socket on its own: requests, bad requests, a stale socket, a second agent."""

from __future__ import annotations

import socket

import pytest

from edge.commands import Commands
from edge.control import AgentUnreachable, ControlServer, request


@pytest.fixture
def server(tmp_path):
    srv = ControlServer(str(tmp_path / "control.sock"), Commands("gw-1", {"ping": lambda args: {"echo": args}}))
    srv.open()
    srv.start()
    yield srv
    srv.stop()


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
