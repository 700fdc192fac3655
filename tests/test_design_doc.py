"""docs/design.md against the running code: the topic table against a live uplink, the command table against
the agent's handlers, the JSON examples against the schemas, and every reference to a section of it."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import paho.mqtt.publish as publish
import pytest
from jsonschema import Draft202012Validator

from buffer.outbox import Priority
from edge import schemas, topics
from edge.agent import Agent
from edge.clock import Clock
from edge.commands import Commands
from edge.config import Config, GatewayConfig
from edge.events import event_record
from edge.health import gather
from tests.mqtt_helpers import BOOT, GATEWAY, alarm, reading, uplink_config

ROOT = Path(__file__).resolve().parent.parent
DESIGN = (ROOT / "docs/design.md").read_text(encoding="utf-8")


def example_topic(pattern: str) -> str:
    """A topic of the pattern under the base: each ``<level>`` filled in."""
    return re.sub(r"<[^>]+>", lambda m: {"<sensor>": "pump-pressure", "<rule>": "low"}.get(m[0], "ping"), pattern)


def test_catalogue_names_every_schema_once_and_kind_of_agrees():
    kinds = [use.kind for use in topics.CATALOGUE]
    assert sorted(kinds) == sorted(schemas.NAMES)
    base = "linli/g/gw-1"
    for use in topics.CATALOGUE:
        assert topics.kind_of(base, f"{base}/{example_topic(use.pattern)}") == use.kind, use.pattern


def test_the_topic_table_is_what_a_running_uplink_does(broker, writer, start_uplink, subscriber_factory):
    """QoS and retain flag of every topic as published by the real uplink, and the command subscription."""
    config = uplink_config(broker.host, broker.port, health_interval=0.2)
    base = config.base_topic
    live = subscriber_factory(broker.host, broker.port, base=base)
    event = event_record("away", "doc-0", "local", "applied", {"ok": True, "result": {"away": False}}, 1764201600000)
    writer.add([(reading(0), Priority.TELEMETRY), (alarm("pump-pressure", "low"), Priority.ALARM),
                (event, Priority.STATUS)])
    clock = Clock(boot_id=BOOT)
    start_uplink(config, writer, commands=Commands(GATEWAY, {"ping": lambda _args: {"pong": True}}),
                 health=lambda: gather({}, clock, 0.0, {}))
    live.wait_for(lambda ms: {"status", "telemetry", "alarm", "alarm_state", "event", "health"} <= {m.kind for m in ms},
                  what="a message on every topic the gateway publishes by itself")
    request = {"v": 1, "gateway": GATEWAY, "id": "doc-1", "name": "ping"}
    publish.single(f"{base}/cmd/ping", json.dumps(request), qos=1, hostname=broker.host, port=broker.port)
    messages = live.wait_for(lambda ms: any(m.kind == "command_reply" for m in ms), what="the reply to ping")
    assert [m.payload["result"] for m in messages if m.kind == "command_reply"] == [{"pong": True}]

    # The live subscription asked for QoS 1, so each message arrives with the QoS it was published with.
    for use in topics.CATALOGUE:
        seen = {m.qos for m in messages if m.kind == use.kind}
        if use.direction == "publishes":
            assert use.qos <= 1 and seen == {use.qos}, f"{use.pattern}: the table says QoS {use.qos}, sent {seen}"

    # A subscriber that comes later gets exactly the retained topics as retained messages (health keeps
    # coming live meanwhile, without the flag).
    late = subscriber_factory(broker.host, broker.port, base=base)
    retained = {use.kind for use in topics.CATALOGUE if use.retained}
    kept = late.wait_for(lambda ms: retained <= {m.kind for m in ms if m.retain}, what="the retained messages")
    assert {m.kind for m in kept if m.retain} == retained


def table_rows(heading: str) -> list[list[str]]:
    """Cells of the first table after ``heading`` in docs/design.md."""
    section = DESIGN.split(heading, 1)[1]
    rows = []
    for line in section.splitlines():
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
        elif rows:
            break
    return rows[2:]


def test_the_command_table_names_the_agents_commands():
    agent = Agent(Config(GatewayConfig(id=GATEWAY, grid="g")), clock=Clock(boot_id=BOOT))
    documented = [row[0].strip("`") for row in table_rows("## Commands and the control socket")]
    assert sorted(documented) == sorted(agent.command_handlers())


EXAMPLES = re.findall(r"```json (\w+)\n(.*?)```", DESIGN, re.S)


def test_the_page_has_examples():
    assert {kind for kind, _text in EXAMPLES} >= {"telemetry", "alarm", "command", "command_reply"}


@pytest.mark.parametrize("kind, text", EXAMPLES, ids=[kind for kind, _ in EXAMPLES])
def test_json_examples_match_their_schema(kind, text):
    errors = [e.message for e in Draft202012Validator(schemas.load(kind)).iter_errors(json.loads(text))]
    assert errors == []


def headings(text: str) -> set[str]:
    return {line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")}


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def tracked_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [ROOT / name for name in listed.decode().split("\0") if name and (ROOT / name).is_file()]


def test_every_reference_to_a_section_of_the_design_names_one():
    """``docs/design.md, Threads`` in a docstring, ``design.md#threads`` in a link: the section must exist."""
    sections = headings(DESIGN)
    anchors = {anchor(h) for h in sections}
    by_name, by_anchor = [], []
    for path in tracked_files():
        if path.suffix not in (".py", ".md", ".sh", ".service", ".toml", ".example", ".conf"):
            continue
        text = path.read_text(encoding="utf-8")
        by_name += [(path.name, m[1]) for m in re.finditer(r"docs/design\.md`?, ([A-Z][a-z]+(?: [a-z]+)*)", text)]
        by_anchor += [(path.name, m[1]) for m in re.finditer(r"design\.md#([\w-]+)", text)]
    assert by_name and by_anchor
    assert [(f, name) for f, name in by_name if name not in sections] == []
    assert [(f, a) for f, a in by_anchor if a not in anchors] == []


def test_nothing_points_at_the_design_brief_a_clone_does_not_have():
    brief = "DESIGN" + ".md"        # spelt in two parts so that this file does not name it
    mentions = [path.relative_to(ROOT).as_posix() for path in tracked_files()
                if path.suffix in (".py", ".md", ".sh", ".service", ".toml", ".cfg")
                and brief in path.read_text(encoding="utf-8")]
    assert mentions == []
