"""Stages 2 and 3: ONNX -> TF SavedModel (onnx2tf) -> full-integer ``.tflite`` (TF converter).

TensorFlow and onnx2tf are imported here only, inside the functions, because importing
TensorFlow takes seconds.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path
from typing import Iterator

import numpy as np

from cpr_edge.errors import CprError

GRANULARITIES = ("per-channel", "per-tensor")
IO_TYPES = ("int8", "float")
ACTIVATIONS = ("int8", "int16")
"""int16: the 16x8 mode (int16 activations, int8 weights, int64 biases, int16 model I/O)."""


@contextlib.contextmanager
def native_output_to(log: Path) -> Iterator[None]:
    """Send everything written to stdout and stderr meanwhile, by Python or by TensorFlow's
    C++ code, to ``log``: keeps ``--json`` stdout one JSON object and stderr to progress lines."""
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "ab") as f:
        try:
            os.dup2(f.fileno(), 1)
            os.dup2(f.fileno(), 2)
            with contextlib.redirect_stdout(sys.stderr):
                yield
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])


def last_line(log: Path, pattern: str = "") -> str:
    """The last non-empty line of ``log`` (containing ``pattern`` if any does), for an error message."""
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    hits = [ln for ln in lines if pattern.lower() in ln.lower()] if pattern else lines
    return ((hits or lines or [""])[-1])[:200]


def import_tensorflow(log: Path):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep C++ info/warning lines quiet
    with native_output_to(log):
        import tensorflow as tf
        tf.get_logger().setLevel("ERROR")
    return tf


def _no_download(*args, **kwargs):
    raise CprError("onnx2tf tried to download sample images; the exporter never downloads anything")


def onnx_to_saved_model(onnx_path: Path, out_dir: Path, log: Path) -> Path:
    """Convert a copy of the ONNX file (onnx2tf rewrites its input when it simplifies)."""
    import_tensorflow(log)
    with native_output_to(log):
        import onnx2tf
        import onnx2tf.onnx2tf as onnx2tf_main
    # onnx2tf fetches sample images only for 4-D image inputs; make sure it never does here.
    onnx2tf_main.download_test_image_data = _no_download
    work_copy = out_dir.parent / f"{onnx_path.stem}.onnx2tf-input.onnx"
    shutil.copyfile(onnx_path, work_copy)
    try:
        with native_output_to(log):
            onnx2tf.convert(input_onnx_file_path=str(work_copy), output_folder_path=str(out_dir),
                            not_use_onnxsim=True, non_verbose=True)
    except CprError:
        raise
    except SystemExit as e:  # onnx2tf reports its own errors with sys.exit(1)
        raise CprError(f"onnx2tf failed to convert {onnx_path.name} (exit status {e.code}): {last_line(log)}")
    except Exception as e:
        raise CprError(f"onnx2tf failed to convert {onnx_path.name}: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
    if not (out_dir / "saved_model.pb").is_file():
        raise CprError(f"onnx2tf wrote no SavedModel for {onnx_path.name}")
    return out_dir


def quantize(saved_model: Path, calibration: np.ndarray, log: Path, io: str = "int8",
             granularity: str = "per-channel", activations: str = "int8") -> bytes:
    """Full-integer quantisation: int8 weights and activations, int32 biases.

    ``activations="int16"`` is the 16x8 mode: int16 activations and model I/O (``io`` int8
    then means integer I/O, int16), int8 weights, int64 biases. The converter has no int16
    ELU, so TFLITE_BUILTINS is allowed beside the 16x8 op set: ELU stays a float island
    DEQUANTIZE -> ELU -> QUANTIZE (docs/export.md, 16x8 mode); any other op it leaves in
    float is refused later by the op check.

    ``calibration`` [N, obs_dim] raw observations drive the activation ranges.
    ``granularity`` chooses per-channel or per-tensor weight scales; ``io`` int8 or float
    model input/output (float adds a QUANTIZE at the input and a DEQUANTIZE at the output).
    """
    if io not in IO_TYPES:
        raise CprError(f"--io must be one of {', '.join(IO_TYPES)}, not {io!r}")
    if granularity not in GRANULARITIES:
        raise CprError(f"--granularity must be one of {', '.join(GRANULARITIES)}, not {granularity!r}")
    if activations not in ACTIVATIONS:
        raise CprError(f"--activations must be one of {', '.join(ACTIVATIONS)}, not {activations!r}")
    tf = import_tensorflow(log)
    calibration = np.ascontiguousarray(calibration, dtype=np.float32)

    def representative_dataset():
        for row in calibration:
            yield [row[None, :]]

    try:
        with native_output_to(log):
            converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = representative_dataset
            if activations == "int16":
                converter.target_spec.supported_ops = [
                    tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
                    tf.lite.OpsSet.TFLITE_BUILTINS]
            else:
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if io == "int8":
                integer = tf.int16 if activations == "int16" else tf.int8
                converter.inference_input_type = integer
                converter.inference_output_type = integer
            if granularity == "per-tensor":
                converter._experimental_disable_per_channel = True
            return bytes(converter.convert())
    except Exception as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise CprError(f"TFLite converter failed to quantise the model: {type(e).__name__}: {first}")
