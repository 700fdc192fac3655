"""edge.notify against a real AF_UNIX datagram socket standing in for systemd."""

from __future__ import annotations

import os
import socket
import time
import uuid

import pytest

from edge.notify import Notifier


def _receive(sock: socket.socket) -> str:
    sock.settimeout(5)
    return sock.recv(4096).decode()


@pytest.fixture
def path_socket(tmp_path):
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    yield path, sock
    sock.close()


@pytest.fixture
def abstract_socket():
    name = f"linli-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    yield "@" + name, sock
    sock.close()


def test_every_message_reaches_a_path_socket(path_socket):
    path, sock = path_socket
    n = Notifier(environ={"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.ready() and _receive(sock) == "READY=1"
    assert n.status("12 sensors, outbox 3") and _receive(sock) == "STATUS=12 sensors, outbox 3"
    assert n.watchdog() and _receive(sock) == "WATCHDOG=1"
    assert n.stopping() and _receive(sock) == "STOPPING=1"
    n.close()


def test_abstract_socket(abstract_socket):
    address, sock = abstract_socket
    n = Notifier(environ={"NOTIFY_SOCKET": address})
    assert n.ready() and _receive(sock) == "READY=1"
    assert n.watchdog() and _receive(sock) == "WATCHDOG=1"


def test_reloading_carries_a_current_monotonic_timestamp(path_socket):
    path, sock = path_socket
    n = Notifier(environ={"NOTIFY_SOCKET": path})
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert n.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    lines = _receive(sock).split("\n")
    assert lines[0] == "RELOADING=1"
    key, value = lines[1].split("=")
    assert key == "MONOTONIC_USEC" and before <= int(value) <= after


def test_status_with_newlines_stays_one_assignment(path_socket):
    path, sock = path_socket
    n = Notifier(environ={"NOTIFY_SOCKET": path})
    n.status("broker down\nREADY=1")
    assert _receive(sock) == "STATUS=broker down READY=1"


def test_without_socket_everything_is_a_no_op():
    n = Notifier(environ={})
    assert not n.enabled
    assert [n.ready(), n.status("x"), n.watchdog(), n.stopping(), n.reloading()] == [False] * 5
    assert n.watchdog_interval() is None


def test_unsupported_address_disables_notifications():
    n = Notifier(environ={"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not n.enabled and n.ready() is False


def test_vanished_socket_is_reported_not_raised(tmp_path, caplog):
    n = Notifier(environ={"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert n.enabled
    assert n.ready() is False
    assert n.watchdog() is False
    warnings = [r for r in caplog.records if "cannot notify systemd" in r.getMessage()]
    assert len(warnings) == 1                                 # said once, not on every watchdog tick


def test_default_environment_is_os_environ(path_socket, monkeypatch):
    path, sock = path_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert Notifier().ready() and _receive(sock) == "READY=1"


@pytest.mark.parametrize("env, expected", [
    ({"WATCHDOG_USEC": "60000000"}, 60.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),   # meant for another process
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
    ({}, None),
])
def test_watchdog_interval(env, expected):
    assert Notifier(environ=env).watchdog_interval() == expected
