"""Every path of a config checked against what the agent would make there: refused with its key path, left alone.

Each test snapshots the folder (type, size, mtime, content of every entry) before the check and
compares after it: a refused file is byte-identical with the same mtime, and nothing new appears.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
from pathlib import Path

import pytest

from buffer.outbox import Outbox, Priority
from buffer.store import APPLICATION_ID
from edge import i18n
from edge.config import ControlConfig, load_config
from edge.config_paths import MAX_SOCKET_PATH
from edge.errors import ConfigError
from edge.instance_lock import OutboxLock
from tests.agent_helpers import config_text, linli
from tests.untouched import snapshot

GATEWAY = '[gateway]\nid = "gw-0042"\ngrid = "shimen2/xinfukangli/b07"\n'
NOT_AN_OUTBOX = ("not an outbox: the agent leaves it alone and cannot start on it; correct the path or move that "
                 "file away")


@pytest.fixture(autouse=True)
def english():
    i18n.use_languages(["en"])
    yield
    i18n.use_languages(None)


def problems(tmp_path: Path, buffer: str = "state/outbox.db", socket_path: str = "state/control.sock",
             more: str = "") -> list[str]:
    """Load a config in ``tmp_path`` with these paths (relative ones follow the config); [] when it is valid."""
    config = tmp_path / "edge.toml"
    config.write_text(f'{GATEWAY}[buffer]\npath = "{buffer}"\n[control]\nsocket = "{socket_path}"\n{more}')
    try:
        load_config(config)
    except ConfigError as exc:
        return exc.problems
    return []


def another_programs_database(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE contacts (name TEXT)")
    conn.execute("PRAGMA application_id=305419896")   # 0x12345678
    conn.commit()
    conn.close()
    return path


def bound_socket(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    return sock


# --- [buffer] path ----------------------------------------------------------------------------------------------
def _text(folder: Path) -> Path:
    (folder / "notes.txt").write_text("the pump was serviced on 3 March\n")
    return folder / "notes.txt"


def _passwd(folder: Path) -> Path:
    (folder / "etc").mkdir()
    (folder / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    return folder / "etc" / "passwd"


def _sqlite(folder: Path) -> Path:
    return another_programs_database(folder / "contacts.db")


def _newer(folder: Path) -> Path:
    conn = sqlite3.connect(folder / "outbox.db")
    conn.execute("CREATE TABLE outbox (seq INTEGER PRIMARY KEY)")
    conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
    conn.execute("PRAGMA user_version=99")
    conn.commit()
    conn.close()
    return folder / "outbox.db"


def _truncated(folder: Path) -> Path:
    (folder / "cut.db").write_bytes(b"SQLite format 3\x00" + bytes(40))
    return folder / "cut.db"


def _folder(folder: Path) -> Path:
    (folder / "spool").mkdir()
    return folder / "spool"


def _fifo(folder: Path) -> Path:
    os.mkfifo(folder / "fifo")
    return folder / "fifo"


FOREIGN = [
    (_text, "a text file of 33 bytes"),
    (_passwd, "a text file of 32 bytes"),
    (_sqlite, "an SQLite database of another program (application_id 0x12345678)"),
    (_newer, "an outbox of a newer version of linli-edge (schema version 99)"),
    (_truncated, "a truncated SQLite file of 56 bytes"),
    (_folder, "a directory"),
    (_fifo, "a FIFO (named pipe)"),
]


@pytest.mark.parametrize("make, what", FOREIGN, ids=[make.__name__[1:] for make, _ in FOREIGN])
def test_a_buffer_path_on_something_that_is_not_an_outbox_is_refused_and_left_alone(tmp_path, make, what):
    path = make(tmp_path)
    before = snapshot(tmp_path)
    assert problems(tmp_path, buffer=str(path)) == [f'buffer.path: "{path}" is {what}, {NOT_AN_OUTBOX}']
    assert snapshot(tmp_path) == {**before, "edge.toml": snapshot(tmp_path)["edge.toml"]}


def test_a_relative_buffer_path_reaching_a_system_file_is_refused(tmp_path):
    """The issue's ``../../etc/passwd``, on a copy: the path is shown resolved."""
    passwd = _passwd(tmp_path)
    (tmp_path / "opt" / "linli").mkdir(parents=True)
    config = tmp_path / "opt" / "linli" / "edge.toml"
    config.write_text(f'{GATEWAY}[buffer]\npath = "../../etc/passwd"\n[control]\nsocket = "control.sock"\n')
    before = snapshot(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert info.value.problems == [f'buffer.path: "{passwd}" is a text file of 32 bytes, {NOT_AN_OUTBOX}']
    assert snapshot(tmp_path) == before


def test_a_socket_or_a_device_as_the_outbox_is_refused(tmp_path):
    with bound_socket(tmp_path / "agent.sock"):
        assert problems(tmp_path, buffer=str(tmp_path / "agent.sock")) == [
            f'buffer.path: "{tmp_path / "agent.sock"}" is a socket, {NOT_AN_OUTBOX}']
    assert problems(tmp_path, buffer="/dev/null") == [
        f'buffer.path: "/dev/null" is a character device, {NOT_AN_OUTBOX}']


def test_the_config_file_itself_as_the_outbox_is_refused(tmp_path):
    assert problems(tmp_path, buffer="edge.toml") == [
        f'buffer.path: "{tmp_path / "edge.toml"}" is this configuration file']


def test_an_empty_file_an_outbox_and_a_running_agents_outbox_are_accepted(tmp_path):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "outbox.db").touch()        # what a power cut during creation leaves
    assert problems(tmp_path) == []
    (tmp_path / "state" / "outbox.db").unlink()
    OutboxLock(tmp_path / "state" / "outbox.db").acquire().release()   # the lock file with the pid in it
    box = Outbox(tmp_path / "state" / "outbox.db")
    try:
        box.add({"kind": "alarm", "alarm": "a/b", "state": "raised", "ts": 1}, Priority.ALARM)
        assert {"outbox.db-wal", "outbox.db-shm", "outbox.db.lock"} <= {p.name for p in (tmp_path / "state").iterdir()}
        assert problems(tmp_path) == [], "config check (or a reload) while the agent runs"
    finally:
        box.close()
    assert problems(tmp_path) == []


