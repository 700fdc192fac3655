"""deploy/install.sh, run for real into temporary roots (``--root``) and judged by what it left on disk.

Each documented command line (:data:`INSTALL_COMMAND_LINES`) is run here as written, in a copy of
the tree, with ``sudo`` dropped and ``--root`` added. pip gets its packages from a stand-in index made
of this venv's own installed distributions (tests/offline_index.py), so nothing is downloaded. Most
tests need root, as the installer does (useradd, chown); CI runs as root.
"""

from __future__ import annotations

import configparser
import datetime
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.agent_helpers import config_text
from tests.install_helpers import (CMDLINE, DATA_FSTAB, FSTAB, INSTALL_COMMAND_LINES, ROOT, Mounts, argv, clone,
                                   copy_tree, dpkg_status, group_entry, key_values, make_root, sh, snapshot)
from tests.offline_index import build_index, pip_env

DOCUMENTS = (ROOT / "deploy/README.md", ROOT / "README.md")
UNITS = ("linli-edge.service", "linli-update.path", "linli-update.service")
#: Where ``systemctl enable`` links each unit: its [Install] WantedBy= target.
WANTS = {"linli-edge.service": "multi-user.target", "linli-update.path": "paths.target",
         "linli-update.service": "multi-user.target"}
VERSION = "0.1.0"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the installer creates users and chowns files: run as "
                                                          "root (CI does)")
slow = pytest.mark.slow


@pytest.fixture(scope="session")
def tree(tmp_path_factory) -> Path:
    return copy_tree(tmp_path_factory.mktemp("tree"))


@pytest.fixture(scope="session")
def index(tmp_path_factory) -> Path:
    return build_index(tmp_path_factory.mktemp("index"))


@pytest.fixture(scope="session")
def pip_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pip-cache")


@pytest.fixture(scope="session")
def run_line(tree, index, pip_cache):
    """``run(name, root, *, check=True, cwd=tree, offline=False, mounts=None)``: one documented command line.

    ``offline`` hides every index from pip (the line must bring its own wheels).
    """
    env_path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"   # this venv's pip

    def run(name: str, root: Path, *, check: bool = True, cwd: Path | None = None, offline: bool = False,
            mounts: Mounts | None = None) -> subprocess.CompletedProcess:
        command = argv(INSTALL_COMMAND_LINES[name], root, tree)
        if mounts is not None:
            command = mounts.wrap(command)
        env = {**pip_env(None if offline else index, pip_cache), "PATH": env_path}
        return sh(*command, check=check, cwd=cwd or tree, env=env)

    return run


