"""Local alarm outputs: a buzzer, an LED or a relay on a GPIO pin, driven by alarm state.

The uplink may be down exactly when it matters, so the gateway makes noise
itself. Each ``[[output]]`` follows the alarms whose ``<sensor>/<rule>`` name
matches one of its ``on`` patterns. It is on while any of them is raised and
not acknowledged, with the pattern of the most severe one (:data:`PATTERNS`);
``acknowledged`` silences an alarm, ``cleared`` forgets it. A latched alarm
stays raised, so stays on, until somebody acknowledges it (the rules engine
keeps it raised).

Threads: the core offers every transition to :meth:`Outputs.offer` on its own
thread (it must not block: a blink runs on gpiozero's background thread). An
output's acknowledge button calls back on gpiozero's thread; the agent's
callback only enqueues the acknowledgement for the core. The main thread opens
the outputs before anything else and turns them off at exit.

>>> pattern_for("led", ["warning", "critical"], min_severity="warning")
Blink(on_time=0.25, off_time=0.25)
>>> pattern_for("buzzer", ["info"], min_severity="warning")
'off'
"""

from __future__ import annotations

import fnmatch
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from gpiozero import LED, Button, Buzzer, OutputDevice

from drivers.transports.gpio import GpioBus
from edge.alarm_drill import TEST_ALARM
from edge.config import BusConfig, OutputConfig
from edge.errors import LinliError
from edge.exits import EX_UNAVAILABLE
from edge.i18n import _
from edge.rules import SEVERITIES

log = logging.getLogger("linli.outputs")

#: Seconds a button's contacts may chatter after a press.
BOUNCE = 0.05


class Blink(NamedTuple):
    """On for ``on_time`` seconds, off for ``off_time``, repeated (on gpiozero's background thread)."""

    on_time: float
    off_time: float


OFF = "off"
STEADY = "steady"
Pattern = str | Blink

#: What an output does for the most severe alarm it sounds for. A buzzer's steady tone is its most urgent
#: sound; an LED's steady light reads as a state, so it blinks fast for what is urgent. A relay never
#: blinks: its contacts wear out, and the beacon or siren it drives flashes or wails on its own.
PATTERNS: dict[str, dict[str, Pattern]] = {
    "buzzer": {"critical": STEADY, "warning": Blink(0.5, 1.5), "info": Blink(0.1, 4.9)},
    "led": {"critical": Blink(0.25, 0.25), "warning": Blink(1.0, 1.0), "info": STEADY},
    "relay": {"critical": STEADY, "warning": STEADY, "info": STEADY},
}
_DEVICES = {"buzzer": Buzzer, "led": LED, "relay": OutputDevice}
_RANK = {severity: rank for rank, severity in enumerate(SEVERITIES)}


class OutputError(LinliError):
    """An output that cannot drive its pin: no GPIO on this machine, a pin taken, a missing library."""

    exit_code = EX_UNAVAILABLE


def pattern_for(kind: str, severities: Iterable[str], min_severity: str) -> Pattern:
    """The pattern of a ``kind`` output sounding for alarms of ``severities`` (those below ``min_severity`` ignored)."""
    counted = [s for s in severities if _RANK[s] >= _RANK[min_severity]]
    if not counted:
        return OFF
    return PATTERNS[kind][max(counted, key=_RANK.__getitem__)]


