"""The option tables of docs/configuration.md, one generated block per section, bus kind, driver and rule kind.

Built-in drivers and bus kinds come from :mod:`drivers.registry`, rule kinds
from :mod:`edge.rules.kinds`, so a new one has no table until its marker is
placed in the document — and the check fails until then. A rule kind's block
opens with its ``help`` as the heading line.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from drivers.modbus.registers import POINT_OPTIONS
from drivers.registry import BUS_KINDS, DRIVERS, bus_class, driver_class
from edge import config, config_rules
from edge.reference.options import options_table
from edge.rules import kinds

#: ``[section]`` tables: the spec and the dataclass that holds the defaults the spec leaves out.
SECTIONS = {
    "gateway": (config.GATEWAY_OPTIONS, config.GatewayConfig),
    "mqtt": (config.MQTT_OPTIONS, config.MqttConfig),
    "buffer": (config.BUFFER_OPTIONS, config.BufferConfig),
    "control": (config.CONTROL_OPTIONS, config.ControlConfig),
    "bus": (config.BUS_OPTIONS, None),
    "sensor": (config.SENSOR_OPTIONS, None),
    "rule": (config_rules.RULE_OPTIONS, None),
    "output": (config.OUTPUT_OPTIONS, config.OutputConfig),
}


def _bus(kind: str) -> str:
    return options_table(bus_class(kind).options)


def _driver(name: str) -> str:
    cls = driver_class(name)
    return f"Needs a bus of kind `{cls.bus_kind}`.\n\n" + options_table(cls.options)


def _rule_kind(name: str) -> str:
    declared = kinds.kind(name)
    return f'**`kind = "{name}"`** — {declared.help}\n\n' + options_table(declared.options)


def configuration_blocks() -> dict[str, Callable[[], str]]:
    """Generated blocks of docs/configuration.md, by marker name."""
    blocks: dict[str, Callable[[], str]] = {}
    for section, (spec, shape) in SECTIONS.items():
        blocks[f"section/{section}"] = partial(options_table, spec, shape)
    for kind in BUS_KINDS:
        blocks[f"bus/{kind}"] = partial(_bus, kind)
    for name in DRIVERS:
        blocks[f"driver/{name}"] = partial(_driver, name)
    blocks["driver/modbus/registers"] = partial(options_table, POINT_OPTIONS)
    for name in kinds.kind_names():
        blocks[f"rule/{name}"] = partial(_rule_kind, name)
    return blocks
