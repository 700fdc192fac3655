"""A stand-in for the package index, so the installer tests run pip for real without the network.

The distributions the agent needs (and setuptools, its build backend) are already installed in this
test venv; :func:`build_index` packs each of them back into a wheel from the files its RECORD lists.
pip then installs from that directory alone (:func:`pip_env`), exactly as it would from PyPI.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as metadata
import os
import re
import zipfile
from pathlib import Path

from packaging.requirements import Requirement

# What pip writes itself at install time; a wheel does not carry it.
_INSTALL_TIME_FILES = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}


def runtime_closure(name: str) -> list[metadata.Distribution]:
    """``name``'s installed dependencies, recursively, without extras (``name`` itself left out)."""
    seen: dict[str, metadata.Distribution] = {}
    todo = [name]
    while todo:
        for spec in metadata.requires(todo.pop()) or []:
            requirement = Requirement(spec)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            key = re.sub(r"[-_.]+", "-", requirement.name).lower()
            if key not in seen:
                seen[key] = metadata.distribution(requirement.name)
                todo.append(requirement.name)
    return list(seen.values())


def _tag(wheel_file: str) -> str:
    """The compressed tag set of a WHEEL file's ``Tag:`` lines (py2-none-any + py3-none-any -> py2.py3-none-any)."""
    parts: list[list[str]] = [[], [], []]
    for line in wheel_file.splitlines():
        if line.startswith("Tag:"):
            for position, part in enumerate(line.split(":", 1)[1].strip().split("-")):
                if part not in parts[position]:
                    parts[position].append(part)
    return "-".join(".".join(p) for p in parts)


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def repack(dist: metadata.Distribution, directory: Path) -> Path:
    """Write ``dist``'s installed files as a wheel into ``directory`` and return its path."""
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"]).lower()
    wheel_path = directory / f"{name}-{dist.version}-{_tag(dist.read_text('WHEEL') or '')}.whl"
    record_lines: list[str] = []
    dist_info = None
    with zipfile.ZipFile(wheel_path, "w", zipfile.ZIP_DEFLATED) as wheel:
        for packed in dist.files or []:
            parts = packed.parts
            if ".." in parts or "__pycache__" in parts or packed.suffix == ".pyc":
                continue                       # console scripts are made again from entry_points.txt
            if parts[0].endswith(".dist-info"):
                dist_info = parts[0]
                if parts[-1] in _INSTALL_TIME_FILES:
                    continue
            data = Path(dist.locate_file(packed)).read_bytes()
            wheel.writestr(packed.as_posix(), data)
            record_lines.append(f"{packed.as_posix()},{_record_hash(data)},{len(data)}")
        assert dist_info is not None, f"{dist.metadata['Name']} lists no dist-info directory"
        record_lines.append(f"{dist_info}/RECORD,,")
        wheel.writestr(f"{dist_info}/RECORD", "\n".join(record_lines) + "\n")
    return wheel_path


def build_index(directory: Path) -> Path:
    """Wheels of everything ``linli-edge`` needs at run time and at build time, in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for dist in [*runtime_closure("linli-edge"), metadata.distribution("setuptools")]:
        repack(dist, directory)
    return directory


def pip_env(index: Path | None, cache: Path) -> dict[str, str]:
    """The environment for a pip that sees no configuration of this machine and only ``index`` (or nothing)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_CACHE_DIR=str(cache))
    if index is not None:
        env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(index))
    else:
        env.update(PIP_INDEX_URL="http://127.0.0.1:9/simple")   # any attempt to reach an index fails at once
    return env
