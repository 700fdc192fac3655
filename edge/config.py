"""The gateway's configuration: one TOML file, validated before any device opens.

:func:`load_config` reads the file, :func:`validate` checks an already parsed
table (a config pushed over MQTT goes through the same function). Every problem
is reported at once, in file order, each prefixed with its key path
(``sensor[2].interval: …``; array indexes count from 0). Validation does no
device I/O: it loads driver classes to learn their options, and it looks at the
files the config names (:mod:`edge.config_paths`) without touching any of them.
What every section shares is in :mod:`edge.config_tables`, how a problem is worded
in :mod:`edge.config_problems`, and the ``[[rule]]`` section in :mod:`edge.config_rules`.

>>> config = validate({"gateway": {"id": "gw-0042", "grid": "shimen2/xinfukangli/b07"}})
>>> config.base_topic
'linli/shimen2/xinfukangli/b07/gw-0042'
>>> validate({"gateway": {"id": "gw-0042", "grid": "b07"}, "mqtt": {"hots": "broker"}})
Traceback (most recent call last):
edge.errors.ConfigError: the configuration has 1 problem:
  mqtt.hots: unknown key; did you mean "host"?
"""

from __future__ import annotations

import difflib
import fnmatch
import ipaddress
import os
import re
import tomllib
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.options import Option
from drivers.registry import BUS_KINDS, bus_class, driver_class
from edge import config_paths, topics
from edge.commands import MAX_NAME as MAX_COMMAND_NAME
from edge.config_problems import show, unknown_choice, unknown_key
from edge.config_rules import check_rule
from edge.config_tables import Context, Report, Section, Table, check_name, not_empty, present
from edge.errors import ConfigError
from edge.i18n import _
from edge.rules import SEVERITIES, RuleConfig
from edge.toml_shape import MAX_BYTES, ShapeError, check_shape

DEFAULT_PATH = "/etc/linli/edge.toml"

#: MQTT's largest packet (the Remaining Length field tops out at 256 MiB - 1).
MQTT_MAX_PACKET = 268_435_455
#: MQTT's longest string (a topic, a client id, a user name) and password, in bytes: a two-byte length.
MQTT_MAX_STRING = 65_535


@dataclass(frozen=True)
class GatewayConfig:
    id: str
    grid: str
    site: str = ""
    timezone: str = "Asia/Shanghai"


@dataclass(frozen=True)
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    topic_prefix: str = "linli"
    client_id: str | None = None          # default: "linli-<gateway id>"
    protocol: str = "3.1.1"               # "3.1.1" | "5"
    keepalive: float = 60.0               # seconds
    tls: bool = False
    ca_file: str | None = None            # with tls and no ca_file: the system's CA store
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password_file: str | None = None
    batch_max_records: int = 500
    batch_max_bytes: int = 65536
    inflight: int = 20
    reconnect_min: float = 1.0            # seconds
    reconnect_max: float = 60.0           # seconds
    health_interval: float = 60.0         # seconds


@dataclass(frozen=True)
class BufferConfig:
    path: str = "/var/lib/linli/outbox.db"
    max_mb: float = 64.0
    commit_interval: float = 30.0         # seconds a reading may wait in memory for its PUBACK before it is written
    commit_max_records: int = 2000


@dataclass(frozen=True)
class ControlConfig:
    socket: str = "/run/linli/control.sock"   # the local `linli` command talks to the agent here


@dataclass(frozen=True)
class BusConfig:
    name: str
    kind: str                             # serial | i2c | gpio
    options: dict[str, Any] = field(default_factory=dict)   # validated bus options (without name/kind)


@dataclass(frozen=True)
class SensorConfig:
    id: str
    driver: str
    bus: str
    interval: float                       # seconds
    options: dict[str, Any] = field(default_factory=dict)   # validated driver options


@dataclass(frozen=True)
class OutputConfig:
    id: str
    kind: str                             # buzzer | led | relay (OUTPUT_KINDS)
    bus: str                              # a [[bus]] of kind gpio
    pin: int                              # BCM number
    on: tuple[str, ...]                   # fnmatch patterns on "<sensor>/<rule>"
    active_high: bool = True
    min_severity: str = "warning"         # alarms below it do not switch the output on
    ack_button: int | None = None         # BCM number of a push button that acknowledges what it sounds for
    ack_button_pull: str = "up"           # up: the button closes to ground


