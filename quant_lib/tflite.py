"""TFLite conversion (float and full-integer), post-export validation, and a batched runner.

The runner quantizes float inputs with round-half-away-from-zero and clipping to the integer range,
matching TFLite's own QUANTIZE kernel; TFMA's TFLite extractor casts (truncates) instead, which
biases every input by up to one quantization step.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence

import numpy as np

import quant_lib  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from quant_lib import internals, runtime
import tensorflow as tf

_TF_TYPES = {"int8": tf.int8, "uint8": tf.uint8, "int16": tf.int16, "float32": tf.float32}


class ExportValidationError(ValueError):
    """The converted model is not what was asked for; the message lists the offending ops/tensors."""


def convert_float(model) -> bytes:
    """Plain float32 TFLite conversion (the size/latency reference), of the same graph QAT
    quantizes (layers without TFLite kernels as their equivalents, ``qat.rewrite_layers``) and
    traced at batch 1 like the int8 model: a dynamic batch leaves shape ops (e.g. Keras' SE
    Reshape) whose dynamic tensors make XNNPACK refuse the whole float graph (EfficientNet-B0:
    0 of 310 ops delegated), an unfair baseline. The interpreter still resizes the batch."""
    from quant_lib import qat
    return _fixed_batch_converter(qat.rewrite_layers(model), 1).convert()


def _fixed_batch_converter(model, batch: int) -> tf.lite.TFLiteConverter:
    """A converter for ``model`` traced at a static batch size (the Edge TPU compiler rejects
    dynamic shapes); the ``serving_default`` signature keeps the Keras input and output names, so
    inputs are fed by name whatever order the converter gives the tensors. Batched evaluation
    still works: the interpreter resizes the batch dimension."""
    names = list(model.input_names)
    specs = [tf.TensorSpec([batch] + list(t.shape[1:]), t.dtype, name=name)
             for t, name in zip(model.inputs, names)]
    out_names = list(model.output_names)

    @tf.function
    def serve(*args):
        outs = model(dict(zip(names, args)) if len(args) > 1 else args[0], training=False)
        return dict(zip(out_names, _as_list(outs)))

    fn = serve.get_concrete_function(*specs)
    return tf.lite.TFLiteConverter.from_concrete_functions([fn], _variables_only(model))


def _variables_only(model) -> tf.Module:
    """What the converter saves beside the function: the model's variables and nothing else.
    Handing it the Keras model made it serialize every layer's call functions first: 62 s of a
    MobileNetV3-Small conversion, 18 s this way, the same bytes."""
    holder = tf.Module()
    holder.model_variables = list(model.variables)
    return holder


def _as_list(x):
    """Keras gives a list for multi-input/output models and a tuple/tensor for single ones."""
    return list(x) if isinstance(x, list) else [x]


_OPS_SETS = {
    "int8": tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
    "int16x8": tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
}


def _named(model, x) -> Dict[str, np.ndarray]:
    """Model inputs by Keras input name (a bare array feeds a single-input model)."""
    if isinstance(x, dict):
        return {k: np.asarray(v) for k, v in x.items()}
    return {model.input_names[0]: np.asarray(x)}


def convert_int8(model, representative_inputs, input_type: str = "int8",
                 output_type: str = "int8", static_batch: Optional[int] = 1,
                 activations: str = "int8", per_channel: bool = True,
                 float_layers: Sequence[str] = ()) -> bytes:
    """Full-integer conversion: integer kernels only, I/O of the asked types.

    ``activations`` "int16x8" selects TFLite's experimental int16-activation scheme.
    ``static_batch`` fixes the batch dimension (default 1, what the Edge TPU needs); None keeps it
    dynamic. ``per_channel=False`` emits one weight scale per tensor (match a per-tensor QAT model).
    ``float_layers``: Keras layers whose ops stay float (islands between DEQUANTIZE and QUANTIZE;
    the calibrate-then-quantize path of TFLite's QuantizationDebugger, with those ops denylisted).
    """
    rep = _named(model, representative_inputs)
    n = min(len(v) for v in rep.values())
    if n == 0:
        raise ValueError("representative dataset is empty: full-integer conversion needs at least "
                         "one example to calibrate input ranges")
    missing = sorted(set(model.input_names) - set(rep))
    if missing:
        raise ValueError(f"representative inputs lack model input(s) {missing}")
    dtypes = {name: t.dtype.as_numpy_dtype for name, t in zip(model.input_names, model.inputs)}

    def gen():  # by signature input name: the converter's tensor order is not the model's
        for i in range(n):
            yield {k: rep[k][i:i + 1].astype(dtypes[k]) for k in model.input_names}

    conv = (tf.lite.TFLiteConverter.from_keras_model(model) if static_batch is None
            else _fixed_batch_converter(model, static_batch))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = gen
    conv.target_spec.supported_ops = [_OPS_SETS[activations]]
    conv.inference_input_type = _TF_TYPES[input_type]
    conv.inference_output_type = _TF_TYPES[output_type]
    internals.disable_per_channel(conv, not per_channel)
    if float_layers:
        return _convert_with_float_islands(conv, float_layers, input_type, output_type,
                                           not per_channel, _fused_pairs(model, float_layers))
    try:
        return conv.convert()
    except Exception as e:  # ConverterError is no RuntimeError  # pylint: disable=broad-except
        _refuse_missing_kernels(model, e)
        if activations == "int16x8" and "16x8" in str(e):
            raise ExportValidationError(
                f"int16x8 conversion failed ({e}): a QAT model carries 8-bit fake-quant ranges "
                "that TFLite cannot re-quantize to 16x8; int16x8 is post-training only, so convert "
                "the float model (IntegerExporter does this when given base_model)") from e
        raise


def _layer_of(tensor_name: str, layers: Sequence[str]) -> Optional[str]:
    """The Keras layer (of ``layers``) a TFLite tensor belongs to: the converter names a fused
    op's tensors after its TF ops, ``<model>/<layer>/<op>;<model>/<layer>/<op>``."""
    for part in tensor_name.split(";"):
        for layer in layers:
            if f"/{layer}/" in part:
                return layer
    return None


def island_ops(interp, layers: Sequence[str]) -> Dict[int, str]:
    """{op index: Keras layer} for the ops computing ``layers``: an op (not a (de)quantize) whose
    output or constant operand (weights, bias) is named after the layer, or, for a model output
    layer (its tensors are named after the signature and constants, not the layer), the op
    writing that signature output."""
    if not layers:
        return {}
    names = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    ops = internals.ops_details(interp)
    produced = {o for op in ops for o in op["outputs"]}
    produced |= {d["index"] for d in interp.get_input_details()}
    found = {}
    for op in ops:
        if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
            continue
        own = [o for o in op["outputs"] if o >= 0] + [
            i for i in op["inputs"] if i >= 0 and i not in produced]
        for t in own:
            layer = _layer_of(names[t], layers)
            if layer is not None:
                found[op["index"]] = layer
                break
    producer = {o: op for op in ops for o in op["outputs"]}
    signature = internals.signature_details(interp)
    for layer in set(layers) - set(found.values()):
        tensor = signature.get("outputs", {}).get(layer)
        while tensor in producer and producer[tensor]["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
            tensor = producer[tensor]["inputs"][0]
        if tensor in producer:
            found[producer[tensor]["index"]] = layer
    return found


def _fused_pairs(model, names: Sequence[str]) -> Dict[str, str]:
    """{layer: partner} for each listed BatchNormalization read from a listed layer alone: the
    converter fuses the two into one float op, named after either."""
    pairs = {}
    for layer in model.layers:
        # A float layer is shared with the float model: one inbound node per model.
        inbound = {getattr(n.inbound_layers, "name", None)
                   for n in internals.inbound_nodes(layer)}
        if (type(layer).__name__ == "BatchNormalization" and layer.name in names
                and len(inbound) == 1 and next(iter(inbound)) in names):
            (prev,) = inbound
            pairs[layer.name], pairs[prev] = prev, layer.name
    return pairs


def _convert_with_float_islands(conv, float_layers, input_type, output_type,
                                per_tensor: bool, fused: Dict[str, str]) -> bytes:
    from tensorflow.lite.python import convert as _convert  # pylint: disable=g-import-not-at-top
    conv.experimental_mlir_quantizer = True
    internals.calibrate_only(conv)
    calibrated = conv.convert()
    interp = tf.lite.Interpreter(model_content=calibrated)
    names = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    ops = {op["index"]: op for op in internals.ops_details(interp)}
    island = island_ops(interp, float_layers)
    nodes = [names[o] for i in island for o in ops[i]["outputs"] if o >= 0]
    found = set(island.values())
    missing = sorted(n for n in set(float_layers) - found if fused.get(n) not in found)
    if missing:
        raise ExportValidationError(f"float_fallback layers {missing} produce no op in the "
                                    "converted model (nothing to keep float); list weight or "
                                    "arithmetic layers")
    return _convert.mlir_quantize(calibrated, disable_per_channel=per_tensor, fully_quantize=True,
                                  input_data_type=_TF_TYPES[input_type],
                                  output_data_type=_TF_TYPES[output_type], denylisted_nodes=nodes)


class ModelFormatError(ExportValidationError):
    """The bytes are not a readable TFLite flatbuffer."""


def schema_names():
    from tensorflow.lite.python import schema_py_generated as s  # pylint: disable=g-import-not-at-top
    ops = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    types = {v: k for k, v in vars(s.TensorType).items() if not k.startswith("_")}
    return s, ops, types


def text(raw, what: str) -> str:
    """A flatbuffer string (bytes) as text; ModelFormatError when it is not UTF-8."""
    if not isinstance(raw, (bytes, bytearray)):
        return raw
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError as e:
        raise ModelFormatError(f"malformed TFLite model: a {what} is not UTF-8 ({e})") from e


def read_flatbuffer(model_bytes: bytes):
    """Parses a .tflite flatbuffer in pure Python: safe on untrusted or truncated bytes, which can
    crash the C++ interpreter outright (seen with a truncated model). Raises ModelFormatError."""
    if not isinstance(model_bytes, (bytes, bytearray)):
        raise ModelFormatError(f"expected bytes, got {type(model_bytes).__name__}")
    if len(model_bytes) < 8:
        raise ModelFormatError(f"{len(model_bytes)} bytes is too short for a TFLite model")
    if bytes(model_bytes[4:8]) != b"TFL3":
        raise ModelFormatError(f"file identifier is {bytes(model_bytes[4:8])!r}, not b'TFL3': "
                               "not a TFLite flatbuffer")
    s, _, _ = schema_names()
    try:
        model = s.ModelT.InitFromObj(s.Model.GetRootAsModel(bytearray(model_bytes), 0))
    except Exception as e:  # noqa: BLE001  (flatbuffers raises struct.error, IndexError, ...)
        raise ModelFormatError(f"malformed or truncated TFLite flatbuffer ({type(e).__name__}: "
                               f"{e})") from e
    if not model.subgraphs:
        raise ModelFormatError("TFLite model has no subgraph")
    _check_structure(model)
    return model


_ITEMSIZE = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 9: 1, 10: 8, 16: 4}  # TensorType -> bytes


def _check_structure(model) -> None:
    """Every index points inside the model, every name is text, every constant buffer holds its
    shape's bytes: TFLite's C++ loader trusts these and can crash on a file that breaks them."""
    n_buf, n_codes = len(model.buffers or []), len(model.operatorCodes or [])

    def bad(msg):
        raise ModelFormatError(f"malformed TFLite model: {msg}")

    for m in model.metadata or []:
        text(m.name, "metadata name")
        if not 0 <= m.buffer < n_buf:
            bad(f"metadata {text(m.name, 'metadata name')!r} points at buffer {m.buffer} of "
                f"{n_buf}")
    for g_i, g in enumerate(model.subgraphs):
        tensors = g.tensors or []
        for t_i, t in enumerate(tensors):
            text(t.name, "tensor name")
            if not 0 <= t.buffer < n_buf:
                bad(f"tensor #{t_i} points at buffer {t.buffer} of {n_buf}")
            shape = [int(d) for d in (t.shape if t.shape is not None else [])]
            if any(d < 0 or d > 1 << 24 for d in shape):
                bad(f"tensor #{t_i} has shape {shape}")
            data = model.buffers[t.buffer].data
            if data is not None and len(data) and t.type in _ITEMSIZE and t.sparsity is None and \
                    len(data) != int(np.prod(shape, dtype=np.int64)) * _ITEMSIZE[t.type]:
                bad(f"tensor #{t_i} shape {shape} needs {int(np.prod(shape)) * _ITEMSIZE[t.type]} "
                    f"bytes, its buffer holds {len(data)}")
        ids = [*(g.inputs if g.inputs is not None else []),
               *(g.outputs if g.outputs is not None else [])]
        for op_i, op in enumerate(g.operators or []):
            if not 0 <= op.opcodeIndex < n_codes:
                bad(f"op #{op_i} has operator code {op.opcodeIndex} of {n_codes}")
            ids += [*(op.inputs if op.inputs is not None else []),
                    *(op.outputs if op.outputs is not None else [])]
        if any(not -1 <= int(i) < len(tensors) for i in ids):
            bad(f"subgraph {g_i} refers to a tensor outside its {len(tensors)}")
    for sig in model.signatureDefs or []:
        text(sig.signatureKey, "signature name")
        if not 0 <= sig.subgraphIndex < len(model.subgraphs):
            bad(f"signature points at subgraph {sig.subgraphIndex}")
        for io in [*(sig.inputs or []), *(sig.outputs or [])]:
            text(io.name, "signature name")
            if not 0 <= io.tensorIndex < len(model.subgraphs[sig.subgraphIndex].tensors or []):
                bad(f"signature tensor index {io.tensorIndex} is outside the subgraph")


def _interpreter(model_bytes: bytes, num_threads: int = 1, rt: str = runtime.SECOND):
    read_flatbuffer(model_bytes)
    try:
        interp = runtime.interpreter(model_bytes, rt, num_threads)
    except (ValueError, RuntimeError) as e:
        raise ModelFormatError(f"not a loadable TFLite model: {e}") from e
    try:  # names the interpreter hands to Python (tensors, signatures) must be text
        interp.get_tensor_details()
        interp.get_signature_list()
    except UnicodeDecodeError as e:
        raise ModelFormatError(f"malformed TFLite model: a tensor or signature name is not "
                               f"UTF-8 ({e})") from e
    return interp


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
    interp = _interpreter(model_bytes)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    ops = internals.ops_details(interp)
    for op in ops:
        missing = [i for i in list(op["inputs"]) + list(op["outputs"])
                   if i >= 0 and i not in tensors]
        if missing:
            raise ModelFormatError(f"malformed TFLite model: op #{op['index']} {op['op_name']} "
                                   f"refers to tensor(s) {missing[:3]} the model does not have")
    _refuse_asymmetric_weights(tensors, ops)
    graph_in = {d["index"] for d in interp.get_input_details()}
    graph_out = {d["index"] for d in interp.get_output_details()}
    problems: List[str] = []
    counts: Dict[str, int] = {}
    island_ids = set(island_ops(interp, float_layers))
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


_WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")


def _refuse_asymmetric_weights(tensors, ops) -> None:
    """int8 conv / fully-connected weights must be symmetric (every zero point 0): TFLite's
    kernels refuse anything else when preparing the model (conv.cc: zero_point != 0)."""
    for op in ops:
        if op["op_name"] in _WEIGHT_OPS and len(op["inputs"]) > 1 and op["inputs"][1] >= 0:
            w = tensors[op["inputs"][1]]
            zps = w["quantization_parameters"]["zero_points"]
            if w["dtype"] == np.int8 and np.any(zps != 0):
                raise ModelFormatError(
                    f"op #{op['index']} {op['op_name']}: int8 weight tensor {w['name']!r} has "
                    f"zero points {sorted(set(int(z) for z in zps if z != 0))[:3]}; int8 weights "
                    "must be symmetric (zero point 0), which TFLite's kernels require")


def weight_scale_counts(model_bytes: bytes) -> Dict[str, int]:
    """{weight tensor name: number of quantization scales} for every conv / fully-connected op:
    1 everywhere is a per-tensor model."""
    interp = _interpreter(model_bytes)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    counts = {}
    for op in internals.ops_details(interp):
        if op["op_name"] in _WEIGHT_OPS:
            w = tensors[op["inputs"][1]]  # the weights, in each of these ops
            counts[w["name"]] = len(w["quantization_parameters"]["scales"])
    return counts


def weight_types(model_bytes: bytes) -> Dict[str, str]:
    """{Keras layer: storage type of its weights} ("INT8", "INT4", "FLOAT32") for every conv /
    fully-connected op: how a mixed-precision model was really written."""
    _, ops, types = schema_names()
    m = read_flatbuffer(model_bytes)
    g = m.subgraphs[0]
    out = {}
    for op in g.operators:
        if ops[m.operatorCodes[op.opcodeIndex].builtinCode] in _WEIGHT_OPS:
            w = g.tensors[op.inputs[1]]
            name = w.name.decode() if isinstance(w.name, bytes) else w.name
            parts = name.split(";")[0].split("/")
            out[parts[1] if len(parts) > 1 else parts[0]] = types[w.type]
    return out


def head(model_bytes: bytes) -> Optional[str]:
    """The activation that produces the model's first output, as ``tasks.resolve`` takes it:
    'softmax', 'sigmoid' or None."""
    return {"SOFTMAX": "softmax", "LOGISTIC": "sigmoid"}.get(output_producer(model_bytes) or "")


def output_producer(model_bytes: bytes) -> Optional[str]:
    """The op computing the model's first output ('SOFTMAX', 'LOGISTIC', 'FULLY_CONNECTED'...),
    looking through the (de)quantize and reshape ops the converter adds at the end."""
    interp = _interpreter(model_bytes)
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


_QUANTIZED_IO = (np.int8, np.uint8, np.int16)


# Keras layers whose TF ops have no TFLite builtin kernel (hash tables, string ops): an int8
# model cannot hold them; the Transform can.
_NO_KERNEL_LAYERS = {
    "IntegerLookup": "tft.compute_and_apply_vocabulary (or tft.apply_vocabulary) on the raw ints",
    "StringLookup": "tft.compute_and_apply_vocabulary",
    "Hashing": "tft.hash_strings / tf.strings.to_hash_bucket_fast",
    "TextVectorization": "tft's vocabulary and tokenization ops",
}


def _refuse_missing_kernels(model, error: Exception) -> None:
    """A conversion that failed on TF ops TFLite has no kernel for, as an error naming the ops,
    the layers they come from and the way out."""
    import re
    ops = sorted(set(re.findall(r"'tf\.(\w+)' op is neither a custom op nor a flex op",
                                str(error))))
    if not ops:
        return
    layers = [f"{layer.name} ({type(layer).__name__}: in the Transform use "
              f"{_NO_KERNEL_LAYERS[type(layer).__name__]})"
              for layer in getattr(model, "layers", [])
              if type(layer).__name__ in _NO_KERNEL_LAYERS]
    raise ExportValidationError(
        f"TFLite has no builtin kernel for TF op(s) {ops}, so no full-integer (nor float "
        f"builtin) model can hold them" + (f"; they come from layer(s) {layers}" if layers else "")
        + ". Do that step in the Transform so the model takes integer ids or numbers (TFLite "
        "inputs); float_fallback_names keeps a layer float (CPU only) but cannot add a missing "
        "kernel") from error


class TFLiteClassifier:
    """Batched inference over a float or integer-I/O TFLite classifier; returns float scores.

    Inputs go in by name through the ``serving_default`` signature (a dict name -> array; a bare
    array feeds a single-input model), quantized with each input's own scale and zero point."""

    def __init__(self, model_bytes: bytes, num_threads: int = 1, rt: str = runtime.SECOND):
        self._interp = _interpreter(model_bytes, num_threads, rt)
        try:
            self._bind()
        except (UnicodeDecodeError, KeyError, IndexError, StopIteration) as e:
            raise ModelFormatError(f"malformed TFLite model: its signature or I/O tensors cannot "
                                   f"be read ({type(e).__name__}: {e})") from e

    def _bind(self) -> None:
        sigs = self._interp.get_signature_list()
        if sigs:
            runner = self._interp.get_signature_runner(
                "serving_default" if "serving_default" in sigs else next(iter(sigs)))
            self._index = {k: d["index"] for k, d in runner.get_input_details().items()}
            outs = runner.get_output_details()
            if len(outs) != 1:
                raise ExportValidationError(f"TFLite model has outputs {sorted(outs)}; a "
                                            "classifier has one scores output")
            self._out_index = next(iter(outs.values()))["index"]
        else:
            self._index = {d["name"]: d["index"] for d in self._interp.get_input_details()}
            self._out_index = self._interp.get_output_details()[0]["index"]
        self._batch: Optional[int] = None
        self._one_at_a_time = False
        self._refresh()

    def _refresh(self) -> None:
        by_index = {d["index"]: d for d in self._interp.get_input_details()}
        self._in = {k: by_index[i] for k, i in self._index.items()}
        self._out = next(d for d in self._interp.get_output_details()
                         if d["index"] == self._out_index)

    @property
    def output_step(self) -> float:
        """The output's quantization step (0 for a float output)."""
        scale = self._out["quantization"][0] if self._out["dtype"] in _QUANTIZED_IO else 0.0
        return float(scale)

    @property
    def input_names(self) -> List[str]:
        return sorted(self._in)

    @property
    def input_details(self) -> Dict[str, Dict]:
        """Signature input name -> the interpreter's tensor details."""
        return dict(self._in)

    @property
    def input_dtype(self):
        return next(iter(self._in.values()))["dtype"]

    def _named(self, x) -> Dict[str, np.ndarray]:
        if not isinstance(x, dict):
            if len(self._in) != 1:
                raise ValueError(f"the model takes inputs {self.input_names}: pass a dict by name")
            return {next(iter(self._in)): x}
        missing = sorted(set(self._in) - set(x))
        if missing:
            raise ValueError(f"TFLite model inputs {missing} are not among the given features "
                             f"{sorted(x)}")
        return x

    def _resize(self, batch: int) -> None:
        if batch != self._batch:
            for d in self._in.values():
                shape = list(d["shape"])
                shape[0] = batch
                self._interp.resize_tensor_input(d["index"], shape)
            try:
                self._interp.allocate_tensors()
            except RuntimeError as e:
                if batch == 1:  # the model's own shape: TFLite refuses the model itself
                    raise ModelFormatError(f"TFLite refuses the model when preparing it: "
                                           f"{e}") from e
                raise
            self._refresh()
            self._batch = batch

    @staticmethod
    def _prepare(x: np.ndarray, d) -> np.ndarray:
        if d["dtype"] in _QUANTIZED_IO:
            scale, zp = d["quantization"]
            return quantize_input(x, scale, zp, d["dtype"])
        return np.asarray(x).astype(d["dtype"])

    def invoke_seconds(self, inputs) -> List[float]:
        """Seconds of each ``invoke()`` at batch 1, one per example: the inputs are quantized
        and set outside the timed region, so this is the model's time on the interpreter, not
        Python's (quantizing a 224x224x3 image in numpy costs about what a small net runs)."""
        return self._each_at_batch_one(inputs)[0]

    def outputs_at_batch_one(self, inputs) -> np.ndarray:
        """The raw output tensor of each example run alone at batch 1 (no other resize: the
        latency path compares two runtimes' outputs with it)."""
        return np.stack(self._each_at_batch_one(inputs, keep_outputs=True)[1])

    def _each_at_batch_one(self, inputs, keep_outputs: bool = False):
        import time
        inputs = self._named(inputs)
        total = len(next(iter(inputs.values())))
        self._resize(1)
        prepared = [{name: self._prepare(np.asarray(inputs[name][i:i + 1]).reshape(d["shape"]), d)
                     for name, d in self._in.items()} for i in range(total)]
        seconds, outputs = [], []
        for feed in prepared:
            for name, d in self._in.items():
                self._interp.set_tensor(d["index"], feed[name])
            t0 = time.perf_counter()
            self._interp.invoke()
            seconds.append(time.perf_counter() - t0)
            if keep_outputs:
                outputs.append(self._interp.get_tensor(self._out["index"]).copy())
        return seconds, outputs

    def predict(self, inputs, batch_size: int = 256) -> np.ndarray:
        inputs = self._named(inputs)
        total = len(next(iter(inputs.values())))
        batch_size = 1 if self._one_at_a_time else batch_size
        outs = []
        for start in range(0, total, batch_size):
            n = min(batch_size, total - start)
            try:
                self._resize(n)
            except RuntimeError:  # shapes fixed at batch 1 inside the graph (Conv1D's RESHAPE)
                if n == 1:
                    raise
                self._one_at_a_time, self._batch = True, None
                return self.predict(inputs)
            for name, d in self._in.items():
                xb = np.asarray(inputs[name][start:start + n]).reshape(d["shape"])
                self._interp.set_tensor(d["index"], self._prepare(xb, d))
            self._interp.invoke()
            try:
                y = self._interp.get_tensor(self._out["index"])
            except ValueError as e:  # an output no op writes (a damaged graph)
                raise ModelFormatError(f"malformed TFLite model: its output tensor holds no data "
                                       f"after invoke ({e})") from e
            if self._out["dtype"] in _QUANTIZED_IO:
                scale, zp = self._out["quantization"]
                y = dequantize(y, scale, zp)
            outs.append(np.asarray(y, dtype=np.float32).reshape(n, -1))
        return np.concatenate(outs)


@dataclasses.dataclass
class Delegation:
    """How TFLite's default CPU path runs a model: which ops the XNNPACK delegate took (in how
    many partitions) and which stay in TFLite's builtin kernels (each boundary between the two
    costs a hand-off). No partition at all means XNNPACK refused the whole graph."""

    ops: int
    delegated: int
    partitions: int
    builtin: Dict[str, int]

    def describe(self) -> str:
        kept = ", ".join(f"{k} x{v}" for k, v in sorted(self.builtin.items(), key=lambda kv: -kv[1]))
        return (f"XNNPACK {self.delegated}/{self.ops} ops in {self.partitions} partition(s)"
                + (f"; builtin kernels: {kept}" if kept else ""))


def delegation(model_bytes: bytes, rt: str = runtime.DEPLOYMENT) -> Delegation:
    """The runtime's default execution plan (1 thread), read off its DELEGATE nodes."""
    taken, originals, partitions = _plan(model_bytes, rt)
    builtin: Dict[str, int] = {}
    for n in originals:
        if n["index"] not in taken:
            builtin[n["op_name"]] = builtin.get(n["op_name"], 0) + 1
    return Delegation(len(originals), len(taken), partitions, builtin)


def delegated_ops(model_bytes: bytes) -> set:
    """Indices (in the model's subgraph) of the ops the default XNNPACK delegate takes."""
    return _plan(model_bytes)[0]


def _plan(model_bytes: bytes, rt: str = runtime.DEPLOYMENT):
    """(ops XNNPACK took, the original nodes, partitions): each partition is what lies between a
    DELEGATE node's input and output tensors."""
    interp = _interpreter(model_bytes, 1, rt)
    interp.allocate_tensors()
    nodes = internals.ops_details(interp)
    delegates = [n for n in nodes if n["op_name"] == "DELEGATE"]
    originals = [n for n in nodes if n["op_name"] != "DELEGATE"]
    producer = {int(t): n["index"] for n in originals for t in n["outputs"] if t >= 0}
    by_index = {n["index"]: n for n in originals}
    taken = set()
    for d in delegates:
        stop = {int(t) for t in d["inputs"] if t >= 0}
        todo = [int(t) for t in d["outputs"] if t >= 0]
        while todo:
            t = todo.pop()
            if t in stop or t not in producer or producer[t] in taken:
                continue
            taken.add(producer[t])
            todo += [int(i) for i in by_index[producer[t]]["inputs"] if i >= 0]
    return taken, originals, len(delegates)


def input_contract(model_bytes: bytes) -> List[Dict]:
    """What the TFLite model takes, by signature input name: dtype, shape, scale, zero point."""
    c = TFLiteClassifier(model_bytes)
    return [{"name": k, "dtype": np.dtype(d["dtype"]).name,
             "shape": [int(v) for v in d["shape_signature"]],
             "scale": float(d["quantization"][0]), "zero_point": int(d["quantization"][1])}
            for k, d in sorted(c.input_details.items())]
