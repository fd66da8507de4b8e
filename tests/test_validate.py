"""cpr-edge validate and the doors of issue 13: models built directly with TensorFlow (not by
cpr-edge export) run on a board and compared with the tflite-micro interpreter, bare .tflite
builds, user board files, .bin/.hex images, real-board refusals. QEMU and the compiler run
for real; the TF models are converted by TF's own converter (tests/tflite_models.py)."""
from __future__ import annotations

import json
import os
import re
import shutil
import struct

import numpy as np
import pytest

from cpr_edge.cli import main
from cpr_edge.codegen.reader import read_model
from tflite_models import SPECS, convert, softmax_model, wide_model

SPEC = {s.name: s for s in SPECS}
INT8_MODEL, FLOAT_ELU_MODEL = SPECS[0].name, SPECS[1].name


@pytest.fixture(scope="session")
def tf_tflites(tmp_path_factory):
    """``{name: path}`` of the TF-built models, plus ``wide`` (130 inputs)."""
    root = tmp_path_factory.mktemp("tf_models")
    out = {s.name: convert(s, root / f"{s.name}.tflite") for s in SPECS}
    out["wide"] = wide_model(root / "wide.tflite")
    out["softmax"] = softmax_model(root / "softmax.tflite")
    return out


def cli(argv, capsys):
    rc = main([str(a) for a in argv])
    c = capsys.readouterr()
    return rc, c.out, c.err


def assert_one_line_refusal(rc, err, *words):
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if ln.startswith("cpr-edge: error:")]
    assert len(lines) == 1, err
    for w in words:
        assert w in lines[0], lines[0]


def fused_activations(path) -> list[int]:
    g = read_model(path)
    return [int(op.options.fusedActivationFunction) for op in g.operators if op.name == "FULLY_CONNECTED"]


def weight_scale_counts(path) -> list[int]:
    g = read_model(path)
    return [len(g.tensors[op.inputs[1]].scale) for op in g.operators if op.name == "FULLY_CONNECTED"]


def test_tf_models_are_what_the_acceptance_asks(tf_tflites):
    """The converter output itself: odd widths, relu / relu6 fused, tanh, sigmoid, a residual
    ADD, per-channel and per-tensor weights, int8 and float I/O, ELU as a float island."""
    a = read_model(tf_tflites[INT8_MODEL])
    assert {"TANH", "ADD", "LOGISTIC"} <= {op.name for op in a.operators}
    assert a.tensors[a.inputs[0]].dtype == "int8" and fused_activations(tf_tflites[INT8_MODEL])[0] == 1  # RELU
    assert weight_scale_counts(tf_tflites[INT8_MODEL])[0] == 37  # per-channel, odd width
    b = read_model(tf_tflites[FLOAT_ELU_MODEL])
    names = [op.name for op in b.operators]
    assert b.tensors[b.inputs[0]].dtype == "float32"
    assert names[names.index("ELU") - 1] == "DEQUANTIZE" and names[names.index("ELU") + 1] == "QUANTIZE"
    assert fused_activations(tf_tflites[FLOAT_ELU_MODEL])[0] == 3  # RELU6
    assert set(weight_scale_counts(tf_tflites[FLOAT_ELU_MODEL])) == {1}  # per-tensor