@dataclass(frozen=True)
class Config:
    gateway: GatewayConfig
    mqtt: MqttConfig = MqttConfig()
    buffer: BufferConfig = BufferConfig()
    control: ControlConfig = ControlConfig()
    buses: tuple[BusConfig, ...] = ()
    sensors: tuple[SensorConfig, ...] = ()
    rules: tuple[RuleConfig, ...] = ()
    outputs: tuple[OutputConfig, ...] = ()
    # the file it was loaded from; relative paths in it are resolved against its folder
    source: str | None = None

    @property
    def base_topic(self) -> str:
        """``<prefix>/<grid path>/<gateway id>``, e.g. ``linli/shimen2/xinfukangli/b07/gw-0042``."""
        return f"{self.mqtt.topic_prefix}/{self.gateway.grid}/{self.gateway.id}"


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


# --- [gateway] ------------------------------------------------------------------------------------------
_GATEWAY_ID = re.compile(r"[a-z0-9-]{1,64}")
_GRID_SEGMENT = re.compile(r"[a-z0-9_-]{1,64}")
#: The longest topic under the base topic: a reply to the longest command name answered, or a
#: sensor's (64) rule's (64) retained alarm state; each is built the way the uplink builds it.
_LONGEST_TOPIC_TAIL = max(len(topics.command_reply("", "n" * MAX_COMMAND_NAME).encode()),
                          len(topics.alarm_state("", "s" * 64 + "/" + "r" * 64).encode()))
#: A topic prefix at most this long keeps every topic within MQTT's 65,535 bytes whatever the gateway id
#: (64) and grid (6 levels of 64) are; a longer one made paho raise in the uplink thread.
TOPIC_PREFIX_MAX_BYTES = MQTT_MAX_STRING - _LONGEST_TOPIC_TAIL - len("/" + "/".join(["g" * 64] * 6) + "/" + "i" * 64)


# Topic levels with a meaning under a gateway's base topic: the broker's ACL patterns match on them,
# so a gateway id or grid level spelt like one could reach another gateway's topics (deploy/mosquitto/).
RESERVED_LEVELS = ("status", "telemetry", "alarm", "event", "health", "cmd")


def _reserved(value: str) -> str | None:
    return _('"{value}" is reserved for MQTT topic levels ({reserved})').format(
        value=value, reserved=", ".join(RESERVED_LEVELS))


def _gateway_id(value: str) -> str | None:
    if not _GATEWAY_ID.fullmatch(value):
        return _('expected 1 to 64 characters of a-z, 0-9 and "-", got {value}').format(value=show(value))
    if value in RESERVED_LEVELS:
        return _reserved(value)
    return None


def _grid(value: str) -> str | None:
    if "+" in value or "#" in value:
        return _('must not contain the MQTT wildcards "+" and "#", got {value}').format(value=show(value))
    segments = value.split("/")
    if len(segments) > 6 or not all(_GRID_SEGMENT.fullmatch(s) for s in segments):
        return _('expected 1 to 6 segments of 1 to 64 characters of a-z, 0-9, "_" and "-" separated by "/", '
                 'like "shimen2/xinfukangli/b07", got {value}').format(value=show(value))
    for segment in segments:
        if segment in RESERVED_LEVELS:
            return _reserved(segment)
    return None


def _timezone(value: str) -> str | None:
    try:
        zoneinfo.ZoneInfo(value)
    except (KeyError, ValueError, OSError):  # not found, not a normalised key, not a TZif file
        suggestion = _zone_like(value)
        if suggestion:
            return _('unknown time zone {value}; did you mean "{suggestion}"?').format(
                value=show(value), suggestion=suggestion)
        return _('unknown time zone {value}; expected an IANA name like "Asia/Shanghai"').format(value=show(value))
    return None


def _zone_like(value: str) -> str | None:
    """The zone a mistyped name probably meant: same letters in another case, same city, or a close spelling.

    The spelling match is strict on purpose: "UTC+8" must not be answered with "UTC", eight hours off.
    """
    zones = sorted(zoneinfo.available_timezones())
    wanted = value.lower()
    for zone in zones:
        if zone.lower() == wanted or zone.rsplit("/", 1)[-1].lower() == wanted:
            return zone
    close = difflib.get_close_matches(value, zones, n=1, cutoff=0.8)
    return close[0] if close else None


GATEWAY_OPTIONS = {
    "id": Option("str", required=True, check=_gateway_id,
                 help="the gateway's name, unique in the community: the last level of its topics and the common "
                      "name of its certificate; 1 to 64 characters of a-z, 0-9 and -, not one of the topic words "
                      + ", ".join(RESERVED_LEVELS)),
    "grid": Option("str", required=True, check=_grid,
                   help='street / district / micro-grid, e.g. "shimen2/xinfukangli/b07": 1 to 6 levels joined by '
                        '/, each 1 to 64 characters of a-z, 0-9, _ and -, none a topic word'),
    "site": Option("str", help="free text for people: address, room"),
    "timezone": Option("str", check=_timezone,
                       help='IANA time zone name ("Asia/Shanghai", "UTC") for the rules\' local days, bins and '
                            'active windows; "UTC+8" is not a zone name'),
}