@pytest.mark.parametrize("name, make, what", [
    ("outbox.db.lock", lambda p: p.mkdir(), "the outbox's lock goes, but it is a directory"),
    ("outbox.db.lock", lambda p: p.write_text("backup of 3 March\n"), "the outbox's lock goes, but it holds "
                                                                       "something else"),
    ("outbox.db.lock", lambda p: p.symlink_to("/etc/hostname"), "the outbox's lock goes, but it is a symbolic link"),
    ("outbox.db-wal", lambda p: p.symlink_to("/etc/hostname"), "the outbox's write-ahead log goes, but it is a "
                                                                "symbolic link"),
    ("outbox.db-shm", lambda p: p.mkdir(), "the outbox's shared-memory index goes, but it is a directory"),
], ids=["lock-folder", "lock-text", "lock-link", "wal-link", "shm-folder"])
def test_what_stands_where_the_lock_or_sqlites_files_go_is_refused(tmp_path, name, make, what):
    """SQLite follows a link at -wal or -shm and truncates what it points to; the lock refuses a stranger's file."""
    (tmp_path / "state").mkdir()
    make(tmp_path / "state" / name)
    before = snapshot(tmp_path)
    assert problems(tmp_path) == [f'buffer.path: "{tmp_path / "state" / name}" is where {what}: move it away']
    assert snapshot(tmp_path) == {**before, "edge.toml": snapshot(tmp_path)["edge.toml"]}


def test_a_lock_file_holding_a_pid_is_accepted(tmp_path):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "outbox.db.lock").write_text("4242\n")
    assert problems(tmp_path) == []


def test_a_folder_on_the_way_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "state").write_text("not a folder\n")
    assert problems(tmp_path, socket_path=str(tmp_path / "control.sock")) == [
        f'buffer.path: "{tmp_path / "state" / "outbox.db"}" cannot be created: "{tmp_path / "state"}" is a regular '
        f'file, not a directory']


