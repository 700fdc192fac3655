"""``linli completion bash``: a bash completion script made from the parser itself, so it never falls behind.

Install it with ``linli completion bash > /etc/bash_completion.d/linli`` (or source it from ~/.bashrc).
The script knows every command and subcommand, each one's options, the values of options
and arguments that have a fixed set of them, and leaves the rest (file names) to bash.
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
_linli_names() {{
    case "$1" in
{names}
    esac
}}
_linli_options() {{
    case "$1" in
{options}
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
    COMPREPLY=()
    if [[ "$prev" == -* ]]; then
        values="$(_linli_values "$path $prev")"
        if [[ "$values" == "<file>" ]]; then
            return   # complete -o default: file names
        elif [[ -n "$values" ]]; then
            mapfile -t COMPREPLY < <(compgen -W "$values" -- "$cur")
            return
        fi
    fi
    if [[ "$cur" == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$(_linli_options "$path")" -- "$cur")
    else
        mapfile -t COMPREPLY < <(compgen -W "$(_linli_names "$path")" -- "$cur")
    fi
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
    """The completion script for ``parser``: per command path, its subcommands, the words that may follow
    (subcommands and fixed argument values), its options, and the values of each option that takes one."""
    commands, names, options, values = [], [], [], []
    for path, node in _walk(parser):
        subcommand_names, fixed, offered = [], [], []
        for action in node._actions:
            if isinstance(action, argparse._SubParsersAction):
                subcommand_names += list(action.choices)
            elif action.option_strings:
                offered += action.option_strings
                if action.nargs != 0:
                    choices = " ".join(str(choice) for choice in action.choices or ()) or _ANY_VALUE
                    values += [_case(f"{path} {option}", choices) for option in action.option_strings]
            elif action.choices:
                fixed += [str(choice) for choice in action.choices]
        if subcommand_names:
            commands.append(_case(path, " ".join(subcommand_names)))
        if subcommand_names or fixed:
            names.append(_case(path, " ".join(subcommand_names + fixed)))
        options.append(_case(path, " ".join(offered)))
    return _TEMPLATE.format(commands="\n".join(commands), names="\n".join(names), options="\n".join(options),
                            values="\n".join(values))


def _walk(parser: argparse.ArgumentParser, path: str = "") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _walk(child, f"{path} {name}".strip())


def _case(pattern: str, answer: str) -> str:
    quoted = shlex.quote(pattern) if pattern else '""'   # the command alone: an empty path
    return f"        {quoted}) echo {shlex.quote(answer)} ;;"
