"""The HIL firmware beyond its frame parser under AddressSanitizer/UBSan on the host: the UART
receive queue, main loop and message handlers of firmware/app with the generated model, fed
requests of every type, resends, mutated frames, garbage, busy-time bursts beyond the queue
and quiet lines (the 1e6-frame run is benchmarks/fuzz_hil.py)."""
from __future__ import annotations

import pytest

from cpr_edge.firmware_build.fuzz_hil import hil_fuzz_stream, run_hil_fuzz
from cpr_edge.errors import CprError


@pytest.fixture(scope="module")
def an386_build(hil_model_dir):
    return hil_model_dir / "firmware" / "qemu-mps2-an386"


@pytest.mark.slow
def test_fuzz_hil_20k_frames_no_crash_no_wrong_reply_every_marker_answered(an386_build, tmp_path):
    res = run_hil_fuzz(an386_build, 20_000, seed=1, work_dir=tmp_path)
    assert res["violations"] == 0
    assert res["markers"] == 1000 and res["hello"] >= 1000  # every marker HELLO answered
    # the stream reached every handler and every error path, the queue overflowed, the
    # board replayed resent INFERs and rebooted on RESET
    assert res["infer"] > 1000 and res["bench"] > 10 and res["stats"] > 500 and res["reset"] > 10
    assert res["resets"] == res["reset"]
    for code in ("bad_crc", "bad_length", "unknown_type", "bad_value"):
        assert res[code] > 50, code
    assert res["overflows"] > 0 and res["replays"] > 0


def test_fuzz_hil_detects_an_unanswered_marker(an386_build, tmp_path, monkeypatch):
    """The marker check can fail: corrupt the CRC of the first marker HELLO and it must complain."""
    import re

    import cpr_edge.firmware_build.fuzz_hil as fz

    # sync, HELLO, any seq, len 4, boot id MARKER_TAG | 0 (little endian), then the CRC
    first_marker = re.compile(rb"\xa5\x01.\x04\x00" + re.escape(fz.MARKER_TAG.to_bytes(4, "little")), re.S)

    def stream_with_a_bad_marker(n, n_in, elem, seed=0, marker_every=20):
        for chunk, markers in hil_fuzz_stream(n, n_in, elem, seed, marker_every):
            m = first_marker.search(chunk)
            if m:
                chunk = chunk[:m.end()] + bytes([chunk[m.end()] ^ 0xFF]) + chunk[m.end() + 1:]
            yield chunk, markers

    monkeypatch.setattr(fz, "hil_fuzz_stream", stream_with_a_bad_marker)
    with pytest.raises(CprError, match=r"1 of 10 marker HELLOs after a quiet line were not answered \(first: \[0\]\)"):
        run_hil_fuzz(an386_build, 200, seed=2, work_dir=tmp_path)
