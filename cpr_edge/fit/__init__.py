"""Fit to the board: the smallest removal at which the controller fits a board's flash, RAM
and latency budget (``cpr-edge fit``, ``prune-and-flash --fit``); docs/fit.md."""
