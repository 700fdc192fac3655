"""The ``linli`` command: for a technician under a sink with a laptop.

Exit statuses follow sysexits(3) so scripts can tell problems apart:
0 ok, 64 usage, 65 bad data, 69 a service (broker) unavailable, 70 internal
error (for ``linli run`` also: a worker thread died), 73 a file in the way of
the outbox's lock, 74 I/O error, 75 another agent already runs on this outbox,
78 bad configuration, 130 interrupted.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import sys
import zoneinfo
from typing import Sequence

from drivers.codecs.cjt188 import METER_TYPE_CODES
from drivers.transports.serial import STANDARD_BAUDRATES
# Their parsers and handlers are there: this file lists the commands.
from edge import __version__, alarm_cli, decode_cli, doctor_cli, evaluate_cli, explain, logs, outbox_cli, watch
from edge import config_apply_cli
from edge.config import DEFAULT_PATH, load_config
from edge.errors import LinliError
from edge.i18n import _, ngettext

EX_OK, EX_USAGE, EX_SOFTWARE, EX_INTERRUPTED = 0, 64, 70, 130


class CommandRefused(LinliError):
    """The agent understood the request and said no (exit 1)."""

    exit_code = 1


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error exits with EX_USAGE (64) instead of 2."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, _("linli: error: {message}\n").format(message=message))


def _colour(text: str, code: str, stream=sys.stdout) -> str:
    """Colour only on a terminal, and never when NO_COLOR is set."""
    if stream.isatty() and "NO_COLOR" not in os.environ:
        return f"\033[{code}m{text}\033[0m"
    return text


def _setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose == 1 else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


# --- commands ------------------------------------------------------------------------------------------
def config_path(args) -> str:
    """The configuration file this command reads.

    ``--config`` after the command wins over one before it (argparse lets the subcommand's value
    replace the main parser's), which wins over ``LINLI_CONFIG``, which wins over the default path.
    """
    return getattr(args, "config", None) or os.environ.get("LINLI_CONFIG") or DEFAULT_PATH


def cmd_run(args) -> int:
    from edge.agent import Agent

    config = load_config(config_path(args))
    _setup_logging(max(args.verbose, 1))
    return Agent(config).run_forever()


def cmd_config_check(args) -> int:
    path = args.path or config_path(args)
    config = load_config(path)
    if args.json:
        print(json.dumps({"ok": True, "path": str(path), "gateway": config.gateway.id,
                          "buses": len(config.buses), "sensors": len(config.sensors)}))
    else:
        print(_colour(_("ok"), "32") + "  " + _("{path}: gateway {gateway}, {buses} buses, {sensors} sensors").format(
            path=path, gateway=config.gateway.id, buses=len(config.buses), sensors=len(config.sensors)))
    return EX_OK


def cmd_demo(args) -> int:
    from edge.demo import run_demo

    _setup_logging(args.verbose)
    return run_demo(broker=args.broker, seconds=args.seconds, gateway_id=args.gateway_id, as_json=args.json,
                    lines=args.lines)


def cmd_replay(args) -> int:
    from edge.replay import TextTable, TraceReplay, json_line

    config = load_config(config_path(args))
    zone = zoneinfo.ZoneInfo(config.gateway.timezone)
    table = None if args.json else TextTable(config.rules, zone)
    replayed = TraceReplay(config, args.trace)
    # Each line is flushed as it is made: a long trace shows its first alarms at once, and nothing piles up.
    for transition in replayed:
        if table is None:
            print(json_line(transition, zone), flush=True)
            continue
        if replayed.transitions == 1:
            print(table.header)
        print(table.line(transition), flush=True)
    for sensor, quantity in replayed.unwatched:
        _warn(_("no rule watches {quantity} of sensor {sensor} in the trace").format(quantity=quantity, sensor=sensor))
    if replayed.more_unwatched:
        _warn(_("more sensors in the trace that no rule watches; only the first {count} are named").format(
            count=len(replayed.unwatched)))
    if table is not None:
        print(ngettext("{rows} reading replayed, {count} alarm transitions",
                       "{rows} readings replayed, {count} alarm transitions", replayed.rows).format(
            rows=replayed.rows, count=replayed.transitions))
    return EX_OK


def cmd_evaluate(args) -> int:
    return evaluate_cli.run(args, config_path(args), _warn)


def cmd_explain(args) -> int:
    return explain.run(args, config_path(args), lambda name, request: _ask_agent(args, name, request), CommandRefused)


def cmd_doctor(args) -> int:
    return doctor_cli.run(args, config_path(args))


def cmd_outbox(args) -> int:
    return outbox_cli.run(args, config_path(args), lambda: _ask_agent(args, "health"))


def cmd_watch(args) -> int:
    return watch.run(args, config_path(args), CommandRefused)


def cmd_alarm_list(args) -> int:
    return alarm_cli.run_list(args, lambda name, request: _ask_agent(args, name, request))


def cmd_alarm_test(args) -> int:
    return alarm_cli.run_test(args, lambda name, request: _ask_agent(args, name, request))


def cmd_logs(args) -> int:
    return logs.run(args)


def _warn(message: str) -> None:
    print(_colour(_("warning"), "33", sys.stderr) + ": " + message, file=sys.stderr)


def _ask_agent(args, name: str, request_args: dict | None = None) -> dict:
    """Send one command to the running agent over its control socket; exit 1 if it refuses."""
    from edge.control import request

    reply = request(load_config(config_path(args)).control.socket, name, request_args)
    if not reply.get("ok"):
        raise CommandRefused(reply.get("error") or _("the agent refused the request"))
    return reply["result"]


def cmd_status(args) -> int:
    health = _ask_agent(args, "health")
    if args.json:
        print(json.dumps(health, ensure_ascii=False))
        return EX_OK
    uplink = health.get("uplink") or {}
    outbox = health.get("outbox") or {}
    connected = _colour(_("connected"), "32") if uplink.get("connected") else _colour(_("not connected"), "31")
    print(_("broker     {state}  {broker}").format(state=connected, broker=uplink.get("broker") or ""))
    if uplink.get("last_error"):
        print("           " + uplink["last_error"])
    print(_("outbox     {depth} records waiting, {used} of {limit} MiB, {dropped} dropped so far").format(
        depth=outbox.get("depth"), used=round((outbox.get("bytes_used") or 0) / 2**20, 1),
        limit=round((outbox.get("max_bytes") or 0) / 2**20), dropped=outbox.get("dropped_total")))
    if outbox.get("unavailable") or outbox.get("disk_full"):
        problem = outbox.get("unavailable") or _("the disk is full")
        print("           " + _colour(_("not stored: {problem}; {pending} records only in memory").format(
            problem=problem, pending=outbox.get("pending")), "31"))
    print(_("clock      synced: {synced}    uptime {uptime} s").format(
        synced=health.get("clock_synced"), uptime=health.get("uptime_s")))
    for learning in health.get("learning") or []:
        if learning["warmup_until"] is None:
            print(_("routine    {alarm}: learned; linli explain {alarm} shows what").format(alarm=learning["alarm"]))
        else:
            until = datetime.datetime.fromtimestamp(learning["warmup_until"] / 1000).astimezone()
            print(_("routine    {alarm}: learning the home's routine until {until}; the fixed rule holds "
                    "meanwhile").format(alarm=learning["alarm"], until=until.strftime("%Y-%m-%d %H:%M")))
    print()
    # Translated words outside the f-strings: xgettext does not look inside their {fields}.
    print(" ".join((_("sensor").ljust(20), _("bus").ljust(10), _("state").ljust(8), _("reads").rjust(7)))
          + "  " + _("last error"))
    for bus in health.get("buses", []):
        for sensor, st in bus["sensors"].items():
            state = _colour(_("ok"), "32") if st["ok"] else _colour(_("failing"), "31")
            pad = " " * max(0, 8 - len(_("ok") if st["ok"] else _("failing")))
            print(f"{sensor:<20} {bus['bus']:<10} {state}{pad} {st['reads']:>7}  {st['last_error'] or ''}")
    return EX_OK


def cmd_away(args) -> int:
    until = args.until if args.state == "on" else None
    if args.state == "on" and until is None:
        raise CommandRefused(_("away on needs --until, e.g. --until 2026-12-01T18:00"))
    result = _ask_agent(args, "away", {"until": until})
    if args.json:
        print(json.dumps(result))
    elif result["away"]:
        print(_("away until {until}: rules marked suppress_when_away are quiet").format(until=until))
    else:
        print(_("back home: every rule is active again"))
    return EX_OK


def cmd_alarm_ack(args) -> int:
    result = _ask_agent(args, "alarm_ack", {"alarm": args.alarm})
    if args.json:
        print(json.dumps(result))
    else:
        states = ", ".join(result["states"]) or _("nothing to acknowledge")
        print(f"{args.alarm}: {states}")
    return EX_OK


def cmd_decode(args) -> int:
    return decode_cli.run(args, _colour)


def _print_probe(result) -> None:
    """The probe as a short table on stdout; what went wrong on stderr."""
    from edge.decode import rows
    from edge.probe import hex_dump

    print(_("port").ljust(10) + f"{result.port}  ({result.line})")
    for number, exchange in enumerate(result.exchanges, 1):
        last = number == len(result.exchanges)
        print(_("sent").ljust(10) + exchange.request.hex(" ") + "  " + _("at {ms} ms").format(ms=exchange.at_ms))
        if not exchange.answer:
            print(_("answer").ljust(10) + _colour(_("none"), "31"))
            continue
        print(_("answer").ljust(10) + _("{count} bytes, first after {first} ms, last after {last} ms").format(
            count=len(exchange.answer), first=exchange.first_byte_ms, last=exchange.last_byte_ms))
        for line in hex_dump(bytes(exchange.answer), result.offset if last else None):
            print(" " * 10 + line)
    if result.decoded is not None:
        print(_("decoded"))
        table = rows(result.decoded)
        width = max(len(field) for field, _value in table)
        for field, value in table:
            print(f"  {field:<{width}}  {value}")
    if result.error is not None:
        where = "" if result.offset is None else _(" (at byte {offset})").format(offset=result.offset)
        print(_colour(_("error"), "31", sys.stderr) + f": {result.error}{where}", file=sys.stderr)
    if result.suspects:
        print(_("usual suspects, most likely first:"), file=sys.stderr)
        for suspect in result.suspects:
            print(f"  - {suspect}", file=sys.stderr)


def cmd_probe(args) -> int:
    from edge.probe import probe_serial

    result = probe_serial(args.port, args.protocol, address=args.address, baudrate=args.baudrate,
                          parity=args.parity, timeout=args.timeout, register=args.register, count=args.count,
                          function=args.function, di_order=args.di_order, meter_type=args.meter_type)
    if args.json:
        print(json.dumps(result.as_json(), ensure_ascii=False))
    else:
        _print_probe(result)
    return result.exit_code


def cmd_scan_mbus(args) -> int:
    import time

    from edge.probe import EX_DATAERR, EX_UNAVAILABLE, mbus_answer_timeout, open_bus, scan_mbus, scan_range

    addresses = scan_range(args.first, args.last)
    timeout = args.timeout or mbus_answer_timeout(args.baudrate)
    bus = open_bus(args.port, "mbus", args.baudrate, args.parity, timeout)
    progress = sys.stderr.isatty()
    found, collisions, scanned, interrupted = [], [], 0, False
    started = time.monotonic()
    if not args.json:
        print(_("address").ljust(9) + _("id").ljust(10) + _("maker").ljust(7) + _("medium").ljust(12) + _("version"))
    try:
        for result in scan_mbus(bus, addresses):
            scanned += 1
            if progress:
                print("\r\033[K" + _("scanning address {address} ({done} of {total})").format(
                    address=result.address, done=scanned, total=len(addresses)), end="", file=sys.stderr, flush=True)
            if result.state == "silent":
                continue
            (found if result.state == "found" else collisions).append(result)
            if args.json:
                continue
            if progress:
                print("\r\033[K", end="", file=sys.stderr, flush=True)
            if result.state == "found":
                print(f"{result.address:<9}{result.id or '-':<10}{result.manufacturer or '-':<7}"
                      f"{result.medium or '-':<12}{'-' if result.version is None else result.version}"
                      + (f"  {result.error}" if result.error else ""))
            else:
                print(f"{result.address:<9}" + _colour(_("collision"), "33") + f": {result.error}")
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if progress:
            print("\r\033[K", end="", file=sys.stderr, flush=True)
    elapsed = round(time.monotonic() - started, 1)
    if args.json:
        print(json.dumps({"port": args.port, "from": args.first, "to": args.last, "scanned": scanned,
                          "found": [r.as_json() for r in found], "collisions": [r.as_json() for r in collisions],
                          "elapsed_s": elapsed, "interrupted": interrupted}, ensure_ascii=False))
    else:
        if interrupted:
            print(_("interrupted after {scanned} of {total} addresses").format(scanned=scanned, total=len(addresses)))
        print(ngettext("{count} meter found in {seconds} s (addresses {first}–{last})",
                       "{count} meters found in {seconds} s (addresses {first}–{last})", len(found)).format(
            count=len(found), seconds=elapsed, first=args.first, last=args.last))
    if interrupted:
        return EX_INTERRUPTED
    return EX_OK if found else EX_DATAERR if collisions else EX_UNAVAILABLE


def cmd_scan_cjt188(args) -> int:
    from edge.probe import open_bus, scan_cjt188

    result = scan_cjt188(open_bus(args.port, "cjt188", args.baudrate, args.parity, args.timeout), args.di_order)
    if args.json:
        print(json.dumps(result.as_json(), ensure_ascii=False))
    elif result.error is None:
        print(_("address").ljust(12) + f"{result.address}")
        print(_("meter type").ljust(12) + f"{result.meter_type}")
        print(_("edition").ljust(12) + f"{result.di_order}")
    if result.error is not None and not args.json:
        print(_colour(_("error"), "31", sys.stderr) + f": {result.error}", file=sys.stderr)
        if result.suspects:
            print(_("usual suspects, most likely first:"), file=sys.stderr)
            for suspect in result.suspects:
                print(f"  - {suspect}", file=sys.stderr)
    return result.exit_code


def cmd_version(args) -> int:
    print(f"linli-edge {__version__}")
    return EX_OK


# --- parser ----------------------------------------------------------------------------------------------
EPILOG = _("""examples:
  linli config check /etc/linli/edge.toml   validate a config, open no device
  linli run --config /etc/linli/edge.toml   start the agent (systemd does this)
  linli demo --for 60                       simulated devices -> agent -> local broker, for a minute
--config may come before or after the command; given twice, the one after wins.
Without it the file named by LINLI_CONFIG is read, else /etc/linli/edge.toml.
""")

REPLAY_EPILOG = _("""The trace's ts is ISO 8601 with an offset or epoch milliseconds, rows in time order;
value is a number, true or false. Timers fire at their due times between rows; after
the last row the clock stops. Each alarm is printed as soon as the rules raise it, so a
bad row stops the replay after the alarms of the rows before it. Exit status 0, 65 for
a bad trace (the message names the line), 66 when it is missing, 74 when it cannot be read.
example: linli replay --config edge.toml meter-week.csv --json
""")

PROBE_EPILOG = _("""examples:
  linli probe serial /dev/ttyUSB0 --protocol mbus
      REQ_UD2 to address 254, which any single meter answers
  linli probe serial /dev/ttyUSB0 --protocol mbus --address 12345678
      select the meter by its secondary id, then REQ_UD2 to address 253
  linli probe serial /dev/ttyUSB0 --protocol cjt188
      read the address of the one meter connected, by broadcast
  linli probe serial /dev/ttyUSB0 --protocol cjt188 --address 00000805000001
      read that meter's water data (DI 901F)
  linli probe serial /dev/ttyUSB1 --protocol modbus --address 1 --count 7 --json
Times count from the moment the request is handed to the port, so they include
the request's own time on the wire.
exit status 0 answered and decoded, 65 a garbled answer, 69 no answer, 74 the port failed
""")

SCAN_MBUS_EPILOG = _("""SND_NKE to each address in turn; where a meter acknowledges, REQ_UD2 names it
(id, manufacturer, medium). A garbled answer is shown as a collision: two meters
share that address (or the line is noisy). Ctrl-C prints what was found so far.
example: linli scan mbus /dev/ttyUSB0 --from 1 --to 20
exit status 0 when a meter was found, 65 only collisions, 69 none, 74 the port failed, 130 interrupted
""")

SCAN_CJT188_EPILOG = _("""Every meter answers a broadcast, so connect only ONE meter: with two or more the
answers collide.
example: linli scan cjt188 /dev/ttyUSB0 --json
exit status 0 found, 65 a garbled answer, 69 no answer, 74 the port failed
""")


def _seconds(text: str) -> float:
    """A timeout on the command line: 0.01 to 60 seconds."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.01 <= value <= 60:
        raise argparse.ArgumentTypeError(_("{value!r} is not a time between 0.01 and 60 seconds").format(value=text))
    return value


def _add_config_option(parser: argparse.ArgumentParser) -> None:
    """``--config FILE``: on the main parser and on each command that reads the configuration.

    SUPPRESS as the default everywhere: a command's parser then sets the value only when the option
    follows the command, so it replaces one given before the command and otherwise leaves it alone.
    :func:`config_path` falls back to LINLI_CONFIG and the default path.
    """
    parser.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                        help=_("configuration file (default: $LINLI_CONFIG, else {path})").format(path=DEFAULT_PATH))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="linli", description=_("linli-edge gateway agent and technician tool"),
                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_config_option(parser)
    parser.add_argument("-v", "--verbose", action="count", default=0, help=_("more log output (-vv: debug)"))
    parser.add_argument("--debug", action="store_true", help=_("show tracebacks of internal errors"))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("run", help=_("run the agent in the foreground"),
                       epilog=_("example: linli run --config /etc/linli/edge.toml"))
    _add_config_option(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("config", help=_("configuration tools"))
    config_sub = p.add_subparsers(dest="config_command", metavar="SUBCOMMAND", parser_class=_Parser)
    c = config_sub.add_parser("check", help=_("validate a configuration file without opening any device"),
                              epilog=_("examples:\n  linli config check /etc/linli/edge.toml\n"
                                       "  linli config check --config /etc/linli/edge.toml --json\n"
                                       "exit status 0 when valid, 78 when not"),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("path", nargs="?", help=_("file to check (default: --config)"))
    _add_config_option(c)
    c.add_argument("--json", action="store_true", help=_("machine-readable output"))
    c.set_defaults(func=cmd_config_check)
    config_apply_cli.add_command(config_sub, _add_config_option, config_path)

    p = sub.add_parser("demo", help=_("simulated devices -> agent -> local MQTT broker, shown live"),
                       epilog=_("example: linli demo --for 60 --gateway-id gw-demo"))
    p.add_argument("--broker", metavar="HOST:PORT", help=_("use this broker instead of starting one"))
    p.add_argument("--for", dest="seconds", type=float, metavar="SECONDS", help=_("stop cleanly after this long"))
    p.add_argument("--gateway-id", default="gw-demo", help=_("gateway id (default: %(default)s)"))
    p.add_argument("--json", action="store_true", help=_("print each MQTT message as one JSON line"))
    p.add_argument("--lines", action="store_true",
                   help=_("print each MQTT message as a line instead of the live view a terminal gets"))
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("replay", help=_("run the rules over a recorded trace and print the alarms they raise"),
                       epilog=REPLAY_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_config_option(p)
    p.add_argument("trace", metavar="TRACE.csv", help=_("CSV with the header ts,sensor,quantity,value[,quality]"))
    p.add_argument("--json", action="store_true", help=_("one JSON object per alarm transition"))
    p.set_defaults(func=cmd_replay)

    evaluate_cli.add_command(sub, _add_config_option, cmd_evaluate)
    explain.add_command(sub, _add_config_option, cmd_explain)
    doctor_cli.add_command(sub, _add_config_option, cmd_doctor)
    outbox_cli.add_command(sub, _add_config_option, cmd_outbox)

    p = sub.add_parser("status", help=_("what the running agent sees: broker, outbox, sensors"),
                       epilog=_("examples:\n  linli status\n  linli status --config /etc/linli/edge.toml --json"),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_config_option(p)
    p.add_argument("--json", action="store_true", help=_("machine-readable output"))
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("away", help=_("the resident is away: quiet the rules marked suppress_when_away"),
                       epilog=_("examples:\n  linli away on --until 2026-12-01T18:00\n  linli away off"),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("state", choices=("on", "off"))
    _add_config_option(p)
    p.add_argument("--until", metavar="TIME", help=_("ISO 8601 time, local to the gateway without an offset"))
    p.add_argument("--json", action="store_true", help=_("machine-readable output"))
    p.set_defaults(func=cmd_away)

    p = sub.add_parser("alarm", help=_("alarm tools"))
    alarm_sub = p.add_subparsers(dest="alarm_command", metavar="SUBCOMMAND", parser_class=_Parser)
    a = alarm_sub.add_parser("ack", help=_("acknowledge an alarm (silences a latched one)"),
                             epilog=_("example: linli alarm ack pump-pressure/low"))
    a.add_argument("alarm", metavar="SENSOR/RULE")
    _add_config_option(a)
    a.add_argument("--json", action="store_true", help=_("machine-readable output"))
    a.set_defaults(func=cmd_alarm_ack)
    alarm_cli.add_commands(alarm_sub, _add_config_option, cmd_alarm_list, cmd_alarm_test)
    watch.add_command(sub, _add_config_option, cmd_watch)
    logs.add_command(sub, cmd_logs)

    decode_cli.add_command(sub, cmd_decode)

    p = sub.add_parser("probe", help=_("send one request to a device and show the bytes both ways"))
    probe_sub = p.add_subparsers(dest="probe_command", metavar="SUBCOMMAND", parser_class=_Parser)
    c = probe_sub.add_parser("serial", help=_("one request on a serial port: raw bytes, timing, decoded answer"),
                             epilog=PROBE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("port", metavar="PORT", help=_("serial device, e.g. /dev/ttyUSB0"))
    c.add_argument("--protocol", required=True, choices=("mbus", "cjt188", "modbus"))
    c.add_argument("--address", metavar="A", help=_("M-Bus: 0–250, 254 or an 8-digit secondary id; CJ/T 188: "
                                                    "14 digits; Modbus: unit 1–247"))
    c.add_argument("--baudrate", type=int, choices=STANDARD_BAUDRATES, metavar="B",
                   help=_("line speed (default: 2400 for mbus and cjt188, 9600 for modbus)"))
    c.add_argument("--parity", choices=("N", "E", "O"), help=_("default: E for mbus and cjt188, N for modbus"))
    c.add_argument("--timeout", type=_seconds, default=1.0, metavar="SECONDS",
                   help=_("how long to wait for the first answer byte (default: %(default)s)"))
    c.add_argument("--register", type=int, help=_("Modbus: first register to read (default: 0)"))
    c.add_argument("--count", type=int, help=_("Modbus: how many registers (default: 1)"))
    c.add_argument("--function", type=int, choices=(3, 4),
                   help=_("Modbus: 3 holding or 4 input registers (default: 3)"))
    c.add_argument("--di-order", choices=("2004", "2018"), help=_("CJ/T 188: byte order of the DI (default: 2004)"))
    c.add_argument("--meter-type", choices=tuple(METER_TYPE_CODES), metavar="TYPE",
                   help=_("CJ/T 188: meter type asked for: {types} (default: cold_water)").format(
                       types=", ".join(METER_TYPE_CODES)))
    c.add_argument("--json", action="store_true", help=_("machine-readable output"))
    c.set_defaults(func=cmd_probe)

    p = sub.add_parser("scan", help=_("find the meters on a serial line"))
    scan_sub = p.add_subparsers(dest="scan_command", metavar="SUBCOMMAND", parser_class=_Parser)
    c = scan_sub.add_parser("mbus", help=_("find M-Bus primary addresses (SND_NKE to each, REQ_UD2 where one answers)"),
                            epilog=SCAN_MBUS_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("port", metavar="PORT", help=_("serial device, e.g. /dev/ttyUSB0"))
    c.add_argument("--from", dest="first", type=int, default=0, metavar="ADDRESS",
                   help=_("first address (default: %(default)s, where new meters usually sit)"))
    c.add_argument("--to", dest="last", type=int, default=250, metavar="ADDRESS",
                   help=_("last address (default: %(default)s)"))
    c.add_argument("--baudrate", type=int, choices=STANDARD_BAUDRATES, default=2400, metavar="B",
                   help=_("line speed (default: %(default)s)"))
    c.add_argument("--parity", choices=("N", "E", "O"), default="E", help=_("default: %(default)s"))
    c.add_argument("--timeout", type=_seconds, metavar="SECONDS",
                   help=_("wait per address (default: what EN 13757-2 allows at the baud rate, 0.24 s at 2400)"))
    c.add_argument("--json", action="store_true", help=_("machine-readable output"))
    c.set_defaults(func=cmd_scan_mbus)
    c = scan_sub.add_parser("cjt188", help=_("read the address of the one CJ/T 188 meter connected, by broadcast"),
                            epilog=SCAN_CJT188_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("port", metavar="PORT", help=_("serial device, e.g. /dev/ttyUSB0"))
    c.add_argument("--di-order", choices=("2004", "2018", "auto"), default="auto",
                   help=_("edition to ask in; auto tries 2004, then 2018 (default: %(default)s)"))
    c.add_argument("--baudrate", type=int, choices=STANDARD_BAUDRATES, default=2400, metavar="B",
                   help=_("line speed (default: %(default)s)"))
    c.add_argument("--parity", choices=("N", "E", "O"), default="E", help=_("default: %(default)s"))
    c.add_argument("--timeout", type=_seconds, default=1.0, metavar="SECONDS",
                   help=_("how long to wait for the first answer byte (default: %(default)s)"))
    c.add_argument("--json", action="store_true", help=_("machine-readable output"))
    c.set_defaults(func=cmd_scan_cjt188)

    p = sub.add_parser("version", help=_("print the version"))
    p.set_defaults(func=cmd_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:  # "linli" or "linli config" alone: show what can follow
        parser.print_help(sys.stderr)
        return EX_USAGE
    try:
        return func(args)
    except LinliError as exc:
        print(_colour(_("error"), "31", sys.stderr) + ": " + str(exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EX_INTERRUPTED
    except BrokenPipeError:  # "linli decode … | head": the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EX_OK
    except Exception as exc:
        if args.debug:
            raise
        print(_("internal error: {error} (run again with --debug for details)").format(error=exc), file=sys.stderr)
        return EX_SOFTWARE


if __name__ == "__main__":
    sys.exit(main())
