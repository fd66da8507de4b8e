"""Figures with their units, scaled so that a reader sees 412 B, 7.5 KiB, 3.9 MiB, 812 µs or 8.1 ms
rather than long digit strings (report.md, plots)."""
from __future__ import annotations

KIB, MIB = 1024, 1024 * 1024


def fmt_bytes(n) -> str:
    """Bytes below 10 KiB exactly (small parts are counted in bytes), larger ones in KiB, from 1 MiB in MiB."""
    if n is None:
        return "–"
    n = int(n)
    if abs(n) < 10 * KIB:
        return f"{n} B"
    if abs(n) < MIB:
        return f"{n / KIB:.1f} KiB" if abs(n) < 100 * KIB else f"{n / KIB:.0f} KiB"
    return f"{n / MIB:.3g} MiB"


def time_unit(seconds: float) -> tuple[float, str]:
    """(factor, unit) to show a duration of about ``seconds``: µs below 1 ms, ms below 1 s, else s."""
    s = abs(seconds or 0.0)
    if s < 1e-3:
        return 1e6, "µs"
    if s < 1.0:
        return 1e3, "ms"
    return 1.0, "s"


def fmt_seconds(seconds, like: float | None = None) -> str:
    """A duration in the unit its own magnitude (or that of ``like``) calls for, 3 significant digits."""
    if seconds is None:
        return "–"
    factor, unit = time_unit(seconds if like is None else like)
    return f"{seconds * factor:.3g} {unit}"


def fmt_percent(fraction) -> str:
    """A fraction as a percentage with one decimal (99.7 %, 5.0 %), two digits below 1 % (0.27 %)."""
    if fraction is None:
        return "–"
    p = 100 * fraction
    return f"{p:.1f} %" if abs(p) >= 1 else f"{p:.2g} %"


def fmt_quantity(value, unit: str) -> str:
    """``value`` in ``unit`` (``B`` or ``s``) with the scaling above."""
    return fmt_bytes(value) if unit == "B" else fmt_seconds(value)
