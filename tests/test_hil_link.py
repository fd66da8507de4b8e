"""Host side of the HIL link: CRC, framing, resync, sequence checks, bounded timeouts.

The peer is a protocol-conformant board written here (a TCP server speaking docs/protocol.md)
that can misbehave on purpose; the link under test opens it through pyserial ``socket://``.
"""
from __future__ import annotations

import socket
import struct
import threading
import time

import numpy as np
import pytest

from cpr_edge.hil.link import (BENCH, ERROR, HELLO, INFER, INFER_Q, STATS, BoardReset, FrameParser, Link,
                               LinkError, LinkLost, crc16, dequantize_output, encode_frame, parse_hello,
                               quantize_input)
from cpr_edge.hil.retry import BudgetExhausted, ErrorBudget


def hello_payload(n_in=5, n_out=1, sha=b"\x11" * 32, board=b"test-board", fw=b"fw-1", boot=7, prev=0):
    return (struct.pack("<BBHHIfifi", 2, 1, n_in, n_out, 25_000_000, 0.05, 3, 1 / 127, 0) + sha
            + struct.pack("<BIII", 1, boot, prev, 1234)
            + bytes([len(board)]) + board + bytes([len(fw)]) + fw)


class Peer:
    """A board on a TCP port. ``script`` maps a request number to a misbehaviour."""

    def __init__(self, script=None):
        self.script = script or {}
        self.boot_id = 0
        self.computed = 0
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(1)
        self.port = self.srv.getsockname()[1]
        self.requests = []
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def reply(self, f):
        if f.type == HELLO:
            prev, self.boot_id = self.boot_id, struct.unpack("<I", f.payload)[0]
            return encode_frame(0x81, f.seq, hello_payload(boot=self.boot_id, prev=prev))
        if f.type in (INFER, INFER_Q):
            obs = np.frombuffer(f.payload, "<f4" if f.type == INFER else "i1")
            self.computed += 1
            return encode_frame(f.type | 0x80, f.seq, struct.pack("<fII", float(obs.sum()), 1234, self.boot_id))
        if f.type == STATS:
            return encode_frame(0x84, f.seq, struct.pack("<11I", *range(9), self.boot_id, 5))
        if f.type == BENCH:
            return encode_frame(0x83, f.seq, struct.pack("<IIIQ", 10, 5, 9, 70))
        return encode_frame(ERROR, f.seq, bytes([3, f.type]))

    def run(self):
        conn, _ = self.srv.accept()
        parser = FrameParser()
        with conn:
            while True:
                data = conn.recv(4096)
                if not data:
                    return
                for f in parser.feed(data):
                    n = len(self.requests)
                    self.requests.append(f)
                    good = self.reply(f)
                    action = self.script.get(n, "ok")
                    if action == "ok":
                        conn.sendall(good)
                    elif action == "garbage":
                        conn.sendall(b"\x00\xa5\xff\xa5\x01\x02" + good)
                    elif action == "wrong_seq":
                        bad = bytearray(good)
                        bad[2] ^= 0x40
                        bad[-2:] = struct.pack("<H", crc16(bytes(bad[:-2])))
                        conn.sendall(bytes(bad))
                    elif action == "bad_crc":
                        conn.sendall(good[:-1] + bytes([good[-1] ^ 1]))
                    elif action == "short":
                        conn.sendall(encode_frame(good[1], f.seq, b"\x00\x00"))
                    elif action == "bad_value":
                        conn.sendall(encode_frame(ERROR, f.seq, bytes([4, f.type])))
                    elif action == "nan":
                        conn.sendall(encode_frame(0x82, f.seq, struct.pack("<fII", float("nan"), 1, self.boot_id)))
                    elif action == "reboot":  # the board restarted: its boot id is 0 again
                        self.boot_id = 0
                        conn.sendall(self.reply(f))
                    elif action == "close":
                        return
                    # "silent": no answer


def open_link(peer, **kw):
    link = Link.open(f"socket://127.0.0.1:{peer.port}", timeout=0.2, retries=2, **kw)
    link.hello()
    return link


def test_crc_check_value():
    assert crc16(b"123456789") == 0x29B1
    assert crc16(b"") == 0xFFFF


def test_frame_round_trip_and_resync_after_garbage():
    frame = encode_frame(INFER, 7, b"\x01\x02\x03")
    assert frame[:5] == bytes([0xA5, INFER, 7, 3, 0])
    p = FrameParser()
    # garbage with a false sync, an oversized header, a frame with a bad CRC, then good frames
    corrupt = bytearray(encode_frame(HELLO, 1)); corrupt[-1] ^= 0xFF
    stream = b"\x13\xa5\x01" + bytes([0xA5, 1, 2, 0xFF, 0xFF]) + bytes(corrupt) + frame + frame
    frames = []
    for i in range(0, len(stream), 3):  # arrives in small pieces
        frames += p.feed(stream[i:i + 3], now=0.0)
    assert [(f.type, f.seq, f.payload) for f in frames] == [(INFER, 7, b"\x01\x02\x03")] * 2
    assert p.counters.crc_errors >= 1 and p.counters.bad_length >= 1


