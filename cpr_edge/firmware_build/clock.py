"""The clock tree of a board definition's ``clock`` section: derived frequencies, the limits
of the reference manual checked, and the register words the firmware's clock set-up
(firmware/platform/clock_stm32f4.c, clock_stm32f1.c) writes, as board_config.h macros.

The words are computed here, once, from the YAML, so the C code holds no per-board numbers
and a wrong clock tree (one that does not give the board's ``clock_hz``, or a USART clock
other than its bus's, or flash wait states too few for the frequency) is refused before
anything is compiled. Field positions and limits: RM0390 (STM32F446) sections 3.4, 5.1,
6.3; RM0008 (STM32F10x) sections 3.3.3, 7.3.
"""
from __future__ import annotations

from dataclasses import dataclass

from cpr_edge.boards import Board
from cpr_edge.errors import CprError

HSI_HZ = {"clock_stm32f4": 16_000_000, "clock_stm32f1": 8_000_000}
AHB_DIVS = {1: 0b0000, 2: 0b1000, 4: 0b1001, 8: 0b1010, 16: 0b1011, 64: 0b1100, 128: 0b1101,
            256: 0b1110, 512: 0b1111}
"""HCLK divider -> HPRE field (both families)."""
APB_DIVS = {1: 0b000, 2: 0b100, 4: 0b101, 8: 0b110, 16: 0b111}
"""PCLK divider -> PPREx field (both families)."""
# The RCC enable register that clocks a USART says which bus it sits on.
UART_BUS = {"clock_stm32f4": {0x40: "apb1", 0x44: "apb2"},
            "clock_stm32f1": {0x1C: "apb1", 0x18: "apb2"}}


@dataclass(frozen=True)
class ClockTree:
    sysclk_hz: int
    hclk_hz: int
    apb1_hz: int
    apb2_hz: int
    macros: dict[str, int]
    """board_config.h macro name (without BOARD_) -> value."""


def _fail(board: Board, msg: str):
    raise CprError(f"board definition {board.name}.yaml: clock: {msg}")


def _exact_div(board: Board, num: int, den: int, what: str) -> int:
    if num % den:
        _fail(board, f"{what} {num}/{den} Hz is not a whole number of Hz")
    return num // den


