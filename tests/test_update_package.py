"""The package checks of ``linli update`` and ``cmd/update``, with real files: wheels, bundles, and what is not one."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile

import pytest

from edge.update.package import Package, PackageError


def wheel(folder, name="linli_edge-0.2.0-py3-none-any.whl"):
    path = folder / name
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("edge/__init__.py", '__version__ = "0.2.0"\n')
    return path


def put(path, data):
    path.write_bytes(data)
    return path


def bundle(folder, members, name="linli-edge-0.2.0.tar.gz"):
    """A tar file holding ``members``: (name in the archive, bytes)."""
    path = folder / name
    with tarfile.open(path, "w:gz") as archive:
        for member, data in members:
            info = tarfile.TarInfo(member)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_a_wheel_is_read_by_its_name_and_checked_whole(tmp_path):
    path = wheel(tmp_path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    package = Package.open(path, digest.upper())
    assert (package.version, package.sha256, package.bundle) == ("0.2.0", digest, False)
    assert package.release_id == f"0.2.0-{digest[:12]}"
    own = package.wheels_into(tmp_path / "wheels")
    assert own.read_bytes() == path.read_bytes()


def test_a_bundle_gives_its_wheels_by_base_name_only(tmp_path):
    own = wheel(tmp_path).read_bytes()
    path = bundle(tmp_path, [("wheelhouse/linli_edge-0.2.0-py3-none-any.whl", own),
                             ("../../escape/paho_mqtt-2.1.0-py3-none-any.whl", b"paho"),
                             ("/etc/smbus2-0.5.1-py2.py3-none-any.whl", b"smbus"),
                             ("README", b"not a wheel")])
    package = Package.open(path)
    assert (package.version, package.bundle) == ("0.2.0", True)
    folder = tmp_path / "out" / "wheels"
    found = package.wheels_into(folder)
    assert found == folder / "linli_edge-0.2.0-py3-none-any.whl" and found.read_bytes() == own
    assert sorted(p.name for p in folder.iterdir()) == ["linli_edge-0.2.0-py3-none-any.whl",
                                                        "paho_mqtt-2.1.0-py3-none-any.whl",
                                                        "smbus2-0.5.1-py2.py3-none-any.whl"]
    assert not (tmp_path / "escape").exists() and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["wheels"]


@pytest.mark.parametrize("make, message", [
    (lambda d: put(d / "linli_edge-0.2.0-py3-none-any.whl", b"PK not really"), "is not a readable wheel"),
    (lambda d: wheel(d, "pymodbus-3.8.0-py3-none-any.whl"), "is not a linli-edge wheel"),
    (lambda d: put(d / "linli.zip", b"x"), r"neither a wheel \(\.whl\) nor a bundle"),
    (lambda d: put(d / "linli-edge.tar.gz", b"not gzip"), "is not a readable tar file"),
    (lambda d: bundle(d, [("paho_mqtt-2.1.0-py3-none-any.whl", b"p")]), "holds 0 linli-edge wheels"),
    (lambda d: bundle(d, [("linli_edge-0.2.0-py3-none-any.whl", b"a"), ("x/linli_edge-0.3.0-py3-none-any.whl", b"b")]),
     "holds 2 linli-edge wheels"),
    (lambda d: d / "missing.whl", "cannot read the package"),
])
def test_what_is_no_release_is_refused_saying_why(tmp_path, make, message):
    with pytest.raises(PackageError, match=message) as refused:
        Package.open(make(tmp_path))
    assert refused.value.exit_code == 65


def test_a_hash_that_does_not_match_is_refused(tmp_path):
    path = wheel(tmp_path)
    with pytest.raises(PackageError, match="has sha256 .*, not the 0{64} asked for"):
        Package.open(path, "0" * 64)
    with pytest.raises(PackageError, match="64 hexadecimal digits"):
        Package.open(path, "xyz")
