"""The fault proxy's forged reply (``forge_next``) whatever the reads: QEMU hands the UART's
bytes over as the guest writes them, so a reply arrives in one read or byte by byte."""
from __future__ import annotations

import struct

import pytest

from cpr_edge.hil.faults import FaultProxy
from cpr_edge.hil.frames import FrameParser, encode_frame


@pytest.mark.parametrize("chunk", [1, 2, 7, 4096])
def test_the_first_whole_infer_reply_is_forged_once(chunk):
    other = encode_frame(0x81, 1, b"\xa5\x82\x10")  # another reply type, with a sync byte inside
    reply = encode_frame(0x82, 2, struct.pack("<ff", 0.5, -0.25))
    later = encode_frame(0x82, 3, struct.pack("<ff", 0.125, 1.0))
    stream = other + reply + later
    with FaultProxy(1) as proxy:  # nothing listens upstream: only the byte path is used
        proxy.forge_next = 1
        out = b"".join(proxy._forge(stream[k:k + chunk]) for k in range(0, len(stream), chunk))
        assert proxy.forge_next == 0 and proxy.counters.forged == 1
    parser = FrameParser()
    frames = parser.feed(out)
    assert [f.type for f in frames] == [0x81, 0x82, 0x82] and parser.counters.crc_errors == 0  # CRC-valid
    assert frames[0].payload == b"\xa5\x82\x10" and frames[2].payload == later[5:-2]  # only the first reply
    assert frames[1].payload != reply[5:-2] and frames[1].payload[1:] == reply[6:-2]
