"""What a firmware image was built from, so a run can refuse a stale or foreign ELF.

``firmware_source_id()`` hashes every source the image depends on besides the model: the
firmware tree (app, platform, drivers, runtime kernels, linker scripts, Makefile) and the code
generator and board-config writer that turn a .tflite and a board definition into C. The id
goes into the firmware's version string (HELLO ``fw_version``) and into memory.json with the
ELF's own SHA-256; ``cpr-edge hil`` compares both before and after booting.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.resources
from pathlib import Path

SOURCE_SUFFIXES = {".c", ".h", ".ld", ".py", ".S", ".s"}


def _files() -> list[tuple[str, Path]]:
    root = Path(str(importlib.resources.files("cpr_edge")))
    out = []
    for sub in ("firmware", "codegen"):
        for p in sorted((root / sub).rglob("*")):
            if p.is_file() and (p.suffix in SOURCE_SUFFIXES or p.name == "Makefile") and "__pycache__" not in p.parts:
                out.append((p.relative_to(root).as_posix(), p))
    out.append(("firmware_build/config.py", root / "firmware_build" / "config.py"))
    return out


def firmware_source_id() -> str:
    """16 hex digits of SHA-256 over the relative paths and contents of the firmware sources
    and the generator (computed each call: the sources may change within a process)."""
    h = hashlib.sha256()
    for rel, p in _files():
        h.update(rel.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def fw_version(version: str, source_id: str) -> str:
    """The firmware version string: package version and source id."""
    return f"cpr-edge {version} src {source_id}"


def source_id_of(fw_version_string: str) -> str | None:
    """The source id inside a HELLO ``fw_version``, None for firmware this tool did not build."""
    parts = fw_version_string.split()
    return parts[parts.index("src") + 1] if "src" in parts[:-1] else None


@functools.lru_cache(maxsize=64)
def _sha_cached(path: str, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def sha256_of(path) -> str:
    st = Path(path).stat()
    return _sha_cached(str(Path(path).resolve()), st.st_mtime_ns, st.st_size)
