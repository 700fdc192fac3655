"""``linli doctor``'s checklist: is this gateway healthy, and if not, what does a technician do about it.

Each check is a function of a :class:`Doctor` (the config and what the running agent
says, if it runs) returning result dicts ``{"check", "status", "detail", "fix"}``:
``status`` is ``pass``, ``warn`` or ``fail``; ``detail`` says what was looked at and
found, naming the thing (the port path, the I2C address, the broker's host:port);
``fix`` is what to do about a warning or failure, ``""`` for a pass. A check that does
not apply to this gateway (no I2C bus, no client certificate) returns nothing rather
than a "skip" line: the list only holds what was looked at.

When the agent runs (its control socket answers ``health``), every bus and device
check takes the agent's own view from that health and opens nothing: the agent holds
its serial ports exclusively, and a second opener would either fail or disturb its
exchanges. With the agent stopped the doctor opens each bus itself and sends one
request to each device, with short timeouts.

:func:`run_checks` is the whole list for an already valid config; :func:`diagnose`
starts from a config file and turns its problems into failures first. The checks live
by concern in :mod:`edge.doctor_devices`, :mod:`edge.doctor_broker` and
:mod:`edge.doctor_storage`; :mod:`edge.cli.doctor` is the command.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge.cert_store import renewed
from edge.clock import system_synced
from edge.config import Config, load_config
from edge.errors import ConfigError
from edge.i18n import _

PASS, WARN, FAIL = "pass", "warn", "fail"
#: The systemd unit the installer sets up (systemd/linli-edge.service).
UNIT = "linli-edge"
#: How long asking the agent for its health may take before the doctor counts it as not running.
AGENT_TIMEOUT = 3.0

Result = dict[str, str]


def result(check: str, status: str, detail: str, fix: str = "") -> Result:
    """One line of the checklist."""
    return {"check": check, "status": status, "detail": detail, "fix": fix}


@dataclass
class Doctor:
    """What every check may look at: the config, and the running agent's health (None when it is stopped)."""

    config: Config
    health: dict[str, Any] | None = None
    #: Seconds a device may take to answer one request, and the broker to accept a CONNECT.
    timeout: float = 0.5
    broker_timeout: float = 5.0
    #: Buses that failed to open (their devices are not asked: the bus's line says why).
    failed_buses: set[str] = field(default_factory=set)

    @property
    def agent_running(self) -> bool:
        return self.health is not None


Check = Callable[[Doctor], list[Result]]


# --- checks of the machine ------------------------------------------------------------------------------------
def check_clock(doctor: Doctor | None = None) -> list[Result]:
    """The kernel's synchronisation flag, as the agent stamps records with it (:mod:`edge.clock`)."""
    if system_synced():
        return [result("clock", PASS, _("the system clock is synchronised"))]
    return [result("clock", WARN, _("the system clock is not synchronised: records are stamped synced=false until "
                                    "it is, and corrected then"),
                   _("check time synchronisation with timedatectl status; the gateway needs to reach an NTP "
                     "server"))]


