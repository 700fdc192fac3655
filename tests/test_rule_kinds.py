"""The registry of rule kinds is the one place a kind lives: every kind is complete there, and a kind
registered there alone is validated, run and worded by the rest of the agent with nothing else changed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from drivers.options import Option, validate_options
from edge.config import validate
from edge.errors import ConfigError
from edge.i18n import _
from edge.reference import DOCUMENTS
from edge.rules import RuleConfig, RuleEngine
from edge.rules.detector import Detector, Signal
from edge.rules.kind import Kind, Problem
from edge.rules.kinds import KINDS, kind, kind_names

ROOT = Path(__file__).resolve().parent.parent
CONFIGURATION = (ROOT / "docs/configuration.md").read_text(encoding="utf-8")
DESIGN = (ROOT / "docs/design.md").read_text(encoding="utf-8")
SAMPLES = {"float": 2.0, "int": 2, "bool": True, "duration": "1h", "str": "x"}
CHINESE = re.compile(r"[\u4e00-\u9fff]")


def sample_params(declared: Kind) -> dict[str, Any]:
    """A value for every option of the kind, as a config would write it, validated by its own spec."""
    raw = {key: opt.default if opt.default is not None else opt.choices[0] if opt.choices else SAMPLES[opt.kind]
           for key, opt in declared.options.items()}
    values, problems = validate_options(declared.options, raw)
    assert problems == [], f"{declared.name}: the sample values do not fit its options: {problems}"
    return values


@pytest.mark.parametrize("name", kind_names())
def test_every_registered_kind_is_complete(name):
    declared = kind(name)
    assert declared.name == name, f"{KINDS[name]} declares {declared.name!r}, registered as {name!r}"
    assert declared.help.strip() and "\n" not in declared.help
    assert declared.options and all(opt.help.strip() for opt in declared.options.values())
    assert issubclass(declared.detector, Detector) and declared.detector is not Detector
    rule = RuleConfig("r", "pump-pressure", "pressure", name, params=sample_params(declared))
    english, chinese = declared.raised_message(rule, 3.0, 2.0)
    assert "pump-pressure" in english and "pump-pressure" in chinese
    assert english.isascii() and CHINESE.search(chinese), (english, chinese)
    # the engine runs its detector on a reading without complaint
    RuleEngine([rule]).evaluate({"sensor": "pump-pressure", "quantity": "pressure", "value": 1.0,
                                 "quality": "good", "ts": 0})


@pytest.mark.parametrize("name", [name for name in kind_names() if kind(name).sensitivity is not None])
def test_a_sensitivity_sweeps_an_option_of_its_kind_with_values_it_accepts(name):
    declared = kind(name)
    option = declared.sensitivity.option
    assert option in declared.options
    for value in declared.sensitivity.values:
        assert validate_options({option: declared.options[option]}, {option: value})[1] == [], value


def test_inactivity_sweeps_its_window():
    assert kind("inactivity").sensitivity.option == "window"
    assert kind("inactivity").sensitivity.values == ("6h", "8h", "12h", "16h", "24h")
    assert [name for name in kind_names() if kind(name).sensitivity is not None] == ["inactivity", "routine"]


def test_the_docs_have_a_table_for_exactly_the_registered_kinds():
    documented = re.findall(r"<!-- generated: rule/(\w+) -->", CONFIGURATION)
    assert documented == kind_names(), "docs/configuration.md lists kinds in another order, or other kinds"
    blocks = DOCUMENTS["docs/configuration.md"]()
    for name in kind_names():
        assert blocks[f"rule/{name}"]().startswith(f'**`kind = "{name}"`** — {kind(name).help}\n')


def test_the_guide_to_adding_a_kind_names_the_registry_as_it_is():
    guide = DESIGN.split("### Adding a rule kind", 1)[1].split("\n## ", 1)[0]
    assert "edge/rules/kinds/__init__.py" in guide and "`KINDS`" in guide
    for path in re.findall(r"`((?:edge|tests|docs)/[\w/.]+\.(?:py|md))`", guide):
        assert (ROOT / path).exists(), f"the guide names {path}, which does not exist"
    for field in Kind.__dataclass_fields__:
        assert re.search(rf"`{field}[`(]", guide), f"the guide does not say what {field} is"


def test_an_unknown_kind_names_the_known_ones():
    with pytest.raises(KeyError) as caught:
        kind("routne")
    assert "threshold, state, rate" in str(caught.value)


# --- a kind that exists only in this test, registered in the table and nowhere else ---------------------
class Odd(Detector):
    """Out while the value, as a whole number, leaves ``remainder`` when divided by ``modulus``."""

    def reading(self, ts: int, value: Any, usable: bool) -> Signal:
        out = int(value) % self.params["modulus"] == self.params["remainder"]
        return Signal(out, not out, value, self.params["modulus"])


def odd_message(rule: RuleConfig, value: Any, limit: Any) -> tuple[str, str]:
    return f"{rule.sensor}: {rule.quantity} {value} is odd modulo {limit}", f"{rule.sensor}：{value} 为奇数"


def odd_check(params: dict[str, Any], raw: dict[str, Any], problem: Problem, path: str) -> None:
    if "remainder" in params and "modulus" in params and params["remainder"] >= params["modulus"]:
        problem("remainder", _("is only used with {other}").format(other=f"{path}.modulus"))


KIND = Kind(
    name="odd",
    help="a whole number that leaves a remainder",
    options={"modulus": Option("int", required=True, min=2, help="what the value is divided by"),
             "remainder": Option("int", default=1, min=0, help="the remainder that is out")},
    detector=Odd,
    raised_message=odd_message,
    check=odd_check,
)

BASE = {
    "gateway": {"id": "gw-1", "grid": "b07"},
    "bus": [{"name": "gpio", "kind": "gpio", "pin_factory": "mock"}],
    "sensor": [{"id": "pump", "driver": "contact", "bus": "gpio", "pin": 5, "quantity": "starts"}],
}


def odd_rule(**keys: Any) -> dict[str, Any]:
    return {"id": "odd", "sensor": "pump", "quantity": "starts", "kind": "odd", **keys}


def config_problems(*tables: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        validate({**BASE, "rule": list(tables)})
    return caught.value.problems


@pytest.fixture
def odd_registered(monkeypatch):
    monkeypatch.setitem(KINDS, "odd", __name__)


def test_a_kind_not_in_the_table_is_refused():
    known = ", ".join(f'"{name}"' for name in kind_names())
    assert known.startswith('"threshold", "state", "rate"')
    assert config_problems(odd_rule(modulus=2)) == [f'rule[0].kind: unknown rule kind "odd"; expected one of {known}']


def test_a_kind_in_the_table_is_validated_by_its_own_options_and_check(odd_registered):
    (rule,) = validate({**BASE, "rule": [odd_rule(modulus=3)]}).rules
    assert (rule.kind, rule.params) == ("odd", {"modulus": 3, "remainder": 1})
    assert config_problems(odd_rule(modulus=1, remaindr=0), odd_rule(id="two", modulus=2, remainder=2)) == [
        "rule[0].modulus: must be at least 2, got 1",
        'rule[0].remaindr: unknown key; did you mean "remainder"?',
        "rule[1].remainder: is only used with rule[1].modulus",
    ]
    assert config_problems(odd_rule(id="x", kind="od", modulus=2))[0] == (
        'rule[0].kind: unknown rule kind "od"; did you mean "odd"?')


def test_a_kind_in_the_table_runs_in_the_engine_with_its_own_message(odd_registered):
    (rule,) = validate({**BASE, "rule": [odd_rule(modulus=2)]}).rules
    engine = RuleEngine([rule])
    found = []
    for ts, value in ((0, 2), (1000, 3), (2000, 4)):
        found += engine.evaluate({"sensor": "pump", "quantity": "starts", "value": value, "quality": "good",
                                  "ts": ts})
    assert [(t["state"], t["ts"], t["rule"]) for t in found] == [("raised", 1000, "odd"), ("cleared", 2000, "odd")]
    assert (found[0]["message"], found[0]["message_zh"]) == ("pump: starts 3 is odd modulo 2", "pump：3 为奇数")
    assert found[1]["message"] == "pump/odd: back to normal (4)"
