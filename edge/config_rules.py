"""The ``[[rule]]`` section: the keys every rule has, then its kind's own keys, declared by the kind.

Nothing here knows one kind from another: the kind named by ``kind`` is looked
up in :mod:`edge.rules.kinds`, and its ``options`` and ``check`` judge the rest
of the table.

>>> from edge.config import validate
>>> validate({"gateway": {"id": "gw-1", "grid": "b07"}, "rule": [{"kind": "treshold"}]})
Traceback (most recent call last):
edge.errors.ConfigError: the configuration has 4 problems:
  rule[0].id: is required
  rule[0].sensor: is required
  rule[0].quantity: is required
  rule[0].kind: unknown rule kind "treshold"; did you mean "threshold"?
"""

from __future__ import annotations

import difflib
from typing import Any

from drivers.options import Option
from edge.config_problems import show, unknown_choice
from edge.config_tables import Context, Table, check_name, not_empty, present
from edge.i18n import _
from edge.rules import SEVERITIES, RuleConfig, kinds, parse_window


def _window(value: str) -> str | None:
    try:
        parse_window(value)
    except ValueError:
        return _('expected a daily window like "22:00-06:00" (start and end differ), got {value}').format(
            value=show(value))
    return None


RULE_OPTIONS = {
    "id": Option("str", required=True, check=check_name,
                 help="the rule's name; its alarm is <sensor>/<id>, which must be unique; 1 to 64 characters of "
                      "a-z, 0-9, _ and -, starting with a letter or digit"),
    "sensor": Option("str", required=True, help="id of the [[sensor]] watched"),
    "quantity": Option("str", required=True, check=not_empty,
                       help="a quantity that sensor reports (checked against its driver where the driver says)"),
    "kind": Option("str", required=True,
                   help="what the rule checks: " + ", ".join(kinds.kind_names()) + "; its keys follow"),
    "severity": Option("str", default="warning", choices=SEVERITIES,
                       help="carried by every transition; outputs and dashboards go by it"),
    "message": Option("str", check=not_empty,
                      help="replaces the text made from the rule, in both languages; \": acknowledged\" and "
                           "\": cleared\" are appended for those transitions"),
    "active": Option("str", check=_window,
                     help='daily window "HH:MM-HH:MM" in the gateway\'s timezone in which the alarm may be raised; '
                          'start and end differ, an end before the start crosses midnight; default: always'),
    "latch": Option("bool", default=False,
                    help="once raised, the alarm stays raised after its condition is gone, until acknowledged"),
    "suppress_when_away": Option("bool", default=False,
                                 help="the rule raises nothing while the home is set to away"),
}


def check_rule(table: Table, ctx: Context) -> RuleConfig | None:
    """One ``[[rule]]`` table: its common keys, its input, then its kind's own keys."""
    common = {k: v for k, v in table.raw.items() if k in RULE_OPTIONS}
    rest = {k: v for k, v in table.raw.items() if k not in RULE_OPTIONS}
    values = table.check(RULE_OPTIONS, common)
    kind = values.get("kind")
    if kind is not None and kind not in kinds.kind_names():
        table.problem("kind", unknown_choice(_('unknown rule kind {value}; did you mean "{suggestion}"?'),
                                             _("unknown rule kind {value}; expected one of {choices}"),
                                             kind, kinds.kind_names()))
        kind = None
    _rule_input(table, ctx, values.get("sensor"), values.get("quantity"))
    if values.get("id") is not None and values.get("sensor") is not None:
        ctx.claim(table, "rule", "id", f"{values['sensor']}/{values['id']}")
        ctx.alarm_severities.setdefault(f"{values['sensor']}/{values['id']}", values.get("severity", "warning"))
    # Without a usable kind its keys cannot be judged: reporting them all as unknown would mislead.
    params = _rule_params(table, kind, rest) if kind is not None else {}
    if table.problems:
        return None
    active = values.get("active")
    return RuleConfig(id=values["id"], sensor=values["sensor"], quantity=values["quantity"], kind=kind,
                      severity=values["severity"], message=values.get("message"),
                      active=parse_window(active) if active is not None else None,
                      latch=values["latch"], suppress_when_away=values["suppress_when_away"], params=params)


def _rule_input(table: Table, ctx: Context, sensor: str | None, quantity: str | None) -> None:
    if sensor is None:
        return
    if sensor not in ctx.sensor_quantities:
        close = difflib.get_close_matches(sensor, list(ctx.sensor_quantities), n=1)
        table.problem("sensor", _('no [[sensor]] with id {value}; did you mean "{suggestion}"?').format(
            value=show(sensor), suggestion=close[0]) if close else
            _("no [[sensor]] with id {value}").format(value=show(sensor)))
        return
    reported = ctx.sensor_quantities[sensor]
    # None: the driver could not be loaded (reported there); (): the driver does not say what it reports.
    if quantity is not None and reported and quantity not in reported:
        table.problem("quantity", _('sensor "{sensor}" does not report {value}; it reports {choices}').format(
            sensor=sensor, value=show(quantity), choices=", ".join(show(q) for q in reported)))


def _rule_params(table: Table, name: str, raw: dict[str, Any]) -> dict[str, Any]:
    """The kind's own keys, one by one, then together (its ``check`` sees the values that passed one by one)."""
    declared = kinds.kind(name)
    params = present(table.check(declared.spec(raw), raw, siblings=tuple(RULE_OPTIONS)))
    if declared.check is not None:
        declared.check(params, table.raw, table.problem, table.path)
    return params
