"""The device sections: ``[[bus]]`` (a serial line, an I2C bus, GPIO), ``[[sensor]]`` (a driver on a bus) and
``[[output]]`` (a buzzer, LED or relay that follows alarms). A driver's own options come from its class
(:mod:`drivers.registry`), so a new device needs nothing here.
"""

from __future__ import annotations

import difflib
import fnmatch
from typing import Any

from drivers.options import Option
from drivers.registry import BUS_KINDS, bus_class, driver_class
from edge.config_problems import show, unknown_choice
from edge.config_tables import Context, Table, check_name, present
from edge.i18n import _
from edge.rules import SEVERITIES
from edge.config_model import BusConfig, OutputConfig, SensorConfig

# --- [[bus]] --------------------------------------------------------------------------------------------
BUS_OPTIONS = {
    "name": Option("str", required=True, check=check_name,
                   help="what sensors and outputs call the bus; unique among buses; 1 to 64 characters of a-z, "
                        "0-9, _ and -, starting with a letter or digit"),
    "kind": Option("str", required=True,
                   help="the transport, " + " or ".join(sorted(BUS_KINDS)) + "; its own keys follow below"),
}


def build_bus(table: Table, ctx: Context) -> BusConfig | None:
    common = {k: v for k, v in table.raw.items() if k in BUS_OPTIONS}
    rest = {k: v for k, v in table.raw.items() if k not in BUS_OPTIONS}
    values = table.check(BUS_OPTIONS, common)
    name, kind = values.get("name"), values.get("kind")
    cls = None
    if kind is not None:
        if kind not in BUS_KINDS:
            table.problem("kind", unknown_choice(_('unknown bus kind {value}; did you mean "{suggestion}"?'),
                                                  _("unknown bus kind {value}; expected one of {choices}"),
                                                  kind, sorted(BUS_KINDS)))
            kind = None
        else:
            try:
                cls = bus_class(kind)
            except (ImportError, AttributeError) as exc:  # module or class missing: a broken install
                table.problem("kind", _('the "{kind}" bus cannot be loaded: {error}').format(kind=kind, error=exc))
    if name is not None and ctx.claim(table, "bus", "name", name):
        ctx.bus_kinds[name] = kind
    # Without a usable kind the remaining keys cannot be judged: reporting them all as unknown would mislead.
    options = table.check_class(cls, rest, siblings=tuple(BUS_OPTIONS)) if cls is not None else {}
    return None if table.problems else BusConfig(name=name, kind=kind, options=options)


# --- [[sensor]] -----------------------------------------------------------------------------------------
SENSOR_OPTIONS = {
    "id": Option("str", required=True, check=check_name,
                 help="the sensor's name in readings and alarm names; unique; 1 to 64 characters of a-z, 0-9, _ "
                      "and -, starting with a letter or digit"),
    "driver": Option("str", required=True,
                     help="a driver below, or one installed through the linli.drivers entry point"),
    "bus": Option("str", required=True, help="name of a [[bus]] of the kind the driver needs"),
    "interval": Option("duration", default="10s", min=0.1, max=86400, help="time between two reads"),
}


def build_sensor(table: Table, ctx: Context) -> SensorConfig | None:
    common = {k: v for k, v in table.raw.items() if k in SENSOR_OPTIONS}
    rest = {k: v for k, v in table.raw.items() if k not in SENSOR_OPTIONS}
    values = table.check(SENSOR_OPTIONS, common)
    if values.get("id") is not None:
        ctx.claim(table, "sensor", "id", values["id"])
    driver = values.get("driver")
    cls = _driver(table, ctx, driver)
    bus = values.get("bus")
    if bus is not None:
        _check_bus(table, ctx, bus, driver, cls)
    options = table.check_class(cls, rest, siblings=tuple(SENSOR_OPTIONS)) if cls is not None else {}
    if ctx.bus_kinds.get(bus) == "gpio" and isinstance(options.get("pin"), int):
        _claim_pin(table, ctx, "pin", bus, options["pin"])
    if values.get("id") is not None:
        usable = cls is not None and not table.problems
        ctx.sensor_quantities.setdefault(values["id"], cls.quantities_for(options) if usable else None)
    if table.problems:
        return None
    return SensorConfig(id=values["id"], driver=values["driver"], bus=bus, interval=values["interval"],
                        options=options)


def _driver(table: Table, ctx: Context, name: str | None):
    """The driver class named by ``sensor.driver``, or None (after reporting why) when there is none."""
    if name is None:
        return None
    known = ctx.driver_names
    if name not in known:
        table.problem("driver", unknown_choice(_('unknown driver {value}; did you mean "{suggestion}"?'),
                                                _("unknown driver {value}; known drivers: {choices}"), name, known))
        return None
    try:
        return driver_class(name)
    except (ImportError, AttributeError) as exc:  # module or class missing: a broken install or plugin
        table.problem("driver", _('driver "{name}" cannot be loaded: {error}').format(name=name, error=exc))
        return None


def _check_bus(table: Table, ctx: Context, bus: str, driver: str | None, cls) -> None:
    if bus not in ctx.bus_kinds:
        close = difflib.get_close_matches(bus, list(ctx.bus_kinds), n=1)
        if close:
            message = _('no [[bus]] named {value}; did you mean "{suggestion}"?').format(
                value=show(bus), suggestion=close[0])
        else:
            message = _("no [[bus]] named {value}").format(value=show(bus))
        table.problem("bus", message)
        return
    kind = ctx.bus_kinds[bus]
    if cls is not None and kind is not None and cls.bus_kind != kind:
        table.problem("bus", _('driver "{driver}" needs a {needed} bus, "{bus}" is {kind}').format(
            driver=driver, needed=cls.bus_kind, bus=bus, kind=kind))


