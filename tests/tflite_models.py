"""Small models built directly with TensorFlow and its TFLite converter, as a user outside this
project would make them (no cpr-edge export): dense layers of odd widths, relu / relu6 / tanh
/ sigmoid / elu activations, a residual ADD, per-tensor or per-channel weights, int8 or float
model I/O. ``convert(spec, path)`` writes one .tflite; ELU comes out as the converter emits it
(DEQUANTIZE -> ELU -> QUANTIZE)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ACTIVATIONS = ("linear", "relu", "relu6", "tanh", "sigmoid", "elu", "softmax")


@dataclass
class ModelSpec:
    name: str
    inputs: int
    layers: list[tuple[int, str]]
    """(width, activation) per dense layer."""
    residual_after: int | None = None
    """Add the model input to the output of this layer (same width as the input)."""
    per_tensor: bool = False
    float_io: bool = False
    int16: bool = False
    """16x8: int16 activations and I/O, int8 weights (ELU stays a float island the code
    generator implements)."""
    seed: int = 0
    calibration: int = 256
    extra: dict = field(default_factory=dict)


SPECS = [
    # int8 I/O, per-channel: odd widths, relu, a residual ADD of the input, tanh, sigmoid
    ModelSpec("odd_relu_residual_tanh_sigmoid", 13,
              [(37, "relu"), (13, "tanh"), (7, "sigmoid"), (3, "linear")], residual_after=1),
    # float I/O, per-tensor: relu6 and ELU as the converter emits it
    ModelSpec("float_io_relu6_elu_per_tensor", 9, [(23, "relu6"), (11, "elu"), (5, "linear")],
              per_tensor=True, float_io=True, seed=1),
    # 16x8, int16 I/O, per-channel: relu, tanh and the float ELU island of the 16x8 mode
    ModelSpec("int16_relu_tanh_elu", 11, [(29, "relu"), (17, "tanh"), (9, "elu"), (4, "linear")],
              int16=True, seed=3),
]


def _activation(tf, name: str):
    return {"linear": tf.identity, "relu": tf.nn.relu, "relu6": tf.nn.relu6, "tanh": tf.math.tanh,
            "sigmoid": tf.math.sigmoid, "elu": tf.nn.elu, "softmax": tf.nn.softmax}[name]


def convert(spec: ModelSpec, path: Path) -> Path:
    """Build ``spec`` in TensorFlow, quantise it with the TFLite converter, write ``path``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    rng = np.random.default_rng(spec.seed)
    weights, width = [], spec.inputs
    for out, _ in spec.layers:
        w = rng.normal(0, 1.2 / np.sqrt(width), (width, out)).astype(np.float32)
        b = rng.normal(0, 0.2, out).astype(np.float32)
        weights.append((tf.constant(w), tf.constant(b)))
        width = out

    @tf.function(input_signature=[tf.TensorSpec([1, spec.inputs], tf.float32)])
    def model(x):
        h = x
        for k, ((w, b), (_, act)) in enumerate(zip(weights, spec.layers)):
            h = _activation(tf, act)(tf.matmul(h, w) + b)
            if spec.residual_after == k:
                h = h + x
        return h

    calib = rng.normal(0, 1.0, (spec.calibration, spec.inputs)).astype(np.float32)

    def representative():
        for row in calib:
            yield [row[None, :]]

    converter = tf.lite.TFLiteConverter.from_concrete_functions([model.get_concrete_function()])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    if spec.int16:
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
            tf.lite.OpsSet.TFLITE_BUILTINS]
    else:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if not spec.float_io:
        converter.inference_input_type = tf.int16 if spec.int16 else tf.int8
        converter.inference_output_type = tf.int16 if spec.int16 else tf.int8
    if spec.per_tensor:
        converter._experimental_disable_per_channel = True
    path = Path(path)
    path.write_bytes(bytes(converter.convert()))
    return path


def wide_model(path: Path, inputs: int = 130, outputs: int = 3) -> Path:
    """A one-layer int8 model with more inputs than one HIL frame carries."""
    return convert(ModelSpec(f"wide_{inputs}", inputs, [(outputs, "relu")], seed=2, calibration=64), path)


def softmax_model(path: Path) -> Path:
    """An int8 model ending in SOFTMAX, an op the code generator does not implement."""
    return convert(ModelSpec("softmax", 6, [(4, "softmax")], seed=4, calibration=64), path)