def _stm32f4(board: Board, c: dict) -> ClockTree:
    pll = c["pll"]
    m, n, p, q, r = (int(pll[k]) for k in ("m", "n", "p", "q", "r"))
    src = int(c["source_hz"])
    if not (2 <= m <= 63 and 50 <= n <= 432 and p in (2, 4, 6, 8) and 2 <= q <= 15 and 2 <= r <= 7):
        _fail(board, "PLL M 2-63, N 50-432, P 2/4/6/8, Q 2-15, R 2-7 (RM0390 6.3.2)")
    vco_in = _exact_div(board, src, m, "VCO input")
    if not 1_000_000 <= vco_in <= 2_000_000:
        _fail(board, f"VCO input {vco_in} Hz outside 1-2 MHz")
    vco = vco_in * n
    if not 100_000_000 <= vco <= 432_000_000:
        _fail(board, f"VCO output {vco} Hz outside 100-432 MHz")
    sysclk = _exact_div(board, vco, p, "SYSCLK")
    hclk, apb1, apb2 = _buses(board, c, sysclk)
    scale, overdrive = int(c["voltage_scale"]), bool(c.get("overdrive", False))
    max_hclk = {1: (168, 180), 2: (144, 168), 3: (120, 120)}.get(scale)
    if max_hclk is None or hclk > max_hclk[overdrive] * 1_000_000:
        _fail(board, f"HCLK {hclk} Hz too fast for voltage scale {scale}"
                     f"{' with' if overdrive else ' without'} over-drive (RM0390 5.1.4)")
    if apb1 > 45_000_000 or apb2 > 90_000_000:
        _fail(board, f"APB1 {apb1} Hz / APB2 {apb2} Hz above 45 / 90 MHz")
    ws = int(c["flash_wait_states"])
    need = -(-hclk // 30_000_000) - 1  # RM0390 table 5, 2.7-3.6 V: one wait state per 30 MHz
    if not need <= ws <= 15:
        _fail(board, f"{ws} flash wait states, HCLK {hclk} Hz needs {need} (RM0390 3.4.1)")
    from_hse = c["source"] == "hse"
    macros = {
        "RCC_PLLCFGR": m | n << 6 | (p // 2 - 1) << 16 | int(from_hse) << 22 | q << 24 | r << 28,
        "RCC_CFGR_DIVIDERS": AHB_DIVS[int(c["ahb_div"])] << 4 | APB_DIVS[int(c["apb1_div"])] << 10
                             | APB_DIVS[int(c["apb2_div"])] << 13,
        # LATENCY, PRFTEN (8), ICEN (9), DCEN (10): the ART accelerator on
        "FLASH_ACR": ws | 1 << 8 | 1 << 9 | 1 << 10,
        "PWR_CR_VOS": {1: 0b11, 2: 0b10, 3: 0b01}[scale] << 14,
        "CLOCK_OVERDRIVE": int(overdrive),
    }
    return ClockTree(sysclk, hclk, apb1, apb2, {**macros, "CLOCK_FROM_HSE": int(from_hse)})


def _stm32f1(board: Board, c: dict) -> ClockTree:
    mul, src = int(c["pll"]["mul"]), int(c["source_hz"])
    from_hse = c["source"] == "hse"
    if not 2 <= mul <= 16:
        _fail(board, "PLL mul 2-16 (RM0008 7.3.2)")
    if from_hse and not 4_000_000 <= src <= 16_000_000:
        _fail(board, f"HSE {src} Hz outside 4-16 MHz")
    pll_in = src if from_hse else src // 2  # PLLSRC 0: HSI / 2
    sysclk = pll_in * mul
    if sysclk > 72_000_000:
        _fail(board, f"PLL output {sysclk} Hz above 72 MHz")
    hclk, apb1, apb2 = _buses(board, c, sysclk)
    if apb1 > 36_000_000 or apb2 > 72_000_000:
        _fail(board, f"APB1 {apb1} Hz / APB2 {apb2} Hz above 36 / 72 MHz")
    ws = int(c["flash_wait_states"])
    need = 0 if sysclk <= 24_000_000 else 1 if sysclk <= 48_000_000 else 2  # RM0008 3.3.3
    if not need <= ws <= 2:
        _fail(board, f"{ws} flash wait states, SYSCLK {sysclk} Hz needs {need} (RM0008 3.3.3)")
    # ADC clock from APB2 kept at or below its 14 MHz limit: the smallest divider 2/4/6/8 that does
    adc_div = next((d for d in (2, 4, 6, 8) if apb2 // d <= 14_000_000), 8)
    macros = {
        "RCC_CFGR": AHB_DIVS[int(c["ahb_div"])] << 4 | APB_DIVS[int(c["apb1_div"])] << 8
                    | APB_DIVS[int(c["apb2_div"])] << 11 | (adc_div // 2 - 1) << 14
                    | int(from_hse) << 16 | (mul - 2) << 18,
        "FLASH_ACR": ws | 1 << 4,  # LATENCY, PRFTBE: the prefetch buffer on
        "CLOCK_FROM_HSE": int(from_hse),
    }
    return ClockTree(sysclk, hclk, apb1, apb2, macros)


def _buses(board: Board, c: dict, sysclk: int) -> tuple[int, int, int]:
    try:
        ahb, apb1, apb2 = AHB_DIVS.get(int(c["ahb_div"])), APB_DIVS.get(int(c["apb1_div"])), \
            APB_DIVS.get(int(c["apb2_div"]))
    except (KeyError, TypeError, ValueError):
        ahb = None
    if ahb is None or apb1 is None or apb2 is None:
        _fail(board, "ahb_div 1-512 and apb1_div/apb2_div 1/2/4/8/16 (powers of two)")
    hclk = sysclk // int(c["ahb_div"])
    return hclk, hclk // int(c["apb1_div"]), hclk // int(c["apb2_div"])


def clock_tree(board: Board) -> ClockTree | None:
    """The board's clock tree, checked against its ``clock_hz`` and UART clock; None for a
    board without a clock section (it runs at its reset clock or the one QEMU gives it)."""
    c = board.clock
    if c is None:
        return None
    driver = c["driver"]
    try:
        if c.get("source") not in ("hsi", "hse"):
            _fail(board, "source must be hsi or hse")
        if c["source"] == "hsi" and int(c["source_hz"]) != HSI_HZ[driver]:
            _fail(board, f"the HSI of this family runs at {HSI_HZ[driver]} Hz")
        tree = (_stm32f4 if driver == "clock_stm32f4" else _stm32f1)(board, c)
    except (KeyError, TypeError, ValueError) as e:
        _fail(board, f"malformed ({e!r})")
    if tree.hclk_hz != board.clock_hz:
        _fail(board, f"the PLL set-up gives HCLK {tree.hclk_hz} Hz, but clock_hz is {board.clock_hz}")
    bus = UART_BUS[driver].get(int(board.uart.get("rcc_enr_offset", -1)))
    if bus is None:
        _fail(board, "uart.rcc_enr_offset names no APB enable register of this family")
    bus_hz = tree.apb1_hz if bus == "apb1" else tree.apb2_hz
    if int(board.uart["clock_hz"]) != bus_hz:
        _fail(board, f"the USART is on {bus.upper()} at {bus_hz} Hz, but uart.clock_hz is "
                     f"{board.uart['clock_hz']}")
    return tree


def clock_config_lines(board: Board) -> list[str]:
    """board_config.h lines of the clock set-up (``BOARD_CLOCK_SETUP`` 0 without one)."""
    tree = clock_tree(board)
    if tree is None:
        return ["#define BOARD_CLOCK_SETUP 0 /* runs at the clock it starts on */"]
    lines = [f"#define BOARD_CLOCK_SETUP 1 /* {board.clock['driver']}.c: SYSCLK {tree.sysclk_hz}, "
             f"APB1 {tree.apb1_hz}, APB2 {tree.apb2_hz} Hz */"]
    lines += [f"#define BOARD_{k} 0x{v:08X}u" for k, v in tree.macros.items()]
    return lines
