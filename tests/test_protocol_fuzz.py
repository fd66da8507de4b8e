"""The firmware's frame parser under AddressSanitizer/UBSan on the host, fed random, mutated
and valid frames (the 1e6-frame run is benchmarks/fuzz_frame_parser.py)."""
from __future__ import annotations

import pytest

from cpr_edge.firmware_build.fuzz import encode, fuzz_stream, run_fuzz
from cpr_edge.errors import CprError


def test_fuzz_20k_frames_no_crash_no_invalid_frame_no_lost_resync(tmp_path):
    res = run_fuzz(20_000, seed=1, work_dir=tmp_path)
    assert res["violations"] == 0
    assert res["markers"] == 1000  # every marker after a quiet line was delivered
    # the stream really exercised every receiver rule
    assert res["crc"] > 1000 and res["length"] > 1000 and res["timeouts"] > 100
    assert res["delivered"] > res["markers"]


def test_fuzz_detects_a_parser_that_loses_frames(tmp_path, monkeypatch):
    """The marker check can fail: corrupt the first marker's CRC and it must complain."""
    import cpr_edge.firmware_build.fuzz as fz

    def stream_with_a_bad_marker(n, seed=0, marker_every=20):
        good = encode(fz.MARKER_TYPE, 0, (0).to_bytes(4, "little"))
        bad = good[:-1] + bytes([good[-1] ^ 0xFF])
        for chunk, markers in fuzz_stream(n, seed, marker_every):
            yield chunk.replace(good, bad), markers

    monkeypatch.setattr(fz, "fuzz_stream", stream_with_a_bad_marker)
    with pytest.raises(CprError, match=r"1 of 10 marker frames after a quiet line were not delivered \(first: \[0\]\)"):
        run_fuzz(200, seed=2, work_dir=tmp_path)
