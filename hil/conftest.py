"""HIL test suite against one board: ``pytest hil --board qemu-mps2-an386`` (QEMU is started
for you) or ``pytest hil --board nucleo-f446re --port /dev/ttyACM0`` (flashed with pyocd).

The model is ``--model DIR`` (an export folder), or else the shipped checkpoint of ``--task``
exported on the fly; the firmware is built for the board unless ``DIR/firmware/BOARD`` exists.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MUJOCO_GL", "disable")


def pytest_addoption(parser):
    g = parser.getgroup("cpr-edge HIL")
    g.addoption("--board", default="qemu-mps2-an386", help="board to test (default qemu-mps2-an386)")
    g.addoption("--port", default=None, help="serial port of a real board, e.g. /dev/ttyACM0")
    g.addoption("--model", default=None, help="export folder (default: export the shipped checkpoint of --task)")
    g.addoption("--task", default="cartpole-swingup", help="task of the shipped checkpoint (default cartpole-swingup)")
    g.addoption("--episodes", type=int, default=1, help="closed-loop episodes (default 1)")


@pytest.fixture(scope="session")
def board(request):
    from cpr_edge.boards import load_board
    from cpr_edge.errors import CprError

    try:
        b = load_board(request.config.getoption("--board"))
    except CprError as e:
        raise pytest.UsageError(str(e))
    if not b.emulated and not request.config.getoption("--port"):
        raise pytest.UsageError(f"{b.name} is a real board: give --port")
    return b


@pytest.fixture(scope="session")
def model_dir(request, board, tmp_path_factory):
    import torch

    from cpr_edge.agents.checkpoint import shipped_checkpoint_path
    from cpr_edge.firmware_build import build_firmware, default_out_dir
    from cpr_edge.export.pipeline import export_checkpoint

    torch.set_num_threads(1)
    given = request.config.getoption("--model")
    if given:
        model = Path(given)
    else:
        model = tmp_path_factory.mktemp("hil") / "model"
        export_checkpoint(shipped_checkpoint_path(request.config.getoption("--task")), model)
    if not (default_out_dir(model, board.name) / "firmware.elf").is_file():
        build_firmware(board, model, default_out_dir(model, board.name))
    return model


@pytest.fixture(scope="session")
def session(request, board, model_dir):
    from cpr_edge.firmware_build import default_out_dir
    from cpr_edge.hil.session import open_session, sha256_file

    s = open_session(board, default_out_dir(model_dir, board.name) / "firmware.elf",
                     sha256_file(model_dir / "model_int8.tflite"), request.config.getoption("--port"))
    yield s
    s.close()
