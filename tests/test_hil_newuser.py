"""Issue 12's new-user defects: each is one line on stderr, exit 2, before any slow stage, and
nothing half-written. Fast: every refusal comes before pruning."""
from __future__ import annotations

import fcntl
import os
import shutil

import pytest

from cpr_edge.cli import main


def _refused(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cpr-edge: error:") and message in err and "\n" not in err, err
    return err


def test_checkpoint_of_another_task_is_refused(capsys, tmp_path):
    from cpr_edge.agents.checkpoint import shipped_checkpoint_path

    reacher = shipped_checkpoint_path("reacher-easy", "small")
    _refused(capsys, ["prune-and-flash", "--task", "cartpole-swingup", "--checkpoint", str(reacher),
                      "--out", str(tmp_path / "run")], "is a reacher-easy checkpoint, not cartpole-swingup")
    assert not (tmp_path / "run").exists()


def test_missing_qemu_is_reported_before_pruning(capsys, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(shutil.which("arm-none-eabi-gcc"), bin_dir / "arm-none-eabi-gcc")
    monkeypatch.setenv("PATH", str(bin_dir))
    _refused(capsys, ["prune-and-flash", "--out", str(tmp_path / "run")], "qemu-system-arm not found")
    assert not (tmp_path / "run").exists()


def test_out_that_is_a_file_or_read_only(capsys, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    _refused(capsys, ["prune-and-flash", "--out", str(f)], "is a file")
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        _refused(capsys, ["prune-and-flash", "--out", str(ro)], "not writable")


def test_a_second_run_into_a_locked_folder_is_refused(capsys, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    fd = os.open(out / ".cpr-edge.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, b"4242\n")
    try:
        _refused(capsys, ["prune-and-flash", "--out", str(out)], "in use by another run (pid 4242)")
    finally:
        os.close(fd)


def test_a_folder_of_other_files_is_not_taken_over(capsys, tmp_path):
    (tmp_path / "thesis.tex").write_text("mine")
    _refused(capsys, ["prune-and-flash", "--out", str(tmp_path)], "not a cpr-edge prune-and-flash run")
    assert (tmp_path / "thesis.tex").read_text() == "mine"


@pytest.mark.parametrize("content", [b"PK\x03\x04" + b"\x00" * 40, bytes(range(256)) * 20])
def test_damaged_checkpoint_message_is_whole(capsys, tmp_path, content):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(content)
    err = _refused(capsys, ["prune-and-flash", "--checkpoint", str(bad), "--out", str(tmp_path / "o")],
                   "not a readable checkpoint")
    assert err.endswith(")") and not (tmp_path / "o").exists()


@pytest.mark.parametrize("port, message", [("ftp://x", "unknown URL scheme"), ("/dev/none-such", "emulated board")])
def test_bad_port_is_one_line(capsys, tmp_path, port, message):
    _refused(capsys, ["prune-and-flash", "--port", port, "--out", str(tmp_path / "o")], message)


def test_port_forms():
    from cpr_edge.errors import CprError
    from cpr_edge.hil.session import parse_port

    assert parse_port("socket://127.0.0.1:5555", True) == ("url", "socket://127.0.0.1:5555")
    assert parse_port("rfc2217://host:7000", False)[0] == "url" and parse_port("loop://", True)[0] == "url"
    assert parse_port("5555", True) == ("tcp", 5555) and parse_port(None, True) == ("auto", None)
    with pytest.raises(CprError, match="device path"):
        parse_port("5555", False)


def test_pool_worker_ignores_ctrl_c():
    import multiprocessing
    import signal

    from cpr_edge.pipeline import _worker_ignores_sigint

    with multiprocessing.get_context("spawn").Pool(1, initializer=_worker_ignores_sigint) as pool:
        assert pool.apply(signal.getsignal, (signal.SIGINT,)) == signal.SIG_IGN