@pytest.mark.slow
@pytest.mark.qemu
@pytest.mark.parametrize("name", [s.name for s in SPECS])
def test_validate_tf_model_bit_exact_on_qemu(name, tf_tflites, tmp_path, capsys):
    out = tmp_path / "v"
    rc, stdout, err = cli(["validate", "--board", "qemu-mps2-an386", "--model", tf_tflites[name],
                           "--random", 200, "--out", out, "--json"], capsys)
    assert rc == 0, err
    r = json.loads(stdout)
    assert json.loads((out / "validate.json").read_text())["comparison"] == r["comparison"]
    c = r["comparison"]
    assert c["bit_exact"] and c["bit_exact_inputs"] == 200 and c["outputs"] == 200 * SPEC[name].layers[-1][0]
    assert c["max_abs_diff"] == 0 and c["first_mismatch"] is None
    saved = np.load(out / "outputs.npz")
    assert saved["inputs"].shape == (200, SPEC[name].inputs)
    assert len(np.unique(saved["tflm"])) > 50  # outputs that vary: the comparison means something
    np.testing.assert_array_equal(saved["board"].view(np.int32), saved["tflm"].view(np.int32))
    lat, mem = r["latency"], r["memory"]
    assert lat["unit"] == "instructions" and lat["steps"] == 200 and 1000 < lat["p50"] < 100_000
    assert lat["p50_s_estimate"] == pytest.approx(lat["p50"] / 25e6)
    assert mem["tflm_arena_bytes"] > 0 and mem["inference_ram_bytes"] > mem["activation_bytes"] > 0
    assert 0 < mem["stack_used_on_board"] < mem["stack_reserved"]
    assert (out / "firmware" / "firmware.elf").is_file() and (out / "firmware" / "firmware.hex").is_file()
    md = (out / "validate.md").read_text()
    assert "bit-exact: 200 of 200 inputs" in md and "smallest TFLM arena" in md
    ops = json.loads((out / "firmware" / "model" / "codegen.json").read_text())["ops"]
    if SPEC[name].float_io:
        assert r["model"]["rewrites"] == ["ELU"] and "ELU" in ops and ops.count("DEQUANTIZE") == 1
        assert r["model"]["input"]["dtype"] == "float32"
        assert "DEQUANTIZE -> ELU -> QUANTIZE" in md
        # TFLM on the file as the converter wrote it (float ELU) gives the same outputs
        assert r["comparison_with_original"]["bit_exact"]
    else:
        assert r["model"]["rewrites"] == [] and r["comparison_with_original"] is None
        assert r["model"]["input"]["dtype"] == ("int16" if SPEC[name].int16 else "int8")
    if SPEC[name].int16:  # the 16x8 ELU island stays in the model: the code generator implements it
        assert ops[ops.index("ELU") - 1] == "DEQUANTIZE" and r["model"]["output"]["core_dtype"] == "int16"


def _user_board(tmp_path, shipped="qemu-mps2-an386", name="my-board", with_script=True):
    """A renamed copy of a shipped board file outside the package (its own name and, if
    ``with_script``, its own copy of the linker script beside it, marked)."""
    from cpr_edge.firmware_build import firmware_dir

    text = (firmware_dir().parent / "boards" / f"{shipped}.yaml").read_text()
    text = text.replace(f"name: {shipped}", f"name: {name}")
    if with_script:
        text = text.replace(f"linker_script: {shipped}.ld", f"linker_script: {name}.ld")
        ld = (firmware_dir() / "linker" / f"{shipped}.ld").read_text()
        (tmp_path / f"{name}.ld").write_text(ld + "\nuser_linker_script_marker = 0x13;\n")
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


@pytest.mark.slow
@pytest.mark.qemu
def test_validate_user_board_file_with_inputs_file(tf_tflites, tmp_path, monkeypatch, capsys):
    _user_board(tmp_path)
    x = np.random.default_rng(5).integers(-128, 128, (40, SPEC[INT8_MODEL].inputs)).astype(np.int8)
    np.save(tmp_path / "x.npy", x)
    monkeypatch.chdir(tmp_path)
    rc, stdout, err = cli(["validate", "--board", "./my-board.yaml", "--model", tf_tflites[INT8_MODEL],
                           "--inputs", "x.npy", "--out", "val", "--json"], capsys)
    assert rc == 0, err
    r = json.loads(stdout)
    assert r["board"]["name"] == "my-board" and r["board"]["definition"] == str(tmp_path / "my-board.yaml")
    assert r["comparison"]["bit_exact"] and r["comparison"]["inputs"] == 40
    assert r["inputs"]["source"] == "file"
    np.testing.assert_array_equal(np.load(tmp_path / "val" / "outputs.npz")["inputs"], x)
    fw = tmp_path / "val" / "firmware"
    assert '"my-board"' in (fw / "board_config.h").read_text()  # HELLO's board id: the session checked it
    assert "user_linker_script_marker" in (fw / "firmware.map").read_text()  # linked with the copy's script


