"""Building one paho-mqtt client for one connection attempt, and saying in words why an attempt failed.

The uplink makes a fresh client for every attempt (see ``edge/uplink.py`` for
why), so everything read from disk — the password file, the CA and the client
certificate — is read again at each attempt: a gateway whose certificate was
renewed, or whose password file was provisioned late, recovers without a restart.

Each of those files is opened non-blocking and must be a regular file: opening a
FIFO for reading waits for a writer, which left the uplink thread stuck in ``open``
and the agent deaf to SIGTERM. ``linli config check`` refuses a FIFO, but one may be
put there later. OpenSSL opens the TLS files by name itself, so it is given
``/proc/self/fd/<n>`` of the file checked here: the same file, whatever is swapped
in at its path in between.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from buffer.fileinfo import Foreign, kind_of_mode
from edge.config import MQTT_MAX_STRING, MqttConfig
from edge.config_paths import describe
from edge.i18n import _

PROTOCOLS = {"3.1.1": mqtt.MQTTv311, "5": mqtt.MQTTv5}

#: Seconds the TCP connect and the TLS handshake may take (paho applies it to both).
CONNECT_TIMEOUT = 10.0


class UplinkSetupError(Exception):
    """A client cannot even be built: a file it needs is missing or unreadable, or the options clash."""


def read_password(path: str) -> str:
    """The password in ``path`` without its trailing newline (files written by ``echo`` end in one).

    >>> import tempfile, os
    >>> with tempfile.NamedTemporaryFile("w", delete=False) as f:
    ...     _ = f.write("s3cret\\n")
    >>> read_password(f.name)
    's3cret'
    >>> os.unlink(f.name)
    """
    try:
        with _regular_file(path) as fd:
            data = os.pread(fd, MQTT_MAX_STRING + 3, 0).rstrip(b"\r\n")   # the longest, a \r\n, one byte more
        if len(data) > MQTT_MAX_STRING:
            raise UplinkSetupError(_("the MQTT password in {path} is longer than the {limit} bytes MQTT "
                                     "carries").format(path=path, limit=MQTT_MAX_STRING))
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UplinkSetupError(_("cannot read the MQTT password file {path}: {reason}").format(
            path=path, reason=reason)) from None


class NotARegularFile(OSError):
    """A file the uplink reads is a FIFO, a device, a directory…: reading it could block or mean nothing."""


@contextlib.contextmanager
def _regular_file(path: str) -> Iterator[int]:
    """A read-only descriptor of ``path``, opened without blocking; :class:`NotARegularFile` unless a regular file.

    Looked at before it is opened as well, so that a device (a serial port's DTR line) is never opened.
    """
    _refuse_unless_regular(path, os.stat(path).st_mode)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        _refuse_unless_regular(path, os.fstat(fd).st_mode)   # the path may have been swapped since the stat
        yield fd
    finally:
        os.close(fd)


def _refuse_unless_regular(path: str, mode: int) -> None:
    kind = kind_of_mode(mode)
    if kind is not None:
        raise NotARegularFile(_("{path} is {what}, not a regular file").format(
            path=path, what=describe(Foreign(kind))))


def _tls_files(cfg: MqttConfig, stack: contextlib.ExitStack) -> dict[str, str | None]:
    """The TLS files as ``/proc/self/fd/<n>`` names of descriptors checked by :func:`_regular_file` (None if unset)."""
    names: dict[str, str | None] = {}
    for key in ("ca_file", "cert_file", "key_file"):
        path = getattr(cfg, key)
        names[key] = None if path is None else f"/proc/self/fd/{stack.enter_context(_regular_file(path))}"
    return names


def keepalive_seconds(keepalive: float) -> int:
    """MQTT carries whole seconds; round up so a configured 0.5 s does not become 0 (= no keepalive)."""
    return 0 if keepalive <= 0 else max(1, math.ceil(keepalive))


def make_client(cfg: MqttConfig, client_id: str, will: tuple[str, bytes],
                callbacks: dict[str, Callable[..., Any]]) -> mqtt.Client:
    """A configured client (not yet connected) with the Last Will ``(topic, payload)`` set retained, QoS 1.

    ``callbacks`` maps paho attribute names (``on_connect`` …) to VERSION2 callables.
    Raises :class:`UplinkSetupError` for unusable TLS files, password file or option combinations.
    """
    if cfg.protocol not in PROTOCOLS:
        raise UplinkSetupError(_('mqtt.protocol must be "3.1.1" or "5", got "{value}"').format(value=cfg.protocol))
    protocol = PROTOCOLS[cfg.protocol]
    # clean_session only exists for 3.1.1; MQTT 5 takes clean_start at connect().
    session = {"clean_session": True} if protocol == mqtt.MQTTv311 else {}
    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=protocol, reconnect_on_failure=False, **session)
    client.connect_timeout = CONNECT_TIMEOUT
    # Our own window keeps the number in flight at or below cfg.inflight, so paho never queues one.
    client.max_inflight_messages = max(1, cfg.inflight)
    client.will_set(will[0], will[1], qos=1, retain=True)
    if cfg.password_file and not cfg.username:
        raise UplinkSetupError(_("mqtt.password_file is set but mqtt.username is not; MQTT sends a password "
                                 "only together with a user name"))
    if cfg.username:
        password = read_password(cfg.password_file) if cfg.password_file else None
        client.username_pw_set(cfg.username, password)
    if cfg.tls:
        try:
            with contextlib.ExitStack() as stack:
                files = _tls_files(cfg, stack)
                client.tls_set(ca_certs=files["ca_file"], certfile=files["cert_file"], keyfile=files["key_file"],
                               cert_reqs=ssl.CERT_REQUIRED)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise UplinkSetupError(_("cannot load the TLS files (ca_file {ca}, cert_file {cert}, key_file {key}): "
                                     "{reason}").format(ca=cfg.ca_file, cert=cfg.cert_file, key=cfg.key_file,
                                                        reason=_os_reason(exc))) from None
    for name, callback in callbacks.items():
        setattr(client, name, callback)
    return client


def connect(client: mqtt.Client, cfg: MqttConfig) -> mqtt.MQTTErrorCode:
    """Open TCP (and TLS) and send CONNECT; raises ``OSError`` (``ssl.SSLError`` is one) like paho does.

    The session is always clean: the outbox, not the broker, keeps what is undelivered.
    """
    extra: dict[str, Any] = {}
    if cfg.protocol == "5":
        extra["clean_start"] = True
    return client.connect(cfg.host, cfg.port, keepalive=keepalive_seconds(cfg.keepalive), **extra)


def _os_reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) if isinstance(exc, ssl.SSLError) else None
    if reason:
        return str(reason).replace("_", " ").lower()
    if isinstance(exc, NotARegularFile):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__


def describe_connect_error(exc: BaseException, host: str, port: int, timeout: float = CONNECT_TIMEOUT) -> str:
    """One sentence for a failed TCP/TLS connect, naming the broker.

    >>> describe_connect_error(ConnectionRefusedError(111, "Connection refused"), "127.0.0.1", 1883)
    'cannot connect to broker 127.0.0.1:1883: connection refused (is the broker running?)'
    """
    where = f"{host}:{port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _("TLS: the certificate of broker {where} was not accepted: {reason}").format(
            where=where, reason=exc.verify_message or _os_reason(exc))
    if isinstance(exc, ssl.SSLError):
        return _("TLS handshake with broker {where} failed: {reason}").format(where=where, reason=_os_reason(exc))
    if isinstance(exc, socket.gaierror):
        return _("cannot resolve the broker host {host}: {reason}").format(host=host, reason=_os_reason(exc))
    if isinstance(exc, ConnectionRefusedError):
        return _("cannot connect to broker {where}: connection refused (is the broker running?)").format(where=where)
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return _("no answer from broker {where} within {seconds:g} s").format(where=where, seconds=timeout)
    return _("cannot connect to broker {where}: {reason}").format(where=where, reason=_os_reason(exc))


def describe_reason(reason: ReasonCode | int | None) -> str:
    """A paho reason code as lower-case words (``Not authorized`` → ``not authorized``)."""
    text = str(reason) if reason is not None else "unknown reason"
    return text[:1].lower() + text[1:]


def describe_refusal(reason: ReasonCode, host: str, port: int) -> str:
    """The broker answered CONNECT with a refusal."""
    return _("broker {host}:{port} refused the connection: {reason}").format(
        host=host, port=port, reason=describe_reason(reason))


def describe_rc(rc: int) -> str:
    """A paho error code as lower-case words (``MQTT_ERR_CONN_LOST`` → ``the connection was lost``)."""
    text = mqtt.error_string(rc).rstrip(".")
    return text[:1].lower() + text[1:]


def describe_early_close(cfg: MqttConfig, reason: ReasonCode | None = None) -> str:
    """The connection ended after TCP/TLS came up but before CONNACK: say what usually causes it."""
    where = f"{cfg.host}:{cfg.port}"
    if str(reason) == "Keep alive timeout":
        return _("broker {where} did not answer CONNECT within the {seconds} s keepalive").format(
            where=where, seconds=keepalive_seconds(cfg.keepalive))
    if cfg.tls and not cfg.cert_file:
        text = _("broker {where} closed the TLS connection before accepting it; it may require a client "
                 "certificate (mqtt.cert_file)").format(where=where)
    elif cfg.tls:
        text = _("broker {where} closed the TLS connection before accepting it; it may not trust the client "
                 "certificate {cert}").format(where=where, cert=cfg.cert_file)
    else:
        text = _("broker {where} closed the connection before accepting it (a TLS port while mqtt.tls is off, "
                 "the network, or a broker out of file descriptors for another client: its LimitNOFILE)").format(
            where=where)
    if cfg.protocol == "5":
        # A broker without MQTT 5 closes the socket after CONNECT without a word (RabbitMQ 3.10 in Debian 12).
        text += _('; or it does not speak MQTT 5 (RabbitMQ before 3.13 does not): try mqtt.protocol = "3.1.1"')
    return text


def describe_loss(flags: mqtt.DisconnectFlags, reason: ReasonCode, host: str, port: int, keepalive: float) -> str:
    """Why an established connection ended."""
    where = f"{host}:{port}"
    if flags.is_disconnect_packet_from_server:
        return _("broker {where} closed the connection: {reason}").format(where=where, reason=describe_reason(reason))
    if str(reason) == "Keep alive timeout":
        return _("broker {where} stopped answering (no reply within the {seconds} s keepalive)").format(
            where=where, seconds=keepalive_seconds(keepalive))
    return _("lost the connection to broker {where} (network error or broker gone)").format(where=where)


def receive_maximum(properties: Properties | None, default: int) -> int:
    """The broker's MQTT 5 Receive Maximum (how many QoS 1 messages it accepts in flight), else ``default``."""
    value = getattr(properties, "ReceiveMaximum", None) if properties is not None else None
    return min(default, int(value)) if value else default


def maximum_packet_size(properties: Properties | None) -> int | None:
    """The broker's MQTT 5 Maximum Packet Size, if it announced one."""
    value = getattr(properties, "MaximumPacketSize", None) if properties is not None else None
    return int(value) if value else None
