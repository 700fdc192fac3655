"""Simulated I2C chips behind a fake bus with smbus2's ``SMBus`` API.

:class:`FakeSMBus` hosts any number of chips by 7-bit address and turns each
SMBus call into the I2C transactions the kernel would put on the wire: a
write of the bytes after the address, or a read of ``n`` bytes (a register
read is a write of the register byte, then a read). An address nobody
answers fails the way Linux does when a chip does not acknowledge — an
``OSError`` with ``EREMOTEIO`` — so a driver's handling of a missing device
can be tested too.

The chips model what drivers get wrong:

* :class:`Ads1115` — pointer, config, conversion and threshold registers,
  most significant byte first on the wire (an SMBus word read therefore
  returns them byte-swapped, as on real hardware); single-shot conversions
  that take 1/DR seconds, during which OS reads 0 and the conversion register
  keeps the previous result; MUX and PGA honoured, codes clipped at full scale.
* :class:`Ads1015` — the 12-bit sibling: left-justified results, other data
  rates and read-only low bits in the threshold registers.
* :class:`HoneywellHsc` — HSC/SSC/ABP read of 2 to 4 bytes with status bits,
  stale data when read again within one update period, command mode and a
  diagnostic fault.

Inputs are volts (or degrees, or a pressure) per channel, either constant or a
function of seconds since the chip was created; :class:`LoopTransmitter` is a
4–20 mA transmitter through a shunt resistor.

>>> adc = Ads1115(0x48)
>>> bus = FakeSMBus(adc)
>>> hex(bus.read_word_data(0x48, 0x01))      # config 0x8583 at reset, as the SMBus word 0x8385
'0x8385'
>>> bus.read_byte(0x50)
Traceback (most recent call last):
OSError: [Errno 121] Remote I/O error
"""

from __future__ import annotations

import ctypes
import errno
import math
import os
import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable

from smbus2 import i2c_msg

from drivers.codecs import honeywell
from drivers.codecs.ads1115 import (
    ADS1015_DATA_RATES,
    ADS1115_DATA_RATES,
    CONFIG_RESET,
    FULL_SCALE,
    HI_THRESH_RESET,
    LO_THRESH_RESET,
    MODE_SINGLE_SHOT,
    MUX_INPUTS,
    OS,
    REG_CONFIG,
    REG_CONVERSION,
    REG_HI_THRESH,
    REG_LO_THRESH,
    decode_config,
)

Signal = Callable[[float], float]
I2C_M_RD = 0x0001  # the read flag of an i2c_msg (linux/i2c.h)


def _signal(value: float | Signal) -> Signal:
    return value if callable(value) else (lambda _t, constant=float(value): constant)


@dataclass(frozen=True)
class Transfer:
    """One I2C transaction as the bus saw it: ``op`` is ``"w"`` or ``"r"``."""

    address: int
    op: str
    data: bytes


class I2cChip:
    """Base of simulated chips: ``write`` receives the bytes after the address, ``read`` returns ``length`` bytes."""

    address: int

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def read(self, length: int) -> bytes:
        raise NotImplementedError


