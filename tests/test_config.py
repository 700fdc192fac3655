"""Configuration loading and validation: every problem, with its key path, in file order, all at once."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest

from drivers.registry import driver_names
from edge import i18n
from edge.config import (
    MQTT_OPTIONS,
    SECTIONS,
    BufferConfig,
    Config,
    GatewayConfig,
    MqttConfig,
    load_config,
    validate,
)
from edge.errors import ConfigError, LinliError

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = Path(__file__).resolve().parent / "data" / "configs"
# The message lists every registered driver; which ones those are is the registry's business.
KNOWN_DRIVERS = "known drivers: " + ", ".join(f'"{name}"' for name in driver_names())

GATEWAY = '[gateway]\nid = "gw-0042"\ngrid = "shimen2/xinfukangli/b07"\n'


@pytest.fixture(autouse=True)
def english():
    """Messages are asserted in English whatever the locale of the machine running the tests."""
    i18n.use_languages(["en"])
    yield
    i18n.use_languages(None)


def problems_of(tmp_path: Path, text: str) -> list[str]:
    """Write ``text`` as a config next to a few real files and folders, load it, return its problems.

    ``{dir}`` in ``text`` stands for that folder (``ca.pem``, ``cert.pem``, ``key.pem``, ``password``,
    and the folder ``certs`` exist in it).
    """
    for name in ("ca.pem", "cert.pem", "key.pem", "password"):
        (tmp_path / name).write_text("x")
    (tmp_path / "certs").mkdir(exist_ok=True)
    path = tmp_path / "edge.toml"
    path.write_text(text.replace("{dir}", str(tmp_path)), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.source == str(path)
    return info.value.problems


# --- bad configs, one or a few problems each; none of these needs a bus or driver class -----------------
CASES = [
    # top level
    ("no gateway", '[mqtt]\nhost = "broker"\n', ["gateway: is required"]),
    ("unknown section", GATEWAY + "[sensors]\n", ['sensors: unknown key; did you mean "sensor"?']),
    ("unknown top-level key", 'debug = true\n' + GATEWAY, ["debug: unknown key"]),
    ("gateway not a table", 'gateway = "gw-0042"\n',
     ['gateway: expected a table like [gateway], got "gw-0042"']),
    ("mqtt not a table", GATEWAY + "[[mqtt]]\n", ["mqtt: expected a table like [mqtt], got an array of tables"]),
    ("bus written as one table", GATEWAY + '[bus]\nname = "rs485-1"\n',
     ["bus: expected an array of tables like [[bus]], got a table"]),
    ("sensor entry not a table", "sensor = [1]\n" + GATEWAY, ["sensor[0]: expected a table, got 1"]),
    # [gateway]
    ("gateway id missing", '[gateway]\ngrid = "b07"\n', ["gateway.id: is required"]),
    ("gateway id and grid missing", "[gateway]\n", ["gateway.id: is required", "gateway.grid: is required"]),
    ("gateway id pattern", '[gateway]\nid = "GW_0042"\ngrid = "b07"\n',
     ['gateway.id: expected 1 to 64 characters of a-z, 0-9 and "-", got "GW_0042"']),
    ("gateway id too long", f'[gateway]\nid = "{"a" * 65}"\ngrid = "b07"\n',
     [f'gateway.id: expected 1 to 64 characters of a-z, 0-9 and "-", got "{"a" * 65}"']),
    ("gateway id type", '[gateway]\nid = 42\ngrid = "b07"\n', ["gateway.id: expected a string, got 42"]),
    ("gateway id is a topic word", '[gateway]\nid = "status"\ngrid = "b07"\n',
     ['gateway.id: "status" is reserved for MQTT topic levels (status, telemetry, alarm, event, health, cmd)']),
    ("grid level is a topic word", '[gateway]\nid = "gw-1"\ngrid = "shimen2/alarm"\n',
     ['gateway.grid: "alarm" is reserved for MQTT topic levels (status, telemetry, alarm, event, health, cmd)']),
    ("grid wildcard", '[gateway]\nid = "gw-1"\ngrid = "shimen2/#"\n',
     ['gateway.grid: must not contain the MQTT wildcards "+" and "#", got "shimen2/#"']),
    ("grid too deep", '[gateway]\nid = "gw-1"\ngrid = "a/b/c/d/e/f/g"\n',
     ['gateway.grid: expected 1 to 6 segments of 1 to 64 characters of a-z, 0-9, "_" and "-" separated by "/", '
      'like "shimen2/xinfukangli/b07", got "a/b/c/d/e/f/g"']),
    ("grid empty segment", '[gateway]\nid = "gw-1"\ngrid = "shimen2//b07"\n',
     ['gateway.grid: expected 1 to 6 segments of 1 to 64 characters of a-z, 0-9, "_" and "-" separated by "/", '
      'like "shimen2/xinfukangli/b07", got "shimen2//b07"']),
    ("grid upper case", '[gateway]\nid = "gw-1"\ngrid = "Shimen2"\n',
     ['gateway.grid: expected 1 to 6 segments of 1 to 64 characters of a-z, 0-9, "_" and "-" separated by "/", '
      'like "shimen2/xinfukangli/b07", got "Shimen2"']),
    ("timezone typo", GATEWAY + 'timezone = "Asia/Shangai"\n',
     ['gateway.timezone: unknown time zone "Asia/Shangai"; did you mean "Asia/Shanghai"?']),
    ("timezone city only", GATEWAY + 'timezone = "Shanghai"\n',
     ['gateway.timezone: unknown time zone "Shanghai"; did you mean "Asia/Shanghai"?']),
    ("timezone offset is not a zone", GATEWAY + 'timezone = "UTC+8"\n',
     ['gateway.timezone: unknown time zone "UTC+8"; expected an IANA name like "Asia/Shanghai"']),
    ("gateway unknown key", GATEWAY + 'sitee = "Building 7"\n', ['gateway.sitee: unknown key; did you mean "site"?']),
    # [mqtt]
    ("mqtt unknown key", GATEWAY + '[mqtt]\nhost = "broker"\nhots = "broker"\n', ["mqtt.hots: unknown key"]),
    ("mqtt unknown key suggestion", GATEWAY + '[mqtt]\nhots = "broker"\n',
     ['mqtt.hots: unknown key; did you mean "host"?']),
    ("mqtt host url", GATEWAY + '[mqtt]\nhost = "mqtt://broker:1883"\n',
     ['mqtt.host: expected a host name or IP address like "mqtt.example.org", without scheme or port, '
      'got "mqtt://broker:1883"']),
    ("mqtt port low", GATEWAY + "[mqtt]\nport = 0\n", ["mqtt.port: must be at least 1, got 0"]),
    ("mqtt port high", GATEWAY + "[mqtt]\nport = 70000\n", ["mqtt.port: must be at most 65535, got 70000"]),
    ("mqtt port as text", GATEWAY + '[mqtt]\nport = "8883"\n', ['mqtt.port: expected an integer, got "8883"']),
    ("mqtt protocol", GATEWAY + '[mqtt]\nprotocol = "4"\n', ['mqtt.protocol: expected one of "3.1.1", "5", got "4"']),
    ("mqtt keepalive not a duration", GATEWAY + '[mqtt]\nkeepalive = "fast"\n',
     ['mqtt.keepalive: expected a duration like "30s" or "5m", got "fast"']),
    ("mqtt keepalive number", GATEWAY + "[mqtt]\nkeepalive = 60\n",
     ['mqtt.keepalive: expected a duration like "30s" or "5m", got 60']),
    ("mqtt keepalive short", GATEWAY + '[mqtt]\nkeepalive = "2s"\n', ['mqtt.keepalive: must be at least 5s, got "2s"']),
    ("mqtt keepalive fraction", GATEWAY + '[mqtt]\nkeepalive = "7.5s"\n',
     ["mqtt.keepalive: must be a whole number of seconds, got 7.5s"]),
    ("mqtt tls not bool", GATEWAY + '[mqtt]\ntls = "yes"\nca_file = "ca.pem"\n',
     ['mqtt.tls: expected true or false, got "yes"']),
    ("topic prefix wildcard", GATEWAY + '[mqtt]\ntopic_prefix = "linli/+"\n',
     ['mqtt.topic_prefix: must not contain the MQTT wildcards "+" and "#", got "linli/+"']),
    ("topic prefix slash", GATEWAY + '[mqtt]\ntopic_prefix = "/linli"\n',
     ['mqtt.topic_prefix: must not start or end with "/", got "/linli"']),
    ("topic prefix empty level", GATEWAY + '[mqtt]\ntopic_prefix = "linli//sh"\n',
     ['mqtt.topic_prefix: must not contain an empty topic level ("//"), got "linli//sh"']),
    ("topic prefix dollar", GATEWAY + '[mqtt]\ntopic_prefix = "$SYS"\n',
     ['mqtt.topic_prefix: must not start with "$" (such topics belong to the broker), got "$SYS"']),
    ("topic prefix empty", GATEWAY + '[mqtt]\ntopic_prefix = ""\n', ["mqtt.topic_prefix: must not be empty"]),
    ("client id blank", GATEWAY + '[mqtt]\nclient_id = " "\n', ["mqtt.client_id: must not be empty"]),
    ("ca file without tls", GATEWAY + '[mqtt]\nca_file = "ca.pem"\n',
     ["mqtt.ca_file: is only used with TLS; set mqtt.tls = true or remove this key"]),
    ("ca file missing", GATEWAY + '[mqtt]\ntls = true\nca_file = "{dir}/nope/ca.pem"\n',
     ['mqtt.ca_file: no such file "{dir}/nope/ca.pem"']),
    ("ca file relative and missing", GATEWAY + '[mqtt]\ntls = true\nca_file = "ca.crt"\n',
     ['mqtt.ca_file: no such file "{dir}/ca.crt"']),
    ("ca file is a folder", GATEWAY + '[mqtt]\ntls = true\nca_file = "certs"\n',
     ['mqtt.ca_file: expected a file, "{dir}/certs" is a directory']),
    ("cert without key", GATEWAY + '[mqtt]\ntls = true\ncert_file = "cert.pem"\n',
     ["mqtt.cert_file: needs mqtt.key_file too"]),
    ("key without cert", GATEWAY + '[mqtt]\ntls = true\nkey_file = "key.pem"\n',
     ["mqtt.key_file: needs mqtt.cert_file too"]),
    ("password file without username", GATEWAY + '[mqtt]\npassword_file = "password"\n',
     ["mqtt.password_file: needs mqtt.username too"]),
    ("password file missing", GATEWAY + '[mqtt]\nusername = "gw-0042"\npassword_file = "/nonexistent/pw"\n',
     ['mqtt.password_file: no such file "/nonexistent/pw"']),
    ("mqtt counts out of range", GATEWAY + "[mqtt]\ninflight = 0\nbatch_max_records = 20000\nbatch_max_bytes = 100\n",
     ["mqtt.inflight: must be at least 1, got 0", "mqtt.batch_max_records: must be at most 10000, got 20000",
      "mqtt.batch_max_bytes: must be at least 1024, got 100"]),
    ("mqtt batch bytes above the MQTT packet limit", GATEWAY + "[mqtt]\nbatch_max_bytes = 268435456\n",
     ["mqtt.batch_max_bytes: must be at most 268435455, got 268435456"]),
    ("reconnect min above max", GATEWAY + '[mqtt]\nreconnect_min = "2m"\nreconnect_max = "30s"\n',
     ['mqtt.reconnect_max: must not be shorter than mqtt.reconnect_min ("2m"), got "30s"']),
    ("reconnect min above default max", GATEWAY + '[mqtt]\nreconnect_min = "5m"\n',
     ['mqtt.reconnect_min: must not be longer than mqtt.reconnect_max ("60s"), got "5m"']),
    ("health interval short", GATEWAY + '[mqtt]\nhealth_interval = "500ms"\n',
     ['mqtt.health_interval: must be at least 1s, got "500ms"']),
    # [buffer]
    ("buffer size zero", GATEWAY + "[buffer]\nmax_mb = 0\n", ["buffer.max_mb: must be at least 1, got 0"]),
    ("buffer size nan", GATEWAY + "[buffer]\nmax_mb = nan\n", ["buffer.max_mb: expected a finite number, got nan"]),
    ("buffer size inf", GATEWAY + "[buffer]\nmax_mb = +inf\n", ["buffer.max_mb: expected a finite number, got inf"]),
    ("buffer size beyond a float", GATEWAY + f"[buffer]\nmax_mb = {10**400}\n",
     [f"buffer.max_mb: expected a finite number, got {10**400}"]),
    ("buffer commit interval infinite", GATEWAY + f'[buffer]\ncommit_interval = "{10**400}s"\n',
     [f'buffer.commit_interval: expected a duration like "30s" or "5m", got "{10**400}s"']),
    ("buffer commit interval long", GATEWAY + '[buffer]\ncommit_interval = "11m"\n',
     ['buffer.commit_interval: must be at most 600s, got "11m"']),
    ("buffer commit interval short", GATEWAY + '[buffer]\ncommit_interval = "5ms"\n',
     ['buffer.commit_interval: must be at least 0.01s, got "5ms"']),
    ("buffer records not a number", GATEWAY + '[buffer]\ncommit_max_records = "many"\n',
     ['buffer.commit_max_records: expected an integer, got "many"']),
    ("buffer path is a folder", GATEWAY + '[buffer]\npath = "{dir}"\n',
     ['buffer.path: "{dir}" is a directory, not an outbox: the agent leaves it alone and cannot start on it; '
      'correct the path or move that file away']),
    ("buffer path empty", GATEWAY + '[buffer]\npath = ""\n', ["buffer.path: must not be empty"]),
    ("buffer unknown key", GATEWAY + "[buffer]\nmax_mib = 64\n",
     ['buffer.max_mib: unknown key; did you mean "max_mb"?']),
    # [[bus]] (kinds that do not exist, so no bus class is involved)
    ("bus kind typo", GATEWAY + '[[bus]]\nname = "rs485-1"\nkind = "seral"\n',
     ['bus[0].kind: unknown bus kind "seral"; did you mean "serial"?']),
    ("bus kind unknown", GATEWAY + '[[bus]]\nname = "usb-1"\nkind = "usb"\n',
     ['bus[0].kind: unknown bus kind "usb"; expected one of "gpio", "i2c", "serial"']),
    ("bus name and kind missing", GATEWAY + '[[bus]]\nport = "/dev/ttyUSB0"\n',
     ["bus[0].name: is required", "bus[0].kind: is required"]),
    ("bus name pattern", GATEWAY + '[[bus]]\nname = "RS 485"\nkind = "usb"\n',
     ['bus[0].name: expected 1 to 64 characters of a-z, 0-9, "_" and "-", starting with a letter or digit, '
      'got "RS 485"', 'bus[0].kind: unknown bus kind "usb"; expected one of "gpio", "i2c", "serial"']),
    # [[sensor]] (drivers that do not exist, so no driver class is involved)
    ("sensor driver typo", GATEWAY + '[[sensor]]\nid = "pressure"\ndriver = "modbus_presure"\nbus = "x"\n',
     ['sensor[0].driver: unknown driver "modbus_presure"; did you mean "modbus_pressure"?',
      'sensor[0].bus: no [[bus]] named "x"']),
    ("sensor driver unknown", GATEWAY + '[[sensor]]\nid = "bed"\ndriver = "bed_sensor"\nbus = "x"\n',
     ['sensor[0].driver: unknown driver \"bed_sensor\"; ' + KNOWN_DRIVERS,
      'sensor[0].bus: no [[bus]] named "x"']),
    ("sensor keys missing", GATEWAY + "[[sensor]]\n",
     ["sensor[0].id: is required", "sensor[0].driver: is required", "sensor[0].bus: is required"]),
    ("sensor id pattern", GATEWAY + '[[sensor]]\nid = "-pressure"\ndriver = "x"\nbus = "y"\n',
     ['sensor[0].id: expected 1 to 64 characters of a-z, 0-9, "_" and "-", starting with a letter or digit, '
      'got "-pressure"',
      'sensor[0].driver: unknown driver \"x\"; ' + KNOWN_DRIVERS,
      'sensor[0].bus: no [[bus]] named "y"']),
    ("sensor bus typo", GATEWAY + '[[bus]]\nname = "rs485-1"\nkind = "usb"\n'
     '[[sensor]]\nid = "p"\ndriver = "x"\nbus = "rs458-1"\n',
     ['bus[0].kind: unknown bus kind "usb"; expected one of "gpio", "i2c", "serial"',
      'sensor[0].driver: unknown driver \"x\"; ' + KNOWN_DRIVERS,
      'sensor[0].bus: no [[bus]] named "rs458-1"; did you mean "rs485-1"?']),
]


@pytest.mark.parametrize("text, expected", [pytest.param(t, e, id=i) for i, t, e in CASES])
def test_bad_config_reports_exact_problems(tmp_path, text, expected):
    assert problems_of(tmp_path, text) == [p.replace("{dir}", str(tmp_path)) for p in expected]


def test_enough_cases_cover_every_section():
    assert len(CASES) >= 30
    for section in ("gateway", "mqtt", "buffer", "bus", "sensor"):
        assert any(p.startswith(section) for _i, _t, expected in CASES for p in expected), section


# --- good configs ----------------------------------------------------------------------------------------
def test_minimal_config_takes_every_default():
    config = load_config(CONFIGS / "minimal.toml")
    assert config == Config(gateway=GatewayConfig(id="gw-0042", grid="shimen2/xinfukangli/b07"),
                            source=str(CONFIGS / "minimal.toml"))
    assert config.mqtt == MqttConfig() and config.buffer == BufferConfig()
    assert config.gateway.timezone == "Asia/Shanghai"
    assert config.base_topic == "linli/shimen2/xinfukangli/b07/gw-0042"


def test_values_are_converted_and_relative_paths_follow_the_config_file(tmp_path):
    (tmp_path / "tls").mkdir()
    for name in ("ca.pem", "gw.crt", "gw.key", "password"):
        (tmp_path / "tls" / name).write_text("x")
    path = tmp_path / "edge.toml"
    path.write_text(GATEWAY + 'site = "Xinfukang Li, building 7"\ntimezone = "UTC"\n'
                    '[mqtt]\nhost = "::1"\nport = 8883\nprotocol = "5"\nkeepalive = "1m"\ntls = true\n'
                    'ca_file = "tls/ca.pem"\ncert_file = "tls/gw.crt"\nkey_file = "tls/gw.key"\n'
                    'username = "gw-0042"\npassword_file = "tls/password"\nreconnect_min = "500ms"\n'
                    'reconnect_max = "2m"\nhealth_interval = "5m"\nbatch_max_bytes = 1048576\n'
                    '[buffer]\npath = "state/outbox.db"\nmax_mb = 8.5\ncommit_interval = "250ms"\n')
    config = load_config(path)
    tls = tmp_path / "tls"
    assert config.gateway == GatewayConfig(id="gw-0042", grid="shimen2/xinfukangli/b07",
                                           site="Xinfukang Li, building 7", timezone="UTC")
    assert config.mqtt == MqttConfig(host="::1", port=8883, protocol="5", keepalive=60.0, tls=True,
                                     ca_file=str(tls / "ca.pem"), cert_file=str(tls / "gw.crt"),
                                     key_file=str(tls / "gw.key"), username="gw-0042",
                                     password_file=str(tls / "password"), reconnect_min=0.5,
                                     reconnect_max=120.0, health_interval=300.0, batch_max_bytes=1048576)
    assert config.buffer == BufferConfig(path=str(tmp_path / "state" / "outbox.db"), max_mb=8.5,
                                         commit_interval=0.25)


def test_tls_without_ca_file_uses_the_system_store(tmp_path):
    config = validate({"gateway": {"id": "gw-1", "grid": "b07"}, "mqtt": {"tls": True, "port": 8883}})
    assert config.mqtt.tls and config.mqtt.ca_file is None


def test_validate_without_source_resolves_against_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = validate({"gateway": {"id": "gw-1", "grid": "b07"}, "buffer": {"path": "outbox.db"}})
    assert config.buffer.path == str(tmp_path / "outbox.db")
    assert config.source is None


@pytest.mark.parametrize("raw, shown", [([1, 2], "an array"), ("gw-1", '"gw-1"'), (None, "None")])
def test_a_document_that_is_not_a_table(raw, shown):
    with pytest.raises(ConfigError) as info:
        validate(raw)  # type: ignore[arg-type]
    assert info.value.problems == [f"expected a table of sections like [gateway], got {shown}"]


def test_config_is_frozen():
    config = validate({"gateway": {"id": "gw-1", "grid": "b07"}})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.gateway.id = "gw-2"  # type: ignore[misc]


def test_every_mqtt_field_is_a_key_and_every_key_a_field():
    assert list(MQTT_OPTIONS) == [f.name for f in dataclasses.fields(MqttConfig)]


def test_every_section_builds_a_config_attribute():
    names = {f.name for f in dataclasses.fields(Config)}
    assert {section.attribute for section in SECTIONS} <= names


# --- several problems, order, the error itself ------------------------------------------------------------
def test_several_problems_come_back_at_once_in_file_order():
    with pytest.raises(ConfigError) as info:
        load_config(CONFIGS / "many_problems.toml")
    assert info.value.problems == [
        'sensor[0].id: expected 1 to 64 characters of a-z, 0-9, "_" and "-", starting with a letter or digit, '
        'got "Pump Pressure"',
        'sensor[0].driver: unknown driver "modbus_presure"; did you mean "modbus_pressure"?',
        'sensor[0].bus: no [[bus]] named "rs485-1"',
        'mqtt.hots: unknown key; did you mean "host"?',
        "mqtt.port: must be at least 1, got 0",
        'gateway.grid: must not contain the MQTT wildcards "+" and "#", got "shimen2/+/b07"',
    ]


def test_config_error_text_and_exit_status():
    with pytest.raises(ConfigError) as info:
        load_config(CONFIGS / "many_problems.toml")
    error = info.value
    assert isinstance(error, LinliError) and error.exit_code == 78
    lines = str(error).splitlines()
    assert lines[0] == f"{CONFIGS / 'many_problems.toml'} has 6 problems:"
    assert lines[1:] == ["  " + p for p in error.problems]


def test_single_problem_uses_the_singular():
    error = ConfigError(["gateway: is required"])
    assert str(error) == "the configuration has 1 problem:\n  gateway: is required"


# --- the file itself -------------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [f'no such file "{path}"']


def test_folder_instead_of_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert info.value.problems == [f'expected a file, "{tmp_path}" is a directory']


def test_relative_path_is_reported_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config("edge.toml")
    assert info.value.source == str(tmp_path / "edge.toml")


def test_syntax_error_names_line_and_column():
    with pytest.raises(ConfigError) as info:
        load_config(CONFIGS / "syntax_error.toml")
    [problem] = info.value.problems
    assert re.fullmatch(r"not valid TOML: .+ \(at line 3, column 8\)", problem), problem


def test_bytes_that_are_not_utf8(tmp_path):
    path = tmp_path / "edge.toml"
    path.write_bytes(GATEWAY.encode() + b'site = "\xb9\xa4\xd4\xba"\n')  # GBK, as an old Windows editor saves
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [f"not UTF-8 text: the byte at offset {len(GATEWAY) + 8} is invalid"]


def test_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "edge.toml"
    path.write_bytes(b"\xef\xbb\xbf" + GATEWAY.encode())
    assert load_config(path).gateway.id == "gw-0042"


def test_example_in_the_docstring_and_the_default_path():
    import doctest

    import edge.config
    import edge.errors

    for module in (edge.config, edge.errors):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
    assert edge.config.DEFAULT_PATH == "/etc/linli/edge.toml"
    assert os.path.isabs(edge.config.DEFAULT_PATH)


# --- buses and drivers: their own options come from their classes -------------------------------------
SERIAL = '[[bus]]\nname = "rs485-1"\nkind = "serial"\nport = "/dev/ttyUSB0"\n'
GPIO = '[[bus]]\nname = "gpio"\nkind = "gpio"\n'
METER = '[[sensor]]\nid = "water"\ndriver = "pulse_meter"\nbus = "gpio"\npin = 17\nlitres_per_pulse = 10.0\n'
PRESSURE = '[[sensor]]\nid = "pump-pressure"\ndriver = "modbus_pressure"\nbus = "rs485-1"\naddress = 1\n'

DRIVER_CASES = [
    ("serial port missing", GATEWAY + '[[bus]]\nname = "rs485-1"\nkind = "serial"\n', ["bus[0].port: is required"]),
    ("serial port empty", GATEWAY + '[[bus]]\nname = "rs485-1"\nkind = "serial"\nport = ""\n',
     ["bus[0].port: must not be empty"]),
    ("serial parity", GATEWAY + SERIAL + 'parity = "X"\n',
     ['bus[0].parity: expected one of "N", "E", "O", got "X"']),
    ("serial baud rate", GATEWAY + SERIAL + "baudrate = 9601\n",
     ["bus[0].baudrate: expected one of 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, got 9601"]),
    ("serial timeout", GATEWAY + SERIAL + 'timeout = "2m"\n', ['bus[0].timeout: must be at most 60s, got "2m"']),
    ("bus unknown key", GATEWAY + SERIAL + "baud = 9600\n", ['bus[0].baud: unknown key; did you mean "baudrate"?']),
    ("gpio pin factory", GATEWAY + GPIO + 'pin_factory = "wiringpi"\n',
     ['bus[0].pin_factory: expected one of "lgpio", "rpigpio", "pigpio", "native", "mock", got "wiringpi"']),
    ("i2c device", GATEWAY + '[[bus]]\nname = "i2c-1"\nkind = "i2c"\ndevice = -1\n',
     ["bus[0].device: must be at least 0, got -1"]),
    ("duplicate bus name", GATEWAY + SERIAL + SERIAL, ['bus[1].name: "rs485-1" is already used by bus[0]']),
    ("bus kind mismatch", GATEWAY + GPIO + PRESSURE.replace('"rs485-1"', '"gpio"'),
     ['sensor[0].bus: driver "modbus_pressure" needs a serial bus, "gpio" is gpio']),
    ("modbus address low", GATEWAY + SERIAL + PRESSURE.replace("address = 1", "address = 0"),
     ["sensor[0].address: must be at least 1, got 0"]),
    ("modbus address missing", GATEWAY + SERIAL + PRESSURE.replace("address = 1\n", ""),
     ["sensor[0].address: is required"]),
    ("driver unknown key", GATEWAY + SERIAL + PRESSURE.replace("address = 1", "adress = 1"),
     ["sensor[0].address: is required", 'sensor[0].adress: unknown key; did you mean "address"?']),
    ("driver keys judged together", GATEWAY + SERIAL + PRESSURE + "decimals = 2\ndecimals_register = 3\n",
     ['sensor[0].decimals: conflicts with "decimals_register": give a fixed value or a register, not both']),
    ("sensor interval short", GATEWAY + SERIAL + PRESSURE + 'interval = "50ms"\n',
     ['sensor[0].interval: must be at least 0.1s, got "50ms"']),
    ("sensor interval long", GATEWAY + SERIAL + PRESSURE + 'interval = "2d"\n',
     ['sensor[0].interval: must be at most 86400s, got "2d"']),
    ("duplicate sensor id", GATEWAY + SERIAL + PRESSURE + PRESSURE,
     ['sensor[1].id: "pump-pressure" is already used by sensor[0]']),
    ("pulse meter on a serial bus", GATEWAY + SERIAL + METER.replace('"gpio"', '"rs485-1"'),
     ['sensor[0].bus: driver "pulse_meter" needs a gpio bus, "rs485-1" is serial']),
    ("pulse meter pin", GATEWAY + GPIO + METER.replace("pin = 17", "pin = 28"),
     ["sensor[0].pin: must be at most 27, got 28"]),
    ("pulse meter keys missing", GATEWAY + GPIO + '[[sensor]]\nid = "water"\ndriver = "pulse_meter"\nbus = "gpio"\n',
     ["sensor[0].pin: is required", "sensor[0].litres_per_pulse: is required"]),
    ("pulse meter litres", GATEWAY + GPIO + METER.replace("litres_per_pulse = 10.0", "litres_per_pulse = 0"),
     ["sensor[0].litres_per_pulse: must be greater than 0, got 0"]),
    ("pulse meter pull", GATEWAY + GPIO + METER + 'pull = "high"\n',
     ['sensor[0].pull: expected one of "up", "down", got "high"']),
    ("pulse meter debounce", GATEWAY + GPIO + METER + 'debounce = "2s"\n',
     ['sensor[0].debounce: must be at most 1s, got "2s"']),
    ("sensor on a bus of unknown kind is not judged by kind",
     GATEWAY + '[[bus]]\nname = "rs485-1"\nkind = "rs485"\n' + PRESSURE,
     ['bus[0].kind: unknown bus kind "rs485"; expected one of "gpio", "i2c", "serial"']),
]


@pytest.mark.parametrize("text, expected", [pytest.param(t, e, id=i) for i, t, e in DRIVER_CASES])
def test_bus_and_driver_options_report_exact_problems(tmp_path, text, expected):
    assert problems_of(tmp_path, text) == expected


def test_buses_and_sensors_carry_their_validated_options(tmp_path):
    path = tmp_path / "edge.toml"
    path.write_text(GATEWAY + SERIAL + 'parity = "E"\ntimeout = "300ms"\n' + GPIO + PRESSURE
                    + 'interval = "2s"\nunit = "MPa"\n')
    config = load_config(path)
    serial, gpio = config.buses
    assert (serial.name, serial.kind) == ("rs485-1", "serial")
    assert serial.options == {"port": "/dev/ttyUSB0", "baudrate": 9600, "parity": "E", "bytesize": 8,
                              "stopbits": 1, "timeout": 0.3}
    assert (gpio.name, gpio.kind, gpio.options) == ("gpio", "gpio", {"pin_factory": None})
    [sensor] = config.sensors
    assert (sensor.id, sensor.driver, sensor.bus, sensor.interval) == ("pump-pressure", "modbus_pressure",
                                                                      "rs485-1", 2.0)
    assert sensor.options["address"] == 1 and sensor.options["unit"] == "MPa"
    assert sensor.options["function"] == 3  # the driver's default
    assert "id" not in sensor.options and "interval" not in sensor.options


def test_sensor_interval_defaults_to_ten_seconds(tmp_path):
    path = tmp_path / "edge.toml"
    path.write_text(GATEWAY + SERIAL + PRESSURE)
    assert load_config(path).sensors[0].interval == 10.0


def test_validation_opens_no_port(tmp_path):
    """A serial port that does not exist (yet: the adapter is unplugged) is no configuration problem."""
    path = tmp_path / "edge.toml"
    missing_port = tmp_path / "ttyUSB9"
    path.write_text(GATEWAY + SERIAL.replace("/dev/ttyUSB0", str(missing_port)) + PRESSURE)
    assert load_config(path).buses[0].options["port"] == str(missing_port)
    assert not missing_port.exists()


def test_example_config_loads(tmp_path):
    """deploy/edge.toml.example, with its /etc/linli files made real in a temporary folder."""
    text = (ROOT / "deploy" / "edge.toml.example").read_text(encoding="utf-8")
    named = sorted(set(re.findall(r'"/etc/linli/([^"]+)"', text)))
    assert named, "the example names its TLS files"
    for name in named:
        (tmp_path / name).write_text("x")
    path = tmp_path / "edge.toml"
    path.write_text(text.replace("/etc/linli/", f"{tmp_path}/"), encoding="utf-8")
    config = load_config(path)
    assert config.mqtt.tls and config.mqtt.ca_file == str(tmp_path / "ca.pem")
    assert {s.driver for s in config.sensors} == {"modbus_pressure", "pulse_meter", "mbus_meter", "cjt188_meter"}
    assert {r.sensor for r in config.rules} >= {"flat-0701-water", "flat-0802-water"}
    assert {b.kind for b in config.buses} == {"serial", "gpio"}


def test_a_registered_driver_or_bus_that_cannot_be_imported(tmp_path, monkeypatch):
    """A broken install or plugin is a problem on the key that names it, not a traceback."""
    from drivers import registry

    monkeypatch.setitem(registry.DRIVERS, "bed_radar", "drivers.no_such_module:BedRadar")
    monkeypatch.setitem(registry.BUS_KINDS, "can", "drivers.transports.no_such_module:CanBus")
    text = (GATEWAY + '[[bus]]\nname = "can0"\nkind = "can"\n'
            '[[sensor]]\nid = "bed-1"\ndriver = "bed_radar"\nbus = "can0"\n')
    assert problems_of(tmp_path, text) == [
        "bus[0].kind: the \"can\" bus cannot be loaded: No module named 'drivers.transports.no_such_module'",
        "sensor[0].driver: driver \"bed_radar\" cannot be loaded: No module named 'drivers.no_such_module'",
    ]
