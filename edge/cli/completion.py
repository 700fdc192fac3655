"""``linli completion bash``: a bash completion script made from the parser itself, so it never falls behind.

Install it with ``linli completion bash > /etc/bash_completion.d/linli`` (or source it from ~/.bashrc).
The script knows every command and subcommand, each one's options, the values of options
and arguments that have a fixed set of them, and completes file names after the others.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Iterator

from edge.cli import render
from edge.cli.common import Subcommands, subcommands
from edge.exits import EX_OK
from edge.i18n import _

_TEMPLATE = """\
# bash completion for linli, made by `linli completion bash` from the command's own parser.
_linli_commands() {{
    case "$1" in
{commands}
    esac
}}
_linli_words() {{
    case "$1" in
{words}
    esac
}}
_linli_values() {{
    case "$1" in
{values}
    esac
}}
_linli() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}" path="" word i values
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${{COMP_WORDS[i]}}"
        if [[ " $(_linli_commands "$path") " == *" $word "* ]]; then
            path="${{path:+$path }}$word"
        fi
    done
    if [[ "$prev" == -* ]]; then
        values="$(_linli_values "$path $prev")"
        if [[ "$values" == "<file>" ]]; then
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
            return
        elif [[ -n "$values" ]]; then
            mapfile -t COMPREPLY < <(compgen -W "$values" -- "$cur")
            return
        fi
    fi
    mapfile -t COMPREPLY < <(compgen -W "$(_linli_words "$path")" -- "$cur")
}}
complete -o default -F _linli linli
"""

#: What ``_linli_values`` answers for an option whose value is a file name (or anything without a fixed set).
_ANY_VALUE = "<file>"


def register(sub: Subcommands) -> None:
    p = sub.add_parser("completion", help=_("print a shell completion script"),
                       epilog=_("example: linli completion bash > /etc/bash_completion.d/linli"))
    shells = subcommands(p, "completion_shell")
    c = shells.add_parser("bash", help=_("bash completion: commands, subcommands, options and their values"))
    c.set_defaults(func=cmd_completion_bash)


def cmd_completion_bash(args: argparse.Namespace) -> int:
    from edge.cli.main import build_parser   # the whole parser, this command included

    render.out(bash_script(build_parser()), flush=True)
    return EX_OK


def bash_script(parser: argparse.ArgumentParser) -> str:
    """The completion script for ``parser``: a ``case`` per command path for its subcommands, words and values."""
    commands, words, values = [], [], []
    for path, node in _walk(parser):
        names, offered = [], []
        for action in node._actions:
            if isinstance(action, argparse._SubParsersAction):
                names += list(action.choices)
            elif action.option_strings:
                offered += action.option_strings
                if action.nargs != 0:
                    choices = " ".join(str(choice) for choice in action.choices or ()) or _ANY_VALUE
                    values += [_case(f"{path} {option}", choices) for option in action.option_strings]
            elif action.choices:
                offered += [str(choice) for choice in action.choices]
        if names:
            commands.append(_case(path, " ".join(names)))
        words.append(_case(path, " ".join(names + offered)))
    return _TEMPLATE.format(commands="\n".join(commands), words="\n".join(words), values="\n".join(values))


def _walk(parser: argparse.ArgumentParser, path: str = "") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _walk(child, f"{path} {name}".strip())


def _case(pattern: str, answer: str) -> str:
    quoted = shlex.quote(pattern) if pattern else '""'   # the command alone: an empty path
    return f"        {quoted}) echo {shlex.quote(answer)} ;;"
