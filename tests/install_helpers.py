"""Running deploy/install.sh for real into a temporary root: the root, a copy of the tree, the command lines.

A test root is what the installer finds on a fresh Raspberry Pi OS Bookworm card, reduced to the
files it reads: the user and group files, os-release, fstab, the kernel command line and dpkg's
status. Everything the installer makes goes under it (``--root``), nothing on this machine.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Every command line of the installer's documentation (deploy/README.md, README.md), exactly as written
# there; tests/test_install.py runs each one and checks the documents against these.
INSTALL_COMMAND_LINES = {
    "preview": "sudo deploy/install.sh --dry-run",
    "install": "sudo deploy/install.sh",
    "build wheel": "pip wheel --no-deps -w dist .",
    "install wheel": "sudo deploy/install.sh dist/linli_edge-0.1.0-py3-none-any.whl",
    "build wheelhouse": "pip wheel -w wheelhouse .",
    "install offline": "sudo deploy/install.sh --wheelhouse wheelhouse",
    "journal in RAM": "sudo deploy/install.sh --journal ram",
    "journal as shipped": "sudo deploy/install.sh --journal distro",
    "fstab untouched": "sudo deploy/install.sh --fstab keep",
    "commit interval": "sudo deploy/install.sh --commit 60",
    "overlay on": "sudo deploy/install.sh --overlay-root on --journal ram",
    "overlay off": "sudo deploy/install.sh --overlay-root off",
}
# Every command line of deploy/ansible/README.md, exactly as written there; tests/test_ansible.py runs each one
# with a test inventory of throwaway roots as inventory.yml.
ANSIBLE_COMMAND_LINES = {
    "syntax": "ansible-playbook -i inventory.yml --syntax-check deploy/ansible/rollout.yml",
    "preview": "ansible-playbook -i inventory.yml deploy/ansible/rollout.yml --check --diff",
    "roll out": "ansible-playbook -i inventory.yml deploy/ansible/rollout.yml",
    "batches": """ansible-playbook -i inventory.yml deploy/ansible/rollout.yml -e '{"linli_batches": [1, 2]}'""",
}

ROOT = Path(__file__).resolve().parent.parent
# What a copy of the tree needs to install from: the package sources, its metadata, deploy/ and systemd/.
TREE_PARTS = ("setup.cfg", "pyproject.toml", "README.md", "edge", "drivers", "buffer", "deploy", "systemd")

# Plain Debian's root entry (Raspberry Pi OS images already have noatime on /; without it here the
# installer has something to do). The last two lines are what an installer must never break.
FSTAB = """\
proc            /proc           proc    defaults          0       0
PARTUUID=6c586e13-01  /boot/firmware  vfat    defaults          0       2
PARTUUID=6c586e13-02  /               ext4    defaults          0       1
# swap file and a line that is not an entry: both stay byte for byte
/var/swap\tnone\tswap\tsw\t0\t0
not-an-entry
"""
# A data partition for /var/lib/linli, mounted at /data, and the outbox bind-mounted from it.
DATA_FSTAB = """\
PARTUUID=6c586e13-03  /data           {fstype}    defaults{data_options}  0  2
/data/linli           /var/lib/linli  none    bind      0  0
"""
CMDLINE = "console=serial0,115200 console=tty1 root=PARTUUID=6c586e13-02 rootfstype=ext4 fsck.repair=yes rootwait\n"
IMAGE_PACKAGES = ("python3-venv", "python3-lgpio", "mosquitto-clients")


def sh(*cmd, check: bool = True, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in cmd], check=False, capture_output=True, text=True, timeout=timeout,
                            **kw)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def dpkg_status(packages) -> str:
    return "".join(f"Package: {name}\nStatus: install ok installed\nVersion: 1\nArchitecture: all\n"
                   f"Description: {name}\n\n" for name in packages)


def make_root(path: Path, *, fstab: str = FSTAB, packages=IMAGE_PACKAGES) -> Path:
    """A fresh card's root with the files the installer reads."""
    files = {
        "etc/passwd": "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
                      "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        "etc/group": "root:x:0:\ndaemon:x:1:\ndialout:x:20:\nnogroup:x:65534:\n",
        "etc/shadow": "root:*:19700:0:99999:7:::\ndaemon:*:19700:0:99999:7:::\nnobody:*:19700:0:99999:7:::\n",
        "etc/gshadow": "root:*::\ndaemon:*::\ndialout:*::\nnogroup:*::\n",
        "etc/os-release": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_CODENAME=bookworm\n',
        "etc/fstab": fstab,
        "boot/firmware/cmdline.txt": CMDLINE,
        "var/lib/dpkg/status": dpkg_status(packages),
        "usr/sbin/nologin": "#!/bin/sh\nexit 1\n",
    }
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    for name in ("etc/shadow", "etc/gshadow"):
        (path / name).chmod(0o640)
    (path / "usr/sbin/nologin").chmod(0o755)
    return path


def copy_tree(destination: Path) -> Path:
    """The parts of this checkout the installer uses, so pip's in-tree build never writes into it."""
    destination.mkdir(parents=True, exist_ok=True)
    for part in TREE_PARTS:
        source = ROOT / part
        if source.is_dir():
            shutil.copytree(source, destination / part,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        else:
            shutil.copy2(source, destination / part)
    return destination


def clone(root: Path, destination: Path) -> Path:
    """An exact copy of an installed root (owners, modes, times, links): ``cp -a``."""
    sh("cp", "-a", root, destination)
    return destination


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` with its kind, mode, owner, size, mtime and content hash or link target."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                content = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                content = None
            state[str(path.relative_to(root))] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid,
                                                  st.st_gid, st.st_size, st.st_mtime_ns, content)
    return state


def argv(line: str, root: Path, tree: Path) -> list[str]:
    """A documented command line as the tests run it: without sudo, and the installer given ``--root``."""
    words = shlex.split(line)
    if words[0] == "sudo":
        words = words[1:]
    if words[0] == "deploy/install.sh":
        words = [str(tree / "deploy/install.sh"), "--root", str(root), *words[1:]]
    return words


@dataclass
class Mounts:
    """Mounts made in a private mount namespace around one command (nothing outside it sees them)."""

    steps: list[list[str]]

    def wrap(self, command: list[str]) -> list[str]:
        script = " && ".join(shlex.join(step) for step in self.steps) + ' && exec "$@"'
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *command]


def group_entry(root: Path, name: str) -> list[str] | None:
    for line in (root / "etc/group").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return fields
    return None


def key_values(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of a systemd-style configuration file (sections and comments left out)."""
    pairs = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith(("#", ";", "[")):
            pairs[key.strip()] = value.strip()
    return pairs
