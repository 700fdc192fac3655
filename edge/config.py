"""The gateway's configuration: one TOML file, validated before any device opens.

:func:`load_config` reads the file, :func:`validate` checks an already parsed
table (a config pushed over MQTT goes through the same function). Every problem
is reported at once, in file order, each prefixed with its key path
(``sensor[2].interval: …``; array indexes count from 0). Validation does no
device I/O: it loads driver classes to learn their options, and it looks at the
files the config names (:mod:`edge.config_paths`) without touching any of them.
Each section is checked by a module of its own: ``[gateway]`` :mod:`edge.config_gateway`,
``[mqtt]`` :mod:`edge.config_mqtt`, ``[[bus]]``, ``[[sensor]]`` and ``[[output]]``
:mod:`edge.config_devices`, ``[[rule]]`` :mod:`edge.config_rules`; ``[buffer]`` and
``[control]``, two paths each, are here. What they build is :mod:`edge.config_model`,
what they share :mod:`edge.config_tables`, how a problem is worded :mod:`edge.config_problems`.

>>> config = validate({"gateway": {"id": "gw-0042", "grid": "shimen2/xinfukangli/b07"}})
>>> config.base_topic
'linli/shimen2/xinfukangli/b07/gw-0042'
>>> validate({"gateway": {"id": "gw-0042", "grid": "b07"}, "mqtt": {"hots": "broker"}})
Traceback (most recent call last):
edge.errors.ConfigError: the configuration has 1 problem:
  mqtt.hots: unknown key; did you mean "host"?
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from drivers.options import Option
from edge import config_paths
from edge.config_devices import BUS_OPTIONS, OUTPUT_KINDS, OUTPUT_OPTIONS, SENSOR_OPTIONS, build_bus, build_output, \
    build_sensor
from edge.config_gateway import GATEWAY_OPTIONS, RESERVED_LEVELS, TOPIC_PREFIX_MAX_BYTES, build_gateway
from edge.config_model import (MQTT_MAX_PACKET, MQTT_MAX_STRING, BufferConfig, BusConfig, Config, ControlConfig,
                               GatewayConfig, MqttConfig, OutputConfig, SensorConfig)
from edge.config_mqtt import MQTT_OPTIONS, build_mqtt
from edge.config_problems import show, unknown_key
from edge.config_rules import check_rule
from edge.config_tables import Context, Report, Section, Table, not_empty, present
from edge.errors import ConfigError
from edge.i18n import _
from edge.toml_shape import MAX_BYTES, ShapeError, check_shape

DEFAULT_PATH = "/etc/linli/edge.toml"

#: What other modules take from here: the entry points, and the model and option tables of every section
#: (each section's table lives in its own module; this one puts them together).
__all__ = ["DEFAULT_PATH", "SECTIONS", "load_config", "load_config_text", "validate",
           "Config", "GatewayConfig", "MqttConfig", "BufferConfig", "ControlConfig", "BusConfig", "SensorConfig",
           "OutputConfig", "MQTT_MAX_PACKET", "MQTT_MAX_STRING", "TOPIC_PREFIX_MAX_BYTES", "RESERVED_LEVELS",
           "GATEWAY_OPTIONS", "MQTT_OPTIONS", "BUFFER_OPTIONS", "CONTROL_OPTIONS", "BUS_OPTIONS", "SENSOR_OPTIONS",
           "OUTPUT_OPTIONS", "OUTPUT_KINDS", "MAX_OUTBOX_MB"]

# --- entry points ---------------------------------------------------------------------------------------
def load_config(path: str | os.PathLike = DEFAULT_PATH) -> Config:
    """Read and validate the TOML file at ``path``; raise :class:`ConfigError` listing every problem."""
    source = os.path.abspath(os.fspath(path))
    try:
        with open(source, "rb") as file:
            data = file.read(MAX_BYTES + 1)   # a config is small: never read a huge file whole (or /dev/zero)
    except FileNotFoundError:
        problem = _('no such file "{path}"').format(path=source)
    except IsADirectoryError:
        problem = _('expected a file, "{path}" is a directory').format(path=source)
    except PermissionError:
        problem = _('cannot read "{path}": permission denied').format(path=source)
    except OSError as exc:
        problem = _('cannot read "{path}": {reason}').format(path=source, reason=exc.strerror or exc)
    else:
        return validate(_parse(data, source), source)
    raise ConfigError([problem], source)


def load_config_text(data: bytes, source: str | os.PathLike) -> Config:
    """Validate a config's bytes as if they were the file at ``source``: what ``linli config check`` says of it.

    A config pushed over MQTT is checked in the place of the file it replaces, so its relative
    paths and the files it names are judged as they would be there.
    """
    source = os.path.abspath(os.fspath(source))
    return validate(_parse(data, source), source)


def _parse(data: bytes, source: str) -> dict[str, Any]:
    if len(data) > MAX_BYTES:
        raise ConfigError([_("larger than {limit} bytes; a gateway's config is a few kilobytes").format(
            limit=MAX_BYTES)], source)
    try:
        # "utf-8-sig": a byte-order mark left by a Windows editor is not worth refusing a config for.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError([_("not UTF-8 text: the byte at offset {offset} is invalid").format(offset=exc.start)],
                          source) from None
    try:
        check_shape(text)  # before tomllib: its recursion and its dotted keys' memory are not bounded
    except ShapeError as exc:
        raise ConfigError([str(exc)], source) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_("not valid TOML: {error}").format(error=exc)], source) from None


def validate(raw: dict[str, Any], source: str | os.PathLike | None = None) -> Config:
    """Check a parsed TOML document and build the :class:`Config`; raise :class:`ConfigError` listing every problem.

    Relative file paths in ``raw`` are resolved against the folder of ``source``
    (the current folder when there is no source).
    """
    source = None if source is None else os.fspath(source)
    if not isinstance(raw, dict):  # a config pushed over MQTT may be any JSON value
        raise ConfigError([_("expected a table of sections like [gateway], got {value}").format(value=show(raw))],
                          source)
    report = Report()
    ctx = Context(base=Path(os.path.abspath(source)).parent if source else Path.cwd())
    if source:
        ctx.paths.claim(os.path.abspath(source), None, _("this configuration file"), writes=False)
    place = {key: index for index, key in enumerate(raw)}
    known = [section.key for section in SECTIONS]
    for key in raw:
        if key not in known:
            report.add((place[key],), key, unknown_key(key, [k for k in known if k not in raw]))
    built: dict[str, Any] = {}
    for section in SECTIONS:
        if section.key in raw:
            built[section.attribute] = section.build(raw[section.key], (place[section.key],), report, ctx)
        elif section.required:
            report.add((-1,), section.key, _("is required"))
        else:   # its defaults, built like any table: the default outbox and socket paths are checked too
            built[section.attribute] = section.build([] if section.many else {}, (len(raw),), report, ctx)
    if report:
        raise ConfigError(report.lines(), source)
    return Config(**built, source=source)


# --- [buffer] -------------------------------------------------------------------------------------------
#: 1 TiB, more than any SD card a gateway has: the bound goes into every health message as bytes, where a
#: float option's 1e300 became a 300-digit integer.
MAX_OUTBOX_MB = 1024 * 1024
BUFFER_OPTIONS = {
    "path": Option("str", check=not_empty,
                   help="the outbox, an SQLite file, created if missing (with its folder); a file already there must "
                        "be an outbox (or empty), else the agent refuses it and leaves it alone"),
    "max_mb": Option("float", min=1, max=MAX_OUTBOX_MB,
                     help="MiB the outbox may fill, up to 1 TiB; beyond it the oldest telemetry is dropped, never an "
                          "alarm, and a dropped record says which"),
    "commit_interval": Option("duration", min=0.01, max=600,
                              help="a reading the broker has not acknowledged within this long is written to the "
                                   "outbox (a power cut loses at most this much); an alarm is written at once"),
    "commit_max_records": Option("int", min=1, max=100_000,
                                 help="readings are written sooner once this many wait unacknowledged"),
}


def _buffer(table: Table, ctx: Context) -> BufferConfig | None:
    values = present(table.check(BUFFER_OPTIONS, table.raw))
    if "path" in values or "path" not in table.raw:   # the default too: the agent would open its outbox there
        values["path"] = os.path.normpath(ctx.base / values.get("path", BufferConfig.path))
        for problem in config_paths.outbox_problems(values["path"], ctx.paths):
            table.problem("path", problem)
    return None if table.problems else BufferConfig(**values)


# --- [control] ----------------------------------------------------------------------------------------
CONTROL_OPTIONS = {
    "socket": Option("str", check=not_empty,
                     help="Unix socket (mode 0660) on which the running agent answers the linli command; a path of "
                          f"at most {config_paths.MAX_SOCKET_PATH} bytes; a file already there must be a socket"),
}


def _control(table: Table, ctx: Context) -> ControlConfig | None:
    values = present(table.check(CONTROL_OPTIONS, table.raw))
    if "socket" in values or "socket" not in table.raw:   # the default too: the agent would make its socket there
        values["socket"] = os.path.normpath(ctx.base / values.get("socket", ControlConfig.socket))
        for problem in config_paths.socket_problems(values["socket"], ctx.paths):
            table.problem("socket", problem)
    return None if table.problems else ControlConfig(**values)


# --- the sections, in the order they are checked (a section may use what an earlier one found) ---------
SECTIONS: tuple[Section, ...] = (
    Section("gateway", "gateway", build_gateway, required=True),
    Section("mqtt", "mqtt", build_mqtt),
    Section("buffer", "buffer", _buffer),
    Section("control", "control", _control),
    Section("bus", "buses", build_bus, many=True),
    Section("sensor", "sensors", build_sensor, many=True),
    Section("rule", "rules", check_rule, many=True),
    Section("output", "outputs", build_output, many=True),
)
