"""Wired M-Bus meter (EN 13757-2/-3) behind an M-Bus level converter: every numeric record as a reading.

Each read asks the meter for its data (REQ_UD2, with the frame-count bit toggling
as EN 13757-2 wants, following "more records follow" over several telegrams) and
publishes every numeric record it sends. A meter is addressed by its primary
address (``address = 5``) or by its 8-digit secondary address (``address =
"12345678"``: selected at address 253 before every read, so several such meters
can share one line). README.md has the naming rule and the units.

>>> from drivers.codecs.mbus import Record
>>> reading_name(Record("volume", 1.5, "m3", "instantaneous", storage=1, tariff=0, subunit=0))
'volume_storage1'
>>> reading_name(Record("volume_flow", 0.5, "m3/h", "maximum", storage=0, tariff=2, subunit=0))
'volume_flow_maximum_tariff2'
>>> to_agent_units("energy", 7200.0, "J")
(2.0, 'Wh')
>>> MbusMeter.check_options({"address": "1234567"})
[('address', 'expected a primary address 0–250 or an 8-digit secondary address like "12345678", got "1234567"')]
"""

from __future__ import annotations

import logging
import re
from typing import Any

from drivers.base import Bus, Driver, Measurement
from drivers.codecs.mbus import Record, Response
from drivers.codecs.mbus_exchange import request_ud2, select_secondary, send_nke
from drivers.codecs.mbus_link import MAX_PRIMARY_ADDRESS, SECONDARY_ADDRESS, FrameCountBit
from drivers.errors import FrameError, TransportTimeout
from drivers.options import Option
from drivers.retry import attempts_for, with_retries

log = logging.getLogger("linli.drivers.mbus_meter")

#: Telegrams one read follows ("more records follow") before the meter is judged to never stop.
MAX_TELEGRAMS = 8
SECONDARY_DIGITS = 8

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_FUNCTION_SUFFIX = {"instantaneous": "", "maximum": "_maximum", "minimum": "_minimum", "error": "_during_error"}

#: Records that identify or configure the meter rather than measure anything.
_NOT_READINGS = frozenset((
    "fabrication_no", "enhanced_identification", "bus_address", "access_no", "medium", "manufacturer",
    "parameter_set_id", "model_version", "hardware_version", "firmware_version", "software_version",
    "customer_location", "customer", "access_code_user", "access_code_operator", "access_code_system_operator",
    "access_code_developer", "password", "error_mask", "baudrate", "response_delay_time", "retry",
    "first_storage_no", "last_storage_no", "storage_block_size", "control_signal", "day_of_week", "week_number",
    "day_change_time_point", "parameter_activation_state", "special_supplier_information",
    # Dates and times are not readings; the codec gives them as text, or None when the meter marks them invalid.
    "date", "datetime", "tariff_start", "battery_change_datetime",
    # Meaning known only to the manufacturer.
    "any", "manufacturer_specific",
))  # fmt: skip
# Names the codec builds for dates of limit events and for codes it cannot interpret.
_NOT_READING_PATTERN = re.compile(r"(^unknown_|_unknown_vife_|_obis_declaration$|_start$|_begin$|_end$)")

_US_GALLON_M3 = 0.003785411784  # 231 cubic inches (NIST SP 811)
_CUBIC_FOOT_M3 = 0.028316846592
#: Unit as the codec gives it -> (agent unit, factor); the agent's units are m3, m3/h, Wh, W, degC, K, bar, s.
_CONVERSIONS = {
    "J": ("Wh", 1 / 3600),
    "J/h": ("W", 1 / 3600),
    "US_gal": ("m3", _US_GALLON_M3),
    "ft3": ("m3", _CUBIC_FOOT_M3),
    "US_gal/min": ("m3/h", _US_GALLON_M3 * 60),
    "US_gal/h": ("m3/h", _US_GALLON_M3),
}


def reading_name(record: Record) -> str:
    """The published quantity of a record: the codec's name, then function, storage, tariff and subunit suffixes.

    The plain instantaneous record of storage 0, tariff 0, subunit 0 keeps the bare name.
    """
    name = record.quantity + _FUNCTION_SUFFIX.get(record.function, f"_{record.function}")
    for label, number in (("storage", record.storage), ("tariff", record.tariff), ("subunit", record.subunit)):
        if number:
            name += f"_{label}{number}"
    return name


