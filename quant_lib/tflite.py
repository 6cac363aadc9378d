"""TFLite conversion (float and full-integer), post-export validation, and a batched runner.

The runner quantizes float inputs with round-half-away-from-zero and clipping to the integer range,
matching TFLite's own QUANTIZE kernel; TFMA's TFLite extractor casts (truncates) instead, which
biases every input by up to one quantization step.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional

import numpy as np

import quant_lib  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import tensorflow as tf

_TF_TYPES = {"int8": tf.int8, "uint8": tf.uint8}


class ExportValidationError(ValueError):
    """The converted model is not what was asked for; the message lists the offending ops/tensors."""


def convert_float(model) -> bytes:
    """Plain float32 TFLite conversion (the size/accuracy reference)."""
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def convert_int8(model, representative_images: np.ndarray, input_type: str = "int8",
                 output_type: str = "int8") -> bytes:
    """Full-integer conversion: int8 kernels only, integer input and output tensors."""
    if len(representative_images) == 0:
        raise ValueError("representative dataset is empty: full-integer conversion needs at least "
                         "one example to calibrate input ranges")
    rep = np.asarray(representative_images, dtype=np.float32)

    def gen():
        for x in rep:
            yield [x[None]]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = gen
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = _TF_TYPES[input_type]
    conv.inference_output_type = _TF_TYPES[output_type]
    return conv.convert()


def _interpreter(model_bytes: bytes, num_threads: int = 1) -> tf.lite.Interpreter:
    try:
        interp = tf.lite.Interpreter(model_content=model_bytes, num_threads=num_threads)
    except (ValueError, RuntimeError) as e:
        raise ExportValidationError(f"not a loadable TFLite model: {e}") from e
    return interp


@dataclasses.dataclass
class IntegerReport:
    """What the validator found; ``problems`` empty means the model is full-integer as asked."""

    num_ops: int
    op_counts: Dict[str, int]
    input_dtype: str
    output_dtype: str
    problems: List[str]

    @property
    def ok(self) -> bool:
        return not self.problems


_INT_TYPES = {np.int8, np.uint8, np.int16, np.int32, np.int64, np.bool_}


def inspect_integer(model_bytes: bytes, input_type: str = "int8",
                    output_type: str = "int8") -> IntegerReport:
    """Checks a TFLite model is full-integer: no float tensors feeding or leaving any op, no
    DEQUANTIZE, QUANTIZE only as the requested uint8<->int8 boundary, integer I/O of the asked types,
    and quantization parameters on every int8/uint8 activation tensor."""
    interp = _interpreter(model_bytes)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    ops = interp._get_ops_details()  # pylint: disable=protected-access
    problems: List[str] = []
    counts: Dict[str, int] = {}
    boundary_ok = "uint8" in (input_type, output_type)
    for op in ops:
        name = op["op_name"]
        counts[name] = counts.get(name, 0) + 1
        io = [i for i in list(op["inputs"]) + list(op["outputs"]) if i >= 0]
        floats = [tensors[i]["name"] for i in io if tensors[i]["dtype"] not in _INT_TYPES]
        if name == "DEQUANTIZE":
            problems.append(f"op #{op['index']} DEQUANTIZE produces float tensor(s) {floats}")
        elif name == "QUANTIZE" and not boundary_ok:
            problems.append(f"op #{op['index']} QUANTIZE inside an {input_type}->{output_type} graph")
        elif floats:
            problems.append(f"op #{op['index']} {name} runs on float tensor(s) {floats[:3]}")
    for t in tensors.values():
        if t["dtype"] in (np.int8, np.uint8):
            scales = t["quantization_parameters"]["scales"]
            if len(scales) == 0:
                problems.append(f"tensor {t['name']!r} is {np.dtype(t['dtype']).name} without "
                                "quantization parameters")
    in_dt = np.dtype(interp.get_input_details()[0]["dtype"]).name
    out_dt = np.dtype(interp.get_output_details()[0]["dtype"]).name
    if in_dt != input_type:
        problems.append(f"input dtype is {in_dt}, expected {input_type}")
    if out_dt != output_type:
        problems.append(f"output dtype is {out_dt}, expected {output_type}")
    return IntegerReport(len(ops), counts, in_dt, out_dt, problems)


def validate_integer(model_bytes: bytes, input_type: str = "int8",
                     output_type: str = "int8") -> IntegerReport:
    report = inspect_integer(model_bytes, input_type, output_type)
    if not report.ok:
        raise ExportValidationError(
            "TFLite model is not full-integer as configured:\n  - " + "\n  - ".join(report.problems)
            + "\nReplace or keep-float the listed layers upstream, or check the converter settings.")
    return report


def quantize_input(x: np.ndarray, scale: float, zero_point: int, dtype) -> np.ndarray:
    """float -> int with round-half-away-from-zero (TFLite's rounding) and saturation."""
    info = np.iinfo(dtype)
    v = np.asarray(x, dtype=np.float64) / scale
    q = np.sign(v) * np.floor(np.abs(v) + 0.5) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return (q.astype(np.float32) - zero_point) * scale


class TFLiteClassifier:
    """Batched inference over a float or integer-I/O TFLite classifier; returns float scores."""

    def __init__(self, model_bytes: bytes, num_threads: int = 1):
        self._interp = _interpreter(model_bytes, num_threads)
        self._in = self._interp.get_input_details()[0]
        self._out = self._interp.get_output_details()[0]
        self._batch: Optional[int] = None

    @property
    def input_dtype(self):
        return self._in["dtype"]

    def _resize(self, batch: int) -> None:
        if batch != self._batch:
            shape = list(self._in["shape"])
            shape[0] = batch
            self._interp.resize_tensor_input(self._in["index"], shape)
            self._interp.allocate_tensors()
            self._in = self._interp.get_input_details()[0]
            self._out = self._interp.get_output_details()[0]
            self._batch = batch

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        dtype = self._in["dtype"]
        if dtype in (np.int8, np.uint8):
            scale, zp = self._in["quantization"]
            return quantize_input(x, scale, zp, dtype)
        return x.astype(dtype)

    def predict(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        outs = []
        for start in range(0, len(images), batch_size):
            xb = images[start:start + batch_size]
            self._resize(len(xb))
            self._interp.set_tensor(self._in["index"], self._prepare(xb))
            self._interp.invoke()
            y = self._interp.get_tensor(self._out["index"])
            if self._out["dtype"] in (np.int8, np.uint8):
                scale, zp = self._out["quantization"]
                y = dequantize(y, scale, zp)
            outs.append(np.asarray(y, dtype=np.float32))
        return np.concatenate(outs)