def _gateway(table: Table, ctx: Context) -> GatewayConfig | None:
    values = table.check(GATEWAY_OPTIONS, table.raw)
    return None if table.problems else GatewayConfig(**present(values))


# --- [mqtt] ---------------------------------------------------------------------------------------------
def _host(value: str) -> str | None:
    try:
        ipaddress.IPv6Address(value)
        return None
    except ValueError:
        pass
    if not value or "/" in value or ":" in value or any(c.isspace() for c in value):
        return _('expected a host name or IP address like "mqtt.example.org", without scheme or port, '
                 'got {value}').format(value=show(value))
    try:
        value.encode("idna")   # what the resolver is given: an empty or over-long label cannot be
    except UnicodeError:
        return _("expected a host name whose labels (the parts between dots) have 1 to 63 characters, "
                 "got {value}").format(value=show(value))
    return None


def _topic_prefix(value: str) -> str | None:
    if not value:
        return _("must not be empty")
    if len(value.encode()) > TOPIC_PREFIX_MAX_BYTES:
        return _("is {length} bytes; at most {limit} leave room in a topic (at most {mqtt} bytes in MQTT) for the "
                 "grid, the gateway id and the longest level after them").format(
            length=len(value.encode()), limit=TOPIC_PREFIX_MAX_BYTES, mqtt=MQTT_MAX_STRING)
    if "+" in value or "#" in value:
        return _('must not contain the MQTT wildcards "+" and "#", got {value}').format(value=show(value))
    if value.startswith("/") or value.endswith("/"):
        return _('must not start or end with "/", got {value}').format(value=show(value))
    if "//" in value:
        return _('must not contain an empty topic level ("//"), got {value}').format(value=show(value))
    if value.startswith("$"):
        return _('must not start with "$" (such topics belong to the broker), got {value}').format(value=show(value))
    return None


def _mqtt_string(value: str) -> str | None:
    """A client id or user name: not empty, and within what MQTT carries."""
    if not value.strip():
        return _("must not be empty")
    if len(value.encode()) > MQTT_MAX_STRING:
        return _("is {length} bytes; MQTT carries at most {limit}").format(
            length=len(value.encode()), limit=MQTT_MAX_STRING)
    return None


def _whole_seconds(value: float) -> str | None:
    if value != int(value):
        return _("must be a whole number of seconds, got {value}").format(value=f"{value:g}s")
    return None


def _fits_a_packet(value: int) -> str | None:
    # Not Option.max: it would print the limit as 2.68435e+08.
    if value > MQTT_MAX_PACKET:
        return _("must be at most {limit}, got {value}").format(limit=MQTT_MAX_PACKET, value=value)
    return None


MQTT_OPTIONS = {
    "host": Option("str", check=_host, help="the broker's host name or IP address, without scheme or port"),
    "port": Option("int", min=1, max=65535, help="the broker's TCP port; 8883 is the usual one for TLS"),
    "topic_prefix": Option("str", check=_topic_prefix,
                           help="first topic level(s) of every message: not empty, no + or #, no leading, trailing "
                                f"or empty level, not starting with $, at most {TOPIC_PREFIX_MAX_BYTES} bytes"),
    "client_id": Option("str", check=_mqtt_string,
                        help="MQTT client id, unique on the broker, at most 65535 bytes; default: linli-<gateway id>"),
    "protocol": Option("str", choices=("3.1.1", "5"),
                       help="MQTT version; with 5 a publish the broker refuses stays in the outbox, with 3.1.1 the "
                            "broker acknowledges it anyway and it is lost"),
    "keepalive": Option("duration", min=5, max=65535, check=_whole_seconds,
                        help="whole seconds; the broker declares the gateway gone (and publishes its Last Will) "
                             "after 1.5 × this without a packet"),
    "tls": Option("bool", help="encrypt the connection and check the broker's certificate"),
    "ca_file": Option("str", check=not_empty,
                      help="file (PEM) of the CA certificates that signed the broker's; only with tls; default: the "
                           "system's CA store"),
    "cert_file": Option("str", check=not_empty,
                        help="file (PEM) of the gateway's client certificate; only with tls, and with key_file"),
    "key_file": Option("str", check=not_empty,
                       help="file (PEM) of the private key of cert_file; only with tls, and with cert_file"),
    "username": Option("str", check=_mqtt_string, help="MQTT user name, at most 65535 bytes"),
    "password_file": Option("str", check=not_empty,
                            help="file holding only the password (at most 65535 bytes), readable by the agent "
                                 "alone; needs username"),
    "batch_max_records": Option("int", min=1, max=10_000, help="records per telemetry message at most"),
    "batch_max_bytes": Option("int", min=1024, check=_fits_a_packet,
                              help=f"bytes per telemetry message at most, up to {MQTT_MAX_PACKET} (MQTT's largest "
                                   "packet; brokers often allow far less); a larger single record goes alone"),
    "inflight": Option("int", min=1, max=1000,
                       help="messages sent and not yet acknowledged at most (MQTT 5: at most the broker's Receive "
                            "Maximum)"),
    "reconnect_min": Option("duration", min=0.1, max=3600,
                            help="first wait after the connection drops or an attempt fails, doubled on each "
                                 "failure, with jitter"),
    "reconnect_max": Option("duration", min=0.1, max=86400,
                            help="longest wait between attempts; not shorter than reconnect_min"),
    "health_interval": Option("duration", min=1, max=86400, help="time between two health messages"),
}


