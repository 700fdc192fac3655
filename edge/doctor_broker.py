"""The doctor's look at the way out: the broker accepts this gateway, and its client certificate is not expiring.

The broker is asked with a real CONNECT, built by :func:`edge.uplink_client.make_client`
from the same config, files and credentials the uplink uses, under the client id
``<the agent's>-doctor`` (the agent's own id would make the broker drop the agent's
session) and without a Will (the agent's Will would announce it offline). When the
agent runs and is connected, its word is taken instead and nothing connects.

The certificate's end date is read from the file itself (a small DER walk: the Python
standard library only decodes a certificate it verifies against, and the gateway does
not ship ``cryptography``).
"""

from __future__ import annotations

import base64
import datetime
import re
import time

from edge.config import MqttConfig
from edge.doctor import FAIL, PASS, WARN, Doctor, Result, result
from edge.i18n import _
from edge.uplink_client import (UplinkSetupError, connect, describe_connect_error, describe_early_close,
                                describe_refusal, make_client)

#: A client certificate that ends within this many days is a warning: renewing takes a visit or a push.
CERT_WARN_DAYS = 30
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.S)


# --- the broker -------------------------------------------------------------------------------------------------
def check_broker(doctor: Doctor) -> list[Result]:
    cfg = doctor.config.mqtt
    where = f"{cfg.host}:{cfg.port}"
    uplink = (doctor.health or {}).get("uplink") or {}
    if uplink.get("connected"):
        return [result("broker", PASS, _("broker {where}: the running agent is connected to it").format(
            where=where))]
    client_id = (cfg.client_id or f"linli-{doctor.config.gateway.id}") + "-doctor"
    problem, fix = try_connect(cfg, client_id, doctor.broker_timeout)
    if problem is None:
        how = _("with TLS") if cfg.tls else _("without TLS")
        return [result("broker", PASS, _("broker {where} accepted a CONNECT {how}").format(where=where, how=how))]
    return [result("broker", FAIL, problem, fix)]


def try_connect(cfg: MqttConfig, client_id: str, timeout: float) -> tuple[str | None, str]:
    """Connect and disconnect once: ``(None, "")``, or why it failed (naming host:port) and what to do."""
    where = f"{cfg.host}:{cfg.port}"
    network = _("check that the broker runs and that the gateway reaches {where} (mqtt.host, mqtt.port, "
                "the network, a firewall)").format(where=where)
    outcome: dict[str, object] = {}
    callbacks = {"on_connect": lambda _c, _u, _f, reason, _p: outcome.setdefault("reason", reason),
                 "on_disconnect": lambda _c, _u, _f, reason, _p: outcome.setdefault("closed", reason)}
    try:
        client = make_client(cfg, client_id, ("unused", b""), callbacks)
    except UplinkSetupError as exc:
        return str(exc), _("check mqtt.ca_file, cert_file, key_file, username and password_file")
    client.will_clear()
    client.connect_timeout = timeout
    try:
        connect(client, cfg)
    except (OSError, ValueError) as exc:
        return describe_connect_error(exc, cfg.host, cfg.port, timeout), network
    try:
        deadline = time.monotonic() + timeout
        while not outcome and time.monotonic() < deadline:
            client.loop(timeout=0.05)
        reason = outcome.get("reason")
        if reason is not None and not reason.is_failure:
            client.disconnect()
            return None, ""
        if reason is not None:
            return describe_refusal(reason, cfg.host, cfg.port), _(
                "check mqtt.username and password_file, or that the broker's ACL knows this gateway's "
                "certificate name")
        if "closed" in outcome:
            return describe_early_close(cfg, outcome["closed"]), network
        return _("broker {where} did not answer CONNECT within {seconds:g} s").format(
            where=where, seconds=timeout), network
    finally:
        if client.socket() is not None:
            client.socket().close()


# --- the client certificate -------------------------------------------------------------------------------------
def check_certificate(doctor: Doctor) -> list[Result]:
    cfg = doctor.config.mqtt
    if not (cfg.tls and cfg.cert_file):
        return []
    renew = _("renew it with deploy/pki/make-gateway-cert.sh and install the new one at {path}").format(
        path=cfg.cert_file)
    try:
        with open(cfg.cert_file, "rb") as file:
            ends = not_after(file.read(1 << 20))
    except (OSError, ValueError) as exc:
        return [result("certificate", FAIL, _("cannot read the client certificate {path}: {reason}").format(
            path=cfg.cert_file, reason=getattr(exc, "strerror", None) or exc), renew)]
    days = (ends - datetime.datetime.now(datetime.timezone.utc)).total_seconds() / 86400
    when = ends.strftime("%Y-%m-%d %H:%M UTC")
    if days <= 0:
        return [result("certificate", FAIL, _("the client certificate {path} expired on {when}: the broker refuses "
                                              "it").format(path=cfg.cert_file, when=when), renew)]
    if days < CERT_WARN_DAYS:
        return [result("certificate", WARN, _("the client certificate {path} expires on {when}, in {days} "
                                              "days").format(path=cfg.cert_file, when=when, days=int(days)), renew)]
    return [result("certificate", PASS, _("the client certificate {path} is valid until {when}").format(
        path=cfg.cert_file, when=when))]


def not_after(pem: bytes) -> datetime.datetime:
    """The end of validity of the first certificate in ``pem``; ValueError when there is none to read."""
    found = _PEM.search(pem)
    if found is None:
        raise ValueError(_("no PEM certificate in it"))
    der = base64.b64decode(b"".join(found.group(1).split()))
    _tag, start, _end = _element(der, 0)                 # Certificate
    _tag, start, _end = _element(der, start)             # tbsCertificate
    tag, start, end = _element(der, start)
    if tag == 0xA0:                                     # [0] version, absent in a version 1 certificate
        tag, start, end = _element(der, end)
    for _field in ("signature", "issuer", "validity"):  # serialNumber is in hand; step over the next two
        tag, start, end = _element(der, end)
    _tag, _start, before_end = _element(der, start)     # validity: notBefore, then notAfter
    tag, start, end = _element(der, before_end)
    text = der[start:end].decode("ascii")
    if tag == 0x17:                                     # UTCTime: two-digit year, 1950–2049 (RFC 5280)
        text = ("19" if int(text[:2]) >= 50 else "20") + text
    elif tag != 0x18:
        raise ValueError(_("the certificate's validity is not a time"))
    return datetime.datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=datetime.timezone.utc)


def _element(der: bytes, at: int) -> tuple[int, int, int]:
    """The DER element at ``at``: its tag, where its content starts and where it ends."""
    if at + 2 > len(der):
        raise ValueError(_("the certificate is truncated"))
    tag, length, at = der[at], der[at + 1], at + 2
    if length & 0x80:
        count = length & 0x7F
        length, at = int.from_bytes(der[at:at + count], "big"), at + count
    if at + length > len(der):
        raise ValueError(_("the certificate is truncated"))
    return tag, at, at + length

