"""The simulated I2C chips behave like the datasheets say — closely enough that careless drivers fail.

A manual clock drives the chips here, so conversion and update timing is exact and no test sleeps.
"""

from __future__ import annotations

import doctest
import errno

import pytest
from smbus2 import i2c_msg

import drivers.codecs.ads1115
import drivers.codecs.honeywell
import edge.simulate.i2c_chips
from drivers.codecs.ads1115 import (
    MUX_DIFFERENTIAL,
    MUX_SINGLE,
    OS,
    REG_CONFIG,
    REG_CONVERSION,
    REG_HI_THRESH,
    REG_LO_THRESH,
    code_to_volts,
    config_word,
    signed16,
    swap16,
)
from drivers.codecs.honeywell import parse
from edge.simulate.i2c_chips import Ads1015, Ads1115, FakeSMBus, HoneywellHsc, LoopTransmitter

ADC = 0x48


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_doctests():
    for module in (edge.simulate.i2c_chips, drivers.codecs.ads1115, drivers.codecs.honeywell):
        assert doctest.testmod(module).failed == 0


# --- the bus ------------------------------------------------------------------------------------------------

def test_an_address_nobody_answers_fails_as_linux_does():
    bus = FakeSMBus(Ads1115(ADC))
    with pytest.raises(OSError) as caught:
        bus.read_word_data(0x49, REG_CONFIG)
    assert caught.value.errno == errno.EREMOTEIO


def test_injected_errors_and_unplugging(clock):
    bus = FakeSMBus(Ads1115(ADC, clock=clock))
    bus.fail(ADC, errno.EIO)
    with pytest.raises(OSError) as caught:
        bus.read_word_data(ADC, REG_CONFIG)
    assert caught.value.errno == errno.EIO
    bus.fail(ADC, None)
    assert bus.read_word_data(ADC, REG_CONFIG) == 0x8385
    chip = bus.remove(ADC)
    with pytest.raises(OSError):
        bus.read_byte(ADC)
    bus.add(chip)
    with pytest.raises(ValueError, match="0x48 is taken"):
        bus.add(Ads1115(ADC))


def test_transfers_are_recorded_as_on_the_wire(clock):
    bus = FakeSMBus(Ads1115(ADC, clock=clock))
    bus.write_word_data(ADC, REG_LO_THRESH, 0x3412)
    assert bus.read_i2c_block_data(ADC, REG_LO_THRESH, 2) == [0x12, 0x34]
    assert [(t.op, t.data.hex()) for t in bus.transfers] == [("w", "021234"), ("w", "02"), ("r", "1234")]
    assert bus.count(ADC, "w", bytes([REG_LO_THRESH])) == 1


# --- ADS1115: registers and byte order ----------------------------------------------------------------------

def test_registers_at_power_up_and_their_byte_order(clock):
    bus = FakeSMBus(Ads1115(ADC, clock=clock))
    # Big-endian registers: a block read shows them as the datasheet prints them, a word read byte-swapped.
    assert bus.read_i2c_block_data(ADC, REG_CONFIG, 2) == [0x85, 0x83]
    assert bus.read_word_data(ADC, REG_CONFIG) == 0x8385
    assert swap16(bus.read_word_data(ADC, REG_LO_THRESH)) == 0x8000
    assert swap16(bus.read_word_data(ADC, REG_HI_THRESH)) == 0x7FFF
    assert bus.read_word_data(ADC, REG_CONVERSION) == 0  # cleared at power-up


def convert(bus: FakeSMBus, clock: Clock, word: int) -> int:
    """What a correct driver does: swapped write, wait, OS polled, swapped read."""
    bus.write_word_data(ADC, REG_CONFIG, swap16(word))
    while not swap16(bus.read_word_data(ADC, REG_CONFIG)) & OS:
        clock.advance(0.001)
    return signed16(swap16(bus.read_word_data(ADC, REG_CONVERSION)))