def test_a_file_name_longer_than_the_kernel_takes_is_refused(tmp_path):
    name = "o" * 252   # with ".lock" beside it, over NAME_MAX (255)
    assert problems(tmp_path, buffer=name) == [f'buffer.path: "{name}" is 252 bytes; here a file name may have at '
                                               f'most 250']


# --- [control] socket ---------------------------------------------------------------------------------------------
def test_a_control_socket_path_on_a_file_is_refused_and_left_alone(tmp_path):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "control.sock").write_text("keep me\n")
    before = snapshot(tmp_path)
    assert problems(tmp_path) == [f'control.socket: "{tmp_path / "state" / "control.sock"}" is a regular file, not '
                                  f'a socket: the agent would not replace it with its control socket']
    assert snapshot(tmp_path) == {**before, "edge.toml": snapshot(tmp_path)["edge.toml"]}


def test_a_stale_socket_is_accepted(tmp_path):
    (tmp_path / "state").mkdir()
    bound_socket(tmp_path / "state" / "control.sock").close()     # what a killed agent leaves
    assert problems(tmp_path) == []


@pytest.mark.parametrize("socket_path, what", [
    ("state/outbox.db", "the outbox"),
    ("state/outbox.db-wal", "the outbox's write-ahead log"),
    ("state/outbox.db.lock", "the outbox's lock"),
])
def test_a_control_socket_on_the_outbox_or_its_files_is_refused(tmp_path, socket_path, what):
    assert problems(tmp_path, socket_path=socket_path) == [
        f'control.socket: "{tmp_path / socket_path}" is also {what} (buffer.path)']


def test_the_default_socket_is_checked_against_the_other_paths(tmp_path, monkeypatch):
    default = tmp_path / "run" / "control.sock"                    # the default, moved out of this machine's /run
    monkeypatch.setattr(ControlConfig, "socket", str(default))
    config = tmp_path / "edge.toml"
    config.write_text(f'{GATEWAY}[buffer]\npath = "{default}"\n')   # and no [control]
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert info.value.problems == [f'control.socket: "{default}" is also the outbox (buffer.path)']


def test_a_control_socket_path_longer_than_a_socket_address_is_refused(tmp_path):
    deep = tmp_path / ("d" * (MAX_SOCKET_PATH - len(f"{tmp_path}/") - len("/control.sock")))
    fits = deep / "control.sock"
    assert len(str(fits)) == MAX_SOCKET_PATH
    assert problems(tmp_path, socket_path=str(fits)) == []
    longer = deep / "control1.sock"
    assert problems(tmp_path, socket_path=str(longer)) == [
        f"control.socket: the path is {MAX_SOCKET_PATH + 1} bytes; the path of a Unix socket may have at most "
        f"{MAX_SOCKET_PATH}"]


# --- files the agent reads ------------------------------------------------------------------------------------------
TLS = '[mqtt]\nport = 8883\ntls = true\nca_file = "{ca}"\ncert_file = "gw.pem"\nkey_file = "gw.pem"\n'


def test_a_fifo_as_password_or_tls_file_is_refused(tmp_path):
    os.mkfifo(tmp_path / "password")
    os.mkfifo(tmp_path / "ca.pem")
    (tmp_path / "gw.pem").write_text("certificate and key in one PEM\n")
    before = snapshot(tmp_path)
    more = TLS.format(ca="ca.pem") + 'username = "gw-0042"\npassword_file = "password"\n'
    assert problems(tmp_path, more=more) == [
        f'mqtt.ca_file: expected a regular file, "{tmp_path / "ca.pem"}" is a FIFO (named pipe)',
        f'mqtt.password_file: expected a regular file, "{tmp_path / "password"}" is a FIFO (named pipe)']
    assert snapshot(tmp_path) == {**before, "edge.toml": snapshot(tmp_path)["edge.toml"]}


def test_a_password_longer_than_mqtt_carries_is_refused(tmp_path):
    (tmp_path / "password").write_text("p" * 65_535 + "\n")
    more = '[mqtt]\nusername = "gw-0042"\npassword_file = "password"\n'
    assert problems(tmp_path, more=more) == []
    (tmp_path / "password").write_text("p" * 65_540 + "\n")
    assert problems(tmp_path, more=more) == [
        f'mqtt.password_file: "{tmp_path / "password"}" is 65541 bytes; MQTT carries a password of at most 65535 '
        f'bytes']