class AlarmOutput:
    """One ``[[output]]``: its gpiozero device, its optional button, the alarms it follows that are raised now."""

    def __init__(self, config: OutputConfig):
        self.config = config
        self.device: Any = None
        self.button: Button | None = None
        self.pattern: Pattern = OFF
        #: raised alarms it follows: name -> (severity, acknowledged)
        self._raised: dict[str, tuple[str, bool]] = {}
        self._lock = threading.Lock()  # transitions (core thread) against restore and close (main thread)

    def __repr__(self) -> str:
        cfg = self.config
        return f'{cfg.kind} "{cfg.id}" on GPIO {cfg.pin} of bus "{cfg.bus}"'

    def follows(self, alarm: Any) -> bool:
        """Its ``on`` patterns' alarms, and the test alarm: ``linli alarm test`` is how a technician hears it."""
        return isinstance(alarm, str) and (alarm == TEST_ALARM or any(fnmatch.fnmatchcase(alarm, p)
                                                                      for p in self.config.on))

    def _severity(self, alarm: str, severity: Any) -> Any:
        # The test alarm is info for the central side; here it sounds as the least this output sounds for.
        return self.config.min_severity if alarm == TEST_ALARM else severity

    # --- life ---------------------------------------------------------------------------------------
    def open(self, factory: Any, on_press: Callable[[AlarmOutput], None]) -> None:
        """Claim the pin, driven off from the first moment, and the button's pin when there is one."""
        cfg = self.config
        self.device = _DEVICES[cfg.kind](cfg.pin, active_high=cfg.active_high, initial_value=False,
                                         pin_factory=factory)
        if cfg.ack_button is not None:
            # A push button bounces for a few ms; each bounce would enqueue one more (harmless) acknowledgement.
            self.button = Button(cfg.ack_button, pull_up=cfg.ack_button_pull == "up", bounce_time=BOUNCE,
                                 pin_factory=factory)
            self.button.when_pressed = lambda: on_press(self)

    def close(self) -> None:
        """Off, then release the pins. Safe to call twice; an output that fails to switch off is logged."""
        with self._lock:
            device, self.device = self.device, None
            button, self.button = self.button, None
            self._raised.clear()
            self.pattern = OFF
        if button is not None:
            button.when_pressed = None
            button.close()
        if device is None:
            return
        try:
            device.off()
        except Exception as exc:  # the pins are released below regardless; somebody must hear of this
            log.critical("%r could not be switched off: %s", self, exc)
        device.close()

    # --- alarm state (core thread) --------------------------------------------------------------------
    def offer(self, transition: dict[str, Any]) -> None:
        """Follow one transition of an alarm it follows; others are ignored."""
        alarm = transition.get("alarm")
        if not self.follows(alarm):
            return
        state, severity = transition.get("state"), self._severity(alarm, transition.get("severity"))
        with self._lock:
            if state == "raised" and severity in _RANK:
                self._raised[alarm] = (severity, False)
            elif state == "acknowledged" and severity in _RANK:
                self._raised[alarm] = (severity, True)
            elif state == "cleared":
                self._raised.pop(alarm, None)
            self._show()

    def restore(self, raised: Sequence[dict[str, Any]]) -> None:
        """Start over from the alarms raised now (``RuleEngine.raised()``), e.g. after a restart."""
        with self._lock:
            self._raised = {a["alarm"]: (self._severity(a["alarm"], a["severity"]), a["acknowledged"])
                            for a in raised if self.follows(a["alarm"])}
            self._show()

    def sounding(self) -> list[str]:
        """The alarms it makes noise for now: raised, not acknowledged, at least ``min_severity``."""
        floor = _RANK[self.config.min_severity]
        with self._lock:
            return sorted(name for name, (severity, acked) in self._raised.items()
                          if not acked and _RANK[severity] >= floor)

    def _show(self) -> None:
        wanted = pattern_for(self.config.kind, (s for s, acked in self._raised.values() if not acked),
                             self.config.min_severity)
        if wanted == self.pattern or self.device is None:
            return
        if wanted == OFF:
            self.device.off()
        elif wanted == STEADY:
            self.device.on()
        else:
            self.device.blink(wanted.on_time, wanted.off_time, background=True)
        self.pattern = wanted
        log.info("%r: %s", self, wanted if isinstance(wanted, str) else
                 f"blink {wanted.on_time:g} s on, {wanted.off_time:g} s off")


class Outputs:
    """Every configured output, offered each alarm transition by the core (it is an alarm sink).

    Each GPIO bus the outputs use is opened here, apart from the bus thread's:
    outputs live from the agent's start to its exit, while bus threads come and
    go with reloads. On hardware both get the process's one factory for the
    backend (closed by its last user, see ``drivers.transports.gpio``), so a bus
    thread ending never releases an output's pin; a mock bus has its own pins.
    ``on_press(output)`` is called on gpiozero's thread when an output's
    acknowledge button is pressed.
    """

    def __init__(self, configs: Sequence[OutputConfig], buses: Sequence[BusConfig],
                 on_press: Callable[[AlarmOutput], None]):
        self.outputs = [AlarmOutput(cfg) for cfg in configs]
        self._bus_configs = {bus.name: bus for bus in buses}
        self._buses: dict[str, GpioBus] = {}
        self._on_press = on_press

    def open(self) -> None:
        """Open every output, off; on failure close what was opened and raise :class:`OutputError`."""
        try:
            for output in self.outputs:
                self._open(output)
        except OutputError:
            self.close()
            raise

    def _open(self, output: AlarmOutput) -> None:
        cfg = output.config
        bus = self._buses.get(cfg.bus)
        try:
            if bus is None:
                bus_cfg = self._bus_configs[cfg.bus]
                bus = GpioBus(bus_cfg.name, bus_cfg.options)
                bus.open()
                self._buses[cfg.bus] = bus
            output.open(bus.factory, self._on_press)
        except Exception as exc:  # TransportError from the factory; gpiozero's own: PinInvalidPin, GPIOPinInUse…
            raise OutputError(_("output {id} ({kind} on GPIO {pin} of bus {bus}) cannot be opened: {error}").format(
                id=f'"{cfg.id}"', kind=cfg.kind, pin=cfg.pin, bus=f'"{cfg.bus}"', error=exc)) from exc

    def offer(self, transition: dict[str, Any]) -> None:
        """The alarm sink: called on the core thread for every transition; never blocks."""
        for output in self.outputs:
            output.offer(transition)

    def restore(self, raised: Sequence[dict[str, Any]]) -> None:
        """Every output starts over from the alarms raised now."""
        for output in self.outputs:
            output.restore(raised)

    def close(self) -> None:
        """Every output off and released, then their pin factories. Safe to call twice."""
        for output in self.outputs:
            try:
                output.close()
            except Exception:  # the next output must still go off
                log.exception("%r could not be released", output)
        buses, self._buses = self._buses, {}
        for bus in buses.values():
            bus.close()

    def status(self) -> list[dict[str, Any]]:
        """What each output does now, for people: id, kind, pattern, the alarms it sounds for."""
        return [{"id": o.config.id, "kind": o.config.kind,
                 "pattern": o.pattern if isinstance(o.pattern, str) else {"on": o.pattern.on_time,
                                                                          "off": o.pattern.off_time},
                 "sounding": o.sounding()} for o in self.outputs]
