"""Keras model -> TFLite bytes: the float model, and full-integer conversion fed by input name,
with optional float islands (layers kept float through the MLIR quantizer's denylist)."""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

import tfx_qat  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from tfx_qat.quant_lib import internals

import tensorflow as tf

from tfx_qat.quant_lib.tflite import flatbuffer, interpreter


_TF_TYPES = {"int8": tf.int8, "uint8": tf.uint8, "int16": tf.int16, "float32": tf.float32}

def convert_float(model) -> bytes:
    """Plain float32 TFLite conversion (the size/latency reference), of the same graph QAT
    quantizes (layers without TFLite kernels as their equivalents, ``folds.rewrite_layers``) and
    traced at batch 1 like the int8 model: a dynamic batch leaves shape ops (e.g. Keras' SE
    Reshape) whose dynamic tensors make XNNPACK refuse the whole float graph (EfficientNet-B0:
    0 of 310 ops delegated), an unfair baseline. The interpreter still resizes the batch."""
    from tfx_qat.quant_lib.qat import folds
    return _fixed_batch_converter(folds.rewrite_layers(model), 1).convert()

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
            raise flatbuffer.ExportValidationError(
                f"int16x8 conversion failed ({e}): a QAT model carries 8-bit fake-quant ranges "
                "that TFLite cannot re-quantize to 16x8; int16x8 is post-training only, so convert "
                "the float model (IntegerExporter does this when given base_model)") from e
        raise

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
    conv.experimental_mlir_quantizer = True
    internals.calibrate_only(conv)
    calibrated = conv.convert()
    interp = tf.lite.Interpreter(model_content=calibrated)
    names = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    ops = {op["index"]: op for op in internals.ops_details(interp)}
    island = interpreter.island_ops(interp, float_layers)
    nodes = [names[o] for i in island for o in ops[i]["outputs"] if o >= 0]
    found = set(island.values())
    missing = sorted(n for n in set(float_layers) - found if fused.get(n) not in found)
    if missing:
        raise flatbuffer.ExportValidationError(f"float_fallback layers {missing} produce no op in the "
                                    "converted model (nothing to keep float); list weight or "
                                    "arithmetic layers")
    return internals.mlir_quantize(calibrated, disable_per_channel=per_tensor, fully_quantize=True,
                                  input_data_type=_TF_TYPES[input_type],
                                  output_data_type=_TF_TYPES[output_type], denylisted_nodes=nodes)

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
    raise flatbuffer.ExportValidationError(
        f"TFLite has no builtin kernel for TF op(s) {ops}, so no full-integer (nor float "
        f"builtin) model can hold them" + (f"; they come from layer(s) {layers}" if layers else "")
        + ". Do that step in the Transform so the model takes integer ids or numbers (TFLite "
        "inputs); float_fallback_names keeps a layer float (CPU only) but cannot add a missing "
        "kernel") from error