def test_renamed_copy_without_its_script_uses_the_shipped_one(tmp_path):
    from cpr_edge.boards import load_board

    b = load_board(str(_user_board(tmp_path, name="copy", with_script=False)))
    assert b.name == "copy" and b.linker_script_path == "qemu-mps2-an386.ld"
    assert b.flash_size == load_board("qemu-mps2-an386").flash_size


@pytest.mark.slow
def test_build_bare_tflite_for_nucleo_writes_bin_and_hex(tf_tflites, tmp_path, capsys):
    """A converter's .tflite with an ELU float island: rewritten, reported, and the image
    written as ELF, .bin and .hex; the deployed model beside them."""
    out = tmp_path / "fw"
    rc, stdout, err = cli(["build", "--board", "nucleo-f446re", "--model", tf_tflites[FLOAT_ELU_MODEL],
                           "--out", out], capsys)
    assert rc == 0, err
    assert "model: 1 float island(s) DEQUANTIZE -> ELU -> QUANTIZE fused into int8 ops" in stdout
    assert "firmware.bin, firmware.hex" in stdout
    mem = json.loads((out / "memory.json").read_text())
    image = (out / "firmware.bin").read_bytes()
    sp, reset = struct.unpack_from("<II", image)  # the vector table at the start of flash
    assert 0x20000000 < sp <= 0x20000000 + 131072 and 0x08000000 <= reset < 0x08080000 and reset & 1
    assert len(image) <= mem["flash"]["total"]
    hex_lines = (out / "firmware.hex").read_text().split()
    assert hex_lines[0] == ":020000040800F2" and hex_lines[-1] == ":00000001FF"  # Intel HEX at 0x08000000
    deployed = [op.name for op in read_model(out / "model_int8.tflite").operators]
    assert "ELU" in deployed and deployed.count("DEQUANTIZE") == 1  # only the float output's
    src = mem["model_source"]
    assert src["kind"] == "tflite" and src["rewrites"] == ["ELU"] and src["deployed_sha256"] == mem["model_sha256"]


def test_build_refuses_model_larger_than_a_frame_at_generate_time(tf_tflites, tmp_path, capsys):
    model = tmp_path / "wide.tflite"
    shutil.copyfile(tf_tflites["wide"], model)
    rc, _, err = cli(["build", "--model", model], capsys)  # default output wide-firmware/BOARD
    assert_one_line_refusal(rc, err, "130 inputs", "at most 128 inputs and 126 outputs")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wide.tflite"]  # not even an empty folder


@pytest.mark.parametrize("case", ["missing", "not_tflite", "shape", "range", "nonfinite", "random0",
                                  "board_file", "wide", "no_port", "port_gone", "unsupported_op"])
def test_validate_refusals_are_one_line_and_leave_nothing(case, tf_tflites, tmp_path, capsys):
    model, extra, words = tf_tflites[INT8_MODEL], [], []
    board = "qemu-mps2-an386"
    if case == "missing":
        model, words = tmp_path / "nope.tflite", ["no such file"]
    elif case == "not_tflite":
        model = tmp_path / "notes.tflite"
        model.write_text("not a model")
        words = ["not a TFLite flatbuffer"]
    elif case in ("shape", "range", "nonfinite"):
        x = {"shape": np.zeros((5, 7), np.int8), "range": np.full((3, 13), 300, np.int16),
             "nonfinite": np.full((3, 13), np.nan, np.float32)}[case]
        np.save(tmp_path / "x.npy", x)
        extra = ["--inputs", tmp_path / "x.npy"]
        words = {"shape": ["shape [5, 7]", "rows of 13"], "range": ["outside int8"],
                 "nonfinite": ["non-finite"]}[case]
    elif case == "random0":
        extra, words = ["--random", 0], ["--random 0"]
    elif case == "board_file":
        board, words = "./no-such-board.yaml", ["board file ./no-such-board.yaml not found"]
    elif case == "wide":
        model, words = tf_tflites["wide"], ["at most 128 inputs"]
    elif case == "unsupported_op":  # refused by the code generator, before compiling
        model, words = tf_tflites["softmax"], ["unsupported op SOFTMAX"]
    elif case == "no_port":
        path = _user_board(tmp_path, shipped="nucleo-f446re", name="my-nucleo", with_script=False)
        path.write_text(re.sub(r"\n\s*serial: .*", "", path.read_text()))
        board, words = path, ["real board", "--port"]
    elif case == "port_gone":
        board, words = "nucleo-f446re", ["serial port /dev/ttyACM0", "does not exist", "--port"]
        if os.path.exists("/dev/ttyACM0"):
            pytest.skip("a board is attached at /dev/ttyACM0")
    out = tmp_path / "val"
    rc, _, err = cli(["validate", "--board", board, "--model", model, "--out", out, *extra], capsys)
    assert_one_line_refusal(rc, err, *words)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".val")]


