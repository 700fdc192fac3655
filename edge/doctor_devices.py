"""The doctor's look at the buses and the devices on them (see :mod:`edge.doctor`).

With the agent stopped each bus is opened the way the agent opens it (a serial port
exclusively) and closed again, and each device gets one request through
:mod:`edge.probe.requests` — the drivers' own exchange code — with a short timeout. An I2C
device is asked for one byte, as ``i2cdetect -r`` does: a read changes nothing in a
chip, where the quick write ``i2cdetect`` uses by default may. With the agent running
the same lines come from its ``health``: which bus failed and why, which sensor
reads and which does not, and the agent's last error.
"""

from __future__ import annotations

import errno
import os
import time
from typing import Any

from drivers.errors import TransportError
from drivers.registry import bus_class, driver_class
from drivers.transports.serial import SerialBus
from edge.exits import EX_IOERR, EX_OK, EX_UNAVAILABLE
from edge.probe import requests as probe
from edge.probe.tap import Exchange, line_settings
from edge.config import BusConfig, SensorConfig
from edge.doctor import FAIL, PASS, WARN, Doctor, Result, result
from edge.i18n import _

#: How long a streaming radar (which is never asked) may stay silent before it counts as not answering.
RADAR_LISTEN_S = 2.0
_IN_USE = (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK)


def _bus_check(bus: BusConfig) -> str:
    return f"bus:{bus.name}"


def _device_check(sensor: SensorConfig) -> str:
    return f"device:{sensor.id}"


def where(sensor: SensorConfig, bus: BusConfig) -> str:
    """Where a technician finds the device: ``address 1 on /dev/ttyUSB0``, ``0x48 on /dev/i2c-1``, ``pin 17``."""
    options = sensor.options
    if bus.kind == "serial":
        address = options.get("address")
        port = bus.options["port"]
        return port if address is None else _("address {address} on {port}").format(address=address, port=port)
    if bus.kind == "i2c":
        return _("{address} on {path}").format(address=f"0x{options['address']:02X}",
                                               path=f"/dev/i2c-{bus.options['device']}")
    return _("pin {pin}").format(pin=options.get("pin"))


def _sensors_on(doctor: Doctor, bus: BusConfig) -> list[SensorConfig]:
    return [sensor for sensor in doctor.config.sensors if sensor.bus == bus.name]


# --- buses ------------------------------------------------------------------------------------------------------
def check_buses(doctor: Doctor) -> list[Result]:
    """Every bus opens (agent stopped), or the agent reports no error on it (agent running)."""
    if doctor.agent_running:
        return [_bus_from_health(doctor, bus) for bus in doctor.config.buses]
    lines = [_open_bus(bus) for bus in doctor.config.buses]
    doctor.failed_buses.update(bus.name for bus, line in zip(doctor.config.buses, lines, strict=True)
                               if line["status"] == FAIL)
    return lines


def _agent_bus(doctor: Doctor, name: str) -> dict[str, Any] | None:
    return next((bus for bus in doctor.health.get("buses") or [] if bus.get("bus") == name), None)


def _bus_from_health(doctor: Doctor, bus: BusConfig) -> Result:
    seen = _agent_bus(doctor, bus.name)
    thing = bus.options.get("port") or bus.name
    if seen is None:
        return result(_bus_check(bus), PASS, _("{bus}: no sensor is read on it; the running agent uses it for its "
                                               "outputs only").format(bus=thing))
    if seen.get("bus_error"):
        return result(_bus_check(bus), FAIL, _("{bus}: the running agent cannot use it: {error}").format(
            bus=thing, error=seen["bus_error"]), _fix_for_bus(bus))
    return result(_bus_check(bus), PASS, _("{bus}: in use by the running agent (not opened again)").format(bus=thing))


def _fix_for_bus(bus: BusConfig) -> str:
    if bus.kind == "serial":
        return _("check that the adapter is plugged in (ls -l /dev/serial/by-id/) and that bus {name}'s port "
                 "names it").format(name=bus.name)
    if bus.kind == "i2c":
        return _("enable I2C (raspi-config, Interface Options) and check the bus number")
    return _('install the pin factory\'s library, or set pin_factory = "mock" on a bench without GPIO')


