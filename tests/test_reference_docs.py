"""The generated tables of docs/configuration.md and docs/design.md are what the code says, and stay so."""

from __future__ import annotations

import dataclasses
import difflib
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from drivers.modbus.registers import POINT_OPTIONS
from drivers.options import Option, validate_options
from drivers.registry import BUS_KINDS, DRIVERS, bus_class, driver_class
from edge.reference import DOCUMENTS, REGENERATE, DocumentError, refresh
from edge.reference.configuration import SECTIONS
from edge.rules.kinds import kind, kind_names

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("document", sorted(DOCUMENTS))
def test_generated_tables_match_the_code(document):
    text = (ROOT / document).read_text(encoding="utf-8")
    fresh = refresh(text, DOCUMENTS[document]())
    diff = "".join(list(difflib.unified_diff(text.splitlines(True), fresh.splitlines(True), document,
                                             "from the code", n=0))[:40])
    assert fresh == text, f"{document} differs from the code; run {REGENERATE} and commit the result:\n{diff}"


def every_spec() -> dict[str, dict[str, Option]]:
    specs = {f"[{name}]": spec for name, (spec, _shape) in SECTIONS.items()}
    specs |= {f"bus kind {kind}": bus_class(kind).options for kind in BUS_KINDS}
    specs |= {f"driver {name}": driver_class(name).options for name in DRIVERS}
    specs |= {f"rule kind {name}": kind(name).options for name in kind_names()}
    specs["[[sensor.registers]]"] = POINT_OPTIONS
    return specs


def test_every_option_says_what_it_is_for():
    silent = [f"{where}: {key}" for where, spec in every_spec().items() for key, opt in spec.items()
              if not opt.help.strip()]
    assert silent == [], "give these options a help text (it is their row in docs/configuration.md)"


@pytest.mark.parametrize("section", ["gateway", "mqtt", "buffer", "control", "output"])
def test_section_spec_and_dataclass_hold_the_same_keys_and_defaults(section):
    """The [section] table is made from the spec, its defaults from the dataclass: they must agree."""
    spec, shape = SECTIONS[section]
    fields = {f.name: f.default for f in dataclasses.fields(shape)}
    assert set(spec) == set(fields), f"[{section}]: the spec and {shape.__name__} name different keys"
    declared, _problems = validate_options({k: o for k, o in spec.items() if not o.required}, {})
    for key, value in declared.items():
        if value is not None:       # a default in the spec: the dataclass must have the same
            assert fields[key] == value, f"[{section}] {key}: spec default {value!r}, dataclass {fields[key]!r}"


def test_every_built_in_driver_and_kind_has_a_place_in_the_reference():
    blocks = DOCUMENTS["docs/configuration.md"]()
    expected = ({f"driver/{name}" for name in DRIVERS} | {f"bus/{kind}" for kind in BUS_KINDS}
                | {f"rule/{name}" for name in kind_names()} | {f"section/{name}" for name in SECTIONS})
    assert expected <= set(blocks)


# --- the machinery ------------------------------------------------------------------------------------
BLOCKS = {"a": lambda: "| k |\n|---|\n| 1 |", "b": lambda: "B"}


def test_refresh_rewrites_only_between_the_markers():
    text = ("# t\n<!-- generated: a -->\nstale\n<!-- end generated -->\nmiddle\n"
            "<!-- generated: b -->\n<!-- end generated -->\n")
    fresh = refresh(text, BLOCKS)
    assert fresh == ("# t\n<!-- generated: a -->\n\n| k |\n|---|\n| 1 |\n\n<!-- end generated -->\nmiddle\n"
                     "<!-- generated: b -->\n\nB\n\n<!-- end generated -->\n")
    assert refresh(fresh, BLOCKS) == fresh