@pytest.mark.parametrize("case", ["yaml", "script", "name", "field"])
def test_user_board_file_errors_are_one_line(case, tmp_path, capsys):
    path = _user_board(tmp_path)
    text = path.read_text()
    if case == "yaml":
        path.write_text(text + "\n  : - [unbalanced\n")
        words = ["not valid YAML"]
    elif case == "script":
        (tmp_path / "my-board.ld").unlink()
        words = ["linker script 'my-board.ld' not found beside it"]
    elif case == "name":
        path.write_text(text.replace("name: my-board", 'name: "my board; rm"'))
        words = ["must be 1-64 letters"]
    else:
        path.write_text(text.replace("clock_hz: 25000000 ", "clock: 25000000 ", 1))
        words = ["malformed", "clock_hz", "docs/boards.md"]
    out = tmp_path / "fw"
    rc, _, err = cli(["build", "--board", path, "--model", tmp_path / "none.tflite", "--out", out], capsys)
    assert_one_line_refusal(rc, err, str(path.name), *words)
    assert not out.exists()


def test_pyocd_is_installed_by_the_setup():
    """requirements.txt pins pyocd (scripts/setup.sh installs it); the version is the pin."""
    from importlib import metadata
    from pathlib import Path

    import pyocd  # noqa: F401

    req = (Path(__file__).resolve().parents[1] / "requirements.txt").read_text()
    pin = re.search(r"^pyocd==(\S+)", req, re.M)
    assert pin and metadata.version("pyocd") == pin.group(1)
    from cpr_edge.hil.session import flash_tool_path

    assert flash_tool_path("pyocd")  # the command the board files' flash_tool runs


def test_flash_failure_without_a_probe_is_one_line(tmp_path):
    """pyocd for real, no probe attached: --no-wait makes it fail at once instead of waiting."""
    from cpr_edge.boards import load_board
    from cpr_edge.errors import CprError
    from cpr_edge.hil.session import RealBoardSession

    board = load_board("nucleo-f446re")
    assert "--no-wait" in board.flash_command("x.elf")
    master, slave = os.openpty()
    try:
        with pytest.raises(CprError) as e:
            RealBoardSession(board, tmp_path / "firmware.elf", os.ttyname(slave)).start()
    finally:
        os.close(master), os.close(slave)
    msg = str(e.value)
    assert msg.startswith("flashing nucleo-f446re failed") and "pyocd list" in msg and "--no-flash" in msg
    assert "\n" not in msg


@pytest.mark.slow
def test_silent_real_board_says_what_to_check(tf_tflites, tmp_path, capsys):
    """--no-flash on a serial port where nothing answers (a pty nobody reads): the HELLO failure
    names port, baud, reset and firmware, and nothing is left behind."""
    master, slave = os.openpty()
    out = tmp_path / "val"
    try:
        rc, _, err = cli(["validate", "--board", "nucleo-f446re", "--model", tf_tflites[INT8_MODEL],
                          "--no-flash", "--port", os.ttyname(slave), "--random", 5, "--out", out], capsys)
    finally:
        os.close(master), os.close(slave)
    assert_one_line_refusal(rc, err, "no HELLO reply from nucleo-f446re", "115200 baud", "the port",
                            "baud rate", "reset", "the firmware", "--no-flash")
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.qemu
def test_validate_export_folder_applies_its_input_prescale(codegen_odd_float_export, tmp_path, capsys):
    """An export folder (float I/O, standardised input): the board prescales raw inputs
    (model_encode_input), so TFLM must get them prescaled too, or nothing would match."""
    info = json.loads((codegen_odd_float_export / "export.json").read_text())
    assert info["input"].get("gain") and info["input"].get("offset")
    out = tmp_path / "v"
    rc, stdout, err = cli(["validate", "--model", codegen_odd_float_export, "--random", 100,
                           "--out", out, "--json"], capsys)
    assert rc == 0, err
    r = json.loads(stdout)
    assert r["model"]["kind"] == "export" and r["inputs"]["prescale"]
    assert r["comparison"]["bit_exact"] and r["comparison"]["inputs"] == 100
    assert len(np.unique(np.load(out / "outputs.npz")["tflm"])) > 20


