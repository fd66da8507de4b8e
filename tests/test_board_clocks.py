"""Clock trees of the real STM32 boards: the register words board_config.h hands to
firmware/platform/clock_stm32f4.c and clock_stm32f1.c, decoded field by field against the
reference manuals (RM0390 for the STM32F446, RM0008 for the STM32F103), the USART divider
from the bus clock, the words really in the built images, and wrong trees refused."""
from __future__ import annotations

import dataclasses
import re

import pytest

from cpr_edge.boards import load_board
from cpr_edge.errors import CprError
from cpr_edge.firmware_build.clock import clock_tree
from cpr_edge.firmware_build.config import board_config_h


def macros(board_name: str) -> dict[str, int]:
    """The numeric ``#define BOARD_...`` values of a board's generated board_config.h."""
    text = board_config_h(load_board(board_name), source_id="0" * 16)
    return {k: int(v, 0) for k, v in re.findall(r"#define BOARD_(\w+) (0x[0-9A-F]+|\d+)u?\b", text)}


def field(word: int, lsb: int, width: int) -> int:
    return (word >> lsb) & ((1 << width) - 1)


def test_nucleo_f446re_pll_180_mhz_from_hsi_with_overdrive():
    m = macros("nucleo-f446re")
    pll = m["RCC_PLLCFGR"]
    pllm, plln, pllp = field(pll, 0, 6), field(pll, 6, 9), 2 * (field(pll, 16, 2) + 1)
    assert (pllm, plln, pllp) == (8, 180, 2)
    assert field(pll, 22, 1) == 0                      # PLLSRC: HSI
    assert 2 <= field(pll, 24, 4) <= 15 and 2 <= field(pll, 28, 3) <= 7  # Q, R in range
    assert 16_000_000 // pllm == 2_000_000            # VCO input: the recommended 2 MHz
    sysclk = 16_000_000 // pllm * plln // pllp
    assert sysclk == 180_000_000 == m["CLOCK_HZ"]
    cfgr = m["RCC_CFGR_DIVIDERS"]
    assert field(cfgr, 4, 4) == 0                      # HPRE: HCLK = SYSCLK
    assert field(cfgr, 10, 3) == 0b101                 # PPRE1: /4 -> APB1 45 MHz
    assert field(cfgr, 13, 3) == 0b100                 # PPRE2: /2 -> APB2 90 MHz
    assert field(cfgr, 0, 4) == 0                      # the switch to the PLL is the C code's, last
    acr = m["FLASH_ACR"]
    assert field(acr, 0, 4) == 5 and acr & (7 << 8) == 7 << 8  # 5 WS, prefetch + I-cache + D-cache
    assert field(m["PWR_CR_VOS"], 14, 2) == 0b11 and m["CLOCK_OVERDRIVE"] == 1  # scale 1, over-drive
    assert m["CLOCK_FROM_HSE"] == 0 and m["CLOCK_SETUP"] == 1
    # USART2 on APB1 at 45 MHz: 45e6 / 115200 = 390.6 -> 391 (mantissa 24, fraction 7)
    assert m["UART_CLOCK_HZ"] == 45_000_000 and m["UART_BRR"] == 391 == (24 << 4) | 7
    assert abs(45_000_000 / 391 / 115200 - 1) < 0.002