@pytest.mark.parametrize("text, complaint", [
    ("<!-- generated: a -->\n<!-- end generated -->\n", "no place for the generated block(s) b"),
    ("<!-- generated: a -->\n<!-- end generated -->\n<!-- generated: b -->\n<!-- end generated -->\n"
     "<!-- generated: a -->\n<!-- end generated -->\n", "a appear more than once"),
    ("<!-- generated: a -->\n<!-- end generated -->\n<!-- generated: c -->\n<!-- end generated -->\n",
     "'c' is unknown"),
    ("<!-- generated: a -->\n<!-- end generated -->\n<!-- generated: b -->\n", "no place for the generated block(s) b"),
])
def test_markers_that_do_not_match_the_blocks_are_refused(text, complaint):
    with pytest.raises(DocumentError) as caught:
        refresh(text, BLOCKS)
    assert complaint in str(caught.value)


@pytest.fixture
def checkout(tmp_path):
    """A copy of the docs the tool works on, so the test never touches the real ones."""
    for document in DOCUMENTS:
        (tmp_path / document).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / document, tmp_path / document)
    return tmp_path


def reference(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge.reference", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def test_the_tool_finds_a_hand_edited_table_and_puts_it_back(checkout):
    path = checkout / "docs/configuration.md"
    original = path.read_text(encoding="utf-8")
    edited = original.replace("| `retries` | integer | `2` | 0–5 |", "| `retries` | integer | `3` | 0–5 |", 1)
    assert edited != original
    path.write_text(edited, encoding="utf-8")

    check = reference("--check", "--root", str(checkout))
    assert check.returncode == 1 and REGENERATE in check.stderr and "configuration.md" in check.stderr
    assert path.read_text(encoding="utf-8") == edited           # --check changes nothing

    write = reference("--root", str(checkout))
    assert write.returncode == 0 and "configuration.md" in write.stdout and "design.md" not in write.stdout
    assert path.read_text(encoding="utf-8") == original
    assert reference("--check", "--root", str(checkout)).returncode == 0


def test_the_tool_refuses_a_document_without_a_table_and_writes_nothing(checkout):
    design = checkout / "docs/design.md"
    text = design.read_text(encoding="utf-8")
    design.write_text(text.replace("<!-- generated: payload/health -->", "<!-- gone -->"), encoding="utf-8")
    configuration = checkout / "docs/configuration.md"
    configuration.write_text(configuration.read_text(encoding="utf-8").replace("| `2` |", "| `7` |"),
                             encoding="utf-8")
    stale = configuration.read_text(encoding="utf-8")
    result = reference("--root", str(checkout))
    assert result.returncode == 65 and "payload/health" in result.stderr
    assert configuration.read_text(encoding="utf-8") == stale      # not half done: no document was written


# --- the drivers' own READMEs keep hand-written tables with more to say; their keys are checked -------
def readme_options(name: str) -> dict[str, str]:
    """key → default cell of the first table under "## Options" in drivers/<name>/README.md."""
    text = (ROOT / "drivers" / name / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Options\n", 1)[1]
    rows = {}
    for line in section.splitlines():
        if rows and not line.startswith("|"):
            break
        match = re.match(r"\| `(\w+)` \| ([^|]*) \|", line)
        if match:
            rows[match[1]] = match[2].strip()
    return rows


def toml_value(cell: str):
    try:
        return tomllib.loads(f"x = {cell.strip('`')}")["x"]
    except tomllib.TOMLDecodeError:
        return None


@pytest.mark.parametrize("name", sorted(DRIVERS))
def test_driver_readme_lists_the_options_the_driver_has(name):
    spec = driver_class(name).options
    rows = readme_options(name)
    assert sorted(rows) == sorted(spec), f"drivers/{name}/README.md: the Options table and the driver's spec differ"
    defaults, _problems = validate_options({k: o for k, o in spec.items() if not o.required}, {})
    for key, opt in spec.items():
        cell = rows[key]
        if opt.required:
            assert cell == "required", f"drivers/{name}/README.md: {key} is required"
        elif opt.default is not None:
            written = toml_value(cell)
            shown = validate_options({key: opt}, {key: written})[0].get(key)
            assert shown == defaults[key], f"drivers/{name}/README.md: {key} defaults to {opt.default!r}, not {cell}"
