"""``config_get``, ``config_set`` and ``diag``: changing a gateway's configuration without visiting it.

``config_set`` is the careful one (issue 12). The pushed text is checked as ``linli config
check`` would check it in the installed file's place; a valid one is written as the managed
copy (:mod:`edge.managed_config`), applied by the same reload as SIGHUP, and then has to prove
itself: within the deadline every bus of the new configuration opens, every one of its sensors
reads without a transport failure, and the broker link is up again (when it was up before). If
it does not, the copy it replaced is restored and applied again, and the reply says why, naming
the sensors and ports that failed. The reply leaves only once that is settled.

These handlers are :class:`~edge.commands.Slow`: over MQTT they run on a thread of their own, so
the uplink's loop goes on meanwhile; the reload itself runs where SIGHUP's does, on the agent's
main thread (:meth:`edge.agent.Agent.apply_config`). One change at a time: a second
``config_set`` while one is being judged is refused, and a SIGHUP waits for it to finish.

Every change is logged with its request id, what it changed from and to, and how it ended.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from edge.commands import CommandError, RolledBack, Slow
from edge.config import Config, load_config_text
from edge.errors import ConfigError
from edge.instance_lock import InstanceLockError
from edge.managed_config import ManagedConfig, sha256

if TYPE_CHECKING:
    from edge.agent import Agent

log = logging.getLogger("linli.config_remote")

#: How long a new configuration has to prove itself unless the request says otherwise, and the bounds.
DEFAULT_DEADLINE = 60.0
MIN_DEADLINE, MAX_DEADLINE = 1.0, 600.0
#: How often the health gate looks at the buses and the broker link.
GATE_POLL = 0.2


class ConfigChanges:
    """The running configuration's text, and the ways to read and change it from afar."""

    def __init__(self, agent: Agent, store: ManagedConfig | None, text: bytes | None):
        self.agent = agent
        self.store = store
        self.text = text
        self.changing = threading.Lock()   # one change at a time, SIGHUP's included

    def handlers(self) -> dict[str, Slow]:
        return {"config_get": Slow(lambda _args, _id: self.get()), "config_set": Slow(self.set),
                "diag": Slow(lambda _args, _id: self.diag())}

    # --- the commands ------------------------------------------------------------------------------
    def get(self) -> dict[str, Any]:
        if self.text is None:
            raise CommandError("this agent was not started from a configuration file")
        return {"toml": self.text.decode("utf-8-sig"), "sha256": sha256(self.text)}

    def diag(self) -> dict[str, Any]:
        from edge.doctor import run_checks

        return {"checks": run_checks(self.agent.config, agent_running=True, health=self.agent.health())}

    def set(self, args: dict[str, Any], request_id: str) -> dict[str, Any]:
        text, base, deadline = _set_arguments(args)
        if self.store is None or self.text is None:
            raise CommandError("this agent was not started from a configuration file; it has none to replace")
        if not self.changing.acquire(blocking=False):
            raise CommandError("another configuration change is under way; try again when it has been answered")
        try:
            return self._set(text.encode(), base, deadline, request_id)
        finally:
            self.changing.release()

    # --- one change ---------------------------------------------------------------------------------
    def _set(self, data: bytes, base: str | None, deadline: float, request_id: str) -> dict[str, Any]:
        running = sha256(self.text)
        if base is not None and base != running:
            log.warning("config_set %s refused: based on %s but %s runs", request_id, base, running)
            raise CommandError(f"refused: the request is based on configuration {base} but {running} runs; "
                               "get the running one with config_get and apply the change to it")
        try:
            config = load_config_text(data, self.store.installed_path)
        except ConfigError as exc:
            log.warning("config_set %s refused, the configuration is not valid:\n%s", request_id, exc)
            raise CommandError("the configuration is not valid; nothing changed:\n" + "\n".join(exc.problems)) \
                from None
        new = sha256(data)
        log.info("config_set %s: applying configuration %s (replacing %s)", request_id, new, running)
        previous_text, previous = self.text, self.agent.config
        had_copy = self.store.write(data)
        need_broker = bool(self.agent.uplink and self.agent.uplink.status()["connected"])
        try:
            self.agent.apply_config(config)
        except (ConfigError, InstanceLockError) as exc:
            self.store.restore(had_copy)
            log.error("config_set %s refused by the reload; nothing changed: %s", request_id, exc)
            raise CommandError(f"refused; nothing changed: {exc}") from None
        self.text = data
        problems = self._gate(config, deadline, need_broker)
        if not problems:
            log.info("config_set %s: configuration %s applied and healthy", request_id, new)
            return {"applied": True, "sha256": new, "previous_sha256": running}
        log.error("config_set %s: configuration %s not healthy within %g s, rolling back to %s: %s",
                  request_id, new, deadline, running, "; ".join(problems))
        self.store.restore(had_copy)
        self.agent.apply_config(previous)
        self.text = previous_text
        raise RolledBack(f"rolled back to configuration {running}: the new one was not healthy within "
                           f"{deadline:g} s: " + "; ".join(problems))

    def _gate(self, config: Config, deadline: float, need_broker: bool) -> list[str]:
        """What keeps ``config`` from being healthy once ``deadline`` seconds passed; ``[]`` as soon as nothing does."""
        end = time.monotonic() + deadline
        while True:
            problems = unhealthy(self.agent, config, need_broker)
            if not problems or time.monotonic() >= end:
                return problems
            time.sleep(GATE_POLL)

    def reload_from_file(self) -> tuple[bytes, Config]:
        """For SIGHUP: what the files say should run now (the managed copy or the installed file)."""
        if self.store is None:
            raise ConfigError(["this agent was not started from a configuration file"])
        return self.store.current()


