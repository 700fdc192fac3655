"""What installing a release costs a gateway: time, and bytes on the SD card; asserts nothing.

Run: ``python tests/bench/bench_update.py [--repeat 3]``

A bundle is built from this checkout (tests/release_helpers.py, wheels from the offline index)
and installed as a release into a temporary ``/opt/linli`` with :class:`edge.update.releases.Releases`,
as the updater does: the virtualenv, pip from the bundle alone, the marker. Figures:

- the bundle's size (what a gateway downloads);
- the release's size on disk, and the bytes written to storage meanwhile (``write_bytes`` of
  /proc/self/io, which takes in the children once reaped: venv and pip), what an update costs the
  SD card once. The work folder is under /var/tmp (``--dir``), where writes reach a disk, not RAM;
- seconds per install (median of ``--repeat``), the unpacking of the bundle included.

The switch, restart and health gate are not here: they take the deadline's share of the agent's
own start (tests/test_systemd_update.py runs them under systemd).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edge.update.package import Package  # noqa: E402
from edge.update.releases import Releases  # noqa: E402
from tests.offline_index import build_index  # noqa: E402
from tests.release_helpers import build_bundle  # noqa: E402


def written_bytes() -> int:
    """Bytes this process and its waited-for children have written to storage (Linux task io accounting)."""
    fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(fields["write_bytes"])


def tree_bytes(folder: Path) -> int:
    return sum(path.lstat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default="/var/tmp", help="where to build and install (default: %(default)s)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as work:
        work = Path(work)
        index = build_index(work / "index")
        bundle = build_bundle(work, "0.2.0", index, work / "cache")
        package = Package.open(bundle)
        seconds, written, sizes = [], [], []
        for run in range(args.repeat):
            releases = Releases(work / f"opt-{run}")
            before, started = written_bytes(), time.monotonic()
            with tempfile.TemporaryDirectory(dir=work) as wheels:
                release = releases.install(package, Path(wheels))
            seconds.append(time.monotonic() - started)
            os.sync()
            written.append(written_bytes() - before)
            sizes.append(tree_bytes(release.path))
        wheels = len(list((work / "bundle-0.2.0" / "wheelhouse").iterdir()))
        print(f"bundle           {bundle.stat().st_size / 2**20:6.1f} MiB  ({bundle.name}, {wheels} wheels)")
        print(f"release on disk  {statistics.median(sizes) / 2**20:6.1f} MiB")
        print(f"written          {statistics.median(written) / 2**20:6.1f} MiB  (to storage, pip and venv included)")
        print(f"install          {statistics.median(seconds):6.1f} s     (median of {args.repeat}; "
              f"min {min(seconds):.1f}, max {max(seconds):.1f})")


if __name__ == "__main__":
    main()
