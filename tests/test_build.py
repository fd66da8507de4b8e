"""cpr-edge build: board definitions, a real arm-none-eabi-gcc build for every board (real
boards included), memory.json, and the refusal of a model that does not fit."""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import re
import struct

import pytest

from cpr_edge.boards import list_boards, load_board
from cpr_edge.firmware_build import build_firmware, firmware_dir
from cpr_edge.firmware_build.memory import section_sizes
from cpr_edge.cli import main
from cpr_edge.errors import CprError

EMULATED = ["qemu-mps2-an386", "qemu-mps2-an500", "qemu-mps2-an505", "qemu-netduinoplus2", "qemu-microbit",
            "qemu-mps3-an547", "qemu-stm32vldiscovery"]


def run_cli(argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(argv)
    return rc, out.getvalue()


def test_list_boards_prints_one_board_per_line_with_core_clock_flash_ram():
    rc, out = run_cli(["build", "--list-boards"])
    assert rc == 0
    lines = out.splitlines()
    names = [ln.split()[0] for ln in lines]
    assert names == list_boards()
    for line, name in zip(lines, names):
        b = load_board(name)
        assert f" {b.core} " in line and f"{b.clock_hz / 1e6:g} MHz" in line, line
    small = lines[names.index("qemu-stm32vldiscovery")]
    assert "flash  128 KB" in small and "RAM    8 KB" in small and "24 MHz" in small
    assert set(EMULATED) <= set(names)
    real = [n for n in names if load_board(n).kind == "real"]
    assert len(real) >= 2
    assert any(load_board(n).uart["driver"] == "usart_stm32f4" for n in real)


def test_unknown_board_is_a_clear_error(capsys, tmp_path):
    assert main(["build", "--board", "no-such-board", "--model", str(tmp_path)]) != 0
    err = capsys.readouterr().err
    assert "unknown board 'no-such-board'" in err and "qemu-mps2-an386" in err


@pytest.mark.parametrize("name", list_boards())
def test_board_definition_agrees_with_its_linker_script(name):
    b = load_board(name)
    ld = (firmware_dir() / "linker" / b.linker_script).read_text()
    origins = dict(re.findall(r"(FLASH|RAM)\s*\(\w+\)\s*:\s*ORIGIN\s*=\s*(0x[0-9A-Fa-f]+)", ld))
    assert int(origins["FLASH"], 16) == b.flash_origin
    assert int(origins["RAM"], 16) == b.ram_origin
    assert (firmware_dir() / "drivers" / f"{b.uart['driver']}.c").is_file()
    if b.emulated:
        cmd = b.qemu_command("fw.elf", 1234, 1235)
        assert cmd[0] == "qemu-system-arm" and "fw.elf" in cmd and "-icount" in cmd
        assert any("port=1234" in a for a in cmd) and any("1235" in a for a in cmd)
        assert b.counter_unit == "instructions"
    else:
        assert b.flash_command("fw.elf")[:2] == ["pyocd", "flash"]
        assert b.counter_unit == "cycles"


@pytest.mark.slow
@pytest.mark.parametrize("name", list_boards())
def test_every_board_builds_with_memory_json(name, firmware_builds):
    board = load_board(name)
    res, out = firmware_builds[name]
    assert {"firmware.elf", "firmware.map", "memory.json", "board_config.h"} <= {p.name for p in out.iterdir()}
    assert not (out / "obj").exists()
    mem = json.loads((out / "memory.json").read_text())
    assert mem == json.loads(json.dumps(res["memory"]))
    f, r = mem["flash"], mem["ram"]
    codegen = json.loads((out / "model" / "codegen.json").read_text())
    # flash: code + constants (weights among them) + .data image, within capacity
    assert f["total"] == f["code"] + f["constants"] + f["data_init"] <= f["capacity"] == board.flash_size
    assert f["headroom"] == f["capacity"] - f["total"]
    assert codegen["weight_bytes"] <= f["model_constants"] <= f["constants"]
    # RAM: the activation arena is the generated plan's; the stack measured (on the board or
    # its emulated twin) plus the stated margin, or the fixed stack_bytes of a real board
    # without a twin
    assert r["activations"] == codegen["activation_bytes"] and r["activations"] <= r["bss"]
    st = r["stack"]
    if board.emulated or board.emulated_twin:
        assert st["source"] == "measured" and st["measured_on"] == (board.emulated_twin or name)
        assert 0 < st["invoke_measured"] < st["hil_measured"] == r["stack_measured"] < 4096
        assert st["outside_invoke"] == st["hil_measured"] - st["invoke_measured"]
        m = st["margin"]
        assert (m["fraction"], m["bytes"]) == (0.25, 256) and m["why"]
        with_margin = math.ceil(r["stack_measured"] * 1.25) + 256  # docs/memory.md
        assert r["stack_reserved"] == st["reserved"] == (with_margin + 7) // 8 * 8
    else:
        assert st["source"] == "board definition" and r["stack_measured"] is None
        assert r["stack_reserved"] == st["reserved"] == board.stack_bytes
    assert r["total"] == r["data"] + r["bss"] + r["stack_reserved"] <= r["capacity"] == board.ram_size
    assert mem["fits"] and mem["fc_kernel"] == board.fc_kernel
    # the ELF really is laid out for this board: vector table at the flash origin, initial
    # stack pointer at the top of the reserved stack, reset handler in flash (Thumb bit set)
    elf = (out / "firmware.elf").read_bytes()
    sizes = section_sizes(out / "firmware.elf")
    assert sizes[".text"] + sizes[".rodata"] + sizes.get(".ARM.exidx", 0) == f["code"] + f["constants"]
    text_off = _section_offset(elf, ".text")
    sp, reset = struct.unpack_from("<II", elf, text_off)
    assert board.ram_origin < sp <= board.ram_origin + board.ram_size
    assert reset & 1 and board.flash_origin <= reset - 1 < board.flash_origin + f["total"]
    assert b"qemu" in elf or board.kind == "real"
    assert name.encode() in elf  # BOARD_ID, sent in HELLO


def _section_offset(elf: bytes, wanted: str) -> int:
    """File offset of a section of a 32-bit little-endian ELF."""
    shoff, = struct.unpack_from("<I", elf, 0x20)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x2E)
    strtab_off = struct.unpack_from("<I", elf, shoff + shstrndx * shentsize + 0x10)[0]
    for i in range(shnum):
        name_off, = struct.unpack_from("<I", elf, shoff + i * shentsize)
        name = elf[strtab_off + name_off:elf.index(b"\0", strtab_off + name_off)].decode()
        if name == wanted:
            return struct.unpack_from("<I", elf, shoff + i * shentsize + 0x10)[0]
    raise KeyError(wanted)