@pytest.fixture(scope="session")
def installed(tmp_path_factory, run_line):
    """A root after ``sudo deploy/install.sh``; tests that change it work on a :func:`clone`."""
    if os.geteuid() != 0:
        pytest.skip("the installer needs root")
    for tool in ("useradd", "groupadd", "systemctl"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    root = make_root(tmp_path_factory.mktemp("installed") / "root")
    result = run_line("install", root)
    return root, result


def current_linli(root: Path, *args, **kw) -> subprocess.CompletedProcess:
    """The command of the current release, reached through the ``current`` link as the unit reaches it."""
    return sh(root / "opt/linli/current/bin/linli", *args, **kw)


def releases(root: Path) -> set[str]:
    return {path.name for path in (root / "opt/linli/releases").iterdir()}


def link(root: Path, name: str) -> str | None:
    """Where /opt/linli/``name`` points (None when there is no such link)."""
    path = root / "opt/linli" / name
    return os.readlink(path) if path.is_symlink() else None


def marker(root: Path, release: str) -> dict:
    return json.loads((root / "opt/linli/releases" / release / "linli-release.json").read_text())


def changed_tree(path: Path, version: str | None) -> Path:
    """A copy of the tree whose agent (and package) says ``version``; another package of the same version if None."""
    newer = copy_tree(path)
    init = newer / "edge/__init__.py"
    if version is None:
        init.write_text(init.read_text() + "# a field fix that keeps the version\n")
    else:
        init.write_text(init.read_text().replace(f'__version__ = "{VERSION}"', f'__version__ = "{version}"'))
    return newer


def install_tree(root: Path, tree: Path, index: Path, pip_cache: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**pip_env(index, pip_cache), "PATH": os.environ["PATH"]}
    return sh(*argv(INSTALL_COMMAND_LINES["install"], root, tree), *extra, cwd=tree, env=env)


# --- a fresh install -------------------------------------------------------------------------------------
@needs_root
@slow
def test_install_makes_a_working_agent(installed, tmp_path):
    root, _ = installed
    assert current_linli(root, "version").stdout.strip() == "linli-edge 0.1.0"
    assert os.readlink(root / "usr/local/bin/linli") == "/opt/linli/current/bin/linli"
    # The example configuration is checked by the installed agent: only its certificates are missing.
    check = current_linli(root, "config", "check", root / "etc/linli/edge.toml", check=False)
    assert check.returncode == 78, check.stderr
    assert sorted(re.findall(r"mqtt\.(\w+): no such file", check.stderr)) == ["ca_file", "cert_file", "key_file"]
    config = tmp_path / "edge.toml"
    config.write_text(config_text(port=1883, outbox=tmp_path / "outbox.db", serial_port="/dev/ttyUSB0"))
    assert current_linli(root, "config", "check", config).stdout.startswith("ok ")


@needs_root
@slow
def test_install_makes_the_user_configuration_and_unit(installed):
    root, _ = installed
    user = next(line.split(":") for line in (root / "etc/passwd").read_text().splitlines()
                if line.startswith("linli:"))
    linli_gid = int(group_entry(root, "linli")[2])
    assert (int(user[3]), user[5], user[6]) == (linli_gid, "/var/lib/linli", "/usr/sbin/nologin")
    assert int(user[2]) < 1000                                         # a system user
    assert group_entry(root, "dialout")[2] == "20"                     # the image's group is kept
    for group in ("dialout", "gpio", "i2c"):
        assert "linli" in group_entry(root, group)[3].split(","), group
    conf_dir, conf = (root / "etc/linli").stat(), (root / "etc/linli/edge.toml").stat()
    assert (conf_dir.st_mode & 0o7777, conf_dir.st_uid, conf_dir.st_gid) == (0o750, 0, linli_gid)
    assert (conf.st_mode & 0o7777, conf.st_uid, conf.st_gid) == (0o640, 0, linli_gid)
    assert (root / "etc/linli/edge.toml").read_text() == (ROOT / "deploy/edge.toml.example").read_text()
    for unit in UNITS:                                                # the agent's and the updater's
        assert (root / "etc/systemd/system" / unit).read_bytes() == (ROOT / "systemd" / unit).read_bytes()
        wants = root / "etc/systemd/system" / f"{WANTS[unit]}.wants" / unit
        assert os.readlink(wants) == f"/etc/systemd/system/{unit}"
        assert sh("systemctl", f"--root={root}", "is-enabled", unit).stdout.strip() == "enabled"


@needs_root
@slow
def test_install_makes_a_release_and_points_current_at_it(installed):
    root, result = installed
    (release,) = releases(root)
    found = marker(root, release)
    assert list(found) == ["version", "sha256", "package", "installed"]
    assert re.fullmatch(r"[0-9a-f]{64}", found["sha256"]) and found["version"] == VERSION
    assert release == f"{VERSION}-{found['sha256'][:12]}" and found["package"] == "source tree"
    installed_at = datetime.datetime.strptime(found["installed"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    assert abs(datetime.datetime.now(datetime.UTC) - installed_at) < datetime.timedelta(hours=1)
    assert link(root, "current") == f"releases/{release}"                     # relative: it works under any root
    assert link(root, "previous") is None                                    # nothing before the first
    assert not (root / "opt/linli/venv").exists()
    for path in ("opt/linli", "opt/linli/releases", f"opt/linli/releases/{release}",
                 f"opt/linli/releases/{release}/linli-release.json"):
        st = (root / path).stat()
        assert (st.st_uid, st.st_mode & 0o022) == (0, 0), path              # root's; only root writes
    assert f"release {release} is current" in result.stdout


@needs_root
@slow
def test_install_caps_the_journal_and_sets_noatime_by_default(installed):
    root, result = installed
    assert key_values(root / "etc/systemd/journald.conf.d/90-linli-edge.conf") == {
        "Storage": "persistent", "SystemMaxUse": "64M", "SystemMaxFileSize": "8M", "MaxRetentionSec": "1month"}
    fstab = (root / "etc/fstab").read_text()
    assert fstab == FSTAB.replace("ext4    defaults          0       1", "ext4    defaults,noatime          0       1")
    backups = list((root / "etc").glob("fstab.linli-backup-*"))
    assert len(backups) == 1 and backups[0].read_text() == FSTAB
    assert "mount -o remount /" in result.stdout                 # the technician learns when it applies
    assert (root / "boot/firmware/cmdline.txt").read_text() == CMDLINE   # the overlay is only on request


@needs_root
@slow
def test_a_second_run_changes_nothing(installed, run_line, tmp_path):
    root = clone(installed[0], tmp_path / "root")
    before = snapshot(root)
    result = run_line("install", root)
    assert snapshot(root) == before
    assert "already installed from this package" in result.stdout


@needs_root
@slow
def test_a_changed_tree_becomes_current_the_old_release_previous_and_the_configuration_stays(
        installed, tmp_path, index, pip_cache):
    root = clone(installed[0], tmp_path / "root")
    (first,) = releases(root)
    edited = (root / "etc/linli/edge.toml").read_text() + "# the technician's change\n"
    (root / "etc/linli/edge.toml").write_text(edited)
    newer = changed_tree(tmp_path / "tree", "0.1.0+field")
    preview = install_tree(root, newer, index, pip_cache, "--dry-run")
    assert releases(root) == {first} and link(root, "current") == f"releases/{first}"
    result = install_tree(root, newer, index, pip_cache)
    (second,) = releases(root) - {first}
    assert second.startswith("0.1.0+field-") and marker(root, second)["sha256"] != marker(root, first)["sha256"]
    assert f"installing {newer} as the release /opt/linli/releases/{second}" in result.stdout
    assert f"would run: ln -sfn releases/{second} {root}/opt/linli/current.linli-new" in preview.stdout
    assert (link(root, "current"), link(root, "previous")) == (f"releases/{second}", f"releases/{first}")
    assert current_linli(root, "version").stdout.strip() == "linli-edge 0.1.0+field"
    assert sh(root / "opt/linli/previous/bin/linli", "version").stdout.strip() == "linli-edge 0.1.0"
    assert (root / "etc/linli/edge.toml").read_text() == edited
    assert not list((root / "opt/linli").glob("*.linli-new"))               # the temporary link names are gone


@needs_root
@slow
def test_a_third_release_removes_the_oldest(installed, tmp_path, index, pip_cache):
    root = clone(installed[0], tmp_path / "root")
    (first,) = releases(root)
    install_tree(root, changed_tree(tmp_path / "second", "0.1.0+second"), index, pip_cache)
    (second,) = releases(root) - {first}
    result = install_tree(root, changed_tree(tmp_path / "third", "0.1.0+third"), index, pip_cache)
    (third,) = releases(root) - {second}
    assert releases(root) == {second, third}
    assert (link(root, "current"), link(root, "previous")) == (f"releases/{third}", f"releases/{second}")
    assert f"removing the release {first}: only current and previous are kept" in result.stdout
    assert current_linli(root, "version").stdout.strip() == "linli-edge 0.1.0+third"


@needs_root
@slow
def test_a_release_cut_short_never_becomes_current_and_is_built_again(installed, run_line, tmp_path):
    """pip fails half-way (a wheelhouse without the dependencies): the venv is there, its marker is not."""
    root = clone(installed[0], tmp_path / "root")
    (first,) = releases(root)
    newer = changed_tree(tmp_path / "tree", None)    # the documented wheel line names version 0.1.0
    run_line("build wheel", root, cwd=newer)
    wheel = newer / f"dist/linli_edge-{VERSION}-py3-none-any.whl"
    release = f"{VERSION}-{hashlib.sha256(wheel.read_bytes()).hexdigest()[:12]}"
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    shutil.copy(wheel, lonely)
    cut = sh(*argv(f"deploy/install.sh --wheelhouse {lonely}", root, newer), check=False, cwd=newer,
             env={**pip_env(None, tmp_path / "cache"), "PATH": os.environ["PATH"]})
    assert cut.returncode != 0
    assert (root / "opt/linli/releases" / release / "bin/python").exists()
    assert not (root / "opt/linli/releases" / release / "linli-release.json").exists()
    assert (link(root, "current"), link(root, "previous")) == (f"releases/{first}", None)
    result = run_line("install wheel", root, cwd=newer)
    assert f"removing /opt/linli/releases/{release}: it has no linli-release.json" in result.stdout
    assert link(root, "current") == f"releases/{release}" and marker(root, release)["package"] == wheel.name
    assert current_linli(root, "version").stdout.strip() == f"linli-edge {VERSION}"
    installed = next((root / f"opt/linli/releases/{release}/lib").glob("python3*/site-packages/edge/__init__.py"))
    assert "# a field fix that keeps the version" in installed.read_text()    # the new package, same version


@needs_root
@slow
def test_a_gateway_of_the_earlier_installer_moves_to_releases(run_line, tmp_path):
    """The earlier layout: one venv at /opt/linli/venv, the unit and the command running it."""
    root = make_root(tmp_path / "root")
    old_venv = root / "opt/linli/venv"
    (old_venv / "bin").mkdir(parents=True)
    (old_venv / "bin/linli").write_text("#!/bin/sh\necho the old agent\n")
    (old_venv / ".linli-package.sha256").write_text("0" * 64 + "\n")
    units = root / "etc/systemd/system"
    (units / "multi-user.target.wants").mkdir(parents=True)
    old_unit = (ROOT / "systemd/linli-edge.service").read_text().replace("/opt/linli/current/", "/opt/linli/venv/")
    assert "ExecStart=/opt/linli/venv/bin/linli run" in old_unit
    (units / "linli-edge.service").write_text(old_unit)
    os.symlink("/etc/systemd/system/linli-edge.service", units / "multi-user.target.wants/linli-edge.service")
    (root / "usr/local/bin").mkdir(parents=True)
    os.symlink("/opt/linli/venv/bin/linli", root / "usr/local/bin/linli")
    result = run_line("install", root)
    assert not old_venv.exists()
    assert "removing /opt/linli/venv, the venv of an earlier installer" in result.stdout
    assert (units / "linli-edge.service").read_bytes() == (ROOT / "systemd/linli-edge.service").read_bytes()
    assert os.readlink(root / "usr/local/bin/linli") == "/opt/linli/current/bin/linli"
    assert current_linli(root, "version").stdout.strip() == "linli-edge 0.1.0"
    assert sorted(os.listdir(root / "opt/linli")) == [".update.lock", "current", "releases"]   # shared with the updater


@needs_root
@slow
def test_install_from_a_wheel(run_line, tree, tmp_path):
    root = make_root(tmp_path / "root")
    run_line("build wheel", root)
    run_line("install wheel", root)
    wheel = tree / f"dist/linli_edge-{VERSION}-py3-none-any.whl"
    sha256 = hashlib.sha256(wheel.read_bytes()).hexdigest()
    release = f"{VERSION}-{sha256[:12]}"
    assert link(root, "current") == f"releases/{release}"
    assert {key: marker(root, release)[key] for key in ("version", "sha256", "package")} == {
        "version": VERSION, "sha256": sha256, "package": wheel.name}
    assert current_linli(root, "version").stdout.strip() == "linli-edge 0.1.0"
    before = snapshot(root)
    assert "already installed from this package" in run_line("install wheel", root).stdout
    assert snapshot(root) == before


@needs_root
@slow
def test_install_without_internet_from_a_wheelhouse(run_line, tmp_path):
    root = make_root(tmp_path / "root")
    run_line("build wheelhouse", root)
    result = run_line("install offline", root, offline=True)           # pip sees no index at all
    assert "linli_edge-0.1.0-py3-none-any.whl" in result.stdout
    assert current_linli(root, "version").stdout.strip() == "linli-edge 0.1.0"


def test_dry_run_changes_nothing(run_line, tmp_path):
    """Needs no root: the preview of a fresh install under ``--root`` is run as whoever runs the tests."""
    root = make_root(tmp_path / "root")
    before = snapshot(root)
    result = run_line("preview", root)
    assert snapshot(root) == before
    assert "would run: useradd" in result.stdout and result.stdout.rstrip().endswith("nothing was changed")
    release = re.search(r"installing \S+ as the release /opt/linli/releases/(\S+)", result.stdout).group(1)
    for step in (f"python3 -m venv --system-site-packages {root}/opt/linli/releases/{release}",
                 f"mv -T {root}/opt/linli/current.linli-new {root}/opt/linli/current",
                 f"systemctl --root={root} enable linli-update.path"):
        assert f"would run: {step}" in result.stdout, step


def test_dry_run_on_this_machine_changes_nothing():
    """The preview as documented, without --root: it looks at this machine and touches none of it."""
    targets = ["/opt/linli", "/etc/linli", *(f"/etc/systemd/system/{unit}" for unit in UNITS), "/usr/local/bin/linli",
               "/etc/systemd/journald.conf.d/90-linli-edge.conf", "/etc/fstab", "/etc/passwd", "/etc/group"]

    def state():
        return {path: os.lstat(path).st_mtime_ns if os.path.lexists(path) else None for path in targets}

    before = state()
    line = shlex.split(INSTALL_COMMAND_LINES["preview"])
    assert line[0] == "sudo"
    result = sh(*line[1:], cwd=ROOT)
    assert state() == before
    assert result.stdout.rstrip().endswith("dry run finished; nothing was changed")


@needs_root
def test_dry_run_of_sd_card_options_changes_nothing(installed, tree, index, pip_cache, tmp_path):
    root = clone(installed[0], tmp_path / "root")
    before = snapshot(root)
    command = argv(INSTALL_COMMAND_LINES["commit interval"], root, tree) + ["--journal", "ram", "--dry-run"]
    result = sh(*command, env=pip_env(index, pip_cache))
    assert snapshot(root) == before
    assert "would change" in result.stdout


# --- the SD card --------------------------------------------------------------------------------------
@needs_root
def test_journal_in_ram(installed, run_line, tmp_path):
    root = clone(installed[0], tmp_path / "root")
    (root / "var/lib/dpkg/status").write_text(dpkg_status(["rsyslog"]))
    result = run_line("journal in RAM", root)
    assert key_values(root / "etc/systemd/journald.conf.d/90-linli-edge.conf") == {
        "Storage": "volatile", "RuntimeMaxUse": "16M"}
    assert "rsyslog is installed" in result.stdout


@needs_root
def test_journal_as_the_distribution_ships_it(installed, run_line, tmp_path):
    root = clone(installed[0], tmp_path / "root")
    run_line("journal as shipped", root)
    assert not (root / "etc/systemd/journald.conf.d/90-linli-edge.conf").exists()


@needs_root
def test_fstab_can_be_left_alone(installed, run_line, tmp_path):
    root = clone(installed[0], tmp_path / "root")
    (root / "etc/fstab").write_text(FSTAB)
    before = snapshot(root / "etc")
    run_line("fstab untouched", root)
    assert snapshot(root / "etc") == before


@needs_root
def test_commit_interval_goes_with_noatime_on_the_root_and_the_data_file_system(installed, run_line, tmp_path):
    root = clone(installed[0], tmp_path / "root")
    original = FSTAB + DATA_FSTAB.format(fstype="ext4", data_options=",relatime")
    (root / "etc/fstab").write_text(original)
    run_line("commit interval", root)
    lines = (root / "etc/fstab").read_text().splitlines()
    assert lines[2] == "PARTUUID=6c586e13-02  /               ext4    defaults,noatime,commit=60          0       1"
    assert lines[6] == "PARTUUID=6c586e13-03  /data           ext4    defaults,noatime,commit=60  0  2"
    assert [lines[i] for i in (0, 1, 3, 4, 5, 7)] == [original.splitlines()[i] for i in (0, 1, 3, 4, 5, 7)]
    backups = sorted((root / "etc").glob("fstab.linli-backup-*"))
    assert backups[-1].read_text() == original
    before = snapshot(root)
    run_line("commit interval", root)
    assert snapshot(root) == before


# --- the overlay root ------------------------------------------------------------------------------------
def disk_fstype(path: Path) -> str:
    fstype = sh("findmnt", "-n", "-o", "FSTYPE", "--target", path).stdout.strip().splitlines()[-1]
    if fstype not in {"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs"}:
        pytest.skip(f"{path} is on {fstype}: these tests bind-mount a directory of a disk file system")
    return fstype


def data_partition(root: Path, *, fstype: str, data_options: str = "") -> Mounts:
    """fstab with /var/lib/linli on a data partition, and the mounts that make it so on this machine."""
    (root / "etc/fstab").write_text(FSTAB + DATA_FSTAB.format(fstype=fstype, data_options=data_options))
    for directory in ("data/linli", "var/lib/linli"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    (root / "var/lib/dpkg/status").write_text(dpkg_status(["overlayroot"]))
    return Mounts([["mount", "--bind", str(root / "data"), str(root / "data")],
                   ["mount", "--bind", str(root / "data/linli"), str(root / "var/lib/linli")]])


@needs_root
def test_overlay_root_turns_on_and_off_with_the_outbox_on_its_own_partition(installed, run_line, tmp_path):
    root = clone(installed[0], tmp_path / "root")
    mounts = data_partition(root, fstype=disk_fstype(tmp_path))
    result = run_line("overlay on", root, mounts=mounts)
    assert "/var/lib/linli is on /data" in result.stdout and "reboot" in result.stdout
    cmdline = root / "boot/firmware/cmdline.txt"
    assert cmdline.read_text() == "overlayroot=tmpfs:recurse=0 " + CMDLINE
    assert key_values(root / "etc/systemd/journald.conf.d/90-linli-edge.conf")["Storage"] == "volatile"
    before = snapshot(root)
    run_line("overlay on", root, mounts=mounts)
    assert snapshot(root) == before
    run_line("overlay off", root)
    assert cmdline.read_text() == CMDLINE
    assert sorted(p.read_text() for p in cmdline.parent.glob("cmdline.txt.linli-backup-*")) == sorted(
        [CMDLINE, "overlayroot=tmpfs:recurse=0 " + CMDLINE])


@pytest.mark.parametrize("case, message", [
    ("on the root file system", "/var/lib/linli is on the root file system"),
    ("nofail", "says nofail"),
    ("not mounted", "/data is in /etc/fstab but not mounted now"),
    ("in RAM now", "/data is mounted as tmpfs now"),
    ("small RAM", "needs more than 256 MB of RAM"),
    ("no overlayroot", "install overlayroot"),
])
@needs_root
def test_overlay_root_is_refused_where_the_outbox_could_end_up_in_ram(run_line, tmp_path, case, message):
    root = make_root(tmp_path / "root")
    fstype = disk_fstype(tmp_path)
    mounts = data_partition(root, fstype=fstype, data_options=",nofail" if case == "nofail" else "")
    if case == "on the root file system":
        (root / "etc/fstab").write_text(FSTAB)
    elif case == "not mounted":
        mounts = None
    elif case == "in RAM now":
        mounts.steps.append(["mount", "-t", "tmpfs", "tmpfs", str(root / "data")])
    elif case == "small RAM":
        (root / "proc").mkdir()
        (root / "proc/meminfo").write_text("MemTotal:         262144 kB\n")
    elif case == "no overlayroot":
        (root / "var/lib/dpkg/status").write_text(dpkg_status([]))
    before = snapshot(root)
    result = run_line("overlay on", root, check=False, mounts=mounts)
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert snapshot(root) == before                              # refused before anything changed


@needs_root
def test_with_the_overlay_active_only_turning_it_off_is_done(installed, run_line, tmp_path):
    root = clone(installed[0], tmp_path / "root")
    cmdline = root / "boot/firmware/cmdline.txt"
    cmdline.write_text("overlayroot=tmpfs " + CMDLINE)              # as raspi-config leaves it
    (root / "proc").mkdir()
    (root / "proc/cmdline").write_text("overlayroot=tmpfs " + CMDLINE)   # and as the kernel was booted
    before = snapshot(root)
    refused = run_line("install", root, check=False)
    assert refused.returncode == 1 and "gone at the next reboot" in refused.stderr
    assert snapshot(root) == before
    result = run_line("overlay off", root)
    assert cmdline.read_text() == CMDLINE
    changed = {path for path, state in snapshot(root).items() if before.get(path) != state}
    assert {path for path in changed if not path.startswith("boot/firmware/cmdline.txt.linli-backup-")} == {
        "boot/firmware", "boot/firmware/cmdline.txt"}
    assert "run install.sh again" in result.stdout


# --- arguments and documents -----------------------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["--dry-run", "--frobnicate"], 'unknown option "--frobnicate"'),
    (["--dry-run", "setup.cfg"], "is not a wheel file"),
    (["--dry-run", "--wheelhouse"], "--wheelhouse needs a directory"),
    (["--dry-run", "--journal", "disk"], "--journal takes capped, ram or distro"),
    (["--dry-run", "--commit", "0"], "--commit takes a number of seconds"),
    (["--dry-run", "--fstab", "keep", "--commit", "30"], "not with --fstab keep"),
    (["--dry-run", "--overlay-root", "maybe"], "--overlay-root takes on or off"),
    (["--dry-run", "--root", "/nonexistent/root"], "--root needs an existing directory"),
])
def test_install_rejects_bad_arguments(args, message):
    result = sh("bash", ROOT / "deploy/install.sh", *args, check=False, cwd=ROOT)
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr


def test_install_needs_root_unless_dry_run():
    # The script goes in on stdin and the child starts in /, so an unprivileged user needs no access
    # to the checkout (a fresh clone may sit in a directory only root can enter).
    cmd = ["bash", "-s"]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root and setpriv is missing, so there is no way to run as another user")
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    result = sh(*cmd, check=False, cwd="/", input=(ROOT / "deploy/install.sh").read_text())
    assert result.returncode == 1 and "run as root" in result.stderr, result.stderr


def documented_install_lines(document: Path) -> set[str]:
    """The shell lines of a Markdown file's code blocks that build or run the installer (comments cut)."""
    lines, in_block = set(), False
    for raw in document.read_text().splitlines():
        if raw.startswith("```"):
            in_block = not in_block
            continue
        line = re.sub(r"\s+#.*$", "", raw).strip()
        if in_block and ("install.sh" in line or line.startswith("pip wheel")):
            lines.add(line)
    return lines


def test_every_documented_install_line_is_one_the_tests_run():
    documented = set().union(*(documented_install_lines(d) for d in DOCUMENTS))
    assert documented == set(INSTALL_COMMAND_LINES.values())


def test_the_package_fingerprint_covers_what_setup_cfg_installs():
    """install.sh decides 'already installed' by hashing PACKAGE_SOURCES: they must be setup.cfg's packages."""
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    packages = setup["options.packages.find"]["include"].split()
    tops = {name.split(".")[0] for name in packages}
    sources = re.search(r"^readonly PACKAGE_SOURCES=\((.*)\)$", (ROOT / "deploy/install.sh").read_text(), re.M)
    assert set(sources.group(1).split()) == tops | {"setup.cfg", "pyproject.toml", "README.md"}
