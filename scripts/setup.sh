#!/usr/bin/env bash
# Install everything cpr-edge needs, only what is missing: Debian packages (QEMU, the Arm
# toolchain) and a virtual environment in .venv with the pinned Python dependencies.
# Safe to run again: each step checks first. Sourced by scripts/dev.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"

log() { printf '[setup] %s\n' "$*" >&2; }

# --- Debian packages -------------------------------------------------------------------
# gcc: host builds of generated code (codegen bit-exactness tests, tests/test_export.py, fuzzing)
APT_PACKAGES=(qemu-system-arm gcc-arm-none-eabi libnewlib-arm-none-eabi make gcc libc6-dev)
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    log "installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# --- Python environment ----------------------------------------------------------------
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' 2>/dev/null \
    || { echo "[setup] error: cpr-edge needs Python 3.11 (found $("$PY" --version 2>&1))" >&2; exit 1; }
[ -x "$VENV/bin/python" ] || { log "creating $VENV"; "$PY" -m venv "$VENV"; }
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
FIND=()
[ -d /opt/wheels ] && FIND=(--find-links /opt/wheels)   # the local CPU torch wheel, where present

stamp="$VENV/.cpr-edge-deps"
want="$(cat "$ROOT/requirements.txt" "$ROOT/pyproject.toml" "$0" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    # mujoco 4 ships as several packages sharing one folder: a downgrade in place leaves a
    # broken install, so anything but the pinned mujoco is removed first.
    have_mujoco="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("mujoco"))' 2>/dev/null || true)"
    if [ -n "$have_mujoco" ] && [ "$have_mujoco" != "3.17.0" ]; then
        log "removing mujoco $have_mujoco for a clean install of 3.17.0"
        mapfile -t mj < <("$VENV/bin/python" -m pip list --format=freeze 2>/dev/null | grep -i '^mujoco' | cut -d= -f1)
        "${PIP[@]}" uninstall -y "${mj[@]}"
        rm -rf "$VENV"/lib/python3.11/site-packages/mujoco
    fi
    log "installing pinned Python dependencies (first run: several minutes)"
    "${PIP[@]}" install "${FIND[@]}" -r "$ROOT/requirements.txt"
    # onnx2tf pins another TensorFlow, numpy and protobuf exactly; its real run-time needs are
    # in requirements.txt, so it goes in without its dependency pins.
    "${PIP[@]}" install --no-deps onnx2tf==1.29.24
    "${PIP[@]}" install --no-deps -e "$ROOT"
    echo "$want" > "$stamp"
fi