def test_a_mismatch_is_counted_and_reported():
    """The comparison itself on arrays that differ in one output by one quantisation step."""
    from cpr_edge.hil.reference import Quant, dequantize
    from cpr_edge.validate.compare import compare
    from cpr_edge.validate.report import comparison_line

    q = Quant("int8", 0.0235, -3)
    tflm_q = np.random.default_rng(0).integers(-128, 127, (50, 4))
    board_q = tflm_q.copy()
    board_q[17, 2] += 1
    c = compare(dequantize(board_q, q), dequantize(tflm_q, q), q)
    assert not c["bit_exact"] and c["bit_exact_inputs"] == 49 and c["bit_exact_outputs"] == 199
    assert c["first_mismatch"]["input"] == 17 and c["first_mismatch"]["output"] == 2
    assert c["max_lsb_diff"] == pytest.approx(1.0, abs=1e-3)
    assert comparison_line(c).startswith("NOT bit-exact: 49 of 50 inputs")


@pytest.mark.slow
@pytest.mark.qemu
def test_validate_no_flash_on_a_real_kind_board_at_its_board_file_port(tf_tflites, tmp_path, monkeypatch, capsys):
    """The real-board path end to end, flashing aside: a user board file of kind real (an
    MPS2-AN386 with DWT cycles, twin qemu-mps2-an386) whose image the user 'flashed' into QEMU;
    its serial reaches the host through a pseudo-terminal named by the board file's
    flash_tool.serial, which validate uses without --port. QEMU has no DWT: CYCCNT reads 0."""
    import subprocess

    import yaml
    from test_hil_realboard import PtyBridge

    from cpr_edge.boards import load_board
    from cpr_edge.hil.session import free_port

    shipped = load_board("qemu-mps2-an386")
    d = yaml.safe_load(_user_board(tmp_path, name="my-real-board").read_text())
    del d["qemu"]
    d.update(kind="real", counter={"kind": "dwt_cyccnt", "unit": "cycles"}, emulated_twin="qemu-mps2-an386",
             flash_tool={"command": ["false", "{elf}"], "serial": "/dev/null"})
    board_file = tmp_path / "my-real-board.yaml"
    board_file.write_text(yaml.safe_dump(d))
    monkeypatch.chdir(tmp_path)
    rc, _, err = cli(["build", "--board", "./my-real-board.yaml", "--model", tf_tflites[INT8_MODEL],
                      "--out", "fw"], capsys)
    assert rc == 0, err
    port, qmp = free_port(), free_port()
    qemu = subprocess.Popen(shipped.qemu_command(tmp_path / "fw" / "firmware.elf", port, qmp),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bridge = None
    try:
        bridge = PtyBridge(port)
        d["flash_tool"]["serial"] = bridge.path
        board_file.write_text(yaml.safe_dump(d))
        rc, stdout, err = cli(["validate", "--board", "./my-real-board.yaml", "--model", tf_tflites[INT8_MODEL],
                               "--no-flash", "--random", 60, "--out", "val", "--json"], capsys)
    finally:
        if bridge:
            bridge.close()
        qemu.kill()
        qemu.wait()
    assert rc == 0, err
    r = json.loads(stdout)
    assert r["board"]["session"] == "real" and r["board"]["name"] == "my-real-board"
    assert r["comparison"]["bit_exact"] and r["comparison"]["inputs"] == 60
    assert r["latency"]["unit"] == "cycles" and "p50_s" in r["latency"]  # a measured time on silicon
    assert (tmp_path / "val" / "firmware" / "firmware.bin").read_bytes() == (tmp_path / "fw" / "firmware.bin").read_bytes()
