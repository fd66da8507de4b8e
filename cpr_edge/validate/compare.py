"""Board outputs against TFLM's: bit-exact count and the largest difference.

Both sides are float32 in the form of the INFER reply (docs/protocol.md): an int8/int16
output dequantised as ``(q - zero_point) * scale`` in float32, a float output as the model
computes it. Equal bits are the test (for an integer output that is the same integer); the
difference is given in output units and in quantisation steps of the core's output.
"""
from __future__ import annotations

import numpy as np

from cpr_edge.hil.reference import Quant


def compare(board: np.ndarray, tflm: np.ndarray, out_q: Quant) -> dict:
    """``{inputs, outputs, bit_exact_inputs, bit_exact_outputs, max_abs_diff, max_lsb_diff,
    first_mismatch}`` of two [N, M] float32 arrays."""
    board, tflm = np.asarray(board, np.float32), np.asarray(tflm, np.float32)
    if board.shape != tflm.shape:
        raise ValueError(f"board outputs {board.shape} vs TFLM {tflm.shape}")
    same = board.view(np.int32) == tflm.view(np.int32)
    diff = np.abs(board.astype(np.float64) - tflm.astype(np.float64))
    rows = same.all(axis=1)
    first = None
    if not rows.all():
        i = int(np.argmin(rows))
        j = int(np.argmin(same[i]))
        first = {"input": i, "output": j, "board": float(board[i, j]), "tflm": float(tflm[i, j])}
    return {"inputs": int(board.shape[0]), "outputs": int(board.size),
            "bit_exact_inputs": int(rows.sum()), "bit_exact_outputs": int(same.sum()),
            "bit_exact": bool(same.all()),
            "max_abs_diff": float(diff.max()) if diff.size else 0.0,
            "max_lsb_diff": float(np.round(diff.max() / out_q.scale, 3)) if diff.size else 0.0,
            "first_mismatch": first}
