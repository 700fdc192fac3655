"""The agent: builds buses, drivers, the core, the outbox and the uplink from a config and runs them.

Threads (docs/design.md, Threads): one per bus, the core (rules + the outbox's only
writer), the uplink (MQTT), the control socket, and the main thread, which
handles signals and feeds the systemd watchdog only while every worker's
heartbeat is fresh. A worker that ends without being asked to ends the process
at once with status 70 (:mod:`edge.supervisor`), so systemd starts a whole
agent again; one agent per outbox is enforced by :mod:`edge.instance_lock`.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from pathlib import Path
from concurrent.futures import Future
from typing import Any, Sequence

from buffer.opening import ForeignFile, foreign
from buffer.outbox import Outbox
from drivers.registry import bus_class, driver_class
from edge import __version__
from edge.alarm_drill import AlarmDrill, raised_alarms
from edge.clock import Clock
from edge.commands import CommandError, Commands
from edge.cert_renewal import CertRenewal, certificate_days_left
from edge.cert_store import renewed
from edge.config import Config
from edge.config_remote import ConfigChanges, readiness
from edge.control import ControlServer, served
from edge.core import LEARNED_STATE, RULES_STATE, AlarmSink, Core, Rules
from edge.errors import ConfigError
from edge.events import Audit
from edge.exits import EX_OK, EX_SOFTWARE
from edge.health import gather
from edge.instance_lock import InstanceLockError, OutboxLock, lock_path
from edge.live import LiveValues
from edge.managed_config import ManagedConfig, state_folder
from edge.notify import Notifier
from edge.outputs import AlarmOutput, OutputError, Outputs
from edge import rule_calls
from edge.rules import RuleEngine, RuleError
from edge.sampler import BusWorker, SensorSlot
from edge.supervisor import Supervisor, reason
from edge.update.handoff import Handoff, update_folder
from edge.update.remote import UpdateReports, UpdateRequests
from edge.uplink import Uplink

log = logging.getLogger("linli.agent")

#: A worker whose heartbeat is older than this is considered hung; the watchdog stops being fed.
STALE_HEARTBEAT = 30.0
#: After a worker died: what has not stopped by then is abandoned, for the process must end.
STOP_AFTER_DEATH = 5.0


class Agent:
    """Everything that runs on a gateway, for one configuration.

    ``start()`` returns once the threads run; ``stop()`` flushes and ends them.
    ``run_forever()`` is what ``linli run`` calls: it adds signals and systemd.
    """

    def __init__(self, config: Config, *, clock: Clock | None = None, rules: Rules | None = None,
                 notifier: Notifier | None = None, alarm_sinks: Sequence[AlarmSink] = ()):
        self.config = config
        self.alarm_sinks = list(alarm_sinks)  # offered every transition, after the configured [[output]]s
        self.outputs = Outputs((), (), self._button_pressed)   # built from the config at start
        self.clock = clock or Clock()
        self.rules = rules
        self.notifier = notifier or Notifier()
        self.started = time.monotonic()
        self.live = LiveValues()   # what linli watch shows; kept across reloads
        self.drill = AlarmDrill(lambda: self.core, self.clock.now_ms)
        self.outbox: Outbox | None = None
        self.core: Core | None = None
        self.uplink: Uplink | None = None
        self.workers: dict[str, BusWorker] = {}
        self.control: ControlServer | None = None
        self._lock: OutboxLock | None = None
        self._supervisor = Supervisor(self._worker_died)
        self._dead: threading.Thread | None = None  # the first worker that ended without being asked to
        self._reload_requested = threading.Event()
        self._stop_requested = threading.Event()
        self._wake = threading.Event()  # set by signal handlers so the main loop reacts at once
        # Remote configuration changes (decision 0009); their reloads run on the main thread, as SIGHUP's do.
        store = ManagedConfig(config.source, state_folder(config)) if config.source else None
        self.changes = ConfigChanges(self, store, None)
        self._reloads: queue.SimpleQueue[tuple[Config, Future]] = queue.SimpleQueue()
        self._reloads_on = "caller"   # which thread reloads for apply_config: caller, main, or none (stopping)
        # One for every uplink: a repeated request id is recognised across reloads, and a slow
        # command's reply goes to the uplink of the moment.
        # Self-update (decision 0010): the updater, root, does the work; the agent asks and answers.
        self.updates = UpdateRequests(Handoff(update_folder(config.buffer.path)), __version__)
        self._update_reports: UpdateReports | None = None
        self._resume: tuple[Outbox | None, dict[int, int] | None] = (None, None)   # the last uplink's stop
        self.remote = Commands(config.gateway.id, self.command_handlers(), send=self._send_late_reply,
                               audit=Audit("mqtt", lambda: self.core, self.clock.now_ms))

    # --- life cycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Take the outbox's lock, drive the local outputs off, open the outbox, then start the threads.

        A second agent on the same outbox stops here, before it touches a pin or the outbox
        (:class:`~edge.instance_lock.AgentAlreadyRunning`). An output that cannot drive its pin
        stops the start (:class:`~edge.outputs.OutputError`): a gateway that cannot sound its
        alarm must not look as if it could.
        """
        self._adopt_managed_config()
        _refuse_foreign_outbox(self.config)       # before the lock file is made beside it
        self._lock = OutboxLock(self.config.buffer.path).acquire()
        try:
            self._open_outputs()
            self._open_outbox()
            self._start_workers()
            self._start_control()
            self._update_reports = UpdateReports(
                self.updates, self._send_late_reply, lambda via: Audit(via, lambda: self.core, self.clock.now_ms),
                self.config.gateway.id)
            self._update_reports.start()
        except BaseException:
            self.outputs.close()
            self._lock.release()
            raise
        self._supervisor.watch(self._threads().values())

    def _adopt_managed_config(self) -> None:
        """Run what the last ``config_set`` applied, if it is current (:mod:`edge.managed_config`)."""
        store = self.changes.store
        if store is None:
            return
        try:
            self.changes.text, config = store.current()
        except ConfigError as exc:   # the installed file changed under us since it was loaded: run what was loaded
            log.error("%s", exc)
            return
        if config != self.config:   # an equal one is left alone: whoever built the agent keeps its object
            log.info("running the configuration applied remotely: %s", store.path)
            self.config = config

    def _open_outputs(self) -> None:
        """The outputs, off, before anything else; they come on for raised alarms once the rules are restored."""
        self.outputs = Outputs(self.config.outputs, self.config.buses, self._button_pressed)
        self.outputs.open()

    def _start_control(self) -> None:
        """The local ``linli`` command's way in; the agent runs on without it if it cannot be made."""
        local = Commands(self.config.gateway.id, self.command_handlers(),
                         audit=Audit("local", lambda: self.core, self.clock.now_ms))
        server = ControlServer(self.config.control.socket, local)
        try:
            server.open()
        except OSError as exc:
            log.error("no control socket at %s (%s): local commands such as linli away will not reach the agent",
                      self.config.control.socket, exc)
            return
        server.start()
        self.control = server

    def _open_outbox(self) -> None:
        buf = self.config.buffer
        try:
            # Without a usable file the outbox keeps records in memory and sends them from there: the
            # rules, the buzzer and the alarms must not depend on the SD card (decision 0005).
            self.outbox = Outbox(buf.path, max_bytes=int(buf.max_mb * 2**20), commit_interval=buf.commit_interval,
                                 commit_max_records=buf.commit_max_records, memory_fallback=True)
        except ForeignFile as exc:     # put there after the check in start()
            raise ConfigError([f"buffer.path: {exc}"], source=self.config.source) from None
        if self.outbox.recovered_from_corruption:
            log.critical("the outbox was corrupt and was moved aside to %s; a fresh one was opened",
                         self.outbox.recovered_from_corruption)
        rules = self.rules
        if rules is None and self.config.rules:
            rules = RuleEngine(self.config.rules, timezone=self.config.gateway.timezone)
        if rules is not None:
            saved = self.outbox.get_state(RULES_STATE)
            if saved is not None:
                rules.restore(saved)
            learned = self.outbox.get_state(LEARNED_STATE)
            if learned is not None:
                try:
                    rules.restore_learned(learned)
                except RuleError as exc:   # relearning is slow but safe; refusing to start is neither
                    log.error("%s — the routine is learned afresh", exc)
            # The core offers transitions only: an alarm raised before a restart must sound again now.
            self.outputs.restore(rules.raised())
        self.core = Core(self.outbox, rules=rules, alarm_sinks=[self._offer_to_outputs, *self.alarm_sinks],
                         reading_sinks=[self.live.offer])
        self.core.start()

    def _start_workers(self) -> None:
        cfg = self.config
        for bus_cfg in cfg.buses:
            sensors = [s for s in cfg.sensors if s.bus == bus_cfg.name]
            if not sensors:
                continue
            bus = bus_class(bus_cfg.kind)(bus_cfg.name, bus_cfg.options)
            slots = []
            for sensor in sensors:
                driver = driver_class(sensor.driver)(sensor.id, sensor.options, bus)
                saved = self.outbox.get_state(f"driver/{sensor.id}")
                if saved is not None:
                    driver.restore_state(saved)
                slots.append(SensorSlot(sensor.id, driver, sensor.interval))
            worker = BusWorker(bus, slots, self.core.submit_reading, self.clock.stamp)
            self.workers[bus_cfg.name] = worker
            worker.start()
        self.remote.gateway = cfg.gateway.id
        # A reload that kept the outbox continues where the last uplink stopped (no acknowledged row twice).
        kept, start_after = self._resume
        self.uplink = Uplink(renewed(cfg), self.outbox, self.core.submit_acked, health=self.health,
                             version=__version__, boot_id=self.clock.boot_id, correct=self.clock.correct,
                             commands=self.remote, start_after=start_after if kept is self.outbox else None)
        # The core wakes the uplink whenever the outbox has something new: no polling while idle.
        self.outbox.on_available = self.uplink.wake
        self.uplink.start()

    def _stop_workers(self, drain_timeout: float) -> None:
        for worker in self.workers.values():
            worker.stop()
        self.workers.clear()
        if self.uplink is not None:
            # The last readings reach the outbox's memory first, so they can still leave during the drain
            # (a dead core handles nothing).
            if self.core.is_alive():
                self.core.sync()
            self.uplink.stop(drain_timeout)
            self._resume = (self.outbox, self.uplink.resume_point())
            self.uplink = None

    def stop(self, drain_timeout: float = 5.0) -> None:
        """Stop reading, commit everything, try to deliver it, publish ``offline``, close the outbox, outputs off."""
        self._supervisor.release()
        try:
            self.drill.finish()   # before the uplink stops: the clear may still leave in the drain
            if self._update_reports is not None:
                self._update_reports.stop()
            if self.control is not None:
                self.control.stop()
                self.control = None
            self._stop_workers(drain_timeout)
            if self.core is not None:
                self.core.stop()
                self.core = None
            if self.outbox is not None:
                self.outbox.close()
                self.outbox = None
        finally:
            self.outputs.close()
            if self._lock is not None:
                self._lock.release()

    def reload(self, config: Config) -> None:
        """Apply a new, already validated config: restart buses and uplink; reopen the outbox if it moved.

        An outbox path that another agent holds, or where something else than an outbox stands,
        is refused before anything changes (:class:`~edge.instance_lock.AgentAlreadyRunning`,
        :class:`~edge.errors.ConfigError`). A reload that fails once it began is undone: the
        configuration that was running is applied again, so a bad reload never stops the gateway.
        """
        if config.control.socket != self.config.control.socket and served(config.control.socket):
            # Refused before the running control server stops: the technician keeps a way in.
            raise ConfigError([f"control.socket: another process serves {config.control.socket}"],
                              source=config.source)
        lock = self._lock
        if lock_path(config.buffer.path) != lock_path(self.config.buffer.path):
            _refuse_foreign_outbox(config)
            lock = OutboxLock(config.buffer.path).acquire()
        previous = self.config
        try:
            self._switch(config)
        except Exception as exc:
            log.critical("the reload failed (%s); going back to the configuration that was running", exc,
                         exc_info=True)
            self._switch(previous)
            if lock is not self._lock:
                lock.release()
            raise ConfigError([f"the reload failed and was undone: {exc}"], source=config.source) from None
        if lock is not self._lock:
            self._lock.release()
            self._lock = lock

    def _switch(self, config: Config) -> None:
        """Stop what depends on the configuration and start it again from ``config``."""
        self._supervisor.release()
        if self.control is not None:
            self.control.stop()
            self.control = None
        self._stop_workers(drain_timeout=2.0)
        old_buffer, old_rules, old_gateway = self.config.buffer, self.config.rules, self.config.gateway
        outputs_changed = _output_setup(config) != _output_setup(self.config)
        previous = self.config
        self.config = config
        if outputs_changed:
            self._reopen_outputs(previous)
        if config.buffer != old_buffer or config.rules != old_rules or config.gateway != old_gateway \
                or self.core is None or not self.core.is_alive():
            if self.core is not None:
                self.core.stop()
            if self.outbox is not None:
                self.outbox.close()
            self._open_outbox()
        elif outputs_changed and self.core.rules is not None:
            self._restore_outputs_on_core()
        self._start_workers()
        self._start_control()
        self._supervisor.watch(self._threads().values())

    def _reopen_outputs(self, previous: Config) -> None:
        """New outputs for a reloaded config: the old ones off and released first, as they may share pins.

        New outputs that cannot be opened give way to the previous ones again: a gateway that
        could sound its alarms before a reload must not go silent because of it.
        """
        self.outputs.close()
        try:
            self._open_outputs()
        except OutputError as exc:
            log.critical("%s — keeping the previous outputs", exc)
            self.outputs = Outputs(previous.outputs, previous.buses, self._button_pressed)
            try:
                self.outputs.open()
            except OutputError as again:
                log.critical("%s — the local outputs stay off until the next reload or restart", again)

    def _restore_outputs_on_core(self) -> None:
        """The new outputs learn the raised alarms on the core thread: no transition can slip in between."""
        def restore(rules) -> list[dict[str, Any]]:
            self.outputs.restore(rules.raised())
            return []

        try:
            self._on_rules(restore)
        except CommandError as exc:
            log.error("the new outputs could not learn the raised alarms (%s); they follow new transitions only", exc)

    def _offer_to_outputs(self, transition: dict[str, Any]) -> None:
        """The core's alarm sink for the outputs of the moment (a reload replaces them)."""
        self.outputs.offer(transition)

    def _button_pressed(self, output: AlarmOutput) -> None:
        """An output's acknowledge button, on gpiozero's thread: only enqueue (:func:`rule_calls.button_pressed`)."""
        rule_calls.button_pressed(self.core, output, self.clock.now_ms())

    def command_handlers(self) -> dict[str, Any]:
        """What the central side may ask of this gateway over ``cmd/<name>``."""
        return {
            "ping": lambda _args: {"pong": True, "version": __version__, "boot": self.clock.boot_id},
            "health": lambda _args: self.health(),
            "away": lambda args: rule_calls.away(self.core, self.clock.now_ms(), self.config.gateway.timezone, args),
            "alarm_ack": lambda args: rule_calls.alarm_ack(self.core, self.clock.now_ms(), args),
            "explain": lambda args: rule_calls.explain(self.core, self.clock.now_ms(), args),
            "watch": lambda _args: self.live_view(),
            "alarms": lambda _args: {"alarms": raised_alarms(self.core, self.drill)},
            "alarm_test": self.drill.start,
            "readiness": lambda _args: readiness(self),
            **self.changes.handlers(),
            **self.updates.handlers(),
            **CertRenewal(self).handlers(),
        }

    def _send_late_reply(self, name: str, reply: dict[str, Any]) -> None:
        uplink = self.uplink
        if uplink is None:
            log.error("the reply to %s (id %s) was ready while the uplink was stopped; it is lost", name, reply["id"])
            return
        uplink.send_reply(name, reply)

    def apply_config(self, config: Config) -> None:
        """:meth:`reload` on the main thread when ``run_forever`` runs (it owns reloads), here otherwise."""
        if self._reloads_on == "caller":
            self.reload(config)
            return
        if self._reloads_on != "main":
            raise ConfigError(["the agent is stopping; nothing changed"], source=config.source)
        done: Future = Future()
        self._reloads.put((config, done))
        self._wake.set()
        done.result()

    def _run_reloads(self, refuse: bool = False) -> None:
        while True:
            try:
                config, done = self._reloads.get_nowait()
            except queue.Empty:
                return
            if refuse:
                done.set_exception(ConfigError(["the agent is stopping; nothing changed"], source=config.source))
                continue
            try:
                self.reload(config)
                done.set_result(None)
            except BaseException as exc:   # the caller's thread raises it
                done.set_exception(exc)

    def _on_rules(self, fn) -> list[dict[str, Any]]:
        return rule_calls.on_core(self.core, fn)

    # --- state ------------------------------------------------------------------------------------
    def _threads(self) -> dict[str, Any]:
        """The running worker threads by the name logs give them: core, uplink, control, bus <name>."""
        threads: dict[str, Any] = {"core": self.core, "uplink": self.uplink, "control": self.control}
        threads.update((f"bus {name}", worker) for name, worker in self.workers.items())
        return {name: thread for name, thread in threads.items() if thread is not None}

    def heartbeats(self) -> dict[str, float]:
        """Age in seconds of each worker's last heartbeat (dead threads count as infinitely old)."""
        now = time.monotonic()
        return {name: now - thread.heartbeat if thread.is_alive() else float("inf")
                for name, thread in self._threads().items()}

    def healthy(self) -> bool:
        return all(age < STALE_HEARTBEAT for age in self.heartbeats().values())

    def health(self) -> dict[str, Any]:
        """The body of the ``health`` message (called on the uplink thread)."""
        outbox_stats = self.outbox.stats() if self.outbox is not None else {}
        extra = {
            "version": __version__,
            "buses": [w.status() for w in list(self.workers.values())],
            "uplink": self.uplink.status() if self.uplink else None,
            "lost_readings": self.core.lost_readings if self.core else 0,
            "refused_records": self.core.refused_records if self.core else 0,
            "outbox_error": self.core.commit_error if self.core else None,
            "outputs": self.outputs.status(),
            "learning": self.core.learning if self.core else [],
            "cert_expiry_days": certificate_days_left(renewed(self.config)),
            "update": self.updates.last(),
        }
        return gather(outbox_stats, self.clock, self.started, extra, outbox_path=self.config.buffer.path)

    def live_view(self) -> dict[str, Any]:
        """What ``linli watch`` shows: link, outbox depth, raised alarms, every sensor's latest value and history."""
        uplink = self.uplink.status() if self.uplink else {}
        outbox = self.outbox.stats() if self.outbox is not None else {}
        return {"gateway": self.config.gateway.id,
                "link": {"connected": bool(uplink.get("connected")), "broker": uplink.get("broker"),
                         "last_error": uplink.get("last_error")},
                "outbox": {"depth": outbox.get("depth"), "dropped_total": outbox.get("dropped_total")},
                "alarms": raised_alarms(self.core, self.drill),
                "sensors": self.live.snapshot()}

    def status_line(self) -> str:
        sensors = sum(len(w.slots) for w in self.workers.values())
        bad = sum(1 for w in self.workers.values() for s in w.slots if s.failures)
        up = self.uplink.status() if self.uplink else {}
        depth = self.outbox.stats().get("depth") if self.outbox else None
        broker = "connected" if up.get("connected") else "disconnected"
        return f"{sensors} sensors ({bad} failing), outbox {depth} records, broker {broker}"

    # --- linli run ----------------------------------------------------------------------------------
    def run_forever(self) -> int:
        """Run until SIGTERM/SIGINT; SIGHUP reloads the config. Returns the exit status: 0, or 70 if a worker died."""
        def on_signal(signum, _frame):
            (self._reload_requested if signum == signal.SIGHUP else self._stop_requested).set()
            self._wake.set()

        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, on_signal)
        self.start()
        dead = None
        self._reloads_on = "main"
        try:
            self.notifier.ready()
            interval = self.notifier.watchdog_interval()
            tick = min(1.0, interval / 2) if interval else 1.0
            while not self._stop_requested.is_set() and self._dead is None:
                self._wake.clear()  # before looking at the flags, so a signal arriving now still wakes the wait
                self._run_reloads()
                if self._reload_requested.is_set() and self.changes.changing.acquire(blocking=False):
                    try:   # a remote change being judged first finishes; the flag stays set until then
                        self._reload_requested.clear()
                        self._reload_from_file()
                    finally:
                        self.changes.changing.release()
                if self.healthy():
                    self.notifier.watchdog()
                else:
                    stale = [n for n, age in self.heartbeats().items() if age >= STALE_HEARTBEAT]
                    log.error("not feeding the watchdog: %s stopped reporting", ", ".join(stale))
                self.notifier.status(self.status_line())
                self._wake.wait(tick)
            dead = self._dead
            if dead is None:
                log.info("stopping: flushing the outbox and publishing offline")
            else:
                name = next((n for n, thread in self._threads().items() if thread is dead), dead.name)
                log.critical("the %s thread ended (%s); stopping so that the service manager starts the agent "
                             "again", name, reason(dead))
            self.notifier.stopping()
        finally:  # an exception too: the outputs must not be left sounding, or silent in an unknown state
            self._reloads_on = "none"
            self._run_reloads(refuse=True)   # a change waiting for the main thread is not left hanging
            if dead is None:
                self.stop()
            else:
                self._stop_within(STOP_AFTER_DEATH)
        return EX_SOFTWARE if dead is not None else EX_OK

    def _worker_died(self, thread: threading.Thread) -> None:
        """The supervisor's call, on its watching thread: only note it and wake the main loop."""
        if self._dead is None:
            self._dead = thread
        self._wake.set()

    def _stop_within(self, seconds: float) -> None:
        """Stop what stops quickly; after ``seconds`` abandon the rest, for the process must end now."""
        stopper = threading.Thread(target=self.stop, kwargs={"drain_timeout": 1.0}, name="linli-stop", daemon=True)
        stopper.start()
        stopper.join(seconds)
        if stopper.is_alive():
            log.critical("the agent did not stop within %g s; ending the process anyway", seconds)

    def _reload_from_file(self) -> None:
        self.notifier.reloading()
        try:
            text, config = self.changes.reload_from_file()
            log.info("reloading config from %s", self.config.source)
            self.reload(config)
            self.changes.text = text
        except (ConfigError, InstanceLockError) as exc:
            log.error("reload refused, keeping the running config:\n%s", exc)
        self.notifier.ready()


def _refuse_foreign_outbox(config: Config) -> None:
    """Something else than an outbox at ``[buffer] path`` (a typo naming edge.toml, say) is refused, untouched."""
    found = foreign(Path(config.buffer.path))
    if found:
        raise ConfigError([f"buffer.path: {config.buffer.path} is {found}, not an outbox; the agent leaves it "
                           "untouched"], source=config.source)


def _output_setup(config: Config) -> tuple:
    """What the outputs are built from: a change in it rebuilds them on reload, nothing else does."""
    used = {output.bus for output in config.outputs}
    return config.outputs, tuple(bus for bus in config.buses if bus.name in used)
