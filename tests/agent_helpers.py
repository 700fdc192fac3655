"""Building a whole gateway for the end-to-end tests: a config file, a simulated transmitter, the agent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

GATEWAY = "gw-e2e"
GRID = "shimen2/xinfukangli/b07"
BASE = f"linli/{GRID}/{GATEWAY}"
ROOT = Path(__file__).resolve().parent.parent


def low_pressure_rule(**extra: str) -> str:
    """The pump room's rule most agent tests use: ``pump-pressure/low`` below 0.10 MPa, plus ``extra`` keys.

    ``extra`` values are TOML as written: ``low_pressure_rule(clear_above="0.12", severity='"critical"')``.
    """
    keys = {"id": '"low"', "sensor": '"pump-pressure"', "quantity": '"pressure"', "kind": '"threshold"',
            "below": "0.10", **extra}
    return "\n[[rule]]\n" + "".join(f"{key} = {value}\n" for key, value in keys.items())


def config_text(*, port: int, outbox: Path, serial_port: str, interval: str = "200ms",
                extra_sensors: str = "", mqtt_extra: str = "", gpio: bool = False) -> str:
    """A complete gateway config in TOML, as a technician would write it."""
    text = f"""
[gateway]
id = "{GATEWAY}"
grid = "{GRID}"
site = "test bench"

[mqtt]
host = "127.0.0.1"
port = {port}
reconnect_min = "100ms"
reconnect_max = "500ms"
keepalive = "5s"
{mqtt_extra}

[buffer]
path = "{outbox}"
commit_interval = "100ms"

[control]
socket = "{outbox.parent / 'control.sock'}"

[[bus]]
name = "rs485-1"
kind = "serial"
port = "{serial_port}"
timeout = "300ms"

[[sensor]]
id = "pump-pressure"
driver = "modbus_pressure"
bus = "rs485-1"
address = 1
interval = "{interval}"
{extra_sensors}
"""
    if gpio:
        text += """
[[bus]]
name = "gpio"
kind = "gpio"
pin_factory = "mock"

[[sensor]]
id = "flat-302-water"
driver = "pulse_meter"
bus = "gpio"
pin = 17
litres_per_pulse = 1.0
interval = "200ms"
"""
    return text


def linli(*args: str, env: dict | None = None, **popen) -> subprocess.Popen:
    """Start ``linli ARGS`` as a real process (the console script's module)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "edge.cli", *args], cwd=ROOT, env=full_env, **popen)


#: A second transmitter on the pump room's line, as a reload or a pushed config adds it.
SECOND_SENSOR = """
[[sensor]]
id = "pump-pressure-2"
driver = "modbus_pressure"
bus = "rs485-1"
address = 1
interval = "300ms"
"""