class FakeSMBus:
    """An I2C bus of simulated chips with the ``smbus2.SMBus`` methods drivers use; thread-safe.

    ``transfers`` records every transaction (newest last) so tests can see
    how a driver talks, e.g. how often it polled a register.
    """

    def __init__(self, *chips: I2cChip, device: int = 1):
        self.device = device
        self._chips: dict[int, I2cChip] = {}
        self._errors: dict[int, int] = {}
        self._lock = threading.Lock()
        self.transfers: deque[Transfer] = deque(maxlen=100_000)
        self.closed = False
        for chip in chips:
            self.add(chip)

    # --- the simulation's own controls --------------------------------------------------------------
    def add(self, chip: I2cChip) -> None:
        with self._lock:
            if chip.address in self._chips:
                raise ValueError(f"address 0x{chip.address:02X} is taken by {self._chips[chip.address]!r}")
            self._chips[chip.address] = chip

    def remove(self, address: int) -> I2cChip:
        """Unplug the chip at ``address``: from now on it does not acknowledge."""
        with self._lock:
            return self._chips.pop(address)

    def fail(self, address: int, error: int | None = errno.EIO) -> None:
        """Make every transaction with ``address`` fail with ``OSError(error)``; ``None`` heals it."""
        with self._lock:
            if error is None:
                self._errors.pop(address, None)
            else:
                self._errors[address] = error

    def count(self, address: int, op: str, data: bytes | None = None) -> int:
        """How many recorded transactions with ``address`` were ``op`` (and carried exactly ``data``)."""
        return sum(1 for t in list(self.transfers)
                   if t.address == address and t.op == op and (data is None or t.data == data))

    # --- transactions ---------------------------------------------------------------------------------
    def _chip(self, address: int) -> I2cChip:
        error = self._errors.get(address)
        if error is not None:
            raise OSError(error, os.strerror(error))
        chip = self._chips.get(address)
        if chip is None:
            # What i2c-bcm2835 reports when no chip acknowledges its address.
            raise OSError(errno.EREMOTEIO, os.strerror(errno.EREMOTEIO))
        return chip

    def _write(self, address: int, data: Iterable[int]) -> None:
        payload = bytes(data)
        with self._lock:
            self._chip(address).write(payload)
            self.transfers.append(Transfer(address, "w", payload))

    def _write_read(self, address: int, register: int | None, length: int) -> bytes:
        """An optional register write, then (after a repeated start) a read of ``length`` bytes."""
        with self._lock:
            chip = self._chip(address)
            if register is not None:
                chip.write(bytes([register]))
                self.transfers.append(Transfer(address, "w", bytes([register])))
            data = chip.read(length)
            self.transfers.append(Transfer(address, "r", data))
            return data

    # --- smbus2.SMBus API -----------------------------------------------------------------------------
    def write_quick(self, i2c_addr: int, force=None) -> None:
        self._write(i2c_addr, b"")

    def read_byte(self, i2c_addr: int, force=None) -> int:
        return self._write_read(i2c_addr, None, 1)[0]

    def write_byte(self, i2c_addr: int, value: int, force=None) -> None:
        self._write(i2c_addr, [value])

    def read_byte_data(self, i2c_addr: int, register: int, force=None) -> int:
        return self._write_read(i2c_addr, register, 1)[0]

    def write_byte_data(self, i2c_addr: int, register: int, value: int, force=None) -> None:
        self._write(i2c_addr, [register, value])

    def read_word_data(self, i2c_addr: int, register: int, force=None) -> int:
        low, high = self._write_read(i2c_addr, register, 2)
        return low | high << 8  # SMBus words: the first byte on the wire is the low byte

    def write_word_data(self, i2c_addr: int, register: int, value: int, force=None) -> None:
        self._write(i2c_addr, [register, value & 0xFF, value >> 8 & 0xFF])

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int, force=None) -> list[int]:
        if length > 32:
            raise ValueError("Desired block length over 32 bytes")  # as smbus2 says
        return list(self._write_read(i2c_addr, register, length))

    def write_i2c_block_data(self, i2c_addr: int, register: int, data: list[int], force=None) -> None:
        if len(data) > 32:
            raise ValueError("Data length cannot exceed 32 bytes")
        self._write(i2c_addr, [register, *data])

    def i2c_rdwr(self, *i2c_msgs: i2c_msg) -> None:
        for msg in i2c_msgs:
            if msg.flags & I2C_M_RD:
                data = self._write_read(msg.addr, None, msg.len)
                ctypes.memmove(msg.buf, data, msg.len)
            else:
                self._write(msg.addr, bytes(msg))

    def close(self) -> None:
        self.closed = True


# --- ADS1115 / ADS1015 --------------------------------------------------------------------------------

