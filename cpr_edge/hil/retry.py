"""How the HIL link rides out a noisy wire: per-attempt timeouts that follow the measured
round trip and back off over a burst, a bound on consecutive failed attempts per request
(the link is lost after it), and a per-episode error budget (docs/protocol.md, "Host rules").
"""
from __future__ import annotations

from dataclasses import dataclass

from cpr_edge.errors import CprError


@dataclass
class RetryPolicy:
    min_timeout: float = 0.015
    """Floor of one attempt's wait for its reply (seconds)."""
    max_timeout: float = 1.0
    """Cap of the backed-off wait; with ``silent_attempts`` it bounds how long an outage may last."""
    backoff_after: int = 4
    """Consecutive silent attempts (not one byte came back) before the wait starts doubling:
    silence is a burst or an outage; an attempt that got bytes back, garbled or cut short,
    met a live but noisy wire, where waiting longer only slows the episode down."""
    silent_attempts: int = 40
    """Consecutive silent attempts of one request before the link counts as lost:
    0.015 s x 4, then 0.03 ... 1 s: about 30 s of silence."""
    attempts: int = 64
    """Consecutive failed attempts of any kind (garbled replies included) before the link
    counts as lost: at 5 % byte faults both ways about 4 in 5 attempts fail, and 0.8^64 is
    one request in 2 million."""

    def wait(self, rto: float, silent: int) -> float:
        """The wait of the next attempt after ``silent`` consecutive silent attempts."""
        t = max(self.min_timeout, rto)
        if silent >= self.backoff_after:
            t *= 2.0 ** (silent - self.backoff_after + 1)
        return min(self.max_timeout, t)


class BudgetExhausted(CprError):
    """An episode used up its error budget."""


@dataclass
class ErrorBudget:
    """Failed attempts one episode may spend, anywhere in the episode."""

    limit: int
    used: int = 0

    def charge(self, what: str) -> None:
        self.used += 1
        if self.used > self.limit:
            raise BudgetExhausted(f"{what}: error budget of {self.limit} failed attempts for this "
                                  f"episode exhausted")

    @classmethod
    def for_steps(cls, steps: int, per_step: float = 10.0) -> "ErrorBudget":
        """The default: ``per_step`` failed attempts per control step of the episode (5 %
        byte faults both ways cost about 4 per step with integer frames)."""
        return cls(max(50, int(per_step * steps)))


class RttEstimator:
    """Smoothed round trip and its deviation (as TCP's): the retransmission timeout follows
    the board and the host's load instead of a fixed guess."""

    def __init__(self):
        self.srtt = None
        self.rttvar = 0.0

    def update(self, rtt: float) -> None:
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt

    def rto(self, initial: float) -> float:
        return initial if self.srtt is None else self.srtt + 4 * self.rttvar
