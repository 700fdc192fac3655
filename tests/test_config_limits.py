"""What ``config check`` accepts, the agent can run: control characters, MQTT's lengths, integers, huge numbers.

Each row here was accepted by the checker and then failed at run time — a dead uplink thread
(exit 70), a topic the broker never sees, a bus that never opens, an alarm bound printed as
300 digits — or reached the terminal raw. Messages show control characters escaped.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edge import i18n, topics
from edge.commands import MAX_NAME
from edge.config import MQTT_MAX_STRING, TOPIC_PREFIX_MAX_BYTES, load_config
from edge.errors import ConfigError
from tests.agent_helpers import ROOT, config_text, linli

GATEWAY = '[gateway]\nid = "gw-0042"\ngrid = "shimen2/xinfukangli/b07"\n'
STATE = '[buffer]\npath = "outbox.db"\n[control]\nsocket = "control.sock"\n'


@pytest.fixture(autouse=True)
def english():
    i18n.use_languages(["en"])
    yield
    i18n.use_languages(None)


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "edge.toml"
    path.write_text(text + STATE, encoding="utf-8")
    try:
        load_config(path)
    except ConfigError as exc:
        return exc.problems
    return []


CONTROL = "must not contain control characters, got"
SERIAL = '[[bus]]\nname = "rs485-1"\nkind = "serial"\nport = "{port}"\n'


@pytest.mark.parametrize("text, expected", [
    ('[gateway]\nid = "gw\\u0000"\ngrid = "b07"\n', [f'gateway.id: {CONTROL} "gw\\x00"']),
    ('[gateway]\nid = "gw-1"\ngrid = "b07\\u001b[2J"\n', [f'gateway.grid: {CONTROL} "b07\\x1b[2J"']),
    (GATEWAY + 'site = "flat 302\\u202e"\n', [f'gateway.site: {CONTROL} "flat 302\\u202e"']),
    (GATEWAY + '[mqtt]\ntopic_prefix = "linli\\u0001"\n', [f'mqtt.topic_prefix: {CONTROL} "linli\\x01"']),
    (GATEWAY + '[mqtt]\nhost = "127.0.0.1\\u0000x"\n', [f'mqtt.host: {CONTROL} "127.0.0.1\\x00x"']),
    (GATEWAY + '[mqtt]\nclient_id = "gw\\u0000"\n', [f'mqtt.client_id: {CONTROL} "gw\\x00"']),
    (GATEWAY + SERIAL.format(port="/dev/ttyUSB0\\u0000"), [f'bus[0].port: {CONTROL} "/dev/ttyUSB0\\x00"']),
    (GATEWAY + '[mqtt]\nkeepalive = "60s\\u001b"\n',
     ['mqtt.keepalive: expected a duration like "30s" or "5m", got "60s\\x1b"']),
    (GATEWAY + '"pin\\u001b[31m" = 1\n', ['gateway.pin\\x1b[31m: unknown key']),
], ids=["gateway-id-nul", "grid-esc", "site-bidi", "prefix-soh", "host-nul", "client-id-nul", "serial-port-nul",
        "duration-esc", "key-esc"])
def test_control_characters_are_refused_and_shown_escaped(tmp_path, text, expected):
    found = problems(tmp_path, text)
    assert found == expected
    assert all(ch.isprintable() for line in found for ch in line)


def test_a_chinese_site_with_a_full_width_space_is_accepted(tmp_path):
    assert problems(tmp_path, GATEWAY + 'site = "新福康里\u3000七号楼 302"\n') == []


# --- topics: at most 65,535 bytes -----------------------------------------------------------------------------------
LONGEST_GRID = "/".join(["g" * 64] * 6)
LONGEST_ID = "i" * 64


def test_the_longest_topic_prefix_accepted_leaves_every_topic_within_mqtts_limit():
    base = topics.base_topic("p" * TOPIC_PREFIX_MAX_BYTES, LONGEST_GRID, LONGEST_ID)
    longest = max(topics.command_reply(base, "n" * MAX_NAME), topics.alarm_state(base, "s" * 64 + "/" + "r" * 64),
                  key=len)
    assert len(longest.encode()) == MQTT_MAX_STRING


def test_a_topic_prefix_or_grid_level_too_long_for_a_topic_is_refused(tmp_path):
    fits = "中" * (TOPIC_PREFIX_MAX_BYTES // 3)                # counted in bytes of UTF-8, not characters
    assert problems(tmp_path, GATEWAY + f'[mqtt]\ntopic_prefix = "{fits}"\n') == []
    over = fits + "a"
    assert problems(tmp_path, GATEWAY + f'[mqtt]\ntopic_prefix = "{over}"\n') == [
        f"mqtt.topic_prefix: is {TOPIC_PREFIX_MAX_BYTES + 1} bytes; at most {TOPIC_PREFIX_MAX_BYTES} leave room in a "
        f"topic (at most 65535 bytes in MQTT) for the grid, the gateway id and the longest level after them"]
    level = "g" * 65
    assert problems(tmp_path, f'[gateway]\nid = "gw-1"\ngrid = "shimen2/{level}"\n') == [
        f'gateway.grid: expected 1 to 6 segments of 1 to 64 characters of a-z, 0-9, "_" and "-" separated by "/", '
        f'like "shimen2/xinfukangli/b07", got "shimen2/{level}"']


@pytest.mark.parametrize("key", ["client_id", "username"])
def test_an_mqtt_string_longer_than_mqtt_carries_is_refused(tmp_path, key):
    (tmp_path / "password").write_text("s3cret\n")
    needs = '\npassword_file = "password"' if key == "username" else ""
    assert problems(tmp_path, GATEWAY + f'[mqtt]\n{key} = "{"c" * MQTT_MAX_STRING}"{needs}\n') == []
    assert problems(tmp_path, GATEWAY + f'[mqtt]\n{key} = "{"c" * (MQTT_MAX_STRING + 1)}"{needs}\n') == [
        f"mqtt.{key}: is {MQTT_MAX_STRING + 1} bytes; MQTT carries at most {MQTT_MAX_STRING}"]


def test_a_host_name_the_resolver_cannot_take_is_refused(tmp_path):
    assert problems(tmp_path, GATEWAY + f'[mqtt]\nhost = "{"h" * 63}.example.org"\n') == []
    label = "h" * 64
    assert problems(tmp_path, GATEWAY + f'[mqtt]\nhost = "{label}.example.org"\n') == [
        f'mqtt.host: expected a host name whose labels (the parts between dots) have 1 to 63 characters, '
        f'got "{label}.example.org"']


# --- numbers --------------------------------------------------------------------------------------------------------
RULE = ('[[bus]]\nname = "gpio"\nkind = "gpio"\npin_factory = "mock"\n'
        '[[sensor]]\nid = "pump"\ndriver = "contact"\nbus = "gpio"\npin = 17\nquantity = "running"\n'
        '[[rule]]\nid = "starts"\nsensor = "pump"\nquantity = "running"\nkind = "count"\nwindow = "1h"\n')


def test_a_count_bound_beyond_any_count_is_refused(tmp_path):
    assert problems(tmp_path, GATEWAY + RULE + "above = 100000\n") == []
    assert problems(tmp_path, GATEWAY + RULE + "above = 1000000000000000000000000000000\n") == [
        "rule[0].above: must be at most 100000, got 1000000000000000000000000000000"]


def test_an_outbox_bound_beyond_any_disk_is_refused(tmp_path):
    config = tmp_path / "edge.toml"
    config.write_text(GATEWAY + '[buffer]\npath = "outbox.db"\nmax_mb = 1e300\n[control]\nsocket = "c.sock"\n')
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert info.value.problems == ["buffer.max_mb: must be at most 1048576, got 1e+300"]


def test_an_integer_longer_than_python_reads_is_a_config_problem_with_its_line(tmp_path):
    assert problems(tmp_path, GATEWAY + f"site = {'1' * 5000}\n") == ["line 4: a number of more than 4300 digits"]
    assert problems(tmp_path, GATEWAY + f"site = {'1_' * 4300}1\n") == ["line 4: a number of more than 4300 digits"]
    assert problems(tmp_path, GATEWAY + f'site = "{"1" * 5000}"\n') == [], "digits in a string are text"


# --- the real commands ----------------------------------------------------------------------------------------------
def test_linli_config_check_never_sends_a_control_character_to_the_terminal(tmp_path):
    config = tmp_path / "edge.toml"
    config.write_text('[gateway]\nid = "gw\\u0000\\u001b[2J"\ngrid = "b07"\n"\\u001b]0;owned\\u0007" = 1\n' + STATE)
    done = subprocess.run([sys.executable, "-m", "edge.cli", "config", "check", str(config)], cwd=ROOT,
                          capture_output=True, timeout=60)
    out, err = done.stdout, done.stderr
    assert done.returncode == 78
    assert b'gateway.id: must not contain control characters, got "gw\\x00\\x1b[2J"' in err
    assert b"\\x1b]0;owned\\x07: unknown key" in err
    assert not any(byte < 0x20 and byte != ord("\n") for byte in out + err), err


def test_linli_runs_with_the_longest_topics_the_checker_accepts(tmp_path, broker, subscriber_factory):
    """Before the bound, a prefix or grid this long ended the uplink thread (exit 70) at its first CONNECT."""
    prefix, grid, gateway = "p" * TOPIC_PREFIX_MAX_BYTES, LONGEST_GRID, LONGEST_ID
    base = topics.base_topic(prefix, grid, gateway)
    config = tmp_path / "edge.toml"
    config.write_text(config_text(port=broker.port, outbox=tmp_path / "outbox.db", serial_port="/dev/ttyNONE",
                                  mqtt_extra=f'topic_prefix = "{prefix}"')
                      .replace('id = "gw-e2e"', f'id = "{gateway}"')
                      .replace('grid = "shimen2/xinfukangli/b07"', f'grid = "{grid}"'))
    sub = subscriber_factory(broker.host, broker.port, base + "/+", base=base)
    answers = subscriber_factory(broker.host, broker.port, base + "/cmd/+/reply", base=base)
    name = "n" * MAX_NAME
    with open(tmp_path / "agent.log", "wb") as log:
        agent = linli("--config", str(config), "run", stdout=subprocess.DEVNULL, stderr=log)
    try:
        sub.wait_for(lambda m: any(x.kind == "status" and x.payload["state"] == "online" for x in m), 20,
                     "the agent online")
        operator = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="test-operator")
        operator.connect(broker.host, broker.port)
        operator.loop_start()
        request = json.dumps({"v": 1, "gateway": gateway, "id": "longest", "name": name})
        reply_topic = topics.command_reply(base, name)
        assert len(reply_topic.encode()) == MQTT_MAX_STRING
        for _attempt in range(40):   # the agent subscribes to its commands just after its birth message
            operator.publish(topics.command(base, name), request, qos=1).wait_for_publish(5)
            with contextlib.suppress(AssertionError):
                answers.wait_for(lambda m: any(x.topic == reply_topic for x in m), 0.5, "the reply")
                break
        operator.loop_stop()
        operator.disconnect()
        replies = [m.payload for m in answers.messages() if m.topic == reply_topic]
        assert replies and (replies[0]["id"], replies[0]["name"]) == ("longest", name)   # answered: no such command
        assert agent.poll() is None, "the agent runs"
    finally:
        agent.terminate()
        try:
            agent.wait(60)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()
    assert agent.returncode == 0, (tmp_path / "agent.log").read_text()
