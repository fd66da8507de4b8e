"""report.md's "Fit to the board" section and fit.png, from report.json ``fit`` (the search of
``--fit``, format in docs/report.md): every probe with flash, RAM and latency against the
limits, the chosen ratio and why. Optional figures may be null; they are shown as "–"."""
from __future__ import annotations

from pathlib import Path

from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator

from cpr_edge.report.figure_file import plt, save_png
from cpr_edge.report.units import fmt_bytes, fmt_percent, fmt_seconds

RESOURCES = (("flash", "flash_bytes", "flash_bytes", "tab:blue"),
             ("RAM", "ram_bytes", "ram_bytes", "tab:orange"),
             ("latency", "latency_s", "latency_budget_s", "tab:purple"))
"""(name, probe key, ``limits`` key, colour) of the three constraints of a fit."""
BINDING_NAMES = {"flash": "flash", "ram": "RAM", "latency": "latency"}


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def probe_latency(probe: dict) -> tuple[float | None, bool]:
    """(seconds, estimate): a measured ``latency_s`` when a probe has one, else ``latency_s_estimate``."""
    if _num(probe.get("latency_s")) is not None:
        return _num(probe["latency_s"]), False
    return _num(probe.get("latency_s_estimate")), True


def fractions(probe: dict, limits: dict) -> dict[str, float]:
    """Each resource of a probe as a fraction of its limit (those with a figure and a limit)."""
    out = {}
    for name, key, limit_key, _ in RESOURCES:
        used = probe_latency(probe)[0] if name == "latency" else _num(probe.get(key))
        limit = _num(limits.get(limit_key))
        if used is not None and limit:
            out[name] = used / limit
    return out


def is_chosen(probe: dict, chosen: dict | None) -> bool:
    if not chosen or _num(chosen.get("ratio")) is None or _num(probe.get("ratio")) is None:
        return False
    same_precision = chosen.get("precision") is None or probe.get("precision") == chosen.get("precision")
    return abs(probe["ratio"] - chosen["ratio"]) < 1e-9 and same_precision


def _ratio(v) -> str:
    return "–" if _num(v) is None else f"{v:g}"


def _bytes_of(used, limit) -> str:
    if _num(used) is None:
        return "–"
    return f"{int(used)} B" + (f" ({fmt_percent(used / limit)})" if _num(limit) else "")


def _binding(v) -> str:
    return BINDING_NAMES.get(v, str(v)) if v else "–"


def _sentence(text: str) -> str:
    text = str(text).strip().rstrip(".")
    return text[:1].upper() + text[1:] + "."


def probe_row(i: int, p: dict, limits: dict, chosen: bool) -> str:
    lat, estimate = probe_latency(p)
    budget = _num(limits.get("latency_budget_s"))
    lat_cell = "–" if lat is None else (f"{lat * 1e3:.{2 if lat < 0.01 else 1}f}{'' if estimate else ' (measured)'}"
                                        + (f" ({fmt_percent(lat / budget)})" if budget else ""))
    fits = {True: "yes", False: "no"}.get(p.get("fits"), "–")
    ret = "–" if _num(p.get("return_float")) is None else f"{p['return_float']:.1f}"
    params = "–" if _num(p.get("params")) is None else f"{int(p['params'])}"
    cells = [str(i + 1), _ratio(p.get("ratio")) + (" (chosen)" if chosen else ""), str(p.get("precision") or "–"),
             params, _bytes_of(p.get("flash_bytes"), limits.get("flash_bytes")),
             _bytes_of(p.get("ram_bytes"), limits.get("ram_bytes")), lat_cell, ret, fits, _binding(p.get("binding"))]
    if chosen:
        cells = [f"**{c}**" for c in cells]
    return "| " + " | ".join(cells) + " |"


