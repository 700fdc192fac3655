"""The release tree under /opt/linli, in a temporary folder: install, switch, switch back, prune; and the
updater's way through an update a power cut interrupted, where it needs no running agent."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from edge.update.handoff import Handoff, Request
from edge.update.package import Package
from edge.update.releases import MARKER, Releases
from edge.update.service import AgentService
from edge.update.updater import Updater
from tests.offline_index import build_index
from tests.release_helpers import build_bundle


def fake_release(releases, release_id, version="0.1.0", marker=True):
    """A release folder as the installer leaves it (no venv: these tests only move links)."""
    path = releases.folder / release_id
    (path / "bin").mkdir(parents=True)
    if marker:
        (path / MARKER).write_text(json.dumps({"version": version, "sha256": release_id.split("-")[-1] * 5}))
    return releases.get(release_id) if marker else path


def test_switching_keeps_the_way_back_and_switching_back_restores_both_links(tmp_path):
    releases = Releases(tmp_path)
    first, second = fake_release(releases, "0.1.0-aaaaaaaaaaaa"), fake_release(releases, "0.2.0-bbbbbbbbbbbb", "0.2.0")
    assert releases.switch(first) is None and releases.previous() is None
    assert releases.switch(second) == first
    assert os.readlink(tmp_path / "current") == "releases/0.2.0-bbbbbbbbbbbb"      # relative: the tree may move
    assert (releases.current(), releases.previous()) == (second, first)
    third = fake_release(releases, "0.3.0-cccccccccccc", "0.3.0")
    releases.switch(third)
    releases.switch_back(second, first)
    assert (releases.current(), releases.previous()) == (second, first)
    releases.discard(third)
    releases.discard(first)                          # previous names it: kept
    assert sorted(p.name for p in releases.folder.iterdir()) == ["0.1.0-aaaaaaaaaaaa", "0.2.0-bbbbbbbbbbbb"]
    assert not list(tmp_path.glob(".*.new"))


def test_prune_keeps_only_what_a_link_names_and_an_unfinished_release_is_never_one(tmp_path):
    releases = Releases(tmp_path)
    old, kept, now = (fake_release(releases, f"0.{n}.0-{c * 12}") for n, c in ((1, "a"), (2, "b"), (3, "c")))
    unfinished = fake_release(releases, "0.4.0-dddddddddddd", marker=False)
    assert releases.get(unfinished.name) is None
    releases.switch(old)
    releases.switch(kept)
    releases.switch(now)
    assert sorted(releases.prune()) == ["0.1.0-aaaaaaaaaaaa", "0.4.0-dddddddddddd"]
    assert sorted(p.name for p in releases.folder.iterdir()) == ["0.2.0-bbbbbbbbbbbb", "0.3.0-cccccccccccc"]


@pytest.mark.slow
def test_a_bundle_installs_as_a_release_that_runs_without_any_index(tmp_path):
    index = build_index(tmp_path / "index")
    bundle = build_bundle(tmp_path, "0.2.0", index, tmp_path / "cache")
    package = Package.open(bundle)
    releases = Releases(tmp_path / "opt")
    release = releases.install(package, tmp_path / "wheels")
    assert release.id == package.release_id and release.version == "0.2.0" and release.sha256 == package.sha256
    shown = subprocess.run([release.command, "version"], capture_output=True, text=True, check=True,
                           env={"PATH": "/usr/bin:/bin", "PIP_NO_INDEX": "1"})
    assert shown.stdout.strip() == "linli-edge 0.2.0"
    marker = json.loads((release.path / MARKER).read_text())
    assert marker["package"] == bundle.name and marker["installed"].endswith("Z")
    assert releases.install(package, tmp_path / "again") == release      # already there: reused as it is
    assert releases.current() is None                                    # installing switches nothing


def updater(tmp_path):
    releases = Releases(tmp_path / "opt")
    handoff = Handoff(tmp_path / "state" / "update")
    return Updater(releases, handoff, AgentService(str(tmp_path / "no-agent.sock")), str(tmp_path / "edge.toml")), \
        releases, handoff


def test_an_update_cut_short_before_the_switch_is_abandoned(tmp_path):
    update, releases, handoff = updater(tmp_path)
    handoff.set_state({"id": "up-1", "via": "mqtt", "phase": "installing", "from": None,
                       "to": {"version": "0.2.0", "release": "0.2.0-bbbbbbbbbbbb"}})
    outcome = update.requested()
    assert (outcome.id, outcome.outcome) == ("up-1", "refused")
    assert "interrupted before the switch" in outcome.reason
    assert handoff.state()["phase"] == "done" and update.requested() is None       # nothing left to do


def test_a_trial_whose_release_is_no_longer_current_is_reported_switched_back(tmp_path):
    update, releases, handoff = updater(tmp_path)
    releases.switch(fake_release(releases, "0.1.0-aaaaaaaaaaaa"))
    handoff.set_state({"id": "up-2", "via": "mqtt", "phase": "trial", "deadline_s": 60,
                       "from": {"version": "0.1.0", "release": "0.1.0-aaaaaaaaaaaa"},
                       "to": {"version": "0.2.0", "release": "0.2.0-bbbbbbbbbbbb"}})
    outcome = update.requested()
    assert outcome.outcome == "rolled_back" and "the new release is not current" in outcome.reason


def test_a_package_that_is_not_there_is_refused_with_nothing_switched(tmp_path):
    update, releases, handoff = updater(tmp_path)
    first = fake_release(releases, "0.1.0-aaaaaaaaaaaa")
    releases.switch(first)
    outcome = update.update(Request("local-1", str(tmp_path / "gone.tar.gz"), "0" * 64, 60.0, "local", "now"))
    assert outcome.outcome == "refused" and "cannot read the package" in outcome.reason
    assert releases.current() == first and handoff.state()["outcome"] == "refused"


def test_a_request_the_updater_cannot_try_is_answered_refused_not_left_to_start_it_again(tmp_path):
    update, releases, handoff = updater(tmp_path)
    handoff.folder.parent.mkdir()                                  # the agent's state directory
    handoff.ask(Request("up-9", "/var/lib/linli/update/incoming/x.whl", "0" * 64, 60.0, "mqtt", "now"))
    outcome = update.refuse_requested("the updater cannot read the configuration: /etc/linli/edge.toml is missing")
    assert (outcome.id, outcome.outcome) == ("up-9", "refused")
    assert not handoff.request_path.exists()                       # linli-update.path has nothing to fire on
    assert handoff.state()["reason"].endswith("edge.toml is missing") and handoff.state()["phase"] == "done"
    assert update.refuse_requested("again") is None