def _mqtt_files() -> dict[str, str]:
    """The files [mqtt] names, with what each holds (in the message when another key names the same file)."""
    return {"ca_file": _("the CA certificates"), "cert_file": _("the client certificate"),
            "key_file": _("the client key"), "password_file": _("the MQTT password")}


_TLS_FILES = ("ca_file", "cert_file", "key_file")


def _mqtt(table: Table, ctx: Context) -> MqttConfig | None:
    raw = table.raw
    values = present(table.check(MQTT_OPTIONS, raw))
    for key in _TLS_FILES:
        if key not in values:
            continue
        if values.get("tls"):
            values[key] = ctx.file(table, key, values[key], _mqtt_files()[key])
        elif "tls" not in raw or "tls" in values:  # a mistyped tls is reported already
            table.problem(key, _("is only used with TLS; set mqtt.tls = true or remove this key"))
    for key, other in (("cert_file", "key_file"), ("key_file", "cert_file"), ("password_file", "username")):
        if key in raw and other not in raw:
            table.problem(key, _("needs {other} too").format(other=f"mqtt.{other}"))
    if "password_file" in values:
        values["password_file"] = ctx.file(table, "password_file", values["password_file"],
                                           _mqtt_files()["password_file"])
        _check_password_size(table, values["password_file"])
    _check_reconnect(table, values)
    return None if table.problems else MqttConfig(**values)


def _check_password_size(table: Table, path: str) -> None:
    """A password longer than MQTT carries made paho raise in the uplink thread (a newline at its end is not in it)."""
    try:
        size = os.stat(path).st_size
    except OSError:
        return   # reported by the file check
    if size > MQTT_MAX_STRING + len("\r\n"):
        table.problem("password_file", _('"{path}" is {size} bytes; MQTT carries a password of at most {limit} '
                                         'bytes').format(path=path, size=size, limit=MQTT_MAX_STRING))


def _check_reconnect(table: Table, values: dict[str, Any]) -> None:
    shortest = values.get("reconnect_min", MqttConfig.reconnect_min)
    longest = values.get("reconnect_max", MqttConfig.reconnect_max)
    if shortest <= longest:
        return
    raw = table.raw
    if "reconnect_max" in raw:
        limit = show(raw["reconnect_min"]) if "reconnect_min" in raw else f'"{shortest:g}s"'
        table.problem("reconnect_max", _("must not be shorter than {other} ({limit}), got {value}").format(
            other=f"{table.path}.reconnect_min", limit=limit, value=show(raw["reconnect_max"])))
    else:
        table.problem("reconnect_min", _("must not be longer than {other} ({limit}), got {value}").format(
            other=f"{table.path}.reconnect_max", limit=f'"{longest:g}s"', value=show(raw["reconnect_min"])))


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


# --- [[bus]] --------------------------------------------------------------------------------------------
BUS_OPTIONS = {
    "name": Option("str", required=True, check=check_name,
                   help="what sensors and outputs call the bus; unique among buses; 1 to 64 characters of a-z, "
                        "0-9, _ and -, starting with a letter or digit"),
    "kind": Option("str", required=True,
                   help="the transport, " + " or ".join(sorted(BUS_KINDS)) + "; its own keys follow below"),
}


def _bus(table: Table, ctx: Context) -> BusConfig | None:
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


def _sensor(table: Table, ctx: Context) -> SensorConfig | None:
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


def _output(table: Table, ctx: Context) -> OutputConfig | None:
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


# --- the sections, in the order they are checked (a section may use what an earlier one found) ---------
SECTIONS: tuple[Section, ...] = (
    Section("gateway", "gateway", _gateway, required=True),
    Section("mqtt", "mqtt", _mqtt),
    Section("buffer", "buffer", _buffer),
    Section("control", "control", _control),
    Section("bus", "buses", _bus, many=True),
    Section("sensor", "sensors", _sensor, many=True),
    Section("rule", "rules", check_rule, many=True),
    Section("output", "outputs", _output, many=True),
)


