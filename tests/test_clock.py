"""edge.clock: stamping, sync detection through adjtimex, correction of early records."""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
import threading
import time

import pytest

from edge import clock as clock_mod
from edge.clock import Clock, Timex


class FakeOs:
    """The OS facts a Clock reads, settable by the test (no root needed to 'sync' the clock)."""

    def __init__(self, *, wall: int, mono: int, synced: bool = False):
        self.wall, self.mono, self.synced = wall, mono, synced
        self.probes = 0

    def probe(self) -> bool:
        self.probes += 1
        return self.synced

    def clock(self, boot_id: str = "boot-a", **kw) -> Clock:
        return Clock(synced_probe=self.probe, wall_ms=lambda: self.wall, mono_ms=lambda: self.mono,
                     boot_id=boot_id, **kw)


# --- the real OS ------------------------------------------------------------------------------------
def test_real_adjtimex_answers_a_bool():
    answer = clock_mod.kernel_synced()
    assert answer is True or answer is False
    assert isinstance(clock_mod.system_synced(), bool)


def test_without_adjtimex_the_timesyncd_flag_decides(tmp_path):
    flag = tmp_path / "synchronized"
    assert clock_mod.system_synced(adjtimex=None, flag_path=str(flag)) is False
    flag.touch()
    assert clock_mod.system_synced(adjtimex=None, flag_path=str(flag)) is True


def test_kernel_answers_are_read_from_status_and_return_value(tmp_path):
    def kernel(state: int, status: int):
        def adjtimex(ref) -> int:
            ref._obj.status = status          # the kernel fills in the struct it was given
            return state
        return adjtimex

    assert clock_mod.kernel_synced(kernel(0, 0)) is True                       # TIME_OK
    assert clock_mod.kernel_synced(kernel(clock_mod.TIME_ERROR, 0)) is False
    assert clock_mod.kernel_synced(kernel(0, clock_mod.STA_UNSYNC)) is False
    assert clock_mod.kernel_synced(kernel(-1, 0)) is None                      # the call itself failed
    flag = tmp_path / "synchronized"
    flag.touch()
    assert clock_mod.system_synced(adjtimex=kernel(-1, 0), flag_path=str(flag)) is True


def test_timex_layout_matches_glibc_size_for_this_word_size():
    # glibc's struct timex: 19 longs/ints + timeval + 11 reserved ints → 208 bytes with 8-byte long, 128 with 4.
    expected = 208 if ctypes.sizeof(ctypes.c_long) == 8 else 128
    assert ctypes.sizeof(Timex) == expected