# --- [[output]] -----------------------------------------------------------------------------------------
OUTPUT_KINDS = ("buzzer", "led", "relay")
OUTPUT_OPTIONS = {
    "id": Option("str", required=True, check=check_name,
                 help="the output's name; unique among outputs; 1 to 64 characters of a-z, 0-9, _ and -, "
                      "starting with a letter or digit"),
    "kind": Option("str", required=True, choices=OUTPUT_KINDS,
                   help="what the pin drives, as gpiozero's Buzzer, LED or OutputDevice"),
    "bus": Option("str", required=True, help="a [[bus]] of kind gpio; its pin_factory drives the pin"),
    "pin": Option("int", required=True, min=0, max=27, help="BCM number of the pin"),
    "active_high": Option("bool", default=True,
                          help="false for modules switched on by a low input (most relay boards with an "
                               "opto-coupler)"),
    "on": Option("list", required=True,
                 help='alarm names "<sensor>/<rule id>" or patterns of them (*, ?, [...] as in shell file names), '
                      'e.g. ["pump-pressure/*"]; each must match an alarm a [[rule]] makes, or gateway/away'),
    "min_severity": Option("str", default="warning", choices=SEVERITIES,
                           help="alarms less severe than this do not switch the output on"),
    "ack_button": Option("int", min=0, max=27,
                         help="BCM number of a push button that acknowledges the alarms the output sounds for"),
    "ack_button_pull": Option("str", default="up", choices=("up", "down"),
                              help="up: the button closes the pin to ground; down: to 3.3 V; only with ack_button"),
}


def build_output(table: Table, ctx: Context) -> OutputConfig | None:
    values = table.check(OUTPUT_OPTIONS, table.raw)
    if values.get("id") is not None:
        ctx.claim(table, "output", "id", values["id"])
    bus = values.get("bus")
    if bus is not None:
        _check_bus(table, ctx, bus, None, None)
        kind = ctx.bus_kinds.get(bus)
        if kind is not None and kind != "gpio":
            table.problem("bus", _('an output needs a gpio bus, "{bus}" is {kind}').format(bus=bus, kind=kind))
        elif kind == "gpio":
            for key in ("pin", "ack_button"):
                if values.get(key) is not None:
                    _claim_pin(table, ctx, key, bus, values[key])
    if "ack_button_pull" in table.raw and "ack_button" not in table.raw:
        table.problem("ack_button_pull", _("is only used with {other}").format(other=f"{table.path}.ack_button"))
    patterns = _output_patterns(table, ctx, values.get("on"))
    if patterns and "min_severity" in values:
        _output_audible(table, ctx, patterns, values["min_severity"])
    if table.problems:
        return None
    return OutputConfig(**{**present(values), "on": patterns})


def _output_patterns(table: Table, ctx: Context, patterns: list[Any] | None) -> tuple[str, ...]:
    """``on``: alarm name patterns, each matching at least one alarm the rules make (a typo must not go silent)."""
    if patterns is None:
        return ()
    if not patterns:
        table.problem("on", _('expected a list of alarm patterns like ["pump-pressure/*"], got an empty list'))
    alarms = list(ctx.alarm_severities)
    for index, pattern in enumerate(patterns):
        if not isinstance(pattern, str) or not pattern.strip():
            message = _('expected an alarm pattern like "pump-pressure/*", got {value}').format(value=show(pattern))
        elif not any(fnmatch.fnmatchcase(alarm, pattern) for alarm in alarms):
            message = _("{value} matches no alarm; the rules make {alarms}").format(
                value=show(pattern), alarms=", ".join(show(a) for a in alarms))
        else:
            continue
        table.report.add((*table.place, list(table.raw).index("on"), index), f"{table.path}.on[{index}]", message)
        table.problems += 1
    return tuple(pattern for pattern in patterns if isinstance(pattern, str))


def _output_audible(table: Table, ctx: Context, patterns: tuple[str, ...], min_severity: str) -> None:
    """An output whose every alarm is below its ``min_severity`` would never sound: say so."""
    followed = {a: s for a, s in ctx.alarm_severities.items() if any(fnmatch.fnmatchcase(a, p) for p in patterns)}
    if followed and all(SEVERITIES.index(s) < SEVERITIES.index(min_severity) for s in followed.values()):
        key = "min_severity" if "min_severity" in table.raw else "on"
        table.problem(key, _("every alarm it follows is less severe than {value}, so it would never sound: "
                             "{alarms}").format(value=show(min_severity), alarms=", ".join(
                                 f"{show(a)} ({s})" for a, s in followed.items())))


def _claim_pin(table: Table, ctx: Context, key: str, bus: str, pin: int) -> None:
    """Record that ``key`` of ``table`` uses GPIO ``pin`` of ``bus``; a problem when something else did first."""
    path = f"{table.path}.{key}"
    # Every gpio bus drives the same header: a pin is one pin whatever bus name it is reached through.
    first = ctx.names.setdefault(("gpio pin", str(pin)), path)
    if first != path:
        table.problem(key, _('GPIO {pin} of bus "{bus}" is already used by {other}').format(
            pin=pin, bus=bus, other=first))