def _open_bus(bus: BusConfig) -> Result:
    if bus.kind == "serial":
        return _open_serial(bus)
    opened = bus_class(bus.kind)(bus.name, bus.options)
    try:
        opened.open()
    except TransportError as exc:
        return result(_bus_check(bus), FAIL, str(exc), _fix_for_bus(bus))
    try:
        if bus.kind == "gpio":
            return result(_bus_check(bus), PASS, _("GPIO pin factory {factory} is usable").format(
                factory=type(opened.factory).__name__))
        return result(_bus_check(bus), PASS, _("{path} opens").format(path=opened.path))
    finally:
        opened.close()


def _open_serial(bus: BusConfig) -> Result:
    port = bus.options["port"]
    check = _bus_check(bus)
    if "://" not in port and not os.path.exists(port):
        return result(check, FAIL, _("serial port {port} does not exist").format(port=port),
                      _("plug the RS-485 adapter in, or correct the port of bus {name} "
                        "(ls -l /dev/serial/by-id/ lists the adapters)").format(name=bus.name))
    serial_bus = SerialBus(bus.name, bus.options)
    try:
        serial_bus.open()
    except TransportError as exc:
        code = getattr(exc.__cause__, "errno", None)
        if code in _IN_USE:
            held = ", ".join(holders(port)) or _("another process")
            return result(check, FAIL, _("serial port {port} is held by {holders}").format(port=port, holders=held),
                          _("stop that program (fuser -v {port} shows it); the agent needs the port to "
                            "itself").format(port=port))
        if code in (errno.EACCES, errno.EPERM):
            return result(check, FAIL, _("no permission to open serial port {port}").format(port=port),
                          _("add the service user to group dialout: sudo usermod -aG dialout linli"))
        return result(check, FAIL, str(exc), _fix_for_bus(bus))
    serial_bus.close()
    others = holders(port)
    if others:   # opened, so nobody holds it exclusively; a program without a lock still talks over our requests
        return result(check, WARN, _("serial port {port} opens, but {holders} has it open too").format(
            port=port, holders=", ".join(others)),
            _("stop that program (fuser -v {port} shows it): two programs on one line garble each other's "
              "answers").format(port=port))
    return result(check, PASS, _("serial port {port} is present, opens, and no other process holds it").format(
        port=port))


def holders(path: str) -> list[str]:
    """Other processes with ``path`` open, as ``pid 1234 (minicom)``; those this user may not look into are missed."""
    try:
        target = os.path.realpath(path)
    except OSError:
        return []
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == os.getpid():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if not any(os.readlink(f"/proc/{pid}/fd/{fd}") == target for fd in fds):
                continue
            with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as comm:
                found.append(f"pid {pid} ({comm.read().strip()})")
        except OSError:   # gone meanwhile, or another user's
            continue
    return found


# --- devices ----------------------------------------------------------------------------------------------------
def check_devices(doctor: Doctor) -> list[Result]:
    """Every sensor answers: one request each (agent stopped), or the agent's view of it (agent running)."""
    buses = {bus.name: bus for bus in doctor.config.buses}
    if doctor.agent_running:
        return [_device_from_health(doctor, sensor, buses[sensor.bus]) for sensor in doctor.config.sensors]
    lines: list[Result] = []
    for bus in doctor.config.buses:
        if bus.kind == "gpio" or bus.name in doctor.failed_buses:   # a bus that fails was named already
            continue
        for sensor in _sensors_on(doctor, bus):
            lines.append(_ask_serial(doctor, sensor, bus) if bus.kind == "serial" else _ask_i2c(sensor, bus))
    return lines


def _device_from_health(doctor: Doctor, sensor: SensorConfig, bus: BusConfig) -> Result:
    seen = (_agent_bus(doctor, bus.name) or {}).get("sensors", {}).get(sensor.id)
    check, place = _device_check(sensor), where(sensor, bus)
    if seen is None:
        return result(check, WARN, _("{sensor} ({where}): the running agent does not report it").format(
            sensor=sensor.id, where=place), _("was the agent started with this config? linli status lists what "
                                              "it reads"))
    if seen.get("ok"):
        return result(check, PASS, _("{sensor} ({where}): read {reads} times by the running agent, the last good "
                                     "reading {age} s ago").format(sensor=sensor.id, where=place, reads=seen["reads"],
                                                                   age=seen["last_good_age_s"]))
    if seen.get("last_error"):
        return result(check, FAIL, _("{sensor} ({where}): the running agent's last error: {error}").format(
            sensor=sensor.id, where=place, error=seen["last_error"]), _fix_for_sensor(bus))
    return result(check, WARN, _("{sensor} ({where}): the running agent has not read it yet").format(
        sensor=sensor.id, where=place), _("wait one read interval and run linli doctor again"))