def check_watchdog(doctor: Doctor | None = None) -> list[Result]:
    """The unit's watchdog: systemd restarts an agent that stops feeding it.

    Inside the agent (issue 12's ``diag``) systemd's ``WATCHDOG_USEC`` says it directly; from a
    technician's shell ``systemctl show`` is asked. Without systemd nothing would restart a hung
    agent: a warning, not a failure, since a bench or a container runs the agent that way on purpose.
    """
    if os.environ.get("WATCHDOG_USEC") and os.environ.get("NOTIFY_SOCKET"):
        return [result("watchdog", PASS, _("systemd watches the agent every {seconds:g} s").format(
            seconds=int(os.environ["WATCHDOG_USEC"]) / 1e6))]
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        return [_no_systemd(_("systemctl is not installed"))]
    try:
        shown = subprocess.run([systemctl, "show", UNIT, "-p", "LoadState,ActiveState,WatchdogUSec"],
                               capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [_no_systemd(str(exc))]
    if shown.returncode != 0:
        said = shown.stderr.strip().splitlines()
        return [_no_systemd(said[0] if said else _("systemctl exited with status {code}").format(
            code=shown.returncode))]
    facts = dict(line.split("=", 1) for line in shown.stdout.splitlines() if "=" in line)
    if facts.get("LoadState") != "loaded":
        return [result("watchdog", WARN, _("the {unit} unit is not installed").format(unit=UNIT),
                       _("install it with sudo deploy/install.sh"))]
    if facts.get("WatchdogUSec", "0") in ("0", "infinity", ""):
        return [result("watchdog", FAIL, _("the {unit} unit has no watchdog: a hung agent would not be "
                                           "restarted").format(unit=UNIT),
                       _("restore WatchdogSec= in the unit (systemd/linli-edge.service), then "
                         "sudo systemctl daemon-reload"))]
    if facts.get("ActiveState") != "active":
        return [result("watchdog", WARN, _("the {unit} unit is {state}; its watchdog is set to {watchdog}").format(
            unit=UNIT, state=facts.get("ActiveState"), watchdog=facts["WatchdogUSec"]),
            _("start it: sudo systemctl start {unit}").format(unit=UNIT))]
    return [result("watchdog", PASS, _("the {unit} unit is active with a watchdog of {watchdog}").format(
        unit=UNIT, watchdog=facts["WatchdogUSec"]))]


def _no_systemd(why: str) -> Result:
    return result("watchdog", WARN, _("not under systemd ({why}): nothing restarts the agent if it hangs").format(
        why=why), _("on a gateway run the agent as the {unit} unit (deploy/install.sh)").format(unit=UNIT))


# --- the list ---------------------------------------------------------------------------------------------------
def registry() -> list[Check]:
    """Every check, in the order a technician reads them: devices first, then the way out, then the machine."""
    from edge import doctor_broker, doctor_devices, doctor_storage

    return [doctor_devices.check_buses, doctor_devices.check_devices, doctor_broker.check_broker,
            doctor_broker.check_certificate, check_clock, doctor_storage.check_disk, doctor_storage.check_outbox,
            check_watchdog]


def run_checks(config: Config, *, agent_running: bool, health: dict[str, Any] | None = None,
               timeout: float = 0.5, broker_timeout: float = 5.0) -> list[Result]:
    """Every check for a valid ``config``.

    With ``agent_running``, the bus and device checks use ``health`` (the agent's ``health``
    body; asked over the control socket when not given) and open no device. The agent itself
    may call this with its own health, for a ``diag`` command.
    """
    if agent_running and health is None:
        from edge.control import request

        reply = request(config.control.socket, "health", timeout=AGENT_TIMEOUT)
        health = reply.get("result") or {}
    # A certificate renewed remotely (cert_install) is the one the broker and the expiry checks look at.
    doctor = Doctor(renewed(config), health if agent_running else None, timeout, broker_timeout)
    return [line for check in registry() for line in check(doctor)]


def ask_agent(config: Config) -> tuple[dict[str, Any] | None, list[Result]]:
    """The running agent's health, or None when no agent answers; a line when it runs but cannot be asked."""
    from edge.control import AgentUnreachable, request

    path = config.control.socket
    try:
        reply = request(path, "health", timeout=AGENT_TIMEOUT)
    except AgentUnreachable as exc:
        if os.path.exists(path) and not os.access(path, os.W_OK):   # an agent runs; this user may not ask it
            return None, [result("agent", WARN, str(exc), _("run linli doctor as root or as a member of the "
                                                           "linli group"))]
        return None, []
    if not reply.get("ok"):
        return None, [result("agent", WARN, _("the agent on {path} refused health: {error}").format(
            path=path, error=reply.get("error")), _("look at its log: journalctl -u {unit}").format(unit=UNIT))]
    return reply["result"], []


def diagnose(path: str, *, timeout: float = 0.5, broker_timeout: float = 5.0) -> list[Result]:
    """The checklist for the config file at ``path``: its problems, or every check when it is valid."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        fix = _("correct it in {path}, then run linli config check").format(path=path)
        lines = [result("config", FAIL, problem, fix) for problem in exc.problems]
        return lines + check_clock() + check_watchdog()   # these two need no config
    lines = [result("config", PASS, _("{path} is valid (buses: {buses}, sensors: {sensors})").format(
        path=path, buses=len(config.buses), sensors=len(config.sensors)))]
    health, asked = ask_agent(config)
    return lines + asked + run_checks(config, agent_running=health is not None, health=health, timeout=timeout,
                                      broker_timeout=broker_timeout)
