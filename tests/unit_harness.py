"""systemd/linli-edge.service started the way systemd starts it, on a machine where systemd is not PID 1.

The unit file is read, not copied. ``ExecStart=`` and ``ExecReload=`` run as written with two swaps
only — the install prefix ``/opt/linli/current/bin/`` becomes the virtualenv running the tests, and
``/etc/linli/edge.toml`` a temporary config — and ``$MAINPID`` substituted as systemd does. From the
unit the harness honours what decides whether the agent starts, talks to systemd, reloads and stops:

- ``User=``, ``Group=``, ``SupplementaryGroups=`` when the tests run as root (through ``setpriv``);
  an account or group that does not exist on a test machine (the installer creates them on a
  gateway) is replaced by ``nobody`` / left out, and :attr:`Service.account_note` says so;
- ``NoNewPrivileges=`` and an empty ``CapabilityBoundingSet=`` (``setpriv`` again), ``UMask=``;
- systemd's clean environment: ``PATH``, ``HOME``/``USER``/``LOGNAME``/``SHELL`` of the account,
  ``INVOCATION_ID``, the ``*_DIRECTORY`` variables, ``Environment=``; nothing of the test process;
- ``StateDirectory=``/``RuntimeDirectory=`` (owned by the account) and ``ConfigurationDirectory=``
  (``root:<group>``, as deploy/install.sh makes it), each with its mode, under a temporary root;
- ``NOTIFY_SOCKET``: a datagram socket bound here, with ``NotifyAccess=main`` enforced from the
  sender's credentials (``SCM_CREDENTIALS``); ``WATCHDOG_USEC`` from ``WatchdogSec=`` and
  ``WATCHDOG_PID`` set to the main pid, as systemd does after its fork;
- ``TimeoutStartSec=`` (READY=1 in time), ``TimeoutStopSec=`` and ``KillMode=`` on stop; the
  main process's session stands for the unit's control group.

The file-system and system-call sandbox (``ProtectSystem=``, ``SystemCallFilter=``,
``DevicePolicy=``, …) needs systemd itself and is not reproduced.
"""

from __future__ import annotations

import array
import os
import grp
import pwd
import re
import shlex
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "linli-edge.service"

#: The only two things swapped in the unit's command lines: where the installer puts the command, where the config.
INSTALL_PREFIX = "/opt/linli/current/bin/"
CONFIG_PATH = "/etc/linli/edge.toml"

#: systemd's PATH for system services (systemd.exec(5), "Environment variables in spawned processes").
SERVICE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400}


class UnitError(AssertionError):
    """The unit uses something this harness does not reproduce, or its service failed as systemd would see it."""


