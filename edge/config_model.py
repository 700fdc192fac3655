"""What a validated configuration is: the frozen dataclasses :func:`edge.config.validate` builds.

Every module that runs the gateway reads these; none of them parses TOML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edge.rules import RuleConfig


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
