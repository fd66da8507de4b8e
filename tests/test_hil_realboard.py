"""The real-board session over a real tty: QEMU's serial bridged to a pseudo-terminal, so the
link runs through pyserial's termios path exactly as with /dev/ttyACM0 (flashing aside)."""
from __future__ import annotations

import os
import pty
import select
import shutil
import socket
import subprocess
import threading
import time

import numpy as np
import pytest

from cpr_edge.errors import CprError

pytestmark = [pytest.mark.qemu]
BOARD = "qemu-mps2-an386"


class PtyBridge:
    """pseudo-terminal <-> TCP (QEMU's serial server)."""

    def __init__(self, tcp_port: int):
        self.master, self.slave = pty.openpty()
        self.path = os.ttyname(self.slave)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", tcp_port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        self.stop = False
        threading.Thread(target=self.pump, daemon=True).start()

    def pump(self):
        while not self.stop:
            r, _, _ = select.select([self.master, self.sock], [], [], 0.1)
            try:
                if self.master in r:
                    self.sock.sendall(os.read(self.master, 4096))
                if self.sock in r:
                    data = self.sock.recv(4096)
                    if not data:
                        return
                    os.write(self.master, data)
            except OSError:
                return

    def close(self):
        self.stop = True
        self.sock.close()
        for fd in (self.master, self.slave):
            os.close(fd)


def test_real_board_session_over_a_tty(hil_model_dir):
    from cpr_edge.boards import load_board
    from cpr_edge.hil.session import RealBoardSession, free_port, sha256_file

    board = load_board(BOARD)
    port, qmp = free_port(), free_port()
    elf = hil_model_dir / "firmware" / BOARD / "firmware.elf"
    qemu = subprocess.Popen(board.qemu_command(elf, port, qmp), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bridge = None
    try:
        bridge = PtyBridge(port)
        s = RealBoardSession(board, elf, bridge.path, sha256_file(hil_model_dir / "model_int8.tflite"), flash=False)
        with s:
            assert s.hello.board_id == BOARD
            a, ticks = s.link.infer(np.ones(5, np.float32))
            assert ticks > 0
            s.link.infer(np.zeros(5, np.float32))
            s.reset()  # RESET message: the board resets itself (SYSRESETREQ), then HELLO again
            assert s.link.stats()["infers"] == 0
            assert np.array_equal(s.link.infer(np.ones(5, np.float32))[0], a)
    finally:
        if bridge:
            bridge.close()
        qemu.kill()
        qemu.wait()


def test_real_board_needs_port_and_flash_tool(hil_model_dir):
    from cpr_edge.boards import load_board
    from cpr_edge.hil.session import RealBoardSession, open_session

    board = load_board("nucleo-f446re")
    elf = hil_model_dir / "firmware" / BOARD / "firmware.elf"
    with pytest.raises(CprError, match="--port"):
        open_session(board, elf, None, None)
    from cpr_edge.hil.session import flash_tool_path

    if flash_tool_path("pyocd") is None:
        with pytest.raises(CprError, match="pyocd is not installed"):
            RealBoardSession(board, elf, "/dev/null").flash()
    else:  # installed by the set-up: without a probe it fails at once (--no-wait), in one line
        with pytest.raises(CprError, match="flashing nucleo-f446re failed .*pyocd list"):
            RealBoardSession(board, elf, "/dev/null").flash()
