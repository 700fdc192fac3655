"""``linli explain --trace``: what a routine rule learns from four real months of a person living alone."""

from __future__ import annotations

import json
import subprocess

from tests.agent_helpers import linli
from tests.test_rules_scenarios import TRACES

CONFIG = str(TRACES / "daiad_routine.toml")
TRACE = str(TRACES / "daiad_alone_spring.csv")
ALARM = "daiad-f7d6557e/routine"


def explain(*args: str, env: dict | None = None) -> tuple[int, str, str]:
    proc = linli("explain", "--config", CONFIG, *args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                 text=True)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


def test_the_json_says_what_was_learned_per_hour_and_where_the_last_silence_stands():
    code, out, err = explain("--trace", TRACE, ALARM, "--json")
    assert code == 0, err
    found = json.loads(out)
    assert (found["alarm"], found["kind"], found["warmup_until"]) == (ALARM, "routine", None)
    assert [row["hour"] for row in found["hours"]] == list(range(24))
    for row in found["hours"]:
        for day_type in ("weekday", "weekend"):
            learned = row[day_type]
            assert learned["silences"] > 5, "four months teach every hour something"
            assert learned["median_h"] < learned["usual_longest_h"] < learned["alarm_after_h"] <= 20
            assert 0 <= learned["longer_share"] < 0.01
    # The trace ends at 01:16 local time, three hours into the night that began at 22:16.
    silence = found["silence"]
    assert abs(found["now"] - silence["since"] - 3 * 3_600_000) < 60_000 and silence["hours"] == 3.0
    assert silence["since"] < silence["usual_by"] < silence["alarm_at"] and not silence["raised"]
    night = found["hours"][22]["weekday"]    # Thursday 22:16: a weekday night, as the table has it (to 0.01 h)
    assert abs(silence["alarm_at"] - silence["since"] - night["alarm_after_h"] * 3_600_000) <= 18_000


def test_the_table_has_a_heading_the_silence_and_a_row_per_hour_in_both_languages():
    code, out, err = explain("--trace", TRACE, ALARM)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"{ALARM} (routine), as of 2016-07-01 01:16"
    assert lines[1].startswith("silent since 2016-06-30 22:16 (3 h); this home almost always uses water by ")
    assert lines[3].split() == ["weekdays", "weekends"]
    assert [line.split()[0] for line in lines[5:]] == [f"{hour:02d}" for hour in range(24)]
    code, out, err = explain("--trace", TRACE, ALARM, env={"LANGUAGE": "zh_CN", "LANG": "zh_CN.UTF-8"})
    assert code == 0, err
    assert "自 2016-06-30 22:16 起无用水（3 小时）" in out and "工作日" in out


def test_a_rule_that_learns_nothing_or_an_unknown_alarm_is_refused_with_the_rules_that_learn():
    code, out, err = explain("--trace", TRACE, "daiad-f7d6557e/no-water-12h")
    assert code == 1 and out == ""
    assert "is a rule of kind inactivity, which learns nothing; rules that learn: daiad-f7d6557e/routine" in err
    code, _, err = explain("--trace", TRACE, "daiad-f7d6557e/routne")
    assert code == 1 and "no rule makes the alarm 'daiad-f7d6557e/routne'" in err
    assert "Traceback" not in err


def test_a_trace_that_is_missing_or_bad_gets_the_replay_s_exit_status(tmp_path):
    code, _, err = explain("--trace", str(tmp_path / "none.csv"), ALARM)
    assert code == 66 and "none.csv" in err
    bad = tmp_path / "bad.csv"
    bad.write_text("ts,sensor,quantity,value\n1459468800000,daiad-f7d6557e,volume,lots\n")
    code, _, err = explain("--trace", str(bad), ALARM)
    assert code == 65 and "bad.csv line 2" in err
    empty = tmp_path / "empty.csv"
    empty.write_text("ts,sensor,quantity,value\n")
    code, _, err = explain("--trace", str(empty), ALARM)
    assert code == 1 and "has no readings to learn from" in err
