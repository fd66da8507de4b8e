"""Reports of HIL runs: report.json, report.md and plots per run; comparisons across runs."""
