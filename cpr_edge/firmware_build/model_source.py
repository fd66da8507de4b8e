"""What ``cpr-edge build`` / ``validate`` take as ``--model``: an export folder or a bare .tflite.

An export folder holds ``model_int8.tflite`` (and export.json with the input prescale), already
rewritten by the exporter. A bare .tflite is anybody's converter output: the same float-island
rewrite the exporter applies (``DEQUANTIZE -> ELU -> QUANTIZE`` as the TF converter emits an
int8 ELU, fused into TFLM's int8 ELU, cpr_edge.export.flatbuffer.fuse_float_islands) is
applied here and reported; the model that is deployed is then the rewritten one, written
beside the firmware as ``model_int8.tflite`` so that every later stage (stack probe, HIL
reference, validate) reads the bytes the board runs.
"""
from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cpr_edge.errors import CprError
from cpr_edge.hil.frames import MAX_PAYLOAD

DEPLOYED_NAME = "model_int8.tflite"
"""File name of the model the firmware is generated from (in an export folder or a build)."""

MAX_INPUTS = MAX_PAYLOAD // 4
"""Model inputs one INFER frame carries (float32 each, docs/protocol.md): 128."""
MAX_OUTPUTS = (MAX_PAYLOAD - 8) // 4
"""Model outputs one INFER reply carries (float32 each, then invoke count and boot id): 126."""


@dataclass
class ModelSource:
    path: Path
    """What the user gave (folder or file), resolved."""
    kind: str
    """``export`` (an export folder) or ``tflite`` (a bare file)."""
    tflite: Path
    """The file as given (export folder: its model_int8.tflite)."""
    data: bytes
    """The bytes to deploy: the file, or the file after the float-island rewrite."""
    rewrites: list[str] = field(default_factory=list)
    """Ops of the float islands fused into int8 ops (``["ELU", "ELU"]``); empty: unchanged."""

    @property
    def sha256(self) -> str:
        """SHA-256 of the file as given."""
        return hashlib.sha256(self.tflite.read_bytes()).hexdigest()

    @property
    def deployed_sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def summary(self) -> dict:
        """The ``model_source`` object of memory.json and validate.json (docs/memory.md)."""
        out = {"kind": self.kind, "path": str(self.path), "sha256": self.sha256,
               "deployed_sha256": self.deployed_sha256, "rewrites": list(self.rewrites)}
        if self.rewrites:
            out["rewrite"] = (f"{len(self.rewrites)} float island(s) DEQUANTIZE -> "
                              f"{'/'.join(sorted(set(self.rewrites)))} -> QUANTIZE fused into int8 ops")
        return out


def resolve_model(spec) -> ModelSource:
    """Read ``--model``: an export folder or a .tflite file; one-line errors."""
    path = Path(str(spec)).expanduser()
    if path.is_dir():
        tflite = path / DEPLOYED_NAME
        if not tflite.is_file():
            raise CprError(f"{tflite} not found: pass an export folder (cpr-edge export) or a "
                           f".tflite file as --model")
        return ModelSource(path.resolve(), "export", tflite.resolve(), tflite.read_bytes())
    if not path.is_file():
        raise CprError(f"--model {spec}: no such file or folder")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise CprError(f"cannot read model {path}: {e.strerror}") from None
    if len(raw) < 8 or raw[4:8] != b"TFL3":
        raise CprError(f"{path} is not a TFLite flatbuffer (no TFL3 identifier)")
    data, rewrites = fuse_islands(raw, path)
    return ModelSource(path.resolve(), "tflite", path.resolve(), data, rewrites)


def fuse_islands(raw: bytes, path: Path) -> tuple[bytes, list[str]]:
    """The exporter's float-island rewrite on converter output; unchanged bytes if none."""
    from cpr_edge.export import flatbuffer

    try:
        model = flatbuffer.load_model(raw)
        fused = flatbuffer.fuse_float_islands(model)
    except CprError:
        raise
    except Exception as e:  # a corrupt flatbuffer raises anything
        raise CprError(f"{path}: corrupt TFLite flatbuffer ({type(e).__name__})") from None
    if not fused:
        return raw, []
    with tempfile.TemporaryDirectory(prefix="cpr-fuse-") as work:
        return flatbuffer.align(flatbuffer.save_model(model), Path(work)), fused


def check_frame_limits(n_in: int, n_out: int) -> None:
    """The HIL firmware answers one frame per inference: refuse a model whose I/O does not fit."""
    if n_in > MAX_INPUTS or n_out > MAX_OUTPUTS:
        raise CprError(f"the model has {n_in} inputs and {n_out} outputs; the HIL firmware carries at most "
                       f"{MAX_INPUTS} inputs and {MAX_OUTPUTS} outputs per frame (float32 in a "
                       f"{MAX_PAYLOAD}-byte payload, docs/protocol.md)")
