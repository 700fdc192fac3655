"""deploy/sdcard.py: the fstab and cmdline.txt edits behind install.sh's SD-card options.

The installer tests (tests/test_install.py) run them through install.sh; here each rule is pinned
down on its own, and a property test feeds fstab files of real and malformed lines.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.install_helpers import ROOT

SCRIPT = ROOT / "deploy/sdcard.py"
# deploy/ is not a package: the script is loaded as the module "deploy_sdcard".
_spec = importlib.util.spec_from_file_location("deploy_sdcard", SCRIPT)
sdcard = sys.modules.setdefault("deploy_sdcard", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(sdcard)

PI_FSTAB = """\
proc            /proc           proc    defaults          0       0
PARTUUID=6c586e13-01  /boot/firmware  vfat    defaults          0       2
PARTUUID=6c586e13-02  /               ext4    defaults,noatime  0       1
"""


def noatime(text, *mountpoints, commit=None):
    return sdcard.fstab_options(text, list(mountpoints), noatime=True, commit=commit)


# --- mount options -------------------------------------------------------------------------------------
def test_raspberry_pi_os_root_already_has_noatime():
    assert noatime(PI_FSTAB, "/") == (PI_FSTAB, [])


@pytest.mark.parametrize("options, expected", [
    ("defaults", "defaults,noatime"),
    ("defaults,relatime,errors=remount-ro", "defaults,noatime,errors=remount-ro"),   # in place of relatime
    ("rw,strictatime,atime", "rw,noatime"),
    ("noatime,defaults", "noatime,defaults"),
])
def test_noatime_replaces_any_other_atime_choice(options, expected):
    text, _ = noatime(f"/dev/sda2 / ext4 {options} 0 1\n", "/")
    assert text == f"/dev/sda2 / ext4 {expected} 0 1\n"


def test_commit_is_replaced_where_it_stands_or_appended():
    text, _ = noatime("/dev/sda2 / ext4 commit=5,defaults 0 1\n/dev/sda3 /data ext4 defaults 0 2\n",
                      "/", "/data", commit=60)
    assert text.splitlines() == ["/dev/sda2 / ext4 commit=60,defaults,noatime 0 1",
                                 "/dev/sda3 /data ext4 defaults,noatime,commit=60 0 2"]


def test_only_the_options_field_changes_blanks_and_comments_stay():
    line = "  UUID=1234\t/data \t ext4\tdefaults\t0 2   # the USB SSD\r\n"
    text, _ = noatime("# header\n\n" + line + "not-an-entry\n/a /b\n", "/data")
    assert text == "# header\n\n" + line.replace("\tdefaults\t", "\tdefaults,noatime\t") + "not-an-entry\n/a /b\n"


def test_a_last_line_without_newline_keeps_having_none():
    assert noatime("/dev/sda2 / ext4 defaults 0 1", "/")[0] == "/dev/sda2 / ext4 defaults,noatime 0 1"


def test_escaped_and_trailing_slash_mount_points_are_recognised():
    text, notes = noatime("/dev/sdb1 /mnt/my\\040data/ ext4 defaults 0 2\n", "/mnt/my data")
    assert text == "/dev/sdb1 /mnt/my\\040data/ ext4 defaults,noatime 0 2\n" and notes == []


@pytest.mark.parametrize("line, note", [
    ("PARTUUID=01 /data vfat defaults 0 2\n", "/data is vfat, not a Linux disk file system"),
    ("server:/export /data nfs defaults 0 0\n", "/data is nfs, not a Linux disk file system"),
])
def test_other_file_systems_are_left_alone_with_a_note(line, note):
    text, notes = noatime(line, "/data")
    assert text == line and notes == [f"{note}: left as it is"]


def test_commit_only_where_ext4_takes_it():
    text, notes = noatime("/dev/sdb1 /data xfs defaults 0 2\n", "/data", commit=30)
    assert text == "/dev/sdb1 /data xfs defaults,noatime 0 2\n"
    assert notes == ["/data is xfs: commit= is for ext3/ext4, not set there"]


def test_a_mount_point_without_an_entry_is_reported():
    assert noatime("/dev/sda2 / ext4 defaults 0 1\n", "/data")[1] == ["/data has no entry in fstab: left as it is"]


# A line of fstab as found in the wild: entries with blanks of any kind, comments, blank lines and junk.
_fields = st.text(st.characters(codec="ascii", exclude_characters=" \t\r\n#"), min_size=1, max_size=12)
_blank = st.sampled_from([" ", "\t", "  ", " \t "])
_entry = st.builds(lambda lead, s, mp, fs, opts, seps, tail: lead + seps[0].join([s, mp, fs, opts]) + tail,
                   st.sampled_from(["", " ", "\t"]), _fields,
                   st.sampled_from(["/", "/data", "/var/lib/linli", "/boot/firmware", "none"]) | _fields,
                   st.sampled_from(["ext4", "xfs", "vfat", "swap", "tmpfs", "none"]) | _fields,
                   st.lists(st.sampled_from(["defaults", "relatime", "noatime", "commit=5", "nofail", "bind",
                                             "ro"]) | _fields, min_size=1, max_size=4).map(",".join),
                   st.lists(_blank, min_size=1, max_size=1), st.sampled_from(["", " 0 0", "\t0\t2  # note"]))
_line = _entry | st.sampled_from(["", "# comment", "   ", "/only/two fields", "x"]) | _fields


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(st.lists(_line, max_size=12), st.sampled_from(["\n", "\r\n"]), st.sampled_from([None, 30]))
def test_any_fstab_keeps_its_other_lines_and_a_second_pass_changes_nothing(lines, newline, commit):
    text = newline.join(lines) + newline
    once, _ = noatime(text, "/", "/data", commit=commit)
    assert noatime(once, "/", "/data", commit=commit)[0] == once
    before, after = text.splitlines(keepends=True), once.splitlines(keepends=True)
    assert len(before) == len(after)
    for old, new in zip(before, after, strict=True):
        entry = sdcard._parse(old)
        if entry is None or entry[1].mountpoint not in {"/", "/data"}:
            assert new == old
        elif new != old:
            assert "noatime" in new.split()[3].split(",")


# --- where the outbox lives ----------------------------------------------------------------------------
DATA = "/dev/sda1 /data ext4 defaults 0 2\n/data/linli /var/lib/linli none bind 0 0\n"


@pytest.mark.parametrize("fstab, chain", [
    (PI_FSTAB + "/dev/sda1 /var/lib/linli ext4 defaults 0 2\n", [("/var/lib/linli", "ext4")]),
    (PI_FSTAB + "/dev/sda1 /var ext4 defaults 0 2\n", [("/var", "ext4")]),
    (PI_FSTAB + DATA, [("/var/lib/linli", "none"), ("/data", "ext4")]),
    (PI_FSTAB + "/dev/sda1 /var/lib/linlix ext4 defaults 0 2\n/dev/sda2 /var/lib ext4 defaults 0 2\n",
     [("/var/lib", "ext4")]),
    (PI_FSTAB + "tmpfs /var/lib/linli tmpfs defaults 0 0\n/dev/sda1 /var/lib/linli ext4 defaults 0 2\n",
     [("/var/lib/linli", "ext4")]),                                 # the later entry is mounted on top
])
def test_outbox_home_follows_bind_mounts_to_the_partition(fstab, chain):
    found = sdcard.outbox_home(fstab, "/var/lib/linli")
    assert [(entry.mountpoint, entry.fstype) for entry in found] == chain


@pytest.mark.parametrize("fstab, reason", [
    (PI_FSTAB, "/var/lib/linli is on the root file system"),
    ("", "/var/lib/linli is on the root file system"),
    (PI_FSTAB + "/srv/linli /var/lib/linli none bind 0 0\n", "/var/lib/linli is on the root file system"),
    (PI_FSTAB + "tmpfs /var/lib/linli tmpfs defaults 0 0\n", "a tmpfs file system: in RAM"),
    (PI_FSTAB + "/dev/sda1 /data vfat defaults 0 2\n/data/linli /var/lib/linli none bind 0 0\n",
     "/var/lib/linli is on /data (vfat): it needs a Linux file system"),
    (PI_FSTAB + "/dev/sda1 /data ext4 defaults,nofail 0 2\n/data/linli /var/lib/linli none bind 0 0\n",
     "the fstab entry for /data says nofail"),
    (PI_FSTAB + "/dev/sda1 /data ext4 defaults 0 2\n/data/linli /var/lib/linli none bind,noauto 0 0\n",
     "the fstab entry for /var/lib/linli says noauto"),
    (PI_FSTAB + "/b /var/lib/linli none bind 0 0\n/var/lib/linli /b none bind 0 0\n", "bind mounts lead to"),
])
def test_outbox_home_refuses_whatever_could_leave_the_outbox_in_ram(fstab, reason):
    with pytest.raises(sdcard.Refused, match=re.escape(reason)):
        sdcard.outbox_home(fstab, "/var/lib/linli")


# --- kernel command line ---------------------------------------------------------------------------------
CMDLINE = "console=serial0,115200 console=tty1 root=PARTUUID=6c586e13-02 rootfstype=ext4 fsck.repair=yes rootwait\n"


def test_overlay_on_puts_the_recurse_0_token_first_once():
    on = sdcard.cmdline(CMDLINE, True)
    assert on == "overlayroot=tmpfs:recurse=0 " + CMDLINE
    assert sdcard.cmdline(on, True) is on


def test_overlay_on_replaces_the_token_raspi_config_writes():
    # raspi-config prepends "overlayroot=tmpfs": overlayroot's default recurse=1 would overlay /data too.
    assert sdcard.cmdline("overlayroot=tmpfs " + CMDLINE, True) == "overlayroot=tmpfs:recurse=0 " + CMDLINE


def test_overlay_off_removes_every_overlayroot_token_and_leaves_a_clean_line_alone():
    assert sdcard.cmdline("overlayroot=tmpfs:recurse=0 " + CMDLINE, False) == CMDLINE
    assert sdcard.cmdline(CMDLINE, False) is CMDLINE


def test_a_cmdline_of_several_lines_is_refused():
    with pytest.raises(sdcard.Refused, match="exactly one line"):
        sdcard.cmdline(CMDLINE + "second line\n", True)


# --- the command line install.sh runs ------------------------------------------------------------------------
def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], capture_output=True, text=True, timeout=30,
                          check=False)


def test_cli_prints_the_holder_of_a_path_with_the_other_mount_points(tmp_path):
    fstab = tmp_path / "fstab"
    fstab.write_text("/dev/sda2 / ext4 defaults 0 1\n" + DATA)
    result = run("fstab-options", fstab, "/", "--noatime", "--holder-of", "/var/lib/linli")
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout == "/dev/sda2 / ext4 defaults,noatime 0 1\n" + DATA.replace("defaults", "defaults,noatime")
    assert fstab.read_text() == "/dev/sda2 / ext4 defaults 0 1\n" + DATA          # printed, never written


def test_cli_refusal_is_exit_3_with_the_reason(tmp_path):
    fstab = tmp_path / "fstab"
    fstab.write_text(PI_FSTAB)
    result = run("outbox-home", fstab, "/var/lib/linli")
    assert result.returncode == 3 and result.stdout.startswith("/var/lib/linli is on the root file system")
    fstab.write_text(PI_FSTAB + DATA)
    assert run("outbox-home", fstab, "/var/lib/linli").stdout == "/var/lib/linli\tnone\n/data\text4\n"
