"""``linli status``: what the running agent sees — broker, outbox, clock, what it learns, every sensor.

``--json`` prints the agent's health payload as it is (edge/schemas/health.schema.json).
"""

from __future__ import annotations

import argparse
import datetime
from typing import Any

from edge.cli import render
from edge.cli.common import Subcommands, add_config_option, add_json_option, ask_agent
from edge.exits import EX_OK
from edge.i18n import _

#: Columns of the sensor table: sensor, bus, state, reads; the last error follows unpadded.
_WIDTHS = (20, 10, 8, 7)
_INDENT = " " * 11


def register(sub: Subcommands) -> None:
    p = sub.add_parser("status", help=_("what the running agent sees: broker, outbox, sensors"),
                       epilog=_("examples:\n  linli status\n  linli status --config /etc/linli/edge.toml --json"),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_option(p)
    add_json_option(p)
    p.set_defaults(func=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    health = ask_agent(args, "health")
    if args.json:
        render.emit_json(health)
    else:
        for text in lines(health):
            render.out(text)
    return EX_OK


def lines(health: dict[str, Any]) -> list[str]:
    """The health payload as a technician reads it: the agent's state, then one row per sensor."""
    uplink = health.get("uplink") or {}
    outbox = health.get("outbox") or {}
    connected = (render.paint(_("connected"), render.GREEN) if uplink.get("connected")
                 else render.paint(_("not connected"), render.RED))
    shown = [_("broker     {state}  {broker}").format(state=connected, broker=uplink.get("broker") or "")]
    if uplink.get("last_error"):
        shown.append(_INDENT + uplink["last_error"])
    shown.append(_("outbox     {depth} records waiting, {used} of {limit} MiB, {dropped} dropped so far").format(
        depth=outbox.get("depth"), used=round((outbox.get("bytes_used") or 0) / 2**20, 1),
        limit=round((outbox.get("max_bytes") or 0) / 2**20), dropped=outbox.get("dropped_total")))
    if outbox.get("unavailable") or outbox.get("disk_full"):
        problem = outbox.get("unavailable") or _("the disk is full")
        shown.append(_INDENT + render.paint(_("not stored: {problem}; {pending} records only in memory").format(
            problem=problem, pending=outbox.get("pending")), render.RED))
    shown.append(_("clock      synced: {synced}    uptime {uptime} s").format(
        synced=health.get("clock_synced"), uptime=health.get("uptime_s")))
    shown += [_learning_line(learning) for learning in health.get("learning") or []]
    if health.get("update"):
        shown.append(_update_line(health["update"]))
    shown.append("")
    shown.append(render.line([_("sensor"), _("bus"), _("state"), _("reads"), " " + _("last error")], _WIDTHS,
                             right={3}))
    for bus in health.get("buses", []):
        for sensor, st in bus["sensors"].items():
            state = render.Painted(_("ok"), render.GREEN) if st["ok"] else render.Painted(_("failing"), render.RED)
            shown.append(render.line([sensor, bus["bus"], state, str(st["reads"]), " " + (st["last_error"] or "")],
                                     _WIDTHS, right={3}))
    return shown


def _learning_line(learning: dict[str, Any]) -> str:
    if learning["warmup_until"] is None:
        return _("routine    {alarm}: learned; linli explain {alarm} shows what").format(alarm=learning["alarm"])
    until = datetime.datetime.fromtimestamp(learning["warmup_until"] / 1000).astimezone()
    return _("routine    {alarm}: learning the home's routine until {until}; the fixed rule holds "
             "meanwhile").format(alarm=learning["alarm"], until=until.strftime("%Y-%m-%d %H:%M"))


def _update_line(update: dict[str, Any]) -> str:
    """The last update: what it went from and to, and how it ended (or where it stands)."""
    was = (update.get("from") or {}).get("version") or "-"
    to = (update.get("to") or {}).get("version") or "?"
    if update.get("phase") != "done":
        return _("update     {was} -> {to}: under way ({phase})").format(was=was, to=to, phase=update.get("phase"))
    outcome = update.get("outcome")
    colour = render.GREEN if outcome in ("updated", "unchanged") else render.RED
    text = _("update     {was} -> {to}: {outcome} at {finished}").format(
        was=was, to=to, outcome=render.paint(str(outcome).replace("_", " "), colour), finished=update.get("finished"))
    return text + (("\n" + _INDENT + update["reason"]) if update.get("reason") else "")
