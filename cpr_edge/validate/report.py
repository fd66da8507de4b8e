"""validate.md: validate.json read at a glance."""
from __future__ import annotations


def _n(v) -> str:
    return "–" if v is None else (f"{v:,.0f}".replace(",", " ") if isinstance(v, (int, float)) else str(v))


def _time(s) -> str:
    if s is None:
        return "–"
    return f"{s * 1e6:.1f} µs" if s < 1e-3 else f"{s * 1e3:.3f} ms"


def comparison_line(c: dict) -> str:
    verdict = "bit-exact" if c["bit_exact"] else "NOT bit-exact"
    return (f"{verdict}: {c['bit_exact_inputs']} of {c['inputs']} inputs ({c['bit_exact_outputs']} of "
            f"{c['outputs']} outputs) identical; max difference {c['max_abs_diff']:.6g} "
            f"({c['max_lsb_diff']:g} output quantisation steps)")


def validate_md(r: dict) -> str:
    b, m, c, lat, mem = r["board"], r["model"], r["comparison"], r["latency"], r["memory"]
    est = "p50_s_estimate" in lat
    lines = [f"# Validation of {m['path'].rsplit('/', 1)[-1]} on {b['name']}", "",
             f"**{comparison_line(c)}**", "",
             f"Reference: {c['reference']}.", ""]
    if c.get("first_mismatch"):
        f = c["first_mismatch"]
        lines += [f"First mismatch: input {f['input']}, output {f['output']}: board {f['board']:.9g}, "
                  f"TFLM {f['tflm']:.9g}.", ""]
    if m.get("rewrite"):
        lines += [f"Model rewrite: {m['rewrite']} (the board runs the rewritten model).", ""]
        o = r.get("comparison_with_original")
        if o:
            lines += [f"Against TFLM on the model as given: {comparison_line(o)}.", ""]
    i = r["inputs"]
    src = f"file {i['path']}" if i["source"] == "file" else f"random, seed {i['seed']}"
    lines += ["| | |", "|---|---|",
              f"| board | {b['name']} ({b['core']}, {b['clock_hz'] / 1e6:g} MHz, {b['session']}), {b['definition']} |",
              f"| model | input {m['input']['dtype']} {m['input']['shape']}, output {m['output']['dtype']} "
              f"{m['output']['shape']}; core {m['input']['core_dtype']}; sha256 {m['deployed_sha256'][:16]}… |",
              f"| inputs | {i['count']} ({src}), {i['dtype']} in [{i['min']:.4g}, {i['max']:.4g}] |",
              f"| FULLY_CONNECTED kernel | {b['fc_kernel']} |", "",
              "## Latency (per inference)", "",
              f"| | {lat['unit']} | time{' (estimate)' if est else ''} |", "|---|---|---|"]
    suffix = "_s_estimate" if est else "_s"
    for k in ("p50", "p99", "max"):
        lines.append(f"| {k} | {_n(lat.get(k))} | {_time(lat.get(k + suffix))} |")
    lines += ["", f"Time from {lat.get('seconds_basis', '')}"
              + (f" ({lat.get('cycles_per_instruction_basis')})" if est else "") + ".", "",
              "## Memory", "",
              "| | bytes |", "|---|---|",
              f"| flash (image) | {_n(mem['flash_bytes'])} of {_n(mem['flash_capacity'])} |",
              f"| .tflite | {_n(mem['tflite_bytes'])} |",
              f"| RAM (image, stack reserved) | {_n(mem['ram_bytes'])} of {_n(mem['ram_capacity'])} |",
              f"| activations (static arena) | {_n(mem['activation_bytes'])} |",
              f"| stack of model_invoke (measured) | {_n(mem['invoke_stack_measured'])} |",
              f"| inference RAM (activations + invoke stack) | {_n(mem['inference_ram_bytes'])} |",
              f"| smallest TFLM arena | {_n(mem['tflm_arena_bytes'])} |",
              f"| inference RAM / TFLM arena | {mem['inference_ram_vs_tflm_arena'] if mem['inference_ram_vs_tflm_arena'] is not None else '–'} |",
              f"| stack used in this session (STATS) | {_n(mem['stack_used_on_board'])} of {_n(mem['stack_reserved'])} reserved |",
              "", "Files: " + ", ".join(f"`{v}`" for v in r["files"].values()) + ".", ""]
    return "\n".join(lines)
