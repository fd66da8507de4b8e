"""``cpr-edge report RUN_DIR...``: compare runs or boards."""
from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("report", help="compare HIL runs (report.json folders) in one table and plot",
                       description="Put several runs or boards (folders holding report.json) into one "
                                   "Markdown comparison table (compare.md) and one plot (compare.png).")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="folders written by prune-and-flash or hil")
    p.add_argument("--out", default="report-compare", help="output folder (default report-compare)")
    p.add_argument("--json", action="store_true", help="print the rows as one JSON object")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from cpr_edge.cli import emit
    from cpr_edge.report.compare import compare

    res = compare(args.runs, args.out)
    emit(args, {"rows": res["rows"], "markdown": res["markdown"], "plot": res["plot"]},
         res["table"] + f"\nwrote {res['markdown']} and {res['plot']}")
    return 0