def fit_lines(fit: dict) -> list[str]:
    """The search as report.md shows it: limits and margin, one row per probe in the order they
    ran (the chosen one in bold), then the binding constraint and why this ratio."""
    limits = fit.get("limits") or {}
    probes = [p for p in fit.get("probes") or [] if isinstance(p, dict)]
    chosen = fit.get("chosen") if isinstance(fit.get("chosen"), dict) else None
    margin = _num(fit.get("margin"))
    lim = [f"flash {fmt_bytes(limits.get('flash_bytes'))}", f"RAM {fmt_bytes(limits.get('ram_bytes'))}",
           f"latency budget {fmt_seconds(_num(limits.get('latency_budget_s')))}"]
    lines = [f"Search on {fit.get('board') or '–'} with the {fit.get('metric') or '–'} metric at "
             f"{fit.get('precision') or '–'}: limits {', '.join(lim)}"
             + (f", {fmt_percent(margin)} of each kept free" if margin is not None else "")
             + (f"; ratio grid step {fit['grid_step']:g}" if _num(fit.get("grid_step")) is not None else "")
             + f"; {len(probes)} probe(s) in the order they ran.", ""]
    if probes:
        lines += ["| # | ratio | precision | params | flash B (of limit) | RAM B (of limit) | "
                  "latency ms, estimate (of budget) | return (float) | fits | binding |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        lines += [probe_row(i, p, limits, is_chosen(p, chosen)) for i, p in enumerate(probes)]
        lines.append("")
    if chosen:
        row = next((p for p in probes if is_chosen(p, chosen)), None)
        binding = chosen.get("binding") or (row or {}).get("binding")
        left = ""
        if row and binding:
            f = fractions(row, limits).get(_binding(binding))
            left = f" ({fmt_percent(f)} of its limit used)" if f is not None else ""
        lines.append(f"**Chosen: ratio {_ratio(chosen.get('ratio'))} at {chosen.get('precision') or '–'}; "
                     f"binding constraint: {_binding(binding)}{left}.**"
                     + (f" {_sentence(chosen['why'])}" if chosen.get("why") else ""))
        if row is None and probes:
            lines.append("(the chosen ratio is not among the probes listed)")
    else:
        lines.append("**No ratio was chosen**: no probe fits every limit with the margin.")
    return lines


def fit_figure(fit: dict):
    """Ratio on x; flash, RAM and latency each as a fraction of its limit on y (filled marker:
    the probe fits, open: it does not); the limit, the limit less the margin, the chosen ratio."""
    limits = fit.get("limits") or {}
    probes = [p for p in fit.get("probes") or [] if isinstance(p, dict) and _num(p.get("ratio")) is not None]
    chosen = fit.get("chosen") if isinstance(fit.get("chosen"), dict) else None
    margin = _num(fit.get("margin"))
    precisions = list(dict.fromkeys(str(p.get("precision")) for p in probes))
    styles = ["-", "--", ":", "-."]
    fig, ax = plt.subplots(figsize=(7.5, 4))
    top = 1.0
    for name, _, _, color in RESOURCES:
        for j, prec in enumerate(precisions):
            pts = sorted((p["ratio"], fractions(p, limits).get(name), p.get("fits")) for p in probes
                         if str(p.get("precision")) == prec and fractions(p, limits).get(name) is not None)
            if not pts:
                continue
            xs, ys, ok = zip(*pts)
            top = max(top, *ys)
            ax.plot(xs, ys, styles[j % len(styles)], color=color, lw=1.2)
            ax.scatter(xs, ys, s=30, zorder=3, edgecolors=color,
                       facecolors=[color if f else "white" for f in ok])
    ax.axhline(1.0, color="k", lw=1)
    handles = [Line2D([], [], color=c, marker="o", label=n + (" (estimate)" if n == "latency" else ""))
               for n, _, _, c in RESOURCES]
    handles.append(Line2D([], [], color="k", lw=1, label="limit (100 %)"))
    if margin is not None:
        ax.axhline(1 - margin, color="k", ls="--", lw=1)
        handles.append(Line2D([], [], color="k", ls="--", lw=1,
                              label=f"limit less the {fmt_percent(margin)} margin = {fmt_percent(1 - margin)}"))
    if chosen and _num(chosen.get("ratio")) is not None:
        ax.axvline(chosen["ratio"], color="tab:green", lw=2, alpha=0.7)
        handles.append(Line2D([], [], color="tab:green", lw=2,
                              label=f"chosen ratio {chosen['ratio']:g}, binding {_binding(chosen.get('binding'))}"))
    if len(precisions) > 1:
        handles += [Line2D([], [], color="gray", ls=styles[j % len(styles)], label=f"precision {p}")
                    for j, p in enumerate(precisions)]
    handles.append(Line2D([], [], color="gray", marker="o", ls="", markerfacecolor="white",
                          label="open marker: probe does not fit"))
    if top > 5:
        ax.set_yscale("log")
    else:
        ax.set_ylim(0, top * 1.08)
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{100 * y:.3g} %"))
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
    ax.set_xlabel("removal ratio (fraction of deployed parameters removed)")
    ax.set_ylabel("used, % of limit")
    ax.set_title(f"fit to {fit.get('board') or '–'}: {fit.get('metric') or '–'}, {len(probes)} probes")
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def fit_plot(fit: dict, path: Path) -> str:
    return save_png(fit_figure(fit), path)