@pytest.mark.slow
def test_model_that_does_not_fit_is_refused_with_numbers(hil_model_dir, tmp_path):
    # the same STM32F4 port with the memory of a much smaller part: 64 KB flash, 2 KB RAM
    # (less than .data + .bss: the first link, without a stack, already overflows)
    small = dataclasses.replace(load_board("qemu-netduinoplus2"), flash_size=64 * 1024, ram_size=2 * 1024)
    out = tmp_path / "fw"
    with pytest.raises(CprError) as e:
        build_firmware(small, hil_model_dir, out)
    msg = str(e.value)
    assert msg.startswith("the model does not fit qemu-netduinoplus2")
    flash = re.search(r"flash needs (\d+) bytes \(code (\d+), constants (\d+), data (\d+)\) "
                      r"but has 65536: (\d+) bytes over", msg)
    ram = re.search(r"RAM needs (\d+) bytes .*stack not yet sized\) but has 2048: (\d+) bytes over", msg)
    assert flash and ram, msg
    need, code, const, data, over = map(int, flash.groups())
    assert need == code + const + data and over == need - 65536 > 0
    assert int(ram.group(2)) == int(ram.group(1)) - 2048 > 0
    assert not out.exists()  # nothing written, nothing that could be flashed


@pytest.mark.slow
def test_measured_stack_that_does_not_fit_is_refused(hil_model_dir, firmware_builds, tmp_path):
    """.data + .bss fit, the stack measured for them does not: refused with the measured
    figure, nothing written. And a stack that fits exactly is what the image gets."""
    board = load_board("qemu-netduinoplus2")
    mem = firmware_builds[board.name][0]["memory"]
    static = mem["ram"]["data"] + mem["ram"]["bss"]
    need = mem["ram"]["stack_reserved"]
    tight = dataclasses.replace(board, ram_size=static + need - 8)
    out = tmp_path / "fw"
    with pytest.raises(CprError) as e:
        build_firmware(tight, hil_model_dir, out)
    msg = str(e.value)
    r = mem["ram"]
    assert msg == (f"the model does not fit qemu-netduinoplus2: RAM needs {static + need} bytes (data "
                   f"{r['data']}, bss {r['bss']} incl. activations {r['activations']}, stack {need} = "
                   f"measured {r['stack_measured']} on qemu-netduinoplus2 + margin) but has "
                   f"{static + need - 8}: 8 bytes over"), msg
    assert not out.exists()
    exact = build_firmware(dataclasses.replace(board, ram_size=static + need), hil_model_dir, out)
    assert exact["memory"]["ram"]["headroom"] == 0 and exact["memory"]["ram"]["stack_reserved"] == need