def test_the_outbox_on_a_file_the_agent_reads_is_refused(tmp_path):
    (tmp_path / "gw.pem").write_text("certificate and key in one PEM\n")
    assert problems(tmp_path, more=TLS.format(ca="gw.pem")) == [], "files that are only read may be shared"
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    assert problems(tmp_path, more=TLS.format(ca="state/outbox.db")) == [
        f'mqtt.ca_file: no such file "{tmp_path / "state" / "outbox.db"}"']
    assert problems(tmp_path, buffer="state/ca.pem", more=TLS.format(ca="state/ca.pem")) == [
        f'buffer.path: "{tmp_path / "state" / "ca.pem"}" is also the CA certificates (mqtt.ca_file)']


# --- the real commands ------------------------------------------------------------------------------------------------
def run(*args: str, timeout: float = 60) -> tuple[int, str, bytes]:
    """``linli ARGS`` to its end; killed if it outlives ``timeout`` (an agent stuck on a FIFO ignores SIGTERM)."""
    proc = linli(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return proc.returncode, out.decode(), err


@pytest.mark.parametrize("command", [("config", "check"), ("run",)], ids=["config-check", "run"])
def test_linli_exits_78_and_leaves_a_foreign_outbox_socket_path_and_fifo_alone(tmp_path, command):
    """The issue's rows as a technician meets them; ``linli run`` stops before it makes or opens any file."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "outbox.db").write_text("[gateway]\nid = 'gw-e2e'\n")      # edge.toml copied to the wrong name
    (state / "control.sock").write_text("keep me\n")
    os.mkfifo(tmp_path / "password")                                    # opened to read, it would block
    config = tmp_path / "edge.toml"
    config.write_text(config_text(port=1883, outbox=state / "outbox.db", serial_port="/dev/ttyUSB0",
                                  mqtt_extra=f'username = "gw-e2e"\npassword_file = "{tmp_path / "password"}"'))
    before = snapshot(tmp_path)
    code, _out, err = run("--config", str(config), *command, timeout=20)
    assert code == 78, err
    assert f'buffer.path: "{state / "outbox.db"}" is a text file of 24 bytes, not an outbox'.encode() in err
    assert f'control.socket: "{state / "control.sock"}" is a regular file, not a socket'.encode() in err
    assert f'password_file: expected a regular file, "{tmp_path / "password"}" is a FIFO'.encode() in err
    assert b"Traceback" not in err
    assert snapshot(tmp_path) == before, "byte-identical, same mtime, nothing made beside them"


def test_linli_run_with_the_control_socket_on_its_own_outbox_exits_78_and_keeps_the_outbox(tmp_path):
    """The agent used to unlink its own open outbox here and send nothing."""
    with Outbox(tmp_path / "outbox.db") as box:
        box.add({"kind": "alarm", "alarm": "pump-pressure/low", "state": "raised", "ts": 1}, Priority.ALARM)
    config = tmp_path / "edge.toml"
    config.write_text(config_text(port=1883, outbox=tmp_path / "outbox.db", serial_port="/dev/ttyUSB0")
                      .replace(str(tmp_path / "control.sock"), str(tmp_path / "outbox.db")))
    before = snapshot(tmp_path)
    code, _out, err = run("--config", str(config), "run", timeout=20)
    assert code == 78, err
    assert f'control.socket: "{tmp_path / "outbox.db"}" is also the outbox (buffer.path)'.encode() in err
    assert snapshot(tmp_path) == before


def test_linli_config_check_names_the_length_of_a_socket_path_too_long(tmp_path):
    longer = tmp_path / ("s" * 120) / "control.sock"
    config = tmp_path / "edge.toml"
    config.write_text(config_text(port=1883, outbox=tmp_path / "outbox.db", serial_port="/dev/ttyUSB0")
                      .replace(str(tmp_path / "control.sock"), str(longer)))
    code, _out, err = run("config", "check", str(config))
    assert code == 78
    assert (f"control.socket: the path is {len(str(longer))} bytes; the path of a Unix socket may have at most "
            f"{MAX_SOCKET_PATH}").encode() in err