def test_bad_crc_resumes_after_the_failed_sync():
    """A valid frame hidden inside a frame whose CRC fails is still found."""
    inner = encode_frame(STATS, 9)
    outer = bytes([0xA5, INFER, 1, len(inner), 0]) + inner + b"\x00\x00"
    frames = FrameParser().feed(outer, now=0.0)
    assert [(f.type, f.seq) for f in frames] == [(STATS, 9)]


def test_stalled_frame_is_abandoned_after_50ms():
    p = FrameParser()
    frame = encode_frame(HELLO, 3, b"abc")
    assert p.feed(frame[:6], now=0.0) == []
    assert p.feed(frame[6:], now=0.01) != []  # 10 ms gap: same frame
    assert p.feed(frame[:6], now=1.0) == []
    assert p.feed(frame[6:], now=1.2) == []  # 200 ms gap: abandoned, rest is garbage
    assert p.counters.stalls == 1
    assert len(p.feed(frame, now=1.3)) == 1


def test_hello_parse_rejects_inconsistent_lengths():
    good = hello_payload()
    h = parse_hello(good)
    assert (h.input_len, h.output_len, h.board_id, h.fw_version, h.counter_unit) == (5, 1, "test-board", "fw-1", "instructions")
    assert parse_hello(good + b"\x00") is None
    assert parse_hello(good[:-1]) is None


def test_link_request_reply_and_retries_through_misbehaviour():
    peer = Peer({1: "garbage", 2: "wrong_seq", 4: "bad_crc", 6: "short", 8: "silent"})
    # The exact counts below hold only if no reply of the in-process peer arrives after its
    # attempt's wait; the round-trip-based wait (15 ms on loopback) is shorter than a loaded
    # 2-core machine may take to schedule the peer's thread, so every wait is at least 1 s here.
    from cpr_edge.hil.retry import RetryPolicy

    link = open_link(peer, policy=RetryPolicy(min_timeout=1.0, max_timeout=2.0))
    obs = np.arange(5, dtype=np.float32)
    results = [link.infer(obs) for _ in range(4)]
    for a, ticks in results:
        assert a.tolist() == [10.0] and ticks == 1234
    assert link.stats()["infers"] == 7  # after one silent attempt
    c = link.counters
    assert c.retries == 4 and c.timeouts == 4 and c.discarded_replies == 2
    # a resend repeats the request's sequence number (the board may replay its reply)
    seqs = [f.seq for f in peer.requests]
    assert seqs[1:10] == [2, 3, 3, 4, 4, 5, 5, 6, 6]
    assert link.bench(10)["max"] == 9
    link.close()


def test_link_gives_up_within_bound():
    peer = Peer({i: "silent" for i in range(1, 10)})
    link = open_link(peer)
    with pytest.raises(LinkError, match="no verified reply after 3 attempts"):
        link.infer(np.zeros(5, np.float32))
    # bounded by events, not by the wall clock (a loaded machine stretches the timeouts):
    # the HELLO, then exactly the 3 attempts of the INFER (the same observation, fresh seqs)
    deadline = time.monotonic() + 30
    while len(peer.requests) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    infers = [f for f in peer.requests if f.type == 0x02]
    assert len(infers) == 3 and len({f.payload for f in infers}) == 1 and len({f.seq for f in infers}) == 1
    assert link.counters.timeouts >= 3
    link.close()


def test_board_errors_and_unverifiable_actions_raise():
    peer = Peer({1: "bad_value", 2: "nan"})
    link = open_link(peer)
    with pytest.raises(LinkError, match="BAD_VALUE"):
        link.infer(np.zeros(5, np.float32))
    with pytest.raises(LinkError, match="non-finite"):
        link.infer(np.zeros(5, np.float32))
    with pytest.raises(LinkError, match="takes 5"):
        link.infer(np.zeros(4, np.float32))
    link.close()


def test_infer_needs_hello_and_lost_peer_is_reported():
    peer = Peer({1: "close"})
    link = Link.open(f"socket://127.0.0.1:{peer.port}", timeout=0.2, retries=1)
    with pytest.raises(LinkError, match="before HELLO"):
        link.infer(np.zeros(5, np.float32))
    link.hello()
    with pytest.raises(LinkLost, match="link lost"):
        link.infer(np.zeros(5, np.float32))
    link.close()
    peer.srv.close()
    with pytest.raises(LinkError, match="cannot open"):
        Link.open(f"socket://127.0.0.1:{peer.port}")


