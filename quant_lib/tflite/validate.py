"""The checks that prove a converted model's bytes: every op integer (or a listed float
island), symmetric per-channel int8 weights, the head the float model had."""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence

import numpy as np

import tfx_qat  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from tfx_qat.quant_lib import internals
from tfx_qat.quant_lib.tflite import flatbuffer, interpreter


@dataclasses.dataclass
class IntegerReport:
    """What the validator found; ``problems`` empty means the model is full-integer as asked."""

    num_ops: int
    op_counts: Dict[str, int]
    input_dtype: str
    output_dtype: str
    problems: List[str]
    float_ops: int = 0  # ops of listed float islands

    @property
    def ok(self) -> bool:
        return not self.problems

_INT_TYPES = {np.int8, np.uint8, np.int16, np.int32, np.int64, np.bool_}

def inspect_integer(model_bytes: bytes, input_type: str = "int8",
                    output_type: str = "int8", float_layers: Sequence[str] = ()) -> IntegerReport:
    """Checks a TFLite model is full-integer as asked.

    Every op runs on integer tensors (an int-to-int QUANTIZE is a requantize), except the
    boundary conversions the requested I/O types imply: QUANTIZE on a graph input (uint8/float32 input), QUANTIZE on a graph output (uint8
    output), DEQUANTIZE on a graph output (float32 output). Any other QUANTIZE/DEQUANTIZE or float
    tensor is a problem, as are I/O dtypes other than asked and integer activation tensors without
    quantization parameters. ``float_layers``: listed float islands; their float ops, the
    DEQUANTIZE ops feeding them and the QUANTIZE ops reading them are allowed (and counted in
    ``float_ops``).
    """
    interp = interpreter.load_interpreter(model_bytes)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    ops = internals.ops_details(interp)
    for op in ops:
        missing = [i for i in list(op["inputs"]) + list(op["outputs"])
                   if i >= 0 and i not in tensors]
        if missing:
            raise flatbuffer.ModelFormatError(f"malformed TFLite model: op #{op['index']} {op['op_name']} "
                                   f"refers to tensor(s) {missing[:3]} the model does not have")
    _refuse_asymmetric_weights(tensors, ops)
    graph_in = {d["index"] for d in interp.get_input_details()}
    graph_out = {d["index"] for d in interp.get_output_details()}
    problems: List[str] = []
    counts: Dict[str, int] = {}
    island_ids = set(interpreter.island_ops(interp, float_layers))
    island = [op for op in ops if op["index"] in island_ids]
    island_in = {i for op in island for i in op["inputs"]}
    island_out = {o for op in island for o in op["outputs"]}
    for op in ops:
        name = op["op_name"]
        counts[name] = counts.get(name, 0) + 1
        ins = [i for i in op["inputs"] if i >= 0]
        outs = [i for i in op["outputs"] if i >= 0]
        if op["index"] in island_ids or (name == "DEQUANTIZE" and set(outs) <= island_in) or (
                name == "QUANTIZE" and set(ins) <= island_out):
            continue
        at_input = any(i in graph_in for i in ins)
        at_output = any(o in graph_out for o in outs)
        if name == "QUANTIZE":
            if all(tensors[i]["dtype"] in _INT_TYPES for i in ins + outs):
                continue  # integer requantize (e.g. aligning CONCATENATION input scales)
            if not ((at_input and input_type in ("uint8", "float32")) or
                    (at_output and output_type == "uint8")):
                problems.append(f"op #{op['index']} QUANTIZE inside the graph (asked "
                                f"{input_type} in, {output_type} out)")
            continue
        if name == "DEQUANTIZE":
            if not (at_output and output_type == "float32"):
                problems.append(f"op #{op['index']} DEQUANTIZE produces float tensor(s) "
                                f"{[tensors[o]['name'] for o in outs]}")
            continue
        floats = [tensors[i]["name"] for i in ins + outs if tensors[i]["dtype"] not in _INT_TYPES]
        if floats:
            problems.append(f"op #{op['index']} {name} runs on float tensor(s) {floats[:3]}")
    for t in tensors.values():
        if t["dtype"] in (np.int8, np.uint8, np.int16) and \
                len(t["quantization_parameters"]["scales"]) == 0:
            problems.append(f"tensor {t['name']!r} is {np.dtype(t['dtype']).name} without "
                            "quantization parameters")
    # Integer ids (int32/int64 without quantization parameters: category inputs) stay as they
    # are; every other input must have the asked type.
    values = [d for d in interp.get_input_details()
              if not (d["dtype"] in (np.int32, np.int64)
                      and len(d["quantization_parameters"]["scales"]) == 0)]
    for d in values:
        if np.dtype(d["dtype"]).name != input_type:
            problems.append(f"input {d['name']!r} dtype is {np.dtype(d['dtype']).name}, "
                            f"expected {input_type}")
    in_dt = np.dtype((values or interp.get_input_details())[0]["dtype"]).name
    out_dt = np.dtype(interp.get_output_details()[0]["dtype"]).name
    if out_dt != output_type:
        problems.append(f"output dtype is {out_dt}, expected {output_type}")
    return IntegerReport(len(ops), counts, in_dt, out_dt, problems, len(island))

