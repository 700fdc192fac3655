"""``linli completion bash``: the script sourced in a real bash, asked as bash asks it (COMP_WORDS, COMP_CWORD)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edge.cli import build_parser
from tests.test_cli import leaf_commands
from tests.test_rules_scenarios import ROOT

#: Sources the script, checks it registered a function for ``linli``, then completes each line given as an
#: argument (the word under the cursor is the last one; a line ending in a space completes an empty word).
_DRIVER = r"""
source "$1"; shift
function=$(complete -p linli | sed -n 's/.*-F \([^ ]*\) linli$/\1/p')
[[ -n "$function" ]] || { echo "no completion function registered for linli" >&2; exit 1; }
for line in "$@"; do
    read -r -a COMP_WORDS <<< "$line"
    [[ "$line" == *" " ]] && COMP_WORDS+=("")
    COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
    COMP_LINE="$line"; COMP_POINT=${#line}
    COMPREPLY=()
    "$function" linli "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
    echo "${COMPREPLY[*]}"
done
"""


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    done = subprocess.run([sys.executable, "-m", "edge.cli", "completion", "bash"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    path = tmp_path_factory.mktemp("completion") / "linli.bash"
    path.write_text(done.stdout, encoding="utf-8")
    return path


def complete(script, *lines: str) -> list[list[str]]:
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", _DRIVER, "driver", str(script), *lines],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return [sorted(reply.split()) for reply in done.stdout.split("\n")[:len(lines)]]


def test_commands_subcommands_options_and_values_complete(script):
    asked = {
        "linli al": ["alarm"],
        "linli alarm ": ["ack", "list", "test"],
        "linli sc": ["scan"],
        "linli scan ": ["cjt188", "mbus"],
        "linli --config edge.toml st": ["status"],
        "linli status --j": ["--json"],
        "linli scan mbus /dev/ttyUSB0 --pa": ["--parity"],
        "linli probe serial /dev/ttyUSB0 --protocol ": ["cjt188", "mbus", "modbus"],
        "linli scan cjt188 /dev/ttyUSB0 --di-order 20": ["2004", "2018"],
        "linli decode m": ["mbus", "modbus", "mr60bha1", "mr60bha2"],
        "linli away o": ["off", "on"],
        "linli completion ": ["bash"],
        "linli --config ": [],            # a file name: left to bash's own completion
    }
    assert dict(zip(asked, complete(script, *asked), strict=True)) == asked


def test_every_command_of_the_parser_completes_from_its_first_letters(script):
    """The script is made from the parser: every command path there can be typed by completion."""
    leaves = [words for words, _parser in leaf_commands(build_parser())]
    lines = []
    for words in leaves:
        *before, last = words.split()
        lines.append(" ".join(["linli", *before, last[:2]]))
    for words, reply in zip(leaves, complete(script, *lines), strict=True):
        assert words.split()[-1] in reply, (words, reply)


def test_the_script_is_valid_bash(script):
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