def to_agent_units(quantity: str, value: int | float, unit: str) -> tuple[int | float, str]:
    """``value`` in ``unit`` brought to the agent's unit for it (joules to Wh, °F to °C, gallons to m³ …)."""
    if unit == "degF":
        if quantity.startswith("temperature_difference"):
            return _tidy(value * 5 / 9), "K"
        return _tidy((value - 32) * 5 / 9), "degC"
    if unit in _CONVERSIONS:
        target, factor = _CONVERSIONS[unit]
        return _tidy(value * factor), target
    return value, unit


def _tidy(value: float) -> float:
    # 12 significant digits: beyond any meter's resolution, free of binary noise (0.1 * 3 = 0.30000000000000004).
    return float(f"{value:.12g}")


def is_reading(record: Record) -> bool:
    """Whether a record is a measurement to publish (numbers, or ``None`` where the meter marked one invalid)."""
    if record.quantity in _NOT_READINGS or _NOT_READING_PATTERN.search(record.quantity):
        return False
    return record.value is None or (isinstance(record.value, (int, float)) and not isinstance(record.value, bool))


def _secondary_id(value: Any) -> bool:
    return isinstance(value, str) and len(value) == SECONDARY_DIGITS and value.isdigit() and value.isascii()


def _address_problem(value: Any) -> str | None:
    if isinstance(value, bool):
        pass  # true/false is not an address, though Python counts it as an int
    elif isinstance(value, int) and 0 <= value <= MAX_PRIMARY_ADDRESS:
        return None
    elif _secondary_id(value):
        return None
    shown = f'"{value}"' if isinstance(value, str) else repr(value)
    return (f"expected a primary address 0–{MAX_PRIMARY_ADDRESS} or an {SECONDARY_DIGITS}-digit secondary address"
            f' like "12345678", got {shown}')


def _records_problem(names: list) -> str | None:
    if not names:
        return 'must name at least one reading, e.g. ["volume"]; leave it out to publish every record'
    for index, name in enumerate(names):
        if not isinstance(name, str) or not _NAME.match(name):
            shown = f'"{name}"' if isinstance(name, str) else repr(name)
            return (f'entry {index + 1} ({shown}) is not a reading name such as "volume", "volume_flow" or '
                    '"volume_storage1" (lower case letters, digits and "_")')
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        return "names " + ", ".join(f'"{name}"' for name in duplicates) + " more than once"
    return None


