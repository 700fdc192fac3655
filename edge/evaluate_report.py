"""What ``linli evaluate`` prints: per rule, its false alarms, its incident delays and its sensitivity curve.

The figures come from an :class:`edge.evaluate.Evaluation` that has finished. Rates
are per home per 30 days; delays are in hours, and a delay is the nearest-rank
percentile of all the rule's incidents with the undetected ones infinitely late, so
a median or p90 later than the horizon prints as ``> 7d`` (``null`` in JSON).
"""

from __future__ import annotations

import json
import math
from typing import Any

from edge.evaluate import DAY_MS, HOUR_MS, Evaluation, Measure, RuleTally, duration_label
from edge.i18n import _, ngettext
from edge.replay import display_width


def per_30_days(count: int, observed_ms: int) -> float | None:
    """``count`` per home per 30 days over ``observed_ms`` of homes observed; ``None`` when nothing was observed.

    >>> per_30_days(2, 14 * 86_400_000)
    4.29
    """
    return None if observed_ms <= 0 else round(count * 30 * DAY_MS / observed_ms, 2)


def nearest_rank(delays: list[float], share: float) -> float | None:
    """The smallest delay with at least ``share`` of ``delays`` at or below it; ``None`` without any.

    >>> nearest_rank([3.0, 1.0, math.inf, 2.0], 0.5), nearest_rank([3.0, 1.0, math.inf, 2.0], 0.9)
    (2.0, inf)
    """
    if not delays:
        return None
    ordered = sorted(delays)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _hours(delay: float | None) -> float | None:
    return None if delay is None or math.isinf(delay) else round(delay / HOUR_MS, 2)


def _share(delays: list[float], within: float) -> float | None:
    return None if not delays else round(sum(delay <= within for delay in delays) / len(delays), 4)


def alarms(measure: Measure, observed_ms: int) -> dict[str, dict[str, Any]]:
    counts = {"nuisance": measure.nuisance, "welfare": measure.welfare, "all": measure.nuisance + measure.welfare}
    return {name: {"count": count, "per_30d": per_30_days(count, observed_ms)} for name, count in counts.items()}


def incidents(measure: Measure) -> dict[str, Any]:
    """Count, median and p90 delay in hours (``None``: later than the horizon), shares within 24 h and at all."""
    return {"count": len(measure.delays),
            "median_delay_h": _hours(nearest_rank(measure.delays, 0.5)),
            "p90_delay_h": _hours(nearest_rank(measure.delays, 0.9)),
            "within_24h": _share(measure.delays, DAY_MS),
            "detected": _share(measure.delays, math.nextafter(math.inf, 0))}   # every finite delay


def rule_entry(tally: RuleTally) -> dict[str, Any]:
    """One rule as ``--json`` prints it."""
    entry: dict[str, Any] = {
        "rule": tally.rule.alarm, "kind": tally.rule.kind, "homes": tally.homes,
        "days": round(tally.observed_ms / DAY_MS, 3),
        "alarms": alarms(tally.own, tally.observed_ms), "incidents": incidents(tally.own), "curve": []}
    for measure in tally.variants:
        rates = alarms(measure, tally.observed_ms)
        found = incidents(measure)
        entry["curve"].append({
            "option": tally.option, "value": measure.label,
            "nuisance_per_30d": rates["nuisance"]["per_30d"], "all_per_30d": rates["all"]["per_30d"],
            "median_delay_h": found["median_delay_h"], "within_24h": found["within_24h"]})
    return entry


def as_json(evaluation: Evaluation) -> str:
    settings = evaluation.settings
    return json.dumps({
        "homes": evaluation.home_count, "days": round(evaluation.observed_ms / DAY_MS, 3),
        "readings": evaluation.rows, "incidents_per_home": settings.incidents, "seed": settings.seed,
        "horizon_h": settings.horizon_ms / HOUR_MS, "use": settings.use,
        "rules": [rule_entry(tally) for tally in evaluation.tallies]}, ensure_ascii=False)


# --- text --------------------------------------------------------------------------------------------------
def as_text(evaluation: Evaluation) -> str:
    settings = evaluation.settings
    later = "> " + duration_label(settings.horizon_ms / 1000)
    lines = [ngettext("{homes} home, {days} days observed, {rows} readings",
                      "{homes} homes, {days} days observed, {rows} readings", evaluation.home_count).format(
        homes=evaluation.home_count, days=_number(evaluation.observed_ms / DAY_MS, 1), rows=evaluation.rows)]
    for tally in evaluation.tallies:
        entry = rule_entry(tally)
        lines += ["", ngettext("{rule} ({kind}): {homes} home, {days} days",
                               "{rule} ({kind}): {homes} homes, {days} days", tally.homes).format(
            rule=entry["rule"], kind=entry["kind"], homes=tally.homes, days=_number(entry["days"], 1))]
        rates = entry["alarms"]
        lines.append("  " + _("false alarms per home per 30 days: nuisance {nuisance}, welfare check {welfare}, "
                              "all {all}").format(**{name: _rate(rates[name]) for name in rates}))
        found = entry["incidents"]
        if found["count"]:
            lines.append("  " + _("{count} incidents: median delay {median}, p90 {p90}, within 24 h {within}, "
                                  "detected {detected}").format(
                count=found["count"], median=_delay(found["median_delay_h"], later),
                p90=_delay(found["p90_delay_h"], later), within=_percent(found["within_24h"]),
                detected=_percent(found["detected"])))
        elif settings.incidents and tally.homes:
            lines.append("  " + _("no incidents: no home of this rule is observed for longer than the horizon "
                                  "({horizon})").format(horizon=duration_label(settings.horizon_ms / 1000)))
        if entry["curve"]:
            lines += ["  " + line for line in _curve(entry["curve"], tally.option, later, bool(found["count"]))]
    return "\n".join(lines)


def _curve(curve: list[dict[str, Any]], option: str, later: str, with_incidents: bool) -> list[str]:
    titles = [option, _("nuisance/30d"), _("all/30d")]
    rows = [[point["value"], _number(point["nuisance_per_30d"], 2), _number(point["all_per_30d"], 2)]
            for point in curve]
    if with_incidents:
        titles += [_("median delay"), _("within 24 h")]
        for row, point in zip(rows, curve, strict=True):
            row += [_delay(point["median_delay_h"], later), _percent(point["within_24h"])]
    widths = [max(display_width(cell) for cell in column) for column in zip(titles, *rows, strict=True)]
    return ["  ".join(cell + " " * (width - display_width(cell)) for cell, width in zip(row, widths, strict=True))
            .rstrip() for row in (titles, *rows)]


def _rate(rate: dict[str, Any]) -> str:
    return f"{_number(rate['per_30d'], 2)} ({rate['count']})"


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _delay(hours: float | None, later: str) -> str:
    return later if hours is None else f"{hours:.1f} h"


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{round(share * 100)} %"
