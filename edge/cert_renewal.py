"""``cert_csr`` and ``cert_install``: renewing the gateway's client certificate with its key never leaving it.

``cert_csr`` makes a new private key beside the one in use (:mod:`edge.cert_store`) and
returns a certificate request for it, CN = the gateway id. The CA signs it
(``deploy/pki/sign-csr.sh``) and ``cert_install`` brings the certificate back. It is
installed only once it is known to work: it must be for the waiting key and the gateway's
id, and the configured broker must accept a test connection made with it (its own client
id ``<client id>-certcheck`` and no Will, so the agent's session and ``status`` are left
alone). Then the pair replaces the one in use in one rename, the previous pair kept as
``client.pem.old``, and the uplink reconnects with it by the same reload as SIGHUP's.
Anything short of that leaves the certificate in use untouched and says why.

The key and the request are made by the ``openssl`` command (Raspberry Pi OS ships it): the
Python standard library cannot make either, and the gateway does not ship ``cryptography``.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import re
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.cert_store import PAIR, PENDING_KEY, renewed, tls_folder
from edge.commands import CommandError, Slow
from edge.config import Config
from edge.doctor_broker import not_after, try_connect
from edge.errors import ConfigError
from edge.instance_lock import InstanceLockError
from edge.managed_config import fsync_folder, write_atomically

if TYPE_CHECKING:
    from edge.agent import Agent

log = logging.getLogger("linli.cert_renewal")

#: Key types cert_csr makes: EC P-256 (the CA's own choice, deploy/pki) or RSA 2048 for older brokers.
KEY_TYPES = {"ec": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
             "rsa": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]}
#: Seconds the test connection may take, and the reconnection after the install.
CHECK_TIMEOUT = 10.0
RECONNECT_TIMEOUT = 30.0
OPENSSL_TIMEOUT = 30.0
_CN = re.compile(r"(?:^|,)CN=((?:[^,\\]|\\.)*)")


class CertRenewal:
    """The two commands, for one agent."""

    def __init__(self, agent: Agent):
        self.agent = agent

    def handlers(self) -> dict[str, Slow]:
        return {"cert_csr": Slow(self.csr), "cert_install": Slow(self.install)}

    # --- cert_csr ---------------------------------------------------------------------------------------------
    def csr(self, args: dict[str, Any], request_id: str) -> dict[str, Any]:
        key_type = args.get("key_type", "ec")
        if key_type not in KEY_TYPES:
            raise CommandError('args.key_type must be "ec" (P-256, the default) or "rsa" (2048 bits)')
        config = self.agent.config
        if not config.mqtt.tls:
            raise CommandError("mqtt.tls is off: this gateway uses no client certificate to renew")
        folder = tls_folder(config)
        folder.mkdir(parents=True, exist_ok=True)
        key = folder / PENDING_KEY
        # Printed, not written by openssl: the file is made 0600 here, before a byte of the key is in it.
        write_atomically(key, _openssl("genpkey", *KEY_TYPES[key_type]).encode(), mode=0o600)
        gateway = config.gateway.id
        request = _openssl("req", "-new", "-key", str(key), "-subj", f"/CN={gateway}", "-sha256")
        log.info("cert_csr %s: a new %s key is waiting in %s for its certificate (CN=%s)", request_id, key_type,
                 key, gateway)
        return {"csr": request, "cn": gateway, "key_type": key_type}

    # --- cert_install -----------------------------------------------------------------------------------------
    def install(self, args: dict[str, Any], request_id: str) -> dict[str, Any]:
        cert = args.get("cert")
        if not isinstance(cert, str) or "-----BEGIN CERTIFICATE-----" not in cert:
            raise CommandError("args.cert must be the signed certificate in PEM")
        changes = self.agent.changes.changing
        if not changes.acquire(blocking=False):
            raise CommandError("a configuration change is under way; try again when it has been answered")
        try:
            return self._install(cert, request_id)
        except CommandError as exc:
            log.warning("cert_install %s refused; the certificate in use stays: %s", request_id, exc)
            raise
        finally:
            changes.release()

    def _install(self, cert: str, request_id: str) -> dict[str, Any]:
        config = self.agent.config
        folder = tls_folder(config)
        key = folder / PENDING_KEY
        if not config.mqtt.tls:
            raise CommandError("mqtt.tls is off: this gateway uses no client certificate")
        if not key.exists():
            raise CommandError("no key is waiting for a certificate: send cert_csr first")
        candidate = folder / f".{PAIR}.candidate"
        write_atomically(candidate, key.read_bytes() + b"\n" + cert.encode(), mode=0o600)
        try:
            ends = self._check(candidate, key, cert, config)
        except CommandError:
            candidate.unlink(missing_ok=True)
            raise
        old = folder / f"{PAIR}.old"
        write_atomically(old, _pair_in_use(config), mode=0o600)
        os.replace(candidate, folder / PAIR)
        key.unlink()
        fsync_folder(folder)
        log.info("cert_install %s: the certificate for CN=%s valid until %s is installed as %s (the previous pair "
                 "is %s); reconnecting with it", request_id, config.gateway.id, ends, folder / PAIR, old)
        try:
            self.agent.apply_config(config)
        except (ConfigError, InstanceLockError) as exc:
            log.error("cert_install %s: the reconnection failed: %s", request_id, exc)
            raise CommandError(f"installed, but the reload to use it failed: {exc}") from None
        connected = self._await_uplink()
        return {"installed": True, "not_after": ends.strftime("%Y-%m-%dT%H:%M:%SZ"), "connected": connected}

    def _check(self, candidate: Path, key: Path, cert: str, config: Config) -> datetime.datetime:
        """Why ``cert`` may not replace the certificate in use (as CommandError), or when it ends."""
        try:
            ends = not_after(cert.encode())
        except ValueError as exc:
            raise CommandError(f"the certificate cannot be read: {exc}") from None
        if ends <= datetime.datetime.now(datetime.timezone.utc):
            raise CommandError(f"the certificate expired on {ends:%Y-%m-%d %H:%M} UTC")
        if _openssl("x509", "-in", str(candidate), "-noout", "-pubkey") != \
                _openssl("pkey", "-in", str(key), "-pubout"):
            raise CommandError("the certificate is not for the key cert_csr made (was it signed from another "
                               "request?)")
        subject = _openssl("x509", "-in", str(candidate), "-noout", "-subject", "-nameopt", "RFC2253").strip()
        found = _CN.search(subject.removeprefix("subject="))
        if found is None or found.group(1) != config.gateway.id:
            raise CommandError(f"the certificate is for {subject.removeprefix('subject=')!r}, not "
                               f"CN={config.gateway.id}")
        mqtt = dataclasses.replace(config.mqtt, cert_file=str(candidate), key_file=str(candidate))
        client_id = (config.mqtt.client_id or f"linli-{config.gateway.id}") + "-certcheck"
        problem, _fix = try_connect(mqtt, client_id, CHECK_TIMEOUT)
        if problem is not None:
            raise CommandError(f"the broker did not accept a test connection with the certificate: {problem}")
        return ends

    def _await_uplink(self) -> bool:
        end = time.monotonic() + RECONNECT_TIMEOUT
        while time.monotonic() < end:
            uplink = self.agent.uplink
            if uplink is not None and uplink.status()["connected"]:
                return True
            time.sleep(0.1)
        return False


def certificate_days_left(config: Config) -> float | None:
    """Days until the client certificate in use ends (negative once it has); None without one or unreadable."""
    if not (config.mqtt.tls and config.mqtt.cert_file):
        return None
    try:
        with open(config.mqtt.cert_file, "rb") as file:
            ends = not_after(file.read(1 << 20))
    except (OSError, ValueError):
        return None   # the doctor's certificate check says why
    return round((ends - datetime.datetime.now(datetime.timezone.utc)).total_seconds() / 86400, 1)


def _pair_in_use(config: Config) -> bytes:
    """The key and certificate the uplink uses now, as one PEM text (one file already once renewed)."""
    mqtt = renewed(config).mqtt
    files = dict.fromkeys(path for path in (mqtt.key_file, mqtt.cert_file) if path)
    return b"\n".join(Path(path).read_bytes() for path in files)


def _openssl(*args: str) -> str:
    """What ``openssl args`` prints; CommandError naming its complaint when it fails or is missing."""
    try:
        done = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=OPENSSL_TIMEOUT,
                              check=False, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise CommandError("the openssl command is not installed on the gateway (apt-get install openssl)") from None
    except subprocess.TimeoutExpired:
        raise CommandError(f"openssl {args[0]} did not finish within {OPENSSL_TIMEOUT:g} s") from None
    if done.returncode != 0:
        raise CommandError(f"openssl {args[0]} failed: {done.stderr.strip() or done.returncode}")
    return done.stdout