def test_bluepill_72_mhz_from_hse_times_9():
    m = macros("bluepill-f103c8")
    cfgr = m["RCC_CFGR"]
    assert field(cfgr, 16, 1) == 1 and field(cfgr, 17, 1) == 0   # PLLSRC HSE, not halved
    mul = field(cfgr, 18, 4) + 2
    assert mul == 9 and 8_000_000 * mul == 72_000_000 == m["CLOCK_HZ"]
    assert field(cfgr, 4, 4) == 0                                 # AHB /1
    assert field(cfgr, 8, 3) == 0b100                             # APB1 /2 -> 36 MHz
    assert field(cfgr, 11, 3) == 0                                # APB2 /1 -> 72 MHz
    assert 72_000_000 // (2 * (field(cfgr, 14, 2) + 1)) <= 14_000_000  # ADC clock limit
    assert field(cfgr, 0, 2) == 0                                 # SYSCLK switched last, in C
    assert m["FLASH_ACR"] == 2 | 1 << 4                           # 2 WS + prefetch buffer
    assert m["CLOCK_FROM_HSE"] == 1
    assert m["UART_BRR"] == 625  # USART1 on APB2: 72e6 / 115200 exactly
    # the F1 port's pins: PA9 / PA10 of GPIOA, clocks in APB2ENR (IOPAEN, USART1EN)
    assert (m["UART_GPIO_BASE"], m["UART_TX_PIN"], m["UART_RX_PIN"]) == (0x40010800, 9, 10)
    assert (m["UART_RCC_ENR_OFFSET"], m["UART_RCC_BIT"], m["UART_GPIO_RCC_BIT"]) == (0x18, 14, 2)


def test_emulated_stm32_boards_run_at_the_clock_qemu_gives():
    for name, brr in (("qemu-stm32vldiscovery", 208), ("qemu-netduinoplus2", 729)):
        m = macros(name)
        assert m["CLOCK_SETUP"] == 0 and "RCC_PLLCFGR" not in m and "RCC_CFGR" not in m
        assert m["UART_BRR"] == brr


@pytest.mark.parametrize("change, message", [
    (lambda c: {**c, "pll": {**c["pll"], "n": 168}}, "gives HCLK 168000000 Hz, but clock_hz is 180000000"),
    # a 1 MHz VCO input is within RM0390's range, but N = 180 then gives 90 MHz
    (lambda c: {**c, "pll": {**c["pll"], "m": 16}}, "gives HCLK 90000000 Hz"),
    (lambda c: {**c, "pll": {**c["pll"], "m": 4, "n": 90}}, "VCO input 4000000 Hz outside 1-2 MHz"),
    (lambda c: {**c, "apb1_div": 2}, "APB1 90000000 Hz"),
    (lambda c: {**c, "flash_wait_states": 4}, "4 flash wait states, HCLK 180000000 Hz needs 5"),
    (lambda c: {**c, "overdrive": False}, "too fast for voltage scale 1 without over-drive"),
    (lambda c: {**c, "source": "hsi", "source_hz": 8_000_000}, "HSI of this family runs at 16000000 Hz"),
])
def test_wrong_f446_clock_trees_are_refused(change, message):
    board = load_board("nucleo-f446re")
    with pytest.raises(CprError, match=re.escape(message)):
        clock_tree(dataclasses.replace(board, clock=change(board.clock)))


def test_uart_clock_must_be_its_bus_clock():
    board = load_board("nucleo-f446re")
    bad = dataclasses.replace(board, uart={**board.uart, "clock_hz": 16_000_000})
    with pytest.raises(CprError, match="USART is on APB1 at 45000000 Hz, but uart.clock_hz is 16000000"):
        clock_tree(bad)
    bp = load_board("bluepill-f103c8")
    with pytest.raises(CprError, match="1 flash wait states, SYSCLK 72000000 Hz needs 2"):
        clock_tree(dataclasses.replace(bp, clock={**bp.clock, "flash_wait_states": 1}))
    with pytest.raises(CprError, match="PLL output 80000000 Hz above 72 MHz"):
        clock_tree(dataclasses.replace(bp, clock={**bp.clock, "pll": {"mul": 10}}))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["nucleo-f446re", "bluepill-f103c8"])
def test_built_image_has_the_clock_set_up(name, firmware_builds):
    """The image was compiled from these words (its board_config.h) and links clock_init,
    called first in platform_init."""
    import subprocess

    _, out = firmware_builds[name]
    header = (out / "board_config.h").read_text()
    for key, value in macros(name).items():
        if key.startswith(("RCC_", "FLASH_ACR", "UART_BRR")):
            assert re.search(rf"#define BOARD_{key} (0x0*{value:X}|{value})u", header), key
    symbols = subprocess.run(["arm-none-eabi-nm", str(out / "firmware.elf")], capture_output=True,
                             text=True, check=True).stdout
    assert re.search(r" T clock_init$", symbols, re.M)