def _fix_for_sensor(bus: BusConfig) -> str:
    if bus.kind == "serial":
        return _("check the address, line settings, A/B wiring and the device's power; "
                 "stop the agent and linli probe serial shows the bytes both ways")
    if bus.kind == "i2c":
        return _("check the wiring, the ADDR pin and the pull-ups; i2cdetect -y -r {device} lists what "
                 "answers").format(device=bus.options.get("device"))
    return _("check the wiring to the pin")


def _ask_i2c(sensor: SensorConfig, bus: BusConfig) -> Result:
    address = sensor.options["address"]
    opened = bus_class("i2c")(bus.name, bus.options)
    check, place = _device_check(sensor), where(sensor, bus)
    try:
        opened.open()
        opened.smbus.read_byte(address)
    except (TransportError, OSError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return result(check, FAIL, _("{sensor}: nothing answers at {where} ({reason})").format(
            sensor=sensor.id, where=place, reason=reason), _fix_for_sensor(bus))
    finally:
        opened.close()
    return result(check, PASS, _("{sensor}: a device answers at {where}").format(sensor=sensor.id, where=place))


def _ask_serial(doctor: Doctor, sensor: SensorConfig, bus: BusConfig) -> Result:
    serial_bus = SerialBus(bus.name, {**bus.options, "timeout": min(bus.options.get("timeout", 1.0),
                                                                    doctor.timeout)})
    check, place = _device_check(sensor), where(sensor, bus)
    found = _request(sensor, serial_bus)
    if found is None:
        return result(check, WARN, _("{sensor} ({where}): the doctor knows no request for driver {driver}").format(
            sensor=sensor.id, where=place, driver=sensor.driver),
            _("stop the agent and look at the line with linli probe serial"))
    if found.exit_code == EX_OK:
        first = found.exchanges[-1].first_byte_ms if found.exchanges else None
        return result(check, PASS, _("{sensor} ({where}) answered in {ms} ms").format(
            sensor=sensor.id, where=place, ms=first))
    if found.exit_code == EX_UNAVAILABLE:
        return result(check, FAIL, _("{sensor} ({where}): no answer within {seconds:g} s ({line})").format(
            sensor=sensor.id, where=place, seconds=serial_bus.timeout, line=found.line),
            "; ".join(found.suspects) or _fix_for_sensor(bus))
    return result(check, FAIL, _("{sensor} ({where}): {error}").format(sensor=sensor.id, where=place,
                                                                      error=found.error),
                  _("a garbled answer: two devices with one address, or noise — check the termination and the "
                    "addresses; linli probe serial shows the bytes"))


def _request(sensor: SensorConfig, bus: SerialBus) -> probe.Probe | None:
    """One request to ``sensor`` through :mod:`edge.probe`, as its driver would ask; None for a driver without one."""
    from drivers.modbus import Modbus
    from drivers.modbus.registers import TABLES, plan_reads
    from drivers.radar_stream import StreamingRadar

    cls = driver_class(sensor.driver)
    options = cls.resolved_options(sensor.options)
    if issubclass(cls, Modbus):
        block = plan_reads(cls.points_for(options))[0]
        return probe.probe_modbus(bus, options["address"], block.start, block.count, TABLES[block.table])
    if sensor.driver == "mbus_meter":
        return probe.probe_mbus(bus, options["address"])
    if sensor.driver == "cjt188_meter":
        order = "2004" if options["di_order"] == "auto" else options["di_order"]
        return probe.probe_cjt188(bus, options["address"], order, options["meter_type"])
    if issubclass(cls, StreamingRadar):
        return _listen(bus)
    return None


def _listen(bus: SerialBus) -> probe.Probe:
    """A streaming radar is never asked: it counts as answering when it sends anything within a while."""
    found = probe.Probe(port=bus.port, protocol="stream", line=line_settings(bus))
    started = time.monotonic()
    try:
        with bus:
            data = bus.read(1, RADAR_LISTEN_S)
    except TransportError as exc:
        found.error, found.exit_code = str(exc), EX_IOERR
        return found
    if not data:
        found.exit_code = EX_UNAVAILABLE
        found.line += ", " + _("silent for {seconds:g} s").format(seconds=RADAR_LISTEN_S)
        return found
    found.exchanges.append(Exchange(request=b"", at_ms=0.0, answer=bytearray(data),
                                          first_byte_ms=round((time.monotonic() - started) * 1000, 1)))
    return found
