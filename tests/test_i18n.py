"""The Chinese catalogue: complete, compiled from exactly the .po beside it, and used when the locale asks."""

from __future__ import annotations

import ast
import doctest
import gettext
import os
import re
import string
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from edge import i18n

ROOT = Path(__file__).resolve().parent.parent
MESSAGES = ROOT / "edge" / "locale" / "zh_CN" / "LC_MESSAGES"
PO = MESSAGES / "linli.po"
MO = MESSAGES / "linli.mo"

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def _unquote(text: str) -> str:
    text = text.strip()
    assert text.startswith('"') and text.endswith('"'), text
    return re.sub(r"\\(.)", lambda m: _ESCAPES[m.group(1)], text[1:-1])


def read_po(path: Path) -> tuple[dict, set]:
    """Parse a .po file: ``({msgid or (msgid, msgid_plural): msgstr or (msgstr[0], …)}, {fuzzy keys})``.

    Enough of the format for this catalogue: comments, flags, msgid, msgid_plural, msgstr, msgstr[n]
    and continued strings; ``msgctxt`` is refused rather than silently misread.
    """
    catalogue: dict = {}
    fuzzy: set = set()
    entry: dict = {}
    field = None

    def finish():
        if "msgid" in entry:
            key = entry["msgid"] if "msgid_plural" not in entry else (entry["msgid"], entry["msgid_plural"])
            assert key not in catalogue, f"duplicate msgid {key!r}"
            forms = sorted(k for k in entry if k.startswith("msgstr["))
            catalogue[key] = entry["msgstr"] if "msgstr" in entry else tuple(entry[k] for k in forms)
            if entry.get("fuzzy"):
                fuzzy.add(key)
        entry.clear()

    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        if not line.strip():
            finish()
            field = None
        elif line.startswith("#,"):
            entry["fuzzy"] = "fuzzy" in line
        elif line.startswith("#"):
            continue
        elif line.startswith('"'):
            entry[field] += _unquote(line)
        else:
            field, _, rest = line.partition(" ")
            assert field in ("msgid", "msgid_plural", "msgstr") or re.fullmatch(r"msgstr\[\d+\]", field), line
            entry[field] = _unquote(rest)
    return catalogue, fuzzy


def marked_messages(paths=None) -> dict[object, str]:
    """Every ``_("…")``/``ngettext("…", "…", n)`` in ``paths`` (default: ``edge/``).

    Returns key as in :func:`read_po` -> where it is; a marker called with anything but
    string literals fails, since such text never reaches the catalogue.
    """
    found: dict[object, str] = {}
    for path in paths or sorted((ROOT / "edge").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            name = node.func.id
            where = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name}:{node.lineno}"
            literal_count = {"_": 1, "ngettext": 2}.get(name)
            if literal_count is None:
                continue
            texts = node.args[:literal_count]
            assert len(texts) == literal_count and all(
                isinstance(a, ast.Constant) and isinstance(a.value, str) for a in texts), (
                f"{where}: {name}() needs string literals, or the text cannot be translated")
            key = texts[0].value if literal_count == 1 else (texts[0].value, texts[1].value)
            found.setdefault(key, where)
    return found


def fields_of(text: str) -> set[str]:
    """The ``{name}`` and ``%(name)s`` placeholders of a message."""
    braces = {name for _lit, name, _spec, _conv in string.Formatter().parse(text) if name is not None}
    return braces | set(re.findall(r"%\((\w+)\)", text))


def mo_entry_count(path: Path) -> int:
    data = path.read_bytes()
    magic = struct.unpack("<I", data[:4])[0]
    order = "<" if magic == 0x950412DE else ">"
    return struct.unpack(order + "I", data[8:12])[0]


@pytest.fixture(scope="module")
def po():
    return read_po(PO)


def test_po_has_no_fuzzy_or_empty_entry(po):
    catalogue, fuzzy = po
    assert fuzzy == set()
    empty = [k for k, v in catalogue.items() if k != "" and (not v or (isinstance(v, tuple) and not all(v)))]
    assert empty == []


def test_mo_is_compiled_from_exactly_this_po(po):
    catalogue, _fuzzy = po
    with MO.open("rb") as file:
        mo = gettext.GNUTranslations(file)
    assert mo.info()["plural-forms"] == "nplurals=1; plural=0;"
    assert mo.info()["language"] == "zh_CN"
    for key, translation in catalogue.items():
        if key == "":
            continue
        if isinstance(key, tuple):
            assert translation == (mo.ngettext(*key, 1),) == (mo.ngettext(*key, 5),), key
        else:
            assert mo.gettext(key) == translation, key
    assert mo_entry_count(MO) == len(catalogue)  # the header counts in both; nothing extra in the .mo