def test_a_driver_that_forgets_the_byte_order_reads_nonsense(clock):
    adc = Ads1115(ADC, {0: 1.8, 1: 0.5}, clock=clock)
    bus = FakeSMBus(adc)
    word = config_word(MUX_SINGLE[0], 4.096, 128)  # 0xC383: AIN0–GND, ±4.096 V, 128 SPS
    assert code_to_volts(convert(bus, clock, word), 4.096) == 1.8

    # The same conversion with words sent and read as smbus hands them over, unswapped:
    bus.write_word_data(ADC, REG_CONFIG, word)
    clock.advance(0.1)
    wrong = signed16(bus.read_word_data(ADC, REG_CONVERSION))
    # The chip got 0x83C3 instead of 0xC383 (AIN0–AIN1 at 475 SPS) and the code came back byte-swapped.
    assert adc._config == 0x83C3 & ~OS
    assert code_to_volts(swap16(wrong & 0xFFFF), 4.096) == pytest.approx(1.3, abs=0.001)
    assert code_to_volts(wrong, 4.096) != pytest.approx(1.8, abs=0.1)


# --- ADS1115: single-shot timing ----------------------------------------------------------------------------

def test_single_shot_takes_one_period_with_os_zero_and_the_old_result_kept(clock):
    adc = Ads1115(ADC, {2: 1.0}, clock=clock)
    bus = FakeSMBus(adc)
    word = config_word(MUX_SINGLE[2], 2.048, 8)  # 8 SPS: 125 ms
    assert convert(bus, clock, word) == 16000   # 1.0 V / 62.5 µV
    adc.set_input(2, 1.5)
    bus.write_word_data(ADC, REG_CONFIG, swap16(word))
    clock.advance(0.124)
    # A driver that reads now, without polling OS, gets the previous conversion.
    assert not swap16(bus.read_word_data(ADC, REG_CONFIG)) & OS
    assert swap16(bus.read_word_data(ADC, REG_CONVERSION)) == 16000
    clock.advance(0.002)
    assert swap16(bus.read_word_data(ADC, REG_CONFIG)) & OS
    assert swap16(bus.read_word_data(ADC, REG_CONVERSION)) == 24000
    assert adc.conversions == 2


def test_a_start_during_a_conversion_is_ignored(clock):
    adc = Ads1115(ADC, {0: 0.25, 1: 0.75}, clock=clock)
    bus = FakeSMBus(adc)
    bus.write_word_data(ADC, REG_CONFIG, swap16(config_word(MUX_SINGLE[0], 4.096, 128)))
    clock.advance(0.002)
    bus.write_word_data(ADC, REG_CONFIG, swap16(config_word(MUX_SINGLE[1], 4.096, 128)))
    clock.advance(0.01)
    assert code_to_volts(swap16(bus.read_word_data(ADC, REG_CONVERSION)), 4.096) == 0.25  # AIN0's, not AIN1's
    assert adc.conversions == 1


def test_a_slow_oscillator_stretches_the_conversion(clock):
    adc = Ads1115(ADC, {0: 1.0}, rate_error=0.1, clock=clock)
    bus = FakeSMBus(adc)
    bus.write_word_data(ADC, REG_CONFIG, swap16(config_word(MUX_SINGLE[0], 4.096, 860)))
    clock.advance(1 / 860 * 1.09)
    assert not swap16(bus.read_word_data(ADC, REG_CONFIG)) & OS
    clock.advance(1 / 860 * 0.02)
    assert swap16(bus.read_word_data(ADC, REG_CONFIG)) & OS


def test_continuous_mode_keeps_converting(clock):
    adc = Ads1115(ADC, {0: lambda t: t}, clock=clock)   # a ramp of 1 V/s
    bus = FakeSMBus(adc)
    bus.write_word_data(ADC, REG_CONFIG, swap16(config_word(MUX_SINGLE[0], 4.096, 8) & ~(1 << 8)))
    clock.advance(1.0)
    assert code_to_volts(swap16(bus.read_word_data(ADC, REG_CONVERSION)), 4.096) == 1.0
    assert adc.conversions == 8


