"""deploy/ansible: linted, and applied for real with ``connection: local`` to throwaway roots on this machine.

Each "gateway" of a test inventory is a root made like a fresh card's (tests/install_helpers.py
``make_root``) and named by its ``linli_root`` host variable; the role runs the release's own
deploy/install.sh into it (``--root``), pip taking its wheels from the offline stand-in index
(tests/offline_index.py). The certificates come from deploy/pki's scripts and the health gate's
``linli doctor`` connects to a real mosquitto running deploy/mosquitto's configuration and ACL
(tests/test_deploy.py's ``TlsBroker``). Installing needs root (useradd, chown), as in CI.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.install_helpers import ANSIBLE_COMMAND_LINES, ROOT, copy_tree, group_entry, make_root, sh, snapshot
from tests.offline_index import build_index, pip_env
from tests.tls_broker import TlsBroker, free_port, make_pki

ANSIBLE = ROOT / "deploy/ansible"
PLAYBOOK = ANSIBLE / "rollout.yml"
ROLE = ANSIBLE / "roles/linli"
VENV_BIN = Path(sys.executable).parent
GATEWAYS = ("gw-solo", "gw-b1", "gw-b2", "gw-b3", "gw-b4")
UNITS = ("linli-edge.service", "linli-update.path", "linli-update.service")

# pytest-timeout's 120 s is for one test; these roll out several times, pip building each release's venv.
ROLLOUT_TIMEOUT = pytest.mark.timeout(900)
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the installer creates users and chowns files: run as "
                                                          "root (CI does)")


def ansible_env(tmp: Path, index: Path | None = None) -> dict[str, str]:
    """A UTF-8 locale (Ansible refuses others), its state in ``tmp``, and a pip that sees only ``index``."""
    env = pip_env(index, tmp / "pip-cache")
    env.update(LANG="C.UTF-8", LC_ALL="C.UTF-8", ANSIBLE_HOME=str(tmp / "ansible-home"),
               ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"), ANSIBLE_REMOTE_TEMP=str(tmp / "ansible-tmp"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_RETRY_FILES_ENABLED="0",
               PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    return env


def recap(output: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP's counts per host: ``{"gw-b1": {"ok": 20, "changed": 0, ...}}``."""
    hosts = {}
    for host, counts in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", output, re.MULTILINE):
        hosts[host] = {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", counts)}
    return hosts


def outcome(output: str, task: str, host: str) -> str | None:
    """How ``task`` (named without its role) ended on ``host``: ok, changed, skipping, fatal; None if not run."""
    for section in output.split("\nTASK [")[1:]:
        if section.startswith(f"linli : {task}]"):
            found = re.search(rf"^(ok|changed|skipping|fatal): \[{re.escape(host)}\]", section, re.MULTILINE)
            return found.group(1) if found else None
    return None


def run_line(name: str, inventory: Path, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    """A README command line as written, with ``inventory.yml`` being the test's inventory."""
    line = ANSIBLE_COMMAND_LINES[name]
    assert " inventory.yml " in line
    return sh("bash", "-c", line.replace(" inventory.yml ", f" {inventory} "), cwd=ROOT, env=env, check=check,
              timeout=900)


# --- lint ---------------------------------------------------------------------------------------------------------
def test_syntax_check_passes_on_the_example_inventory(tmp_path):
    result = run_line("syntax", ANSIBLE / "inventory.example.yml", ansible_env(tmp_path))
    assert "playbook: " in result.stdout


def test_syntax_check_catches_a_broken_playbook(tmp_path):
    """The check above can fail: a playbook naming a task file that is not there does not pass."""
    broken = tmp_path / "broken.yml"
    broken.write_text(PLAYBOOK.read_text().replace("role: linli", "role: linli_missing"))
    result = sh("ansible-playbook", "-i", ANSIBLE / "inventory.example.yml", "--syntax-check", broken,
                env={**ansible_env(tmp_path), "ANSIBLE_ROLES_PATH": str(ANSIBLE / "roles")}, cwd=ROOT, check=False)
    assert result.returncode != 0 and "linli_missing" in result.stdout + result.stderr


def test_ansible_lint_production_profile_passes(tmp_path):
    result = sh("ansible-lint", "--offline", "--profile", "production", "--nocolor", ANSIBLE,
                env=ansible_env(tmp_path), cwd=ROOT, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Profile 'production' was required, and it passed" in result.stdout + result.stderr


# --- the README -------------------------------------------------------------------------------------------------
def readme_variables() -> dict[str, str]:
    """The variables table of deploy/ansible/README.md: name -> default as written."""
    rows = re.findall(r"^\| `(linli_\w+)` \| ([^|]*) \|", (ANSIBLE / "README.md").read_text(), re.MULTILINE)
    return {name: default.strip() for name, default in rows}


def test_readme_lists_every_variable_with_its_default():
    specs = yaml.safe_load((ROLE / "meta/argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    defaults = yaml.safe_load((ROLE / "defaults/main.yml").read_text())
    documented = readme_variables()
    assert set(documented) == set(specs), "README's variables table and meta/argument_specs.yml differ"
    for name, spec in specs.items():
        if spec.get("required"):
            assert name not in defaults and documented[name] == "required", name
        else:
            assert defaults[name] == spec["default"], f"{name}: defaults/main.yml and argument_specs differ"
            assert documented[name] == f"`{json.dumps(spec['default'])}`" or \
                documented[name] == f"`{spec['default']}`", f"{name}: README says {documented[name]}"


def test_readme_command_lines_are_the_ones_run_here():
    readme = (ANSIBLE / "README.md").read_text()
    for line in ANSIBLE_COMMAND_LINES.values():
        assert line in readme, line


# --- applied for real -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> Path:
    """The release as an offline gateway gets it: the agent's wheel and every wheel it needs."""
    house = build_index(tmp_path_factory.mktemp("wheelhouse"))
    tree = copy_tree(tmp_path_factory.mktemp("tree"))
    env = {**pip_env(house, tmp_path_factory.mktemp("pip-cache")), "PATH": os.environ["PATH"]}
    sh(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", house, tree, env=env,
       cwd=tree)
    assert len(list(house.glob("linli_edge-*.whl"))) == 1
    return house


@pytest.fixture(scope="module")
def fleet_pki(tmp_path_factory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki") / "ca", client_ids=GATEWAYS)


@pytest.fixture(scope="module")
def fleet_broker(fleet_pki, tmp_path_factory):
    broker = TlsBroker(tmp_path_factory.mktemp("broker"), fleet_pki)
    broker.start()
    yield broker
    broker.stop()


def gateway_vars(gateway: str, root: Path, pki: Path, broker_port: int) -> dict:
    """One gateway's host variables: its own root, id, grid place, certificates, a GPIO water meter."""
    return {
        "ansible_connection": "local",
        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
        "ansible_become": False,     # the test already runs as root
        "linli_root": str(root),
        "linli_gateway_id": gateway,
        "linli_grid": f"shimen2/xinfukangli/{gateway.split('-')[1]}",
        "linli_site": f"{gateway}: flat 0602",
        "linli_mqtt_host": "127.0.0.1",
        "linli_mqtt_port": broker_port,
        "linli_tls_ca_src": str(pki / "ca.crt"),
        "linli_tls_cert_src": str(pki / "gateways" / f"{gateway}.crt"),
        "linli_tls_key_src": str(pki / "gateways" / f"{gateway}.key"),
        "linli_buses": [{"name": "gpio", "kind": "gpio", "pin_factory": "mock"}],
        "linli_sensors": [{"id": "flat-0602-water", "driver": "pulse_meter", "bus": "gpio", "interval": "1m",
                           "pin": 17, "litres_per_pulse": 10.0, "debounce": "50ms", "pull": "up"}],
        "linli_rules": [{"id": "no-water-12h", "sensor": "flat-0602-water", "quantity": "volume",
                         "kind": "inactivity", "severity": "critical", "min_increase": 0.01, "window": "12h"}],
        "linli_health_retries": 2,
        "linli_health_delay": 1,
    }


def write_inventory(path: Path, hosts: dict[str, dict], **group_vars) -> Path:
    path.write_text(yaml.safe_dump({"gateways": {"vars": group_vars, "hosts": hosts}}, sort_keys=False))
    return path


def mode_owner(path: Path) -> tuple[str, int, int]:
    st = path.lstat()
    return oct(stat.S_IMODE(st.st_mode)), st.st_uid, st.st_gid


@needs_root
@ROLLOUT_TIMEOUT
@pytest.mark.slow
def test_role_installs_a_gateway_then_a_second_run_changes_nothing(tmp_path, wheelhouse, fleet_pki, fleet_broker):
    root = make_root(tmp_path / "gw-solo")
    inventory = write_inventory(tmp_path / "inventory.yml",
                                {"gw-solo": gateway_vars("gw-solo", root, fleet_pki, fleet_broker.port)},
                                linli_wheelhouse=str(wheelhouse))
    env = ansible_env(tmp_path)

    # A preview of a gateway never installed: what would be copied and installed, nothing written.
    fresh = snapshot(root)
    preview = run_line("preview", inventory, env)
    assert recap(preview.stdout)["gw-solo"]["changed"] > 0 and recap(preview.stdout)["gw-solo"]["failed"] == 0
    assert snapshot(root) == fresh

    first = run_line("roll out", inventory, env)
    assert recap(first.stdout)["gw-solo"]["changed"] > 0
    assert recap(first.stdout)["gw-solo"]["failed"] == 0

    # Where the installer puts things: one release, current pointing at it, the command, the units.
    releases = list((root / "opt/linli/releases").iterdir())
    assert len(releases) == 1 and (releases[0] / "linli-release.json").is_file()
    wheel = next(wheelhouse.glob("linli_edge-*.whl"))
    marker = json.loads((releases[0] / "linli-release.json").read_text())
    assert marker["package"] == wheel.name
    assert os.readlink(root / "opt/linli/current") == f"releases/{releases[0].name}"
    assert os.readlink(root / "usr/local/bin/linli") == "/opt/linli/current/bin/linli"
    for unit in UNITS:
        assert (root / "etc/systemd/system" / unit).read_bytes() == (ROOT / "systemd" / unit).read_bytes()
    assert (root / "etc/systemd/system/multi-user.target.wants/linli-edge.service").is_symlink()

    # The configuration from the inventory, accepted by the installed release.
    gid = int(group_entry(root, "linli")[2])
    conf = root / "etc/linli/edge.toml"
    assert mode_owner(conf) == ("0o640", 0, gid)
    text = conf.read_text()
    assert 'id = "gw-solo"' in text and 'grid = "shimen2/xinfukangli/solo"' in text
    assert f"port = {fleet_broker.port}" in text and 'pin_factory = "mock"' in text
    assert f'cert_file = "{root}/etc/linli/gw-solo.crt"' in text
    check = sh(root / "opt/linli/current/bin/linli", "config", "check", conf)
    assert check.returncode == 0

    # The certificates, with deploy/pki's modes.
    assert (root / "etc/linli/ca.pem").read_bytes() == (fleet_pki / "ca.crt").read_bytes()
    assert (root / "etc/linli/gw-solo.key").read_bytes() == (fleet_pki / "gateways/gw-solo.key").read_bytes()
    assert mode_owner(root / "etc/linli/ca.pem") == ("0o644", 0, 0)
    assert mode_owner(root / "etc/linli/gw-solo.crt") == ("0o644", 0, 0)
    assert mode_owner(root / "etc/linli/gw-solo.key") == ("0o640", 0, gid)

    # The health gate ran doctor on that configuration and it passed the broker check for real.
    # The health gate asked doctor about that configuration; the broker accepted the installed certificate.
    assert "Ask linli doctor until it reports no FAIL" in first.stdout
    doctor = sh(root / "opt/linli/current/bin/linli", "doctor", "--json", "--config", conf)
    checks = {line["check"]: line["status"] for line in json.loads(doctor.stdout)["checks"]}
    assert checks["broker"] == checks["certificate"] == checks["config"] == "pass"

    installed = snapshot(root)
    second = run_line("roll out", inventory, env)
    counts = recap(second.stdout)["gw-solo"]
    assert counts["changed"] == 0 and counts["failed"] == 0, second.stdout
    assert outcome(second.stdout, "Run the installer", "gw-solo") == "skipping"
    assert snapshot(root) == installed
    assert recap(run_line("preview", inventory, env).stdout)["gw-solo"]["changed"] == 0

    # One value changed in the inventory: that one file changes, the installer is not run again.
    site = "新福康里 7号楼 flat 0701"
    write_inventory(inventory, {"gw-solo": {**gateway_vars("gw-solo", root, fleet_pki, fleet_broker.port),
                                            "linli_site": site}}, linli_wheelhouse=str(wheelhouse))
    third = run_line("roll out", inventory, env)
    assert recap(third.stdout)["gw-solo"]["changed"] == 1, third.stdout
    assert outcome(third.stdout, "Write the configuration", "gw-solo") == "changed"
    assert f'site = "{site}"' in conf.read_text()
    assert os.readlink(root / "opt/linli/current") == f"releases/{releases[0].name}"

    # A value the release refuses: its config check fails the task, and the file stays as it was.
    accepted = conf.read_bytes()
    sensor = {**gateway_vars("gw-solo", root, fleet_pki, 1)["linli_sensors"][0], "pin": 99}
    write_inventory(inventory, {"gw-solo": {**gateway_vars("gw-solo", root, fleet_pki, fleet_broker.port),
                                            "linli_sensors": [sensor]}}, linli_wheelhouse=str(wheelhouse))
    refused = run_line("roll out", inventory, env, check=False)
    assert refused.returncode != 0 and recap(refused.stdout)["gw-solo"]["failed"] == 1
    assert outcome(refused.stdout, "Write the configuration", "gw-solo") == "fatal", refused.stdout
    assert "sensor[0].pin: must be at most 27, got 99" in refused.stdout, refused.stdout
    assert conf.read_bytes() == accepted


@needs_root
@ROLLOUT_TIMEOUT
@pytest.mark.slow
def test_a_batch_with_an_unhealthy_gateway_stops_the_roll_out(tmp_path, wheelhouse, fleet_pki, fleet_broker):
    """Batches [1, 2]: gw-b1, then gw-b2 and gw-b3, then gw-b4. gw-b3's broker port is wrong: doctor FAILs."""
    roots = {gateway: make_root(tmp_path / gateway) for gateway in ("gw-b1", "gw-b2", "gw-b3", "gw-b4")}
    hosts = {gateway: gateway_vars(gateway, root, fleet_pki, fleet_broker.port) for gateway, root in roots.items()}
    hosts["gw-b3"]["linli_mqtt_port"] = free_port()          # nothing listens there
    wheel = next(wheelhouse.glob("linli_edge-*.whl"))
    # The single wheel this time: its dependencies come from the gateway's package index (the stand-in one).
    inventory = write_inventory(tmp_path / "inventory.yml", hosts, linli_package=str(wheel))

    result = run_line("batches", inventory, ansible_env(tmp_path, wheelhouse), check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    counts = recap(result.stdout)
    assert counts["gw-b3"]["failed"] == 1, output
    # The gate says which check failed, why, and what to do.
    assert re.search(r"fatal: \[gw-b3\]: FAILED!.*gw-b3 is not healthy, the roll-out stops here\. +"
                     r"FAIL broker: cannot connect to broker 127\.0\.0\.1:\d+: connection refused", output), output
    # The first two batches were installed; the third was never started.
    for gateway in ("gw-b1", "gw-b2", "gw-b3"):
        assert (roots[gateway] / "opt/linli/current/bin/linli").exists(), gateway
    assert counts["gw-b1"]["failed"] == counts["gw-b2"]["failed"] == 0
    assert "gw-b4" not in counts
    untouched = roots["gw-b4"]
    assert not (untouched / "opt").exists() and not (untouched / "var/cache").exists()
    assert (untouched / "etc/group").read_text() == (make_root(tmp_path / "fresh") / "etc/group").read_text()
