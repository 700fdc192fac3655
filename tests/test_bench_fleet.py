"""The fleet benchmark's harness, run small: five gateways through every scenario, nothing lost.

tests/bench/bench_fleet.py itself is a benchmark (figures, no assertions) and is not collected;
this runs it with a tiny fleet and quick reconnects so that its own bookkeeping is checked:
a harness that lost seqs, or saw gaps where there are none, would make its figures worthless.
"""

from __future__ import annotations

from tests.bench import bench_fleet


def test_a_tiny_fleet_goes_through_every_scenario_without_an_unexplained_gap(capsys):
    [figures] = bench_fleet.main([
        "--gateways", "5", "--processes", "2", "--readings", "3", "--every", "0.5", "--duration", "2",
        "--outage", "2", "--reconnect-min", "0.05", "--reconnect-max", "0.5", "--settle", "30"])

    assert "broken" not in figures
    for scenario in ("steady", "restart", "outage"):
        audit = figures[f"{scenario}_audit"]
        assert audit["unexplained_gaps"] == 0, (scenario, audit)
        assert audit["records"] > 0, (scenario, audit)
        # linli audit's ledger, a second subscriber, agrees: every gateway up to its top seq, nothing unexplained.
        ledger = figures[f"{scenario}_ledger"]
        assert (ledger["gateways"], ledger["short"], ledger["unexplained"]) == (5, 0, 0), (scenario, ledger)
    # Each check covers everything stored so far, so the records only grow from one scenario to the next.
    assert (figures["steady_audit"]["records"] < figures["restart_audit"]["records"]
            < figures["outage_audit"]["records"])
    assert figures["restart_back"] == figures["outage_back"] == 5
    # Readings were stored while the broker was down, and all of them arrived after it came back.
    assert figures["outage_backlog_records"] > 0
    assert figures["outage_drain_s"] == figures["outage_drain_s"]      # not NaN: drained within --settle
    assert 0 <= figures["latency_p50_ms"] <= figures["latency_p99_ms"]
    assert "check after outage: " in capsys.readouterr().out