def test_every_marked_message_is_translated(po):
    catalogue, _fuzzy = po
    marked = marked_messages()
    assert len(marked) > 50
    missing = [f"{where}: {key!r}" for key, where in marked.items() if not catalogue.get(key)]
    assert missing == [], "add these to linli.po and run msgfmt (see edge/locale/README.md)"


def test_catalogue_holds_no_stale_messages(po):
    catalogue, _fuzzy = po
    marked = marked_messages()
    stale = [key for key in catalogue if key != "" and key not in marked]
    assert stale == []


def test_translations_keep_every_placeholder(po):
    catalogue, _fuzzy = po
    for key, translation in catalogue.items():
        originals = key if isinstance(key, tuple) else (key,)
        translations = translation if isinstance(translation, tuple) else (translation,)
        for text in translations:
            assert fields_of(text) == fields_of(originals[-1]), key


def test_marker_scan_finds_literals_and_refuses_variables(tmp_path):
    good = tmp_path / "good.py"
    good.write_text('_("one")\nngettext("{n} bus", "{n} buses", n)\nx.gettext(y)\n')
    assert marked_messages([good]) == {"one": "good.py:1", ("{n} bus", "{n} buses"): "good.py:2"}
    bad = tmp_path / "bad.py"
    bad.write_text('message = "one"\n_(message)\n')
    with pytest.raises(AssertionError, match="bad.py:2"):
        marked_messages([bad])


def test_module_examples_pass():
    i18n.use_languages(["en"])
    try:
        result = doctest.testmod(i18n)
    finally:
        i18n.use_languages(None)
    assert result.attempted > 0 and result.failed == 0


def test_switching_language_in_process():
    try:
        i18n.use_languages(["fr", "zh_CN"])
        assert i18n._("unknown key") == "未知的键"
        assert i18n.ngettext("{source} has {count} problem:", "{source} has {count} problems:", 1) == \
            "{source} 有 {count} 个问题："
        i18n.use_languages(["en"])
        assert i18n.ngettext("{source} has {count} problem:", "{source} has {count} problems:", 1) == \
            "{source} has {count} problem:"
        assert i18n._("a message nobody translated") == "a message nobody translated"
    finally:
        i18n.use_languages(None)


def run_check(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """Load a bad config in a fresh interpreter whose locale comes only from ``env``."""
    path = tmp_path / "edge.toml"
    path.write_text('[gateway]\nid = "gw-0042"\ngrid = "b07"\n[mqtt]\nport = 0\nhots = "x"\n', encoding="utf-8")
    clean = {k: v for k, v in os.environ.items() if k not in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")}
    script = ("import sys\nfrom edge.config import load_config\nfrom edge.errors import ConfigError\n"
              "try:\n    load_config(sys.argv[1])\nexcept ConfigError as exc:\n    print(exc)\n")
    return subprocess.run([sys.executable, "-c", script, str(path)], env={**clean, **env},
                          capture_output=True, text=True, encoding="utf-8", timeout=60, check=True)


@pytest.mark.parametrize("env", [{"LANGUAGE": "zh_CN"}, {"LANG": "zh_CN.UTF-8"}, {"LC_ALL": "zh_CN.UTF-8"},
                                 {"LANGUAGE": "de:zh_CN", "LANG": "C"}],
                         ids=["LANGUAGE", "LANG", "LC_ALL", "LANGUAGE list"])
def test_config_problems_show_in_chinese(tmp_path, env):
    out = run_check(tmp_path, **env).stdout
    assert out.splitlines() == [
        f"{tmp_path / 'edge.toml'} 有 2 个问题：",
        "  mqtt.port: 不能小于 1，实际为 0",
        '  mqtt.hots: 未知的键；是不是 "host"？',
    ]


@pytest.mark.parametrize("env", [{}, {"LANG": "C"}, {"LANGUAGE": "fr_FR"}, {"LANG": "en_US.UTF-8"}],
                         ids=["unset", "C", "untranslated language", "English"])
def test_config_problems_fall_back_to_english(tmp_path, env):
    out = run_check(tmp_path, **env).stdout
    assert out.splitlines() == [
        f"{tmp_path / 'edge.toml'} has 2 problems:",
        "  mqtt.port: must be at least 1, got 0",
        '  mqtt.hots: unknown key; did you mean "host"?',
    ]