def unit_settings(path: Path = UNIT) -> dict[str, dict[str, list[str]]]:
    """A unit file as section → key → every value in order (keys like DeviceAllow= repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"not a unit file line: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def timespan(text: str) -> float:
    """A systemd time span in seconds: ``60``, ``90s``, ``1min 30s``, ``500ms`` (systemd.time(7))."""
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text.strip())
    if not parts or "".join(n + u for n, u in parts) != re.sub(r"\s+", "", text):
        raise UnitError(f"not a time span this harness reads: {text!r}")
    return sum(float(number) * _TIME_UNITS[unit or "s"] for number, unit in parts)


def command_argv(line: str, environment: dict[str, str]) -> list[str]:
    """An ``Exec*=`` value as the argv systemd executes: quotes removed, ``$VAR`` split into words, ``${VAR}`` kept."""
    if line[:1] in "-@:+!":
        raise UnitError(f"command prefixes are not reproduced: {line!r}")
    if "%" in line:
        raise UnitError(f"specifiers are not reproduced: {line!r}")

    def value(name: str) -> str:
        if name not in environment:
            raise UnitError(f"{line!r} uses ${name}, which the harness does not provide")
        return environment[name]

    argv: list[str] = []
    for word in shlex.split(line):
        alone = re.fullmatch(r"\$(\w+)", word)
        if alone:
            argv += value(alone.group(1)).split()
        else:
            argv.append(re.sub(r"\$\{(\w+)\}", lambda m: value(m.group(1)), word))
    return argv


def swap(argv: list[str], swaps: dict[str, str]) -> list[str]:
    """Replace each ``old`` by ``new`` in the words; every swap must apply, else the unit changed under the test."""
    unused = [old for old in swaps if not any(old in word for word in argv)]
    if unused:
        raise UnitError(f"{shlex.join(argv)!r} no longer contains {unused}: update the harness's swaps")
    for old, new in swaps.items():
        argv = [word.replace(old, new) for word in argv]
    return argv


@dataclass(frozen=True)
class Notification:
    pid: int
    fields: tuple[str, ...]       # KEY=value lines of one datagram
    at: float                     # time.monotonic() on arrival


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str
    shell: str


class NotifySocket:
    """The service manager's end of sd_notify: collects datagrams with the sender's pid."""

    def __init__(self, path: Path):
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self._sock.bind(str(path))
        os.chmod(path, 0o666)                        # like /run/systemd/notify: any service user may write
        self._sock.settimeout(0.2)
        self._received: list[Notification] = []
        self._changed = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._collect, name="notify-socket", daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        ucred = struct.calcsize("3i")
        while not self._closed:
            try:
                data, ancillary, _flags, _addr = self._sock.recvmsg(4096, socket.CMSG_SPACE(ucred))
            except TimeoutError:
                continue
            except OSError:
                return
            pid = -1
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = array.array("i", payload[:ucred])[0]
            with self._changed:
                self._received.append(Notification(pid, tuple(data.decode().splitlines()), time.monotonic()))
                self._changed.notify_all()

    def received(self) -> list[Notification]:
        with self._changed:
            return list(self._received)

    def wait(self, predicate, timeout: float):
        """Wait up to ``timeout`` until ``predicate(notifications)`` is truthy; its value, or None."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not (found := predicate(self._received)):
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(left)
            return found

    def close(self) -> None:
        self._closed = True
        self._thread.join(2)
        self._sock.close()


def _let_others_pass(*paths: Path) -> None:
    """Folders on the way to ``paths`` that lie inside the system's temporary folder get the search bit for
    others (pass through; not list, not read). Nowhere else is anything changed."""
    temp = Path(tempfile.gettempdir()).resolve()
    for path in paths:
        for folder in [path.resolve(), *path.resolve().parents]:
            if temp not in folder.parents:
                continue
            mode = folder.stat().st_mode
            if not mode & stat.S_IXOTH:
                folder.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _lookup_account(user: str, group: str, supplementary: list[str]) -> tuple[Account, list[str]]:
    """The unit's account, or ``nobody`` where it does not exist here; also the notes on what was replaced."""
    notes = []
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        entry = pwd.getpwnam("nobody")
        notes.append(f"user {user!r} does not exist here (deploy/install.sh creates it): running as nobody")
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        gid = entry.pw_gid
        notes.append(f"group {group!r} does not exist here: using {grp.getgrgid(gid).gr_name}")
    groups = []
    for name in supplementary:
        try:
            groups.append(grp.getgrnam(name).gr_gid)
        except KeyError:
            notes.append(f"supplementary group {name!r} does not exist here: left out")
    return Account(entry.pw_name, entry.pw_uid, gid, tuple(groups), entry.pw_dir, entry.pw_shell), notes


