"""``cpr-edge validate``: a .tflite on a board, every output compared with the TFLM interpreter.

``validate(board, model, out_dir, inputs=None, random_n=None, ...)`` (cpr_edge.validate.run)
builds, boots or flashes, runs, compares and writes validate.json / validate.md
(docs/validate.md). Kept light: the heavy imports happen inside the functions.
"""
