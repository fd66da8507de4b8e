"""A fault-injecting TCP proxy between the HIL link and QEMU's serial port.

Every byte crossing the proxy may be dropped, corrupted (XOR with a random non-zero byte) or
delayed, each at its own rate, from a seeded generator so that a failing run can be replayed.
``cut()`` closes the connection; ``reset_board()`` resets the emulated board through QMP
behind the host's back. Counters say how many faults were actually injected.
"""
from __future__ import annotations

import random
import select
import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass
class FaultConfig:
    drop: float = 0.0
    """Probability that a byte is dropped."""
    corrupt: float = 0.0
    """Probability that a byte is XORed with a random non-zero value."""
    delay: float = 0.0
    """Probability that the proxy stalls before forwarding a byte."""
    delay_s: float = 0.02
    """Length of one stall (longer than the protocol's 50 ms abandons the frame)."""
    to_board: bool = True
    """Inject into host -> board bytes."""
    to_host: bool = True
    """Inject into board -> host bytes."""
    duplicate: float = 0.0
    """Probability that a board -> host chunk is sent twice (a duplicated reply)."""
    seed: int = 0


@dataclass
class FaultCounters:
    bytes: int = 0
    dropped: int = 0
    corrupted: int = 0
    delayed: int = 0
    cuts: int = 0
    resets: int = 0
    duplicated: int = 0
    outage_bytes: int = 0
    forged: int = 0


class FaultProxy:
    """``FaultProxy(qemu_serial_port, FaultConfig(...))``; connect the link to ``url``."""

    def __init__(self, upstream_port: int, config: FaultConfig | None = None):
        self.upstream_port = upstream_port
        self.config = config or FaultConfig()
        self.rng = random.Random(self.config.seed)
        self.counters = FaultCounters()
        self.session = None
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(1)
        self.port = self._listener.getsockname()[1]
        self._conns: list[socket.socket] = []
        self.outage_until = 0.0
        self.forge_next = 0
        self._held = b""  # upstream bytes of a reply not yet whole (``_forge``)
        self.refuse = False
        self.cut_for_good_at: int | None = None
        """``cut_for_good()`` once this many bytes crossed the proxy (a cut tied to the
        traffic, not to the wall clock: a fast run would otherwise end before it)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fault-proxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def link_url(self, qemu_port: int) -> str:
        """For ``QemuSession(link_url=proxy.link_url)``."""
        assert qemu_port == self.upstream_port, "proxy was made for another QEMU serial port"
        return self.url

    def _mangle(self, data: bytes, enabled: bool) -> bytes:
        c = self.config
        self.counters.bytes += len(data)
        if self.cut_for_good_at is not None and self.counters.bytes >= self.cut_for_good_at:
            self.cut_for_good_at = None
            self.cut_for_good()
            return b""
        if time.monotonic() < self.outage_until:  # the wire is dead: everything is lost
            self.counters.outage_bytes += len(data)
            return b""
        if not enabled or not (c.drop or c.corrupt or c.delay):
            return data
        out = bytearray()
        for b in data:
            r = self.rng.random()
            if r < c.drop:
                self.counters.dropped += 1
                continue
            if r < c.drop + c.corrupt:
                b ^= self.rng.randrange(1, 256)
                self.counters.corrupted += 1
            elif r < c.drop + c.corrupt + c.delay:
                self.counters.delayed += 1
                time.sleep(c.delay_s)
            out.append(b)
        return bytes(out)

    def _serve(self) -> None:
        while not self._stop.is_set():
            r, _, _ = select.select([self._listener], [], [], 0.1)
            if not r:
                continue
            try:
                client, _ = self._listener.accept()
                if self.refuse:
                    client.close()
                    continue
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                try:
                    client.close()
                except (OSError, UnboundLocalError):
                    pass
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conns = [client, upstream]
            self._pump(client, upstream)
            for s in (client, upstream):
                try:
                    s.close()
                except OSError:
                    pass

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        c = self.config
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([client, upstream], [], [], 0.1)
                for s in ready:
                    data = s.recv(4096)
                    if not data:
                        return
                    if s is client:
                        upstream.sendall(self._mangle(data, c.to_board))
                    else:
                        data = self._forge(data)
                        out = self._mangle(data, c.to_host)
                        client.sendall(out)
                        if out and c.duplicate and self.rng.random() < c.duplicate:
                            self.counters.duplicated += 1
                            client.sendall(out)
            except (OSError, ValueError):
                return

    def _forge(self, data: bytes) -> bytes:
        """While ``forge_next`` > 0: an INFER / INFER_Q reply whose first action is moved by one
        float32 ULP-sized step of the output (the last mantissa bit), CRC recomputed: a
        CRC-valid, wrong reply that only the host's exact reference check can catch.

        QEMU hands the UART's bytes over as the guest writes them, so a reply can arrive in
        several reads (more often on a loaded machine): the bytes from a possible reply's sync
        byte on are held until the frame is whole, and a frame counts only if its CRC holds (a
        0xA5 inside a payload is not a frame start)."""
        from cpr_edge.hil.frames import HEADER, MAX_PAYLOAD, SYNC, crc16

        if not self.forge_next:
            if not self._held:
                return data
            data, self._held = self._held + data, b""  # forging was called off: let the bytes go
            return data
        buf = bytearray(self._held + data)
        i = 0
        while True:
            i = buf.find(SYNC, i)
            if i < 0:
                self._held = b""
                return bytes(buf)
            rest = len(buf) - i
            if rest >= 2 and buf[i + 1] not in (0x82, 0x86):
                i += 1
                continue
            n = buf[i + 3] | buf[i + 4] << 8 if rest >= HEADER else 0
            if n > MAX_PAYLOAD:  # an impossible length: not a frame start
                i += 1
                continue
            end = i + HEADER + n
            if rest < HEADER or len(buf) < end + 2:
                self._held = bytes(buf[i:])  # a reply may start here: wait for the rest of it
                return bytes(buf[:i])
            if crc16(bytes(buf[i:end])) != (buf[end] | buf[end + 1] << 8):
                i += 1
                continue
            buf[i + HEADER] ^= 0x01
            crc = crc16(bytes(buf[i:end]))
            buf[end], buf[end + 1] = crc & 0xFF, crc >> 8
            self.forge_next -= 1
            self.counters.forged += 1
            self._held = b""
            return bytes(buf)

    def outage(self, seconds: float) -> None:
        """Lose every byte in both directions for ``seconds`` (the connection stays up)."""
        self.outage_until = time.monotonic() + seconds

    def cut(self) -> None:
        """Cut the connection (both sides see it closed)."""
        self.counters.cuts += 1
        for s in self._conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def reset_board(self) -> None:
        """Reset the emulated board through QMP, without telling the host."""
        if self.session is None or self.session.qmp is None:
            raise RuntimeError("attach the QemuSession first (proxy.session = session)")
        self.session.qmp.execute("system_reset")
        self.counters.resets += 1

    def cut_for_good(self) -> None:
        """Cut and refuse every new connection: the host cannot get the link back."""
        self.refuse = True
        self.cut()

    def close(self) -> None:
        self._stop.set()
        self.cut()
        self._thread.join(timeout=2)
        self._listener.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
