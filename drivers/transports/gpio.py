"""The Raspberry Pi's GPIO header as a bus: one gpiozero pin factory shared by its devices.

Drivers build their gpiozero devices with ``pin_factory=bus.factory`` and
never touch gpiozero's global ``Device.pin_factory``, so two buses (or a test
and the agent) never share pins by accident.

>>> with GpioBus("pins", {"pin_factory": "mock"}) as bus:
...     type(bus.factory).__name__
'MockFactory'
"""

from __future__ import annotations

import os
import threading
from importlib.metadata import entry_points
from typing import Any, Callable

from drivers.base import Bus
from drivers.errors import TransportError
from drivers.options import Option, validate_options

FACTORY_NAMES = ("lgpio", "rpigpio", "pigpio", "native", "mock")
#: gpiozero's own order of preference when nothing is configured.
SEARCH_ORDER = ("lgpio", "rpigpio", "pigpio", "native")
_ENTRY_POINT_GROUP = "gpiozero_pin_factories"
_ENV = "GPIOZERO_PIN_FACTORY"

_HINTS = {
    "lgpio": "on Raspberry Pi OS install python3-lgpio (sudo apt install python3-lgpio)",
    "rpigpio": "install python3-rpi-lgpio (Raspberry Pi OS Bookworm) or python3-rpi.gpio",
    "pigpio": "install python3-pigpio and start its daemon (sudo systemctl enable --now pigpiod)",
    "native": "it only works on Raspberry Pi models before the Pi 5, with /dev/gpiomem",
    "mock": "it is part of gpiozero: reinstall gpiozero",
}
_BENCH_HINT = 'on a bench without GPIO pins set pin_factory = "mock"'


class GpioBus(Bus):
    """The GPIO pins, through a gpiozero pin factory exposed as :attr:`factory` once open.

    The factory is ``pin_factory`` from the config, else the environment
    variable ``GPIOZERO_PIN_FACTORY``, else the first of :data:`SEARCH_ORDER`
    that works on this machine.
    """

    kind = "gpio"
    options = {
        "pin_factory": Option("str", choices=FACTORY_NAMES,
                              help="gpiozero pin factory; default: $GPIOZERO_PIN_FACTORY or the first that works"),
    }

    def __init__(self, name: str, options: dict[str, Any]):
        defaults, _ = validate_options(self.options, {})
        super().__init__(name, {**defaults, **options})
        self.factory = None

    def open(self) -> None:
        """Create the pin factory; a no-op when it exists already."""
        if self.factory is not None:
            return
        configured = self.config.get("pin_factory")
        if configured:
            self.factory = _acquire(configured, lambda: _create(configured, f'pin_factory = "{configured}"'))
            return
        from_env = os.environ.get(_ENV)
        if from_env:
            name = from_env.lower()
            self.factory = _acquire(name, lambda: _create(name, f"{_ENV}={from_env}"))
            return
        self.factory = _search()

    def close(self) -> None:
        """Let go of the factory (closed with every pin once its last user lets go); safe to call twice."""
        factory, self.factory = self.factory, None
        if factory is not None:
            _release(factory)


# gpiozero's hardware factories share one table of pins per process (LocalPiFactory.pins), and
# closing any of them releases every pin in it: the bus thread's factory must not take the alarm
# buzzer's pin with it on a reload. So each hardware backend has one factory per process, closed
# when its last user lets go. A mock factory has pins of its own and belongs to its bus alone.
_shared: dict[str, list] = {}  # backend name -> [factory, users]
_shared_lock = threading.Lock()


def _acquire(name: str, create: Callable[[], Any]):
    if name == "mock":
        return create()
    with _shared_lock:
        entry = _shared.get(name)
        if entry is None:
            entry = _shared[name] = [create(), 0]
        entry[1] += 1
        return entry[0]


def _release(factory) -> None:
    with _shared_lock:
        for name, entry in _shared.items():
            if entry[0] is factory:
                entry[1] -= 1
                if entry[1] == 0:
                    del _shared[name]
                    factory.close()
                return
    factory.close()


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=_ENTRY_POINT_GROUP)}


def _create(name: str, source: str):
    entry_point = _entry_points().get(name)
    if entry_point is None:
        raise TransportError(
            f'unknown GPIO pin factory "{name}" (from {source}); known: {", ".join(FACTORY_NAMES)}')
    try:
        return entry_point.load()()
    except Exception as exc:  # each factory fails its own way: ImportError, OSError, gpiozero errors
        hint = _HINTS.get(name, "check that its library is installed")
        if name != "mock":
            hint += f"; {_BENCH_HINT}"
        raise TransportError(f'GPIO pin factory "{name}" (from {source}) does not work here: {exc} — {hint}') from exc


def _search():
    available = _entry_points()
    failures = []
    for name in SEARCH_ORDER:
        entry_point = available.get(name)
        if entry_point is None:
            failures.append(f"{name}: not installed")
            continue
        try:
            return _acquire(name, lambda entry_point=entry_point: entry_point.load()())
        except Exception as exc:  # try the next one, as gpiozero itself does
            failures.append(f"{name}: {exc}")
    raise TransportError(
        f"no GPIO pin factory works here ({'; '.join(failures)}) — {_HINTS['lgpio']}; {_BENCH_HINT}")