def test_leaving_continuous_mode_finishes_the_conversion_under_way_and_ignores_a_start(clock):
    adc = Ads1115(ADC, {0: 0.5, 1: 1.5}, clock=clock)
    bus = FakeSMBus(adc)
    bus.write_word_data(ADC, REG_CONFIG, swap16(config_word(MUX_SINGLE[0], 4.096, 8) & ~(1 << 8)))
    clock.advance(0.2)                                   # one conversion done, the second under way
    bus.write_word_data(ADC, REG_CONFIG, swap16(config_word(MUX_SINGLE[1], 4.096, 8)))   # single-shot, OS = 1
    clock.advance(0.05)
    assert swap16(bus.read_word_data(ADC, REG_CONFIG)) & OS  # powered down after AIN0's conversion at 0.25 s
    assert code_to_volts(swap16(bus.read_word_data(ADC, REG_CONVERSION)), 4.096) == 0.5   # AIN0's, not AIN1's
    assert adc.conversions == 2


# --- ADS1115: MUX and PGA -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("pga", "code"), [(6.144, 4800), (4.096, 7200), (2.048, 14400), (1.024, 28800),
                                           (0.512, 32767), (0.256, 32767)])
def test_pga_sets_the_step_and_clips_at_full_scale(clock, pga, code):
    bus = FakeSMBus(Ads1115(ADC, {3: 0.9}, clock=clock))
    assert convert(bus, clock, config_word(MUX_SINGLE[3], pga, 860)) == code


@pytest.mark.parametrize(("pair", "volts"), [("0-1", -0.2), ("0-3", 0.7), ("1-3", 0.9), ("2-3", 1.2)])
def test_mux_pairs(clock, pair, volts):
    bus = FakeSMBus(Ads1115(ADC, {0: 1.0, 1: 1.2, 2: 1.5, 3: 0.3}, clock=clock))
    code = convert(bus, clock, config_word(MUX_DIFFERENTIAL[pair], 2.048, 860))
    assert code_to_volts(code, 2.048) == pytest.approx(volts, abs=62.5e-6)


def test_a_negative_input_beyond_full_scale_reads_8000(clock):
    bus = FakeSMBus(Ads1115(ADC, {0: 0.0, 1: 3.0}, clock=clock))
    assert convert(bus, clock, config_word(MUX_DIFFERENTIAL["0-1"], 2.048, 860)) == -32768


def test_noise_is_seeded(clock):
    codes = []
    for _ in range(2):
        bus = FakeSMBus(Ads1115(ADC, {0: 1.0}, noise_volts=0.001, seed=7, clock=clock))
        codes.append([convert(bus, clock, config_word(MUX_SINGLE[0], 4.096, 860)) for _ in range(5)])
    assert codes[0] == codes[1] and len(set(codes[0])) > 1


# --- ADS1015 ------------------------------------------------------------------------------------------------

def test_ads1015_is_12_bit_left_justified_with_its_own_data_rates(clock):
    adc = Ads1015(ADC, {0: 1.0}, clock=clock)
    bus = FakeSMBus(adc)
    # DR code 000 — 8 SPS on an ADS1115 — is 128 SPS on an ADS1015.
    bus.write_word_data(ADC, REG_CONFIG, swap16(config_word(MUX_SINGLE[0], 2.048, 8)))
    clock.advance(1 / 128 + 1e-6)
    assert swap16(bus.read_word_data(ADC, REG_CONFIG)) & OS
    code = swap16(bus.read_word_data(ADC, REG_CONVERSION))
    assert code == 1000 << 4 and code & 0xF == 0   # 1.0 V / 1 mV, in bits 15:4


