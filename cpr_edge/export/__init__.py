"""Export the deployed controller (observation -> encoder -> pi -> tanh mean action) to an
int8 TensorFlow Lite Micro model, verified by the real TFLM interpreter (docs/export.md).

Kept light on purpose: the arena probe runs ``python -m cpr_edge.export.tflm_run`` once per
try, and importing torch or TensorFlow here would make every try slow.
"""
from __future__ import annotations


def export_checkpoint(checkpoint, out_dir, io="int8", granularity="per-channel", allow_float=False,
                      progress=None, compare_granularity=False, prescale="none") -> dict:
    """Export ``checkpoint`` (path or loaded ``Checkpoint``) into the folder ``out_dir``.

    Writes model.onnx, model_int8.tflite, model_data.c/.h, op_resolver.h and export.json
    atomically and returns the export.json dict. ``io`` is "int8" or "float" model I/O,
    ``granularity`` "per-channel" or "per-tensor" weight scales; ``allow_float`` accepts float
    ops left after the ELU rewrite; ``progress`` receives one line per stage;
    ``compare_granularity`` also builds and measures the other granularity; ``prescale``
    "standardize" makes the model take ``(obs - input.offset) * input.gain`` (per-dimension
    calibration mean / std, better int8 input resolution) instead of raw obs. Raises
    ``CprError`` on any failure, leaving no partial folder.
    """
    from cpr_edge.export.pipeline import export_checkpoint as run

    return run(checkpoint, out_dir, io=io, granularity=granularity, allow_float=allow_float,
               progress=progress, compare_granularity=compare_granularity, prescale=prescale)


__all__ = ["export_checkpoint"]
