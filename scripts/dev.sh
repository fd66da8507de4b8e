#!/usr/bin/env bash
# The two entry points of the README, each installing what is missing first:
#   bash scripts/dev.sh prune-and-flash [options]   the main job on the default emulated board
#   bash scripts/dev.sh test [pytest options]       the whole test suite (host tests + HIL suite)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
cmd="${1:-}"; shift || true
case "$cmd" in
    test)
        # two workers, one per core of the 2-core machines the suite is sized for; `-n 0` after
        # `test` runs it in one process (the last -n given wins)
        exec "$ROOT/.venv/bin/python" -m pytest tests hil -q -n 2 "$@" ;;
    "")
        echo "usage: bash scripts/dev.sh prune-and-flash|test|<cpr-edge sub-command> [options]" >&2; exit 2 ;;
    *)
        exec "$ROOT/.venv/bin/cpr-edge" "$cmd" "$@" ;;
esac