def unhealthy(agent: Agent, config: Config, need_broker: bool) -> list[str]:
    """Each bus, sensor and link of ``config`` that is not working yet, saying where; ``[]`` when all work."""
    problems = []
    workers = dict(agent.workers)
    for bus in config.buses:
        sensors = [sensor for sensor in config.sensors if sensor.bus == bus.name]
        if not sensors:
            continue
        port = bus.options.get("port")
        where = f"bus {bus.name}" + (f" (port {port})" if port else "")
        worker = workers.get(bus.name)
        if worker is None:
            problems.append(f"{where}: not running")
            continue
        status = worker.status()
        for sensor in sensors:
            state = status["sensors"].get(sensor.id) or {}
            if state.get("ok"):
                continue
            why = status["bus_error"] or state.get("last_error") or "no reading yet"
            problems.append(f"sensor {sensor.id} on {where}: {why}")
    if need_broker:
        uplink = agent.uplink.status() if agent.uplink else {}
        if not uplink.get("connected"):
            why = uplink.get("last_error") or "not connected yet"
            problems.append(f"broker {config.mqtt.host}:{config.mqtt.port}: {why}")
    return problems


def readiness(agent: Agent) -> dict[str, Any]:
    """The ``readiness`` command: the health gate asked from outside (the updater, :mod:`edge.update.service`).

    The broker link is reported apart: only the asker knows whether it was up before.
    """
    from edge import __version__

    uplink = agent.uplink.status() if agent.uplink else {}
    return {"version": __version__, "pid": os.getpid(), "problems": unhealthy(agent, agent.config, False),
            "broker": {"connected": bool(uplink.get("connected")), "last_error": uplink.get("last_error")}}


def _set_arguments(args: dict[str, Any]) -> tuple[str, str | None, float]:
    text, base, deadline = args.get("toml"), args.get("base_sha256"), args.get("deadline_s", DEFAULT_DEADLINE)
    if not isinstance(text, str):
        raise CommandError('args.toml must be the whole configuration file as a string')
    if base is not None and not isinstance(base, str):
        raise CommandError("args.base_sha256 must be a string: the sha256 config_get returned")
    if isinstance(deadline, bool) or not isinstance(deadline, (int, float)) \
            or not MIN_DEADLINE <= deadline <= MAX_DEADLINE:
        raise CommandError(f"args.deadline_s must be a number of seconds from {MIN_DEADLINE:g} to {MAX_DEADLINE:g}")
    return text, base, float(deadline)