def test_quantisation_matches_protocol():
    x = np.array([0.025, -0.025, 0.075, 1e9, -1e9, 0.0], np.float32)
    q = quantize_input(x, 0.05, 3)
    # 0.5 -> 1 and -0.5 -> -1 (half away from zero), 1.5 -> 2, saturation at the int8 range
    assert q.tolist() == [4, 2, 5, 127, -128, 3]
    assert dequantize_output(np.array([-128, 0, 127], np.int8), 0.5, -1).tolist() == [-63.5, 0.5, 64.0]


def test_reboot_is_detected_on_the_reply_and_hello_renames_the_boot():
    peer = Peer({2: "reboot"})
    link = open_link(peer)
    first = link.boot_id
    assert first != 0 and link.hello_info.boot_id == first
    link.infer(np.zeros(5, np.float32))
    with pytest.raises(BoardReset, match="rebooted"):
        link.infer(np.zeros(5, np.float32))  # the reply carries boot id 0
    h = link.hello()
    assert h.previous_boot_id == 0 and h.boot_id == link.boot_id != first
    assert link.counters.resets_detected == 2  # on the reply, and HELLO saw boot id 0 again
    assert link.stats()["boot_id"] == link.boot_id
    link.close()


def test_integer_frames_carry_one_byte_per_element():
    peer = Peer()
    link = open_link(peer)
    q = np.array([1, -2, 3, 127, -128], np.int8)
    a, _ = link.infer_finish(link.infer_q_start(q))
    assert a.tolist() == [float(q.astype(int).sum())]
    assert peer.requests[-1].type == INFER_Q and len(peer.requests[-1].payload) == 5
    with pytest.raises(LinkError, match="int8"):
        link.infer_q_start(q.astype(np.int16))
    link.close()


def test_a_burst_is_ridden_out_and_the_budget_bounds_an_episode():
    # 12 requests in a row unanswered: beyond any fixed small retry count, within the backoff
    peer = Peer({i: "silent" for i in range(1, 13)})
    link = Link.open(f"socket://127.0.0.1:{peer.port}", timeout=0.02)
    link.hello()
    a, _ = link.infer(np.ones(5, np.float32))
    assert a.tolist() == [5.0] and link.counters.max_consecutive_failures == 12
    assert peer.computed >= 1
    peer2 = Peer({i: "silent" for i in range(1, 40)})
    link2 = Link.open(f"socket://127.0.0.1:{peer2.port}", timeout=0.02)
    link2.hello()
    link2.budget = ErrorBudget(5)
    with pytest.raises(BudgetExhausted, match="error budget of 5"):
        link2.infer(np.ones(5, np.float32))
    link.close(), link2.close()


def test_loop_url_opens():
    link = Link.open("loop://")
    link.port.write(encode_frame(0x81, 1, b""))  # a loopback returns what is sent
    assert link.port.read(7)[:2] == bytes([0xA5, 0x81])
    link.close()


def test_a_noisy_wire_is_not_backed_off_but_silence_is():
    """Replies cut short (a byte lost) do not double the wait: the wire is alive. Timing is
    the only observable here, so the bound is generous: 12 noisy attempts at the 50 ms floor
    take about 0.6 s; backed off from the first silent-style doubling they would take over
    9 s (0.1, 0.2, ... 1 s each), and a loaded machine does not stretch 0.6 s to 5 s."""
    from cpr_edge.hil.retry import RetryPolicy

    policy = RetryPolicy(min_timeout=0.05, max_timeout=1.0, backoff_after=1)
    peer = Peer({i: "bad_crc" for i in range(1, 13)})
    link = Link.open(f"socket://127.0.0.1:{peer.port}", timeout=0.05, policy=policy)
    link.hello()
    t = time.monotonic()
    a, _ = link.infer(np.ones(5, np.float32))
    assert a.tolist() == [5.0] and link.counters.max_consecutive_failures == 12
    assert time.monotonic() - t < 5.0
    assert policy.wait(0.0, 0) == 0.05 and policy.wait(0.0, 3) == 0.4  # silence doubles
    link.close()


def test_a_header_longer_than_the_awaited_reply_does_not_swallow_the_reply():
    """A lost byte shifts payload into ``len``: a header claiming 300 bytes for a 12-byte
    reply. Held to the awaited reply's size, the receiver drops it at once and finds the real
    reply right behind it; without the limit it waits for 300 bytes that never come."""
    reply = encode_frame(0x82, 7, b"\x00" * 12)
    damaged = bytes([0xA5, 0x82, 7]) + struct.pack("<H", 300)
    p = FrameParser()
    assert p.feed(damaged + reply) == []  # the candidate swallows the reply
    p = FrameParser()
    p.limit = Link._limit_for(0x82, 12)
    frames = p.feed(damaged + reply)
    assert [(f.type, f.seq, len(f.payload)) for f in frames] == [(0x82, 7, 12)]
    assert p.counters.bad_length == 1
    assert p.limit(ERROR) == 2 and p.limit(0x84) == 0