class MbusMeter(Driver):
    """An M-Bus meter; ``read()`` returns one measurement per numeric record (or per selected name)."""

    name = "mbus_meter"
    bus_kind = "serial"
    quantities = ("volume",)
    options = {
        "address": Option("int|str", required=True, check=_address_problem,
                          help='primary address 0–250, or the 8-digit secondary address as a string ("12345678")'),
        "records": Option("list", check=_records_problem,
                          help='publish only these readings, each once, e.g. ["volume", "volume_flow"]; default: every '
                               'numeric record'),
        "retries": Option("int", default=2, min=0, max=5, help="extra attempts after a timeout or garbled answer"),
        "reset": Option("bool", default=True,
                        help="send SND_NKE when opening and after a failed read, so the next answer is fresh"),
    }

    @classmethod
    def check_options(cls, values: dict[str, Any]) -> list[tuple[str, str]]:
        """Both address forms, judged without I/O (see the note on ``options``)."""
        problems = []
        problem = _address_problem(values.get("address"))
        if problem:
            problems.append(("address", problem))
        if values.get("records") is not None:
            problem = _records_problem(values["records"])
            if problem:
                problems.append(("records", problem))
        return problems

    @classmethod
    def quantities_for(cls, options: dict[str, Any]) -> tuple[str, ...]:
        """The selected names; without ``records``, unknown until the meter answers: ``()``."""
        return tuple(options["records"]) if options.get("records") else ()

    def __init__(self, sensor_id: str, options: dict[str, Any], bus: Bus):
        merged = self.resolved_options(options)
        super().__init__(sensor_id, merged, bus)
        address = merged["address"]
        self.secondary_id: str | None = address if isinstance(address, str) else None
        #: Where REQ_UD2 goes: the primary address, or 253 for the meter selected by its secondary address.
        self.target: int = SECONDARY_ADDRESS if self.secondary_id else address
        self.retries: int = merged["retries"]
        self.reset: bool = merged["reset"]
        self.selection: tuple[str, ...] | None = tuple(merged["records"]) if merged["records"] else None
        self.fcb = FrameCountBit()
        self._resync = False
        self._nke_tried = self._nke_answered = False
        self._missing_logged: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """The meter as a technician would look for it on the line."""
        if self.secondary_id:
            return f"M-Bus meter {self.secondary_id} (secondary address)"
        return f"M-Bus address {self.target}"

    # --- life cycle ----------------------------------------------------------------------------
    def open(self) -> None:
        """Reset the meter's link layer (unless ``reset = false``) so the first answer is a fresh telegram."""
        if self.reset:
            self._reset_link(attempts_for(self, self.retries))
        self._resync = False

    def read(self) -> list[Measurement]:
        try:
            records = self._read_records(attempts_for(self, self.retries))
        except Exception:
            # The meter may hold a half-read telegram sequence or the answer we lost: start clean next time.
            self._resync = True
            raise
        return self._measurements(records)

    # --- the exchanges -------------------------------------------------------------------------
    def _reset_link(self, attempts: int) -> None:
        if self.secondary_id:
            # SND_NKE to 253 resets the selected meter and ends its selection.
            self._select(attempts)
        if not self._nke_answered and self._nke_tried:
            return  # this meter never acknowledges SND_NKE: do not spend a timeout on it again
        self._nke_tried = True
        try:
            with_retries(lambda: send_nke(self.bus, self.target), attempts)
        except TransportTimeout:
            if self._nke_answered or self.failing:
                raise
            # Some meters (and simple converters' built-in slaves) never acknowledge SND_NKE but answer
            # REQ_UD2: read them anyway; a dead meter fails at REQ_UD2 just the same.
            log.warning("%s: %s did not acknowledge SND_NKE; reading it without the reset", self.sensor_id,
                        self.label)
        else:
            self._nke_answered = True
        self.fcb.reset()

    def _select(self, attempts: int) -> None:
        def select() -> None:
            if not select_secondary(self.bus, self.secondary_id):
                raise TransportTimeout(
                    f"no M-Bus meter answered the selection of secondary address {self.secondary_id}"
                    f" within {self.bus.timeout:g} s")

        with_retries(select, attempts)

    def _read_records(self, attempts: int) -> list[Record]:
        if self._resync and self.reset:
            self._reset_link(attempts)
            self._resync = False
        if self.secondary_id:
            self._select(attempts)
        records: list[Record] = []
        for _ in range(MAX_TELEGRAMS):
            response = with_retries(lambda: request_ud2(self.bus, self.target, self.fcb.value), attempts)
            # Only an answered request moves the bit on; a repeat after a lost answer keeps it.
            self.fcb.answered()
            self._check_identity(response)
            records.extend(response.records)
            if not response.more_records_follow:
                return records
        raise FrameError(
            f"{self.label} still announced more records after {MAX_TELEGRAMS} telegrams — a meter that never"
            " stops, or two meters answering in turn", offset=None)

    def _check_identity(self, response: Response) -> None:
        # At 253 only the selected meter should answer; its own id proves it is the one we selected.
        if self.secondary_id and response.header is not None and response.header.id != self.secondary_id:
            raise FrameError(
                f"the M-Bus meter selected as {self.secondary_id} answered with id {response.header.id}"
                " — another meter was still selected", offset=7)

    # --- records to measurements ---------------------------------------------------------------
    def _measurements(self, records: list[Record]) -> list[Measurement]:
        published: dict[str, Measurement] = {}
        for record in records:
            if not is_reading(record):
                continue
            name = reading_name(record)
            if name in published:
                continue  # two records with one name: the first one a meter sends is its main register
            published[name] = self._measurement(name, record)
        if self.selection is None:
            return list(published.values())
        return self._selected(published)

    @staticmethod
    def _measurement(name: str, record: Record) -> Measurement:
        value, unit = to_agent_units(record.quantity, 0 if record.value is None else record.value, record.unit)
        if record.value is None:
            return Measurement(name, None, unit or None, quality="bad", reason="invalid_value")
        return Measurement(name, value, unit or None)

    def _selected(self, published: dict[str, Measurement]) -> list[Measurement]:
        missing = tuple(name for name in self.selection if name not in published)
        if missing and missing != self._missing_logged:
            # A Measurement has no room for a message: say here what the meter does send.
            log.warning("%s: %s does not send %s; it sends %s", self.sensor_id, self.label,
                        ", ".join(missing), ", ".join(published) or "no numeric records")
        self._missing_logged = missing
        return [published[name] if name in published else Measurement(name, None, None, "bad", "missing_record")
                for name in self.selection]
