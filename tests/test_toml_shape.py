"""Config files beyond what the TOML parser can take: refused with exit 78 naming the file and the line, in time."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge import i18n
from edge.config import load_config
from edge.errors import ConfigError
from edge.toml_shape import MAX_BYTES, MAX_KEY_PARTS, MAX_NESTING, ShapeError, check_shape

ROOT = Path(__file__).resolve().parent.parent
GATEWAY = '[gateway]\nid = "gw-0042"\ngrid = "shimen2/xinfukangli/b07"\n'


@pytest.fixture(autouse=True)
def english():
    i18n.use_languages(["en"])
    yield
    i18n.use_languages(None)


def problem_of(tmp_path: Path, text: str) -> str:
    path = tmp_path / "edge.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.source == str(path)
    [problem] = info.value.problems
    return problem


def test_5000_nested_arrays_are_a_config_error_with_the_line(tmp_path):
    problem = problem_of(tmp_path, GATEWAY + "\nx = " + "[" * 5000 + "]" * 5000 + "\n")
    assert problem == f"line 5: arrays and inline tables nested more than {MAX_NESTING} deep"


def test_nested_inline_tables_count_too(tmp_path):
    problem = problem_of(tmp_path, GATEWAY + "x = " + "{a = " * 40 + "1" + "}" * 40 + "\n")
    assert problem == f"line 4: arrays and inline tables nested more than {MAX_NESTING} deep"


def test_a_long_dotted_key_is_refused_before_the_parser_spends_memory_on_it(tmp_path):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    problem = problem_of(tmp_path, GATEWAY + "a" + ".a" * 100_000 + " = 1\n")
    assert problem == f"line 4: a dotted key of more than {MAX_KEY_PARTS} parts"
    assert time.monotonic() - started < 2
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000, "kB: tomllib never saw it"


def test_a_file_over_the_size_limit_is_not_read_whole(tmp_path):
    problem = problem_of(tmp_path, GATEWAY + "# padding\n" * (MAX_BYTES // 10 + 1))
    assert problem == f"larger than {MAX_BYTES} bytes; a gateway's config is a few kilobytes"


@pytest.mark.parametrize("text", [
    'a = "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[.........................................."',
    "a = '[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[['",
    'a = """\n[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\"""[[[[[[[[[[[[[[[["""""',
    "a = '''\n[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[['''''",
    "# [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\na = 1",
    '"a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z.0.1.2.3.4.5.6.7.8.9" = 1',
    "a = [" + "1.5, " * 100 + "]",
])
def test_brackets_and_dots_in_strings_comments_and_numbers_count_for_nothing(text):
    check_shape(text)
    tomllib.loads(text)


def test_every_toml_file_the_project_ships_is_within_the_bounds():
    shipped = [p for p in ROOT.rglob("*.toml") if ".venv" not in p.parts]
    assert len(shipped) > 10
    for path in shipped:
        check_shape(path.read_text(encoding="utf-8-sig"))


#: Text full of what a scanner could mistake for structure.
TRICKY = st.text(alphabet='[]{}.,=#"\'\\abc \n\t', max_size=30)


def basic(text: str) -> str:
    return json.dumps(text)                    # JSON's escapes are TOML's, for this alphabet


def multiline_basic(text: str) -> str:
    """Raw quotes and newlines inside, as long as no three quotes meet; up to two may touch the closing ones."""
    body = json.dumps(text)[1:-1].replace('\\"', '"').replace("\\n", "\n")
    while '"""' in body:
        body = body.replace('"""', '""\\"')
    return '"""' + body + '"""'


def literal(text: str) -> str:
    return "'" + text.replace("'", "").replace("\n", "") + "'"


def multiline_literal(text: str) -> str:
    body = text
    while "'''" in body:
        body = body.replace("'''", "''")
    return "'''\n" + body + "'''"


SCALARS = st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False).map(repr),
                    TRICKY.map(basic), TRICKY.map(multiline_basic), TRICKY.map(literal), TRICKY.map(multiline_literal))
KEYS = st.lists(st.sampled_from(["a", "b", '"q.[{"', "'l.]'"]), min_size=1, max_size=5).map(".".join)


def nested(depth: int):
    """A value nested exactly ``depth`` levels of arrays and inline tables deep."""
    if depth == 0:
        return SCALARS.map(str)
    return nested(depth - 1).flatmap(lambda inner: st.sampled_from([f"[{inner}, 1]", f"{{k = {inner}}}"]))


@st.composite
def documents(draw) -> tuple[str, int]:
    """A valid TOML document of tricky strings, comments and dotted keys, and the depth of its deepest value.

    The deepest value comes last, so a scan that loses its place anywhere before it misjudges it.
    """
    lines = []
    for index in range(draw(st.integers(1, 8))):
        comment = draw(st.none() | TRICKY.map(lambda t: " # " + t.replace("\n", " ")))
        lines.append(f"k{index}.{draw(KEYS)} = {draw(nested(draw(st.integers(0, 3))))}{comment or ''}")
    deepest = draw(st.integers(4, MAX_NESTING + 8))
    lines.append(f"last.{draw(KEYS)} = {draw(nested(deepest))}")
    return "\n".join(lines) + "\n", deepest


@settings(max_examples=300, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_the_scan_measures_exactly_the_nesting_the_parser_would_meet(document):
    text, deepest = document
    if deepest > MAX_NESTING:
        with pytest.raises(ShapeError, match="nested more than"):
            check_shape(text)
    else:
        check_shape(text)
        tomllib.loads(text)


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(st.text(alphabet='[]{}"\'#\n=,.a1 \\', max_size=300))
def test_any_text_is_scanned_without_an_error_other_than_a_shape_error(text):
    try:
        check_shape(text)
    except ShapeError:
        pass


def test_config_check_exits_78_naming_the_file_without_a_traceback(tmp_path):
    path = tmp_path / "edge.toml"
    path.write_text(GATEWAY + "x = " + "[" * 5000 + "]" * 5000 + "\n")
    done = subprocess.run([sys.executable, "-m", "edge.cli", "config", "check", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, env={"LANGUAGE": "en", "PATH": ""})
    assert done.returncode == 78, done.stderr
    assert f"{path} has 1 problem:" in done.stderr and "nested more than 32 deep" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("empty", ['""""""', "''''''", '""', "''"])
def test_an_empty_string_ends_where_it_ends_so_what_follows_is_still_measured(empty):
    # Found on Python 3.11.2 (Bookworm's): a possessive regex group that matched nothing failed there.
    with pytest.raises(ShapeError, match="nested more than"):
        check_shape(f"a = {empty}\nb = " + "[" * 33 + "]" * 33 + "\n")
