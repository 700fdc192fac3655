"""The unit under systemd itself: a container booted from this machine's /usr with systemd-nspawn.

systemd/linli-edge.service is installed unchanged, sandbox and all; the virtualenv running the tests is
mounted at /opt/linli/current, a temporary config at /etc/linli/edge.toml, and the ``systemctl`` and
``journalctl`` lines the docs ship are run in the container as written, against a mosquitto on loopback
(the container shares the network). This needs root, systemd-nspawn (package systemd-container) and a
checkout and interpreter outside /home, /root and /tmp, which ProtectHome= and PrivateTmp= hide from
the service; elsewhere the test is skipped with the reason, and tests/test_systemd_unit.py's harness
still runs ExecStart= and ExecReload=.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.mqtt_helpers import wait_until
from tests.shipped_commands import ROOT, shipped_commands
from tests.test_systemd_unit import BASE, CONFIG, readings

NSPAWN = shutil.which("systemd-nspawn")
HIDDEN_FROM_THE_SERVICE = ("/home/", "/root/", "/run/user/", "/tmp/", "/var/tmp/")
VENV = Path(sys.prefix)
#: The unit's own commands as the docs write them: ``systemctl start linli-edge``, ``journalctl -u linli-edge -b``…
UNIT_LINES = [c.text.removeprefix("sudo ") for c in shipped_commands()[0]
              if re.fullmatch(r"(sudo )?(systemctl \w+|journalctl -u) linli-edge( -b)?", c.text)]


def why_not() -> str | None:
    if os.geteuid() != 0:
        return "booting a systemd container needs root"
    if NSPAWN is None:
        return "systemd-nspawn is not installed (apt-get install systemd-container)"
    for what, path in (("the checkout", ROOT), ("the virtualenv", VENV),
                       ("the virtualenv's interpreter", Path(os.path.realpath(VENV / "bin" / "python")))):
        hidden = next((top for top in HIDDEN_FROM_THE_SERVICE if f"{path}/".startswith(top)), None)
        if hidden:
            return f"{what} is under {hidden}, which the unit's sandbox hides from the service ({path})"
    return None


class Container:
    """A throw-away systemd container: this machine's /usr, a fresh tmpfs root, the given read-only binds."""

    def __init__(self, workdir: Path, binds: list[tuple[Path | str, str]]):
        self.log = workdir / "container.log"
        argv = [NSPAWN, "--directory=/", "--volatile=yes", "--boot", "--register=no", "--keep-unit",
                f"--machine=linli-{uuid.uuid4().hex[:8]}",
                *(f"--bind-ro={source}:{target}" for source, target in binds),
                "--", "systemd.firstboot=off", "systemd.unit=basic.target"]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self.leader = self._leader()

    def _leader(self) -> int:
        """The container's PID 1 as this machine sees it: systemd-nspawn's child."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            pids = children.read_text().split()
            # systemd-nspawn forks through a helper before the container's init: only systemd itself will do.
            if pids and _comm(pids[0]) == "systemd":
                return int(pids[0])
            time.sleep(0.05)
        pytest.skip(f"systemd-nspawn could not start a container here:\n{self.log.read_text(errors='replace')[-2000:]}")

    def run(self, line: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """``line`` by a shell inside the container (every namespace of its PID 1)."""
        return subprocess.run(["nsenter", f"--target={self.leader}", "--all", "/bin/sh", "-c", line],
                              capture_output=True, text=True, timeout=timeout, check=False)

    def booted(self) -> str:
        """Wait until systemd finished booting; its state (running or degraded)."""
        deadline, state = time.monotonic() + 60, ""
        while state not in ("running", "degraded") and time.monotonic() < deadline and self.proc.poll() is None:
            # Empty until the container's systemd listens on its bus; then --wait waits for the boot's end.
            state = self.run("systemctl is-system-running --wait", timeout=90).stdout.strip()
            time.sleep(0 if state else 0.1)
        if state not in ("running", "degraded"):
            pytest.skip(f"systemd did not boot in the container ({state!r}):\n{self.log.read_text(errors='replace')}")
        return state

    def show(self, *properties: str) -> dict[str, str]:
        return self.show_unit("linli-edge", *properties)

    def show_unit(self, unit: str, *properties: str) -> dict[str, str]:
        out = self.run(f"systemctl show {unit} --property={','.join(properties)}").stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()                    # systemd-nspawn halts the container
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _comm(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


@contextlib.contextmanager
def booted_gateway(tmp_path, broker, binds):
    """A booted container with what deploy/install.sh would have made (the account, the groups the unit names,
    the config for ``broker``) and ``binds`` besides: the units, the release."""
    reason = why_not()
    if reason:
        pytest.skip(reason)
    sysusers = tmp_path / "linli.conf"
    sysusers.write_text('u linli - "linli-edge agent" /var/lib/linli\ng gpio -\ng i2c -\n')
    config = tmp_path / "edge.toml"
    config.write_text(CONFIG.replace("{port}", str(broker.port)).replace("{root}", ""))
    config.chmod(0o644)
    running = Container(tmp_path, [(sysusers, "/etc/sysusers.d/linli.conf"), (config, "/etc/linli/edge.toml"),
                                   *binds, (VENV, str(VENV)), (ROOT, str(ROOT))])
    try:
        running.booted()
        yield running
    finally:
        running.close()


@pytest.fixture
def container(tmp_path, broker):
    """The unit installed, the virtualenv running the tests as the current release; booted, the agent not started."""
    with booted_gateway(tmp_path, broker, [(ROOT / "systemd" / "linli-edge.service",
                                            "/etc/systemd/system/linli-edge.service"),
                                           (VENV, "/opt/linli/current")]) as running:
        yield running


def test_the_unit_and_the_docs_systemctl_lines_run_under_systemd(container, broker, subscriber_factory):
    assert "systemctl start linli-edge" in UNIT_LINES and "systemctl reload linli-edge" in UNIT_LINES
    sub = subscriber_factory(broker.host, broker.port, BASE + "/#")
    for line in UNIT_LINES:
        if line.startswith(("systemctl start", "systemctl restart")):
            result = container.run(line)
            assert result.returncode == 0, result.stderr + container.run("journalctl -u linli-edge").stdout
    state = container.show("ActiveState", "SubState", "MainPID", "StatusText", "WatchdogUSec")
    assert (state["ActiveState"], state["SubState"]) == ("active", "running"), state
    assert "sensors" in state["StatusText"] and state["WatchdogUSec"] == "1min"
    assert container.run(f"ps -o user= -p {state['MainPID']}").stdout.strip() == "linli"
    sub.wait_for(lambda _m: len(readings(sub)) >= 3, 20, "three readings through the sandbox")
    pings = container.show("WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"]
    wait_until(lambda: container.show("WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"] != pings, 10,
               "a second WATCHDOG=1")

    for line in UNIT_LINES:                          # status, reload, the journal: as the docs write them
        if not line.startswith(("systemctl start", "systemctl restart")):
            result = container.run(line)
            assert result.returncode == 0, f"{line}: {result.stdout}{result.stderr}"
    journal = container.run("journalctl -u linli-edge -b --no-pager").stdout
    assert "reloading config from /etc/linli/edge.toml" in journal, journal
    after = container.show("ActiveState", "MainPID")
    assert after == {"ActiveState": "active", "MainPID": state["MainPID"]}, "a reload keeps the same process"
    count = len(readings(sub))
    sub.wait_for(lambda _m: len(readings(sub)) >= count + 3, 20, "readings after the reload")

    assert container.run("systemctl stop linli-edge").returncode == 0
    stopped = container.show("ActiveState", "Result", "ExecMainStatus")
    assert stopped == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}, stopped


#: deploy/mosquitto/README.md's lines that give the broker its open-file limit, run in the container as written.
BROKER_LIMIT_LINES = [c.text for c in shipped_commands()[0]
                      if "mosquitto.service.d" in c.text or c.text == "systemctl daemon-reload"]


def test_the_brokers_open_file_drop_in_takes_under_systemd(tmp_path, broker):
    assert len(BROKER_LIMIT_LINES) == 3, BROKER_LIMIT_LINES
    with booted_gateway(tmp_path, broker, []) as running:
        if running.run("systemctl cat mosquitto.service").returncode != 0:
            pytest.skip("mosquitto's unit is not installed here")
        before = running.run("systemctl show mosquitto -p LimitNOFILESoft --value").stdout.strip()
        for line in BROKER_LIMIT_LINES:
            result = running.run(f"cd {ROOT} && {line}")
            assert result.returncode == 0, f"{line}: {result.stderr}"
        after = running.show_unit("mosquitto", "LimitNOFILE", "LimitNOFILESoft")
        assert before == "1024" and after == {"LimitNOFILE": "65536", "LimitNOFILESoft": "65536"}, (before, after)
