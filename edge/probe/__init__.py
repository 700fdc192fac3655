"""``linli probe serial`` and ``linli scan mbus|cjt188``: a technician's look at a serial line.

A probe sends one request (two for an M-Bus meter addressed by its secondary
id: the selection, then the data request) and keeps what went each way with
its timing; the answer is decoded by :mod:`edge.decode`, exactly as ``linli
decode`` shows a frame pasted from a sniffer. Requests and answers are read
with the drivers' own exchange code (:mod:`drivers.codecs.mbus_exchange`,
:mod:`drivers.codecs.cjt188_exchange`, :func:`drivers.codecs.modbus.transact`)
through a :class:`~edge.probe.tap.Recorder` in front of the :class:`SerialBus`,
so a probe sees the line exactly as the agent's drivers do.

- :mod:`edge.probe.tap`: the serial tap — opening the port with a protocol's line
  settings, recording every byte each way with its timing, listening for bytes after an answer;
- :mod:`edge.probe.requests`: one request per protocol and what its answer says (:class:`Probe`);
- :mod:`edge.probe.scan`: the scanners, M-Bus address by address and CJ/T 188 by broadcast.

Everything here returns plain data (:class:`~edge.probe.requests.Probe`,
:class:`~edge.probe.scan.MbusScanResult`, :class:`~edge.probe.scan.Cjt188Scan`) with the
exit status it deserves; the CLI (:mod:`edge.cli.probe`, :mod:`edge.cli.scan`) only renders it.
Exit statuses (sysexits): 0 answered and decoded; 65 answered with garbage;
69 nothing answered; 74 the port itself failed (missing, in use, no permission).
"""
