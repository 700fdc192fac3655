"""The ``linli`` command as a technician meets it: exit statuses, --json, no tracebacks, the demo."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.agent_helpers import config_text, linli


def run(*args, env=None, timeout=60):
    proc = linli(*args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out.decode(), err.decode()


def good_config(tmp_path):
    path = tmp_path / "edge.toml"
    path.write_text(config_text(port=1883, outbox=tmp_path / "o.db", serial_port="/dev/ttyUSB0"))
    return path


def test_version_and_usage_errors():
    code, out, _ = run("version")
    assert code == 0 and out.startswith("linli-edge ")
    code, _, err = run("frobnicate")
    assert code == 64 and "invalid choice" in err
    code, _, err = run()
    assert code == 64 and "config check" in err


def test_config_check_ok_as_text_and_json(tmp_path):
    path = good_config(tmp_path)
    code, out, _ = run("config", "check", str(path))
    assert code == 0 and "gw-e2e" in out and "1 sensors" in out
    code, out, _ = run("--config", str(path), "config", "check", "--json")
    assert code == 0
    assert json.loads(out) == {"ok": True, "path": str(path), "gateway": "gw-e2e", "buses": 1, "sensors": 1}
    assert not (tmp_path / "o.db").exists(), "config check opens nothing"


def test_config_check_reports_every_problem_with_exit_78(tmp_path):
    path = tmp_path / "edge.toml"
    path.write_text(good_config(tmp_path).read_text().replace('address = 1', 'address = 300')
                    .replace('baudrate', 'baud'))
    code, _, err = run("config", "check", str(path))
    assert code == 78
    assert "sensor[0].address" in err and "300" in err
    assert "Traceback" not in err


def test_config_check_speaks_chinese_under_a_chinese_locale(tmp_path):
    path = tmp_path / "edge.toml"
    path.write_text(good_config(tmp_path).read_text().replace('interval = "200ms"', 'interval = "fast"'))
    code, _, err = run("config", "check", str(path), env={"LANGUAGE": "zh_CN"})
    assert code == 78
    assert "sensor[0].interval" in err
    assert any("\u4e00" <= ch <= "\u9fff" for ch in err), err


def test_missing_config_file_is_a_clear_error(tmp_path):
    code, _, err = run("config", "check", str(tmp_path / "nope.toml"))
    assert code == 78 and "nope.toml" in err and "Traceback" not in err


def test_demo_streams_readings_to_an_existing_broker_and_stops_cleanly(broker):
    code, out, err = run("demo", "--for", "8", "--json", "--gateway-id", "gw-cli-demo",
                         "--broker", f"{broker.host}:{broker.port}", timeout=60)
    assert code == 0, err
    messages = [json.loads(line) for line in out.splitlines()]
    topics = [m["topic"].rsplit("gw-cli-demo/", 1)[1] for m in messages]
    assert topics[0] == "status" and messages[0]["payload"]["state"] == "online"
    records = [r for m in messages if m["topic"].endswith("/telemetry") for r in m["payload"]["records"]]
    devices = {"pump-pressure", "pump-flow", "flat-101-water", "flat-102-water", "flat-201-water", "flat-202-water",
               "flat-302-water", "jockey-pump", "bed-201", "riser-pressure"}
    assert {r["sensor"] for r in records if r["quality"] == "good"} >= devices
    # The radar's first read finds nothing measured yet (bad, not_reported); it is read every 5 s.
    assert {r["sensor"] for r in records} == devices | {"bed-201-radar"}
    assert messages[-1]["payload"]["state"] == "offline"
    assert "demo stopped" in err
    assert " ERROR " not in err, err     # a newcomer's first run shows no error (the demo's config is no file)


def test_demo_starts_its_own_broker():
    code, out, err = run("demo", "--for", "4", timeout=60)
    assert code == 0, err
    assert "broker: started mosquitto on 127.0.0.1:" in out
    assert "pump-pressure" in out and "offline" in out


def test_demo_with_an_unreachable_broker_exits_69(tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]          # bound, not listening: connection refused
        code, _, err = run("demo", "--for", "2", "--broker", f"127.0.0.1:{port}")
    assert code == 69 and "cannot reach the MQTT broker" in err and "Traceback" not in err


# --- --config before or after the command -------------------------------------------------------------
#: Each command that reads the configuration, with the arguments it needs besides --config.
READS_CONFIG = {"run": [], "config check": [], "replay": ["trace.csv"], "evaluate": ["trace.csv"], "status": [],
                "config apply": ["new.toml"], "explain": ["flat-302-water/routine"],
                "away": ["off"],
                "alarm ack": ["pump-pressure/low"], "doctor": [],
                "outbox stats": [], "outbox peek": [], "outbox export": [],
                "alarm list": [], "alarm test": [], "watch": [], "update": ["--requested"]}


def leaf_commands(parser, words=()):
    """``(command words, parser)`` for every command that does something (``config check``, not ``config``)."""
    import argparse

    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers:
        yield " ".join(words), parser
        return
    for name, sub in subparsers[0].choices.items():
        yield from leaf_commands(sub, (*words, name))


def test_every_command_that_reads_the_config_takes_the_option_after_it():
    import inspect

    from edge.cli import build_parser

    leaves = dict(leaf_commands(build_parser()))
    # A command reads the config when its function resolves the path, or asks the agent (whose socket it names).
    readers = {name for name, parser in leaves.items()
               if re.search(r"\b(config_path|ask_agent)\(", inspect.getsource(parser.get_default("func")))}
    takes_option = {name for name, parser in leaves.items()
                    if any("--config" in action.option_strings for action in parser._actions)}
    assert readers == takes_option == set(READS_CONFIG)


@pytest.mark.parametrize("command", READS_CONFIG)
def test_config_after_the_command_wins_over_before_which_wins_over_linli_config_and_the_default(command, monkeypatch):
    from edge.cli import build_parser, config_path
    from edge.config import DEFAULT_PATH

    words = [*command.split(), *READS_CONFIG[command]]

    def path(argv):
        return config_path(build_parser().parse_args(argv))

    monkeypatch.delenv("LINLI_CONFIG", raising=False)
    assert path(words) == DEFAULT_PATH
    monkeypatch.setenv("LINLI_CONFIG", "/env.toml")
    assert path(words) == "/env.toml"
    assert path(["--config", "/before.toml", *words]) == "/before.toml"
    assert path([*words, "--config", "/after.toml"]) == "/after.toml"
    assert path(["--config", "/before.toml", *words, "--config", "/after.toml"]) == "/after.toml"


def test_config_check_reads_the_option_after_the_command_over_the_one_before_and_the_environment(tmp_path):
    path = good_config(tmp_path)
    missing = str(tmp_path / "missing.toml")
    code, out, err = run("--config", missing, "config", "check", "--config", str(path), "--json",
                         env={"LINLI_CONFIG": missing})
    assert code == 0, err
    assert json.loads(out)["path"] == str(path)
    code, out, err = run("config", "check", "--json", env={"LINLI_CONFIG": str(path)})
    assert code == 0 and json.loads(out)["path"] == str(path), err
    code, _, err = run("config", "check", "--config", missing)
    assert code == 78 and "missing.toml" in err


def test_agent_commands_take_the_config_before_or_after_them(tmp_path, broker):
    """``linli run --config F`` runs; status, away and alarm ack find it by either position."""
    from edge.simulate.modbus_pressure import PressureTransmitterSim
    from tests.live_agent import agent_process, write_agent_config

    missing = {"LINLI_CONFIG": str(tmp_path / "missing.toml")}      # so only the option can name the config
    with PressureTransmitterSim(unit_id=1, profile=0.35) as transmitter:
        config = write_agent_config(tmp_path / "edge.toml", broker_port=broker.port, serial_port=transmitter.port,
                                    state=tmp_path)
        agent = [sys.executable, "-m", "edge.cli", "run", "--config", str(config)]
        with agent_process(agent, config, env={**os.environ, **missing}):
            code, out, err = run("status", "--config", str(config), "--json", env=missing)
            assert code == 0 and "rs485-1" in {bus["bus"] for bus in json.loads(out)["buses"]}, err
            code, out, err = run("--config", str(config), "away", "off", "--json", env=missing)
            assert code == 0 and json.loads(out)["away"] is False, err
            code, out, err = run("alarm", "ack", "pump-pressure/low", "--config", str(config), "--json", env=missing)
            assert code == 0 and json.loads(out)["alarm"] == "pump-pressure/low", err


def test_help_shows_the_config_option_on_the_commands_and_where_it_may_go():
    code, out, _ = run("--help")
    assert code == 0 and "linli run --config /etc/linli/edge.toml" in out and "before or after the command" in out
    for command in READS_CONFIG:
        code, out, _ = run(*command.split(), "--help")
        assert code == 0 and "--config FILE" in out, command
