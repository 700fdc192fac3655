"""edge.health: real facts of this machine are sane; each fact fails soft."""

from __future__ import annotations

import json
import os
import time

import jsonschema
import pytest

from edge import health, schemas
from edge.clock import Clock


class _BrokenClock:
    def synced(self):
        raise OSError("adjtimex exploded")


def test_gather_reports_sane_real_values(tmp_path):
    started = time.monotonic() - 42.5
    stats = {"depth": 7, "disk_full": False}
    body = health.gather(stats, Clock(), started, {"version": "0.1.0", "lost_readings": 0},
                         outbox_path=tmp_path / "outbox.db")
    assert body["uptime_s"] in (42, 43)
    free = os.statvfs(tmp_path)
    assert 0 < body["disk_free_bytes"] <= free.f_blocks * free.f_frsize
    assert 0 < body["rss_kb"] < 4 * 2**20                     # a Python process: more than 0, less than 4 GiB
    assert body["load1"] is not None and body["load1"] >= 0
    assert body["cpu_temp_c"] is None or -40 <= body["cpu_temp_c"] <= 125
    assert isinstance(body["clock_synced"], bool)
    assert body["outbox"] == stats
    assert body["version"] == "0.1.0" and body["lost_readings"] == 0
    json.dumps(body)                                          # JSON-able as sent


def test_gathered_body_is_a_valid_health_message(tmp_path):
    body = health.gather({"depth": 0, "dropped_total": 0, "disk_full": False}, Clock(), time.monotonic(),
                         {"version": "0.1.0"}, outbox_path=tmp_path / "outbox.db")
    message = {"v": 1, "gateway": "gw-0042", "ts": 1_764_201_600_000, **body}
    jsonschema.Draft202012Validator(schemas.load("health")).validate(json.loads(json.dumps(message)))
    failed = health.gather({}, _BrokenClock(), time.monotonic(), {})     # facts that failed are null
    jsonschema.Draft202012Validator(schemas.load("health")).validate({"v": 1, "gateway": "gw-0042", "ts": 0,
                                                                      **failed})


def test_rss_agrees_with_the_kernel_order_of_magnitude():
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    kb = health.rss_kb()
    page_kb = os.sysconf("SC_PAGE_SIZE") // 1024
    assert abs(kb - resident_pages * page_kb) < 0.5 * kb      # same process, moments apart


def test_cpu_temperature_from_a_thermal_file(tmp_path):
    temp = tmp_path / "temp"
    temp.write_text("48312\n")
    assert health.cpu_temp_c(str(temp)) == 48.3
    temp.write_text("garbage")
    assert health.cpu_temp_c(str(temp)) is None
    assert health.cpu_temp_c(str(tmp_path / "absent")) is None


def test_rss_from_a_status_file(tmp_path):
    status = tmp_path / "status"
    status.write_text("Name:\tlinli\nVmPeak:\t  99999 kB\nVmRSS:\t   23456 kB\nThreads:\t6\n")
    assert health.rss_kb(str(status)) == 23456
    status.write_text("Name:\tlinli\n")
    assert health.rss_kb(str(status)) is None
    status.write_text("VmRSS:\n")
    assert health.rss_kb(str(status)) is None


def test_disk_free_fails_soft(tmp_path):
    assert health.disk_free_bytes(tmp_path / "no" / "such" / "dir") is None
    assert health.disk_free_bytes(None) is None
    assert health.disk_free_bytes(tmp_path) > 0


def test_facts_that_cannot_be_read_are_none_not_errors(tmp_path):
    body = health.gather({}, _BrokenClock(), time.monotonic(), {}, outbox_path=tmp_path / "gone" / "outbox.db")
    assert body["clock_synced"] is None
    assert body["disk_free_bytes"] is None
    assert body["uptime_s"] == 0
    assert health.gather({}, Clock(), time.monotonic(), {})["disk_free_bytes"] is None


def test_uptime_counts_whole_seconds():
    assert health.uptime_s(100.0, now=161.9) == 61
    assert health.uptime_s(100.0, now=99.0) is None


def test_extra_must_not_hide_a_fact():
    with pytest.raises(ValueError, match="rss_kb"):
        health.gather({}, Clock(), time.monotonic(), {"rss_kb": 1})