def test_timex_layout_matches_the_c_header(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to compile <sys/timex.h> against")
    src = tmp_path / "timex.c"
    src.write_text('#include <sys/timex.h>\n#include <stdio.h>\n#include <stddef.h>\n'
                   'int main(void){printf("%zu %zu %zu %zu %zu\\n", sizeof(struct timex),'
                   ' offsetof(struct timex, status), offsetof(struct timex, time),'
                   ' offsetof(struct timex, shift), offsetof(struct timex, tai)); return 0;}\n')
    exe = tmp_path / "timex"
    subprocess.run([cc, str(src), "-o", str(exe)], check=True, capture_output=True, timeout=60)
    size, status, tv, shift, tai = map(int, subprocess.run([str(exe)], check=True, capture_output=True,
                                                          text=True).stdout.split())
    assert (ctypes.sizeof(Timex), Timex.status.offset, Timex.time.offset, Timex.shift.offset,
            Timex.tai.offset) == (size, status, tv, shift, tai)


def test_real_clock_stamp_is_consistent():
    c = Clock()
    assert re.fullmatch(r"[0-9a-f]{32}", c.boot_id)
    with open("/proc/sys/kernel/random/boot_id") as f:
        assert c.boot_id == f.read().strip().replace("-", "")
    before_wall, before_mono = time.time_ns() // 1_000_000, time.clock_gettime_ns(time.CLOCK_BOOTTIME) // 1_000_000
    s = c.stamp()
    assert set(s) == {"ts", "synced", "boot", "mono"}
    assert s["ts"] >= before_wall and s["mono"] >= before_mono
    assert s["mono"] - before_mono < 5_000
    assert isinstance(s["synced"], bool)
    # BOOTTIME counts from boot: never more than the wall clock's epoch value, and positive.
    assert 0 < s["mono"] < s["ts"]


def test_unreadable_boot_id_gives_a_random_id_per_process(tmp_path):
    a = clock_mod.read_boot_id(str(tmp_path / "missing"))
    b = clock_mod.read_boot_id(str(tmp_path / "missing"))
    assert re.fullmatch(r"[0-9a-f]{32}", a) and a != b


def test_boot_id_is_read_without_dashes(tmp_path):
    path = tmp_path / "boot_id"
    path.write_text("3f2a6f5c-01fd-444c-92fa-1ad37c621417\n")
    assert clock_mod.read_boot_id(str(path)) == "3f2a6f5c01fd444c92fa1ad37c621417"


# --- injected OS facts: the unsynced → synced transition -----------------------------------------------
def test_records_before_sync_are_flagged_and_corrected_after_sync():
    os_ = FakeOs(wall=946_684_800_000, mono=12_000)          # fake-hwclock said 2000-01-01
    c = os_.clock()
    early = c.stamp()
    assert early == {"ts": 946_684_800_000, "synced": False, "boot": "boot-a", "mono": 12_000}
    assert c.correct(early) is early                          # nothing to correct with yet
    assert c.offset_ms is None

    os_.mono += 90_000                                        # 90 s later NTP steps the clock
    os_.wall = 1_764_201_600_000
    os_.synced = True
    assert c.synced() is True
    assert c.offset_ms == 1_764_201_600_000 - 102_000

    fixed = c.correct(early)
    assert fixed["ts"] == 1_764_201_600_000 - 90_000          # the true time, 90 s before the sync
    assert fixed["synced"] is True
    assert fixed["ts_unsynced"] == 946_684_800_000
    assert fixed["mono"] == 12_000 and fixed["boot"] == "boot-a"
    assert early["ts"] == 946_684_800_000 and early["synced"] is False   # the input is not modified

    late = c.stamp()
    assert late["synced"] is True and late["ts"] == 1_764_201_600_000
    assert c.correct(late) is late


def test_other_boot_and_already_synced_records_are_unchanged():
    os_ = FakeOs(wall=1_764_201_600_000, mono=5_000, synced=True)
    c = os_.clock(boot_id="boot-b")
    previous_boot = {"ts": 946_684_800_000, "synced": False, "boot": "boot-a", "mono": 1_000}
    assert c.correct(previous_boot) is previous_boot
    synced = {"ts": 1_764_201_000_000, "synced": True, "boot": "boot-b", "mono": 1_000}
    assert c.correct(synced) is synced
    no_mono = {"ts": 946_684_800_000, "synced": False, "boot": "boot-b"}
    assert c.correct(no_mono) is no_mono
    dropped = {"kind": "dropped", "count": 3, "seq_from": 1, "seq_to": 3, "ts_from": 1, "ts_to": 2}
    assert c.correct(dropped) is dropped


def test_a_new_clock_in_the_same_boot_corrects_records_of_an_earlier_run():
    # The agent restarted after the sync: the offset is learnt again and still fits the earlier record.
    os_ = FakeOs(wall=946_684_800_000, mono=1_000)
    first_run = os_.clock().stamp()
    os_.wall, os_.mono, os_.synced = 1_764_201_600_000, 61_000, True
    second_run = os_.clock()
    assert second_run.correct(first_run)["ts"] == 1_764_201_600_000 - 60_000


def test_offset_is_taken_at_the_first_sync_and_kept():
    os_ = FakeOs(wall=0, mono=1_000, synced=True)
    c = os_.clock(cache_s=0)
    assert c.offset_ms == -1_000
    os_.wall, os_.mono = 5_000, 2_000                        # later NTP slews; the first anchor stays
    assert c.synced() and c.offset_ms == -1_000
    os_.synced = False                                        # sync lost again: old records still fixable
    assert c.synced() is False and c.offset_ms == -1_000


def test_sync_answer_is_cached_for_about_a_second():
    os_ = FakeOs(wall=0, mono=10_000)
    c = os_.clock()
    c.stamp()
    c.stamp()
    c.synced()
    assert os_.probes == 1
    os_.synced = True
    os_.mono += 999
    assert c.synced() is False and os_.probes == 1            # still the cached answer
    os_.mono += 1
    assert c.synced() is True and os_.probes == 2


def test_stamp_from_many_threads_learns_one_offset():
    os_ = FakeOs(wall=1_764_201_600_000, mono=7_000, synced=True)
    c = os_.clock(cache_s=0)
    stamps: list[dict] = []
    threads = [threading.Thread(target=lambda: stamps.extend(c.stamp() for _ in range(200))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(stamps) == 800 and all(s["synced"] for s in stamps)
    assert c.offset_ms == 1_764_201_600_000 - 7_000