class Ads1115(I2cChip):
    """A TI ADS1115 at ``address`` (0x48–0x4B) with four inputs in volts (constants or functions of time).

    ``rate_error`` makes the oscillator that much slower (+) or faster (−)
    than nominal (the datasheet allows ±10 %); ``noise_volts`` adds gaussian
    noise (seeded, so runs repeat).
    """

    name = "ADS1115"
    data_rates: tuple[int, ...] = ADS1115_DATA_RATES
    #: Bits of Lo_thresh / Hi_thresh that are read-only, and what they read.
    threshold_fixed_mask = 0x0000

    def __init__(self, address: int = 0x48, inputs: dict[int, float | Signal] | None = None, *,
                 rate_error: float = 0.0, noise_volts: float = 0.0, seed: int = 0,
                 clock: Callable[[], float] = time.monotonic):
        self.address = address
        self.rate_error = rate_error
        self.noise_volts = noise_volts
        self._random = random.Random(seed)
        self._clock = clock
        self._t0 = clock()
        self._inputs: dict[int, Signal] = {channel: _signal(0.0) for channel in range(4)}
        for channel, value in (inputs or {}).items():
            self.set_input(channel, value)
        self.pointer = REG_CONVERSION
        self._config = CONFIG_RESET & ~OS
        self.conversion = 0  # cleared at power-up, kept until a conversion completes
        self.lo_thresh = LO_THRESH_RESET
        self.hi_thresh = HI_THRESH_RESET
        self._busy_until: float | None = None
        self._running: int | None = None  # the config word of the conversion in progress
        self._continuous_from: float | None = None
        self._continuous_done = 0
        self._running_continuous = self._config
        self.conversions = 0

    def __repr__(self) -> str:
        return f"{self.name}(0x{self.address:02X})"

    # --- the analogue side ----------------------------------------------------------------------------
    def set_input(self, channel: int, value: float | Signal) -> None:
        """Volts on AIN``channel``, a constant or a function of seconds since this chip was created."""
        if channel not in self._inputs:
            raise ValueError(f"the {self.name} has inputs AIN0–AIN3, not AIN{channel}")
        self._inputs[channel] = _signal(value)

    def power_cycle(self) -> None:
        """A supply glitch: every register back to its reset value, a conversion under way lost."""
        self.pointer = REG_CONVERSION
        self._config = self._running_continuous = CONFIG_RESET & ~OS
        self.conversion = 0
        self.lo_thresh, self.hi_thresh = LO_THRESH_RESET, HI_THRESH_RESET
        self._busy_until = self._running = self._continuous_from = None

    def volts(self, channel: int) -> float:
        """The voltage on AIN``channel`` now."""
        return self._inputs[channel](self._clock() - self._t0)

    def _sample(self, config_word: int, at: float) -> int:
        config = decode_config(config_word)
        positive, negative = MUX_INPUTS[config.mux]
        t = at - self._t0
        volts = self._inputs[positive](t) - (self._inputs[negative](t) if negative is not None else 0.0)
        if self.noise_volts:
            volts += self._random.gauss(0.0, self.noise_volts)
        return self._code(volts, FULL_SCALE[config_word >> 9 & 0b111])

    def _code(self, volts: float, full_scale: float) -> int:
        """The conversion register word of ``volts``: 16-bit two's complement, clipped at 7FFF / 8000."""
        code = min(max(round(volts * 32768 / full_scale), -32768), 32767)
        return code & 0xFFFF

    def period(self, data_rate_code: int) -> float:
        """Seconds one conversion takes at DR code ``data_rate_code`` on this chip's oscillator."""
        return (1.0 + self.rate_error) / self.data_rates[data_rate_code]

    # --- time passes ---------------------------------------------------------------------------------
    def _settle(self) -> None:
        now = self._clock()
        if self._busy_until is not None and now >= self._busy_until:
            self.conversion = self._sample(self._running, self._busy_until)
            self.conversions += 1
            self._busy_until = self._running = None
        if self._continuous_from is not None:
            period = self.period(self._running_continuous >> 5 & 0b111)
            done = math.floor((now - self._continuous_from) / period)
            if done > self._continuous_done:
                self.conversion = self._sample(self._running_continuous, self._continuous_from + done * period)
                self.conversions += done - self._continuous_done
                self._continuous_done = done

    # --- registers -----------------------------------------------------------------------------------
    def _register(self, pointer: int) -> int:
        if pointer == REG_CONVERSION:
            return self.conversion
        if pointer == REG_CONFIG:
            # The datasheet leaves OS in continuous mode unsaid; the model reads "converting" (0) there.
            converting = self._busy_until is not None or self._continuous_from is not None
            return self._config | (0 if converting else OS)
        return self.lo_thresh if pointer == REG_LO_THRESH else self.hi_thresh

    def _write_config(self, word: int) -> None:
        now = self._clock()
        self._config = word & ~OS
        if not word & MODE_SINGLE_SHOT:
            if self._continuous_from is None:
                self._continuous_from, self._continuous_done = now, 0
            self._running_continuous = self._config
            return
        if self._continuous_from is not None:
            # Leaving continuous mode: the conversion under way finishes (with its settings), then power-down.
            period = self.period(self._running_continuous >> 5 & 0b111)
            self._running = self._running_continuous
            self._busy_until = self._continuous_from + (self._continuous_done + 1) * period
            self._continuous_from = None
        # OS = 1 starts a conversion only from power-down; during a conversion it has no effect (SBAS444D §9.6.3).
        if word & OS and self._busy_until is None:
            self._running = self._config
            self._busy_until = now + self.period(word >> 5 & 0b111)

    def _threshold(self, word: int, reset: int) -> int:
        return word & ~self.threshold_fixed_mask | reset & self.threshold_fixed_mask

    # --- I2C -----------------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        self._settle()
        if not data:
            return
        self.pointer = data[0] & 0b11  # bits 7:2 of the pointer byte are reserved, always 0
        if len(data) < 3:
            return  # a pointer write only (or a lone byte, which changes nothing)
        word = data[1] << 8 | data[2]
        if self.pointer == REG_CONFIG:
            self._write_config(word)
        elif self.pointer == REG_LO_THRESH:
            self.lo_thresh = self._threshold(word, LO_THRESH_RESET)
        elif self.pointer == REG_HI_THRESH:
            self.hi_thresh = self._threshold(word, HI_THRESH_RESET)
        # the conversion register is read-only

    def read(self, length: int) -> bytes:
        self._settle()
        word = self._register(self.pointer)
        pair = bytes([word >> 8, word & 0xFF])  # most significant byte first (SBAS444D §9.5.3)
        return (pair * (length // 2 + 1))[:length]


class Ads1015(Ads1115):
    """A TI ADS1015: 12-bit results left-justified in the conversion register, faster data rates.

    Bits 3:0 of Lo_thresh read 0 and of Hi_thresh read 1, whatever is written (SBAS473E §8.6.4).
    """

    name = "ADS1015"
    data_rates = ADS1015_DATA_RATES
    threshold_fixed_mask = 0x000F

    def _code(self, volts: float, full_scale: float) -> int:
        code = min(max(round(volts * 2048 / full_scale), -2048), 2047)
        return (code << 4) & 0xFFFF


class LoopTransmitter:
    """A two-wire 4–20 mA pressure transmitter whose loop current flows through a shunt into an ADC input.

    Use it as an :class:`Ads1115` input: calling it with a time gives volts.
    ``set_pressure`` maps ``span`` onto 4–20 mA and, like a NAMUR NE 43
    transmitter, saturates at 3.8 and 20.5 mA when the pressure leaves the
    span; ``set_current`` drives any current (a fault signal at 21.5 mA, say);
    ``break_wire`` is 0 mA.

    >>> loop = LoopTransmitter(shunt_ohms=150.0, span=(0.0, 1.6))
    >>> loop.set_pressure(0.8); loop.current_ma(0.0), loop(0.0)
    (12.0, 1.8)
    >>> loop.set_pressure(2.0); loop.current_ma(0.0)
    20.5
    >>> loop.break_wire(); loop(0.0)
    0.0
    """

    def __init__(self, shunt_ohms: float = 150.0, span: tuple[float, float] = (0.0, 1.6), current_ma: float = 4.0):
        self.shunt_ohms = shunt_ohms
        self.span = span
        self._current: Signal = _signal(current_ma)

    def set_current(self, ma: float | Signal) -> None:
        self._current = _signal(ma)

    def set_pressure(self, pressure: float | Signal) -> None:
        """Pressure in span units, constant or a function of time; the transmitter turns it into current."""
        low, high = self.span
        source = _signal(pressure)

        def current(t: float) -> float:
            return min(max(4.0 + 16.0 * (source(t) - low) / (high - low), 3.8), 20.5)

        self._current = current

    def break_wire(self) -> None:
        self._current = _signal(0.0)

    def current_ma(self, t: float) -> float:
        return self._current(t)

    def __call__(self, t: float) -> float:
        return self._current(t) * self.shunt_ohms / 1000.0


# --- Honeywell HSC / SSC / ABP -------------------------------------------------------------------------

COMMAND_START_CM = 0xA0   # enter command mode (only accepted right after power-up on real parts)
COMMAND_START_NOM = 0x80  # back to normal operation


class HoneywellHsc(I2cChip):
    """A Honeywell TruStability HSC/SSC (or ABP) digital pressure sensor.

    It measures every ``update_period`` seconds, the first time ``startup``
    seconds after creation. A read returns the latest measurement with status
    normal the first time and stale on every later read until the next
    measurement (or before the first). ``stop_measuring`` freezes the cycle,
    so every read is stale; ``fault`` = ``"diagnostic"`` reports status 3,
    ``command_mode`` status 1. The five "do not care" bits of byte 4 carry
    ``filler`` (not zero, so a driver that does not mask them is caught).
    """

    def __init__(self, address: int = 0x28, *, p_min: float = 0.0, p_max: float = 1.6, transfer: str = "10-90",
                 pressure: float | Signal = 0.0, temperature: float | Signal = 25.0,
                 update_period: float = 0.0005, startup: float = 0.003, filler: int = 0b10101,
                 clock: Callable[[], float] = time.monotonic):
        if transfer not in honeywell.TRANSFER:
            raise ValueError(f"unknown transfer function {transfer!r}; known: {', '.join(honeywell.TRANSFER)}")
        self.address = address
        self.p_min, self.p_max, self.transfer = p_min, p_max, transfer
        self.update_period = update_period
        self.startup = startup
        self.filler = filler
        self._clock = clock
        self._t0 = clock()
        self._pressure = _signal(pressure)
        self._temperature = _signal(temperature)
        self._fetched = -1  # the measurement cycle a read last returned as new
        self._measured = (-1, 0, 0)  # (cycle, pressure counts, temperature counts); zeros before the first
        self._frozen_at: int | None = None
        self.fault: str | None = None
        self.command_mode = False

    def __repr__(self) -> str:
        return f"HoneywellHsc(0x{self.address:02X})"

    def set_pressure(self, value: float | Signal) -> None:
        self._pressure = _signal(value)

    def set_temperature(self, celsius: float | Signal) -> None:
        self._temperature = _signal(celsius)

    def stop_measuring(self) -> None:
        """The measurement cycle stops (a hung ASIC): from now on every read is stale."""
        self._frozen_at = self._cycle()

    def _cycle(self) -> int:
        """Index of the last completed measurement, −1 before the first."""
        if self._frozen_at is not None:
            return self._frozen_at
        since = self._clock() - self._t0 - self.startup
        return -1 if since < 0 else math.floor(since / self.update_period)

    def write(self, data: bytes) -> None:
        if data[:1] == bytes([COMMAND_START_CM]):
            self.command_mode = True
        elif data[:1] == bytes([COMMAND_START_NOM]):
            self.command_mode = False

    def read(self, length: int) -> bytes:
        cycle = self._cycle()
        if self.fault == "diagnostic":
            status = honeywell.STATUS_DIAGNOSTIC
        elif self.command_mode:
            status = honeywell.STATUS_COMMAND_MODE
        elif cycle < 0 or cycle == self._fetched:
            status = honeywell.STATUS_STALE
        else:
            status = honeywell.STATUS_NORMAL
            self._fetched = cycle
        if cycle != self._measured[0]:
            # A measurement is taken once per cycle; stale reads return exactly what it gave.
            t = self.startup + cycle * self.update_period
            self._measured = (cycle, honeywell.counts_for(self._pressure(t), self.p_min, self.p_max, self.transfer),
                              honeywell.temperature_counts(self._temperature(t)))
        _, counts, temperature = self._measured
        data = honeywell.encode(status, counts, temperature, filler=self.filler)
        return (data + b"\xff" * length)[:length]  # past byte 4 the bus floats high