def test_ads1015_threshold_registers_keep_their_low_bits(clock):
    bus = FakeSMBus(Ads1015(ADC, clock=clock))
    bus.write_word_data(ADC, REG_LO_THRESH, swap16(0x800F))
    bus.write_word_data(ADC, REG_HI_THRESH, swap16(0x1230))
    assert swap16(bus.read_word_data(ADC, REG_LO_THRESH)) == 0x8000
    assert swap16(bus.read_word_data(ADC, REG_HI_THRESH)) == 0x123F
    bus = FakeSMBus(Ads1115(ADC, clock=clock))
    bus.write_word_data(ADC, REG_LO_THRESH, swap16(0x800F))
    assert swap16(bus.read_word_data(ADC, REG_LO_THRESH)) == 0x800F


# --- the loop transmitter -----------------------------------------------------------------------------------

def test_loop_transmitter_saturates_like_namur_ne43():
    loop = LoopTransmitter(shunt_ohms=100.0, span=(0.0, 1.0))
    loop.set_pressure(lambda t: t)
    assert [loop.current_ma(t) for t in (-1.0, 0.0, 0.5, 1.0, 2.0)] == [3.8, 4.0, 12.0, 20.0, 20.5]
    loop.set_current(21.5)
    assert loop(0.0) == pytest.approx(2.15)


# --- Honeywell HSC ------------------------------------------------------------------------------------------

def read(bus: FakeSMBus, length: int, address: int = 0x28) -> bytes:
    message = i2c_msg.read(address, length)
    bus.i2c_rdwr(message)
    return bytes(message)


def test_honeywell_reads_2_or_4_bytes_with_masked_filler(clock):
    sensor = HoneywellHsc(p_min=0.0, p_max=1.6, pressure=1.6, temperature=150.0, filler=0x1F, clock=clock)
    bus = FakeSMBus(sensor)
    clock.advance(0.01)
    assert read(bus, 4) == bytes([0x39, 0x99, 0xFF, 0xFF])  # 14745 counts, 2047 counts, filler bits set
    assert parse(read(bus, 4)).temperature_counts == 2047
    clock.advance(0.001)
    assert read(bus, 2) == bytes([0x39, 0x99])


def test_honeywell_stale_before_the_first_measurement_and_between_updates(clock):
    sensor = HoneywellHsc(pressure=0.8, update_period=0.005, startup=0.003, clock=clock)
    bus = FakeSMBus(sensor)
    assert parse(read(bus, 2)).status == 2            # not measured yet
    clock.advance(0.004)
    first = parse(read(bus, 2))
    assert (first.status, first.counts) == (0, 8192)
    sensor.set_pressure(1.6)
    again = parse(read(bus, 2))
    assert (again.status, again.counts) == (2, 8192)  # same cycle: stale, the same measurement
    clock.advance(0.005)
    assert parse(read(bus, 2)) == parse(bytes([0x39, 0x99]))
    sensor.stop_measuring()
    clock.advance(1.0)
    assert parse(read(bus, 2)).status == 2


def test_honeywell_command_mode_and_diagnostic_fault(clock):
    sensor = HoneywellHsc(clock=clock)
    bus = FakeSMBus(sensor)
    clock.advance(0.01)
    bus.i2c_rdwr(i2c_msg.write(0x28, [0xA0, 0x00, 0x00]))
    assert parse(read(bus, 2)).status == 1
    bus.i2c_rdwr(i2c_msg.write(0x28, [0x80, 0x00, 0x00]))
    clock.advance(0.001)
    assert parse(read(bus, 2)).status == 0
    sensor.fault = "diagnostic"
    assert parse(read(bus, 2)).status == 3


def test_a_reader_that_ignores_the_status_bits_misreads_stale_data_as_pressure(clock):
    sensor = HoneywellHsc(p_min=0.0, p_max=1.6, pressure=0.8, clock=clock)
    bus = FakeSMBus(sensor)
    clock.advance(0.01)
    read(bus, 2)
    stale = read(bus, 2)
    assert stale[0] >> 6 == 2
    assert stale[0] << 8 | stale[1] != 8192        # unmasked: 0x8000 too high
    assert parse(stale).counts == 8192