def _refuse_asymmetric_weights(tensors, ops) -> None:
    """int8 conv / fully-connected weights must be symmetric (every zero point 0): TFLite's
    kernels refuse anything else when preparing the model (conv.cc: zero_point != 0)."""
    for op in ops:
        if op["op_name"] in flatbuffer.WEIGHT_OPS and len(op["inputs"]) > 1 and op["inputs"][1] >= 0:
            w = tensors[op["inputs"][1]]
            zps = w["quantization_parameters"]["zero_points"]
            if w["dtype"] == np.int8 and np.any(zps != 0):
                raise flatbuffer.ModelFormatError(
                    f"op #{op['index']} {op['op_name']}: int8 weight tensor {w['name']!r} has "
                    f"zero points {sorted(set(int(z) for z in zps if z != 0))[:3]}; int8 weights "
                    "must be symmetric (zero point 0), which TFLite's kernels require")

def weight_scale_counts(model_bytes: bytes) -> Dict[str, int]:
    """{weight tensor name: number of quantization scales} for every conv / fully-connected op:
    1 everywhere is a per-tensor model."""
    interp = interpreter.load_interpreter(model_bytes)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    counts = {}
    for op in internals.ops_details(interp):
        if op["op_name"] in flatbuffer.WEIGHT_OPS:
            w = tensors[op["inputs"][1]]  # the weights, in each of these ops
            counts[w["name"]] = len(w["quantization_parameters"]["scales"])
    return counts

def head(model_bytes: bytes) -> Optional[str]:
    """The activation that produces the model's first output, as ``tasks.resolve`` takes it:
    'softmax', 'sigmoid' or None."""
    return {"SOFTMAX": "softmax", "LOGISTIC": "sigmoid"}.get(output_producer(model_bytes) or "")

def output_producer(model_bytes: bytes) -> Optional[str]:
    """The op computing the model's first output ('SOFTMAX', 'LOGISTIC', 'FULLY_CONNECTED'...),
    looking through the (de)quantize and reshape ops the converter adds at the end."""
    interp = interpreter.load_interpreter(model_bytes)
    producer = {}
    for op in internals.ops_details(interp):
        for t in op["outputs"]:
            producer[t] = op
    tensor = interp.get_output_details()[0]["index"]
    while tensor in producer:
        op = producer[tensor]
        if op["op_name"] not in ("QUANTIZE", "DEQUANTIZE", "RESHAPE"):
            return op["op_name"]
        tensor = op["inputs"][0]
    return None

def validate_integer(model_bytes: bytes, input_type: str = "int8",
                     output_type: str = "int8", float_layers: Sequence[str] = ()) -> IntegerReport:
    report = inspect_integer(model_bytes, input_type, output_type, float_layers)
    if not report.ok:
        raise flatbuffer.ExportValidationError(
            "TFLite model is not full-integer as configured:\n  - " + "\n  - ".join(report.problems)
            + "\nReplace or keep-float the listed layers upstream, or check the converter settings.")
    return report
