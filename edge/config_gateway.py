"""The ``[gateway]`` section: the gateway's id, its place in the grid, its time zone.

The id and the grid path become MQTT topic levels, so they are held to what the broker's ACL and
the central side can rely on (deploy/mosquitto/acl).
"""

from __future__ import annotations

import difflib
import re
import zoneinfo

from drivers.options import Option
from edge import topics
from edge.commands import MAX_NAME as MAX_COMMAND_NAME
from edge.config_problems import show
from edge.config_tables import Context, Table, present
from edge.i18n import _
from edge.config_model import MQTT_MAX_STRING, GatewayConfig

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


def build_gateway(table: Table, ctx: Context) -> GatewayConfig | None:
    values = table.check(GATEWAY_OPTIONS, table.raw)
    return None if table.problems else GatewayConfig(**present(values))
