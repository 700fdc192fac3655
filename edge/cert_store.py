"""Where a renewed client certificate lives on the gateway, and the configuration that uses it.

``ProtectSystem=strict`` makes ``/etc`` read-only for the agent, so the pair that
``cert_install`` puts in place of ``mqtt.cert_file``/``key_file`` lives in its state
directory, beside the managed configuration (decision 0009)::

    <state>/tls/client.key.pending   the key cert_csr made, waiting for its certificate (0600)
    <state>/tls/client.pem           the installed pair: the key, then the certificate (0600)
    <state>/tls/client.pem.old       the pair it replaced

Key and certificate are one file so that installing them is a single ``rename``: a power
cut leaves the old pair or the new one, never a key with another key's certificate.
OpenSSL reads a PEM file holding both as certificate file and key file alike.

While ``client.pem`` is there it wins over the configured files (only with ``mqtt.tls``);
deleting it goes back to them at the next reload or restart.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from edge.config import Config
from edge.managed_config import state_folder

PENDING_KEY = "client.key.pending"
PAIR = "client.pem"


def tls_folder(config: Config) -> Path:
    """``<state>/tls``: the state directory of :mod:`edge.managed_config`, a folder of its own."""
    return state_folder(config).parent / "tls"


def installed_pair(config: Config) -> Path | None:
    """The renewed pair, when there is one and TLS is on."""
    pair = tls_folder(config) / PAIR
    return pair if config.mqtt.tls and os.path.isfile(pair) else None


def renewed(config: Config) -> Config:
    """``config`` with ``mqtt.cert_file`` and ``key_file`` naming the renewed pair when there is one."""
    pair = installed_pair(config)
    if pair is None:
        return config
    return dataclasses.replace(config, mqtt=dataclasses.replace(config.mqtt, cert_file=str(pair),
                                                                key_file=str(pair)))