class Service:
    """The unit's service, run once: :meth:`start`, :meth:`reload`, :meth:`stop`.

    ``config_text`` is the temporary configuration; ``{root}`` in it becomes the temporary root
    that holds ``etc/linli``, ``var/lib/linli``, ``run/linli``, the notification socket and the
    journal (the service's stdout and stderr).
    """

    def __init__(self, config_text: str, *, unit: Path = UNIT, venv_bin: Path | None = None):
        self.settings = unit_settings(unit)
        self.service = {key: values[-1] for key, values in self.settings["Service"].items()}
        if self.service.get("Type") != "notify":
            raise UnitError("this harness waits for READY=1: Type=notify only")
        if "EnvironmentFile" in self.service:
            raise UnitError("EnvironmentFile= is not reproduced")
        if shutil.which("setpriv") is None:
            raise UnitError("setpriv (package util-linux) applies User= and NoNewPrivileges=; it is not installed")
        self.venv_bin = venv_bin or Path(sys.prefix) / "bin"
        self.root = Path(tempfile.mkdtemp(prefix="linli-unit-"))
        self.root.chmod(0o755)                       # the service account must reach its directories
        self.account, self.account_note = self._account()
        self.config_path = self.root / "etc" / "linli" / "edge.toml"
        self.journal_path = self.root / "journal.log"
        self.directories = self._make_directories(config_text.replace("{root}", str(self.root)))
        self.notify = NotifySocket(self.root / "notify")
        self.proc: subprocess.Popen | None = None
        self.exit_status: int | None = None
        self.stop_seconds: float | None = None
        self.leftovers: list[int] = []

    # --- what systemd prepares before the fork -----------------------------------------------------------------
    def _account(self) -> tuple[Account | None, str]:
        if os.geteuid() != 0:
            return None, "the tests do not run as root, so User= cannot be applied: the agent runs as the tester"
        account, notes = _lookup_account(self.service["User"], self.service.get("Group", self.service["User"]),
                                         self.service.get("SupplementaryGroups", "").split())
        # The program must be reachable by the account. A checkout in a fresh temporary folder (mktemp -d
        # makes it 0700, as a CI clone may be) only lacks the right to pass through: give that, nothing more.
        _let_others_pass(ROOT, self.venv_bin)
        program = self.venv_bin / "linli"
        probe = subprocess.run([*self._credentials(account), str(program), "version"], capture_output=True,
                               text=True, timeout=60, check=False)
        if probe.returncode != 0:
            return None, (f"{program} cannot be run as {account.name} ({probe.stderr.strip()[:200]}): it, or the "
                          f"interpreter behind it, lives where that account may not enter; the agent runs as root")
        return account, "; ".join(notes)

    def _credentials(self, account: Account | None) -> list[str]:
        """``setpriv`` applying User=/Group=/SupplementaryGroups=, NoNewPrivileges= and CapabilityBoundingSet=."""
        argv = ["setpriv"]
        if account is not None:
            groups = ",".join(str(g) for g in account.groups)
            argv += [f"--reuid={account.uid}", f"--regid={account.gid}",
                     f"--groups={groups}" if groups else "--clear-groups"]
            if self.service.get("CapabilityBoundingSet", None) == "":
                argv += ["--bounding-set=-all", "--inh-caps=-all"]
        if self.service.get("NoNewPrivileges") == "yes":
            argv.append("--no-new-privs")
        return argv + ["--"]

    def _make_directories(self, config_text: str) -> dict[str, Path]:
        owner = (self.account.uid, self.account.gid) if self.account else (os.geteuid(), os.getegid())
        made = {}
        for kind, parent, env in (("State", "var/lib", "STATE_DIRECTORY"), ("Runtime", "run", "RUNTIME_DIRECTORY"),
                                  ("Configuration", "etc", "CONFIGURATION_DIRECTORY")):
            name = self.service.get(f"{kind}Directory")
            if not name:
                continue
            path = self.root / parent / name
            path.mkdir(parents=True)
            path.chmod(int(self.service.get(f"{kind}DirectoryMode", "0755"), 8))
            # ConfigurationDirectory= stays root's; deploy/install.sh gives it the service's group.
            os.chown(path, 0 if kind == "Configuration" and self.account else owner[0], owner[1])
            made[env] = path
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(config_text)
        self.config_path.chmod(0o640)                # root:linli 0640, as the installer leaves edge.toml
        os.chown(self.config_path, 0 if self.account else owner[0], owner[1])
        return made

    def _environment(self) -> dict[str, str]:
        env = {"PATH": SERVICE_PATH, "INVOCATION_ID": uuid.uuid4().hex, "NOTIFY_SOCKET": str(self.notify.path)}
        if self.account is not None:
            env.update(HOME=self.account.home, USER=self.account.name, LOGNAME=self.account.name,
                       SHELL=self.account.shell)
        env.update({key: str(path) for key, path in self.directories.items()})
        if "WatchdogSec" in self.service:
            env["WATCHDOG_USEC"] = str(int(timespan(self.service["WatchdogSec"]) * 1_000_000))
        for value in self.settings["Service"].get("Environment", []):
            for assignment in shlex.split(value):
                key, _, val = assignment.partition("=")
                env[key] = val
        return env

    # --- start, reload, stop ------------------------------------------------------------------------------------
    @property
    def main_pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def exec_start(self) -> list[str]:
        """ExecStart= as written, the prefix and the config path swapped."""
        return swap(command_argv(self.service["ExecStart"], {}),
                    {INSTALL_PREFIX: f"{self.venv_bin}/", CONFIG_PATH: str(self.config_path)})

    def start(self) -> None:
        """ExecStart=, then wait for READY=1 from the main process within TimeoutStartSec=."""
        # WATCHDOG_PID is the main pid, which only exists after the fork: a shell sets it and execs in place.
        wrapper = ["/bin/sh", "-c", 'WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$@"', "sh"]
        with open(self.journal_path, "ab") as journal:
            self.proc = subprocess.Popen(
                [*wrapper, *self._credentials(self.account), *self.exec_start()], env=self._environment(),
                cwd="/", stdin=subprocess.DEVNULL, stdout=journal, stderr=subprocess.STDOUT,
                umask=int(self.service.get("UMask", "0022"), 8), start_new_session=True)
        self.wait_for_state("READY=1", timeout=timespan(self.service.get("TimeoutStartSec", "90")))

    def wait_for_state(self, field: str, *, after: int = 0, timeout: float = 30) -> Notification:
        """The first notification from the main process holding ``field``, ignoring the first ``after`` received."""
        def matching(received):
            return [n for n in received[after:] if n.pid == self.main_pid and field in n.fields]

        deadline = time.monotonic() + timeout
        while True:  # short slices: the service exiting sends no datagram, so look at it between them
            found = self.notify.wait(matching, min(0.5, max(0.0, deadline - time.monotonic())))
            if found:
                return found[0]
            if self.proc.poll() is not None:
                raise UnitError(f"the service exited with status {self.proc.returncode} before {field}:\n"
                                f"{self.journal()}")
            if time.monotonic() >= deadline:
                raise UnitError(f"no {field} from the main process within {timeout:g} s:\n{self.journal()}")

    def accepted(self) -> list[Notification]:
        """What systemd acts on: with NotifyAccess=main, only the main process's messages."""
        access = self.service.get("NotifyAccess", "none")
        received = self.notify.received()
        if access == "all":
            return received
        if access != "main":
            raise UnitError(f"NotifyAccess={access} is not reproduced")
        return [n for n in received if n.pid == self.main_pid]

    def reload(self) -> subprocess.CompletedProcess:
        """ExecReload= as written, ``$MAINPID`` substituted, run with the service's credentials and environment."""
        argv = command_argv(self.service["ExecReload"], {"MAINPID": str(self.main_pid)})
        env = {**self._environment(), "MAINPID": str(self.main_pid)}
        return subprocess.run([*self._credentials(self.account), *argv], env=env, cwd="/", capture_output=True,
                              text=True, timeout=timespan(self.service.get("TimeoutStartSec", "90")),
                              umask=int(self.service.get("UMask", "0022"), 8), check=False)

    def stop(self) -> int:
        """Stop as systemd does for the unit's KillMode=; the exit status (negative: the signal that ended it)."""
        if self.exit_status is not None:
            return self.exit_status
        mode = self.service.get("KillMode", "control-group")
        timeout = timespan(self.service.get("TimeoutStopSec", "90"))
        started = time.monotonic()
        if self.proc.poll() is None:
            if mode in ("mixed", "process"):
                os.kill(self.main_pid, signal.SIGTERM)
            elif mode == "control-group":
                os.killpg(self.main_pid, signal.SIGTERM)
            else:
                raise UnitError(f"KillMode={mode} is not reproduced")
        try:
            self.exit_status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.main_pid, signal.SIGKILL)  # what systemd does when TimeoutStopSec= runs out
            self.exit_status = self.proc.wait()
        self.stop_seconds = time.monotonic() - started
        self.leftovers = _session_members(self.main_pid)
        if self.leftovers and mode != "process":
            os.killpg(self.main_pid, signal.SIGKILL)  # mixed and control-group: the rest of the cgroup goes too
        return self.exit_status

    def journal(self) -> str:
        return self.journal_path.read_text(errors="replace") if self.journal_path.exists() else ""

    def close(self) -> None:
        """Stop if still running and remove every file the run made."""
        if self.proc is not None and self.exit_status is None:
            self.stop()
        self.notify.close()
        shutil.rmtree(self.root, ignore_errors=True)


def _session_members(session: int) -> list[int]:
    """Processes still in the session the main process led: what would be left in the unit's cgroup."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session:                # field 6 of stat(5): the session id
            members.append(int(entry.name))
    return members
