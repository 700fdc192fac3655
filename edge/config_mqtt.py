"""The ``[mqtt]`` section: the broker, the credentials and TLS files, batching and reconnect timing."""

from __future__ import annotations

import ipaddress
import os
from typing import Any

from drivers.options import Option
from edge.config_problems import show
from edge.config_tables import Context, Table, not_empty, present
from edge.i18n import _
from edge.config_model import MQTT_MAX_PACKET, MQTT_MAX_STRING, MqttConfig
from edge.config_gateway import TOPIC_PREFIX_MAX_BYTES

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


def build_mqtt(table: Table, ctx: Context) -> MqttConfig | None:
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
