"""Release packages built from this checkout for the update tests, as a release manager would build them.

:func:`build_bundle` copies the package sources, sets the version (and, for the broken ones, puts a
crash where it is asked), builds the wheel with pip against the offline index (tests/offline_index.py)
and packs it with the wheels it needs into a ``.tar.gz``: the documented bundle, which installs
without network.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.install_helpers import copy_tree
from tests.offline_index import pip_env

#: How deploy/README.md packs a bundle from a wheelhouse (there for version 0.2.0).
BUNDLE_LINE = "tar -czf linli-edge-0.2.0.tar.gz -C wheelhouse ."
#: Where a broken release crashes: at ``import edge`` (every linli command fails), or when the agent's
#: module is imported (``linli version`` and ``config check`` work, ``linli run`` dies at start).
CRASHES = {"import": "edge/__init__.py", "agent": "edge/agent.py"}


def build_wheel(work: Path, version: str, index: Path, cache: Path, crash: str | None = None) -> Path:
    tree = copy_tree(work / f"tree-{version}")
    init = tree / "edge" / "__init__.py"
    text = init.read_text()
    assert '__version__ = "' in text
    init.write_text(text.replace(text[text.index('__version__ = "'):].split("\n", 1)[0],
                                 f'__version__ = "{version}"'))
    if crash is not None:
        module = tree / CRASHES[crash]
        module.write_text(module.read_text() + f'\nraise RuntimeError("release {version} is broken on purpose")\n')
    out = work / f"wheel-{version}"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(tree)],
                   env=pip_env(index, cache), check=True, capture_output=True, timeout=300)
    (wheel,) = out.glob("linli_edge-*.whl")
    return wheel


def build_bundle(work: Path, version: str, index: Path, cache: Path, crash: str | None = None) -> Path:
    """``linli-edge-<version>.tar.gz``: the agent's wheel and every wheel it needs, packed by :data:`BUNDLE_LINE`."""
    wheel = build_wheel(work, version, index, cache, crash)
    folder = work / f"bundle-{version}"
    wheelhouse = folder / "wheelhouse"     # what ``pip wheel -w wheelhouse .`` leaves (install tests run that line)
    wheelhouse.mkdir(parents=True)
    shutil.copy(wheel, wheelhouse)
    for dependency in index.glob("*.whl"):
        if not dependency.name.startswith("setuptools-"):
            shutil.copy(dependency, wheelhouse)
    subprocess.run(["bash", "-c", BUNDLE_LINE.replace("0.2.0", version)], cwd=folder, check=True, timeout=120)
    return folder / f"linli-edge-{version}.tar.gz"