@pytest.mark.slow
def test_stack_figures_are_cached_in_the_build_folder(hil_model_dir, tmp_path):
    """A rebuild of the same model for the same board reads the figures back (no probe run);
    another FULLY_CONNECTED kernel is measured anew."""
    out = tmp_path / "fw"
    first = build_firmware("qemu-microbit", hil_model_dir, out)["memory"]["ram"]["stack"]
    cache = json.loads((out / "stack_probe.json").read_text())
    assert not first["from_cache"] and cache["hil_stack_bytes"] == first["hil_measured"]
    log = []
    again = build_firmware("qemu-microbit", hil_model_dir, out, progress=log.append)["memory"]["ram"]["stack"]
    assert again["from_cache"] and {k: v for k, v in again.items() if k != "from_cache"} == \
        {k: v for k, v in first.items() if k != "from_cache"}
    assert not any("measuring the stack" in line for line in log)
    other = build_firmware("qemu-microbit", hil_model_dir, out, fc_kernel="reference")["memory"]["ram"]["stack"]
    assert not other["from_cache"] and json.loads((out / "stack_probe.json").read_text())["key"] != cache["key"]


def test_missing_model_is_a_clear_error(tmp_path, capsys):
    assert main(["build", "--board", "qemu-mps2-an386", "--model", str(tmp_path)]) != 0
    assert "model_int8.tflite not found" in capsys.readouterr().err
    assert not (tmp_path / "firmware").exists()


@pytest.mark.slow
def test_cli_build_json(hil_model_dir, tmp_path, capsys):
    out = tmp_path / "o"
    rc = main(["build", "--board", "qemu-mps2-an386", "--model", str(hil_model_dir), "--out", str(out),
               "--fc-kernel", "reference", "--json"])
    captured = capsys.readouterr()
    assert rc == 0 and "qemu-mps2-an386: flash" in captured.err  # progress on stderr
    res = json.loads(captured.out)  # one JSON object on stdout
    assert res["elf"] == str(out / "firmware.elf") and res["fc_kernel"] == "reference"
    assert json.loads((out / "memory.json").read_text())["fc_kernel"] == "reference"


def test_relative_paths_build(hil_model_dir, tmp_path, monkeypatch, capsys):
    """The default run folders are relative (runs/...); make runs elsewhere, so the build
    must resolve them."""
    import shutil

    shutil.copytree(hil_model_dir, tmp_path / "model", ignore=shutil.ignore_patterns("firmware"))
    monkeypatch.chdir(tmp_path)
    rc = main(["build", "--board", "qemu-mps2-an386", "--model", "model", "--out", "rel/fw", "--json"])
    assert rc == 0, capsys.readouterr().err
    assert (tmp_path / "rel" / "fw" / "firmware.elf").is_file()
    assert json.loads((tmp_path / "rel" / "fw" / "memory.json").read_text())["fits"]
